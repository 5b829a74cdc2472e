"""The durable-work kernel: claim, fence, beat and reconcile rows that workers pick up.

Jobs, deployments (and their undeploys) and webhook deliveries are rows first and messages
second (docs/adr/0002, 0013). The rules that keep them safe are written once, here:

- **claim**: a worker takes a row with one conditional UPDATE that bumps its attempt. A row
  can be claimed while it waits for a worker, or while it is held by a worker that went
  silent. A duplicate or late message claims nothing. A claimable row with no attempts left
  is given up at once, with the lane's sentence.
- **claim_next**: the same claim, for a worker that asks for work instead of being told
  (issue 18's device agents lease over HTTPS): the oldest claimable row that matches, taken
  with `SELECT ... FOR UPDATE SKIP LOCKED`, so two agents polling at once get different rows.
- **fence**: every later write by the worker is conditioned on the attempt it claimed and
  on the row still being held, so a worker presumed dead and replaced writes nothing.
- **beat**: the worker's heartbeat, fenced the same way.
- **reconcile**: rows held by a silent worker are taken back (or given up when no attempts
  are left) and their message sent again; rows that wait too long for a worker had their
  message lost, and it is sent again. What each step writes is declared by the lane.

A `Lane` declares one kind of durable work on one model: which rows wait, which are held,
when a holder counts as silent, and what taking back, giving up and sending mean for it.
The lanes live with their apps (`apps/pipeline/services.py`, `apps/deployments/lifecycle.py`,
`apps/webhooks/delivery.py`); this module imports no feature app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from django.db import models, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)

Row = TypeVar("Row", bound=models.Model)

# One reconcile pass handles at most this many rows per step; the next pass takes the rest.
RECONCILE_BATCH = 1000


class DurableWork(models.Model):
    """The fields every durable row shares: its attempts, who holds it and since when."""

    attempt = models.PositiveIntegerField(default=0, help_text="Claims so far; every write is fenced by it.")
    max_attempts = models.PositiveIntegerField(default=3)
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="When a message was last sent (or is due).")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="The holding worker's last sign of life.")
    worker_host = models.CharField(max_length=255, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)

    class Meta:
        abstract = True


def silent_since(seconds: Callable[[], float], beat_field: str = "heartbeat_at") -> Callable[[datetime], Q]:
    """Held rows whose last beat is older than `seconds()` (read at each call: settings change)."""

    def silent(now: datetime) -> Q:
        return Q(**{f"{beat_field}__lt": now - timedelta(seconds=seconds())})

    return silent


@dataclass(frozen=True)
class Lane(Generic[Row]):
    """One kind of durable work on one model.

    - `waiting(now)`: rows that wait for a worker (a message was sent, or is due).
    - `held`: rows a worker holds. `silent(now)`: held rows whose worker stopped beating.
    - `lost_after()`: seconds a row may wait before its message counts as lost.
    - `take_back(row, now)`: the fields that put a silent worker's row back to waiting.
    - `give_up(row)`: finish a row that has no attempts left, with a sentence; True if it did.
    - `send(row)`: send the row's message once the transaction commits (`messages.send_on_commit`).
    """

    name: str
    model: type[Row]
    waiting: Callable[[datetime], Q]
    held: Q
    silent: Callable[[datetime], Q]
    lost_after: Callable[[], float]
    take_back: Callable[[Row, datetime], dict[str, Any]]
    give_up: Callable[[Row], bool]
    send: Callable[[Row], None]
    attempt_field: str = "attempt"
    max_field: str = "max_attempts"
    beat_field: str = "heartbeat_at"
    enqueued_field: str = "enqueued_at"

    def claimable(self, now: datetime) -> Q:
        return self.waiting(now) | (self.held & self.silent(now))

    def _with_attempts_left(self) -> Q:
        return Q(**{f"{self.attempt_field}__lt": F(self.max_field)})

    def _exhausted(self) -> Q:
        return Q(**{f"{self.attempt_field}__gte": F(self.max_field)})


@dataclass(frozen=True)
class Reconciled:
    """What one reconcile pass did: silent workers' rows taken back, lost messages sent
    again, rows given up for good."""

    requeued_stale: int = 0
    resent_lost: int = 0
    failed_exhausted: int = 0

    def __add__(self, other: Reconciled) -> Reconciled:
        return Reconciled(
            self.requeued_stale + other.requeued_stale,
            self.resent_lost + other.resent_lost,
            self.failed_exhausted + other.failed_exhausted,
        )

    def __bool__(self) -> bool:
        return bool(self.requeued_stale or self.resent_lost or self.failed_exhausted)


def claim(lane: Lane[Row], pk: int, **fields: Any) -> bool:
    """Take row `pk` for a worker, writing `fields` and bumping its attempt; False when it is
    not claimable (held by a live worker, finished, not due). A claimable row with no attempts
    left is given up here, so a message for it ends it instead of waiting for the reconciler."""
    now = timezone.now()
    claimed = lane.model._default_manager.filter(lane.claimable(now), lane._with_attempts_left(), pk=pk).update(
        **{lane.attempt_field: F(lane.attempt_field) + 1}, **fields
    )
    if claimed:
        return True
    spent = lane.model._default_manager.filter(lane.claimable(now), lane._exhausted(), pk=pk).first()
    if spent is not None:
        lane.give_up(spent)
    return False


def claim_next(
    lane: Lane[Row], where: Q | None = None, order_by: Sequence[str] = ("enqueued_at", "pk"), **fields: Any
) -> Row | None:
    """Take the oldest claimable row matching `where` for a worker that asks for work (a lease
    over HTTP): None when there is none. Rows another transaction is claiming are skipped, not
    waited for, so concurrent askers get different rows."""
    now = timezone.now()
    with transaction.atomic():
        candidates = lane.model._default_manager.filter(lane.claimable(now), lane._with_attempts_left())
        if where is not None:
            candidates = candidates.filter(where)
        row = candidates.order_by(*order_by).select_for_update(skip_locked=True).first()
        if row is None or not claim(lane, row.pk, **fields):
            return None
    return lane.model._default_manager.get(pk=row.pk)


def fenced(lane: Lane[Row], row: Row) -> QuerySet[Row]:
    """The row, only while it is held by the attempt `row` claimed: write through this."""
    return lane.model._default_manager.filter(lane.held, pk=row.pk, **{lane.attempt_field: _attempt(lane, row)})


def beat(lane: Lane[Row], row: Row, **fields: Any) -> bool:
    """The holder's heartbeat (with `fields`, e.g. progress); False when it no longer holds the row."""
    return bool(fenced(lane, row).update(**{lane.beat_field: timezone.now()}, **fields))


