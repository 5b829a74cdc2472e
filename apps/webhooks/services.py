"""Every write to webhooks goes through here: emit events, create, change, delete, rotate the
secret, ping, redeliver. Each is permission-checked and audited in its own transaction.

Everything about webhooks, reading included, needs `Action.MANAGE` (team admins): URLs
often carry credentials of their own (chat incoming-webhook URLs are bearer secrets) and
delivery payloads describe models and deployments in detail.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import Team
from apps.accounts.permissions import Action, require
from apps.audit.services import record
from apps.core.api.errors import ApiError, Conflict
from apps.core.outbound import check_outbound_url, private_outbound_allowed
from apps.webhooks.delivery import enqueue_on_commit
from apps.webhooks.models import SUBSCRIBABLE_EVENTS, DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent

SECRET_PREFIX = "whsec_"  # noqa: S105 - a public marker, not a secret
NAME_LIMIT = 100

_ALL_EVENTS = frozenset(e.value for e in WebhookEvent)


def _json(payload: dict[str, Any]) -> dict[str, Any]:
    # Round-trip now, in the caller's transaction: a value that isn't JSON fails the caller
    # loudly, and dates, UUIDs and decimals are stored as the strings the receiver will get.
    encoded: dict[str, Any] = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    return encoded


def _new_delivery(
    hook: Webhook, event: str, envelope: dict[str, Any], *, requested_by: Any = None, redelivery_of: Any = None
) -> WebhookDelivery:
    now = timezone.now()
    delivery = WebhookDelivery.objects.create(
        webhook=hook,
        event_id=uuid.UUID(str(envelope["id"])),
        event=event,
        payload=envelope,
        max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
        next_attempt_at=now,
        enqueued_at=now,
        requested_by=requested_by if getattr(requested_by, "pk", None) else None,
        redelivery_of=redelivery_of,
    )
    enqueue_on_commit(delivery.pk)
    return delivery


def _envelope(team: Team, event: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "event": event,
        "occurred_at": timezone.now().isoformat(),
        "team": team.slug,
        "data": _json(data),
    }


def emit(team: Team, event: str, payload: dict[str, Any]) -> list[WebhookDelivery]:
    """Queue `event` for every active webhook of the team subscribed to it.

    Call it inside the transaction that made the change: the deliveries exist exactly when
    the change does, and messages go to the workers only after it commits. `payload` becomes
    the body's `data`; it must be JSON (dates, UUIDs and decimals are turned into strings).
    """
    if event not in _ALL_EVENTS:
        raise ValueError(f"Unknown webhook event {event!r}; known events: {', '.join(sorted(_ALL_EVENTS))}.")
    hooks = [
        hook
        for hook in Webhook.objects.filter(team=team, active=True).defer("secret").order_by("pk")
        if event in (hook.events or [])
    ]
    if not hooks:
        return []
    envelope = _envelope(team, event, payload)
    with transaction.atomic():
        return [_new_delivery(hook, event, envelope) for hook in hooks]


# --- managing webhooks ------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ApiError("invalid_name", "Give the webhook a name, e.g. 'CI notifications'.")
    if len(name) > NAME_LIMIT:
        raise ApiError("invalid_name", f"The name is longer than {NAME_LIMIT} characters; shorten it.")
    return name


def _clean_events(events: Iterable[str] | None) -> list[str]:
    wanted = list(dict.fromkeys(str(e).strip() for e in (events or [])))
    unknown = [e for e in wanted if e not in SUBSCRIBABLE_EVENTS]
    if unknown:
        hint = " (a ping is sent on request with POST /webhooks/{id}/ping/)" if "ping" in unknown else ""
        raise ApiError(
            "unknown_event",
            f"Unknown event {', '.join(repr(e) for e in unknown)}{hint}. Webhooks can subscribe to: "
            f"{', '.join(SUBSCRIBABLE_EVENTS)}.",
        )
    if not wanted:
        raise ApiError("no_events", f"Subscribe the webhook to at least one event: {', '.join(SUBSCRIBABLE_EVENTS)}.")
    return wanted


def _url_for_audit(url: str) -> str:
    # The path and query can hold the receiver's own credentials; the audit trail gets the
    # origin and a fingerprint that still shows when the URL changed.
    parts = urlsplit(url)
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return f"{parts.scheme}://{parts.netloc}/… (sha256 {digest})"


def _snapshot(hook: Webhook) -> dict[str, Any]:
    """What the audit trail keeps of a webhook: never the secret."""
    return {
        "name": hook.name,
        "url": _url_for_audit(hook.url),
        "events": list(hook.events),
        "active": hook.active,
        "allow_private": hook.allow_private,
    }


def _save_unique(hook: Webhook, **kwargs: Any) -> None:
    try:
        with transaction.atomic():
            hook.save(**kwargs)
    except IntegrityError:
        raise Conflict(
            "name_taken", f"Team {hook.team.slug} already has a webhook called '{hook.name}'; choose another name."
        ) from None


def create_webhook(
    *,
    team: Team,
    user: Any,
    name: str,
    url: str,
    events: Iterable[str],
    active: bool = True,
    allow_private: bool = False,
) -> tuple[Webhook, str]:
    """Register a webhook; return it with its signing secret, which is never shown again."""
    require(user, team, Action.MANAGE)
    name, event_list = _clean_name(name), _clean_events(events)
    target = check_outbound_url(url, private_outbound_allowed(allow_private))
    secret = new_secret()
    now = timezone.now()
    hook = Webhook(
        team=team,
        name=name,
        url=target.url,
        secret=secret,
        events=event_list,
        active=active,
        allow_private=allow_private,
        allow_private_by=user if allow_private else None,
        allow_private_at=now if allow_private else None,
        created_by=user,
        created_at=now,
        updated_at=now,
    )
    with transaction.atomic():
        _save_unique(hook)
        record("webhook.created", hook, actor=user, team=team, after=_snapshot(hook))
    return hook, secret


_UNSET: Any = object()


def update_webhook(
    hook: Webhook,
    user: Any,
    *,
    name: str = _UNSET,
    url: str = _UNSET,
    events: Iterable[str] = _UNSET,
    active: bool = _UNSET,
    allow_private: bool = _UNSET,
) -> Webhook:
    """Change what was given; the URL is checked again when it or `allow_private` changes."""
    require(user, hook.team, Action.MANAGE)
    before = _snapshot(hook)
    if name is not _UNSET:
        hook.name = _clean_name(name)
    if events is not _UNSET:
        hook.events = _clean_events(events)
    if active is not _UNSET:
        hook.active = bool(active)
    if allow_private is not _UNSET and bool(allow_private) != hook.allow_private:
        hook.allow_private = bool(allow_private)
        hook.allow_private_by = user if hook.allow_private else None
        hook.allow_private_at = timezone.now() if hook.allow_private else None
    if url is not _UNSET or allow_private is not _UNSET:
        hook.url = check_outbound_url(
            hook.url if url is _UNSET else url, private_outbound_allowed(hook.allow_private)
        ).url
    after = _snapshot(hook)
    if after == before:
        return hook
    hook.updated_at = timezone.now()
    with transaction.atomic():
        _save_unique(
            hook,
            update_fields=[
                "name",
                "url",
                "events",
                "active",
                "allow_private",
                "allow_private_by",
                "allow_private_at",
                "updated_at",
            ],
        )
        record("webhook.updated", hook, actor=user, before=before, after=after)
    return hook


def delete_webhook(hook: Webhook, user: Any) -> None:
    """Delete the webhook and its delivery log; pending deliveries are not sent."""
    require(user, hook.team, Action.MANAGE)
    with transaction.atomic():
        record("webhook.deleted", hook, actor=user, before=_snapshot(hook))
        hook.delete()


def rotate_secret(hook: Webhook, user: Any) -> str:
    """Replace the signing secret; return the new one, shown this once. Every request from
    now on, retries of earlier events included, is signed with it."""
    require(user, hook.team, Action.MANAGE)
    secret = new_secret()
    hook.secret = secret
    hook.secret_rotated_at = hook.updated_at = timezone.now()
    with transaction.atomic():
        hook.save(update_fields=["secret", "secret_rotated_at", "updated_at"])
        record("webhook.secret_rotated", hook, actor=user)
    return secret


def ping(hook: Webhook, user: Any) -> WebhookDelivery:
    """Send a `ping` event to this webhook now, whatever it subscribed to and even if inactive."""
    require(user, hook.team, Action.MANAGE)
    data = {"webhook": {"id": hook.pk, "name": hook.name}, "message": "Ping from Slipway."}
    with transaction.atomic():
        delivery = _new_delivery(
            hook, WebhookEvent.PING, _envelope(hook.team, WebhookEvent.PING, data), requested_by=user
        )
        record("webhook.pinged", hook, actor=user, after={"delivery": delivery.pk})
    return delivery


def redeliver(delivery: WebhookDelivery, user: Any) -> WebhookDelivery:
    """Send a finished delivery's event again, as a new delivery with the same event id."""
    hook = delivery.webhook
    require(user, hook.team, Action.MANAGE)
    if delivery.status == DeliveryStatus.PENDING:
        raise Conflict(
            "delivery_pending",
            f"Delivery {delivery.pk} is still being attempted ({delivery.attempts} of {delivery.max_attempts} "
            "attempts so far); wait for it to finish before redelivering.",
        )
    if not hook.active and delivery.event != WebhookEvent.PING:
        raise Conflict("webhook_inactive", f"The webhook '{hook.name}' is inactive; activate it to redeliver.")
    with transaction.atomic():
        again = _new_delivery(hook, delivery.event, delivery.payload, requested_by=user, redelivery_of=delivery)
        record("webhook.redelivered", hook, actor=user, after={"delivery": again.pk, "redelivery_of": delivery.pk})
    return again


def check_can_read(user: Any, hook: Webhook) -> None:
    """Reading a webhook or its deliveries needs MANAGE, like changing it (see the module doc)."""
    require(user, hook.team, Action.MANAGE)
