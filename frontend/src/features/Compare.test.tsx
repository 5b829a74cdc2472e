// The compare view against answers the real API gave (src/test/fixtures/compare-*.json come from
// GET /api/v1/compare/ on versions built by tests/measured.py, with the engine's own intervals).
import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes, useLocation } from "react-router";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { VersionDetail } from "../api/types";
import faster from "../test/fixtures/compare-faster.json";
import same from "../test/fixtures/compare-same.json";
import { ComparePage, CompareWith, latencyParts, rateParts } from "./Compare";

let fetchMock: ReturnType<typeof vi.fn>;

function answer(body: unknown, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function Where() {
  const location = useLocation();
  return <output aria-label="location">{location.pathname + location.search}</output>;
}

function renderAt(url: string) {
  return render(
    <MemoryRouter initialEntries={[url]}>
      <Routes>
        <Route path="/compare" element={<ComparePage />} />
      </Routes>
      <Where />
    </MemoryRouter>,
  );
}

function row(name: RegExp | string) {
  return screen.getByRole("row", { name });
}

beforeEach(() => {
  fetchMock = vi.fn(async () => answer(faster));
  vi.stubGlobal("fetch", fetchMock);
});
afterEach(() => vi.unstubAllGlobals());

describe("the compare view", () => {
  it("reads the two sides from the URL and shows them side by side with their intervals", async () => {
    renderAt("/compare?a=scorer%3A1%2Foriginal&b=scorer%3A2&profile=x86-cpu");
    await screen.findByText(/^scorer v2 \(ort-int8\) against scorer v1 \(original\): 2\.84x-2\.99x faster/);
    expect(fetchMock.mock.calls[0]?.[0]).toBe("/api/v1/compare/?a=scorer%3A1%2Foriginal&b=scorer%3A2&profile=x86-cpu");
    const table = screen.getByRole("table");
    expect(within(table).getByRole("columnheader", { name: "A · scorer v1 · original" })).toBeTruthy();
    expect(within(table).getByRole("columnheader", { name: "B · scorer v2 · ort-int8" })).toBeTruthy();
    // Every latency with its 95% interval, the verdict with its band.
    const p50 = row(/^p50 latency/);
    expect(p50.textContent).toContain("2.9974 ms95%: 2.9935–3.0021 ms");
    expect(p50.textContent).toContain("1.031 ms95%: 1.026–1.037 ms");
    expect(within(p50).getByText("2.89–2.93× faster")).toBeTruthy();
    const cpu = row(/^CPU time per inference/);
    expect(cpu.textContent).toContain("(headline)");
    expect(cpu.textContent).toContain("0.980 ms95%: 0.965–0.995 ms");
    expect(row(/^Throughput/).textContent).toContain("333.55/s95%: 333.31–333.80/s");
    expect(row(/^Throughput/).textContent).toContain("2.90–2.92× higher");
    // Accuracy per output, op support, size.
    expect(row(/^y cosine/).textContent).toBe("y cosine10.9995✕further");
    expect(row(/^Op support/).textContent).toContain("can't run CustomOp");
    expect(row(/^Size/).textContent).toContain("smaller");
    expect(screen.getByText(/^'y' max abs error 0 vs 0\.02: b is further from its original than a/)).toBeTruthy();
  });

  it("says no change where the difference is noise, never a percentage", async () => {
    fetchMock.mockImplementation(async () => answer(same));
    renderAt("/compare?a=scorer%3A1&b=scorer%3A2");
    await screen.findByText(/^scorer v2 \(ort-int8\) against scorer v1 \(ort-int8\): No change/);
    for (const name of [/^p50 latency/, /^p99 latency/, /^CPU time per inference/, /^Throughput/]) {
      expect(within(row(name)).getByText("no change")).toBeTruthy();
    }
    expect(within(row(/^y cosine/)).getByText("same")).toBeTruthy();
    expect(document.body.textContent).not.toMatch(/slower|%\)/);
  });

  it("shows the API's sentence when a side can't be seen, and asks again from the form", async () => {
    fetchMock.mockImplementation(async () =>
      answer({ code: "not_found", message: "There is no model 'fraud-net' in your teams.", fields: {} }, 404),
    );
    const user = userEvent.setup();
    renderAt("/compare?a=fraud-net%3A1&b=scorer%3A2");
    expect((await screen.findByRole("alert")).textContent).toContain("There is no model 'fraud-net' in your teams.");
    fetchMock.mockImplementation(async () => answer(faster));
    const a = screen.getByLabelText("A (before)");
    await user.clear(a);
    await user.type(a, "scorer:1/original");
    await user.type(screen.getByLabelText("Profile"), "x86-cpu");
    await user.click(screen.getByRole("button", { name: "Compare" }));
    expect(screen.getByLabelText("location").textContent).toBe(
      "/compare?a=scorer%3A1%2Foriginal&b=scorer%3A2&profile=x86-cpu",
    );
    await screen.findByText(/^scorer v2 \(ort-int8\) against scorer v1 \(original\)/);
  });

  it("asks for nothing until both sides are given", () => {
    renderAt("/compare");
    expect(screen.getByRole("button", { name: "Compare" })).toBeTruthy();
    expect(fetchMock).not.toHaveBeenCalled();
  });
});

