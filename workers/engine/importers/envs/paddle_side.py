"""PaddlePaddle's side of the Paddle importer: convert an inference model with paddle2onnx, and
run the original with Paddle as the parity reference (protocol: `protocol.py`).

Runs in the Paddle environment (paddle2onnx 2.x pins onnx <= 1.17, older than Slipway's), as
`<env>/bin/python -s -m workers.engine.importers.envs.paddle_side REQUEST RESULT`, inside the
import sandbox: no network, HOME not writable, only the current directory and out_dir
writable. Model roles: "model" (the program: `*.json`, Paddle 3's PIR format, or `*.pdmodel`,
the old ProgramDesc) and "params" (`*.pdiparams`).

paddle2onnx's native exporter aborts the process (SIGABRT) on an operator it can't convert,
and its Python wrapper logs other failures instead of raising, so the export runs in a child
process of this module (`--export JOB`) with verbose logs: whatever happens there, this
process reads the log, names the operator that stopped it, and answers with a refusal the
user can act on.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def _private_dirs() -> Path:
    """Point HOME, TMPDIR and the caches at a folder of this process under the current directory.

    Paddle creates ~/.cache/paddle at import (falling back to /tmp when HOME isn't writable),
    dy2static and paddle2onnx write temporary files (tempfile), and in the sandbox only the
    current directory and out_dir are writable. Must run before paddle is imported.
    """
    try:
        scratch = Path(tempfile.mkdtemp(prefix=".paddle-side-", dir=Path.cwd()))
    except OSError:  # run by hand from a read-only folder: the system's temporary directory will do
        scratch = Path(tempfile.mkdtemp(prefix="paddle-side-"))
    atexit.register(shutil.rmtree, scratch, True)
    for name in ("home", "tmp", "cache"):
        (scratch / name).mkdir()
    os.environ["HOME"] = str(scratch / "home")
    os.environ["TMPDIR"] = str(scratch / "tmp")
    os.environ["XDG_CACHE_HOME"] = str(scratch / "cache")
    tempfile.tempdir = None  # forget a temporary directory chosen before TMPDIR changed
    # Paddle's INFO logs (executor and pass banners) would bury what explains a failure.
    os.environ.setdefault("GLOG_minloglevel", "1")
    os.environ.setdefault("GLOG_v", "0")
    # paddle2onnx's polygraphy step would pip-install its dependencies; it is never used here
    # (export returns the bytes), but make sure nothing tries the network.
    os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] = "0"
    # paddle.utils.cpp_extension warns at import that ccache is missing: nothing is compiled here.
    warnings.filterwarnings("ignore", message="No ccache found")
    return scratch


_SCRATCH = _private_dirs()


import numpy as np  # noqa: E402
import onnx  # noqa: E402

from workers.engine.importers.envs.protocol import Refused, first_line, serve, without_shell  # noqa: E402

with without_shell():
    import paddle
import paddle2onnx  # noqa: E402

FRAMEWORK = "paddlepaddle"
CONVERTER = "paddle2onnx"
# The paddle2onnx command line's default (opset 9, raised to the lowest the model's operators need); the Python
# API's 7 writes int64 Constant nodes that opset 7 does not allow, which the full ONNX checker rejects.
_DEFAULT_OPSET = 9
_EXPORT_FLAG = "--export"
_EXPORT_ADVICE = (
    "Save the model with paddle.jit.save(layer, prefix, input_spec=[...]) and upload "
    "<prefix>.json (or .pdmodel) with the <prefix>.pdiparams written by the same call."
)
_CONTROL_FLOW = ("pd_op.while", "pd_op.if")
# Ops paddle2onnx's own support check skips (IsOpsRegistered): feeds, fetches, control flow and its yields.
_SKIPPED = {
    "pd_op.data",
    "pd_op.feed",
    "pd_op.fetch",
    "pd_op.print",
    "cf.yield",
    "builtin.parameter",
    "builtin.shadow_output",
    *_CONTROL_FLOW,
}
# paddle2onnx's convert_pir_op_name: PIR names whose mapper is registered under the old op name.
_MAPPER_NAMES = {
    "matmul": "matmul_v2",
    "batch_norm_": "batch_norm",
    "topk": "top_k_v2",
    "repeat_interleave_with_tensor_index": "repeat_interleave",
    "expand": "expand_v2",
    "assign_value_": "assign_value",
    "flatten": "flatten_contiguous_range",
    "unsqueeze": "unsqueeze2",
    "arange": "range",
    "argmax": "arg_max",
    "argmin": "arg_min",
    "floor_divide": "elementwise_floordiv",
    "subtract": "elementwise_sub",
    "multiply": "elementwise_mul",
    "divide": "elementwise_div",
    "remainder": "elementwise_mod",
    "minimum": "elementwise_min",
    "maximum": "elementwise_max",
    "min": "reduce_min",
    "max": "reduce_max",
    "mean": "reduce_mean",
    "sum": "reduce_sum",
    "prod": "reduce_prod",
    "any": "reduce_any",
    "all": "reduce_all",
    "numel": "size",
    "hardswish": "hard_swish",
    "hardsigmoid": "hard_sigmoid",
    "add": "elementwise_add",
    "add_n": "sum",
    "grid_sample": "grid_sampler",
    "nonzero": "where_index",
}
# Bytes per element of each VarType in a .pdiparams file (framework.proto's VarType.Type).
_ELEMENT_SIZE = {0: 1, 1: 2, 2: 4, 3: 8, 4: 2, 5: 4, 6: 8, 20: 1, 21: 1, 22: 2, 23: 8, 24: 16}
_MAX_LOG = 4000


# --- the program ---------------------------------------------------------------------------


class _Program:
    """What the model's program says, read by Paddle itself: feeds, fetches, ops and parameters."""

    def __init__(self, model: Path, params: Path):
        self.model, self.params = model, params
        self.legacy = model.suffix == ".pdmodel"
        paddle.enable_static()
        self.scope = paddle.static.Scope()
        executor = paddle.static.Executor(paddle.CPUPlace())
        with paddle.static.scope_guard(self.scope):
            if self.legacy:
                with paddle.pir_utils.OldIrGuard():
                    program, feeds = self._load(executor, self._read_legacy)
                    block = program.global_block()
                    self.feeds = [_feed(name, block.var(name).shape, block.var(name).dtype) for name in feeds]
                    self.pir = paddle.pir.translate_to_pir(program.desc)
                    self.parameters = self._weights(program)
            else:
                with paddle.pir_utils.IrGuard():
                    self.pir, feeds = self._load(executor, self._read_pir)
                    data = {
                        op.attrs()["name"]: op.attrs()
                        for op in self.pir.global_block().ops
                        if op.name() == "pd_op.data"
                    }
                    self.feeds = [_feed(name, data[name]["shape"], data[name]["dtype"]) for name in feeds]
                    self.parameters = self._weights(self.pir)
        self._check_parameter_shapes()

    def _load(self, executor: Any, read: Any) -> tuple[Any, list[str]]:
        """Read the program, then the weights into it; a failure of either is a refusal."""
        try:
            program = read()
        except Exception as exc:
            raise Refused(
                "invalid_model",
                f"PaddlePaddle could not read the program file {self.model.name}: {_paddle_line(exc)}. "
                f"{_EXPORT_ADVICE}",
            ) from exc
        try:
            loaded, feeds, _ = paddle.static.load_inference_model(
                str(self.model.parent), executor, model_filename=str(self.model), params_filename=str(self.params)
            )
        except Exception as exc:
            raise Refused("weights_mismatch", self._weights_message(program, _paddle_line(exc))) from exc
        return loaded, list(feeds)

    def _read_pir(self) -> Any:
        program = paddle.static.Program()
        paddle.base.core.deserialize_pir_program(str(self.model), program)
        return program

    def _read_legacy(self) -> Any:
        return paddle.static.Program.parse_from_string(self.model.read_bytes())

    def _weights(self, program: Any) -> list[tuple[str, list[int]]]:
        """The program's weights (name, shape) in the order a .pdiparams file holds them: by name."""
        if self.legacy:
            found = [
                (v.name, list(v.shape))
                for v in program.list_vars()
                if v.persistable and v.name not in ("feed", "fetch")
            ]
        else:
            found = [
                (op.attrs()["parameter_name"], list(op.result(0).shape))
                for op in program.global_block().ops
                if op.name() == "builtin.parameter"
            ]
        return sorted(found)

    def _weights_message(self, program: Any, line: str) -> str:
        """Why the weights don't load: Paddle's line, and what the file holds against what the program needs."""
        expected = self._weights(program)
        stored = _stored_tensors(self.params)
        detail = ""
        if stored is None:
            detail = f" {self.params.name} is not a Paddle weights file that can be read through."
        elif len(stored) != len(expected):
            detail = (
                f" The program needs {len(expected)} weight tensors but {self.params.name} holds {len(stored)}"
                f"{_first_shapes(stored)}."
            )
        else:
            for (name, shape), have in zip(expected, stored, strict=True):
                if list(have) != shape:
                    detail = f" Weight '{name}' is {shape} in the program but {list(have)} in {self.params.name}."
                    break
        return (
            f"PaddlePaddle could not load the weights {self.params.name} into the program {self.model.name}: "
            f"{line}.{detail} These look like the weights of another model (or a truncated file). {_EXPORT_ADVICE}"
        )

    def _check_parameter_shapes(self) -> None:
        """Weights of another model can load when their count matches (then their shapes tell),
        and Paddle loads a truncated file without a word (the file's own headers tell)."""
        stored = _stored_tensors(self.params)
        if stored is None or len(stored) != len(self.parameters):
            held = "can't be read through to its end" if stored is None else f"holds {len(stored)} weight tensors"
            raise Refused(
                "weights_mismatch",
                f"{self.params.name} {held}, but the program {self.model.name} needs {len(self.parameters)}: it is "
                f"truncated or belongs to another model. {_EXPORT_ADVICE}",
            )
        for name, shape in self.parameters:
            variable = self.scope.find_var(name)
            if variable is None:
                continue
            have = list(variable.get_tensor().shape())
            if have != shape and shape and all(d >= 0 for d in shape):
                raise Refused(
                    "weights_mismatch",
                    f"Weight '{name}' is {shape} in the program {self.model.name} but {have} in "
                    f"{self.params.name}: these are the weights of another model. {_EXPORT_ADVICE}",
                )

    def ops(self) -> Iterator[tuple[Any, list[Any]]]:
        """Every op of the PIR program, sub-blocks included, with the control-flow ops it sits in."""

        def walk(block: Any, outer: list[Any]) -> Iterator[tuple[Any, list[Any]]]:
            for op in block.ops:
                yield op, outer
                for inner in op.blocks():
                    yield from walk(inner, [*outer, op])

        yield from walk(self.pir.global_block(), [])

    def control_flow(self) -> list[Any]:
        return [op for op, _ in self.ops() if op.name() in _CONTROL_FLOW]


def _feed(name: str, shape: Sequence[int], dtype: Any) -> dict[str, Any]:
    from paddle.base.data_feeder import convert_dtype

    return {"name": name, "shape": [int(d) for d in shape], "dtype": str(convert_dtype(dtype))}


def _stored_tensors(path: Path) -> list[list[int]] | None:
    """The shapes of the tensors a .pdiparams file holds, read from their headers (Paddle's
    save_combine layout: version, LoD, version, TensorDesc protobuf, data), or None."""
    shapes: list[list[int]] = []
    try:
        with path.open("rb") as stream:
            size = path.stat().st_size
            while stream.tell() < size:
                stream.read(4)  # tensor version
                (lod_levels,) = struct.unpack("<Q", stream.read(8))
                for _ in range(lod_levels):
                    (length,) = struct.unpack("<Q", stream.read(8))
                    stream.seek(length, os.SEEK_CUR)
                stream.read(4)  # tensor version
                (desc_size,) = struct.unpack("<i", stream.read(4))
                if desc_size <= 0 or desc_size > 1 << 20:
                    return None
                dtype, dims = _tensor_desc(stream.read(desc_size))
                count = 1
                for dim in dims:
                    count *= dim
                if dtype not in _ELEMENT_SIZE or count < 0:
                    return None
                stream.seek(count * _ELEMENT_SIZE[dtype], os.SEEK_CUR)
                if stream.tell() > size:
                    return None
                shapes.append(dims)
    except (OSError, struct.error, ValueError):
        return None
    return shapes


def _tensor_desc(data: bytes) -> tuple[int, list[int]]:
    """framework.proto's VarType.TensorDesc: data_type = 1 (enum), dims = 2 (repeated int64)."""

    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            if at >= len(data):
                raise ValueError("truncated varint")
            byte = data[at]
            value |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if not byte & 0x80:
                return (value - (1 << 64) if value >= 1 << 63 else value), at

    dtype, dims, at = -1, [], 0
    while at < len(data):
        key, at = varint(at)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, at = varint(at)
            if field == 1:
                dtype = value
            elif field == 2:
                dims.append(value)
        elif wire == 2:
            length, at = varint(at)
            end = at + length
            while field == 2 and at < end:
                value, at = varint(at)
                dims.append(value)
            at = end
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return dtype, dims


def _first_shapes(shapes: Sequence[Sequence[int]]) -> str:
    shown = ", ".join(str(list(s)) for s in shapes[:4])
    return f" (shapes {shown}{', ...' if len(shapes) > 4 else ''})" if shapes else ""


def _paddle_line(exc: BaseException) -> str:
    """The line of a Paddle error that says what happened (its first is often just the category)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if not line.startswith(("Hint:", "[Hint", "C++ Traceback", "----", "Error Message Summary")):
            return line[:500]
    return first_line(exc)


# --- inputs ----------------------------------------------------------------------------------


def _inputs(program: _Program, declared: Sequence[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """The ONNX model's inputs: the program's feeds with -1 dims named, or as the user declared them."""
    feeds = program.feeds
    if not declared:
        return [
            {
                "name": feed["name"],
                "shape": [
                    ("batch" if i == 0 else f"{feed['name']}_dim{i}") if d < 0 else d
                    for i, d in enumerate(feed["shape"])
                ],
                "dtype": feed["dtype"],
            }
            for feed in feeds
        ]
    if len(declared) != len(feeds):
        raise Refused(
            "input_mismatch",
            f"The Paddle program takes {len(feeds)} inputs ({', '.join(f['name'] for f in feeds)}) but "
            f"{len(declared)} were declared. Declare one input per feed, in order.",
        )
    by_name = {str(spec.get("name")): spec for spec in declared}
    if set(by_name) == {feed["name"] for feed in feeds}:
        ordered = [by_name[feed["name"]] for feed in feeds]
    else:
        ordered = list(declared)
        renamed = [f"'{s.get('name')}' is its '{f['name']}'" for s, f in zip(ordered, feeds, strict=True)]
        notes.append(
            "The declared input names are not the program's, so they were matched in order ("
            + ", ".join(renamed)
            + "); the ONNX model keeps the program's names."
        )
    result = []
    for spec, feed in zip(ordered, feeds, strict=True):
        where = f"Input '{spec.get('name')}' (the program's feed '{feed['name']}')"
        dtype = str(spec.get("dtype") or feed["dtype"])
        if dtype != feed["dtype"]:
            raise Refused("input_mismatch", f"{where} is declared {dtype} but the program takes {feed['dtype']}.")
        shape = list(spec.get("shape") or [])
        if len(shape) != len(feed["shape"]):
            raise Refused(
                "input_mismatch",
                f"{where} is declared with shape {shape} but the program takes {feed['shape']}.",
            )
        for index, (want, have) in enumerate(zip(shape, feed["shape"], strict=True)):
            if have >= 0 and want != have:
                raise Refused(
                    "input_mismatch",
                    f"{where}: dim {index} is declared {want!r} but the program fixes it at {have}. Declare {have}, "
                    "or save the model with -1 for that dim in its InputSpec.",
                )
        result.append({"name": feed["name"], "shape": shape, "dtype": dtype})
    return result


def _set_input_shapes(model: Any, inputs: Sequence[dict[str, Any]]) -> None:
    """Write the inputs' dims into the ONNX graph: ints fixed, strings symbolic, None unnamed."""
    graph_inputs = {value.name: value for value in model.graph.input}
    for spec in inputs:
        value = graph_inputs.get(spec["name"])
        if value is None:
            raise Refused(
                "conversion_failed",
                f"paddle2onnx's model has no input '{spec['name']}' (it has {list(graph_inputs)}). Report the model "
                "to Slipway.",
            )
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(spec["shape"]):
            continue
        for dim, want in zip(dims, spec["shape"], strict=True):
            if isinstance(want, int):
                dim.Clear()
                dim.dim_value = want
            elif isinstance(want, str):
                dim.Clear()
                dim.dim_param = want
            else:
                dim.Clear()


# --- convert ---------------------------------------------------------------------------------


def _model_files(request: dict[str, Any]) -> tuple[Path, Path]:
    roles = request.get("model") or {}
    if "model" not in roles or "params" not in roles:
        raise Refused("bad_request", f"The Paddle side needs the roles 'model' and 'params'; got {sorted(roles)}.")
    model, params = Path(roles["model"]).resolve(), Path(roles["params"]).resolve()
    if model.suffix not in (".json", ".pdmodel"):
        raise Refused(
            "invalid_model",
            f"{model.name} is not a Paddle inference program (.json or .pdmodel). {_EXPORT_ADVICE}",
        )
    for path in (model, params):
        if not path.is_file():
            raise Refused("invalid_model", f"{path.name} is missing. {_EXPORT_ADVICE}")
    return model, params


def convert(request: dict[str, Any]) -> dict[str, Any]:
    """Convert with paddle2onnx (in a child process), check the result, and describe it."""
    model, params = _model_files(request)
    program = _Program(model, params)
    notes: list[str] = []
    assumptions: list[str] = []
    inputs = _inputs(program, request.get("inputs") or [], notes)
    if not request.get("inputs"):
        assumptions.append(
            "Input names, shapes and dtypes were taken from the program's feed variables: "
            + "; ".join(f"{i['name']} {i['shape']} {i['dtype']}" for i in inputs)
            + " (a -1 dim of the program is dynamic, named 'batch' when it is the first)."
        )
    opset = request.get("opset")
    out_dir = Path(request["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "model.onnx"

    raw = _export(program, opset)
    try:
        proto = onnx.load_from_string(raw)
    except Exception as exc:
        raise Refused("conversion_failed", f"paddle2onnx wrote an unreadable ONNX model: {first_line(exc)}.") from exc
    _set_input_shapes(proto, inputs)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise _invalid_output(program, " ".join(str(exc).split())[:300]) from exc
    onnx.save(proto, str(target))

    used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        notes.append(
            f"Exported at ONNX opset {used}: the paddle2onnx command line's default (opset {_DEFAULT_OPSET}), raised "
            "to the lowest opset the model's operators need. Ask for an opset at upload to choose another."
        )
    else:
        notes.append(f"Exported at ONNX opset {used}, as asked.")
    outputs = [value.name for value in proto.graph.output]
    return {
        "onnx": str(target),
        "inputs": inputs,
        "outputs": outputs,
        "framework": FRAMEWORK,
        "framework_version": paddle.__version__,
        "converter": CONVERTER,
        "converter_version": paddle2onnx.__version__,
        "method": (
            "paddle2onnx.export of the ProgramDesc (.pdmodel), translated to PIR by Paddle"
            if program.legacy
            else "paddle2onnx.export of the PIR program (.json)"
        ),
        "notes": notes,
        "assumptions": assumptions,
        "tool_versions": _tool_versions(),
    }


def _tool_versions() -> dict[str, str]:
    return {
        "paddlepaddle": paddle.__version__,
        "paddle2onnx": paddle2onnx.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
    }


def _export(program: _Program, opset: int | None) -> bytes:
    """Run paddle2onnx in a child process; return the ONNX bytes or raise the refusal its log explains."""
    job = _SCRATCH / "export-job.json"
    onnx_path = _SCRATCH / "export.onnx"
    log_path = _SCRATCH / "export.log"
    job.write_text(
        json.dumps(
            {
                "model": str(program.model),
                "params": str(program.params),
                "opset": _DEFAULT_OPSET if opset is None else int(opset),
                "auto_upgrade": opset is None,
                "out": str(onnx_path),
            }
        )
    )
    module = __spec__.name if __spec__ is not None else "workers.engine.importers.envs.paddle_side"
    with log_path.open("wb") as log:
        completed = subprocess.run(
            [sys.executable, "-s", "-m", module, _EXPORT_FLAG, str(job)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=_SCRATCH,
            check=False,
        )
    text = log_path.read_text("utf-8", "replace")
    if completed.returncode == 0 and onnx_path.is_file() and onnx_path.stat().st_size > 0:
        # paddle2onnx returns a model its own checker rejected ("The exported ONNX model is
        # invalid"); the full check in convert() refuses it with the checker's whole message.
        return onnx_path.read_bytes()
    raise _export_refusal(program, text, completed.returncode, opset)


def _errors(text: str) -> list[str]:
    """paddle2onnx's error lines ("[ERROR][Paddle2ONNX] ..." or "[Paddle2ONNX] [ERROR] ..."), deduplicated."""
    found: list[str] = []
    for line in text.splitlines():
        match = re.search(r"\[ERROR\](?:\[Paddle2ONNX\])?\s*(.*)", line)
        if match and match.group(1).strip() and match.group(1).strip() not in found:
            found.append(match.group(1).strip())
    return found


def _export_refusal(program: _Program, text: str, code: int, opset: int | None) -> Refused:
    """Turn a failed export's log into a refusal that names the operator and says what to do."""
    errors = [e.rstrip(".") for e in _errors(text) if "Failed to convert PaddlePaddle model" not in e]
    reason = "; ".join(errors)[:600] or f"it stopped with exit code {code}" + (
        " (aborted)" if code in (-6, 134) else ""
    )
    if "unsupported operators" in text or "ops not supported yet" in text:
        return _unsupported(program)
    if "Due to opset version" in text or "Opset Version must be between" in text:
        needs = sorted(
            {(int(v), op) for op, v in re.findall(r"\[OP: (\S+)\] Requires the minimal opset version of (\d+)", text)}
        )
        need = f"its operator {needs[-1][1]} needs opset {needs[-1][0]} or later" if needs else reason
        return Refused(
            "conversion_failed",
            f"paddle2onnx {paddle2onnx.__version__} can't export this model at ONNX opset {opset}: {need}. Ask for a "
            "later opset, or leave the opset unset to let paddle2onnx choose the lowest that works.",
        )
    # Verbose exports log "Start export <op>, op_id: N" and "Finish export ..." around each op
    # (a loop's or branch's body inside its own pair): what started and never finished stopped it.
    started = re.findall(r"Start export (\S+), op_id: (\d+)", text)
    finished = set(re.findall(r"Finish export (\S+), op_id: (\d+)", text))
    stuck = [name for name, op_id in started if (name, op_id) not in finished]
    if stuck:
        name = stuck[-1]
        occurrence = sum(1 for started_name, _ in started if started_name == name)
        where, nested = _locate(program, name, occurrence)
        if nested or any(outer in _CONTROL_FLOW for outer in stuck):
            return _control_flow_refusal(program, f"converting {name}{where} failed: {reason}")
        return Refused(
            "unsupported_operator",
            f"paddle2onnx {paddle2onnx.__version__} could not convert the operator {name}{where}: {reason}. "
            "Replace that operation in the model with one paddle2onnx supports (or give it static arguments), "
            "save it again with paddle.jit.save, and upload it.",
        )
    if "Failed to load parameters" in text or "params file" in text.lower():
        return Refused(
            "weights_mismatch",
            f"paddle2onnx could not read the weights {program.params.name}: {reason}. {_EXPORT_ADVICE}",
        )
    print("\n".join(text.strip().splitlines()[-15:])[-_MAX_LOG:], file=sys.stderr)
    return Refused(
        "conversion_failed",
        f"paddle2onnx {paddle2onnx.__version__} could not convert the model: {reason}. The step's log has "
        "paddle2onnx's output; report the model to Slipway if it should convert.",
    )


def _locate(program: _Program, name: str, occurrence: int) -> tuple[str, bool]:
    """The `occurrence`-th op called `name` in export order (blocks in program order, a body
    after its loop or branch), described, and whether it sits in a loop or branch. The log's
    op ids are the exporter's own, so the order is what ties its lines to the program."""
    seen = 0
    for op, outer in program.ops():
        if op.name() == name:
            seen += 1
            if seen == occurrence:
                return _describe(op, outer), bool(outer)
    return "", False


def _describe(op: Any, outer: Sequence[Any]) -> str:
    """What a user can find the op by: the weights or inputs it reads (named after their layer),
    the nearest layer before it, its result types, and the loop or branch it sits in."""
    parts: list[str] = []
    reads = [_value_name(op.operand_source(i)) for i in range(op.num_operands())]
    reads = [r for r in reads if r]
    if reads:
        parts.append("reading " + ", ".join(reads))
    else:
        layer = _upstream_weight(op)
        if layer:
            parts.append(f"after layer '{layer.rsplit('.', 1)[0]}' (weight {layer})")
    results = [str(op.result(i).type()) for i in range(op.num_results())]
    if results:
        parts.append("producing " + ", ".join(results))
    if outer:
        parts.append("inside " + " > ".join(o.name() for o in outer))
    return f" ({'; '.join(parts)})" if parts else ""


def _upstream_weight(op: Any, depth: int = 6) -> str:
    """The parameter name of the closest weight upstream of `op` (breadth first, a few ops back)."""
    frontier, seen = [op], set()
    for _ in range(depth):
        following = []
        for current in frontier:
            for index in range(current.num_operands()):
                defining = _defining_op(current.operand_source(index))
                if defining is None or defining.id() in seen:
                    continue
                seen.add(defining.id())
                if defining.name() == "builtin.parameter":
                    return str(defining.attrs().get("parameter_name"))
                following.append(defining)
        frontier = following
    return ""


def _defining_op(value: Any) -> Any:
    """The op that makes `value`, or None (a block argument, or a value Paddle can't trace)."""
    try:
        return value.get_defining_op()
    except Exception:
        return None


def _value_name(value: Any) -> str:
    """A value's name where the program keeps one: a weight (named after its layer) or an input."""
    defining = _defining_op(value)
    if defining is None:
        return ""
    if defining.name() == "builtin.parameter":
        return f"weight '{defining.attrs().get('parameter_name')}'"
    if defining.name() in ("pd_op.data", "pd_op.feed"):
        return f"input '{defining.attrs().get('name')}'"
    return ""


def _supported_mapper(name: str, supported: set[str]) -> bool:
    if name.startswith("pd_op."):
        short = name[len("pd_op.") :]
    elif name.startswith("builtin."):
        short = "builtin_" + name[len("builtin.") :]
    else:
        short = name
    return _MAPPER_NAMES.get(short, short) in supported


def _unsupported(program: _Program) -> Refused:
    """paddle2onnx 2.1 aborts on operators it has no mapper for without saying which (its list
    never reaches the log), so find them the way its check does: each op's mapper name against
    get_all_supported_operators_pir()."""
    from paddle2onnx import paddle2onnx_cpp2py_export as native

    supported = set(native.get_all_supported_operators_pir())
    missing: dict[str, list[str]] = {}
    in_control_flow = False
    for op, outer in program.ops():
        if op.name() in _SKIPPED or _supported_mapper(op.name(), supported):
            continue
        missing.setdefault(op.name(), []).append(_describe(op, outer).strip())
        in_control_flow = in_control_flow or bool(outer)
    if not missing:
        return Refused(
            "unsupported_operator",
            f"paddle2onnx {paddle2onnx.__version__} refused the model for operators it does not support, without "
            "naming them. Replace uncommon operations with common ones and save it again with paddle.jit.save.",
        )
    listed = "; ".join(
        f"{name} {places[0]}" + (f" and {len(places) - 1} more" if len(places) > 1 else "")
        for name, places in sorted(missing.items())
    )
    advice = (
        " Some of them sit inside a loop or branch; making that control flow static helps only if the operators "
        "go with it."
        if in_control_flow
        else ""
    )
    return Refused(
        "unsupported_operator",
        f"paddle2onnx {paddle2onnx.__version__} has no ONNX conversion for the operator"
        f"{'s' if len(missing) > 1 else ''} {listed}. Replace "
        f"{'these operations' if len(missing) > 1 else 'that operation'} in the model with ones paddle2onnx supports "
        f"(or compute {'them' if len(missing) > 1 else 'it'} outside the model), save it again with paddle.jit.save, "
        f"and upload it.{advice}",
    )


def _control_flow_refusal(program: _Program, detail: str) -> Refused:
    loops = program.control_flow()
    named = ", ".join(f"a {op.name()} whose body uses {', '.join(_body_ops(op))}" for op in loops[:4]) or "control flow"
    return Refused(
        "unsupported_operator",
        f"paddle2onnx {paddle2onnx.__version__} can't convert the model's control flow: {named}; {detail}. Control "
        "flow is the cause: make it static before paddle.jit.save — give the loop a fixed trip count (a Python int "
        "rather than a tensor, or unroll it), drop data-dependent branches (paddle.where instead of `if` on a "
        "tensor), and keep tensor arrays out of loops (collect steps with paddle.stack of a fixed count).",
    )


def _body_ops(op: Any) -> list[str]:
    names: list[str] = []
    for block in op.blocks():
        for inner in block.ops:
            if inner.name() not in names and inner.name() not in ("cf.yield",):
                names.append(inner.name())
    return names[:8] + (["..."] if len(names) > 8 else [])


def _invalid_output(program: _Program, checker: str) -> Refused:
    """paddle2onnx wrote a model the ONNX checker rejects: with control flow, that is its cause."""
    if program.control_flow():
        return _control_flow_refusal(program, f"the ONNX model paddle2onnx wrote fails the ONNX checker ({checker})")
    return Refused(
        "conversion_failed",
        f"paddle2onnx {paddle2onnx.__version__} wrote an ONNX model the ONNX checker rejects: {checker}. Try another "
        "opset, or report the model to Slipway.",
    )


def _export_child(job_path: str) -> int:
    """In the child: paddle2onnx's Python API, verbose so the log says which op it was converting."""
    job = json.loads(Path(job_path).read_text())
    try:
        raw = paddle2onnx.export(
            job["model"],
            job["params"],
            save_file=None,  # the bytes: no polygraphy/onnxoptimizer pass that could download or hide failures
            opset_version=job["opset"],
            auto_upgrade_opset=job["auto_upgrade"],
            verbose=True,
            enable_onnx_checker=True,
            enable_experimental_op=True,
            enable_optimize=True,
            deploy_backend="onnxruntime",
        )
    except Exception as exc:  # the wrapper logs the real error, then fails on its unset result
        print(f"[Paddle2ONNX] export raised {type(exc).__name__}: {first_line(exc)}", flush=True)
        return 3
    if not raw:
        return 3
    Path(job["out"]).write_bytes(raw)
    return 0


# --- run -------------------------------------------------------------------------------------


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Run the original model with paddle.inference on CPU, IR optimisation and oneDNN off: the
    framework's plain result, which the ONNX model must match."""
    from paddle import inference

    model, params = _model_files(request)
    config = inference.Config(str(model), str(params))
    config.disable_gpu()
    config.switch_ir_optim(False)
    config.disable_onednn()
    config.disable_glog_info()
    try:
        predictor = inference.create_predictor(config)
    except Exception as exc:
        raise Refused("invalid_model", f"PaddlePaddle could not load the model: {_paddle_line(exc)}.") from exc

    with np.load(request["feeds"], allow_pickle=False) as data:
        feeds = {name: np.asarray(data[name]) for name in data.files}
    for name in predictor.get_input_names():
        if name not in feeds:
            raise Refused("input_mismatch", f"No feed for the program's input '{name}' (fed: {sorted(feeds)}).")
        handle = predictor.get_input_handle(name)
        array = np.ascontiguousarray(feeds[name])
        handle.reshape(list(array.shape))
        handle.copy_from_cpu(array)
    predictor.run()

    fetched = predictor.get_output_names()
    wanted = [str(n) for n in request.get("output_names") or fetched]
    if set(wanted) <= set(fetched):
        pairs = [(name, name) for name in wanted]
    elif len(wanted) == len(fetched):
        pairs = list(zip(wanted, fetched, strict=True))
    else:
        raise Refused(
            "conversion_failed",
            f"The ONNX model's outputs {wanted} can't be matched to Paddle's fetch targets {fetched}.",
        )
    outputs = {onnx_name: np.asarray(predictor.get_output_handle(name).copy_to_cpu()) for onnx_name, name in pairs}
    np.savez(request["outputs"], **outputs)  # type: ignore[arg-type]
    return {"reference": f"PaddlePaddle {paddle.__version__} (paddle.inference, CPU)"}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == _EXPORT_FLAG:
        sys.exit(_export_child(sys.argv[2]))
    sys.exit(serve({"convert": convert, "run": run}))
