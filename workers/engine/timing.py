"""Timings with their confidence, and verdicts that only call a change the noise can't explain.

A benchmark point (see `workers.engine.benchmark`) is measured in several trials, each in a
fresh process. Two kinds of interval describe it, both at 95 % confidence:

- a percentile (p50, p99) gets a distribution-free interval from the order statistics of all
  timed requests pooled over the trials: the ranks between which the true percentile lies with
  95 % probability follow from the binomial distribution, whatever the latency distribution;
  where the trials disagree more than that, the interval is widened to the t-interval of the
  per-trial values, because a fresh process is the unit that repeats (pyperf's lesson);
- a mean (CPU time per inference, throughput) gets a Student-t interval across the trials.

A percentile is only reported when the samples can support it: the rarest tail it names must
have been seen `MIN_TAIL_SAMPLES` times (p99 needs 1,000 requests, p99.9 10,000); otherwise it
is None with a note saying how many samples there were.

`latency_change` then compares two estimates the way criterion does: a change is only called
when the two intervals are apart and the change is larger than a noise threshold; everything
else is "no_change", and the sentence states the band.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from workers.engine.reports import BenchmarkPoint
from workers.engine.typed import read

CONFIDENCE = 0.95
# A percentile q is reported only when n * (1 - q) reaches this: about ten requests must fall
# beyond it, so that the interval's upper rank exists and the value isn't one outlier.
MIN_TAIL_SAMPLES = 10
# Two-sided 97.5 % quantiles of Student's t by degrees of freedom (scipy is not an engine
# dependency); above the table the normal quantile is close enough.
_T_975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
    10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980,
}  # fmt: skip
_Z_975 = 1.959964

STATISTICS = ("cpu_ms", "p50_ms", "p99_ms", "throughput")
# Which way is better for each statistic: latency and CPU time lower, throughput higher.
_LOWER_IS_BETTER = {"cpu_ms": True, "p50_ms": True, "p99_ms": True, "throughput": False}
_LABELS = {"cpu_ms": "CPU time per inference", "p50_ms": "p50 latency", "p99_ms": "p99 latency",
           "throughput": "throughput"}  # fmt: skip


@dataclass(frozen=True)
class Estimate:
    """One measured figure with its 95 % interval: `value` lies in [`low`, `high`].

    `samples` is the number of timed inferences behind it (over all trials), `trials` the number
    of fresh processes they came from, `statistic` one of STATISTICS."""

    value: float
    low: float
    high: float
    samples: int
    statistic: str
    trials: int = 1

    @property
    def relative_half_width(self) -> float:
        """Half the interval's width as a share of the value (0.02: +/- 2 %)."""
        return (self.high - self.low) / 2 / abs(self.value) if self.value else math.inf


@dataclass(frozen=True)
class LatencyChange:
    """How `after` compares with `before`. `ratio` is how many times faster `after` is (above 1:
    faster; for throughput, after / before), with its conservative 95 % band; None where either
    side has no interval. `verdict` is "faster", "slower", "no_change" or "unknown"."""

    verdict: str
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    sentence: str