def reconcile(lane: Lane[Row], batch: int = RECONCILE_BATCH) -> Reconciled:
    """Take back the rows of silent workers and send lost messages again, as the lane declares."""
    now = timezone.now()
    manager = lane.model._default_manager
    requeued = resent = failed = 0

    for row in manager.filter(lane.held & lane.silent(now)).order_by("pk")[:batch]:
        if _attempt(lane, row) >= getattr(row, lane.max_field):
            failed += int(bool(lane.give_up(row)))
            continue
        with transaction.atomic():
            taken = fenced(lane, row).filter(lane.silent(now))
            if taken.update(**{lane.enqueued_field: now}, **lane.take_back(row, now)):
                requeued += 1
                lane.send(row)

    lost_before = now - timedelta(seconds=lane.lost_after())
    sent_at = lane.enqueued_field
    lost = Q(**{f"{sent_at}__isnull": True}) | Q(**{f"{sent_at}__lt": lost_before})
    for row in manager.filter(lane.waiting(now) & lost).order_by("pk")[:batch]:
        if _attempt(lane, row) >= getattr(row, lane.max_field):
            failed += int(bool(lane.give_up(row)))
            continue
        with transaction.atomic():
            # Only if nobody sent it meanwhile: the compare on enqueued_at is the fence here.
            same = manager.filter(lane.waiting(now), pk=row.pk, **{sent_at: getattr(row, sent_at)})
            if same.update(**{sent_at: now}):
                resent += 1
                lane.send(row)

    report = Reconciled(requeued, resent, failed)
    if report:
        logger.info("%s reconciler: %d taken back, %d re-sent, %d given up", lane.name, requeued, resent, failed)
    return report


def _attempt(lane: Lane[Row], row: Row) -> int:
    return int(getattr(row, lane.attempt_field))
