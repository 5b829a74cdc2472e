"""Database queries per list request stay constant as rows grow: no N+1 on any list endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import ApiToken, Membership
from apps.approvals import services as approvals
from apps.approvals.models import Policy
from apps.audit import services as audit
from apps.webhooks import services as webhooks
from apps.webhooks.models import Webhook
from tests.conftest import client_for
from tests.factories import RegisteredModelFactory, UserFactory
from tests.finished import finished_version

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(broker):
    """Messages to workers are recorded, not sent."""


def _add_models(p: Any, n: int) -> None:
    for _ in range(n):
        finished_version(team=p.team, uploader=p.owner)


def _add_decisions(p: Any, n: int) -> None:
    model = RegisteredModelFactory(team=p.team, created_by=p.owner)
    for _ in range(n):
        approvals.approve(finished_version(team=p.team, uploader=p.owner, model=model), p.approver)


def _add_policies(p: Any, n: int) -> None:
    for i in range(n):
        Policy.objects.create(team=p.team, name=f"p{i}", kind="no_cpu_fallback", created_by=p.admin)


def _add_events(p: Any, n: int) -> None:
    for i in range(n):
        audit.record("test.event", None, actor=p.admin, team=p.team, object_type="thing", object_id=str(i))


def _add_members(p: Any, n: int) -> None:
    for _ in range(n):
        Membership.objects.create(team=p.team, user=UserFactory(), role="viewer")


def _add_tokens(p: Any, n: int) -> None:
    for i in range(n):
        ApiToken.issue(p.admin, f"t{i}", ["read"])


def _add_webhooks(p: Any, n: int) -> None:
    start = Webhook.objects.count()
    for i in range(start, start + n):
        webhooks.create_webhook(
            team=p.team,
            user=p.admin,
            name=f"h{i}",
            url="http://127.0.0.1:9/h",
            events=["version.ready"],
            allow_private=True,
        )


def _add_deliveries(p: Any, n: int) -> None:
    if not Webhook.objects.filter(team=p.team, name="d").exists():
        webhooks.create_webhook(
            team=p.team,
            user=p.admin,
            name="d",
            url="http://127.0.0.1:9/h",
            events=["version.ready"],
            allow_private=True,
        )
    for _ in range(n):
        webhooks.emit(p.team, "version.ready", {"n": 1})


LISTS: list[tuple[str, Callable[[Any], str], Callable[[Any, int], None]]] = [
    ("models", lambda p: "/api/v1/models/", _add_models),
    ("versions", lambda p: "/api/v1/versions/", _add_models),
    ("decisions", lambda p: "/api/v1/versions/?status=approved", _add_decisions),
    ("policies", lambda p: "/api/v1/policies/", _add_policies),
    ("audit", lambda p: "/api/v1/audit/", _add_events),
    ("members", lambda p: "/api/v1/teams/vision/members/", _add_members),
    ("tokens", lambda p: "/api/v1/tokens/", _add_tokens),
    ("webhooks", lambda p: "/api/v1/webhooks/?team=vision", _add_webhooks),
    ("deliveries", lambda p: f"/api/v1/webhooks/{Webhook.objects.get(name='d').pk}/deliveries/", _add_deliveries),
]


def _count(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    return len(queries)


@pytest.mark.parametrize(("name", "url", "add"), LISTS, ids=[row[0] for row in LISTS])
def test_list_queries_do_not_grow_with_rows(personas, name, url, add):
    client = client_for(personas.admin)
    add(personas, 2)
    few = _count(client, url(personas))
    add(personas, 6)
    many = _count(client, url(personas))
    assert many == few, f"{name}: {few} queries with 2 rows, {many} with 8"


def test_a_models_versions_list_is_constant_too(personas):
    client = client_for(personas.admin)
    model = RegisteredModelFactory(team=personas.team, created_by=personas.owner, slug="shared")
    for _ in range(2):
        finished_version(team=personas.team, uploader=personas.owner, model=model)
    few = _count(client, "/api/v1/models/shared/versions/?team=vision")
    for _ in range(6):
        finished_version(team=personas.team, uploader=personas.owner, model=model)
    assert _count(client, "/api/v1/models/shared/versions/?team=vision") == few
