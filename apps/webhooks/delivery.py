"""Sending deliveries: claim one attempt, POST the signed body, record the outcome, retry.

The rules follow docs/adr/0002: the delivery row is the truth, a Celery message only says
"look at delivery N". An attempt is claimed with a conditional UPDATE that increments
`attempts` and takes a lease, so a duplicated or late message claims nothing. 2xx is a
success; 5xx, 408, 429, timeouts and connection errors are retried with exponential backoff
and jitter up to `max_attempts`; other answers fail for good. The sweep re-sends messages
that seem lost and fails deliveries whose worker died on their last attempt.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.core import durable
from apps.core.api.errors import ApiError
from apps.core.crypto import DecryptionError
from apps.core.messages import Message, send_on_commit
from apps.core.outbound import OutboundRefused, check_outbound_url, guarded_session, private_outbound_allowed
from apps.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEvent
from apps.webhooks.signing import sign

logger = logging.getLogger(__name__)

DELIVER_TASK = "slipway.webhooks.deliver"
SWEEP_TASK = "slipway.webhooks.sweep"
QUEUE = "default"
USER_AGENT = "Slipway-Webhooks/1"
RESPONSE_EXCERPT_CHARS = 500
ERROR_CHARS = 1000
# The task's hard time limit; the lease outlives it, so a claimed attempt is never taken
# over while its worker may still be sending.
TASK_TIME_LIMIT_SECONDS = 120
LEASE_SECONDS = TASK_TIME_LIMIT_SECONDS + 30

RETRYABLE_STATUS = frozenset({408, 429})


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact, key-sorted JSON, the same on every attempt."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def backoff_seconds(attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """How long to wait after failed attempt number `attempt` (1-based) before the next.

    Doubles from `base` (base, 2 base, 4 base, ...) up to `cap`, with "equal jitter": half
    the delay is fixed, half random, so deliveries that failed together don't retry together.
    """
    delay = min(float(cap), float(base) * 2 ** max(0, attempt - 1))
    return delay / 2 + rand() * delay / 2


def enqueue_on_commit(delivery_id: int, countdown: float = 0) -> None:
    """Tell a worker about a delivery once it is committed; a lost message is re-sent by the sweep."""
    message = Message(DELIVER_TASK, delivery_id, QUEUE, countdown=countdown)
    send_on_commit(message, if_lost="the delivery sweep re-sends messages for deliveries left waiting")


@dataclass(frozen=True)
class AttemptOutcome:
    """What one POST came to."""

    success: bool
    retry: bool
    status_code: int | None = None
    error: str = ""
    excerpt: str = ""
    duration_ms: int = 0


def claim(delivery_id: int) -> WebhookDelivery | None:
    """Take the next attempt of a due delivery; None when it is not due, finished, or held."""
    lease = timezone.now() + timedelta(seconds=LEASE_SECONDS)
    if not durable.claim(DELIVERIES, delivery_id, locked_until=lease):
        return None
    return WebhookDelivery.objects.select_related("webhook", "webhook__team").get(pk=delivery_id)


def _abandon(delivery: WebhookDelivery) -> bool:
    """The worker stopped during the last allowed attempt: the delivery fails for good."""
    now = timezone.now()
    return bool(
        WebhookDelivery.objects.filter(DELIVERIES.claimable(now), pk=delivery.pk, attempts=delivery.attempts).update(
            status=DeliveryStatus.FAILED,
            locked_until=None,
            next_attempt_at=None,
            error="The worker stopped during the last attempt (crash or restart); no attempts are left. "
            "Redeliver it once the receiver is reachable.",
        )
    )


# A delivery is held by the lease its claim took (`locked_until`), not by a heartbeat: a POST
# is short, and the lease outlives the task's hard time limit.
DELIVERIES: durable.Lane[WebhookDelivery] = durable.Lane(
    name="webhook deliveries",
    model=WebhookDelivery,
    waiting=lambda now: Q(status=DeliveryStatus.PENDING, locked_until__isnull=True, next_attempt_at__lte=now),
    held=Q(status=DeliveryStatus.PENDING, locked_until__isnull=False),
    silent=lambda now: Q(locked_until__lt=now),
    lost_after=lambda: settings.WEBHOOK_SWEEP_AFTER_SECONDS,
    take_back=lambda delivery, now: {"locked_until": None},
    give_up=_abandon,
    send=lambda delivery: enqueue_on_commit(delivery.pk),
    attempt_field="attempts",
)


def _classify(code: int) -> tuple[bool, bool]:
    """(success, retry) for an HTTP status."""
    if 200 <= code < 300:
        return True, False
    return False, code >= 500 or code in RETRYABLE_STATUS


def post(delivery: WebhookDelivery) -> AttemptOutcome:
    """POST the delivery once. Never raises for the receiver's failures: they are outcomes."""
    hook = delivery.webhook
    if not hook.active and delivery.event != WebhookEvent.PING:
        return AttemptOutcome(False, False, error="The webhook was deactivated before this delivery was sent.")
    allow_private = private_outbound_allowed(hook.allow_private)
    try:
        # Checked again at every attempt: the name may resolve elsewhere than when it was saved.
        check_outbound_url(hook.url, allow_private)
    except ApiError as exc:
        return AttemptOutcome(False, exc.code == "unresolvable_host", error=exc.message)
    try:
        secret = hook.secret.reveal()
    except DecryptionError as exc:
        return AttemptOutcome(False, False, error=f"{exc} Rotate the webhook's secret to set a new one.")
    body = body_bytes(delivery.payload)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Slipway-Event": delivery.event,
        "X-Slipway-Delivery": str(delivery.pk),
        "X-Slipway-Timestamp": str(timestamp),
        "X-Slipway-Signature": sign(secret, timestamp, body),
    }
    timeout = (settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS, settings.WEBHOOK_READ_TIMEOUT_SECONDS)
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        with (
            guarded_session(allow_private) as session,
            session.post(
                hook.url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
            ) as r,
        ):
            raw = next(r.iter_content(RESPONSE_EXCERPT_CHARS), b"")
            excerpt = raw.decode("utf-8", errors="replace")[:RESPONSE_EXCERPT_CHARS]
            code = r.status_code
            location = r.headers.get("Location", "")
    except OutboundRefused as exc:
        return AttemptOutcome(False, False, error=str(exc), duration_ms=elapsed())
    except requests.Timeout:
        return AttemptOutcome(
            False,
            True,
            error=f"No answer within the timeouts (connect {timeout[0]} s, read {timeout[1]} s).",
            duration_ms=elapsed(),
        )
    except requests.ConnectionError as exc:
        return AttemptOutcome(False, True, error=f"Could not connect: {exc}", duration_ms=elapsed())
    except requests.RequestException as exc:
        return AttemptOutcome(False, False, error=f"The request could not be made: {exc}", duration_ms=elapsed())

    success, retry = _classify(code)
    error = ""
    if 300 <= code < 400:
        error = (
            f"The receiver answered {code} with a redirect{f' to {location}' if location else ''}; webhooks don't "
            "follow redirects. Update the webhook's URL."
        )
    elif not success:
        error = f"The receiver answered {code}."
    return AttemptOutcome(success, retry, status_code=code, error=error, excerpt=excerpt, duration_ms=elapsed())


