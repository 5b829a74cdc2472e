"""Every write to runs and jobs goes through here: start, claim, progress, finish, reconcile.

The rules (docs/adr/0002): PostgreSQL is the truth; Celery messages only say "look at job N".
Messages are sent after the transaction commits; a job is claimed with a conditional UPDATE;
all writes by a worker are fenced by the attempt it claimed; a reconciler re-sends messages
that were lost and takes back jobs whose worker stopped sending heartbeats.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.permissions import Action, require
from apps.audit import services as audit
from apps.core import durable
from apps.core.errors import Conflict, DomainError
from apps.core.messages import Message, send_on_commit
from apps.pipeline import events
from apps.pipeline.models import FINISHED_JOB_STATUSES, Job, JobKind, JobStatus, PipelineRun, RunStatus
from apps.pipeline.outcomes import DROPPED, ProfileStatus, profile_outcomes
from apps.registry import lifecycle
from apps.registry.models import ModelVersion, VersionStatus
from workers.engine.work import DEVICE_STEPS

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "slipway.pipeline.run_job"
LOG_LIMIT_CHARS = 200_000

# Steps run once per version, then steps run once per hardware profile, on that profile's queue.
VERSION_STEPS: tuple[str, ...] = (JobKind.INSPECT,)
PROFILE_STEPS: tuple[str, ...] = (
    JobKind.VALIDATE,
    JobKind.OPTIMIZE,
    JobKind.PARITY,
    JobKind.BENCHMARK,
    JobKind.RECOMMEND,
)


# Steps that must run on the hardware their profile names: they measure it (ADR 0014, 0016). They
# are the steps a work order carries, which a device agent may lease.
MEASURING_STEPS: tuple[str, ...] = DEVICE_STEPS
# Where steps that need no particular hardware run: the cluster's CPU workers.
SERVER_QUEUE = "cpu"


def needs_hardware(kind: str, profile: Any) -> bool:
    """Whether a profile's step must run on a machine that meets the profile: the measuring
    steps always, except validate and parity for a profile whose backends all simulate their
    hardware where they build (`simulated_on_builders`); optimize only where a backend builds on
    its target (a TensorRT engine), since an MNN, ncnn, OpenVINO or ONNX file is built the same
    anywhere; recommend never (it ranks what was measured)."""
    from workers.engine.backends.registry import BACKENDS

    # An NPU whose toolkit simulates it where the variants are built (RKNN): op support and
    # parity are the simulator's, on the workers; only the benchmark needs the board.
    if (
        kind in (JobKind.VALIDATE, JobKind.PARITY)
        and profile is not None
        and profile.backends
        and all(name in BACKENDS and BACKENDS[name].simulated_on_builders for name in profile.backends)
    ):
        return False
    if kind in MEASURING_STEPS:
        return True
    if kind == JobKind.OPTIMIZE and profile is not None:
        return any(BACKENDS[name].builds_on_target for name in profile.backends if name in BACKENDS)
    return False


@dataclass(frozen=True)
class PlannedStep:
    kind: str
    queue: str = "cpu"
    profile: Any = None  # a runtimes.HardwareProfile


ONNX_FORMATS = frozenset({"onnx", "onnx-zip"})


def plan_steps(profiles: list[Any], source_format: str = "onnx") -> list[PlannedStep]:
    """The pipeline for a version: import (for framework files, on a queue served only by
    workers that have that framework), inspect, then validate and optimize for each profile."""
    steps = []
    if source_format not in ONNX_FORMATS:
        from workers.engine.importers.registry import import_queue

        steps.append(PlannedStep(JobKind.IMPORT, import_queue(source_format)))
    steps += [PlannedStep(kind) for kind in VERSION_STEPS]
    for profile in profiles:
        steps.extend(
            PlannedStep(kind, profile.queue if needs_hardware(kind, profile) else SERVER_QUEUE, profile)
            for kind in PROFILE_STEPS
        )
    return steps


def step_priority(sequence: int) -> int:
    """The message priority of a run's step: later steps go first (0 is the highest on Redis).

    With one FIFO queue every version's next step would wait behind the first steps of all
    the versions uploaded since, so under load no pipeline finishes until all have nearly
    finished (bench/load.py measured none in 5 minutes). Letting started pipelines move ahead
    finishes them one after another instead."""
    return max(0, 9 - sequence)


def _leased_by_devices_only(job: Job) -> bool:
    """Whether only devices serve the job now: a measuring step whose queue no live worker takes,
    of a profile an online device of the job's team meets. Devices lease from the database; a
    Celery message would wait in the broker for a worker that isn't there, one more every
    JOB_REQUEUE_AFTER_SECONDS. Should a worker start later, the reconciler sends it one then."""
    profile = job.profile
    if profile is None or not needs_hardware(job.kind, profile):
        return False
    from apps.hardware.services import device_serves, live_queues

    if job.queue in live_queues():
        return False
    team_id = PipelineRun.objects.filter(pk=job.run_id).values_list("version__model__team_id", flat=True).first()
    return team_id is not None and device_serves(profile, team_id)


def _enqueue_on_commit(job: Job) -> None:
    """Tell a worker about the job once it is committed; a lost message is re-sent by the reconciler."""
    if _leased_by_devices_only(job):
        logger.info("job %s (%s) waits for a device's lease; no worker takes queue %s", job.pk, job.kind, job.queue)
        return
    message = Message(RUN_JOB_TASK, job.pk, job.queue, priority=step_priority(job.sequence))
    send_on_commit(message, if_lost="the job reconciler re-sends messages for jobs left queued")


def _append(log: str, line: str) -> str:
    stamped = f"{timezone.now():%Y-%m-%d %H:%M:%S} {line.rstrip()}\n"
    combined = log + stamped
    if len(combined) > LOG_LIMIT_CHARS:
        combined = "[earlier log lines dropped]\n" + combined[-LOG_LIMIT_CHARS:]
    return combined


def start_pipeline(version: ModelVersion, user: Any, steps: list[PlannedStep] | None = None) -> PipelineRun:
    """Create a run with one job per step; the first is sent to a worker once this commits.

    Without `steps`, the version's own plan: inspect, then validate + optimize per profile.
    """
    if steps is None:
        source_format = version.source_artifact.format if version.source_artifact else "onnx"
        steps = plan_steps(list(version.profiles.order_by("slug")), source_format)
    with transaction.atomic():
        actor = user if getattr(user, "pk", None) else None
        lifecycle.transition(version, VersionStatus.PROCESSING, reason="pipeline started", actor=actor)
        run = PipelineRun.objects.create(version=version, created_by=user if getattr(user, "pk", None) else None)
        jobs = [
            Job(
                run=run,
                kind=step.kind,
                sequence=index,
                queue=step.queue,
                profile=step.profile,
                max_attempts=settings.JOB_MAX_ATTEMPTS,
                status=JobStatus.PENDING,
            )
            for index, step in enumerate(steps)
        ]
        Job.objects.bulk_create(jobs)
        _queue(_runnable_first(run.pk))
    return run


def _claimed(worker_host: str, task_id: str) -> dict[str, Any]:
    now = timezone.now()
    return {
        "status": JobStatus.RUNNING,
        "worker_host": worker_host[:255],
        "celery_task_id": task_id[:64],
        "started_at": now,
        "heartbeat_at": now,
        "progress": 0.0,
        "progress_message": "started",
        "error": "",
        "error_code": "",
    }


def _started(job_id: int, worker_host: str) -> Job:
    """Log the attempt a worker or device just claimed, and mark its run running."""
    job = Job.objects.select_related("run__version", "profile").get(pk=job_id)
    job.log = _append(job.log, f"attempt {job.attempt} of {job.max_attempts} started on {worker_host}")
    Job.objects.filter(pk=job_id).update(log=job.log)
    PipelineRun.objects.filter(pk=job.run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=job.started_at
    )
    return job


def claim(job_id: int, worker_host: str, task_id: str) -> Job | None:
    """Take a queued job (or one whose worker went silent) for this worker; None if not ours.

    A redelivered message for a job that is running elsewhere with a fresh heartbeat, or
    that already finished, claims nothing: that is what makes duplicate deliveries harmless.
    A job with no attempts left fails here, saying why.
    """
    with transaction.atomic():
        if not durable.claim(JOBS, job_id, **_claimed(worker_host, task_id)):
            return None
        return _started(job_id, worker_host)


def lease_next(where: Q, holder: str, lease_id: str) -> Job | None:
    """Take the oldest claimable job matching `where` for a machine that asks for work (a device
    agent, ADR 0016); None when there is none. Concurrent askers get different jobs."""
    with transaction.atomic():
        job = durable.claim_next(JOBS, where, **_claimed(holder, lease_id))
        if job is None:
            return None
        return _started(job.pk, holder)


def _give_up(job: Job) -> bool:
    """Fail a job that has no attempts left: its worker stopped on every one of them."""
    step = job.get_kind_display().lower()
    if job.status == JobStatus.RUNNING:
        message = (
            f"The {step} step's worker ({job.worker_host or 'unknown host'}) stopped responding on attempt "
            f"{job.attempt} of {job.max_attempts}. Check the worker's logs and memory limits, then re-run the pipeline."
        )
    else:
        message = (
            f"The {step} step was tried {job.attempt} times and its worker stopped each time before finishing "
            "(crash, out of memory, or restart). Check the worker's logs and memory limits, then re-run the pipeline."
        )
    return _finish_failed(job, job.attempt, "attempts_exhausted", message)


def _take_back(job: Job, now: Any) -> dict[str, Any]:
    note = f"worker {job.worker_host} stopped responding during attempt {job.attempt}; re-queued"
    return {"status": JobStatus.QUEUED, "log": _append(job.log, note)}


JOBS: durable.Lane[Job] = durable.Lane(
    name="pipeline jobs",
    model=Job,
    waiting=lambda now: Q(status=JobStatus.QUEUED),
    held=Q(status=JobStatus.RUNNING),
    silent=durable.silent_since(lambda: settings.JOB_STALE_AFTER_SECONDS),
    lost_after=lambda: settings.JOB_REQUEUE_AFTER_SECONDS,
    take_back=_take_back,
    give_up=_give_up,
    send=lambda job: _enqueue_on_commit(job),
)


def report_progress(job: Job, progress: float, message: str = "") -> bool:
    """Record progress and a heartbeat. False means this worker no longer owns the job."""
    progress = min(1.0, max(0.0, float(progress)))
    return durable.beat(JOBS, job, progress=progress, progress_message=message[:200])


def heartbeat(job: Job) -> bool:
    """Tell the reconciler this job's worker is alive."""
    return durable.beat(JOBS, job)


