"""Where work stands: a waiting step's place in its queue and when it is likely to start, how long
a running step usually takes, what each worker runs now, and how deep each queue is.

Estimates come from the median duration of recent finished steps of the same kind on the same
queue, and say so. Where there is nothing to go on (no recent finished step, no live worker on
the queue) they say that instead of a number. Nothing here writes.
"""

from __future__ import annotations

import heapq
import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, ExpressionWrapper, F, IntegerField, Min, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from apps.accounts.scoping import visible_teams
from apps.hardware.models import HardwareProfile, Worker
from apps.hardware.services import worker_status
from apps.pipeline.models import Job, JobStatus
from apps.pipeline.services import SERVER_QUEUE, step_priority

# How many recent successful steps of a kind on a queue the typical duration is the median of.
SAMPLES = 20
# Celery's default queue carries the periodic maintenance tasks, never a pipeline step.
MAINTENANCE_QUEUE = "default"

# `services.step_priority` in SQL: the priority a step's message was sent with (0 is served first).
PRIORITY = ExpressionWrapper(Greatest(Value(0), Value(9) - F("sequence")), output_field=IntegerField())


def priorities_served() -> bool:
    """Whether the broker hands out higher-priority messages first (Redis). The filesystem
    transport of the embedded default ignores priorities: first come, first served (ADR 0002)."""
    return not str(settings.CELERY_BROKER_URL).startswith("filesystem://")


def _seconds(start: datetime | None, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds()) if start is not None else 0.0


def _taken_by(count: int) -> str:
    return "the live worker that takes it" if count == 1 else f"the {count} live workers that take it"


@dataclass(frozen=True)
class Typical:
    """How long steps of one kind took on one queue lately: the median of the last `SAMPLES`
    that succeeded there; `seconds` is None when none has."""

    queue: str
    kind: str
    seconds: float | None
    samples: int

    @property
    def sentence(self) -> str:
        """Where the figure comes from, or that there is none."""
        if self.seconds is None:
            return f"No {self.kind} step has finished on queue {self.queue} lately"
        return f"the median of {self.samples} recent {self.kind} steps on queue {self.queue}"


@dataclass(frozen=True)
class Estimate:
    """When a queued step is likely to start (`starts_in_seconds`), or how long a running one has
    run and usually runs, with what that comes from. `basis` is a phrase where there is a
    figure ("from the median of 12 recent optimize steps on queue cpu ...", or "a live worker
    that takes queue cpu is free" for 0), otherwise a sentence saying why there is none."""

    starts_in_seconds: int | None
    elapsed_seconds: int | None
    typical_seconds: int | None
    samples: int
    live_workers: int
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Place:
    """A step's place in its queue: `position` 1 is next (None unless it is queued), `ahead` the
    queued steps a worker takes before it, and the estimate (None unless queued or running)."""

    position: int | None
    ahead: int | None
    estimate: Estimate | None


NOWHERE = Place(None, None, None)


