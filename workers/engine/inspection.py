"""Inspect an ONNX model: what it takes and returns, what it is made of, and what it costs.

`inspect_model` checks the file with the ONNX checker, runs shape inference and reports
inputs, outputs, operators, parameters and an estimate of the FLOPs per inference. It
never loads external weight files into memory: their sizes come from tensor dims. The
checks that refuse a file are in `onnx_checks`, guarded shape inference in
`shape_inference`, the FLOP estimate in `flops`, and walking the protobuf in `onnx_walk`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.errors import ModelError
from workers.engine.flops import FlopEstimate, estimate_flops
from workers.engine.formats import scan_onnx_header
from workers.engine.graph_view import GraphView, describe_graph
from workers.engine.input_planning import plan_inputs

# The engine's one tensor spec lives with the input plan's contracts; imported from here too.
from workers.engine.inputs import Dim, InputDeclarations, InputPlan, TensorSpec
from workers.engine.onnx_checks import (
    ExternalDataFile,
    check_external_data,
    check_nesting,
    load_without_external_data,
    run_checker,
)
from workers.engine.onnx_walk import (
    DEFAULT_DOMAIN,
    all_nodes,
    dtype_info,
    element_count,
    graph_initializer_names,
    parameter_tensors,
    proto_dim,
    proto_text,
    tensor_bytes,
)
from workers.engine.outputs import OutputSemantics, check_declarations_fit, propose_output_semantics
from workers.engine.shape_inference import drop_large_payloads, infer_shapes

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, ValueInfoProto

ProgressCallback = Callable[[float, str], None]

__all__ = [
    "Dim",
    "InspectionReport",
    "TensorSpec",
    "graph_input_specs",
    "inspect_model",
]


# Model doc strings are stored with the model version; some exporters paste whole
# source files into them.
_MAX_DOC_STRING_CHARS = 4000


@dataclass(frozen=True)
class OpCount:
    """How many nodes of one operator the model holds, subgraphs and functions included."""

    domain: str
    op_type: str
    count: int


@dataclass(frozen=True)
class DtypeParameters:
    """Parameters of one dtype."""

    dtype: str
    count: int
    bytes: int


@dataclass(frozen=True)
class ParameterSummary:
    """Stored weights: initializers (embedded or external) and Constant-node tensors."""

    count: int
    bytes: int
    by_dtype: tuple[DtypeParameters, ...]


@dataclass(frozen=True)
class InspectionReport:
    """What `inspect_model` found out about a model."""

    ir_version: int
    opset_imports: dict[str, int]
    producer_name: str
    producer_version: str
    doc_string: str
    metadata: dict[str, str]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    op_counts: tuple[OpCount, ...]
    node_count: int
    parameters: ParameterSummary
    flops: FlopEstimate
    external_data: tuple[ExternalDataFile, ...]
    notes: tuple[str, ...] = ()
    # How inputs are generated for this model when the user gives none (`InputPlan.to_dict`):
    # what each input holds, the size of each symbolic dim, and what was assumed.
    input_plan: dict[str, Any] | None = None
    # What each output is (`outputs.OutputSemantics.to_dict` by output name): declared at upload,
    # or proposed from the graph with the reason. Parity judges each output by its kind.
    output_semantics: dict[str, dict[str, Any]] | None = None
    # The graph for the browser to draw (`graph_view.GraphView.to_dict`). The inspect step stores
    # it apart from the report, so the version page's reports never carry it.
    graph: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as plain dicts, lists, strings and numbers, ready for JSON."""
        result: dict[str, Any] = _jsonable(asdict(self))
        return result


