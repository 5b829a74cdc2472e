"""An estimate of the floating-point operations one inference of an ONNX model takes.

`estimate_flops` fixes the symbolic input dims, infers shapes again and sums a formula per
node (convolutions and matrix products by their multiply-adds, elementwise ops and reductions
per element, data movement at zero). It is a table of operator costs that grows on its own,
apart from the rest of what inspection reports.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workers.engine.onnx_walk import DEFAULT_DOMAIN, proto_dim
from workers.engine.shape_inference import infer_shapes

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto

FLOP_ASSUMPTIONS = (
    "Symbolic and unknown input dimensions (such as the batch size) count as 1. "
    "A multiply-add counts as 2 FLOPs; elementwise ops count per output element; "
    "data-movement ops (Reshape, Transpose, Concat, ...) count 0; nodes inside "
    "If/Loop/Scan bodies and calls to local functions are not counted."
)


@dataclass(frozen=True)
class FlopEstimate:
    """Estimated floating-point operations for one inference, under `assumptions`.

    `uncounted_op_types` lists operators whose cost is not in `total`, because there is
    no formula for them or their shapes could not be inferred.
    """

    total: int
    by_op_type: dict[str, int]
    assumptions: str
    uncounted_op_types: tuple[str, ...]


# --- what each operator costs -------------------------------------------------------

# fmt: off
# Elementwise ops: 1 FLOP per output element.
_ELEMENTWISE = (
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "Where",
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "ThresholdedRelu", "Sigmoid",
    "HardSigmoid", "HardSwish", "Tanh", "Softplus", "Softsign", "Mish", "Gelu", "Erf",
    "Exp", "Log", "Sqrt", "Reciprocal", "Abs", "Neg", "Sign", "Floor", "Ceil", "Round",
    "Clip", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh",
    "Atanh", "Shrink", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not",
    "And", "Or", "Xor", "BitShift", "IsNaN", "IsInf", "QuantizeLinear", "DequantizeLinear",
    "Resize", "Upsample",
)

# Reductions: 1 FLOP per input element.
_REDUCTIONS = (
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceSum",
    "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
)

# Ops that only move, copy or describe data: 0 FLOPs.
_DATA_MOVEMENT = frozenset((
    "Constant", "ConstantOfShape", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
    "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "Shape",
    "Size", "Cast", "CastLike", "Expand", "Tile", "Pad", "DepthToSpace", "SpaceToDepth",
    "Range", "Dropout", "ScatterND", "ScatterElements", "NonZero", "EyeLike", "Trilu",
    "Compress", "ReverseSequence", "OneHot",
))
# fmt: on

# FLOPs per output element.
_PER_OUTPUT_ELEMENT = {
    **dict.fromkeys(_ELEMENTWISE, 1),
    # Inference-mode normalisation folds to a multiply and an add per element.
    "BatchNormalization": 2,
    # Exponent, running sum and division per element.
    "Softmax": 3,
    "LogSoftmax": 3,
    # Mean, variance, normalise, scale and shift per element.
    "LayerNormalization": 5,
    "InstanceNormalization": 5,
    "GroupNormalization": 5,
    "LpNormalization": 3,
}

# FLOPs per input element.
_PER_INPUT_ELEMENT = dict.fromkeys(_REDUCTIONS, 1)

_POOLING = frozenset(("MaxPool", "AveragePool", "LpPool"))


def estimate_flops(
    model: ModelProto,
    initializer_names: set[str],
    symbolic_dims: Mapping[str, int],
    notes: list[str],
) -> FlopEstimate:
    """Estimate FLOPs of the main graph with symbolic input dims fixed (1 unless given).

    Changes the input dims of `model` in place; call it after everything else that
    reads them.
    """
    given: dict[str, int] = {}
    for value in model.graph.input:
        if value.name in initializer_names or not value.type.HasField("tensor_type"):
            continue
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value >= 0:
                continue
            if dim.dim_param in symbolic_dims:
                given[dim.dim_param] = symbolic_dims[dim.dim_param]
            dim.dim_value = symbolic_dims.get(dim.dim_param, 1)
    # Drop declared intermediate shapes and symbolic output dims so that inference
    # recomputes them from the now-fixed inputs instead of keeping the exporter's names.
    del model.graph.value_info[:]
    for value in model.graph.output:
        if value.type.HasField("tensor_type"):
            for dim in value.type.tensor_type.shape.dim:
                if not isinstance(proto_dim(dim), int):
                    dim.Clear()
    fixed = infer_shapes(model, notes)
    shapes = _known_shapes(fixed.graph)

    by_op_type: Counter[str] = Counter()
    uncounted: set[str] = set()
    for node in fixed.graph.node:
        key = node.op_type if node.domain in ("", DEFAULT_DOMAIN) else f"{node.domain}.{node.op_type}"
        flops = _node_flops(node, shapes)
        if flops is None:
            uncounted.add(key)
        elif flops:
            by_op_type[key] += flops
    assumptions = FLOP_ASSUMPTIONS
    if given:
        named = ", ".join(f"{name}={size}" for name, size in sorted(given.items()))
        assumptions = assumptions.replace(
            "count as 1.",
            f"count as 1, except these, at the sizes inputs are generated and benchmarked at (declared, "
            f"or assumed as the input plan says): {named}.",
            1,
        )
    return FlopEstimate(
        total=sum(by_op_type.values()),
        by_op_type=dict(sorted(by_op_type.items(), key=lambda item: (-item[1], item[0]))),
        assumptions=assumptions,
        uncounted_op_types=tuple(sorted(uncounted)),
    )


def _known_shapes(graph: GraphProto) -> dict[str, tuple[int, ...]]:
    """Fully known shapes by value name; symbolic dims that remain count as 1."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if not value.type.HasField("tensor_type"):
            continue
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = [proto_dim(dim) for dim in tensor_type.shape.dim]
        if any(dim is None for dim in dims):
            continue
        shapes[value.name] = tuple(dim if isinstance(dim, int) else 1 for dim in dims)
    for tensor in graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    shapes[node.output[0]] = tuple(attribute.t.dims)
    return shapes


