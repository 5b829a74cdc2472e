"""What every part of the deployments app shares: task names, limits, messages to workers,
reading a target's settings and credentials, and the payloads audit records and webhooks carry.

The app's writes live beside it, one module per side: `targets` (register, change, check and
delete serving targets), `deploying` (deploy, roll back, undeploy: a user's requests, checked
before anything changes) and `lifecycle` (the worker's side: claim, heartbeat, go live, fail,
reconcile).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from django.conf import settings

from apps.accounts.models import Team
from apps.approvals.services import version_payload
from apps.core.messages import Message, send, send_on_commit
from apps.deployments.models import (
    Deployment,
    DeploymentStatus,
    ServingTarget,
)

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

S3_CREDENTIALS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
OVERRIDE_KEYS = ("max_batch_size", "preferred_batch_sizes", "max_queue_delay_us", "instances", "instance_kind")


def max_attempts() -> int:
    return int(settings.DEPLOY_MAX_ATTEMPTS)


def retry_delay_seconds(attempt: int) -> int:
    """Backoff after a transient failure: base, 2x base, 4x base, ... capped at 5 minutes."""
    base = int(settings.DEPLOY_RETRY_BASE_SECONDS)
    return int(min(300, base * 2 ** max(0, attempt - 1)))


# ---- messages to workers -------------------------------------------------------------------


def tell_worker(task: str, object_id: int, countdown: float = 0) -> None:
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
    repository_options.update({key: str(secrets[key]) for key in S3_CREDENTIALS if key in secrets})
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
        metrics_url=str(options.get("metrics_url") or ""),
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


def audit_fields(deployment: Deployment) -> dict[str, Any]:
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


def emit(team: Team, event: str, payload: dict[str, Any]) -> None:
    from apps.webhooks.services import emit

    emit(team, event, payload)
