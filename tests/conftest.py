"""Shared fixtures: test personas (owner, teammate, outsider) and API clients."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, TeamFactory, UserFactory


@dataclass
class Personas:
    team: object
    owner: object  # data scientist in `team`
    viewer: object  # read-only member of `team`
    outsider: object  # data scientist in another team: must see nothing of `team`
    other_team: object
    approver: object  # reviews and deploys in `team`
    admin: object  # manages `team` (and may upload and approve)


@pytest.fixture
def personas(db: None) -> Personas:
    team = TeamFactory(slug="vision")
    other = TeamFactory(slug="fraud")
    owner = UserFactory(username="dana")
    viewer = UserFactory(username="vic")
    outsider = UserFactory(username="otto")
    MembershipFactory(team=team, user=owner, role="data_scientist")
    MembershipFactory(team=team, user=viewer, role="viewer")
    approver = UserFactory(username="april", email="april@example.com")
    admin = UserFactory(username="ada", email="ada@example.com")
    MembershipFactory(team=other, user=outsider, role="data_scientist")
    MembershipFactory(team=team, user=approver, role="approver")
    MembershipFactory(team=team, user=admin, role="admin")
    return Personas(
        team=team, owner=owner, viewer=viewer, outsider=outsider, other_team=other, approver=approver, admin=admin
    )


@pytest.fixture(autouse=True)
def isolated_artifact_storage(request, settings, tmp_path):
    """Each unit test gets empty artifact storage; integration tests share the worker's."""
    if request.node.get_closest_marker("integration"):
        return
    root = tmp_path / "artifacts"
    settings.ARTIFACT_ROOT = root
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": "apps.registry.storage.AtomicFileSystemStorage", "OPTIONS": {"location": str(root)}},
    }


def client_for(user: object) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client
