"""gunicorn settings for Slipway's web process, one file for every way it is served:
the production images (platform/docker/web.Dockerfile, docker-compose.yml) and the embedded
default (`make run`, platform/config/embedded.py), which passes its own --bind and a smaller
WEB_CONCURRENCY. Tests start gunicorn with it too.

    gunicorn --config platform/docker/gunicorn.conf.py --bind 0.0.0.0:8000 config.wsgi:application

Sizes come from the environment: WEB_CONCURRENCY worker processes (default 3), WEB_THREADS
threads each (default 8).

gunicorn answers some requests itself, before Django sees them: a request line longer than
limit_request_line (414), too many or too large headers (431), a malformed request (400).
Its own answers are HTML; here they carry the API's JSON error body {code, message, fields},
as every other answer does, and docs/openapi.yaml documents 414 and 431 on every operation.
"""

from __future__ import annotations

import json
import os
from typing import Any

from gunicorn import util

wsgi_app = "config.wsgi:application"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
threads = int(os.environ.get("WEB_THREADS", "8"))
keepalive = 65
# Large model uploads stream through one request.
timeout = 600
graceful_timeout = 30
# gunicorn's defaults, stated: the URL (request line) and header limits whose answers are below.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# status -> (code, sentence); {detail} is gunicorn's own description of what it refused.
_ERRORS = {
    400: (
        "bad_request",
        "The web server could not read this HTTP request ({detail}). Fix the request and send it again.",
    ),
    403: ("forbidden", "The web server refused this request ({detail})."),
    414: (
        "uri_too_long",
        "The request's URL is longer than the web server accepts ({detail}). Send fewer or shorter query parameters.",
    ),
    417: ("expectation_failed", "The web server can't meet the request's Expect header ({detail}); leave it out."),
    431: (
        "request_headers_too_large",
        "The request's headers are too many or too large for the web server ({detail}). "
        "Send fewer or shorter headers (cookies included).",
    ),
    501: ("not_implemented", "The web server does not support this request ({detail})."),
}


def json_error_response(status: int, reason: str, detail: str) -> bytes:
    """A complete HTTP response for one of gunicorn's own errors, with the API's error body."""
    code, sentence = _ERRORS.get(
        status,
        ("server_error", "The web server hit an internal error before Slipway could answer ({detail}). Retry."),
    )
    body = json.dumps(
        {"code": code, "message": sentence.format(detail=detail or reason), "fields": {}}, ensure_ascii=True
    ).encode("ascii")
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for gunicorn.util.write_error (same arguments), which writes an HTML page."""
    util.write_nonblock(sock, json_error_response(status_int, reason, mesg))


def post_fork(server: Any, worker: Any) -> None:
    # gunicorn's workers send their own errors through util.write_error, looked up at each call.
    util.write_error = write_json_error
