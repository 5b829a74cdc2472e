// The reviewer's side of a version: each gate's result, whether an approval still applies,
// the four-eyes rule when it stops you, and the approve / reject (or revoke) form.
import { useId, useState } from "react";
import { ApiError, post } from "../api/client";
import type { Decision, Review } from "../api/types";
import { can, useMe } from "../auth/session";
import { Badge, ErrorMessage, Notice } from "../components/ui";
import { formatNumber } from "../lib/format";
import { decisionBody, validateDecision, type DecisionErrors, type DecisionKind } from "./decision";

function show(value: unknown): string {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return formatNumber(value);
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

export function GatesList({ review }: { review: Review }) {
  if (!review.gates.length) {
    return (
      <p className="muted">No policy gates apply to this version. Team admins add them under the team's policies.</p>
    );
  }
  return (
    <ul className="gates">
      {review.gates.map((gate) => (
        <li key={`${gate.policy_id}-${gate.profile}`} className={gate.passed ? "gate gate-pass" : "gate gate-fail"}>
          <Badge tone={gate.passed ? "ok" : "bad"}>{gate.passed ? "Pass" : "Fail"}</Badge>
          <div>
            <strong>{gate.name}</strong>{" "}
            <span className="muted small">
              ({gate.kind.replace(/_/g, " ")}, {gate.profile})
            </span>
            <p className="gate-message">{gate.message}</p>
            {gate.kind === "measured_evidence" ? (
              // The built-in gate has no number to show: it fails where nothing was measured.
              <p className="muted small">
                Built-in: a profile with nothing measured can't pass, whatever the policies.
              </p>
            ) : (
              <p className="muted small">
                measured {show(gate.value)} · limit {show(gate.threshold)}
              </p>
            )}
          </div>
        </li>
      ))}
    </ul>
  );
}

export function FourEyesNotice({ review }: { review: Review }) {
  if (!review.four_eyes.blocks_you) return null;
  return (
    <Notice kind="warn" title="Four eyes: someone else must review this">
      You uploaded this version, and team <strong>{review.version.team}</strong> requires that whoever uploads a version
      does not approve it. Another approver or a team admin of the team has to decide.
    </Notice>
  );
}

export function DecisionForm({ review, onDecided }: { review: Review; onDecided: (decision: Decision) => void }) {
  const [comment, setComment] = useState("");
  const [overrideReason, setOverrideReason] = useState("");
  const [errors, setErrors] = useState<DecisionErrors>({});
  const [failure, setFailure] = useState<ApiError>();
  const [busy, setBusy] = useState<DecisionKind | null>(null);
  const commentId = useId();
  const overrideId = useId();
  const me = useMe();
  // Without a known session (isolated tests) the API's you_can_review alone decides.
  const hasRole = me === undefined || can(me, review.version.team, "review");
  const approved = review.approval.approved && review.version.status === "approved";
  const decidable = review.version.status === "ready";

  const submit = async (kind: DecisionKind) => {
    const values = { comment, overrideReason };
    const found = validateDecision(kind, values, review.gates_passed);
    setErrors(found);
    setFailure(undefined);
    if (Object.keys(found).length) return;
    setBusy(kind);
    try {
      const decision = await post<Decision>(`versions/${review.version.id}/${kind}/`, decisionBody(kind, values));
      setComment("");
      setOverrideReason("");
      onDecided(decision);
    } catch (err) {
      setFailure(err instanceof ApiError ? err : undefined);
    } finally {
      setBusy(null);
    }
  };

  if (!review.you_can_review) {
    return review.four_eyes.blocks_you && hasRole ? (
      <FourEyesNotice review={review} />
    ) : (
      <p className="muted">
        Only approvers and admins of team {review.version.team} can approve or reject its versions.
      </p>
    );
  }
  if (!decidable && !approved) {
    return (
      <p className="muted">
        This version is {review.version.status.replace(/_/g, " ")}: only versions that are ready for review can be
        approved or rejected.
      </p>
    );
  }
  return (
    <form
      className="form decision-form"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        void submit(approved ? "revoke" : "approve");
      }}
    >
      <div className="field">
        <label htmlFor={commentId}>{approved ? "Why withdraw the approval?" : "Comment"}</label>
        <textarea
          id={commentId}
          className="input"
          rows={3}
          value={comment}
          onChange={(e) => setComment(e.target.value)}
          aria-invalid={errors.comment ? true : undefined}
          aria-describedby={errors.comment ? `${commentId}-err` : `${commentId}-help`}
        />
        {errors.comment ? (
          <p className="field-error" id={`${commentId}-err`}>
            {errors.comment}
          </p>
        ) : (
          <p className="help" id={`${commentId}-help`}>
            {approved ? "Required; stays in the version's history." : "Optional to approve, required to reject."}
          </p>
        )}
      </div>
      {!approved && !review.gates_passed ? (
        <div className="field">
          <label htmlFor={overrideId}>Override reason (a gate failed)</label>
          <textarea
            id={overrideId}
            className="input"
            rows={2}
            value={overrideReason}
            onChange={(e) => setOverrideReason(e.target.value)}
            aria-invalid={errors.overrideReason ? true : undefined}
            aria-describedby={errors.overrideReason ? `${overrideId}-err` : `${overrideId}-help`}
          />
          {errors.overrideReason ? (
            <p className="field-error" id={`${overrideId}-err`}>
              {errors.overrideReason}
            </p>
          ) : (
            <p className="help" id={`${overrideId}-help`}>
              Approving past a failing gate is recorded with this reason.
            </p>
          )}
        </div>
      ) : null}
      {failure ? <ErrorMessage error={failure} title="The decision was not recorded" /> : null}
      <div className="form-actions">
        {approved ? (
          <button type="submit" className="button button-danger" disabled={busy !== null}>
            {busy === "revoke" ? "Revoking…" : "Revoke approval"}
          </button>
        ) : (
          <>
            <button type="submit" className="button button-primary" disabled={busy !== null}>
              {busy === "approve" ? "Approving…" : review.gates_passed ? "Approve" : "Approve with override"}
            </button>
            <button
              type="button"
              className="button button-danger"
              disabled={busy !== null}
              onClick={() => void submit("reject")}
            >
              {busy === "reject" ? "Rejecting…" : "Reject"}
            </button>
          </>
        )}
      </div>
      <p className="muted small">
        Your decision binds to evidence{" "}
        <code title={review.evidence_sha256}>{review.evidence_sha256.slice(0, 12)}…</code>; a re-run makes it stop
        applying.
      </p>
    </form>
  );
}

export function ApprovalLine({ review }: { review: Review }) {
  const { approval } = review;
  if (approval.approved && approval.current) return <Badge tone="ok">Approved, evidence unchanged</Badge>;
  if (approval.approved && !approval.current) return <Badge tone="warn">{approval.reason}</Badge>;
  return <span className="muted">{approval.reason}</span>;
}