def record(delivery: WebhookDelivery, outcome: AttemptOutcome) -> str:
    """Store the attempt's outcome; schedule the next attempt or finish. Fenced by the
    attempt claimed: a worker whose lease was taken over writes nothing."""
    now = timezone.now()
    attempt = delivery.attempts
    entry = {
        "attempt": attempt,
        "at": now.isoformat(),
        "status_code": outcome.status_code,
        "duration_ms": outcome.duration_ms,
        "error": outcome.error[:ERROR_CHARS],
        "response": outcome.excerpt[:200],
    }
    fields: dict[str, Any] = {
        "locked_until": None,
        "last_response_code": outcome.status_code,
        "last_response_body": outcome.excerpt[:RESPONSE_EXCERPT_CHARS],
        "duration_ms": outcome.duration_ms,
        "attempt_log": [*delivery.attempt_log, entry],
    }
    delay = 0.0
    if outcome.success:
        result = "succeeded"
        fields.update(status=DeliveryStatus.SUCCEEDED, delivered_at=now, next_attempt_at=None, error="")
    elif outcome.retry and attempt < delivery.max_attempts:
        result = "retrying"
        delay = backoff_seconds(
            attempt, base=settings.WEBHOOK_BACKOFF_BASE_SECONDS, cap=settings.WEBHOOK_BACKOFF_MAX_SECONDS
        )
        fields.update(
            next_attempt_at=now + timedelta(seconds=delay), enqueued_at=now, error=outcome.error[:ERROR_CHARS]
        )
    else:
        result = "failed"
        error = outcome.error
        if outcome.retry:
            error = f"Gave up after {attempt} attempts. Last: {error}"
        fields.update(status=DeliveryStatus.FAILED, next_attempt_at=None, error=error[:ERROR_CHARS])
    with transaction.atomic():
        updated = durable.fenced(DELIVERIES, delivery).update(**fields)
        if not updated:
            logger.warning("webhook delivery %s attempt %s no longer owned; outcome dropped", delivery.pk, attempt)
            return "dropped"
        if result == "retrying":
            enqueue_on_commit(delivery.pk, countdown=delay)
    logger.info(
        "webhook delivery %s (%s) attempt %s/%s: %s%s",
        delivery.pk,
        delivery.event,
        attempt,
        delivery.max_attempts,
        result,
        f" ({outcome.status_code})" if outcome.status_code else "",
    )
    return result


def deliver(delivery_id: int) -> str:
    """Make the next attempt of a delivery, if it is due and not held by another worker."""
    delivery = claim(delivery_id)
    if delivery is None:
        return "not claimed"
    return record(delivery, post(delivery))


@dataclass(frozen=True)
class SweepReport:
    resent_lost: int
    failed_abandoned: int


def sweep() -> SweepReport:
    """Re-send messages for due deliveries nobody picked up (or whose worker's lease ran out),
    and fail deliveries whose worker stopped during their last allowed attempt."""
    done = durable.reconcile(DELIVERIES)
    return SweepReport(resent_lost=done.requeued_stale + done.resent_lost, failed_abandoned=done.failed_exhausted)
