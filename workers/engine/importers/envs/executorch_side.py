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
    for index, node in enumerate(model.graph.node):
        node.name = f"{_PREFIX}{index}"
    return model


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


def _torch_module(model: onnx.ModelProto) -> torch.nn.Module:
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
        module = _torch_module(model)
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
