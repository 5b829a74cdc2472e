"""Walking an ONNX model's protobuf without running it: every graph, node and stored tensor.

Inspection, its safety checks and the FLOP estimate all read the same things off a model:
the main graph, If/Loop/Scan bodies and local functions, the tensors that can hold weights,
element types and their sizes, and dims as `Dim`s. They live here, below all three, so each
reads the model the same way; nothing here loads weights or imports onnx at module level.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from workers.engine.inputs import Dim

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto, TensorProto

DEFAULT_DOMAIN = "ai.onnx"


# --- fields and dims -----------------------------------------------------------------


def proto_text(value: object) -> str:
    """A protobuf string field as text. The protobuf runtime hands back bytes, not str, for a
    field that holds invalid UTF-8 (a corrupted file; found by fuzzing), which would otherwise
    reach the report, sorting and path handling as bytes."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def proto_dim(dim: Any) -> Dim:
    """A TensorShapeProto dim as a `Dim`: its size, its symbolic name, or None when unknown."""
    which = dim.WhichOneof("value")
    if which == "dim_value":
        # Some exporters write -1 for "any size"; it is not a size.
        return int(dim.dim_value) if dim.dim_value >= 0 else None
    if which == "dim_param":
        return proto_text(dim.dim_param)
    return None


# --- walking the model -------------------------------------------------------------


def subgraphs(node: NodeProto) -> Iterator[GraphProto]:
    """The If/Loop/Scan bodies held in a node's attributes."""
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield attribute.g
        yield from attribute.graphs


def all_graphs(model: ModelProto) -> Iterator[GraphProto]:
    """The main graph, every If/Loop/Scan body, and graphs inside local functions."""
    pending = [model.graph]
    for function in model.functions:
        for node in function.node:
            pending.extend(subgraphs(node))
    while pending:
        graph = pending.pop()
        yield graph
        for node in graph.node:
            pending.extend(subgraphs(node))


def all_nodes(model: ModelProto) -> Iterator[NodeProto]:
    """Every node of every graph `all_graphs` yields, and of every local function."""
    for graph in all_graphs(model):
        yield from graph.node
    for function in model.functions:
        yield from function.node


def all_tensors(model: ModelProto) -> Iterator[TensorProto]:
    """Every tensor stored in the model, wherever it is: these can all be external."""
    for graph in all_graphs(model):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
    for node in all_nodes(model):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values
                yield attribute.sparse_tensor.indices


def parameter_tensors(model: ModelProto) -> Iterator[TensorProto]:
    """Initializers and Constant-node values: the tensors that make up the weights."""
    for graph in all_graphs(model):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
    for node in all_nodes(model):
        if node.op_type == "Constant" and node.domain in ("", DEFAULT_DOMAIN):
            for attribute in node.attribute:
                if attribute.name == "value":
                    yield attribute.t
                elif attribute.name == "sparse_value":
                    yield attribute.sparse_tensor.values


def graph_initializer_names(graph: GraphProto) -> set[str]:
    """The names of a graph's initializers, sparse ones included: graph inputs a caller never feeds."""
    names = {tensor.name for tensor in graph.initializer}
    names.update(sparse.values.name for sparse in graph.sparse_initializer)
    return names


# --- dtypes and sizes --------------------------------------------------------------

# onnx.TensorProto.DataType name -> (numpy-style name, bits per element or None)
_DTYPES: dict[str, tuple[str, int | None]] = {
    "FLOAT": ("float32", 32),
    "UINT8": ("uint8", 8),
    "INT8": ("int8", 8),
    "UINT16": ("uint16", 16),
    "INT16": ("int16", 16),
    "INT32": ("int32", 32),
    "INT64": ("int64", 64),
    "STRING": ("string", None),
    "BOOL": ("bool", 8),
    "FLOAT16": ("float16", 16),
    "DOUBLE": ("float64", 64),
    "UINT32": ("uint32", 32),
    "UINT64": ("uint64", 64),
    "COMPLEX64": ("complex64", 64),
    "COMPLEX128": ("complex128", 128),
    "BFLOAT16": ("bfloat16", 16),
    "FLOAT8E4M3FN": ("float8_e4m3fn", 8),
    "FLOAT8E4M3FNUZ": ("float8_e4m3fnuz", 8),
    "FLOAT8E5M2": ("float8_e5m2", 8),
    "FLOAT8E5M2FNUZ": ("float8_e5m2fnuz", 8),
    "FLOAT8E8M0": ("float8_e8m0fnu", 8),
    "UINT4": ("uint4", 4),
    "INT4": ("int4", 4),
    "FLOAT4E2M1": ("float4_e2m1fn", 4),
    "UINT2": ("uint2", 2),
    "INT2": ("int2", 2),
    "FLOAT6E2M3": ("float6_e2m3fn", 6),
    "FLOAT6E3M2": ("float6_e3m2fn", 6),
}


def dtype_info(elem_type: int) -> tuple[str, int | None]:
    """An ONNX element type's numpy-style name and bits per element (None for strings and unknown types)."""
    import onnx

    try:
        onnx_name = onnx.TensorProto.DataType.Name(elem_type)
    except ValueError:
        return (f"unknown({elem_type})", None)
    return _DTYPES.get(onnx_name, (onnx_name.lower(), None))


def element_count(tensor: TensorProto) -> int:
    """How many elements a stored tensor holds, from its dims."""
    return math.prod(tensor.dims)


def tensor_bytes(tensor: TensorProto) -> int:
    """A stored tensor's size in bytes, from its dims (strings: their actual lengths)."""
    _, bits = dtype_info(tensor.data_type)
    if bits is None:
        return sum(len(value) for value in tensor.string_data)
    return math.ceil(element_count(tensor) * bits / 8)
