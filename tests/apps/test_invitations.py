"""Invitations: a team admin hands over a one-time code; whoever redeems it joins with its role,
with an account they have or one they create. Single-reviewer mode is explicit and marked on
every decision it produces."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from apps.accounts.models import Invitation, Membership, hash_token_secret
from apps.audit.models import AuditEvent
from tests.conftest import client_for
from tests.finished import finished_version

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Reading and redeeming codes count against the sign-in limit (a code is a credential)."""
    cache.clear()
    yield
    cache.clear()


def _invite(personas, role="approver", **extra):
    response = client_for(personas.admin).post(
        "/api/v1/teams/vision/invitations/", {"role": role, "note": "for Rita", **extra}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def _signed_out() -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    token = client.get("/api/v1/session/").cookies["csrftoken"].value
    return client, token


def _post(client: Client, token: str, path: str, body: dict) -> object:
    return client.post(path, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)


ACCEPT = "/api/v1/invitations/accept/"
PW = "long enough pw 42"


def test_a_new_reviewer_joins_with_an_account_of_their_own(personas):
    created = _invite(personas)
    code = created["code"]
    assert code.startswith("slwinv_") and created["link"].endswith("/app/join#code=" + code)
    invitation = Invitation.objects.get(pk=created["id"])
    assert invitation.key_hash == hash_token_secret(code.split("_", 2)[2])
    # the list shows it without its code; the code is nowhere in the audit trail
    listed = client_for(personas.admin).get("/api/v1/teams/vision/invitations/").json()
    assert [(i["state"], i["role"], i["note"]) for i in listed] == [("pending", "approver", "for Rita")]
    assert "code" not in listed[0]
    assert not AuditEvent.objects.filter(after__icontains=code.split("_", 2)[2]).exists()

    client, token = _signed_out()
    preview = _post(client, token, "/api/v1/invitations/preview/", {"code": code})
    assert preview.status_code == 200
    assert preview.json() | {"expires_at": None} == {
        "team": "vision",
        "team_name": personas.team.name,
        "role": "approver",
        "invited_by": "ada",
        "expires_at": None,
        "state": "pending",
        "signed_in_as": None,
    }
    weak = _post(client, token, "/api/v1/invitations/accept/", {"code": code, "username": "rita", "password": "123"})
    assert weak.status_code == 400 and weak.json()["code"] == "weak_password", weak.json()
    assert "short" in weak.json()["message"]
    taken = _post(
        client,
        token,
        "/api/v1/invitations/accept/",
        {"code": code, "username": "Dana", "password": "long enough pw 42"},
    )
    assert taken.status_code == 409 and "taken" in taken.json()["message"]

    joined = _post(
        client,
        token,
        "/api/v1/invitations/accept/",
        {"code": code, "username": "rita", "password": "long enough pw 42"},
    )
    assert joined.status_code == 200, joined.json()
    assert joined.json()["teams"] == [
        {"slug": "vision", "name": personas.team.name, "role": "approver", "four_eyes": True, "reviewers": 3}
    ]
    rita = get_user_model().objects.get(username="rita")
    assert rita.check_password("long enough pw 42") and Membership.objects.get(user=rita).role == "approver"
    # the new account is signed in on this browser
    assert client.get("/api/v1/session/").json()["username"] == "rita"
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"invitation.created", "invitation.accepted", "membership.added", "user.created"} <= actions

    # a code works once
    again, token2 = _signed_out()
    used = _post(
        again, token2, "/api/v1/invitations/accept/", {"code": code, "username": "x", "password": "pw pw pw 42"}
    )
    assert used.status_code == 409 and "already used" in used.json()["message"]
    assert client_for(personas.admin).get("/api/v1/teams/vision/invitations/").json()[0]["accepted_by"] == "rita"


