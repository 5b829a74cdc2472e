"""Verdicts that respect noise: variants within each other's intervals are ties, ties go to accuracy
then size, the winner's speed-up carries its band, and a rerun with other noise picks the same."""

from __future__ import annotations

from typing import Any

import pytest

from workers.engine.recommend import Candidate, recommend


def timed(cpu: float, half: float, *, p50: float | None = None, threads_one: bool = True, p99: Any = "auto") -> dict:
    """A batch-1 point as the benchmark step hands it over: CPU time per inference with its 95 %
    interval (+/- `half`), wall-clock p50 beside it, from 3 trials x 1,200 requests."""
    p50 = p50 if p50 is not None else cpu * 1.1
    p99_value = p50 * 1.5 if p99 == "auto" else p99
    return {
        "batch": 1,
        "concurrency": 1,
        "p50": p50,
        "p50_ms": p50,
        "p50_ci_ms": [p50 * 0.97, p50 * 1.03],
        "p99": p99_value,
        "p99_ms": p99_value,
        "p99_ci_ms": [p99_value * 0.9, p99_value * 1.2] if p99_value is not None else None,
        "p99_note": None if p99_value is not None else "not enough samples (180) for p99: it needs at least 1,000",
        "max_ms": p50 * 3,
        "cpu_ms": cpu,
        "cpu_ci_ms": [cpu - half, cpu + half],
        "throughput": 1000 / p50,
        "throughput_ci": [1000 / p50 * 0.97, 1000 / p50 * 1.03],
        "samples": 1200 if p99_value is not None else 180,
        "trials": 3,
        "single_threaded_cpu": threads_one,
    }


def parity(sqnr_db: float | None, cosine: float = 0.9999) -> dict[str, Any]:
    return {"passed": True, "reasons": [], "outputs": [{"name": "y", "sqnr_db": sqnr_db, "cosine": cosine}]}


def variant(name: str, point: dict, *, sqnr: float | None = 40.0, size: int = 1_000_000) -> Candidate:
    return Candidate(name, "onnxruntime", "fp32", parity(sqnr), (point,), size_bytes=size)


BASELINE = [timed(2.0, 0.04)]


def test_variants_whose_intervals_overlap_are_tied_and_the_more_accurate_wins() -> None:
    # int8 is a little faster by its point estimate, but inside fp32's noise, and less accurate.
    candidates = [
        variant("ort-int8", timed(1.00, 0.05), sqnr=32.0),
        variant("ort-fp32", timed(1.03, 0.05), sqnr=80.0),
    ]
    result = recommend(candidates, BASELINE, "p99_latency_batch1")
    assert result.statistic == "cpu_ms"
    assert result.winner is not None and result.winner.name == "ort-fp32"
    assert result.winner.tied_with == ("ort-int8",)
    assert result.runner_up is not None and result.runner_up.name == "ort-int8"
    assert result.runner_up.reason.startswith(
        "Tied with 'ort-fp32' within noise (CPU time per inference 1 ms [0.95 ms-1.05 ms]"
    )
    assert "'ort-fp32' was picked for accuracy (worst-output signal-to-noise 80.0 dB vs 32.0 dB)" in (
        result.runner_up.reason
    )
    assert "Tied with 'ort-int8' within noise; picked for accuracy" in result.summary


def test_a_tie_with_equal_accuracy_goes_to_the_smaller_file() -> None:
    candidates = [
        variant("big", timed(1.00, 0.05), size=9_000_000),
        variant("small", timed(1.02, 0.05), size=2_000_000),
    ]
    result = recommend(candidates, BASELINE, "p99_latency_batch1")
    assert result.winner is not None and result.winner.name == "small"
    assert result.runner_up is not None
    assert result.runner_up.reason.endswith("'small' was picked for its smaller file (2 MB vs 9 MB).")
    assert "picked for its smaller file" in result.summary


def test_a_variant_faster_beyond_the_noise_wins_over_a_more_accurate_one() -> None:
    candidates = [
        variant("ort-int8", timed(0.50, 0.02), sqnr=32.0),
        variant("ort-fp32", timed(1.00, 0.02), sqnr=80.0),
    ]
    result = recommend(candidates, BASELINE, "p99_latency_batch1")
    assert result.winner is not None and result.winner.name == "ort-int8" and result.winner.tied_with == ()
    assert result.runner_up is not None
    assert result.runner_up.reason.startswith(
        "Slower beyond the noise: CPU time per inference 1 ms [0.98 ms-1.02 ms] vs 0.5 ms [0.48 ms-0.52 ms] for "
        "'ort-int8', which is 1.88x-2.1"
    )
    assert result.runner_up.reason.endswith(
        "faster by CPU time per inference (95% interval from 3 trials x 1,200 samples)."
    )


def test_one_disturbed_trial_does_not_tie_a_slow_variant_with_a_fast_one() -> None:
    """bench/stability.py's flip: fp32's three trials 0.185, 0.196 and 0.305 ms give 0.229 ms
    [0.064-0.394]; it overlaps int8's 0.065 ms [0.061-0.070], but neither figure is plausible for
    the other, so int8 wins on speed instead of fp32 on accuracy."""
    noisy = {**timed(0.229, 0.165), "cpu_ci_ms": [0.064, 0.394]}
    candidates = [
        variant("ort-fp32", noisy, sqnr=None),  # exact
        variant("ort-int8", {**timed(0.065, 0.0045)}, sqnr=33.9),
    ]
    result = recommend(candidates, BASELINE, "p99_latency_batch1")
    assert result.winner is not None and result.winner.name == "ort-int8" and result.winner.tied_with == ()
    assert result.runner_up is not None and result.runner_up.name == "ort-fp32"
    assert result.runner_up.reason.startswith("Slower by its measured figure: CPU time per inference 0.229 ms")
    assert "the intervals overlap, but the figures are more than 5% apart" in result.runner_up.reason


