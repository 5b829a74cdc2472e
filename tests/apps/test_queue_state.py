"""Where work stands: a queued step's place and start estimate, a running step's typical length,
the queues' depth and what each worker runs, with other teams' steps counted, never named."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.hardware import services as workers
from apps.pipeline import queue_state
from apps.pipeline.models import Job, JobStatus, PipelineRun
from apps.pipeline.services import step_priority
from tests.conftest import client_for
from tests.factories import ModelVersionFactory, RegisteredModelFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


@pytest.fixture(autouse=True)
def redis_broker(settings):
    """The broker serves priorities (Redis), unless a test says otherwise."""
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"


def _worker(name: str, queues: list[str]) -> None:
    workers.register_worker(name, hardware={"host": name}, runtimes={}, importers=[], queues=queues, pid=1)


class Steps:
    """Jobs made directly, each in a run of its own (so any sequence may be given)."""

    def __init__(self, team: Any, model_slug: str = "resnet") -> None:
        self.model = RegisteredModelFactory(team=team, slug=model_slug)

    def add(self, kind: str = "optimize", *, queue: str = "cpu", sequence: int = 2, **fields: Any) -> Job:
        run = PipelineRun.objects.create(version=ModelVersionFactory(model=self.model))
        return Job.objects.create(run=run, kind=kind, queue=queue, sequence=sequence, **fields)

    def queued(self, minutes_ago: float, kind: str = "optimize", **fields: Any) -> Job:
        return self.add(kind, status=JobStatus.QUEUED, enqueued_at=NOW - timedelta(minutes=minutes_ago), **fields)

    def finished(self, seconds: float, kind: str = "optimize", ended_minutes_ago: float = 5, **fields: Any) -> Job:
        end = NOW - timedelta(minutes=ended_minutes_ago)
        return self.add(
            kind,
            status=JobStatus.SUCCEEDED,
            started_at=end - timedelta(seconds=seconds),
            finished_at=end,
            **fields,
        )


@pytest.fixture
def steps(personas) -> Steps:
    return Steps(personas.team)


def _place(job: Job) -> queue_state.Place:
    job.refresh_from_db()
    return queue_state.Outlook(NOW).place(job)


def test_the_sql_priority_is_the_one_messages_are_sent_with(steps):
    for sequence in range(13):
        steps.add(sequence=sequence)
    rows = Job.objects.annotate(priority=queue_state.PRIORITY).values_list("sequence", "priority")
    assert {sequence: priority for sequence, priority in rows} == {s: step_priority(s) for s in range(13)}


def test_position_follows_the_order_workers_take_the_queue(steps, settings):
    first = steps.queued(10, sequence=1)  # the oldest, but a first step
    later_step = steps.queued(5, sequence=4)  # a started pipeline's later step: goes first on Redis
    newest = steps.queued(1, sequence=1)
    steps.queued(20, queue="gpu", sequence=1)  # another queue does not count
    steps.add(status=JobStatus.RUNNING, sequence=1)  # nor does a running step
    places = {job.pk: _place(job) for job in (first, later_step, newest)}
    assert [(places[j.pk].position, places[j.pk].ahead) for j in (later_step, first, newest)] == [
        (1, 0),
        (2, 1),
        (3, 2),
    ]
    # the filesystem broker ignores priorities: first come, first served
    settings.CELERY_BROKER_URL = "filesystem://"
    assert [_place(job).position for job in (first, later_step, newest)] == [1, 2, 3]
    # only queued steps have a place
    assert _place(steps.add(status=JobStatus.PENDING)) == queue_state.NOWHERE


def test_the_start_estimate_is_the_median_of_recent_steps_spread_over_the_live_workers(steps):
    for seconds in (60, 90, 100, 110, 115, 120, 120, 125, 130, 140, 150, 600):
        steps.finished(seconds)
    for _ in range(5):  # older than the last SAMPLES: not counted
        steps.finished(5000, ended_minutes_ago=60)
    steps.finished(9999, kind="benchmark")  # another kind says nothing of optimize
    steps.finished(9999, queue="gpu")  # nor does another queue
    for _ in range(8):
        steps.finished(120, ended_minutes_ago=1)
    _worker("cpu@box-1", ["default", "cpu"])
    steps.queued(3)
    steps.queued(2)
    job = steps.queued(1)

    place = _place(job)
    assert (place.position, place.ahead) == (3, 2)
    estimate = place.estimate
    assert estimate is not None
    assert estimate.samples == queue_state.SAMPLES == 20
    assert estimate.typical_seconds == 120
    assert estimate.starts_in_seconds == 240  # two steps of about 120 s ahead, one worker
    assert (
        estimate.basis == "from the median of 20 recent optimize steps on queue cpu and the live worker that takes it"
    )

    # a second worker halves the wait; one that stopped does not count
    _worker("cpu@box-2", ["cpu"])
    _worker("cpu@box-3", ["cpu"])
    workers.mark_stopped("cpu@box-3")
    estimate = _place(job).estimate
    assert estimate is not None and estimate.starts_in_seconds == 120 and estimate.live_workers == 2
    assert estimate.basis.endswith("and the 2 live workers that take it")


def test_a_running_step_ahead_counts_for_what_it_has_left(steps):
    for _ in range(4):
        steps.finished(300, kind="benchmark")
    for _ in range(3):
        steps.finished(60)
    _worker("cpu@box-1", ["cpu"])
    steps.add("benchmark", status=JobStatus.RUNNING, started_at=NOW - timedelta(seconds=200))
    steps.queued(2)
    job = steps.queued(1)
    estimate = _place(job).estimate
    assert estimate is not None
    assert estimate.starts_in_seconds == 160  # the benchmark's 300 s, 200 of them gone, then 60 s ahead
    assert estimate.basis == (
        "from the medians of recent steps on queue cpu (4 benchmark, 3 optimize) and the live worker that takes it"
    )


def test_without_samples_or_workers_the_estimate_says_so_instead_of_a_number(steps):
    steps.queued(2)
    job = steps.queued(1)
    estimate = _place(job).estimate
    assert estimate is not None and estimate.starts_in_seconds is None
    assert estimate.basis == "No live worker takes queue cpu, so there is no estimate of when it starts."

    _worker("cpu@box-1", ["cpu"])
    estimate = _place(job).estimate
    assert estimate is not None and estimate.starts_in_seconds is None and estimate.samples == 0
    assert estimate.basis == (
        "No optimize step has finished on queue cpu lately, so there is no estimate of when it starts yet."
    )

    # next in line with a free worker: it starts now, samples or not
    first = Job.objects.filter(status=JobStatus.QUEUED).order_by("enqueued_at").first()
    assert first is not None
    estimate = _place(first).estimate
    assert estimate is not None and estimate.starts_in_seconds == 0
    assert estimate.basis == "a live worker that takes queue cpu is free"


def test_a_running_step_says_how_long_it_has_run_and_usually_runs(steps):
    job = steps.add(status=JobStatus.RUNNING, started_at=NOW - timedelta(seconds=45))
    estimate = _place(job).estimate
    assert estimate is not None and estimate.elapsed_seconds == 45 and estimate.typical_seconds is None
    assert estimate.basis == "No optimize step has finished on queue cpu lately to compare it with."
    for seconds in (50, 70, 90):
        steps.finished(seconds)
    estimate = _place(job).estimate
    assert estimate is not None and estimate.typical_seconds == 70 and estimate.samples == 3
    assert estimate.basis == "from the median of 3 recent optimize steps on queue cpu"


def test_the_version_answer_carries_each_steps_place(personas, steps):
    _worker("cpu@box-1", ["cpu"])
    for _ in range(12):
        steps.finished(120)
    steps.queued(5)
    job = steps.queued(1)
    body = client_for(personas.viewer).get(f"/api/v1/versions/{job.run.version_id}/").json()
    (listed,) = body["latest_run"]["jobs"]
    assert listed["queue_position"] == 2 and listed["ahead"] == 1
    assert listed["estimate"]["starts_in_seconds"] == 120
    assert listed["estimate"]["basis"].startswith("from the median of 12 recent optimize steps on queue cpu")
    detail = client_for(personas.viewer).get(f"/api/v1/jobs/{job.pk}/").json()
    assert detail["estimate"] == listed["estimate"]


def test_each_queue_says_how_deep_it_is_and_who_serves_it(personas, steps):
    from apps.hardware.models import HardwareProfile

    _worker("cpu@box-1", ["default", "cpu"])
    _worker("gpu@box-2", ["gpu"])
    workers.mark_stopped("gpu@box-2")
    theirs = Steps(personas.other_team, model_slug="fraud-net")
    steps.queued(7)
    theirs.queued(30)
    steps.add(status=JobStatus.RUNNING, started_at=NOW)
    theirs.queued(3, queue="gpu")
    HardwareProfile.objects.filter(queue="gpu").update(enabled=True)

    rows = {row["queue"]: row for row in client_for(personas.viewer).get("/api/v1/queues/").json()}
    assert "default" not in rows  # the maintenance queue carries no step
    cpu = rows["cpu"]
    assert (cpu["queued"], cpu["queued_yours"], cpu["running"]) == (2, 1, 1)
    assert cpu["live_workers"] == ["cpu@box-1"]
    # NOW is when this module was imported: the wait has grown by the time since.
    since_import = (timezone.now() - NOW).total_seconds()
    assert abs(cpu["oldest_wait_seconds"] - (30 * 60 + since_import)) < 5, cpu
    assert (rows["gpu"]["queued"], rows["gpu"]["queued_yours"], rows["gpu"]["live_workers"]) == (1, 0, [])
    assert "x86-cpu" in cpu["profiles"]


def test_workers_say_what_they_run_and_outsiders_see_only_counts(personas, steps):
    _worker("cpu@box-1", ["cpu"])
    _worker("cpu@box-2", ["cpu"])
    job = steps.add(
        "optimize",
        status=JobStatus.RUNNING,
        worker_host="cpu@box-1",
        started_at=NOW,
        progress=0.4,
        progress_message="building int8",
    )
    job.refresh_from_db()

    def running(user: Any) -> tuple[dict[str, Any], bytes]:
        response = client_for(user).get("/api/v1/workers/")
        return {w["name"]: (w["running"], w["running_other_teams"]) for w in response.json()}, response.content

    seen, _ = running(personas.viewer)
    ((step,), hidden) = seen["cpu@box-1"]
    assert hidden == 0 and seen["cpu@box-2"] == ([], 0)
    assert (step["kind"], step["model"], step["version"], step["team"]) == (
        "optimize",
        "resnet",
        job.run.version.number,
        "vision",
    )
    assert (step["progress"], step["progress_message"]) == (0.4, "building int8")

    seen, content = running(personas.outsider)
    assert seen["cpu@box-1"] == ([], 1)
    assert b"resnet" not in content and b"vision" not in content
    queues = client_for(personas.outsider).get("/api/v1/queues/")
    assert b"resnet" not in queues.content and b"vision" not in queues.content
