"""ExecuTorch's side of the ExecuTorch backend: convert an ONNX model to .pte programs with the XNNPACK
delegate and say, node by node, what XNNPACK took (protocol: `protocol.py`).

Runs in the ExecuTorch environment (ExecuTorch's compiled extensions link one PyTorch release, and
its exporter brings torchao), as `<env>/bin/python -s -m workers.engine.importers.envs.executorch_side
REQUEST RESULT`, inside the sandbox: no network, HOME not writable, no programs besides the
interpreter, only the current directory and out_dir writable.

Action "convert": onnx2torch turns the ONNX graph into a torch.fx module with one submodule per ONNX
node; torch.export traces it at the requested input shapes; ExecuTorch lowers the exported program
with the XNNPACK partitioner, which hands the operators XNNPACK takes to its delegate and leaves the
rest to ExecuTorch's portable CPU kernels, and writes the .pte. The INT8 program is quantized first
with PT2E (torchao's prepare_pt2e/convert_pt2e with ExecuTorch's XNNPACK quantizer: per-channel
symmetric INT8 weights, INT8 activations calibrated on the caller's samples), then exported and
lowered the same way. Every written program is loaded and run once by ExecuTorch's runtime here; one
that fails is the variant's error, not a file.

Which ONNX node each operator comes from: each onnx2torch submodule is named after the node's index,
and torch.export records the module path (`nn_module_stack`) on every operator it traces, which
survives decomposition and lowering (the lowered XNNPACK modules keep the graph they were made from).
An operator in a lowered module is delegated; one left in the top-level graph runs on a portable
kernel. A model onnx2torch, torch.export or the lowering can't take is an answer ("converted": false,
with each node's status), not a refusal.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import types
from collections import Counter
from pathlib import Path
from typing import Any


def _private_dirs() -> Path:
    """Point HOME, TMPDIR and the caches at a folder of this process under the current directory.

    PyTorch and torchao may create cache folders (~/.cache/torch, inductor and triton caches) and
    temporary files; in the sandbox only the current directory and out_dir are writable. Must run
    before torch is imported.
    """
    try:
        scratch = Path(tempfile.mkdtemp(prefix=".executorch-side-", dir=Path.cwd()))
    except OSError:  # run by hand from a read-only folder: the system's temporary directory will do
        scratch = Path(tempfile.mkdtemp(prefix="executorch-side-"))
    atexit.register(shutil.rmtree, scratch, True)
    for name in ("home", "tmp", "cache"):
        (scratch / name).mkdir()
    os.environ["HOME"] = str(scratch / "home")
    os.environ["TMPDIR"] = str(scratch / "tmp")
    os.environ["XDG_CACHE_HOME"] = str(scratch / "cache")
    os.environ["TORCH_HOME"] = str(scratch / "cache" / "torch")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(scratch / "cache" / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(scratch / "cache" / "triton")
    os.environ["TORCH_EXTENSIONS_DIR"] = str(scratch / "cache" / "torch_extensions")
    tempfile.tempdir = None  # forget a temporary directory chosen before TMPDIR changed
    # A GPU is never used here, and probing for CUDA only adds warnings.
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    return scratch


_SCRATCH = _private_dirs()


def _torchvision_stand_in() -> None:
    """onnx2torch imports torchvision for its NonMaxSuppression and RoiAlign converters only.
    PyPI's torchvision is a CUDA build that fails to import beside PyTorch's CPU build, and
    ExecuTorch has no kernels for torchvision's operators, so the environment has none: this
    stand-in lets onnx2torch import, and a model with those nodes fails on them with this reason."""

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "torchvision's detection operators (nms, roi_align) have no ExecuTorch kernel, and torchvision is not "
            "installed in the ExecuTorch environment"
        )

    package = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    for name in ("nms", "roi_align", "box_convert", "batched_nms"):
        setattr(ops, name, unavailable)
    package.ops = ops  # type: ignore[attr-defined]
    sys.modules.setdefault("torchvision", package)
    sys.modules.setdefault("torchvision.ops", ops)


_torchvision_stand_in()
# torchao logs at import that its CUDA kernels (mxfp8, cutlass) don't load: true and irrelevant here.
logging.getLogger("torchao").setLevel(logging.ERROR)

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from workers.engine.importers.envs.protocol import Refused, first_line, serve, without_shell  # noqa: E402

with without_shell():
    import executorch
    import onnx2torch
    import torch
    import torchao
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.exir.lowered_backend_module import LoweredBackendModule
    from executorch.runtime import Runtime
    from onnx2torch.node_converters import get_converter
    from onnx2torch.onnx_graph import OnnxGraph
    from onnx2torch.utils.safe_shape_inference import safe_shape_inference


CONVERTER = "onnx2torch + torch.export + executorch"
PRECISIONS = ("fp32", "int8")
METHOD = "forward"
# Each ONNX node's onnx2torch submodule is named "<prefix><index>", so that a module path in
# torch.export's metadata names the node it came from whatever the node's own name.
_PREFIX = "slipway_node_"
_NODE_MODULE = re.compile(rf"(?:^|[./]){_PREFIX}(\d+)(?=$|[./])")
_NO_CONVERTER = re.compile(r"operation_type='(?P<op>[^']*)'.*?version=(?P<version>\d+)")
# Operators that carry values between delegates and the graph, not work of a node.
_PLUMBING = {"getitem", "executorch_call_delegate"}
_QUANT_PREFIX = ("quantized_decomposed.",)


def _version(module: Any, distribution: str) -> str:
    try:
        import importlib.metadata

        return importlib.metadata.version(distribution)
    except Exception:
        return str(getattr(module, "__version__", "unknown"))


def _node_labels(model: onnx.ModelProto) -> list[str]:
    """Each top-level node's label as Slipway's backends name it (`_onnx_graph.node_labels`): its
    name, else "<op_type>_<index>"."""
    return [node.name or f"{node.op_type}_{index}" for index, node in enumerate(model.graph.node)]


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def _prepared(model: onnx.ModelProto, inputs: list[dict[str, Any]], notes: list[str]) -> onnx.ModelProto:
    """The model onnx2torch converts: dynamic input dims fixed to the request's shapes (the program
    is exported at those shapes) and every node named after its index."""
    shapes = {item["name"]: [int(dim) for dim in item["shape"]] for item in inputs}
    fixed = False
    for value in _graph_inputs(model):
        shape = shapes.get(value.name)
        if shape is None:
            raise Refused(
                "invalid_model",
                f"The request gives no shape for the ONNX input '{value.name}'; every input needs a concrete shape.",
            )
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise Refused(
                "invalid_model",
                f"The ONNX input '{value.name}' has {len(dims)} dimensions; the request gives {shape}.",
            )
        for dim, size in zip(dims, shape, strict=True):
            if dim.HasField("dim_value") and dim.dim_value != size:
                raise Refused(
                    "invalid_model",
                    f"The ONNX input '{value.name}' has shape {[d.dim_value or d.dim_param for d in dims]}; "
                    f"the request gives {shape}.",
                )
            if not dim.HasField("dim_value"):
                fixed = True
                dim.ClearField("dim_param")
                dim.dim_value = size
    if fixed:
        notes.append(
            "Dynamic input dimensions were fixed to the requested shapes "
            + ", ".join(f"{name}={shape}" for name, shape in shapes.items())
            + "; the .pte programs take those shapes only."
        )
        del model.graph.value_info[:]
    _bypass_constant_identities(model, notes)
    for index, node in enumerate(model.graph.node):
        node.name = f"{_PREFIX}{index}"
    return model


def _bypass_constant_identities(model: onnx.ModelProto, notes: list[str]) -> None:
    """Nodes that read an Identity of an initializer read a copy of the initializer instead: onnx2torch
    takes a Conv's weight and bias only as initializers, and exporters route shared constants through
    Identity (torch.onnx folds equal BatchNorm biases into one initializer, then one Identity per use).
    The Identity nodes stay, unread, so every node keeps its index."""
    initializers = {item.name: item for item in model.graph.initializer}
    copies: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input and node.input[0] in initializers:
            source = initializers[node.input[0]]
            copy = onnx.TensorProto()
            copy.CopyFrom(source)
            copy.name = f"{node.output[0]}__constant"
            model.graph.initializer.append(copy)
            copies[node.output[0]] = copy.name
    graph_outputs = {value.name for value in model.graph.output}
    bypassed = 0
    for node in model.graph.node:
        for slot, name in enumerate(node.input):
            if name in copies and name not in graph_outputs:
                node.input[slot] = copies[name]
                bypassed += 1
    if bypassed:
        notes.append(
            f"{bypassed} input(s) read an Identity of a constant; they read the constant itself (onnx2torch takes "
            "weights only as initializers)."
        )


def _sample(inputs: list[dict[str, Any]], calibration: dict[str, np.ndarray] | None) -> list[torch.Tensor]:
    """One input set, in the program's positional order: the first calibration sample where there is
    one, else fixed random values (zeros for integer and boolean inputs, which are often indices)."""
    rng = np.random.default_rng(0)
    tensors = []
    for item in inputs:
        shape, dtype = [int(dim) for dim in item["shape"]], np.dtype(item["dtype"])
        if calibration is not None and item["name"] in calibration:
            array = calibration[item["name"]][: shape[0] if shape else 1].astype(dtype).reshape(shape)
        elif dtype.kind == "f":
            array = rng.standard_normal(shape).astype(dtype)
        else:
            array = np.zeros(shape, dtype)
        tensors.append(torch.from_numpy(np.ascontiguousarray(array)))
    return tensors


def _calibration(path: str, inputs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The calibration arrays by ONNX input name, checked against the requested shapes (samples on axis 0)."""
    try:
        with np.load(path) as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
    except Exception as exc:
        raise Refused("invalid_calibration", f"The calibration file can't be read as .npz: {first_line(exc)}.") from exc
    for item in inputs:
        shape = [int(dim) for dim in item["shape"]]
        array = arrays.get(item["name"])
        if array is None:
            raise Refused(
                "invalid_calibration",
                f"The calibration file has no array for the input '{item['name']}' (it has {sorted(arrays)}).",
            )
        batch = shape[0] if shape else 1
        if list(array.shape[1:]) != shape[1:] or array.shape[0] < batch:
            raise Refused(
                "invalid_calibration",
                f"The calibration array '{item['name']}' has shape {list(array.shape)}; the model takes {shape}, "
                f"so it needs [samples, {', '.join(str(dim) for dim in shape[1:])}] with at least {batch} samples.",
            )
    return arrays


