"""Deployments on a worker: push a variant to a Triton server, smoke-test it, switch, roll
back, undeploy; check targets' health; reconcile.

The tasks take ids only and claim their row with a conditional UPDATE (see
apps.deployments.lifecycle), so a duplicate message does nothing. The worker fetches the
variant's files, runs the ORIGINAL FP32 model in the sandbox on inputs generated from its IO
signature (or the version's validation set) for the smoke test's reference outputs, and
hands a `DeploymentSpec` to the driver of the target's kind (workers.engine.targets.registry),
which keeps the previous version serving until the new one has passed.
"""

from __future__ import annotations

import logging
import math
import traceback
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from apps.approvals.evidence import latest_run
from apps.approvals.services import approval_state
from apps.core.errors import DomainError
from apps.deployments import deploying, lifecycle, metrics, services, targets
from apps.deployments.models import Deployment, DeploymentKind, ServingTarget
from apps.pipeline.models import JobKind, JobStatus
from apps.registry.models import Artifact, ArtifactKind, ModelVersion
from apps.registry.storage import materialize
from workers.engine.errors import ModelError
from workers.engine.sandbox import SandboxError, run_in_sandbox
from workers.tasks.heartbeat import beating
from workers.tasks.steps.common import local_variant, sandbox_limits, scratch_dir
from workers.tasks.worker_registry import node_name

logger = logging.getLogger(__name__)

# A deploy loads the model twice (candidate, then live), each within the target's load
# timeout (5 minutes by default), after fetching the variant and running the reference.
SOFT_TIME_LIMIT = 30 * 60
HARD_TIME_LIMIT = SOFT_TIME_LIMIT + 120
REFERENCE_SAMPLES = 4
HEALTH_TIMEOUT_SECONDS = 10.0


class Refused(Exception):
    """The deployment can't go ahead any more (approval withdrawn, target disabled meanwhile)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _beating(deployment: Deployment) -> AbstractContextManager[object]:
    """Beat while the worker pushes, so a long load is not taken for a dead worker."""
    return beating(f"deployment-{deployment.pk}", lambda: lifecycle.heartbeat(deployment))


# ---- files -----------------------------------------------------------------------------------


def _local_files(artifact: Artifact, dest: Path) -> tuple[Path, tuple[Path, ...]]:
    """An artifact (variant or ONNX model) as local files: its main file and the others."""
    if artifact.kind == ArtifactKind.VARIANT:
        main = local_variant(artifact, dest)
    elif artifact.format == "onnx-zip":
        from workers.engine.archive import extract_archive

        bundle = materialize(artifact.storage_key, dest.parent / f"{dest.name}.zip")
        main = extract_archive(bundle, dest)
        bundle.unlink()
    else:
        dest.mkdir(parents=True, exist_ok=True)
        main = materialize(artifact.storage_key, dest / "model.onnx")
    extras = tuple(sorted(p for p in dest.rglob("*") if p.is_file() and p != main))
    return main, extras


def _inspection(version: ModelVersion) -> dict[str, Any]:
    run = latest_run(version)
    job = run.jobs.filter(kind=JobKind.INSPECT, status=JobStatus.SUCCEEDED).first() if run else None
    if job is None or not job.result:
        raise Refused(
            "no_inspection",
            f"Version {version.number} of {version.model.slug} has no inspection report, so its inputs and outputs "
            "are unknown; re-run its pipeline.",
        )
    return job.result


def _reference(version: ModelVersion, workdir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Smoke-test feeds and the ORIGINAL FP32 model's answers to them (run in the sandbox)."""
    import numpy as np

    original, _ = _local_files(deploying.original_artifact(version), workdir / "original")
    validation = None
    if version.validation is not None:
        validation = str(materialize(version.validation.storage_key, workdir / "validation.npz"))
    store = workdir / "reference.npz"
    run_in_sandbox(
        "parity_reference",
        {"model": str(original), "validation": validation, "samples": REFERENCE_SAMPLES, "store": str(store)},
        sandbox_limits(),
        what="running the original model for the smoke test's reference",
        writable=[workdir],
    )
    runs: dict[str, dict[int, dict[str, Any]]] = {"in": {}, "out": {}}
    with np.load(store, allow_pickle=False) as data:
        for key in data.files:
            head, index, name = key.split("/", 2)
            runs[head].setdefault(int(index), {})[name] = data[key]
    return [runs["in"][i] for i in sorted(runs["in"])], [runs["out"][i] for i in sorted(runs["out"])]


