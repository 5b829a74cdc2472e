"""Signing in and out of the browser app, with the attempts on the audit trail."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate, login, logout
from django.db import transaction
from django.http import HttpRequest
from rest_framework import status

from apps.audit.services import record
from apps.core.api.errors import ApiError


def sign_in(request: HttpRequest, username: str, password: str) -> Any:
    """Start a session for the user whose credentials these are.

    A failure is recorded (the name tried, the client's address from the request context)
    and answers one sentence whether the user exists or not, so the answer can't be used to
    find account names."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        with transaction.atomic():
            record(
                "session.login_failed",
                object_type="user",
                object_id=username[:64],
                object_repr=username[:200],
                after={"username": username[:150]},
            )
        raise ApiError(
            "invalid_credentials",
            "That username and password don't match an active account. Check both and try again.",
            status.HTTP_400_BAD_REQUEST,
        )
    start_session(request, user)
    return user


def start_session(request: HttpRequest, user: Any) -> None:
    """Sign `user` in on this browser (after a password check or an accepted invitation)."""
    with transaction.atomic():
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        record("session.login", user, actor=user, object_repr=user.get_username())


def sign_out(request: HttpRequest) -> None:
    """End the browser session (a token-authenticated caller has none: nothing happens)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and request.session.session_key:
        with transaction.atomic():
            record("session.logout", user, actor=user, object_repr=user.get_username())
    logout(request)