def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (a 95 % two-sided interval)."""
    if df < 1:
        raise ValueError("a t-interval needs at least two values")
    if df in _T_975:
        return _T_975[df]
    below = max(k for k in _T_975 if k < df)
    above = [k for k in _T_975 if k > df]
    if not above:
        return _Z_975
    # Interpolate in 1/df, where the quantile is almost linear.
    high = min(above)
    weight = (1 / below - 1 / df) / (1 / below - 1 / high)
    return _T_975[below] + weight * (_T_975[high] - _T_975[below])


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """The mean of `values` (one per trial) and its 95 % Student-t interval: (mean, low, high).
    A single value has no spread to measure: its interval is the value itself."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def positive_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """For figures that can't be negative (times per request, rates): the 95 % Student-t interval
    of their logarithms, back on their own scale, as (geometric mean, low, high).

    Three noisy trials of a time give a plain t-interval whose low end can fall below zero,
    a latency no run can have. On the log scale the band stays above zero and is as wide in
    ratio below as above: a trial twice as slow weighs as much as one twice as fast. Values at
    or below zero (not times or rates) fall back to `mean_interval`."""
    if len(values) < 2 or any(value <= 0 for value in values):
        return mean_interval(values)
    centre, low, high = mean_interval([math.log(value) for value in values])
    return math.exp(centre), math.exp(low), math.exp(high)


def _binomial_cdf_table(n: int, q: float) -> list[float]:
    """P(B <= k) for B ~ Binomial(n, q), k = 0..n, computed in log space (n may be 10^6)."""
    log_q, log_1q = math.log(q), math.log1p(-q)
    lgamma_n1 = math.lgamma(n + 1)
    cdf, total = [], 0.0
    for k in range(n + 1):
        log_pmf = lgamma_n1 - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_q + (n - k) * log_1q
        total += math.exp(log_pmf)
        cdf.append(min(total, 1.0))
    return cdf


def order_statistic_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """0-based ranks (lo, hi) into n sorted samples such that the true q-quantile lies between
    sample[lo] and sample[hi] with at least `confidence`, whatever the distribution; None when n
    is too small for any such pair. Exact binomial below 5,000 samples, the normal
    approximation with a continuity margin above (where the two agree to a rank)."""
    if n < 1 or not 0 < q < 1:
        return None
    alpha = (1 - confidence) / 2
    if n <= 5000:
        cdf = _binomial_cdf_table(n, q)
        # The number of samples below the quantile is B ~ Binomial(n, q). With 1-based order
        # statistics X(l) <= x_q <= X(u) iff l <= B and B < u, so P = F(u-1) - F(l-1).
        lo_1 = max((k + 1 for k in range(n) if cdf[k] <= alpha), default=0)  # largest l with F(l-1) <= alpha
        hi_candidates = [u for u in range(1, n + 1) if cdf[u - 1] >= 1 - alpha]
        if lo_1 < 1 or not hi_candidates:
            return None
        hi_1 = min(hi_candidates)
        return lo_1 - 1, hi_1 - 1
    spread = _Z_975 * math.sqrt(n * q * (1 - q))
    lo = math.floor(n * q - spread) - 1
    hi = math.ceil(n * q + spread) + 1
    if lo < 0 or hi > n - 1:
        return None
    return lo, hi


def percentile_supported(n: int, q: float) -> bool:
    """Whether n samples can support reporting the q-quantile (see MIN_TAIL_SAMPLES)."""
    return n * (1 - q) >= MIN_TAIL_SAMPLES - 1e-9 and order_statistic_ranks(n, q) is not None


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, linearly interpolated (numpy's default)."""
    position = (len(sorted_values) - 1) * q
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    return sorted_values[below] + (sorted_values[above] - sorted_values[below]) * (position - below)


def percentile_interval(sorted_values: Sequence[float], q: float) -> tuple[float, float] | None:
    """The distribution-free 95 % interval of the q-quantile from sorted samples, or None."""
    ranks = order_statistic_ranks(len(sorted_values), q)
    if ranks is None:
        return None
    return sorted_values[ranks[0]], sorted_values[ranks[1]]


def not_enough_samples(n: int, q: float) -> str:
    """The note shown in place of a percentile the samples can't support."""
    label = f"p{q * 100:g}"
    needed = math.ceil(MIN_TAIL_SAMPLES / (1 - q) - 1e-9)
    return f"not enough samples ({n}) for {label}: it needs at least {needed:,}"