@dataclass(frozen=True)
class StepOutcome:
    """What a step produced: a JSON result for the job, and writes made with the completion."""

    result: dict[str, Any]
    persist: Callable[[Job], None] | None = None
    log: str = ""


def complete(job: Job, outcome: StepOutcome) -> bool:
    """Mark the job succeeded, store its outputs, and start the next step, all in one transaction."""
    now = timezone.now()
    with transaction.atomic():
        locked = durable.fenced(JOBS, job).select_for_update().first()
        if locked is None:
            logger.warning(
                "job %s attempt %s finished but no longer owns the job; result dropped",
                job.pk,
                job.attempt,
            )
            return False
        if outcome.persist is not None:
            outcome.persist(locked)
        log = locked.log
        if outcome.log:
            log = _append(log, outcome.log)
        log = _append(log, "succeeded")
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.SUCCEEDED,
            progress=1.0,
            progress_message="done",
            finished_at=now,
            heartbeat_at=now,
            result=outcome.result,
            log=log,
        )
        _advance(locked.run_id, locked)
    return True


def _runnable_first(run_id: int) -> list[Job]:
    """What runs first in a run: its next version step (import, inspect) while one is left,
    then the next step of every hardware profile at once."""
    pending = Job.objects.filter(run_id=run_id, status=JobStatus.PENDING).order_by("sequence")
    version_step = pending.filter(profile__isnull=True).first()
    if version_step is not None:
        return [version_step]
    firsts: dict[int, Job] = {}
    for job in pending:
        firsts.setdefault(job.profile_id, job)  # type: ignore[arg-type]  # profile steps only here
    return list(firsts.values())


