"""The one input generator: inputs that look like what the model takes, at sizes it can take.

Every model is built here. Each test shows the old behaviour failing on the model (noise,
sizes of 1, a scalar at a value the model refuses, samples assumed on axis 0) and the plan
read off the graph, or declared, working.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from workers.engine.errors import ModelError
from workers.engine.input_generation import make_feeds
from workers.engine.input_planning import batch_axes, plan_inputs
from workers.engine.inputs import InputPlan
from workers.engine.inspection import graph_input_specs, inspect_model
from workers.engine.parity import Tolerance, compare_variant, evidence_inputs
from workers.engine.signature import parse_input_declarations

OPSET = [helper.make_opsetid("", 17)]


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _run(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _conv(name: str, source: str, cin: int, cout: int, stride: int, rng: np.random.Generator) -> tuple:
    weight = numpy_helper.from_array(rng.normal(0, 0.3, (cout, cin, 3, 3)).astype(np.float32), f"{name}_w")
    node = helper.make_node(
        "Conv", [source, f"{name}_w"], [name], strides=[stride, stride], pads=[1, 1, 1, 1], kernel_shape=[3, 3]
    )
    return node, weight


def detector(path: Path) -> Path:
    """A detector-shaped net: /255 normalisation, five stride-2 convs (stride 32 in all), the
    deepest map upsampled x2 and concatenated with the stride-16 map: H and W must be multiples
    of 32, or the Concat fails."""
    rng = np.random.default_rng(0)
    nodes, weights = [], []
    scale = numpy_helper.from_array(np.array(255.0, np.float32), "scale")
    nodes.append(helper.make_node("Div", ["images", "scale"], ["x0"]))
    source, channels = "x0", 3
    for index in range(1, 6):
        node, weight = _conv(f"c{index}", source, channels, 4, 2, rng)
        nodes.append(node)
        weights.append(weight)
        source, channels = f"c{index}", 4
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes.append(helper.make_node("Resize", ["c5", "", "scales"], ["up"], mode="nearest"))
    nodes.append(helper.make_node("Concat", ["c4", "up"], ["merged"], axis=1))
    nodes.append(helper.make_node("Sigmoid", ["merged"], ["scores"]))
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 8, None, None])],
        [scale, scales, *weights],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def stateful(path: Path) -> Path:
    """A voice-activity-shaped model: audio [batch, samples], a scalar sample rate that must be
    8000 or 16000 (an If whose else branch fails), and a recurrent state [2, batch, 128]."""
    const = numpy_helper.from_array
    is8k = helper.make_node("Equal", ["sr", "k8000"], ["is8k"])
    is16k = helper.make_node("Equal", ["sr", "k16000"], ["is16k"])
    valid = helper.make_node("Or", ["is8k", "is16k"], ["valid"])
    then_branch = helper.make_graph(
        [helper.make_node("Mul", ["state", "half"], ["then_state"])],
        "valid_rate",
        [],
        [helper.make_tensor_value_info("then_state", TensorProto.FLOAT, [2, None, 128])],
        [const(np.array(0.5, np.float32), "half")],
    )
    # Any other rate: a reshape that can't hold the state's 256 x batch values, so the run fails,
    # as the real model's "Supported sample rates" check does.
    else_branch = helper.make_graph(
        [helper.make_node("Reshape", ["state", "bad_shape"], ["else_state"])],
        "invalid_rate",
        [],
        [helper.make_tensor_value_info("else_state", TensorProto.FLOAT, [3, None])],
        [const(np.array([3, -1], np.int64), "bad_shape")],
    )
    branch = helper.make_node("If", ["valid"], ["new_state"], then_branch=then_branch, else_branch=else_branch)
    energy = helper.make_node("ReduceSum", ["input", "axis1"], ["energy"], keepdims=1)
    graph = helper.make_graph(
        [is8k, is16k, valid, branch, energy],
        "stateful",
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "samples"]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 128]),
        ],
        [
            helper.make_tensor_value_info("energy", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("new_state", TensorProto.FLOAT, [2, "batch", 128]),
        ],
        [
            const(np.array(8000, np.int64), "k8000"),
            const(np.array(16000, np.int64), "k16000"),
            const(np.array([1], np.int64), "axis1"),
        ],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def token_model(path: Path) -> Path:
    """Token ids into a 50-row embedding, weighted by an attention mask."""
    table = numpy_helper.from_array(np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32), "table")
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
        helper.make_node("Mul", ["embedded", "mask3"], ["hidden"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tokens",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "sequence", 8])],
        [table, numpy_helper.from_array(np.array([-1], np.int64), "last")],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def imagenet_classifier(path: Path, *, clipped: bool = False) -> Path:
    """An ImageNet-normalised input (Sub mean, Div std) and a Relu: expects [0, 1].
    `clipped`: a variant that clips its input to [0, 1] first (as a quantized input does): the
    same model on images, a different one on noise."""
    mean = numpy_helper.from_array(np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1), "mean")
    std = numpy_helper.from_array(np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1), "std")
    clip = [
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(1.0, np.float32), "hi"),
    ]
    source = "clipped" if clipped else "pixels"
    nodes = [
        *([helper.make_node("Clip", ["pixels", "lo", "hi"], ["clipped"])] if clipped else []),
        helper.make_node("Sub", [source, "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["normalised"]),
        helper.make_node("Relu", ["normalised"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [mean, std, *(clip if clipped else [])],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def _plan(path: Path, declarations: dict | None = None) -> InputPlan:
    model = onnx.load(str(path))
    return plan_inputs(
        model, graph_input_specs(model.graph, numpy_dtypes_only=True), parse_input_declarations(declarations)
    )


# ---- spatial dims that must be multiples of 32 ---------------------------------------------


def test_detector_sizes_are_multiples_of_its_stride_and_not_1(tmp_path: Path) -> None:
    path = detector(tmp_path / "detector.onnx")
    # What the old generator did (every symbolic dim 1), and a size that is not a multiple of 32.
    for side in (1, 100):
        with pytest.raises(Exception, match="Concat"):
            _run(path, {"images": np.zeros((1, 3, side, side), np.float32)})

    plan = _plan(path)
    assert plan.dims == {"height": 640, "width": 640}
    assert any("multiples of 32" in assumption for assumption in plan.assumptions)
    (recipe,) = plan.recipes
    assert (recipe.kind, recipe.low, recipe.high) == ("image", 0.0, 255.0)  # the model divides by 255
    feed = make_feeds(plan)[0]
    assert feed["images"].shape == (1, 3, 640, 640)
    _run(path, feed)  # the network takes it
    assert plan.describe() == (
        "generated: images: image-like 1x3x640x640 in [0, 255] from the model's normalisation (Div after the input)"
    )


def test_generated_images_are_smooth_like_photographs_not_noise(tmp_path: Path) -> None:
    image = make_feeds(_plan(detector(tmp_path / "detector.onnx")))[0]["images"][0] / 255.0
    # Neighbouring pixels of a photograph are strongly correlated; those of noise are not.
    neighbours = np.corrcoef(image[0, :, :-1].ravel(), image[0, :, 1:].ravel())[0, 1]
    channels = np.corrcoef(image[0].ravel(), image[1].ravel())[0, 1]
    assert neighbours > 0.9 and channels > 0.5
    assert image.min() >= 0.0 and image.max() <= 1.0 and image.std() > 0.05


def test_declared_dims_win_over_inference(tmp_path: Path) -> None:
    plan = _plan(
        detector(tmp_path / "d.onnx"), {"dims": {"height": {"typical": 320, "step": 32}, "width": {"min": 96}}}
    )
    assert plan.dims == {"height": 320, "width": 96}


def test_flops_are_counted_at_the_benchmarked_size_and_say_so(tmp_path: Path) -> None:
    path = detector(tmp_path / "detector.onnx")
    report = inspect_model(path)
    at_one = inspect_model(path, symbolic_dims={"height": 32, "width": 32})
    assert report.input_plan is not None and report.input_plan["dims"] == {"height": 640, "width": 640}
    assert report.flops.total == pytest.approx(at_one.flops.total * 400, rel=0.01)  # (640 / 32) ** 2
    assert "height=640" in report.flops.assumptions and "width=640" in report.flops.assumptions


# ---- a scalar input restricted to a set of values, and a state with its batch on axis 1 ------


def test_scalar_takes_the_values_the_model_compares_it_with(tmp_path: Path) -> None:
    path = stateful(tmp_path / "vad.onnx")
    state = np.zeros((2, 1, 128), np.float32)
    audio = np.zeros((1, 512), np.float32)
    with pytest.raises(Exception, match="Reshape"):  # the old generator's sr: a small integer
        _run(path, {"input": audio, "sr": np.array(3, np.int64), "state": state})

    plan = _plan(path)
    kinds = {recipe.name: recipe.kind for recipe in plan.recipes}
    assert kinds == {"input": "audio", "sr": "values", "state": "state"}
    evidence = evidence_inputs(path, samples=4)
    assert [int(feed["sr"]) for feed in evidence.feeds] == [8000, 16000, 8000, 16000]
    assert evidence.feeds[0]["state"].shape == (2, 1, 128) and not evidence.feeds[0]["state"].any()
    assert evidence.feeds[0]["input"].shape == (1, 512) and np.abs(evidence.feeds[0]["input"]).max() <= 1.0
    for feed in evidence.feeds:
        _run(path, feed)
    assert "sr: scalar one of 8000, 16000 from the model's comparisons (Equal)" in evidence.description
    assert "state: zeros 2x1x128" in evidence.description


def test_declared_value_is_used_for_every_sample(tmp_path: Path) -> None:
    path = stateful(tmp_path / "vad.onnx")
    evidence = evidence_inputs(
        path, samples=3, declarations=parse_input_declarations({"inputs": {"sr": {"value": 8000}}})
    )
    assert [int(feed["sr"]) for feed in evidence.feeds] == [8000] * 3
    assert "sr: scalar = 8000 from your declaration" in evidence.description


def test_validation_state_has_its_samples_on_the_batch_axis(tmp_path: Path) -> None:
    path = stateful(tmp_path / "vad.onnx")
    assert batch_axes(graph_input_specs(onnx.load(str(path)).graph, numpy_dtypes_only=True)) == {
        "input": 0,
        "sr": None,
        "state": 1,
    }
    rng = np.random.default_rng(0)
    samples = 5
    good = tmp_path / "validation.npz"
    np.savez(
        good,
        input=rng.uniform(-1, 1, (samples, 512)).astype(np.float32),
        sr=np.full(samples, 16000, np.int64),
        state=np.zeros((2, samples, 128), np.float32),  # samples on axis 1, as the signature says
    )
    evidence = evidence_inputs(path, good, samples=8)
    assert len(evidence.feeds) == samples and evidence.feeds[0]["state"].shape == (2, 1, 128)
    assert evidence.description == "your validation set, 5 samples"
    for feed in evidence.feeds:
        _run(path, feed)

    wrong = tmp_path / "wrong.npz"
    np.savez(
        wrong,
        input=np.zeros((samples, 512), np.float32),
        sr=np.full(samples, 16000, np.int64),
        state=np.zeros((samples, 2, 128), np.float32),  # samples on axis 0
    )
    with pytest.raises(ModelError) as raised:
        evidence_inputs(path, wrong)
    assert raised.value.code == "validation_mismatch"
    message = raised.value.message
    assert "'state'" in message and "samples on axis 1" in message and '"batch_axis"' in message


# ---- token ids, masks and ImageNet normalisation -----------------------------------------------


def test_token_ids_stay_within_the_embedding_and_masks_are_ones_then_zeros(tmp_path: Path) -> None:
    path = token_model(tmp_path / "tokens.onnx")
    plan = _plan(path)
    ids = next(recipe for recipe in plan.recipes if recipe.name == "input_ids")
    assert (ids.kind, ids.high) == ("token_ids", 49.0)
    feeds = make_feeds(plan, samples=4, batch=2)
    for feed in feeds:
        assert feed["input_ids"].shape == (2, 128) and feed["input_ids"].max() < 50
        mask = feed["attention_mask"]
        assert set(np.unique(mask)) <= {0, 1} and mask[:, 0].all()
        assert (np.diff(mask, axis=1) <= 0).all()  # padding only at the end
        _run(path, feed)
    assert any((feed["attention_mask"] == 0).any() for feed in feeds)


def test_imagenet_normalisation_means_inputs_in_0_1_at_224(tmp_path: Path) -> None:
    plan = _plan(imagenet_classifier(tmp_path / "classifier.onnx"))
    (recipe,) = plan.recipes
    assert (recipe.low, recipe.high) == (0.0, 1.0)
    assert plan.dims == {"H": 224, "W": 224}
    assert "from the model's normalisation (Sub, Div after the input)" in plan.describe()


def test_a_variant_right_on_images_but_wrong_on_noise_is_judged_on_images(tmp_path: Path) -> None:
    original = imagenet_classifier(tmp_path / "original.onnx")
    variant = imagenet_classifier(tmp_path / "variant.onnx", clipped=True)

    def outputs(path: Path, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return [{"features": _run(path, feed)[0]} for feed in feeds]

    # What parity used to run on: standard-normal noise, on which the clip changes everything.
    rng = np.random.default_rng(0)
    noise = [{"pixels": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(4)]
    assert not compare_variant(outputs(original, noise), outputs(variant, noise), Tolerance()).passed

    evidence = evidence_inputs(original, samples=4)
    verdict = compare_variant(outputs(original, evidence.feeds), outputs(variant, evidence.feeds), Tolerance())
    assert verdict.passed, verdict.reasons
    assert evidence.source == "generated inputs"
    assert evidence.summary()["description"] == (
        "generated: pixels: image-like 1x3x224x224 in [0, 1] from the model's normalisation (Sub, Div after the input)"
    )


# ---- declarations are checked ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "fragment"),
    [
        ({"inputs": {"sr": {"values": "8000"}}}, "'values' as a list"),
        ({"inputs": {"sr": {"kind": "picture"}}}, "kind 'picture'"),
        ({"dims": {"height": {"typical": 100, "step": 32}}}, "not a multiple of its step 32"),
        ({"inputs": {"state": {"batch_axis": -1}}}, "batch_axis -1"),
        ({"outputs": {}}, "unknown keys ['outputs']"),
    ],
)
def test_bad_declarations_are_refused_with_a_sentence(declared: dict, fragment: str) -> None:
    with pytest.raises(ModelError) as raised:
        parse_input_declarations(declared)
    assert raised.value.code == "invalid_declarations"
    assert fragment in raised.value.message and "Example:" in raised.value.message


def test_a_declaration_for_an_input_the_model_lacks_names_its_inputs(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as raised:
        _plan(stateful(tmp_path / "vad.onnx"), {"inputs": {"sample_rate": {"value": 8000}}})
    assert "'sample_rate'" in raised.value.message and "'sr'" in raised.value.message


def _misfit_initializer() -> tuple[list, list]:
    from onnx import TensorProto, helper

    bad = TensorProto(name="offset", data_type=TensorProto.FLOAT, dims=[], raw_data=b"\0" * 16)
    return [helper.make_node("Add", ["x", "offset"], ["y"])], [bad]


def _initializer_of_unknown_type() -> tuple[list, list]:
    from onnx import TensorProto, helper

    unknown = TensorProto(name="offset", data_type=33, dims=[], raw_data=b"\0" * 4)  # a type onnx doesn't know
    # Read by a custom-domain op, which the checker can't judge: inspection goes on to plan inputs.
    return [helper.make_node("ScaledRelu", ["x", "offset"], ["y"], domain="slipway.tests")], [unknown]


@pytest.mark.parametrize("build", [_misfit_initializer, _initializer_of_unknown_type])
def test_a_constant_numpy_cannot_read_is_skipped_not_raised(tmp_path: Path, build) -> None:
    """Found by fuzzing inspection: a scalar initializer carrying four floats of raw data, and an
    initializer of a data type onnx doesn't know, made the input planner raise numpy's ValueError
    and a KeyError; inspection must end in a report or a ModelError."""
    from onnx import TensorProto, helper

    from workers.engine.errors import ModelError
    from workers.engine.inspection import inspect_model

    nodes, initializers = build()
    graph = helper.make_graph(
        nodes,
        "misfit",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializers,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("slipway.tests", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    path = tmp_path / "misfit.onnx"
    path.write_bytes(model.SerializeToString())
    try:
        report = inspect_model(path)
    except ModelError as exc:
        assert exc.message
    else:
        assert report.input_plan is not None
