// What a review decision needs before it is sent; the same rules as apps/approvals/services.py
// (a comment to reject or revoke, an override reason to approve past a failing gate).

export type DecisionKind = "approve" | "reject" | "revoke";

export interface DecisionValues {
  comment: string;
  overrideReason: string;
}

export type DecisionErrors = Partial<Record<keyof DecisionValues, string>>;

export const COMMENT_LIMIT = 10_000;

export function validateDecision(kind: DecisionKind, values: DecisionValues, gatesPassed: boolean): DecisionErrors {
  const errors: DecisionErrors = {};
  const comment = values.comment.trim();
  if ((kind === "reject" || kind === "revoke") && !comment) {
    errors.comment =
      kind === "reject"
        ? "Say why you reject this version, so the uploader knows what to change."
        : "Say why you withdraw the approval; it stays in the version's history.";
  }
  if (kind === "approve" && !gatesPassed && !values.overrideReason.trim()) {
    errors.overrideReason = "A gate failed. To approve anyway, say why the version may go ahead despite it.";
  }
  if (comment.length > COMMENT_LIMIT)
    errors.comment = `Keep the comment under ${COMMENT_LIMIT.toLocaleString("en-US")} characters.`;
  if (values.overrideReason.length > COMMENT_LIMIT)
    errors.overrideReason = `Keep the reason under ${COMMENT_LIMIT.toLocaleString("en-US")} characters.`;
  return errors;
}

export function decisionBody(kind: DecisionKind, values: DecisionValues): Record<string, string> {
  const body: Record<string, string> = { comment: values.comment.trim() };
  if (kind === "approve" && values.overrideReason.trim()) body.override_reason = values.overrideReason.trim();
  return body;
}
