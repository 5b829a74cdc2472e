"""Security review, as tests: every route needs authentication unless it is on a short public
list; session writes need CSRF; secrets are stored hashed or encrypted and never reach logs,
the audit trail or API answers; browser-facing security headers are set."""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.middleware.csrf import CSRF_ALLOWED_CHARS
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.crypto import get_random_string
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.audit.models import AuditEvent
from apps.hardware.api.views import WorkerList
from apps.webhooks import services as webhooks
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

# Routes anyone may reach, and why.
PUBLIC = {
    "": "redirects to the browser app, which asks for a login",
    "^app(?:/(?P<path>.*))?$": "the browser app's HTML shell: it shows the sign-in page and reads data only "
    "through the API",
    "healthz": "load balancers probe it; it says only whether the database answers",
    "api/v1/agent/register/": "a device's agent registers with a one-time enrollment token in the body (POST only); "
    "it has no other credential yet",
    "api/v1/invitations/preview/": "an invitee reads which team an invitation code is for (POST only; the code "
    "is the credential, rate-limited like sign-in)",
    "api/v1/invitations/accept/": "an invitee redeems a one-time invitation code, creating an account when signed "
    "out (POST only; CSRF-checked and rate-limited like sign-in)",
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


# Every operation whose answer holds a secret shown once, and how a test makes one with an
# Idempotency-Key (the schema's descriptions find them; a new one must be added here).
def _create_token(client: APIClient, key: str):
    return client.post("/api/v1/tokens/", {"name": "ci", "scopes": ["read"]}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def _create_webhook(client: APIClient, key: str):
    body = {"team": "vision", "name": "ops", "url": "http://127.0.0.1:9/hook", "events": ["version.ready"]}
    return client.post("/api/v1/webhooks/", {**body, "allow_private": True}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def _create_invitation(client: APIClient, key: str):
    return client.post(
        "/api/v1/teams/vision/invitations/", {"role": "approver"}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )


SECRET_ANSWERS = {
    ("post", "/api/v1/tokens/"): ("token", _create_token),
    # its answer's "code" field shares a name with the error shape's; the link carries the code too
    ("post", "/api/v1/teams/{slug}/invitations/"): ("link", _create_invitation),
    ("post", "/api/v1/webhooks/"): ("secret", _create_webhook),
    ("post", "/api/v1/webhooks/{id}/rotate-secret/"): ("secret", None),  # needs a webhook: below
}


def test_every_answer_with_a_one_time_secret_is_known_and_documents_its_replay():
    from pathlib import Path

    import yaml

    from apps.core.idempotency import SHOWN_ONCE_REPLAY_DESCRIPTION

    schema = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())
    components = schema["components"]["schemas"]
    found = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
                props = components.get(ref.rsplit("/", 1)[-1], {}).get("properties", {}) if code < "300" else {}
                if any("shown in this response only" in p.get("description", "") for p in props.values()):
                    found.add((method, path))
                    assert operation["responses"]["409"]["description"] == SHOWN_ONCE_REPLAY_DESCRIPTION, (method, path)
    assert found == set(SECRET_ANSWERS)


def test_a_retry_never_gets_a_one_time_secret_again_and_none_is_kept_for_replays(personas):
    from apps.core.models import IdempotencyRecord

    admin = client_for(personas.admin)
    shown: list[str] = []
    for (_, path), (field, make) in SECRET_ANSWERS.items():
        if make is None:
            hook = admin.get("/api/v1/webhooks/?team=vision").json()["results"][0]
            make = lambda client, key, pk=hook["id"]: client.post(  # noqa: E731
                f"/api/v1/webhooks/{pk}/rotate-secret/", HTTP_IDEMPOTENCY_KEY=key
            )
        first = make(admin, f"key-{path}")
        assert first.status_code in (200, 201), first.json()
        shown.append(first.json()[field])
        again = make(admin, f"key-{path}")
        assert again.status_code == 409 and again["Idempotent-Replayed"] == "true", path
        assert again.json()["code"] == "secret_shown_once" and "shown once" in again.json()["message"]
        assert field not in again.json() and first.json()[field] not in again.content.decode()

    # a revoked token's value is not handed out again either
    token_id = ApiToken.objects.get(name="ci").pk
    assert admin.delete(f"/api/v1/tokens/{token_id}/").status_code == 204
    replay = _create_token(admin, "key-/api/v1/tokens/")
    assert replay.status_code == 409 and "revoke that token and create a new one" in replay.json()["message"]
    assert ApiToken.objects.count() == 1

    stored = str(list(IdempotencyRecord.objects.values_list("response_body", flat=True)))
    assert len(shown) == 4 and not [secret for secret in shown if secret in stored]


def test_replay_records_made_before_the_fix_lose_their_secrets():
    import importlib

    from django.apps import apps as django_apps
    from django.utils import timezone

    from apps.core.models import IdempotencyRecord

    migration = importlib.import_module("apps.core.migrations.0002_scrub_shown_once_secrets")
    common = {"method": "POST", "fingerprint": "f", "done": True, "expires_at": timezone.now()}
    old = IdempotencyRecord.objects.create(
        user_id=1, key="a", path="/api/v1/tokens/", response_status=201, response_body={"token": "slw_x_y"}, **common
    )
    hook = IdempotencyRecord.objects.create(
        user_id=1, key="b", path="/api/v1/webhooks/", response_status=201, response_body={"secret": "whsec_z"}, **common
    )
    other = IdempotencyRecord.objects.create(
        user_id=1, key="c", path="/api/v1/models/", response_status=201, response_body={"slug": "m"}, **common
    )
    migration.scrub(django_apps, None)
    for record in (old, hook):
        record.refresh_from_db()
        assert record.response_status == 409 and record.response_body["code"] == "secret_shown_once"
    other.refresh_from_db()
    assert other.response_body == {"slug": "m"}


# ---- the embedded default and production settings (security review, issue 14) -----------

REPO = Path(__file__).resolve().parents[2]


def _manage(module: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLIPWAY_", "DJANGO_")) and k not in ("DATABASE_URL", "CELERY_BROKER_URL")
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**inherited, "DJANGO_SETTINGS_MODULE": module, "SLIPWAY_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_check_deploy_is_clean_with_the_production_settings(tmp_path):
    """What docker-compose.yml requires (a strong key, PostgreSQL, Redis) and nothing else."""
    run = _manage(
        "config.settings.prod",
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "DEBUG",
        SLIPWAY_SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL="postgres://slipway:unused@127.0.0.1:1/slipway",
        CELERY_BROKER_URL="redis://127.0.0.1:1/0",
        SLIPWAY_CACHE_URL="redis://127.0.0.1:1/1",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "System check identified no issues" in run.stdout


def test_the_embedded_default_runs_with_debug_off(tmp_path):
    """`make run` (config.settings.dev): no debug pages listing URLs, settings and frame locals."""
    run = _manage(
        "config.settings.dev", tmp_path, "shell", "-c", "from django.conf import settings; print(settings.DEBUG)"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "False"


def test_api_errors_are_json_bodies_not_debug_pages(personas, monkeypatch, settings):
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    client.force_login(personas.viewer)

    def error_body(response, status):
        assert response.status_code == status and response["Content-Type"] == "application/json", response
        body = response.json()
        assert set(body) == {"code", "message", "fields"} and body["message"].endswith("."), body
        return body

    assert error_body(client.get("/api/v1/no-such-thing/"), 404)["code"] == "not_found"
    assert error_body(client.delete("/api/v1/workers/"), 405)["code"] == "method_not_allowed"
    # Django's own refusals (here a Host header that is not allowed) too
    refused = error_body(client.get("/api/v1/workers/", HTTP_HOST="evil.example"), 400)
    assert refused["code"] == "bad_request" and "evil.example" in refused["message"]

    def crash(self):
        raise RuntimeError("a bug, with a secret in a local variable")

    monkeypatch.setattr(WorkerList, "get_queryset", crash)
    body = error_body(client.get("/api/v1/workers/"), 500)
    assert body["code"] == "server_error" and "secret" not in body["message"] and "Traceback" not in body["message"]
