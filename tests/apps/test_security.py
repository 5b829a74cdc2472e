"""Security review, as tests: every route needs authentication unless it is on a short public
list; session writes need CSRF; secrets are stored hashed or encrypted and never reach logs,
the audit trail or API answers; browser-facing security headers are set."""

from __future__ import annotations

import logging
import re

import pytest
from django.db import connection
from django.middleware.csrf import CSRF_ALLOWED_CHARS
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.crypto import get_random_string
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.audit.models import AuditEvent
from apps.webhooks import services as webhooks
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

# Routes anyone may reach, and why.
PUBLIC = {
    "": "redirects to the browser app, which asks for a login",
    "^app(?:/(?P<path>.*))?$": "the browser app's HTML shell: it shows the sign-in page and reads data only "
    "through the API",
    "healthz": "load balancers probe it; it says only whether the database answers",
    "admin/": "Django's admin redirects to its login page",
    "admin/login/": "the admin's login page",
    "admin/logout/": "logging out needs no login",
    "admin/password_change/": "redirects to the admin login",
    "admin/password_change/done/": "redirects to the admin login",
    "admin/autocomplete/": "redirects to the admin login",
    "admin/jsi18n/": "redirects to the admin login",
}
_SAMPLE = {"int": "1", "slug": "vision", "str": "sam", "path": "x", "uuid": "00000000-0000-0000-0000-000000000000"}


def _routes() -> list[str]:
    found: list[str] = []

    def walk(patterns, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                found.append(route)

    walk(get_resolver().url_patterns, "")
    return found


def _concrete(route: str) -> str:
    path = re.sub(r"<(?:(\w+):)?\w+>", lambda m: _SAMPLE.get(m.group(1) or "str", "1"), route)
    path = path.lstrip("^").rstrip("$").replace("\\Z", "")
    return "/" + path


def test_every_route_needs_authentication_or_is_listed_public(personas):
    anonymous = Client()
    open_routes = []
    for route in _routes():
        if route in PUBLIC or route.startswith("admin/"):
            continue  # the admin's own pages all redirect to its login (checked below)
        response = anonymous.get(_concrete(route))
        refused = response.status_code in (401, 403) or (
            response.status_code == 302 and "login" in response.get("Location", "")
        )
        if not refused:
            open_routes.append((route, response.status_code))
    assert not open_routes, f"routes that answered an anonymous caller: {open_routes}"


def test_admin_pages_redirect_anonymous_callers_to_the_login(personas):
    response = Client().get("/admin/accounts/team/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_session_writes_need_the_csrf_token(personas):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(personas.admin)
    refused = browser.patch("/api/v1/teams/vision/", '{"four_eyes": false}', content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["message"]
    # with the cookie's secret echoed in the header, as the browser app does
    token = get_random_string(32, CSRF_ALLOWED_CHARS)
    browser.cookies["csrftoken"] = token
    ok = browser.patch(
        "/api/v1/teams/vision/", '{"four_eyes": false}', content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert ok.status_code == 200
    # bearer tokens are not cookies: no CSRF needed (and none possible)
    _, value = ApiToken.issue(personas.admin, "ci", ["read", "admin"])
    assert (
        APIClient(HTTP_AUTHORIZATION=f"Bearer {value}")
        .patch("/api/v1/teams/vision/", {"four_eyes": True}, format="json")
        .status_code
        == 200
    )


def test_secrets_are_hashed_or_encrypted_and_never_logged_or_echoed(personas, caplog):
    caplog.set_level(logging.DEBUG)
    admin = client_for(personas.admin)
    created = admin.post("/api/v1/tokens/", {"name": "ci", "scopes": ["read", "admin"]}, format="json").json()
    token_value = created["token"]
    hook, signing_secret = webhooks.create_webhook(
        team=personas.team,
        user=personas.admin,
        name="ops",
        url="http://127.0.0.1:9/hook",
        events=["version.ready"],
        allow_private=True,
    )
    bearer = APIClient(HTTP_AUTHORIZATION=f"Bearer {token_value}")
    assert bearer.get("/api/v1/webhooks/?team=vision").status_code == 200
    assert APIClient(HTTP_AUTHORIZATION=f"Bearer {token_value}x").get("/api/v1/teams/").status_code == 401

    token_secret = token_value.split("_", 2)[2]
    secrets = [token_secret, signing_secret]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    audited = "\n".join(str((e.before, e.after, e.object_repr)) for e in AuditEvent.objects.all())
    answers = (
        bearer.get(f"/api/v1/webhooks/{hook.pk}/").content.decode() + bearer.get("/api/v1/tokens/").content.decode()
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT key_hash FROM accounts_apitoken")
        stored_tokens = str(cursor.fetchall())
        cursor.execute("SELECT * FROM webhooks_webhook")
        stored_hooks = str(cursor.fetchall())
    for secret in secrets:
        for where, text in (
            ("logs", logged),
            ("audit", audited),
            ("API answers", answers),
            ("tokens table", stored_tokens),
            ("webhooks table", stored_hooks),
        ):
            assert secret not in text, f"a secret appears in the {where}"


def test_security_headers_on_api_and_pages(personas):
    client = client_for(personas.viewer)
    for url in ("/api/v1/teams/", "/api/docs/", "/admin/login/"):
        response = client.get(url)
        assert "default-src 'self'" in response["Content-Security-Policy"], url
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"


def test_the_api_docs_need_no_inline_script(personas):
    """The Swagger page loads its start-up script from the app, so the CSP can forbid inline scripts."""
    page = client_for(personas.viewer).get("/api/docs/").content.decode()
    inline = [
        s for s in re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S) if "src=" not in s[0] and s[1].strip()
    ]
    assert not inline
