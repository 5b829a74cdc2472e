"""Framework files in, validated ONNX out: each format built by the test, uploaded, imported on a
real worker (in the sandbox), checked for parity against the framework, then inspected and
validated like any ONNX upload."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.registry.models import Artifact, ArtifactKind, VersionStatus
from tests.conftest import client_for
from tests.integration.conftest import wait_for
from workers.engine.reports import ImportReport
from workers.engine.typed import from_dict

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MLP_INPUTS = [{"name": "x", "shape": ["batch", 8], "dtype": "float32"}]


def build_torchscript(path: Path) -> Path:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def build_exported_program(path: Path) -> Path:
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(module, (torch.randn(4, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def _keras_model():
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((8,), name="x"), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)]
    )


def build_keras(path: Path) -> Path:
    _keras_model().save(path)
    return path


def build_tflite(path: Path) -> Path:
    tf = pytest.importorskip("tensorflow")
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(_keras_model()).convert())
    return path


def build_skops(path: Path) -> Path:
    skops_io = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    skops_io.dump(make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y), path)
    return path


CASES = {
    # slug: (builder, filename, declared inputs or None, framework)
    "torchscript-mlp": (build_torchscript, "mlp.pt", MLP_INPUTS, "pytorch"),
    "exported-mlp": (build_exported_program, "mlp.pt2", None, "pytorch"),
    "keras-mlp": (build_keras, "mlp.keras", None, "keras"),
    "tflite-mlp": (build_tflite, "mlp.tflite", None, "tflite"),
    "sklearn-pipeline": (build_skops, "pipeline.skops", None, "sklearn"),
}


def _upload(client, slug: str, path: Path, inputs=None):
    data = {"file": SimpleUploadedFile(path.name, path.read_bytes()), "team": "vision", "profiles": "x86-cpu"}
    if inputs is not None:
        data["inputs"] = json.dumps(inputs)
    return client.post(f"/api/v1/models/{slug}/versions/", data, format="multipart")


def test_each_framework_format_reaches_a_validated_onnx_artifact_with_parity(personas, celery_worker_process, tmp_path):
    client = client_for(personas.owner)
    uploaded = {}
    for slug, (build, filename, inputs, framework) in CASES.items():
        response = _upload(client, slug, build(tmp_path / filename), inputs)
        assert response.status_code == 201, (slug, response.content)
        body = response.json()
        assert body["framework"] == framework, slug
        assert body["latest_run"]["jobs"][0]["kind"] == "import"
        uploaded[slug] = body["id"]

    for slug, version_id in uploaded.items():

        def finished(version_id=version_id):
            body = client.get(f"/api/v1/versions/{version_id}/").json()
            return body if body["status"] in (VersionStatus.READY, VersionStatus.FAILED) else None

        body = wait_for(finished, timeout=600, what=f"{slug} to be imported and validated")
        assert body["status"] == VersionStatus.READY, (slug, body["latest_run"])
        report = body["reports"]["import"]
        assert from_dict(ImportReport, report, strict=True).artifact_id, slug  # every key written is declared
        assert report["parity"], slug
        assert all(output["passed"] for output in report["parity"]), (slug, report["parity"])
        assert report["framework_version"] and report["converter_version"], slug
        onnx_artifact = Artifact.objects.get(version_id=version_id, kind=ArtifactKind.ONNX)
        assert onnx_artifact.parent_id == body["source_artifact"]["id"]
        assert onnx_artifact.tool_versions, slug
        # The later steps worked on the imported ONNX model, not on the framework file.
        assert body["reports"]["inspect"]["inputs"], slug
        assert body["reports"]["validate"]["x86-cpu"]["reports"]["onnxruntime"]["verdict"] == "full", slug


def test_a_pickle_with_a_payload_is_refused_at_upload_and_never_run(personas, tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Payload()))
    response = _upload(client_for(personas.owner), "pickled", path)
    assert response.status_code == 400
    assert response.json()["code"] == "pickle_refused"
    assert "skops" in response.json()["message"]
    assert not marker.exists()
