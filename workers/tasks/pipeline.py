"""The one task that runs any pipeline job: claim, heartbeat, run the step, record the outcome."""

from __future__ import annotations

import logging
import socket
import threading
import traceback

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections

from apps.jobs import services
from apps.jobs.models import Job
from workers.engine.errors import ModelError
from workers.engine.sandbox import SandboxError
from workers.tasks.steps import STEPS

logger = logging.getLogger(__name__)

# Generous outer limits; the sandbox's own timeout normally fires first with a clearer reason.
SOFT_TIME_LIMIT = 2 * 3600
HARD_TIME_LIMIT = SOFT_TIME_LIMIT + 300


class _Heartbeat(threading.Thread):
    """Beats for a job while its step runs, so a long step is not taken for a dead worker."""

    def __init__(self, job: Job):
        super().__init__(daemon=True, name=f"heartbeat-job-{job.pk}")
        self.job = job
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.JOB_HEARTBEAT_SECONDS):
                services.heartbeat(self.job)
        finally:
            close_old_connections()


def _report(job: Job, fraction: float, message: str) -> None:
    services.report_progress(job, fraction, message)


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
    job = services.claim(job_id, worker_host=socket.gethostname(), task_id=str(getattr(request, "id", "") or ""))
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

    beat = _Heartbeat(job)
    beat.start()
    try:
        outcome = step(job, lambda fraction, message: _report(job, fraction, message))
    except ModelError as exc:
        services.fail(job, exc.code, exc.message)
        return "failed"
    except SandboxError as exc:
        services.fail(job, exc.code, exc.message, log=exc.log[-20000:])
        return "failed"
    except SoftTimeLimitExceeded:
        services.fail(
            job,
            "timeout",
            f"The {job.get_kind_display().lower()} step ran past the worker's limit of "
            f"{SOFT_TIME_LIMIT // 60} minutes and was stopped.",
        )
        return "failed"
    except Exception as exc:
        logger.exception("job %s (%s) failed unexpectedly", job.pk, job.kind)
        services.fail(
            job,
            "internal_error",
            f"Slipway hit an internal error while running the {job.get_kind_display().lower()} step "
            f"({type(exc).__name__}: {exc}). The job log has the details; re-run the pipeline or report it.",
            log=traceback.format_exc()[-20000:],
        )
        return "failed"
    finally:
        beat.stopped.set()
        beat.join(timeout=5)
    services.complete(job, outcome)
    return "succeeded"
