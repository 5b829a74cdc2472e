"""Models that broke the pipeline on invented inputs, uploaded as a new user would: no validation
or calibration file, no declarations (issue 15).

Each model is built by `tests/engine/test_inputs.py` (a detector whose sizes must be multiples of
32, a stateful model whose sample rate must be 8000 or 16000 and whose state has its batch on
axis 1, a token model) and goes through the whole pipeline on a real worker: it must reach
`ready` with a recommendation for the x86 CPU profile, measured at the sizes its input plan
chose, with reports that say the inputs were generated and how. A model whose valid inputs
can't be read off its graph fails with a sentence naming the input and what to declare, and
reaches `ready` once that is declared.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from onnx import TensorProto, helper, numpy_helper

from apps.registry.models import ModelVersion, VersionStatus
from tests.conftest import client_for
from tests.engine.test_inputs import OPSET, detector, stateful, token_model
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PROFILE = "x86-cpu"
# One point per variant where the batch sweep checks nothing more: the suite's time goes to the
# benchmark, three fresh processes per variant and point.
SINGLE_POINT = json.dumps({"batch_sizes": [1], "concurrency": [1]})
STEPS = ["inspect", "validate", "optimize", "parity", "benchmark", "recommend"]


def _upload(client, path: Path, slug: str, **extra: Any) -> dict[str, Any]:
    """Upload the model file alone (plus `extra` form fields) for the x86 CPU profile."""
    response = client.post(
        f"/api/v1/models/{slug}/versions/",
        {"file": SimpleUploadedFile(path.name, path.read_bytes()), "team": "vision", "profiles": PROFILE, **extra},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return response.json()


def _finished(client, version_id: int) -> dict[str, Any]:
    def done():
        body = client.get(f"/api/v1/versions/{version_id}/").json()
        return body if body["status"] in (VersionStatus.READY, VersionStatus.FAILED) else None

    return wait_for(done, timeout=600, what=f"version {version_id} to finish its pipeline")


def _ready_with_a_recommendation(body: dict[str, Any]) -> dict[str, Any]:
    """Check that the version is ready on generated inputs alone, with a measured recommendation
    for the profile and reports that say how the inputs were made; return its reports."""
    assert body["status"] == VersionStatus.READY, body["latest_run"]
    assert [job["kind"] for job in body["latest_run"]["jobs"]] == STEPS
    assert [job["status"] for job in body["latest_run"]["jobs"]] == ["succeeded"] * len(STEPS)
    assert body["profile_readiness"] == [
        {"profile": PROFILE, "status": "ready", "reason": "", "step": None, "service_note": "", "hardware_note": ""}
    ]
    version = ModelVersion.objects.get(pk=body["id"])
    assert version.validation is None and version.calibration is None, "no side files were uploaded"
    reports = body["reports"]

    # A recommendation that rests on measurements: a winner that passed parity, or keeping the
    # original model, which was measured.
    recommendation = reports["recommend"][PROFILE]
    parity, benchmark = reports["parity"][PROFILE], reports["benchmark"][PROFILE]
    if recommendation["winner"] is not None:
        assert recommendation["winner"]["name"] in parity["passed"], recommendation
        assert benchmark["variants"][recommendation["winner"]["name"]]["points"]
    else:
        assert recommendation["use_baseline"] and recommendation["baseline_value"] is not None, recommendation
    assert benchmark["baseline"]["points"], benchmark["baseline"].get("error")

    # Parity and the benchmark say their inputs were generated, and how: the inspection's plan.
    plan = reports["inspect"]["input_plan"]
    assert plan["description"].startswith("generated: ")
    for report in (parity["inputs"], benchmark["inputs"]):
        assert report["source"] == "generated inputs", report
        assert report["description"] == plan["description"], report
    return reports


def _measured_shapes(benchmark: dict[str, Any]) -> list[dict[str, dict[str, list[int]]]]:
    """The input shapes every measured entry (the original and each variant) was fed, by batch
    size then input name."""
    entries = [benchmark["baseline"], *benchmark["variants"].values()]
    return [
        {str(batch): {name: list(spec["shape"]) for name, spec in inputs.items()}}
        for entry in entries
        if entry.get("points")
        for batch, inputs in entry["inputs"].items()
    ]


def test_detector_needing_multiples_of_32_is_measured_at_640_not_at_1_pixel(personas, celery_worker_process, tmp_path):
    client = client_for(personas.owner)
    body = _finished(
        client, _upload(client, detector(tmp_path / "detector.onnx"), "detector", benchmark=SINGLE_POINT)["id"]
    )
    reports = _ready_with_a_recommendation(body)

    plan = reports["inspect"]["input_plan"]
    assert plan["dims"] == {"height": 640, "width": 640}
    assert any("multiples of 32" in assumption for assumption in plan["assumptions"])
    assert plan["description"] == (
        "generated: images: image-like 1x3x640x640 in [0, 255] from the model's normalisation (Div after the input)"
    )
    shapes = _measured_shapes(reports["benchmark"][PROFILE])
    assert shapes, "the original and the variants were measured"
    for by_batch in shapes:
        for batch, inputs in by_batch.items():
            _, channels, height, width = inputs["images"]
            assert channels == 3 and (height, width) == (640, 640), (batch, inputs)


def test_stateful_model_gets_its_valid_rates_and_a_state_batched_on_axis_1(personas, celery_worker_process, tmp_path):
    client = client_for(personas.owner)
    body = _finished(client, _upload(client, stateful(tmp_path / "vad.onnx"), "vad")["id"])
    reports = _ready_with_a_recommendation(body)

    description = reports["inspect"]["input_plan"]["description"]
    assert "sr: scalar one of 8000, 16000 from the model's comparisons (Equal)" in description
    assert "state: zeros 2x1x128" in description and "input: audio-like signal 1x512" in description
    shapes = _measured_shapes(reports["benchmark"][PROFILE])
    assert {batch for by_batch in shapes for batch in by_batch} == {"1", "8"}, "the profile's batch sweep"
    for by_batch in shapes:
        for batch, inputs in by_batch.items():
            # The batch goes on the state's axis 1, as its signature [2, batch, 128] says.
            assert inputs == {"input": [int(batch), 512], "sr": [], "state": [2, int(batch), 128]}, batch


def test_token_model_is_fed_ids_within_its_vocabulary(personas, celery_worker_process, tmp_path):
    client = client_for(personas.owner)
    body = _finished(
        client, _upload(client, token_model(tmp_path / "tokens.onnx"), "tokens", benchmark=SINGLE_POINT)["id"]
    )
    reports = _ready_with_a_recommendation(body)

    description = reports["inspect"]["input_plan"]["description"]
    assert "input_ids: token ids 1x128 in [0, 49] from the embedding table (vocabulary 50)" in description
    assert "attention_mask: attention mask 1x128" in description
    for by_batch in _measured_shapes(reports["benchmark"][PROFILE]):
        for batch, inputs in by_batch.items():
            assert inputs == {"input_ids": [int(batch), 128], "attention_mask": [int(batch), 128]}, batch


def rate_checked_by_arithmetic(path: Path) -> Path:
    """Audio [batch, samples] scaled by a sample rate `sr` that must be a positive multiple of
    8000: the graph checks it with Mod and Greater, so the values it takes appear in no
    comparison that Slipway could read them from. Any other rate takes an If branch that fails
    (an index past the end of a table), as the real model's rate check does."""
    const = numpy_helper.from_array
    then_branch = helper.make_graph(
        [
            helper.make_node("Cast", ["sr"], ["rate"], to=TensorProto.FLOAT),
            helper.make_node("Div", ["rate", "k16000f"], ["then_gain"]),
        ],
        "valid_rate",
        [],
        [helper.make_tensor_value_info("then_gain", TensorProto.FLOAT, [])],
        [const(np.array(16000.0, np.float32), "k16000f")],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Gather", ["table", "past_the_end"], ["else_gain"])],
        "invalid_rate",
        [],
        [helper.make_tensor_value_info("else_gain", TensorProto.FLOAT, [])],
        [const(np.ones(4, np.float32), "table"), const(np.array(4, np.int64), "past_the_end")],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Mod", ["sr", "k8000"], ["remainder"]),
            helper.make_node("Equal", ["remainder", "zero"], ["multiple"]),
            helper.make_node("Greater", ["sr", "zero"], ["positive"]),
            helper.make_node("And", ["multiple", "positive"], ["valid"]),
            helper.make_node("If", ["valid"], ["gain"], then_branch=then_branch, else_branch=else_branch),
            helper.make_node("Mul", ["input", "gain"], ["scaled"]),
        ],
        "rate_by_arithmetic",
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "samples"]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["batch", "samples"])],
        [const(np.array(8000, np.int64), "k8000"), const(np.array(0, np.int64), "zero")],
    )
    model = helper.make_model(graph, opset_imports=OPSET)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def test_a_rate_the_graph_does_not_reveal_fails_naming_it_then_runs_once_declared(
    personas, celery_worker_process, tmp_path
):
    client = client_for(personas.owner)
    path = rate_checked_by_arithmetic(tmp_path / "rate.onnx")
    body = _finished(client, _upload(client, path, "rate", benchmark=SINGLE_POINT)["id"])
    assert body["status"] == VersionStatus.FAILED, body["latest_run"]
    failed = next(job for job in body["latest_run"]["jobs"] if job["status"] == "failed")
    assert failed["kind"] == "parity", failed
    message = failed["error"]
    # The sentence names the input, the value it was given, and the declaration that fixes it.
    assert re.search(r"'sr' (was|took) \d", message) and '{"inputs": {"sr": {"values": [...]}}}' in message, message
    assert message.endswith("."), message

    declarations = {"inputs": {"sr": {"values": [8000, 16000]}}}
    body = _finished(
        client, _upload(client, path, "rate", benchmark=SINGLE_POINT, input_declarations=json.dumps(declarations))["id"]
    )
    reports = _ready_with_a_recommendation(body)
    assert body["input_declarations"] == {**declarations, "dims": {}}
    assert "sr: scalar one of 8000, 16000 from your declaration" in reports["inspect"]["input_plan"]["description"]
