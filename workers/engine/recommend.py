"""The recommendation: which variant to run on one hardware profile, and why the others lost.
It is a little over 600 lines because it is one ranking: the objectives, the noise-aware ties,
the accuracy tie-break and the sentence each loser gets must read together to be checked.

Only a variant that passed parity can win: a faster one that breaks accuracy is turned
down with the parity reason, however fast it is. Among the rest, the objective decides:

- "p99_latency_batch1": the fastest at batch 1, concurrency 1, within the p99 budget when
  one is set. Speed is judged by a statistic that is stable on a shared machine: CPU time per
  inference where the runs were single-threaded on a CPU (another process on the machine
  slows the wall clock, not the CPU time a run needs), else the wall-clock p50; the p99 is
  what the budget is checked against.
- "throughput_within_p99_budget": the highest throughput over every measured
  (batch, concurrency) point whose p99 is within `budget_ms`.

Every figure carries its 95 % interval (see `workers.engine.timing`). Variants whose
difference from the fastest is within the noise (the gap is under `min_relative`, or each
figure lies within the other's interval) are tied, and a tie goes to the more accurate
variant (parity's signal-to-noise ratio, then cosine), then the smaller file, then the
name: the recommendation says so. Because
a tie is decided by accuracy and size, which don't change between runs, the same variants
measured twice get the same verdict unless one is faster beyond the noise. The winner's
speed-up over the original model in plain onnxruntime carries its interval; when no variant
can win, the recommendation is to keep that original model.

Benchmark points are the benchmark report's own (`workers.engine.reports.BenchmarkPoint`, or
its stored JSON: {"batch_size": 1, "concurrency": 1, "p50_ms": 1.9, "p99_ms": 2.3,
"throughput": 512.0, "cpu_ms": 1.7, "cpu_ci_ms": [1.6, 1.8], ...}), with latencies in
milliseconds and throughput in inferences per second; `benchmark_points` marks those CPU time
may rank. A point with an "error" or without the numbers the objective needs is skipped; a
point without intervals (stored before they existed) counts as exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple, TypeGuard

from workers.engine.errors import ModelError
from workers.engine.parity import VariantParity
from workers.engine.reports import BenchmarkEntry, BenchmarkPoint, CandidateOutcome, Recommendation
from workers.engine.timing import Estimate, LatencyChange, estimate_from_point, latency_change
from workers.engine.typed import from_dict, read

OBJECTIVES: tuple[str, ...] = ("p99_latency_batch1", "throughput_within_p99_budget")

BASELINE_NAME = "the original model in plain onnxruntime"

# A gap smaller than this share of the figure is noise however narrow the intervals are:
# criterion's noise threshold.
MIN_RELATIVE = 0.05

_DESCRIBED = {
    "cpu_ms": "CPU time per inference",
    "p50_ms": "p50 latency",
    "p99_ms": "p99 latency",
    "throughput": "throughput",
}


@dataclass(frozen=True)
class Candidate:
    """One variant on one hardware profile: its parity verdict and its benchmark.

    `parity` is the variant's `VariantParity`, or its `to_dict()`, or None when parity
    was not checked (then it cannot win). `points` are its benchmark points;
    `benchmark_error` says why it has none, when its benchmark failed. `size_bytes`
    (the variant's files together) breaks ties after accuracy.
    """

    name: str
    backend: str
    precision: str
    parity: VariantParity | Mapping[str, Any] | None
    points: tuple[BenchmarkPoint | Mapping[str, Any], ...] = ()
    benchmark_error: str = ""
    size_bytes: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        """A candidate from stored JSON with the same keys as the fields."""
        return cls(
            name=str(data["name"]),
            backend=str(data.get("backend", "")),
            precision=str(data.get("precision", "")),
            parity=data.get("parity"),
            points=tuple(data.get("points") or ()),  # read by type when ranked
            benchmark_error=str(data.get("benchmark_error") or ""),
            size_bytes=data.get("size_bytes"),
        )


class _Point(NamedTuple):
    batch: int
    concurrency: int
    p99_ms: float | None
    budget_latency_ms: float | None  # p99, or the slowest request where p99 couldn't be reported
    throughput: float | None
    measured: BenchmarkPoint


class _Ranked(NamedTuple):
    candidate: Candidate
    point: _Point
    estimate: Estimate


def recommend(
    candidates: Sequence[Candidate | Mapping[str, Any]],
    baseline: Sequence[BenchmarkPoint | Mapping[str, Any]] | None,
    objective: str,
    budget_ms: float | None = None,
    *,
    min_relative: float = MIN_RELATIVE,
) -> Recommendation:
    """Pick the variant to run on one hardware profile under `objective`.

    `candidates` are `Candidate`s or their dicts; `baseline` is the benchmark points of
    the original model in plain onnxruntime (None when it was not benchmarked). With
    "p99_latency_batch1", a `budget_ms` is optional and, when given, a candidate whose
    p99 at batch 1 is over it loses; "throughput_within_p99_budget" needs it. Candidates
    within `min_relative` of the fastest, or whose intervals overlap its, are tied and the
    tie goes to accuracy, then size (see the module's docstring).

    Raises ModelError("invalid_objective") for an unknown objective, or a budget that is
    missing where needed or not a positive number.
    """
    if objective not in OBJECTIVES:
        raise ModelError(
            "invalid_objective",
            f"Unknown objective '{objective}'; choose one of {', '.join(OBJECTIVES)}.",
        )
    if budget_ms is None and objective == "throughput_within_p99_budget":
        raise ModelError(
            "invalid_objective",
            "The objective 'throughput_within_p99_budget' needs a p99 latency budget in milliseconds; "
            "set budget_ms (for example 10).",
        )
    if budget_ms is not None and not (_is_number(budget_ms) and budget_ms > 0):
        raise ModelError("invalid_objective", f"The p99 budget must be a positive number of ms, not {budget_ms!r}.")
    entries = [item if isinstance(item, Candidate) else Candidate.from_dict(item) for item in candidates]
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"Candidate names must be unique on a profile; repeated: {', '.join(duplicates)}")

    baseline_points = _points(baseline or ())
    best_points: dict[str, _Point] = {}
    rejected: list[CandidateOutcome] = []
    passed_parity = 0
    for entry in entries:
        reason = _parity_problem(entry.parity)
        if not reason:
            passed_parity += 1
            reason, point = _benchmark_problem(entry, objective, budget_ms)
            if point is not None:
                best_points[entry.name] = point
                continue
        rejected.append(CandidateOutcome(entry.name, entry.backend, entry.precision, reason=reason))

    baseline_point = _best_point(baseline_points, objective, budget_ms)
    compared = [*best_points.values(), *([baseline_point] if baseline_point else [])]
    statistic, statistic_note = _statistic(compared, objective)
    baseline_estimate = _estimate(baseline_point, statistic) if baseline_point else None

    ranked = [
        _Ranked(entry, best_points[entry.name], _estimate(best_points[entry.name], statistic))
        for entry in entries
        if entry.name in best_points
    ]
    ordered, tied = _order(ranked, statistic, min_relative)
    outcomes = []
    for item in ordered:
        reason = _why_lost(item, ordered[0], tied, statistic, min_relative) if item is not ordered[0] else ""
        outcomes.append(_outcome(item, baseline_estimate, reason, tied, min_relative))
    winner = outcomes[0] if outcomes else None
    runner_up = outcomes[1] if len(outcomes) > 1 else None
    others = tuple(outcomes[2:]) + tuple(rejected)
    summary = _summary(
        winner,
        ordered[0] if ordered else None,
        tied,
        len(entries),
        passed_parity,
        objective,
        budget_ms,
        baseline_point,
        baseline_estimate,
    )
    return Recommendation(
        objective=objective,
        budget_ms=budget_ms,
        winner=winner,
        runner_up=runner_up,
        others=others,
        baseline_value=baseline_estimate.value if baseline_estimate else None,
        use_baseline=winner is None,
        summary=summary,
        statistic=statistic,
        statistic_note=statistic_note,
        baseline_low=baseline_estimate.low if baseline_estimate else None,
        baseline_high=baseline_estimate.high if baseline_estimate else None,
    )


def recommend_without_timings(
    candidates: Sequence[Candidate | Mapping[str, Any]], objective: str, budget_ms: float | None, why: str
) -> Recommendation:
    """Pick a variant where the timings can't rank (measured on an emulated CPU, ADR 0016): among
    the variants that pass parity, the most accurate, then the smallest. `why` says why no
    timing counts; the summary repeats it, so the choice is never read as the fastest."""
    entries = [item if isinstance(item, Candidate) else Candidate.from_dict(item) for item in candidates]
    passed, rejected = [], []
    for entry in entries:
        reason = _parity_problem(entry.parity)
        if reason:
            rejected.append(CandidateOutcome(entry.name, entry.backend, entry.precision, reason=reason))
        else:
            passed.append(entry)
    passed.sort(key=lambda e: (tuple(-k for k in _accuracy_key(e.parity)), _size_key(e), e.name))
    outcomes = [
        CandidateOutcome(
            entry.name, entry.backend, entry.precision, reason="" if index == 0 else _behind(passed[0], entry)
        )
        for index, entry in enumerate(passed)
    ]
    winner = outcomes[0] if outcomes else None
    if winner is not None:
        summary = (
            f"{winner.name} is recommended on accuracy and size only, not speed: {why.rstrip('. ')}. Its speed is "
            "known once a real device of this profile measures it."
        )
    else:
        summary = f"No variant passes the accuracy check: keep the original model. ({why.rstrip('. ')}.)"
    return Recommendation(
        objective=objective,
        budget_ms=budget_ms,
        winner=winner,
        runner_up=outcomes[1] if len(outcomes) > 1 else None,
        others=tuple(outcomes[2:]) + tuple(rejected),
        baseline_value=None,
        use_baseline=winner is None,
        summary=summary,
        statistic="accuracy_and_size",
        statistic_note=why,
    )


def _behind(winner: Candidate, other: Candidate) -> str:
    """Why `other` ranks below `winner` on accuracy and size, in one sentence."""
    best, worse = _accuracy_key(winner.parity), _accuracy_key(other.parity)
    if best > worse:
        return f"Ranked by accuracy and size only: {winner.name} is more accurate ({_accuracy_text(best, worse)})."
    if _size_key(winner) < _size_key(other):
        return f"Ranked by accuracy and size only: {winner.name} is as accurate and smaller."
    return f"Ranked by accuracy and size only: {winner.name} is as accurate and the same size; it comes first by name."


# --- points and statistics --------------------------------------------------------------


def benchmark_points(
    benchmark: BenchmarkEntry | Mapping[str, Any], device_kind: str | None = None
) -> list[BenchmarkPoint]:
    """A stored benchmark entry's points, each marked whether CPU time per inference may rank it:
    only runs that used one thread on a CPU, at concurrency 1 (with several threads it counts
    their spinning, and on a GPU the CPU mostly waits). `device_kind` ("cpu", "gpu") defaults to
    the entry's own."""
    entry = benchmark if isinstance(benchmark, BenchmarkEntry) else from_dict(BenchmarkEntry, benchmark)
    if device_kind is not None:
        entry = replace(entry, device_kind=device_kind)
    single = entry.single_threaded_cpu
    return [replace(point, single_threaded_cpu=single and point.concurrency == 1) for point in entry.points]


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _typed(item: BenchmarkPoint | Mapping[str, Any]) -> BenchmarkPoint | None:
    return read(BenchmarkPoint, item)


def _points(raw: Sequence[BenchmarkPoint | Mapping[str, Any]]) -> list[_Point]:
    """The usable points: those without an error and with a latency to hold against a budget."""
    points = []
    for item in raw:
        point = _typed(item)
        if point is None or point.error:
            continue
        p99 = point.p99_ms if point.p99_ms is not None and _is_number(point.p99_ms) and point.p99_ms >= 0 else None
        # Without enough samples for a p99, the slowest request measured stands in for it
        # against a budget: it can only overstate the p99.
        slowest = point.max_ms if point.max_ms is not None and _is_number(point.max_ms) else None
        budget_latency = p99 if p99 is not None else slowest
        if budget_latency is None and not (point.p50_ms is not None and _is_number(point.p50_ms)):
            continue
        throughput = point.throughput if point.throughput is not None and _is_number(point.throughput) else None
        points.append(_Point(point.batch_size, point.concurrency, p99, budget_latency, throughput, point))
    return points


def _within(point: _Point, budget_ms: float | None) -> bool:
    return budget_ms is None or (point.budget_latency_ms is not None and point.budget_latency_ms <= budget_ms)


def _eligible(points: Sequence[_Point], objective: str, budget_ms: float | None) -> list[_Point]:
    if objective == "p99_latency_batch1":
        chosen = [point for point in points if point.batch == 1 and point.concurrency == 1]
    else:
        chosen = [point for point in points if point.throughput is not None]
    return [point for point in chosen if _within(point, budget_ms)]


def _best_point(points: Sequence[_Point], objective: str, budget_ms: float | None) -> _Point | None:
    eligible = _eligible(points, objective, budget_ms)
    if not eligible:
        return None
    if objective == "p99_latency_batch1":
        return eligible[0]
    # Highest throughput; of equal ones, the lower p99, then the smaller batch.
    return min(
        eligible,
        key=lambda point: (
            -(point.throughput or 0.0),
            point.budget_latency_ms if point.budget_latency_ms is not None else math.inf,
            point.batch,
            point.concurrency,
        ),
    )


def _has_interval(point: _Point, statistic: str) -> bool:
    return estimate_from_point(point.measured, statistic) is not None


def _statistic(points: Sequence[_Point], objective: str) -> tuple[str, str]:
    """The statistic every compared point can be ranked by, and why it was chosen."""
    if objective == "throughput_within_p99_budget":
        if points and all(_has_interval(point, "throughput") for point in points):
            return "throughput", "throughput, mean over trials with a 95% interval"
        return "throughput", "throughput as measured (stored without intervals, so treated as exact)"
    if points and all(_has_interval(point, "cpu_ms") and point.measured.single_threaded_cpu for point in points):
        return "cpu_ms", (
            "CPU time per inference: the runs were single-threaded on a CPU, where it is stable while other "
            "processes load the machine; wall-clock p50 and p99 are reported beside it"
        )
    if points and all(_has_interval(point, "p50_ms") for point in points):
        return "p50_ms", (
            "wall-clock p50 latency with its 95% interval (CPU time per inference is only compared for "
            "single-threaded CPU runs); p99 is reported beside it and held against the budget"
        )
    return "p99_ms", "p99 latency as measured (stored without intervals, so treated as exact)"


def _estimate(point: _Point, statistic: str) -> Estimate:
    """The point's estimate of `statistic`; a figure stored without an interval counts as exact."""
    measured = point.measured
    found = estimate_from_point(measured, statistic)
    if found is not None:
        return found
    if statistic == "throughput":
        value = point.throughput or 0.0
    elif statistic == "p99_ms":
        value = point.p99_ms if point.p99_ms is not None else (point.budget_latency_ms or 0.0)
    else:
        value = measured.figure(statistic) or 0.0
    samples = measured.samples if measured.samples is not None else measured.requests
    return Estimate(value, value, value, int(samples or 0), statistic, int(measured.trials or 1))


def _better_first(statistic: str, estimate: Estimate) -> float:
    return -estimate.value if statistic == "throughput" else estimate.value


def _within_noise(best: Estimate, other: Estimate, min_relative: float) -> bool:
    """Whether `other` can't be told apart from `best` (the fastest by its figure): the gap is
    under `min_relative`, or each figure lies within the other's interval.

    Not "the intervals overlap": with three trials one disturbed trial widens a variant's
    interval about four-fold (Student's t at 2 degrees of freedom), and an overlap test then
    ties a variant measured at 0.2 ms [0.06-0.39] with one at 0.065 ms [0.061-0.070], handing
    the win to whichever is more accurate however much slower it measured. bench/stability.py
    measured that flip in 5 of 34 runs; asking each figure to be plausible for the other
    removed it on the saved runs (BENCHMARKS.md, Stability)."""
    change = latency_change(other, best, min_relative=min_relative)
    if change.ratio is not None and change.ratio <= 1 + min_relative:
        return True
    return other.low <= best.value <= other.high and best.low <= other.value <= best.high


def _accuracy_key(parity: VariantParity | Mapping[str, Any] | None) -> tuple[float, float]:
    """Higher is more accurate: the worst output's signal-to-noise ratio (dB, to 0.1 dB: finer
    differences are below what the parity inputs can resolve) then the worst cosine (to 1e-6)."""
    if parity is None:
        return (-math.inf, -math.inf)
    outputs = parity.outputs if isinstance(parity, VariantParity) else parity.get("outputs") or ()
    sqnrs: list[float] = []
    cosines: list[float] = []
    for output in outputs:
        data = asdict(output) if not isinstance(output, Mapping) else output
        if "sqnr_db" in data:
            # None means the variant's output equals the reference's: as accurate as it gets.
            sqnrs.append(math.inf if data["sqnr_db"] is None else float(data["sqnr_db"]))
        if _is_number(data.get("cosine")):
            cosines.append(float(data["cosine"]))
    sqnr = round(min(sqnrs), 1) if sqnrs else -math.inf
    cosine = round(min(cosines), 6) if cosines else -math.inf
    return (sqnr, cosine)


def _size_key(candidate: Candidate) -> float:
    return float(candidate.size_bytes) if candidate.size_bytes is not None else math.inf


def _budget_key(point: _Point) -> float:
    return point.budget_latency_ms if point.budget_latency_ms is not None else math.inf


def _order(ranked: Sequence[_Ranked], statistic: str, min_relative: float) -> tuple[list[_Ranked], list[_Ranked]]:
    """The candidates in recommendation order, and the ones tied with the fastest.

    The fastest by its point estimate anchors the tie; everything within the noise of it is
    tied, and the tie is ordered by accuracy, then size, then speed, then name. The rest follow
    by speed."""
    if not ranked:
        return [], []
    by_speed = sorted(
        ranked,
        key=lambda item: (_better_first(statistic, item.estimate), _size_key(item.candidate), item.candidate.name),
    )
    fastest = by_speed[0]
    tied = [item for item in by_speed if _within_noise(fastest.estimate, item.estimate, min_relative)]
    tied.sort(
        key=lambda item: (
            tuple(-part for part in _accuracy_key(item.candidate.parity)),
            _size_key(item.candidate),
            _better_first(statistic, item.estimate),
            _budget_key(item.point),
            item.candidate.name,
        )
    )
    rest = [item for item in by_speed if item not in tied]
    return [*tied, *rest], (tied if len(tied) > 1 else [])


def _outcome(
    item: _Ranked, baseline: Estimate | None, reason: str, tied: Sequence[_Ranked], min_relative: float
) -> CandidateOutcome:
    candidate, point, estimate = item.candidate, item.point, item.estimate
    change: LatencyChange | None = latency_change(baseline, estimate, min_relative=min_relative) if baseline else None
    p50 = point.measured.p50_ms
    cpu = point.measured.cpu_ms
    in_tie = any(other is item for other in tied)
    return CandidateOutcome(
        candidate.name,
        candidate.backend,
        candidate.precision,
        value=estimate.value,
        p99_ms=point.p99_ms,
        batch=point.batch,
        concurrency=point.concurrency,
        speedup=change.ratio if change else None,
        reason=reason,
        statistic=estimate.statistic,
        low=estimate.low,
        high=estimate.high,
        samples=estimate.samples,
        trials=estimate.trials,
        p50_ms=float(p50) if _is_number(p50) else None,
        cpu_ms=float(cpu) if _is_number(cpu) else None,
        p99_note=point.measured.p99_note or None if point.p99_ms is None else None,
        speedup_low=change.ratio_low if change else None,
        speedup_high=change.ratio_high if change else None,
        speedup_sentence=change.sentence if change else "",
        tied_with=tuple(other.candidate.name for other in tied if other is not item) if in_tie else (),
    )


# --- reasons ----------------------------------------------------------------------------


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _lower_first(text: str) -> str:
    # "Cosine similarity ..." reads on after "Failed parity: "; "NaN ..." keeps its case.
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _parity_problem(parity: VariantParity | Mapping[str, Any] | None) -> str:
    """Why the parity verdict rules the candidate out, or "" when it passed."""
    if parity is None:
        return "Not checked for parity, so it cannot be recommended."
    if isinstance(parity, VariantParity):
        passed, reasons = parity.passed, list(parity.reasons)
    else:
        passed, reasons = bool(parity.get("passed")), [str(reason) for reason in parity.get("reasons") or ()]
    if passed:
        return ""
    if not reasons:
        return "Failed parity."
    extra = len(reasons) - 1
    more = f" (and {extra} more {'problem' if extra == 1 else 'problems'})" if extra else ""
    return _sentence(f"Failed parity: {_lower_first(reasons[0].rstrip('.'))}{more}")


def _benchmark_problem(candidate: Candidate, objective: str, budget_ms: float | None) -> tuple[str, _Point | None]:
    """The candidate's best point for the objective, or why it has none."""
    if candidate.benchmark_error:
        return _sentence(f"Not benchmarked: {candidate.benchmark_error}"), None
    points = _points(candidate.points)
    if not points:
        return "Not benchmarked: no benchmark results were recorded.", None
    best = _best_point(points, objective, budget_ms)
    if best is not None:
        return "", best
    if objective == "p99_latency_batch1":
        at_batch1 = _eligible(points, objective, None)
        if not at_batch1:
            return "Not benchmarked at batch 1, concurrency 1.", None
        return f"Its {_budget_figure(at_batch1[0])} at batch 1 is over the {_ms(budget_ms or 0)} budget.", None
    with_throughput = _eligible(points, objective, None)
    if not with_throughput:
        return "Not benchmarked for throughput: no point records one.", None
    lowest = min(with_throughput, key=lambda point: point.budget_latency_ms or math.inf)
    return f"No point within the {_ms(budget_ms or 0)} p99 budget (its lowest is {_budget_figure(lowest)}).", None


def _budget_figure(point: _Point) -> str:
    if point.p99_ms is not None:
        return f"p99 {_ms(point.p99_ms)}"
    if point.budget_latency_ms is None:
        return "p99 (not measured)"
    samples = point.measured.samples if point.measured.samples is not None else point.measured.requests
    return (
        f"slowest request {_ms(point.budget_latency_ms)} (standing in for a p99 that {samples} samples can't support)"
    )


def _figure(estimate: Estimate) -> str:
    """A figure with its interval and evidence: "0.41 ms [0.40-0.42]"."""
    unit = _rate if estimate.statistic == "throughput" else _ms
    if estimate.low == estimate.high:
        return unit(estimate.value)
    return f"{unit(estimate.value)} [{unit(estimate.low)}-{unit(estimate.high)}]"


def _why_lost(item: _Ranked, first: _Ranked, tied: Sequence[_Ranked], statistic: str, min_relative: float) -> str:
    """One sentence on why a ranked candidate is behind the winner."""
    name = first.candidate.name
    label = _DESCRIBED[statistic]
    mine, theirs = _figure(item.estimate), _figure(first.estimate)
    if not any(other is item for other in tied):
        fastest = min(tied or [first], key=lambda other: _better_first(statistic, other.estimate))
        change = latency_change(item.estimate, fastest.estimate, min_relative=min_relative)
        word = "Lower" if statistic == "throughput" else "Slower"
        if change.verdict not in ("faster", "slower"):
            # Not tied although the intervals overlap: one of them is wide (a disturbed trial).
            return _sentence(
                f"{word} by its measured figure: {label} {mine} vs {_figure(fastest.estimate)} for "
                f"'{fastest.candidate.name}'; the intervals overlap, but the figures are more than "
                f"{min_relative:.0%} apart and not each within the other's interval, so they are not tied"
            )
        return _sentence(
            f"{word} beyond the noise: {label} {mine} vs {_figure(fastest.estimate)} for "
            f"'{fastest.candidate.name}', which is {change.sentence}"
        )
    tie = f"Tied with '{name}' within noise ({label} {mine} vs {theirs})"
    mine_accuracy, their_accuracy = _accuracy_key(item.candidate.parity), _accuracy_key(first.candidate.parity)
    if mine_accuracy != their_accuracy:
        return f"{tie}; '{name}' was picked for accuracy ({_accuracy_text(their_accuracy, mine_accuracy)})."
    if item.candidate.size_bytes != first.candidate.size_bytes:
        return (
            f"{tie}; '{name}' was picked for its smaller file "
            f"({_size(first.candidate.size_bytes)} vs {_size(item.candidate.size_bytes)})."
        )
    same = f"{tie}, with the same accuracy and file size"
    if item.estimate.value == first.estimate.value and item.point.p99_ms != first.point.p99_ms:
        return f"{same}; '{name}' has the lower p99 ({_budget_figure(first.point)} vs {_budget_figure(item.point)})."
    return f"{same}; '{name}' comes first by speed, then name."


def _accuracy_text(better: tuple[float, float], worse: tuple[float, float]) -> str:
    if better[0] != worse[0]:
        return f"worst-output signal-to-noise {_db(better[0])} vs {_db(worse[0])}"
    return f"worst-output cosine {better[1]:.6f} vs {worse[1]:.6f}"


def _db(value: float) -> str:
    if value == math.inf:
        return "exact"
    return "unknown" if value == -math.inf else f"{value:.1f} dB"


def _summary(
    winner: CandidateOutcome | None,
    first: _Ranked | None,
    tied: Sequence[_Ranked],
    candidate_count: int,
    passed_parity: int,
    objective: str,
    budget_ms: float | None,
    baseline_point: _Point | None,
    baseline: Estimate | None,
) -> str:
    if winner is not None and first is not None:
        text = f"Use '{winner.name}' ({winner.backend}, {winner.precision}): {_describe(first.estimate, first.point)}"
        if len(tied) > 1:
            others = ", ".join(f"'{item.candidate.name}'" for item in tied if item is not first)
            fastest = min(tied, key=lambda item: _better_first(first.estimate.statistic, item.estimate))
            why = (
                "accuracy"
                if _accuracy_key(first.candidate.parity) != _accuracy_key(tied[1].candidate.parity)
                else "its smaller file"
                if first.candidate.size_bytes != tied[1].candidate.size_bytes
                else "speed, then name"
            )
            if fastest is first:
                why = f"{why} (it is also the fastest)"
            text += f". Tied with {others} within noise; picked for {why}"
        if winner.speedup is None or baseline is None:
            return f"{text}. {BASELINE_NAME[0].upper()}{BASELINE_NAME[1:]} has no benchmark to compare it with."
        text += f". Against {BASELINE_NAME}: {_lower_first(winner.speedup_sentence)}"
        change = latency_change(baseline, first.estimate)
        if change.verdict == "slower":
            text += f" No variant beats {BASELINE_NAME}, which is worth keeping."
        elif change.verdict == "no_change":
            text += f" No variant is faster than {BASELINE_NAME} beyond the noise."
        return text
    if candidate_count == 0:
        why = "There are no variants for this profile"
    elif passed_parity == 0:
        why = "No variant passes the accuracy check, so none is recommended"
    elif budget_ms is not None:
        why = f"No variant that passes the accuracy check has a benchmark point within the {_ms(budget_ms)} p99 budget"
    else:
        why = "No variant that passes the accuracy check has a benchmark at batch 1, concurrency 1"
    if baseline_point is None or baseline is None:
        if budget_ms is not None:
            return f"{why}; keep {BASELINE_NAME}, though it has no measured point within the budget either."
        return f"{why}; keep {BASELINE_NAME}."
    return f"{why}; keep {BASELINE_NAME}: {_describe(baseline, baseline_point)}."


def _evidence(estimate: Estimate) -> str:
    if estimate.low == estimate.high:
        return ""
    trials = f"{estimate.trials} trial{'s' if estimate.trials != 1 else ''}"
    return f", 95% interval from {trials} x {estimate.samples:,} samples"


def _describe(estimate: Estimate, point: _Point) -> str:
    label = _DESCRIBED[estimate.statistic]
    where = f"at batch {point.batch}, concurrency {point.concurrency}"
    text = f"{label} {_figure(estimate)} {where}{_evidence(estimate)}"
    beside = []
    p50 = point.measured.p50_ms
    if estimate.statistic != "p50_ms" and p50 is not None and _is_number(p50):
        beside.append(f"p50 {_ms(p50)}")
    if estimate.statistic != "p99_ms":
        if point.p99_ms is not None:
            beside.append(f"p99 {_ms(point.p99_ms)}")
        elif point.measured.p99_note:
            beside.append(f"p99 {point.measured.p99_note}")
    return f"{text} ({'; '.join(beside)})" if beside else text


def _ms(value: float) -> str:
    return f"{value:.3g} ms" if value < 1000 else f"{value:,.0f} ms"


def _rate(value: float) -> str:
    return f"{value:.3g}/s" if value < 1000 else f"{value:,.0f}/s"


def _size(size: int | None) -> str:
    if size is None:
        return "unknown size"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"
