"""LiteRT's side of the LiteRT backend: convert an ONNX model to .tflite variants with onnx2tf
(protocol: `protocol.py`).

Runs in the LiteRT environment (onnx2tf pins tensorflow 2.19, numpy 1.26 and onnx 1.19.1, older
than Slipway's), as `<env>/bin/python -s -m workers.engine.importers.envs.litert_side REQUEST RESULT`,
inside the sandbox: no network, HOME not writable, no programs besides the interpreter, only the
current directory and out_dir writable.

Action "convert": onnx2tf turns the ONNX graph into a TensorFlow SavedModel node by node and writes
the FP32 and FP16 .tflite files from it; the full-INT8 variant (INT8 kernels, float32 inputs and
outputs: onnx2tf's `*_integer_quant.tflite` flavour) is quantized here from that SavedModel with
the caller's calibration arrays, the way onnx2tf's -oiqt does it, without its four other INT8
flavours and without its mean/std normalisation. Inputs of rank 3 to 5 keep the ONNX layout
(onnx2tf's keep_ncw_or_nchw_or_ncdhw_input_names) so Slipway feeds the arrays it feeds
onnxruntime; outputs come as onnx2tf makes them (channel-last for 3D-5D tensors), and each
variant's io JSON says which transpose gives the ONNX layout back. An operator onnx2tf can't
convert is an answer ("converted": false, with each node's status), not a refusal.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _private_dirs() -> Path:
    """Point HOME, TMPDIR and the caches at a folder of this process under the current directory.

    TensorFlow and Keras create ~/.keras and cache folders at import, and onnx2tf and the TFLite
    converter write temporary files; in the sandbox only the current directory and out_dir are
    writable. Must run before tensorflow is imported.
    """
    try:
        scratch = Path(tempfile.mkdtemp(prefix=".litert-side-", dir=Path.cwd()))
    except OSError:  # run by hand from a read-only folder: the system's temporary directory will do
        scratch = Path(tempfile.mkdtemp(prefix="litert-side-"))
    atexit.register(shutil.rmtree, scratch, True)
    for name in ("home", "tmp", "cache", "work"):
        (scratch / name).mkdir()
    os.environ["HOME"] = str(scratch / "home")
    os.environ["TMPDIR"] = str(scratch / "tmp")
    os.environ["XDG_CACHE_HOME"] = str(scratch / "cache")
    os.environ["KERAS_HOME"] = str(scratch / "home" / ".keras")
    os.environ["TFHUB_CACHE_DIR"] = str(scratch / "cache" / "tfhub")
    tempfile.tempdir = None  # forget a temporary directory chosen before TMPDIR changed
    # TensorFlow's INFO lines (oneDNN banners, MLIR pass notes) would bury what explains a failure.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    # A GPU is never used here, and probing for CUDA only adds warnings.
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    return scratch


_SCRATCH = _private_dirs()


import numpy as np  # noqa: E402
import onnx  # noqa: E402

from workers.engine.importers.envs.protocol import Refused, first_line, serve, without_shell  # noqa: E402

with without_shell():
    import onnx2tf
    import onnx2tf.onnx2tf as _onnx2tf_main
    import tensorflow as tf


CONVERTER = "onnx2tf"
SIGNATURE = "serving_default"
PRECISIONS = ("fp32", "fp16", "int8")
# onnxruntime 1.23 (onnx2tf's shape estimation and this side's self-check) reads IR versions <= 11;
# a newer exporter's IR version only adds what these graphs don't use.
_MAX_IR_VERSION = 11
_TAIL_LINES = 40


def _offline_test_images() -> np.ndarray:
    """Stands in for onnx2tf's download_test_image_data, which fetches 20 sample RGB images from
    GitHub to check models whose inputs look like NHWC images: the sandbox has no network. onnx2tf
    only compares its TensorFlow graph with onnxruntime on them, so fixed pseudo-random pixels
    (same shape and range) serve as well."""
    return np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)


_onnx2tf_main.download_test_image_data = _offline_test_images


class _Tail(io.TextIOBase):
    """stdout as it was, keeping its last lines: onnx2tf reports some failures only by printing them
    (and then calling sys.exit), and the reason a node failed is among those lines."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.lines: list[str] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        self._partial += text
        *done, self._partial = self._partial.split("\n")
        self.lines = (self.lines + done)[-_TAIL_LINES:]
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _error_lines(lines: list[str]) -> list[str]:
    clean = [_ANSI.sub("", line).strip() for line in lines]
    return [line for line in clean if line.startswith("ERROR:") or " error: " in line]