def _spec(deployment: Deployment, workdir: Path, *, with_files: bool) -> Any:
    """The driver's `DeploymentSpec` for the deployment (files fetched when `with_files`)."""
    from workers.engine.parity import Tolerance
    from workers.engine.targets.base import DeploymentSpec, DynamicBatching, InstanceGroup, signature_from_report

    version = deployment.version
    report = _inspection(version)
    inputs, outputs = _reference(version, workdir)
    if with_files:
        assert deployment.artifact is not None
        if deployment.artifact.sha256 != deployment.artifact_sha256:
            raise Refused(
                "artifact_changed", f"The variant's file changed since deployment {deployment.pk} was requested."
            )
        model_file, extras = _local_files(deployment.artifact, workdir / "variant")
    else:
        model_file, extras = workdir / "original" / "model.onnx", ()
    serving = deployment.serving or {}
    max_batch = int(serving.get("max_batch_size") or 0)
    batching = None
    if max_batch > 0 and serving.get("dynamic_batching"):
        batching = DynamicBatching(
            tuple(int(s) for s in serving.get("preferred_batch_sizes") or ()),
            int(serving.get("max_queue_delay_us") or 0),
        )
    return DeploymentSpec(
        model_name=deployment.triton_model,
        version=int(deployment.triton_version),
        model_file=model_file,
        engine_backend=deployment.engine_backend or "onnxruntime",
        model_format=deployment.model_format or "onnx",
        inputs=signature_from_report(report.get("inputs") or []),
        outputs=signature_from_report(report.get("outputs") or []),
        max_batch_size=max_batch,
        dynamic_batching=batching,
        instance_group=InstanceGroup(
            count=int(serving.get("instances") or 1), kind=serving.get("instance_kind") or "CPU"
        ),
        extra_files=extras,
        reference_inputs=tuple(inputs),
        reference_outputs=tuple(outputs),
        tolerance=Tolerance(**(deployment.tolerance or {})),
        precision=deployment.precision or "",
    )


# ---- results -----------------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """JSON for PostgreSQL: NaN and infinities (a degenerate output's cosine, say) become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _smoke(smoke: Any) -> dict[str, Any] | None:
    """A SmokeResult as the deployment's record shows it."""
    if smoke is None:
        return None
    return _finite(_smoke_fields(smoke))


def _smoke_fields(smoke: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "passed": smoke.passed,
        "compared": smoke.compared,
        "samples": smoke.samples,
        "latencies_ms": [round(value, 3) for value in smoke.latencies_ms],
        "reasons": list(smoke.reasons),
        "error": smoke.error,
    }
    if smoke.parity is not None:
        outputs = smoke.parity.to_dict()["outputs"]
        data["outputs"] = outputs
        for metric in ("max_abs_error", "max_rel_error"):
            values = [o[metric] for o in outputs if isinstance(o.get(metric), int | float)]
            data[metric] = max(values) if values else None
        cosines = [o["cosine"] for o in outputs if isinstance(o.get("cosine"), int | float)]
        data["cosine"] = min(cosines) if cosines else None
    return data


def _summary(deployment: Deployment, outcome: Any, previous: Deployment | None) -> str:
    live = outcome.live_smoke
    checked = (
        f"{live.samples} smoke request(s) matched the original model within the approved tolerance"
        if live is not None and live.compared
        else "the server answered"
    )
    worst = _smoke(live) or {}
    if worst.get("max_abs_error") is not None:
        checked += f" (max abs error {worst['max_abs_error']:.3g})"
    what = f"'{deployment.triton_model}' version {deployment.triton_version} serves {deployment.variant}"
    before = f", in place of deployment {previous.pk} (version {previous.version.number})" if previous else ""
    return f"Live on {deployment.target.slug}: {what} of version {deployment.version.number}{before}; {checked}."


def _still_serving(previous: Deployment | None) -> str:
    if previous is None:
        return " Nothing of this model served there before, and nothing does now."
    return f" Deployment {previous.pk} (version {previous.version.number}) still serves."


def _prune(driver: Any, name: str, keep: set[int]) -> list[str]:
    """Remove version directories nothing can come back to: all but the live one and the one
    a rollback would restore. Best effort: a leftover directory is harmless. Returns the
    driver's sentences on what it left in place (what Slipway did not write)."""
    notes: list[str] = []
    try:
        for version in driver.served_versions(name):
            if version not in keep:
                notes.extend(driver.retire(name, version))
    except Exception:
        logger.warning("could not prune old versions of %s", name, exc_info=True)
    return notes


# ---- the tasks --------------------------------------------------------------------------------


