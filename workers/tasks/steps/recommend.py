"""The recommend step: the fastest variant that passes parity, by the version's objective."""

from __future__ import annotations

from apps.pipeline.models import Job, JobKind
from apps.pipeline.services import StepOutcome
from workers.tasks.steps.benchmark import points_for_recommend
from workers.tasks.steps.common import ProgressCallback, profile_variants, step_result
from workers.tasks.steps.evidence import require_recommendation_evidence


def run_recommend(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Pick the fastest variant that passes parity, by the version's objective. (The comparison
    with the previous approved version is made when the version is read: apps/pipeline/compare.py.)"""
    from workers.engine.recommend import recommend, recommend_without_timings

    assert job.profile is not None
    version = job.run.version
    parity, benchmark = step_result(job, JobKind.PARITY), step_result(job, JobKind.BENCHMARK)
    candidates = []
    for artifact in profile_variants(job):
        name = artifact.name.split("/", 1)[-1]
        measured = benchmark.get("variants", {}).get(name, {})
        candidates.append(
            {
                "name": name,
                "backend": artifact.metadata.get("backend", ""),
                "precision": artifact.metadata.get("precision", ""),
                "parity": parity.get("variants", {}).get(name),
                "points": points_for_recommend(measured),
                "benchmark_error": measured.get("error", "") if measured else "not benchmarked",
                "size_bytes": artifact.size,
            }
        )
    progress(0.5, "ranking the variants")
    baseline = benchmark.get("baseline") or {}
    emulation = str((benchmark.get("measured_on") or {}).get("emulation") or "")
    if emulation:
        # Timings on an emulated CPU are the emulator's, not the device's: they rank nothing.
        why = f"the timings were measured under {emulation}, not on the device"
        result = recommend_without_timings(candidates, version.objective, version.p99_budget_ms, why).to_dict()
    else:
        result = recommend(
            candidates, points_for_recommend(baseline) or None, version.objective, budget_ms=version.p99_budget_ms
        ).to_dict()
        require_recommendation_evidence(job.profile.slug, result, baseline)
    result["profile"] = job.profile.slug
    return StepOutcome(result=result)
