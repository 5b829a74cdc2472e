"""Mixed precision by sensitivity (issue 16): a detector whose full static INT8 loses every
class score gets a variant that keeps the few activations that matter in float, and passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.modelzoo import make_cnn_onnx, make_concat_detector_onnx
from workers.engine import mixed_precision
from workers.engine.backends.base import Calibration, HardwareProfile
from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from workers.engine.outputs import DetectionLayout, OutputSemantics
from workers.engine.parity import Tolerance, compare_variant, run_session

X86_INT8 = HardwareProfile("x86-cpu", "cpu", ("onnxruntime",), ("int8",))
# 4 box columns in pixels, then 80 class scores.
DETECTOR = OutputSemantics("detections", "detection", detection=DetectionLayout(boxes=(0, 4), scores=(4, 84)))


def _images(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (count, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def detector_variants(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[str]]:
    folder = tmp_path_factory.mktemp("detector")
    model = make_concat_detector_onnx(folder / "detector.onnx", pixels=640.0)
    np.savez(folder / "calibration.npz", image=_images(1, 16))
    backend = OnnxRuntimeCpuBackend(intra_op_threads=1)
    # The optimize step hands over what inspection says the outputs are, so the search judges
    # its probe as the parity step will: this one as a detection head.
    calibration = Calibration(folder / "calibration.npz", output_semantics={"detections": DETECTOR.to_dict()})
    variants = backend.build_variants(model, X86_INT8, calibration, folder / "out")
    return model, {variant.name: variant for variant in variants}, list(backend.last_build_notes)


def test_a_detector_whose_full_int8_collapses_gets_a_mixed_variant_that_passes(detector_variants) -> None:
    model, variants, notes = detector_variants
    assert "ort-int8-static-mixed" in variants, notes
    backend = OnnxRuntimeCpuBackend()
    # Judged as the parity step judges it: fresh images, not the calibration samples, and the
    # output read as a detection head (4 box columns, then 80 class scores).
    feeds = [{"image": image[None]} for image in _images(7, 6)]
    reference = run_session(backend.load(model), feeds)
    semantics = {"detections": DETECTOR}
    tolerance = Tolerance()

    def judge(name: str):
        return compare_variant(reference, run_session(backend.load(variants[name].path), feeds), tolerance, semantics)

    full, mixed = judge("ort-int8-static-qdq"), judge("ort-int8-static-mixed")
    assert not full.passed  # the premise: one scale for pixels and scores rounds every score away
    assert mixed.passed, mixed.reasons

    options = variants["ort-int8-static-mixed"].options
    search = options["mixed_precision"]
    # Few activations stay in float, and the rest of the graph is still INT8.
    assert 1 <= len(search["kept_in_float"]) <= search["quantized_activations"] // 2
    graph = onnx.load(str(variants["ort-int8-static-mixed"].path)).graph
    assert sum(node.op_type == "QuantizeLinear" for node in graph.node) >= search["quantized_activations"] - len(
        search["kept_in_float"]
    )
    assert search["full_int8_worst_slice_db"] < 6 <= search["mixed_worst_slice_db"]
    assert options["probe"] == "8 calibration samples"
    assert "within tolerance" in options["reason"] and search["kept_in_float"][0] in options["reason"]
    assert options["activation_type"] == variants["ort-int8-static-qdq"].options["activation_type"]


def test_no_mixed_variant_when_the_full_int8_model_is_within_tolerance(tmp_path: Path) -> None:
    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "calibration.npz", image=rng.standard_normal((16, 3, 32, 32)).astype(np.float32))
    backend = OnnxRuntimeCpuBackend(intra_op_threads=1)
    # A tolerance the full INT8 model meets: nothing to search.
    loose = HardwareProfile(
        "loose", "cpu", ("onnxruntime",), ("int8",), options={"min_cosine": 0.9, "min_slice_sqnr_db": 0}
    )
    names = [
        v.name for v in backend.build_variants(model, loose, Calibration(tmp_path / "calibration.npz"), tmp_path / "o")
    ]
    assert "ort-int8-static-qdq" in names and "ort-int8-static-mixed" not in names
    assert any(
        note.startswith("ort-int8-static-mixed was not built: ort-int8-static-qdq is within")
        for note in backend.last_build_notes
    )


def test_keeping_an_activation_in_float_rewires_its_readers_and_keeps_every_name(detector_variants) -> None:
    _, variants, _ = detector_variants
    quantized = onnx.load(str(variants["ort-int8-static-qdq"].path))
    pairs = mixed_precision.activation_pairs(quantized)
    assert pairs and all(pair.consumers for pair in pairs)
    kept = mixed_precision.keep_in_float(quantized, pairs[-1:])
    onnx.checker.check_model(kept, full_check=True)
    assert len(mixed_precision.activation_pairs(kept)) == len(pairs) - 1
    outputs = {output.name for output in kept.graph.output}
    assert outputs == {output.name for output in quantized.graph.output}


def test_a_search_that_cannot_pass_within_its_limit_says_so(detector_variants) -> None:
    model, variants, _ = detector_variants
    quantized = onnx.load(str(variants["ort-int8-static-qdq"].path))
    feeds = [{"image": image[None]} for image in _images(3, 4)]
    reference = mixed_precision._run(onnx.load(str(model)), feeds)
    impossible = Tolerance(max_abs_error=0.0, min_cosine=1.0, min_slice_sqnr_db=300.0)
    result = mixed_precision.search(quantized, reference, feeds, impossible, max_float_share=0.25)
    assert result.model is None and not result.full_int8_passed and result.kept_in_float == ()
    assert result.measured == result.quantized_activations and result.probes > result.measured
