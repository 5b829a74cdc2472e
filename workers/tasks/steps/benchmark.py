"""The benchmark step: the original and every variant measured on this worker, interleaved, over the profile's sweep."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.pipeline.models import Job, JobKind, JobStatus
from apps.pipeline.services import StepOutcome
from workers.engine.reports import BenchmarkPoint
from workers.tasks.steps.common import (
    ProgressCallback,
    job_workdir,
    local_model,
    local_variant,
    profile_variants,
    scaled,
)
from workers.tasks.steps.evidence import require_measurement


def benchmark_config(job: Job, memory_limit: int | None) -> Any:
    from workers.engine.benchmark import BenchmarkConfig

    assert job.profile is not None
    options = {**job.profile.options, **(job.run.version.benchmark_settings or {})}
    seconds = float(options.get("max_seconds_per_point", 5.0))
    if settings.BENCHMARK_MAX_SECONDS_PER_POINT > 0:
        seconds = min(seconds, settings.BENCHMARK_MAX_SECONDS_PER_POINT)
    trials = int(options.get("trials", 3))
    if settings.BENCHMARK_MAX_TRIALS > 0:
        trials = min(trials, settings.BENCHMARK_MAX_TRIALS)
    return BenchmarkConfig(
        batch_sizes=tuple(int(b) for b in options.get("batch_sizes", [1])),
        concurrency=tuple(int(c) for c in options.get("concurrency", [1])),
        window_runs=int(options.get("window_runs", 30)),
        max_windows=int(options.get("max_windows", 10)),
        max_seconds_per_point=seconds,
        warmup_runs=int(options.get("warmup_runs", 5)),
        memory_limit_bytes=memory_limit,
        # Three fresh processes per variant, interleaved with the original: the intervals and
        # the ranking then rest on process-to-process spread, not on one lucky run.
        trials=trials,
        min_samples=int(options.get("min_samples", 1000)),
        intra_op_threads=int(options["intra_op_threads"]) if options.get("intra_op_threads") else None,
    )


def _model_inputs(job: Job) -> list[dict[str, Any]]:
    """The original model's inputs as its inspection found them (names, dims, dtypes).

    Every variant is fed by this signature: an OpenVINO IR, MNN or ncnn file can't be read
    for its inputs without its runtime, and the variants take the original's inputs."""
    inspect = job.run.jobs.filter(kind=JobKind.INSPECT, status=JobStatus.SUCCEEDED).order_by("-sequence").first()
    return list(((inspect.result if inspect else None) or {}).get("inputs") or [])


def _input_plan(job: Job) -> Any:
    """The inspection's input plan (`workers.engine.inputs.InputPlan`): what each input holds
    and the typical size of each symbolic dim; None for a report from before plans existed."""
    from workers.engine.inputs import InputPlan

    inspect = job.run.jobs.filter(kind=JobKind.INSPECT, status=JobStatus.SUCCEEDED).order_by("-sequence").first()
    data = ((inspect.result if inspect else None) or {}).get("input_plan")
    return InputPlan.from_dict(data) if data else None


def _planned_inputs(plan: Any) -> list[dict[str, Any]]:
    """The benchmark's input specs from the plan: each carries its recipe, so that a variant gets
    the values its inputs take (a sample rate of 16000, token ids in the vocabulary)."""
    return [
        {"name": recipe.name, "shape": list(recipe.shape), "dtype": recipe.dtype, "recipe": recipe.to_dict()}
        for recipe in plan.recipes
    ]


def _benchmark(
    backend: str, path: Path, inputs: list[dict[str, Any]], config: Any, progress: ProgressCallback
) -> dict[str, Any]:
    """One variant's sweep; an ONNX file is fed by its own declared inputs, any other format by
    the original model's (`inputs`)."""
    from workers.engine.benchmark import BenchmarkFailed, benchmark_variant

    specs = None if path.suffix.lower() == ".onnx" else inputs
    try:
        return benchmark_variant(backend, path, specs, config, progress).to_dict()
    except BenchmarkFailed as exc:
        return _benchmark_failure(backend, path, inputs, config, progress, exc)


