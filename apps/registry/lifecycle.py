"""The model version state machine: guarded, race-free transitions."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from apps.audit import services as audit
from apps.registry.models import VERSION_TRANSITIONS, ModelVersion, VersionStatus


class InvalidTransition(Exception):
    """A version was asked to move to a state it can't reach from where it is."""

    def __init__(self, version: ModelVersion, current: str, target: str):
        self.current, self.target = current, target
        super().__init__(
            f"Version {version.number} of {version.model.slug} is {VersionStatus(current).label.lower()}; "
            f"it can't become {VersionStatus(target).label.lower()} from there."
        )


def allowed_sources(target: str) -> list[str]:
    return [source for source, targets in VERSION_TRANSITIONS.items() if target in targets]


def transition(version: ModelVersion, target: str, reason: str = "", actor: Any = None) -> None:
    """Move `version` to `target` if the state machine allows it from its current state, and
    write the change to the audit trail (`actor`: the user, or None for the system/worker).

    The UPDATE is conditioned on the current status being one the target can be reached from,
    so two concurrent transitions can't both win.
    """
    now = timezone.now()
    before = version.status
    updated = ModelVersion.objects.filter(pk=version.pk, status__in=allowed_sources(target)).update(
        status=target, status_reason=reason[:2000], status_changed_at=now
    )
    if not updated:
        current = ModelVersion.objects.values_list("status", flat=True).get(pk=version.pk)
        raise InvalidTransition(version, current, target)
    version.status, version.status_reason, version.status_changed_at = target, reason[:2000], now
    audit.record(
        "version.status_changed",
        version,
        actor=actor,
        before={"status": before},
        after={"status": target, "reason": reason[:2000]},
    )
