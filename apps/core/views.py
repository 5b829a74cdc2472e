"""Plain views that are not part of the REST API."""

import sys

from django.db import InterfaceError, OperationalError, connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from apps.core.api.errors import DATABASE_RETRY_AFTER_SECONDS, DATABASE_UNAVAILABLE_MESSAGE
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


def _database_unavailable(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        response: HttpResponse = JsonResponse(
            {"code": "database_unavailable", "message": DATABASE_UNAVAILABLE_MESSAGE, "fields": {}}, status=503
        )
    else:
        response = HttpResponse(DATABASE_UNAVAILABLE_MESSAGE, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """500: the API's error body under /api/ (never a traceback), HTML elsewhere.

    A database outage that escaped a view (in a middleware, a non-REST page, the session
    save) is a 503 with Retry-After instead: Django calls this handler while handling the
    exception, so it is still in sys.exc_info().
    """
    if isinstance(sys.exc_info()[1], OperationalError | InterfaceError):
        return _database_unavailable(request)
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
