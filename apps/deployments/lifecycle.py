"""The worker's side of a deployment: claim, heartbeat, go live, fail, undeploy, reconcile.

The work follows the jobs' rules (docs/adr/0002, 0013): a worker claims a deployment with a
conditional UPDATE that increments `attempt`; every later write is fenced by that attempt; a
heartbeat says the worker is alive; the reconciler takes back deployments whose worker went
silent, and re-sends messages that seem lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit.services import record
from apps.core import durable
from apps.deployments.models import (
    Deployment,
    DeploymentKind,
    DeploymentStatus,
)
from apps.deployments.services import (
    DEPLOY_TASK,
    UNDEPLOY_TASK,
    audit_fields,
    deployment_payload,
    emit,
    retry_delay_seconds,
    tell_worker,
)

logger = logging.getLogger(__name__)


def claim(deployment_id: int, worker_host: str, task_id: str) -> Deployment | None:
    """Take a pending deployment (or one whose worker went silent) for this worker; None if not ours."""
    now = timezone.now()
    claimed = durable.claim(
        DEPLOYS,
        deployment_id,
        status=DeploymentStatus.PUSHING,
        worker_host=worker_host[:255],
        celery_task_id=task_id[:64],
        heartbeat_at=now,
        pushing_at=now,
        status_changed_at=now,
        status_reason="A worker is pushing it to the server; the live deployment keeps serving meanwhile.",
    )
    return _load(deployment_id) if claimed else None


def claim_undeploy(deployment_id: int, worker_host: str, task_id: str) -> Deployment | None:
    """Take an undeploy request for this worker; None if another worker has it or it is done."""
    claimed = durable.claim(
        UNDEPLOYS,
        deployment_id,
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


def heartbeat(deployment: Deployment) -> bool:
    """Tell the reconciler this deployment's worker is alive; False when it no longer owns it."""
    return durable.beat(DEPLOYS, deployment) or durable.beat(UNDEPLOYS, deployment)


def _give_up_deploy(row: Deployment) -> bool:
    if row.status == DeploymentStatus.PUSHING:
        message = (
            f"The worker pushing deployment {row.pk} ({row.worker_host or 'unknown host'}) stopped responding on "
            f"attempt {row.attempt} of {row.max_attempts}. The previous deployment, if any, still serves; check "
            "the server and the worker's logs, then deploy again."
        )
    else:
        message = (
            f"Deployment {row.pk} was tried {row.attempt} times and its worker stopped each time before "
            "finishing (crash, out of memory, or restart). The previous deployment, if any, still serves; check "
            "the server and the worker's logs, then deploy again."
        )
    return _finish_failed(row, row.status, "attempts_exhausted", message)


def _give_up_undeploy(row: Deployment) -> bool:
    return undeploy_failed(
        row,
        "attempts_exhausted",
        f"the worker stopped responding on attempt {row.attempt} of {row.max_attempts}. Undeploy again.",
    )


def _take_back_deploy(row: Deployment, now: Any) -> dict[str, Any]:
    return {
        "status": DeploymentStatus.PENDING,
        "status_changed_at": now,
        "status_reason": f"The worker {row.worker_host} stopped responding during attempt {row.attempt}; "
        "waiting for another worker. The live deployment keeps serving meanwhile.",
    }


_silent = durable.silent_since(lambda: settings.JOB_STALE_AFTER_SECONDS)

DEPLOYS: durable.Lane[Deployment] = durable.Lane(
    name="deployments",
    model=Deployment,
    waiting=lambda now: Q(status=DeploymentStatus.PENDING),
    held=Q(status=DeploymentStatus.PUSHING),
    silent=_silent,
    lost_after=lambda: settings.JOB_REQUEUE_AFTER_SECONDS,
    take_back=_take_back_deploy,
    give_up=_give_up_deploy,
    send=lambda row: tell_worker(DEPLOY_TASK, row.pk),
)

# An undeploy waits with no heartbeat and is held with one; it stays `undeploying` throughout.
UNDEPLOYS: durable.Lane[Deployment] = durable.Lane(
    name="undeploys",
    model=Deployment,
    waiting=lambda now: Q(status=DeploymentStatus.UNDEPLOYING, heartbeat_at__isnull=True),
    held=Q(status=DeploymentStatus.UNDEPLOYING, heartbeat_at__isnull=False),
    silent=_silent,
    lost_after=lambda: settings.JOB_REQUEUE_AFTER_SECONDS,
    take_back=lambda row, now: {"heartbeat_at": None},
    give_up=_give_up_undeploy,
    send=lambda row: tell_worker(UNDEPLOY_TASK, row.pk),
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
        moved = durable.fenced(DEPLOYS, deployment).update(
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
            tell_worker(DEPLOY_TASK, deployment.pk, countdown=delay)
    return bool(moved)


def go_live(deployment: Deployment, outcome: Outcome) -> bool:
    """The new deployment passed its smoke tests and serves: it becomes live, and the one it
    replaced becomes retired (rolled_back, for a rollback), in one transaction."""
    now = timezone.now()
    with transaction.atomic():
        locked = durable.fenced(DEPLOYS, deployment).select_for_update().first()
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
        record("deployment.live", fresh, team=fresh.target.team, after={**audit_fields(fresh), "smoke": outcome.smoke})
        payload: dict[str, Any] = {"deployment": deployment_payload(fresh), "smoke": outcome.smoke}
        if rolled_back:
            taken_off = _load(previous.pk) if previous is not None else None
            payload["rolled_back"] = deployment_payload(taken_off) if taken_off is not None else None
            emit(fresh.target.team, "deployment.rolled_back", payload)
        else:
            payload["replaced"] = deployment_payload(_load(previous.pk)) if previous is not None else None
            emit(fresh.target.team, "deployment.live", payload)
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
        # A give-up may finish a row that waits (no attempts left), so the fence is the state it was seen in.
        seen = Deployment.objects.filter(pk=deployment.pk, status=state, attempt=deployment.attempt)
        locked = seen.select_for_update().first()
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
            after={**audit_fields(fresh), "error_code": code, "reason": message},
        )
        emit(fresh.target.team, "deployment.failed", {"deployment": deployment_payload(fresh), "error_code": code})
    return True


def undeployed(deployment: Deployment, notes: Sequence[str] = ()) -> bool:
    """The worker took the model off the server: the deployment is retired. `notes` are the
    driver's sentences on what it left in the repository (files Slipway did not write)."""
    now = timezone.now()
    with transaction.atomic():
        locked = durable.fenced(UNDEPLOYS, deployment).select_for_update().first()
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
        record("deployment.undeployed", fresh, team=fresh.target.team, after=audit_fields(fresh))
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
        moved = durable.fenced(UNDEPLOYS, deployment).update(
            heartbeat_at=None,
            enqueued_at=timezone.now() + timedelta(seconds=delay),
            status_reason=f"Attempt {deployment.attempt} of {deployment.max_attempts} to undeploy failed: {message} "
            f"Trying again in {delay} s; it still serves until then.",
        )
        if moved:
            tell_worker(UNDEPLOY_TASK, deployment.pk, countdown=delay)
    return bool(moved)


ReconcileReport = durable.Reconciled


def reconcile() -> durable.Reconciled:
    """Take back deployments and undeploys whose worker went silent and re-send lost messages."""
    return durable.reconcile(DEPLOYS) + durable.reconcile(UNDEPLOYS)
