"""Rate limits per API token (or per signed-in user for browser sessions).

Counts live in the Django cache: Redis in production (SLIPWAY_CACHE_URL) so every web
process shares them, process memory in the embedded default.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from apps.accounts.models import ApiToken

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
        if isinstance(request.auth, ApiToken):
            ident = f"token:{request.auth.key_id}"
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
