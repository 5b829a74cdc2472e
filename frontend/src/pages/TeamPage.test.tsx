import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes } from "react-router";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { SessionProvider } from "../auth/session";
import { JoinPage, codeFromLocation } from "./JoinPage";
import kinds from "../test/fixtures/policy-kinds.json";
import { TeamPage, policyParams, reviewerAdvice, type PolicyKindSpec } from "./TeamPage";

function answer(body: unknown, status = 200): Response {
  return new Response(body === null ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

const me = (role: string, reviewers = 1) => ({
  username: "ada",
  email: "",
  is_superuser: false,
  teams: [{ slug: "default", name: "Default", role, four_eyes: true, reviewers }],
});

let fetchMock: ReturnType<typeof vi.fn>;
let team: Record<string, unknown>;
function serve(role: string) {
  team = { slug: "default", name: "Default", four_eyes: true, role, members: 1, reviewers: 1, created_at: "" };
  fetchMock = vi.fn(async (url: string, init?: RequestInit) => {
    const method = init?.method ?? "GET";
    if (url.includes("/session/")) return answer(me(role));
    if (url.includes("/invitations/") && method === "POST")
      return answer(
        {
          id: 3,
          role: JSON.parse(String(init?.body)).role,
          note: "Rita",
          prefix: "slwinv_ab12_…",
          state: "pending",
          created_by: "ada",
          created_at: "2026-12-07T10:00:00Z",
          expires_at: "2026-12-14T10:00:00Z",
          accepted_by: null,
          accepted_at: null,
          revoked_at: null,
          code: "slwinv_ab12_secret",
          link: "http://slipway/app/join#code=slwinv_ab12_secret",
        },
        201,
      );
    if (url.includes("/invitations/")) return answer([]);
    if (url.includes("/members/"))
      return answer([{ username: "ada", email: "", role: "admin", created_at: "2026-12-07T10:00:00Z" }]);
    if (url.includes("/policies/kinds/")) return answer(kinds);
    if (url.includes("/policies/") && method === "POST")
      return answer({ id: 9, ...JSON.parse(String(init?.body)) }, 201);
    if (url.includes("/policies/")) return answer({ results: [], next: null });
    if (url.includes("/teams/default/") && method === "PATCH") {
      team = { ...team, ...JSON.parse(String(init?.body)) };
      return answer(team);
    }
    if (url.includes("/teams/default/")) return answer(team);
    return answer({ code: "not_found", message: "Not found." }, 404);
  });
  vi.stubGlobal("fetch", fetchMock);
}

function page(path = "/teams/default") {
  return render(
    <SessionProvider>
      <MemoryRouter initialEntries={[path]}>
        <Routes>
          <Route path="/teams/:slug" element={<TeamPage />} />
          <Route path="/join" element={<JoinPage />} />
        </Routes>
      </MemoryRouter>
    </SessionProvider>,
  );
}

beforeEach(() => serve("admin"));
afterEach(() => {
  vi.unstubAllGlobals();
  sessionStorage.clear();
});

const sent = (part: string, method: string) =>
  fetchMock.mock.calls.filter(([url, init]) => String(url).includes(part) && (init?.method ?? "GET") === method);

describe("team page", () => {
  it("tells a lone admin nothing can be approved, and invites a reviewer with a link shown once", async () => {
    const user = userEvent.setup();
    page();
    expect(await screen.findByText(/nothing that reviewer uploads can be approved/)).toBeTruthy();
    const form = screen.getByRole("form", { name: "Invite someone" });
    await user.type(within(form).getByLabelText("For whom (optional)"), "Rita");
    await user.click(within(form).getByRole("button", { name: "Create invitation" }));
    expect((await screen.findByLabelText("The invitation link")).textContent).toBe(
      "http://slipway/app/join#code=slwinv_ab12_secret",
    );
    const [, init] = sent("/invitations/", "POST")[0]!;
    expect(JSON.parse(String(init.body))).toEqual({ role: "approver", note: "Rita", expires_in_days: 7 });
  });

  it("asks why before single-reviewer mode, and sends the reason", async () => {
    const user = userEvent.setup();
    page();
    await user.click(await screen.findByRole("button", { name: "Switch to single-reviewer mode…" }));
    await user.click(screen.getByRole("button", { name: "Turn four-eyes off" }));
    expect(screen.getByRole("alert").textContent).toMatch(/Say why/);
    expect(sent("/teams/default/", "PATCH")).toHaveLength(0);
    await user.type(screen.getByLabelText("Why"), "a team of one");
    await user.click(screen.getByRole("button", { name: "Turn four-eyes off" }));
    expect(await screen.findByText("Single reviewer")).toBeTruthy();
    expect(JSON.parse(String(sent("/teams/default/", "PATCH")[0]![1].body))).toEqual({
      four_eyes: false,
      reason: "a team of one",
    });
  });

  it("shows a member the team without the admin's controls", async () => {
    serve("viewer");
    page();
    expect(await screen.findByRole("heading", { name: "Members" })).toBeTruthy();
    expect(screen.queryByRole("form", { name: "Invite someone" })).toBeNull();
    expect(screen.queryByRole("button", { name: "Remove" })).toBeNull();
    expect(sent("/invitations/", "GET")).toHaveLength(0);
  });

  it("builds a gate's params as the server's specs check them", () => {
    // the server's own answer (tests/apps/test_review_flow.py keeps this copy equal to it)
    const kind = (name: string) => (kinds as PolicyKindSpec[]).find((k) => k.kind === name)!;
    expect(policyParams(kind("max_accuracy_drift"), {})).toEqual({ errors: { "": "Give at least one limit." } });
    expect(policyParams(kind("max_accuracy_drift"), { min_cosine: "1.5" })).toEqual({
      errors: { min_cosine: "Min cosine must be a number from 0 to 1." },
    });
    expect(policyParams(kind("max_accuracy_drift"), { min_cosine: "0.999" })).toEqual({
      params: { min_cosine: 0.999 },
    });
    expect(policyParams(kind("max_p99_latency"), { max_ms: "20", batch: "2.5" })).toEqual({
      errors: { batch: "Batch must be a whole number of 1 or more." },
    });
    expect(policyParams(kind("max_p99_latency"), { batch: "2" })).toMatchObject({
      errors: { max_ms: /Fill in max ms/ },
    });
    expect(policyParams(kind("max_p99_latency"), { max_ms: "20", concurrency: "4" })).toEqual({
      params: { max_ms: 20, concurrency: 4 },
    });
    expect(policyParams(kind("required_backends_supported"), { backends: "onnxruntime, openvino" })).toEqual({
      params: { backends: ["onnxruntime", "openvino"] },
    });
    expect(policyParams(kind("no_cpu_fallback"), {})).toEqual({ params: {} });
  });

  it("adds a gate from a form built from the kind's specs, saying what a field needs", async () => {
    const user = userEvent.setup();
    serve("admin");
    page();
    const form = await screen.findByRole("form", { name: "Add a gate" });
    await within(form).findByRole("option", { name: "Max p99 latency" });
    await user.selectOptions(within(form).getByLabelText("Kind"), "max_p99_latency");
    expect(within(form).getByLabelText(/^Batch/)).toBeTruthy();
    await user.type(within(form).getByLabelText("Name"), "fast enough");
    await user.type(within(form).getByLabelText(/^Max ms/), "-1");
    await user.click(within(form).getByRole("button", { name: "Add gate" }));
    expect(await within(form).findByText("Max ms must be a number of 0 or more.")).toBeTruthy();
    expect(sent("/policies/", "POST")).toHaveLength(0);
    await user.clear(within(form).getByLabelText(/^Max ms/));
    await user.type(within(form).getByLabelText(/^Max ms/), "20");
    await user.click(within(form).getByRole("button", { name: "Add gate" }));
    expect(JSON.parse(String(sent("/policies/", "POST")[0]![1].body))).toEqual({
      team: "default",
      name: "fast enough",
      kind: "max_p99_latency",
      params: { max_ms: 20 },
    });
  });

  it("advises only where four-eyes leaves no second reviewer", () => {
    expect(reviewerAdvice({ four_eyes: true, reviewers: 2 })).toBeUndefined();
    expect(reviewerAdvice({ four_eyes: false, reviewers: 1 })).toBeUndefined();
    expect(reviewerAdvice({ four_eyes: true, reviewers: 0 })).toMatch(/Nobody/);
  });
});

describe("joining", () => {
  it("reads the code from the link's fragment", () => {
    expect(codeFromLocation("#code=slwinv_a_b")).toBe("slwinv_a_b");
    sessionStorage.setItem("slipway.invitation", "slwinv_kept_c");
    expect(codeFromLocation("")).toBe("slwinv_kept_c");
  });

  it("creates an account and joins, checking the passwords match first", async () => {
    const user = userEvent.setup();
    fetchMock = vi.fn(async (url: string, init?: RequestInit) => {
      if (url.includes("/session/")) return answer({ code: "not_authenticated", message: "Sign in." }, 401);
      if (url.includes("/invitations/preview/"))
        return answer({
          team: "default",
          team_name: "Default",
          role: "approver",
          invited_by: "ada",
          expires_at: "2026-12-14T10:00:00Z",
          state: "pending",
          signed_in_as: null,
        });
      if (url.includes("/invitations/accept/")) return answer(me("approver", 2));
      return answer({ code: "x", message: String(init?.method) }, 404);
    });
    vi.stubGlobal("fetch", fetchMock);
    sessionStorage.setItem("slipway.invitation", "slwinv_ab12_secret");
    page("/join");
    expect(await screen.findByText(/invites you to team/)).toBeTruthy();
    await user.type(screen.getByLabelText("Choose a user name"), "rita");
    await user.type(screen.getByLabelText("Choose a password"), "long enough pw");
    await user.type(screen.getByLabelText("The password again"), "long enough");
    await user.click(screen.getByRole("button", { name: "Create the account and join" }));
    expect(screen.getByRole("alert").textContent).toMatch(/differ/);
    await user.type(screen.getByLabelText("The password again"), " pw");
    await user.click(screen.getByRole("button", { name: "Create the account and join" }));
    const accept = fetchMock.mock.calls.find(([url]) => String(url).includes("/accept/"))!;
    expect(JSON.parse(String(accept[1].body))).toEqual({
      code: "slwinv_ab12_secret",
      username: "rita",
      password: "long enough pw",
    });
  });
});
