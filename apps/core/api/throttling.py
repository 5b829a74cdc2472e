"""Rate limits per API token (or per signed-in user for browser sessions), and per address for
sign-in attempts.

Counts live in the Django cache: Redis in production (SLIPWAY_CACHE_URL) so every web
process shares them, process memory in the embedded default.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from apps.core.api.errors import ApiError
from apps.core.middleware import current_context

logger = logging.getLogger(__name__)

# After the cache fails, requests skip it for this long instead of each waiting on a dead
# server (redis-py retries a refused connection for most of a second).
CACHE_RETRY_AFTER_SECONDS = 10.0


def cache_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError,)
    try:
        import redis
    except ImportError:  # the embedded default counts in process memory
        return errors
    return (*errors, redis.exceptions.RedisError)


class PerTokenRateThrottle(SimpleRateThrottle):
    """Fails open: when the counters' cache (Redis) is unreachable, requests are let through
    and a warning logged. A rate limiter must not turn a Redis outage into an API outage:
    PostgreSQL holds everything that matters, and reads and uploads keep working without Redis."""

    scope = "api"
    _cache_down_until = 0.0  # shared by every throttle in this process

    def allow_request(self, request: Request, view: Any) -> bool:
        if time.monotonic() < PerTokenRateThrottle._cache_down_until:
            return True
        try:
            return super().allow_request(request, view)
        except cache_errors() as exc:
            PerTokenRateThrottle._cache_down_until = time.monotonic() + CACHE_RETRY_AFTER_SECONDS
            logger.warning(
                "rate-limit cache unreachable (%s); not limiting requests for the next %.0f s",
                exc,
                CACHE_RETRY_AFTER_SECONDS,
            )
            return True

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        # A credential that is counted on its own (an API token) names its key; a browser
        # session is counted per user.
        token_key = getattr(request.auth, "rate_limit_key", None)
        if isinstance(token_key, str) and token_key:
            ident = token_key
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            return None  # refused by authentication anyway
        return self.cache_format % {"scope": self.scope, "ident": ident}


class UploadRateThrottle(PerTokenRateThrottle):
    """Uploads are expensive (disk, a pipeline each): a tighter limit of their own."""

    scope = "upload"

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)


class SignInThrottle(SimpleRateThrottle):
    """Sign-in attempts per client address (SLIPWAY_LOGIN_RATE_LIMIT), so passwords can't be
    guessed at speed; reads and sign-out are limited like every other request.

    The one limiter for every password form: the API's sign-in (POST /api/v1/session/) and the
    admin's login page (apps.core.views.admin_login) count together, per address. It reads only
    `method` and `META`, so it takes a Django request as well as a DRF one."""

    scope = "login"

    def allow_request(self, request: Request, view: Any) -> bool:
        # Unlike the API's limits this one fails closed: without its counters the brute-force
        # guard would be gone, so sign-in waits for the cache (Redis) to answer again.
        try:
            return super().allow_request(request, view)
        except cache_errors() as exc:
            raise ApiError(
                "signin_unavailable",
                "Signing in is unavailable for a moment (the rate-limit store is not answering). "
                "Try again in a few seconds; API tokens keep working.",
                status.HTTP_503_SERVICE_UNAVAILABLE,
            ) from exc

    def get_rate(self) -> str:
        return settings.LOGIN_RATE_LIMIT

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.method != "POST":
            return None
        # The address the audit trail records: X-Forwarded-For only from SLIPWAY_TRUSTED_PROXIES
        # (DRF's own get_ident would believe any client's header, and so be dodged by one).
        context = current_context()
        ident = (context.ip if context else None) or request.META.get("REMOTE_ADDR") or "unknown"
        return self.cache_format % {"scope": self.scope, "ident": ident}
