"""A data scientist tries a model on an image in a real browser: a small CNN classifier goes
through the real pipeline, then the version page's "Try it" takes a PNG, shows the
preprocessing the input plan proposes, and has the worker run the original and a variant in the
sandbox; the top classes come back side by side with the variant's difference from the
original. The original's answer is checked against onnxruntime on the same tensor."""

from __future__ import annotations

import numpy as np
import pytest

from apps.pipeline.models import Trial
from tests import modelzoo
from tests.e2e.conftest import SCREENSHOTS
from tests.integration.conftest import uploaded_and_ready

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"  # tests/factories.py gives every user this one


def test_try_a_model_on_an_image_in_a_real_browser(personas, journey, tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    ort = pytest.importorskip("onnxruntime")
    model = modelzoo.make_cnn_onnx(tmp_path / "tiny-cnn.onnx")  # image [1, 3, 32, 32] -> 10 logits
    version = uploaded_and_ready(personas.owner, "tiny-cnn", model)

    # a 64x48 picture: a red-to-blue gradient with a green square
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[..., 0] = np.linspace(255, 0, 64, dtype=np.uint8)[None, :]
    pixels[..., 2] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :]
    pixels[10:30, 20:40, 1] = 220
    image = tmp_path / "gradient.png"
    image_module.fromarray(pixels).save(image)

    found = journey("tryer", username=personas.owner.username, password=PASSWORD, version_id=version.pk, image=image)
    assert not found["console_errors"], found["console_errors"]
    assert found["size_proposed"] == ["32", "32"], found["size_proposed"]
    assert found["runs"][0].startswith("original") and found["runs"][1].startswith(found["variant"]), found["runs"]
    assert any("64x48 -> 32x32" in line for line in found["applied"]), found["applied"]
    assert len(found["top_captions"]) == 2 and found["top_rows"] == 5, found
    assert "cosine" in found["difference"].lower() or "max abs" in found["difference"].lower(), found["difference"]
    assert (SCREENSHOTS / "try-it.png").stat().st_size > 10_000

    # what the worker answered is what onnxruntime says of the same tensor: the picture resized
    # bilinear to 32x32, RGB, /255, NCHW
    trial = Trial.objects.get(version=version)
    assert trial.status == "succeeded" and trial.requested_by == personas.owner
    top = trial.result["original"]["outputs"][0]["top"]
    tensor = (
        np.asarray(
            image_module.fromarray(pixels).resize((32, 32), image_module.Resampling.BILINEAR), np.float32
        ).transpose(2, 0, 1)[None]
        / 255.0
    )
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": tensor})[0][0]
    assert top[0]["class"] == int(np.argmax(logits)), (top, logits)
    assert top[0]["score"] == pytest.approx(float(logits.max()), rel=1e-4, abs=1e-5)