def _check_still_allowed(deployment: Deployment) -> None:
    target: ServingTarget = deployment.target
    if not target.enabled:
        raise Refused("target_disabled", f"Target {target.slug} was disabled before the deployment started.")
    if deployment.kind == DeploymentKind.DEPLOY:
        state = approval_state(deployment.version)
        if not (state["approved"] and state["current"]):
            raise Refused(
                "approval_changed",
                f"Version {deployment.version.number} of {deployment.model.slug} is no longer approved on its current "
                f"evidence ({state['reason']}), so it was not deployed.",
            )
    try:
        targets.check_target_address(target)
    except DomainError as exc:
        raise Refused(exc.code, exc.message) from None


def _run(deployment: Deployment) -> lifecycle.Outcome:
    from workers.engine.targets.registry import get_driver

    _check_still_allowed(deployment)
    driver = get_driver(services.target_settings(deployment.target))
    current = (
        deployment.rollback_of
        if deployment.kind == DeploymentKind.ROLLBACK
        else services.live_deployment(deployment.target, deployment.model)
    )
    with scratch_dir(f"deployment-{deployment.pk}-attempt-{deployment.attempt}") as workdir:
        if deployment.kind == DeploymentKind.ROLLBACK:
            assert deployment.restores is not None and current is not None
            spec = _spec(deployment, workdir, with_files=False)
            outcome = driver.rollback(deployment.triton_model, deployment.triton_version, current.triton_version, spec)
        else:
            spec = _spec(deployment, workdir, with_files=True)
            previous_version = current.triton_version if current is not None else None
            outcome = driver.deploy(spec, previous_version)
    keep = {deployment.triton_version} | ({current.triton_version} if current is not None else set())
    left = _prune(driver, deployment.triton_model, keep)
    smoke = {
        "candidate": _smoke(outcome.candidate_smoke),
        "live": _smoke(outcome.live_smoke),
        "seconds": round(outcome.seconds, 3),
        "reused": bool(outcome.push.reused) if outcome.push is not None else None,
    }
    return lifecycle.Outcome(smoke=smoke, steps=[*outcome.steps, *left], summary=_summary(deployment, outcome, current))


@shared_task(
    name=services.DEPLOY_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=HARD_TIME_LIMIT,
)
def deploy(self: Any, deployment_id: int) -> str:
    """Push (or, for a rollback, restore) deployment `deployment_id`, if this worker claims it."""
    from workers.engine.targets.base import TargetError

    request = getattr(self, "request", None)
    task_id = str(getattr(request, "id", "") or "")
    deployment = lifecycle.claim(deployment_id, worker_host=node_name(request), task_id=task_id)
    if deployment is None:
        return "not claimed"
    current = deployment.rollback_of if deployment.kind == DeploymentKind.ROLLBACK else None
    current = current or services.live_deployment(deployment.target, deployment.model)
    try:
        with _beating(deployment):
            outcome = _run(deployment)
    except TargetError as exc:
        smoke = {"candidate": _smoke(exc.smoke)} if exc.smoke is not None else None
        if exc.transient and deployment.attempt < deployment.max_attempts:
            lifecycle.retry_later(deployment, exc.code, exc.message, exc.detail)
            return "retrying"
        message = exc.message
        if "failed as well" not in message:
            message += _still_serving(current)
        lifecycle.fail(deployment, exc.code, message, detail=exc.detail, smoke=smoke)
        return "failed"
    except Refused as exc:
        lifecycle.fail(deployment, exc.code, exc.message + _still_serving(current))
        return "failed"
    except (ModelError, SandboxError) as exc:
        log = getattr(exc, "log", "")
        lifecycle.fail(deployment, exc.code, exc.message + _still_serving(current), detail=log[-20000:])
        return "failed"
    except SoftTimeLimitExceeded:
        lifecycle.fail(
            deployment,
            "timeout",
            f"The deployment ran past the worker's limit of {SOFT_TIME_LIMIT // 60} minutes and was stopped."
            + _still_serving(current),
        )
        return "failed"
    except Exception as exc:
        logger.exception("deployment %s failed unexpectedly", deployment.pk)
        lifecycle.fail(
            deployment,
            "internal_error",
            f"Slipway hit an internal error while deploying ({type(exc).__name__}: {exc}). The detail has the "
            "traceback; deploy again or report it." + _still_serving(current),
            detail=traceback.format_exc()[-20000:],
        )
        return "failed"
    lifecycle.go_live(deployment, outcome)
    return "live"


