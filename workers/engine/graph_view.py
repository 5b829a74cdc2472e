"""A compact description of an ONNX graph for the browser to draw: nodes, the values between them, shapes.

`describe_graph` runs inside inspection (in the sandbox, on the model inspection already
loaded and shape-inferred): the web process never opens an uploaded model to draw it. Each
top-level node carries the label the support reports use for it (`label_nodes`: what
onnxruntime, OpenVINO and the reference backend call it) and, where it differs, the label
the other backends use (`node_labels`), so a backend's per-node verdict finds its node.
Attributes are summarised as short text; a tensor attribute is its dtype and shape, never its
data, and initializers are values flagged as weights with their shape only. If/Loop/Scan
bodies are not drawn: their node says so. A graph above `MAX_DRAWN_NODES` nodes is not
described at all, only counted, because no browser draws it usefully.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workers.engine.backends._onnx_graph import label_nodes, node_labels, topological_order
from workers.engine.onnx_walk import DEFAULT_DOMAIN, dtype_info, proto_dim, proto_text

if TYPE_CHECKING:
    from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TypeProto

# Beyond this a layered drawing is a grey wall; the op table serves such models better.
MAX_DRAWN_NODES = 3000
# Attribute summaries stay short: a long list shows its first items and its length.
_MAX_LIST_ITEMS = 8
_MAX_TEXT_CHARS = 80

Shape = tuple[int | str | None, ...]


@dataclass(frozen=True)
class GraphNode:
    """One top-level node: its report label (`id`), its own name, operator, values and attributes.

    `alt_id` is the label backends that number nodes in file order use (`node_labels`), when
    it differs from `id`; `inner_nodes` counts the nodes of its If/Loop/Scan bodies."""

    id: str
    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, str] = field(default_factory=dict)
    alt_id: str | None = None
    note: str = ""
    inner_nodes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Short keys, and only what the node has: the browser loads thousands of these."""
        data: dict[str, Any] = {"id": self.id, "op": self.op_type, "in": list(self.inputs), "out": list(self.outputs)}
        if self.name != self.id:
            data["name"] = self.name
        if self.domain != DEFAULT_DOMAIN:
            data["dom"] = self.domain
        if self.attributes:
            data["attrs"] = self.attributes
        if self.alt_id is not None:
            data["alt"] = self.alt_id
        if self.note:
            data["note"] = self.note
            data["inner"] = self.inner_nodes
        return data


@dataclass(frozen=True)
class GraphValue:
    """A tensor between nodes: its dtype and shape where known; `weight` for an initializer."""

    dtype: str | None = None
    shape: Shape | None = None
    weight: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.dtype is not None:
            data["t"] = self.dtype
        if self.shape is not None:
            data["s"] = list(self.shape)
        if self.weight:
            data["w"] = 1
        return data


@dataclass(frozen=True)
class GraphView:
    """The graph as the browser draws it, or only its size with `omitted` saying why it is not drawn."""

    node_count: int
    nodes: tuple[GraphNode, ...] = ()
    values: dict[str, GraphValue] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    omitted: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON: {"node_count", "omitted", "nodes": [...], "values": {name: {t, s, w}}, "inputs", "outputs"}."""
        return {
            "node_count": self.node_count,
            "omitted": self.omitted,
            "nodes": [node.to_dict() for node in self.nodes],
            "values": {name: value.to_dict() for name, value in self.values.items()},
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
        }


def describe_graph(model: ModelProto, *, max_nodes: int = MAX_DRAWN_NODES) -> GraphView:
    """The drawable description of `model`'s main graph (pass the shape-inferred model for shapes).

    Nodes come in topological order with the labels support reports use. Graph inputs that
    are initializers are weights, not inputs. Above `max_nodes` top-level nodes only the
    count is kept, and `omitted` says so in a sentence.
    """
    graph = model.graph
    count = len(graph.node)
    if count > max_nodes:
        return GraphView(
            node_count=count,
            omitted=(
                f"The model has {count:,} nodes, too many to draw here (the limit is {max_nodes:,}); "
                "the operator table lists what each backend supports."
            ),
        )
    weights = {tensor.name for tensor in graph.initializer}
    weights.update(sparse.values.name for sparse in graph.sparse_initializer)
    # `label_nodes` yields the main graph's nodes in this order; file positions give the other labels.
    order = topological_order([_reads(node) for node in graph.node], [node.output for node in graph.node])
    in_file_order = node_labels(graph)
    top_level = [item for item in label_nodes(model, _reads) if item.top_level]
    nodes = tuple(
        _graph_node(item.label, item.node, in_file_order[index]) for item, index in zip(top_level, order, strict=True)
    )
    return GraphView(
        node_count=count,
        nodes=nodes,
        values=_values(graph, nodes),
        inputs=tuple(proto_text(value.name) for value in graph.input if value.name not in weights),
        outputs=tuple(proto_text(value.name) for value in graph.output),
    )


def _reads(node: NodeProto) -> list[str]:
    """What a node reads, its subgraphs' reads included, for the order (as OpenVINO's labels count it)."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
            for inner in subgraph.node:
                names.extend(_reads(inner))
    return names


