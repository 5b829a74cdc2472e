"""The recommendation: the fastest variant that keeps the model's accuracy, and why the others lost."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from workers.engine.errors import ModelError
from workers.engine.parity import Tolerance, VariantParity, compare_variant
from workers.engine.recommend import Candidate, recommend

PASSED: dict[str, Any] = {"passed": True, "reasons": []}


def point(batch: int, concurrency: int, p99: float, throughput: float | None = None) -> dict[str, Any]:
    """A benchmark point as the benchmark stores it (ms, inferences per second)."""
    return {
        "batch": batch,
        "concurrency": concurrency,
        "p50": p99 * 0.8,
        "p99": p99,
        "throughput": throughput if throughput is not None else 1000.0 * batch * concurrency / p99,
    }


def candidate(
    name: str,
    p99_batch1: float | None = None,
    *points: dict[str, Any],
    parity: VariantParity | dict[str, Any] | None = PASSED,
    size: int | None = 1_000_000,
    precision: str = "fp32",
) -> Candidate:
    measured = ([point(1, 1, p99_batch1)] if p99_batch1 is not None else []) + list(points)
    return Candidate(name, "onnxruntime", precision, parity, tuple(measured), size_bytes=size)


BASELINE = [point(1, 1, 4.6), point(8, 1, 9.0, 900.0), point(8, 4, 30.0, 1100.0)]


def _broken_parity() -> VariantParity:
    """A real parity verdict: the variant's logits point elsewhere."""
    reference = {"logits": np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])}
    variant = {"logits": np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])}
    return compare_variant(reference, variant, Tolerance(max_abs_error=1e-3, min_cosine=0.99, min_top1_agreement=0.0))


# --- p99 at batch 1 -----------------------------------------------------------------------


def test_lowest_p99_at_batch_1_wins_with_its_speedup() -> None:
    candidates = [candidate("ort-basic", 4.1), candidate("ort-all", 2.3), candidate("ov-fp32", 3.0)]
    result = recommend(candidates, BASELINE, "p99_latency_batch1")
    assert result.winner is not None and result.winner.name == "ort-all"
    assert result.winner.value == 2.3 and result.winner.reason == ""
    assert result.winner.speedup == pytest.approx(4.6 / 2.3)
    assert result.runner_up is not None and result.runner_up.name == "ov-fp32"
    # Points stored without intervals are ranked by p99 and count as exact measurements.
    assert result.statistic == "p99_ms"
    assert result.runner_up.reason == (
        "Slower beyond the noise: p99 latency 3 ms vs 2.3 ms for 'ort-all', which is 1.30x faster by p99 latency "
        "(single measurements without intervals)."
    )
    assert [(other.name, other.reason) for other in result.others] == [
        (
            "ort-basic",
            "Slower beyond the noise: p99 latency 4.1 ms vs 2.3 ms for 'ort-all', which is 1.78x faster by p99 "
            "latency (single measurements without intervals).",
        )
    ]
    assert result.baseline_value == 4.6 and not result.use_baseline
    assert result.summary == (
        "Use 'ort-all' (onnxruntime, fp32): p99 latency 2.3 ms at batch 1, concurrency 1 (p50 1.84 ms). "
        "Against the original model in plain onnxruntime: 2.00x faster by p99 latency (single measurements "
        "without intervals)."
    )


def test_points_at_other_batches_do_not_count_for_batch_1_latency() -> None:
    fast_in_batches = candidate("trt-fp16", None, point(8, 1, 1.0), point(1, 4, 1.5))
    result = recommend([fast_in_batches, candidate("ort-all", 2.3)], BASELINE, "p99_latency_batch1")
    assert result.winner is not None and result.winner.name == "ort-all"
    assert result.runner_up is None
    assert result.others[0].reason == "Not benchmarked at batch 1, concurrency 1."


def test_an_optional_budget_caps_batch_1_latency() -> None:
    result = recommend([candidate("slow", 7.0), candidate("ok", 4.0)], BASELINE, "p99_latency_batch1", budget_ms=5)
    assert result.winner is not None and result.winner.name == "ok"
    assert result.others[0].reason == "Its p99 7 ms at batch 1 is over the 5 ms budget."


# --- throughput within a p99 budget -------------------------------------------------------


