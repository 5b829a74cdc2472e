// A model with no versions (registered by hand, never used) can be deleted from its page; one
// with versions can't: they are evidence.
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes, useLocation } from "react-router";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SessionProvider } from "../auth/session";
import { ModelPage } from "./ModelPage";

function answer(body: unknown, status = 200): Response {
  return new Response(body === null ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

const me = {
  username: "dana",
  email: "",
  is_superuser: false,
  teams: [{ slug: "vision", name: "Vision", role: "data_scientist", four_eyes: true, reviewers: 1 }],
};
const model = {
  id: 3,
  team: "vision",
  name: "typo",
  slug: "typo",
  description: "",
  created_by: "dana",
  created_at: "2026-12-07T10:00:00Z",
  latest_version: null,
};
const version = {
  id: 9,
  team: "vision",
  model: "typo",
  number: 1,
  framework: "onnx",
  status: "ready",
  status_reason: "",
  status_changed_at: "2026-12-07T10:00:00Z",
  notes: "",
  input_spec: [],
  created_by: "dana",
  created_at: "2026-12-07T10:00:00Z",
};

function serve(versions: unknown[]) {
  const fetchMock = vi.fn(async (url: string, init?: RequestInit) => {
    if (url.includes("/session/")) return answer(me);
    if (url.includes("/versions/")) return answer({ results: versions, next: null });
    if (url.includes("/models/typo/") && init?.method === "DELETE") return answer(null, 204);
    if (url.includes("/models/typo/")) return answer(model);
    return answer({ code: "not_found", message: "Not found." }, 404);
  });
  vi.stubGlobal("fetch", fetchMock);
  return fetchMock;
}
afterEach(() => vi.unstubAllGlobals());

function Where() {
  return <output aria-label="location">{useLocation().pathname}</output>;
}

function page() {
  return render(
    <SessionProvider>
      <MemoryRouter initialEntries={["/models/typo?team=vision"]}>
        <Routes>
          <Route path="/models/:slug" element={<ModelPage />} />
          <Route path="/models" element={<p>the models page</p>} />
        </Routes>
        <Where />
      </MemoryRouter>
    </SessionProvider>,
  );
}

describe("ModelPage", () => {
  it("deletes an empty model after a confirmation, then shows the models", async () => {
    const user = userEvent.setup();
    const fetchMock = serve([]);
    page();
    await user.click(await screen.findByRole("button", { name: "Delete this empty model" }));
    expect(fetchMock.mock.calls.some(([, init]) => init?.method === "DELETE")).toBe(false);
    await user.click(screen.getByRole("button", { name: "Delete the model typo" }));
    const deleted = fetchMock.mock.calls.find(([, init]) => init?.method === "DELETE");
    expect(deleted?.[0]).toBe("/api/v1/models/typo/?team=vision");
    expect(await screen.findByText("the models page")).toBeTruthy();
    expect(screen.getByLabelText("location").textContent).toBe("/models");
  });

  it("offers no delete for a model with versions", async () => {
    serve([version]);
    page();
    expect(await screen.findByRole("link", { name: "v1" })).toBeTruthy();
    expect(screen.queryByRole("button", { name: "Delete this empty model" })).toBeNull();
  });
});
