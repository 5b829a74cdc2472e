"""Inspect an ONNX model: what it takes and returns, what it is made of, and what it costs.

`inspect_model` checks the file with the ONNX checker, runs shape inference and reports
inputs, outputs, operators, parameters and an estimate of the FLOPs per inference. It
never loads external weight files into memory: their sizes come from tensor dims.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from workers.engine.errors import ModelError
from workers.engine.formats import scan_onnx_header

# The engine's one tensor spec lives with the one input generator; imported from here too.
from workers.engine.inputs import Dim, InputDeclarations, InputPlan, TensorSpec, plan_inputs
from workers.engine.outputs import OutputSemantics, check_declarations_fit, propose_output_semantics

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto

ProgressCallback = Callable[[float, str], None]

__all__ = ["Dim", "InspectionReport", "TensorSpec", "graph_input_specs", "inspect_model"]

DEFAULT_DOMAIN = "ai.onnx"

FLOP_ASSUMPTIONS = (
    "Symbolic and unknown input dimensions (such as the batch size) count as 1. "
    "A multiply-add counts as 2 FLOPs; elementwise ops count per output element; "
    "data-movement ops (Reshape, Transpose, Concat, ...) count 0; nodes inside "
    "If/Loop/Scan bodies and calls to local functions are not counted."
)

_LARGE_PAYLOAD_BYTES = 64 * 2**10
# Every TensorProto field that holds values, except string_data, which is counted.
_PAYLOAD_FIELDS = (
    "raw_data",
    "float_data",
    "int32_data",
    "int64_data",
    "double_data",
    "uint64_data",
)

# Model doc strings are stored with the model version; some exporters paste whole
# source files into them.
_MAX_DOC_STRING_CHARS = 4000

# Data propagation (shape inference that also computes small shape-like values, so that a
# Reshape to Concat(Shape(x)[0], -1) gets a known shape) keeps every propagated value as a
# protobuf dim. A 200-byte model whose ConstantOfShape, Range, Tile or Expand makes a
# 2^40-element constant (or whose declared input dims are that large) makes it allocate
# until the process runs out: about 250 MB and 1 s per 4 million values. Models that plainly
# ask for that (`_propagation_would_explode`) skip it; the others get this much address space
# beyond what the process maps already (plus room for copies of the model), and past that
# shapes are inferred without it. (Near that limit glibc may abort rather than fail an
# allocation; in the sandbox that still ends as a readable out_of_memory.)
_DATA_PROPAGATION_HEADROOM_BYTES = 512 * 2**20
_NO_PROPAGATION_NOTE = (
    "Shapes were inferred without propagating constant values: the model builds tensors too large "
    "to propagate (for example a ConstantOfShape, Range or Tile of billions of elements)."
)


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
class FlopEstimate:
    """Estimated floating-point operations for one inference, under `assumptions`.

    `uncounted_op_types` lists operators whose cost is not in `total`, because there is
    no formula for them or their shapes could not be inferred.
    """

    total: int
    by_op_type: dict[str, int]
    assumptions: str
    uncounted_op_types: tuple[str, ...]


@dataclass(frozen=True)
class ExternalDataFile:
    """A file next to the model that holds some of its weights."""

    location: str
    size_bytes: int


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
    those declarations, and for every other output what its graph suggests it is.
    """
    report_progress = progress or _ignore_progress

    # Cheap, and it names the problem precisely (truncated, empty, not ONNX at all)
    # where the protobuf parser only says it failed.
    scan_onnx_header(model_path)
    model = _load_without_external_data(model_path)
    report_progress(0.1, "model loaded")

    _check_nesting(model)
    external_data = _check_external_data(model, model_path.parent)
    _drop_large_payloads(model)
    _run_checker(model_path)
    report_progress(0.4, "ONNX checker passed")

    notes: list[str] = []
    inferred = _infer_shapes(model, notes)
    initializer_names = _initializer_names(model.graph)
    inputs = tuple(_tensor_spec(value) for value in inferred.graph.input if value.name not in initializer_names)
    outputs = tuple(_tensor_spec(value) for value in inferred.graph.output)
    check_declarations_fit(output_declarations or {}, [(spec.name, spec.shape) for spec in outputs])
    semantics = _output_semantics(inferred, output_declarations or {}, notes)
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
    flops = _estimate_flops(model, initializer_names, {**sizes, **(symbolic_dims or {})}, notes)

    report = InspectionReport(
        ir_version=model.ir_version,
        opset_imports={(_text(opset.domain) or DEFAULT_DOMAIN): opset.version for opset in model.opset_import},
        producer_name=_text(model.producer_name),
        producer_version=_text(model.producer_version),
        doc_string=_text(model.doc_string).strip()[:_MAX_DOC_STRING_CHARS],
        metadata={_text(prop.key): _text(prop.value) for prop in model.metadata_props},
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


def _ignore_progress(fraction: float, message: str) -> None:
    pass


def _text(value: object) -> str:
    """A protobuf string field as text. The protobuf runtime hands back bytes, not str, for a
    field that holds invalid UTF-8 (a corrupted file; found by fuzzing), which would otherwise
    reach the report, sorting and path handling as bytes."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _load_without_external_data(model_path: Path) -> ModelProto:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        # format="protobuf": onnx otherwise guesses the format from the file extension,
        # and an upload saved as ".json" or ".txt" would be read as text.
        return onnx.load(str(model_path), format="protobuf", load_external_data=False)
    except (DecodeError, ValueError, RuntimeError):
        raise ModelError(
            "invalid_model",
            "The file could not be parsed as ONNX: it may be corrupted or saved in another "
            "format. Export the model to ONNX again and upload the new file.",
        ) from None


def _run_checker(model_path: Path) -> None:
    import onnx

    try:
        # The path form lets the checker handle models over 2 GB and external data.
        onnx.checker.check_model(str(model_path), full_check=True)
    except (
        onnx.checker.ValidationError,
        onnx.shape_inference.InferenceError,
        onnx.defs.SchemaError,
    ) as exc:
        first_line = next((line for line in str(exc).splitlines() if line.strip()), "")
        first_line = first_line.strip().rstrip(".") or type(exc).__name__
        raise ModelError(
            "invalid_model",
            f"The ONNX checker rejected the model: {first_line}. Fix the model or export it "
            "again, then upload the new file.",
        ) from None
    except UnicodeDecodeError:
        # The checker failed and its message quotes a name from the model that is not UTF-8
        # text, so Python can't even read the message: found by bit-flipping models.
        raise ModelError(
            "invalid_model",
            "The ONNX checker rejected the model, and its reason quotes a name that is not valid "
            "UTF-8 text, so the file is most likely corrupted. Export the model again and upload the new file.",
        ) from None
    except ValueError as exc:
        # Some C++ failures reach Python as a plain ValueError ("Invalid tensor data type 58.",
        # found by fuzzing) rather than as a ValidationError.
        first_line = next((line for line in str(exc).splitlines() if line.strip()), "").strip().rstrip(".")
        raise ModelError(
            "invalid_model",
            f"The ONNX checker rejected the model: {first_line or 'ValueError'}. Fix the model or export it "
            "again, then upload the new file.",
        ) from None


def _infer_shapes(model: ModelProto, notes: list[str]) -> ModelProto:
    import onnx

    failures = (onnx.shape_inference.InferenceError, ValueError, RuntimeError)
    if _NO_PROPAGATION_NOTE not in notes and _propagation_would_explode(model):
        notes.append(_NO_PROPAGATION_NOTE)
    if _NO_PROPAGATION_NOTE not in notes:  # a second pass (the FLOP estimate) need not fail again
        try:
            with _address_space_headroom(_DATA_PROPAGATION_HEADROOM_BYTES + 4 * model.ByteSize()):
                return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except MemoryError:
            notes.append(_NO_PROPAGATION_NOTE)
        except failures as exc:
            notes.append(f"Shape inference failed, so shapes are as declared: {exc}")
            return model
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except failures as exc:
        notes.append(f"Shape inference failed, so shapes are as declared: {exc}")
        return model


# Ops whose output size comes from the values of an input: what makes data propagation explode.
_AMPLIFYING_OPS = frozenset(("ConstantOfShape", "Expand", "Tile", "Range"))
_MAX_PROPAGATED_VALUES = 2**20


def _propagation_would_explode(model: ModelProto) -> bool:
    """True when the main graph plainly asks data propagation for more than
    _MAX_PROPAGATED_VALUES values: an amplifying op whose size input is a constant that says
    so, or a graph input declared that large (Shape of it can feed one). The address-space
    guard catches what this misses."""
    graph = model.graph
    amplifiers = [
        node for node in graph.node if node.op_type in _AMPLIFYING_OPS and node.domain in ("", DEFAULT_DOMAIN)
    ]
    if not amplifiers:
        return False
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else []
        if math.prod(max(dim.dim_value, 1) for dim in dims) > _MAX_PROPAGATED_VALUES:
            return True
    constants: dict[str, TensorProto] = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.HasField("t"):
                    constants[node.output[0]] = attribute.t

    def values(node: NodeProto, index: int) -> list[float] | None:
        """The values of a small constant input, else None."""
        name = node.input[index] if index < len(node.input) else ""
        tensor = constants.get(name)
        if tensor is None or math.prod(tensor.dims) > 64:
            return None
        from onnx import numpy_helper

        try:
            return [float(v) for v in numpy_helper.to_array(tensor).reshape(-1)]
        except Exception:  # a constant numpy can't read (misfit data, an unknown type): the checker has its say
            return None

    for node in amplifiers:
        count = 0.0
        if node.op_type in ("ConstantOfShape", "Expand", "Tile"):
            sizes = values(node, 0 if node.op_type == "ConstantOfShape" else 1)
            count = math.prod(max(size, 1.0) for size in sizes) if sizes else 0.0
        else:  # Range: start, limit, delta
            bounds = [values(node, index) for index in range(3)]
            if all(bound is not None and len(bound) == 1 for bound in bounds):
                (start,), (limit,), (delta,) = bounds  # type: ignore[misc]
                count = abs((limit - start) / delta) if delta else 0.0
        if count > _MAX_PROPAGATED_VALUES:
            return True
    return False


@contextlib.contextmanager
def _address_space_headroom(extra_bytes: int) -> Iterator[None]:
    """Lower the soft RLIMIT_AS to the address space mapped now plus `extra_bytes` for the
    block, so that an allocation past it raises MemoryError instead of taking the whole
    sandbox limit (or the machine). Does nothing where the limit can't be read or set, or
    where the current limit is already lower."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        yield
        return
    wanted = mapped + extra_bytes
    unlimited = resource.RLIM_INFINITY
    if (soft != unlimited and soft <= wanted) or (hard != unlimited and hard < wanted):
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# --- walking the model -------------------------------------------------------------


def _subgraphs(node: NodeProto) -> Iterator[GraphProto]:
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield attribute.g
        yield from attribute.graphs


def _all_graphs(model: ModelProto) -> Iterator[GraphProto]:
    """The main graph, every If/Loop/Scan body, and graphs inside local functions."""
    pending = [model.graph]
    for function in model.functions:
        for node in function.node:
            pending.extend(_subgraphs(node))
    while pending:
        graph = pending.pop()
        yield graph
        for node in graph.node:
            pending.extend(_subgraphs(node))


# Legitimate models nest If/Loop/Scan bodies a few levels deep. OpenVINO's ONNX frontend takes
# time exponential in the depth (measured: 3 s at 16, 26 s at 20, over a minute at 22), so a
# 1 KB model nested 30 deep would hold a worker until the sandbox's timeout, once per backend.
MAX_SUBGRAPH_DEPTH = 16


def _check_nesting(model: ModelProto) -> None:
    """Raise ModelError("too_complex") when subgraphs nest deeper than MAX_SUBGRAPH_DEPTH."""
    pending = [(model.graph, 0)] + [
        (graph, 1) for function in model.functions for node in function.node for graph in _subgraphs(node)
    ]
    deepest = 0
    while pending:
        graph, depth = pending.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_SUBGRAPH_DEPTH:
            raise ModelError(
                "too_complex",
                f"The model nests If/Loop/Scan subgraphs more than {MAX_SUBGRAPH_DEPTH} levels deep, more than "
                "Slipway accepts: some runtimes take time exponential in the depth. Flatten the control flow "
                "(or unroll it) and export the model again.",
            )
        pending.extend((inner, depth + 1) for node in graph.node for inner in _subgraphs(node))


def _all_nodes(model: ModelProto) -> Iterator[NodeProto]:
    for graph in _all_graphs(model):
        yield from graph.node
    for function in model.functions:
        yield from function.node


def _all_tensors(model: ModelProto) -> Iterator[TensorProto]:
    """Every tensor stored in the model, wherever it is: these can all be external."""
    for graph in _all_graphs(model):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
    for node in _all_nodes(model):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values
                yield attribute.sparse_tensor.indices


def _parameter_tensors(model: ModelProto) -> Iterator[TensorProto]:
    """Initializers and Constant-node values: the tensors that make up the weights."""
    for graph in _all_graphs(model):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
    for node in _all_nodes(model):
        if node.op_type == "Constant" and node.domain in ("", DEFAULT_DOMAIN):
            for attribute in node.attribute:
                if attribute.name == "value":
                    yield attribute.t
                elif attribute.name == "sparse_value":
                    yield attribute.sparse_tensor.values


def _drop_large_payloads(model: ModelProto) -> None:
    """Free the bytes of large embedded tensors; only their dims are needed from here on.

    Shape inference copies the whole model several times, so a model with 1.5 GB of
    embedded weights would otherwise need several times that in memory. Tensors whose
    values shape inference reads (Reshape targets, Resize scales) are tiny and stay.
    """
    for tensor in _all_tensors(model):
        if tensor.ByteSize() > _LARGE_PAYLOAD_BYTES:
            for payload in _PAYLOAD_FIELDS:
                tensor.ClearField(payload)


def _initializer_names(graph: GraphProto) -> set[str]:
    names = {tensor.name for tensor in graph.initializer}
    names.update(sparse.values.name for sparse in graph.sparse_initializer)
    return names


# --- external data ------------------------------------------------------------------


def _check_external_data(model: ModelProto, model_dir: Path) -> tuple[ExternalDataFile, ...]:
    """Check every external tensor's file is inside `model_dir` and long enough."""
    import onnx

    root = model_dir.resolve()
    sizes: dict[str, int] = {}
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {_text(entry.key): _text(entry.value) for entry in tensor.external_data}
        location = entries.get("location", "")
        tensor_name = f"initializer '{tensor.name}'" if tensor.name else "a tensor"
        if not location:
            raise ModelError(
                "invalid_model",
                f"The model says {tensor_name} is stored in an external file but does not "
                "name the file. Export the model again and upload the new file.",
            )
        path = _external_data_path(root, location, tensor_name)
        if location not in sizes:
            if not path.is_file():
                raise ModelError(
                    "missing_external_data",
                    f"The model keeps weights for {tensor_name} in external file "
                    f"'{location}', which is not in the upload. Upload a .zip holding "
                    "model.onnx and its external data files.",
                )
            sizes[location] = path.stat().st_size
        try:
            offset = int(entries.get("offset", "0"))
            length = int(entries["length"]) if "length" in entries else _tensor_bytes(tensor)
        except ValueError:
            raise ModelError(
                "invalid_model",
                f"The model's external data entry for {tensor_name} has an offset or length "
                "that is not a number. Export the model again and upload the new file.",
            ) from None
        if offset < 0 or length < 0:
            # onnx and the runtimes would seek or read backwards from the file's start.
            raise ModelError(
                "invalid_model",
                f"The model's external data entry for {tensor_name} has a negative offset or length "
                f"({offset}, {length}). Export the model again and upload the new file.",
            )
        needed = offset + length
        if sizes[location] < needed:
            raise ModelError(
                "missing_external_data",
                f"The external data file '{location}' is too short for {tensor_name}: it "
                f"needs {needed:,} bytes but has {sizes[location]:,}. Upload a .zip holding "
                "model.onnx and its complete external data files.",
            )
    return tuple(ExternalDataFile(location, size) for location, size in sorted(sizes.items()))


def _external_data_path(root: Path, location: str, tensor_name: str) -> Path:
    if "\0" in location:
        raise ModelError(
            "invalid_model",
            f"The model says the weights for {tensor_name} are in a file whose name holds a null byte, which "
            "no file can have. Export the model again, with its external data files saved next to it.",
        )
    unsafe = (
        PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or bool(PureWindowsPath(location).drive)
        or ".." in location.replace("\\", "/").split("/")
    )
    path = (root / location).resolve()
    if unsafe or not path.is_relative_to(root) or path == root:
        raise ModelError(
            "unsafe_archive",
            f"The model says the weights for {tensor_name} are in '{location}', which is "
            "outside the model's folder. Export the model with its external data files "
            "saved next to it, and upload them together in a .zip.",
        )
    return path


# --- dtypes and parameters ----------------------------------------------------------

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


def _dtype_info(elem_type: int) -> tuple[str, int | None]:
    import onnx

    try:
        onnx_name = onnx.TensorProto.DataType.Name(elem_type)
    except ValueError:
        return (f"unknown({elem_type})", None)
    return _DTYPES.get(onnx_name, (onnx_name.lower(), None))


def _element_count(tensor: TensorProto) -> int:
    return math.prod(tensor.dims)


def _tensor_bytes(tensor: TensorProto) -> int:
    _, bits = _dtype_info(tensor.data_type)
    if bits is None:
        return sum(len(value) for value in tensor.string_data)
    return math.ceil(_element_count(tensor) * bits / 8)


def _count_parameters(model: ModelProto) -> ParameterSummary:
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for tensor in _parameter_tensors(model):
        dtype, _ = _dtype_info(tensor.data_type)
        counts[dtype] += _element_count(tensor)
        sizes[dtype] += _tensor_bytes(tensor)
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
        dtype = _dtype_info(tensor_type.elem_type)[0] if tensor_type.elem_type else None
        shape = None
        if tensor_type.HasField("shape"):
            shape = tuple(_dim(dim) for dim in tensor_type.shape.dim)
        return TensorSpec(_text(value.name), dtype, shape)
    # Sequences, maps and optionals have no single dtype or shape.
    return TensorSpec(_text(value.name), kind.removesuffix("_type") if kind else None, None)


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
            shape = tuple(_dim(dim) for dim in tensor_type.shape.dim)
        specs.append(TensorSpec(_text(value.name), dtype, shape))
    return tuple(specs)


def _dim(dim: Any) -> Dim:
    which = dim.WhichOneof("value")
    if which == "dim_value":
        # Some exporters write -1 for "any size"; it is not a size.
        return int(dim.dim_value) if dim.dim_value >= 0 else None
    if which == "dim_param":
        return _text(dim.dim_param)
    return None


def _count_ops(model: ModelProto) -> tuple[tuple[OpCount, ...], int]:
    counts: Counter[tuple[str, str]] = Counter(
        (_text(node.domain) or DEFAULT_DOMAIN, _text(node.op_type)) for node in _all_nodes(model)
    )
    op_counts = tuple(
        OpCount(domain, op_type, count)
        for (domain, op_type), count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    )
    return op_counts, sum(counts.values())


# --- FLOPs --------------------------------------------------------------------------

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


def _estimate_flops(
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
                if not isinstance(_dim(dim), int):
                    dim.Clear()
    fixed = _infer_shapes(model, notes)
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
        dims = [_dim(dim) for dim in tensor_type.shape.dim]
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
