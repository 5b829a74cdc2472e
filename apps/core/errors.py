"""Domain errors: what services raise when they refuse, in words a person can act on.

A `DomainError` carries a stable machine `code`, a `message` sentence, and the HTTP status
the API answers it with. Services, tasks and workers raise and catch it without knowing the
web framework; only the API's exception handler (apps/core/api/errors.py) turns it into a
response. `ApiError` there is this class under its older name.
"""

from __future__ import annotations

from http import HTTPStatus


class DomainError(Exception):
    """A refusal with a stable code and a sentence for people."""

    def __init__(self, code: str, message: str, http_status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = int(http_status)

    @property
    def status_code(self) -> int:
        """The HTTP status, as Django and DRF name it."""
        return self.http_status


class Conflict(DomainError):
    """The request is fine but the state of things refuses it (409)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, HTTPStatus.CONFLICT)


class ServiceUnavailable(DomainError):
    """The database could not be used, or a disk is full: a 503 the client may retry, never a
    500. The message names the database this install really uses, or the disk that is full."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, HTTPStatus.SERVICE_UNAVAILABLE)
