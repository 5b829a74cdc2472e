"""Periodic housekeeping run by celery beat."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from apps.pipeline import services


@shared_task(name="slipway.jobs.reconcile", acks_late=True, soft_time_limit=120, time_limit=180)
def reconcile() -> dict[str, int]:
    """Re-send lost job messages and take back jobs whose worker stopped sending heartbeats."""
    return asdict(services.reconcile())


@shared_task(name="slipway.core.expire_idempotency_keys", acks_late=True, soft_time_limit=120, time_limit=180)
def expire_idempotency_keys() -> int:
    """Forget Idempotency-Keys past their lifetime."""
    from django.utils import timezone

    from apps.core.models import IdempotencyRecord

    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
