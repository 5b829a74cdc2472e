"""Plain views that are not part of the REST API."""

import math
import sys

from django.contrib import admin
from django.db import InterfaceError, OperationalError, connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from apps.core.api.errors import (
    DATABASE_RETRY_AFTER_SECONDS,
    ApiError,
    ServiceUnavailable,
    database_problem,
    disk_full,
)
from apps.core.api.throttling import SignInThrottle
from apps.core.middleware import current_request_id


def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers, 503 otherwise. Used by load balancers and compose."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        response = JsonResponse({"status": "unavailable", "database": type(exc).__name__}, status=503)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
    return JsonResponse({"status": "ok"})


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for paths no route matches: the API's error body under /api/, HTML elsewhere."""
    if _wants_json(request):
        return JsonResponse(
            {
                "code": "not_found",
                "message": f"There is no API endpoint at {request.path}. The endpoints are listed at /api/docs/.",
                "fields": {},
            },
            status=404,
        )
    return defaults.page_not_found(request, exception or Http404())


def _unavailable(request: HttpRequest, problem: ServiceUnavailable) -> HttpResponse:
    if _wants_json(request):
        response: HttpResponse = JsonResponse(
            {"code": problem.code, "message": problem.message, "fields": {}}, status=problem.status_code
        )
    else:
        response = HttpResponse(problem.message, status=problem.status_code, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def _client_error(request: HttpRequest, status: int, code: str, message: str, page: HttpResponse) -> HttpResponse:
    return (
        JsonResponse({"code": code, "message": message, "fields": {}}, status=status) if _wants_json(request) else page
    )


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """400 raised by Django itself (a disallowed Host header, a request body over the size
    limit): the API's error body under /api/, Django's page elsewhere."""
    detail = " ".join(str(exception or "").split())[:300]
    return _client_error(
        request,
        400,
        "bad_request",
        f"The request was refused before it reached the API{': ' + detail if detail else ''}. "
        "Check the URL, the headers and the size of what you sent.",
        defaults.bad_request(request, exception or Exception()),
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """403 raised outside the API's own permission checks: the API's error body under /api/."""
    return _client_error(
        request,
        403,
        "permission_denied",
        "You do not have permission to do this.",
        defaults.permission_denied(request, exception or Exception()),
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """500: the API's error body under /api/ (never a traceback), HTML elsewhere.

    A database outage or a full disk that escaped a view (in a middleware, a non-REST page,
    the session save) is a 503 with Retry-After instead, naming the database or the disk:
    Django calls this handler while handling the exception, so it is still in sys.exc_info().
    """
    exc = sys.exc_info()[1]
    if isinstance(exc, OperationalError | InterfaceError):
        return _unavailable(request, database_problem(exc))
    if exc is not None and (full := disk_full(exc)) is not None:
        return _unavailable(request, full)
    if _wants_json(request):
        return JsonResponse(
            {
                "code": "server_error",
                "message": "Slipway hit an internal error. It has been logged; retry, or report it with the "
                f"request id {request.META.get('HTTP_X_REQUEST_ID') or current_request_id()}.",
                "fields": {},
            },
            status=500,
        )
    return defaults.server_error(request)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's login page behind the API sign-in's limiter (SignInThrottle): the same
    counters per client address, so guesses spread over both forms are counted together."""
    throttle = SignInThrottle()
    try:
        allowed = throttle.allow_request(request, None)  # type: ignore[arg-type]  # reads method and META only
    except ApiError as exc:  # the limiter's store is down: it fails closed
        return HttpResponse(exc.message, status=exc.status_code, content_type="text/plain; charset=utf-8")
    if not allowed:
        wait = max(1, math.ceil(throttle.wait() or 1))
        response = HttpResponse(
            f"Too many sign-in attempts from your address. Wait {wait} seconds, then try again.",
            status=429,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = str(wait)
        return response
    return admin.site.login(request)
