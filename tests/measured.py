"""Versions measured as a real run measures them, for tests of what reads the evidence
(comparisons, the previous approved version card, the compare view in the browser).

The step results have the shapes the pipeline stores: benchmark points made by the engine's own
`combine_trials` from three trials of timed requests (so they carry their 95 % intervals),
parity results per output, op-support reports, and the recommendation the engine's `recommend`
makes from those points. Integration tests run the real pipeline instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.utils import timezone

from apps.hardware.models import HardwareProfile
from apps.pipeline.models import Job, JobKind, JobStatus, PipelineRun, RunStatus
from apps.registry.models import Artifact, ArtifactKind, ModelVersion, VersionStatus
from tests.factories import ModelVersionFactory
from tests.trials import raw_trial
from workers.engine.backends.base import OpSupport, SupportReport
from workers.engine.measure import combine_trials
from workers.engine.recommend import benchmark_points, recommend
from workers.engine.support_matrix import build_matrix

SAMPLES_PER_TRIAL = 400  # three trials: 1,200 samples, enough for a p99 with its interval


def _trial(rng: np.random.Generator, center_ms: float) -> dict[str, Any]:
    """One fresh process's raw figures at batch 1: requests about `center_ms`, 2 % spread."""
    latencies = rng.normal(center_ms, center_ms * 0.02, SAMPLES_PER_TRIAL).clip(min=center_ms * 0.5).tolist()
    return raw_trial(latencies, cpu_ms_each=center_ms * rng.normal(0.95, 0.005))


def _benchmark_entry(center_ms: float, seed: int, backend: str) -> dict[str, Any]:
    """A variant's stored benchmark: one point (batch 1) from three single-threaded CPU trials."""
    rng = np.random.default_rng(seed)
    point = combine_trials([_trial(rng, center_ms) for _ in range(3)], keep_samples=200)
    return {
        "backend": backend,
        "runtime_version": "1.20.1",
        "points": [point],
        "threads": {"intra_op_threads": 1},
        "cpu_model": "Test CPU @ 3.0GHz",
        "device_kind": "cpu",
    }


def _parity(cosine: float, max_abs: float, top1: float | None = None) -> dict[str, Any]:
    passed = cosine >= 0.99 or max_abs <= 1e-3
    return {
        "passed": passed,
        "outputs": [
            {
                "name": "y",
                "passed": passed,
                "max_abs_error": max_abs,
                "max_rel_error": max_abs * 10,
                "cosine": cosine,
                "top1_agreement": top1,
                "kind": "classifier",
                "sqnr_db": 40.0,
            }
        ],
        "reasons": [] if passed else [f"y: cosine {cosine} is below 0.99."],
        "samples": 8,
    }


def measured_version(
    *,
    team: Any,
    uploader: Any,
    model: Any,
    variants: dict[str, dict[str, Any]],
    baseline_ms: float = 3.0,
    seed: int = 0,
    profiles: tuple[str, ...] = ("x86-cpu",),
    status: str = VersionStatus.READY,
    unsupported: tuple[str, ...] = (),
) -> ModelVersion:
    """A version whose latest run succeeded on `profiles`, measured with intervals.

    `variants`: name -> {"ms": centre of its latency, "cosine", "max_abs", "size", and optional
    "backend", "precision", "top1"}. `unsupported`: op types onnxruntime reports it can't run."""
    number = model.versions.count() + 1  # numbered 1, 2, 3... per model, as uploads are
    version = ModelVersionFactory(model=model, number=number, created_by=uploader, status=status)
    source = Artifact.objects.create(
        version=version, kind=ArtifactKind.SOURCE, name="source", format="onnx", sha256="a" * 64, size=4000,
        storage_key="k",
    )  # fmt: skip
    version.source_artifact = source
    version.save(update_fields=["source_artifact"])
    version.profiles.set(HardwareProfile.objects.filter(slug__in=profiles))
    now = timezone.now()
    run = PipelineRun.objects.create(version=version, status=RunStatus.SUCCEEDED, started_at=now, finished_at=now)
    sequence = iter(range(100))

    def job(kind: str, result: dict[str, Any], hw: HardwareProfile | None) -> Job:
        return Job.objects.create(
            run=run, kind=kind, sequence=next(sequence), status=JobStatus.SUCCEEDED, profile=hw,
            queue=hw.queue if hw else "cpu", result=result, worker_host="bench-host", finished_at=now,
        )  # fmt: skip

    job(
        JobKind.INSPECT,
        {
            "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
            "outputs": [{"name": "y", "shape": ["batch", 10], "dtype": "float32"}],
        },
        None,
    )
    for slug in profiles:
        hw = HardwareProfile.objects.get(slug=slug)
        ops = [
            OpSupport(op, "ai.onnx", "unsupported", "no kernel for it in this build", (f"{op}_0",))
            for op in unsupported
        ]
        ops.append(OpSupport("Gemm", "ai.onnx", "supported", "", ("fc1", "fc2"), "CPUExecutionProvider"))
        report = SupportReport(
            "onnxruntime", "1.20.1", True, "runtime", "partial" if unsupported else "full", tuple(ops)
        ).to_dict()
        reports = {"onnxruntime": report}
        job(JobKind.VALIDATE, {"profile": slug, "reports": reports, "matrix": build_matrix(reports)}, hw)
        built = [
            {
                "name": name,
                "backend": spec.get("backend", "onnxruntime"),
                "format": "onnx",
                "precision": spec.get("precision", "int8"),
                "pass_name": name,
                "options": {},
            }
            for name, spec in variants.items()
        ]
        optimize = job(
            JobKind.OPTIMIZE, {"profile": slug, "variants": built, "errors": {}, "skipped": {}, "notes": {}}, hw
        )
        for index, (name, spec) in enumerate(variants.items()):
            Artifact.objects.create(
                version=version, kind=ArtifactKind.VARIANT, name=f"{slug}/{name}", format="onnx",
                sha256=f"{version.pk:032x}{index:032x}", size=spec["size"], storage_key=f"v{version.pk}-{index}",
                job=optimize,
                metadata={"profile": slug, "backend": spec.get("backend", "onnxruntime"),
                          "precision": spec.get("precision", "int8")},
            )  # fmt: skip
        parity = {name: _parity(spec["cosine"], spec["max_abs"], spec.get("top1")) for name, spec in variants.items()}
        inputs = {"samples": 8, "source": "generated inputs", "description": "features in [0, 1], 8 samples"}
        passed = sorted(name for name, result in parity.items() if result["passed"])
        job(JobKind.PARITY, {"profile": slug, "inputs": inputs, "variants": parity, "passed": passed}, hw)
        measured = {
            name: _benchmark_entry(spec["ms"], seed + index + 1, spec.get("backend", "onnxruntime"))
            for index, (name, spec) in enumerate(variants.items())
        }
        baseline = _benchmark_entry(baseline_ms, seed, "onnxruntime")
        job(JobKind.BENCHMARK, {"profile": slug, "worker_host": "bench-host", "baseline": baseline,
                                "variants": measured}, hw)  # fmt: skip
        candidates = [
            {
                "name": name,
                "backend": spec.get("backend", "onnxruntime"),
                "precision": spec.get("precision", "int8"),
                "parity": parity[name],
                "points": benchmark_points(measured[name]),
                "size_bytes": spec["size"],
            }
            for name, spec in variants.items()
        ]
        result = recommend(candidates, benchmark_points(baseline), "p99_latency_batch1").to_dict()
        job(JobKind.RECOMMEND, {**result, "profile": slug}, hw)
    return version
