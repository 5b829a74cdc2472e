"""How webhook requests are signed, and how a receiver checks them.

Every delivery is a `POST` with a JSON body and these headers:

    Content-Type: application/json
    User-Agent: Slipway-Webhooks/1
    X-Slipway-Event: version.approved
    X-Slipway-Delivery: 1234                 (this delivery; a redelivery gets a new one)
    X-Slipway-Timestamp: 1767225600          (Unix seconds when this attempt was signed)
    X-Slipway-Signature: sha256=<hex>

The body is `{"id": <event uuid>, "event": ..., "occurred_at": ..., "team": ..., "data": {...}}`;
`id` is the same on every attempt and redelivery of one event.

`<hex>` is HMAC-SHA256, keyed with the webhook's signing secret (shown once when the webhook
is created or its secret rotated), of the timestamp, a dot, and the raw body bytes:
`f"{timestamp}.".encode() + body`.

A receiver should:
1. Take the raw request body, before any JSON parsing (re-serializing changes the bytes).
2. Refuse the request if the timestamp is more than 5 minutes from its own clock: a captured
   request can't be replayed later.
3. Compute the HMAC and compare it with the header in constant time (`hmac.compare_digest`).
4. Answer 2xx quickly (within the read timeout, 10 s by default) and do the work later.
   Any other answer is a failure: 5xx, 408, 429 and timeouts are retried with exponential
   backoff, other 4xx and redirects are not.
5. Ignore an event `id` it has already processed: delivery is at least once.

In Python, `verify()` below does steps 2 and 3:

    ok = verify(secret, request.headers["X-Slipway-Timestamp"], request.body,
                request.headers["X-Slipway-Signature"])

After a secret rotation, every request (retries of earlier events too) is signed with the
new secret only.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_PREFIX = "sha256="
REPLAY_WINDOW_SECONDS = 300


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The X-Slipway-Signature value for a body sent at `timestamp`."""
    message = f"{timestamp}.".encode() + body
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: int | str,
    body: bytes,
    signature: str,
    *,
    tolerance_seconds: int = REPLAY_WINDOW_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether a request is authentic and recent: what a receiver checks."""
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature or "")
