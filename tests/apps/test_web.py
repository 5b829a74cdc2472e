"""The browser app's shell and its session endpoint: /app/* serves the SPA, sign-in with
CSRF and a rate limit, failures on the audit trail, who-am-I with teams and roles."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def built_app(settings, tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text('<!doctype html><div id="root"></div><script src="/static/app/assets/x.js">')
    settings.FRONTEND_DIST = dist
    return dist


def _csrf_client() -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    response = client.get("/api/v1/session/")
    assert response.status_code == 401
    return client, response.cookies["csrftoken"].value


def test_every_app_route_gets_the_shell_and_root_redirects(built_app, client):
    for path in ("/app/", "/app", "/app/versions/12", "/app/review?x=1"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert b'id="root"' in response.content and response["Cache-Control"] == "no-cache"
        assert "csrftoken" in response.cookies  # the sign-in form needs it
    root = client.get("/")
    assert root.status_code == 302 and root["Location"] == "/app/"
    assert client.post("/app/").status_code == 405


def test_an_unbuilt_app_says_how_to_build_it(settings, tmp_path, client):
    settings.FRONTEND_DIST = tmp_path / "missing"
    response = client.get("/app/models")
    assert response.status_code == 503 and b"make frontend" in response.content


def test_sign_in_with_csrf_then_who_am_i_then_sign_out(personas):
    client, token = _csrf_client()
    refused = client.post(
        "/api/v1/session/", {"username": "dana", "password": "pw-for-tests"}, content_type="application/json"
    )
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    assert "Reload the page" in refused.json()["message"]

    signed_in = client.post(
        "/api/v1/session/",
        {"username": "dana", "password": "pw-for-tests"},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert signed_in.status_code == 200, signed_in.content
    body = signed_in.json()
    assert body["username"] == "dana"
    assert body["teams"] == [
        {"slug": "vision", "name": personas.team.name, "role": "data_scientist", "four_eyes": True, "reviewers": 2}
    ]
    assert "sessionid" in signed_in.cookies
    token = signed_in.cookies["csrftoken"].value  # rotated at sign-in
    assert client.get("/api/v1/session/").json()["username"] == "dana"
    assert AuditEvent.objects.filter(action="session.login", actor="dana").exists()

    # a signed-in session's writes need the (new) token too
    assert client.delete("/api/v1/session/").status_code == 403
    assert client.delete("/api/v1/session/", HTTP_X_CSRFTOKEN=token).status_code == 204
    assert client.get("/api/v1/session/").status_code == 401
    assert AuditEvent.objects.filter(action="session.logout", actor="dana").exists()


def test_a_wrong_password_is_one_sentence_and_audited(personas):
    client, token = _csrf_client()
    for username in ("dana", "nobody"):
        response = client.post(
            "/api/v1/session/",
            {"username": username, "password": "wrong"},
            content_type="application/json",
            HTTP_X_CSRFTOKEN=token,
        )
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_credentials"
        assert "don't match an active account" in response.json()["message"]
    failures = AuditEvent.objects.filter(action="session.login_failed").order_by("id")
    assert [e.object_id for e in failures] == ["dana", "nobody"]
    assert all(e.ip == "127.0.0.1" and e.actor_id is None for e in failures)
    missing = client.post(
        "/api/v1/session/", {"username": "dana"}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert missing.status_code == 400 and missing.json()["fields"]["password"]


def test_sign_in_attempts_are_rate_limited(personas, settings):
    settings.LOGIN_RATE_LIMIT = "3/min"
    client, token = _csrf_client()

    def attempt(n: int = 0):
        # a made-up X-Forwarded-For from an untrusted client does not make it a new address
        return client.post(
            "/api/v1/session/",
            {"username": "dana", "password": "guess"},
            content_type="application/json",
            HTTP_X_CSRFTOKEN=token,
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
        )

    assert [attempt(n).status_code for n in range(3)] == [400, 400, 400]
    limited = attempt()
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert limited.json()["code"] == "throttled"
    # reads are not sign-in attempts
    assert client.get("/api/v1/session/").status_code == 401


def test_the_admin_login_is_rate_limited_with_the_api_sign_in(personas, settings):
    """One limiter for both password forms: guesses spread over them count together."""
    settings.LOGIN_RATE_LIMIT = "3/min"
    client = Client()

    def admin_attempt():
        return client.post("/admin/login/", {"username": "ada", "password": "guess", "next": "/admin/"})

    def api_attempt():
        body = {"username": "ada", "password": "guess"}
        return client.post("/api/v1/session/", body, content_type="application/json")

    assert [admin_attempt().status_code for _ in range(2)] == [200, 200]  # the form again, with its error
    assert api_attempt().status_code == 400
    limited = admin_attempt()
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert "Too many sign-in attempts" in limited.content.decode()
    assert api_attempt().status_code == 429
    assert client.get("/admin/login/").status_code == 200  # showing the form is not an attempt

    cache.clear()  # a minute later: the right password signs in again
    personas.admin.is_staff = True
    personas.admin.save(update_fields=["is_staff"])
    signed_in = client.post("/admin/login/", {"username": "ada", "password": "pw-for-tests", "next": "/admin/"})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/admin/"