describe("compare with… on a version's page", () => {
  const version = {
    id: 21,
    model: "scorer",
    team: "vision",
    number: 3,
    reports: { optimize: { "x86-cpu": { profile: "x86-cpu", variants: [{ name: "ort-int8" }, { name: "ov-ir" }] } } },
  } as unknown as VersionDetail;

  it("starts from the previous approved version and links to the compare view", async () => {
    fetchMock.mockImplementation(async () =>
      answer({
        results: [
          { id: 21, number: 3, status: "ready" },
          { id: 20, number: 2, status: "rejected" },
          { id: 19, number: 1, status: "approved" },
        ],
        next: null,
      }),
    );
    const user = userEvent.setup();
    render(
      <MemoryRouter initialEntries={["/versions/21"]}>
        <Routes>
          <Route
            path="/versions/21"
            element={<CompareWith version={version} profiles={["nvidia-gpu", "x86-cpu"]} profile="x86-cpu" />}
          />
          <Route path="/compare" element={<Where />} />
        </Routes>
      </MemoryRouter>,
    );
    expect(fetchMock.mock.calls[0]?.[0]).toBe("/api/v1/models/scorer/versions/?page_size=500&team=vision");
    await screen.findByRole("option", { name: "v1 (approved)" });
    expect((screen.getByLabelText("Compare with") as HTMLSelectElement).value).toBe("19");
    await user.selectOptions(screen.getByLabelText("This version's"), "ort-int8");
    await user.click(screen.getByRole("button", { name: "Compare…" }));
    expect(screen.getByLabelText("location").textContent).toBe("/compare?a=19&b=21%2Fort-int8&profile=x86-cpu");
  });

  it("compares two variants of the same version", async () => {
    fetchMock.mockImplementation(async () => answer({ results: [{ id: 21, number: 3, status: "ready" }] }));
    const user = userEvent.setup();
    render(
      <MemoryRouter initialEntries={["/versions/21"]}>
        <Routes>
          <Route
            path="/versions/21"
            element={<CompareWith version={version} profiles={["x86-cpu"]} profile="x86-cpu" />}
          />
          <Route path="/compare" element={<Where />} />
        </Routes>
      </MemoryRouter>,
    );
    await screen.findByRole("option", { name: "this version (v3)" });
    await user.selectOptions(screen.getByLabelText("Its"), "original");
    await user.selectOptions(screen.getByLabelText("This version's"), "ov-ir");
    await user.click(screen.getByRole("button", { name: "Compare…" }));
    expect(screen.getByLabelText("location").textContent).toBe("/compare?a=21%2Foriginal&b=21%2Fov-ir&profile=x86-cpu");
  });
});

describe("latency figures", () => {
  it("keep an interval's two ends apart and switch to µs for tiny times", () => {
    expect(latencyParts(2.9974, 2.9935, 3.0021)).toEqual({ value: "2.9974 ms", interval: "2.9935–3.0021 ms" });
    expect(latencyParts(1.0308, 1.0257, 1.0367)).toEqual({ value: "1.031 ms", interval: "1.026–1.037 ms" });
    expect(latencyParts(0.0061, 0.0059, 0.0064)).toEqual({ value: "6.10 µs", interval: "5.90–6.40 µs" });
    expect(latencyParts(12.5)).toEqual({ value: "12.5 ms", interval: null });
    expect(rateParts(1000.454, 997.062, 1003.846)).toEqual({ value: "1,000.5/s", interval: "997.1–1,003.8/s" });
  });
});