def test_the_winners_speedup_carries_its_interval() -> None:
    result = recommend([variant("ort-int8", timed(0.50, 0.02))], BASELINE, "p99_latency_batch1")
    winner = result.winner
    assert winner is not None
    assert winner.speedup == pytest.approx(4.0)
    assert winner.speedup_low == pytest.approx(1.96 / 0.52) and winner.speedup_high == pytest.approx(2.04 / 0.48)
    assert (winner.low, winner.high) == (pytest.approx(0.48), pytest.approx(0.52))
    assert (winner.samples, winner.trials) == (1200, 3)
    assert winner.speedup_sentence == (
        "3.77x-4.25x faster by CPU time per inference (95% interval from 3 trials x 1,200 samples)."
    )
    assert result.summary.startswith(
        "Use 'ort-int8' (onnxruntime, fp32): CPU time per inference 0.5 ms [0.48 ms-0.52 ms] at batch 1, "
        "concurrency 1, 95% interval from 3 trials x 1,200 samples (p50 0.55 ms; p99 0.825 ms). "
        "Against the original model in plain onnxruntime: 3.77x-4.25x faster"
    )
    assert (result.baseline_value, result.baseline_low, result.baseline_high) == (
        2.0,
        pytest.approx(1.96),
        pytest.approx(2.04),
    )


def test_the_same_variants_measured_twice_get_the_same_verdict() -> None:
    # Two runs of the same three variants: the noise moves every point estimate inside its
    # interval, enough to swap which of the two close ones looks fastest.
    first = [
        variant("ov-int8", timed(0.60, 0.04), sqnr=30.0),
        variant("ort-int8", timed(0.62, 0.04), sqnr=35.0),
        variant("ort-fp32", timed(1.00, 0.04), sqnr=90.0),
    ]
    second = [
        variant("ov-int8", timed(0.63, 0.05), sqnr=30.0),
        variant("ort-int8", timed(0.59, 0.05), sqnr=35.0),
        variant("ort-fp32", timed(0.97, 0.05), sqnr=90.0),
    ]
    baseline_again = [timed(2.05, 0.05)]
    one = recommend(first, BASELINE, "p99_latency_batch1")
    two = recommend(second, baseline_again, "p99_latency_batch1")
    assert one.winner is not None and two.winner is not None
    assert one.winner.name == two.winner.name == "ort-int8"
    assert [o.name for o in (one.runner_up, *one.others) if o] == [o.name for o in (two.runner_up, *two.others) if o]
    # Each run's speed-up band covers the other run's point estimate.
    assert one.winner.speedup_low <= two.winner.speedup <= one.winner.speedup_high
    assert two.winner.speedup_low <= one.winner.speedup <= two.winner.speedup_high


def test_multi_threaded_runs_are_ranked_by_wall_clock_p50_with_cpu_time_beside() -> None:
    candidates = [
        variant("a", timed(2.0, 0.05, p50=0.5, threads_one=False)),
        variant("b", timed(1.0, 0.05, p50=1.0, threads_one=False)),
    ]
    result = recommend(candidates, [timed(2.0, 0.04, threads_one=False)], "p99_latency_batch1")
    assert result.statistic == "p50_ms" and "single-threaded" in result.statistic_note
    assert result.winner is not None and result.winner.name == "a"
    assert result.winner.cpu_ms == 2.0 and result.winner.p50_ms == 0.5


def test_a_budget_without_a_supported_p99_is_judged_by_the_slowest_request() -> None:
    short = variant("short-run", timed(1.0, 0.05, p50=1.0, p99=None))  # slowest request: 3 ms
    result = recommend([short], BASELINE, "p99_latency_batch1", budget_ms=2.0)
    assert result.winner is None
    assert result.others[0].reason == (
        "Its slowest request 3 ms (standing in for a p99 that 180 samples can't support) at batch 1 is over the "
        "2 ms budget."
    )
    within = recommend([short], BASELINE, "p99_latency_batch1", budget_ms=5.0)
    assert within.winner is not None and within.winner.p99_ms is None
    assert within.winner.p99_note == "not enough samples (180) for p99: it needs at least 1,000"


def test_throughput_ties_use_their_intervals() -> None:
    def at_batch8(throughput: float) -> dict:
        point = timed(1.0, 0.05)
        return {**point, "batch": 8, "throughput": throughput, "throughput_ci": [throughput * 0.95, throughput * 1.05]}

    candidates = [
        variant("quick-but-noisy", at_batch8(3100.0), sqnr=30.0),
        variant("accurate", at_batch8(3000.0), sqnr=60.0),
    ]
    result = recommend(candidates, BASELINE, "throughput_within_p99_budget", budget_ms=10.0)
    assert result.statistic == "throughput"
    assert result.winner is not None and result.winner.name == "accurate"
    assert result.winner.tied_with == ("quick-but-noisy",)
