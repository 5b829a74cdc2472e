// The reviewer's side of a version: each gate's result, whether an approval still applies,
// the four-eyes rule when it stops you, and the approve / reject (or revoke) form, whose
// decisions are confirmed in a dialog that says what they do and quotes the review's warnings.
import { useId, useState } from "react";
import { ApiError, get, post } from "../api/client";
import type { Decision, Review, VersionDetail } from "../api/types";
import { can, useMe } from "../auth/session";
import { Badge, ConfirmDialog, ErrorMessage, Notice } from "../components/ui";
import { formatNumber } from "../lib/format";
import { useResource } from "../lib/hooks";
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

/** A warning the review shows, as the confirmation quotes it: where it comes from, and its words. */
export interface QuotedWarning {
  source: string;
  text: string;
}

type PreviousApproved = VersionDetail["previous_approved"];

interface ProfileWarnings {
  measured_on_other_hardware?: string;
  measured_on?: { kind?: string; name?: string; emulation?: string };
}

/**
 * Every warning a reviewer is shown about the version, in the words the page uses: failing
 * gates (the built-in one included, which carries a profile's missing evidence), figures
 * measured on hardware that is not the profile's, timings taken under emulation, and, against
 * the previous approved version, a slowdown or accuracy further from the original.
 */
export function reviewWarnings(review: Review, previous?: PreviousApproved): QuotedWarning[] {
  const warnings: QuotedWarning[] = review.gates
    .filter((gate) => !gate.passed)
    .map((gate) => ({ source: `Gate "${gate.name}" fails on ${gate.profile}`, text: gate.message }));
  const evidence = (review.evidence ?? {}) as { profiles?: Record<string, ProfileWarnings> };
  for (const [slug, profile] of Object.entries(evidence.profiles ?? {})) {
    if (profile.measured_on_other_hardware) {
      warnings.push({ source: `${slug}: measured on other hardware`, text: profile.measured_on_other_hardware });
    }
    const emulation = profile.measured_on?.emulation;
    if (emulation) {
      warnings.push({
        source: `${slug}: emulated timings`,
        text:
          `These timings were measured under ${emulation}, not on the device` +
          `${profile.measured_on?.name ? ` (${profile.measured_on.name})` : ""}; the recommendation ranks by ` +
          "accuracy and size only.",
      });
    }
  }
  for (const [slug, comparison] of Object.entries(previous?.profiles ?? {})) {
    const headline = comparison.latency.find((c) => c.what === comparison.headline);
    if (headline?.verdict === "slower") {
      warnings.push({
        source: `${slug}: slower than approved v${previous?.number}`,
        text: `This version is slower than approved v${previous?.number} beyond the measurement's noise: ${headline.sentence}`,
      });
    }
    const further = comparison.accuracy.filter((c) => c.verdict === "further");
    if (further.length) {
      warnings.push({
        source: `${slug}: less accurate than approved v${previous?.number}`,
        text: `Further from the original than approved v${previous?.number}: ${further.map((c) => c.sentence).join(" ")}`,
      });
    }
  }
  return warnings;
}

function Quoted({ label, text }: { label: string; text: string }) {
  return (
    <p>
      {label} <q>{text}</q>
    </p>
  );
}

/** What approving does, with every warning quoted; the comparison with the previous approved
 * version is read fresh when the dialog opens, and the button waits for it. */
