"""Webhook delivery: one attempt per message, and the sweep that re-sends lost messages."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from apps.webhooks import delivery


@shared_task(
    name=delivery.DELIVER_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=delivery.TASK_TIME_LIMIT_SECONDS - 10,
    time_limit=delivery.TASK_TIME_LIMIT_SECONDS,
)
def deliver(delivery_id: int) -> str:
    """Make the next attempt of webhook delivery `delivery_id`, if it is due and unclaimed."""
    return delivery.deliver(delivery_id)


@shared_task(name=delivery.SWEEP_TASK, acks_late=True, ignore_result=True, soft_time_limit=120, time_limit=180)
def sweep() -> dict[str, int]:
    """Re-send messages for deliveries nobody picked up; fail those abandoned on their last attempt."""
    return asdict(delivery.sweep())