def _node_labels(model: onnx.ModelProto) -> list[str]:
    """A unique name for each top-level node: its own when it has one, else "<op_type>_<index>" (onnx2tf's
    name generator would invent another, which the caller could not match)."""
    labels: list[str] = []
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        label = node.name or f"{node.op_type}_{index}"
        if label in seen:
            label = f"{label}_{index}"
        seen.add(label)
        labels.append(label)
    return labels


def _squash(name: str) -> str:
    """A name with onnx2tf's substitutions (":" to "__", leading "/" dropped, ...) undone enough to compare."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def _prepared(model: onnx.ModelProto, inputs: list[dict[str, Any]], notes: list[str]) -> onnx.ModelProto:
    """The model onnx2tf converts: dynamic input dims fixed to the request's shapes (onnx2tf fixes
    them only through onnxsim, which is not used), every node named, the IR version one that
    onnxruntime reads, and shapes inferred again."""
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
            + "; the .tflite files take those shapes only."
        )
        del model.graph.value_info[:]
    for node, label in zip(model.graph.node, _node_labels(model), strict=True):
        node.name = label
    if model.ir_version > _MAX_IR_VERSION:
        notes.append(
            f"The ONNX IR version {model.ir_version} was read as {_MAX_IR_VERSION} (onnxruntime 1.23's newest)."
        )
        model.ir_version = _MAX_IR_VERSION
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx2tf infers shapes itself as far as it can
        notes.append(f"ONNX shape inference failed ({first_line(exc)}); onnx2tf converted without it.")
    return model


def _folded(model: onnx.ModelProto, folder: Path, notes: list[str]) -> onnx.ModelProto:
    """The model with constant subgraphs folded by onnxruntime's basic level (standard ONNX operators
    only): what onnxsim would do before onnx2tf. Without it onnx2tf mis-converts the Shape/Gather/
    Concat chains exporters write for reshapes (a PyTorch TransformerEncoderLayer came out with a max
    error of 0.37; folded, 7e-7). A graph onnxruntime can't load is converted as it is."""
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folder / "folded.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        folded = onnx.load(str(folder / "folded.onnx"))
    except Exception as exc:
        notes.append(f"onnxruntime could not fold the graph's constants ({first_line(exc)}); onnx2tf took it as is.")
        return model
    notes.append(
        f"Constants were folded with onnxruntime's basic graph optimizations before onnx2tf "
        f"({len(model.graph.node)} nodes to {len(folded.graph.node)}); a node folded away counts as converted."
    )
    return folded


