"""Mixed precision by sensitivity: keep in float the activations whose quantization hurts
the outputs most, until the quantized model is within tolerance again.

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
   whose boxes in pixels and scores in [0, 1] are concatenated) until `budget_seconds`;
3. keep the 1, 2, 4, ... most sensitive in float until the model passes, then bisect down
   to the fewest that pass. The search stops at `max_float_share` of the activations: past
   that, most of the graph runs in float and the speed-up is gone.

The result says which activations stayed in float, which nodes read them, and how the
worst slice's signal-to-noise ratio went, so the report can show it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from workers.engine.outputs import OutputSemantics
    from workers.engine.parity import Tolerance, VariantParity

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
# A score for outputs that pass by max abs error (no slice to rank): better than any ratio.
_EXACT_DB = 200.0


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
        if output.max_abs_error is not None and output.max_abs_error <= verdict.tolerance.max_abs_error:
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
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    max_float_share: float = MAX_FLOAT_SHARE,
    progress: Callable[[str], None] | None = None,
) -> MixedPrecisionResult:
    """Find the fewest activations to keep in float for `quantized` to match `reference` on
    `feeds` within `tolerance`, each output judged by what `semantics` says it is (a detection
    head by its detections), as the parity step will (see the module docstring)."""
    from workers.engine.parity import compare_variant

    started = time.monotonic()
    probes = 0

    def judge(model: onnx.ModelProto) -> VariantParity:
        nonlocal probes
        probes += 1
        return compare_variant(reference, _run(model, feeds), tolerance, semantics)

    pairs = activation_pairs(quantized)
    full = judge(quantized)
    base = score_db(full)
    result = MixedPrecisionResult(None, (), len(pairs), base, None, probes, 0, 0.0, full.passed, tuple(full.reasons))
    if full.passed or not pairs:
        result.seconds = time.monotonic() - started
        return result

    # Sensitivity of each activation (with the activations it must stay in float with), from
    # the outputs backwards, within the budget.
    groups = float_groups(quantized, pairs)
    sensitivities: dict[str, float] = {}
    for pair in reversed(pairs):
        if time.monotonic() - started > budget_seconds:
            break
        sensitivities[pair.tensor] = score_db(judge(keep_in_float(quantized, groups[pair.tensor]))) - base
        if progress:
            progress(f"measured {len(sensitivities)} of {len(pairs)} activations")
    ranked = sorted(
        (pair.tensor for pair in pairs if sensitivities.get(pair.tensor, 0.0) > 0),
        key=lambda tensor: -sensitivities[tensor],
    )
    limit = max(1, int(len(pairs) * max_float_share))

    def chosen(count: int) -> list[QdqPair]:
        """The activations of the `count` most sensitive groups, each once."""
        kept: list[QdqPair] = []
        for tensor in ranked[:count]:
            kept.extend(pair for pair in groups[tensor] if pair not in kept)
        return kept

    def passes(count: int) -> tuple[bool, VariantParity, onnx.ModelProto]:
        model = keep_in_float(quantized, chosen(count))
        verdict = judge(model)
        return verdict.passed, verdict, model

    # The largest number of groups whose activations stay within the limit.
    most = 0
    while most < len(ranked) and len(chosen(most + 1)) <= limit:
        most += 1
    found: tuple[int, VariantParity, onnx.ModelProto] | None = None
    failed_below = 0
    count = 1
    while count <= most:
        ok, verdict, model = passes(count)
        if ok:
            found = (count, verdict, model)
            break
        failed_below = count
        if count == most:
            break
        count = min(count * 2, most)
    if found is not None:
        # The fewest groups that pass, between the last count that failed and the first that passed.
        low, high = failed_below, found[0]
        while high - low > 1:
            middle = (low + high) // 2
            ok, verdict, model = passes(middle)
            if ok:
                found, high = (middle, verdict, model), middle
            else:
                low = middle
    result.sensitivities = sensitivities
    result.measured = len(sensitivities)
    result.probes = probes
    result.seconds = time.monotonic() - started
    if found is not None:
        result.model = found[2]
        result.kept_in_float = tuple(chosen(found[0]))
        result.mixed_score_db = score_db(found[1])
    return result


def _run(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return [dict(zip(names, session.run(None, dict(feed)), strict=True)) for feed in feeds]
