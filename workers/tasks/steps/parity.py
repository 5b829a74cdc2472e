"""The parity step: every variant against the FP32 original on the same inputs, each in its own
sandbox. Run as a work order (`workers.engine.work`), as a device agent runs it."""

from __future__ import annotations

from apps.pipeline.models import Job
from apps.pipeline.services import StepOutcome
from workers.tasks.steps.common import ProgressCallback, run_as_order


def run_parity(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Compare every variant with the FP32 original on the same inputs, each in its own sandbox."""
    return run_as_order(job, progress)