def _queue(jobs: list[Job]) -> None:
    now = timezone.now()
    for job in jobs:
        Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, enqueued_at=now)
        job.status, job.enqueued_at = JobStatus.QUEUED, now
        _enqueue_on_commit(job)


def _advance(run_id: int, finished: Job) -> None:
    """Queue what may run now that `finished` is done, or finish the run when nothing is left.

    The version's steps run one after another; after the last of them every hardware profile's
    steps start, each profile's in order, the profiles side by side. So a profile that nothing
    serves (no worker with its hardware) holds up its own steps only, never another profile's
    numbers. The run row is locked first: two profiles finishing at once must not both see the
    other still running, or the run would never finish."""
    PipelineRun.objects.select_for_update().filter(pk=run_id).first()
    if finished.profile_id is None:
        following = _runnable_first(run_id)
    else:
        pending = Job.objects.filter(run_id=run_id, profile_id=finished.profile_id, status=JobStatus.PENDING)
        nxt = pending.order_by("sequence").first()
        following = [nxt] if nxt is not None else []
    if following:
        _queue(following)
        return
    if not Job.objects.filter(run_id=run_id).exclude(status__in=FINISHED_JOB_STATUSES).exists():
        _finish_run(run_id)


def _finish_run(run_id: int) -> None:
    """Every job of the run has finished: the version is ready when at least one profile has
    measured evidence (or the version has no profiles), and failed when none has (docs/adr/0009)."""
    run = PipelineRun.objects.select_related("version").get(pk=run_id)
    outcomes = profile_outcomes(run)
    ready = [o for o in outcomes if o.status == ProfileStatus.READY]
    missing = [o for o in outcomes if o.status != ProfileStatus.READY]
    now = timezone.now()
    if outcomes and not ready:
        PipelineRun.objects.filter(pk=run_id).update(status=RunStatus.FAILED, finished_at=now)
        if len(missing) == 1:
            reason = missing[0].reason
        else:
            reason = "No profile has measured evidence: " + "; ".join(f"{o.profile}: {o.reason}" for o in missing)
        lifecycle.transition(run.version, VersionStatus.FAILED, reason=reason)
        events.version_failed.send(ModelVersion, version=run.version, reason=reason)
        return
    PipelineRun.objects.filter(pk=run_id).update(status=RunStatus.SUCCEEDED, finished_at=now)
    reason = "pipeline finished"
    if missing:
        reason = f"pipeline finished; ready for review on {', '.join(o.profile for o in ready)} only: " + "; ".join(
            f"{o.profile} has no measured evidence ({o.reason})" for o in missing
        )
    lifecycle.transition(run.version, VersionStatus.READY, reason=reason)
    events.version_ready.send(ModelVersion, version=run.version)


