import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, getAll, getIfChanged, onUnauthorized, post, request } from "./client";

afterEach(() => vi.unstubAllGlobals());

function json(body: unknown, status = 200, headers: Record<string, string> = {}) {
  return new Response(status === 304 ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

describe("API client", () => {
  it("turns the API's error body into an ApiError with its sentence", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async () =>
        json(
          {
            code: "forbidden",
            message: "Your role in team vision is viewer; uploading needs data scientist or admin.",
            fields: {},
          },
          403,
        ),
      ),
    );
    const error = await request("GET", "models/").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(403);
    expect((error as ApiError).message).toMatch(/^Your role in team vision is viewer/);
  });

  it("gives a sentence for a proxy's HTML error page and for no network", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => new Response("<html>Bad gateway</html>", { status: 502 })),
    );
    expect(((await request("GET", "models/").catch((e: unknown) => e)) as ApiError).message).toMatch(
      /HTTP 502\). Retry in a moment/,
    );
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => Promise.reject(new TypeError("Failed to fetch"))),
    );
    expect(((await request("GET", "models/").catch((e: unknown) => e)) as ApiError).message).toMatch(
      /can't be reached/,
    );
  });

  it("sends the CSRF token on writes and tells listeners when the session ended", async () => {
    document.cookie = "csrftoken=abc123";
    const fetchMock = vi.fn(async () =>
      json({ code: "not_authenticated", message: "Authentication credentials were not provided.", fields: {} }, 401),
    );
    vi.stubGlobal("fetch", fetchMock);
    const ended = vi.fn();
    const stop = onUnauthorized(ended);
    await post("versions/3/approve/", {}).catch(() => undefined);
    stop();
    const init = (fetchMock.mock.calls[0] as unknown as [string, RequestInit])[1];
    expect((init.headers as Record<string, string>)["X-CSRFToken"]).toBe("abc123");
    expect(ended).toHaveBeenCalledTimes(1);
  });

  it("polls with If-None-Match and keeps what it has on 304", async () => {
    const fetchMock = vi
      .fn()
      .mockResolvedValueOnce(json({ id: 1, status: "processing" }, 200, { ETag: '"v1"' }))
      .mockResolvedValueOnce(json(null, 304));
    vi.stubGlobal("fetch", fetchMock);
    const first = await getIfChanged<{ status: string }>("/api/v1/versions/1/", null);
    expect(first).toEqual({ changed: true, data: { id: 1, status: "processing" }, etag: '"v1"' });
    const second = await getIfChanged("/api/v1/versions/1/", '"v1"');
    expect(second).toEqual({ changed: false });
    const init = (fetchMock.mock.calls[1] as [string, RequestInit])[1];
    expect((init.headers as Record<string, string>)["If-None-Match"]).toBe('"v1"');
  });

  it("follows cursor pages on the same origin", async () => {
    const fetchMock = vi
      .fn()
      .mockResolvedValueOnce(
        json({ results: [{ id: 3 }, { id: 2 }], next: "http://testserver/api/v1/models/?cursor=cD0y&page_size=500" }),
      )
      .mockResolvedValueOnce(json({ results: [{ id: 1 }], next: null }));
    vi.stubGlobal("fetch", fetchMock);
    const { items, truncated } = await getAll<{ id: number }>("models/", { team: "vision" });
    expect(items.map((i) => i.id)).toEqual([3, 2, 1]);
    expect(truncated).toBe(false);
    expect(fetchMock.mock.calls.map((c) => c[0])).toEqual([
      "/api/v1/models/?page_size=500&team=vision",
      "/api/v1/models/?cursor=cD0y&page_size=500",
    ]);
  });
});
