"""Deploy, roll back and undeploy: the requests a user makes, checked before anything changes.

Requests are checked in the order the review flow uses (docs/adr/0005), so the first problem
is the one a user reads: the user may see it (404), their role allows it (403), the state
allows it (409: not approved, approval stale, target disabled, wrong profile, another
deployment in progress), the request itself (400: unknown variant, bad overrides). Nothing
changes unless every check passes. Every change is audited in its own transaction, and the
worker is told after it commits (`apps.deployments.lifecycle` is the worker's side).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from apps.accounts.permissions import Action, require
from apps.approvals.evidence import collect_evidence, evidence_hash, latest_run
from apps.approvals.services import approval_state
from apps.audit.services import record
from apps.core.api.errors import ApiError, Conflict
from apps.deployments.models import (
    IN_PROGRESS,
    Deployment,
    DeploymentKind,
    DeploymentStatus,
    ServingTarget,
)
from apps.deployments.services import (
    DEPLOY_TASK,
    MAX_INSTANCES,
    MAX_QUEUE_DELAY_US,
    MODEL_NAME_PATTERN,
    ORIGINAL,
    OVERRIDE_KEYS,
    UNDEPLOY_TASK,
    audit_fields,
    max_attempts,
    tell_worker,
)
from apps.deployments.targets import deployable_kinds
from apps.hardware.models import HardwareProfile
from apps.pipeline.models import JobKind, JobStatus
from apps.registry.models import Artifact, ArtifactKind, ModelVersion, RegisteredModel, VersionStatus
from workers.engine.reports import VariantParityReport
from workers.engine.typed import read

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChosenVariant:
    name: str
    artifact: Artifact
    engine_backend: str
    model_format: str
    precision: str
    points: list[dict[str, Any]]


def _refuse_unapproved(version: ModelVersion, state: dict[str, Any]) -> Conflict:
    what = f"Version {version.number} of {version.model.slug}"
    if not state["approved"]:
        label = VersionStatus(version.status).label.lower()
        return Conflict(
            "version_not_approved",
            f"{what} is {label}, not approved; only approved versions can be deployed. "
            + (
                "Ask an approver to review it."
                if version.status == VersionStatus.READY
                else "It needs an approval first."
            ),
        )
    return Conflict(
        "approval_stale",
        f"{what} was approved on evidence that has changed since (a re-run or a changed artifact), so its "
        "approval no longer applies. It needs a new review before it can be deployed.",
    )


def _profile_results(version: ModelVersion, profile: HardwareProfile) -> dict[str, dict[str, Any]]:
    run = latest_run(version)
    if run is None:
        return {}
    jobs = run.jobs.filter(status=JobStatus.SUCCEEDED).filter(Q(profile=profile) | Q(profile__isnull=True))
    return {job.kind: job.result or {} for job in jobs.order_by("sequence")}


def original_artifact(version: ModelVersion) -> Artifact:
    """The ONNX model the pipeline worked on: the latest run's import output, or the upload."""
    run = latest_run(version)
    onnx = version.artifacts.filter(kind=ArtifactKind.ONNX, job__run=run).order_by("-id").first() if run else None
    source = onnx or version.source_artifact
    assert source is not None, "a version always has its source artifact"
    return source


def _strip_bundle(fmt: str) -> str:
    """A variant's format without the bundle marker ("onnx-zip" -> "onnx", "openvino-ir+zip" -> ...)."""
    return fmt.removesuffix("+zip").removesuffix("-zip")