def inspect_model(
    model_path: Path,
    progress: ProgressCallback | None = None,
    *,
    symbolic_dims: Mapping[str, int] | None = None,
    declarations: InputDeclarations | None = None,
    output_declarations: Mapping[str, OutputSemantics] | None = None,
) -> InspectionReport:
    """Check an ONNX model and describe it.

    External data files must sit in the model's folder (as `extract_archive` leaves
    them). `progress`, if given, is called with (fraction, message) at a few milestones.
    The report's `input_plan` says how inputs are generated for the model (`plan_inputs`,
    with the user's `declarations`), and the FLOP estimate is at that plan's sizes with a
    batch of 1; `symbolic_dims` gives other sizes for named symbolic input dims (say
    {"height": 640}); any dim left unknown counts as 1.

    Raises ModelError: the codes of `formats.scan_onnx_header` for a file that is not a
    complete ONNX file; "too_complex" when If/Loop/Scan bodies nest deeper than
    MAX_SUBGRAPH_DEPTH; "unsafe_archive" when an external data location points outside
    the model's folder; "missing_external_data" when an external file is absent or too
    short; "invalid_model" when the file cannot be parsed or the ONNX checker rejects it;
    "invalid_declarations" when `declarations` name an input the model does not take;
    "output_declaration_mismatch" when `output_declarations` name an output the model lacks
    or a layout that doesn't fit the output's shape. The report's `output_semantics` holds
    those declarations, and for every other output what its graph suggests it is; its `graph`
    is the description the browser draws (`graph_view.describe_graph`).
    """
    report_progress = progress or _ignore_progress

    # Cheap, and it names the problem precisely (truncated, empty, not ONNX at all)
    # where the protobuf parser only says it failed.
    scan_onnx_header(model_path)
    model = load_without_external_data(model_path)
    report_progress(0.1, "model loaded")

    check_nesting(model)
    external_data = check_external_data(model, model_path.parent)
    drop_large_payloads(model)
    run_checker(model_path)
    report_progress(0.4, "ONNX checker passed")

    notes: list[str] = []
    inferred = infer_shapes(model, notes)
    initializer_names = graph_initializer_names(model.graph)
    inputs = tuple(_tensor_spec(value) for value in inferred.graph.input if value.name not in initializer_names)
    outputs = tuple(_tensor_spec(value) for value in inferred.graph.output)
    check_declarations_fit(output_declarations or {}, [(spec.name, spec.shape) for spec in outputs])
    semantics = _output_semantics(inferred, output_declarations or {}, notes)
    graph = _graph_view(inferred, notes)
    del inferred
    report_progress(0.7, "shapes inferred")

    op_counts, node_count = _count_ops(model)
    parameters = _count_parameters(model)
    plan: InputPlan | None = None
    try:
        plan = plan_inputs(model, graph_input_specs(model.graph, numpy_dtypes_only=True), declarations)
    except ModelError as exc:
        if exc.code == "invalid_declarations":
            raise
        notes.append(f"No inputs can be generated for this model: {exc.message}")
    # FLOPs at the sizes the benchmark runs at (batch 1), not with every symbolic dim at 1: a
    # detector at 1x1 pixels costs a thousandth of what it costs at 640x640.
    sizes = {**dict(plan.dims), **dict.fromkeys(plan.batch_symbols, 1)} if plan else {}
    flops = estimate_flops(model, initializer_names, {**sizes, **(symbolic_dims or {})}, notes)

    report = InspectionReport(
        ir_version=model.ir_version,
        opset_imports={(proto_text(opset.domain) or DEFAULT_DOMAIN): opset.version for opset in model.opset_import},
        producer_name=proto_text(model.producer_name),
        producer_version=proto_text(model.producer_version),
        doc_string=proto_text(model.doc_string).strip()[:_MAX_DOC_STRING_CHARS],
        metadata={proto_text(prop.key): proto_text(prop.value) for prop in model.metadata_props},
        inputs=inputs,
        outputs=outputs,
        op_counts=op_counts,
        node_count=node_count,
        parameters=parameters,
        flops=flops,
        external_data=external_data,
        notes=tuple(notes),
        input_plan=plan.to_dict() if plan else None,
        output_semantics={name: each.to_dict() for name, each in semantics.items()},
        graph=graph,
    )
    report_progress(1.0, "inspection done")
    return report


