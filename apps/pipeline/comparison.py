"""What a version comparison finds, and the verdicts it draws: pure functions of two sides.

`compare` gathers each side's figures from the database (which version, which variant, which
benchmark point); this module holds the result types and turns two sides into changes, each
with a verdict only where the measurement supports one. Latency and throughput changes are
called only when their 95 % intervals say so (`workers.engine.timing.latency_change`); an
accuracy change only when it is larger than what the parity measurement itself can resolve
(`accuracy_change`); sizes and op support change by what they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.engine.reports import BenchmarkPoint
from workers.engine.timing import estimate_from_point, latency_change

# A side that is the version's original model, in plain onnxruntime, rather than a variant.
ORIGINAL = "original"

# The latency statistics shown: p50 wall clock is what a caller waits for, p99 its tail, and
# CPU time per inference the figure a busy machine disturbs least.
LATENCY_STATISTICS = ("p50_ms", "p99_ms", "cpu_ms")
STATISTIC_LABELS = {"p50_ms": "p50 latency", "p99_ms": "p99 latency", "cpu_ms": "CPU time per inference"}

# 97.5 % normal quantile: accuracy bands are 95 % two-sided like the timing intervals.
_Z = 1.959964
# A float32 output's cosine can't be known more finely than float32's machine epsilon.
COSINE_RESOLUTION_FLOOR = 1.2e-7
# What the original model scores against itself, on every parity metric.
_PERFECT = {"cosine": 1.0, "top1_agreement": 1.0, "max_abs_error": 0.0}
ACCURACY_METRICS = ("cosine", "top1_agreement", "max_abs_error")


@dataclass(frozen=True)
class Ref:
    """A parsed compare reference: a version (by id, or model slug and number) and maybe a variant."""

    text: str
    version_id: int | None = None
    model: str | None = None
    number: int | None = None  # None with `model` set: the model's latest version
    variant: str | None = None  # None: the version's recommended variant on the profile


@dataclass(frozen=True)
class Figure:
    """One measured figure: `value` with its 95 % interval [low, high] where one was recorded.

    `how` says how it was obtained ("95% interval from 3 trials x 1,200 samples" or why there
    is no interval); `value` is None when the side has no such figure and `how` then says why."""

    value: float | None
    low: float | None = None
    high: float | None = None
    samples: int | None = None
    trials: int | None = None
    how: str = ""


@dataclass(frozen=True)
class Change:
    """A verdict between side a (before) and side b (after): what changed, and by how much.

    Timing verdicts are "faster" | "slower" | "no_change" | "unknown" (b against a; throughput
    says "higher" | "lower"); accuracy verdicts "same" | "closer" | "further" | "unknown" (b's
    distance from its own original against a's); size "same" | "smaller" | "larger" | "unknown";
    op support "same" | "different" | "unknown". `ratio` (with its 95 % band, where intervals
    exist) is how many times better b is: a's time over b's, b's throughput over a's, a's size
    over b's."""

    what: str
    verdict: str
    sentence: str
    ratio: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None


@dataclass(frozen=True)
class OutputAccuracy:
    """One output of one side against that side's own FP32 original (`kind`: what the output
    is, as parity judged it; `worst_slice`: where its lowest per-slice signal-to-noise is)."""

    name: str
    passed: bool | None
    cosine: float | None
    max_abs_error: float | None
    top1_agreement: float | None
    kind: str | None = None
    sqnr_db: float | None = None
    worst_slice: str | None = None
    worst_slice_sqnr_db: float | None = None


@dataclass(frozen=True)
class Side:
    """Everything shown for one side of a comparison."""

    ref: str
    version_id: int
    model: str
    team: str
    number: int
    status: str
    variant: str | None
    chosen: str  # why this variant: "named", "recommended", "original (no variant won)" or "none"
    backend: str
    precision: str
    size_bytes: int | None
    point: dict[str, int] | None  # the benchmark point compared: {"batch", "concurrency"}
    latency: dict[str, Figure]
    throughput: Figure
    parity_passed: bool | None
    parity_samples: int | None
    parity_inputs: str
    outputs: tuple[OutputAccuracy, ...]
    support_verdict: str | None
    unsupported_ops: tuple[str, ...]
    fallback_ops: tuple[str, ...]
    measured_on: str
    runtime_version: str | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """Side a (before) and side b (after) on one profile, with the verdicts between them.

    `headline` is the latency statistic the summary leads with: CPU time per inference where
    both sides ran single-threaded on a CPU (it is what another process on the machine disturbs
    least, and what the recommendation ranks by there), else the wall-clock p50."""

    profile: str
    a: Side
    b: Side
    headline: str
    latency: tuple[Change, ...]
    throughput: Change
    accuracy: tuple[Change, ...]
    size: Change
    support: Change
    summary: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """The comparison as plain dicts, lists, strings and numbers, ready for JSON."""
        return asdict(self)


def timing_change(statistic: str, a_point: BenchmarkPoint | None, b_point: BenchmarkPoint | None) -> Change:
    label = STATISTIC_LABELS.get(statistic, statistic)
    if a_point is None or b_point is None:
        return Change(
            statistic, "unknown", f"No {label} comparison: the two sides were not measured at the same point."
        )
    before, after = estimate_from_point(a_point, statistic), estimate_from_point(b_point, statistic)
    if before is None or after is None:
        missing = [name for name, est in (("a", before), ("b", after)) if est is None]
        return Change(
            statistic,
            "unknown",
            f"No {label} verdict: {' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no interval "
            "(not enough samples, or measured before intervals were recorded), so a difference can't be told "
            "from noise.",
        )
    change = latency_change(before, after)
    return Change(statistic, change.verdict, change.sentence, change.ratio, change.ratio_low, change.ratio_high)


def throughput_change(a_point: BenchmarkPoint | None, b_point: BenchmarkPoint | None) -> Change:
    change = timing_change("throughput", a_point, b_point)
    verdict = {"faster": "higher", "slower": "lower"}.get(change.verdict, change.verdict)
    sentence = change.sentence.replace("faster by throughput", "higher throughput").replace(
        "slower by throughput", "lower throughput"
    )
    return Change("throughput", verdict, sentence, change.ratio, change.ratio_low, change.ratio_high)


def _distance(metric: str, value: float | None) -> float | None:
    """Distance from the original: 1 - cosine, 1 - top-1 agreement, or the max abs error."""
    if value is None:
        return None
    return 1.0 - value if metric in ("cosine", "top1_agreement") else value


def accuracy_change(
    output: str, metric: str, a: float | None, b: float | None, a_samples: int | None, b_samples: int | None
) -> Change:
    """Whether b is closer to or further from its original than a, on one output and one metric.

    A parity figure is measured on a handful of inputs; on others it would move. For a
    distance d (1 - cosine, max abs error) measured on n inputs we take its standard error as
    about d / sqrt(n), so the difference of two distances has a standard error of
    sqrt((da^2 + db^2) / n), and b differs from a beyond noise only when they are more than 1.96
    of those apart (and, for cosine, more than float32 can resolve). Top-1 agreement is a
    proportion: its band is the binomial one, and never under one sample in n. Anything within
    the band is "same": a cosine change of 4e-6 between two variants at 0.99999 is noise.
    """
    title = {"cosine": "cosine", "max_abs_error": "max abs error", "top1_agreement": "top-1 agreement"}[metric]
    what = f"{output}:{metric}"
    da, db = _distance(metric, a), _distance(metric, b)
    if a is None or b is None or da is None or db is None:
        return Change(what, "unknown", f"'{output}': no {title} on both sides to compare.")
    n = min((x for x in (a_samples, b_samples) if isinstance(x, int) and x > 0), default=1)
    if metric == "top1_agreement":
        pooled = 1 - (da + db) / 2
        band = max(_Z * math.sqrt(max(pooled * (1 - pooled), 0.0) * 2 / n), 1 / n)
    else:
        band = _Z * math.sqrt((da**2 + db**2) / n)
        if metric == "cosine":
            band = max(band, COSINE_RESOLUTION_FLOOR)
    delta = db - da
    shown = f"{a:.6g} vs {b:.6g}"
    if abs(delta) <= band:
        return Change(
            what,
            "same",
            f"'{output}' {title} {shown}: the same within the measurement's resolution "
            f"(+/-{band:.2g}, from {n} parity sample{'s' if n != 1 else ''}).",
        )
    verdict = "further" if delta > 0 else "closer"
    return Change(
        what,
        verdict,
        f"'{output}' {title} {shown}: b is {verdict} {'from' if verdict == 'further' else 'to'} its original "
        f"than a, by {abs(delta):.2g} (beyond the +/-{band:.2g} a measurement on {n} parity samples resolves).",
    )


def accuracy_changes(a: Side, b: Side) -> tuple[Change, ...]:
    """Per output both sides have, per metric either side has: closer, further or the same."""
    by_name = {o.name: o for o in a.outputs}
    changes = []
    for out in b.outputs:
        before = by_name.get(out.name)
        if before is None:
            continue
        for metric in ACCURACY_METRICS:
            x, y = getattr(before, metric), getattr(out, metric)
            if x is None and y is None:
                continue
            # The original scores perfectly against itself on whatever the other side was judged by.
            x = _PERFECT[metric] if x is None and a.variant == ORIGINAL else x
            y = _PERFECT[metric] if y is None and b.variant == ORIGINAL else y
            changes.append(accuracy_change(out.name, metric, x, y, a.parity_samples, b.parity_samples))
    if not changes:
        changes.append(Change("accuracy", "unknown", "No output has parity figures on both sides to compare."))
    return tuple(changes)


def size_change(a: Side, b: Side) -> Change:
    if not a.size_bytes or not b.size_bytes:
        return Change("size", "unknown", "The size of one side's file is not known.")
    if a.size_bytes == b.size_bytes:
        return Change("size", "same", f"Both files are {_bytes(a.size_bytes)}.", 1.0)
    verdict = "smaller" if b.size_bytes < a.size_bytes else "larger"
    return Change(
        "size",
        verdict,
        f"b's file is {b.size_bytes / a.size_bytes:.2f}x the size of a's ({_bytes(b.size_bytes)} vs "
        f"{_bytes(a.size_bytes)}), counted exactly from the stored files.",
        a.size_bytes / b.size_bytes,
    )


def _bytes(size: int) -> str:
    """A file size for a sentence, in the units the browser and the CLI show: "812 B", "3.9 KiB"."""
    value, unit = float(size), 0
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{size} B"
    return f"{value:.0f} {units[unit]}" if value >= 100 else f"{value:.1f} {units[unit]}"


def support_change(a: Side, b: Side) -> Change:
    if a.support_verdict is None or b.support_verdict is None:
        return Change("support", "unknown", "The op-support check of one side's runtime is not available.")
    gained = sorted(set(a.unsupported_ops) - set(b.unsupported_ops))
    lost = sorted(set(b.unsupported_ops) - set(a.unsupported_ops))
    parts = [f"a's runtime ({a.backend}) says {a.support_verdict}, b's ({b.backend}) says {b.support_verdict}"]
    if lost:
        parts.append(f"b can't run {', '.join(lost)}")
    if gained:
        parts.append(f"b runs {', '.join(gained)} which a could not")
    verdict = "same" if a.support_verdict == b.support_verdict and not gained and not lost else "different"
    return Change("support", verdict, "; ".join(parts) + ".")


def side_name(side: Side) -> str:
    """ "scorer v3 (ort-int8)": how the sentences name a side."""
    variant = f" ({side.variant})" if side.variant else ""
    return f"{side.model} v{side.number}{variant}"


def summary_sentence(a: Side, b: Side, headline: Change, accuracy: Sequence[Change]) -> str:
    first = f"{side_name(b)} against {side_name(a)}: "
    if headline.verdict in ("faster", "slower"):
        first += headline.sentence[0].lower() + headline.sentence[1:]
    else:
        first += headline.sentence
    worse = sorted({c.what for c in accuracy if c.verdict == "further"})
    better = sorted({c.what for c in accuracy if c.verdict == "closer"})
    if worse:
        accuracy_text = f" Accuracy: further from the original on {', '.join(worse)}."
    elif better:
        accuracy_text = f" Accuracy: closer to the original on {', '.join(better)}."
    elif any(c.verdict == "same" for c in accuracy):
        accuracy_text = " Accuracy: the same within what parity resolves."
    else:
        accuracy_text = " Accuracy: not comparable."
    return first + accuracy_text
