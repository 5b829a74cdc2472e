"""Upload -> inspect end to end: PostgreSQL, Redis and a separate Celery worker process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.pipeline.models import Job, JobStatus
from apps.registry.models import Artifact, ModelVersion, VersionStatus
from tests import modelzoo
from tests.conftest import client_for
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _upload(client, path: Path, slug: str, **extra: str) -> dict:
    with open(path, "rb") as fh:
        response = client.post(
            f"/api/v1/models/{slug}/versions/",
            {"file": SimpleUploadedFile(path.name, fh.read()), "team": "vision", **extra},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    return response.json()


def _finished(client, version_id: int) -> dict:
    def done():
        body = client.get(f"/api/v1/versions/{version_id}/").json()
        return body if body["status"] in (VersionStatus.READY, VersionStatus.FAILED) else None

    return wait_for(done, what=f"version {version_id} to finish its pipeline")


def test_real_text_detector_from_a_pypi_package_is_inspected(personas, celery_worker_process):
    client = client_for(personas.owner)
    # Its symbolic height and width are planned at a detector's 640 px (multiples of 32), where one
    # batch of 8 takes seconds: benchmark batch 1 only, as this test is about inspection.
    single_point = json.dumps({"batch_sizes": [1], "concurrency": [1]})
    created = _upload(client, modelzoo.rapidocr_det_model_path(), "ocr-detector", benchmark=single_point)
    body = _finished(client, created["id"])
    assert body["status"] == VersionStatus.READY, body
    job = body["latest_run"]["jobs"][0]
    assert job["status"] == JobStatus.SUCCEEDED and job["progress"] == 1.0 and job["attempt"] == 1
    assert job["worker_host"]
    report = body["reports"]["inspect"]
    ops = {(op["domain"], op["op_type"]): op["count"] for op in report["op_counts"]}
    assert ops[("ai.onnx", "Conv")] > 10
    (image,) = report["inputs"]
    assert image["dtype"] == "float32" and len(image["shape"]) == 4
    assert isinstance(image["shape"][0], str), "the symbolic batch dimension is kept"
    assert report["parameters"]["count"] > 1_000_000
    assert report["flops"]["total"] > 0


def test_built_cnn_and_zip_with_external_data_are_inspected(personas, celery_worker_process, tmp_path):
    client = client_for(personas.owner)
    cnn = modelzoo.make_cnn_onnx(tmp_path / "cnn.onnx")
    ext = modelzoo.make_mlp_onnx(tmp_path / "ext" / "model.onnx", with_external_data=True)
    archive = modelzoo.make_zip(tmp_path / "ext.zip", {p.name: p for p in ext.parent.iterdir()})
    ids = [_upload(client, cnn, "cnn")["id"], _upload(client, archive, "mlp-ext")["id"]]
    for version_id in ids:
        body = _finished(client, version_id)
        assert body["status"] == VersionStatus.READY, body["latest_run"]
    ext_report = client.get(f"/api/v1/versions/{ids[1]}/").json()["reports"]["inspect"]
    assert ext_report["external_data"], "external data files are listed"


def test_broken_models_fail_readably_and_the_worker_keeps_going(personas, celery_worker_process, tmp_path):
    client = client_for(personas.owner)
    good = modelzoo.make_cnn_onnx(tmp_path / "cnn.onnx")
    # One flipped bit in an operator's name ("Conv" -> "Cono"): still parses, fails the checker.
    flipped = tmp_path / "flipped.onnx"
    flipped.write_bytes(good.read_bytes())
    modelzoo.bitflip(flipped, good.read_bytes().index(b"Conv") + 3, bit=0)
    ext = modelzoo.make_mlp_onnx(tmp_path / "ext" / "model.onnx", with_external_data=True)
    no_data = modelzoo.make_zip(tmp_path / "nodata.zip", {"model.onnx": ext})
    failed = []
    for path, slug in ((flipped, "flipped"), (no_data, "no-data")):
        body = _finished(client, _upload(client, path, slug)["id"])
        assert body["status"] == VersionStatus.FAILED
        job = body["latest_run"]["jobs"][0]
        assert job["status"] == JobStatus.FAILED and job["error"].endswith(".")
        failed.append(job)
    assert failed[1]["error_code"] == "missing_external_data"
    assert "external" in failed[1]["error"]
    # The same worker process is still alive and serving.
    assert celery_worker_process.poll() is None
    body = _finished(client, _upload(client, good, "after-failures")["id"])
    assert body["status"] == VersionStatus.READY
    # Failed runs keep the upload itself (the source artifact) and produce no other outputs.
    failed_versions = ModelVersion.objects.filter(status=VersionStatus.FAILED)
    assert failed_versions.count() == 2
    assert not Artifact.objects.filter(version__in=failed_versions).exclude(kind="source").exists()
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 0
    assert ModelVersion.objects.filter(status=VersionStatus.PROCESSING).count() == 0


def test_the_running_worker_describes_itself(personas, celery_worker_process):
    client = client_for(personas.viewer)

    def registered():
        workers = [w for w in client.get("/api/v1/workers/").json() if w["name"].startswith("it@")]
        return workers[0] if workers and workers[0]["status"] == "online" else None

    worker = wait_for(registered, timeout=60, what="the worker to register and beat")
    assert {"cpu", "default"} <= set(worker["queues"])
    assert "import-sklearn-skops" in worker["queues"] and "sklearn-skops" in worker["importers"]
    assert worker["runtimes"]["onnxruntime"] and worker["cores"] >= 1 and worker["memory_bytes"] > 0