def fail(job: Job, code: str, message: str, log: str = "") -> bool:
    """Fail the job with a readable reason. A step of one hardware profile cancels only that
    profile's later steps and the run goes on with the other profiles; a step of the whole
    version (import, inspect) cancels the rest of the run and the version fails."""
    return _finish_failed(job, job.attempt, code, message, log)


def _finish_failed(job: Job, attempt: int, code: str, message: str, log: str = "") -> bool:
    now = timezone.now()
    with transaction.atomic():
        locked = (
            Job.objects.select_for_update()
            .filter(pk=job.pk, attempt=attempt)
            .exclude(status__in=FINISHED_JOB_STATUSES)
            .first()
        )
        if locked is None:
            return False
        text = locked.log
        if log:
            text = _append(text, log)
        text = _append(text, f"failed: {message}")
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.FAILED, error=message, error_code=code[:50], finished_at=now, log=text
        )
        step = locked.get_kind_display().lower()
        if locked.profile_id is not None:
            # One profile's failure is that profile's own: the other profiles' steps still run
            # and their evidence still counts (docs/adr/0009).
            Job.objects.filter(run_id=locked.run_id, profile_id=locked.profile_id, status=JobStatus.PENDING).update(
                status=JobStatus.CANCELLED,
                finished_at=now,
                error=f"Not run: the {step} step of this profile failed.",
                error_code="profile_failed",
            )
            _advance(locked.run_id, locked)
            return True
        Job.objects.filter(run_id=locked.run_id, status=JobStatus.PENDING).update(
            status=JobStatus.CANCELLED,
            finished_at=now,
            error=f"Not run: the {step} step failed.",
            error_code="run_failed",
        )
        PipelineRun.objects.filter(pk=locked.run_id).update(status=RunStatus.FAILED, finished_at=now)
        version = ModelVersion.objects.get(runs__id=locked.run_id)
        reason = f"{locked.get_kind_display()}: {message}"
        lifecycle.transition(version, VersionStatus.FAILED, reason=reason)
        events.version_failed.send(ModelVersion, version=version, reason=reason)
    return True


