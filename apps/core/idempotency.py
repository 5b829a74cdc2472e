"""`Idempotency-Key` for create endpoints: a retried request never acts twice.

A client (the CLI does it for every push) sends `Idempotency-Key: <unique string>`. The first
request with a key records it before acting and stores the answer after; a retry with the
same key and the same request gets that stored answer (with `Idempotent-Replayed: true`),
a retry while the first is still running gets a 409, and the same key reused for another
request a 422. Answers of 5xx and raised errors are not stored, so a retry after a failure
acts again. Keys are per user and kept for `IDEMPOTENCY_TTL_HOURS`.

An answer holding a secret shown once (a new API token's value, a webhook's signing secret)
is a `SecretShownOnce`: its record keeps a sentence instead of the answer, so no secret sits
in this table, and a retry gets a 409 `secret_shown_once` saying what the first request did.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.errors import ApiError
from apps.core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# A record still "in progress" this long after it was made belongs to a request that died.
ABANDONED_AFTER = timedelta(minutes=10)
SHOWN_ONCE_CODE = "secret_shown_once"
# The OpenAPI description of that 409, on each endpoint that answers with a secret.
SHOWN_ONCE_REPLAY_DESCRIPTION = (
    "A retry (same Idempotency-Key) of a request that already succeeded. Its answer held a secret "
    "shown once, which Slipway does not keep, so the retry gets this error (code secret_shown_once) "
    "saying what the first request did and how to get a new secret."
)


class SecretShownOnce(Response):
    """A create's answer that holds a secret shown once. `replay_message` is what a retry of
    the same request reads instead: what the first request did and how to get a new secret."""

    def __init__(self, data: Any, *, replay_message: str, status: int = status.HTTP_200_OK) -> None:
        super().__init__(data, status=status)
        self.replay_message = replay_message


def _stored_answer(response: Response) -> tuple[int, Any]:
    if isinstance(response, SecretShownOnce):
        error = {"code": SHOWN_ONCE_CODE, "message": response.replay_message, "fields": {}}
        return status.HTTP_409_CONFLICT, error
    body = json.loads(json.dumps(response.data, default=str)) if response.data is not None else None
    return response.status_code, body


def _fingerprint(request: Request) -> str:
    """SHA-256 over the method, path, and fields of the request; files count by content hash."""
    data = request.data
    fields: dict[str, Any] = {}
    items = data.lists() if hasattr(data, "lists") else (data.items() if isinstance(data, dict) else [])
    for name, value in items:
        values = value if isinstance(value, list) else [value]
        fields[name] = [
            {"file_sha256": getattr(v, "sha256", None), "size": getattr(v, "size", None)} if hasattr(v, "read") else v
            for v in values
        ]
    payload = {"method": request.method, "path": request.path, "fields": fields}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _claim(request: Request, key: str, fingerprint: str) -> tuple[IdempotencyRecord | None, Response | None]:
    """Record the key, or return the answer a retry should get."""
    now = timezone.now()
    user_id: int = request.user.pk  # type: ignore[assignment]  # authenticated: every create needs it
    for _ in range(2):
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    user_id=user_id,
                    key=key,
                    method=request.method or "",
                    path=request.path[:500],
                    fingerprint=fingerprint,
                    expires_at=now + timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS),
                )
            return record, None
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(user_id=user_id, key=key).first()
            if existing is None:
                continue
            stale = not existing.done and existing.created_at < now - ABANDONED_AFTER
            if existing.expires_at <= now or stale:
                IdempotencyRecord.objects.filter(pk=existing.pk).delete()
                continue
            if existing.fingerprint != fingerprint:
                raise ApiError(
                    "idempotency_key_reused",
                    f"The Idempotency-Key '{key}' was already used for a different request "
                    f"({existing.method} {existing.path}). Use a new key for a new request.",
                    status.HTTP_422_UNPROCESSABLE_ENTITY,
                ) from None
            if not existing.done:
                raise ApiError(
                    "idempotency_in_progress",
                    f"A request with the Idempotency-Key '{key}' is still being processed; retry in a moment.",
                    status.HTTP_409_CONFLICT,
                ) from None
            replay = Response(existing.response_body, status=existing.response_status)
            replay["Idempotent-Replayed"] = "true"
            return None, replay
    raise ApiError("idempotency_conflict", "Could not record the Idempotency-Key; retry the request.", 409)


def idempotent(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Make a DRF create handler (`post`/`create`) honour `Idempotency-Key`."""

    @wraps(handler)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None or not request.user.is_authenticated:
            # Keys are remembered per user. A device's agent calls as no user: its calls are
            # idempotent by their nature (a beat; a registration spends its one-time token).
            return handler(view, request, *args, **kwargs)
        if not _VALID_KEY.match(key):
            raise ApiError(
                "invalid_idempotency_key",
                "The Idempotency-Key must be 1 to 255 visible ASCII characters, e.g. a UUID.",
            )
        record, replay = _claim(request, key, _fingerprint(request))
        if replay is not None:
            return replay
        assert record is not None
        try:
            response = handler(view, request, *args, **kwargs)
        except BaseException:
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
            raise
        if response.status_code >= 500:
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
        else:
            stored_status, body = _stored_answer(response)
            IdempotencyRecord.objects.filter(pk=record.pk).update(
                done=True, response_status=stored_status, response_body=body
            )
        return response

    wrapper.idempotent = True  # type: ignore[attr-defined]
    return wrapper
