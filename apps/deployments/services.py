"""Every write to serving targets and deployments: register, change, check; deploy, roll back,
undeploy; and the worker's side of a deployment (claim, heartbeat, go live, fail, reconcile).

Requests are checked in the order the review flow uses (docs/adr/0005), so the first problem
is the one a user reads: the user may see it (404), their role allows it (403), the state
allows it (409: not approved, approval stale, target disabled, wrong profile, another
deployment in progress), the request itself (400: unknown variant, bad overrides). Nothing
changes unless every check passes. Every change is audited in its own transaction, and the
worker is told after it commits.

The work follows the jobs' rules (docs/adr/0002): a worker claims a deployment with a
conditional UPDATE that increments `attempt`; every later write is fenced by that attempt;
a heartbeat says the worker is alive; the reconciler takes back deployments whose worker
went silent, and re-sends messages that seem lost.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from apps.accounts.models import Team
from apps.accounts.permissions import Action, require
from apps.approvals.evidence import collect_evidence, evidence_hash, latest_run
from apps.approvals.services import approval_state, version_payload
from apps.audit.services import record
from apps.core.api.errors import ApiError, Conflict
from apps.core.crypto import Secret
from apps.core.messages import Message, send, send_on_commit
from apps.core.outbound import check_outbound_url, private_outbound_allowed
from apps.deployments.models import (
    IN_PROGRESS,
    BackendMode,
    Deployment,
    DeploymentKind,
    DeploymentStatus,
    ServingTarget,
)
from apps.jobs.models import JobKind, JobStatus
from apps.registry.models import Artifact, ArtifactKind, ModelVersion, RegisteredModel, VersionStatus
from apps.runtimes.models import HardwareProfile

logger = logging.getLogger(__name__)

DEPLOY_TASK = "slipway.deployments.deploy"
UNDEPLOY_TASK = "slipway.deployments.undeploy"
CHECK_TARGET_TASK = "slipway.deployments.check_target"
CHECK_TARGETS_TASK = "slipway.deployments.check_targets"
RECONCILE_TASK = "slipway.deployments.reconcile"
QUEUE = "default"

ORIGINAL = "original"  # the variant name for the version's own ONNX model
NAME_LIMIT = 100
SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
MAX_INSTANCES = 64
MAX_QUEUE_DELAY_US = 10_000_000

_S3_CREDENTIALS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
OVERRIDE_KEYS = ("max_batch_size", "preferred_batch_sizes", "max_queue_delay_us", "instances", "instance_kind")


def max_attempts() -> int:
    return int(settings.DEPLOY_MAX_ATTEMPTS)


def retry_delay_seconds(attempt: int) -> int:
    """Backoff after a transient failure: base, 2x base, 4x base, ... capped at 5 minutes."""
    base = int(settings.DEPLOY_RETRY_BASE_SECONDS)
    return int(min(300, base * 2 ** max(0, attempt - 1)))


# ---- messages to workers -------------------------------------------------------------------


def _send_on_commit(task: str, object_id: int, countdown: float = 0) -> None:
    """Tell a worker once the row is committed; a lost message is re-sent by the reconciler."""
    message = Message(task, object_id, QUEUE, countdown=countdown)
    send_on_commit(message, if_lost="the deployment reconciler re-sends messages for rows left waiting")


def send_health_check(target_id: int) -> None:
    """Ask a worker to check one target now (a lost message waits for the next periodic check)."""
    send(Message(CHECK_TARGET_TASK, target_id, QUEUE), if_lost="the next periodic health check covers the target")


# ---- reading -------------------------------------------------------------------------------


def credentials_of(target: ServingTarget) -> dict[str, Any]:
    """The target's secrets as a dict (empty without any). Only workers that talk to the server need this."""
    if target.credentials is None:
        return {}
    value: dict[str, Any] = json.loads(target.credentials.reveal())
    return value


def credential_keys(target: ServingTarget) -> list[str]:
    """Which secrets are set (names only, never values), for the API and the audit trail."""
    return sorted(credentials_of(target)) if target.credentials is not None else []


def target_settings(target: ServingTarget, *, request_timeout: float | None = None) -> Any:
    """The driver's `TargetSettings` for the target, secrets included."""
    from workers.engine.targets.base import TargetSettings

    options = dict(target.options or {})
    secrets = credentials_of(target)
    repository_options = {str(k): str(v) for k, v in (options.get("repository_options") or {}).items()}
    repository_options.update({key: str(secrets[key]) for key in _S3_CREDENTIALS if key in secrets})
    timeout = float(options.get("request_timeout_seconds", 30.0))
    return TargetSettings(
        name=target.slug,
        url=target.url,
        repository=target.repository,
        kind=target.kind,
        backend_mode=target.backend_mode,  # type: ignore[arg-type]
        python_paths=tuple(str(p) for p in options.get("python_paths") or ()),
        headers=tuple(sorted((str(k), str(v)) for k, v in (secrets.get("headers") or {}).items())),
        request_timeout_seconds=min(timeout, request_timeout) if request_timeout else timeout,
        load_timeout_seconds=float(options.get("load_timeout_seconds", 300.0)),
        repository_options=tuple(sorted(repository_options.items())),
        allowed_roots=tuple(str(root) for root in settings.TARGET_ROOTS),
    )