def _node_flops(node: NodeProto, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """FLOPs of one node: 0 for data movement, None when it cannot be estimated."""
    if node.domain not in ("", DEFAULT_DOMAIN):
        return None
    op = node.op_type
    if op in _DATA_MOVEMENT:
        return 0

    def shape(index: int, names: Any = node.input) -> tuple[int, ...] | None:
        if index >= len(names) or not names[index]:
            return None
        return shapes.get(names[index])

    output = shape(0, node.output)
    has_bias = len(node.input) > 2 and bool(node.input[2])
    if op in _PER_OUTPUT_ELEMENT:
        return None if output is None else _PER_OUTPUT_ELEMENT[op] * math.prod(output)
    if op in _PER_INPUT_ELEMENT:
        data = shape(0)
        return None if data is None else math.prod(data)
    if op in _POOLING:
        kernel = _int_list_attribute(node, "kernel_shape")
        if output is None or not kernel:
            return None
        return math.prod(output) * math.prod(kernel)
    if op == "Conv":
        weight = shape(1)
        if output is None or weight is None:
            return None
        # Each output element is a dot product over (Cin / groups) * kernel size.
        macs = math.prod(output) * math.prod(weight[1:])
        return 2 * macs + (math.prod(output) if has_bias else 0)
    if op == "ConvTranspose":
        data, weight = shape(0), shape(1)
        if output is None or data is None or weight is None:
            return None
        # Each input element is scattered into (Cout / groups) * kernel size outputs.
        macs = math.prod(data) * math.prod(weight[1:])
        return 2 * macs + (math.prod(output) if has_bias else 0)
    if op == "Gemm":
        a = shape(0)
        if output is None or a is None or len(a) != 2:
            return None
        inner = a[0] if _int_attribute(node, "transA") else a[1]
        return 2 * math.prod(output) * inner + (math.prod(output) if has_bias else 0)
    if op in ("MatMul", "MatMulInteger"):
        a = shape(0)
        if output is None or not a:
            return None
        return 2 * math.prod(output) * a[-1]
    return None


def _int_attribute(node: NodeProto, name: str) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return 0


def _int_list_attribute(node: NodeProto, name: str) -> list[int]:
    for attribute in node.attribute:
        if attribute.name == name:
            return list(attribute.ints)
    return []
