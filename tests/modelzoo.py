"""Model files for tests: small real ONNX models, zips of them, and hostile uploads.

Every builder writes to a path the test gives (usually under `tmp_path`) and returns it.
Weights come from a seeded numpy generator so that files are the same on every run.
"""

from __future__ import annotations

import importlib.util
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
PRODUCER = "slipway-tests"

# An MLP 16 -> 32 -> 4: parameters and FLOPs the tests can work out by hand.
MLP_PARAMETERS = 16 * 32 + 32 + 32 * 4 + 4
MLP_FLOPS_PER_ROW = (2 * 32 * 16 + 32) + 32 + (2 * 4 * 32 + 4)

# A CNN on 1x3x32x32 images: Conv(3->8, 3x3, pad 1) + Relu + MaxPool(2) + Flatten + Gemm(->10).
CNN_FLOPS = {
    "Conv": 2 * 8 * 32 * 32 * 3 * 3 * 3 + 8 * 32 * 32,
    "Relu": 8 * 32 * 32,
    "MaxPool": 8 * 16 * 16 * 2 * 2,
    "Gemm": 2 * 10 * 8 * 16 * 16 + 10,
}


def _finish(graph: onnx.GraphProto, **kwargs: object) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version="1.0",
        **kwargs,
    )
    model.ir_version = IR_VERSION
    return model


def make_mlp_onnx(
    path: Path, with_external_data: bool = False, batch: str | int | None = "batch", seed: int = 0
) -> Path:
    """An MLP (Gemm 16->32, Relu, Gemm 32->4) with input "input" of shape [batch, 16].

    With `with_external_data`, every initializer goes to "weights.bin" next to `path`;
    `seed` draws other weights (another version of the same network).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = {
        "w1": rng.standard_normal((16, 32)).astype(np.float32),
        "b1": rng.standard_normal(32).astype(np.float32),
        "w2": rng.standard_normal((32, 4)).astype(np.float32),
        "b2": rng.standard_normal(4).astype(np.float32),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "w1", "b1"], ["hidden"]),
            helper.make_node("Relu", ["hidden"], ["hidden_relu"]),
            helper.make_node("Gemm", ["hidden_relu", "w2", "b2"], ["output"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 4])],
        initializer=[numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = _finish(graph, doc_string="  A small MLP for tests.  \n")
    helper.set_model_props(model, {"task": "regression", "author": "tests"})
    onnx.checker.check_model(model)
    if with_external_data:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="weights.bin",
            size_threshold=0,
        )
    else:
        onnx.save_model(model, str(path))
    return path


def make_cnn_onnx(path: Path) -> Path:
    """A CNN on a 1x3x32x32 "image": Conv + Relu + MaxPool + Flatten + Gemm -> 10 logits."""
    rng = np.random.default_rng(1)
    weights = {
        "conv_w": (rng.standard_normal((8, 3, 3, 3)) * 0.1).astype(np.float32),
        "conv_b": np.zeros(8, dtype=np.float32),
        "fc_w": (rng.standard_normal((10, 8 * 16 * 16)) * 0.01).astype(np.float32),
        "fc_b": np.zeros(10, dtype=np.float32),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Flatten", ["pool"], ["flat"]),
            helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        ],
        "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=[numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = _finish(graph)
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path))
    return path


def make_if_onnx(path: Path) -> Path:
    """A model with an If node: "then" doubles x with Add, "else" squares it with Mul."""
    then_graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["doubled"])],
        "then_branch",
        [],
        [helper.make_tensor_value_info("doubled", TensorProto.FLOAT, [4])],
    )
    else_graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "x"], ["squared"]),
            helper.make_node("Neg", ["squared"], ["negated"]),
        ],
        "else_branch",
        [],
        [helper.make_tensor_value_info("negated", TensorProto.FLOAT, [4])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=then_graph, else_branch=else_graph)],
        "branching",
        [
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    model = _finish(graph)
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path))
    return path


def make_function_onnx(path: Path) -> Path:
    """A model that calls a local function "slipway.tests.ScaledRelu" (Relu then Mul)."""
    function = helper.make_function(
        "slipway.tests",
        "ScaledRelu",
        ["x", "scale"],
        ["y"],
        [
            helper.make_node("Relu", ["x"], ["relu"]),
            helper.make_node("Mul", ["relu", "scale"], ["y"]),
        ],
        [helper.make_opsetid("", OPSET)],
    )
    graph = helper.make_graph(
        [helper.make_node("ScaledRelu", ["input", "scale"], ["output"], domain="slipway.tests")],
        "with_function",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 8])],
        initializer=[numpy_helper.from_array(np.array(2.0, dtype=np.float32), "scale")],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("slipway.tests", 1)],
        functions=[function],
        producer_name=PRODUCER,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path))
    return path


def rapidocr_det_model_path() -> Path:
    """The PP-OCRv4 text detector that ships inside the rapidocr_onnxruntime package."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise LookupError("rapidocr_onnxruntime is not installed (it is a dev dependency)")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    return package_dir / "models" / "ch_PP-OCRv4_det_infer.onnx"