def _choose_variant(
    version: ModelVersion, profile: HardwareProfile, evidence: dict[str, Any], wanted: str | None
) -> ChosenVariant:
    results = _profile_results(version, profile)
    benchmark = results.get(JobKind.BENCHMARK) or {}
    recommendation = evidence["recommendation"]
    winner = recommendation.get("winner")
    name = (wanted or "").strip()
    if not name:
        name = ORIGINAL if recommendation.get("use_baseline") or not winner else str(winner["name"])
    if name == ORIGINAL:
        original = original_artifact(version)
        points = (benchmark.get("baseline") or {}).get("points") or []
        return ChosenVariant(ORIGINAL, original, "onnxruntime", _strip_bundle(original.format), "fp32", points)
    run = latest_run(version)
    artifact = (
        version.artifacts.filter(kind=ArtifactKind.VARIANT, name=f"{profile.slug}/{name}", job__run=run)
        .order_by("-id")
        .first()
    )
    if artifact is None:
        names = sorted(
            a.name.split("/", 1)[-1]
            for a in version.artifacts.filter(kind=ArtifactKind.VARIANT, job__run=run, metadata__profile=profile.slug)
        )
        raise ApiError(
            "unknown_variant",
            f"Version {version.number} of {version.model.slug} has no variant '{name}' for {profile.slug}. "
            f"Choose one of: {', '.join([ORIGINAL, *names])} (or leave it out for the recommended one).",
        )
    stored = ((results.get(JobKind.PARITY) or {}).get("variants") or {}).get(name) or {}
    verdict = read(VariantParityReport, stored) if stored else None
    if verdict is None or not verdict.passed:
        reasons = (" ".join(verdict.reasons) if verdict is not None else "") or "it has no passing parity result"
        raise Conflict(
            "variant_failed_parity",
            f"The variant '{name}' did not pass its parity check against the original ({reasons}), so it can't "
            "be deployed. Deploy the recommended variant or another one that passed.",
        )
    if winner and name == winner["name"] and winner.get("sha256") and winner["sha256"] != artifact.sha256:
        raise Conflict(
            "approval_stale",
            f"The variant '{name}' changed since the approval (sha256 {artifact.sha256[:12]} instead of "
            f"{str(winner['sha256'])[:12]}); the version needs a new review.",
        )
    points = ((benchmark.get("variants") or {}).get(name) or {}).get("points") or []
    return ChosenVariant(
        name,
        artifact,
        str(artifact.metadata.get("backend") or ""),
        _strip_bundle(artifact.format),
        str(artifact.metadata.get("precision") or ""),
        points,
    )


def _batchable(version: ModelVersion) -> bool:
    """Whether every input and output of the model has a free first (batch) dimension."""
    run = latest_run(version)
    inspect = run.jobs.filter(kind=JobKind.INSPECT, status=JobStatus.SUCCEEDED).first() if run else None
    report = (inspect.result if inspect else None) or {}
    tensors = [*(report.get("inputs") or []), *(report.get("outputs") or [])]
    if not tensors:
        return False
    return all(isinstance(t.get("shape"), list) and t["shape"] and not isinstance(t["shape"][0], int) for t in tensors)


