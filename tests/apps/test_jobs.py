"""Job claiming, fencing, progress, completion, failure and the reconciler."""

from __future__ import annotations

import errno
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.pipeline import services
from apps.pipeline.models import Job, JobKind, JobStatus, PipelineRun, RunStatus
from apps.registry.models import ModelVersion, VersionStatus
from tests.factories import ModelVersionFactory
from workers.engine.sandbox import SandboxError

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(broker):
    """Jobs sent to workers: (job_id, queue); the priority is tested on a real broker below."""
    return broker.view(lambda m: (m.object_id, m.queue), tasks=[services.RUN_JOB_TASK])


def _start(kinds=(JobKind.INSPECT, JobKind.VALIDATE)) -> PipelineRun:
    version = ModelVersionFactory()
    return services.start_pipeline(version, version.created_by, steps=[services.PlannedStep(k) for k in kinds])


def test_start_queues_first_job_after_commit_and_marks_version_processing(sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = _start()
    jobs = list(run.jobs.order_by("sequence"))
    assert [(j.kind, j.status) for j in jobs] == [("inspect", "queued"), ("validate", "pending")]
    assert sent == [(jobs[0].pk, "cpu")]
    assert ModelVersion.objects.get(pk=run.version_id).status == VersionStatus.PROCESSING


def test_claim_is_exclusive_and_duplicate_delivery_claims_nothing(sent):
    run = _start()
    first = run.jobs.get(sequence=0)
    job = services.claim(first.pk, "host-a", "task-1")
    assert job is not None and job.attempt == 1 and job.status == JobStatus.RUNNING
    assert services.claim(first.pk, "host-b", "task-1-redelivered") is None
    assert Job.objects.get(pk=first.pk).worker_host == "host-a"
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_complete_advances_to_next_step_and_finishing_marks_version_ready(sent, django_capture_on_commit_callbacks):
    run = _start()
    first = services.claim(run.jobs.get(sequence=0).pk, "h", "t")
    with django_capture_on_commit_callbacks(execute=True):
        assert services.complete(first, services.StepOutcome(result={"ok": 1}))
    second = run.jobs.get(sequence=1)
    assert second.status == JobStatus.QUEUED and sent[-1] == (second.pk, "cpu")
    second = services.claim(second.pk, "h", "t2")
    services.complete(second, services.StepOutcome(result={}))
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED
    assert ModelVersion.objects.get(pk=run.version_id).status == VersionStatus.READY
    assert Job.objects.get(pk=first.pk).result == {"ok": 1}


def test_failure_cancels_the_rest_and_fails_the_version_with_the_reason(sent):
    run = _start()
    job = services.claim(run.jobs.get(sequence=0).pk, "h", "t")
    services.fail(job, "invalid_model", "The ONNX checker rejected the model: bad node.")
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "invalid_model"
    assert "bad node" in job.log
    assert run.jobs.get(sequence=1).status == JobStatus.CANCELLED
    version = ModelVersion.objects.get(pk=run.version_id)
    assert version.status == VersionStatus.FAILED and "bad node" in version.status_reason


def test_a_replaced_worker_cannot_overwrite_its_successor(sent, settings):
    run = _start()
    stale = services.claim(run.jobs.get(sequence=0).pk, "old-host", "t1")
    Job.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    fresh = services.claim(stale.pk, "new-host", "t1-redelivered")
    assert fresh is not None and fresh.attempt == 2
    assert not services.report_progress(stale, 0.5, "old worker woke up")
    assert not services.complete(stale, services.StepOutcome(result={"from": "old"}))
    assert not services.fail(stale, "x", "old worker failing")
    assert services.complete(fresh, services.StepOutcome(result={"from": "new"}))
    assert Job.objects.get(pk=fresh.pk).result == {"from": "new"}


def test_progress_is_clamped_and_recorded(sent):
    run = _start()
    job = services.claim(run.jobs.get(sequence=0).pk, "h", "t")
    assert services.report_progress(job, 1.7, "almost")
    job.refresh_from_db()
    assert job.progress == 1.0 and job.progress_message == "almost"


def test_reconciler_requeues_silent_jobs_and_resends_lost_messages(sent, settings, django_capture_on_commit_callbacks):
    run_a, run_b = _start(), _start()
    silent = services.claim(run_a.jobs.get(sequence=0).pk, "dead-host", "t")
    Job.objects.filter(pk=silent.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS + 5)
    )
    lost = run_b.jobs.get(sequence=0)
    Job.objects.filter(pk=lost.pk).update(
        enqueued_at=timezone.now() - timedelta(seconds=settings.JOB_REQUEUE_AFTER_SECONDS + 5)
    )
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        report = services.reconcile()
    assert report == services.ReconcileReport(requeued_stale=1, resent_lost=1, failed_exhausted=0)
    assert sorted(sent) == sorted([(silent.pk, "cpu"), (lost.pk, "cpu")])
    silent.refresh_from_db()
    assert silent.status == JobStatus.QUEUED and "stopped responding" in silent.log
    # Nothing is stuck any more: a second pass does nothing.
    assert services.reconcile() == services.ReconcileReport(0, 0, 0)