def live_deployment(target: ServingTarget, model: Any) -> Deployment | None:
    return Deployment.objects.filter(target=target, model=model, status=DeploymentStatus.LIVE).first()


def deployment_payload(deployment: Deployment) -> dict[str, Any]:
    """How webhooks and the audit trail name a deployment."""
    return {
        "id": deployment.pk,
        "status": deployment.status,
        "status_reason": deployment.status_reason,
        "kind": deployment.kind,
        "target": deployment.target.slug,
        "model": deployment.model.slug,
        "version": version_payload(deployment.version),
        "variant": deployment.variant,
        "triton_model": deployment.triton_model,
        "triton_version": deployment.triton_version,
        "url": f"/api/v1/deployments/{deployment.pk}/",
    }


# ---- serving targets -----------------------------------------------------------------------


def _target_snapshot(target: ServingTarget) -> dict[str, Any]:
    """What the audit trail keeps of a target: never the credentials' values."""
    return {
        "name": target.name,
        "slug": target.slug,
        "kind": target.kind,
        "url": target.url,
        "repository": target.repository,
        "backend_mode": target.backend_mode,
        "profile": target.profile.slug,
        "options": target.options,
        "credentials": credential_keys(target),
        "enabled": target.enabled,
        "allow_private": target.allow_private,
    }


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ApiError("invalid_name", "Give the serving target a name, e.g. 'Production Triton'.")
    if len(name) > NAME_LIMIT:
        raise ApiError("invalid_name", f"The name is longer than {NAME_LIMIT} characters; shorten it.")
    return name


def _clean_slug(slug: str, name: str) -> str:
    slug = (slug or "").strip() or slugify(name)[:63].strip("-")
    if not SLUG_PATTERN.fullmatch(slug):
        raise ApiError(
            "invalid_slug",
            f"The slug '{slug}' can't be used: use 1 to 63 lower-case letters, digits and '-', starting with a "
            "letter or digit (it is used in URLs and paths), e.g. 'prod-triton'.",
        )
    return slug


def _clean_profile(slug: str | None) -> HardwareProfile:
    profile = HardwareProfile.objects.filter(slug=slug or "").first()
    if profile is None:
        known = ", ".join(HardwareProfile.objects.order_by("slug").values_list("slug", flat=True))
        raise ApiError(
            "unknown_profile",
            f"Unknown hardware profile '{slug or ''}': say which profile the server runs, one of {known}.",
        )
    return profile


def _driver_class(kind: str) -> Any:
    """The serving-target driver of `kind` (workers.engine.targets.registry); ApiError("invalid_kind")
    for a kind Slipway does not deploy to."""
    from workers.engine.targets.base import TargetError
    from workers.engine.targets.registry import driver_class

    try:
        return driver_class(kind)
    except TargetError as exc:
        raise ApiError("invalid_kind", exc.message) from None


def deployable_kinds() -> dict[str, str]:
    """The kinds of serving target that can be registered: kind -> label."""
    from workers.engine.targets.registry import DRIVERS

    return {kind: driver.label for kind, driver in DRIVERS.items()}


def driver_keys_help(attribute: str) -> str:
    """What each kind's driver takes as options or credentials (`option_keys`, `credential_keys`), in words."""
    from workers.engine.targets.registry import DRIVERS

    sentences = []
    for driver in DRIVERS.values():
        keys = "; ".join(f"{key}: {what}" for key, what in getattr(driver, attribute).items())
        sentences.append(f"{driver.label} targets take {keys}.")
    return " ".join(sentences)


def _clean_credentials(kind: str, value: Any) -> Secret | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ApiError("invalid_credentials", 'Give the credentials as a JSON object, e.g. {"headers": {...}}.')
    driver = _driver_class(kind)
    unknown = sorted(str(key) for key in value if key not in driver.credential_keys)
    if unknown:
        known = "; ".join(f"{key}: {what}" for key, what in driver.credential_keys.items())
        raise ApiError(
            "invalid_credentials", f"Unknown credential {', '.join(unknown)}. A {driver.label} target takes: {known}."
        )
    for key, item in value.items():
        if key == "headers":
            if not isinstance(item, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and k.strip() and "\n" not in k + v for k, v in item.items()
            ):
                raise ApiError(
                    "invalid_credentials",
                    "The credential 'headers' must be an object of header names to values, both single-line text.",
                )
        elif not isinstance(item, str) or not item:
            raise ApiError("invalid_credentials", f"The credential '{key}' must be non-empty text.")
    return Secret(json.dumps(dict(value), sort_keys=True)) if value else None