def _calibration_batches(arrays: dict[str, np.ndarray], inputs: list[dict[str, Any]]) -> list[list[torch.Tensor]]:
    """The calibration samples as input sets of the model's batch size, fed as given."""
    batch = {item["name"]: int(item["shape"][0]) if item["shape"] else 1 for item in inputs}
    count = min(arrays[item["name"]].shape[0] // batch[item["name"]] for item in inputs)
    return [
        [
            torch.from_numpy(
                np.ascontiguousarray(
                    arrays[item["name"]][index * batch[item["name"]] : (index + 1) * batch[item["name"]]],
                    dtype=np.dtype(item["dtype"]),
                ).reshape([int(dim) for dim in item["shape"]])
            )
            for item in inputs
        ]
        for index in range(count)
    ]


class _Stopped(Exception):
    """Conversion stopped: `failed` maps node index -> reason for the nodes that stopped it (may be empty
    when the failure names no node), `stage` says which tool stopped."""

    def __init__(self, stage: str, error: str, failed: dict[int, str]) -> None:
        super().__init__(error)
        self.stage, self.error, self.failed = stage, error, failed


def _converter_reason(exc: BaseException) -> str:
    text = first_line(exc)
    match = _NO_CONVERTER.search(text)
    if isinstance(exc, NotImplementedError) and match:
        version = _version(onnx2torch, "onnx2torch")
        return f"onnx2torch {version} has no converter for {match['op']} (opset {match['version']})."
    return f"onnx2torch could not convert it: {type(exc).__name__}: {text}"


class _StaticReshape(torch.nn.Module):
    """onnx2torch's Reshape at the shape it produced on the sample: its own module reads the shape
    tensor's values (zeros copy input dims), which torch.export can't trace. The program is exported
    at fixed input shapes, so every reshape's result shape is fixed too."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, input_tensor: torch.Tensor, *_shape: Any) -> torch.Tensor:
        return torch.reshape(input_tensor, self.shape)


class _StaticPad(torch.nn.Module):
    """onnx2torch's Pad (opset 11+) with constant pads and value, as numbers: its own module turns
    the pads tensor into a list and passes the value as a tensor, which torch.export can't trace."""

    def __init__(self, mode: str, pads: list[int], value: float) -> None:
        super().__init__()
        self.mode, self.pads, self.value = mode, pads, value

    def forward(self, input_tensor: torch.Tensor, *_constants: Any) -> torch.Tensor:
        return torch.nn.functional.pad(input_tensor, self.pads, mode=self.mode, value=self.value)


class _StaticSlice(torch.nn.Module):
    """onnx2torch's Slice (opset 10+) with its starts, ends, axes and steps as numbers: its own module
    reads them from tensors, which torch.export can't trace."""

    def __init__(self, slices: tuple[list[Any], list[Any], list[Any]]) -> None:
        super().__init__()
        self.flip_dims, self.pos_axes_slices, self.neg_axes_slices = slices

    def forward(self, input_tensor: torch.Tensor, *_bounds: Any) -> torch.Tensor:
        from onnx2torch.node_converters.slice import _do_slice

        return _do_slice(input_tensor, self.flip_dims, self.pos_axes_slices, self.neg_axes_slices)


class _StaticExpand(torch.nn.Module):
    """onnx2torch's Expand at the shape it produced on the sample (its module reads the shape tensor)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, input_tensor: torch.Tensor, *_shape: Any) -> torch.Tensor:
        return input_tensor.expand(self.shape)


class _StaticGather(torch.nn.Module):
    """onnx2torch's Gather with constant indices as numbers: its module indexes with a 0-d tensor,
    which torch.export turns into a data-dependent integer it can't bound."""

    def __init__(self, axis: int, indices: list[int], shape: tuple[int, ...]) -> None:
        super().__init__()
        self.axis, self.indices, self.shape = axis, indices, shape

    def forward(self, input_tensor: torch.Tensor, *_indices: Any) -> torch.Tensor:
        axis = self.axis % input_tensor.dim()
        size = input_tensor.shape[axis]
        wanted = [index % size for index in self.indices]
        picked = torch.index_select(input_tensor, axis, torch.tensor(wanted, dtype=torch.long))
        return picked.reshape(self.shape)


class _Folded(torch.nn.Module):
    """A node computed only from constants and tensor shapes, as the value it had on the sample (the
    program is exported at the sample's shapes): a shape computation torch.export can't trace."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("value", value.clone())

    def forward(self, *_inputs: Any) -> torch.Tensor:
        value: torch.Tensor = self.get_buffer("value")
        return value


class _Recorder(torch.fx.Interpreter):
    """Runs the module on the sample, keeping the arguments and result of the nodes asked for."""

    def __init__(self, graph_module: torch.fx.GraphModule, wanted: set[torch.fx.Node]) -> None:
        super().__init__(graph_module)
        self.wanted = wanted
        self.seen: dict[torch.fx.Node, tuple[tuple[Any, ...], Any]] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        result = super().run_node(n)
        if n in self.wanted:
            args, _ = self.fetch_args_kwargs_from_env(n)
            self.seen[n] = (tuple(args), result)
        return result


def _data_independent(graph_module: torch.fx.GraphModule, arg: Any) -> bool:
    """Whether a value is fixed once the input shapes are: computed from constants and from the
    shapes of tensors (onnx2torch's Shape), never from the inputs' values."""
    from onnx2torch.node_converters.shape import OnnxShape

    pending = [arg] if isinstance(arg, torch.fx.Node) else []
    seen: set[torch.fx.Node] = set()
    while pending:
        node = pending.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "placeholder":
            return False
        if node.op == "call_module" and isinstance(graph_module.get_submodule(str(node.target)), OnnxShape):
            continue  # a shape: fixed at the export's shapes, whatever the input's values
        pending.extend(a for a in (*node.args, *node.kwargs.values()) if isinstance(a, torch.fx.Node))
    return True


def _static_shapes(graph_module: torch.fx.GraphModule, sample: list[torch.Tensor], notes: list[str]) -> None:
    """Swap onnx2torch's Reshape, Slice and Pad modules, which read tensor values torch.export can't
    trace, for static ones where those values are fixed by the input shapes (constants, or computed
    from tensor shapes): each takes the values it was given when the module ran on the sample. The
    program is exported at those shapes. Module names stay, so each node's operators still belong to
    its ONNX node."""
    from onnx2torch.node_converters.expand import OnnxExpand
    from onnx2torch.node_converters.gather import OnnxGather
    from onnx2torch.node_converters.pad import OnnxPadDynamic, _onnx_padding_to_torch, _torch_padding_to_mode_format
    from onnx2torch.node_converters.range import OnnxRange
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.shape import OnnxShape
    from onnx2torch.node_converters.slice import OnnxSlice, _get_slices
    from onnx2torch.node_converters.squeeze import OnnxSqueezeDynamicAxes
    from onnx2torch.node_converters.unsqueeze import OnnxUnsqueezeDynamicAxes

    reshaping = (OnnxReshape, OnnxSqueezeDynamicAxes, OnnxUnsqueezeDynamicAxes)
    kinds = (*reshaping, OnnxExpand, OnnxPadDynamic, OnnxSlice, OnnxRange, OnnxGather)
    targets: set[torch.fx.Node] = set()
    folded: set[torch.fx.Node] = set()
    for node in graph_module.graph.nodes:
        if node.op != "call_module":
            continue
        module = graph_module.get_submodule(str(node.target))
        if isinstance(module, OnnxShape) or not node.args:
            continue
        if all(_data_independent(graph_module, arg) for arg in node.args) and any(
            isinstance(arg, torch.fx.Node) for arg in node.args
        ):
            # Only constants and shapes flow in: a shape computation, folded to its value.
            targets.add(node)
            folded.add(node)
        elif isinstance(module, kinds) and all(_data_independent(graph_module, arg) for arg in node.args[1:]):
            targets.add(node)
    if not targets:
        return
    recorder = _Recorder(graph_module, targets)
    with torch.no_grad():
        recorder.run(*sample)
    swapped = 0
    for node, (args, result) in recorder.seen.items():
        module = graph_module.get_submodule(str(node.target))
        values = [arg.detach().cpu().numpy() if isinstance(arg, torch.Tensor) else arg for arg in args[1:]]
        replacement: torch.nn.Module
        if node in folded:
            if not isinstance(result, torch.Tensor):
                continue
            replacement = _Folded(result)
        elif isinstance(module, reshaping):
            replacement = _StaticReshape(tuple(int(dim) for dim in result.shape))
        elif isinstance(module, OnnxExpand):
            replacement = _StaticExpand(tuple(int(dim) for dim in result.shape))
        elif isinstance(module, OnnxRange):
            replacement = _Folded(result)
        elif isinstance(module, OnnxGather):
            indices = [int(v) for v in np.asarray(values[0]).reshape(-1).tolist()]
            replacement = _StaticGather(int(module._axis), indices, tuple(int(dim) for dim in result.shape))
        elif isinstance(module, OnnxSlice):
            starts, ends, *rest = values + [None] * (4 - len(values))
            axes, steps = rest[0], rest[1]
            replacement = _StaticSlice(
                _get_slices(
                    starts,
                    ends,
                    torch.as_tensor(axes) if axes is not None else None,
                    torch.as_tensor(steps) if steps is not None else None,
                )
            )
        else:
            mode = str(module.mode)
            pads = _torch_padding_to_mode_format(_onnx_padding_to_torch([int(v) for v in values[0].tolist()]), mode)
            value = values[1] if len(values) > 1 and values[1] is not None else 0.0
            replacement = _StaticPad(mode, pads, float(np.asarray(value).reshape(-1)[0]) if np.size(value) else 0.0)
        parent, _, name = str(node.target).rpartition(".")
        setattr(graph_module.get_submodule(parent) if parent else graph_module, name, replacement)
        swapped += 1
    if swapped:
        notes.append(
            f"{swapped} onnx2torch module(s) (shape computations, Reshape, Squeeze, Unsqueeze, Expand, Slice, Pad, "
            "Gather) take their shape values as numbers, fixed at the export's input shapes: torch.export can't "
            "trace their reading of those values from tensors."
        )


class _OnnxOutputs(torch.nn.Module):
    """The onnx2torch module with the ONNX graph's outputs, in order, as a flat tuple: onnx2torch returns
    one value per distinct node producing graph outputs, a node with several outputs all of them."""

    def __init__(self, inner: torch.nn.Module, plan: list[tuple[int, int | None]], single: bool) -> None:
        super().__init__()
        self.inner = inner
        self.plan = plan  # per graph output: (position among the returned values, slot or None)
        self.single = single

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.inner(*args)
        per_node = [result] if self.single else list(result)
        return tuple(per_node[position] if slot is None else per_node[position][slot] for position, slot in self.plan)


def _torch_module(model: onnx.ModelProto, sample: list[torch.Tensor], notes: list[str]) -> torch.nn.Module:
    """onnx2torch's module, its outputs those of the ONNX graph. When onnx2torch fails, every node's
    converter is tried on its own so that all the nodes it can't take are named, not the first."""
    graph = model.graph
    producers = {name: (index, slot) for index, node in enumerate(graph.node) for slot, name in enumerate(node.output)}
    for value in graph.output:
        if value.name not in producers:
            raise _Stopped(
                "onnx2torch",
                f"The output '{value.name}' is a graph input or an initializer, which onnx2torch can't convert.",
                {},
            )
    try:
        inner = onnx2torch.convert(model)
    except Exception as exc:
        failed = _failing_converters(model)
        if not failed:
            raise _Stopped("onnx2torch", f"onnx2torch could not convert the model: {first_line(exc)}", {}) from exc
        raise _Stopped("onnx2torch", next(iter(failed.values())), failed) from exc
    try:
        _static_shapes(inner, sample, notes)
    except Exception as exc:  # the eager run on the sample: a model that fails there fails export too, and says why
        notes.append(
            f"Reshape and Pad modules were left as onnx2torch made them: the sample run failed: {first_line(exc)}"
        )
    nodes: list[int] = []
    for value in graph.output:
        index = producers[value.name][0]
        if index not in nodes:
            nodes.append(index)
    plan = [
        (
            nodes.index(producers[value.name][0]),
            producers[value.name][1] if len(graph.node[producers[value.name][0]].output) > 1 else None,
        )
        for value in graph.output
    ]
    return _OnnxOutputs(inner, plan, single=len(nodes) == 1).eval()


def _failing_converters(model: onnx.ModelProto) -> dict[int, str]:
    """Node index -> reason, for each node whose onnx2torch converter is missing or raises."""
    failed: dict[int, str] = {}
    try:
        inferred = safe_shape_inference(model)
        graph = OnnxGraph(inferred.graph)
    except Exception:
        return failed
    opsets = {entry.domain: entry.version for entry in inferred.opset_import}
    for index, onnx_node in enumerate(graph.nodes.values()):
        try:
            converter = get_converter(
                domain=onnx_node.domain,
                operation_type=onnx_node.operation_type,
                version=opsets.get(onnx_node.domain, opsets.get("", 1)),
            )
            converter(onnx_node, graph)
        except Exception as exc:
            failed[index] = _converter_reason(exc)
    return failed


def _node_of(path: str) -> int | None:
    match = _NODE_MODULE.search(path)
    return int(match.group(1)) if match else None


def _export(module: torch.nn.Module, sample: list[torch.Tensor]) -> Any:
    """torch.export's program of the module; a failure names the ONNX node whose module was running."""
    owners = {id(sub): _node_of(name) for name, sub in module.named_modules()}
    try:
        return torch.export.export(module, tuple(sample))
    except Exception as exc:
        innermost = None
        trace = exc.__traceback__
        while trace is not None:
            owner = owners.get(id(trace.tb_frame.f_locals.get("self")))
            if owner is not None:
                innermost = owner
            trace = trace.tb_next
        if innermost is None:
            innermost = _node_of(str(exc))
        reason = f"torch.export could not trace it: {type(exc).__name__}: {first_line(exc)}"
        failed = {innermost: reason} if innermost is not None else {}
        raise _Stopped("torch.export", f"torch.export could not trace the model: {first_line(exc)}", failed) from exc


def _op_name(target: Any) -> str:
    """An operator's name as "namespace.name.overload" (aten.convolution.default)."""
    op = getattr(target, "_op", target)  # an edge-dialect operator wraps the ATen one
    if isinstance(op, torch._ops.OpOverload):
        return str(op)
    return str(getattr(target, "__name__", target))


def _owner(node: Any) -> int | None:
    """The ONNX node index an FX node was traced from, by the innermost node module on its stack."""
    stack = node.meta.get("nn_module_stack") or {}
    for path, _ in reversed(list(stack.values())):
        index = _node_of(str(path))
        if index is not None:
            return index
    return None


def _ops(graph_module: Any) -> list[tuple[int | None, str]]:
    return [
        (_owner(node), _op_name(node.target))
        for node in graph_module.graph.nodes
        if node.op == "call_function" and _op_name(node.target) not in _PLUMBING
    ]


def _lower(program: Any, stage: str, node_ops: list[tuple[int | None, str]] | None = None) -> Any:
    """The program lowered with the XNNPACK partitioner; a failure names the nodes whose operator
    the message names, where it names one."""
    try:
        return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    except Exception as exc:
        text = str(exc)
        named = {match.replace("::", ".") for match in re.findall(r"\b[a-z_]+(?:::|\.)[A-Za-z0-9_]+", text)}
        failed = {}
        for index, op in node_ops or []:
            if index is not None and op.rsplit(".", 1)[0] in named:
                failed[index] = f"ExecuTorch could not lower {op}: {first_line(exc)}"
        raise _Stopped(stage, f"ExecuTorch could not lower the exported program: {first_line(exc)}", failed) from exc


def _emit(lowered: Any) -> Any:
    """The lowered program as an ExecuTorch program (memory planned, serialisable)."""
    try:
        return lowered.to_executorch()
    except Exception as exc:
        raise _Stopped("ExecuTorch's emitter", f"ExecuTorch could not emit the program: {first_line(exc)}", {}) from exc


def _delegation(graph_module: Any) -> tuple[dict[int | None, dict[str, Counter[str]]], int]:
    """Per ONNX node index (None: traced outside any node module), the operators inside XNNPACK's
    lowered modules ("delegated") and those left in the top-level graph ("portable"), and the number
    of delegated partitions. This is the walk of executorch.devtools.backend_debug.get_delegation_info,
    by node instead of by operator type (importing devtools would bring pandas for nothing)."""
    by_node: dict[int | None, dict[str, Counter[str]]] = {}
    partitions = 0
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and isinstance(getattr(graph_module, str(node.target), None), LoweredBackendModule):
            partitions += 1
            lowered = getattr(graph_module, str(node.target))
            for owner, op in _ops(lowered.original_module.graph_module):
                by_node.setdefault(owner, {"delegated": Counter(), "portable": Counter()})["delegated"][op] += 1
    for owner, op in _ops(graph_module):
        by_node.setdefault(owner, {"delegated": Counter(), "portable": Counter()})["portable"][op] += 1
    return by_node, partitions


def _missing_kernels(program: Any) -> set[str]:
    """The operators of the program that this runtime build has no kernel for ("aten.erf" style)."""
    registered = Runtime.get().operator_registry.operator_names
    missing = set()
    for plan in program.executorch_program.execution_plan:
        for operator in plan.operators:
            name = f"{operator.name}.{operator.overload}" if operator.overload else operator.name
            if name not in registered:
                missing.add(operator.name.replace("::", "."))
    return missing


def _node_statuses(
    model: onnx.ModelProto,
    labels: list[str],
    by_node: dict[int | None, dict[str, Counter[str]]],
    missing: set[str],
) -> list[dict[str, Any]]:
    nodes = []
    for index, node in enumerate(model.graph.node):
        ops = by_node.get(index, {"delegated": Counter(), "portable": Counter()})
        delegated, portable = ops["delegated"], ops["portable"]
        unkernelled = sorted(op for op in portable if op.rsplit(".", 1)[0] in missing)
        listed = ", ".join(sorted(portable))
        if unkernelled:
            status = "failed"
            reason = f"ExecuTorch's runtime has no kernel for {', '.join(unkernelled)}, which XNNPACK does not take."
        elif delegated and not portable:
            status, reason = "delegated", f"XNNPACK takes {', '.join(sorted(delegated))}."
        elif delegated:
            status = "partly_delegated"
            reason = f"XNNPACK takes {', '.join(sorted(delegated))}; ExecuTorch's portable CPU kernels run {listed}."
        elif portable:
            status, reason = "portable", f"XNNPACK does not take {listed}; ExecuTorch's portable CPU kernels run it."
        else:
            status = "no_ops"
            reason = (
                "No operator of its own is left after torch.export and lowering (folded, or fused into a neighbour)."
            )
        nodes.append(
            {
                "name": labels[index],
                "op_type": node.op_type,
                "domain": node.domain,
                "status": status,
                "reason": reason,
                "aten_ops": sorted(set(delegated) | set(portable)),
            }
        )
    return nodes


def _stopped_statuses(model: onnx.ModelProto, labels: list[str], stopped: _Stopped) -> list[dict[str, Any]]:
    first = min(stopped.failed) if stopped.failed else None
    where = f"'{labels[first]}' ({model.graph.node[first].op_type})" if first is not None else "the whole model"
    nodes = []
    for index, node in enumerate(model.graph.node):
        if index in stopped.failed:
            status, reason = "failed", stopped.failed[index]
        else:
            status = "not_reached"
            reason = f"Not known: {stopped.stage} stopped at {where} before this node could be lowered."
        nodes.append(
            {
                "name": labels[index],
                "op_type": node.op_type,
                "domain": node.domain,
                "status": status,
                "reason": reason,
                "aten_ops": [],
            }
        )
    return nodes


def _describe(exported: Any, inputs: list[dict[str, Any]], output_names: list[str]) -> dict[str, Any]:
    """The io JSON of one .pte: its method's positional inputs and outputs with their ONNX names,
    dtypes and shapes (the program's outputs are the ONNX graph's, in order: `_OnnxOutputs`)."""
    values = {node.name: node for node in exported.graph.nodes}
    outputs = []
    for name, value in zip(output_names, exported.graph_signature.user_outputs, strict=True):
        fake = values[value].meta.get("val") if value in values else None
        outputs.append(
            {
                "onnx_name": name,
                "dtype": str(fake.dtype).removeprefix("torch.") if fake is not None else None,
                "shape": [int(dim) for dim in fake.shape] if fake is not None else None,
            }
        )
    return {
        "method": METHOD,
        "inputs": [
            {"onnx_name": item["name"], "dtype": str(np.dtype(item["dtype"])), "shape": [int(d) for d in item["shape"]]}
            for item in inputs
        ],
        "outputs": outputs,
    }


def _self_check(path: Path, sample: list[torch.Tensor], description: dict[str, Any]) -> list[torch.Tensor]:
    """Load and run the written program once with ExecuTorch's runtime; raise when it can't, or when its
    outputs are not the exported program's in number and shape."""
    program = Runtime.get().load_program(path)
    method = program.load_method(METHOD)
    if method is None:
        raise RuntimeError(f"the program has no '{METHOD}' method")
    produced = list(method.execute(sample))
    expected = description["outputs"]
    if len(produced) != len(expected):
        raise RuntimeError(f"it returned {len(produced)} outputs; the exported program has {len(expected)}")
    for value, item in zip(produced, expected, strict=True):
        if item["shape"] is not None and list(value.shape) != item["shape"]:
            raise RuntimeError(f"output '{item['onnx_name']}' has shape {list(value.shape)}; expected {item['shape']}")
    return produced


def _agreement(produced: list[torch.Tensor], reference: tuple[torch.Tensor, ...], names: list[str]) -> list[str]:
    """Per output: max abs error and cosine similarity against the eager onnx2torch module."""
    parts = []
    for name, got, want in zip(names, produced, reference, strict=True):
        if not (got.is_floating_point() and want.is_floating_point()) or got.shape != want.shape:
            continue
        got64, want64 = got.detach().double().flatten(), want.detach().double().flatten()
        error = float((got64 - want64).abs().max()) if got64.numel() else 0.0
        norms = float(got64.norm() * want64.norm())
        cosine = float(got64 @ want64) / norms if norms else 1.0
        parts.append(f"{name}: max abs error {error:.3g}, cosine {cosine:.6f}")
    return parts


def _quantized(module: torch.nn.Module, sample: list[torch.Tensor], batches: list[list[torch.Tensor]]) -> Any:
    """PT2E static INT8 with ExecuTorch's XNNPACK quantizer (per-channel symmetric weights), calibrated
    on `batches`; returns the quantized module's exported program."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(module, tuple(sample)).module(), quantizer)
    with torch.no_grad():
        for batch in batches:
            prepared(*batch)
    converted = convert_pt2e(prepared)
    return torch.export.export(converted, tuple(sample))


def _counts(by_node: dict[int | None, dict[str, Counter[str]]], kind: str) -> dict[str, int]:
    total: Counter[str] = Counter()
    for ops in by_node.values():
        total.update(ops[kind])
    return dict(sorted(total.items()))


def _write(
    program: Any, path: Path, exported: Any, inputs: list[dict[str, Any]], output_names: list[str], sample: list[Any]
) -> tuple[dict[str, str], list[torch.Tensor]]:
    """Write the .pte and its io.json, after running it once; returns their paths and its outputs."""
    path.write_bytes(program.buffer)
    description = _describe(exported, inputs, output_names)
    try:
        produced = _self_check(path, sample, description)
    except Exception:
        path.unlink(missing_ok=True)
        raise
    io_path = path.with_name(path.name.removesuffix(".pte") + ".io.json")
    io_path.write_text(json.dumps(description, indent=1))
    return {"path": str(path.resolve()), "io": str(io_path.resolve())}, produced


def convert(request: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    wanted = [precision for precision in PRECISIONS if precision in (request.get("variants") or ["fp32"])]
    unknown = sorted(set(request.get("variants") or []) - set(PRECISIONS))
    if unknown:
        raise Refused("bad_request", f"Unknown variants {unknown}; known: {list(PRECISIONS)}.")
    try:
        onnx_path = Path(request["model"]["onnx"])
        out_dir = Path(request["out_dir"])
    except (KeyError, TypeError) as exc:
        raise Refused("bad_request", f"The request lacks {exc}; it needs model.onnx and out_dir.") from exc
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:
        raise Refused("invalid_model", f"The ONNX file can't be read: {first_line(exc)}.") from exc
    labels = _node_labels(model)
    notes: list[str] = []
    inputs: list[dict[str, Any]] = list(request.get("inputs") or [])
    model = _prepared(model, inputs, notes)
    by_name = {item["name"]: item for item in inputs}
    inputs = [by_name[value.name] for value in _graph_inputs(model)]  # the program's positional order
    output_names = [value.name for value in model.graph.output]
    calibration = None
    if "int8" in wanted and request.get("calibration"):
        calibration = _calibration(str(request["calibration"]), inputs)
    answer: dict[str, Any] = {
        "converted": False,
        "nodes": [],
        "delegation": {"partitions": 0, "delegated": {}, "not_delegated": {}},
        "variants": {},
        "notes": notes,
        "converter": CONVERTER,
        "converter_version": _version(executorch, "executorch"),
        "tool_versions": {
            "executorch": _version(executorch, "executorch"),
            "torch": torch.__version__,
            "onnx2torch": _version(onnx2torch, "onnx2torch"),
            "torchao": _version(torchao, "torchao"),
            "onnx": onnx.__version__,
            "numpy": np.__version__,
        },
    }
    sample = _sample(inputs, calibration)
    try:
        module = _torch_module(model, sample, notes)
        exported = _export(module, sample)
        lowered = _lower(exported, "ExecuTorch's lowering", _ops(exported.graph_module))
        by_node, partitions = _delegation(lowered.exported_program().graph_module)
        fp32_program = _emit(lowered)
        missing = _missing_kernels(fp32_program)
    except _Stopped as stopped:
        answer["nodes"] = _stopped_statuses(model, labels, stopped)
        answer["error"] = stopped.error
        answer["seconds"] = round(time.monotonic() - started, 2)
        return answer
    answer["nodes"] = _node_statuses(model, labels, by_node, missing)
    answer["delegation"] = {
        "partitions": partitions,
        "delegated": _counts(by_node, "delegated"),
        "not_delegated": _counts(by_node, "portable"),
    }
    unattributed = sum(sum(ops.values()) for ops in by_node.get(None, {}).values())
    if unattributed:
        notes.append(
            f"{unattributed} operator(s) were added by export or lowering outside any ONNX node (layout and copy "
            "operators); they are counted in the totals but in no node."
        )
    if missing:
        answer["error"] = f"ExecuTorch's runtime has no kernel for {', '.join(sorted(missing))}."
        answer["seconds"] = round(time.monotonic() - started, 2)
        return answer
    answer["converted"] = True
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        reference = module(*sample)
    if "fp32" in wanted:
        try:
            files, produced = _write(fp32_program, out_dir / "model.fp32.pte", exported, inputs, output_names, sample)
        except Exception as exc:
            answer["variants"]["fp32"] = {
                "error": f"ExecuTorch's runtime could not run the FP32 program: {type(exc).__name__}: {first_line(exc)}"
            }
        else:
            agreement = _agreement(produced, reference, output_names)
            delegation = answer["delegation"]
            answer["variants"]["fp32"] = {
                **files,
                "notes": [
                    f"FP32 with the XNNPACK delegate: {sum(delegation['delegated'].values())} operator(s) delegated in "
                    f"{partitions} partition(s), {sum(delegation['not_delegated'].values())} on ExecuTorch's portable "
                    "CPU kernels."
                ]
                + ([f"Self-check against the eager PyTorch module: {'; '.join(agreement)}."] if agreement else []),
            }
    if "int8" in wanted:
        answer["variants"]["int8"] = _int8(module, sample, calibration, inputs, output_names, out_dir, reference)
    answer["seconds"] = round(time.monotonic() - started, 2)
    return answer


def _int8(
    module: torch.nn.Module,
    sample: list[torch.Tensor],
    calibration: dict[str, np.ndarray] | None,
    inputs: list[dict[str, Any]],
    output_names: list[str],
    out_dir: Path,
    reference: tuple[torch.Tensor, ...],
) -> dict[str, Any]:
    if calibration is None:
        return {"error": "INT8 needs calibration data (an .npz, one array per input) to set its activation scales."}
    batches = _calibration_batches(calibration, inputs)
    stage = "PT2E quantization"
    try:
        exported = _quantized(module, sample, batches)
        stage = "ExecuTorch's lowering"
        lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        by_node, partitions = _delegation(lowered.exported_program().graph_module)
        program = lowered.to_executorch()
        stage = "ExecuTorch's runtime"
        files, produced = _write(program, out_dir / "model.int8.pte", exported, inputs, output_names, sample)
    except Exception as exc:
        return {"error": f"{stage} failed on the INT8 program: {type(exc).__name__}: {first_line(exc)}"}
    delegated, portable = _counts(by_node, "delegated"), _counts(by_node, "portable")
    quantized_portable = sorted(op for op in portable if not op.startswith(_QUANT_PREFIX))
    agreement = _agreement(produced, reference, output_names)
    notes = [
        "Static INT8 by PT2E (torchao's prepare_pt2e/convert_pt2e) with ExecuTorch's XNNPACK quantizer: per-channel "
        f"symmetric INT8 weights, INT8 activations calibrated on {len(batches)} sample set(s) fed as given (no "
        f"normalisation); XNNPACK takes {sum(delegated.values())} operator(s), quantize/dequantize included, in "
        f"{partitions} partition(s), "
        f"{sum(portable.values())} run on portable kernels"
        + (f" ({', '.join(quantized_portable)} in float)" if quantized_portable else "")
        + "."
    ]
    if agreement:
        notes.append(f"Self-check against the eager FP32 PyTorch module: {'; '.join(agreement)}.")
    return {**files, "notes": notes}


if __name__ == "__main__":
    sys.exit(serve({"convert": convert}))
