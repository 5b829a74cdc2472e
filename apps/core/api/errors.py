"""One error body for every API failure: {"code", "message", "fields"}; domain errors become HTTP here only."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from apps.core.errors import Conflict, DomainError, ServiceUnavailable

__all__ = ["ApiError", "Conflict", "DomainError", "ServiceUnavailable", "database_problem", "exception_handler"]


# Services raise domain errors (apps/core/errors.py); the API answers them here. ApiError is
# the domain error under the name most call sites use.
ApiError = DomainError


# How long a client is asked to wait (Retry-After) while the database is unavailable.
DATABASE_RETRY_AFTER_SECONDS = 5
SQLITE_FULL = 13  # sqlite3's result code for "database or disk is full"
POSTGRESQL_DISK_FULL = "53100"  # SQLSTATE disk_full


def database_problem(exc: BaseException | None = None) -> ServiceUnavailable:
    """The 503 for a database error that is the server's condition, not the request's fault:
    the SQLite file (by path) or the PostgreSQL server (by address), and a full disk as such."""
    from django.db import connection

    from apps.core.diskspace import disk_full_message, out_of_space

    db = connection.settings_dict
    cause = exc.__cause__ if exc is not None else None
    not_done = "the request was not carried out"
    if connection.vendor == "sqlite":
        path = str(db.get("NAME"))
        full = getattr(cause, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(exc or "")
        if full or (exc is not None and out_of_space(exc, path)):
            return ServiceUnavailable(
                "disk_full", disk_full_message(path, f"Slipway's SQLite database can't record anything and {not_done}")
            )
        return ServiceUnavailable(
            "database_unavailable",
            f"Slipway's database, the SQLite file {path}, can't be used right now ({_short(exc)}), so {not_done}. "
            "Retry in a few seconds; if it persists, check that the file and its folder exist and are writable "
            "and that the disk holding it has free space.",
        )
    if connection.vendor == "postgresql":
        server = f"the PostgreSQL server at {db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}"
        if getattr(cause, "sqlstate", None) == POSTGRESQL_DISK_FULL:
            return ServiceUnavailable(
                "disk_full",
                f"The disk of Slipway's database, {server}, is full, so {not_done}. "
                "Ask an admin to free space on the database server, then try again.",
            )
        return ServiceUnavailable(
            "database_unavailable",
            f"Slipway's database, {server}, is not answering right now (unreachable, restarting or overloaded), "
            f"so {not_done}. Retry in a few seconds; if it persists, ask an admin to check that server.",
        )
    return ServiceUnavailable(
        "database_unavailable",
        f"Slipway's database ({connection.display_name} {db.get('NAME')}) can't be used right now, so {not_done}. "
        "Retry in a few seconds; if it persists, ask an admin to check it.",
    )


def disk_full(exc: BaseException) -> ServiceUnavailable | None:
    """A 503 naming the full disk, when `exc` is running out of space outside the database."""
    from django.conf import settings

    from apps.core.diskspace import disk_full_message, out_of_space

    path = out_of_space(exc, settings.DATA_DIR)
    if path is None:
        return None
    return ServiceUnavailable("disk_full", disk_full_message(path, "the request was not carried out"))


def _short(exc: BaseException | None) -> str:
    text = " ".join(str(exc or "").split())
    return text[:200] or "no details"


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [str(item) if not isinstance(item, (dict, list)) else _flatten(item) for item in detail]
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    # Imported here: rest_framework.views loads the permission classes, which raise ApiError.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    if isinstance(exc, DataError):
        # A value the database can't store (a NUL character in JSON, a number out of range):
        # the request's fault, and nothing was written (the transaction rolled back).
        exc = ApiError(
            "invalid_value",
            "The request holds a value the database can't store (a NUL character, or a number out of range). "
            "Check the fields you sent.",
        )
    elif isinstance(exc, OperationalError | InterfaceError):
        # The database is down, restarting, locked or out of disk: the server's condition, not
        # the request's and not a bug. A 503 with Retry-After tells clients and load balancers
        # to come back; a 500 would page someone for nothing.
        exc = database_problem(exc)
    elif isinstance(exc, OSError) and (full := disk_full(exc)) is not None:
        exc = full
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found. It does not exist or you have no access to it.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, DomainError):
        # The only place a domain error becomes HTTP; the request's atomic block, where there
        # is one, is marked for rollback as DRF marks it for its own errors.
        set_rollback()
        answer = Response({"code": exc.code, "message": exc.message, "fields": {}}, status=exc.http_status)
        if isinstance(exc, ServiceUnavailable):
            answer["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return answer
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
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
    return response