def _clean_options(kind: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ApiError("invalid_options", "Give the options as a JSON object.")
    driver = _driver_class(kind)
    unknown = sorted(str(key) for key in value if key not in driver.option_keys)
    if unknown:
        raise ApiError(
            "invalid_options",
            f"Unknown option {', '.join(unknown)} for a {driver.label} target; it takes: "
            f"{', '.join(driver.option_keys)}.",
        )
    options = dict(value)
    paths = options.get("python_paths")
    if paths is not None and (not isinstance(paths, list) or not all(isinstance(p, str) for p in paths)):
        raise ApiError("invalid_options", "The option python_paths must be a list of absolute directories.")
    repo = options.get("repository_options")
    if repo is not None:
        if not isinstance(repo, Mapping) or not all(isinstance(v, str) for v in repo.values()):
            raise ApiError(
                "invalid_options", "The option repository_options must be an object of text values (endpoint_url, ...)."
            )
        secret = sorted(set(repo) & set(_S3_CREDENTIALS))
        if secret:
            raise ApiError(
                "invalid_options",
                f"{', '.join(secret)} is a secret: give it in 'credentials', which is encrypted and never shown, "
                "not in the options.",
            )
    for key in ("request_timeout_seconds", "load_timeout_seconds"):
        if key in options and (
            isinstance(options[key], bool) or not isinstance(options[key], int | float) or not 0 < options[key] <= 3600
        ):
            raise ApiError("invalid_options", f"The option {key} must be a number of seconds between 0 and 3600.")
    return options


def _check_repository(target: ServingTarget) -> None:
    """A local repository must be inside a folder the administrator allowed (SLIPWAY_TARGET_ROOTS),
    never a system folder, Slipway's code or its own data; symbolic links are followed to say."""
    from workers.engine.targets.base import TargetError, check_repository_folder

    uri = target.repository.strip()
    if not uri:
        raise ApiError(
            "invalid_repository",
            "Give the model repository the server reads: an absolute directory both the workers and the server "
            "see, or s3://bucket/prefix.",
        )
    if uri.startswith("s3://") or "://" in uri:
        return
    path = Path(uri)
    if ".." in path.parts:
        raise ApiError("invalid_repository", f"The model repository '{uri}' must not contain '..'.")
    if not path.is_absolute():
        return  # RepositoryLocation.parse says how to write it
    # Slipway's own data is off limits, except for roots the administrator made inside it
    # (the default, <data folder>/model-repositories): said first, as the most specific reason.
    resolved = path.resolve()
    data_dir = Path(settings.DATA_DIR).resolve()
    in_own_root = any(
        data_dir in root.resolve().parents and (resolved == root.resolve() or root.resolve() in resolved.parents)
        for root in map(Path, settings.TARGET_ROOTS)
    )
    if (resolved == data_dir or data_dir in resolved.parents) and not in_own_root:
        raise ApiError(
            "invalid_repository",
            f"The model repository '{uri}' is inside Slipway's own data directory ({data_dir}); give the "
            "server its own directory.",
        )
    try:
        check_repository_folder(path, settings.TARGET_ROOTS)
    except TargetError as exc:
        raise ApiError(exc.code, exc.message) from None


def _repository_endpoint(target: ServingTarget) -> str:
    """The URL the workers' S3 client talks to for an s3:// repository ("" for AWS's own, or a local one)."""
    from workers.engine.targets.base import RepositoryLocation, TargetError

    if not target.repository.strip().startswith("s3://"):
        return ""
    configured = str(((target.options or {}).get("repository_options") or {}).get("endpoint_url") or "").strip()
    if configured:
        return configured
    try:
        location = RepositoryLocation.parse(target.repository)
    except TargetError:
        return ""
    return f"http://{location.endpoint}" if location.endpoint else ""


def _check_repository_endpoint(target: ServingTarget) -> None:
    """An S3 endpoint is a URL the platform sends requests to: the same checks as webhooks'."""
    endpoint = _repository_endpoint(target)
    if not endpoint:
        return
    try:
        check_outbound_url(endpoint, private_outbound_allowed(target.allow_private))
    except ApiError as exc:
        raise ApiError(exc.code, f"The model repository's S3 endpoint can't be used. {exc.message}") from None


def _check_target(target: ServingTarget) -> None:
    """Refuse a target that can't work, with a sentence; checks the URL against private addresses."""
    from workers.engine.targets.base import RepositoryLocation, TargetError, TargetSettings

    _check_repository(target)
    _check_repository_endpoint(target)
    if not target.url:
        raise ApiError("invalid_url", "Give the server's URL, e.g. http://triton.internal:8000.")
    target.url = check_outbound_url(target.url, private_outbound_allowed(target.allow_private)).url
    try:
        if target.repository:
            RepositoryLocation.parse(target.repository)
        TargetSettings(
            name=target.slug,
            url=target.url,
            repository=target.repository or "/",
            backend_mode=target.backend_mode,  # type: ignore[arg-type]
            python_paths=tuple((target.options or {}).get("python_paths") or ()),
        )
    except TargetError as exc:
        raise ApiError(exc.code, exc.message) from None


def _save_unique(target: ServingTarget, **kwargs: Any) -> None:
    try:
        with transaction.atomic():
            target.save(**kwargs)
    except IntegrityError:
        raise Conflict(
            "slug_taken",
            f"Team {target.team.slug} already has a serving target '{target.slug}'; choose another slug.",
        ) from None


def create_target(
    *,
    team: Team,
    user: Any,
    name: str,
    profile: str | None,
    url: str = "",
    repository: str = "",
    slug: str = "",
    kind: str = "triton",
    backend_mode: str = BackendMode.NATIVE,
    options: Any = None,
    credentials: Any = None,
    enabled: bool = True,
    allow_private: bool = False,
) -> ServingTarget:
    """Register a serving target of the team (team admins)."""
    require(user, team, Action.MANAGE)
    name = _clean_name(name)
    _driver_class(kind)
    if backend_mode not in BackendMode.values:
        raise ApiError("invalid_backend_mode", f"The backend mode must be native or python, not '{backend_mode}'.")
    now = timezone.now()
    target = ServingTarget(
        team=team,
        name=name,
        slug=_clean_slug(slug, name),
        kind=kind,
        url=(url or "").strip(),
        repository=(repository or "").strip(),
        backend_mode=backend_mode,
        profile=_clean_profile(profile),
        options=_clean_options(kind, options),
        credentials=_clean_credentials(kind, credentials),  # type: ignore[misc]  # None: no secrets
        enabled=bool(enabled),
        allow_private=bool(allow_private),
        allow_private_by=user if allow_private else None,
        allow_private_at=now if allow_private else None,
        created_by=user,
        created_at=now,
        updated_at=now,
    )
    _check_target(target)
    with transaction.atomic():
        _save_unique(target)
        record("target.created", target, actor=user, team=team, after=_target_snapshot(target))
    return target


def update_target(target: ServingTarget, user: Any, **changes: Any) -> ServingTarget:
    """Change what was given; the URL and repository are checked again. `credentials` replaces
    the stored secrets (None removes them)."""
    require(user, target.team, Action.MANAGE)
    before = _target_snapshot(target)
    if "name" in changes:
        target.name = _clean_name(changes["name"])
    if "slug" in changes:
        target.slug = _clean_slug(changes["slug"], target.name)
    if "url" in changes:
        target.url = (changes["url"] or "").strip()
    if "repository" in changes:
        repository = (changes["repository"] or "").strip()
        if repository != target.repository and _busy(target).exists():
            raise Conflict(
                "target_in_use",
                f"Target {target.slug} has deployments live or in progress in {target.repository}; undeploy them "
                "before moving its model repository (the server would lose the versions it serves).",
            )
        target.repository = repository
    if "backend_mode" in changes:
        if changes["backend_mode"] not in BackendMode.values:
            raise ApiError("invalid_backend_mode", "The backend mode must be native or python.")
        target.backend_mode = changes["backend_mode"]
    if "profile" in changes:
        profile = _clean_profile(changes["profile"])
        if profile.pk != target.profile_id and _busy(target).exists():
            raise Conflict(
                "target_in_use",
                f"Target {target.slug} serves live deployments built for {target.profile.slug}; undeploy them "
                "before changing its hardware profile.",
            )
        target.profile = profile
    if "options" in changes:
        target.options = _clean_options(target.kind, changes["options"])
    credentials_changed = "credentials" in changes
    if credentials_changed:
        target.credentials = _clean_credentials(target.kind, changes["credentials"])  # type: ignore[assignment]
    if "enabled" in changes:
        target.enabled = bool(changes["enabled"])
    if "allow_private" in changes and bool(changes["allow_private"]) != target.allow_private:
        target.allow_private = bool(changes["allow_private"])
        target.allow_private_by = user if target.allow_private else None
        target.allow_private_at = timezone.now() if target.allow_private else None
    _check_target(target)
    after = _target_snapshot(target)
    if after == before and not credentials_changed:
        return target
    target.updated_at = timezone.now()
    with transaction.atomic():
        _save_unique(target)
        record(
            "target.updated",
            target,
            actor=user,
            before=before,
            after={**after, "credentials_replaced": credentials_changed},
        )
    return target


def _busy(target: ServingTarget) -> QuerySet[Deployment]:
    return target.deployments.filter(status__in=(DeploymentStatus.LIVE, *IN_PROGRESS))


def delete_target(target: ServingTarget, user: Any) -> None:
    """Forget a target and its deployment history (the audit trail keeps it). Refused while
    anything is live or in progress there: undeploy first, so nothing serves unrecorded."""
    require(user, target.team, Action.MANAGE)
    busy = list(_busy(target).select_related("model").order_by("id")[:5])
    if busy:
        listed = ", ".join(f"{d.model.slug} (deployment {d.pk}, {d.status})" for d in busy)
        raise Conflict(
            "target_in_use",
            f"Target {target.slug} still has deployments live or in progress: {listed}. Undeploy them first, "
            "or disable the target instead.",
        )
    with transaction.atomic():
        record("target.deleted", target, actor=user, before=_target_snapshot(target))
        target.delete()


def request_health_check(target: ServingTarget, user: Any) -> ServingTarget:
    """Ask a worker to check the server now (workers reach servers; the web process may not)."""
    require(user, target.team, Action.DEPLOY)
    now = timezone.now()
    with transaction.atomic():
        ServingTarget.objects.filter(pk=target.pk).update(health_check_requested_at=now)
        target.health_check_requested_at = now
        record("target.health_check_requested", target, actor=user)
        _send_on_commit(CHECK_TARGET_TASK, target.pk)
    return target


def record_health(
    target: ServingTarget, *, healthy: bool | None, ready: bool | None, version: str, detail: str
) -> None:
    """Store a health check's result (from a worker); a change of health is audited."""
    with transaction.atomic():
        locked = ServingTarget.objects.select_for_update().filter(pk=target.pk).first()
        if locked is None:
            return
        changed = locked.healthy != healthy
        ServingTarget.objects.filter(pk=target.pk).update(
            health_checked_at=timezone.now(),
            healthy=healthy,
            health_ready=ready,
            server_version=version[:100],
            health_detail=detail[:5000],
            health_check_requested_at=None,
        )
        if changed:
            record(
                "target.health_changed",
                locked,
                team=locked.team,
                before={"healthy": locked.healthy},
                after={"healthy": healthy, "ready": ready, "server_version": version, "detail": detail[:1000]},
            )


def check_target_address(target: ServingTarget) -> None:
    """Check the URL's (and the S3 endpoint's) addresses again right before a worker connects
    (DNS may have changed)."""
    check_outbound_url(target.url, private_outbound_allowed(target.allow_private))
    _check_repository_endpoint(target)


# ---- deploying -----------------------------------------------------------------------------


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
    parity = ((results.get(JobKind.PARITY) or {}).get("variants") or {}).get(name) or {}
    if parity.get("passed") is not True:
        reasons = " ".join(parity.get("reasons") or []) or "it has no passing parity result"
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
        record("deployment.requested", deployment, actor=user, team=team, after=_audit_fields(deployment))
        _send_on_commit(DEPLOY_TASK, deployment.pk)
    return deployment


def _audit_fields(deployment: Deployment) -> dict[str, Any]:
    return {
        "target": deployment.target.slug,
        "model": deployment.model.slug,
        "version": deployment.version.number,
        "variant": deployment.variant,
        "artifact_sha256": deployment.artifact_sha256,
        "triton_model": deployment.triton_model,
        "triton_version": deployment.triton_version,
        "status": deployment.status,
        "serving": {k: v for k, v in deployment.serving.items() if k != "reasons"},
    }


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
            after={**_audit_fields(again), "rollback_of": deployment.pk, "restores": previous.pk},
        )
        _send_on_commit(DEPLOY_TASK, again.pk)
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
            "deployment.undeploy_requested", deployment, actor=user, team=target.team, after=_audit_fields(deployment)
        )
        _send_on_commit(UNDEPLOY_TASK, deployment.pk)
    return deployment


