import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Review } from "../api/types";
import slower from "../test/fixtures/previous-approved-slower.json";
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

function json(body: unknown, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

/** The decisions sent (POSTs), without the reads the confirmation makes. */
function posts(): [string, RequestInit][] {
  return (fetchMock.mock.calls as [string, RequestInit][]).filter(([, init]) => init.method === "POST");
}

beforeEach(() => {
  document.cookie = "csrftoken=tok3n";
  fetchMock = vi.fn(async (_url: string, init: RequestInit) =>
    init.method === "GET"
      ? json({ id: 12, model: "digits", number: 3, previous_approved: null }) // read by the approve confirmation
      : json({ id: 99, kind: "approve" }, 201),
  );
  vi.stubGlobal("fetch", fetchMock);
});

afterEach(() => {
  vi.unstubAllGlobals();
});

async function waitForEnabled(button: HTMLElement) {
  await waitFor(() => expect((button as HTMLButtonElement).disabled).toBe(false));
}

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
    const dialog = screen.getByRole("dialog", { name: "Reject digits v3?" });
    expect(dialog.textContent).toContain("Parity fails on the int8 variant.");
    expect(fetchMock).not.toHaveBeenCalled();
    await user.click(within(dialog).getByRole("button", { name: "Reject v3" }));
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
    const dialog = screen.getByRole("dialog", { name: "Approve digits v3?" });
    // The failing gate is quoted, with the reason the approval will carry.
    expect(within(dialog).getByText('Gate "p99 under 5 ms" fails on x86-cpu')).toBeTruthy();
    expect(within(dialog).getByText(failingGate.message)).toBeTruthy();
    expect(dialog.textContent).toContain("Batch jobs only; latency does not matter.");
    const confirm = await within(dialog).findByRole("button", { name: "Approve v3 with override" });
    await waitForEnabled(confirm);
    expect(posts()).toHaveLength(0);
    await user.click(confirm);
    const [url, init] = posts()[0] as [string, RequestInit];
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
    fetchMock.mockImplementation(async (_url: string, init: RequestInit) =>
      init.method === "GET"
        ? json({ id: 12, previous_approved: null })
        : json(
            {
              code: "already_approved",
              message: "v3 was already approved by april; revoke that approval first.",
              fields: {},
            },
            409,
          ),
    );
    const onDecided = vi.fn();
    render(<DecisionForm review={review()} onDecided={onDecided} />);
    await user.click(screen.getByRole("button", { name: "Approve" }));
    const confirm = screen.getByRole("button", { name: "Approve v3" });
    await waitForEnabled(confirm);
    await user.click(confirm);
    expect(screen.queryByRole("dialog")).toBeNull();
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

  it("tells the uploader another reviewer decided, once one has", () => {
    render(
      <DecisionForm
        review={review({
          version: {
            id: 12,
            team: "vision",
            model: "digits",
            number: 3,
            status: "approved",
            url: "/api/v1/versions/12/",
          },
          you_can_review: false,
          four_eyes: { enabled: true, you_uploaded: true, blocks_you: false },
        })}
        onDecided={vi.fn()}
      />,
    );
    expect(screen.queryByText("Four eyes: someone else must review this")).toBeNull();
    expect(screen.getByText(/This version is approved. Another reviewer decided/)).toBeTruthy();
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
    expect(screen.queryByRole("dialog")).toBeNull();

    await user.type(screen.getByLabelText("Why withdraw the approval?"), "The parity data was wrong.");
    await user.click(screen.getByRole("button", { name: "Revoke approval" }));
    const dialog = screen.getByRole("dialog", { name: "Revoke the approval of digits v3?" });
    expect(dialog.textContent).toContain("v3 stops being deployable");
    expect(dialog.textContent).toContain("Deployments of it that are live now stay live");
    expect(dialog.textContent).toContain("The parity data was wrong.");
    await user.click(within(dialog).getByRole("button", { name: "Revoke approval of v3" }));
    const [url, init] = posts()[0] as [string, RequestInit];
    expect(url).toBe("/api/v1/versions/12/revoke/");
    expect(JSON.parse(init.body as string)).toEqual({ comment: "The parity data was wrong." });
  });
});

