"""Reading an uploaded ONNX model the way every backend does: without its weights, subgraphs included.

Backends judge operator support node by node, so they share how a model is loaded (the
graph only; external weights stay on disk), how If/Loop/Scan bodies are walked, how nodes
are labelled in reports, a stable topological order, and how one node becomes a model of
its own to probe. onnx is imported inside the functions that need it, so importing this
module stays cheap.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workers.engine.errors import ModelError
from workers.engine.onnx_walk import DEFAULT_DOMAIN

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto, TensorProto, TypeProto, ValueInfoProto


def load_graph(model_path: Path, *, file_format: str | None = "protobuf") -> ModelProto:
    """The model without its external weights; ModelError "invalid_model" when it is not ONNX.

    `file_format` goes to `onnx.load`: "protobuf" reads the file as binary ONNX whatever
    its name, None lets onnx pick the format from the file's extension.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(model_path), format=file_format, load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError):
        raise ModelError(
            "invalid_model",
            "The file could not be parsed as ONNX: it may be corrupted or saved in another "
            "format. Export the model to ONNX again and upload the new file.",
        ) from None


def concrete_inputs(
    model: ModelProto, overrides: Mapping[str, object], converter: str
) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, dims, ONNX element type) of each graph input a converter that needs fixed shapes
    (pnnx, onnx2tf) is given: `overrides` (input name -> list of ints; a profile's
    `options["input_shapes"]`) first, else the declared dims with symbolic ones set to 1.
    ModelError "invalid_input_shapes" for an override that is not a list of positive ints,
    "input_shape_unknown" for an input that declares no shape."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    shapes = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        if value.name in overrides:
            shape = overrides[value.name]
            if not isinstance(shape, list | tuple) or not all(isinstance(dim, int) and dim > 0 for dim in shape):
                raise ModelError(
                    "invalid_input_shapes",
                    f"The input shape given for '{value.name}' is {shape!r}; give a list of positive integers, "
                    "such as [1, 3, 224, 224].",
                )
            dims = tuple(int(dim) for dim in shape)
        elif value.type.HasField("tensor_type") and tensor_type.HasField("shape"):
            dims = tuple(dim.dim_value if dim.dim_value > 0 else 1 for dim in tensor_type.shape.dim)
        else:
            raise ModelError(
                "input_shape_unknown",
                f"The model's input '{value.name}' has no declared shape, and converting for {converter} needs one. "
                f"Give it in the profile's options, e.g. input_shapes = {{'{value.name}': [1, 3, 224, 224]}}.",
            )
        shapes.append((value.name, dims, tensor_type.elem_type))
    return shapes


def default_opset(model: ModelProto) -> int:
    """The model's default-domain ("" or "ai.onnx") opset version; 0 when it names none."""
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)