# ---- the worker's side ---------------------------------------------------------------------


def _stale_before() -> Any:
    return timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS)


def claim(deployment_id: int, worker_host: str, task_id: str) -> Deployment | None:
    """Take a pending deployment (or one whose worker went silent) for this worker; None if not ours."""
    now = timezone.now()
    claimed = Deployment.objects.filter(
        Q(status=DeploymentStatus.PENDING) | Q(status=DeploymentStatus.PUSHING, heartbeat_at__lt=_stale_before()),
        pk=deployment_id,
        attempt__lt=F("max_attempts"),
    ).update(
        status=DeploymentStatus.PUSHING,
        attempt=F("attempt") + 1,
        worker_host=worker_host[:255],
        celery_task_id=task_id[:64],
        heartbeat_at=now,
        pushing_at=now,
        status_changed_at=now,
        status_reason="A worker is pushing it to the server; the live deployment keeps serving meanwhile.",
    )
    if not claimed:
        _fail_if_exhausted(deployment_id)
        return None
    return _load(deployment_id)


def claim_undeploy(deployment_id: int, worker_host: str, task_id: str) -> Deployment | None:
    """Take an undeploy request for this worker; None if another worker has it or it is done."""
    claimed = Deployment.objects.filter(
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=_stale_before()),
        pk=deployment_id,
        status=DeploymentStatus.UNDEPLOYING,
        attempt__lt=F("max_attempts"),
    ).update(
        attempt=F("attempt") + 1,
        worker_host=worker_host[:255],
        celery_task_id=task_id[:64],
        heartbeat_at=timezone.now(),
    )
    return _load(deployment_id) if claimed else None


