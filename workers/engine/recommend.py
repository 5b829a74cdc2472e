"""The recommendation: which variant to run on one hardware profile, and why the others lost.

Only a variant that passed parity can win: a faster one that breaks accuracy is turned
down with the parity reason, however fast it is. Among the rest, the objective decides:

- "p99_latency_batch1": the lowest p99 latency at batch 1, concurrency 1;
- "throughput_within_p99_budget": the highest throughput over every measured
  (batch, concurrency) point whose p99 is within `budget_ms`.

Ties are broken the same way every time: lower p99, then the smaller file, then the
name. The winner's speed-up is measured against the original model in plain
onnxruntime on the same objective; when no variant can win, the recommendation is to
keep that original model.

Benchmark points are the JSON a benchmark stores, one dict per (batch, concurrency):
{"batch": 1, "concurrency": 1, "p50": 1.9, "p99": 2.3, "throughput": 512.0, ...}, with
latencies in milliseconds and throughput in inferences per second. A point with an
"error" or without numbers for these keys is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from workers.engine.errors import ModelError
from workers.engine.parity import VariantParity

OBJECTIVES: tuple[str, ...] = ("p99_latency_batch1", "throughput_within_p99_budget")

BASELINE_NAME = "the original model in plain onnxruntime"


@dataclass(frozen=True)
class Candidate:
    """One variant on one hardware profile: its parity verdict and its benchmark.

    `parity` is the variant's `VariantParity`, or its `to_dict()`, or None when parity
    was not checked (then it cannot win). `points` are its benchmark points;
    `benchmark_error` says why it has none, when its benchmark failed. `size_bytes`
    (the variant's files together) breaks ties.
    """

    name: str
    backend: str
    precision: str
    parity: VariantParity | Mapping[str, Any] | None
    points: tuple[Mapping[str, Any], ...] = ()
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
            points=tuple(data.get("points") or ()),
            benchmark_error=str(data.get("benchmark_error") or ""),
            size_bytes=data.get("size_bytes"),
        )


@dataclass(frozen=True)
class CandidateOutcome:
    """Where one candidate ended up.

    `value` is the objective's metric at the candidate's best point (p99 in ms, or
    throughput per second), with that point's `p99_ms`, `batch` and `concurrency`; all
    None when the candidate had no usable point. `speedup` is the ratio against the
    original model (above 1 is faster), None without a baseline to compare with.
    `reason` says, in one sentence, why it lost; it is empty for the winner.
    """

    name: str
    backend: str
    precision: str
    value: float | None = None
    p99_ms: float | None = None
    batch: int | None = None
    concurrency: int | None = None
    speedup: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class Recommendation:
    """The variant to run on one hardware profile, the runner-up, and why every other lost.

    `winner` is None when no variant passes parity with a usable benchmark; then
    `use_baseline` is true and `summary` says to keep the original model.
    `baseline_value` is the original model's metric on the same objective, if measured.
    """

    objective: str
    budget_ms: float | None
    winner: CandidateOutcome | None
    runner_up: CandidateOutcome | None
    others: tuple[CandidateOutcome, ...]
    baseline_value: float | None
    use_baseline: bool
    summary: str

    def to_dict(self) -> dict[str, Any]:
        """The recommendation as plain dicts, lists, strings and numbers, ready for JSON."""
        data = asdict(self)
        data["others"] = list(data["others"])
        return data


class _Point(NamedTuple):
    batch: int
    concurrency: int
    p99_ms: float
    throughput: float | None


class _Ranked(NamedTuple):
    candidate: Candidate
    point: _Point
    value: float


def recommend(
    candidates: Sequence[Candidate | Mapping[str, Any]],
    baseline: Sequence[Mapping[str, Any]] | None,
    objective: str,
    budget_ms: float | None = None,
) -> Recommendation:
    """Pick the variant to run on one hardware profile under `objective`.

    `candidates` are `Candidate`s or their dicts; `baseline` is the benchmark points of
    the original model in plain onnxruntime (None when it was not benchmarked). With
    "p99_latency_batch1", a `budget_ms` is optional and, when given, a candidate whose
    p99 at batch 1 is over it loses; "throughput_within_p99_budget" needs it.

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

    baseline_point = _best_point(_points(baseline or ()), objective, budget_ms)
    baseline_value = _metric(baseline_point, objective) if baseline_point else None

    ranked: list[_Ranked] = []
    rejected: list[CandidateOutcome] = []
    passed_parity = 0
    for entry in entries:
        reason = _parity_problem(entry.parity)
        if not reason:
            passed_parity += 1
            reason, point = _benchmark_problem(entry, objective, budget_ms)
            if point is not None:
                ranked.append(_Ranked(entry, point, _metric(point, objective)))
                continue
        rejected.append(_outcome(entry, None, objective, baseline_value, reason))
    ranked.sort(key=lambda item: _rank_key(item, objective))

    outcomes = [
        _outcome(
            item.candidate, item.point, objective, baseline_value, _why_lost(item, ranked[0], objective, budget_ms)
        )
        for item in ranked
    ]
    winner = outcomes[0] if outcomes else None
    runner_up = outcomes[1] if len(outcomes) > 1 else None
    others = tuple(outcomes[2:]) + tuple(rejected)
    summary = _summary(winner, len(entries), passed_parity, objective, budget_ms, baseline_point, baseline_value)
    return Recommendation(
        objective=objective,
        budget_ms=budget_ms,
        winner=winner,
        runner_up=runner_up,
        others=others,
        baseline_value=baseline_value,
        use_baseline=winner is None,
        summary=summary,
    )


# --- points and metrics -----------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _points(raw: Sequence[Mapping[str, Any]]) -> list[_Point]:
    """The usable points: those without an error and with numbers where they are needed."""
    points = []
    for item in raw:
        if not isinstance(item, Mapping) or item.get("error"):
            continue
        batch: Any = item.get("batch")
        concurrency: Any = item.get("concurrency")
        p99: Any = item.get("p99")
        throughput: Any = item.get("throughput")
        if not (_is_number(batch) and _is_number(concurrency) and _is_number(p99)) or p99 < 0:
            continue
        points.append(
            _Point(int(batch), int(concurrency), float(p99), float(throughput) if _is_number(throughput) else None)
        )
    return points


def _eligible(points: Sequence[_Point], objective: str, budget_ms: float | None) -> list[_Point]:
    if objective == "p99_latency_batch1":
        chosen = [point for point in points if point.batch == 1 and point.concurrency == 1]
    else:
        chosen = [point for point in points if point.throughput is not None]
    if budget_ms is not None:
        chosen = [point for point in chosen if point.p99_ms <= budget_ms]
    return chosen


def _best_point(points: Sequence[_Point], objective: str, budget_ms: float | None) -> _Point | None:
    eligible = _eligible(points, objective, budget_ms)
    if not eligible:
        return None
    if objective == "p99_latency_batch1":
        return min(eligible, key=lambda point: point.p99_ms)
    # Highest throughput; of equal ones, the lower p99, then the smaller batch.
    return min(eligible, key=lambda point: (-(point.throughput or 0.0), point.p99_ms, point.batch, point.concurrency))


def _metric(point: _Point, objective: str) -> float:
    if objective == "p99_latency_batch1":
        return point.p99_ms
    return point.throughput or 0.0


def _speedup(value: float, baseline_value: float | None, objective: str) -> float | None:
    if baseline_value is None or value <= 0 or baseline_value <= 0:
        return None
    return baseline_value / value if objective == "p99_latency_batch1" else value / baseline_value


def _rank_key(item: _Ranked, objective: str) -> tuple[float, float, float, str]:
    size = float(item.candidate.size_bytes) if item.candidate.size_bytes is not None else math.inf
    first = item.point.p99_ms if objective == "p99_latency_batch1" else -item.value
    return (first, item.point.p99_ms, size, item.candidate.name)


def _outcome(
    candidate: Candidate, point: _Point | None, objective: str, baseline_value: float | None, reason: str
) -> CandidateOutcome:
    if point is None:
        return CandidateOutcome(candidate.name, candidate.backend, candidate.precision, reason=reason)
    value = _metric(point, objective)
    return CandidateOutcome(
        candidate.name,
        candidate.backend,
        candidate.precision,
        value=value,
        p99_ms=point.p99_ms,
        batch=point.batch,
        concurrency=point.concurrency,
        speedup=_speedup(value, baseline_value, objective),
        reason=reason,
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
        lowest = min(point.p99_ms for point in at_batch1)
        return f"Its p99 at batch 1 is {_ms(lowest)}, over the {_ms(budget_ms or 0)} budget.", None
    with_throughput = _eligible(points, objective, None)
    if not with_throughput:
        return "Not benchmarked for throughput: no point records one.", None
    lowest = min(point.p99_ms for point in with_throughput)
    return f"No point within the {_ms(budget_ms or 0)} p99 budget (its lowest p99 is {_ms(lowest)}).", None


def _why_lost(item: _Ranked, best: _Ranked, objective: str, budget_ms: float | None) -> str:
    """One sentence on why a ranked candidate is behind the winner ("" for the winner)."""
    if item is best:
        return ""
    name = best.candidate.name
    if objective == "p99_latency_batch1":
        if item.value != best.value:
            return f"Slower: p99 {_ms(item.value)} vs {_ms(best.value)} for '{name}' at batch 1."
        tied = f"Tied with '{name}' on p99 ({_ms(item.value)})"
    else:
        within = f" within the {_ms(budget_ms or 0)} p99 budget"
        if item.value != best.value:
            return f"Lower throughput: {_rate(item.value)} vs {_rate(best.value)} for '{name}'{within}."
        tied = f"Tied with '{name}' on throughput ({_rate(item.value)}{within})"
        if item.point.p99_ms != best.point.p99_ms:
            return f"{tied}, which has the lower p99 ({_ms(best.point.p99_ms)} vs {_ms(item.point.p99_ms)})."
    mine, theirs = item.candidate.size_bytes, best.candidate.size_bytes
    if mine != theirs:
        return f"{tied}, which has the smaller file ({_size(theirs)} vs {_size(mine)})."
    return f"{tied} and file size, which comes first by name."


def _summary(
    winner: CandidateOutcome | None,
    candidate_count: int,
    passed_parity: int,
    objective: str,
    budget_ms: float | None,
    baseline_point: _Point | None,
    baseline_value: float | None,
) -> str:
    if winner is not None:
        described = _describe_point(
            winner.value or 0.0, winner.p99_ms or 0.0, winner.batch, winner.concurrency, objective
        )
        text = f"Use '{winner.name}' ({winner.backend}, {winner.precision}): {described}"
        if winner.speedup is None:
            return f"{text}; {BASELINE_NAME} has no benchmark to compare it with."
        text = f"{text}, {winner.speedup:.2f}x {BASELINE_NAME}."
        if winner.speedup < 1:
            text += f" No variant beats {BASELINE_NAME}, which is worth keeping."
        return text
    if candidate_count == 0:
        why = "There are no variants for this profile"
    elif passed_parity == 0:
        why = "No variant passes the accuracy check, so none is recommended"
    elif budget_ms is not None:
        why = f"No variant that passes the accuracy check has a benchmark point within the {_ms(budget_ms)} p99 budget"
    else:
        why = "No variant that passes the accuracy check has a benchmark at batch 1, concurrency 1"
    if baseline_point is None or baseline_value is None:
        if budget_ms is not None:
            return f"{why}; keep {BASELINE_NAME}, though it has no measured point within the budget either."
        return f"{why}; keep {BASELINE_NAME}."
    measured = _describe_point(
        baseline_value, baseline_point.p99_ms, baseline_point.batch, baseline_point.concurrency, objective
    )
    return f"{why}; keep {BASELINE_NAME} ({measured})."


def _describe_point(value: float, p99_ms: float, batch: int | None, concurrency: int | None, objective: str) -> str:
    if objective == "p99_latency_batch1":
        return f"p99 {_ms(value)} at batch 1, concurrency 1"
    return f"{_rate(value)} at batch {batch}, concurrency {concurrency} with p99 {_ms(p99_ms)}"


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
