"""The one task that runs any pipeline job: claim, heartbeat, run the step, record the outcome."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection

from apps.core.diskspace import disk_full_message, out_of_space, reported_out_of_space
from apps.pipeline import services
from apps.pipeline.models import Job
from apps.registry.storage import StorageFull
from workers.engine.errors import ModelError
from workers.engine.hardware import describe_requirements, unmet_requirements
from workers.engine.sandbox import SandboxError
from workers.tasks.heartbeat import Heartbeat
from workers.tasks.steps import STEPS
from workers.tasks.worker_registry import node_name, own_facts

logger = logging.getLogger(__name__)

# Generous outer limits; the sandbox's own timeout normally fires first with a clearer reason.
SOFT_TIME_LIMIT = 2 * 3600
HARD_TIME_LIMIT = SOFT_TIME_LIMIT + 300
# How long the outcome of a finished step is retried while the database is unreachable (a
# PostgreSQL restart or failover) before it is left to the reconciler, which runs the step again.
OUTCOME_RETRY_SECONDS = 60.0

T = TypeVar("T")


def _unfit_for(job_id: int) -> str:
    """Why this worker must not run the job (its profile needs hardware this worker's probe
    lacks), as a sentence; empty when it may."""
    job = Job.objects.select_related("profile").filter(pk=job_id).first()
    if job is None or job.profile is None or not services.needs_hardware(job.kind, job.profile):
        return ""
    unmet = unmet_requirements(job.profile.requirements, own_facts())
    if not unmet:
        return ""
    return f"the {job.profile.slug} profile needs {describe_requirements(job.profile.requirements)}: " + "; ".join(
        unmet
    )


def _report(job: Job, fraction: float, message: str) -> None:
    try:
        services.report_progress(job, fraction, message)
    except DatabaseError:
        # Progress is informative; the step goes on through a database blip.
        logger.warning("could not record progress of job %s; continuing", job.pk, exc_info=True)
        connection.close()


def _retrying_database(write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Record a step's outcome, retrying while the database is unreachable: the work is done and
    the write is fenced by attempt, so repeating it is safe. Past OUTCOME_RETRY_SECONDS the error
    propagates; the job's heartbeat then goes stale and the reconciler re-queues it."""
    deadline = time.monotonic() + OUTCOME_RETRY_SECONDS
    delay = 0.5
    while True:
        try:
            return write(*args, **kwargs)
        except (OperationalError, InterfaceError):
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("database unreachable while recording a job outcome; retrying", exc_info=True)
            connection.close()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _fail_disk_full(job: Job, path: str, log: str) -> None:
    step = job.get_kind_display().lower()
    message = disk_full_message(path, f"the {step} step could not write its files and stopped", "re-run the pipeline")
    _retrying_database(services.fail, job, "disk_full", message, log=log)


@shared_task(
    name=services.RUN_JOB_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=HARD_TIME_LIMIT,
)
def run_job(self: object, job_id: int) -> str:
    request = getattr(self, "request", None)
    unfit = _unfit_for(job_id)
    if unfit:
        # Never measure a profile on hardware it does not name: the job stays queued for a
        # worker or device that meets it, and its page says why it waits.
        logger.warning("not running job %s on %s: %s", job_id, node_name(request), unfit)
        return "refused"
    job = services.claim(job_id, worker_host=node_name(request), task_id=str(getattr(request, "id", "") or ""))
    if job is None:
        return "not claimed"
    step = STEPS.get(job.kind)
    if step is None:
        services.fail(
            job,
            "unknown_step",
            f"This worker does not know how to run a '{job.kind}' step. Update the worker.",
        )
        return "failed"

    beat = Heartbeat(f"job-{job.pk}", lambda: services.heartbeat(job))
    beat.start()
    try:
        outcome = step(job, lambda fraction, message: _report(job, fraction, message))
    except ModelError as exc:
        _retrying_database(services.fail, job, exc.code, exc.message)
        return "failed"
    except SandboxError as exc:
        full = reported_out_of_space(exc.message, settings.WORK_DIR)
        if full is not None:
            _fail_disk_full(job, full, log=exc.log[-20000:])
        else:
            _retrying_database(services.fail, job, exc.code, exc.message, log=exc.log[-20000:])
        return "failed"
    except StorageFull as exc:
        # Not an internal error: the disk is full, and the sentence says what to do.
        _retrying_database(services.fail, job, exc.code, exc.message)
        return "failed"
    except SoftTimeLimitExceeded:
        services.fail(
            job,
            "timeout",
            f"The {job.get_kind_display().lower()} step ran past the worker's limit of "
            f"{SOFT_TIME_LIMIT // 60} minutes and was stopped.",
        )
        return "failed"
    except (OperationalError, InterfaceError):
        # The database went away mid-step: nothing is wrong with the model. The job stays
        # running; with this task gone its heartbeat stops, and once the database is back the
        # reconciler re-queues it for another attempt.
        logger.warning("job %s (%s) lost the database mid-step; the reconciler will retry it", job.pk, job.kind)
        return "interrupted"
    except Exception as exc:
        full = out_of_space(exc, settings.WORK_DIR)
        if full is not None:
            # A full disk is the server's condition, not a bug to report: say which disk.
            logger.warning("job %s (%s) stopped: the disk holding %s is full", job.pk, job.kind, full)
            _fail_disk_full(job, full, log=traceback.format_exc()[-20000:])
            return "failed"
        logger.exception("job %s (%s) failed unexpectedly", job.pk, job.kind)
        _retrying_database(
            services.fail,
            job,
            "internal_error",
            f"Slipway hit an internal error while running the {job.get_kind_display().lower()} step "
            f"({type(exc).__name__}: {exc}). The job log has the details; re-run the pipeline or report it.",
            log=traceback.format_exc()[-20000:],
        )
        return "failed"
    finally:
        beat.stop()
    _retrying_database(services.complete, job, outcome)
    return "succeeded"