def estimate_from_point(point: BenchmarkPoint | Mapping[str, Any], statistic: str) -> Estimate | None:
    """The estimate of `statistic` ("cpu_ms", "p50_ms", "p99_ms" or "throughput") a benchmark
    point (typed, or its stored JSON) carries with its interval, or None where the point has no
    such figure or no interval (a point measured before intervals existed, or a p99 the samples
    couldn't support)."""
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; known: {', '.join(STATISTICS)}")
    # An estimate needs no batch or concurrency: figures carried alone (the benches') read too.
    typed = (
        point
        if isinstance(point, BenchmarkPoint)
        else read(BenchmarkPoint, {"batch_size": 1, "concurrency": 1, **point})
    )
    if typed is None:
        return None
    point = typed
    value, interval = point.figure(statistic), point.interval(statistic)
    if value is None or interval is None:
        return None
    low, high = interval
    samples = point.samples if point.samples is not None else point.requests
    return Estimate(
        value=value,
        low=min(low, value),
        high=max(high, value),
        samples=int(samples or 0),
        statistic=statistic,
        trials=int(point.trials or 1),
    )


def _times(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


def _band(low: float, high: float) -> str:
    return _times(low) if _times(low) == _times(high) else f"{_times(low)}-{_times(high)}"


def _evidence(before: Estimate, after: Estimate) -> str:
    if before.low == before.high and after.low == after.high:
        return "single measurements without intervals"
    trials = max(before.trials, after.trials)
    samples = min(before.samples, after.samples)
    return f"95% interval from {trials} trial{'s' if trials != 1 else ''} x {samples:,} samples"


_FLOOR = 1e-3  # the lower end given to an interval that reached zero, as a fraction of its value


def latency_change(before: Estimate, after: Estimate, *, min_relative: float = 0.05) -> LatencyChange:
    """Whether `after` is faster or slower than `before`, called only when the noise can't explain it.

    The ratio is before / after for times (after / before for throughput), so above 1 means
    `after` is better; its band divides the intervals' far ends, which is conservative. The
    verdict is "faster" or "slower" only when the two intervals don't overlap AND the ratio
    differs from 1 by more than `min_relative`; otherwise "no_change" (within noise).
    "unknown" when the two are different statistics or a value isn't positive."""
    if before.statistic != after.statistic:
        raise ValueError(f"can't compare {before.statistic} with {after.statistic}")
    label = _LABELS.get(before.statistic, before.statistic)
    if min(before.value, after.value) <= 0:
        return LatencyChange("unknown", None, None, None, f"No {label} comparison: a measured value is zero.")
    # A few noisy trials can put a Student-t interval's lower end at or below zero, which a time
    # or a rate can't be: the figure may then be anywhere down to nearly nothing. Say so with
    # the widest band rather than no answer (the verdict is then "no_change": within noise).
    before = replace(before, low=before.low if before.low > 0 else before.value * _FLOOR)
    after = replace(after, low=after.low if after.low > 0 else after.value * _FLOOR)
    if _LOWER_IS_BETTER.get(before.statistic, True):
        ratio, ratio_low, ratio_high = before.value / after.value, before.low / after.high, before.high / after.low
    else:
        ratio, ratio_low, ratio_high = after.value / before.value, after.low / before.high, after.high / before.low
    evidence = _evidence(before, after)
    apart = ratio_low > 1 or ratio_high < 1
    if apart and ratio > 1 + min_relative:
        verdict = "faster"
        sentence = f"{_band(ratio_low, ratio_high)} faster by {label} ({evidence})."
    elif apart and ratio < 1 / (1 + min_relative):
        verdict = "slower"
        sentence = f"{_band(1 / ratio_high, 1 / ratio_low)} slower by {label} ({evidence})."
    else:
        verdict = "no_change"
        sentence = (
            f"No change in {label} beyond the noise: the ratio is {_band(ratio_low, ratio_high)} ({evidence}); "
            f"a change must exceed {min_relative:.0%} and clear both intervals."
        )
    return LatencyChange(verdict, ratio, ratio_low, ratio_high, sentence)
