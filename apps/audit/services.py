"""Writing to the audit trail. Every service that changes state calls `record` in the same
transaction as the change, so an event exists exactly when the change does."""

from __future__ import annotations

import socket
from typing import Any

from django.db import models

from apps.audit.models import AuditEvent
from apps.core.middleware import current_context


def _team_of(obj: Any) -> Any:
    """The team an object belongs to, found through the usual relations."""
    for path in ("team", "model.team", "version.model.team", "run.version.model.team"):
        value = obj
        for attr in path.split("."):
            value = getattr(value, attr, None)
            if value is None:
                break
        if value is not None:
            return value
    return None


def record(
    action: str,
    obj: models.Model | None = None,
    *,
    actor: Any = None,
    team: Any = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
) -> AuditEvent:
    """Append one event. `actor` is the user who acted (None: the system, or the worker this
    runs on when outside a request); the request id, client IP and how the request was
    authenticated come from the request context."""
    ctx = current_context()
    if actor is not None and getattr(actor, "pk", None) is not None:
        actor_id, actor_name = actor.pk, actor.get_username()
        via = ctx.via if ctx else "system"
    else:
        actor_id, actor_name = None, "system" if ctx else f"worker@{socket.gethostname()}"
        via = "system" if ctx else "worker"
    team = team if team is not None else (_team_of(obj) if obj is not None else None)
    if obj is not None:
        object_type = object_type or obj._meta.model_name or ""
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)
    return AuditEvent.objects.create(
        actor_id=actor_id,
        actor=actor_name[:150],
        via=via[:40],
        team_id=getattr(team, "pk", None),
        team=getattr(team, "slug", "") or "",
        action=action,
        object_type=object_type[:40],
        object_id=str(object_id)[:64],
        object_repr=object_repr[:200],
        before=before,
        after=after,
        request_id=(ctx.request_id if ctx else "")[:64],
        ip=ctx.ip if ctx else None,
    )
