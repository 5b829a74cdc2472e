"""Requests the platform makes to URLs its users gave it (webhooks, serving targets).

A URL a user types must not become a way into the platform's own network (the cloud
metadata service, the database, an admin port on localhost). So by default outbound
requests go only to public addresses:

- `check_outbound_url(url, allow_private)` refuses a URL up front, with a sentence saying
  what is wrong and how an admin allows it. It resolves the host name and checks every
  address it resolves to.
- `guarded_session(allow_private)` is a `requests` session that checks the address it is
  actually connected to, before a byte is sent, so a name that resolves differently at
  send time (DNS rebinding) is refused too. It follows no redirects and ignores proxy and
  .netrc settings from the environment.

Private targets are allowed everywhere by the operator (`SLIPWAY_ALLOW_PRIVATE_OUTBOUND`),
or per object by a team admin (e.g. a webhook's `allow_private`): `private_outbound_allowed`.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from apps.core.api.errors import ApiError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")

_HOW_TO_ALLOW = (
    "Outbound requests go only to public addresses, so that a URL can't be used to reach services "
    "inside the platform's network. To send to a private address, a team admin can allow it for this "
    "object (allow_private), or the platform operator for all with SLIPWAY_ALLOW_PRIVATE_OUTBOUND=true."
)


class OutboundRefused(Exception):
    """A connection was about to be made to an address that is not allowed."""


@dataclass(frozen=True)
class OutboundTarget:
    """A URL that passed the check, with the addresses its host resolved to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def private_outbound_allowed(allowed_here: bool = False) -> bool:
    """Whether private addresses may be reached: the object's own flag or the global setting."""
    return bool(allowed_here) or bool(getattr(settings, "ALLOW_PRIVATE_OUTBOUND", False))


def refusal_reason(address: str | IPAddress) -> str | None:
    """Why an address is not public ("loopback", "private", ...), or None if it is."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 reaches the IPv4 host: judge that host.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal_reason(embedded)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-public"
    return None


def _resolve(host: str, port: int) -> list[str]:
    """Every address the name resolves to (a literal address resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


def check_outbound_url(url: str, allow_private: bool) -> OutboundTarget:
    """Refuse a URL the platform should not send requests to; raise ApiError with a sentence.

    Only http and https, with a host and no credentials in the URL. The host is resolved
    and every address must be public unless `allow_private` (pass
    `private_outbound_allowed(obj.allow_private)` to honour the global setting too).
    """
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ApiError("invalid_url", f"'{url}' is not a valid URL ({exc}). Give a full http(s):// URL.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ApiError(
            "invalid_url",
            f"'{url}' is not an http or https URL. Give a full URL such as https://example.com/hooks/slipway.",
        )
    host = parts.hostname or ""
    if not host:
        raise ApiError("invalid_url", f"'{url}' has no host name. Give a full URL such as https://example.com/hook.")
    if parts.username is not None or parts.password is not None:
        raise ApiError(
            "invalid_url",
            "The URL contains a user name or password; those would be shown wherever the URL is. "
            "Remove them: receivers authenticate Slipway by the request's signature.",
        )
    port = port or (443 if scheme == "https" else 80)
    try:
        addresses = _resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise ApiError(
            "unresolvable_host",
            f"The host name {host} could not be resolved ({exc}). Check the URL for typos, or try again "
            "if its DNS was just created.",
        ) from None
    if not allow_private:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                shown = host if host == address else f"{host}, which resolves to {address},"
                raise ApiError(
                    "private_address",
                    f"The URL {url} points to {shown} a {reason} address. {_HOW_TO_ALLOW}",
                )
    return OutboundTarget(url=url, scheme=scheme, host=host, port=port, addresses=tuple(addresses))


# --- a requests session that checks the address it actually connects to ------------------


class _PublicOnlyConnectionMixin:
    host: str

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        peer = sock.getpeername()[0]
        reason = refusal_reason(str(peer).split("%")[0])
        if reason is not None:
            sock.close()
            raise OutboundRefused(
                f"The connection to {self.host} was refused before sending: it resolved to {peer}, a {reason} "
                f"address. {_HOW_TO_ALLOW}"
            )
        return sock


class _PublicOnlyHTTPConnection(_PublicOnlyConnectionMixin, HTTPConnection):
    pass


class _PublicOnlyHTTPSConnection(_PublicOnlyConnectionMixin, HTTPSConnection):
    pass


class _PublicOnlyHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicOnlyHTTPConnection


class _PublicOnlyHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicOnlyHTTPSConnection


class _PublicOnlyAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicOnlyHTTPPool, "https": _PublicOnlyHTTPSPool}


class _NoRedirectSession(requests.Session):
    def get_redirect_target(self, resp: requests.Response) -> None:
        # A redirect is answered as it is, whatever the caller's allow_redirects: following
        # it would send the request to a URL nobody checked.
        return None


def guarded_session(allow_private: bool) -> requests.Session:
    """A session for user-given URLs: never follows redirects, takes no proxies or
    credentials from the environment, and (unless `allow_private`) connects only to public
    addresses; a refused connection raises `OutboundRefused` before anything is sent."""
    session = _NoRedirectSession()
    session.trust_env = False
    if not allow_private:
        session.mount("http://", _PublicOnlyAdapter())
        session.mount("https://", _PublicOnlyAdapter())
    return session
