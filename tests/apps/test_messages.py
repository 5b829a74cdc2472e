"""The one sender of work to workers (apps/core/messages.py): after commit, outage-tolerant,
and the only call into Celery, which the `broker` fixture replaces."""

from __future__ import annotations

import logging

import pytest

from apps.core import messages
from apps.core.messages import Message, send, send_on_commit

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    from config.celery_app import app

    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(app, "send_task", lambda name, **options: calls.append((name, options)))
    return calls


def test_a_message_names_its_row_and_leaves_unset_options_to_the_queue(published) -> None:
    send(Message("slipway.jobs.run", 7, "cpu", priority=3), if_lost="")
    send(Message("slipway.webhooks.deliver", 8, "default", countdown=2.5), if_lost="")
    send(Message("slipway.deployments.run", 9, "default"), if_lost="")
    assert published == [
        ("slipway.jobs.run", {"args": [7], "queue": "cpu", "priority": 3}),
        ("slipway.webhooks.deliver", {"args": [8], "queue": "default", "countdown": 2.5}),
        # only what the sender set: the queue's defaults apply to the rest
        ("slipway.deployments.run", {"args": [9], "queue": "default"}),
    ]


def test_a_message_goes_out_only_once_the_row_is_committed(published, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        send_on_commit(Message("slipway.jobs.run", 7, "cpu"), if_lost="")
        assert published == []
    assert len(callbacks) == 1 and published == [("slipway.jobs.run", {"args": [7], "queue": "cpu"})]


def test_a_broker_outage_is_logged_with_what_becomes_of_the_message_not_raised(monkeypatch, caplog) -> None:
    from config.celery_app import app

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("redis is down")

    monkeypatch.setattr(app, "send_task", broker_down)
    with caplog.at_level(logging.WARNING, logger="apps.core.messages"):
        send(Message("slipway.jobs.run", 123, "cpu"), if_lost="the job reconciler re-sends it")
    assert "could not send slipway.jobs.run for 123 to queue cpu; the job reconciler re-sends it" in caplog.text


def test_every_sender_goes_through_the_one_publish(broker, django_capture_on_commit_callbacks) -> None:
    """Jobs, deployments, webhook deliveries and review e-mails: nothing else calls Celery."""
    from pathlib import Path

    root = Path(messages.__file__).resolve().parents[2]
    callers = sorted(
        str(path.relative_to(root))
        for path in (root / "apps").rglob("*.py")
        if "send_task(" in path.read_text(encoding="utf-8")
    )
    assert callers == ["apps/core/messages.py"]
    with django_capture_on_commit_callbacks(execute=True):
        send_on_commit(Message("t", 1, "q"), if_lost="")
    assert broker.messages == [Message("t", 1, "q")]
