"""Team webhooks: where to POST which events, and one row per delivery with every attempt."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.crypto import EncryptedTextField


class WebhookEvent(models.TextChoices):
    VERSION_READY = "version.ready", "A version finished its pipeline and is ready for review"
    VERSION_APPROVED = "version.approved", "A version was approved"
    VERSION_REJECTED = "version.rejected", "A version was rejected"
    VERSION_REVOKED = "version.revoked", "An approval was revoked"
    VERSION_FAILED = "version.failed", "A version's pipeline failed"
    DEPLOYMENT_LIVE = "deployment.live", "A deployment is live"
    DEPLOYMENT_FAILED = "deployment.failed", "A deployment failed"
    DEPLOYMENT_ROLLED_BACK = "deployment.rolled_back", "A deployment was rolled back"
    PING = "ping", "A test delivery (sent on request, whatever the subscription)"


# What a webhook can subscribe to; `ping` is sent on request only.
SUBSCRIBABLE_EVENTS: tuple[str, ...] = tuple(e.value for e in WebhookEvent if e != WebhookEvent.PING)


class Webhook(models.Model):
    """An HTTPS endpoint of a team that receives the events it subscribed to, signed with a
    secret only the server and the receiver know (generated here, shown once, stored encrypted)."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=100)
    # Checked by apps.core.outbound.check_outbound_url (scheme, host, public address), not a validator.
    url = models.CharField(max_length=2000)
    secret = EncryptedTextField(help_text="HMAC signing secret, Fernet-encrypted; shown once when created.")
    events = models.JSONField(default=list, help_text="Event names this webhook receives.")
    active = models.BooleanField(default=True)
    allow_private = models.BooleanField(
        default=False, help_text="Whether the URL may point to a private address (set by a team admin)."
    )
    allow_private_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    allow_private_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="webhook_name_unique_per_team")]

    def __str__(self) -> str:
        return self.name


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to one webhook, with a log of every attempt.

    `pending` deliveries are due at `next_attempt_at`; a worker claims one attempt by a
    conditional UPDATE that takes a short lease (`locked_until`), so a duplicate message
    can't send twice. `enqueued_at` is when a message was last sent for it: the sweep
    re-sends one that seems lost.
    """

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(default=uuid.uuid4, db_index=True, help_text="Same for every delivery of one event.")
    event = models.CharField(max_length=40, choices=WebhookEvent.choices)
    payload = models.JSONField(help_text="The request body, exactly as sent on every attempt.")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=6)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    last_response_code = models.PositiveIntegerField(null=True, blank=True)
    last_response_body = models.CharField(max_length=1000, blank=True, help_text="The start of the last answer.")
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Of the last attempt.")
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempt_log = models.JSONField(default=list, help_text="One entry per attempt.")
    redelivery_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who asked for a ping or a redelivery; empty for events.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]

    def __str__(self) -> str:
        return f"{self.event} #{self.pk} to {self.webhook_id}"
