"""The LiteRT backend: onnx2tf's answer per node and LiteRT's resolver as op support, .tflite
variants (FP32, FP16, calibrated INT8) that take and give what the ONNX model does, and how
XNNPACK's share is read.

The conversions are slow (onnx2tf imports TensorFlow in the `litert` environment, built on a
fresh machine first); the walk over a delegated interpreter's operators is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from tests.framework_envs import ready
from tests.modelzoo import make_cnn_onnx
from workers.engine.backends.base import Calibration, HardwareProfile
from workers.engine.backends.litert import LiteRTBackend, _delegated_ops, io_path

MOBILE = HardwareProfile("mobile-litert", "cpu", ("litert",), ("fp32", "fp16", "int8"))


def _op(index: int, name: str, inputs: list[int], outputs: list[int]) -> dict:
    return {"index": index, "op_name": name, "inputs": inputs, "outputs": outputs}


def test_the_operators_a_delegate_took_are_found_from_its_outputs():
    # 0 CONV -> 1 RELU -> 2 (custom, not delegated) -> 3 FC -> 4 SOFTMAX; two XNNPACK partitions.
    details = [
        _op(0, "CONV_2D", [0, 10], [1]),
        _op(1, "RELU", [1], [2]),
        _op(2, "CUSTOM_THING", [2], [3]),
        _op(3, "FULLY_CONNECTED", [3, 11, -1], [4]),
        _op(4, "SOFTMAX", [4], [5]),
        _op(5, "DELEGATE", [0, 10], [2]),
        _op(6, "DELEGATE", [3, 11], [5]),
    ]
    taken, partitions = _delegated_ops(details)
    assert partitions == 2
    assert dict(taken) == {"CONV_2D": 1, "RELU": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1}


@pytest.fixture(scope="module")
def backend() -> LiteRTBackend:
    if LiteRTBackend().runtime_version() is None:
        pytest.fail("ai-edge-litert is not installed: pip install -e '.[runtimes-cpu]'")
    ready("litert")
    return LiteRTBackend()


def _custom_op_model(path: Path) -> Path:
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Foo", ["r"], ["f"], domain="com.example", name="foo"),
            helper.make_node("Sigmoid", ["f"], ["y"], name="sigmoid"),
        ],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


@pytest.mark.slow
def test_a_cnn_is_fully_supported_with_xnnpack_named(backend, tmp_path):
    report = backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert report.installed and report.method == "converter"
    assert report.verdict == "full", report
    assert all(op.status == "supported" for op in report.ops)
    assert any("XNNPACK takes" in note for note in report.notes), report.notes
    assert report.partitions and "XNNPACK" in report.partitions[0].device


@pytest.mark.slow
def test_an_operator_onnx2tf_lacks_is_named_and_what_follows_is_unknown(backend, tmp_path):
    report = backend.check_support(_custom_op_model(tmp_path / "custom.onnx"))
    assert report.verdict == "partial"
    by_node = {node: op for op in report.ops for node in op.nodes}
    assert by_node["relu"].status == "supported"
    assert by_node["foo"].status == "unsupported" and "Foo" in by_node["foo"].reason
    assert by_node["sigmoid"].status == "unsupported" and by_node["sigmoid"].reason.startswith("Not known")


@pytest.mark.slow
def test_the_variants_take_and_give_what_the_onnx_model_does(backend, tmp_path):
    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    name = onnx.load(str(model)).graph.input[0].name
    shape = [dim.dim_value or 1 for dim in onnx.load(str(model)).graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, **{name: rng.random((8, *shape[1:]), dtype=np.float32)})
    built = backend.build_variants(model, MOBILE, Calibration(calibration), tmp_path / "variants")
    assert [variant.name for variant in built] == ["litert-fp32", "litert-fp16", "litert-int8"], built.notes
    assert sorted(path.name for path in (tmp_path / "variants").iterdir()) == sorted(
        path.name for variant in built for path in variant.files
    ), "only the variants' files are left: onnx2tf's SavedModel and the rest are removed"
    feeds = {name: rng.random(shape, dtype=np.float32)}
    expected = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    for variant in built:
        assert variant.format == "tflite" and io_path(variant.path) in variant.files
        session = backend.load(variant.path)
        got = next(iter(session.run(feeds).values()))
        session.close()
        assert got.shape == expected.shape, variant.name
        cosine = float((got * expected).sum() / (np.linalg.norm(got) * np.linalg.norm(expected)))
        assert cosine > (0.99 if variant.precision == "int8" else 0.99999), (variant.name, cosine)


@pytest.mark.slow
def test_int8_without_calibration_is_skipped_with_the_reason(backend, tmp_path):
    built = backend.build_variants(make_cnn_onnx(tmp_path / "cnn.onnx"), MOBILE, None, tmp_path / "variants")
    assert [variant.name for variant in built] == ["litert-fp32", "litert-fp16"]
    assert any("calibration" in note for note in built.notes)


@pytest.mark.slow
def test_an_operator_the_tflite_writer_refuses_is_not_said_supported(backend, tmp_path):
    # Found by bench/op_support_matrix.py: onnx2tf converts every node of an Asinh model, but the
    # TFLite converter has no builtin or Flex op for what it becomes, so no file comes out.
    graph = helper.make_graph(
        [helper.make_node("Asinh", ["x"], ["y"], name="asinh")],
        "asinh",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4, 5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp_path / "asinh.onnx"))
    report = backend.check_support(tmp_path / "asinh.onnx")
    assert report.verdict == "none", report
    (op,) = report.ops
    assert op.status == "unsupported" and "does not run in LiteRT as built" in op.reason, op