def _load(deployment_id: int) -> Deployment:
    return Deployment.objects.select_related(
        "target__team",
        "target__profile",
        "version__model__team",
        "model",
        "artifact",
        "profile",
        "requested_by",
        "replaces",
        "rollback_of",
        "restores",
        "undeploy_requested_by",
    ).get(pk=deployment_id)


def _fenced(deployment: Deployment, state: str) -> QuerySet[Deployment]:
    return Deployment.objects.filter(pk=deployment.pk, status=state, attempt=deployment.attempt)


def heartbeat(deployment: Deployment) -> bool:
    """Tell the reconciler this deployment's worker is alive; False when it no longer owns it."""
    return bool(
        Deployment.objects.filter(
            pk=deployment.pk,
            status__in=(DeploymentStatus.PUSHING, DeploymentStatus.UNDEPLOYING),
            attempt=deployment.attempt,
        ).update(heartbeat_at=timezone.now())
    )


def _fail_if_exhausted(deployment_id: int) -> None:
    stuck = Deployment.objects.filter(
        Q(status=DeploymentStatus.PENDING) | Q(status=DeploymentStatus.PUSHING, heartbeat_at__lt=_stale_before()),
        pk=deployment_id,
        attempt__gte=F("max_attempts"),
    ).first()
    if stuck is not None:
        _finish_failed(
            stuck,
            stuck.status,
            "attempts_exhausted",
            f"Deployment {stuck.pk} was tried {stuck.attempt} times and its worker stopped each time before "
            "finishing (crash, out of memory, or restart). The previous deployment, if any, still serves; check "
            "the server and the worker's logs, then deploy again.",
        )