def _benchmark_failure(
    backend: str, path: Path, inputs: list[dict[str, Any]], config: Any, progress: ProgressCallback, exc: Any
) -> dict[str, Any]:
    """What a failed benchmark stores: a model with a fixed batch is measured again at batch 1
    (it can only be measured as it is); any other failure keeps its sentence and code."""
    if exc.code == "invalid_input" and config.batch_sizes != (1,):
        result = _benchmark(backend, path, inputs, replace(config, batch_sizes=(1,)), progress)
        result.setdefault("notes", [])
        result["notes"] = [*result["notes"], f"Only batch 1 was measured: {exc.message}"]
        return result
    return {"error": exc.message, "error_code": exc.code, "backend": backend, "points": []}


def run_benchmark(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Benchmark the original model (plain onnxruntime) and every variant on this worker's
    hardware over the profile's (or upload's) sweep: `trials` rounds, round robin (original,
    v1, v2, ..., original, v1, v2, ...), one fresh pinned process per variant per round."""
    from workers.engine.backends.registry import get_backend
    from workers.engine.benchmark import BenchmarkFailed, BenchmarkRequest, benchmark_interleaved

    assert job.profile is not None
    gpu = job.profile.device_kind == "gpu"
    config = benchmark_config(job, None if gpu else settings.SANDBOX_MEMORY_BYTES)
    variants = profile_variants(job)
    results: dict[str, dict[str, Any]] = {}
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the model")
        model = local_model(job, workdir)
        inputs = _model_inputs(job)
        plan = _input_plan(job)
        if plan is not None:
            # Benchmarks run at the plan's typical sizes (declared, or inferred: never a 1-pixel
            # image) and on its data-like inputs; every variant, ONNX or not, takes the same ones.
            inputs = _planned_inputs(plan)
            config = replace(config, input_overrides={**plan.dims, **config.input_overrides})
        # (name or None for the original, backend, local path, artifact id)
        measured: list[tuple[str | None, str, Path, int | None]] = [(None, "onnxruntime", model, None)]
        for artifact in variants:
            name = artifact.name.split("/", 1)[-1]
            backend = artifact.metadata.get("backend", "")
            if not get_backend(backend).available():
                results[name] = {"error": f"{backend} is not installed on this worker.", "points": []}
                continue
            measured.append((name, backend, local_variant(artifact, workdir / "variants" / name), artifact.pk))
        progress(
            0.03, f"benchmarking the original model and {len(measured) - 1} variant(s) in {config.trials} trial(s)"
        )
        requests = [
            BenchmarkRequest(backend, path, None if path.suffix.lower() == ".onnx" and plan is None else inputs)
            for _, backend, path, _ in measured
        ]
        outcomes = benchmark_interleaved(requests, config, scaled(progress, 0.03, 0.97))
        baseline: dict[str, Any] = {}
        for (variant, backend, path, artifact_id), outcome in zip(measured, outcomes, strict=True):
            if isinstance(outcome, BenchmarkFailed):
                entry = _benchmark_failure(backend, path, inputs, config, scaled(progress, 0.97, 0.99), outcome)
            else:
                entry = outcome.to_dict()
            entry["device_kind"] = job.profile.device_kind
            if variant is None:
                baseline = entry
            else:
                results[variant] = {**entry, "artifact_id": artifact_id}
    require_measurement(job.profile.slug, baseline, results)
    return StepOutcome(
        result={
            "profile": job.profile.slug,
            "worker_host": job.worker_host,
            "config": asdict(config),
            "baseline": baseline,
            "variants": results,
            # What the timings were measured on: generated inputs, and how they were made.
            "inputs": {
                "source": "generated inputs",
                "description": plan.describe() if plan else "generated from the model's signature",
                "assumptions": list(plan.assumptions) if plan else [],
            },
        }
    )


def points_for_recommend(benchmark: dict[str, Any]) -> list[BenchmarkPoint]:
    """A stored entry's points, marked for the recommender (`workers.engine.recommend.benchmark_points`)."""
    from workers.engine.recommend import benchmark_points

    return benchmark_points(benchmark)
