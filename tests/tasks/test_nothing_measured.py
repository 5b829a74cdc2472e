"""Steps that measured nothing say so by failing (issue 15, docs/adr/0009): the benchmark step
when every entry failed, the original model's included, and the recommend step rather than
advise keeping an original model that was never measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from django.core.files import File
from onnx import TensorProto, helper, numpy_helper

from apps.hardware.models import HardwareProfile
from apps.pipeline import services
from apps.pipeline.models import Job, JobKind, JobStatus
from apps.registry.models import Artifact, ArtifactKind, VersionStatus
from apps.registry.storage import put_blob, sha256_file
from tests.factories import ModelVersionFactory
from workers.engine.errors import ModelError
from workers.tasks.pipeline import run_job
from workers.tasks.steps.recommend import run_recommend

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(broker):
    """Messages to workers are recorded, not sent."""


def _unreshapeable(path: Path) -> Path:
    """A model that loads but can't run at any batch size it is benchmarked at: it reshapes
    [batch, 4] to [3, -1], which needs a multiple of 3 elements."""
    shape = numpy_helper.from_array(np.array([3, -1], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape_to_3")],
        "unreshapeable",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _stored_version(path: Path):
    version = ModelVersionFactory()
    digest = sha256_file(path)
    with open(path, "rb") as fh:
        key, _ = put_blob(File(fh, name=path.name), digest)
    version.source_artifact = Artifact.objects.create(
        version=version,
        kind=ArtifactKind.SOURCE,
        name="source",
        format="onnx",
        sha256=digest,
        size=path.stat().st_size,
        storage_key=key,
    )
    version.save(update_fields=["source_artifact"])
    return version


def test_a_benchmark_that_measured_nothing_fails_with_every_entrys_reason(tmp_path):
    version = _stored_version(_unreshapeable(tmp_path / "model.onnx"))
    profile = HardwareProfile.objects.get(slug="x86-cpu")
    run = services.start_pipeline(
        version,
        version.created_by,
        steps=[services.PlannedStep(k, "cpu", profile) for k in (JobKind.BENCHMARK, JobKind.RECOMMEND)],
    )
    benchmark = run.jobs.get(kind=JobKind.BENCHMARK)

    assert run_job(benchmark.pk) == "failed"

    benchmark.refresh_from_db()
    assert benchmark.status == JobStatus.FAILED and benchmark.error_code == "nothing_measured"
    assert benchmark.error.startswith(
        "Nothing could be measured on x86-cpu: every benchmark failed, the original model's included. "
        "the original model (onnxruntime): "
    )
    # The runtime's own cause is kept, not cut to its first line.
    assert "reshape" in benchmark.error.lower()
    assert run.jobs.get(kind=JobKind.RECOMMEND).status == JobStatus.CANCELLED
    version.refresh_from_db()
    assert version.status == VersionStatus.FAILED
    assert version.status_reason.startswith("Benchmark: Nothing could be measured on x86-cpu")


def _recommend_job(version, profile, benchmark: dict) -> Job:
    """A run whose parity and benchmark steps are done; its recommend job, claimed."""
    run = services.start_pipeline(
        version,
        version.created_by,
        steps=[services.PlannedStep(k, "cpu", profile) for k in (JobKind.PARITY, JobKind.BENCHMARK, JobKind.RECOMMEND)],
    )
    jobs = {j.kind: j for j in run.jobs.all()}
    Artifact.objects.create(
        version=version, kind=ArtifactKind.VARIANT, name=f"{profile.slug}/ort-int8", format="onnx",
        sha256="1" * 64, size=100, storage_key="k", job=jobs[JobKind.PARITY],
        metadata={"profile": profile.slug, "backend": "onnxruntime", "precision": "int8"},
    )  # fmt: skip
    parity = {"variants": {"ort-int8": {"passed": True, "reasons": [], "outputs": [{"name": "y", "cosine": 1.0}]}}}
    Job.objects.filter(pk=jobs[JobKind.PARITY].pk).update(status=JobStatus.SUCCEEDED, result=parity)
    Job.objects.filter(pk=jobs[JobKind.BENCHMARK].pk).update(status=JobStatus.SUCCEEDED, result=benchmark)
    Job.objects.filter(pk=jobs[JobKind.RECOMMEND].pk).update(status=JobStatus.QUEUED)
    claimed = services.claim(jobs[JobKind.RECOMMEND].pk, "test", "t")
    assert claimed is not None
    return claimed


def test_the_recommendation_never_keeps_an_original_that_was_not_measured():
    profile = HardwareProfile.objects.get(slug="x86-cpu")
    unmeasured = {"error": "The onnxruntime runtime could not load model.onnx: bad opset.", "points": []}
    job = _recommend_job(
        ModelVersionFactory(),
        profile,
        {"baseline": unmeasured, "variants": {"ort-int8": {"error": "It ran out of memory.", "points": []}}},
    )
    with pytest.raises(ModelError) as raised:
        run_recommend(job, lambda *a: None)
    assert raised.value.code == "nothing_measured"
    assert "keep the original" not in raised.value.message.lower()  # no advice resting on nothing
    assert (
        "the original model was not measured either (The onnxruntime runtime could not load model.onnx: bad opset)"
        in (raised.value.message)
    )


def test_keeping_a_measured_original_is_still_a_recommendation():
    profile = HardwareProfile.objects.get(slug="x86-cpu")
    point = {"batch_size": 1, "concurrency": 1, "p50_ms": 1.0, "p99_ms": 1.2, "throughput": 800.0}
    job = _recommend_job(
        ModelVersionFactory(),
        profile,
        {"baseline": {"points": [point]}, "variants": {"ort-int8": {"error": "It ran out of memory.", "points": []}}},
    )
    result = run_recommend(job, lambda *a: None).result
    assert result["winner"] is None and result["use_baseline"] is True
