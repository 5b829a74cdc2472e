"""Caffe, MXNet and PaddlePaddle models, built by the frameworks themselves and uploaded as one zip
each, through the whole pipeline on a real worker: imported in the framework's own environment
inside the sandbox, checked against the framework, then inspected, validated, optimized,
compared, measured and recommended like any ONNX upload (issue 19). A Caffe network with a
layer the converter lacks fails its import with the layer named, and no re-run is offered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.hardware.models import HardwareProfile, Worker
from apps.registry.models import Artifact, ArtifactKind, VersionStatus
from tests.conftest import client_for
from tests.framework_envs import framework_model
from tests.integration.conftest import wait_for
from workers.engine.reports import ImportReport
from workers.engine.typed import from_dict

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PROFILE = "x86-cpu"
SINGLE_POINT = json.dumps({"batch_sizes": [1], "concurrency": [1]})
STEPS = ["import", "inspect", "validate", "optimize", "parity", "benchmark", "recommend"]
CASES = {
    # framework environment: (format, framework, declared inputs or None)
    "caffe": ("caffe", "caffe", None),
    "mxnet": ("mxnet", "mxnet", [{"name": "data", "shape": [1, 3, 32, 32], "dtype": "float32"}]),
    "paddle": ("paddle", "paddlepaddle", None),
}


def _upload(client, slug: str, path: Path, inputs: Any = None) -> dict[str, Any]:
    data = {
        "file": SimpleUploadedFile(path.name, path.read_bytes()),
        "team": "vision",
        "profiles": PROFILE,
        "benchmark": SINGLE_POINT,
    }
    if inputs is not None:
        data["inputs"] = json.dumps(inputs)
    response = client.post(f"/api/v1/models/{slug}/versions/", data, format="multipart")
    assert response.status_code == 201, response.content
    return response.json()


def _finished(client, version_id: int) -> dict[str, Any]:
    def done():
        body = client.get(f"/api/v1/versions/{version_id}/").json()
        return body if body["status"] in (VersionStatus.READY, VersionStatus.FAILED) else None

    return wait_for(done, timeout=900, what=f"version {version_id} to finish its pipeline")


REFERENCE_COLUMNS = ("litert", "rknn", "executorch")


def _validated(version_id: int) -> None:
    from apps.pipeline.models import Job, JobStatus

    def done():
        job = Job.objects.filter(run__version_id=version_id, kind="validate").first()
        return job is not None and job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    wait_for(done, timeout=600, what=f"version {version_id}'s validate step")


@pytest.mark.reference_columns
def test_caffe_mxnet_and_paddle_models_go_from_upload_to_a_recommendation(
    personas, celery_worker_process, tmp_path_factory
):
    client = client_for(personas.owner)
    # The worker's row comes back within a heartbeat when an earlier test's truncation removed it.
    worker = wait_for(
        lambda: Worker.objects.filter(name__startswith="it@", stopped_at__isnull=True).first(),
        timeout=30,
        what="the session worker to register",
    )
    assert set(CASES) <= set(worker.framework_envs), worker.framework_envs
    assert {f"import-{fmt}" for fmt, _, _ in CASES.values()} <= set(worker.queues)

    # x86-cpu's reference columns (three conversions a model) are asked of the Paddle model only,
    # for the suite's budget: it goes first, and the columns are turned off once it is validated.
    uploaded = {}
    for env, (fmt, framework, inputs) in sorted(CASES.items(), key=lambda case: case[0] != "paddle"):
        source = framework_model(env, "small", tmp_path_factory.mktemp(env))
        body = _upload(client, f"{env}-small", source, inputs)
        assert body["framework"] == framework, body
        assert body["source_artifact"]["format"] == fmt
        uploaded[env] = body["id"]
        if env == "paddle":
            _validated(body["id"])
            profile = HardwareProfile.objects.get(slug=PROFILE)
            profile.options = {**profile.options, "report_backends": []}
            profile.save(update_fields=["options"])

    for env, version_id in uploaded.items():
        body = _finished(client, version_id)
        assert body["status"] == VersionStatus.READY, (env, body["latest_run"])
        assert [job["kind"] for job in body["latest_run"]["jobs"]] == STEPS, env
        reports = body["reports"]
        report = reports["import"]
        assert from_dict(ImportReport, report, strict=True).artifact_id, env
        assert all(item["passed"] for item in report["parity"]), (env, report["parity"])
        assert report["tool_versions"]["environment"] == env
        assert any("Parity reference" in note for note in report["notes"]), report["notes"]
        onnx_artifact = Artifact.objects.get(version_id=version_id, kind=ArtifactKind.ONNX)
        assert onnx_artifact.parent_id == body["source_artifact"]["id"]
        validate = reports["validate"][PROFILE]
        assert validate["reports"]["onnxruntime"]["verdict"] == "full", env
        built = {variant["backend"] for variant in reports["optimize"][PROFILE]["variants"]}
        assert not built & set(REFERENCE_COLUMNS), built
        recommendation = reports["recommend"][PROFILE]
        assert recommendation["winner"] is not None or recommendation["use_baseline"], (env, recommendation)
        if env != "paddle":
            assert not validate["matrix"].get("report_only"), validate["matrix"]
            continue
        # x86-cpu's reference columns: each toolchain's own answer, with its reasons, nothing built for it.
        assert validate["matrix"]["report_only"] == sorted(REFERENCE_COLUMNS), validate["matrix"]
        for backend in REFERENCE_COLUMNS:
            column = validate["reports"][backend]
            assert column["installed"] and column["method"] == "converter", (env, backend, column)
            # Each toolchain's own answer: "none" is one (ExecuTorch's torch.export refuses the Caffe
            # net's Pad as onnx2torch converts it), as long as every cell it doesn't support says why.
            assert column["verdict"] in ("full", "partial", "none"), (env, backend, column)
            for row in validate["matrix"]["rows"]:
                cell = row["cells"][backend]
                assert cell["status"] != "unknown", (env, backend, row)
                assert cell["status"] == "supported" or cell["reason"], (env, backend, row)
        assert "RK3588 NPU" in {op["device"] for op in validate["reports"]["rknn"]["ops"]}, env


def test_a_caffe_layer_the_converter_lacks_fails_the_import_naming_it(personas, celery_worker_process, tmp_path):
    client = client_for(personas.owner)
    body = _finished(client, _upload(client, "caffe-custom", framework_model("caffe", "custom_layer", tmp_path))["id"])
    assert body["status"] == VersionStatus.FAILED
    job = body["latest_run"]["jobs"][0]
    assert job["kind"] == "import" and job["status"] == "failed"
    assert job["error_code"] == "unsupported_layer", job
    assert "Python" in job["error"], job


def test_an_rk3588_profile_is_validated_built_and_checked_on_the_simulator_and_waits_for_a_board(
    personas, celery_worker_process, tmp_path
):
    from apps.pipeline.models import Job, JobStatus
    from tests.modelzoo import make_cnn_onnx

    client = client_for(personas.owner)
    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    response = client.post(
        "/api/v1/models/npu-cnn/versions/",
        {"file": SimpleUploadedFile("cnn.onnx", model.read_bytes()), "team": "vision", "profiles": "rk3588-npu"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    version_id = response.json()["id"]

    def parity_done():
        job = Job.objects.filter(run__version_id=version_id, kind="parity").first()
        return job if job is not None and job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED) else None

    parity = wait_for(parity_done, timeout=600, what="the RKNN parity step on the simulator")
    assert parity.status == JobStatus.SUCCEEDED, (parity.error_code, parity.error)
    body = client.get(f"/api/v1/versions/{version_id}/").json()
    support = body["reports"]["validate"]["rk3588-npu"]["reports"]["rknn"]
    assert support["verdict"] == "full" and support["method"] == "converter", support
    optimize = body["reports"]["optimize"]["rk3588-npu"]
    # No calibration data: the FP16 file only, and the report says why INT8 is missing.
    assert [variant["name"] for variant in optimize["variants"]] == ["rknn-fp16"], optimize
    assert any("rknn-int8 was not built" in note for note in optimize["notes"]["rknn"]), optimize["notes"]
    result = parity.result["variants"]["rknn-fp16"]
    assert result["passed"], result
    assert "simulator" in result["notes"][0], result["notes"]
    # The benchmark needs an RK3588 board running a device agent; none serves here, so it waits.
    benchmark = Job.objects.get(run__version_id=version_id, kind="benchmark")
    assert benchmark.status == JobStatus.QUEUED and benchmark.queue == "rk3588", benchmark.status
