"""`Authorization: Bearer slw_<id>_<secret>` authentication for CI and the CLI."""

from __future__ import annotations

import hmac
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.accounts.models import TOKEN_PREFIX, ApiToken, hash_token_secret
from apps.core.middleware import current_context

# Writing last_used_at on every request would turn every read into a write.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[object, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        value = value.strip()
        parts = value.split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise exceptions.AuthenticationFailed(
                "The API token is malformed. Tokens look like slw_<id>_<secret>; "
                "create one in Slipway and copy it whole."
            )
        _, key_id, secret = parts
        token = ApiToken.objects.select_related("user").filter(key_id=key_id).first()
        if token is None or not hmac.compare_digest(token.key_hash, hash_token_secret(secret)):
            raise exceptions.AuthenticationFailed("The API token is not valid. Check it, or create a new one.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("The API token was revoked. Create a new one.")
        if not token.is_active:
            raise exceptions.AuthenticationFailed("The API token has expired. Create a new one.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The account that owns this API token is disabled.")
        if (ctx := current_context()) is not None:
            ctx.via = f"token:{token.key_id}"
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
