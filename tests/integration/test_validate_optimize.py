"""Upload -> inspect -> validate -> optimize on a real worker: the op-support matrix and variants
that are stored as artifacts, each loadable and runnable."""

from __future__ import annotations

import platform
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.registry.models import Artifact, ArtifactKind, VersionStatus
from apps.registry.storage import materialize
from tests import modelzoo
from tests.conftest import client_for
from tests.integration.conftest import wait_for
from workers.engine.backends.registry import get_backend
from workers.engine.reports import (
    BenchmarkReport,
    InspectReport,
    OptimizeReport,
    ParityReport,
    RecommendReport,
    ValidateReport,
)
from workers.engine.typed import from_dict

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _finished(client, version_id: int) -> dict:
    def done():
        body = client.get(f"/api/v1/versions/{version_id}/").json()
        return body if body["status"] in (VersionStatus.READY, VersionStatus.FAILED) else None

    return wait_for(done, timeout=300, what=f"version {version_id} to finish its pipeline")


def _runnable_path(artifact: Artifact, workdir: Path) -> Path:
    """Fetch a variant artifact and return the file its backend loads."""
    if artifact.format.endswith("zip"):
        bundle = materialize(artifact.storage_key, workdir / "bundle.zip")
        with zipfile.ZipFile(bundle) as archive:
            archive.extractall(workdir / "files")
        return workdir / "files" / artifact.metadata["main_file"]
    return materialize(artifact.storage_key, workdir / artifact.metadata["main_file"])


