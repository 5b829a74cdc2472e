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
from workers.engine.errors import ModelError
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
    return model, {variant.name: variant for variant in variants}, list(variants.notes)


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
    built = backend.build_variants(model, loose, Calibration(tmp_path / "calibration.npz"), tmp_path / "o")
    names = [v.name for v in built]
    assert "ort-int8-static-qdq" in names and "ort-int8-static-mixed" not in names
    assert any(
        note.startswith("ort-int8-static-mixed was not built: ort-int8-static-qdq is within") for note in built.notes
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


# --- the search budget (issue 16, item 5) ------------------------------------------------


def test_every_candidate_judged_is_kept_with_its_score_and_the_chosen_one_is_marked(detector_variants) -> None:
    _, variants, _ = detector_variants
    search = variants["ort-int8-static-mixed"].options["search"]
    assert search["stopped"] == "passed" and search["budget_s"] == 120.0 and search["max_candidates"] == 300
    assert search["float_unit"] == "activations" and search["probe"] == "8 calibration samples"
    candidates = search["candidates"]
    # The full INT8 model first (nothing in float, fails), then one per activation measured, then the mixes tried.
    assert candidates[0]["stage"] == "full-int8" and candidates[0]["float_share"] == 0.0
    assert not candidates[0]["passed"]
    stages = [candidate["stage"] for candidate in candidates]
    assert stages.count("sensitivity") == search["activations_measured"] == search["activations"]
    assert "mix" in stages
    chosen = [candidate for candidate in candidates if candidate["chosen"]]
    assert len(chosen) == 1 and chosen[0]["passed"]
    kept = variants["ort-int8-static-mixed"].options["mixed_precision"]["kept_in_float"]
    assert chosen[0]["float_activations"] == len(kept)
    assert chosen[0]["score_db"] == variants["ort-int8-static-mixed"].options["mixed_precision"]["mixed_worst_slice_db"]
    # The variant is the passing candidate with the fewest activations in float, whichever
    # stage judged it: no candidate kept in the report beats it on both counts.
    assert min(c["float_activations"] for c in candidates if c["passed"]) == len(kept)


def _detector_probe(detector_variants) -> tuple[onnx.ModelProto, list, list]:
    model, variants, _ = detector_variants
    quantized = onnx.load(str(variants["ort-int8-static-qdq"].path))
    feeds = [{"image": image[None]} for image in _images(1, 8)]
    return quantized, mixed_precision._run(onnx.load(str(model)), feeds), feeds


def test_a_search_out_of_time_keeps_what_it_measured_and_says_so(detector_variants) -> None:
    quantized, reference, feeds = _detector_probe(detector_variants)
    semantics = {"detections": DETECTOR}
    budget = mixed_precision.SearchBudget(seconds=1e-6)
    result = mixed_precision.search(quantized, reference, feeds, Tolerance(), semantics=semantics, budget=budget)
    # Only the full INT8 model fit in the budget: judged, kept, and nothing more.
    assert result.stopped == "budget" and result.out_of_budget and result.model is None
    assert [candidate.stage for candidate in result.candidates] == ["full-int8"]
    assert result.record()["candidates"][0]["passed"] is False
    sentence = result.budget_sentence("ort-int8-static-mixed")
    assert "ran out of its 1e-06 s budget after measuring 0 of" in sentence
    assert "kept what was measured" in sentence and "none of them passed" in sentence


def test_a_search_out_of_candidates_keeps_the_best_mix_it_found(detector_variants) -> None:
    quantized, reference, feeds = _detector_probe(detector_variants)
    semantics = {"detections": DETECTOR}
    budget = mixed_precision.SearchBudget(max_candidates=10)
    result = mixed_precision.search(quantized, reference, feeds, Tolerance(), semantics=semantics, budget=budget)
    # Measuring stopped early enough to leave the choice room within the cap: a few of the
    # activations (from the outputs backwards) measured, then a mix of them that passes.
    assert result.stopped == "candidates" and len(result.candidates) <= 10
    assert 1 <= result.measured < result.quantized_activations
    stages = [candidate.stage for candidate in result.candidates]
    assert stages[0] == "full-int8" and stages.count("sensitivity") == result.measured
    assert result.model is not None and result.mixed_score_db is not None and result.mixed_score_db >= 6
    assert sum(candidate.chosen for candidate in result.candidates) == 1
    record = result.record()
    assert record["stopped"] == "candidates" and record["activations_measured"] == result.measured
    assert len(record["candidates"]) == len(result.candidates) and record["max_candidates"] == 10
    sentence = result.budget_sentence("ort-int8-static-mixed")
    assert (
        f"ran out of its budget of 10 candidate models after measuring {result.measured} of "
        f"{result.quantized_activations} activations ({len(result.candidates)} candidate models judged in"
    ) in sentence
    assert "kept what was measured: keeping the" in sentence and "passes, though fewer might" in sentence


def test_the_profile_budget_reaches_the_build_and_a_cut_search_says_so(tmp_path: Path) -> None:
    model = make_concat_detector_onnx(tmp_path / "detector.onnx", pixels=640.0)
    np.savez(tmp_path / "calibration.npz", image=_images(1, 16))
    calibration = Calibration(tmp_path / "calibration.npz", output_semantics={"detections": DETECTOR.to_dict()})
    backend = OnnxRuntimeCpuBackend(intra_op_threads=1)
    seen: list[tuple[float, str]] = []
    backend.search_progress = lambda fraction, message: seen.append((fraction, message))
    tight = HardwareProfile("tight", "cpu", ("onnxruntime",), ("int8",), options={"search_max_candidates": 1})
    built = backend.build_variants(model, tight, calibration, tmp_path / "out")
    variants = {v.name: v for v in built}
    # Nothing but the full INT8 model could be judged: no mixed variant, and the INT8 variant
    # the search started from carries what was judged.
    assert "ort-int8-static-mixed" not in variants
    search = variants["ort-int8-static-qdq"].options["search"]
    assert search["stopped"] == "candidates" and len(search["candidates"]) == 1
    assert any(
        note.startswith("ort-int8-static-mixed was not built: the mixed-precision search ran out of its budget of 1 ")
        and "kept what was measured" in note
        for note in built.notes
    ), built.notes
    assert seen and seen[-1][0] == 1.0 and "1 of at most 1 candidate models judged" in seen[-1][1]


def test_the_search_budget_is_read_from_the_profile_and_checked() -> None:
    budget = mixed_precision.SearchBudget.from_options({"search_budget_s": 30, "search_max_candidates": 50.0})
    assert (budget.seconds, budget.max_candidates) == (30, 50)
    assert mixed_precision.SearchBudget.from_options({"min_cosine": 0.9}) == mixed_precision.SearchBudget(120.0, 300)
    for options, words in (
        ({"search_budget_s": "fast"}, "must be a number of seconds, not 'fast'"),
        ({"search_budget_s": 0}, "must be above 0"),
        ({"search_budget_s": float("inf")}, "must be a number of seconds"),
        ({"search_max_candidates": 2.5}, "must be a whole number of candidate models, not 2.5"),
        ({"search_max_candidates": True}, "must be a whole number"),
        ({"search_max_candidates": 0}, "must be between 1 and 100,000, not 0"),
    ):
        with pytest.raises(ModelError) as raised:
            mixed_precision.SearchBudget.from_options(options)
        assert raised.value.code == "invalid_search_budget" and words in raised.value.message
    # A variant build falls back to the default and says so, rather than losing every variant.
    budget, note = mixed_precision.SearchBudget.for_build({"search_budget_s": -5})
    assert budget == mixed_precision.SearchBudget()
    assert "'search_budget_s' must be above 0" in note and "used the default budget (120 s, 300 candidates)" in note


def test_a_candidate_must_pass_on_each_set_of_the_probe_on_its_own() -> None:
    """Pooled with 8 calibration samples it matches exactly, a slice that collapses on the 8
    parity inputs keeps its signal-to-noise ratio over the 16: each set is judged alone."""
    from workers.engine.parity import Tolerance, compare_variant

    rng = np.random.default_rng(0)
    reference = [{"features": rng.standard_normal((1, 64)).astype(np.float32)} for _ in range(16)]
    outputs = []
    for index, run in enumerate(reference):
        changed = run["features"].copy()
        if index >= 8:
            changed[0, 0] += rng.standard_normal() * 0.6
        outputs.append({"features": changed})
    tolerance = Tolerance()
    assert compare_variant(reference, outputs, tolerance).passed
    verdict = mixed_precision.judge_sets(reference, outputs, tolerance, None, [(0, 8), (8, 16)])
    assert not verdict.passed
    assert "lost 1 of its 64 slices" in verdict.reasons[0]
    feeds, where, sets = mixed_precision.probe_feeds([{"x": 1}] * 12, [{"x": 2}] * 8, 8, "your validation set")
    assert (len(feeds), sets) == (16, [(0, 8), (8, 16)])
    assert where == "8 calibration samples and the 8 inputs parity judges on (your validation set)"


def test_the_graded_metric_is_one_for_a_pass_and_ranks_failures_by_how_near_they_are() -> None:
    """NNCF's accuracy control ranks layer groups by the metric: failing candidates must differ
    by how far they are from passing, and a pass must equal the original's 1.0."""
    rng = np.random.default_rng(4)
    reference = [{"features": rng.standard_normal((1, 64)).astype(np.float32)} for _ in range(8)]
    tolerance = Tolerance(max_abs_error=1e-3, min_cosine=0.5, min_slice_sqnr_db=30.0)

    def grade(noise: float) -> float:
        noisy = [
            {"features": run["features"] + noise * rng.standard_normal((1, 64)).astype(np.float32)} for run in reference
        ]
        return mixed_precision.graded_metric(compare_variant(reference, noisy, tolerance))

    assert grade(0.0) == 1.0
    near, far, farther = grade(0.05), grade(0.3), grade(3.0)
    assert mixed_precision.FAILING_CEILING >= near > far > farther >= 0.0
    # Nothing could be scored (an output lost entirely): the floor.
    broken = compare_variant(reference, [{"features": np.full((1, 64), np.nan, np.float32)}] * 8, tolerance)
    assert mixed_precision.graded_metric(broken) == 0.0
