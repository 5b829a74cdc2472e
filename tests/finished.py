"""Versions whose pipeline has finished, for tests of what comes after (review, gates, deploy).

The step results have the shapes the real steps store (the recommendation is made by the
engine's own `recommend` from the parity and benchmark numbers given), so review code reads
them as it would read a real run. Integration tests run the real pipeline instead.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from apps.hardware.models import HardwareProfile
from apps.pipeline.models import InspectionGraph, Job, JobKind, JobStatus, PipelineRun, RunStatus
from apps.registry.models import Artifact, ArtifactKind, ModelVersion, VersionStatus
from tests.factories import ModelVersionFactory, RegisteredModelFactory
from workers.engine.recommend import recommend

# What the inspect step stores for the browser's drawing (`workers.engine.graph_view`): x -> Relu -> y.
GRAPH: dict[str, Any] = {
    "node_count": 1,
    "omitted": "",
    "nodes": [{"id": "relu", "op": "Relu", "in": ["x"], "out": ["y"]}],
    "values": {"x": {"t": "float32", "s": ["batch", 4]}, "y": {"t": "float32", "s": ["batch", 4]}},
    "inputs": ["x"],
    "outputs": ["y"],
}


def _point(batch: int, p99: float) -> dict[str, Any]:
    return {"batch_size": batch, "concurrency": 1, "p50_ms": p99 * 0.8, "p99_ms": p99, "throughput": batch * 1000 / p99}


def _parity(cosine: float, max_abs: float) -> dict[str, Any]:
    passed = cosine >= 0.99 or max_abs <= 1e-3
    return {
        "passed": passed,
        "outputs": [
            {"name": "y", "passed": passed, "max_abs_error": max_abs, "max_rel_error": max_abs * 10, "cosine": cosine}
        ],
        "reasons": [] if passed else [f"y: cosine {cosine} is below 0.99."],
        "samples": 8,
    }


def finished_version(
    *,
    team: Any,
    uploader: Any,
    profile: str = "x86-cpu",
    variants: dict[str, dict[str, Any]] | None = None,
    backends: dict[str, str] | None = None,
    status: str = VersionStatus.READY,
    number: int | None = None,
    model: Any = None,
) -> ModelVersion:
    """A version of `team` uploaded by `uploader`, with one succeeded run for `profile`.

    `variants`: name -> {"backend", "precision", "p99": ms at batch 1, "cosine", "max_abs"}.
    `backends`: backend -> support verdict in the validate report.
    """
    variants = variants or {
        "ort-opt": {"backend": "onnxruntime", "precision": "fp32", "p99": 2.0, "cosine": 1.0, "max_abs": 1e-6},
        "ort-int8": {"backend": "onnxruntime", "precision": "int8", "p99": 1.0, "cosine": 0.999, "max_abs": 0.02},
    }
    backends = backends or {"onnxruntime": "full"}
    model = model or RegisteredModelFactory(team=team, created_by=uploader)
    extra = {"number": number} if number is not None else {}
    version = ModelVersionFactory(model=model, created_by=uploader, status=status, **extra)
    hw = HardwareProfile.objects.get(slug=profile)
    version.profiles.set([hw])
    source = Artifact.objects.create(
        version=version,
        kind=ArtifactKind.SOURCE,
        name="source",
        format="onnx",
        sha256="a" * 64,
        size=100,
        storage_key="k",
    )
    version.source_artifact = source
    version.save(update_fields=["source_artifact"])
    now = timezone.now()
    run = PipelineRun.objects.create(version=version, status=RunStatus.SUCCEEDED, started_at=now, finished_at=now)

    def job(kind: str, sequence: int, result: dict[str, Any], with_profile: bool = True) -> Job:
        return Job.objects.create(
            run=run,
            kind=kind,
            sequence=sequence,
            status=JobStatus.SUCCEEDED,
            profile=hw if with_profile else None,
            queue=hw.queue,
            result=result,
            worker_host="test-host",
            finished_at=now,
        )

    # The reports have every field their schemas require (docs/openapi.yaml), as a real run's do:
    # the API's answers that carry them are checked against those schemas (tests/integration/test_api_fuzz.py).
    inspect = job(
        JobKind.INSPECT,
        0,
        {
            "ir_version": 8,
            "opset_imports": {"": 17},
            "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
            "outputs": [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}],
        },
        False,
    )
    InspectionGraph.objects.create(job=inspect, data=GRAPH)
    job(
        JobKind.VALIDATE,
        1,
        {
            "profile": profile,
            "reports": {
                b: {
                    "backend": b,
                    "verdict": v,
                    "runtime_version": "1.0",
                    "installed": True,
                    "method": "runtime",
                    "ops": [],
                    "partitions": [],
                }
                for b, v in backends.items()
            },
            "matrix": {"backends": list(backends), "rows": [], "verdicts": dict(backends), "problems": 0},
        },
    )
    optimize = job(JobKind.OPTIMIZE, 2, {"profile": profile, "variants": []})
    for index, (name, spec) in enumerate(variants.items()):
        Artifact.objects.create(
            version=version,
            kind=ArtifactKind.VARIANT,
            name=f"{profile}/{name}",
            format="onnx",
            sha256=f"{index:064x}",
            size=100 + index,
            storage_key=f"v{index}",
            job=optimize,
            metadata={"profile": profile, "backend": spec["backend"], "precision": spec["precision"]},
        )
    parity = {name: _parity(spec["cosine"], spec["max_abs"]) for name, spec in variants.items()}
    job(JobKind.PARITY, 3, {"profile": profile, "tolerance": {"min_cosine": 0.99}, "variants": parity})
    benchmarks = {name: {"points": [_point(1, spec["p99"])]} for name, spec in variants.items()}
    baseline = {"points": [_point(1, 3.0)]}
    job(JobKind.BENCHMARK, 4, {"profile": profile, "baseline": baseline, "variants": benchmarks})
    candidates = [
        {
            "name": name,
            "backend": spec["backend"],
            "precision": spec["precision"],
            "parity": parity[name],
            "points": [{"batch": 1, "concurrency": 1, "p50": spec["p99"] * 0.8, "p99": spec["p99"], "throughput": 1}],
        }
        for name, spec in variants.items()
    ]
    baseline_points = [{"batch": 1, "concurrency": 1, "p50": 2.4, "p99": 3.0, "throughput": 1}]
    result = recommend(candidates, baseline_points, "p99_latency_batch1").to_dict()
    job(JobKind.RECOMMEND, 5, {**result, "profile": profile})
    return version
