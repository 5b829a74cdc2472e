"""The audit trail: one append-only row per change anyone (or any worker) made."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    """Who did what to which object, when, from where, with the state before and after.

    Rows are never updated or deleted: database triggers (migration 0002) refuse it, so the
    trail holds even against code that tries. Actor, team and object are copied in as plain
    values rather than foreign keys, so deleting a user or a team can't rewrite history.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True, help_text="User id; empty for the system and workers.")
    actor = models.CharField(max_length=150, help_text="Username at the time, or 'system' / 'worker@host'.")
    via = models.CharField(max_length=40, blank=True, help_text="session, token:<key id>, worker or system.")
    team_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    team = models.CharField(max_length=60, blank=True, help_text="Team slug at the time.")
    action = models.CharField(max_length=60, db_index=True, help_text="e.g. version.approved, token.created.")
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.object_repr}"