def walk_graphs(graph: GraphProto) -> Iterator[GraphProto]:
    """The graph, then every subgraph (If/Loop/Scan bodies) inside it, depth first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from walk_graphs(attribute.g)
            for subgraph in attribute.graphs:
                yield from walk_graphs(subgraph)


def walk_nodes(graph: GraphProto) -> Iterator[NodeProto]:
    """Every node of the graph and of its subgraphs."""
    for each in walk_graphs(graph):
        yield from each.node


def node_labels(graph: GraphProto) -> list[str]:
    """The label of each node of the graph (not its subgraphs): its name, else "<op_type>_<index>"."""
    return [node.name or f"{node.op_type}_{index}" for index, node in enumerate(graph.node)]


def nodes_by_op(model: ModelProto) -> dict[tuple[str, str], list[str]]:
    """(domain, op_type) -> node labels, over the main graph and every subgraph."""
    nodes: dict[tuple[str, str], list[str]] = {}
    for graph in walk_graphs(model.graph):
        for node, label in zip(graph.node, node_labels(graph), strict=True):
            nodes.setdefault((node.domain or DEFAULT_DOMAIN, node.op_type), []).append(label)
    return nodes


def topological_order(reads: Sequence[Sequence[str]], writes: Sequence[Sequence[str]]) -> list[int]:
    """Node indices in a topological order, stable where the nodes' own order allows.

    Node i reads the values named in `reads[i]` and writes those in `writes[i]`. A cycle is
    invalid ONNX; its nodes keep their own order after the others rather than get lost.
    """
    producers: dict[str, int] = {}
    for index, names in enumerate(writes):
        for name in names:
            if name:
                producers[name] = index
    waiting = [0] * len(writes)
    consumers: dict[int, list[int]] = {}
    for index, names in enumerate(reads):
        sources = {producers[name] for name in names if producers.get(name, index) != index}
        waiting[index] = len(sources)
        for source in sources:
            consumers.setdefault(source, []).append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for consumer in consumers.get(index, ()):
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                heapq.heappush(ready, consumer)
    placed = set(order)
    order.extend(index for index in range(len(writes)) if index not in placed)
    return order


@dataclass(frozen=True)
class LabelledNode:
    """A node of the model with the unique label reports use for it."""

    label: str
    node: NodeProto
    top_level: bool  # in the main graph, not inside a subgraph
    unique_name: bool  # the node's own name is unique in the model (and so is its label)


def label_nodes(model: ModelProto, node_inputs: Callable[[NodeProto], Sequence[str]]) -> Iterator[LabelledNode]:
    """Every node, each followed by its subgraphs' nodes; the main graph's in topological order.

    `node_inputs` names the values a node reads, for the order: a backend decides whether
    that includes what its subgraphs read.

    A node keeps its own name when that is unique in the model; others get "<name or
    op_type>_<index>" (its position in that order, or in its subgraph), made unique with
    "#2", "#3", ... where needed,
    and nodes in subgraphs are prefixed with their parent's label and the attribute, e.g.
    "If_0/then_branch/Add_0". Names are counted before the first node is yielded, so a
    caller may rename each node to its label as it comes.
    """
    counts: dict[str, int] = {}
    for node in walk_nodes(model.graph):
        if node.name:
            counts[node.name] = counts.get(node.name, 0) + 1
    used: set[str] = set()

    def visit(graph_nodes: Sequence[NodeProto], prefix: str, top_level: bool) -> Iterator[LabelledNode]:
        for index, node in enumerate(graph_nodes):
            unique = bool(node.name) and counts[node.name] == 1
            base = node.name if unique else f"{node.name or node.op_type}_{index}"
            label = prefix + base
            suffix = 1
            while label in used:
                suffix += 1
                label = f"{prefix}{base}#{suffix}"
            used.add(label)
            yield LabelledNode(label, node, top_level, unique)
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    yield from visit(list(attribute.g.node), f"{label}/{attribute.name}/", False)
                for position, subgraph in enumerate(attribute.graphs):
                    yield from visit(list(subgraph.node), f"{label}/{attribute.name}[{position}]/", False)

    graph = model.graph
    order = topological_order([node_inputs(node) for node in graph.node], [node.output for node in graph.node])
    yield from visit([graph.node[index] for index in order], "", True)


def probe_model(
    model: ModelProto,
    node: NodeProto,
    inputs: Sequence[ValueInfoProto],
    initializers: Sequence[TensorProto],
    types: Mapping[str, TypeProto],
) -> ModelProto:
    """`node` alone in a model, to probe whether a runtime or converter takes it.

    `inputs` (graph inputs) and `initializers` feed the node; its outputs are typed from
    `types` where known. The probe keeps `model`'s opsets, local functions and IR version.
    """
    from onnx import helper

    outputs = [
        helper.make_value_info(name, types[name]) if name in types else helper.make_empty_tensor_value_info(name)
        for name in node.output
        if name
    ]
    graph = helper.make_graph([node], f"probe_{node.op_type}", inputs, outputs, initializer=initializers)
    probe = helper.make_model(graph, opset_imports=list(model.opset_import), functions=list(model.functions))
    probe.ir_version = model.ir_version
    return probe
