"""The one way the platform tells a worker about work: a Celery message naming a row's id.

Jobs, deployments, webhook deliveries and review e-mails are rows first and messages second.
The row is committed before its message goes out (`send_on_commit`), so a worker never gets
an id it can't read yet, and a broker outage is never the caller's failure: the row is
committed, the message is logged as lost, and the row's reconciler (or sweep) sends it again
for rows left waiting. Every message goes through `_publish`, the only call into Celery, so
tests replace one function to keep the broker out (tests/conftest.py's `broker` fixture).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """A task for the row `object_id`, on `queue`; `priority` 0-9 where the queue has them
    (Redis: lower is sooner), `countdown` seconds before a worker may take it."""

    task: str
    object_id: int
    queue: str
    priority: int | None = None
    countdown: float = 0


def send(message: Message, *, if_lost: str) -> None:
    """Publish `message`; on a broker outage, log it with `if_lost` (what happens to it then)."""
    try:
        _publish(message)
    except Exception:
        logger.warning(
            "could not send %s for %s to queue %s; %s",
            message.task,
            message.object_id,
            message.queue,
            if_lost,
            exc_info=True,
        )


def send_on_commit(message: Message, *, if_lost: str) -> None:
    """Send `message` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: send(message, if_lost=if_lost))


def _publish(message: Message) -> None:
    from config.celery_app import app

    options: dict[str, Any] = {"queue": message.queue}
    if message.priority is not None:  # only what the sender set: the queue's defaults apply to the rest
        options["priority"] = message.priority
    if message.countdown:
        options["countdown"] = message.countdown
    app.send_task(message.task, args=[message.object_id], **options)
