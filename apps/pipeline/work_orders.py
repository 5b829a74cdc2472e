"""A claimed job of a measuring step as a `workers.engine.work.WorkOrder`: the artifacts it reads
(by id and content hash) and the parameters the server settles for it, so that a worker in the
cluster and a device agent over HTTPS run exactly the same thing (ADR 0016).

The server settles what depends on its data and settings: the tolerance (profile, upload,
model), the output semantics and input plan from the inspection, the benchmark sweep with the
installation's caps. The machine that runs the order decides nothing of it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.pipeline.models import Job, JobKind, JobStatus
from apps.registry.models import Artifact, ArtifactKind, ModelVersion
from apps.registry.storage import materialize
from workers.engine.work import DEVICE_STEPS, ArtifactRef, WorkOrder, verify


def model_artifact(version: ModelVersion) -> Artifact:
    """The ONNX model the later steps work on: the import's output, or the upload itself."""
    imported = version.artifacts.filter(kind=ArtifactKind.ONNX).order_by("-id").first()
    source = imported or version.source_artifact
    assert source is not None, "a version always has its source artifact"
    return source


def profile_variants(job: Job) -> list[Artifact]:
    """The variants this run's optimize step built for the job's profile."""
    assert job.profile is not None
    return list(
        Artifact.objects.filter(
            version=job.run.version, kind=ArtifactKind.VARIANT, job__run=job.run, metadata__profile=job.profile.slug
        ).order_by("id")
    )


def ref(artifact: Artifact) -> ArtifactRef:
    return ArtifactRef(
        id=artifact.pk,
        name=artifact.name,
        sha256=artifact.sha256,
        size=artifact.size,
        format=artifact.format,
        main_file=str((artifact.metadata or {}).get("main_file") or ""),
        backend=str((artifact.metadata or {}).get("backend") or ""),
    )


def _inspection(job: Job) -> dict[str, Any]:
    inspect = job.run.jobs.filter(kind=JobKind.INSPECT, status=JobStatus.SUCCEEDED).order_by("-sequence").first()
    return (inspect.result if inspect else None) or {}


def output_semantics(job: Job) -> dict[str, Any]:
    """What each output is, from the inspection report (declared at upload, else proposed from
    the graph): {} for a report from before output semantics existed."""
    return dict(_inspection(job).get("output_semantics") or {})


def tolerance_for(job: Job) -> dict[str, Any]:
    """Profile defaults, then the upload's tolerance, then the model's own overrides."""
    from workers.engine.parity import Tolerance

    assert job.profile is not None
    version = job.run.version
    overrides = {**(version.tolerance or {}), **(version.model.tolerance or {})}
    return asdict(Tolerance.from_options(job.profile.options, overrides))


def benchmark_config(job: Job, memory_limit: int | None) -> Any:
    """The sweep: the profile's options, then the upload's benchmark settings, within the
    installation's caps (SLIPWAY_BENCHMARK_MAX_SECONDS_PER_POINT, _MAX_TRIALS)."""
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


def _parameters(job: Job) -> dict[str, Any]:
    assert job.profile is not None
    version = job.run.version
    if job.kind == JobKind.VALIDATE:
        # Runtimes the profile doesn't build for, whose op support its matrix shows for reference.
        return {"report_backends": list((job.profile.options or {}).get("report_backends") or [])}
    if job.kind == JobKind.PARITY:
        return {
            "tolerance": tolerance_for(job),
            "semantics": output_semantics(job),
            "declarations": version.input_declarations or {},
        }
    if job.kind == JobKind.BENCHMARK:
        gpu = job.profile.device_kind == "gpu"
        config = benchmark_config(job, None if gpu else settings.SANDBOX_MEMORY_BYTES)
        inspection = _inspection(job)
        return {
            "config": asdict(config),
            # The original's inputs as inspected: an IR, MNN or ncnn file can't be read for its
            # inputs without its runtime, and every variant takes the original's inputs.
            "inputs": list(inspection.get("inputs") or []),
            "input_plan": inspection.get("input_plan") or None,
        }
    return {}


def work_order(job: Job) -> WorkOrder:
    """The claimed `job` (validate, parity or benchmark) as an order, at its current attempt."""
    assert job.kind in DEVICE_STEPS and job.profile is not None, f"{job.kind} is not a measuring step"
    model, variants, validation = order_artifacts(job)
    return WorkOrder(
        job=job.pk,
        attempt=job.attempt,
        kind=job.kind,  # type: ignore[arg-type]  # checked above: one of DEVICE_STEPS
        profile=job.profile.slug,
        device_kind=job.profile.device_kind,
        backends=tuple(job.profile.backends),
        model=ref(model),
        variants=tuple(ref(a) for a in variants),
        validation=ref(validation) if validation is not None else None,
        parameters=_parameters(job),
        memory_bytes=settings.SANDBOX_MEMORY_BYTES,
        timeout_seconds=float(settings.SANDBOX_TIMEOUT_SECONDS),
    )


def order_artifacts(job: Job) -> tuple[Artifact, list[Artifact], Artifact | None]:
    """What the job's order reads: the model, the profile's variants (parity, benchmark) and the
    validation set (parity, where the upload has one)."""
    version = job.run.version
    variants = profile_variants(job) if job.kind in (JobKind.PARITY, JobKind.BENCHMARK) else []
    validation = version.validation if job.kind == JobKind.PARITY else None
    return model_artifact(version), variants, validation


def readable_artifacts(job: Job) -> set[int]:
    """The artifact ids the job's order may download (without settling its parameters)."""
    model, variants, validation = order_artifacts(job)
    return {model.pk, *(a.pk for a in variants), *([validation.pk] if validation is not None else [])}


def fetch_from_storage(artifact: ArtifactRef, dest: Path) -> Path:
    """A worker's `Fetch`: the artifact's bytes from storage, checked against its hash as an
    agent checks its download (a corrupted object is caught here, not measured)."""
    stored = Artifact.objects.get(pk=artifact.id)
    return verify(artifact, materialize(stored.storage_key, dest))
