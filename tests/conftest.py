"""Shared fixtures: test personas (owner, teammate, outsider), API clients, and the broker
stand-in that records what the platform sends to workers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, TeamFactory, UserFactory


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test-fast` runs on every core), each worker's sandboxed children
    run as a user of their own: the process limit (RLIMIT_NPROC) counts a user's processes, so a
    fork bomb in one worker's test must not starve another's sandboxes, and the test that checks
    the bomb left nothing behind must see only its own worker's processes."""
    import os

    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit() and "SLIPWAY_SANDBOX_UID" not in os.environ:
        os.environ["SLIPWAY_SANDBOX_UID"] = str(60000 + int(worker[2:]))


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


class BrokerView(Sequence[Any]):
    """The broker's messages of some tasks, each shaped by `shape` (a tuple a test compares),
    read live: it sees messages sent after it was made, and `clear` forgets them."""

    def __init__(self, broker: Broker, shape: Callable[[Any], Any], tasks: Iterable[str] | None) -> None:
        self._broker, self._shape = broker, shape
        self._tasks = None if tasks is None else set(tasks)

    def _items(self) -> list[Any]:
        return [self._shape(m) for m in self._broker.messages if self._tasks is None or m.task in self._tasks]

    def __getitem__(self, index: Any) -> Any:
        return self._items()[index]

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items())

    def __eq__(self, other: object) -> bool:
        return self._items() == list(other) if isinstance(other, Sequence) else NotImplemented

    def __repr__(self) -> str:
        return repr(self._items())

    def clear(self) -> None:
        self._broker.messages.clear()


class Broker:
    """What the platform sent to workers during the test (apps.core.messages.Message), in order."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def view(self, shape: Callable[[Any], Any], tasks: Iterable[str] | None = None) -> BrokerView:
        return BrokerView(self, shape, tasks)


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    """Keep the broker out: every message the platform would send (apps.core.messages._publish,
    the one call into Celery) is recorded instead. Messages still wait for the commit, as
    in production; use django_capture_on_commit_callbacks(execute=True) to see them."""
    from apps.core import messages

    recorded = Broker()
    monkeypatch.setattr(messages, "_publish", recorded.messages.append)
    return recorded


def client_for(user: object) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client
