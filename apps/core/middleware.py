"""Request context: every request gets an id (or keeps the caller's), echoed back and put in
logs, and the client's address and how it authenticated are kept for the audit trail."""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

_VALID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


@dataclass
class RequestContext:
    """What the audit trail records about where a change came from."""

    request_id: str = "-"
    ip: str | None = None
    via: str = "system"  # "session", "token:<key id>", or "system"/"worker" outside requests


_context: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("request_context", default=None)


def current_request_id() -> str:
    ctx = _context.get()
    return ctx.request_id if ctx else "-"


def current_context() -> RequestContext | None:
    return _context.get()


def _client_ip(request: HttpRequest) -> str | None:
    # X-Forwarded-For is only believed from a proxy the deployment says it runs behind.
    remote = request.META.get("REMOTE_ADDR") or None
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded and remote in settings.TRUSTED_PROXIES:
        remote = forwarded.split(",")[0].strip()
    try:
        return str(ipaddress.ip_address(remote)) if remote else None
    except ValueError:
        return None


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get("X-Request-ID", "")
        request_id = supplied if _VALID.match(supplied) else uuid.uuid4().hex
        token = _context.set(RequestContext(request_id=request_id, ip=_client_ip(request), via="session"))
        try:
            response = self.get_response(request)
        finally:
            _context.reset(token)
        response["X-Request-ID"] = request_id
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


class RejectNulBytesMiddleware:
    """Refuse a URL with a NUL character (raw or %00) before any view sees it: no database
    can store one, and no legitimate client sends it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            return JsonResponse(
                {
                    "code": "invalid_characters",
                    "message": "The URL contains a NUL character (%00); remove it and send the request again.",
                    "fields": {},
                },
                status=400,
            )
        return self.get_response(request)


class SecurityHeadersMiddleware:
    """A Content-Security-Policy for everything the app serves (the browser app, the API docs,
    the admin): scripts and connections only from this origin, no framing, no plugins; and
    the permissions the app never needs switched off. Inline styles stay allowed: React and
    the plots set style attributes."""

    POLICY = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    )
    PERMISSIONS = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.POLICY)
        response.headers.setdefault("Permissions-Policy", self.PERMISSIONS)
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response