def make_zip(dest: Path, files: dict[str, bytes | Path], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip with one member per entry of `files` (member name -> bytes or a file to copy)."""
    with zipfile.ZipFile(dest, "w", compression=compression) as archive:
        for name, content in files.items():
            if isinstance(content, Path):
                archive.write(content, name)
            else:
                archive.writestr(name, content)
    return dest


# --- hostile files -----------------------------------------------------------------


def truncate(path: Path, frac: float) -> Path:
    """Cut `path` in place to `frac` of its size, as an interrupted upload would."""
    size = path.stat().st_size
    with path.open("r+b") as stream:
        stream.truncate(int(size * frac))
    return path


def bitflip(path: Path, offset: int, bit: int = 0) -> Path:
    """Flip one bit of the byte at `offset`, in place."""
    with path.open("r+b") as stream:
        stream.seek(offset)
        byte = stream.read(1)[0]
        stream.seek(offset)
        stream.write(bytes([byte ^ (1 << bit)]))
    return path


def make_zip_bomb(dest: Path, uncompressed_bytes: int = 200 * 2**20, model: bytes | None = None) -> Path:
    """A zip whose "weights.bin" is `uncompressed_bytes` of zeros (about 1000:1 deflated).

    Written in chunks so that building it is quick and takes little memory. With
    `model`, a "model.onnx" member holds those bytes, so only the ratio is wrong.
    """
    chunk = bytes(2**20)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        if model is not None:
            archive.writestr("model.onnx", model)
        with archive.open("weights.bin", "w", force_zip64=True) as member:
            remaining = uncompressed_bytes
            while remaining > 0:
                member.write(chunk[: min(remaining, len(chunk))])
                remaining -= len(chunk)
    return dest


def make_hostile_zip(dest: Path, member_name: str, data: bytes = b"payload", unix_mode: int | None = None) -> Path:
    """A zip holding "model.onnx" plus one member with a chosen raw name and file mode.

    zipfile writes names such as "../evil" or "/etc/cron.d/x" as given, which is what an
    attacker's tool would do; `unix_mode` (say 0o120777) marks the member as a symlink.
    """
    with zipfile.ZipFile(dest, "w") as archive:
        archive.writestr("model.onnx", b"\x08\x08")
        info = zipfile.ZipInfo(member_name)
        if unix_mode is not None:
            info.external_attr = unix_mode << 16
            info.create_system = 3
        with warnings.catch_warnings():
            # a member named "model.onnx" again is one of the hostile cases
            warnings.simplefilter("ignore", UserWarning)
            archive.writestr(info, data)
    return dest


def patch_central_directory(
    path: Path, member: str, *, file_size: int | None = None, flag_bits: int | None = None
) -> Path:
    """Rewrite one member's central-directory record in place.

    For lying headers: `file_size` sets the declared uncompressed size (zip readers trust
    the central directory), `flag_bits` the general-purpose flags (0x1 = encrypted).
    """
    data = bytearray(path.read_bytes())
    name = member.encode()
    position = data.find(b"PK\x01\x02")
    while position != -1:
        name_length = struct.unpack_from("<H", data, position + 28)[0]
        if data[position + 46 : position + 46 + name_length] == name:
            if flag_bits is not None:
                struct.pack_into("<H", data, position + 8, flag_bits)
            if file_size is not None:
                struct.pack_into("<I", data, position + 24, file_size)
            path.write_bytes(bytes(data))
            return path
        position = data.find(b"PK\x01\x02", position + 4)
    raise LookupError(f"{member!r} is not in the central directory of {path}")


def set_external_location(model_path: Path, location: str) -> Path:
    """Point every external tensor of a saved model at `location`, without moving files."""
    model = onnx.load(str(model_path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(model_path))
    return model_path


def make_concat_detector_onnx(path: Path, pixels: float, classes: int = 80) -> Path:
    """A YOLO-style head: one output [1, anchors, 4 + classes] holding box coordinates in
    pixels (0..`pixels`) beside sigmoid class scores in [0, 1]."""
    rng = np.random.default_rng(0)
    anchors = 16 * 16
    weights = {
        "w1": rng.normal(0, 0.3, (16, 3, 3, 3)),
        "wb": rng.normal(0, 0.3, (4, 16, 1, 1)),
        "ws": rng.normal(0, 0.3, (classes, 16, 1, 1)),
    }
    initializers = [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()]
    initializers += [
        numpy_helper.from_array(np.array([1, 4, anchors], np.int64), "boxes_shape"),
        numpy_helper.from_array(np.array([1, classes, anchors], np.int64), "scores_shape"),
        numpy_helper.from_array(np.array(pixels, np.float32), "pixels"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["h"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Conv", ["hr", "wb"], ["b"]),
        helper.make_node("Sigmoid", ["b"], ["bs"]),
        helper.make_node("Mul", ["bs", "pixels"], ["bp"]),
        helper.make_node("Reshape", ["bp", "boxes_shape"], ["boxes"]),
        helper.make_node("Conv", ["hr", "ws"], ["s"]),
        helper.make_node("Sigmoid", ["s"], ["ss"]),
        helper.make_node("Reshape", ["ss", "scores_shape"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["joined"], axis=1),
        helper.make_node("Transpose", ["joined"], ["detections"], perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [1, anchors, 4 + classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def make_outlier_channel_onnx(path: Path) -> Path:
    """A convolution whose input has one channel in pixels (0..640) beside two in [0, 1]: one
    per-tensor activation scale for its input rounds the small channels away, and the output
    channels that read only them collapse, whatever the whole output's cosine says."""
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32)
    weight[4:, 0] = 0.0  # output channels 4-7 read only the small input channels
    weight[:4, 0] *= 0.01
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["image", "channel_scale"], ["scaled"]),
            helper.make_node("Conv", ["scaled", "w"], ["features"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["features"], ["activated"]),
            helper.make_node("GlobalAveragePool", ["activated"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["embedding"]),
        ],
        "outlier_channel",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 8])],
        [
            numpy_helper.from_array(np.array([640.0, 1.0, 1.0], np.float32).reshape(1, 3, 1, 1), "channel_scale"),
            numpy_helper.from_array(weight, "w"),
        ],
    )
    model = _finish(graph)
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path))
    return path


