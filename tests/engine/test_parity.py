"""Accuracy parity: variants that compute what the original computes pass, broken ones are named."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.modelzoo import make_cnn_onnx, make_concat_detector_onnx, make_mlp_onnx
from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from workers.engine.errors import ModelError
from workers.engine.parity import (
    Tolerance,
    VariantParity,
    compare_variant,
    is_classifier_output,
    reference_inputs,
    run_parity,
    run_session,
)

LOOSE = Tolerance(max_abs_error=1e-4, min_cosine=0.999, min_top1_agreement=0.9)
STRICT = Tolerance(max_abs_error=1e-5, min_cosine=0.99999)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The CNN, its INT8 dynamically quantized variant, and a variant with broken weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = tmp_path_factory.mktemp("parity")
    original = make_cnn_onnx(folder / "cnn.onnx")
    int8 = folder / "cnn-int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(original), str(int8), weight_type=QuantType.QInt8)

    # Each class's weights scaled by its own factor, some negative: the logits change direction.
    model = onnx.load(str(original))
    for tensor in model.graph.initializer:
        if tensor.name == "fc_w":
            weights = numpy_helper.to_array(tensor)
            factors = np.random.default_rng(7).uniform(-1.0, 1.0, size=(weights.shape[0], 1))
            tensor.CopyFrom(numpy_helper.from_array((weights * factors).astype(np.float32), "fc_w"))
    broken = folder / "cnn-broken.onnx"
    onnx.save_model(model, str(broken))
    return {"original": original, "int8": int8, "broken": broken}


def _parity(models: dict[str, Path], variant: str, tolerance: Tolerance, samples: int = 8) -> VariantParity:
    backend = OnnxRuntimeCpuBackend()
    inputs = reference_inputs(models["original"], None, samples=samples, seed=0)
    return run_parity(backend.load(models["original"]), backend.load(models[variant]), inputs, tolerance)


# --- real sessions ----------------------------------------------------------------------


def test_the_original_against_itself_passes_with_zero_error(models: dict[str, Path]) -> None:
    result = _parity(models, "original", STRICT)
    assert result.passed and result.reasons == ()
    (logits,) = result.outputs
    assert logits.name == "logits"
    assert logits.max_abs_error == 0.0 and logits.cosine == pytest.approx(1.0)
    assert logits.top1_agreement == 1.0


def test_int8_variant_passes_a_loose_tolerance(models: dict[str, Path]) -> None:
    result = _parity(models, "int8", LOOSE)
    assert result.passed, result.reasons
    (logits,) = result.outputs
    # Quantization error is there, but the model's behaviour is kept.
    assert logits.max_abs_error is not None and 1e-4 < logits.max_abs_error < 0.05
    assert logits.cosine is not None and logits.cosine > 0.999
    assert logits.top1_agreement == 1.0
    assert result.samples == 8


def test_int8_variant_fails_a_strict_tolerance_naming_the_metric(models: dict[str, Path]) -> None:
    result = _parity(models, "int8", STRICT)
    assert not result.passed
    assert result.reasons[0].startswith("Cosine similarity on 'logits' is 0.9999")
    assert "below the minimum 0.99999" in result.reasons[0]
    assert any(reason.startswith("Max abs error on 'logits'") and "1e-05" in reason for reason in result.reasons)


def test_a_variant_with_broken_weights_fails_on_cosine_and_top1(models: dict[str, Path]) -> None:
    result = _parity(models, "broken", LOOSE)
    assert not result.passed
    (logits,) = result.outputs
    assert logits.cosine is not None and logits.cosine < 0.9
    assert logits.top1_agreement is not None and logits.top1_agreement < 0.9
    assert any(reason.startswith("Top-1 agreement on 'logits'") for reason in result.reasons)
    assert any(reason.startswith("Cosine similarity on 'logits'") for reason in result.reasons)


def test_a_variant_that_raises_fails_with_the_error_text(models: dict[str, Path]) -> None:
    class Crashing:
        input_names: tuple[str, ...] = ("image",)
        output_names: tuple[str, ...] = ("logits",)

        def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            raise RuntimeError("Unsupported op QLinearFoo on this device")

        def close(self) -> None:
            pass

    backend = OnnxRuntimeCpuBackend()
    inputs = reference_inputs(models["original"], None, samples=2)
    result = run_parity(backend.load(models["original"]), Crashing(), inputs, LOOSE)
    assert not result.passed
    assert result.error == "Unsupported op QLinearFoo on this device"
    assert result.reasons == (
        "The variant failed to run on the parity inputs: Unsupported op QLinearFoo on this device",
    )


def test_the_verdict_is_json(models: dict[str, Path]) -> None:
    data = json.loads(json.dumps(_parity(models, "broken", LOOSE).to_dict()))
    assert data["passed"] is False
    assert data["tolerance"]["min_cosine"] == 0.999
    assert data["outputs"][0]["name"] == "logits" and data["outputs"][0]["reasons"]


# --- inputs -------------------------------------------------------------------------------


def test_generated_inputs_are_seeded_and_fit_the_model(models: dict[str, Path]) -> None:
    first = reference_inputs(models["original"], None, samples=3, seed=5)
    again = reference_inputs(models["original"], None, samples=3, seed=5)
    assert len(first) == 3
    assert [feed["image"].shape for feed in first] == [(1, 3, 32, 32)] * 3
    assert first[0]["image"].dtype == np.float32
    np.testing.assert_array_equal(first[2]["image"], again[2]["image"])
    assert not np.array_equal(first[0]["image"], first[1]["image"])  # each sample differs


def test_symbolic_dims_come_from_overrides_or_default_to_one(tmp_path: Path) -> None:
    mlp = make_mlp_onnx(tmp_path / "mlp.onnx")  # input [batch, 16]
    assert reference_inputs(mlp, None, samples=1)[0]["input"].shape == (1, 16)
    assert reference_inputs(mlp, None, samples=1, symbolic_dims={"batch": 4})[0]["input"].shape == (4, 16)


def _make_ids_and_mask_onnx(path: Path) -> Path:
    """Embedding lookup: ids int64 [batch, 5] into an 8x3 table, and a bool mask passed through Not."""
    table = numpy_helper.from_array(np.arange(24, dtype=np.float32).reshape(8, 3), "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["embedded"]), helper.make_node("Not", ["mask"], ["inverted"])],
        "ids",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 5]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", 5]),
        ],
        [
            helper.make_tensor_value_info("embedded", TensorProto.FLOAT, ["batch", 5, 3]),
            helper.make_tensor_value_info("inverted", TensorProto.BOOL, ["batch", 5]),
        ],
        initializer=[table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def test_generated_integer_inputs_are_valid_indices_and_bools_are_bools(tmp_path: Path) -> None:
    path = _make_ids_and_mask_onnx(tmp_path / "ids.onnx")
    feeds = reference_inputs(path, None, samples=4)
    assert all(feed["ids"].dtype == np.int64 and feed["ids"].min() >= 0 for feed in feeds)
    assert all(feed["mask"].dtype == np.bool_ for feed in feeds)
    session = OnnxRuntimeCpuBackend().load(path)
    outputs = run_session(session, feeds)  # every id is a valid row of the table
    result = compare_variant(outputs, outputs, STRICT)
    assert result.passed
    assert {output.name: output.top1_agreement for output in result.outputs} == {"embedded": None, "inverted": None}


def test_a_validation_set_gives_the_feeds(models: dict[str, Path], tmp_path: Path) -> None:
    images = np.random.default_rng(3).random((5, 3, 32, 32), dtype=np.float32)
    path = tmp_path / "validation.npz"
    np.savez(path, image=images)
    feeds = reference_inputs(models["original"], path, samples=3)
    assert len(feeds) == 3  # the model's batch is fixed at 1: one sample per feed
    np.testing.assert_array_equal(feeds[2]["image"], images[2:3])
    assert len(reference_inputs(models["original"], path, samples=50)) == 5


def _validation_error(model: Path, tmp_path: Path, **arrays: Any) -> ModelError:
    path = tmp_path / "validation.npz"
    np.savez(path, **arrays)
    with pytest.raises(ModelError) as raised:
        reference_inputs(model, path, samples=4)
    assert "calibration" not in raised.value.message
    return raised.value


def test_validation_set_of_the_wrong_shape_names_the_input_and_both_shapes(
    models: dict[str, Path], tmp_path: Path
) -> None:
    error = _validation_error(models["original"], tmp_path, image=np.zeros((4, 3, 28, 28), np.float32))
    assert error.code == "validation_mismatch"
    assert "'image'" in error.message
    assert "float32 of shape [1, 3, 32, 32]" in error.message  # expected
    assert "float32 of shape [4, 3, 28, 28]" in error.message  # given


def test_validation_set_of_the_wrong_dtype_says_so(models: dict[str, Path], tmp_path: Path) -> None:
    error = _validation_error(models["original"], tmp_path, image=np.zeros((4, 3, 32, 32), np.float64))
    assert error.code == "validation_mismatch"
    assert "wrong dtype" in error.message and "float64 of shape [4, 3, 32, 32]" in error.message


def test_validation_set_without_the_input_names_what_it_holds(models: dict[str, Path], tmp_path: Path) -> None:
    error = _validation_error(models["original"], tmp_path, images=np.zeros((4, 3, 32, 32), np.float32))
    assert error.code == "validation_mismatch"
    assert "'image'" in error.message and "'images'" in error.message


def test_a_validation_file_that_is_not_an_npz_is_refused(models: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "validation.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(ModelError) as raised:
        reference_inputs(models["original"], path)
    assert raised.value.code == "validation_invalid"
    assert "validation" in raised.value.message and "calibration" not in raised.value.message


# --- comparison rules ---------------------------------------------------------------------


def test_matching_nans_and_infinities_are_equal() -> None:
    reference = {"y": np.array([1.0, np.nan, np.inf, -np.inf, 2.0])}
    result = compare_variant(reference, {"y": reference["y"].copy()}, STRICT)
    assert result.passed
    assert result.outputs[0].max_abs_error == 0.0 and result.outputs[0].nonfinite_mismatches == 0


def test_a_nan_where_the_reference_has_a_number_fails() -> None:
    reference = {"y": np.array([1.0, 2.0, 3.0, 4.0])}
    variant = {"y": np.array([1.0, np.nan, 3.0, 4.0])}
    result = compare_variant(reference, variant, Tolerance(max_abs_error=1.0))
    assert not result.passed
    assert result.reasons == ("Output 'y' has NaN or inf at 1 of 4 values where the reference has finite numbers.",)
    # The finite values still agree, and the metrics say so.
    assert result.outputs[0].max_abs_error == 0.0


def test_a_number_where_the_reference_has_nan_fails() -> None:
    result = compare_variant({"y": np.array([np.nan, 1.0])}, {"y": np.array([0.0, 1.0])}, STRICT)
    assert not result.passed
    assert "where the reference has NaN or inf" in result.reasons[0]


def test_missing_outputs_and_other_shapes_fail_with_a_reason() -> None:
    reference = {"a": np.zeros((1, 4)), "b": np.zeros((1, 4))}
    result = compare_variant(reference, {"a": np.zeros((4,)), "extra": np.zeros(1)}, STRICT)
    assert not result.passed
    assert result.reasons == (
        "Output 'a' has shape [4] in the variant but [1, 4] in the reference.",
        "Output 'b' is missing from the variant's outputs.",
    )
    assert all(output.cosine is None for output in result.outputs)


def test_outputs_across_samples_are_compared_together() -> None:
    reference = [{"logits": np.array([[0.0, 1.0]])}, {"logits": np.array([[1.0, 0.0]])}]
    variant = [{"logits": np.array([[0.0, 1.0]])}, {"logits": np.array([[0.4, 0.6]])}]
    # A deliberately lenient tolerance, the slices' included (their own rule is tested below).
    lenient = Tolerance(max_abs_error=0.1, min_cosine=0.0, min_top1_agreement=0.5, min_slice_sqnr_db=0.0)
    result = compare_variant(reference, variant, lenient)
    assert result.passed and result.samples == 2
    assert result.outputs[0].top1_agreement == 0.5
    assert result.outputs[0].max_abs_error == pytest.approx(0.6)


def test_an_output_within_max_abs_error_passes_even_when_a_near_tie_flips() -> None:
    # Same numbers to 1e-6: a top-1 flip between two equal scores is noise, not a broken model.
    reference = {"scores": np.array([[0.5, 0.5000001, 0.1]])}
    variant = {"scores": np.array([[0.5000001, 0.5, 0.1]])}
    result = compare_variant(reference, variant, Tolerance(max_abs_error=1e-3, min_top1_agreement=1.0))
    assert result.outputs[0].top1_agreement == 0.0
    assert result.passed


def test_string_outputs_are_compared_exactly() -> None:
    reference = {"label": np.array(["cat", "dog"])}
    assert compare_variant(reference, {"label": np.array(["cat", "dog"])}, STRICT).passed
    result = compare_variant(reference, {"label": np.array(["cat", "cow"])}, STRICT)
    assert result.reasons == ("Output 'label' differs from the reference at 1 of 2 values (compared exactly).",)


@pytest.mark.parametrize(
    ("name", "shape", "dtype", "expected"),
    [
        ("output", (8, 10), np.float32, True),  # [N, C]
        ("logits", (1, 16, 30522), np.float32, True),  # token logits: named so
        ("probabilities", (2, 3, 5), np.float16, True),
        ("hidden", (1, 16, 768), np.float32, False),  # rank 3 without a hint
        ("value", (8, 1), np.float32, False),  # one column: nothing to rank
        ("label", (8, 10), np.int64, False),  # not scores
        ("logits", (10,), np.float32, False),  # no batch axis
    ],
)
def test_classifier_detection(name: str, shape: tuple[int, ...], dtype: type, expected: bool) -> None:
    assert is_classifier_output(name, shape, dtype) is expected


# --- tolerance --------------------------------------------------------------------------


def test_tolerance_from_profile_options_and_model_overrides() -> None:
    profile = {"batch_sizes": [1, 8], "concurrency": [1, 4], "max_abs_error": 1e-2, "min_cosine": 0.99}
    tolerance = Tolerance.from_options(profile, {"min_cosine": 0.999, "p99_abs_error": 0.01})
    assert tolerance == Tolerance(max_abs_error=1e-2, min_cosine=0.999, p99_abs_error=0.01)
    assert Tolerance.from_options() == Tolerance()


def test_unknown_tolerance_keys_are_refused() -> None:
    with pytest.raises(ModelError) as raised:
        Tolerance.from_options({}, {"min_cosin": 0.9})
    assert raised.value.code == "invalid_tolerance"
    assert "'min_cosin'" in raised.value.message and "min_cosine" in raised.value.message


@pytest.mark.parametrize(
    "overrides",
    [{"max_abs_error": -1}, {"min_cosine": 1.5}, {"min_top1_agreement": "high"}, {"max_abs_error": None}],
)
def test_tolerance_values_out_of_range_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ModelError) as raised:
        Tolerance.from_options(None, overrides)
    assert raised.value.code == "invalid_tolerance"


def test_optional_limits_are_checked_when_set() -> None:
    reference = {"y": np.array([100.0, 0.0, 1.0])}
    variant = {"y": np.array([100.5, 0.0, 1.0])}
    assert compare_variant(reference, variant, Tolerance(max_abs_error=0.1)).passed  # cosine ~1
    result = compare_variant(reference, variant, Tolerance(max_abs_error=0.1, p99_abs_error=0.1, max_rel_error=1e-3))
    assert not result.passed
    assert result.reasons[0].startswith("The 99th-percentile abs error on 'y' is 0.49")
    assert result.reasons[1] == "Max rel error on 'y' is 0.005, above the limit 0.001."


# --- parts of an output judged on their own ---------------------------------------------------


def _static_int8(original: Path, dest: Path) -> Path:
    """onnxruntime's static QDQ quantization of the whole graph (uint8 activations, as the
    `ort-int8-static-qdq` variant's x86 recipe): the concatenated output gets one scale, set by
    the box coordinates."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(1)

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{"image": rng.uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)} for _ in range(8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(str(original), str(dest), Images(), quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8)
    return dest


@pytest.mark.parametrize("pixels", [640.0, 160.0])
def test_a_detector_whose_class_scores_collapse_fails_naming_the_score_slice(tmp_path: Path, pixels: float) -> None:
    """At 640 px every score rounds to 0 (the issue's detector); at 160 px to three levels. The
    whole output still agrees to a cosine above 0.999: only the slices tell."""
    original = make_concat_detector_onnx(tmp_path / "detector.onnx", pixels)
    variant = _static_int8(original, tmp_path / "detector-int8.onnx")
    backend = OnnxRuntimeCpuBackend()
    inputs = [{"image": np.random.default_rng(i).uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)} for i in range(4)]
    reference, outputs = (run_session(backend.load(path), inputs) for path in (original, variant))
    ref = np.concatenate([run["detections"].ravel() for run in reference]).astype(np.float64)
    got = np.concatenate([run["detections"].ravel() for run in outputs]).astype(np.float64)
    assert float(ref @ got / np.linalg.norm(ref) / np.linalg.norm(got)) > 0.999  # the premise

    verdict = compare_variant(reference, outputs, Tolerance())
    assert not verdict.passed
    [output] = verdict.outputs
    assert output.cosine is not None and output.cosine > 0.999
    [slices] = [reason for reason in output.reasons if "slices on axis 2" in reason]
    assert "index 4-83" in slices, slices  # the 80 score columns, none of the 4 box columns
    assert "signal-to-noise ratio" in slices and "whole output's cosine" in slices
    if pixels == 640.0:
        assert "went (nearly) constant" in slices
    assert output.worst_slice is not None and output.worst_slice.startswith("axis 2, index ")
    assert output.worst_slice_sqnr_db is not None and output.worst_slice_sqnr_db < 6


def test_a_faithful_int8_detector_keeps_every_slice(tmp_path: Path) -> None:
    """The same head with scores and boxes on comparable scales: no slice is lost, and the
    worst slice's ratio is reported."""
    original = make_concat_detector_onnx(tmp_path / "detector.onnx", pixels=1.0)
    variant = _static_int8(original, tmp_path / "detector-int8.onnx")
    backend = OnnxRuntimeCpuBackend()
    inputs = [{"image": np.random.default_rng(i).uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)} for i in range(4)]
    verdict = compare_variant(*(run_session(backend.load(p), inputs) for p in (original, variant)), Tolerance())
    assert verdict.passed, verdict.reasons
    assert verdict.outputs[0].worst_slice_sqnr_db is not None and verdict.outputs[0].worst_slice_sqnr_db >= 6
