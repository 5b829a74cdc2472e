"""Outbound URLs: only http(s) to public addresses, unless an admin or the operator allows more."""

from __future__ import annotations

import socket

import pytest

from apps.core import outbound
from apps.core.api.errors import ApiError
from apps.core.outbound import OutboundRefused, check_outbound_url, guarded_session, refusal_reason
from tests.apps.test_webhooks import Receiver


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a bind
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("93.184.216.34", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:93.184.216.34", None),
    ],
)
def test_refusal_reason(address, reason):
    assert refusal_reason(address) == reason


@pytest.mark.parametrize(
    ("url", "code", "words"),
    [
        ("ftp://example.com/x", "invalid_url", "not an http or https URL"),
        ("javascript:alert(1)", "invalid_url", "not an http or https URL"),
        ("example.com/hook", "invalid_url", "not an http or https URL"),
        ("https://", "invalid_url", "has no host name"),
        ("http://example.com:99999/", "invalid_url", "not a valid URL"),
        ("https://user:pw@example.com/", "invalid_url", "user name or password"),
    ],
)
def test_malformed_urls_are_refused_with_a_sentence(url, code, words):
    with pytest.raises(ApiError) as info:
        check_outbound_url(url, allow_private=True)
    assert info.value.code == code and words in info.value.message


def test_private_literal_is_refused_and_says_how_to_allow_it():
    with pytest.raises(ApiError) as info:
        check_outbound_url("http://127.0.0.1:8080/hook", allow_private=False)
    assert info.value.code == "private_address"
    assert "127.0.0.1 a loopback address" in info.value.message
    assert "allow_private" in info.value.message and "SLIPWAY_ALLOW_PRIVATE_OUTBOUND=true" in info.value.message
    target = check_outbound_url("http://127.0.0.1:8080/hook", allow_private=True)
    assert (target.host, target.port, target.addresses) == ("127.0.0.1", 8080, ("127.0.0.1",))


def test_a_name_is_judged_by_every_address_it_resolves_to(monkeypatch):
    monkeypatch.setattr(outbound, "_resolve", lambda host, port: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(ApiError, match=r"hooks.example.com, which resolves to 10.0.0.7, a private address"):
        check_outbound_url("https://hooks.example.com/x", allow_private=False)
    monkeypatch.setattr(outbound, "_resolve", lambda host, port: ["93.184.216.34"])
    assert check_outbound_url("https://hooks.example.com/x", allow_private=False).port == 443


def test_numeric_tricks_resolve_to_what_they_are():
    # 2130706433 and 0x7f.1 are 127.0.0.1 to the resolver, and so to the check.
    for url in ("http://2130706433/", "http://0x7f.1/"):
        with pytest.raises(ApiError, match="loopback"):
            check_outbound_url(url, allow_private=False)


def test_an_unresolvable_name_is_a_clear_error(monkeypatch):
    def fail(host, port):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(outbound, "_resolve", fail)
    with pytest.raises(ApiError) as info:
        check_outbound_url("https://nowhere.invalid/", allow_private=False)
    assert info.value.code == "unresolvable_host" and "nowhere.invalid could not be resolved" in info.value.message


def test_the_global_setting_or_the_object_flag_allows_private(settings):
    settings.ALLOW_PRIVATE_OUTBOUND = False
    assert not outbound.private_outbound_allowed(False)
    assert outbound.private_outbound_allowed(True)
    settings.ALLOW_PRIVATE_OUTBOUND = True
    assert outbound.private_outbound_allowed(False)


def test_the_guarded_session_refuses_the_connection_before_sending_anything():
    with Receiver([200]) as receiver:
        with pytest.raises(OutboundRefused, match="loopback"), guarded_session(allow_private=False) as session:
            session.post(receiver.url, data=b"{}", timeout=2)
        assert receiver.requests == []
        with guarded_session(allow_private=True) as session:
            assert session.post(receiver.url, data=b"{}", timeout=2).status_code == 200
        assert len(receiver.requests) == 1


def test_the_guarded_session_does_not_follow_redirects():
    with Receiver([(302, {"Location": "http://169.254.169.254/latest/meta-data/"})]) as receiver:
        with guarded_session(allow_private=True) as session:
            response = session.post(receiver.url, data=b"{}", timeout=2)  # even without allow_redirects=False
        assert response.status_code == 302 and len(receiver.requests) == 1
