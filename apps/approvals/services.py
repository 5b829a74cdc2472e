"""Every write of the review flow: approve, reject, revoke, re-run, policies; and what happens
when a pipeline finishes (gates evaluated, approvers told, webhooks sent).

Each decision is checked in this order, so the first problem is the one a user reads: the
user may see the version (404), their role allows it (403), the version is in a state
that allows it (409), the four-eyes rule (403), the request itself (400), the gates (409).
Nothing changes unless every check passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from rest_framework import status

from apps.accounts.models import Team
from apps.accounts.permissions import Action, require
from apps.approvals import gates
from apps.approvals.evidence import collect_evidence, evidence_hash
from apps.approvals.models import Decision, DecisionKind, Policy
from apps.audit import services as audit
from apps.core.api.errors import ApiError, Conflict
from apps.hardware.models import HardwareProfile
from apps.pipeline import services as jobs
from apps.registry import lifecycle
from apps.registry.models import ModelVersion, RegisteredModel, VersionStatus

COMMENT_LIMIT = 10_000


def version_payload(version: ModelVersion) -> dict[str, Any]:
    """How webhooks, emails and the audit trail name a version."""
    return {
        "id": version.pk,
        "team": version.model.team.slug,
        "model": version.model.slug,
        "number": version.number,
        "status": version.status,
        "url": f"/api/v1/versions/{version.pk}/",
    }


def policies_for(version: ModelVersion) -> QuerySet[Policy]:
    """The team's policies for every model, and this model's own."""
    return (
        Policy.objects.filter(team=version.model.team)
        .filter(Q(model__isnull=True) | Q(model=version.model))
        .select_related("profile")
        .order_by("id")
    )


@dataclass(frozen=True)
class Review:
    """What a reviewer sees: the evidence, its hash, each gate's result, and whether the
    version's approval (if any) still applies."""

    evidence: dict[str, Any]
    evidence_sha256: str
    gates: list[gates.GateResult]

    @property
    def gates_passed(self) -> bool:
        return all(gate.passed for gate in self.gates)


def review(version: ModelVersion) -> Review:
    evidence = collect_evidence(version)
    return Review(evidence, evidence_hash(evidence), gates.evaluate(policies_for(version), evidence))


def latest_approval(version: ModelVersion) -> Decision | None:
    return version.decisions.filter(kind=DecisionKind.APPROVE).order_by("-id").first()


def approval_state(version: ModelVersion) -> dict[str, Any]:
    """Whether an approval applies now: the version is approved and its evidence is unchanged."""
    decision = latest_approval(version) if version.status == VersionStatus.APPROVED else None
    if decision is None:
        return {"approved": False, "current": False, "decision_id": None, "reason": "The version is not approved."}
    try:
        current = evidence_hash(collect_evidence(version)) == decision.evidence_sha256
    except ApiError:
        current = False
    reason = (
        "Approved on the current evidence."
        if current
        else "The evidence changed since the approval (a re-run or a changed artifact); it needs a new review."
    )
    return {"approved": True, "current": current, "decision_id": decision.pk, "reason": reason}


def _locked(version: ModelVersion) -> ModelVersion:
    return (
        ModelVersion.objects.select_for_update(of=("self",))
        .select_related("model__team", "created_by")
        .get(pk=version.pk)
    )


_STATE_SENTENCES: dict[str, str] = {
    VersionStatus.RECEIVED: "its pipeline has not started yet; wait for it to finish",
    VersionStatus.PROCESSING: "its pipeline is still running; wait for it to finish",
    VersionStatus.FAILED: "its pipeline failed; fix the problem and re-run it first",
    VersionStatus.APPROVED: "it is already approved",
    VersionStatus.REJECTED: "it was rejected; re-run its pipeline or upload a new version",
    VersionStatus.REVOKED: "its approval was revoked; re-run its pipeline for a new review",
}


def _refuse_state(version: ModelVersion, doing: str) -> ApiError:
    why = _STATE_SENTENCES.get(version.status, f"it is {version.status}")
    if version.status == VersionStatus.APPROVED and (decision := latest_approval(version)) is not None:
        why = f"it was already approved by {decision.actor.get_username()} on {decision.created_at:%Y-%m-%d %H:%M} UTC"
    return Conflict(
        f"version_{version.status}",
        f"Version {version.number} of {version.model.slug} can't be {doing}: {why}.",
    )


