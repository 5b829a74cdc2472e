"""The HTTP client of the Slipway REST API: authentication, error bodies turned into
sentences, retries of safe requests, pagination.

Every error the API sends has the body {"code", "message", "fields"}; `ApiError` carries
it. Network failures become a sentence naming the URL and what to check. The token goes
only into the Authorization header: it is never part of a message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from slipway_cli import __version__
from slipway_cli.config import LOGIN_HINT
from slipway_cli.errors import ApiError, CliError

API_PREFIX = "/api/v1"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
# Statuses a proxy or load balancer answers while the server restarts: safe to retry.
TRANSIENT_STATUSES = frozenset({502, 503, 504})
# The server is still busy with an earlier attempt carrying the same Idempotency-Key.
IDEMPOTENCY_BUSY = frozenset({"idempotency_in_progress", "idempotency_conflict"})
RETRY_DELAYS = (0.5, 2.0)  # seconds before each retry of a safe request


class ApiClient:
    """Talks to one Slipway server with one token (or none, for `login` checks)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        token_source: str | None = None,
        session: requests.Session | None = None,
    ):
        self.url = url.rstrip("/")
        self.token = token
        self.token_source = token_source
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = f"slipway-cli/{__version__}"
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def endpoint(self, path: str) -> str:
        return f"{self.url}{API_PREFIX}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: Callable[[], Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
        retry_delays: Sequence[float] | None = None,
        on_retry: Callable[[CliError, int, float], None] | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON (None for an empty body).

        A transient failure is retried after each of `retry_delays` (seconds): by default a GET
        is, another method only when the caller says it is safe, e.g. an upload carrying an
        Idempotency-Key. `data` makes a fresh body for each attempt, so a streamed upload can
        be sent again.
        """
        if self.token is None:
            raise CliError(f"No API token: {LOGIN_HINT} (or SLIPWAY_TOKEN_FILE).")
        if retry_delays is None:
            retry_delays = RETRY_DELAYS if method == "GET" else ()
        for attempt, delay in enumerate([*retry_delays, None], start=1):
            try:
                return self._send(method, path, params=params, json=json, data=data, headers=headers, timeout=timeout)
            except CliError as exc:
                if not exc.transient or delay is None:
                    raise
                if on_retry is not None:
                    on_retry(exc, attempt + 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=_clean(params))

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)

    def get_all(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, following its cursor pages (or a plain list)."""
        params = _clean(params)
        while True:
            page = self.get(path, params)
            if isinstance(page, list):
                yield from page
                return
            yield from page.get("results") or []
            following = page.get("next")
            if not following:
                return
            # The server's absolute `next` may name an internal host behind a proxy: keep our
            # own URL and take only its query (the cursor).
            params = dict(parse_qsl(urlsplit(following).query))

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None,
        json: Any,
        data: Callable[[], Any] | None,
        headers: dict[str, str] | None,
        timeout: tuple[float, float],
    ) -> Any:
        url = self.endpoint(path)
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json,
                data=data() if data is not None else None,
                headers=headers,
                timeout=timeout,
                # Followed redirects turn a POST into a GET and drop the Authorization header on
                # another host; better to say where the server points.
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise CliError(
                f"The TLS connection to {self.url} failed: {_reason(exc)}. If the server uses a private "
                "certificate authority, point REQUESTS_CA_BUNDLE at its certificate bundle."
            ) from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise CliError(
                f"{self.url} did not answer within {timeout[0]:g} s. Check the URL (--url, SLIPWAY_URL or "
                "`slipway login`) and that this machine can reach it (proxy, firewall, VPN).",
                transient=True,
            ) from exc
        except requests.exceptions.ReadTimeout as exc:
            raise CliError(
                f"{self.url} accepted the connection but sent no answer within {timeout[1]:g} s "
                f"({method} {API_PREFIX}/{path.lstrip('/')}). The server may be overloaded; try again later.",
                transient=True,
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            reason = _reason(exc)
            if reason == DROPPED:
                raise CliError(
                    f"The connection to {self.url} was closed before the server answered "
                    f"({method} {API_PREFIX}/{path.lstrip('/')}). The server or a proxy in between may have "
                    "restarted or timed out.",
                    transient=True,
                ) from exc
            raise CliError(
                f"Could not connect to {self.url}: {reason}. Check the URL (--url, SLIPWAY_URL or "
                "`slipway login`), that the server is running, and that this machine can reach it "
                "(proxy, firewall, VPN).",
                transient=True,
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise CliError(f"The request to {self.url} failed: {_reason(exc)}.") from exc
        return self._decode(response)

    def _decode(self, response: requests.Response) -> Any:
        if response.is_redirect:
            location = response.headers.get("Location", "another address")
            raise CliError(
                f"{self.url} answered {response.status_code} and points to {location}. Give the address it "
                "points to (e.g. https:// instead of http://) with --url, SLIPWAY_URL or `slipway login`."
            )
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
            if response.ok:
                raise CliError(
                    f"{self.url} answered {response.status_code} with something that is not JSON; "
                    "check that the URL is the Slipway server (not a login page or proxy)."
                ) from None
        if response.ok:
            return body
        raise self._error(response, body)

    def _error(self, response: requests.Response, body: Any) -> ApiError:
        status = response.status_code
        transient = status in TRANSIENT_STATUSES
        if not (isinstance(body, dict) and isinstance(body.get("message"), str)):
            hint = (
                " The server may be restarting; try again in a minute."
                if transient
                else " Check that the URL is the Slipway server."
            )
            answered = f"{status} {response.reason}" if response.reason else str(status)
            return ApiError(
                f"{self.url} answered {answered} without a Slipway error body.{hint}",
                status=status,
                transient=transient,
            )
        code = str(body.get("code") or "error")
        fields: dict[str, Any] = body["fields"] if isinstance(body.get("fields"), dict) else {}
        message: str = body["message"]
        if status == 401:
            came_from = f" (it came from {self.token_source})" if self.token_source else ""
            message = f"{message.rstrip('.')}. The server refused the API token{came_from}: {LOGIN_HINT}."
        elif code == "ambiguous_model":
            message = f"{message} With the CLI, pass --team TEAM."
        elif code == "team_required":
            message = _with_team_option(message)
        return ApiError(
            message,
            status=status,
            code=code,
            fields=fields,
            details=_field_lines(fields),
            transient=transient or (status == 409 and code in IDEMPOTENCY_BUSY),
        )


# How the API asks for a team in a request body; the CLI's commands take it as --team.
_TEAM_FIELD = re.compile(r"with the 'team' field(?: \(its slug\))?")


def _with_team_option(message: str) -> str:
    """The API's "say which one with the 'team' field" in the CLI's words, with --team SLUG."""
    if _TEAM_FIELD.search(message):
        return _TEAM_FIELD.sub("with --team SLUG", message)
    return f"{message} With the CLI, pass --team SLUG."


def _field_lines(fields: dict[str, Any], prefix: str = "") -> list[str]:
    """One line per field error, e.g. "tolerance: Value must be valid JSON."."""
    lines: list[str] = []
    for name, value in fields.items():
        label = f"{prefix}{name}"
        if isinstance(value, dict):
            lines.extend(_field_lines(value, f"{label}."))
        elif isinstance(value, list):
            messages = [str(v) for v in value if not isinstance(v, dict | list)]
            lines.append(f"{label}: {' '.join(messages)}")
            for item in value:
                if isinstance(item, dict):
                    lines.extend(_field_lines(item, f"{label}."))
        else:
            lines.append(f"{label}: {value}")
    return lines


DROPPED = "dropped"


def _reason(exc: Exception) -> str:
    """Why the connection failed, in words; DROPPED when it was closed mid-request."""
    text = str(exc)
    if any(m in text for m in ("RemoteDisconnected", "Connection aborted", "Connection reset", "BrokenPipe")):
        return DROPPED
    if "Connection refused" in text:
        return "connection refused (nothing listens on that port)"
    if any(m in text for m in ("Name or service not known", "Failed to resolve", "nodename nor servname")):
        return "the host name is not known"
    if "timed out" in text:
        return "timed out"
    return text[:300]


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Drop unset query parameters (None or empty)."""
    if params is None:
        return None
    return {key: value for key, value in params.items() if value not in (None, "")}