@dataclass(frozen=True)
class Outcome:
    """What the worker's deploy or rollback produced, for the deployment's record."""

    smoke: dict[str, Any]
    steps: list[str]
    summary: str


def retry_later(deployment: Deployment, code: str, message: str, detail: str = "") -> bool:
    """A transient failure: back to pending, sent again after a backoff. False if not ours any more."""
    delay = retry_delay_seconds(deployment.attempt)
    now = timezone.now()
    with transaction.atomic():
        moved = _fenced(deployment, DeploymentStatus.PUSHING).update(
            status=DeploymentStatus.PENDING,
            status_changed_at=now,
            enqueued_at=now + timedelta(seconds=delay),
            heartbeat_at=None,
            error_code=code[:50],
            detail=detail[:20000],
            status_reason=(
                f"Attempt {deployment.attempt} of {deployment.max_attempts} failed: {message} Trying again in "
                f"{delay} s."
            ),
        )
        if moved:
            _send_on_commit(DEPLOY_TASK, deployment.pk, countdown=delay)
    return bool(moved)


def go_live(deployment: Deployment, outcome: Outcome) -> bool:
    """The new deployment passed its smoke tests and serves: it becomes live, and the one it
    replaced becomes retired (rolled_back, for a rollback), in one transaction."""
    now = timezone.now()
    with transaction.atomic():
        locked = _fenced(deployment, DeploymentStatus.PUSHING).select_for_update().first()
        if locked is None:
            logger.warning(
                "deployment %s attempt %s went live but no longer owns the row", deployment.pk, deployment.attempt
            )
            return False
        previous = (
            Deployment.objects.select_for_update()
            .filter(target_id=locked.target_id, model_id=locked.model_id, status=DeploymentStatus.LIVE)
            .exclude(pk=locked.pk)
            .first()
        )
        rolled_back = locked.kind == DeploymentKind.ROLLBACK
        if previous is not None:
            if rolled_back:
                Deployment.objects.filter(pk=previous.pk).update(
                    status=DeploymentStatus.ROLLED_BACK,
                    rolled_back_at=now,
                    status_changed_at=now,
                    status_reason=f"Rolled back by {locked.requested_by.get_username()}: deployment {locked.pk} "
                    f"(version {deployment.version.number}) serves instead.",
                )
            else:
                Deployment.objects.filter(pk=previous.pk).update(
                    status=DeploymentStatus.RETIRED,
                    retired_at=now,
                    status_changed_at=now,
                    status_reason=f"Replaced by deployment {locked.pk} (version {deployment.version.number}).",
                )
        Deployment.objects.filter(pk=locked.pk).update(
            status=DeploymentStatus.LIVE,
            live_at=now,
            status_changed_at=now,
            heartbeat_at=now,
            replaces=previous,
            smoke=outcome.smoke,
            steps=outcome.steps,
            error_code="",
            detail="",
            status_reason=outcome.summary,
        )
        fresh = _load(locked.pk)
        if previous is not None:
            record(
                "deployment.rolled_back" if rolled_back else "deployment.retired",
                previous,
                team=fresh.target.team,
                before={"status": DeploymentStatus.LIVE},
                after={
                    "status": DeploymentStatus.ROLLED_BACK if rolled_back else DeploymentStatus.RETIRED,
                    "by": fresh.pk,
                },
            )
        record("deployment.live", fresh, team=fresh.target.team, after={**_audit_fields(fresh), "smoke": outcome.smoke})
        payload: dict[str, Any] = {"deployment": deployment_payload(fresh), "smoke": outcome.smoke}
        if rolled_back:
            taken_off = _load(previous.pk) if previous is not None else None
            payload["rolled_back"] = deployment_payload(taken_off) if taken_off is not None else None
            _emit(fresh.target.team, "deployment.rolled_back", payload)
        else:
            payload["replaced"] = deployment_payload(_load(previous.pk)) if previous is not None else None
            _emit(fresh.target.team, "deployment.live", payload)
    return True