def _calibration(path: str, model: onnx.ModelProto, inputs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The calibration arrays by ONNX input name, checked against the requested shapes (batch on axis 0)."""
    try:
        with np.load(path) as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
    except Exception as exc:
        raise Refused("invalid_calibration", f"The calibration file can't be read as .npz: {first_line(exc)}.") from exc
    shapes = {item["name"]: [int(dim) for dim in item["shape"]] for item in inputs}
    for value in _graph_inputs(model):
        shape = shapes[value.name]
        array = arrays.get(value.name)
        if array is None:
            raise Refused(
                "invalid_calibration",
                f"The calibration file has no array for the input '{value.name}' (it has {sorted(arrays)}).",
            )
        if list(array.shape[1:]) != shape[1:] or array.shape[0] < 1:
            raise Refused(
                "invalid_calibration",
                f"The calibration array for the input '{value.name}' has shape {list(array.shape)}; the input is "
                f"{shape}, so samples of shape [N, {', '.join(map(str, shape[1:]))}] were expected.",
            )
    return arrays


def _convert_graph(
    model_path: Path, folder: Path, keep_layout: list[str], labels: list[str], op_types: list[str]
) -> tuple[bool, list[dict[str, str]], str]:
    """Run onnx2tf; answer whether the whole graph converted, each node's status and the error.

    onnx2tf converts the nodes in graph order and tags an exception from that loop with the node
    (`onnx_op_name`); a failure after it (the TFLite converter on an operator onnx2tf built with
    tf.py_function) is put on the nodes whose onnx2tf implementation uses one.
    """
    tail = _Tail(sys.stdout)
    failure: BaseException | None = None
    with contextlib.redirect_stdout(tail), without_shell():
        try:
            onnx2tf.convert(
                input_onnx_file_path=str(model_path),
                output_folder_path=str(folder),
                output_signaturedefs=True,
                not_use_onnxsim=True,
                keep_ncw_or_nchw_or_ncdhw_input_names=keep_layout or None,
                verbosity="info",
            )
        except (Exception, SystemExit) as exc:
            failure = exc
    statuses = [{"name": label, "status": "converted", "reason": ""} for label in labels]
    if failure is None and (folder / f"{model_path.stem}_float32.tflite").exists():
        return True, statuses, ""
    printed = _error_lines(tail.lines)
    reason = first_line(failure) if failure is not None and not isinstance(failure, SystemExit) else ""
    missing = failure.name or "" if isinstance(failure, ModuleNotFoundError) else ""
    if missing.startswith("onnx2tf.ops."):
        reason = f"onnx2tf {onnx2tf.__version__} has no converter for the operator {missing.rsplit('.', 1)[1]}"
    if not reason or reason == "1":
        reason = printed[-1] if printed else "onnx2tf stopped without saying why"
    failed_at = getattr(failure, "onnx_op_name", None)
    if failed_at is not None:
        index = _node_index(str(failed_at), labels)
        if index is not None:
            for status in statuses[index:]:
                status.update(status="not_reached", reason=f"the conversion stopped at {labels[index]}")
            statuses[index].update(status="failed", reason=reason)
            return False, statuses, reason
    for status, op_type in zip(statuses, op_types, strict=True):
        if _op_uses_python(op_type):
            status.update(status="failed", reason=reason)
    return False, statuses, reason


def _op_uses_python(op_type: str) -> bool:
    """Whether onnx2tf builds this operator with tf.py_function, which the TFLite converter can't hold."""
    source = Path(onnx2tf.__file__).parent / "ops" / f"{op_type}.py"
    try:
        text = source.read_text()
    except OSError:
        return False
    return "py_function" in text or "numpy_function" in text


def _node_index(name: str, labels: list[str]) -> int | None:
    if name in labels:
        return labels.index(name)
    squashed = [_squash(label) for label in labels]
    target = _squash(name)
    return squashed.index(target) if target in squashed else None


def _match(names: list[str], keys: list[str]) -> dict[str, str]:
    """ONNX tensor names to signature keys: the same name, or the same once onnx2tf's substitutions
    are undone, or the SavedModel's positional "output_<i>", or else by position."""
    found: dict[str, str] = {}
    for position, name in enumerate(names):
        close = [key for key in keys if _squash(key) == _squash(name)]
        if name in keys:
            found[name] = name
        elif close:
            found[name] = close[0]
        elif f"output_{position}" in keys:
            found[name] = f"output_{position}"
        elif position < len(keys):
            found[name] = keys[position]
    return found


def _interpreter(path: Path) -> Any:
    """TensorFlow's own TFLite interpreter: unlike ai-edge-litert's it links the Flex delegate, so the
    self-check also runs models that kept TensorFlow ops."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "tf.lite.Interpreter is deprecated": it is what has Flex
        return tf.lite.Interpreter(model_path=str(path), num_threads=1)


def _channel_last_to_first(rank: int) -> list[int]:
    return [0, rank - 1, *range(1, rank - 1)]


def _onnx_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The reference outputs on the check's input, or None where onnxruntime can't run the graph
    (an operator it lacks): then the output transposes are chosen by shape alone."""
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds), strict=True))
    except Exception:
        return None


