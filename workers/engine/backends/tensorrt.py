"""TensorRT on an NVIDIA GPU: operator support, serialized engines, and sessions that run them.
It is over 600 lines because a runtime backend is one module by the plug-in contract
(docs/adr/0012: adding a runtime is one file plus its test; the registry discovers the modules
in the package), and this one holds all of TensorRT's: op support from its ONNX parser, engine
builds (optimization profiles, precisions, INT8 calibration and its cache) and the stamps that
tie a serialized engine to the TensorRT version and GPU that built it.

`check_support` asks TensorRT's own ONNX parser (`OnnxParser.supports_model_v2`, or the older
`supports_model`) which nodes it can turn into a TensorRT network, and maps the parser's
subgraphs (lists of node indices) and errors back to the uploaded model's nodes. Where
TensorRT is not installed, the answer comes from onnx-tensorrt's published operator list.

`build_variants` builds one engine per precision of the profile (`trt-fp32`, `trt-fp16`,
`trt-int8`) with an optimization profile for dynamic input shapes, a timing cache that later
builds in the same folder reuse, and, for INT8, an entropy calibrator over the calibration
data with a calibration cache keyed to the model. Each engine is written as a `.plan` with a
JSON stamp beside it saying which TensorRT and which GPU built it, because a serialized
engine runs only on the TensorRT version and GPU architecture that built it; `load` checks
that stamp before it deserializes anything.

What this module decides for itself (profile shapes, precisions, the calibration cache key,
the stamp, the support report) lives in pure functions that run and are tested anywhere.
TensorRT and PyTorch (whose CUDA tensors are the engine's input and output buffers) are
imported inside the functions that need them; the code that calls them follows TensorRT's
documented Python API (8.6 to 11.x) and only runs where both import and a GPU is present.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.backends._onnx_graph import load_graph, topological_order, walk_graphs
from workers.engine.backends.base import (
    Backend,
    BackendNotInstalled,
    Calibration,
    HardwareProfile,
    SupportReport,
    SupportStatus,
    TritonNative,
    Variant,
    device_runs,
    ops_by_outcome,
    verdict_for,
)
from workers.engine.backends.published import load_published_list, report_from_published_list
from workers.engine.calibration import calibration_feeds, load_calibration
from workers.engine.errors import ModelError
from workers.engine.inspection import Dim, TensorSpec, graph_input_specs
from workers.engine.onnx_walk import DEFAULT_DOMAIN

if TYPE_CHECKING:
    import numpy as np
    from onnx import ModelProto

logger = logging.getLogger(__name__)

PLAN_FORMAT = "tensorrt-plan"
ENGINE_BUILD_STEP = "tensorrt-build"
GPU_DEVICE = "GPU"
UNSUPPORTED_DEVICE = "unsupported"
STAMP_VERSION = 1
CALIBRATION_CACHE_FORMAT = "slipway-tensorrt-calibration-cache"

VARIANT_NAMES = {"fp32": "trt-fp32", "fp16": "trt-fp16", "int8": "trt-int8"}

# (min, opt, max) shape of one input in an optimization profile.
ShapeRange = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
InputLike = TensorSpec | tuple[str, str | None, Sequence[Dim] | None]

_MAX_REASON_CHARS = 500

_PARSER_PARTIAL_NOTE = (
    "TensorRT's ONNX parser stops converting at a node it cannot handle; the nodes listed as "
    "supported are those it grouped into subgraphs it can build, which only a build proves."
)
_EXCLUDED_NODE_REASON = (
    "TensorRT's ONNX parser left this node out of every subgraph it can build (it reads a model "
    "input the parser rejected, or needs data-dependent shapes)."
)


# --- optimization profiles ------------------------------------------------------------------


def optimization_profile_shapes(
    inputs: Sequence[InputLike], batch_sizes: Sequence[int], overrides: Mapping[str, Any] | None = None
) -> dict[str, ShapeRange]:
    """The (min, opt, max) shape of every input, for one TensorRT optimization profile.

    `inputs` are inspection-style specs: name, dtype and a shape whose dims are ints, symbolic
    names (str) or None. Fixed dims stay fixed. A batch dim (a symbolic or unknown axis 0, or
    any dim with the same symbolic name as some input's axis 0) ranges from 1 through the
    median of `batch_sizes` (the typical batch TensorRT tunes for) to the largest one.
    Every other dynamic dim must be given in `overrides`, which holds either an input's
    whole shape, `{"image": [1, 3, 640, 640]}`, whose entries are an int, a [min, opt, max]
    list, or None for "as the model says", or a dim name, `{"height": 640}` or
    `{"height": [320, 640, 1280]}`.

    Raises ModelError "dynamic_shape_unknown" naming the input and dim when a dynamic dim has
    no size, and "dynamic_shape_invalid" when a given shape does not fit the model.
    """
    given = dict(overrides or {})
    specs = [_as_spec(item) for item in inputs]
    batches = _batch_range(batch_sizes)
    batch_symbols = {spec.shape[0] for spec in specs if spec.shape and isinstance(spec.shape[0], str)}

    shapes: dict[str, ShapeRange] = {}
    for spec in specs:
        whole = given.get(spec.name)
        if spec.shape is None and whole is None:
            raise ModelError(
                "dynamic_shape_unknown",
                f"Input '{spec.name}' has no known shape, and TensorRT needs one to build an engine. "
                f'Give its full shape in the hardware profile\'s options, e.g. input_shapes: {{"{spec.name}": '
                "[1, 3, 224, 224]}.",
            )
        model_dims: list[Dim] = list(spec.shape) if spec.shape is not None else [None] * len(whole or ())
        if whole is not None and (not isinstance(whole, list | tuple) or len(whole) != len(model_dims)):
            raise ModelError(
                "dynamic_shape_invalid",
                f"The shape given for input '{spec.name}' ({whole!r}) does not have the {len(model_dims)} "
                f"dimensions the model's input has ({_describe_dims(model_dims)}). Give one entry per dimension.",
            )
        low, typical, high = [], [], []
        for axis, dim in enumerate(model_dims):
            entry = whole[axis] if whole is not None else None
            size = _dim_range(spec.name, axis, dim, entry, given, batches, batch_symbols, model_dims)
            low.append(size[0])
            typical.append(size[1])
            high.append(size[2])
        shapes[spec.name] = (tuple(low), tuple(typical), tuple(high))
    return shapes


def _as_spec(item: InputLike) -> TensorSpec:
    if isinstance(item, TensorSpec):
        return item
    name, dtype, shape = item
    return TensorSpec(name, dtype, tuple(shape) if shape is not None else None)


def _batch_range(batch_sizes: Sequence[int]) -> tuple[int, int, int]:
    sizes = sorted({int(size) for size in batch_sizes}) or [1]
    if sizes[0] < 1:
        raise ModelError(
            "dynamic_shape_invalid",
            f"Batch sizes must be 1 or more; the hardware profile asks for {list(batch_sizes)}.",
        )
    return 1, int(statistics.median_low(sizes)), sizes[-1]


def _dim_range(
    input_name: str,
    axis: int,
    dim: Dim,
    entry: Any,
    given: Mapping[str, Any],
    batches: tuple[int, int, int],
    batch_symbols: set[str],
    model_dims: Sequence[Dim],
) -> tuple[int, int, int]:
    """One dim's (min, opt, max): from the input's given shape, the model, a named override, or the batch rule."""
    if entry is not None:
        size = _given_range(input_name, axis, entry)
        if isinstance(dim, int) and size != (dim, dim, dim):
            raise ModelError(
                "dynamic_shape_invalid",
                f"Input '{input_name}' has a fixed size of {dim} on axis {axis}, but the shape given for it says "
                f"{entry!r}. Leave that entry as {dim} (or null).",
            )
        return size
    if isinstance(dim, int):
        return dim, dim, dim
    if isinstance(dim, str) and dim in given:
        return _given_range(input_name, axis, given[dim])
    if (axis == 0 and dim is None) or (isinstance(dim, str) and dim in batch_symbols):
        return batches
    label = f"'{dim}'" if isinstance(dim, str) else "of unknown size"
    example = ", ".join(str(d) if isinstance(d, int) else ("1" if i == 0 else "...") for i, d in enumerate(model_dims))
    by_name = f', or by the dimension\'s name: {{"{dim}": [min, opt, max]}}' if isinstance(dim, str) else ""
    raise ModelError(
        "dynamic_shape_unknown",
        f"Input '{input_name}' has a dynamic dimension {label} (axis {axis}), and TensorRT needs its smallest, "
        f"typical and largest size to build an engine. Give it in the hardware profile's options, as "
        f'input_shapes: {{"{input_name}": [{example}]}} with that axis filled in{by_name}.',
    )


def _given_range(input_name: str, axis: int, entry: Any) -> tuple[int, int, int]:
    values = [entry] * 3 if isinstance(entry, int) else entry
    valid = (
        isinstance(values, list | tuple)
        and len(values) == 3
        and all(isinstance(value, int) and not isinstance(value, bool) and value >= 1 for value in values)
        and values[0] <= values[1] <= values[2]
    )
    if not valid:
        raise ModelError(
            "dynamic_shape_invalid",
            f"The size given for axis {axis} of input '{input_name}' ({entry!r}) is not a size: give a whole "
            "number of 1 or more, or [min, opt, max] with min <= opt <= max.",
        )
    return int(values[0]), int(values[1]), int(values[2])


def _describe_dims(dims: Sequence[Dim]) -> str:
    return "[" + ", ".join("?" if dim is None else str(dim) for dim in dims) + "]"


def check_input_shape(name: str, shape: Sequence[int], profile_shapes: Mapping[str, Any]) -> str | None:
    """Why an input of `shape` cannot run on an engine built for `profile_shapes`, or None when it can.

    `profile_shapes` is the stamp's form: input name -> {"min": [...], "opt": [...], "max": [...]}.
    An input the stamp does not describe is not judged here.
    """
    ranges = profile_shapes.get(name)
    if ranges is None:
        return None
    low, high = list(ranges["min"]), list(ranges["max"])
    if len(shape) != len(low):
        return f"Input '{name}' has {len(shape)} dimensions; the engine takes {len(low)} ({low} to {high})."
    for axis, (size, smallest, largest) in enumerate(zip(shape, low, high, strict=True)):
        if not smallest <= size <= largest:
            return (
                f"Input '{name}' has size {size} on axis {axis}; the engine was built for sizes {smallest} to "
                f"{largest} there (shapes {low} to {high}). Send an input within that range, or rebuild the engine "
                "with a wider one."
            )
    return None


# --- precisions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrecisionBuild:
    """How one requested precision is built, or why it is not.

    `flags` are BuilderFlag names to set; `convert_to_fp16` means the ONNX model is converted
    to float16 first and built strongly typed (TensorRT 11 removed the precision flags);
    `skipped` is a sentence saying why the precision is not built, empty when it is.
    """

    precision: str
    variant: str
    flags: tuple[str, ...] = ()
    convert_to_fp16: bool = False
    skipped: str = ""


def precision_flags(
    precisions: Sequence[str],
    platform_has_fast_fp16: bool | None,
    platform_has_fast_int8: bool | None,
    *,
    weak_typing: bool = True,
    calibration_given: bool = True,
) -> list[PrecisionBuild]:
    """The builder flags for each requested precision, with a readable reason for each one skipped.

    `platform_has_fast_*` are TensorRT's answers for this GPU; None means this TensorRT no
    longer reports them (11.x), and the precision is tried. `weak_typing` is whether this
    TensorRT still has BuilderFlag.FP16/INT8 and calibrators (up to 10.x). INT8 engines also
    allow FP16, so that layers without an INT8 kernel fall back to FP16 rather than FP32.
    """
    builds: list[PrecisionBuild] = []
    for precision in dict.fromkeys(precisions):
        variant = VARIANT_NAMES.get(precision, f"trt-{precision}")
        if precision == "fp32":
            builds.append(PrecisionBuild(precision, variant))
        elif precision == "fp16":
            if platform_has_fast_fp16 is False:
                builds.append(
                    PrecisionBuild(
                        precision,
                        variant,
                        skipped="This GPU has no fast FP16 arithmetic (TensorRT's platform_has_fast_fp16 is "
                        "False), so an FP16 engine would be no faster than FP32; it was not built.",
                    )
                )
            elif weak_typing:
                builds.append(PrecisionBuild(precision, variant, flags=("FP16",)))
            else:
                builds.append(PrecisionBuild(precision, variant, convert_to_fp16=True))
        elif precision == "int8":
            reason = ""
            if not weak_typing:
                reason = (
                    "This TensorRT (11 or later) removed calibration-based INT8 (BuilderFlag.INT8 and "
                    "IInt8EntropyCalibrator2); an INT8 engine needs a model with Q/DQ nodes. Quantize the "
                    "model to QDQ first (e.g. onnxruntime's static QDQ variant) and build that."
                )
            elif platform_has_fast_int8 is False:
                reason = (
                    "This GPU has no fast INT8 arithmetic (TensorRT's platform_has_fast_int8 is False), so an "
                    "INT8 engine would be no faster; it was not built."
                )
            elif not calibration_given:
                reason = (
                    "An INT8 engine needs calibration data to choose its scales; upload a calibration .npz "
                    "(one array per model input, samples on axis 0) with the model version."
                )
            if reason:
                builds.append(PrecisionBuild(precision, variant, skipped=reason))
            else:
                flags = ("INT8", "FP16") if platform_has_fast_fp16 is not False else ("INT8",)
                builds.append(PrecisionBuild(precision, variant, flags=flags))
        else:
            builds.append(
                PrecisionBuild(
                    precision,
                    variant,
                    skipped=f"TensorRT engines are built here for fp32, fp16 and int8; '{precision}' is not one "
                    "of them.",
                )
            )
    return builds


# --- calibration cache ---------------------------------------------------------------------


class CalibrationCache:
    """TensorRT's INT8 calibration cache in a file, usable only by the build it was made for.

    Calibration runs the model over all calibration data, so its result is kept; but scales
    from another model, other input shapes, other calibration data or another TensorRT
    would be silently wrong. The file stores the cache with its key (model sha256, input
    shapes, TensorRT version and, when known, the calibration data's sha256); `read`
    refuses a cache whose key differs and says why in `refused`.
    """

    def __init__(
        self,
        path: Path,
        *,
        model_sha256: str,
        input_shapes: Mapping[str, Sequence[int]],
        trt_version: str,
        data_sha256: str | None = None,
    ) -> None:
        self.path = path
        self.key: dict[str, Any] = {
            "model_sha256": model_sha256,
            "input_shapes": {name: [int(size) for size in shape] for name, shape in sorted(input_shapes.items())},
            "tensorrt": trt_version,
            "calibration_data_sha256": data_sha256,
        }
        self.refused = ""
        self.used = False

    def read(self) -> bytes | None:
        """The cached calibration for this key, or None (missing, unreadable, or made for another key)."""
        self.refused = ""
        if not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text())
            stored_key = data["key"]
            cache = base64.b64decode(data["cache"], validate=True)
            if data.get("format") != CALIBRATION_CACHE_FORMAT:
                raise ValueError("not a calibration cache")
        except (OSError, ValueError, KeyError, TypeError):
            self.refused = f"The calibration cache {self.path.name} could not be read, so calibration runs again."
            return None
        differences = [
            label
            for field, label in (
                ("model_sha256", "another model"),
                ("input_shapes", "other input shapes"),
                ("tensorrt", f"TensorRT {stored_key.get('tensorrt')} (this is {self.key['tensorrt']})"),
                ("calibration_data_sha256", "other calibration data"),
            )
            if stored_key.get(field) != self.key[field]
        ]
        if differences:
            self.refused = (
                f"The calibration cache {self.path.name} was made for {', '.join(differences)}, so it was not used "
                "and calibration runs again."
            )
            return None
        self.used = True
        return cache

    def write(self, cache: bytes) -> None:
        """Store `cache` under this key, replacing any cache in the file."""
        payload = {
            "format": CALIBRATION_CACHE_FORMAT,
            "key": self.key,
            "cache": base64.b64encode(bytes(cache)).decode("ascii"),
        }
        _write_atomically(self.path, json.dumps(payload, indent=1).encode())


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)  # mkstemp makes files only their owner can read
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def file_sha256(*paths: Path) -> str:
    """The sha256 of the files' contents, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(2**20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def model_sha256(model_path: Path) -> str:
    """The sha256 of the model file and of every external weights file it names, so retrained weights differ."""
    model = load_graph(model_path, file_format=None)
    return file_sha256(model_path, *_external_data_files(model_path, model))


# --- engine stamps -----------------------------------------------------------------------------


def engine_stamp(
    trt_version: str,
    compute_capability: tuple[int, int] | str,
    gpu_name: str,
    precisions: Sequence[str],
    profile_shapes: Mapping[str, ShapeRange],
) -> dict[str, Any]:
    """What an engine was built with and for: stored in the variant's options and beside the .plan."""
    return {
        "stamp_version": STAMP_VERSION,
        "tensorrt": str(trt_version),
        "compute_capability": _capability_text(compute_capability),
        "gpu_name": gpu_name,
        "precisions": list(precisions),
        "profile_shapes": {
            name: {"min": list(low), "opt": list(typical), "max": list(high)}
            for name, (low, typical, high) in profile_shapes.items()
        },
    }


def check_engine_compatible(
    stamp: Mapping[str, Any], trt_version: str, compute_capability: tuple[int, int] | str
) -> str | None:
    """Why an engine with `stamp` cannot run with this TensorRT on this GPU, or None when it can.

    A serialized engine is tied to the exact TensorRT version and to the GPU architecture
    (compute capability) it was built on.
    """
    built_with = stamp.get("tensorrt")
    built_for = stamp.get("compute_capability")
    if not built_with or not built_for:
        return (
            "The engine's build stamp does not say which TensorRT and GPU built it, so it cannot be checked; "
            "rebuild the variant on this worker."
        )
    if str(built_with) != str(trt_version):
        return (
            f"This engine was built with TensorRT {built_with}, and this worker has TensorRT {trt_version}; an "
            "engine only loads in the TensorRT version that built it. Rebuild the variant on this worker."
        )
    here = _capability_text(compute_capability)
    if str(built_for) != here:
        gpu = f" ({stamp['gpu_name']})" if stamp.get("gpu_name") else ""
        return (
            f"This engine was built for GPUs of compute capability {built_for}{gpu}, and this GPU's is {here}; "
            "an engine is specific to the GPU architecture it was built on. Rebuild the variant on this kind of GPU."
        )
    return None


def _capability_text(compute_capability: tuple[int, int] | str) -> str:
    if isinstance(compute_capability, str):
        return compute_capability
    major, minor = compute_capability
    return f"{major}.{minor}"


def stamp_path(plan_path: Path) -> Path:
    """Where the stamp of an engine lives: "<name>.plan.json" beside "<name>.plan"."""
    return plan_path.with_name(f"{plan_path.name}.json")


# --- operator support from the parser --------------------------------------------------------


@dataclass(frozen=True)
class ParserNode:
    """A node of the model's main graph as TensorRT's parser indexes it."""

    label: str
    domain: str
    op_type: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


def report_from_parser(
    backend: str,
    runtime_version: str,
    nodes: Sequence[ParserNode],
    all_supported: bool,
    subgraphs: Sequence[tuple[Sequence[int], bool]],
    errors: Sequence[tuple[int, str]],
) -> SupportReport:
    """A support report from what `OnnxParser.supports_model(_v2)` returned, by node index.

    `subgraphs` are the parser's (node indices, supported) pairs; `errors` its
    (node index or -1, description) pairs. Nodes named by an error, or left out of every
    subgraph, are unsupported; the others run on the GPU. Errors about no node (a graph input
    TensorRT cannot take, say) with no unsupported node make the verdict "error".
    """
    node_errors: dict[int, str] = {}
    graph_errors: list[str] = []
    for index, text in errors:
        if 0 <= index < len(nodes):
            node_errors.setdefault(index, text)
        elif text not in graph_errors:
            graph_errors.append(text)
    grouped = {int(index) for indices, _ in subgraphs for index in indices}

    statuses: list[tuple[SupportStatus, str, str]] = []
    for index in range(len(nodes)):
        if all_supported:
            statuses.append(("supported", GPU_DEVICE, ""))
        elif index in node_errors:
            statuses.append(("unsupported", "", node_errors[index]))
        elif index not in grouped:
            statuses.append(("unsupported", "", _EXCLUDED_NODE_REASON))
        else:
            statuses.append(("supported", GPU_DEVICE, ""))

    ops = ops_by_outcome(
        (node.label, node.domain, node.op_type, *status) for node, status in zip(nodes, statuses, strict=True)
    )
    order = topological_order([node.inputs for node in nodes], [node.outputs for node in nodes])
    partitions = device_runs(
        (nodes[index].label, GPU_DEVICE if statuses[index][0] == "supported" else UNSUPPORTED_DEVICE) for index in order
    )

    supported = sum(1 for status, _, _ in statuses if status == "supported")
    verdict = verdict_for(supported, len(nodes))
    notes: list[str] = []
    error = ""
    if not all_supported:
        notes.append(_PARSER_PARTIAL_NOTE)
    if graph_errors:
        notes.append("TensorRT's parser also reported: " + " | ".join(graph_errors))
    if not all_supported and verdict == "full":
        verdict = "error"
        error = " | ".join(graph_errors) or "TensorRT's parser rejected the model without naming a node."
    return SupportReport(
        backend=backend,
        runtime_version=runtime_version,
        installed=True,
        method="runtime",
        verdict=verdict,
        ops=ops,
        partitions=tuple(partitions),
        notes=tuple(notes),
        error=error,
    )


# --- the backend -------------------------------------------------------------------------------


class TensorRtBackend(Backend):
    """NVIDIA TensorRT: serialized engines for one GPU architecture and TensorRT version."""

    name = "tensorrt"
    builds_on_target = True  # an engine is built for the GPU it runs on
    # An execution context is not thread-safe.
    serving_requirements = ("numpy", "tensorrt")
    triton_native = {PLAN_FORMAT: TritonNative("tensorrt_plan", "", "model.plan", "stem", gpu_only=True)}

    def not_installed_text(self) -> str:
        return (
            "TensorRT is not installed on this worker, or no CUDA GPU is usable here: TensorRT engines "
            "can only be built on a GPU worker with the tensorrt package."
        )

    def error_text(self, exc: BaseException) -> str:
        return _first_line(exc)

    def __init__(self, input_shapes: Mapping[str, Any] | None = None, workspace_bytes: int | None = None) -> None:
        # Shapes a user gave for dynamic dims; they win over the hardware profile's input_shapes.
        self.input_shapes = dict(input_shapes or {})
        self.workspace_bytes = workspace_bytes

    def runtime_version(self) -> str | None:
        """TensorRT's version when it imports and a CUDA device is usable here, else None."""
        try:
            import tensorrt as trt
        except ImportError:
            return None
        except Exception:  # a broken install (missing CUDA libraries) fails with other errors
            logger.warning("tensorrt is installed but does not import", exc_info=True)
            return None
        if not _cuda_device_usable(trt):
            return None
        return str(trt.__version__)

    # --- operator support -----------------------------------------------------------------

    def check_support(self, model_path: Path) -> SupportReport:
        """Which nodes TensorRT's ONNX parser can turn into an engine ("GPU") and which it cannot.

        Without TensorRT on this worker, the answer comes from onnx-tensorrt's published
        operator list when Slipway ships one, else the report says it is not installed.
        Raises ModelError "invalid_model" when the file cannot be parsed as ONNX.
        """
        version = self.runtime_version()
        if version is None:
            oplist = load_published_list(self.name)
            if oplist is None:
                return self.not_installed_report()
            return report_from_published_list(self.name, model_path, oplist)

        import tensorrt as trt

        model = load_graph(model_path, file_format=None)
        nodes = [
            ParserNode(
                label=node.name or f"{node.op_type}_{index}",
                domain=node.domain or DEFAULT_DOMAIN,
                op_type=node.op_type,
                inputs=tuple(node.input),
                outputs=tuple(node.output),
            )
            for index, node in enumerate(model.graph.node)
        ]
        trt_logger = _make_logger(trt)
        builder = trt.Builder(trt_logger)
        network = builder.create_network(_network_flags(trt, strongly_typed=False))
        parser = trt.OnnxParser(network, trt_logger)
        data = model_path.read_bytes()
        if hasattr(parser, "supports_model_v2"):
            all_supported = bool(parser.supports_model_v2(data, str(model_path)))
            subgraphs = [
                (list(parser.get_subgraph_nodes(index)), bool(parser.is_subgraph_supported(index)))
                for index in range(parser.num_subgraphs)
            ]
        else:
            all_supported, raw = parser.supports_model(data, str(model_path))
            subgraphs = [(list(indices), bool(flag)) for indices, flag in raw]
        errors = [_parser_error(parser.get_error(index)) for index in range(parser.num_errors)]
        return report_from_parser(self.name, version, nodes, bool(all_supported), subgraphs, errors)

    # --- variants -----------------------------------------------------------------------

    def build(
        self,
        model_path: Path,
        profile: HardwareProfile,
        calibration: Calibration | None,
        out_dir: Path,
        notes: list[str],
    ) -> list[Variant]:
        """Build one engine per precision of the profile into `out_dir` (each loaded once by the template).

        fp32 gives trt-fp32 (TF32 off, so it matches FP32 references), fp16 gives trt-fp16,
        int8 with `calibration` gives trt-int8 (entropy calibration, cached in out_dir).
        Input shape ranges come from `optimization_profile_shapes` with the profile's
        options "batch_sizes" and "input_shapes" (and this backend's `input_shapes`); a
        timing cache in out_dir speeds up later builds. Precisions that cannot be built here,
        and engines that fail to build, are noted.

        Raises ModelError for dynamic
        shapes without sizes ("dynamic_shape_unknown") and for calibration data that does not
        fit the model.
        """
        version = str(self.runtime_version())
        import tensorrt as trt

        model = load_graph(model_path, file_format=None)
        specs = graph_input_specs(model.graph)
        overrides = {**dict(profile.options.get("input_shapes") or {}), **self.input_shapes}
        shapes = optimization_profile_shapes(specs, profile.options.get("batch_sizes") or (1,), overrides)
        weak_typing = hasattr(trt.BuilderFlag, "FP16")
        trt_logger = _make_logger(trt)
        builder = trt.Builder(trt_logger)
        plan = precision_flags(
            profile.precisions,
            getattr(builder, "platform_has_fast_fp16", None),
            getattr(builder, "platform_has_fast_int8", None),
            weak_typing=weak_typing,
            calibration_given=calibration is not None,
        )
        samples: dict[str, np.ndarray] = {}
        if calibration is not None and any(build.precision == "int8" and not build.skipped for build in plan):
            # Before any engine is built: a wrong calibration file is the user's to fix.
            samples = load_calibration(calibration.path, specs, max_samples=calibration.max_samples)

        capability, gpu_name = _gpu_identity()
        timing_cache_path = out_dir / f"tensorrt-{version}-sm{capability[0]}{capability[1]}.timing-cache"
        versions = {"tensorrt": version, **_library_versions()}
        variants: list[Variant] = []
        for build in plan:
            if build.skipped:
                notes.append(f"{build.variant} was not built: {build.skipped}")
                continue
            plan_path = out_dir / f"{build.variant}.plan"
            stamp = engine_stamp(version, capability, gpu_name, [build.precision], shapes)
            try:
                started = time.monotonic()
                options = self._build_engine(
                    trt, model_path, build, shapes, samples, specs, calibration, plan_path, timing_cache_path
                )
                options["build_seconds"] = round(time.monotonic() - started, 3)
                _write_atomically(stamp_path(plan_path), json.dumps(stamp, indent=1).encode())
            except ModelError:
                raise
            except Exception as exc:  # TensorRT raises RuntimeError, TypeError and its own errors
                plan_path.unlink(missing_ok=True)
                stamp_path(plan_path).unlink(missing_ok=True)
                notes.append(f"{build.variant} was not built: {_first_line(exc)}")
                continue
            variants.append(
                Variant(
                    name=build.variant,
                    backend=self.name,
                    path=plan_path,
                    format=PLAN_FORMAT,
                    precision=build.precision,
                    pass_name=ENGINE_BUILD_STEP,
                    options={**options, "stamp": stamp},
                    tool_versions=dict(versions),
                    files=(plan_path, stamp_path(plan_path)),
                )
            )
        return variants

    def _build_engine(
        self,
        trt: Any,
        model_path: Path,
        build: PrecisionBuild,
        shapes: Mapping[str, ShapeRange],
        samples: Mapping[str, np.ndarray],
        specs: Sequence[TensorSpec],
        calibration: Calibration | None,
        plan_path: Path,
        timing_cache_path: Path,
    ) -> dict[str, Any]:
        """Parse, configure and build one engine into `plan_path`; returns how it was made."""
        trt_logger = _make_logger(trt)
        builder = trt.Builder(trt_logger)
        network = builder.create_network(_network_flags(trt, strongly_typed=build.convert_to_fp16))
        parser = trt.OnnxParser(network, trt_logger)
        config = builder.create_builder_config()
        options: dict[str, Any] = {"builder_flags": list(build.flags)}

        # The parser, the timing cache and the calibrator must outlive the build: TensorRT
        # keeps pointers to them, not copies.
        with tempfile.TemporaryDirectory(prefix=".trt-build-", dir=plan_path.parent) as scratch:
            source = model_path
            if build.convert_to_fp16:
                source = _float16_model(model_path, Path(scratch) / "model-fp16.onnx")
                options["converted_to_fp16"] = "onnxruntime float16 converter, float32 inputs and outputs"
            if not parser.parse_from_file(str(source)):
                problems = [_parser_error(parser.get_error(index))[1] for index in range(parser.num_errors)]
                raise RuntimeError("TensorRT's ONNX parser failed: " + " | ".join(problems[:3]))

            if self.workspace_bytes:
                config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(self.workspace_bytes))
                options["workspace_bytes"] = int(self.workspace_bytes)
            for flag in build.flags:
                config.set_flag(getattr(trt.BuilderFlag, flag))
            if build.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
                # TF32 is on by default on Ampere and later; an "fp32" engine should match FP32 results.
                config.clear_flag(trt.BuilderFlag.TF32)
                options["tf32"] = False

            optimization_profile = builder.create_optimization_profile()
            for name, (low, typical, high) in shapes.items():
                optimization_profile.set_shape(name, low, typical, high)
            config.add_optimization_profile(optimization_profile)
            options["profile_shapes"] = {
                name: {"min": list(low), "opt": list(typical), "max": list(high)}
                for name, (low, typical, high) in shapes.items()
            }

            calibrator = None
            if build.precision == "int8" and calibration is not None:
                calibrator, options["calibration"] = _make_calibrator(
                    trt, model_path, network, builder, config, samples, specs, calibration, plan_path
                )

            timing_cache, options["timing_cache"] = _open_timing_cache(config, timing_cache_path)
            serialized = builder.build_serialized_network(network, config)
            if serialized is None:
                raise RuntimeError(
                    "TensorRT could not build the engine: " + (trt_logger.last_errors() or "no reason was logged.")
                )
            _write_atomically(plan_path, bytes(serialized))
            with contextlib.suppress(Exception):  # a timing cache that cannot be saved only costs time later
                _write_atomically(timing_cache_path, bytes(config.get_timing_cache().serialize()))
            if calibrator is not None:
                options["calibration"]["cache"] = calibrator.cache_outcome()
            del timing_cache, parser
        return options

    # --- running ------------------------------------------------------------------------

    def load(self, variant_path: Path) -> TensorRtSession:
        """Load a `.plan` engine on the GPU, after checking its stamp fits this TensorRT and GPU.

        Raises BackendNotInstalled without TensorRT, a usable GPU or PyTorch (its CUDA
        tensors hold inputs and outputs), and EngineIncompatible when the engine was built
        with another TensorRT or for another GPU architecture.
        """
        version = self.runtime_version()
        if version is None:
            raise BackendNotInstalled(
                "TensorRT is not installed on this worker, or no CUDA GPU is usable here, so the engine cannot run."
            )
        try:
            import torch
        except ImportError:
            raise BackendNotInstalled(
                "Running a TensorRT engine here needs PyTorch with CUDA, whose GPU tensors hold the engine's "
                "inputs and outputs; install torch on this worker."
            ) from None
        if not torch.cuda.is_available():
            raise BackendNotInstalled("PyTorch sees no CUDA GPU on this worker, so the engine cannot run.")
        return TensorRtSession(variant_path, version)


class EngineIncompatible(RuntimeError):
    """A serialized engine that this TensorRT or this GPU cannot run; the message says why."""


class TensorRtSession:
    """A deserialized TensorRT engine with one execution context, running on the current CUDA stream."""

    def __init__(self, plan_path: Path, trt_version: str) -> None:
        import tensorrt as trt
        import torch

        self._stamp: dict[str, Any] = {}
        sidecar = stamp_path(plan_path)
        if sidecar.is_file():
            self._stamp = json.loads(sidecar.read_text())
            reason = check_engine_compatible(self._stamp, trt_version, torch.cuda.get_device_capability())
            if reason:
                raise EngineIncompatible(reason)
        self._logger = _make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if engine is None:
            raise EngineIncompatible(
                f"TensorRT could not deserialize {plan_path.name}: {self._logger.last_errors() or 'no reason given'}. "
                "Rebuild the variant on this worker."
            )
        self._engine: Any = engine
        self._context: Any = engine.create_execution_context()
        self._device = torch.device("cuda")
        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        is_input = {name: engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT for name in names}
        self.input_names = tuple(name for name in names if is_input[name])
        self.output_names = tuple(name for name in names if not is_input[name])
        self._dtypes = {name: _numpy_dtype(trt, engine.get_tensor_dtype(name), name) for name in names}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the engine on `inputs` (input name -> array); returns output name -> array."""
        import numpy as np
        import torch

        if self._context is None:
            raise RuntimeError("This session is closed; load the engine again to run it.")
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ValueError(f"Missing input(s) {', '.join(missing)}; the engine takes {', '.join(self.input_names)}.")
        keep_alive = []
        for name in self.input_names:
            array = np.require(inputs[name], dtype=self._dtypes[name], requirements=["C", "W"])
            problem = check_input_shape(name, array.shape, self._stamp.get("profile_shapes", {}))
            if problem:
                raise ValueError(problem)
            tensor = torch.from_numpy(array).to(self._device)
            keep_alive.append(tensor)
            self._context.set_input_shape(name, tuple(array.shape))
            self._context.set_tensor_address(name, tensor.data_ptr())
        outputs: dict[str, Any] = {}
        for name in self.output_names:
            shape = tuple(self._context.get_tensor_shape(name))
            if any(size < 0 for size in shape):
                raise RuntimeError(
                    f"Output '{name}' has a data-dependent shape {list(shape)}, which this session cannot allocate."
                )
            empty = torch.from_numpy(np.empty(0, dtype=self._dtypes[name]))
            outputs[name] = torch.empty(shape, dtype=empty.dtype, device=self._device)
            self._context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream(self._device)
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run the engine: {self._logger.last_errors() or 'no reason given'}")
        stream.synchronize()
        return {name: tensor.cpu().numpy() for name, tensor in outputs.items()}

    def close(self) -> None:
        """Free the engine's GPU memory; `run` fails afterwards."""
        self._context = None
        self._engine = None


# --- TensorRT plumbing (runs only where tensorrt imports) ----------------------------------------


def _make_logger(trt: Any) -> Any:
    """A trt.ILogger that keeps errors (for reports) and sends warnings to Python logging."""

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                logger.debug("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                logger.debug("TensorRT warning: %s", msg)

        def last_errors(self) -> str:
            return " | ".join(self.errors[-3:])[:_MAX_REASON_CHARS]

    return CapturingLogger()


def _cuda_device_usable(trt: Any) -> bool:
    """Whether a CUDA device can be used: PyTorch's answer when it imports, else whether a Builder can be made."""
    try:
        import torch
    except ImportError:
        pass
    else:
        return bool(torch.cuda.is_available())
    try:
        return trt.Builder(trt.Logger(trt.Logger.ERROR)) is not None
    except Exception:  # no driver or no device: TensorRT raises or returns None
        return False


def _network_flags(trt: Any, *, strongly_typed: bool) -> int:
    """Explicit batch (required before TensorRT 10, the only mode since) and, if asked, strong typing."""
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if int(str(trt.__version__).split(".")[0]) < 10 and hasattr(creation, "EXPLICIT_BATCH"):
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    if strongly_typed and hasattr(creation, "STRONGLY_TYPED"):
        flags |= 1 << int(creation.STRONGLY_TYPED)
    return flags


def _parser_error(error: Any) -> tuple[int, str]:
    """(node index or -1, one-line description) of a trt.IParserError."""
    index = int(error.node())
    text = str(error.desc()).strip().splitlines()[0] if str(error.desc()).strip() else "unknown parser error"
    operator = ""
    with contextlib.suppress(AttributeError):  # node_operator() exists from TensorRT 8.6
        operator = str(error.node_operator())
    if operator and operator not in text:
        text = f"{operator}: {text}"
    return index, text[:_MAX_REASON_CHARS]


def _open_timing_cache(config: Any, path: Path) -> tuple[Any, str]:
    """Give the builder the timing cache in `path` (or a new one); returns it and "reused" or "created"."""
    data = b""
    note = "created"
    if path.is_file():
        data = path.read_bytes()
        note = "reused"
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        # A cache from another TensorRT or GPU: start a new one rather than mix timings.
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
        note = "created (the cache on disk did not match this TensorRT and GPU)"
    return cache, note


def _make_calibrator(
    trt: Any,
    model_path: Path,
    network: Any,
    builder: Any,
    config: Any,
    samples: Mapping[str, np.ndarray],
    specs: Sequence[TensorSpec],
    calibration: Calibration,
    plan_path: Path,
) -> tuple[Any, dict[str, Any]]:
    """An IInt8EntropyCalibrator2 over the calibration feeds, set on `config` with its own profile."""
    import numpy as np
    import torch

    network_dtypes = {
        network.get_input(index).name: _numpy_dtype(trt, network.get_input(index).dtype, network.get_input(index).name)
        for index in range(network.num_inputs)
    }
    feeds = [
        {
            name: np.require(value, dtype=network_dtypes.get(name, value.dtype), requirements=["C", "W"])
            for name, value in feed.items()
        }
        for feed in calibration_feeds(samples, specs)
    ]
    if not feeds:
        raise ModelError("calibration_mismatch", "The calibration data gives no complete batch for the model.")
    calibration_shapes = {name: tuple(int(size) for size in array.shape) for name, array in feeds[0].items()}
    cache = CalibrationCache(
        plan_path.with_name(f"{plan_path.stem}.calibration.json"),
        model_sha256=model_sha256(model_path),
        input_shapes=calibration_shapes,
        trt_version=str(trt.__version__),
        data_sha256=file_sha256(calibration.path),
    )

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)
            self._current: dict[str, Any] = {}
            self.batches = 0

        def get_batch_size(self) -> int:
            # Explicit-batch networks take the batch from the input shapes; TensorRT wants 1 here.
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            feed = next(self._feeds, None)
            if feed is None:
                return None
            self._current = {name: torch.from_numpy(feed[name]).cuda() for name in names}
            self.batches += 1
            return [int(self._current[name].data_ptr()) for name in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read()

        def write_calibration_cache(self, data: Any) -> None:
            cache.write(bytes(data))

        def cache_outcome(self) -> str:
            if cache.used:
                return "reused"
            return cache.refused or f"created from {self.batches} batch(es)"

    calibrator = EntropyCalibrator()
    config.int8_calibrator = calibrator
    if hasattr(config, "set_calibration_profile"):
        # Dynamic shapes need a profile for calibration; the calibration batches have one shape.
        calibration_profile = builder.create_optimization_profile()
        for name, shape in calibration_shapes.items():
            calibration_profile.set_shape(name, shape, shape, shape)
        config.set_calibration_profile(calibration_profile)
    options = {
        "calibrator": "IInt8EntropyCalibrator2",
        "method_requested": calibration.method,
        "batches": len(feeds),
        "batch_shapes": {name: list(shape) for name, shape in calibration_shapes.items()},
        "cache_file": cache.path.name,
    }
    if calibration.method != "entropy":
        options["note"] = "TensorRT calibrates with entropy calibration here, whatever method was asked for."
    return calibrator, options


def _float16_model(model_path: Path, target: Path) -> Path:
    """The model with float16 weights and arithmetic, float32 inputs and outputs, for strongly typed builds."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(model_path))
    onnx.save_model(convert_float_to_float16(model, keep_io_types=True), str(target))
    return target


def _numpy_dtype(trt: Any, data_type: Any, name: str) -> Any:
    import numpy as np

    try:
        return np.dtype(trt.nptype(data_type))
    except TypeError:
        raise RuntimeError(
            f"Tensor '{name}' has TensorRT type {data_type}, which has no NumPy equivalent to pass it in or out."
        ) from None


def _gpu_identity() -> tuple[tuple[int, int], str]:
    """(compute capability, name) of the current CUDA device, from PyTorch."""
    try:
        import torch
    except ImportError:
        raise BackendNotInstalled(
            "Building TensorRT engines here needs PyTorch with CUDA (to identify the GPU and hold calibration "
            "batches); install torch on this worker."
        ) from None
    major, minor = torch.cuda.get_device_capability()
    return (int(major), int(minor)), str(torch.cuda.get_device_name())


def _library_versions() -> dict[str, str]:
    versions = {}
    for module in ("onnx", "torch"):
        with contextlib.suppress(ImportError):
            versions[module] = str(__import__(module).__version__)
    return versions


def _first_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return text[:_MAX_REASON_CHARS]


# --- reading models -----------------------------------------------------------------------------


def _external_data_files(model_path: Path, model: ModelProto) -> list[Path]:
    import onnx

    locations: set[str] = set()
    for graph in walk_graphs(model.graph):
        for tensor in graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                locations.update(entry.value for entry in tensor.external_data if entry.key == "location")
    return [model_path.parent / location for location in sorted(locations) if (model_path.parent / location).is_file()]