def test_reconciler_fails_a_job_whose_attempts_are_used_up(sent, settings):
    run = _start()
    job = services.claim(run.jobs.get(sequence=0).pk, "h", "t")
    Job.objects.filter(pk=job.pk).update(
        attempt=job.max_attempts,
        heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS + 5),
    )
    assert services.reconcile().failed_exhausted == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "attempts_exhausted"
    assert "stopped responding" in job.error
    assert ModelVersion.objects.get(pk=run.version_id).status == VersionStatus.FAILED


def test_started_pipelines_go_ahead_of_new_uploads_on_the_real_broker():
    """On Redis, with the platform's transport options, a run's later step is delivered before
    first steps sent earlier: otherwise under load every pipeline waits for all the uploads
    that came after it (bench/load.py saw none finish in five minutes)."""
    import uuid

    from apps.core.messages import Message, send
    from config.celery_app import app

    if not app.conf.broker_url.startswith("redis://"):
        pytest.skip("priorities are a Redis transport setting")
    queue = f"test-priority-{uuid.uuid4().hex[:8]}"
    sent_order = [(101, 0), (102, 0), (103, 2), (104, 1)]  # (job id, step sequence)
    for job_id, sequence in sent_order:
        message = Message(services.RUN_JOB_TASK, job_id, queue, priority=services.step_priority(sequence))
        send(message, if_lost="the test fails")
    received = []
    with app.connection_for_read() as connection:
        inbox = connection.SimpleQueue(queue, no_ack=True)
        try:
            for _ in sent_order:
                message = inbox.get(timeout=10)
                received.append(message.payload[0][0])  # protocol 2: (args, kwargs, embed)
        finally:
            inbox.clear()
            inbox.close()
            with connection.channel() as channel:
                keys = [queue + suffix for suffix in ["", *(f":{level}" for level in range(1, 10))]]
                channel.client.delete(*keys, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    assert received == [103, 104, 101, 102]


def test_the_default_plan_is_inspect_then_validate_and_optimize_per_profile_on_its_queue(sent):
    from apps.hardware.models import HardwareProfile

    version = ModelVersionFactory()
    version.profiles.set(HardwareProfile.objects.filter(slug__in=["x86-cpu", "nvidia-gpu"]))
    run = services.start_pipeline(version, version.created_by)
    layout = [(j.kind, j.queue, j.profile.slug if j.profile else None) for j in run.jobs.order_by("sequence")]
    per_profile = ["validate", "optimize", "parity", "benchmark", "recommend"]
    # Ranking measures nothing: the GPU profile's recommend runs on the server's CPU workers;
    # its TensorRT engines are built on the GPU they run on.
    assert layout == [
        ("inspect", "cpu", None),
        *[(kind, "cpu" if kind == "recommend" else "gpu", "nvidia-gpu") for kind in per_profile],
        *[(kind, "cpu", "x86-cpu") for kind in per_profile],
    ]


@pytest.mark.parametrize(
    ("raised", "where"),
    [
        # in the worker itself: copying the model into the job's work folder
        (OSError(errno.ENOSPC, "No space left on device", "/srv/slipway/work/job-1/model.onnx"), "/srv/slipway/work"),
        # in the sandboxed child, which reports the error as text
        (
            SandboxError(
                "engine_error",
                "Optimize failed with an unexpected OSError: [Errno 28] No space left on device: "
                "'/srv/slipway/work/job-1/out/model.fp16.onnx'",
            ),
            "/srv/slipway/work/job-1/out/model.fp16.onnx",
        ),
    ],
)
def test_a_full_disk_inside_a_step_fails_it_naming_the_disk_not_as_an_internal_error(sent, monkeypatch, raised, where):
    from workers.tasks import pipeline

    def step(job, progress):
        raise raised

    monkeypatch.setitem(pipeline.STEPS, JobKind.INSPECT, step)
    run = _start()
    first = run.jobs.get(sequence=0)
    assert pipeline.run_job(first.pk) == "failed"
    first.refresh_from_db()
    assert first.status == JobStatus.FAILED and first.error_code == "disk_full", first.error
    assert first.error.startswith(f"The disk holding {where}") and "is full" in first.error
    assert "report it" not in first.error and "internal error" not in first.error


def test_a_worker_never_runs_a_step_for_hardware_its_probe_lacks(sent, monkeypatch):
    """Issue 18: the arm-cpu-mnn profile's work is refused by an x86_64 worker even when it
    takes the queue, and the step stays queued for a machine that meets the profile."""
    from apps.hardware.models import HardwareProfile
    from workers.tasks import pipeline, worker_registry

    x86 = {"arch": "x86_64", "cpu_flags": ["avx2"], "gpus": []}
    monkeypatch.setattr(worker_registry, "own_facts", lambda: x86)
    monkeypatch.setattr(pipeline, "own_facts", lambda: x86)
    ran: list[int] = []

    def validate(job, progress):
        ran.append(job.pk)
        return services.StepOutcome(result={"reports": {}})

    monkeypatch.setitem(pipeline.STEPS, JobKind.VALIDATE, validate)
    arm = HardwareProfile.objects.get(slug="arm-cpu-mnn")
    assert arm.requirements == {"arch": ["aarch64"]} and arm.queue == "arm64"
    version = ModelVersionFactory()
    run = services.start_pipeline(
        version, version.created_by, steps=[services.PlannedStep(JobKind.VALIDATE, arm.queue, arm)]
    )
    job = run.jobs.get()
    assert pipeline.run_job(job.pk) == "refused"
    job.refresh_from_db()
    assert ran == [] and job.status == JobStatus.QUEUED and job.attempt == 0 and job.worker_host == ""
    # the same step for a profile this machine meets runs
    x86_profile = HardwareProfile.objects.get(slug="x86-cpu")
    other = ModelVersionFactory()
    run = services.start_pipeline(
        other, other.created_by, steps=[services.PlannedStep(JobKind.VALIDATE, x86_profile.queue, x86_profile)]
    )
    assert pipeline.run_job(run.jobs.get().pk) == "succeeded" and len(ran) == 1


def test_profiles_run_side_by_side_so_one_nothing_serves_holds_up_only_itself(sent, django_capture_on_commit_callbacks):
    """Issue 18: with arm-cpu-mnn bound to aarch64 machines, an upload for it and x86-cpu must
    not leave x86-cpu's steps waiting behind ARM steps no worker here will take."""
    from apps.hardware.models import HardwareProfile

    arm, x86 = HardwareProfile.objects.get(slug="arm-cpu-mnn"), HardwareProfile.objects.get(slug="x86-cpu")
    version = ModelVersionFactory()
    version.profiles.set([arm, x86])
    with django_capture_on_commit_callbacks(execute=True):
        run = services.start_pipeline(version, version.created_by)
    inspect = run.jobs.get(kind=JobKind.INSPECT)
    assert sent == [(inspect.pk, "cpu")]
    with django_capture_on_commit_callbacks(execute=True):
        services.complete(services.claim(inspect.pk, "h", "t"), services.StepOutcome(result={}))
    queued = {(job.profile.slug, job.kind) for job in run.jobs.filter(status=JobStatus.QUEUED)}
    assert queued == {("arm-cpu-mnn", JobKind.VALIDATE), ("x86-cpu", JobKind.VALIDATE)}
    assert sent[-2:] == [(j.pk, j.queue) for j in run.jobs.filter(status=JobStatus.QUEUED).order_by("sequence")]
    # x86-cpu goes through all its steps while arm-cpu-mnn's first step still waits
    for job in run.jobs.filter(profile=x86).order_by("sequence"):
        with django_capture_on_commit_callbacks(execute=True):
            assert services.complete(services.claim(job.pk, "h", f"t{job.pk}"), services.StepOutcome(result={}))
    assert set(run.jobs.filter(profile=x86).values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    assert run.jobs.get(profile=arm, kind=JobKind.VALIDATE).status == JobStatus.QUEUED
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.RUNNING  # not finished while ARM waits
    # once the ARM profile's steps are done too, the run finishes
    for job in run.jobs.filter(profile=arm).order_by("sequence"):
        with django_capture_on_commit_callbacks(execute=True):
            assert services.complete(services.claim(job.pk, "h", f"t{job.pk}"), services.StepOutcome(result={}))
    finished = PipelineRun.objects.get(pk=run.pk)
    assert finished.status != RunStatus.RUNNING and finished.finished_at is not None


def test_a_profile_nothing_serves_can_be_dropped_so_the_measured_ones_can_be_reviewed(
    personas, sent, django_capture_on_commit_callbacks
):
    from apps.audit.models import AuditEvent
    from apps.hardware.models import HardwareProfile
    from tests.conftest import client_for

    arm, x86 = HardwareProfile.objects.get(slug="arm-cpu-mnn"), HardwareProfile.objects.get(slug="x86-cpu")
    version = ModelVersionFactory(model__team=personas.team, created_by=personas.owner)
    version.profiles.set([arm, x86])
    run = services.start_pipeline(version, personas.owner)
    url = f"/api/v1/versions/{version.pk}/profiles/arm-cpu-mnn/drop/"
    for job in run.jobs.exclude(profile=arm).order_by("sequence"):
        with django_capture_on_commit_callbacks(execute=True):
            services.complete(services.claim(job.pk, "h", f"t{job.pk}"), services.StepOutcome(result={}))
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.RUNNING  # ARM's validate waits, queued
    viewer = client_for(personas.viewer).post(url)
    assert viewer.status_code == 403
    dropped = client_for(personas.owner).post(url, {"comment": "no ARM board in the lab yet"}, format="json")
    assert dropped.status_code == 200, dropped.content
    body = dropped.json()
    assert body["dropped_steps"] == 5 and body["run_status"] != RunStatus.RUNNING
    arm_steps = run.jobs.filter(profile=arm)
    assert set(arm_steps.values_list("status", flat=True)) == {JobStatus.CANCELLED}
    assert arm_steps.first().error == "Not run: dana dropped the arm-cpu-mnn profile from this run."
    readiness = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/").json()["profile_readiness"]
    arm_state = next(entry for entry in readiness if entry["profile"] == "arm-cpu-mnn")
    assert arm_state["status"] == "failed" and arm_state["reason"].startswith("Not run: dana dropped")
    event = AuditEvent.objects.get(action="version.profile_dropped")
    assert event.after == {"profile": "arm-cpu-mnn", "steps": 5, "comment": "no ARM board in the lab yet"}
    assert event.actor == "dana"
    # nothing waits any more; an unknown profile is named
    again = client_for(personas.owner).post(url)
    assert again.status_code == 409 and again.json()["code"] == "run_finished"
    other = ModelVersionFactory(model__team=personas.team, created_by=personas.owner)
    other.profiles.set([x86])
    services.start_pipeline(other, personas.owner)
    unknown = client_for(personas.owner).post(f"/api/v1/versions/{other.pk}/profiles/arm-cpu-mnn/drop/")
    assert unknown.status_code == 400 and "its profiles are: x86-cpu" in unknown.json()["message"]