describe("the approve confirmation", () => {
  const otherHardware =
    "Measured on ci-runner-3 (x86_64, AMD EPYC 7B13), which is not the hardware arm-cpu-mnn names (arch aarch64): " +
    "arch is x86_64. Its op support, parity and timings are not that hardware's; re-run the pipeline once a worker " +
    "that meets the profile serves it.";

  it("quotes the regression against the previous approved version and the hardware warning", async () => {
    const user = userEvent.setup();
    let release = () => {};
    const answered = new Promise<void>((resolve) => (release = resolve));
    fetchMock.mockImplementation(async (_url: string, init: RequestInit) => {
      if (init.method !== "GET") return json({ id: 99, kind: "approve" }, 201);
      await answered;
      return json({ id: 12, previous_approved: slower });
    });
    const r = review({
      evidence: {
        profiles: {
          "x86-cpu": {},
          "arm-cpu-mnn": { measured_on_other_hardware: otherHardware },
          "rk3588-npu": { measured_on: { kind: "device", name: "rock-5b", emulation: "qemu-aarch64" } },
        },
      },
    });
    render(<DecisionForm review={r} onDecided={vi.fn()} />);
    await user.click(screen.getByRole("button", { name: "Approve" }));
    const dialog = screen.getByRole("dialog", { name: "Approve digits v3?" });
    expect(dialog.textContent).toContain("binds to evidence 7b7c11ff73aa…");
    expect(dialog.textContent).toContain("makes v3 deployable");
    // The confirm button waits for the comparison, so no warning can be skipped by a quick click.
    expect(within(dialog).getByRole("button", { name: "Approve v3" })).toHaveProperty("disabled", true);
    expect(within(dialog).getByRole("status").textContent).toBe("Comparing with the previous approved version…");
    release();
    expect(await within(dialog).findByText("x86-cpu: slower than approved v1")).toBeTruthy();
    await waitForEnabled(within(dialog).getByRole("button", { name: "Approve v3" }));
    expect(dialog.textContent).toContain(
      "This version is slower than approved v1 beyond the measurement's noise: 1.57x-1.63x slower by CPU time per inference",
    );
    expect(dialog.textContent).toContain("Further from the original than approved v1: 'y' cosine 0.999 vs 0.99");
    expect(within(dialog).getByText(otherHardware)).toBeTruthy();
    expect(dialog.textContent).toContain("measured under qemu-aarch64, not on the device (rock-5b)");
    expect(dialog.textContent).toContain("You approve despite these 4 warnings:");
    expect(fetchMock.mock.calls[0]?.[0]).toBe("/api/v1/versions/12/");
  });

  it("sends nothing when cancelled, by the button or by Escape, and gives focus back", async () => {
    const user = userEvent.setup();
    const onDecided = vi.fn();
    render(<DecisionForm review={review()} onDecided={onDecided} />);
    const approve = screen.getByRole("button", { name: "Approve" });
    await user.click(approve);
    const dialog = screen.getByRole("dialog", { name: "Approve digits v3?" });
    expect(document.activeElement?.textContent).toBe("Cancel");
    expect(await within(dialog).findByText("The review shows no warnings.")).toBeTruthy();
    await user.click(within(dialog).getByRole("button", { name: "Cancel" }));
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(document.activeElement).toBe(approve);

    await user.click(approve);
    expect(screen.getByRole("dialog")).toBeTruthy();
    await user.keyboard("{Escape}");
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(posts()).toHaveLength(0);
    expect(onDecided).not.toHaveBeenCalled();
  });

  it("sends the same approval as before once confirmed", async () => {
    const user = userEvent.setup();
    const onDecided = vi.fn();
    render(<DecisionForm review={review()} onDecided={onDecided} />);
    await user.type(screen.getByLabelText("Comment"), "Looks good.");
    await user.click(screen.getByRole("button", { name: "Approve" }));
    const confirm = screen.getByRole("button", { name: "Approve v3" });
    await waitForEnabled(confirm);
    await user.click(confirm);
    expect(posts()).toHaveLength(1);
    const [url, init] = posts()[0] as [string, RequestInit];
    expect(url).toBe("/api/v1/versions/12/approve/");
    expect(JSON.parse(init.body as string)).toEqual({ comment: "Looks good." });
    expect((init.headers as Record<string, string>)["X-CSRFToken"]).toBe("tok3n");
    expect(onDecided).toHaveBeenCalled();
    expect(screen.queryByRole("dialog")).toBeNull();
  });
});
