"""One error body for every API failure: {"code", "message", "fields"}."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response


class ApiError(exceptions.APIException):
    """An error with a stable machine code and a sentence for people."""

    def __init__(self, code: str, message: str, http_status: int = status.HTTP_400_BAD_REQUEST):
        super().__init__(detail=message, code=code)
        self.status_code = http_status
        self.code = code
        self.message = message


class Conflict(ApiError):
    def __init__(self, code: str, message: str):
        super().__init__(code, message, status.HTTP_409_CONFLICT)


# How long a client is asked to wait (Retry-After) while the database is unavailable.
DATABASE_RETRY_AFTER_SECONDS = 5
DATABASE_UNAVAILABLE_MESSAGE = (
    "Slipway's database is not answering right now (unreachable, restarting or overloaded), so the request "
    "was not carried out. Retry in a few seconds; if it persists, ask an admin to check the PostgreSQL server."
)


class DatabaseUnavailable(ApiError):
    """The database could not be reached: a 503 the client may retry, never a 500."""

    def __init__(self) -> None:
        super().__init__("database_unavailable", DATABASE_UNAVAILABLE_MESSAGE, status.HTTP_503_SERVICE_UNAVAILABLE)


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [str(item) if not isinstance(item, (dict, list)) else _flatten(item) for item in detail]
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    # Imported here: rest_framework.views loads the permission classes, which raise ApiError.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, DataError):
        # A value the database can't store (a NUL character in JSON, a number out of range):
        # the request's fault, and nothing was written (the transaction rolled back).
        exc = ApiError(
            "invalid_value",
            "The request holds a value the database can't store (a NUL character, or a number out of range). "
            "Check the fields you sent.",
        )
    elif isinstance(exc, OperationalError | InterfaceError):
        # PostgreSQL is down or restarting (connection refused, terminated, shutting down): the
        # server's condition, not the request's and not a bug. A 503 with Retry-After tells
        # clients and load balancers to come back; a 500 would page someone for nothing.
        exc = DatabaseUnavailable()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found. It does not exist or you have no access to it.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        body = {"code": exc.code, "message": exc.message, "fields": {}}
    elif isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if isinstance(fields, dict):
            first = next(iter(fields.items()), ("", ""))
            first_msg = first[1][0] if isinstance(first[1], list) and first[1] else first[1]
            message = f"{first[0]}: {first_msg}" if first[0] != "non_field_errors" else str(first_msg)
        else:
            fields, message = {}, "; ".join(map(str, fields))
        body = {"code": "invalid", "message": str(message), "fields": fields}
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        body = {
            "code": code if isinstance(code, str) else "error",
            "message": str(detail),
            "fields": {},
        }
    response.data = body
    if isinstance(exc, DatabaseUnavailable):
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response