def fail(
    deployment: Deployment,
    code: str,
    message: str,
    *,
    detail: str = "",
    smoke: dict[str, Any] | None = None,
    steps: list[str] | None = None,
) -> bool:
    """The deployment failed with a sentence (and the server's own words in `detail`); whatever
    served before still serves."""
    return _finish_failed(deployment, DeploymentStatus.PUSHING, code, message, detail, smoke, steps)


def _finish_failed(
    deployment: Deployment,
    state: str,
    code: str,
    message: str,
    detail: str = "",
    smoke: dict[str, Any] | None = None,
    steps: list[str] | None = None,
) -> bool:
    now = timezone.now()
    with transaction.atomic():
        locked = _fenced(deployment, state).select_for_update().first()
        if locked is None:
            return False
        Deployment.objects.filter(pk=locked.pk).update(
            status=DeploymentStatus.FAILED,
            failed_at=now,
            status_changed_at=now,
            heartbeat_at=None,
            error_code=code[:50],
            status_reason=message,
            detail=detail[:20000],
            smoke=smoke if smoke is not None else locked.smoke,
            steps=steps if steps is not None else locked.steps,
        )
        fresh = _load(locked.pk)
        record(
            "deployment.failed",
            fresh,
            team=fresh.target.team,
            after={**_audit_fields(fresh), "error_code": code, "reason": message},
        )
        _emit(fresh.target.team, "deployment.failed", {"deployment": deployment_payload(fresh), "error_code": code})
    return True


def undeployed(deployment: Deployment, notes: Sequence[str] = ()) -> bool:
    """The worker took the model off the server: the deployment is retired. `notes` are the
    driver's sentences on what it left in the repository (files Slipway did not write)."""
    now = timezone.now()
    with transaction.atomic():
        locked = _fenced(deployment, DeploymentStatus.UNDEPLOYING).select_for_update().first()
        if locked is None:
            return False
        who = deployment.undeploy_requested_by.get_username() if deployment.undeploy_requested_by else "someone"
        Deployment.objects.filter(pk=locked.pk).update(
            status=DeploymentStatus.RETIRED,
            retired_at=now,
            status_changed_at=now,
            heartbeat_at=None,
            status_reason=f"Undeployed by {who}: {deployment.triton_model} was unloaded and removed from "
            f"{deployment.target.slug}'s model repository." + "".join(f" {note}" for note in notes),
            steps=[*(locked.steps or []), *notes],
        )
        fresh = _load(locked.pk)
        record("deployment.undeployed", fresh, team=fresh.target.team, after=_audit_fields(fresh))
    return True