def test_highest_throughput_within_the_budget_wins() -> None:
    candidates = [
        # Its best throughput is over budget; within budget it does 2500/s.
        candidate("ort-int8", 1.2, point(32, 4, 12.0, 9000.0), point(8, 4, 4.0, 2500.0), precision="int8"),
        candidate("ov-int8", 1.5, point(8, 4, 4.5, 3000.0), precision="int8"),
        candidate("ort-all", None, point(32, 1, 5.5, 4000.0), point(64, 1, 9.0, 5000.0)),
    ]
    result = recommend(candidates, BASELINE, "throughput_within_p99_budget", budget_ms=5)
    assert result.winner is not None and result.winner.name == "ov-int8"
    assert (result.winner.batch, result.winner.concurrency, result.winner.value) == (8, 4, 3000.0)
    # The baseline's best point within 5 ms is batch 1 at 1000/4.6 = 217/s.
    assert result.winner.speedup == pytest.approx(3000.0 / (1000.0 / 4.6))
    assert result.runner_up is not None and result.runner_up.name == "ort-int8"
    assert result.runner_up.reason == (
        "Lower beyond the noise: throughput 2,500/s vs 3,000/s for 'ov-int8', which is 1.20x faster by throughput "
        "(single measurements without intervals)."
    )
    assert result.others[0].name == "ort-all"
    assert result.others[0].reason == "No point within the 5 ms p99 budget (its lowest is p99 5.5 ms)."
    assert result.summary.startswith(
        "Use 'ov-int8' (onnxruntime, int8): throughput 3,000/s at batch 8, concurrency 4 (p50 3.6 ms; p99 4.5 ms)"
    )


def test_throughput_needs_a_budget() -> None:
    with pytest.raises(ModelError) as raised:
        recommend([candidate("ort-all", 2.3)], BASELINE, "throughput_within_p99_budget")
    assert raised.value.code == "invalid_objective"
    assert "budget_ms" in raised.value.message


@pytest.mark.parametrize(("objective", "budget"), [("fastest", None), ("p99_latency_batch1", -1.0)])
def test_unknown_objectives_and_bad_budgets_are_refused(objective: str, budget: float | None) -> None:
    with pytest.raises(ModelError) as raised:
        recommend([candidate("ort-all", 2.3)], BASELINE, objective, budget_ms=budget)
    assert raised.value.code == "invalid_objective"


# --- accuracy comes first -----------------------------------------------------------------


def test_a_faster_variant_that_breaks_accuracy_never_wins() -> None:
    fast_but_wrong = candidate(
        "ort-int8", 0.5, point(32, 4, 2.0, 50_000.0), parity=_broken_parity(), size=10, precision="int8"
    )
    slower = candidate("ort-all", 2.3, point(8, 4, 4.0, 2000.0))
    for objective, budget in (("p99_latency_batch1", None), ("throughput_within_p99_budget", 5.0)):
        result = recommend([fast_but_wrong, slower], BASELINE, objective, budget_ms=budget)
        assert result.winner is not None and result.winner.name == "ort-all"
        assert result.runner_up is None
        (lost,) = result.others
        assert lost.name == "ort-int8" and lost.value is None
        assert lost.reason == (
            "Failed parity: cosine similarity on 'logits' is 0.2, below the minimum 0.99 (and 2 more problems)."
        )


def test_the_parity_reason_names_metric_value_and_limit() -> None:
    parity = {"passed": False, "reasons": ["Cosine similarity on 'logits' is 0.93, below the minimum 0.99."]}
    result = recommend(
        [candidate("ov-int8", 1.0, parity=parity), candidate("ort-all", 2.3)], BASELINE, "p99_latency_batch1"
    )
    assert result.others[0].reason == "Failed parity: cosine similarity on 'logits' is 0.93, below the minimum 0.99."


def test_when_no_variant_passes_parity_the_original_is_recommended() -> None:
    failed = {"passed": False, "reasons": ["Max abs error on 'y' is 3, above the limit 0.01."]}
    candidates = [candidate("ort-int8", 1.0, parity=failed), candidate("ov-int8", 1.1, parity=_broken_parity())]
    result = recommend(candidates, BASELINE, "p99_latency_batch1")
    assert result.winner is None and result.runner_up is None and result.use_baseline
    assert [other.name for other in result.others] == ["ort-int8", "ov-int8"]
    assert all(other.reason.startswith("Failed parity: ") for other in result.others)
    assert result.summary == (
        "No variant passes the accuracy check, so none is recommended; keep the original model in "
        "plain onnxruntime: p99 latency 4.6 ms at batch 1, concurrency 1 (p50 3.68 ms)."
    )


def test_unchecked_and_unbenchmarked_variants_cannot_win() -> None:
    crashed = Candidate("trt-fp16", "tensorrt", "fp16", PASSED, benchmark_error="engine build ran out of memory")
    candidates = [candidate("unchecked", 0.1, parity=None), crashed, candidate("ort-all", 2.3)]
    result = recommend(candidates, BASELINE, "p99_latency_batch1")
    assert result.winner is not None and result.winner.name == "ort-all"
    assert [other.reason for other in result.others] == [
        "Not checked for parity, so it cannot be recommended.",
        "Not benchmarked: engine build ran out of memory.",
    ]


def test_no_point_within_the_budget_keeps_the_original() -> None:
    result = recommend([candidate("ort-all", 6.0)], BASELINE, "throughput_within_p99_budget", budget_ms=5)
    assert result.winner is None and result.use_baseline
    assert result.others[0].reason == "No point within the 5 ms p99 budget (its lowest is p99 6 ms)."
    assert result.summary == (
        "No variant that passes the accuracy check has a benchmark point within the 5 ms p99 budget; keep the "
        "original model in plain onnxruntime: throughput 217/s at batch 1, concurrency 1 (p50 3.68 ms; p99 4.6 ms)."
    )


