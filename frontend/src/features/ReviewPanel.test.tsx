import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Review } from "../api/types";
import { validateDecision } from "./decision";
import { DecisionForm, GatesList } from "./ReviewPanel";

function review(overrides: Partial<Review> = {}): Review {
  return {
    version: { id: 12, team: "vision", model: "digits", number: 3, status: "ready", url: "/api/v1/versions/12/" },
    evidence: {},
    evidence_sha256: "7b7c11ff73aa4293245bdc193eb007652192872aa88ea2a23d51edf62c0fb469",
    gates: [],
    gates_passed: true,
    approval: { approved: false, current: false, decision_id: null, reason: "The version is not approved." },
    four_eyes: { enabled: true, you_uploaded: false, blocks_you: false },
    you_can_review: true,
    ...overrides,
  };
}

const failingGate = {
  policy_id: 4,
  name: "p99 under 5 ms",
  kind: "max_p99_latency",
  profile: "x86-cpu",
  passed: false,
  value: 8.15,
  threshold: 5,
  message: "p99 at batch 1, concurrency 1 is 8.15 ms; the limit is 5 ms.",
};

let fetchMock: ReturnType<typeof vi.fn>;

beforeEach(() => {
  document.cookie = "csrftoken=tok3n";
  fetchMock = vi.fn(
    async () =>
      new Response(JSON.stringify({ id: 99, kind: "approve" }), {
        status: 201,
        headers: { "Content-Type": "application/json" },
      }),
  );
  vi.stubGlobal("fetch", fetchMock);
});

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("review decisions", () => {
  it("rules: reject and revoke need a comment, approving past a failing gate needs a reason", () => {
    expect(validateDecision("reject", { comment: " ", overrideReason: "" }, true).comment).toMatch(
      /Say why you reject/,
    );
    expect(validateDecision("revoke", { comment: "", overrideReason: "" }, true).comment).toMatch(/withdraw/);
    expect(validateDecision("approve", { comment: "", overrideReason: "" }, true)).toEqual({});
    expect(validateDecision("approve", { comment: "", overrideReason: "" }, false).overrideReason).toMatch(
      /A gate failed/,
    );
    expect(
      validateDecision("approve", { comment: "", overrideReason: "customer demo, latency irrelevant" }, false),
    ).toEqual({});
    expect(validateDecision("approve", { comment: "x".repeat(10_001), overrideReason: "" }, true).comment).toMatch(
      /under 10,000/,
    );
  });

  it("won't send a rejection without a reason", async () => {
    const user = userEvent.setup();
    const onDecided = vi.fn();
    render(<DecisionForm review={review()} onDecided={onDecided} />);
    await user.click(screen.getByRole("button", { name: "Reject" }));
    expect(fetchMock).not.toHaveBeenCalled();
    expect(screen.getByText("Say why you reject this version, so the uploader knows what to change.")).toBeTruthy();
    expect(screen.getByLabelText("Comment").getAttribute("aria-invalid")).toBe("true");

    await user.type(screen.getByLabelText("Comment"), "Parity fails on the int8 variant.");
    await user.click(screen.getByRole("button", { name: "Reject" }));
    expect(fetchMock).toHaveBeenCalledTimes(1);
    const [url, init] = fetchMock.mock.calls[0] as [string, RequestInit];
    expect(url).toBe("/api/v1/versions/12/reject/");
    expect(init.method).toBe("POST");
    expect(JSON.parse(init.body as string)).toEqual({ comment: "Parity fails on the int8 variant." });
    expect((init.headers as Record<string, string>)["X-CSRFToken"]).toBe("tok3n");
    expect(onDecided).toHaveBeenCalled();
  });

  it("asks for an override reason when a gate fails, and sends it", async () => {
    const user = userEvent.setup();
    const r = review({ gates: [failingGate], gates_passed: false });
    render(
      <>
        <GatesList review={r} />
        <DecisionForm review={r} onDecided={vi.fn()} />
      </>,
    );
    expect(screen.getByText("Fail")).toBeTruthy();
    expect(screen.getByText(failingGate.message)).toBeTruthy();
    await user.click(screen.getByRole("button", { name: "Approve with override" }));
    expect(fetchMock).not.toHaveBeenCalled();
    expect(
      screen.getByText("A gate failed. To approve anyway, say why the version may go ahead despite it."),
    ).toBeTruthy();
    await user.type(
      screen.getByLabelText("Override reason (a gate failed)"),
      "Batch jobs only; latency does not matter.",
    );
    await user.click(screen.getByRole("button", { name: "Approve with override" }));
    const [url, init] = fetchMock.mock.calls[0] as [string, RequestInit];
    expect(url).toBe("/api/v1/versions/12/approve/");
    expect(JSON.parse(init.body as string)).toEqual({
      comment: "",
      override_reason: "Batch jobs only; latency does not matter.",
    });
  });

  it("shows a profile with nothing measured as the built-in gate, with the reason and no made-up figures", () => {
    const evidenceGate = {
      policy_id: null,
      name: "Measured evidence",
      kind: "measured_evidence",
      profile: "arm-cpu-mnn",
      passed: false,
      value: null,
      threshold: null,
      message:
        "The arm-cpu-mnn profile has no measured evidence: Benchmark: Nothing could be measured on arm-cpu-mnn: " +
        "every benchmark failed, the original model's included.",
    };
    const r = review({ gates: [evidenceGate, { ...failingGate, passed: true }], gates_passed: false });
    render(
      <>
        <GatesList review={r} />
        <DecisionForm review={r} onDecided={vi.fn()} />
      </>,
    );
    expect(screen.getByText(evidenceGate.message)).toBeTruthy();
    expect(screen.getByText(/Built-in: a profile with nothing measured can't pass/)).toBeTruthy();
    expect(screen.getAllByText(/measured .* · limit/)).toHaveLength(1);
    expect(screen.getByRole("button", { name: "Approve with override" })).toBeTruthy();
  });

  it("shows the API's sentence when the decision is refused", async () => {
    const user = userEvent.setup();
    fetchMock.mockResolvedValueOnce(
      new Response(
        JSON.stringify({
          code: "already_approved",
          message: "v3 was already approved by april; revoke that approval first.",
          fields: {},
        }),
        { status: 409 },
      ),
    );
    const onDecided = vi.fn();
    render(<DecisionForm review={review()} onDecided={onDecided} />);
    await user.click(screen.getByRole("button", { name: "Approve" }));
    expect(screen.getByRole("alert").textContent).toContain(
      "v3 was already approved by april; revoke that approval first.",
    );
    expect(onDecided).not.toHaveBeenCalled();
  });

  it("explains the four-eyes rule instead of offering buttons that would be refused", () => {
    render(
      <DecisionForm
        review={review({ you_can_review: false, four_eyes: { enabled: true, you_uploaded: true, blocks_you: true } })}
        onDecided={vi.fn()}
      />,
    );
    expect(screen.getByText("Four eyes: someone else must review this")).toBeTruthy();
    expect(screen.getByText(/requires that whoever uploads a version does not approve it/)).toBeTruthy();
    expect(screen.queryByRole("button", { name: "Approve" })).toBeNull();
  });

  it("offers to revoke an approval, with a required reason", async () => {
    const user = userEvent.setup();
    render(
      <DecisionForm
        review={review({
          version: { id: 12, team: "vision", model: "digits", number: 3, status: "approved", url: "" },
          approval: { approved: true, current: true, decision_id: 5, reason: "" },
        })}
        onDecided={vi.fn()}
      />,
    );
    await user.click(screen.getByRole("button", { name: "Revoke approval" }));
    expect(fetchMock).not.toHaveBeenCalled();
    expect(screen.getByText(/Say why you withdraw the approval/)).toBeTruthy();
  });
});