ReconcileReport = durable.Reconciled


def reconcile() -> durable.Reconciled:
    """Take back jobs whose worker went silent and re-send messages that seem lost."""
    return durable.reconcile(JOBS)


def drop_profile(version: ModelVersion, profile: str, user: Any, comment: str = "") -> int:
    """Stop waiting for one hardware profile in the version's latest run (team uploaders).

    Its steps that have not started are cancelled, saying who dropped the profile; a step
    already running finishes. When nothing else is left to run, the run finishes now, so the
    profiles that were measured can be reviewed (a profile nothing serves would otherwise keep
    the whole version waiting). Returns how many steps were dropped."""
    require(user, version.model.team, Action.UPLOAD)
    now = timezone.now()
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().filter(version=version).order_by("-id").first()
        name = f"version {version.number} of {version.model.slug}"
        if run is None or run.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
            raise Conflict("run_finished", f"The latest pipeline run of {name} is not running: nothing waits.")
        steps = Job.objects.filter(run=run, profile__slug=profile)
        if not steps.exists():
            chosen = sorted(
                set(Job.objects.filter(run=run, profile__isnull=False).values_list("profile__slug", flat=True))
            )
            raise DomainError(
                "unknown_profile",
                f"The latest run of {name} has no {profile} profile; its profiles are: {', '.join(chosen) or 'none'}.",
            )
        who = user.get_username() if getattr(user, "pk", None) else "someone"
        dropped = steps.filter(status__in=(JobStatus.PENDING, JobStatus.QUEUED)).update(
            status=JobStatus.CANCELLED,
            finished_at=now,
            error=f"Not run: {who} dropped the {profile} profile from this run.",
            error_code=DROPPED,
        )
        if not dropped:
            raise Conflict(
                "nothing_to_drop",
                f"Every step of {profile} in {name} has already run or is running; it no longer waits.",
            )
        after: dict[str, Any] = {"profile": profile, "steps": dropped}
        if comment:
            after["comment"] = comment
        audit.record("version.profile_dropped", version, actor=user, after=after)
        if not Job.objects.filter(run=run).exclude(status__in=FINISHED_JOB_STATUSES).exists():
            _finish_run(run.pk)
    return dropped
