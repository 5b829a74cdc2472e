"""Platform plumbing shared by every app: idempotency records for retried create requests."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class IdempotencyRecord(models.Model):
    """A create request made with an `Idempotency-Key`, and the answer it got.

    A retry with the same key by the same user gets the stored answer instead of acting
    twice; the same key with a different request is refused. Records expire after a day.
    An answer that held a secret shown once is never stored: `response_body` then holds the
    409 `secret_shown_once` a retry gets (apps.core.idempotency.SecretShownOnce).
    """

    user_id = models.BigIntegerField()
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request's fields and files.")
    done = models.BooleanField(default=False)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user_id", "key"], name="idempotency_key_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"
