"""The playground's API: POST /versions/<pk>/trials/ stores the input and sends the trial to a
worker; GET /trials/<pk>/ polls it; GET /versions/<pk>/trials/ lists the recent ones.

Scoped like every version route (outsiders get a 404), run only by members who may upload or
review; fields that don't read are 400s naming the field, a version with nothing inspected a 409.
The worker's task runs the original and a variant in the real sandbox."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.pipeline.models import Job, JobKind, Trial, TrialStatus
from apps.pipeline.trials import RUN_TRIAL_TASK
from apps.registry.models import Artifact
from apps.registry.storage import put_blob, sha256_file
from tests.conftest import client_for
from tests.engine.test_playground import classifier
from tests.finished import finished_version
from workers.tasks.trials import run_trial

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(personas):
    return finished_version(team=personas.team, uploader=personas.owner)


def png(colour: tuple[int, int, int] = (255, 0, 0)) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, format="PNG")
    return SimpleUploadedFile("red.png", buffer.getvalue(), content_type="image/png")


def post(client, version, **fields):
    return client.post(f"/api/v1/versions/{version.pk}/trials/", {"file": png(), **fields}, format="multipart")


def test_a_member_requests_a_trial_and_it_goes_to_a_worker(
    personas, version, broker, django_capture_on_commit_callbacks
):
    sent = broker.view(lambda m: (m.task, m.object_id, m.queue), [RUN_TRIAL_TASK])
    with django_capture_on_commit_callbacks(execute=True):
        answer = post(client_for(personas.owner), version, variants="original, x86-cpu/ort-int8")

    assert answer.status_code == 202, answer.json()
    body = answer.json()
    assert body["status"] == "queued" and body["variants"] == ["x86-cpu/ort-int8"]
    assert body["input_name"] == "red.png" and body["requested_by"] == "dana" and body["result"] is None
    assert list(sent) == [(RUN_TRIAL_TASK, body["id"], "cpu")]
    polled = client_for(personas.approver).get(f"/api/v1/trials/{body['id']}/")
    assert polled.status_code == 200 and polled.json()["status"] == "queued"
    listed = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/trials/").json()
    assert [t["id"] for t in listed["results"]] == [body["id"]]


def test_outsiders_see_nothing_and_viewers_may_not_run(personas, version, broker):
    trial = post(client_for(personas.owner), version).json()
    outsider = client_for(personas.outsider)
    assert post(outsider, version).status_code == 404
    assert outsider.get(f"/api/v1/trials/{trial['id']}/").status_code == 404
    assert outsider.get(f"/api/v1/versions/{version.pk}/trials/").status_code == 404
    refused = post(client_for(personas.viewer), version)
    assert refused.status_code == 403 and "viewer" in refused.json()["message"]
    assert post(client_for(personas.approver), version).status_code == 202
    assert Trial.objects.count() == 2


def test_an_unknown_variant_is_a_400_listing_the_versions_variants(personas, version, broker):
    answer = post(client_for(personas.owner), version, variants="x86-cpu/tensorrt-fp16")
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert message.startswith("variants: x86-cpu/tensorrt-fp16 is not a variant of this version.")
    assert "x86-cpu/ort-int8, x86-cpu/ort-opt" in message
    assert not Trial.objects.exists()


@pytest.mark.parametrize(
    ("preprocessing", "says"),
    [("not json", "preprocessing: give a JSON object"), ('{"colour": 1}', "preprocessing: colour is not")],
)
def test_preprocessing_that_does_not_read_is_a_400(personas, version, broker, preprocessing, says):
    answer = post(client_for(personas.owner), version, preprocessing=preprocessing)
    assert answer.status_code == 400 and answer.json()["message"].startswith(says)


def test_a_missing_or_too_large_file_is_a_400(personas, version, broker, monkeypatch):
    client = client_for(personas.owner)
    missing = client.post(f"/api/v1/versions/{version.pk}/trials/", {"variants": ""}, format="multipart")
    assert missing.status_code == 400 and "file" in missing.json()["message"]
    monkeypatch.setattr("apps.pipeline.trials.MAX_INPUT_BYTES", 10)
    large = post(client, version)
    assert large.status_code == 400 and "a trial takes inputs up to" in large.json()["message"]


def test_a_version_not_inspected_yet_is_a_409(personas, version, broker):
    Job.objects.filter(run__version=version, kind=JobKind.INSPECT).update(status="running")
    answer = post(client_for(personas.owner), version)
    assert answer.status_code == 409
    assert "no inspected ONNX model yet" in answer.json()["message"]


def _stored(path: Path) -> tuple[str, str, int]:
    sha256 = sha256_file(path)
    with path.open("rb") as handle:
        key, _ = put_blob(handle, sha256)
    return key, sha256, path.stat().st_size


def test_the_worker_runs_the_original_and_a_variant_in_the_sandbox(personas, version, broker, tmp_path, settings):
    settings.WORK_DIR = tmp_path / "work"
    settings.SANDBOX_MEMORY_BYTES = 2 * 2**30
    settings.SANDBOX_TIMEOUT_SECONDS = 120
    key, sha256, size = _stored(classifier(tmp_path / "m.onnx"))
    Artifact.objects.filter(pk=version.source_artifact_id).update(storage_key=key, sha256=sha256, size=size)
    Artifact.objects.filter(version=version, name="x86-cpu/ort-int8").update(storage_key=key, sha256=sha256, size=size)
    answer = post(
        client_for(personas.owner), version, variants="x86-cpu/ort-int8", preprocessing='{"resample": "nearest"}'
    )
    trial_id = answer.json()["id"]

    assert run_trial(trial_id) == "succeeded"
    assert run_trial(trial_id) == "not queued"  # a second delivery does nothing

    trial = client_for(personas.owner).get(f"/api/v1/trials/{trial_id}/").json()
    assert trial["status"] == "succeeded", trial["error"]
    result = trial["result"]
    assert result["input"]["applied"][0].startswith("resized 32x24 -> 8x8 nearest, RGB, /255")
    assert result["original"]["outputs"][0]["top"][0]["class"] == 7
    variant = result["variants"]["x86-cpu/ort-int8"]
    assert variant["backend"] == "onnxruntime" and variant["outputs"][0]["top"][0]["class"] == 7
    assert variant["difference"]["outputs"][0]["top1_agreement"] == 1.0


def test_a_bad_input_fails_the_trial_with_a_sentence(personas, version, broker, tmp_path, settings):
    settings.WORK_DIR = tmp_path / "work"
    settings.SANDBOX_MEMORY_BYTES = 2 * 2**30
    settings.SANDBOX_TIMEOUT_SECONDS = 120
    key, sha256, size = _stored(classifier(tmp_path / "m.onnx"))
    Artifact.objects.filter(pk=version.source_artifact_id).update(storage_key=key, sha256=sha256, size=size)
    answer = post(
        client_for(personas.owner), version, preprocessing='{"channel_order": "GRAY", "mean": [0], "std": [1]}'
    )

    assert run_trial(answer.json()["id"]) == "failed"
    trial = Trial.objects.get()
    assert trial.status == TrialStatus.FAILED and trial.error_code == "bad_trial_input"
    assert "takes 3 channels" in trial.error and trial.finished_at is not None


def test_the_form_starts_from_the_preprocessing_the_input_plan_implies(personas, version, tmp_path):
    """GET .../trials/defaults/ reads the inspection's plan (JSON, never the model): a 3-channel
    32x32 NCHW image in [0, 1] is resized to 32x32, RGB, /255, NCHW float32."""
    import onnx

    from tests import modelzoo
    from workers.engine.input_planning import plan_inputs
    from workers.engine.inspection import graph_input_specs

    url = f"/api/v1/versions/{version.pk}/trials/defaults/"
    # finished_version's inspection has no input plan: the worker plans from the graph
    answer = client_for(personas.viewer).get(url).json()
    assert answer["preprocessing"] is None and "no input plan" in answer["note"]

    model = onnx.load(modelzoo.make_cnn_onnx(tmp_path / "cnn.onnx"))
    plan = plan_inputs(model, graph_input_specs(model.graph, numpy_dtypes_only=True))
    inspect = Job.objects.get(run__version=version, kind=JobKind.INSPECT)
    inspect.result = {**inspect.result, "input_plan": plan.to_dict()}
    inspect.save(update_fields=["result"])
    answer = client_for(personas.viewer).get(url).json()
    assert answer["note"] == ""
    assert answer["preprocessing"]["size"] == [32, 32] and answer["preprocessing"]["layout"] == "NCHW"
    assert answer["preprocessing"]["channel_order"] == "RGB" and answer["preprocessing"]["dtype"] == "float32"
    assert answer["preprocessing"]["scale"] == pytest.approx(1 / 255)
    assert client_for(personas.outsider).get(url).status_code == 404

    Job.objects.filter(pk=inspect.pk).update(status="running")
    assert "not been inspected yet" in client_for(personas.viewer).get(url).json()["note"]
