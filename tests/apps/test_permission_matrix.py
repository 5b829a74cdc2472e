"""Every API endpoint x every role: who gets in, who is refused, and how.

The table below is written out by hand, one row per (method, route); a test reads the URL
conf and fails when an endpoint has no row, so a new endpoint can't ship unchecked.
A role that may act gets the endpoint's success status; a team member whose role may not
gets 403; an outsider gets 404 for the team's objects (it "does not exist" for them) and
an empty answer from lists; an anonymous caller gets 401 (except for signing in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.approvals import services as approvals
from apps.approvals.models import Policy
from apps.deployments import targets as deploy_targets
from apps.deployments.models import Deployment
from apps.pipeline.models import Job
from apps.webhooks import services as webhooks
from apps.webhooks.models import DeliveryStatus, WebhookDelivery
from tests import modelzoo
from tests.conftest import client_for
from tests.factories import MembershipFactory, UserFactory
from tests.finished import finished_version

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "outsider", "viewer", "data_scientist", "approver", "admin")
MEMBERS = frozenset({"viewer", "data_scientist", "approver", "admin"})
UPLOADERS = frozenset({"data_scientist", "admin"})
REVIEWERS = frozenset({"approver", "admin"})
ADMINS = frozenset({"admin"})
DEPLOYERS = frozenset({"approver", "admin"})
EVERYONE = frozenset(ROLES) - {"anonymous"}


@dataclass
class World:
    users: dict[str, Any]
    ready: Any  # a version ready for review, uploaded by the data scientist
    approved: Any
    job: Any
    decision: Any
    policy: Any
    onnx: bytes
    webhook: Any
    delivery: Any

    def token_of(self, role: str) -> int:
        token, _ = ApiToken.issue(self.users.get(role, self.users["admin"]), "matrix", ["read"])
        return token.pk


@dataclass(frozen=True)
class Row:
    method: str
    route: str  # as in the URL conf, after /api/v1/
    allowed: frozenset[str]
    ok: int
    url: Callable[[World, str], str]
    body: Callable[[World], dict[str, Any]] = field(default=lambda w: {})
    kind: str = "team"  # team: outsiders 404; list: outsiders get an empty answer; open: every user
    multipart: bool = False


def const(path: str) -> Callable[[World, str], str]:
    return lambda w, role: path


def v(attr: str, suffix: str = "") -> Callable[[World, str], str]:
    return lambda w, role: f"/api/v1/versions/{getattr(w, attr).pk}/{suffix}"


def _bare_target(w: World) -> Any:
    """A serving target of the team with no deployments (made on first use)."""
    if getattr(w, "bare_target", None) is None:
        w.bare_target = deploy_targets.create_target(  # type: ignore[attr-defined]
            team=w.approved.model.team,
            user=w.users["admin"],
            name="Bare",
            profile="x86-cpu",
            url="http://127.0.0.1:9",
            repository="/srv/triton/bare",
            allow_private=True,
        )
    return w.bare_target  # type: ignore[attr-defined]


def _waiting(w: World) -> Any:
    """A version of the team whose pipeline still waits for its x86-cpu steps (made on first use)."""
    if getattr(w, "waiting", None) is None:
        from apps.hardware.models import HardwareProfile
        from apps.pipeline import services as pipeline
        from tests.factories import ModelVersionFactory

        version = ModelVersionFactory(model=w.ready.model, created_by=w.users["data_scientist"])
        version.profiles.set([HardwareProfile.objects.get(slug="x86-cpu")])
        pipeline.start_pipeline(version, w.users["data_scientist"])
        w.waiting = version  # type: ignore[attr-defined]
    return w.waiting  # type: ignore[attr-defined]


def _live(w: World) -> Deployment:
    """A live deployment on target "matrix" that replaced an earlier one (made on first use)."""
    if getattr(w, "live", None) is None:
        admin = w.users["admin"]
        target = deploy_targets.create_target(
            team=w.approved.model.team,
            user=admin,
            name="Matrix",
            profile="x86-cpu",
            url="http://127.0.0.1:9",
            repository="/srv/triton/matrix",
            allow_private=True,
        )
        common = {
            "target": target,
            "version": w.approved,
            "model": w.approved.model,
            "profile": target.profile,
            "variant": "original",
            "triton_model": w.approved.model.slug,
            "requested_by": admin,
        }
        before = Deployment.objects.create(**common, triton_version=1, status="retired")
        w.live = Deployment.objects.create(**common, triton_version=2, status="live", replaces=before)  # type: ignore[attr-defined]
    return w.live  # type: ignore[attr-defined]


def _empty_model(w: World) -> Any:
    """A model of the team with no versions, which may be deleted (made on first use)."""
    if getattr(w, "empty_model", None) is None:
        from apps.registry.models import RegisteredModel

        w.empty_model = RegisteredModel.objects.create(  # type: ignore[attr-defined]
            team=w.ready.model.team, name="Empty", slug="empty", created_by=w.users["data_scientist"]
        )
    return w.empty_model  # type: ignore[attr-defined]


def _device(w: World) -> Any:
    """A device of the team, registered with an enrollment token (made on first use)."""
    if getattr(w, "device", None) is None:
        from apps.hardware import devices

        _, token = devices.create_enrollment(w.approved.model.team, w.users["admin"], ["x86-cpu"])
        w.device, _ = devices.register(token, "matrix-box", _PROBE)  # type: ignore[attr-defined]
    return w.device  # type: ignore[attr-defined]


def _enrollment_token(w: World) -> str:
    from apps.hardware import devices

    return devices.create_enrollment(w.approved.model.team, w.users["admin"], ["x86-cpu"])[1]


_PROBE = {"host": "box", "arch": "x86_64", "cpu_model": "x", "cpu_flags": [], "cores": 2, "memory_bytes": 1, "gpus": []}


def _trial(w: World) -> Any:
    """A trial of the ready version (made on first use)."""
    if getattr(w, "trial", None) is None:
        from apps.pipeline.models import Trial

        w.trial = Trial.objects.create(  # type: ignore[attr-defined]
            version=w.ready, input_name="x.json", input_key="k", input_sha256="0" * 64, input_size=2
        )
    return w.trial  # type: ignore[attr-defined]


def _stored_artifact(w: World) -> Any:
    """A variant of the ready version whose bytes are in the artifact storage (made on first use)."""
    if getattr(w, "stored_artifact", None) is None:
        import hashlib
        import io

        from apps.registry.models import Artifact
        from apps.registry.storage import put_blob

        digest = hashlib.sha256(w.onnx).hexdigest()
        key, _ = put_blob(io.BytesIO(w.onnx), digest)
        w.stored_artifact = Artifact.objects.create(  # type: ignore[attr-defined]
            version=w.ready,
            kind="variant",
            name="x86-cpu/mlp",
            format="onnx",
            sha256=digest,
            size=len(w.onnx),
            storage_key=key,
        )
    return w.stored_artifact  # type: ignore[attr-defined]


def _invitation(w: World) -> Any:
    """A pending invitation to the team, made on first use: (row, code)."""
    if getattr(w, "invitation", None) is None:
        from apps.accounts.services import create_invitation

        w.invitation = create_invitation(w.approved.model.team, w.users["admin"], "viewer")  # type: ignore[attr-defined]
    return w.invitation  # type: ignore[attr-defined]


def _elsewhere_code(w: World) -> str:
    """An invitation to a team none of the personas is in, so every caller can redeem it."""
    from apps.accounts.services import create_invitation
    from tests.factories import TeamFactory

    team = TeamFactory(slug="elsewhere")
    boss = UserFactory(username="boss")
    MembershipFactory(team=team, user=boss, role="admin")
    return create_invitation(team, boss, "viewer")[1]


def _target_url(suffix: str = "") -> Callable[[World, str], str]:
    return lambda w, role: f"/api/v1/targets/{_bare_target(w).pk}/{suffix}"


def _deployment_url(suffix: str = "") -> Callable[[World, str], str]:
    return lambda w, role: f"/api/v1/deployments/{_live(w).pk}/{suffix}"


MATRIX: list[Row] = [
    Row("GET", "teams/", EVERYONE, 200, const("/api/v1/teams/"), kind="list"),
    Row("GET", "teams/<slug:slug>/", MEMBERS, 200, const("/api/v1/teams/vision/")),
    Row("PATCH", "teams/<slug:slug>/", ADMINS, 200, const("/api/v1/teams/vision/"), lambda w: {"four_eyes": True}),
    Row("GET", "teams/<slug:slug>/members/", MEMBERS, 200, const("/api/v1/teams/vision/members/")),
    Row(
        "POST",
        "teams/<slug:slug>/members/",
        ADMINS,
        201,
        const("/api/v1/teams/vision/members/"),
        lambda w: {"username": "newcomer", "role": "viewer"},
    ),
    Row("GET", "teams/<slug:slug>/invitations/", ADMINS, 200, const("/api/v1/teams/vision/invitations/")),
    Row(
        "POST",
        "teams/<slug:slug>/invitations/",
        ADMINS,
        201,
        const("/api/v1/teams/vision/invitations/"),
        lambda w: {"role": "viewer"},
    ),
    Row(
        "GET",
        "teams/<slug:slug>/invitations/<int:pk>/",
        ADMINS,
        200,
        lambda w, r: f"/api/v1/teams/vision/invitations/{_invitation(w)[0].pk}/",
    ),
    Row(
        "DELETE",
        "teams/<slug:slug>/invitations/<int:pk>/",
        ADMINS,
        204,
        lambda w, r: f"/api/v1/teams/vision/invitations/{_invitation(w)[0].pk}/",
    ),
    # redeeming an invitation: the code is the credential, signed in or not
    Row(
        "POST",
        "invitations/preview/",
        frozenset(ROLES),
        200,
        const("/api/v1/invitations/preview/"),
        lambda w: {"code": _invitation(w)[1]},
        kind="open",
    ),
    Row(
        "POST",
        "invitations/accept/",
        frozenset(ROLES),
        200,
        const("/api/v1/invitations/accept/"),
        lambda w: {"code": _elsewhere_code(w), "username": "joiner", "password": "long enough pw 42"},
        kind="open",
    ),
    Row("GET", "teams/<slug:slug>/members/<str:username>/", MEMBERS, 200, const("/api/v1/teams/vision/members/sam/")),
    Row(
        "PATCH",
        "teams/<slug:slug>/members/<str:username>/",
        ADMINS,
        200,
        const("/api/v1/teams/vision/members/sam/"),
        lambda w: {"role": "approver"},
    ),
    Row("DELETE", "teams/<slug:slug>/members/<str:username>/", ADMINS, 204, const("/api/v1/teams/vision/members/sam/")),
    Row("GET", "models/", EVERYONE, 200, const("/api/v1/models/?team=vision"), kind="list"),
    Row("POST", "models/", UPLOADERS, 201, const("/api/v1/models/"), lambda w: {"name": "Fresh", "team": "vision"}),
    Row("GET", "models/<slug:slug>/", MEMBERS, 200, lambda w, r: f"/api/v1/models/{w.ready.model.slug}/?team=vision"),
    Row(
        "DELETE",
        "models/<slug:slug>/",
        UPLOADERS,
        204,
        lambda w, r: f"/api/v1/models/{_empty_model(w).slug}/?team=vision",
    ),
    Row(
        "GET",
        "models/<slug:slug>/versions/",
        MEMBERS,
        200,
        lambda w, r: f"/api/v1/models/{w.ready.model.slug}/versions/?team=vision",
    ),
    Row(
        "POST",
        "models/<slug:slug>/versions/",
        UPLOADERS,
        201,
        lambda w, r: f"/api/v1/models/{w.ready.model.slug}/versions/",
        lambda w: {"file": SimpleUploadedFile("m.onnx", w.onnx), "team": "vision"},
        multipart=True,
    ),
    Row("GET", "profiles/", EVERYONE, 200, const("/api/v1/profiles/"), kind="open"),
    Row("GET", "workers/", EVERYONE, 200, const("/api/v1/workers/"), kind="open"),
    Row("GET", "queues/", EVERYONE, 200, const("/api/v1/queues/"), kind="open"),
    Row("GET", "devices/", EVERYONE, 200, const("/api/v1/devices/"), kind="list"),
    Row(
        "POST",
        "devices/enrollments/",
        ADMINS,
        201,
        const("/api/v1/devices/enrollments/"),
        lambda w: {"team": "vision", "profiles": ["x86-cpu"]},
    ),
    Row("POST", "devices/<int:pk>/revoke/", ADMINS, 200, lambda w, r: f"/api/v1/devices/{_device(w).pk}/revoke/"),
    # A device's agent: registering needs only the enrollment token; beating, a device credential
    # (a user is no device: 403; no credential at all: 401).
    Row(
        "POST",
        "agent/register/",
        frozenset(ROLES),
        201,
        const("/api/v1/agent/register/"),
        lambda w: {"token": _enrollment_token(w), "name": "new-box", "hardware": _PROBE},
        kind="open",
    ),
    Row("POST", "agent/beat/", frozenset(), 200, const("/api/v1/agent/beat/"), kind="open"),
    # Leases: a device credential only (tests/apps/test_device_leases.py drives them as a device).
    Row("POST", "agent/rotate/", frozenset(), 201, const("/api/v1/agent/rotate/"), kind="open"),
    Row("POST", "agent/lease/", frozenset(), 200, const("/api/v1/agent/lease/"), kind="open"),
    Row(
        "POST", "agent/jobs/<int:job>/progress/", frozenset(), 200, const("/api/v1/agent/jobs/1/progress/"), kind="open"
    ),
    Row("POST", "agent/jobs/<int:job>/result/", frozenset(), 200, const("/api/v1/agent/jobs/1/result/"), kind="open"),
    Row(
        "GET",
        "agent/jobs/<int:job>/artifacts/<int:artifact>/",
        frozenset(),
        200,
        const("/api/v1/agent/jobs/1/artifacts/1/?attempt=1"),
        kind="open",
    ),
    Row("GET", "versions/", EVERYONE, 200, const("/api/v1/versions/?team=vision"), kind="list"),
    Row("GET", "versions/<int:pk>/", MEMBERS, 200, v("ready")),
    Row("GET", "jobs/<int:pk>/", MEMBERS, 200, lambda w, r: f"/api/v1/jobs/{w.job.pk}/"),
    Row("GET", "compare/", MEMBERS, 200, lambda w, r: f"/api/v1/compare/?a={w.approved.pk}&b={w.ready.pk}"),
    Row("GET", "versions/<int:pk>/review/", MEMBERS, 200, v("ready", "review/")),
    Row("POST", "versions/<int:pk>/approve/", REVIEWERS, 201, v("ready", "approve/")),
    Row("POST", "versions/<int:pk>/reject/", REVIEWERS, 201, v("ready", "reject/"), lambda w: {"comment": "no"}),
    Row("POST", "versions/<int:pk>/revoke/", REVIEWERS, 201, v("approved", "revoke/"), lambda w: {"comment": "no"}),
    Row("POST", "versions/<int:pk>/rerun/", UPLOADERS, 202, v("ready", "rerun/")),
    Row(
        "POST",
        "versions/<int:pk>/profiles/<slug:profile>/drop/",
        UPLOADERS,
        200,
        lambda w, r: f"/api/v1/versions/{_waiting(w).pk}/profiles/x86-cpu/drop/",
    ),
    Row("GET", "versions/<int:pk>/decisions/", MEMBERS, 200, v("approved", "decisions/")),
    Row("GET", "decisions/<int:pk>/", MEMBERS, 200, lambda w, r: f"/api/v1/decisions/{w.decision.pk}/"),
    Row(
        "GET",
        "decisions/<int:pk>/evidence/",
        MEMBERS,
        200,
        lambda w, r: f"/api/v1/decisions/{w.decision.pk}/evidence/",
    ),
    Row("GET", "versions/<int:pk>/report/", MEMBERS, 200, v("ready", "report/?format=csv")),
    Row("GET", "versions/<int:pk>/graph/", MEMBERS, 200, v("ready", "graph/")),
    Row("GET", "versions/<int:pk>/trials/", MEMBERS, 200, v("ready", "trials/")),
    Row("GET", "versions/<int:pk>/trials/defaults/", MEMBERS, 200, v("ready", "trials/defaults/")),
    Row(
        "POST",
        "versions/<int:pk>/trials/",
        UPLOADERS | REVIEWERS,
        202,
        v("ready", "trials/"),
        lambda w: {"file": SimpleUploadedFile("x.json", b'{"x": [[1, 2, 3, 4]]}')},
        multipart=True,
    ),
    Row("GET", "trials/<int:pk>/", MEMBERS, 200, lambda w, r: f"/api/v1/trials/{_trial(w).pk}/"),
    Row(
        "GET",
        "artifacts/<int:pk>/download/",
        MEMBERS,
        200,
        lambda w, r: f"/api/v1/artifacts/{_stored_artifact(w).pk}/download/",
    ),
    Row("GET", "policies/", EVERYONE, 200, const("/api/v1/policies/?team=vision"), kind="list"),
    Row("GET", "policies/kinds/", EVERYONE, 200, const("/api/v1/policies/kinds/"), kind="open"),
    Row(
        "POST",
        "policies/",
        ADMINS,
        201,
        const("/api/v1/policies/"),
        lambda w: {"team": "vision", "name": "fast", "kind": "max_p99_latency", "params": {"max_ms": 9}},
    ),
    Row("GET", "policies/<int:pk>/", MEMBERS, 200, lambda w, r: f"/api/v1/policies/{w.policy.pk}/"),
    Row(
        "PATCH",
        "policies/<int:pk>/",
        ADMINS,
        200,
        lambda w, r: f"/api/v1/policies/{w.policy.pk}/",
        lambda w: {"enabled": False},
    ),
    Row("DELETE", "policies/<int:pk>/", ADMINS, 204, lambda w, r: f"/api/v1/policies/{w.policy.pk}/"),
    Row("GET", "tokens/", EVERYONE, 200, const("/api/v1/tokens/"), kind="open"),
    Row(
        "POST",
        "tokens/",
        EVERYONE,
        201,
        const("/api/v1/tokens/"),
        lambda w: {"name": "ci", "scopes": ["read"], "expires_in_days": 7},
        kind="open",
    ),
    # a token is its owner's: each caller asks for their own
    Row("GET", "tokens/<int:pk>/", EVERYONE, 200, lambda w, r: f"/api/v1/tokens/{w.token_of(r)}/", kind="open"),
    Row("DELETE", "tokens/<int:pk>/", EVERYONE, 204, lambda w, r: f"/api/v1/tokens/{w.token_of(r)}/", kind="open"),
    Row("GET", "webhooks/", ADMINS, 200, const("/api/v1/webhooks/?team=vision")),
    Row(
        "POST",
        "webhooks/",
        ADMINS,
        201,
        const("/api/v1/webhooks/"),
        lambda w: {
            "team": "vision",
            "name": "ops",
            "url": "http://127.0.0.1:9/new",
            "events": ["version.ready"],
            "allow_private": True,
        },
    ),
    Row("GET", "webhooks/<int:pk>/", ADMINS, 200, lambda w, r: f"/api/v1/webhooks/{w.webhook.pk}/"),
    Row(
        "PATCH",
        "webhooks/<int:pk>/",
        ADMINS,
        200,
        lambda w, r: f"/api/v1/webhooks/{w.webhook.pk}/",
        lambda w: {"active": False},
    ),
    Row("DELETE", "webhooks/<int:pk>/", ADMINS, 204, lambda w, r: f"/api/v1/webhooks/{w.webhook.pk}/"),
    Row(
        "POST",
        "webhooks/<int:pk>/rotate-secret/",
        ADMINS,
        200,
        lambda w, r: f"/api/v1/webhooks/{w.webhook.pk}/rotate-secret/",
    ),
    Row("POST", "webhooks/<int:pk>/ping/", ADMINS, 202, lambda w, r: f"/api/v1/webhooks/{w.webhook.pk}/ping/"),
    Row(
        "GET", "webhooks/<int:pk>/deliveries/", ADMINS, 200, lambda w, r: f"/api/v1/webhooks/{w.webhook.pk}/deliveries/"
    ),
    Row(
        "POST",
        "webhooks/<int:pk>/deliveries/<int:delivery_id>/redeliver/",
        ADMINS,
        202,
        lambda w, r: f"/api/v1/webhooks/{w.webhook.pk}/deliveries/{w.delivery.pk}/redeliver/",
    ),
    # Targets and deployments are made on first use by the URL and body functions (the `_=`
    # makes them exist before a list is read, so an outsider's empty answer means something).
    Row(
        "GET",
        "targets/",
        EVERYONE,
        200,
        lambda w, r: f"/api/v1/targets/?team=vision&_={_bare_target(w).pk}",
        kind="list",
    ),
    Row(
        "POST",
        "targets/",
        ADMINS,
        201,
        const("/api/v1/targets/"),
        lambda w: {
            "team": "vision",
            "name": "New",
            "url": "http://127.0.0.1:9",
            "repository": "/srv/triton/new",
            "profile": "x86-cpu",
            "allow_private": True,
        },
    ),
    # the kinds and what each takes: reference data, like the hardware profiles
    Row("GET", "targets/kinds/", EVERYONE, 200, const("/api/v1/targets/kinds/"), kind="open"),
    Row("GET", "targets/<int:pk>/", MEMBERS, 200, _target_url()),
    Row("PATCH", "targets/<int:pk>/", ADMINS, 200, _target_url(), lambda w: {"enabled": False}),
    Row("DELETE", "targets/<int:pk>/", ADMINS, 204, _target_url()),
    Row("POST", "targets/<int:pk>/check/", DEPLOYERS, 202, _target_url("check/")),
    Row(
        "GET",
        "deployments/",
        EVERYONE,
        200,
        lambda w, r: f"/api/v1/deployments/?team=vision&_={_live(w).pk}",
        kind="list",
    ),
    Row(
        "POST",
        "deployments/",
        DEPLOYERS,
        202,
        const("/api/v1/deployments/"),
        lambda w: {"version": w.approved.pk, "target": _live(w).target.slug},
    ),
    Row("GET", "deployments/<int:pk>/", MEMBERS, 200, _deployment_url()),
    Row("GET", "deployments/<int:pk>/metrics/", MEMBERS, 200, _deployment_url("metrics/")),
    Row("POST", "deployments/<int:pk>/rollback/", DEPLOYERS, 202, _deployment_url("rollback/")),
    Row("POST", "deployments/<int:pk>/undeploy/", DEPLOYERS, 202, _deployment_url("undeploy/")),
    Row("GET", "audit/", EVERYONE, 200, const("/api/v1/audit/?team=vision"), kind="list"),
    Row("GET", "audit/export/", EVERYONE, 200, const("/api/v1/audit/export/?team=vision"), kind="list"),
    # the browser session: anyone may sign in (here as sam); who-am-I and sign-out need a session
    Row("GET", "session/", EVERYONE, 200, const("/api/v1/session/"), kind="open"),
    Row(
        "POST",
        "session/",
        frozenset(ROLES),
        200,
        const("/api/v1/session/"),
        lambda w: {"username": "sam", "password": "pw-for-tests"},
        kind="open",
    ),
    Row("DELETE", "session/", EVERYONE, 204, const("/api/v1/session/"), kind="open"),
]


def _api_routes() -> set[tuple[str, str]]:
    """(method, route) for every endpoint under /api/v1/ in the URL conf."""
    found: set[tuple[str, str]] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
                view = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
                for method in ("get", "post", "put", "patch", "delete"):
                    if view is not None and hasattr(view, method):
                        found.add((method.upper(), route.removeprefix("api/v1/")))

    walk(get_resolver().url_patterns, "")
    return found


def test_every_endpoint_has_a_row():
    rows = {(row.method, row.route) for row in MATRIX}
    missing = sorted(_api_routes() - rows)
    assert not missing, f"endpoints without a permission-matrix row: {missing}"
    stale = sorted(rows - _api_routes())
    assert not stale, f"rows for endpoints that no longer exist: {stale}"


@pytest.fixture
def world(personas, tmp_path, monkeypatch, broker) -> World:
    from django.core.cache import cache

    cache.clear()  # the sign-in limit counts the session and invitation rows' requests
    MembershipFactory(team=personas.team, user=UserFactory(username="sam"), role="viewer")
    UserFactory(username="newcomer")
    ready = finished_version(team=personas.team, uploader=personas.owner)
    approved = finished_version(team=personas.team, uploader=personas.owner, model=ready.model)
    decision = approvals.approve(approved, personas.approver)
    policy = Policy.objects.create(
        team=personas.team,
        name="drift",
        kind="max_accuracy_drift",
        params={"min_cosine": 0.9},
        created_by=personas.admin,
    )
    users = {
        "outsider": personas.outsider,
        "viewer": personas.viewer,
        "data_scientist": personas.owner,
        "approver": personas.approver,
        "admin": personas.admin,
    }
    onnx = modelzoo.make_mlp_onnx(tmp_path / "m.onnx").read_bytes()
    hook, _ = webhooks.create_webhook(
        team=personas.team,
        user=personas.admin,
        name="ci",
        url="http://127.0.0.1:9/hook",
        events=["version.ready"],
        allow_private=True,
    )
    (delivery,) = webhooks.emit(personas.team, "version.ready", {"version": 1})
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED)  # redeliverable
    job = Job.objects.filter(run__version=ready).first()
    return World(users, ready, approved, job, decision, policy, onnx, hook, delivery)


def _expected(row: Row, role: str) -> int:
    if role in row.allowed:
        return row.ok
    if role == "anonymous":
        return 401
    if role == "outsider" and row.kind == "team":
        return 404
    return 403


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("row", MATRIX, ids=lambda r: f"{r.method} {r.route}")
def test_permission_matrix(world, row, role):
    client = APIClient() if role == "anonymous" else client_for(world.users[role])
    url = row.url(world, role)
    body = row.body(world)
    send = getattr(client, row.method.lower())
    response = send(url, body, format="multipart" if row.multipart else "json") if body else send(url)
    expected = _expected(row, role)
    content = b"".join(response.streaming_content) if response.streaming else response.content
    assert response.status_code == expected, f"{row.method} {url} as {role}: {content[:300]!r}"
    if expected >= 400:
        assert content.startswith(b"{") and b'"message"' in content  # a sentence, in the one error shape
    if role == "outsider" and row.kind == "list":
        # an outsider's list answers must hold nothing of the team
        assert b'"vision"' not in content and world.ready.model.slug.encode() not in content, content[:300]
