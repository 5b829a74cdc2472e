"""Timings with their confidence: intervals that cover the truth as often as they claim, percentiles
only where the samples support them, and change verdicts that ignore noise."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from tests.trials import raw_trial
from workers.engine.measure import combine_trials
from workers.engine.timing import (
    Estimate,
    estimate_from_point,
    latency_change,
    mean_interval,
    percentile_interval,
    percentile_supported,
    positive_interval,
)


def _coverage(draw, truth: float, q: float, n: int, repeats: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(repeats):
        interval = percentile_interval(sorted(draw(rng, n).tolist()), q)
        assert interval is not None
        hits += interval[0] <= truth <= interval[1]
    return hits / repeats


@pytest.mark.parametrize(
    ("q", "n"),
    [(0.5, 60), (0.5, 7000), (0.99, 1000)],
    ids=["median-exact-binomial", "median-normal-approximation", "p99-at-1000-samples"],
)
def test_order_statistic_intervals_cover_the_true_percentile_about_95_percent_of_the_time(q: float, n: int) -> None:
    # Latencies are skewed: a lognormal has a known quantile exp(mu + sigma * z_q).
    mu, sigma = 0.0, 0.5
    z = {0.5: 0.0, 0.99: 2.326348}[q]
    truth = math.exp(mu + sigma * z)
    coverage = _coverage(lambda rng, size: rng.lognormal(mu, sigma, size), truth, q, n, repeats=400, seed=7)
    # 400 repeats at 95 % have a standard error of 1.1 %; an interval that claimed too much
    # (0.5 % either side of the sample percentile, say) would cover far less.
    assert 0.92 <= coverage <= 0.995


def test_the_t_interval_across_trials_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(2000):
        _, low, high = mean_interval(rng.normal(10.0, 1.0, 3).tolist())
        hits += low <= 10.0 <= high
    assert 0.935 <= hits / 2000 <= 0.965


def test_percentiles_need_the_samples_to_support_them() -> None:
    assert not percentile_supported(999, 0.99) and percentile_supported(1000, 0.99)
    assert not percentile_supported(9999, 0.999) and percentile_supported(10_000, 0.999)
    assert percentile_supported(20, 0.5) and not percentile_supported(5, 0.5)


def test_a_p99_from_too_few_samples_is_not_reported_but_said_so() -> None:
    rng = np.random.default_rng(0)
    # The case: a p99 from 180 requests (three trials of 60).
    trials = [raw_trial(rng.lognormal(0, 0.3, 60).tolist(), cpu_ms_each=0.9) for _ in range(3)]
    point = combine_trials(trials, keep_samples=100)
    assert point["samples"] == 180 and point["trials"] == 3
    assert point["p99_ms"] is None and point["p99_ci_ms"] is None
    assert point["p99_note"] == "not enough samples (180) for p99: it needs at least 1,000"
    assert point["p99_9_ms"] is None and "for p99.9" in point["p99_9_note"]
    # The median is well supported: it has a value and an interval around it.
    low, high = point["p50_ci_ms"]
    assert low <= point["p50_ms"] <= high and low < high
    assert estimate_from_point(point, "p99_ms") is None
    p50 = estimate_from_point(point, "p50_ms")
    assert p50 is not None and (p50.samples, p50.trials) == (180, 3)


def test_enough_samples_give_a_p99_with_an_interval_and_means_get_t_intervals() -> None:
    rng = np.random.default_rng(1)
    trials = [
        raw_trial(rng.lognormal(0, 0.3, 400).tolist(), cpu_ms_each=cpu, wall_ms_each=wall)
        for cpu, wall in ((0.90, 1.00), (0.92, 1.10), (0.91, 1.05))
    ]
    point = combine_trials(trials, keep_samples=500)
    assert point["samples"] == 1200 and point["p99_note"] is None
    low, high = point["p99_ci_ms"]
    assert low <= point["p99_ms"] <= high
    # The pooled p99 is the one the histogram shows (samples_ms) and the table shows (p99_ms).
    assert len(point["samples_ms"]) == 500
    assert point["cpu_ms"] == pytest.approx(0.91, abs=1e-6)
    cpu_low, cpu_high = point["cpu_ci_ms"]
    # The t-interval of the logs, back on the ms scale: t(2) = 4.303 over sd(log) / sqrt(3).
    logs = [math.log(v) for v in (0.90, 0.92, 0.91)]
    half = 4.302653 * statistics.stdev(logs) / math.sqrt(3)
    centre = statistics.fmean(logs)
    assert cpu_low == pytest.approx(math.exp(centre - half), abs=1e-5)
    assert cpu_high == pytest.approx(math.exp(centre + half), abs=1e-5)
    assert point["trial_cpu_ms"] == [0.9, 0.92, 0.91]
    tp_low, tp_high = point["throughput_ci"]
    assert tp_low < point["throughput"] < tp_high
    assert "3 trials" in point["interval_method"]


def test_trials_that_disagree_widen_the_median_interval() -> None:
    rng = np.random.default_rng(2)
    steady = [raw_trial(rng.normal(1.0, 0.01, 500).tolist(), cpu_ms_each=1.0) for _ in range(3)]
    # One process ran 20 % slower (another process on the core, a worse memory layout).
    shifted = [*steady[:2], raw_trial(rng.normal(1.2, 0.01, 500).tolist(), cpu_ms_each=1.2)]
    narrow, wide = combine_trials(steady, 100)["p50_ci_ms"], combine_trials(shifted, 100)["p50_ci_ms"]
    assert narrow[1] - narrow[0] < 0.01
    # Trial medians 1.0, 1.0, 1.2: t(2) * sd / sqrt(3) = 0.29 either side of their mean.
    assert wide[1] - wide[0] > 0.5 and wide[1] > 1.2


def _estimate(value: float, low: float, high: float, statistic: str = "cpu_ms") -> Estimate:
    return Estimate(value, low, high, samples=1000, statistic=statistic, trials=3)


def test_a_change_beyond_the_noise_is_called_with_its_band() -> None:
    change = latency_change(_estimate(2.0, 1.95, 2.05), _estimate(1.0, 0.98, 1.02))
    assert change.verdict == "faster"
    assert change.ratio == pytest.approx(2.0)
    assert change.ratio_low == pytest.approx(1.95 / 1.02) and change.ratio_high == pytest.approx(2.05 / 0.98)
    assert change.sentence == (
        "1.91x-2.09x faster by CPU time per inference (95% interval from 3 trials x 1,000 samples)."
    )
    slower = latency_change(_estimate(1.0, 0.98, 1.02), _estimate(2.0, 1.95, 2.05))
    assert slower.verdict == "slower" and slower.sentence.startswith("1.91x-2.09x slower")


def test_overlapping_intervals_are_no_change_however_large_the_point_estimates_differ() -> None:
    # The "slower by 6.12 ms (4308%)": a tail figure whose interval spans both values.
    change = latency_change(_estimate(0.14, 0.10, 7.0, "p99_ms"), _estimate(6.26, 0.12, 9.0, "p99_ms"))
    assert change.verdict == "no_change"
    assert "No change in p99 latency beyond the noise" in change.sentence


def test_a_change_smaller_than_the_threshold_is_no_change_even_when_the_intervals_are_apart() -> None:
    change = latency_change(_estimate(1.03, 1.029, 1.031), _estimate(1.0, 0.999, 1.001))
    assert change.verdict == "no_change"
    assert latency_change(_estimate(1.03, 1.029, 1.031), _estimate(1.0, 0.999, 1.001), min_relative=0.01).verdict == (
        "faster"
    )


def test_higher_throughput_is_faster() -> None:
    before = _estimate(100.0, 98.0, 102.0, "throughput")
    after = _estimate(300.0, 290.0, 310.0, "throughput")
    change = latency_change(before, after)
    assert change.verdict == "faster" and change.ratio == pytest.approx(3.0)


def test_mismatched_or_zero_figures_are_not_compared() -> None:
    with pytest.raises(ValueError):
        latency_change(_estimate(1.0, 0.9, 1.1), _estimate(1.0, 0.9, 1.1, "p50_ms"))
    assert latency_change(_estimate(0.0, 0.0, 0.0), _estimate(1.0, 0.9, 1.1)).verdict == "unknown"


def test_an_interval_that_reached_zero_gives_the_widest_band_not_no_answer():
    """Found in CI: three noisy trials of a 30-us model put CPU time's t-interval below zero,
    and the comparison said "a measured value is zero" instead of "within noise"."""
    noisy = _estimate(0.030, -0.010, 0.070)
    change = latency_change(noisy, _estimate(0.025, 0.020, 0.030))
    assert change.verdict == "no_change" and change.ratio is not None
    assert 0 < change.ratio_low < 1 < change.ratio_high


def test_three_noisy_trials_never_give_a_time_below_zero() -> None:
    """The new-user trial's case: trial p50s of 2, 6 and 12 ms. A plain t-interval runs from
    -5.8 ms; on the log scale the band stays above zero and as wide in ratio both ways."""
    values = [2.0, 6.0, 12.0]
    _, plain_low, _ = mean_interval(values)
    assert plain_low < 0
    centre, low, high = positive_interval(values)
    assert 0 < low < centre < high
    assert centre / low == pytest.approx(high / centre)
    trials = [raw_trial([p50] * 200, cpu_ms_each=p50) for p50 in values]
    point = combine_trials(trials, keep_samples=10)
    assert point["p50_ci_ms"][0] > 0 and point["cpu_ci_ms"][0] > 0
    assert point["p50_ci_ms"][0] <= point["p50_ms"] <= point["p50_ci_ms"][1]
    assert positive_interval([0.0, 1.0]) == mean_interval([0.0, 1.0])  # not a time: the plain interval