def undeploy_failed(deployment: Deployment, code: str, message: str, detail: str = "") -> bool:
    """Taking the model off failed for good: the deployment is live again (it still serves)."""
    now = timezone.now()
    with transaction.atomic():
        locked = (
            Deployment.objects.select_for_update()
            .filter(pk=deployment.pk, status=DeploymentStatus.UNDEPLOYING, attempt=deployment.attempt)
            .first()
        )
        if locked is None:
            return False
        Deployment.objects.filter(pk=locked.pk).update(
            status=DeploymentStatus.LIVE,
            status_changed_at=now,
            heartbeat_at=None,
            error_code=code[:50],
            detail=detail[:20000],
            status_reason=f"Undeploying failed, so it is still live: {message}",
        )
        fresh = _load(locked.pk)
        record(
            "deployment.undeploy_failed", fresh, team=fresh.target.team, after={"error_code": code, "reason": message}
        )
    return True


def undeploy_retry_later(deployment: Deployment, message: str) -> bool:
    delay = retry_delay_seconds(deployment.attempt)
    with transaction.atomic():
        moved = _fenced(deployment, DeploymentStatus.UNDEPLOYING).update(
            heartbeat_at=None,
            enqueued_at=timezone.now() + timedelta(seconds=delay),
            status_reason=f"Attempt {deployment.attempt} of {deployment.max_attempts} to undeploy failed: {message} "
            f"Trying again in {delay} s; it still serves until then.",
        )
        if moved:
            _send_on_commit(UNDEPLOY_TASK, deployment.pk, countdown=delay)
    return bool(moved)


def _emit(team: Team, event: str, payload: dict[str, Any]) -> None:
    from apps.webhooks.services import emit

    emit(team, event, payload)


@dataclass(frozen=True)
class ReconcileReport:
    requeued_stale: int
    resent_lost: int
    failed_exhausted: int


def reconcile() -> ReconcileReport:
    """Take back deployments whose worker went silent and re-send messages that seem lost."""
    now = timezone.now()
    stale_before = _stale_before()
    lost_before = now - timedelta(seconds=settings.JOB_REQUEUE_AFTER_SECONDS)
    requeued = resent = failed = 0

    for row in Deployment.objects.filter(status=DeploymentStatus.PUSHING, heartbeat_at__lt=stale_before):
        if row.attempt >= row.max_attempts:
            if _finish_failed(
                row,
                DeploymentStatus.PUSHING,
                "attempts_exhausted",
                f"The worker pushing deployment {row.pk} ({row.worker_host or 'unknown host'}) stopped responding on "
                f"attempt {row.attempt} of {row.max_attempts}. The previous deployment, if any, still serves; check "
                "the server and the worker's logs, then deploy again.",
            ):
                failed += 1
            continue
        with transaction.atomic():
            if (
                _fenced(row, DeploymentStatus.PUSHING)
                .filter(heartbeat_at__lt=stale_before)
                .update(
                    status=DeploymentStatus.PENDING,
                    enqueued_at=now,
                    status_changed_at=now,
                    status_reason=f"The worker {row.worker_host} stopped responding during attempt {row.attempt}; "
                    "waiting for another worker. The live deployment keeps serving meanwhile.",
                )
            ):
                requeued += 1
                _send_on_commit(DEPLOY_TASK, row.pk)

    for row in Deployment.objects.filter(status=DeploymentStatus.PENDING, enqueued_at__lt=lost_before):
        with transaction.atomic():
            if Deployment.objects.filter(
                pk=row.pk, status=DeploymentStatus.PENDING, enqueued_at=row.enqueued_at
            ).update(enqueued_at=now):
                resent += 1
                _send_on_commit(DEPLOY_TASK, row.pk)

    undeploying = Deployment.objects.filter(status=DeploymentStatus.UNDEPLOYING).filter(
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True, enqueued_at__lt=lost_before)
    )
    for row in undeploying:
        if row.attempt >= row.max_attempts:
            if undeploy_failed(
                row,
                "attempts_exhausted",
                f"the worker stopped responding on attempt {row.attempt} of {row.max_attempts}. Undeploy again.",
            ):
                failed += 1
            continue
        with transaction.atomic():
            if Deployment.objects.filter(pk=row.pk, status=DeploymentStatus.UNDEPLOYING, attempt=row.attempt).update(
                heartbeat_at=None, enqueued_at=now
            ):
                resent += 1
                _send_on_commit(UNDEPLOY_TASK, row.pk)

    if requeued or resent or failed:
        logger.info("deployments reconciler: %d re-queued, %d re-sent, %d failed for good", requeued, resent, failed)
    return ReconcileReport(requeued_stale=requeued, resent_lost=resent, failed_exhausted=failed)


def targets_to_check() -> list[int]:
    kinds = list(deployable_kinds())
    return list(ServingTarget.objects.filter(enabled=True, kind__in=kinds).values_list("pk", flat=True))
