"""The playground: a user's image, npz or JSON as the model's feeds, run, and told as top
classes, boxes and a bounded summary; the variant's difference from the original."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from workers.engine import playground
from workers.engine.entrypoints import trial_entry, trial_variant_entry
from workers.engine.errors import ModelError
from workers.engine.input_planning import plan_inputs
from workers.engine.inputs import InputPlan
from workers.engine.inspection import graph_input_specs
from workers.engine.outputs import DetectionLayout, OutputSemantics
from workers.engine.sandbox import SandboxLimits, run_in_sandbox

# Class 7 wins for a red image, class 2 for a blue one (logits = channel means @ WEIGHTS).
WEIGHTS = np.zeros((3, 10), dtype=np.float32)
WEIGHTS[0, 7], WEIGHTS[1, 4], WEIGHTS[2, 2] = 5.0, 4.0, 3.0
WEIGHTS[0, 1] = 2.0


def classifier(path: Path, side: int = 8, channels: int = 3) -> Path:
    """image [1, C, side, side] -> per-channel mean -> logits [1, 10]."""
    weights = WEIGHTS[:channels]
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
        ],
        "classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, channels, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes"), numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


CANDIDATES = np.array(
    [[[2, 2, 10, 10, 0.9, 0.1], [20, 20, 30, 30, 0.2, 0.8], [0, 0, 5, 5, 0.05, 0.1]]], dtype=np.float32
)


def detector(path: Path) -> Path:
    """image [1, 3, 32, 32] -> three fixed candidates [1, 3, 6] (xyxy, two class scores)."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0),
            helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
            helper.make_node("Add", ["candidates", "nothing"], ["output0"]),
        ],
        "detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 6])],
        [
            numpy_helper.from_array(np.zeros((), dtype=np.float32), "zero"),
            numpy_helper.from_array(CANDIDATES, "candidates"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def plan_of(path: Path) -> InputPlan:
    model = onnx.load(str(path))
    return plan_inputs(model, graph_input_specs(model.graph, numpy_dtypes_only=True))


def image_file(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Path:
    Image.new("RGB", size, colour).save(path, format="PNG")
    return path


def run_trial(tmp_path: Path, model: Path, source: Path, **extra: object) -> dict:
    payload = {"model": str(model), "input": str(source), "store": str(tmp_path / "store.npz"), **extra}
    return trial_entry(payload, lambda fraction, message: None)


def test_an_image_gives_the_classifier_top_five_with_softmax(tmp_path: Path) -> None:
    model = classifier(tmp_path / "m.onnx")
    result = run_trial(tmp_path, model, image_file(tmp_path / "red.png", (255, 0, 0)))

    (logits,) = result["outputs"]
    assert logits["kind"] == "classifier"
    assert [row["class"] for row in logits["top"]][:2] == [7, 1]
    assert len(logits["top"]) == 5
    expected = np.exp(WEIGHTS[0]) / np.exp(WEIGHTS[0]).sum()
    assert logits["top"][0]["probability"] == pytest.approx(expected[7], rel=1e-5)
    assert "softmax applied" in logits["scores"]
    assert result["input"]["applied"][0] == (
        "resized 64x48 -> 8x8 bilinear, RGB, /255, mean [0, 0, 0], std [1, 1, 1], NCHW float32"
    )


def test_the_preprocessing_is_applied_as_stated(tmp_path: Path) -> None:
    model = classifier(tmp_path / "m.onnx")
    source = image_file(tmp_path / "blue.png", (0, 0, 255))
    plan = plan_of(model)
    feeds = playground.read_feeds(source, plan, {"channel_order": "BGR", "mean": [0.5, 0.5, 0.5], "std": [0.25]})

    image = feeds.feeds["image"]
    assert image.shape == (1, 3, 8, 8) and image.dtype == np.float32
    # BGR puts blue first: (1 - 0.5) / 0.25 = 2; the others (0 - 0.5) / 0.25 = -2.
    assert np.allclose(image[0, :, 0, 0], [2.0, -2.0, -2.0])
    assert feeds.preprocessing is not None and feeds.preprocessing["channel_order"] == "BGR"
    assert "BGR" in feeds.applied[0] and "mean [0.5, 0.5, 0.5]" in feeds.applied[0]


def test_the_detector_boxes_are_decoded_in_the_original_image_pixels(tmp_path: Path) -> None:
    model = detector(tmp_path / "d.onnx")
    layout = DetectionLayout(boxes=(0, 4), scores=(4, 6), box_format="xyxy")
    semantics = {"output0": OutputSemantics("output0", "detection", detection=layout).to_dict()}
    result = run_trial(tmp_path, model, image_file(tmp_path / "i.png", (9, 9, 9), (64, 96)), semantics=semantics)

    (head,) = result["outputs"]
    assert head["kind"] == "detection" and head["shape"] == [1, 3, 6]
    # Candidates below the 0.25 threshold are dropped; 32x32 input -> 64 wide, 96 tall image.
    assert [(b["class"], round(b["score"], 3)) for b in head["boxes"]] == [(0, 0.9), (1, 0.8)]
    assert head["boxes"][0]["box"] == pytest.approx([4, 6, 20, 30])
    assert "64x96" in head["box_frame"]


def test_npz_and_json_inputs_fill_the_inputs_by_name(tmp_path: Path) -> None:
    model = classifier(tmp_path / "m.onnx")
    red = np.zeros((1, 3, 8, 8), dtype=np.float64)
    red[0, 0] = 1.0
    np.savez(tmp_path / "x.npz", image=red)
    (tmp_path / "x.json").write_text(json.dumps({"image": red[0].tolist()}))

    by_npz = run_trial(tmp_path, model, tmp_path / "x.npz")
    by_json = run_trial(tmp_path, model, tmp_path / "x.json")

    assert by_npz["outputs"][0]["top"][0]["class"] == 7
    assert by_json["outputs"][0]["top"][0]["class"] == 7
    assert by_json["input"]["applied"] == ["image: 1x3x8x8 float32, batch axis added, cast float64 -> float32"]


def test_a_variant_gives_its_outputs_and_its_difference_from_the_original(tmp_path: Path) -> None:
    model = classifier(tmp_path / "m.onnx")
    original = run_trial(tmp_path, model, image_file(tmp_path / "red.png", (255, 0, 0)))

    result = trial_variant_entry(
        {
            "backend": "onnxruntime",
            "variant": str(model),
            "store": str(tmp_path / "store.npz"),
            "input": original["input"],
        },
        lambda fraction, message: None,
    )

    assert result["outputs"][0]["top"][0]["class"] == 7
    (diff,) = result["difference"]["outputs"]
    assert diff["max_abs_error"] == 0 and diff["top1_agreement"] == 1.0
    assert result["difference"]["within_default_tolerance"] is True


@pytest.mark.parametrize(
    ("make", "preprocessing", "says"),
    [
        (lambda p: p.write_bytes(b"hello"), None, "not a PNG or JPEG image"),
        (lambda p: p.write_text('{"pixels": [1, 2]}'), None, "lacks 'image'"),
        (lambda p: np.savez(p, image=np.zeros((1, 3, 4, 4))), None, "axis 2 should be 8"),
        (lambda p: p.write_bytes(b"\x89PNG broken"), None, "could not be decoded"),
        (lambda p: image_file(p, (1, 2, 3)), {"channel_order": "GRAY", "mean": [0], "std": [1]}, "takes 3 channels"),
        (lambda p: image_file(p, (1, 2, 3)), {"size": [16, 16]}, "Set the size to [8, 8]"),
        (lambda p: image_file(p, (1, 2, 3)), {"scale": "much"}, "preprocessing does not read"),
        (lambda p: image_file(p, (1, 2, 3)), {"colour": "red"}, "preprocessing has no field colour"),
    ],
)
def test_bad_inputs_are_told_in_sentences(tmp_path: Path, make, preprocessing, says: str) -> None:  # type: ignore[no-untyped-def]
    model = classifier(tmp_path / "m.onnx")
    source = tmp_path / "input.bin"
    make(source)
    if source.suffix != ".npz" and not source.exists():
        source = tmp_path / "input.bin.npz"
    with pytest.raises(ModelError) as caught:
        playground.read_feeds(source, plan_of(model), preprocessing)
    assert says in caught.value.message


def test_a_grey_model_takes_an_image_as_one_channel(tmp_path: Path) -> None:
    model = classifier(tmp_path / "g.onnx", channels=1)
    feeds = playground.read_feeds(image_file(tmp_path / "i.png", (255, 255, 255)), plan_of(model))
    assert feeds.feeds["image"].shape == (1, 1, 8, 8)
    assert "GRAY" in feeds.applied[0]


def test_audio_and_token_ids(tmp_path: Path) -> None:
    audio_graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["audio"], ["peak"], keepdims=0)],
        "audio",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, "samples"])],
        [helper.make_tensor_value_info("peak", TensorProto.FLOAT, [])],
    )
    audio_model = helper.make_model(audio_graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(audio_model, tmp_path / "a.onnx")
    with wave.open(str(tmp_path / "a.wav"), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(np.array([16384, 0, 8192, 8192] * 50, dtype="<i2").tobytes())
    feeds = playground.read_feeds(tmp_path / "a.wav", plan_of(tmp_path / "a.onnx"))
    assert feeds.feeds["audio"].shape == (1, 100)
    assert np.allclose(feeds.feeds["audio"], 0.25)
    assert "mixed down to mono" in feeds.applied

    token_graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["hidden"])],
        "tokens",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, "sequence"]),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, "sequence", 4])],
        [numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "table")],
    )
    onnx.save(helper.make_model(token_graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "t.onnx")
    (tmp_path / "t.json").write_text("[1, 2, 3]")
    result = run_trial(tmp_path, tmp_path / "t.onnx", tmp_path / "t.json")
    assert result["input"]["shapes"] == {"input_ids": [1, 3], "attention_mask": [1, 3]}
    (hidden,) = result["outputs"]
    assert hidden["kind"] == "raw" and hidden["shape"] == [1, 3, 4]
    assert hidden["stats"]["min"] == 4 and hidden["stats"]["max"] == 15
    assert hidden["stats"]["first"] == [4, 5, 6, 7, 8, 9, 10, 11]
    (tmp_path / "big.json").write_text("[1, 2, 99]")
    with pytest.raises(ModelError, match=r"should lie in \[0, 9\]"):
        run_trial(tmp_path, tmp_path / "t.onnx", tmp_path / "big.json")


def test_the_trial_runs_in_the_real_sandbox(tmp_path: Path) -> None:
    model = classifier(tmp_path / "m.onnx")
    source = image_file(tmp_path / "red.png", (255, 0, 0))
    payload = {"model": str(model), "input": str(source), "store": str(tmp_path / "store.npz")}

    result, _ = run_in_sandbox("trial", payload, SandboxLimits(2 * 2**30, 120), what="the trial", writable=[tmp_path])

    assert result["outputs"][0]["top"][0]["class"] == 7
    with pytest.raises(ModelError, match="not a PNG or JPEG"):
        (tmp_path / "bad.txt").write_text("nope")
        run_in_sandbox(
            "trial", {**payload, "input": str(tmp_path / "bad.txt")}, SandboxLimits(2 * 2**30, 120), writable=[tmp_path]
        )


def test_a_phone_photo_is_read_upright_as_the_browser_shows_it(tmp_path: Path) -> None:
    model = classifier(tmp_path / "m.onnx")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    Image.new("RGB", (64, 32), (255, 0, 0)).save(tmp_path / "phone.jpg", format="JPEG", exif=exif)

    feeds = playground.read_feeds(tmp_path / "phone.jpg", plan_of(model))

    assert feeds.image_size == (32, 64)
    assert feeds.applied[0].startswith("resized 32x64 -> 8x8")