@shared_task(
    name=services.UNDEPLOY_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=10 * 60,
    time_limit=11 * 60,
)
def undeploy(self: Any, deployment_id: int) -> str:
    """Unload deployment `deployment_id`'s model and remove it from the repository."""
    from workers.engine.targets.base import TargetError
    from workers.engine.targets.registry import get_driver

    request = getattr(self, "request", None)
    task_id = str(getattr(request, "id", "") or "")
    deployment = lifecycle.claim_undeploy(deployment_id, worker_host=node_name(request), task_id=task_id)
    if deployment is None:
        return "not claimed"
    try:
        with _beating(deployment):
            targets.check_target_address(deployment.target)
            left = get_driver(services.target_settings(deployment.target)).remove_model(deployment.triton_model)
    except TargetError as exc:
        if exc.transient and deployment.attempt < deployment.max_attempts:
            lifecycle.undeploy_retry_later(deployment, exc.message)
            return "retrying"
        lifecycle.undeploy_failed(deployment, exc.code, exc.message, exc.detail)
        return "failed"
    except DomainError as exc:
        lifecycle.undeploy_failed(deployment, exc.code, exc.message)
        return "failed"
    except Exception as exc:
        logger.exception("undeploying %s failed unexpectedly", deployment.pk)
        lifecycle.undeploy_failed(
            deployment, "internal_error", f"{type(exc).__name__}: {exc}", traceback.format_exc()[-20000:]
        )
        return "failed"
    lifecycle.undeployed(deployment, left)
    return "retired"


@shared_task(name=services.CHECK_TARGET_TASK, acks_late=True, soft_time_limit=60, time_limit=90)
def check_target(target_id: int) -> str:
    """Ask one target's server whether it is live and ready, and record the answer."""
    target = ServingTarget.objects.select_related("team").filter(pk=target_id).first()
    if target is None:
        return "gone"
    healthy, ready, version, detail = _health(target)
    targets.record_health(target, healthy=healthy, ready=ready, version=version, detail=detail)
    if healthy:
        _sample_metrics(target)
    return "healthy" if healthy else "unhealthy"


def _sample_metrics(target: ServingTarget) -> None:
    """Read the counters of what is live on a healthy target and keep them (apps.deployments.metrics).
    Never fails the health check: a metrics endpoint that can't be read is said on the target."""
    from workers.engine.targets.registry import DRIVERS, get_driver

    driver_class = DRIVERS.get(target.kind)
    endpoint = getattr(driver_class, "metrics_endpoint", None)
    wanted = metrics.live_series(target)
    if endpoint is None or not wanted:
        return
    try:
        settings = services.target_settings(target, request_timeout=HEALTH_TIMEOUT_SECONDS)
        url = endpoint(settings)
        if not url:
            metrics.record_no_metrics(target, "", "Reading metrics is off for this target (its metrics_url is off).")
            return
        targets.check_metrics_address(target, url)
        reading = get_driver(settings).metrics()  # type: ignore[attr-defined]
    except DomainError as exc:
        metrics.record_no_metrics(target, "", exc.message)
        return
    except Exception as exc:  # a driver's bug must not cost the health check
        logger.warning("reading the metrics of target %s failed", target.pk, exc_info=True)
        metrics.record_no_metrics(target, "", f"Slipway failed reading the metrics ({type(exc).__name__}: {exc}).")
        return
    metrics.record_sample(target, reading, wanted)


def _health(target: ServingTarget) -> tuple[bool | None, bool | None, str, str]:
    from workers.engine.targets.base import TargetError
    from workers.engine.targets.registry import DRIVERS, get_driver

    driver_class = DRIVERS.get(target.kind)
    if driver_class is None:
        return None, None, "", f"This release does not check '{target.kind}' targets: it has no driver for them."
    try:
        targets.check_target_address(target)
    except DomainError as exc:
        return False, None, "", exc.message
    try:
        health = get_driver(services.target_settings(target, request_timeout=HEALTH_TIMEOUT_SECONDS)).health()
    except TargetError as exc:
        return False, None, "", exc.message
    except ImportError as exc:
        return False, None, "", f"This worker can't check {driver_class.label} servers: {exc}."
    detail = health.error or f"Live and ready: {health.server_name or target.kind} {health.server_version}."
    return health.live, health.ready, health.server_version, detail


@shared_task(name=services.CHECK_TARGETS_TASK, acks_late=True, soft_time_limit=60, time_limit=90)
def check_targets() -> int:
    """Queue a health check of every enabled target (each on its own, so one slow server waits alone)."""
    ids = targets.targets_to_check()
    for target_id in ids:
        services.send_health_check(target_id)
    return len(ids)


@shared_task(name=services.RECONCILE_TASK, acks_late=True, soft_time_limit=120, time_limit=180)
def reconcile() -> dict[str, int]:
    """Re-send lost deployment messages and take back deployments whose worker went silent."""
    return asdict(lifecycle.reconcile())
