"""Rockchip's side of the RKNN backend: convert ONNX to .rknn files for a Rockchip NPU with
RKNN-Toolkit2, say where each operator runs, and run the result on the toolkit's simulator
(protocol: `protocol.py`).

Runs in the RKNN environment (rknn-toolkit2 pins numpy <= 1.26.4, protobuf <= 4.25.4 and
onnx <= 1.18, older than Slipway's), as
`<env>/bin/python -s -m workers.engine.importers.envs.rknn_side REQUEST RESULT`, inside the
sandbox: no network, HOME not writable, no programs besides the interpreter, only the current
directory and out_dir writable.

Action "convert": for each precision asked ("int8": weights and activations in INT8 with scales
from the caller's calibration set, the NPU's fast path; "fp16": no quantization, the NPU computes
in float16), the toolkit loads the ONNX model with fixed input shapes, builds and exports a
.rknn file. The toolkit prints its placement table while it builds (one row per RKNN operator:
its type, data type, NPU or CPU, and the ONNX node or tensor it was made from); the answer maps
those rows back onto the ONNX nodes. With "analysis", the toolkit's accuracy analysis runs one
calibration sample through the simulator and compares every layer with the float model
("entire": errors accumulated from the input; "single": the layer alone, fed float inputs).

Action "simulate": the simulator runs only a model built in the same process (a .rknn file
loaded from disk needs a board), so the variant's recipe is built again from the same ONNX file
and calibration set and run on the caller's inputs. Those outputs are the simulator's numerics
of the NPU on an x86 CPU; its timings mean nothing and are not asked for.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _private_dirs() -> Path:
    """HOME, TMPDIR and the caches in a folder of this process under the current directory: in
    the sandbox only it and out_dir are writable. Must run before the toolkit is imported."""
    try:
        scratch = Path(tempfile.mkdtemp(prefix=".rknn-side-", dir=Path.cwd()))
    except OSError:  # run by hand from a read-only folder
        scratch = Path(tempfile.mkdtemp(prefix="rknn-side-"))
    atexit.register(shutil.rmtree, scratch, True)
    for name in ("home", "tmp", "cache", "work"):
        (scratch / name).mkdir()
    os.environ["HOME"] = str(scratch / "home")
    os.environ["TMPDIR"] = str(scratch / "tmp")
    os.environ["XDG_CACHE_HOME"] = str(scratch / "cache")
    tempfile.tempdir = None
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    return scratch


_SCRATCH = _private_dirs()

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from workers.engine.importers.envs.protocol import Refused, first_line, serve, without_shell  # noqa: E402

with without_shell():
    from rknn.api import RKNN

PRECISIONS = ("int8", "fp16")
PLATFORMS = ("rk3588", "rk3576", "rk3568", "rk3566", "rk3562", "rv1106", "rv1103", "rk2118")
CONVERTER = "rknn-toolkit2"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A row of the placement table: "D RKNN: [13:09:10.125] 1  ConvRelu  INT8  NPU  (1,3,32,32),...  (1,16,32,32)
# 931/9216/9216  5  Conv:/c1/Conv"
_TABLE_ROW = re.compile(
    r"^D RKNN: \[[^\]]*\]\s+(?P<id>\d+)\s+(?P<op>\S+)\s+(?P<dtype>\S+)\s+(?P<target>NPU|CPU)\s+(?P<ins>\S+)\s+"
    r"(?P<outs>\S+)\s+(?P<cycles>\S+)\s+(?P<rw>\S+)\s+(?P<name>.+?)\s*$"
)
# Operators the toolkit adds around the model's own: its input and output, and data type conversions.
_FRAMING_OPS = {"InputOperator", "OutputOperator"}
_INSERTED_PREFIXES = ("exDataConvert",)
# What the toolkit appends to a node's or tensor's name when it splits, reshapes or converts it.
_NAME_SUFFIX = re.compile(r"(#\d+|[_-](rs|tp|mm|gavg|2conv\d*|cvt\w*|swap\w*|float16|int8|pad\w*|split\w*|\d+))$")
# A failure names the node as OpType('name').
_NAMED_NODE = re.compile(r"(\w+)\('([^']+)'\)")
# A layer of the accuracy analysis: "[Conv] name   0.99994 | 0.56693   0.99994 | 0.56693" (empty when fused).
_ACCURACY_ROW = re.compile(
    r"^\[(?P<op>[^\]]+)\]\s+(?P<name>\S+)(?:\s+(?P<ec>[-\d.]+)\s*\|\s*(?P<ee>[-\d.e+]+)\s+(?P<sc>[-\d.]+)\s*\|\s*"
    r"(?P<se>[-\d.e+]+))?\s*$"
)


@contextlib.contextmanager
def _captured_stdout(path: Path) -> Iterator[None]:
    """The toolkit's native library prints its placement table on file descriptor 1, below
    Python: send that descriptor to `path` while it builds (and echo the file to stderr after,
    for the step's log)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with path.open("wb") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def _node_labels(model: onnx.ModelProto) -> list[str]:
    """Node labels as Slipway names them (workers/engine/backends/_onnx_graph.node_labels)."""
    return [node.name or f"{node.op_type}_{index}" for index, node in enumerate(model.graph.node)]


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {item.name for item in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def _log_errors(log_path: Path) -> list[str]:
    """The toolkit's error messages in its log, first lines joined with their continuations,
    without its version banners and tracebacks."""
    try:
        text = _ANSI.sub("", log_path.read_text(errors="replace"))
    except OSError:
        return []
    messages: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(("E ", "W ", "I ", "D ")) or line.startswith("Traceback") or line.startswith("  File"):
            if current:
                messages.append(" ".join(part.strip() for part in current))
            current = None
            if line.startswith("E ") and "version:" not in line and "Traceback" not in line:
                current = [re.sub(r"^\w+: ", "", line[2:])]  # without the toolkit's function name
        elif current is not None and line.strip() and not line.startswith(("ValueError", "RuntimeError")):
            current.append(line)
    if current:
        messages.append(" ".join(part.strip() for part in current))
    return [message for message in messages if message and not message.endswith("Traceback (most recent call last):")]


def _placement(table_path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        text = _ANSI.sub("", table_path.read_text(errors="replace"))
    except OSError:
        return rows
    for line in text.splitlines():
        match = _TABLE_ROW.match(line.strip())
        if match:
            rows.append(
                {
                    "id": int(match["id"]),
                    "op": match["op"],
                    "dtype": match["dtype"],
                    "target": match["target"],
                    "name": match["name"],
                    "cycles": match["cycles"],
                }
            )
    return rows


def _anchor_nodes(
    name: str,
    op: str,
    labels: list[str],
    op_types: list[str],
    producers: dict[str, int],
    consumers: dict[str, list[int]],
    taken: set[int],
) -> int | None:
    """The ONNX node an RKNN operator was made from. Its full name is "<Type>:<name>", where name
    is an ONNX node's name or a tensor's, with suffixes the toolkit appends when it splits or
    rewrites; a tensor stands for the node that writes it when the types agree (a reshape named
    after its output), else for the node that reads it (a ReduceMean rewritten as convolutions,
    named after its input)."""
    index_of = {label: index for index, label in enumerate(labels)}
    candidate = name.split(":", 1)[1] if ":" in name else name
    seen = set()
    while candidate and candidate not in seen:
        seen.add(candidate)
        if candidate in index_of:
            return index_of[candidate]
        producer = producers.get(candidate)
        readers = consumers.get(candidate, [])
        if producer is not None or readers:
            if producer is not None and _same_kind(op, op_types[producer]):
                return producer
            for reader in readers:
                if _same_kind(op, op_types[reader]):
                    return reader
            if readers:
                free = [reader for reader in readers if reader not in taken]
                return (free or readers)[0]
            return producer
        stripped = _NAME_SUFFIX.sub("", candidate)
        candidate = stripped if stripped != candidate else ""
    return None


def _same_kind(rknn_op: str, onnx_op: str) -> bool:
    """Whether an RKNN operator type is the ONNX one (ConvRelu for Conv, exSoftmax13 for Softmax)."""
    plain = rknn_op.removeprefix("ex").lower()
    return bool(onnx_op) and plain.startswith(onnx_op.lower())


def _nodes(model: onnx.ModelProto, placement: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ONNX node's placement: the target of the RKNN operator made from it; a node the
    toolkit fused into a neighbour (an activation into its convolution, an Add into the
    convolution before it) takes the neighbour's; a node computed from constants only was folded."""
    labels = _node_labels(model)
    op_types = [node.op_type for node in model.graph.node]
    producers = {output: index for index, node in enumerate(model.graph.node) for output in node.output if output}
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(model.graph.node):
        for name in node.input:
            if name:
                consumers.setdefault(name, []).append(index)
    rows_of: dict[int, list[dict[str, Any]]] = {}
    taken: set[int] = set()
    for row in placement:
        if row["op"] in _FRAMING_OPS or row["op"].startswith(_INSERTED_PREFIXES):
            continue
        anchor = _anchor_nodes(row["name"], row["op"], labels, op_types, producers, consumers, taken)
        if anchor is not None:
            rows_of.setdefault(anchor, []).append(row)
            taken.add(anchor)
    constants = {item.name for item in model.graph.initializer}
    constants.update(output for node in model.graph.node if node.op_type == "Constant" for output in node.output)
    nodes: list[dict[str, Any]] = []
    status_of: dict[int, str] = {}
    fused_into: dict[int, str] = {}
    for index, node in enumerate(model.graph.node):
        rows = rows_of.get(index, [])
        if rows:
            # Its own operator decides (a Softmax on the NPU); what the toolkit added around it (a CPU
            # reshape for the output's layout) is named in the reason.
            own = [row for row in rows if _same_kind(row["op"], node.op_type)] or rows
            targets = {row["target"] for row in own}
            status_of[index] = "npu" if targets == {"NPU"} else "cpu" if targets == {"CPU"} else "split"
        elif all(name in constants or not name for name in node.input):
            status_of[index] = "folded"
            constants.update(node.output)
    # Fused nodes take their producer's placement (the chain it was fused into), else a reader's.
    for _ in range(2):
        for index, node in enumerate(model.graph.node):
            if index in status_of:
                continue
            neighbours = [producers[name] for name in node.input if name in producers]
            neighbours += [reader for name in node.output for reader in consumers.get(name, [])]
            for neighbour in neighbours:
                if status_of.get(neighbour) in ("npu", "cpu", "split"):
                    status_of[index] = status_of[neighbour]
                    fused_into[index] = fused_into.get(neighbour, labels[neighbour])
                    break
    for index, node in enumerate(model.graph.node):
        rows = rows_of.get(index, [])
        status = status_of.get(index, "unplaced")
        if rows:
            ops = ", ".join(f"{row['op']} ({row['dtype']}) on the {row['target']}" for row in rows)
            reason = f"RKNN made {ops} from it."
        elif status == "folded":
            reason = "Computed from constants: the toolkit folded it into the model's weights."
        elif index in fused_into:
            reason = f"The toolkit fused it into the operator made from '{fused_into[index]}'."
        else:
            reason = "The toolkit's placement table names no operator made from it or a neighbour."
        nodes.append(
            {
                "name": labels[index],
                "op_type": node.op_type,
                "status": status,
                "reason": reason,
                "rknn_ops": [{"op": row["op"], "target": row["target"], "dtype": row["dtype"]} for row in rows],
            }
        )
    return nodes


def _failed_nodes(model: onnx.ModelProto, message: str) -> list[dict[str, Any]]:
    """Per-node statuses when the toolkit refused the model: the node its error names is
    refused, the others not known."""
    labels = _node_labels(model)
    named = {name for _, name in _NAMED_NODE.findall(message)}
    named |= {label for label in labels if f'"{label}"' in message}
    return [
        {
            "name": label,
            "op_type": node.op_type,
            "status": "refused" if label in named else "not_reached",
            "reason": message if label in named else "",
            "rknn_ops": [],
        }
        for label, node in zip(labels, model.graph.node, strict=True)
    ]


def _samples(path: str, model: onnx.ModelProto, shapes: dict[str, list[int]], folder: Path) -> tuple[Path, int]:
    """The calibration arrays as the toolkit's dataset: one line per sample, one .npy per input.
    Each array's first axis counts samples; a sample is one batch of the model's input shape."""
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise Refused("invalid_calibration", f"The calibration file can't be read as .npz: {first_line(exc)}") from exc
    names = [value.name for value in _graph_inputs(model)]
    missing = [name for name in names if name not in archive.files]
    if missing:
        raise Refused(
            "invalid_calibration",
            f"The calibration set has no array for input(s) {missing}; it has {sorted(archive.files)}. Give one "
            "array per model input, samples along the first axis.",
        )
    folder.mkdir(parents=True, exist_ok=True)
    counts = []
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        array = np.asarray(archive[name])
        shape = shapes[name]
        batch = shape[0] if shape else 1
        if list(array.shape[1:]) != list(shape[1:]) or array.shape[0] < batch:
            raise Refused(
                "invalid_calibration",
                f"Calibration input '{name}' has shape {list(array.shape)}; the model takes {shape}, so the "
                f"calibration array should be [samples, {', '.join(str(d) for d in shape[1:])}].",
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise Refused(
                "invalid_calibration",
                f"Calibration input '{name}' holds NaN or infinite values; the quantizer would take its scales "
                "from them.",
            )
        arrays[name] = array
        counts.append(array.shape[0] // max(batch, 1))
    count = min(counts)
    lines = []
    for sample in range(count):
        files = []
        for position, name in enumerate(names):
            batch = shapes[name][0] if shapes[name] else 1
            item = folder / f"{sample}_{position}.npy"
            np.save(item, arrays[name][sample * batch : (sample + 1) * batch].astype(np.float32, copy=False))
            files.append(str(item))
        lines.append(" ".join(files))
    dataset = folder / "dataset.txt"
    dataset.write_text("\n".join(lines) + "\n")
    return dataset, count


def _accuracy(path: Path) -> list[dict[str, Any]]:
    layers: list[dict[str, Any]] = []
    try:
        text = _ANSI.sub("", path.read_text(errors="replace"))
    except OSError:
        return layers
    for line in text.splitlines():
        match = _ACCURACY_ROW.match(line.strip())
        if not match:
            continue
        entry: dict[str, Any] = {"op": match["op"], "layer": match["name"]}
        if match["ec"] is not None:
            entry.update(
                entire_cosine=float(match["ec"]),
                entire_euclidean=float(match["ee"]),
                single_cosine=float(match["sc"]),
                single_euclidean=float(match["se"]),
            )
        layers.append(entry)
    return layers


def _build(
    model_path: Path,
    model: onnx.ModelProto,
    platform: str,
    precision: str,
    shapes: dict[str, list[int]],
    dataset: Path | None,
    work: Path,
) -> tuple[Any, dict[str, Any]]:
    """One build of the model for `platform` in `precision`: the toolkit's object (ready for the
    simulator) and what the build said (placement table, errors)."""
    work.mkdir(parents=True, exist_ok=True)
    log_path, table_path = work / "toolkit.log", work / "table.txt"
    rknn = RKNN(verbose=True, verbose_file=str(log_path))
    names = list(shapes)
    outcome: dict[str, Any] = {"ok": False, "error": "", "placement": []}
    previous = Path.cwd()
    os.chdir(work)  # the toolkit writes its intermediate ONNX files (check*.onnx) to the current folder
    raised = ""
    try:
        with _captured_stdout(table_path), without_shell():
            status = rknn.config(target_platform=platform, quantized_dtype="w8a8", optimization_level=3)
            if status == 0:
                status = rknn.load_onnx(
                    model=str(model_path), inputs=names, input_size_list=[shapes[name] for name in names]
                )
            if status == 0:
                status = rknn.build(do_quantization=precision == "int8", dataset=str(dataset) if dataset else None)
    except Exception as exc:  # the toolkit logs its refusal, then raises it again
        status, raised = -1, first_line(exc)
    finally:
        os.chdir(previous)
    sys.stderr.write(_ANSI.sub("", table_path.read_text(errors="replace"))[-6000:])
    outcome["placement"] = _placement(table_path)
    if status != 0:
        errors = _log_errors(log_path)
        outcome["error"] = (
            errors[0] if errors else raised or f"the toolkit stopped with status {status} (no reason logged)"
        )
        rknn.release()
        return None, outcome
    outcome["ok"] = True
    return rknn, outcome


def _request_model(request: dict[str, Any]) -> tuple[Path, onnx.ModelProto, dict[str, list[int]], str]:
    model_path = Path(request["model"]["onnx"])
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:
        raise Refused("invalid_model", f"The ONNX file can't be read: {first_line(exc)}.") from exc
    shapes = {str(item["name"]): [int(d) for d in item["shape"]] for item in request.get("inputs") or []}
    missing = [value.name for value in _graph_inputs(model) if value.name not in shapes]
    if missing:
        raise Refused("bad_request", f"No concrete shape was given for input(s) {missing}.")
    platform = str(request.get("platform") or "rk3588").lower()
    if platform not in PLATFORMS:
        raise Refused("bad_request", f"Unknown RKNN platform '{platform}'; the toolkit targets {', '.join(PLATFORMS)}.")
    return model_path, model, shapes, platform


def _run(rknn: Any, model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], names: list[str]) -> list[list[Any]]:
    if rknn.init_runtime(target=None) != 0:
        raise RuntimeError("the simulator did not start")
    # The toolkit lowercases every entry, so None (meant for a non-4-D input) raises; "nchw" is the ONNX
    # layout and the toolkit ignores it for inputs of other ranks.
    formats = ["nchw"] * len(names)
    results = []
    for feed in feeds:
        outputs = rknn.inference(inputs=[np.asarray(feed[name]) for name in names], data_format=formats)
        if outputs is None:
            raise RuntimeError("the simulator returned no outputs")
        results.append(outputs)
    return results


def convert(request: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    model_path, model, shapes, platform = _request_model(request)
    out_dir = Path(request["out_dir"])
    wanted = [precision for precision in PRECISIONS if precision in (request.get("variants") or ["fp16"])]
    unknown = sorted(set(request.get("variants") or []) - set(PRECISIONS))
    if unknown:
        raise Refused("bad_request", f"Unknown variants {unknown}; known: {list(PRECISIONS)}.")
    work = _SCRATCH / "work"
    dataset, samples = None, 0
    if request.get("calibration"):
        dataset, samples = _samples(str(request["calibration"]), model, shapes, work / "calibration")
    version = importlib.metadata.version("rknn-toolkit2")
    answer: dict[str, Any] = {
        "platform": platform,
        "converted": False,
        "nodes": [],
        "placement": [],
        "variants": {},
        "notes": [],
        "converter": CONVERTER,
        "converter_version": version,
        "tool_versions": {"rknn-toolkit2": version, "onnx": onnx.__version__, "numpy": np.__version__},
        "calibration_samples": samples,
    }
    for precision in wanted:
        if precision == "int8" and dataset is None:
            answer["variants"][precision] = {"error": "INT8 needs a calibration set (an .npz, one array per input)."}
            continue
        rknn, outcome = _build(model_path, model, platform, precision, shapes, dataset, work / precision)
        if rknn is None:
            answer["variants"][precision] = {"error": outcome["error"]}
            if not answer["nodes"]:
                answer["nodes"] = _failed_nodes(model, outcome["error"])
                answer["error"] = outcome["error"]
            continue
        try:
            if not answer["converted"] or precision == "int8":
                # The INT8 build's placement is the one that deploys; the FP16 build's stands when it is the only one.
                answer["converted"] = True
                answer["placement"] = outcome["placement"]
                answer["placement_precision"] = precision
                answer["nodes"] = _nodes(model, outcome["placement"])
                answer.pop("error", None)
            out_dir.mkdir(parents=True, exist_ok=True)
            target = out_dir / f"model.{precision}.rknn"
            if rknn.export_rknn(str(target)) != 0:
                answer["variants"][precision] = {"error": "the toolkit could not write the .rknn file"}
                continue
            entry: dict[str, Any] = {"path": str(target.resolve()), "placement": outcome["placement"]}
            if request.get("analysis") and dataset is not None:
                entry["accuracy"] = _analysis(rknn, dataset, work / precision / "analysis")
            answer["variants"][precision] = entry
        finally:
            rknn.release()
    answer["seconds"] = round(time.monotonic() - started, 2)
    return answer


def _analysis(rknn: Any, dataset: Path, folder: Path) -> list[dict[str, Any]]:
    """The toolkit's accuracy analysis of one calibration sample on the simulator, per layer."""
    first = dataset.read_text().splitlines()[0].split()
    with without_shell():
        if rknn.init_runtime(target=None) != 0:
            return []
        status = rknn.accuracy_analysis(inputs=first, output_dir=str(folder), target=None)
    return _accuracy(folder / "error_analysis.txt") if status == 0 else []


def simulate(request: dict[str, Any]) -> dict[str, Any]:
    """Build the variant's recipe again and run the simulator on the inputs in request["feeds"] (an
    .npz of in/<i>/<name>); write out/<i>/<name> to request["outputs"]."""
    started = time.monotonic()
    model_path, model, shapes, platform = _request_model(request)
    precision = str(request.get("precision") or "int8")
    if precision not in PRECISIONS:
        raise Refused("bad_request", f"Unknown precision '{precision}'; known: {list(PRECISIONS)}.")
    work = _SCRATCH / "work"
    dataset = None
    if precision == "int8":
        if not request.get("calibration"):
            raise Refused("bad_request", "An INT8 variant is simulated with the calibration set it was built with.")
        dataset, _ = _samples(str(request["calibration"]), model, shapes, work / "calibration")
    runs: dict[int, dict[str, np.ndarray]] = {}
    with np.load(request["feeds"], allow_pickle=False) as data:
        for key in data.files:
            head, index, name = key.split("/", 2)
            if head == "in":
                runs.setdefault(int(index), {})[name] = data[key]
    feeds = [runs[i] for i in sorted(runs)]
    rknn, outcome = _build(model_path, model, platform, precision, shapes, dataset, work / "simulate")
    if rknn is None:
        raise Refused("conversion_failed", f"The toolkit could not build the variant again: {outcome['error']}")
    try:
        with without_shell():
            results = _run(rknn, model, feeds, list(shapes))
    finally:
        rknn.release()
    output_names = [value.name for value in model.graph.output]
    arrays: dict[str, Any] = {
        f"out/{i}/{name}": np.asarray(value)
        for i, outputs in enumerate(results)
        for name, value in zip(output_names, outputs, strict=False)
    }
    np.savez(request["outputs"], **arrays)
    return {"runs": len(results), "seconds": round(time.monotonic() - started, 2)}


if __name__ == "__main__":
    sys.exit(serve({"convert": convert, "simulate": simulate}))