class Outlook:
    """Looks up what the places of the steps in one answer need, each thing once: live workers,
    the running steps and typical durations per queue. Make one per answer (`outlook`)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or timezone.now()
        self._typical: dict[tuple[str, str], Typical] = {}
        self._running: dict[str, list[tuple[str, datetime | None]]] = {}
        self._workers: dict[str, list[str]] | None = None
        self._places: dict[int, Place] = {}

    def typical(self, queue: str, kind: str) -> Typical:
        key = (queue, kind)
        if key not in self._typical:
            rows = (
                Job.objects.filter(
                    status=JobStatus.SUCCEEDED,
                    queue=queue,
                    kind=kind,
                    started_at__isnull=False,
                    finished_at__isnull=False,
                )
                .order_by("-finished_at")
                .values_list("started_at", "finished_at")[:SAMPLES]
            )
            durations = [_seconds(started, finished) for started, finished in rows if finished is not None]
            median = statistics.median(durations) if durations else None
            self._typical[key] = Typical(queue, kind, median, len(durations))
        return self._typical[key]

    def live_workers_by_queue(self) -> dict[str, list[str]]:
        """Queue -> the live workers (heartbeat fresh, not stopped) that take it, by name."""
        if self._workers is None:
            found: dict[str, list[str]] = {}
            for worker in Worker.objects.filter(stopped_at__isnull=True).order_by("name"):
                if worker_status(worker) == "online":
                    for queue in worker.queues or []:
                        found.setdefault(queue, []).append(worker.name)
            self._workers = found
        return self._workers

    def live_workers(self, queue: str) -> list[str]:
        return self.live_workers_by_queue().get(queue, [])

    def running(self, queue: str) -> list[tuple[str, datetime | None]]:
        """The steps running on `queue` now, as (kind, started at)."""
        if queue not in self._running:
            rows = Job.objects.filter(status=JobStatus.RUNNING, queue=queue).order_by("started_at", "pk")
            self._running[queue] = list(rows.values_list("kind", "started_at"))
        return self._running[queue]

    def place(self, job: Job) -> Place:
        """The job's place: position and start estimate while queued, elapsed and typical
        duration while running, nothing otherwise."""
        if job.pk not in self._places:
            if job.status == JobStatus.QUEUED:
                self._places[job.pk] = self._waiting(job)
            elif job.status == JobStatus.RUNNING:
                self._places[job.pk] = Place(None, None, self._running_estimate(job))
            else:
                self._places[job.pk] = NOWHERE
        return self._places[job.pk]

    def _ahead(self, job: Job) -> Counter[str]:
        """The queued steps of the job's queue a worker takes before it, counted by kind: by
        message priority (later steps of started pipelines first) where the broker serves
        priorities, then first come, first served."""
        rows = Job.objects.filter(status=JobStatus.QUEUED, queue=job.queue).exclude(pk=job.pk)
        if job.enqueued_at is None:  # sorts last; never so once `_queue` has run
            same = Q(enqueued_at__isnull=False) | Q(pk__lt=job.pk)
        else:
            same = Q(enqueued_at__lt=job.enqueued_at) | Q(enqueued_at=job.enqueued_at, pk__lt=job.pk)
        if priorities_served():
            mine = step_priority(job.sequence)
            rows = rows.alias(priority=PRIORITY).filter(Q(priority__lt=mine) | (Q(priority=mine) & same))
        else:
            rows = rows.filter(same)
        return Counter({row["kind"]: row["n"] for row in rows.values("kind").annotate(n=Count("id"))})

    def _waiting(self, job: Job) -> Place:
        ahead = self._ahead(job)
        count = sum(ahead.values())
        queue = job.queue
        own = self.typical(queue, job.kind)
        typical = round(own.seconds) if own.seconds is not None else None
        workers = len(self.live_workers(queue))

        def estimate(seconds: int | None, samples: int, basis: str) -> Place:
            return Place(count + 1, count, Estimate(seconds, None, typical, samples, workers, basis))

        if workers == 0:
            return estimate(None, 0, f"No live worker takes queue {queue}, so there is no estimate of when it starts.")
        running = self.running(queue)
        # A worker runs one step at a time, unless it is seen running more (Celery concurrency).
        slots = max(workers, len(running))
        if count < slots - len(running):
            return estimate(0, 0, f"a live worker that takes queue {queue} is free")
        kinds = sorted(set(ahead) | {kind for kind, _ in running})
        typicals = {kind: self.typical(queue, kind) for kind in kinds}
        for kind in kinds:
            if typicals[kind].seconds is None:
                why = typicals[kind].sentence
                return estimate(None, 0, f"{why}, so there is no estimate of when it starts yet.")
        # The slots free up as the running steps end (each at its typical length, or now if it
        # ran longer); each step ahead takes the slot that frees first.
        free_at = [max(0.0, (typicals[kind].seconds or 0.0) - _seconds(started, self.now)) for kind, started in running]
        free_at += [0.0] * (slots - len(running))
        heapq.heapify(free_at)
        for kind in sorted(ahead):
            for _ in range(ahead[kind]):
                heapq.heappush(free_at, heapq.heappop(free_at) + (typicals[kind].seconds or 0.0))
        samples = sum(typicals[kind].samples for kind in kinds)
        if len(kinds) == 1:
            source = typicals[kinds[0]].sentence
        else:
            counts = ", ".join(f"{typicals[kind].samples} {kind}" for kind in kinds)
            source = f"the medians of recent steps on queue {queue} ({counts})"
        basis = f"from {source} and {_taken_by(workers)}"
        return estimate(round(free_at[0]), samples, basis)

    def _running_estimate(self, job: Job) -> Estimate:
        typical = self.typical(job.queue, job.kind)
        workers = len(self.live_workers(job.queue))
        elapsed = round(_seconds(job.started_at, self.now))
        if typical.seconds is None:
            return Estimate(None, elapsed, None, 0, workers, f"{typical.sentence} to compare it with.")
        basis = f"from {typical.sentence}"
        return Estimate(None, elapsed, round(typical.seconds), typical.samples, workers, basis)


def outlook(context: Any) -> Outlook:
    """The `Outlook` of one API answer: `context` is the serializers' shared dict, which keeps it
    however many jobs the answer lists."""
    if "queue_outlook" not in context:
        context["queue_outlook"] = Outlook()
    found: Outlook = context["queue_outlook"]
    return found


@dataclass(frozen=True)
class QueueDepth:
    """One queue as the Workers page shows it: the steps waiting (all teams'; `queued_yours` of
    the reader's teams) and running, how long the oldest has waited, the hardware profiles whose
    work goes there, and the live workers that take it."""

    queue: str
    profiles: tuple[str, ...]
    queued: int
    queued_yours: int
    running: int
    oldest_enqueued_at: datetime | None
    oldest_wait_seconds: int | None
    live_workers: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def queue_depths(user: Any, now: datetime | None = None) -> list[QueueDepth]:
    """Every queue work goes to (the profiles' and the server's), every queue a live worker takes
    and every queue a step waits or runs on, by name. Other teams' steps are counted, never shown."""
    now = now or timezone.now()
    mine = Q(run__version__model__team__in=visible_teams(user).values("pk"))
    rows = (
        Job.objects.filter(status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
        .values("queue")
        .annotate(
            queued=Count("id", filter=Q(status=JobStatus.QUEUED)),
            queued_yours=Count("id", filter=Q(status=JobStatus.QUEUED) & mine),
            running=Count("id", filter=Q(status=JobStatus.RUNNING)),
            oldest=Min("enqueued_at", filter=Q(status=JobStatus.QUEUED)),
        )
    )
    depth: dict[str, dict[str, Any]] = {row["queue"]: dict(row) for row in rows}
    profiles: dict[str, list[str]] = {}
    for queue, slug in HardwareProfile.objects.filter(enabled=True).order_by("slug").values_list("queue", "slug"):
        profiles.setdefault(queue, []).append(slug)
    workers = Outlook(now)
    names = set(depth) | set(profiles) | {SERVER_QUEUE}
    names |= {queue for queue in workers.live_workers_by_queue() if queue != MAINTENANCE_QUEUE}
    found = []
    for queue in sorted(names):
        row = depth.get(queue, {})
        oldest = row.get("oldest")
        found.append(
            QueueDepth(
                queue=queue,
                profiles=tuple(profiles.get(queue, ())),
                queued=row.get("queued", 0),
                queued_yours=row.get("queued_yours", 0),
                running=row.get("running", 0),
                oldest_enqueued_at=oldest,
                oldest_wait_seconds=round(_seconds(oldest, now)) if oldest is not None else None,
                live_workers=tuple(workers.live_workers(queue)),
            )
        )
    return found


@dataclass(frozen=True)
class RunningStep:
    """A step a worker runs now, of one of the reader's teams."""

    job: int
    kind: str
    queue: str
    profile: str  # empty for the steps that run once per version
    team: str
    model: str
    version: int  # the version's number in its model
    version_id: int
    progress: float
    progress_message: str
    started_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WorkerLoad:
    """What one worker runs now: the steps of the reader's teams in full, the others counted."""

    steps: tuple[RunningStep, ...] = ()
    other_teams: int = 0


def worker_loads(user: Any) -> dict[str, WorkerLoad]:
    """Worker (node) name -> what it runs now, as `user` may see it, in two queries. A job records
    the node name of the worker that claimed it (`worker_host`)."""
    teams = set(visible_teams(user).values_list("pk", flat=True))
    rows = (
        Job.objects.filter(status=JobStatus.RUNNING)
        .exclude(worker_host="")
        .order_by("started_at", "pk")
        .values(
            "id", "kind", "queue", "profile__slug", "run__version__model__team_id", "run__version__model__team__slug",
            "run__version__model__slug", "run__version__number", "run__version_id", "progress", "progress_message",
            "started_at", "worker_host",
        )
    )  # fmt: skip
    steps: dict[str, list[RunningStep]] = {}
    hidden: Counter[str] = Counter()
    for row in rows:
        host = row["worker_host"]
        if row["run__version__model__team_id"] not in teams:
            hidden[host] += 1
            continue
        steps.setdefault(host, []).append(
            RunningStep(
                job=row["id"],
                kind=row["kind"],
                queue=row["queue"],
                profile=row["profile__slug"] or "",
                team=row["run__version__model__team__slug"],
                model=row["run__version__model__slug"],
                version=row["run__version__number"],
                version_id=row["run__version_id"],
                progress=row["progress"],
                progress_message=row["progress_message"],
                started_at=row["started_at"],
            )
        )
    return {host: WorkerLoad(tuple(steps.get(host, ())), hidden[host]) for host in set(steps) | set(hidden)}