def _clean_comment(comment: str, required: bool, doing: str) -> str:
    comment = (comment or "").strip()
    if required and not comment:
        raise ApiError("comment_required", f"Say why in a comment: {doing} a version needs one.")
    if len(comment) > COMMENT_LIMIT:
        raise ApiError("comment_too_long", f"The comment is longer than {COMMENT_LIMIT} characters; shorten it.")
    return comment


def _emit(team: Team, event: str, payload: dict[str, Any]) -> None:
    from apps.webhooks.services import emit

    emit(team, event, payload)


def _decide(
    version: ModelVersion,
    user: Any,
    kind: str,
    comment: str,
    current: Review | None,
    target: str,
    override_reason: str = "",
) -> Decision:
    single_reviewer = kind == DecisionKind.APPROVE and version.created_by_id == user.pk
    decision = Decision.objects.create(
        version=version,
        kind=kind,
        actor=user,
        comment=comment,
        evidence=current.evidence if current else {},
        evidence_sha256=current.evidence_sha256 if current else "",
        gates=[g.to_dict() for g in current.gates] if current else [],
        gates_passed=current.gates_passed if current else True,
        override_reason=override_reason,
        single_reviewer=single_reviewer,
    )
    lifecycle.transition(version, target, reason=f"{decision.get_kind_display().lower()}: {comment}"[:2000], actor=user)
    audit.record(
        f"version.{DecisionKind(kind).label.lower()}",
        version,
        actor=user,
        after={
            "decision_id": decision.pk,
            "comment": comment,
            "evidence_sha256": decision.evidence_sha256,
            "gates_passed": decision.gates_passed,
            "override_reason": override_reason,
            "single_reviewer": single_reviewer,
        },
    )
    _emit(
        version.model.team,
        f"version.{DecisionKind(kind).label.lower()}",
        {
            "version": version_payload(version),
            "decision": {
                "id": decision.pk,
                "by": user.get_username(),
                "comment": comment,
                "evidence_sha256": decision.evidence_sha256,
                "gates_passed": decision.gates_passed,
                "override_reason": override_reason,
                "single_reviewer": single_reviewer,
            },
        },
    )
    return decision


def approve(version: ModelVersion, user: Any, comment: str = "", override_reason: str = "") -> Decision:
    """Approve a version ready for review, binding the approval to its current evidence.

    A failing gate needs `override_reason`, which is recorded with the decision."""
    require(user, version.model.team, Action.REVIEW)
    with transaction.atomic():
        version = _locked(version)
        if version.status != VersionStatus.READY:
            raise _refuse_state(version, "approved")
        team = version.model.team
        if version.four_eyes and version.created_by_id == user.pk:
            rule = (
                f"team {team.slug} follows the four-eyes rule"
                if team.four_eyes
                else f"team {team.slug} followed the four-eyes rule when it was uploaded (or since), and turning "
                "the rule off applies only to versions uploaded afterwards"
            )
            raise ApiError(
                "four_eyes",
                f"You uploaded version {version.number} of {version.model.slug}, so you can't approve it: {rule}. "
                "Ask another approver to review it.",
                status.HTTP_403_FORBIDDEN,
            )
        comment = _clean_comment(comment, required=False, doing="approving")
        override_reason = (override_reason or "").strip()
        current = review(version)
        profiles = current.evidence.get("profiles") or {}
        if profiles and all(p.get("evidence_missing") for p in profiles.values()):
            # An override vouches for a judgement on numbers; with no numbers at all there is
            # nothing to vouch for (docs/adr/0009).
            missing = " ".join(p["evidence_missing"] for p in profiles.values())
            raise Conflict(
                "no_measured_evidence",
                f"Version {version.number} of {version.model.slug} can't be approved: nothing was measured on any "
                f"of its profiles. {missing} Fix the cause and re-run its pipeline; an override can't stand in "
                "for evidence.",
            )
        if not current.gates_passed and not override_reason:
            failing = "; ".join(f"{g.name} ({g.profile}): {g.message}" for g in current.gates if not g.passed)
            raise Conflict(
                "gates_failed",
                f"Version {version.number} fails its gates: {failing} To approve it anyway, give an "
                "override_reason saying why; it is recorded with the approval.",
            )
        if current.gates_passed:
            override_reason = ""
        return _decide(version, user, DecisionKind.APPROVE, comment, current, VersionStatus.APPROVED, override_reason)


