"""The validate step: each backend of the profile says, op by op, whether it runs the model.
Run as a work order (`workers.engine.work`), as a device agent runs it."""

from __future__ import annotations

from apps.pipeline.models import Job
from apps.pipeline.services import StepOutcome
from workers.tasks.steps.common import ProgressCallback, run_as_order


def run_validate(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Ask every backend of the job's profile which ops it supports, each in its own sandbox.

    A backend that crashes or rejects the model gets an error column; the others still report.
    """
    return run_as_order(job, progress)
