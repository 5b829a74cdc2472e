"""API tokens (shown once, stored hashed, scoped, expiring, revocable) and team membership."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken, Membership, hash_token_secret
from apps.audit.models import AuditEvent
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def test_token_is_shown_once_stored_hashed_and_used(personas):
    client = client_for(personas.owner)
    created = client.post("/api/v1/tokens/", {"name": "github", "scopes": ["read", "upload"]}, format="json")
    assert created.status_code == 201
    body = created.json()
    value = body["token"]
    assert value.startswith("slw_") and "Copy this token now" in body["message"]
    token = ApiToken.objects.get(pk=body["id"])
    assert token.key_hash == hash_token_secret(value.split("_", 2)[2]) and value not in str(token.__dict__)
    assert (token.expires_at - timezone.now()).days in (89, 90)  # the default expiry

    listed = client.get("/api/v1/tokens/").json()
    assert [t["name"] for t in listed] == ["github"] and "token" not in listed[0]
    assert client.get(f"/api/v1/tokens/{token.pk}/").json().get("token") is None

    bearer = APIClient(HTTP_AUTHORIZATION=f"Bearer {value}")
    assert bearer.get("/api/v1/models/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert AuditEvent.objects.filter(action="token.created", actor="dana").exists()
    # the value never reaches the audit trail
    assert not AuditEvent.objects.filter(after__icontains=value.split("_", 2)[2]).exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "x", "scopes": ["sudo"]}, "invalid"),
        ({"name": "x", "scopes": []}, "invalid"),
        ({"name": "x", "scopes": ["read"], "expires_in_days": 0}, "invalid_expiry"),
        ({"name": "x", "scopes": ["read"], "expires_in_days": 5000}, "invalid_expiry"),
        ({"name": " ", "scopes": ["read"]}, "invalid"),
    ],
)
def test_bad_token_requests(personas, body, code):
    response = client_for(personas.owner).post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 400 and response.json()["code"] == code, response.json()
    assert not ApiToken.objects.exists()


def test_revoked_and_expired_tokens_are_refused_with_a_reason(personas):
    client = client_for(personas.owner)
    value = client.post("/api/v1/tokens/", {"name": "ci", "scopes": ["read"]}, format="json").json()["token"]
    token = ApiToken.objects.get()
    assert client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    assert client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 409  # already revoked
    refused = APIClient(HTTP_AUTHORIZATION=f"Bearer {value}").get("/api/v1/models/")
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]

    _, old = ApiToken.issue(personas.owner, "old", ["read"], timezone.now() - timedelta(seconds=1))
    expired = APIClient(HTTP_AUTHORIZATION=f"Bearer {old}").get("/api/v1/models/")
    assert expired.status_code == 401 and "expired" in expired.json()["message"]
    # someone else's token is not there for you
    assert client_for(personas.viewer).delete(f"/api/v1/tokens/{token.pk}/").status_code == 404


def test_a_token_never_does_more_than_its_owner_may(personas):
    _, value = ApiToken.issue(personas.viewer, "ci", ["read", "upload", "approve"])
    response = APIClient(HTTP_AUTHORIZATION=f"Bearer {value}").post(
        "/api/v1/models/", {"name": "sneaky", "team": "vision"}, format="json"
    )
    assert response.status_code == 403 and "viewer" in response.json()["message"]


def test_token_management_needs_a_session_or_admin_scope(personas):
    _, value = ApiToken.issue(personas.owner, "ci", ["read", "upload"])
    response = APIClient(HTTP_AUTHORIZATION=f"Bearer {value}").post(
        "/api/v1/tokens/", {"name": "more", "scopes": ["read"]}, format="json"
    )
    assert response.status_code == 403 and "needs 'admin'" in response.json()["message"]


def test_a_token_never_creates_a_token_with_a_scope_it_lacks(personas):
    _, value = ApiToken.issue(personas.admin, "ops", ["read", "admin"])
    bearer = APIClient(HTTP_AUTHORIZATION=f"Bearer {value}")
    refused = bearer.post("/api/v1/tokens/", {"name": "more", "scopes": ["read", "approve", "deploy"]}, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "token_scope"
    assert "approve, deploy" in refused.json()["message"] and "lacks" in refused.json()["message"]
    assert ApiToken.objects.count() == 1 and not AuditEvent.objects.filter(action="token.created").exists()
    # scopes it holds itself are fine
    assert bearer.post("/api/v1/tokens/", {"name": "reader", "scopes": ["read"]}, format="json").status_code == 201
    # a browser session is limited by the user's role, as before
    session = client_for(personas.admin).post(
        "/api/v1/tokens/", {"name": "release", "scopes": ["approve", "deploy"]}, format="json"
    )
    assert session.status_code == 201 and session.json()["scopes"] == ["approve", "deploy"]


def test_admin_manages_members_and_the_trail_records_it(personas):
    from tests.factories import UserFactory

    UserFactory(username="nia")
    admin = client_for(personas.admin)
    added = admin.post("/api/v1/teams/vision/members/", {"username": "nia", "role": "viewer"}, format="json")
    assert added.status_code == 201
    assert admin.post("/api/v1/teams/vision/members/", {"username": "nia", "role": "viewer"}).status_code == 409
    unknown = admin.post("/api/v1/teams/vision/members/", {"username": "ghost", "role": "viewer"}, format="json")
    assert unknown.status_code == 400 and "no active user called 'ghost'" in unknown.json()["message"]
    assert admin.patch("/api/v1/teams/vision/members/nia/", {"role": "approver"}, format="json").json()["role"] == (
        "approver"
    )
    assert admin.delete("/api/v1/teams/vision/members/nia/").status_code == 204
    actions = list(AuditEvent.objects.filter(team="vision").order_by("id").values_list("action", "before", "after"))
    assert [a[0] for a in actions] == ["membership.added", "membership.role_changed", "membership.removed"]
    assert actions[1][1] == {"user": "nia", "role": "viewer"} and actions[1][2] == {"user": "nia", "role": "approver"}
    # the last admin can't demote or remove themselves
    last = admin.patch("/api/v1/teams/vision/members/ada/", {"role": "viewer"}, format="json")
    assert last.status_code == 409 and "last admin" in last.json()["message"]
    assert Membership.objects.get(user=personas.admin).role == "admin"


@pytest.mark.parametrize("days", [0, -5, 10_000])
def test_create_token_command_refuses_what_the_api_refuses(personas, days):
    """`manage.py create_token --days 0` made a token that never expired; the API never does."""
    api = client_for(personas.owner).post(
        "/api/v1/tokens/", {"name": "ci", "scopes": ["read"], "expires_in_days": days}, format="json"
    )
    assert api.status_code == 400
    with pytest.raises(CommandError, match="--days must be between 1 and"):
        call_command("create_token", personas.owner.username, "--days", str(days), stdout=io.StringIO())
    assert not ApiToken.objects.exists()


def test_create_token_command_issues_an_expiring_audited_token(personas):
    out = io.StringIO()
    call_command("create_token", personas.owner.username, "--days", "30", "--scopes", "read", stdout=out)
    token = ApiToken.objects.get()
    assert out.getvalue().strip().startswith(f"slw_{token.key_id}_")
    assert token.expires_at is not None and token.expires_at - timezone.now() <= timedelta(days=30)
    assert AuditEvent.objects.filter(action="token.created").exists()
    with pytest.raises(CommandError, match="Unknown scope"):
        call_command("create_token", personas.owner.username, "--scopes", "read,root", stdout=io.StringIO())