def test_a_signed_in_user_joins_with_their_account(personas):
    code = _invite(personas, role="viewer")["code"]
    client = client_for(personas.outsider)
    preview = client.post("/api/v1/invitations/preview/", {"code": code}, format="json")
    assert preview.json()["signed_in_as"] == "otto"
    joined = client.post("/api/v1/invitations/accept/", {"code": code}, format="json")
    assert joined.status_code == 200
    assert {t["slug"]: t["role"] for t in joined.json()["teams"]} == {"fraud": "data_scientist", "vision": "viewer"}
    # a member can't use an invitation to change their own role
    other = _invite(personas, role="admin")["code"]
    refused = client_for(personas.viewer).post("/api/v1/invitations/accept/", {"code": other}, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "already_member"
    assert Membership.objects.get(user=personas.viewer).role == "viewer"


@pytest.mark.parametrize("mangle", ["wrong-secret", "wrong-prefix", "garbage"])
def test_a_bad_code_says_so_without_telling_which_part_is_wrong(personas, mangle):
    code = _invite(personas)["code"]
    bad = {
        "wrong-secret": code[:-4] + "AAAA",
        "wrong-prefix": code.replace("slwinv_", "slw_"),
        "garbage": "hello",
    }[mangle]
    client, token = _signed_out()
    for path in ("/api/v1/invitations/preview/", "/api/v1/invitations/accept/"):
        response = _post(client, token, path, {"code": bad, "username": "mallory", "password": "long enough pw 42"})
        assert response.status_code == 404 and response.json()["code"] == "invalid_invitation"
        assert "copied whole" in response.json()["message"]
    assert not get_user_model().objects.filter(username="mallory").exists()


def test_revoked_and_expired_invitations_are_refused(personas):
    created = _invite(personas)
    admin = client_for(personas.admin)
    assert admin.delete(f"/api/v1/teams/vision/invitations/{created['id']}/").status_code == 204
    assert admin.delete(f"/api/v1/teams/vision/invitations/{created['id']}/").status_code == 409
    client, token = _signed_out()
    body = {"code": created["code"], "username": "rita", "password": "long enough pw 42"}
    revoked = _post(client, token, "/api/v1/invitations/accept/", body)
    assert revoked.status_code == 409 and "withdrawn" in revoked.json()["message"]

    late = _invite(personas)
    Invitation.objects.filter(pk=late["id"]).update(expires_at=timezone.now() - timedelta(minutes=1))
    expired = _post(client, token, "/api/v1/invitations/accept/", {**body, "code": late["code"]})
    assert expired.status_code == 409 and "expired" in expired.json()["message"]
    assert not get_user_model().objects.filter(username="rita").exists()


def test_only_team_admins_see_and_make_invitations(personas):
    for user in (personas.owner, personas.approver, personas.viewer):
        assert (
            client_for(user).post("/api/v1/teams/vision/invitations/", {"role": "admin"}, format="json").status_code
            == 403
        )
        assert client_for(user).get("/api/v1/teams/vision/invitations/").status_code == 403
    assert client_for(personas.outsider).get("/api/v1/teams/vision/invitations/").status_code == 404
    bad = client_for(personas.admin).post(
        "/api/v1/teams/vision/invitations/", {"role": "approver", "expires_in_days": 90}, format="json"
    )
    assert bad.status_code == 400 and "1 to 30 days" in bad.json()["message"]


def test_single_reviewer_mode_is_audited_and_marked_on_the_decision(personas, broker):
    admin = client_for(personas.admin)
    turned = admin.patch(
        "/api/v1/teams/vision/", {"four_eyes": False, "reason": "a team of one for now"}, format="json"
    )
    assert turned.status_code == 200 and turned.json()["reviewers"] == 2
    assert AuditEvent.objects.filter(action="team.updated", after__reason="a team of one for now").exists()
    mine = finished_version(team=personas.team, uploader=personas.admin, number=1)
    approved = admin.post(f"/api/v1/versions/{mine.pk}/approve/", {"comment": "ok"}, format="json")
    assert approved.status_code == 201 and approved.json()["single_reviewer"] is True
    assert AuditEvent.objects.get(action="version.approved").after["single_reviewer"] is True
    theirs = finished_version(team=personas.team, uploader=personas.owner, number=2, model=mine.model)
    other = admin.post(f"/api/v1/versions/{theirs.pk}/approve/", {}, format="json")
    assert other.status_code == 201 and other.json()["single_reviewer"] is False


def test_guessing_codes_is_rate_limited_like_passwords(personas, settings):
    settings.LOGIN_RATE_LIMIT = "3/min"
    client, token = _signed_out()
    answers = [_post(client, token, "/api/v1/invitations/preview/", {"code": f"slwinv_x_{n}"}) for n in range(4)]
    assert [a.status_code for a in answers] == [404, 404, 404, 429]


def test_the_uploaders_review_stops_saying_four_eyes_blocks_them_once_decided(personas, broker):
    version = finished_version(team=personas.team, uploader=personas.owner)
    owner = client_for(personas.owner)
    assert owner.get(f"/api/v1/versions/{version.pk}/review/").json()["four_eyes"]["blocks_you"] is True
    approved = client_for(personas.approver).post(f"/api/v1/versions/{version.pk}/approve/", {}, format="json")
    assert approved.status_code == 201 and approved.json()["single_reviewer"] is False
    after = owner.get(f"/api/v1/versions/{version.pk}/review/").json()
    assert after["four_eyes"] == {"enabled": True, "you_uploaded": True, "blocks_you": False}