def _output_semantics(
    inferred: ModelProto, declared: Mapping[str, OutputSemantics], notes: list[str]
) -> dict[str, OutputSemantics]:
    """Declarations, and proposals from the graph for the outputs nobody declared. A proposal
    is a reading of the graph that may fail on a graph nobody here has seen; the report then
    says so and parity compares those outputs as raw tensors."""
    try:
        proposed = propose_output_semantics(inferred)
    except Exception as exc:  # a heuristic over arbitrary graphs: never fail inspection over it
        notes.append(
            f"What the outputs are could not be read from the graph ({type(exc).__name__}); parity compares "
            "undeclared outputs as raw tensors. Declare them at upload (output_declarations) to judge them by kind."
        )
        proposed = {}
    return {**proposed, **declared}


def _graph_view(inferred: ModelProto, notes: list[str]) -> dict[str, Any]:
    """The drawing's description; a graph it cannot describe is not drawn, and inspection goes on."""
    try:
        return describe_graph(inferred).to_dict()
    except Exception as exc:  # a drawing aid over arbitrary graphs: never fail inspection over it
        notes.append(
            f"The graph could not be described for drawing ({type(exc).__name__}); the operator table still lists it."
        )
        return GraphView(
            node_count=len(inferred.graph.node), omitted="The graph could not be described for drawing."
        ).to_dict()


def _ignore_progress(fraction: float, message: str) -> None:
    pass


# --- parameters ---------------------------------------------------------------------


def _count_parameters(model: ModelProto) -> ParameterSummary:
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for tensor in parameter_tensors(model):
        dtype, _ = dtype_info(tensor.data_type)
        counts[dtype] += element_count(tensor)
        sizes[dtype] += tensor_bytes(tensor)
    by_dtype = tuple(
        DtypeParameters(dtype, counts[dtype], sizes[dtype])
        for dtype in sorted(counts, key=lambda name: (-counts[name], name))
    )
    return ParameterSummary(count=sum(counts.values()), bytes=sum(sizes.values()), by_dtype=by_dtype)


# --- inputs, outputs and operators --------------------------------------------------


def _tensor_spec(value: ValueInfoProto) -> TensorSpec:
    kind = value.type.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        tensor_type = getattr(value.type, kind)
        dtype = dtype_info(tensor_type.elem_type)[0] if tensor_type.elem_type else None
        shape = None
        if tensor_type.HasField("shape"):
            shape = tuple(proto_dim(dim) for dim in tensor_type.shape.dim)
        return TensorSpec(proto_text(value.name), dtype, shape)
    # Sequences, maps and optionals have no single dtype or shape.
    return TensorSpec(proto_text(value.name), kind.removesuffix("_type") if kind else None, None)


def graph_input_specs(graph: GraphProto, *, numpy_dtypes_only: bool = False) -> tuple[TensorSpec, ...]:
    """The inputs a caller feeds to `graph` (initializers excluded), for the backends.

    Unlike `InspectionReport.inputs`, each dtype is numpy's name for the element type (a
    string input is "object"), because callers make or check numpy arrays with it. An
    element type numpy has no dtype for keeps the ONNX type's name in lower case, or is
    None with `numpy_dtypes_only`. Inputs that are not tensors have dtype None.
    """
    import onnx

    constants = {tensor.name for tensor in graph.initializer}
    specs = []
    for value in graph.input:
        if value.name in constants:
            continue
        tensor_type = value.type.tensor_type
        dtype: str | None = None
        if value.type.HasField("tensor_type") and tensor_type.elem_type:
            try:
                dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
            except (KeyError, ValueError, TypeError):
                if not numpy_dtypes_only:
                    dtype = onnx.TensorProto.DataType.Name(tensor_type.elem_type).lower()
        shape: tuple[Dim, ...] | None = None
        if tensor_type.HasField("shape"):
            shape = tuple(proto_dim(dim) for dim in tensor_type.shape.dim)
        specs.append(TensorSpec(proto_text(value.name), dtype, shape))
    return tuple(specs)


def _count_ops(model: ModelProto) -> tuple[tuple[OpCount, ...], int]:
    counts: Counter[tuple[str, str]] = Counter(
        (proto_text(node.domain) or DEFAULT_DOMAIN, proto_text(node.op_type)) for node in all_nodes(model)
    )
    op_counts = tuple(
        OpCount(domain, op_type, count)
        for (domain, op_type), count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    )
    return op_counts, sum(counts.values())


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