def _check_input(model: onnx.ModelProto, calibration: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """One input set for the FP32 self-check: the first calibration sample, else fixed random values."""
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {}
    for value in _graph_inputs(model):
        shape = [dim.dim_value for dim in value.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        if calibration is not None and value.name in calibration and calibration[value.name].shape[0] >= shape[0]:
            feeds[value.name] = calibration[value.name][: shape[0]].astype(dtype)
        elif np.issubdtype(dtype, np.floating):
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[value.name] = np.zeros(shape, dtype)
    return feeds


def _io_map(
    fp32: Path, model: onnx.ModelProto, calibration: dict[str, np.ndarray] | None, notes: list[str]
) -> dict[str, list[int] | None]:
    """The transpose that turns each TFLite output into the ONNX layout, by ONNX output name: chosen
    by shape, and where shapes can't tell (equal dims) or don't know (dynamic), by comparing the FP32
    model with onnxruntime on one input set."""
    runner = _interpreter(fp32).get_signature_runner(SIGNATURE)
    input_keys = list(runner.get_input_details())
    output_details = runner.get_output_details()
    input_names = [value.name for value in _graph_inputs(model)]
    output_names = [value.name for value in model.graph.output]
    inputs = _match(input_names, input_keys)
    outputs = _match(output_names, list(output_details))
    feeds = _check_input(model, calibration)
    reference = _onnx_outputs(model, feeds)
    produced: dict[str, np.ndarray] | None = None
    try:
        produced = runner(**{inputs[name]: array for name, array in feeds.items()})
    except Exception as exc:
        notes.append(f"The FP32 self-check could not run the .tflite file: {first_line(exc)}.")
    onnx_shapes = {
        value.name: [dim.dim_value if dim.HasField("dim_value") else None for dim in value.type.tensor_type.shape.dim]
        for value in model.graph.output
    }
    transposes: dict[str, list[int] | None] = {}
    errors: list[str] = []
    for name in output_names:
        key = outputs.get(name)
        if key is None:
            continue
        tflite_shape = [int(dim) for dim in output_details[key]["shape"]]
        rank = len(tflite_shape)
        candidates: list[list[int] | None] = [None]
        if rank >= 3:
            candidates.append(_channel_last_to_first(rank))
        target = onnx_shapes.get(name)

        def fits(perm: list[int] | None, shape: list[int] = tflite_shape, target: Any = target) -> bool:
            got = shape if perm is None else [shape[axis] for axis in perm]
            return (
                target is not None
                and len(target) == len(got)
                and all(want is None or want == have for want, have in zip(target, got, strict=True))
            )

        fitting = [perm for perm in candidates if fits(perm)] or candidates
        if len(fitting) > 1 and reference is not None and produced is not None and name in reference:
            want = reference[name]

            def error(perm: list[int] | None, have: np.ndarray = produced[key], want: np.ndarray = want) -> float:
                got = have if perm is None else np.transpose(have, perm)
                return float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")

            fitting.sort(key=error)
        transposes[name] = fitting[0]
        if reference is not None and produced is not None and name in reference:
            got = produced[key] if fitting[0] is None else np.transpose(produced[key], fitting[0])
            if got.shape == reference[name].shape and np.issubdtype(got.dtype, np.number):
                diff = np.abs(got.astype(np.float64) - reference[name].astype(np.float64))
                errors.append(f"{name}: {float(diff.max()) if diff.size else 0.0:.3g}")
    if errors:
        notes.append("FP32 self-check against onnxruntime, max abs error per output: " + ", ".join(errors) + ".")
    elif reference is None:
        notes.append("onnxruntime could not run the ONNX model, so output transposes were chosen by shape only.")
    return transposes


def _describe(path: Path, model: onnx.ModelProto, transposes: dict[str, Any]) -> dict[str, Any]:
    """The io JSON of one .tflite file: how to feed ONNX-layout arrays to its signature and read
    ONNX-layout outputs back, with each tensor's dtype and quantization as the file has them (the
    files' signature keys differ: the INT8 file, made from the SavedModel, names outputs output_<i>)."""
    interpreter = _interpreter(path)
    # XNNPACK prepares its kernels here: a file it can't take (seen: onnx2tf's -inf PADV2 before a
    # max pool, quantized to INT8) fails now rather than in Slipway's benchmark.
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner(SIGNATURE)
    in_details, out_details = runner.get_input_details(), runner.get_output_details()
    inputs = _match([value.name for value in _graph_inputs(model)], list(in_details))
    outputs = _match([value.name for value in model.graph.output], list(out_details))

    def entry(onnx_name: str, key: str, details: dict[str, Any], transpose: Any) -> dict[str, Any]:
        scale, zero_point = details.get("quantization", (0.0, 0))
        quantized = np.dtype(details["dtype"]).kind in "iu" and scale != 0.0
        return {
            "onnx_name": onnx_name,
            "tflite_name": key,
            "shape": [int(dim) for dim in details["shape"]],
            "transpose": transpose,
            "dtype": np.dtype(details["dtype"]).name,
            "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if quantized else None,
        }

    return {
        "signature": SIGNATURE,
        "inputs": [entry(name, key, in_details[key], None) for name, key in inputs.items()],
        "outputs": [entry(name, key, out_details[key], transposes.get(name)) for name, key in outputs.items()],
    }


def _quantize_int8(saved_model: Path, model: onnx.ModelProto, calibration: dict[str, np.ndarray]) -> bytes:
    """Full-integer quantization with float32 inputs and outputs (onnx2tf's `_integer_quant`
    flavour): INT8 kernels with per-channel weights, Quantize/Dequantize at the edges, TF ops left
    where no INT8 kernel exists. The calibration arrays are fed as given, in the model's batch size."""
    signature = tf.saved_model.load(str(saved_model)).signatures[SIGNATURE]
    specs: dict[str, Any] = signature.structured_input_signature[1]
    keys = _match([value.name for value in _graph_inputs(model)], list(specs))
    batch = {name: int(specs[key].shape[0] or 1) for name, key in keys.items()}
    count = min(calibration[name].shape[0] // batch[name] for name in keys)

    def samples() -> Iterator[dict[str, Any]]:
        for index in range(count):
            yield {
                key: tf.constant(calibration[name][index * batch[name] : (index + 1) * batch[name]], specs[key].dtype)
                for name, key in keys.items()
            }

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.SELECT_TF_OPS]
    converter.representative_dataset = samples
    return bytes(converter.convert())


def _tflite_ops(path: Path) -> list[dict[str, Any]]:
    """The operators a .tflite file asks of LiteRT's op resolver, counted over all subgraphs, read from
    its flatbuffer: builtin ones by name, custom ones (Flex* are TensorFlow ops that need the Flex
    delegate, SELECT_TF_OPS) as builtin false."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    codes: list[tuple[str, bool]] = []
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append(((code.CustomCode() or b"?").decode(), False))
        else:
            codes.append((names.get(builtin, str(builtin)), True))
    counts: dict[tuple[str, bool], int] = {}
    for graph_index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(graph_index)
        for op_index in range(graph.OperatorsLength()):
            key = codes[graph.Operators(op_index).OpcodeIndex()]
            counts[key] = counts.get(key, 0) + 1
    return [{"op": op, "count": count, "builtin": builtin} for (op, builtin), count in sorted(counts.items())]


def convert(request: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    onnx_path = Path(request["model"]["onnx"])
    out_dir = Path(request["out_dir"])
    wanted = [precision for precision in PRECISIONS if precision in (request.get("variants") or ["fp32"])]
    unknown = sorted(set(request.get("variants") or []) - set(PRECISIONS))
    if unknown:
        raise Refused("bad_request", f"Unknown variants {unknown}; known: {list(PRECISIONS)}.")
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:
        raise Refused("invalid_model", f"The ONNX file can't be read: {first_line(exc)}.") from exc
    notes: list[str] = [
        "onnx2tf ran without onnxsim (not_use_onnxsim): onnxsim is a separate program, which the sandbox can't run.",
    ]
    inputs: list[dict[str, Any]] = list(request.get("inputs") or [])
    model = _prepared(model, inputs, notes)
    calibration: dict[str, np.ndarray] | None = None
    if "int8" in wanted and request.get("calibration"):
        calibration = _calibration(str(request["calibration"]), model, inputs)
    labels = [node.name for node in model.graph.node]
    keep_layout = [value.name for value in _graph_inputs(model) if 3 <= len(value.type.tensor_type.shape.dim) <= 5]
    if keep_layout:
        notes.append(
            "Inputs keep the ONNX layout (onnx2tf keep_ncw_or_nchw_or_ncdhw_input_names="
            f"{keep_layout}): the model transposes them to channel-last inside."
        )
    work = _SCRATCH / "work"
    model_path = work / "model.onnx"
    onnx.save(_folded(model, work, notes), str(model_path))
    folder = work / "tf"
    converted, statuses, reason = _convert_graph(
        model_path, folder, keep_layout, labels, [node.op_type for node in model.graph.node]
    )
    nodes = [
        {"name": status["name"], "op_type": node.op_type, "status": status["status"], "reason": status["reason"]}
        for node, status in zip(model.graph.node, statuses, strict=True)
    ]
    answer: dict[str, Any] = {
        "converted": converted,
        "nodes": nodes,
        "tflite_ops": [],
        "variants": {},
        "notes": notes,
        "converter": CONVERTER,
        "converter_version": onnx2tf.__version__,
        "tool_versions": {
            "onnx2tf": onnx2tf.__version__,
            "tensorflow": tf.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
        },
    }
    if not converted:
        answer["error"] = reason
        answer["seconds"] = round(time.monotonic() - started, 2)
        return answer
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / "model.fp32.tflite"
    shutil.copyfile(folder / f"{model_path.stem}_float32.tflite", fp32)
    transposes = _io_map(fp32, model, calibration, notes)
    answer["tflite_ops"] = _tflite_ops(fp32)
    if any(not op["builtin"] for op in answer["tflite_ops"]):
        notes.append(
            "The FP32 model has custom or Flex (SELECT_TF_OPS) operators: LiteRT runs Flex ops only with the Flex "
            "delegate (tensorflow's interpreter links it; ai-edge-litert's does not)."
        )
    files: dict[str, tuple[Path, list[str]]] = {}
    if "fp32" in wanted:
        files["fp32"] = (fp32, ["onnx2tf's float32 file."])
    if "fp16" in wanted:
        fp16 = out_dir / "model.fp16.tflite"
        shutil.copyfile(folder / f"{model_path.stem}_float16.tflite", fp16)
        files["fp16"] = (
            fp16,
            [
                "onnx2tf's float16 file: weights stored as float16 and dequantized to float32 when loaded; inputs, "
                "outputs and CPU arithmetic are float32 (XNNPACK may compute in fp16 only where the CPU supports it)."
            ],
        )
    if "int8" in wanted:
        if calibration is None:
            answer["variants"]["int8"] = {"error": "INT8 needs calibration data (an .npz, one array per input)."}
        else:
            int8 = out_dir / "model.int8.tflite"
            try:
                int8.write_bytes(_quantize_int8(folder, model, calibration))
                count = min(array.shape[0] for array in calibration.values())
                files["int8"] = (
                    int8,
                    [
                        "Full-integer quantization with float32 input and output (onnx2tf's `_integer_quant` flavour, "
                        "made from its SavedModel): INT8 kernels, per-channel weights, TF ops kept where no INT8 "
                        f"kernel exists; calibrated on {count} samples fed as given (no mean/std normalisation)."
                    ],
                )
            except Exception as exc:
                answer["variants"]["int8"] = {"error": f"The INT8 quantizer failed: {first_line(exc)}"}
    for precision, (path, variant_notes) in files.items():
        try:
            description = _describe(path, model, transposes)
        except Exception as exc:
            answer["variants"][precision] = {"error": f"LiteRT could not load the {precision} file: {first_line(exc)}"}
            continue
        io_path = path.with_suffix(".io.json")
        io_path.write_text(json.dumps(description, indent=1))
        answer["variants"][precision] = {
            "path": str(path.resolve()),
            "io": str(io_path.resolve()),
            "notes": variant_notes,
        }
    answer["seconds"] = round(time.monotonic() - started, 2)
    return answer


if __name__ == "__main__":
    sys.exit(serve({"convert": convert}))