def make_activation_cnn_onnx(path: Path, activation: str = "Mish", opset: int = 18) -> Path:
    """A CNN on a 1x3x32x32 "image" whose activation is `activation` (an operator ONNX defines
    by a function body, e.g. Mish, Swish, Softsign): Conv -> activation -> GlobalAveragePool
    -> Flatten -> Gemm -> 10 logits. MNN's converter refuses Mish and Swish, ncnn's Swish and
    Softsign; each runs once the node is expanded into its ONNX definition."""
    rng = np.random.default_rng(2)
    weights = {
        "conv_w": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "conv_b": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "fc_w": (rng.standard_normal((10, 8)) * 0.5).astype(np.float32),
        "fc_b": np.zeros(10, dtype=np.float32),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
            helper.make_node(activation, ["conv"], ["act"], name=activation.lower()),
            helper.make_node("GlobalAveragePool", ["act"], ["pool"], name="pool"),
            helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1, name="fc"),
        ],
        f"{activation.lower()}_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=[numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=PRODUCER)
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path))
    return path


def make_conv_lstm_onnx(path: Path, steps: int = 8, hidden: int = 32) -> Path:
    """A small sequence model: Conv1d front end over a [1, 4, steps] "signal", one LSTM layer
    (hidden 32) over the steps, and a MatMul head on its last hidden state -> [1, 3]."""
    rng = np.random.default_rng(5)
    features = 16
    weights = {
        "conv_w": (rng.standard_normal((features, 4, 3)) * 0.3).astype(np.float32),
        "conv_b": np.zeros(features, dtype=np.float32),
        "lstm_w": (rng.standard_normal((1, 4 * hidden, features)) * 0.2).astype(np.float32),
        "lstm_r": (rng.standard_normal((1, 4 * hidden, hidden)) * 0.2).astype(np.float32),
        "lstm_b": np.zeros((1, 8 * hidden), dtype=np.float32),
        "head_w": (rng.standard_normal((hidden, 3)) * 0.3).astype(np.float32),
        "squeeze_axes": np.array([0], dtype=np.int64),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["signal", "conv_w", "conv_b"], ["conv"], pads=[1, 1]),
            helper.make_node("Relu", ["conv"], ["relu"]),
            # [1, features, steps] -> [steps, 1, features], the LSTM's sequence-first layout.
            helper.make_node("Transpose", ["relu"], ["sequence"], perm=[2, 0, 1]),
            helper.make_node("LSTM", ["sequence", "lstm_w", "lstm_r", "lstm_b"], ["", "last_h"], hidden_size=hidden),
            helper.make_node("Squeeze", ["last_h", "squeeze_axes"], ["hidden"]),
            helper.make_node("MatMul", ["hidden", "head_w"], ["scores"]),
        ],
        "conv_lstm",
        [helper.make_tensor_value_info("signal", TensorProto.FLOAT, [1, 4, steps])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = _finish(graph)
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path))
    return path
