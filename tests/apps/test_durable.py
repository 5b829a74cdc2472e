"""The durable-work kernel's rules, once, on a lane of its own over the jobs table.

The pipeline's, deployments' and webhooks' lanes are tested with their apps
(test_jobs, test_deployments, test_webhooks); here the kernel is tested apart from what any
of them means by taking back or giving up, with a lane that only records what it was asked.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import Q
from django.utils import timezone

from apps.core import durable
from apps.pipeline import services
from apps.pipeline.models import Job, JobKind, JobStatus
from tests.factories import ModelVersionFactory

SILENT_AFTER = 60.0
LOST_AFTER = 120.0


@dataclass
class Recorder:
    sent: list[int] = field(default_factory=list)
    given_up: list[tuple[int, str, int]] = field(default_factory=list)

    def give_up(self, job: Job) -> bool:
        self.given_up.append((job.pk, job.status, job.attempt))
        return bool(Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def lane(recorder: Recorder) -> durable.Lane[Job]:
    return durable.Lane(
        name="test",
        model=Job,
        waiting=lambda now: Q(status=JobStatus.QUEUED),
        held=Q(status=JobStatus.RUNNING),
        silent=durable.silent_since(lambda: SILENT_AFTER),
        lost_after=lambda: LOST_AFTER,
        take_back=lambda job, now: {"status": JobStatus.QUEUED, "progress_message": f"taken back from {job.attempt}"},
        give_up=recorder.give_up,
        send=lambda job: recorder.sent.append(job.pk),
    )


def _jobs(count: int, max_attempts: int = 3) -> list[Job]:
    """`count` queued jobs, sent a moment ago, oldest first."""
    version = ModelVersionFactory()
    run = services.start_pipeline(version, version.created_by, steps=[services.PlannedStep(JobKind.INSPECT)])
    now = timezone.now()
    jobs = [
        Job.objects.create(
            run=run,
            kind=JobKind.VALIDATE,
            sequence=index + 1,
            status=JobStatus.QUEUED,
            max_attempts=max_attempts,
            enqueued_at=now - timedelta(seconds=count - index),
        )
        for index in range(count)
    ]
    return jobs


def _take(lane: durable.Lane[Job], job: Job, host: str = "w") -> Job | None:
    now = timezone.now()
    if not durable.claim(lane, job.pk, status=JobStatus.RUNNING, heartbeat_at=now, worker_host=host):
        return None
    return Job.objects.get(pk=job.pk)


def _age(job: Job, **seconds: float) -> None:
    """Move the job's heartbeat or send time back by the given seconds."""
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(**{name: now - timedelta(seconds=s) for name, s in seconds.items()})


pytestmark = pytest.mark.django_db


def test_a_claim_takes_a_waiting_row_once_and_bumps_its_attempt(lane, broker):
    (job,) = _jobs(1)
    mine = _take(lane, job, "a")
    assert mine is not None and (mine.status, mine.attempt, mine.worker_host) == (JobStatus.RUNNING, 1, "a")
    assert _take(lane, job, "b") is None  # a duplicate message, while the holder beats, claims nothing
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    assert _take(lane, job, "c") is None  # nor does a late one for a finished row


def test_a_silent_holder_is_replaced_and_fenced_out(lane, broker):
    (job,) = _jobs(1)
    first = _take(lane, job, "a")
    assert durable.beat(lane, first) and durable.fenced(lane, first).exists()
    _age(job, heartbeat_at=SILENT_AFTER + 1)
    second = _take(lane, job, "b")
    assert second is not None and second.attempt == 2
    # The first worker wakes up: its beats and writes reach nothing.
    assert not durable.beat(lane, first)
    assert durable.fenced(lane, first).update(progress_message="late") == 0
    assert durable.beat(lane, second, progress_message="mine")
    assert Job.objects.get(pk=job.pk).progress_message == "mine"


def test_a_claimable_row_without_attempts_left_is_given_up_by_its_claim(lane, recorder, broker):
    (job,) = _jobs(1, max_attempts=1)
    _take(lane, job)
    _age(job, heartbeat_at=SILENT_AFTER + 1)
    assert _take(lane, job, "b") is None
    assert recorder.given_up == [(job.pk, JobStatus.RUNNING, 1)]
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_reconcile_takes_back_silent_rows_resends_lost_ones_and_gives_up_spent_ones(lane, recorder, broker):
    silent, lost, fresh, spent, busy = _jobs(5)
    _take(lane, silent, "gone")
    _age(silent, heartbeat_at=SILENT_AFTER + 1)
    _age(lost, enqueued_at=LOST_AFTER + 1)
    _take(lane, spent, "gone too")
    Job.objects.filter(pk=spent.pk).update(attempt=3)
    _age(spent, heartbeat_at=SILENT_AFTER + 1)
    _take(lane, busy, "alive")

    report = durable.reconcile(lane)
    assert report == durable.Reconciled(requeued_stale=1, resent_lost=1, failed_exhausted=1)
    assert sorted(recorder.sent) == sorted([silent.pk, lost.pk])
    assert recorder.given_up == [(spent.pk, JobStatus.RUNNING, 3)]
    back = Job.objects.get(pk=silent.pk)
    assert back.status == JobStatus.QUEUED and back.progress_message == "taken back from 1"
    assert back.attempt == 1  # the next claim bumps it; the silent worker's attempt stays fenced out
    assert Job.objects.get(pk=busy.pk).status == JobStatus.RUNNING
    assert Job.objects.get(pk=fresh.pk).enqueued_at == fresh.enqueued_at
    # Nothing seems lost any more: the next pass does nothing.
    assert not durable.reconcile(lane)


def test_reconcile_handles_a_batch_per_pass(lane, recorder, broker):
    jobs = _jobs(3)
    for job in jobs:
        _age(job, enqueued_at=LOST_AFTER + 1)
    assert durable.reconcile(lane, batch=2).resent_lost == 2
    assert durable.reconcile(lane, batch=2).resent_lost == 1


def test_claim_next_leases_the_oldest_matching_row(lane, broker):
    old, middle, new = _jobs(3)
    Job.objects.filter(pk=middle.pk).update(queue="arm64")
    Job.objects.filter(pk=new.pk).update(queue="arm64")
    leased = durable.claim_next(lane, Q(queue="arm64"), status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    assert leased is not None and leased.pk == middle.pk and leased.attempt == 1
    again = durable.claim_next(lane, Q(queue="arm64"), status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    assert again is not None and again.pk == new.pk
    assert durable.claim_next(lane, Q(queue="arm64"), status=JobStatus.RUNNING) is None
    assert Job.objects.get(pk=old.pk).status == JobStatus.QUEUED


@pytest.mark.django_db(transaction=True)
def test_concurrent_askers_lease_different_rows(lane, broker):
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED needs PostgreSQL; SQLite serialises writers instead")
    jobs = _jobs(4)
    leased: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def ask() -> None:
        try:
            start.wait()
            row: Any = durable.claim_next(lane, status=JobStatus.RUNNING, heartbeat_at=timezone.now())
            if row is not None:
                leased.append(row.pk)
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(leased) == sorted(job.pk for job in jobs)
    assert all(job.attempt == 1 for job in Job.objects.filter(pk__in=leased))
