// Re-running a version's pipeline is confirmed first, in a dialog that says what a new run does
// to the reports and to an approval (apps/approvals/services.py `rerun`).
import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes } from "react-router";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SessionProvider } from "../auth/session";
import fixture from "../test/fixtures/mlp-version.json";
import { VersionPage } from "./VersionPage";

function answer(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const me = {
  username: "dana",
  email: "",
  is_superuser: false,
  teams: [{ slug: "default", name: "Default", role: "data_scientist", four_eyes: true, reviewers: 1 }],
};

function serve(version: unknown) {
  const fetchMock = vi.fn(async (url: string, init?: RequestInit) => {
    const path = url.split("?")[0];
    if (init?.method === "POST") return answer({ run_id: 8, version: { id: 2 } }, 202);
    if (path === "/api/v1/session/") return answer(me);
    if (path === "/api/v1/versions/2/") return answer(version);
    if (path === "/api/v1/versions/2/decisions/") return answer([]);
    if (path === "/api/v1/deployments/" || path === "/api/v1/targets/") return answer({ results: [] });
    return answer({ code: "not_found", message: "Not found.", fields: {} }, 404);
  });
  vi.stubGlobal("fetch", fetchMock);
  return fetchMock;
}
afterEach(() => vi.unstubAllGlobals());

function page() {
  return render(
    <SessionProvider>
      <MemoryRouter initialEntries={["/versions/2"]}>
        <Routes>
          <Route path="/versions/:id" element={<VersionPage />} />
        </Routes>
      </MemoryRouter>
    </SessionProvider>,
  );
}

const posts = (fetchMock: ReturnType<typeof vi.fn>) =>
  (fetchMock.mock.calls as [string, RequestInit | undefined][]).filter(([, init]) => init?.method === "POST");

describe("re-running the pipeline", () => {
  it("says the approval stops applying and the reports are replaced; cancelling sends nothing", async () => {
    const user = userEvent.setup();
    const fetchMock = serve({
      ...fixture,
      status: "approved",
      approval: { approved: true, current: true, decision_id: 4, reason: "" },
    });
    page();
    const rerun = await screen.findByRole("button", { name: "Run the pipeline again" });
    await user.click(rerun);
    const dialog = screen.getByRole("dialog", { name: "Run the pipeline of mlp v1 again?" });
    expect(dialog.textContent).toContain("A new pipeline run starts now");
    expect(dialog.textContent).toContain("reports replace the current ones");
    expect(dialog.textContent).toContain("each decision in the history keeps the gate results and evidence hash");
    expect(within(dialog).getByRole("link", { name: "download the current reports" }).getAttribute("href")).toBe(
      "/api/v1/versions/2/report/",
    );
    expect(dialog.textContent).toContain("v1 is approved now; that approval stops applying as soon as the run starts.");
    expect(dialog.textContent).toContain("needs a new review, even if the new evidence turns out the same");
    await user.click(within(dialog).getByRole("button", { name: "Cancel" }));
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(document.activeElement).toBe(rerun);
    expect(posts(fetchMock)).toHaveLength(0);
  });

  it("starts the run once confirmed, with the same request as before", async () => {
    const user = userEvent.setup();
    const fetchMock = serve(fixture);
    page();
    await user.click(await screen.findByRole("button", { name: "Run the pipeline again" }));
    const dialog = screen.getByRole("dialog");
    expect(dialog.textContent).toContain("A reviewer deciding on the current evidence has to wait for the new run.");
    await user.click(within(dialog).getByRole("button", { name: "Run the pipeline again" }));
    expect(posts(fetchMock).map(([url]) => url)).toEqual(["/api/v1/versions/2/rerun/"]);
    expect(screen.queryByRole("dialog")).toBeNull();
  });

  it("offers a new upload instead where a re-run would fail the same way", async () => {
    const blocked =
      "Running the pipeline again would fail the same way: the import step needs what comes with the upload.";
    serve({ ...fixture, status: "failed", status_reason: "Import failed.", rerun_blocked: blocked });
    page();
    const upload = await screen.findByRole("link", { name: "Upload a new version" });
    expect(upload.getAttribute("href")).toBe("/upload?model=mlp&team=default");
    expect(screen.getByText(blocked)).toBeTruthy();
    expect(screen.queryByRole("button", { name: "Run the pipeline again" })).toBeNull();
  });
});
