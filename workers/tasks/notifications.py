"""Celery entry points for emails: take an id, load it, send."""

from __future__ import annotations

import smtplib

from celery import shared_task
from django.db import InterfaceError, OperationalError

from apps.approvals import notifications
from apps.registry.models import ModelVersion


@shared_task(
    name=notifications.NOTIFY_TASK,
    acks_late=True,
    # a mail server or the database briefly away: try again later rather than lose the email
    autoretry_for=(smtplib.SMTPException, ConnectionError, TimeoutError, OperationalError, InterfaceError),
    retry_backoff=30,
    retry_backoff_max=600,
    max_retries=5,
    soft_time_limit=60,
)
def version_ready(version_id: int) -> int:
    version = ModelVersion.objects.select_related("model__team", "created_by").filter(pk=version_id).first()
    return notifications.send_review_request(version) if version else 0