function ApproveDialog({
  review,
  comment,
  overrideReason,
  onConfirm,
  onClose,
}: {
  review: Review;
  comment: string;
  overrideReason: string;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const { version } = review;
  const detail = useResource(
    (signal) => get<VersionDetail>(`versions/${version.id}/`, undefined, signal),
    [version.id],
  );
  const comparing = detail.loading && !detail.error;
  const warnings = reviewWarnings(review, detail.data?.previous_approved);
  return (
    <ConfirmDialog
      title={`Approve ${version.model} v${version.number}?`}
      confirmLabel={review.gates_passed ? `Approve v${version.number}` : `Approve v${version.number} with override`}
      busyLabel="Approving…"
      tone="primary"
      confirmDisabled={comparing}
      onConfirm={onConfirm}
      onClose={onClose}
    >
      <p>
        Your approval binds to evidence{" "}
        <code title={review.evidence_sha256}>{review.evidence_sha256.slice(0, 12)}…</code> (what this review shows) and
        makes v{version.number} deployable: whoever may deploy in team {version.team} can then put it on the team's
        serving targets. If that evidence changes (a re-run or a changed artifact), the approval stops applying and the
        version needs a new review.
      </p>
      {warnings.length ? (
        <div className="confirm-warnings">
          <p>
            <strong>
              You approve despite {warnings.length === 1 ? "this warning" : `these ${warnings.length} warnings`}:
            </strong>
          </p>
          <ul>
            {warnings.map((w, i) => (
              <li key={i}>
                <strong>{w.source}</strong>
                <blockquote>{w.text}</blockquote>
              </li>
            ))}
          </ul>
        </div>
      ) : comparing ? null : (
        <p>The review shows no warnings{review.gates.length ? ": every gate passes" : ""}.</p>
      )}
      {comparing ? (
        <p className="muted" role="status">
          Comparing with the previous approved version…
        </p>
      ) : detail.error ? (
        <p className="text-warn">
          The comparison with the previous approved version could not be read ({detail.error.message}); look at the
          Recommendation section before approving.
        </p>
      ) : null}
      {overrideReason.trim() ? (
        <Quoted label="Your override reason, recorded with the approval:" text={overrideReason.trim()} />
      ) : null}
      {comment.trim() ? <Quoted label="Your comment:" text={comment.trim()} /> : null}
      {review.four_eyes.you_uploaded ? (
        <p>
          You uploaded this version: the approval is recorded as a single reviewer's, as the team's single-reviewer mode
          (four-eyes off) allows.
        </p>
      ) : null}
    </ConfirmDialog>
  );
}

export function DecisionForm({ review, onDecided }: { review: Review; onDecided: (decision: Decision) => void }) {
  const [comment, setComment] = useState("");
  const [overrideReason, setOverrideReason] = useState("");
  const [errors, setErrors] = useState<DecisionErrors>({});
  const [failure, setFailure] = useState<ApiError>();
  const [busy, setBusy] = useState<DecisionKind | null>(null);
  const [asking, setAsking] = useState<DecisionKind | null>(null);
  const commentId = useId();
  const overrideId = useId();
  const me = useMe();
  // Without a known session (isolated tests) the API's you_can_review alone decides.
  const hasRole = me === undefined || can(me, review.version.team, "review");
  const approved = review.approval.approved && review.version.status === "approved";
  const decidable = review.version.status === "ready";

  // A decision that passes the form's rules is asked about first; only the dialog sends it.
  const submit = (kind: DecisionKind) => {
    const found = validateDecision(kind, { comment, overrideReason }, review.gates_passed);
    setErrors(found);
    setFailure(undefined);
    if (!Object.keys(found).length) setAsking(kind);
  };
  const send = async (kind: DecisionKind) => {
    setBusy(kind);
    try {
      const decision = await post<Decision>(
        `versions/${review.version.id}/${kind}/`,
        decisionBody(kind, { comment, overrideReason }),
      );
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
    if (review.four_eyes.blocks_you && hasRole) return <FourEyesNotice review={review} />;
    if (review.four_eyes.you_uploaded && hasRole && review.version.status !== "ready") {
      // Someone else has decided: say where things stand, not that a review is still owed.
      return (
        <p className="muted">
          This version is {review.version.status.replace(/_/g, " ")}. Another reviewer decided, as the four-eyes rule
          asks; the decision and its evidence are in the version's history.
        </p>
      );
    }
    return (
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
        submit(approved ? "revoke" : "approve");
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
              onClick={() => submit("reject")}
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
      {asking === "approve" ? (
        <ApproveDialog
          review={review}
          comment={comment}
          overrideReason={overrideReason}
          onConfirm={() => send("approve")}
          onClose={() => setAsking(null)}
        />
      ) : asking === "reject" ? (
        <ConfirmDialog
          title={`Reject ${review.version.model} v${review.version.number}?`}
          confirmLabel={`Reject v${review.version.number}`}
          busyLabel="Rejecting…"
          onConfirm={() => send("reject")}
          onClose={() => setAsking(null)}
        >
          <p>
            v{review.version.number} is marked rejected: it can't be approved or deployed. To be reviewed again it needs
            its pipeline re-run, or a new version uploaded.
          </p>
          <Quoted label="Your comment tells the uploader why:" text={comment.trim()} />
        </ConfirmDialog>
      ) : asking === "revoke" ? (
        <ConfirmDialog
          title={`Revoke the approval of ${review.version.model} v${review.version.number}?`}
          confirmLabel={`Revoke approval of v${review.version.number}`}
          busyLabel="Revoking…"
          onConfirm={() => send("revoke")}
          onClose={() => setAsking(null)}
        >
          {review.approval.current ? (
            <p>
              v{review.version.number} stops being deployable: new deployments of it are refused, one still waiting for
              a worker fails when the worker checks the approval again, and no rollback can bring it back onto a target.
            </p>
          ) : (
            <p>
              v{review.version.number} can't be deployed already (its evidence changed since the approval); revoking
              also stops rollbacks from bringing it back onto a target.
            </p>
          )}
          <p>
            <strong>Deployments of it that are live now stay live</strong> until someone rolls them back or undeploys
            them (under Deployments).
          </p>
          <p>To approve it again, its pipeline has to be re-run for a new review.</p>
          <Quoted label="Your reason, kept in the version's history:" text={comment.trim()} />
        </ConfirmDialog>
      ) : null}
    </form>
  );
}

export function ApprovalLine({ review }: { review: Review }) {
  const { approval } = review;
  if (approval.approved && approval.current) return <Badge tone="ok">Approved, evidence unchanged</Badge>;
  if (approval.approved && !approval.current) return <Badge tone="warn">{approval.reason}</Badge>;
  return <span className="muted">{approval.reason}</span>;
}
