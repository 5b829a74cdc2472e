"""What each output is (workers/engine/outputs.py), and parity judging an output by its kind."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.engine.test_parity import _static_int8
from tests.modelzoo import make_concat_detector_onnx, make_mlp_onnx
from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from workers.engine.detections import decode, match
from workers.engine.errors import ModelError
from workers.engine.inspection import inspect_model
from workers.engine.outputs import (
    DetectionLayout,
    OutputSemantics,
    check_declarations_fit,
    parse_output_declarations,
    propose_output_semantics,
    resolve_semantics,
    semantics_from_dict,
)
from workers.engine.parity import Tolerance, compare_variant, run_session

DETECTOR = {"detections": {"kind": "detection", "boxes": [0, 4], "scores": [4, 84], "box_format": "cxcywh"}}


def _images(count: int = 4) -> list[dict[str, np.ndarray]]:
    return [{"image": np.random.default_rng(i).uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)} for i in range(count)]


def _runs(original: Path, variant: Path) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    backend = OnnxRuntimeCpuBackend()
    inputs = _images()
    reference, outputs = (run_session(backend.load(path), inputs) for path in (original, variant))
    return reference, outputs


# --- declarations ----------------------------------------------------------------------------


def test_declarations_parse_into_kinds_and_a_detection_layout() -> None:
    declared = parse_output_declarations({**DETECTOR, "logits": {"kind": "classifier", "top_k": 3}})
    assert declared["detections"].kind == "detection" and declared["detections"].source == "declared"
    layout = declared["detections"].detection
    assert layout is not None and layout.boxes == (0, 4) and layout.scores == (4, 84)
    assert layout.part_of(2) == "box" and layout.part_of(40) == "class-score"
    assert declared["logits"].top_k == 3
    # What a report stores comes back as it was.
    assert semantics_from_dict(declared["detections"].to_dict()) == declared["detections"]
    assert parse_output_declarations(None) == {} and parse_output_declarations({}) == {}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ([1, 2], "JSON object keyed by output name"),
        ({"out": "detection"}, 'must be an object with a "kind"'),
        ({"out": {"kind": "boxes"}}, "the kinds are classifier, detection"),
        ({"out": {"kind": "classifier", "boxes": [0, 4]}}, "has no setting 'boxes'"),
        ({"out": {"kind": "detection", "boxes": [0, 4]}}, 'without "scores"'),
        ({"out": {"kind": "detection", "boxes": [0, 3], "scores": [3, 10]}}, "a box takes exactly 4 columns"),
        ({"out": {"kind": "detection", "boxes": [0, 4], "scores": [2, 10]}}, "overlapping columns"),
        ({"out": {"kind": "detection", "scores": [4, 9], "score_threshold": 2}}, "a number from 0 to 1"),
        ({"out": {"kind": "classifier", "top_k": 0}}, "a whole number of 1 or more"),
    ],
)
def test_a_bad_declaration_is_refused_with_what_to_write(data: Any, words: str) -> None:
    with pytest.raises(ModelError) as caught:
        parse_output_declarations(data)
    assert caught.value.code == "invalid_output_declarations"
    assert words in caught.value.message, caught.value.message
    assert "Declare outputs like" in caught.value.message


def test_a_declaration_that_does_not_fit_the_model_names_the_output_and_its_shape() -> None:
    outputs = [("detections", [1, 256, 84]), ("logits", ["batch", 10])]
    with pytest.raises(ModelError) as missing:
        check_declarations_fit(parse_output_declarations({"boxes": {"kind": "detection", "scores": [4, 9]}}), outputs)
    assert missing.value.code == "output_declaration_mismatch"
    assert "no such output" in missing.value.message and "'detections', 'logits'" in missing.value.message
    too_wide = {"detections": {"kind": "detection", "boxes": [0, 4], "scores": [4, 90]}}
    with pytest.raises(ModelError) as wide:
        check_declarations_fit(parse_output_declarations(too_wide), outputs)
    assert "[1, 256, 84]" in wide.value.message and "columns up to 89" in wide.value.message
    with pytest.raises(ModelError) as batch_axis:
        check_declarations_fit(parse_output_declarations({"logits": {"kind": "classifier", "axis": 0}}), outputs)
    assert "axis 0 is the batch" in batch_axis.value.message
    check_declarations_fit(parse_output_declarations(DETECTOR), outputs)  # fits: no error


def test_inspection_refuses_a_declaration_the_model_does_not_fit(tmp_path: Path) -> None:
    detector = make_concat_detector_onnx(tmp_path / "detector.onnx", 640.0)
    declared = parse_output_declarations({"detections": {"kind": "detection", "scores": [4, 100]}})
    with pytest.raises(ModelError) as caught:
        inspect_model(detector, output_declarations=declared)
    assert caught.value.code == "output_declaration_mismatch"


# --- proposals from the graph ------------------------------------------------------------------


def test_inspection_proposes_a_detection_head_from_the_graph(tmp_path: Path) -> None:
    report = inspect_model(make_concat_detector_onnx(tmp_path / "detector.onnx", 640.0))
    assert report.output_semantics is not None
    proposal = report.output_semantics["detections"]
    assert proposal["kind"] == "detection" and proposal["source"] == "proposed"
    assert "Concat" in proposal["why"] and "Sigmoid" in proposal["why"]
    assert proposal["detection"]["boxes"] == (0, 4) and proposal["detection"]["scores"] == (4, 84)
    assert proposal["detection"]["axis"] == 2  # followed through the Transpose after the Concat


def test_a_declaration_wins_over_the_proposal(tmp_path: Path) -> None:
    declared = parse_output_declarations({"detections": {"kind": "raw"}})
    report = inspect_model(make_concat_detector_onnx(tmp_path / "detector.onnx", 640.0), output_declarations=declared)
    assert report.output_semantics is not None
    assert report.output_semantics["detections"]["kind"] == "raw"
    assert report.output_semantics["detections"]["source"] == "declared"
    merged = resolve_semantics(declared, {"detections": {"name": "detections", "kind": "classifier"}})
    assert merged["detections"].kind == "raw"


def test_a_classifier_is_proposed_as_one_and_nothing_is_invented_for_a_plain_output(tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "mlp.onnx")
    proposals = propose_output_semantics(onnx.shape_inference.infer_shapes(onnx.load(str(path))))
    assert set(proposals) == {output.name for output in onnx.load(str(path)).graph.output}
    assert {p.kind for p in proposals.values()} <= {"classifier", "raw"}
    assert all(p.why for p in proposals.values())


# --- parity by kind ----------------------------------------------------------------------------


def test_a_detector_with_no_detections_left_fails_on_recall_and_names_the_score_columns(tmp_path: Path) -> None:
    """The issue's detector: static INT8 with one scale for pixel boxes and [0, 1] scores keeps a
    whole-output cosine above 0.999 and loses every detection."""
    original = make_concat_detector_onnx(tmp_path / "detector.onnx", 640.0)
    reference, outputs = _runs(original, _static_int8(original, tmp_path / "detector-int8.onnx"))
    semantics = parse_output_declarations(DETECTOR)

    verdict = compare_variant(reference, outputs, Tolerance(), semantics)
    assert not verdict.passed
    [output] = verdict.outputs
    assert output.cosine is not None and output.cosine > 0.999  # what passed the detector before
    assert output.kind == "detection" and output.kind_source == "declared"
    assert output.detection is not None
    assert output.detection["reference_detections"] > 0 and output.detection["variant_detections"] == 0
    assert output.detection["recall"] == 0.0
    [recall] = [reason for reason in output.reasons if "recall" in reason]
    assert f"0 of the original's {output.detection['reference_detections']} detections" in recall
    [slices] = [reason for reason in output.reasons if "slices on axis 2" in reason]
    assert "80 class-score columns" in slices
    assert verdict.to_dict()["outputs"][0]["detection"]["recall"] == 0.0


def test_a_faithful_detector_passes_with_its_detection_figures(tmp_path: Path) -> None:
    original = make_concat_detector_onnx(tmp_path / "detector.onnx", 1.0)
    reference, outputs = _runs(original, _static_int8(original, tmp_path / "detector-int8.onnx"))
    verdict = compare_variant(reference, outputs, Tolerance(), parse_output_declarations(DETECTOR))
    assert verdict.passed, verdict.reasons
    detection = verdict.outputs[0].detection
    assert detection is not None and detection["reference_detections"] > 0
    assert detection["recall"] >= 0.9 and detection["precision"] >= 0.9
    assert detection["mean_matched_iou"] > 0.5


def test_an_original_without_detections_is_said_not_judged(tmp_path: Path) -> None:
    """Nothing reaches the threshold in the original: recall is undefined, and the report says
    the detections were not checked instead of claiming they agree."""
    original = make_concat_detector_onnx(tmp_path / "detector.onnx", 1.0)
    reference, outputs = _runs(original, original)
    declared = {"detections": {**DETECTOR["detections"], "score_threshold": 1.0}}
    verdict = compare_variant(reference, outputs, Tolerance(), parse_output_declarations(declared))
    assert verdict.passed
    output = verdict.outputs[0]
    assert output.detection is not None and output.detection["reference_detections"] == 0
    assert output.detection["recall"] is None
    assert any("no detections" in note for note in output.notes), output.notes


def test_a_classifier_is_judged_by_top_k_agreement() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (64, 10))
    shuffled = logits[:, ::-1].copy()  # every ranking reversed
    semantics = {"logits": OutputSemantics("logits", "classifier", top_k=3)}
    loose = Tolerance(max_abs_error=100, min_cosine=-1, min_top1_agreement=0)
    same = compare_variant({"logits": logits}, {"logits": logits.copy()}, loose, semantics)
    assert same.passed and same.outputs[0].topk_agreement == 1.0 and same.outputs[0].top_k == 3
    reversed_ = compare_variant({"logits": logits}, {"logits": shuffled}, Tolerance(), semantics)
    assert not reversed_.passed
    assert reversed_.outputs[0].topk_agreement is not None and reversed_.outputs[0].topk_agreement < 0.5


def test_an_embedding_is_judged_row_by_row() -> None:
    """One vector turned around among many: the whole tensor's cosine hides it, each row's doesn't."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(0, 1, (200, 64))
    broken = vectors.copy()
    broken[7] = -broken[7]
    semantics = {"embedding": OutputSemantics("embedding", "embedding")}
    tolerance = Tolerance(min_cosine=0.98)
    verdict = compare_variant({"embedding": vectors}, {"embedding": broken}, tolerance, semantics)
    assert verdict.outputs[0].cosine is not None and verdict.outputs[0].cosine > 0.98
    assert not verdict.passed
    assert verdict.outputs[0].min_row_cosine is not None and verdict.outputs[0].min_row_cosine < 0


# --- decoding and matching -------------------------------------------------------------------


def test_decoding_suppresses_overlaps_per_class_and_matching_pairs_by_class_and_iou() -> None:
    layout = DetectionLayout(axis=-1, boxes=(0, 4), scores=(4, 6), box_format="xyxy", iou_threshold=0.5)
    rows = np.array(
        [
            [0, 0, 10, 10, 0.9, 0.0],  # class 0
            [1, 1, 10, 10, 0.8, 0.0],  # class 0, overlaps the first: suppressed
            [1, 1, 10, 10, 0.0, 0.7],  # class 1 at the same place: kept (NMS is per class)
            [50, 50, 60, 60, 0.1, 0.1],  # below the threshold
        ],
        dtype=np.float64,
    )[None]
    [found] = decode(rows, layout)
    assert sorted(int(c) for c in found.classes) == [0, 1]
    agreement = match([found], [found], layout)
    assert agreement.recall == 1.0 and agreement.precision == 1.0
    moved = rows.copy()
    moved[0, :, :4] += 30  # every box somewhere else
    [elsewhere] = decode(moved, layout)
    assert match([found], [elsewhere], layout).recall == 0.0
    assert dataclasses.asdict(layout)["box_format"] == "xyxy"