def _graph_node(label: str, node: NodeProto, alternative: str) -> GraphNode:
    bodies = [
        (proto_text(attribute.name), graph)
        for attribute in node.attribute
        for graph in ([attribute.g] if attribute.HasField("g") else list(attribute.graphs))
    ]
    inner = sum(_node_count(graph) for _, graph in bodies)
    note = ""
    if bodies:
        names = ", ".join(dict.fromkeys(name for name, _ in bodies))
        note = (
            f"Holds {len(bodies)} subgraph{'s' if len(bodies) != 1 else ''} ({names}) of {inner} "
            f"node{'s' if inner != 1 else ''} in all, not drawn here; its colour includes theirs."
        )
    return GraphNode(
        id=label,
        name=proto_text(node.name),
        op_type=proto_text(node.op_type),
        domain=proto_text(node.domain) or DEFAULT_DOMAIN,
        inputs=tuple(proto_text(name) for name in node.input),
        outputs=tuple(proto_text(name) for name in node.output),
        attributes={
            proto_text(attribute.name): summarize_attribute(attribute)
            for attribute in node.attribute
            if not _is_graph(attribute)
        },
        alt_id=alternative if alternative != label else None,
        note=note,
        inner_nodes=inner,
    )


def _node_count(graph: GraphProto) -> int:
    total = len(graph.node)
    for node in graph.node:
        for attribute in node.attribute:
            for body in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                total += _node_count(body)
    return total


def _is_graph(attribute: AttributeProto) -> bool:
    return attribute.HasField("g") or len(attribute.graphs) > 0


def summarize_attribute(attribute: AttributeProto) -> str:
    """An attribute as short text: "3", "[1, 1]", "'NOTSET'", "tensor float32[64,3,7,7]". Never a tensor's data."""
    from onnx import AttributeProto

    kind = attribute.type
    if kind == AttributeProto.INT:
        return str(attribute.i)
    if kind == AttributeProto.FLOAT:
        return f"{attribute.f:g}"
    if kind == AttributeProto.STRING:
        return repr(_clip(proto_text(attribute.s)))
    if kind == AttributeProto.INTS:
        return _list_text([str(value) for value in attribute.ints])
    if kind == AttributeProto.FLOATS:
        return _list_text([f"{value:g}" for value in attribute.floats])
    if kind == AttributeProto.STRINGS:
        return _list_text([repr(_clip(proto_text(value), 20)) for value in attribute.strings])
    if kind == AttributeProto.TENSOR:
        return _tensor_text(attribute.t.data_type, attribute.t.dims)
    if kind == AttributeProto.TENSORS:
        return _list_text([_tensor_text(tensor.data_type, tensor.dims) for tensor in attribute.tensors])
    if kind == AttributeProto.SPARSE_TENSOR:
        return "sparse " + _tensor_text(attribute.sparse_tensor.values.data_type, attribute.sparse_tensor.dims)
    if kind in (AttributeProto.TYPE_PROTO, AttributeProto.TYPE_PROTOS):
        return "type"
    return AttributeProto.AttributeType.Name(kind).lower() if kind else "unset"


def _tensor_text(data_type: int, dims: Any) -> str:
    return f"tensor {dtype_info(data_type)[0]}[{','.join(str(dim) for dim in dims)}]"


def _list_text(items: list[str]) -> str:
    if len(items) <= _MAX_LIST_ITEMS:
        return "[" + ", ".join(items) + "]"
    return "[" + ", ".join(items[:_MAX_LIST_ITEMS]) + f", … {len(items)} values]"


def _clip(text: str, limit: int = _MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _values(graph: GraphProto, nodes: tuple[GraphNode, ...]) -> dict[str, GraphValue]:
    """Dtype and shape of every value the drawn nodes or the graph's ends name, where known."""
    known: dict[str, GraphValue] = {}
    for value in [*graph.value_info, *graph.input, *graph.output]:
        dtype, shape = _type_text(value.type)
        known[proto_text(value.name)] = GraphValue(dtype, shape)
    for tensor in graph.initializer:
        known[proto_text(tensor.name)] = GraphValue(
            dtype_info(tensor.data_type)[0], tuple(int(dim) for dim in tensor.dims), weight=True
        )
    for sparse in graph.sparse_initializer:
        known[proto_text(sparse.values.name)] = GraphValue(
            dtype_info(sparse.values.data_type)[0], tuple(int(dim) for dim in sparse.dims), weight=True
        )
    named = [name for node in nodes for name in (*node.inputs, *node.outputs) if name]
    named += [proto_text(value.name) for value in (*graph.input, *graph.output)]
    return {name: known[name] for name in dict.fromkeys(named) if name in known}


def _type_text(value_type: TypeProto) -> tuple[str | None, Shape | None]:
    kind = value_type.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        tensor_type = getattr(value_type, kind)
        dtype = dtype_info(tensor_type.elem_type)[0] if tensor_type.elem_type else None
        shape = tuple(proto_dim(dim) for dim in tensor_type.shape.dim) if tensor_type.HasField("shape") else None
        return dtype, shape
    return (kind.removesuffix("_type") if kind else None), None