def reject(version: ModelVersion, user: Any, comment: str) -> Decision:
    """Reject a version ready for review; the comment tells the data scientist why."""
    require(user, version.model.team, Action.REVIEW)
    with transaction.atomic():
        version = _locked(version)
        if version.status != VersionStatus.READY:
            raise _refuse_state(version, "rejected")
        comment = _clean_comment(comment, required=True, doing="rejecting")
        return _decide(version, user, DecisionKind.REJECT, comment, review(version), VersionStatus.REJECTED)


def revoke(version: ModelVersion, user: Any, comment: str) -> Decision:
    """Withdraw an approval. The version's history keeps both decisions."""
    require(user, version.model.team, Action.REVIEW)
    with transaction.atomic():
        version = _locked(version)
        if version.status != VersionStatus.APPROVED:
            raise Conflict(
                "not_approved",
                f"Version {version.number} of {version.model.slug} is {VersionStatus(version.status).label.lower()}, "
                "not approved; there is no approval to revoke.",
            )
        comment = _clean_comment(comment, required=True, doing="revoking")
        return _decide(version, user, DecisionKind.REVOKE, comment, None, VersionStatus.REVOKED)


RERUNNABLE = frozenset(
    {VersionStatus.READY, VersionStatus.FAILED, VersionStatus.REJECTED, VersionStatus.REVOKED, VersionStatus.APPROVED}
)


# Failures a re-run would repeat: what the step needs comes with the upload (an input signature
# the file does not record), so the way on is a new upload, not the same pipeline again.
FIXED_BY_A_NEW_UPLOAD = frozenset({"inputs_required"})


def rerun_blocker(version: ModelVersion) -> str:
    """Why running the version's pipeline again would fail the same way, or "" when it may not:
    its latest run failed on something only a new upload can give."""
    from apps.pipeline.models import JobStatus

    run = version.runs.order_by("-created_at", "-pk").first()
    if run is None:
        return ""
    job = run.jobs.filter(status=JobStatus.FAILED, error_code__in=FIXED_BY_A_NEW_UPLOAD).order_by("sequence").first()
    if job is None:
        return ""
    return (
        f"Running the pipeline again would fail the same way: the {job.kind} step needs what comes with the "
        "upload (the model's input signature, which this file does not record), and a version's upload can't "
        "change. Upload the model again as a new version with its input signature: the 'inputs' field of the "
        "API, `slipway push --inputs`, or the upload form's input signature."
    )


def rerun(version: ModelVersion, user: Any) -> Any:
    """Run the version's pipeline again. New evidence replaces the old, so an approval of
    this version stops applying and it goes back to review when the run finishes."""
    require(user, version.model.team, Action.UPLOAD)
    with transaction.atomic():
        version = _locked(version)
        if version.status not in RERUNNABLE:
            raise Conflict(
                f"version_{version.status}",
                f"Version {version.number} of {version.model.slug} is "
                f"{VersionStatus(version.status).label.lower()}; wait for its pipeline to finish before re-running it.",
            )
        blocker = rerun_blocker(version)
        if blocker:
            raise Conflict("rerun_cannot_help", blocker)
        return jobs.start_pipeline(version, user)


# ---- the four-eyes rule --------------------------------------------------------------------
# A version keeps the strictest rule in force since its upload (ModelVersion.four_eyes): else
# an admin who uploaded it could turn the rule off, approve it, and turn the rule back on.


def four_eyes_changed(team: Team, actor: Any, enabled: bool) -> None:
    """A team admin turned the team's rule on or off (accounts' `four_eyes_changed` event, in
    the transaction that saved the team): apply it, and record what it covers."""
    if enabled:
        covered = four_eyes_turned_on(team)
        audit.record(
            "team.four_eyes_enabled", team, actor=actor, team=team, after={"versions_newly_under_the_rule": covered}
        )
    else:
        audit.record(
            "team.four_eyes_disabled",
            team,
            actor=actor,
            team=team,
            after={
                "applies_to": "versions uploaded from now on",
                "undecided_versions_keeping_the_rule": versions_keeping_four_eyes(team),
            },
        )


def four_eyes_turned_on(team: Team) -> int:
    """The team turned the rule on: it now applies to every version of the team, those already
    uploaded included. Returns how many versions it newly applies to.

    Runs with the team row locked. Locking the team's model rows too orders this against
    uploads, which read the team's rule under their model's lock: a concurrent upload either
    reads the rule on or is committed before this update, which then covers it."""
    list(RegisteredModel.objects.select_for_update().filter(team=team).only("pk"))
    return ModelVersion.objects.filter(model__team=team, four_eyes=False).update(four_eyes=True)