def test_cnn_gets_a_support_matrix_and_at_least_four_runnable_variants(personas, celery_worker_process, tmp_path):
    cnn = modelzoo.make_cnn_onnx(tmp_path / "cnn.onnx")
    rng = np.random.default_rng(0)
    calibration = tmp_path / "calibration.npz"
    (input_name,) = [i.name for i in onnx.load(str(cnn)).graph.input]
    np.savez(calibration, **{input_name: rng.standard_normal((16, 3, 32, 32)).astype(np.float32)})

    client = client_for(personas.owner)
    response = client.post(
        "/api/v1/models/cnn/versions/",
        {
            "file": SimpleUploadedFile("cnn.onnx", cnn.read_bytes()),
            "calibration": SimpleUploadedFile("calibration.npz", calibration.read_bytes()),
            "profiles": "x86-cpu",
            "team": "vision",
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = _finished(client, response.json()["id"])
    assert body["status"] == VersionStatus.READY, body["latest_run"]
    kinds = [j["kind"] for j in body["latest_run"]["jobs"]]
    assert kinds == ["inspect", "validate", "optimize", "parity", "benchmark", "recommend"]
    assert [j["status"] for j in body["latest_run"]["jobs"]] == ["succeeded"] * 6

    # Every key a worker wrote is one its report's type declares (and so the browser's types).
    assert from_dict(InspectReport, body["reports"]["inspect"], strict=True).input_plan is not None
    validate = body["reports"]["validate"]["x86-cpu"]
    assert from_dict(ValidateReport, validate, strict=True).reports["onnxruntime"].verdict == "full"
    assert from_dict(OptimizeReport, body["reports"]["optimize"]["x86-cpu"], strict=True).variants
    assert from_dict(RecommendReport, body["reports"]["recommend"]["x86-cpu"], strict=True).profile == "x86-cpu"
    assert validate["reports"]["onnxruntime"]["verdict"] == "full"
    matrix = validate["matrix"]
    ops = {row["op_type"]: row for row in matrix["rows"]}
    assert ops["Conv"]["cells"]["onnxruntime"]["status"] == "supported"
    assert set(matrix["backends"]) == {"onnxruntime", "openvino"}

    optimize = body["reports"]["optimize"]["x86-cpu"]
    variants = Artifact.objects.filter(version_id=body["id"], kind=ArtifactKind.VARIANT)
    assert variants.count() == len(optimize["variants"]) >= 4
    names = {v["name"] for v in optimize["variants"]}
    assert "ort-int8-static-qdq" in names or any("static" in n for n in names), names

    # Parity: every variant compared with the FP32 original on the same inputs.
    parity = body["reports"]["parity"]["x86-cpu"]
    assert set(from_dict(ParityReport, parity, strict=True).variants) == names
    assert set(parity["variants"]) == names
    assert parity["variants"]["ort-opt-basic"]["passed"] is True
    for result in parity["variants"].values():
        assert result["outputs"] and all("cosine" in o and "max_abs_error" in o for o in result["outputs"])
    # Benchmark: the sweep for the original and each variant, with raw samples for plots.
    benchmark = body["reports"]["benchmark"]["x86-cpu"]
    # Every key the worker wrote is one the report's type declares (and so the browser's types).
    typed = from_dict(BenchmarkReport, benchmark, strict=True)
    assert typed.baseline.points and typed.baseline.device_kind == "cpu"
    baseline_points = benchmark["baseline"]["points"]
    assert baseline_points and baseline_points[0]["p50_ms"] > 0 and baseline_points[0]["samples_ms"]
    # every variant is measured, those in another format than ONNX (OpenVINO IR) too: they are fed
    # by the original model's inputs
    assert set(benchmark["variants"]) == names
    unmeasured = {n: v.get("error") for n, v in benchmark["variants"].items() if not v.get("points")}
    assert not unmeasured, unmeasured
    assert any(n.startswith("ov-ir") for n in names), names
    measured = list(benchmark["variants"].values())
    for point in (p for v in measured for p in v["points"]):
        assert point["p50_ms"] <= point["max_ms"] and point["throughput"] > 0 and point["samples"] > 0
        low, high = point["p50_ci_ms"]
        assert low <= point["p50_ms"] <= high
        if point["p99_ms"] is None:  # a short test run: p99 needs 1,000 samples, and the report says so
            assert point["p99_note"].startswith(f"not enough samples ({point['samples']}) for p99")
        else:
            assert point["p50_ms"] <= point["p99_ms"] <= point["max_ms"]
    # Recommendation: the fastest variant that passed parity, with the runner-up and why others lost.
    recommendation = body["reports"]["recommend"]["x86-cpu"]
    assert recommendation["objective"] == "p99_latency_batch1"
    winner = recommendation["winner"]
    assert winner is not None and winner["name"] in parity["passed"]
    assert recommendation["runner_up"] is not None
    assert all(other["reason"] for other in recommendation["others"])
    assert body["previous_approved"] is None  # no earlier approved version

    reference = get_backend("onnxruntime").load(cnn)
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    expected = next(iter(reference.run({input_name: x}).values()))
    for artifact in variants:
        assert artifact.parent_id == body["source_artifact"]["id"] and artifact.job_id is not None
        workdir = tmp_path / artifact.name.replace("/", "_")
        session = get_backend(artifact.metadata["backend"]).load(_runnable_path(artifact, workdir))
        got = next(iter(session.run({input_name: x}).values()))
        session.close()
        cosine = float(np.dot(got.ravel(), expected.ravel()) / (np.linalg.norm(got) * np.linalg.norm(expected)))
        assert cosine > 0.95, (artifact.name, cosine)


@pytest.fixture
def embedded_here(transactional_db) -> str:
    """MNN and ncnn on this machine's own CPU. The seeded arm-cpu-mnn profile needs an aarch64
    machine (issue 18: no x86 worker measures for it), so the embedded runtimes' builds,
    parity and benchmarks run here under a profile that names the hardware they run on."""
    from apps.hardware import seeded_profiles
    from apps.hardware.models import HardwareProfile

    arm = seeded_profiles.profile("arm-cpu-mnn")
    HardwareProfile.objects.create(
        slug="embedded-here",
        name="MNN and ncnn on this machine",
        device_kind="cpu",
        backends=list(arm["backends"]),
        precisions=list(arm["precisions"]),
        queue="cpu",
        requirements={"arch": [platform.machine()]},
        options=dict(arm["options"]),
    )
    return "embedded-here"


def test_embedded_profile_builds_mnn_and_ncnn_variants_and_a_custom_op_is_named(
    personas, celery_worker_process, tmp_path, embedded_here
):
    from onnx import TensorProto, helper

    client = client_for(personas.owner)
    cnn = modelzoo.make_cnn_onnx(tmp_path / "cnn.onnx")
    response = client.post(
        "/api/v1/models/cnn-arm/versions/",
        {"file": SimpleUploadedFile("cnn.onnx", cnn.read_bytes()), "profiles": embedded_here, "team": "vision"},
        format="multipart",
    )
    body = _finished(client, response.json()["id"])
    assert body["status"] == VersionStatus.READY, body["latest_run"]
    built = {v["backend"] for v in body["reports"]["optimize"][embedded_here]["variants"]}
    assert built == {"mnn", "ncnn"}
    # .mnn and .param/.bin variants are benchmarked with the original model's inputs
    benchmarked = body["reports"]["benchmark"][embedded_here]["variants"]
    unmeasured = {n: v.get("error") for n, v in benchmarked.items() if not v.get("points")}
    assert benchmarked and not unmeasured, unmeasured

    # A model with an op from a custom domain: every backend names it, none crashes the step.
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Foo", ["r"], ["y"], domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)], ir_version=9
    )
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    response = client.post(
        "/api/v1/models/custom-op/versions/",
        {"file": SimpleUploadedFile("custom.onnx", path.read_bytes()), "profiles": "x86-cpu", "team": "vision"},
        format="multipart",
    )
    body = _finished(client, response.json()["id"])
    validate = body["reports"]["validate"]["x86-cpu"]
    # A backend's refusal is declared by the report's type too.
    assert from_dict(ValidateReport, validate, strict=True).reports["onnxruntime"].verdict != "full"
    foo = next(row for row in validate["matrix"]["rows"] if row["op_type"] == "Foo")
    for backend in ("onnxruntime", "openvino"):
        assert foo["cells"][backend]["status"] == "unsupported", foo
        assert foo["cells"][backend]["reason"]
    relu = next(row for row in validate["matrix"]["rows"] if row["op_type"] == "Relu")
    assert relu["cells"]["onnxruntime"]["status"] == "supported"


def test_an_op_mnn_refuses_is_rewritten_and_its_variants_run_there(
    personas, celery_worker_process, tmp_path, embedded_here
):
    """Mish, which MNN's converter refuses, is expanded into ONNX's own definition of it: the
    matrix says MNN runs it after that rewrite, and MNN's variants, built from the rewritten
    model, pass parity against the original and are benchmarked."""
    client = client_for(personas.owner)
    model = modelzoo.make_activation_cnn_onnx(tmp_path / "mish.onnx", "Mish")
    response = client.post(
        "/api/v1/models/mish-arm/versions/",
        {"file": SimpleUploadedFile("mish.onnx", model.read_bytes()), "profiles": embedded_here, "team": "vision"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = _finished(client, response.json()["id"])
    assert body["status"] == VersionStatus.READY, body["latest_run"]
    matrix = body["reports"]["validate"][embedded_here]["matrix"]
    mish = next(row for row in matrix["rows"] if row["op_type"] == "Mish")
    assert mish["cells"]["mnn"]["status"] == "unsupported"
    assert mish["cells"]["mnn"]["after_rewrite"] == "expand-functions"
    assert mish["cells"]["ncnn"]["status"] == "supported"
    assert "mnn runs the model after rewrite expand-functions" in matrix["remedies"]["mnn"]["summary"]

    variants = body["reports"]["optimize"][embedded_here]["variants"]
    rewritten = {v["name"] for v in variants if v["backend"] == "mnn"}
    assert rewritten and all(
        v["options"]["rewrites"] == ["expand-functions"] for v in variants if v["backend"] == "mnn"
    ), variants
    parity = body["reports"]["parity"][embedded_here]["variants"]
    fp32 = next(v["name"] for v in variants if v["backend"] == "mnn" and v["precision"] == "fp32")
    assert parity[fp32]["passed"] is True, parity[fp32]
    benchmark = body["reports"]["benchmark"][embedded_here]["variants"]
    assert all(benchmark[name].get("points") for name in rewritten), {n: benchmark[n] for n in rewritten}
