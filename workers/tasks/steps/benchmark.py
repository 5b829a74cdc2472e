"""The benchmark step: the original and every variant measured on this worker, interleaved, over
the profile's sweep. Run as a work order (`workers.engine.work`), as a device agent runs it."""

from __future__ import annotations

from typing import Any

from apps.pipeline.models import Job
from apps.pipeline.services import StepOutcome
from apps.pipeline.work_orders import benchmark_config
from workers.engine.reports import BenchmarkPoint
from workers.tasks.steps.common import ProgressCallback, run_as_order

__all__ = ["benchmark_config", "points_for_recommend", "run_benchmark"]


def run_benchmark(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Benchmark the original model (plain onnxruntime) and every variant on this worker's
    hardware over the profile's (or upload's) sweep: `trials` rounds, round robin (original,
    v1, v2, ..., original, v1, v2, ...), one fresh pinned process per variant per round."""
    outcome = run_as_order(job, progress)
    outcome.result["worker_host"] = job.worker_host
    return outcome


def points_for_recommend(benchmark: dict[str, Any]) -> list[BenchmarkPoint]:
    """A stored entry's points, marked for the recommender (`workers.engine.recommend.benchmark_points`)."""
    from workers.engine.recommend import benchmark_points

    return benchmark_points(benchmark)