def versions_keeping_four_eyes(team: Team) -> int:
    """The team turned the rule off: how many of its versions not yet decided keep it anyway."""
    undecided = (VersionStatus.RECEIVED, VersionStatus.PROCESSING, VersionStatus.READY)
    return ModelVersion.objects.filter(model__team=team, four_eyes=True, status__in=undecided).count()


# ---- pipeline events ---------------------------------------------------------------------


def version_ready(version: ModelVersion) -> None:
    """The pipeline finished: evaluate the gates, tell the team's approvers and webhooks.

    Runs inside the transaction that marks the version ready; emails and webhook deliveries
    are sent after it commits."""
    from apps.approvals import notifications

    try:
        current = review(version)
        gate_summary = [g.to_dict() for g in current.gates]
        passed: bool | None = current.gates_passed
    except ApiError:
        gate_summary, passed = [], None
    audit.record("version.gates_evaluated", version, after={"gates": gate_summary, "passed": passed})
    _emit(version.model.team, "version.ready", {"version": version_payload(version), "gates_passed": passed})
    notifications.approvers_on_commit(version)


def version_failed(version: ModelVersion, reason: str) -> None:
    _emit(version.model.team, "version.failed", {"version": version_payload(version), "reason": reason})


# ---- policies ----------------------------------------------------------------------------


def _profile_by_slug(slug: str | None) -> HardwareProfile | None:
    if not slug:
        return None
    profile = HardwareProfile.objects.filter(slug=slug).first()
    if profile is None:
        known = ", ".join(HardwareProfile.objects.order_by("slug").values_list("slug", flat=True))
        raise ApiError("unknown_profile", f"Unknown hardware profile '{slug}'. Available: {known}.")
    return profile


def _policy_fields(policy: Policy) -> dict[str, Any]:
    return {
        "name": policy.name,
        "kind": policy.kind,
        "model": policy.model.slug if policy.model_id and policy.model else None,
        "profile": policy.profile.slug if policy.profile_id and policy.profile else None,
        "params": policy.params,
        "enabled": policy.enabled,
    }


def create_policy(
    *,
    team: Team,
    user: Any,
    name: str,
    kind: str,
    params: Any,
    model: RegisteredModel | None = None,
    profile: str | None = None,
    enabled: bool = True,
) -> Policy:
    require(user, team, Action.MANAGE)
    params = gates.check_params(kind, params)
    if model is not None and model.team_id != team.pk:
        raise ApiError("invalid_policy", f"Model {model.slug} is not in team {team.slug}.")
    with transaction.atomic():
        policy = Policy.objects.create(
            team=team,
            model=model,
            name=name,
            kind=kind,
            profile=_profile_by_slug(profile),
            params=params,
            enabled=enabled,
            created_by=user,
        )
        audit.record("policy.created", policy, actor=user, after=_policy_fields(policy))
    return policy


def update_policy(policy: Policy, user: Any, changes: dict[str, Any]) -> Policy:
    require(user, policy.team, Action.MANAGE)
    with transaction.atomic():
        policy = (
            Policy.objects.select_for_update(of=("self",)).select_related("team", "model", "profile").get(pk=policy.pk)
        )
        before = _policy_fields(policy)
        kind = changes.get("kind", policy.kind)
        params = changes.get("params", policy.params if kind == policy.kind else None)
        if params is None:
            raise ApiError("invalid_policy", "Changing a policy's kind needs new params for that kind.")
        policy.kind, policy.params = kind, gates.check_params(kind, params)
        if "name" in changes:
            policy.name = changes["name"]
        if "enabled" in changes:
            policy.enabled = bool(changes["enabled"])
        if "profile" in changes:
            policy.profile = _profile_by_slug(changes["profile"])
        policy.updated_at = timezone.now()
        policy.save(update_fields=["kind", "params", "name", "enabled", "profile", "updated_at"])
        audit.record("policy.updated", policy, actor=user, before=before, after=_policy_fields(policy))
    return policy


def delete_policy(policy: Policy, user: Any) -> None:
    require(user, policy.team, Action.MANAGE)
    with transaction.atomic():
        audit.record("policy.deleted", policy, actor=user, before=_policy_fields(policy))
        policy.delete()
