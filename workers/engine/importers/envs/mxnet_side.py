"""MXNet's side: convert a symbol and its params to ONNX with MXNet's own exporter, and run the original.

Runs in the MXNet environment (MXNet 1.9.1 needs numpy < 1.24), as
`<env>/bin/python -s -m workers.engine.importers.envs.mxnet_side REQUEST RESULT`; see protocol.py.
The model's roles are "symbol" (`*-symbol.json`) and "params" (`*.params`), the pair that
`HybridBlock.export` and `Module.save_checkpoint` write.

Why it is built the way it is:
- An MXNet symbol records no input shapes, so they come from the user's declaration, or from
  a `__shape__` attribute that `mx.sym.var(..., shape=...)` leaves on the input; never guessed.
- The exporter's own failure on a params file of another network is an assertion deep in
  shape inference, so the params are checked against the symbol first, by name and shape.
- `mx.onnx.export_model` stamps the newest opset the installed onnx knows (19 for onnx 1.14) on
  a graph built with translations written for opsets 12 and 13 (ReduceMean with an `axes`
  attribute, for one, is invalid from opset 18), and it keeps every weight as a graph input.
  So this side calls the graph builder that export_model wraps (`MXNetGraph`), with the opset
  its translations target, stamps that opset, and drops the weights from the graph inputs.
  A newer opset that is asked for is reached with onnx's version converter.
- The side runs in a sandbox where HOME is not writable and nothing is reachable: MXNET_HOME
  (model zoo and dataset caches) is pointed at the working directory before mxnet is imported.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path
from typing import Any

# Before importing mxnet: its caches default to ~/.mxnet, and HOME is read-only in the sandbox.
os.environ.setdefault("MXNET_HOME", str(Path.cwd() / ".mxnet"))

import mxnet as mx
import numpy as np
import onnx
from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

from workers.engine.importers.envs.protocol import Refused, first_line, serve

CONVERTER = "mxnet.onnx"
METHOD = "mxnet.onnx MXNetGraph.create_onnx_graph_proto"
LOWEST_OPSET = 12  # the exporter has no translations below opset 12
# The newest opset the exporter has translations for (13 in MXNet 1.9.1).
NATIVE_OPSET = max(MXNetGraph.registry_)
# Names of the parameter variables that Gluon and the Module API create, for telling a weight
# the params file lacks from a data input the user has to declare.
_PARAM_SUFFIXES = (
    "_weight",
    "_bias",
    "_gamma",
    "_beta",
    "_running_mean",
    "_running_var",
    "_moving_mean",
    "_moving_var",
    "_alpha",
    "_parameters",
)
_DECLARE_HOW = (
    "Declare it at upload, in the upload form's input signature or with the CLI's --inputs, e.g. "
    '--inputs \'[{"name": "%s", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]\', with the '
    "shape the network was trained on."
)
_PAIR_ADVICE = (
    "Upload the .params file saved together with this -symbol.json (HybridBlock.export or "
    "Module.save_checkpoint write them as a pair)."
)


def _versions() -> dict[str, str]:
    import google.protobuf

    return {
        "mxnet": str(mx.__version__),
        "onnx": str(onnx.__version__),
        "numpy": str(np.__version__),
        "protobuf": str(google.protobuf.__version__),
    }


def _shape_text(shape: tuple[int, ...] | list[Any]) -> str:
    """(8, ?, 3, 3): MXNet's legacy shape inference writes an unknown dim as 0."""
    dims = ["?" if dim == 0 else str(dim) for dim in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _dims_text(shape: tuple[Any, ...] | list[Any]) -> str:
    return "x".join(str(dim) for dim in shape)


# --- loading --------------------------------------------------------------------------------


def _load_symbol(path: Path) -> tuple[Any, dict[str, Any]]:
    """The symbol and its JSON document. Refuses "invalid_model" when it isn't an MXNet symbol."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise Refused(
            "invalid_model",
            f"{path.name} is not an MXNet symbol file: it is not JSON ({first_line(exc)}). Upload the "
            "-symbol.json that HybridBlock.export or Module.save_checkpoint wrote.",
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("nodes"), list) or "heads" not in document:
        raise Refused(
            "invalid_model",
            f"{path.name} is JSON but not an MXNet symbol (it has no 'nodes' and 'heads'). Upload the "
            "-symbol.json that HybridBlock.export or Module.save_checkpoint wrote.",
        )
    try:
        symbol = mx.sym.load(str(path))
    except mx.base.MXNetError as exc:
        version = document.get("attrs", {}).get("mxnet_version", [None, None])[-1]
        newer = (
            f" It was saved by MXNet {version // 10000}.{version // 100 % 100}, newer than this worker's "
            f"{mx.__version__}."
            if isinstance(version, int) and version >= 20000
            else ""
        )
        raise Refused(
            "invalid_model",
            f"MXNet {mx.__version__} can't read the symbol {path.name}: {_mxnet_message(exc)}.{newer} Save it "
            "with MXNet 1.x (HybridBlock.export) and upload it again.",
        ) from None
    return symbol, document


def _load_params(path: Path) -> dict[str, Any]:
    """The params by the names the symbol uses: export() and save_checkpoint() prefix them with
    'arg:' and 'aux:'. Refuses "invalid_model" when the file isn't an MXNet params file."""
    try:
        loaded = mx.nd.load(str(path))
    except mx.base.MXNetError as exc:
        raise Refused(
            "invalid_model",
            f"{path.name} is not an MXNet params file MXNet {mx.__version__} can read: {_mxnet_message(exc)}. "
            f"{_PAIR_ADVICE}",
        ) from None
    if not isinstance(loaded, dict):
        raise Refused(
            "invalid_model",
            f"{path.name} holds {len(loaded)} unnamed arrays, not named parameters, so they can't be matched to the "
            f"symbol. {_PAIR_ADVICE}",
        )
    params: dict[str, Any] = {}
    for key, value in loaded.items():
        name = key.split(":", 1)[1] if key.startswith(("arg:", "aux:")) else key
        params[name] = value
    return params


def _mxnet_message(exc: BaseException) -> str:
    """MXNet's errors carry a C++ stack trace; the line that says what is wrong is the last one
    that starts with 'MXNetError:' or else the first."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("MXNetError:"):
            return line.removeprefix("MXNetError:").strip()[:500]
    return first_line(exc)


def _output_label(symbol: Any) -> str:
    """The training label the exporter drops (e.g. 'softmax_label' of a SoftmaxOutput): the name
    of the symbol's last node plus '_label', as MXNetGraph derives it."""
    internals = symbol.get_internals()
    return str(internals[len(internals) - 1].name) + "_label"


# --- checks ---------------------------------------------------------------------------------


def _data_inputs(symbol: Any, params: dict[str, Any], declared: set[str]) -> list[str]:
    """The symbol's inputs that the params file doesn't hold, in the exporter's order, after
    refusing "weights_mismatch" when some of them are weights or aux states the file lacks."""
    label = _output_label(symbol)
    unfilled = [name for name in symbol.list_arguments() if name not in params and name != label]
    missing = [name for name in unfilled if name not in declared and name.endswith(_PARAM_SUFFIXES)]
    missing += [name for name in symbol.list_auxiliary_states() if name not in params]
    if missing:
        needed = [*symbol.list_arguments(), *symbol.list_auxiliary_states()]
        known = [name for name in needed if name in params]
        found = sorted(params)
        if not known and found:
            what = (
                f"none of the symbol's parameters (e.g. '{missing[0]}') are in the params file, which holds "
                f"{', '.join(repr(name) for name in found[:3])}{' and more' if len(found) > 3 else ''}: it belongs "
                "to another network, or was written by save_parameters, which names parameters differently"
            )
        else:
            shown = ", ".join(f"'{name}'" for name in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            what = f"the params file lacks the parameter(s) {shown}{more} that the symbol needs"
        raise Refused("weights_mismatch", f"The params don't belong to this symbol: {what}. {_PAIR_ADVICE}")
    return [name for name in symbol.list_inputs() if name not in params and name != label]


def _mismatches(symbol: Any, params: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """A line for each parameter whose shape disagrees with what MXNet's shape inference derives
    from the symbol alone (and from `shapes`, data shapes, if given), naming both shapes.
    Unknown dims (0) are not compared."""
    arg_shapes, _, aux_shapes = symbol.infer_shape_partial(**shapes)
    names = [*symbol.list_arguments(), *symbol.list_auxiliary_states()]
    problems = []
    for name, expected in zip(names, [*(arg_shapes or []), *(aux_shapes or [])], strict=False):
        if name not in params or not expected:
            continue
        found = tuple(params[name].shape)
        if len(found) != len(expected) or any(
            want not in (0, have) for want, have in zip(expected, found, strict=True)
        ):
            problems.append(f"'{name}' should be {_shape_text(expected)} but the file holds {_shape_text(found)}")
    return problems


def _check_weights(symbol: Any, params: dict[str, Any]) -> None:
    """Refuse "weights_mismatch" when a parameter's shape contradicts the symbol's layers (e.g. a
    convolution's num_filter), which needs no input shape."""
    try:
        problems = _mismatches(symbol, params, {})
    except mx.base.MXNetError as exc:
        raise Refused(
            "invalid_model",
            f"MXNet can't infer the shapes of the symbol's parameters: {_mxnet_message(exc)}.",
        ) from None
    if problems:
        raise Refused("weights_mismatch", _mismatch_message(problems, ""))


def _mismatch_message(problems: list[str], declared: str) -> str:
    shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
    if declared:
        return (
            f"With the declared input shape(s) {declared}, the params don't fit the symbol: {shown}. Check the "
            f"declared shapes (channels, size); if they are right, the params belong to another network. "
            f"{_PAIR_ADVICE}"
        )
    return f"The params don't belong to this symbol: {shown}. {_PAIR_ADVICE}"


def _check_operators(document: dict[str, Any], opset: int) -> None:
    """Refuse "unsupported_operator" naming every node whose op MXNet's exporter has no
    translation for, before the exporter stops at the first with 'No conversion function
    registered for op type X yet.'"""
    supported = set(mx.onnx.get_operator_support(opset)) | {"null"}
    unsupported: dict[str, list[str]] = {}
    for node in document["nodes"]:
        op = str(node.get("op", ""))
        if op not in supported:
            unsupported.setdefault(op, []).append(str(node.get("name", "?")))
    if unsupported:
        parts = [
            f"{op} (node{'s' if len(nodes) > 1 else ''} {', '.join(repr(n) for n in nodes[:3])}"
            f"{' and more' if len(nodes) > 3 else ''})"
            for op, nodes in unsupported.items()
        ]
        raise Refused(
            "unsupported_operator",
            f"MXNet {mx.__version__}'s ONNX exporter has no translation for the operator(s) {'; '.join(parts)}. "
            "Replace them in the network with operators ONNX export supports (see mx.onnx.get_operator_support()), "
            "or export the model from another framework.",
        )


def _shape_hint(symbol: Any, name: str) -> tuple[list[int], str] | None:
    """The shape and dtype `mx.sym.var(name, shape=..., dtype=...)` recorded on an input."""
    attrs = symbol.attr_dict().get(name, {})
    text = attrs.get("__shape__")
    if not text:
        return None
    try:
        shape = [int(dim) for dim in ast.literal_eval(text)]
    except (ValueError, SyntaxError, TypeError):
        return None
    dtype = "float32"
    code = attrs.get("__dtype__")
    if code is not None:
        from mxnet.ndarray.ndarray import _DTYPE_MX_TO_NP

        mapped = _DTYPE_MX_TO_NP.get(int(code)) if code.lstrip("-").isdigit() else None
        if mapped is not None:
            dtype = np.dtype(mapped).name
    return shape, dtype


class _Input:
    """A data input: the concrete shape to infer with, the ONNX shape (a str for a dynamic dim)."""

    def __init__(self, name: str, concrete: tuple[int, ...], onnx_shape: list[int | str], dtype: str):
        self.name, self.concrete, self.onnx_shape, self.dtype = name, concrete, onnx_shape, dtype


def _resolve_inputs(
    symbol: Any, data: list[str], declared: list[dict[str, Any]], assumptions: list[str]
) -> list[_Input]:
    """Each data input's shape and dtype, from the declaration or the symbol's shape hint.
    A symbolic dim (str or null) is allowed first only (the batch), inferred at size 1; other
    dims must be concrete because MXNet infers every layer's shape from them."""
    by_name = {str(entry["name"]): entry for entry in declared}
    extra = [name for name in by_name if name not in data]
    if extra:
        raise Refused(
            "input_mismatch",
            f"The declared input(s) {', '.join(repr(n) for n in extra)} are not inputs of the symbol, whose inputs "
            f"are {', '.join(repr(n) for n in data)}. Declare the symbol's input names.",
        )
    inputs: list[_Input] = []
    lacking: list[str] = []
    for name in data:
        entry = by_name.get(name)
        if entry is not None:
            raw: list[Any] = list(entry.get("shape") or [])
            dtype = str(entry.get("dtype") or "float32")
            source = "declared"
        else:
            hint = _shape_hint(symbol, name)
            if hint is None:
                lacking.append(name)
                continue
            raw = [dim if dim > 0 else None for dim in hint[0]]
            dtype = hint[1]
            source = "hint"
            assumptions.append(
                f"The shape of input '{name}' ({_dims_text(hint[0])}, {dtype}) was taken from the __shape__ "
                "attribute the symbol records for it."
            )
        try:
            dtype = np.dtype(dtype).name
        except TypeError:
            raise Refused("input_mismatch", f"Input '{name}' is declared with the unknown dtype {dtype!r}.") from None
        if not raw:
            raise Refused("inputs_required", f"Input '{name}' has no shape. " + _DECLARE_HOW % name)
        concrete: list[int] = []
        onnx_shape: list[int | str] = []
        for index, dim in enumerate(raw):
            if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0:
                concrete.append(dim)
                onnx_shape.append(dim)
            elif index == 0 and (dim is None or isinstance(dim, str)):
                concrete.append(1)
                onnx_shape.append(dim if isinstance(dim, str) and dim else "batch")
            else:
                where = "declared" if source == "declared" else "recorded in the symbol's __shape__ as"
                raise Refused(
                    "inputs_required",
                    f"Input '{name}' is {where} {raw}, but MXNet infers every layer's shape from the input's, so "
                    "only its first dim (the batch) may vary: give the other dims as sizes. " + _DECLARE_HOW % name,
                )
        inputs.append(_Input(name, tuple(concrete), onnx_shape, dtype))
    if lacking:
        names = ", ".join(repr(n) for n in lacking)
        raise Refused(
            "inputs_required",
            f"An MXNet symbol does not record its input shapes, and none was declared for {names}. "
            + _DECLARE_HOW % lacking[0],
        )
    return inputs


def _check_declared(symbol: Any, params: dict[str, Any], inputs: list[_Input]) -> None:
    """The weights against the input shapes: a mismatch found only now involves the declared
    shape, most often a wrong channel count (first layer: "input_mismatch")."""
    shapes = {item.name: item.concrete for item in inputs}
    declared = ", ".join(f"{item.name}: {_dims_text(item.concrete)}" for item in inputs)
    try:
        problems = _mismatches(symbol, params, shapes)
        if not problems:
            symbol.infer_shape(**shapes, **{name: tuple(value.shape) for name, value in params.items()})
    except mx.base.MXNetError as exc:
        raise Refused(
            "input_mismatch",
            f"The symbol can't take the input shape(s) {declared}: {_mxnet_message(exc)}. Check the declared shapes.",
        ) from None
    if not problems:
        return
    first_layer: set[str] = set()
    nodes = json.loads(symbol.tojson())["nodes"]
    data_ids = {index for index, node in enumerate(nodes) if node["name"] in shapes}
    for node in nodes:
        ids = [entry[0] for entry in node.get("inputs", [])]
        if data_ids.intersection(ids):
            first_layer.update(nodes[i]["name"] for i in ids if i not in data_ids)
    named = [problem.split("'")[1] for problem in problems]
    code = "input_mismatch" if set(named) <= first_layer else "weights_mismatch"
    raise Refused(code, _mismatch_message(problems, declared))


def _batch_is_free(symbol: Any, params: dict[str, Any], inputs: list[_Input]) -> bool:
    """Whether the network takes another batch size (n+1) too, by MXNet's shape inference plus
    a check it lacks: a Reshape to a fixed size passes its inference at any batch (and running
    it then overruns a buffer). Only then is the ONNX batch dim left dynamic."""
    shapes = {item.name: (item.concrete[0] + 1, *item.concrete[1:]) for item in inputs if item.concrete}
    if len(shapes) != len(inputs):
        return False
    shapes.update({name: tuple(value.shape) for name, value in params.items()})
    try:
        return not _reshape_problems(symbol, shapes)
    except mx.base.MXNetError:
        return False


_RESHAPES = frozenset({"Reshape", "reshape", "_np_reshape", "_npx_reshape"})


def _reshape_problems(symbol: Any, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Reshape nodes whose input and output element counts differ at `shapes`. MXNet's shape
    inference doesn't check this, and its executor then writes out of bounds. Raises MXNetError
    when the shapes don't fit the symbol at all."""
    arg_shapes, _, _ = symbol.infer_shape(**shapes)
    if arg_shapes is None:
        raise mx.base.MXNetError("the shapes can't be inferred from the inputs")
    internals = symbol.get_internals()
    table = dict(zip(internals.list_outputs(), internals.infer_shape(**shapes)[1], strict=True))
    problems = []
    for node in json.loads(symbol.tojson())["nodes"]:
        if node["op"] not in _RESHAPES:
            continue
        output = f"{node['name']}_output"
        source = internals[output].get_children().list_outputs()[0]
        before, after = table.get(source), table.get(output)
        if before is not None and after is not None and int(np.prod(before)) != int(np.prod(after)):
            problems.append(f"{node['op']} '{node['name']}' turns {_shape_text(before)} into {_shape_text(after)}")
    return problems


def _forward(symbol: Any, params: dict[str, Any], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The symbol's outputs on `feeds` with MXNet's CPU executor, in inference mode."""
    arguments = symbol.list_arguments()
    param_shapes = {name: tuple(value.shape) for name, value in params.items() if name in arguments}
    try:
        arg_shapes, _, _ = symbol.infer_shape(**{name: value.shape for name, value in feeds.items()}, **param_shapes)
    except mx.base.MXNetError as exc:
        raise Refused("input_mismatch", f"MXNet can't run the model on these inputs: {_mxnet_message(exc)}.") from None
    if arg_shapes is None:
        raise Refused("input_mismatch", "MXNet can't infer the model's shapes from these inputs.")
    problems = _reshape_problems(symbol, {name: value.shape for name, value in feeds.items()} | param_shapes)
    if problems:
        raise Refused(
            "input_mismatch",
            f"The model can't take inputs of these shapes: {'; '.join(problems)} (the element counts differ).",
        )
    ctx = mx.cpu()
    args = {}
    for name, shape in zip(arguments, arg_shapes, strict=True):
        if name in feeds:
            args[name] = mx.nd.array(feeds[name], ctx=ctx, dtype=feeds[name].dtype)
        elif name in params:
            args[name] = params[name].as_in_context(ctx)
        else:  # the training label (e.g. softmax_label), which inference doesn't read
            args[name] = mx.nd.zeros(shape, ctx=ctx)
    aux = {name: params[name].as_in_context(ctx) for name in symbol.list_auxiliary_states()}
    executor = symbol.bind(ctx, args=args, aux_states=aux, grad_req="null")
    return [output.asnumpy() for output in executor.forward(is_train=False)]


# --- convert --------------------------------------------------------------------------------


def _target_opset(requested: Any, notes: list[str]) -> int:
    newest = onnx.defs.onnx_opset_version()
    if requested is None:
        notes.append(f"Opset {NATIVE_OPSET}: the newest that MXNet {mx.__version__}'s exporter has translations for.")
        return NATIVE_OPSET
    opset = int(requested)
    if opset < LOWEST_OPSET or opset > newest:
        raise Refused(
            "unsupported_opset",
            f"MXNet's ONNX exporter translates to opsets {LOWEST_OPSET} to {NATIVE_OPSET} (Slipway can upgrade its "
            f"result up to opset {newest}); opset {opset} can't be produced. Ask for an opset from {LOWEST_OPSET} "
            f"to {newest}, or none for {NATIVE_OPSET}.",
        )
    return opset


def _failing_node(exc: BaseException) -> dict[str, Any] | None:
    """The MXNet node the exporter was translating when `exc` was raised, from the traceback
    (MXNetGraph.convert_layer holds it), for naming the node and op in the refusal."""
    tb = exc.__traceback__
    node = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "convert_layer" and isinstance(frame.f_locals.get("node"), dict):
            node = frame.f_locals["node"]
        tb = tb.tb_next
    return node


def _names_read(graph: onnx.GraphProto) -> set[str]:
    """Every value name a node of `graph` or of its subgraphs reads, and the graph's outputs."""
    names = {value.name for value in graph.output}
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs] if attribute.HasField("g") else attribute.graphs:
                names.update(_names_read(subgraph))
    return names


def _fix_gammas(symbol: Any, params: dict[str, Any], notes: list[str]) -> None:
    """Give the exporter ones for the gamma of each BatchNorm with fix_gamma, as MXNet computes
    it: the exporter ignores fix_gamma (True unless the symbol says otherwise; Gluon writes
    False), so a gamma the file holds other than ones would otherwise scale the ONNX output."""
    nodes = json.loads(symbol.tojson())["nodes"]
    fixed = []
    for node in nodes:
        if node["op"] != "BatchNorm" or len(node["inputs"]) < 2:
            continue
        if str(node.get("attrs", {}).get("fix_gamma", "True")).lower() not in ("true", "1"):
            continue
        gamma = nodes[node["inputs"][1][0]]["name"]
        if gamma in params and not bool((params[gamma] == 1).min().asscalar()):
            params[gamma] = mx.nd.ones_like(params[gamma])
            fixed.append(f"'{node['name']}'")
    if fixed:
        notes.append(
            f"BatchNorm {', '.join(fixed[:5])}{' and more' if len(fixed) > 5 else ''} fix gamma to 1 (fix_gamma), as "
            "MXNet computes them; the params file's gamma values, which MXNet ignores there, were not exported."
        )


def _export(
    symbol: Any, params: dict[str, Any], inputs: list[_Input], opset: int, dynamic: bool, notes: list[str]
) -> onnx.ModelProto:
    """MXNet's exporter, as export_model runs it, with the opset stamped that it translated for."""
    in_shapes = [item.concrete for item in inputs]
    in_types = [onnx.helper.np_dtype_to_tensor_dtype(np.dtype(item.dtype)) for item in inputs]
    dynamic_shapes = [tuple(None if isinstance(d, str) else d for d in item.onnx_shape) for item in inputs]
    exported = dict(params)
    _fix_gammas(symbol, exported, notes)
    label = _output_label(symbol)
    if label in symbol.list_arguments() and label not in params:
        # MXNet 1.9.1's exporter skips the training label's node without keeping its place in
        # its table of node outputs, so the loss layer reading it (SoftmaxOutput, say) fails
        # with "list index out of range". Given as a weight, the label becomes an initializer
        # that no node reads, removed below.
        shapes = {item.name: item.concrete for item in inputs}
        arg_shapes, _, _ = symbol.infer_shape(**shapes, **{name: tuple(v.shape) for name, v in params.items()})
        exported[label] = mx.nd.zeros(dict(zip(symbol.list_arguments(), arg_shapes, strict=True))[label])
    # The exporter checks its graph against onnx's newest opset (DEFAULT_CONTEXT), against which
    # its opset-12/13 translations fail (ReduceMean's `axes` attribute is gone from opset 18):
    # let the check use the opset the graph is built for.
    context = onnx.checker.DEFAULT_CONTEXT
    checked_opsets = context.opset_imports
    context.opset_imports = {"": opset}
    try:
        graph = MXNetGraph().create_onnx_graph_proto(
            symbol,
            exported,
            in_shapes,
            in_types,
            opset_version=opset,
            dynamic=dynamic,
            dynamic_input_shapes=dynamic_shapes if dynamic else None,
        )
    except Exception as exc:
        node = _failing_node(exc)
        if node is None:
            raise
        raise Refused(
            "unsupported_operator",
            f"MXNet {mx.__version__}'s ONNX exporter can't convert node '{node.get('name')}' ({node.get('op')} with "
            f"{json.dumps(node.get('attrs', {}))}): {first_line(exc)}. Change that layer to a form ONNX export "
            "supports, or export the model from another framework.",
        ) from None
    finally:
        context.opset_imports = checked_opsets
    # The exporter lists every weight as a graph input too (ONNX IR < 4 needed that); without
    # them a runtime sees only the data inputs and may fold the weights as constants.
    weights = {tensor.name for tensor in graph.initializer}
    kept = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(kept)
    # Some translations (softmax's, the label above) leave initializers no node reads.
    read = _names_read(graph)
    used = [tensor for tensor in graph.initializer if tensor.name in read]
    del graph.initializer[:]
    graph.initializer.extend(used)
    for value, item in zip(graph.input, inputs, strict=True):
        if value.name != item.name:
            raise RuntimeError(f"the exporter ordered the inputs {[v.name for v in graph.input]}, not as declared")
        if dynamic:
            for dim, want in zip(value.type.tensor_type.shape.dim, item.onnx_shape, strict=True):
                if isinstance(want, str):
                    dim.dim_param = want
    opsets = [onnx.helper.make_opsetid("", opset)]
    return onnx.helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=onnx.helper.find_min_ir_version_for(opsets),
        producer_name="mxnet",
        producer_version=str(mx.__version__),
    )


def _save(model: onnx.ModelProto, out_dir: Path) -> Path:
    """model.onnx, its weights in model.onnx.data beside it when over protobuf's 2 GiB limit;
    checked with the full checker (shape inference included) either way."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    if model.ByteSize() > 2**31 - 2**26:
        onnx.save_model(model, str(path), save_as_external_data=True, location="model.onnx.data")
        onnx.checker.check_model(str(path), full_check=True)
    else:
        onnx.save_model(model, str(path))
        onnx.checker.check_model(model, full_check=True)
    return path


def convert(request: dict[str, Any]) -> dict[str, Any]:
    """Check the pair, resolve the input shapes, export, check, and describe the ONNX model."""
    notes: list[str] = []
    assumptions: list[str] = []
    symbol, document = _load_symbol(Path(request["model"]["symbol"]))
    params = _load_params(Path(request["model"]["params"]))
    declared = list(request.get("inputs") or [])
    data = _data_inputs(symbol, params, {str(entry["name"]) for entry in declared})
    if not data:
        raise Refused("invalid_model", "The symbol takes no data input: every input it has is a parameter.")
    _check_weights(symbol, params)
    opset = _target_opset(request.get("opset"), notes)
    export_opset = min(opset, NATIVE_OPSET)
    _check_operators(document, export_opset)
    inputs = _resolve_inputs(symbol, data, declared, assumptions)
    _check_declared(symbol, params, inputs)
    used = {*symbol.list_arguments(), *symbol.list_auxiliary_states()}
    unused = sorted(name for name in params if name not in used)
    if unused:
        notes.append(f"The params file holds {len(unused)} parameter(s) the symbol doesn't use (e.g. '{unused[0]}').")

    dynamic = _batch_is_free(symbol, params, inputs)
    for item in inputs:
        if not dynamic:
            item.onnx_shape = list(item.concrete)
        elif not isinstance(item.onnx_shape[0], str):
            assumptions.append(
                f"The first dim of input '{item.name}', given as {item.onnx_shape[0]}, is taken as the batch and "
                "exported as the dynamic dim 'batch'."
            )
            item.onnx_shape[0] = "batch"
    model = _export(symbol, params, inputs, export_opset, dynamic, notes)
    if opset != export_opset:
        try:
            model = onnx.version_converter.convert_version(model, opset)
            model.ir_version = max(model.ir_version, onnx.helper.find_min_ir_version_for(list(model.opset_import)))
        except Exception as exc:
            raise Refused(
                "unsupported_opset",
                f"MXNet's exporter wrote opset {export_opset}, and onnx {onnx.__version__} could not upgrade the "
                f"model to opset {opset}: {first_line(exc)}. Ask for opset {export_opset}.",
            ) from None
        notes.append(
            f"Exported at opset {export_opset} (the newest MXNet's exporter translates to) and upgraded to opset "
            f"{opset} with onnx {onnx.__version__}'s version converter."
        )
    batch_dims = sorted({str(item.onnx_shape[0]) for item in inputs if isinstance(item.onnx_shape[0], str)})
    if dynamic:
        notes.append(
            f"The batch dim is dynamic ({', '.join(batch_dims)}): MXNet's shape inference accepts "
            "another batch size, and the exporter translated shape-dependent layers with Shape ops."
        )
    else:
        notes.append(
            "The input shapes are fixed as declared: MXNet's own shape inference rejects another batch size "
            "(a layer such as Reshape fixes it)."
        )
    path = _save(model, Path(request["out_dir"]))

    graph_inputs = {value.name: value for value in model.graph.input}
    answer_inputs = []
    for item in inputs:
        dims = graph_inputs[item.name].type.tensor_type.shape.dim
        shape = [dim.dim_param if dim.HasField("dim_param") else int(dim.dim_value) for dim in dims]
        answer_inputs.append({"name": item.name, "shape": shape, "dtype": item.dtype})
    return {
        "onnx": str(path),
        "inputs": answer_inputs,
        "outputs": [value.name for value in model.graph.output],
        "framework": "mxnet",
        "framework_version": str(mx.__version__),
        "converter": CONVERTER,
        "converter_version": str(mx.__version__),
        "method": METHOD,
        "notes": notes,
        "assumptions": assumptions,
        "tool_versions": _versions(),
    }


# --- run --------------------------------------------------------------------------------------


def _onnx_output_name(name: str) -> str:
    """The name MXNetGraph gives the ONNX output for an MXNet output (it drops '_output')."""
    for suffix, replacement in (("_state_output", "1"), ("_statecell_output", "2")):
        if name.endswith(suffix):
            return name[: -len(suffix)] + replacement
    if name.endswith("_output"):
        return name[: -len("_output")]
    if len(name) > len("_output0") and name[-len("_output0") : -1] == "_output" and name[-1].isdigit():
        return name[: -len("_output0")] + name[-1]
    return name


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Run the original symbol with its params on MXNet's CPU executor."""
    symbol, _ = _load_symbol(Path(request["model"]["symbol"]))
    params = _load_params(Path(request["model"]["params"]))
    with np.load(request["feeds"], allow_pickle=False) as data:
        feeds = {name: np.asarray(data[name]) for name in data.files}
    names = [str(entry["name"]) for entry in request.get("inputs", [])] or list(feeds)
    absent = [name for name in names if name not in feeds]
    if absent:
        raise Refused("input_mismatch", f"The feeds lack the input(s) {', '.join(absent)}.")
    results = _forward(symbol, params, {name: feeds[name] for name in names})

    wanted = [str(name) for name in request.get("output_names") or []]
    by_name = {_onnx_output_name(name): value for name, value in zip(symbol.list_outputs(), results, strict=True)}
    if wanted and set(wanted) <= set(by_name):
        outputs = {name: by_name[name] for name in wanted}
    elif wanted:
        if len(wanted) != len(results):
            raise RuntimeError(f"MXNet gave {len(results)} outputs but {len(wanted)} ONNX outputs are named")
        outputs = dict(zip(wanted, results, strict=True))
    else:
        outputs = by_name
    np.savez(request["outputs"], **outputs)  # type: ignore[arg-type]
    return {"reference": f"MXNet {mx.__version__} (CPU)"}


if __name__ == "__main__":
    sys.exit(serve({"convert": convert, "run": run}))