# --- ties ---------------------------------------------------------------------------------


def test_equal_p99_goes_to_the_smaller_file_then_the_name() -> None:
    candidates = [
        candidate("b-big", 2.0, size=5_000_000),
        candidate("c-small", 2.0, size=2_000_000),
        candidate("a-small", 2.0, size=2_000_000),
    ]
    for order in (candidates, candidates[::-1]):
        result = recommend(order, BASELINE, "p99_latency_batch1")
        assert result.winner is not None and result.winner.name == "a-small"
        assert result.runner_up is not None and result.runner_up.name == "c-small"
        assert result.runner_up.reason == (
            "Tied with 'a-small' within noise (p99 latency 2 ms vs 2 ms), with the same accuracy and file size; "
            "'a-small' comes first by speed, then name."
        )
        assert result.others[0].reason == (
            "Tied with 'a-small' within noise (p99 latency 2 ms vs 2 ms); 'a-small' was picked for its smaller file "
            "(2 MB vs 5 MB)."
        )


def test_equal_throughput_goes_to_the_lower_p99() -> None:
    candidates = [candidate("a", None, point(8, 4, 4.5, 3000.0)), candidate("b", None, point(8, 4, 3.0, 3000.0))]
    result = recommend(candidates, BASELINE, "throughput_within_p99_budget", budget_ms=5)
    assert result.winner is not None and result.winner.name == "b"
    assert result.runner_up is not None
    assert result.runner_up.reason == (
        "Tied with 'b' within noise (throughput 3,000/s vs 3,000/s), with the same accuracy and file size; 'b' has "
        "the lower p99 (p99 3 ms vs p99 4.5 ms)."
    )


# --- stored JSON --------------------------------------------------------------------------


def test_candidates_as_stored_json_give_the_same_result() -> None:
    objects = [candidate("ov-int8", 1.0, parity=_broken_parity()), candidate("ort-all", 2.3)]
    stored = json.loads(
        json.dumps(
            [
                {
                    "name": item.name,
                    "backend": item.backend,
                    "precision": item.precision,
                    "parity": item.parity.to_dict() if isinstance(item.parity, VariantParity) else item.parity,
                    "points": [*item.points, {"batch": 64, "concurrency": 1, "error": "out of memory"}],
                    "size_bytes": item.size_bytes,
                }
                for item in objects
            ]
        )
    )
    from_json = recommend(stored, BASELINE, "p99_latency_batch1")
    assert from_json == recommend(objects, BASELINE, "p99_latency_batch1")
    data = json.loads(json.dumps(from_json.to_dict()))
    assert data["winner"]["name"] == "ort-all"
    assert data["others"][0]["reason"].startswith("Failed parity: ")


def test_without_a_baseline_there_is_no_speedup() -> None:
    result = recommend([candidate("ort-all", 2.3)], None, "p99_latency_batch1")
    assert result.winner is not None and result.winner.speedup is None
    assert result.summary.endswith("The original model in plain onnxruntime has no benchmark to compare it with.")


def test_without_timings_the_most_accurate_then_smallest_passing_variant_is_chosen_and_the_reasons_are_true():
    """Timings on an emulated CPU rank nothing (ADR 0016): accuracy, then size, and each loser's
    sentence says which of the two it lost on."""
    from workers.engine.recommend import recommend_without_timings

    def parity(sqnr: float, cosine: float) -> dict[str, Any]:
        return {"passed": True, "reasons": [], "outputs": [{"name": "y", "sqnr_db": sqnr, "cosine": cosine}]}

    failed = {"passed": False, "reasons": ["output 'y' lost its top-1 agreement"]}
    chosen = recommend_without_timings(
        [
            candidate("fp16", parity=parity(60.0, 0.99999), size=500_000, precision="fp16"),
            candidate("fp32", parity=parity(120.0, 1.0), size=1_000_000),
            candidate("fp32-copy", parity=parity(120.0, 1.0), size=2_000_000),
            candidate("int8", parity=failed, size=250_000, precision="int8"),
        ],
        "p99_latency_batch1",
        None,
        "the timings were measured under QEMU user-mode emulation of aarch64",
    )
    assert chosen.winner is not None and chosen.winner.name == "fp32" and chosen.statistic == "accuracy_and_size"
    assert chosen.summary.startswith("fp32 is recommended on accuracy and size only, not speed: the timings were")
    reasons = {o.name: o.reason for o in (chosen.runner_up, *chosen.others) if o is not None}
    assert reasons["fp32-copy"] == "Ranked by accuracy and size only: fp32 is as accurate and smaller."
    assert reasons["fp16"].startswith("Ranked by accuracy and size only: fp32 is more accurate (worst-output")
    assert "120.0 dB vs 60.0 dB" in reasons["fp16"]
    assert "top-1" in reasons["int8"]
