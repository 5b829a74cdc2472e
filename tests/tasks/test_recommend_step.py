"""The recommend step: ranks from the run's parity and benchmark results (the comparison with
the previous approved version is made when a version is read: tests/apps/test_compare_api.py)."""

from __future__ import annotations

import pytest

from apps.hardware.models import HardwareProfile
from apps.pipeline import services
from apps.pipeline.models import Job, JobKind, JobStatus
from apps.registry.models import Artifact, ArtifactKind
from tests.factories import ModelVersionFactory
from workers.tasks.steps.recommend import run_recommend

pytestmark = pytest.mark.django_db


def _point(p99: float) -> dict:
    return {"batch_size": 1, "concurrency": 1, "p50_ms": p99 * 0.8, "p99_ms": p99, "throughput": 1000 / p99}


def _run(version, profile, fast_passes: bool, fast_p99: float, slow_p99: float) -> Job:
    """A run whose parity and benchmark steps are done; returns its recommend job, claimed."""
    run = services.start_pipeline(
        version,
        version.created_by,
        steps=[services.PlannedStep(k, "cpu", profile) for k in (JobKind.PARITY, JobKind.BENCHMARK, JobKind.RECOMMEND)],
    )
    jobs = {j.kind: j for j in run.jobs.all()}
    for name in ("fast-int8", "slow-fp32"):
        precision = "int8" if "int8" in name else "fp32"
        Artifact.objects.create(
            version=version, kind=ArtifactKind.VARIANT, name=f"{profile.slug}/{name}", format="onnx",
            sha256=f"{len(name):064x}", size=100, storage_key="k", job=jobs[JobKind.PARITY],
            metadata={"profile": profile.slug, "backend": "onnxruntime", "precision": precision},
        )  # fmt: skip
    cosine = 0.999 if fast_passes else 0.80
    parity = {
        "variants": {
            "fast-int8": {
                "passed": fast_passes,
                "reasons": [] if fast_passes else ["Cosine similarity on 'logits' is 0.8, below the minimum 0.99."],
                "outputs": [{"name": "logits", "cosine": cosine, "max_abs_error": 0.1}],
            },
            "slow-fp32": {
                "passed": True,
                "reasons": [],
                "outputs": [{"name": "logits", "cosine": 1.0, "max_abs_error": 0}],
            },
        }
    }
    benchmark = {
        "baseline": {"points": [_point(slow_p99 * 1.1)]},
        "variants": {"fast-int8": {"points": [_point(fast_p99)]}, "slow-fp32": {"points": [_point(slow_p99)]}},
    }
    Job.objects.filter(pk=jobs[JobKind.PARITY].pk).update(status=JobStatus.SUCCEEDED, result=parity)
    Job.objects.filter(pk=jobs[JobKind.BENCHMARK].pk).update(status=JobStatus.SUCCEEDED, result=benchmark)
    Job.objects.filter(pk=jobs[JobKind.RECOMMEND].pk).update(status=JobStatus.QUEUED)
    return services.claim(jobs[JobKind.RECOMMEND].pk, "test", "t")


def test_a_faster_variant_that_breaks_accuracy_is_not_recommended(broker):
    profile = HardwareProfile.objects.get(slug="x86-cpu")
    job = _run(ModelVersionFactory(), profile, fast_passes=False, fast_p99=1.0, slow_p99=5.0)
    result = run_recommend(job, lambda *a: None).result
    assert result["winner"]["name"] == "slow-fp32"
    lost = {o["name"]: o["reason"] for o in result["others"] + ([result["runner_up"]] if result["runner_up"] else [])}
    assert "cosine" in lost["fast-int8"].lower()