def _clean_overrides(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ApiError(
            "invalid_overrides", f"Give the overrides as a JSON object with any of: {', '.join(OVERRIDE_KEYS)}."
        )
    unknown = sorted(str(key) for key in value if key not in OVERRIDE_KEYS)
    if unknown:
        raise ApiError(
            "invalid_overrides",
            f"Unknown serving setting {', '.join(unknown)}; the settings are {', '.join(OVERRIDE_KEYS)}.",
        )

    def whole(key: str, low: int, high: int) -> int:
        item = value[key]
        if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
            raise ApiError("invalid_overrides", f"{key} must be a whole number from {low} to {high}, not {item!r}.")
        return item

    cleaned: dict[str, Any] = {}
    if "max_batch_size" in value:
        cleaned["max_batch_size"] = whole("max_batch_size", 0, 2**31 - 1)
    if "max_queue_delay_us" in value:
        cleaned["max_queue_delay_us"] = whole("max_queue_delay_us", 0, MAX_QUEUE_DELAY_US)
    if "instances" in value:
        cleaned["instances"] = whole("instances", 1, MAX_INSTANCES)
    if "preferred_batch_sizes" in value:
        sizes = value["preferred_batch_sizes"]
        if not isinstance(sizes, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
            raise ApiError("invalid_overrides", "preferred_batch_sizes must be a list of whole numbers, e.g. [4, 8].")
        cleaned["preferred_batch_sizes"] = sizes
    if "instance_kind" in value:
        if value["instance_kind"] not in ("CPU", "GPU"):
            raise ApiError("invalid_overrides", f"instance_kind must be CPU or GPU, not {value['instance_kind']!r}.")
        cleaned["instance_kind"] = value["instance_kind"]
    return cleaned


def _serving(chosen: ChosenVariant, version: ModelVersion, profile: HardwareProfile, overrides: dict) -> dict:
    """The serving settings for the deployment: the benchmark's choice, the user's overrides winning."""
    from workers.engine.targets.batching import ServingOverrides, serving_settings

    batchable = _batchable(version)
    if not batchable and overrides.get("max_batch_size"):
        raise ApiError(
            "not_batchable",
            f"max_batch_size {overrides['max_batch_size']} can't be used: the model's tensors have no free batch "
            "dimension (the first dimension is fixed), so the server can't batch requests. Leave it out or set 0.",
        )
    chosen_settings = serving_settings(
        chosen.points,
        batchable=batchable,
        device_kind="GPU" if profile.device_kind == "gpu" else "CPU",
        overrides=ServingOverrides(
            max_batch_size=overrides.get("max_batch_size"),
            preferred_batch_sizes=tuple(overrides["preferred_batch_sizes"])
            if "preferred_batch_sizes" in overrides
            else None,
            max_queue_delay_microseconds=overrides.get("max_queue_delay_us"),
            instance_count=overrides.get("instances"),
            instance_kind=overrides.get("instance_kind"),
        ),
        p99_budget_ms=version.p99_budget_ms,
    )
    batching = chosen_settings.dynamic_batching
    serving: dict[str, Any] = {
        "max_batch_size": chosen_settings.max_batch_size,
        "dynamic_batching": batching is not None,
        "preferred_batch_sizes": list(batching.preferred_batch_sizes) if batching else [],
        "max_queue_delay_us": batching.max_queue_delay_microseconds if batching else 0,
        "instances": chosen_settings.instance_group.count,
        "instance_kind": chosen_settings.instance_group.kind,
        "reasons": list(chosen_settings.reasons),
    }
    wrong = [s for s in serving["preferred_batch_sizes"] if not 1 <= s <= serving["max_batch_size"]]
    if wrong:
        raise ApiError(
            "invalid_overrides",
            f"Preferred batch sizes {wrong} are outside 1..{serving['max_batch_size']} (the max_batch_size).",
        )
    if serving["max_batch_size"] == 0 and (
        overrides.get("preferred_batch_sizes") or overrides.get("max_queue_delay_us")
    ):
        raise ApiError(
            "invalid_overrides",
            "Preferred batch sizes and a queue delay need batching: set max_batch_size above 0 as well.",
        )
    return serving


def triton_model_name(target: ServingTarget, model: Any) -> str:
    """The model's name on the server: its slug, made safe as a directory and URL segment."""
    name = model.slug if MODEL_NAME_PATTERN.fullmatch(model.slug) else f"m{model.slug}"[:100]
    taken = Deployment.objects.filter(target=target, triton_model=name).exclude(model=model).exists()
    return f"{name[:90]}-{model.pk}" if taken else name


def _refuse_if_in_progress(target: ServingTarget, model: RegisteredModel) -> None:
    """A 409 naming the deployment in flight for this model on this target, if there is one."""
    existing = (
        Deployment.objects.filter(target=target, model=model, status__in=IN_PROGRESS)
        .select_related("model", "target")
        .first()
    )
    if existing is not None:
        raise Conflict(
            "deployment_in_progress",
            f"Deployment {existing.pk} of {existing.model.slug} on {existing.target.slug} is {existing.status}; one "
            f"change at a time per model and target. Wait for it to finish (GET /api/v1/deployments/{existing.pk}/).",
        )


def _create(deployment: Deployment) -> Deployment:
    try:
        with transaction.atomic():
            deployment.save()
    except IntegrityError:
        # the one-in-flight constraint: someone else's request won the race
        _refuse_if_in_progress(deployment.target, deployment.model)
        raise
    return deployment


def deploy(
    version: ModelVersion,
    target: ServingTarget,
    user: Any,
    variant: str | None = None,
    overrides: Any = None,
    profile: str | None = None,
) -> Deployment:
    """Deploy a variant of an approved version to a serving target; a worker does the work.

    The variant is the one recommended for the target's hardware profile (the original
    ONNX model when the recommendation is to keep it), or `variant` by name. Serving
    settings come from the variant's benchmark sweep, with `overrides` winning.
    """
    team = version.model.team
    require(user, team, Action.DEPLOY)
    if target.team_id != team.pk:
        raise Conflict(
            "wrong_team",
            f"Target {target.slug} belongs to team {target.team.slug}, version {version.number} of "
            f"{version.model.slug} to team {team.slug}; deploy to one of {team.slug}'s targets.",
        )
    if not target.enabled:
        raise Conflict(
            "target_disabled",
            f"Target {target.slug} is disabled; a team admin can enable it (PATCH enabled=true) before deploying.",
        )
    if target.kind not in deployable_kinds():
        raise Conflict(
            "target_kind_not_deployable",
            f"Target {target.slug} is a '{target.kind}' target, a kind this release does not deploy to (it deploys "
            f"to: {', '.join(deployable_kinds())}); register the inference server itself, e.g. its Triton endpoint.",
        )
    state = approval_state(version)
    if not (state["approved"] and state["current"]):
        raise _refuse_unapproved(version, state)
    if profile and profile != target.profile.slug:
        raise Conflict(
            "profile_mismatch",
            f"Target {target.slug} runs the {target.profile.slug} hardware profile; variants built for {profile} "
            "can't be deployed there. Deploy to a target of that profile, or leave the profile out.",
        )
    evidence = collect_evidence(version)
    profile_evidence = evidence["profiles"].get(target.profile.slug)
    if profile_evidence is None:
        built = ", ".join(evidence["profiles"]) or "none"
        raise Conflict(
            "wrong_profile",
            f"Version {version.number} of {version.model.slug} was not built for {target.profile.slug}, the hardware "
            f"profile of target {target.slug} (it was built for: {built}). Re-run its pipeline with that profile, "
            "or deploy to a target of one of those profiles.",
        )
    _refuse_if_in_progress(target, version.model)
    chosen = _choose_variant(version, target.profile, profile_evidence, variant)
    cleaned = _clean_overrides(overrides)
    serving = _serving(chosen, version, target.profile, cleaned)
    now = timezone.now()
    with transaction.atomic():
        # One request at a time per target picks the next version number on the server.
        ServingTarget.objects.select_for_update().filter(pk=target.pk).first()
        name = triton_model_name(target, version.model)
        top = Deployment.objects.filter(target=target, triton_model=name).aggregate(top=Max("triton_version"))["top"]
        deployment = _create(
            Deployment(
                target=target,
                version=version,
                model=version.model,
                kind=DeploymentKind.DEPLOY,
                profile=target.profile,
                variant=chosen.name,
                artifact=chosen.artifact,
                artifact_sha256=chosen.artifact.sha256,
                engine_backend=chosen.engine_backend,
                model_format=chosen.model_format,
                precision=chosen.precision,
                decision_id=state["decision_id"],
                evidence_sha256=evidence_hash(evidence),
                tolerance=dict(profile_evidence.get("tolerance") or {}),
                triton_model=name,
                triton_version=(top or 0) + 1,
                overrides=cleaned,
                serving=serving,
                status_reason="Waiting for a worker to push it.",
                requested_by=user,
                created_at=now,
                status_changed_at=now,
                max_attempts=max_attempts(),
                enqueued_at=now,
            )
        )
        record("deployment.requested", deployment, actor=user, team=team, after=audit_fields(deployment))
        tell_worker(DEPLOY_TASK, deployment.pk)
    return deployment


def rollback(deployment: Deployment, user: Any) -> Deployment:
    """Serve the deployment that was live before this one again; a worker does the switch."""
    target = deployment.target
    require(user, target.team, Action.DEPLOY)
    if deployment.status != DeploymentStatus.LIVE:
        raise Conflict(
            f"deployment_{deployment.status}",
            f"Deployment {deployment.pk} is {DeploymentStatus(deployment.status).label.lower()}; only the live "
            "deployment of a model on a target can be rolled back.",
        )
    previous = deployment.replaces
    if previous is None:
        raise Conflict(
            "nothing_to_roll_back_to",
            f"Deployment {deployment.pk} is the first live deployment of {deployment.model.slug} on {target.slug}; "
            "there is no earlier one to roll back to. Undeploy it instead, or deploy another version.",
        )
    if previous.version.status != VersionStatus.APPROVED:
        raise Conflict(
            "version_not_approved",
            f"Version {previous.version.number} of {previous.model.slug} (deployment {previous.pk}, the one before) "
            f"is {VersionStatus(previous.version.status).label.lower()}, no longer approved, so it can't serve again.",
        )
    if not target.enabled:
        raise Conflict("target_disabled", f"Target {target.slug} is disabled; a team admin can enable it first.")
    now = timezone.now()
    with transaction.atomic():
        again = _create(
            Deployment(
                target=target,
                version=previous.version,
                model=previous.model,
                kind=DeploymentKind.ROLLBACK,
                profile=previous.profile,
                variant=previous.variant,
                artifact=previous.artifact,
                artifact_sha256=previous.artifact_sha256,
                engine_backend=previous.engine_backend,
                model_format=previous.model_format,
                precision=previous.precision,
                decision=previous.decision,
                evidence_sha256=previous.evidence_sha256,
                tolerance=previous.tolerance,
                triton_model=previous.triton_model,
                triton_version=previous.triton_version,
                overrides=previous.overrides,
                serving=previous.serving,
                status_reason=f"Waiting for a worker to put deployment {previous.pk} back in place of {deployment.pk}.",
                requested_by=user,
                created_at=now,
                status_changed_at=now,
                rollback_of=deployment,
                restores=previous,
                max_attempts=max_attempts(),
                enqueued_at=now,
            )
        )
        record(
            "deployment.rollback_requested",
            again,
            actor=user,
            team=target.team,
            after={**audit_fields(again), "rollback_of": deployment.pk, "restores": previous.pk},
        )
        tell_worker(DEPLOY_TASK, again.pk)
    return again


def undeploy(deployment: Deployment, user: Any) -> Deployment:
    """Take a live deployment off its server (unloaded, removed from the repository)."""
    target = deployment.target
    require(user, target.team, Action.DEPLOY)
    if deployment.status != DeploymentStatus.LIVE:
        raise Conflict(
            f"deployment_{deployment.status}",
            f"Deployment {deployment.pk} is {DeploymentStatus(deployment.status).label.lower()}, not live; there is "
            "nothing to undeploy.",
        )
    _refuse_if_in_progress(target, deployment.model)
    now = timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                moved = Deployment.objects.filter(pk=deployment.pk, status=DeploymentStatus.LIVE).update(
                    status=DeploymentStatus.UNDEPLOYING,
                    status_reason=f"Waiting for a worker to take it off {target.slug}; it still serves until then.",
                    status_changed_at=now,
                    undeploy_requested_by=user,
                    undeploy_requested_at=now,
                    heartbeat_at=None,
                    enqueued_at=now,
                    max_attempts=F("attempt") + max_attempts(),
                )
        except IntegrityError:
            raise Conflict(
                "deployment_in_progress", f"Another change of {deployment.model.slug} on {target.slug} is under way."
            ) from None
        if not moved:
            raise Conflict("deployment_changed", f"Deployment {deployment.pk} changed meanwhile; look at it again.")
        deployment.refresh_from_db()
        record(
            "deployment.undeploy_requested", deployment, actor=user, team=target.team, after=audit_fields(deployment)
        )
        tell_worker(UNDEPLOY_TASK, deployment.pk)
    return deployment
