"""Mixed precision by sensitivity: keep in float the activations whose quantization hurts
the outputs most, until the quantized model is within tolerance again.
It is over 600 lines because it is one search, the numbered steps below: its budget, its
scoring, the QDQ graph edits it tries and the loop that drives them are one algorithm and are
read together.

A static INT8 model in QDQ form quantizes an activation `t` with a QuantizeLinear node and
hands its consumers the DequantizeLinear of that: float values rounded to 256 levels. Taking
that pair out (its consumers read `t` itself) keeps `t` in float; onnxruntime then runs the
nodes around it in float and the rest in INT8. No recalibration is needed: every other
activation keeps its scale.

The search, on probe inputs (the calibration samples), against the float model's outputs:

1. judge the full INT8 model with the engine's comparator (`parity.compare_variant`: per
   output and per slice, so a collapsed score column is seen); if it passes, there is
   nothing to search;
2. measure each quantized activation's sensitivity: the gain in the worst output's score
   when that activation stays in float, together with the activations data-movement nodes
   make from it (`float_groups`: a Concat or Reshape after it shares its scale, so it alone
   in float changes nothing). Activations are measured from the outputs
   backwards (where a shared scale most often crushes a small-valued part, as in a detector
   whose boxes in pixels and scores in [0, 1] are concatenated) while the budget lasts,
   keeping back what step 3 is expected to need;
3. keep the 1, 2, 4, ... most sensitive in float until the model passes, then bisect down
   to the fewest that pass. The search stops at `max_float_share` of the activations: past
   that, most of the graph runs in float and the speed-up is gone. Every model judged on the
   way is a candidate, the measurements of step 2 included: the result is the passing one
   with the fewest activations in float.

The budget (`SearchBudget`, from the profile's options) is time and a number of candidate
models judged, whichever runs out first. A search that runs out keeps what it measured:
the sensitivities so far, the best mix that passed if one did, and every candidate judged.

The result says which activations stayed in float, which nodes read them, how the worst
slice's signal-to-noise ratio went, and every candidate model judged with its score, so the
report can show the trade-off.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from workers.engine.errors import ModelError

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from workers.engine.outputs import OutputSemantics
    from workers.engine.parity import Tolerance, VariantParity

# (fraction of the budget spent, message), as the sandbox's progress callback takes it.
SearchProgress = Callable[[float, str], None]

MAX_FLOAT_SHARE = 0.5
# Nodes that move or join values without computing new ones: onnxruntime gives their output
# the scale of their input, so they stay in float together with it.
DATA_MOVEMENT = frozenset(
    {
        "Reshape", "Transpose", "Concat", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Split", "Gather",
        "Expand", "Identity", "MaxPool", "Resize", "Pad", "DepthToSpace", "SpaceToDepth", "Tile",
    }
)  # fmt: skip
DEFAULT_BUDGET_SECONDS = 120.0
# Enough for the sensitivity of every activation of a YOLO-sized detector (about 250) and the
# choice after it; a cap that, unlike time, gives the same search on any machine.
DEFAULT_MAX_CANDIDATES = 300
# Upper bounds that catch a typo (hours typed as seconds twice over) rather than limit anyone.
_MAX_BUDGET_SECONDS = 24 * 3600.0
_MAX_CANDIDATES_LIMIT = 100_000
# A score for outputs that pass by max abs error (no slice to rank): better than any ratio.
_EXACT_DB = 200.0


@dataclass(frozen=True)
class SearchBudget:
    """How much a quantization search may spend: `seconds` of wall-clock time and
    `max_candidates` candidate models judged, whichever runs out first. A profile sets them
    in its options as `search_budget_s` and `search_max_candidates`."""

    seconds: float = DEFAULT_BUDGET_SECONDS
    max_candidates: int = DEFAULT_MAX_CANDIDATES

    def __post_init__(self) -> None:
        seconds, candidates = self.seconds, self.max_candidates
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise ModelError(
                "invalid_search_budget",
                f"The search budget 'search_budget_s' must be a number of seconds, not {seconds!r}.",
            )
        if not 0 < seconds <= _MAX_BUDGET_SECONDS:
            raise ModelError(
                "invalid_search_budget",
                f"The search budget 'search_budget_s' must be above 0 and at most {_MAX_BUDGET_SECONDS:g} "
                f"seconds, not {seconds!r}.",
            )
        if isinstance(candidates, bool) or not isinstance(candidates, int):
            raise ModelError(
                "invalid_search_budget",
                f"The search budget 'search_max_candidates' must be a whole number of candidate models, "
                f"not {candidates!r}.",
            )
        if not 1 <= candidates <= _MAX_CANDIDATES_LIMIT:
            raise ModelError(
                "invalid_search_budget",
                f"The search budget 'search_max_candidates' must be between 1 and {_MAX_CANDIDATES_LIMIT:,}, "
                f"not {candidates!r}.",
            )

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> SearchBudget:
        """The budget a hardware profile's options set (`search_budget_s`, `search_max_candidates`;
        the rest of the options belong to other steps), the defaults for keys not given.

        Raises ModelError("invalid_search_budget") for a value that is not a number in range."""
        options = options or {}
        seconds = options.get("search_budget_s", DEFAULT_BUDGET_SECONDS)
        candidates = options.get("search_max_candidates", DEFAULT_MAX_CANDIDATES)
        # JSON has one number type: 50.0 candidates is 50, 50.5 is not.
        if isinstance(candidates, float) and candidates.is_integer():
            candidates = int(candidates)
        return cls(seconds, candidates)

    @classmethod
    def for_build(cls, options: Mapping[str, Any] | None) -> tuple[SearchBudget, str]:
        """The profile's budget for a variant build, and "" ; or, where the profile's value is
        wrong, the default budget and a sentence saying so: a search setting should not cost
        the user every other variant of the backend."""
        try:
            return cls.from_options(options), ""
        except ModelError as exc:
            default = cls()
            return default, (
                f"{exc.message} The search used the default budget ({default.seconds:g} s, "
                f"{default.max_candidates} candidates); correct the hardware profile's options to change it."
            )

    def to_dict(self) -> dict[str, Any]:
        return {"budget_s": self.seconds, "max_candidates": self.max_candidates}


@dataclass(frozen=True)
class Candidate:
    """One candidate model a search judged: what it was, how many activations it kept in
    float (None where the search can't tell, as inside NNCF), its score (the worst output's,
    `score_db`; None where no output could be scored) and whether it passed."""

    label: str
    stage: str  # "full-int8", "sensitivity", "mix", "round", "nncf"
    float_activations: int | None
    score_db: float | None
    passed: bool
    chosen: bool = False

    def to_dict(self, activations: int | None = None) -> dict[str, Any]:
        share = (
            round(self.float_activations / activations, 4)
            if activations and self.float_activations is not None
            else (0.0 if self.float_activations == 0 else None)
        )
        return {
            "label": self.label,
            "stage": self.stage,
            "float_activations": self.float_activations,
            "float_share": share,
            "score_db": self.score_db,
            "passed": self.passed,
            "chosen": self.chosen,
        }


def candidate_score(verdict: VariantParity) -> float | None:
    """`score_db` as a report stores it: rounded, capped at the exact-match score, None for a
    model no output of which could be scored (JSON has no infinity)."""
    score = score_db(verdict)
    return round(min(score, _EXACT_DB), 1) if math.isfinite(score) else None


# graded_metric: the score range mapped onto (0, FAILING_CEILING]; a pass is 1.
_GRADE_FLOOR_DB = -20.0
_GRADE_CEILING_DB = 60.0
FAILING_CEILING = 0.9


def graded_metric(verdict: VariantParity) -> float:
    """The engine's parity verdict as an accuracy metric for a search that ranks by it (NNCF's
    accuracy control): 1.0 when the verdict passes; otherwise `score_db` mapped from
    [-20 dB, 60 dB] onto [0, 0.9], so that of two failing candidates the one nearer the
    tolerance scores higher. A pass/fail metric ties every layer group on the samples a search
    ranks on, and NNCF then put back in float nearly every layer of a ResNet-18 (1.03x of
    FP32) where this one let it find the two that mattered (0.16x)."""
    if verdict.passed:
        return 1.0
    # An output that could not be scored at all (-inf) is at the floor.
    clamped = min(max(score_db(verdict), _GRADE_FLOOR_DB), _GRADE_CEILING_DB)
    return FAILING_CEILING * (clamped - _GRADE_FLOOR_DB) / (_GRADE_CEILING_DB - _GRADE_FLOOR_DB)


# Why a search ended, as its record says.
STOPPED_REASONS = {
    "full-int8-passed": "the full INT8 model already passes",
    "passed": "found the fewest activations in float that pass",
    "float-share-limit": "no mix within the float-share limit passed",
    "no-gain": "no activation measured improves the score when kept in float",
    "no-activations": "the model has no quantized activations",
    "budget": "the time budget ran out",
    "candidates": "the candidate budget ran out",
    "not-restored": "NNCF's accuracy control ended without a model that passes",
}


def probe_feeds(
    calibration_feeds: Sequence[Mapping[str, np.ndarray]],
    evidence: Sequence[Mapping[str, Any]],
    limit: int,
    description: str = "",
) -> tuple[list[dict[str, Any]], str, list[tuple[int, int]]]:
    """The feeds a search judges its candidates on, what they are in words, and the (start,
    end) of each set among them: the first `limit` calibration samples and, where given, the
    inputs parity will judge on (`evidence`, `Calibration.evidence`). A candidate passes when
    it passes on each set on its own (`judge_sets`), so a mix the search picks passes on the
    parity step's inputs as parity judges them, not only pooled with the samples its scales
    were fitted to."""
    feeds = [dict(feed) for feed in calibration_feeds[:limit]]
    sets = [(0, len(feeds))]
    where = f"{len(feeds)} calibration sample{'s' if len(feeds) != 1 else ''}"
    if evidence:
        feeds.extend(dict(feed) for feed in evidence)
        sets.append((sets[0][1], len(feeds)))
        where += f" and the {len(evidence)} inputs parity judges on" + (f" ({description})" if description else "")
    return feeds, where, sets


def judge_sets(
    reference: Sequence[Mapping[str, np.ndarray]],
    outputs: Sequence[Mapping[str, np.ndarray]],
    tolerance: Tolerance,
    semantics: Mapping[str, OutputSemantics] | None,
    sets: Sequence[tuple[int, int]] | None = None,
) -> VariantParity:
    """The engine's verdict on each set of the probe on its own (`probe_feeds`), the worst one:
    a failing set's, else the lowest-scoring. Pooled, a slice that collapses on the 8 parity
    inputs can keep its signal-to-noise ratio over 16 samples."""
    from workers.engine.parity import compare_variant

    ranges = [(start, end) for start, end in (sets or [(0, len(reference))]) if end > start]
    verdicts = [
        compare_variant(list(reference[start:end]), list(outputs[start:end]), tolerance, semantics)
        for start, end in ranges
    ]
    failing = [verdict for verdict in verdicts if not verdict.passed]
    return min(failing or verdicts, key=score_db)


@dataclass(frozen=True)
class QdqPair:
    """One quantized activation: the float tensor, its QuantizeLinear node, the
    DequantizeLinear nodes that read it, and the nodes that read those."""

    tensor: str
    quantize: str
    dequantize: tuple[str, ...]
    consumers: tuple[str, ...]


@dataclass
class MixedPrecisionResult:
    """What the search found. `model` is None when no mix passed within its limits."""

    model: onnx.ModelProto | None
    kept_in_float: tuple[QdqPair, ...]
    quantized_activations: int
    full_int8_score_db: float
    mixed_score_db: float | None
    probes: int
    measured: int
    seconds: float
    full_int8_passed: bool
    reasons: tuple[str, ...] = ()  # the full INT8 model's parity reasons on the probe
    sensitivities: dict[str, float] = field(default_factory=dict)
    budget: SearchBudget = field(default_factory=SearchBudget)
    candidates: list[Candidate] = field(default_factory=list)
    # Why the search ended (a key of STOPPED_REASONS); "budget" or "candidates" whenever a
    # limit cut it short, even if a passing mix was found in what was measured.
    stopped: str = "passed"

    @property
    def out_of_budget(self) -> bool:
        return self.stopped in ("budget", "candidates")

    def record(self) -> dict[str, Any]:
        """Every candidate judged, the budget and how the search ended: the variant's
        `options["search"]`, from which the report draws the trade-off."""
        return {
            **self.budget.to_dict(),
            "spent_s": round(self.seconds, 1),
            "activations": self.quantized_activations,
            "float_unit": "activations",
            "activations_measured": self.measured,
            "stopped": self.stopped,
            "stopped_because": STOPPED_REASONS.get(self.stopped, self.stopped),
            "candidates": [candidate.to_dict(self.quantized_activations) for candidate in self.candidates],
        }

    def budget_sentence(self, name: str) -> str:
        """What running out of budget cost, in a sentence; "" when the search was not cut short."""
        if not self.out_of_budget:
            return ""
        spent = (
            f"its {self.budget.seconds:g} s budget"
            if self.stopped == "budget"
            else f"its budget of {self.budget.max_candidates} candidate models"
        )
        where = (
            f"after measuring {self.measured} of {self.quantized_activations} activations "
            f"({len(self.candidates)} candidate models judged in {self.seconds:.1f} s)"
        )
        if self.model is not None:
            kept = (
                f"kept what was measured: keeping the {len(self.kept_in_float)} most sensitive of them in float "
                "passes, though fewer might"
            )
        else:
            kept = (
                f"kept what was measured ({len(self.candidates)} candidate models, in the report), but none of "
                "them passed, so no mixed variant was built"
            )
        return (
            f"The {name} search ran out of {spent} {where}; {kept}. Raise search_budget_s or "
            "search_max_candidates in the hardware profile's options to search further."
        )

    def summary(self) -> dict[str, Any]:
        """The search as the variant's build options record it."""
        return {
            "kept_in_float": [pair.tensor for pair in self.kept_in_float],
            "float_nodes": sorted({node for pair in self.kept_in_float for node in pair.consumers}),
            "quantized_activations": self.quantized_activations,
            "full_int8_worst_slice_db": _rounded(self.full_int8_score_db),
            "mixed_worst_slice_db": _rounded(self.mixed_score_db),
            "models_tried": self.probes,
            "activations_measured": self.measured,
            "search_seconds": round(self.seconds, 1),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def activation_pairs(model: onnx.ModelProto) -> list[QdqPair]:
    """The quantized activations of a QDQ model, in graph order (weights, which are
    initializers, are not activations)."""
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    graph_outputs = {output.name for output in graph.output}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    pairs = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or not node.input or node.input[0] in initializers:
            continue
        dequantize = [reader for reader in readers.get(node.output[0], []) if reader.op_type == "DequantizeLinear"]
        if not dequantize:
            continue
        consumers = [_label(reader) for dq in dequantize for reader in readers.get(dq.output[0], [])]
        consumers += [f"graph output {dq.output[0]}" for dq in dequantize if dq.output[0] in graph_outputs]
        pairs.append(QdqPair(node.input[0], node.name, tuple(dq.name for dq in dequantize), tuple(consumers)))
    return pairs


def _label(node: Any) -> str:
    """A node's name, or for an unnamed one its op type and first output."""
    return node.name or f"{node.op_type}({node.output[0] if node.output else ''})"


def float_groups(model: onnx.ModelProto, pairs: Sequence[QdqPair]) -> dict[str, tuple[QdqPair, ...]]:
    """For each quantized activation, the activations that must stay in float with it for it to
    reach the next computing node in float: those that data-movement nodes (Reshape, Concat,
    Transpose...) make from it, which onnxruntime quantizes with the same scale. Keeping a
    score tensor in float helps nothing while the Concat that joins it with boxes in pixels
    is still quantized."""
    by_tensor = {pair.tensor: pair for pair in pairs}
    readers: dict[str, list[Any]] = {}
    producers_of_dq = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
        if node.op_type == "DequantizeLinear":
            producers_of_dq[node.name] = node
    groups = {}
    for pair in pairs:
        group, frontier = [pair], [pair]
        while frontier:
            current = frontier.pop()
            for dq_name in current.dequantize:
                dq = producers_of_dq.get(dq_name)
                for reader in readers.get(dq.output[0], []) if dq is not None else []:
                    if reader.op_type not in DATA_MOVEMENT:
                        continue
                    for output in reader.output:
                        follower = by_tensor.get(output)
                        if follower is not None and follower not in group:
                            group.append(follower)
                            frontier.append(follower)
        groups[pair.tensor] = tuple(group)
    return groups


def keep_in_float(model: onnx.ModelProto, pairs: Sequence[QdqPair]) -> onnx.ModelProto:
    """A copy of `model` with the activations of `pairs` in float: each DequantizeLinear
    becomes an Identity of the float tensor (so every name stays valid, graph outputs
    included) and the QuantizeLinear goes."""
    from onnx import helper

    result = copy.deepcopy(model)
    dequantize = {name: pair.tensor for pair in pairs for name in pair.dequantize}
    quantize = {pair.quantize for pair in pairs}
    nodes = []
    for node in result.graph.node:
        if node.name in quantize and node.op_type == "QuantizeLinear":
            continue
        if node.name in dequantize and node.op_type == "DequantizeLinear":
            nodes.append(helper.make_node("Identity", [dequantize[node.name]], [node.output[0]], name=node.name))
            continue
        nodes.append(node)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    return result


def score_db(verdict: VariantParity) -> float:
    """How far the worst output is from the reference, as one number (higher is better): the
    lowest slice signal-to-noise ratio over the outputs, else the whole output's ratio; an
    output that matches within max abs error counts as exact. A detection head also counts
    its detections: the share the variant misses or adds, 1 - min(recall, precision), as a
    ratio in dB (10 % missed: 20 dB), so a mix is ranked by what the parity step judges."""
    scores = []
    for output in verdict.outputs:
        # Exact only for an output that passed: one that failed on NaNs can show no difference.
        exact = output.max_abs_error is not None and output.max_abs_error <= verdict.tolerance.max_abs_error
        if exact and output.passed:
            scores.append(_EXACT_DB)
            continue
        if output.worst_slice_sqnr_db is not None:
            scores.append(output.worst_slice_sqnr_db)
        elif output.sqnr_db is not None:
            scores.append(output.sqnr_db)
        else:
            scores.append(-math.inf)
        rates = [rate for rate in _detection_rates(output.detection) if rate is not None]
        if rates:
            scores.append(-20 * math.log10(max(1 - min(rates), 1e-4)))
    return min(scores, default=-math.inf)


def _detection_rates(detection: Mapping[str, Any] | None) -> tuple[float | None, float | None]:
    if not detection:
        return None, None
    return detection.get("recall"), detection.get("precision")


def search(
    quantized: onnx.ModelProto,
    reference: Sequence[Mapping[str, np.ndarray]],
    feeds: Sequence[Mapping[str, np.ndarray]],
    tolerance: Tolerance,
    *,
    semantics: Mapping[str, OutputSemantics] | None = None,
    budget: SearchBudget | None = None,
    max_float_share: float = MAX_FLOAT_SHARE,
    progress: SearchProgress | None = None,
    sets: Sequence[tuple[int, int]] | None = None,
) -> MixedPrecisionResult:
    """Find the fewest activations to keep in float for `quantized` to match `reference` on
    `feeds` within `tolerance`, each output judged by what `semantics` says it is (a detection
    head by its detections), as the parity step will (see the module docstring), within
    `budget` (the defaults of `SearchBudget` when None). Every candidate model judged is in
    the result's `candidates`; `stopped` says why the search ended."""

    budget = budget or SearchBudget()
    started = time.monotonic()
    candidates: list[Candidate] = []

    def elapsed() -> float:
        return time.monotonic() - started

    def spent() -> str:
        """The limit that is used up, or ""."""
        if len(candidates) >= budget.max_candidates:
            return "candidates"
        return "budget" if elapsed() >= budget.seconds else ""

    # What each candidate kept in float, and its verdict: any one that passes may be the result.
    tried: list[tuple[tuple[QdqPair, ...], VariantParity]] = []

    def judge(model: onnx.ModelProto, label: str, stage: str, kept: Sequence[QdqPair]) -> VariantParity:
        verdict = judge_sets(reference, _run(model, feeds), tolerance, semantics, sets)
        candidates.append(Candidate(label, stage, len(kept), candidate_score(verdict), verdict.passed))
        tried.append((tuple(kept), verdict))
        if progress:
            share = max(elapsed() / budget.seconds, len(candidates) / budget.max_candidates)
            progress(
                min(share, 1.0),
                f"mixed-precision search: {len(candidates)} of at most {budget.max_candidates} candidate models "
                f"judged, {elapsed():.0f} s of {budget.seconds:g} s",
            )
        return verdict

    pairs = activation_pairs(quantized)
    full = judge(quantized, "full INT8", "full-int8", ())
    base = score_db(full)
    result = MixedPrecisionResult(
        None, (), len(pairs), base, None, 1, 0, 0.0, full.passed, tuple(full.reasons), budget=budget
    )
    result.candidates = candidates

    def finish(stopped: str) -> MixedPrecisionResult:
        result.stopped = stopped
        result.probes = len(candidates)
        result.seconds = elapsed()
        return result

    if full.passed:
        return finish("full-int8-passed")
    if not pairs:
        return finish("no-activations")

    # Sensitivity of each activation (with the activations it must stay in float with), from
    # the outputs backwards, keeping back what the choice after it is expected to take: about
    # two probes per doubling of the count tried, each as long as a measurement.
    limit = max(1, int(len(pairs) * max_float_share))
    reserve = 2 * max(1, math.ceil(math.log2(limit + 1))) + 1
    groups = float_groups(quantized, pairs)
    sensitivities: dict[str, float] = {}
    cut = ""
    for pair in reversed(pairs):
        # At least one measurement, so that the choice has something to go on.
        if sensitivities and len(candidates) + reserve >= budget.max_candidates:
            cut = "candidates"
        elif sensitivities and elapsed() * (1 + reserve / len(candidates)) >= budget.seconds:
            cut = "budget"
        cut = cut or spent()
        if cut:
            break
        group = groups[pair.tensor]
        others = f" (+{len(group) - 1} with it)" if len(group) > 1 else ""
        verdict = judge(keep_in_float(quantized, group), f"{pair.tensor} in float{others}", "sensitivity", group)
        sensitivities[pair.tensor] = score_db(verdict) - base
    result.sensitivities = sensitivities
    result.measured = len(sensitivities)
    ranked = sorted(
        (pair.tensor for pair in pairs if sensitivities.get(pair.tensor, 0.0) > 0),
        key=lambda tensor: -sensitivities[tensor],
    )

    def chosen(count: int) -> list[QdqPair]:
        """The activations of the `count` most sensitive groups, each once."""
        kept: list[QdqPair] = []
        for tensor in ranked[:count]:
            kept.extend(pair for pair in groups[tensor] if pair not in kept)
        return kept

    def passes(count: int) -> tuple[bool, VariantParity, onnx.ModelProto]:
        kept = chosen(count)
        model = keep_in_float(quantized, kept)
        verdict = judge(model, f"{count} most sensitive in float ({len(kept)} activations)", "mix", kept)
        return verdict.passed, verdict, model

    # The largest number of groups whose activations stay within the limit.
    most = 0
    while most < len(ranked) and len(chosen(most + 1)) <= limit:
        most += 1
    found: tuple[int, VariantParity, onnx.ModelProto, int] | None = None
    interrupted = ""
    failed_below = 0
    count = 1
    while count <= most:
        interrupted = spent()
        if interrupted:
            break
        ok, verdict, model = passes(count)
        if ok:
            found = (count, verdict, model, len(candidates) - 1)
            break
        failed_below = count
        if count == most:
            break
        count = min(count * 2, most)
    if found is not None:
        # The fewest groups that pass, between the last count that failed and the first that passed.
        low, high = failed_below, found[0]
        while high - low > 1:
            interrupted = spent()
            if interrupted:
                break
            middle = (low + high) // 2
            ok, verdict, model = passes(middle)
            if ok:
                found, high = (middle, verdict, model, len(candidates) - 1), middle
            else:
                low = middle
    passing = [index for index, (kept, verdict) in enumerate(tried) if verdict.passed and len(kept) <= limit]
    if not passing and not (cut or interrupted) and ranked:
        interrupted = _rounds(quantized, pairs, groups, tried, judge, spent, limit)
    # The result: of every candidate that passed (a measurement of one group in float is a
    # candidate too, and may need fewer activations than any mix of the ranking), the one with
    # the fewest activations in float, then the best score.
    passing = [index for index, (kept, verdict) in enumerate(tried) if verdict.passed and len(kept) <= limit]
    if passing:
        best = min(passing, key=lambda index: (len(tried[index][0]), -score_db(tried[index][1]), index))
        kept, verdict = tried[best]
        result.model = found[2] if found is not None and best == found[3] else keep_in_float(quantized, kept)
        result.kept_in_float = kept
        result.mixed_score_db = score_db(verdict)
        candidates[best] = replace(candidates[best], chosen=True)
    # A limit that cut any phase short is what the record says, passing mix or not.
    if cut or interrupted:
        return finish(cut or interrupted)
    if result.model is not None:
        return finish("passed")
    return finish("float-share-limit" if ranked else "no-gain")


def _rounds(
    quantized: onnx.ModelProto,
    pairs: Sequence[QdqPair],
    groups: Mapping[str, tuple[QdqPair, ...]],
    tried: Sequence[tuple[tuple[QdqPair, ...], VariantParity]],
    judge: Callable[[onnx.ModelProto, str, str, Sequence[QdqPair]], VariantParity],
    spent: Callable[[], str],
    limit: int,
) -> str:
    """Greedy rounds after a ranking none of whose mixes passed: one fault can hide the next
    (a Concat that crushes every score in one scale hides the rounding of the boxes behind
    it, so alone each of those measures no gain). Each round starts from the best mix judged
    so far, measures every remaining group on top of it, and keeps the one that helps most;
    it ends when a mix passes, nothing helps, the float-share limit is reached or the budget
    runs out. Returns the limit that ran out, or ""."""
    within = [(kept, verdict) for kept, verdict in tried if len(kept) <= limit]
    start, verdict = max(within, key=lambda item: (score_db(item[1]), -len(item[0])))
    kept, current = list(start), score_db(verdict)
    while len(kept) < limit:
        gains: dict[str, tuple[float, list[QdqPair]]] = {}
        passed = False
        for pair in reversed(pairs):
            if pair in kept:
                continue
            added = [member for member in groups[pair.tensor] if member not in kept]
            if not added or len(kept) + len(added) > limit or any(added == other for _, other in gains.values()):
                continue
            ran_out = spent()
            if ran_out:
                return ran_out
            trial = [*kept, *added]
            verdict = judge(
                keep_in_float(quantized, trial),
                f"{pair.tensor} in float on top of {len(kept)} (round)",
                "round",
                trial,
            )
            gains[pair.tensor] = (score_db(verdict) - current, added)
            passed = passed or verdict.passed
        if passed or not gains:
            return ""
        gain, added = max(gains.values(), key=lambda item: item[0])
        if gain <= 0:
            return ""
        kept, current = [*kept, *added], current + gain
    return ""


def _run(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return [dict(zip(names, session.run(None, dict(feed)), strict=True)) for feed in feeds]
