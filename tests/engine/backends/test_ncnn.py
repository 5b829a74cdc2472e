"""The ncnn backend: what pnnx converts, which variants it builds, and how they run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.modelzoo import make_cnn_onnx
from workers.engine.backends.base import BackendNotInstalled, HardwareProfile, Variant
from workers.engine.backends.ncnn import NcnnBackend
from workers.engine.errors import ModelError

ARM_NCNN = HardwareProfile("arm-cpu-mnn", "cpu", ("mnn", "ncnn"), ("fp32", "fp16", "int8-weights"))
FP32 = HardwareProfile("fp32", "cpu", ("ncnn",), ("fp32",))

requires_ncnn = pytest.mark.skipif(NcnnBackend().runtime_version() is None, reason="ncnn or pnnx is not installed")


def _image(batch: int = 1, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 32, 32)).astype(np.float32)


def _reference(model_path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def _save(path: Path, graph: onnx.GraphProto, opset: int = 17, domains: tuple[str, ...] = ()) -> Path:
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(domain, 1) for domain in domains)]
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def _between_relu_and_sigmoid(path: Path, op_type: str, domain: str = "") -> Path:
    """Relu -> op -> Sigmoid on a [1, 4] input."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node(op_type, ["r"], ["f"], domain=domain, name="middle"),
            helper.make_node("Sigmoid", ["f"], ["y"], name="sigmoid"),
        ],
        "sandwich",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return _save(path, graph, domains=(domain,) if domain else ())


def _reduce_l2_model(path: Path) -> Path:
    """Opset 18 ReduceL2 over the last axis, with the axes as an input (the opset-18 form)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceL2", ["x", "axes"], ["y"], keepdims=1, name="norm")],
        "reduce_l2",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 1])],
        initializer=[numpy_helper.from_array(np.array([3], dtype=np.int64), "axes")],
    )
    return _save(path, graph, opset=18)


def _two_input_model(path: Path) -> Path:
    """MatMul(b, a) feeding two outputs, declared in the opposite order to the nodes making them."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["b", "a"], ["m"]),
            helper.make_node("Relu", ["m"], ["relu_out"]),
            helper.make_node("Sigmoid", ["m"], ["sigmoid_out"]),
        ],
        "two_inputs",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4, 6]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 5, 4]),
        ],
        [
            helper.make_tensor_value_info("sigmoid_out", TensorProto.FLOAT, [1, 5, 6]),
            helper.make_tensor_value_info("relu_out", TensorProto.FLOAT, [1, 5, 6]),
        ],
    )
    return _save(path, graph)


@pytest.fixture(scope="module")
def cnn_variants(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Variant], tuple[str, ...]]:
    if NcnnBackend().runtime_version() is None:
        pytest.skip("ncnn or pnnx is not installed")
    root = tmp_path_factory.mktemp("ncnn-cnn")
    # The CNN with a symbolic batch, so a session can be given several images.
    model = onnx.load(str(make_cnn_onnx(root / "cnn-static.onnx")))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    path = root / "cnn.onnx"
    onnx.save_model(model, str(path))
    backend = NcnnBackend()
    variants = backend.build_variants(path, ARM_NCNN, None, root / "variants")
    return path, variants, variants.notes


# --- operator support -------------------------------------------------------------------


@requires_ncnn
def test_cnn_is_fully_supported_by_pnnx(tmp_path: Path) -> None:
    backend = NcnnBackend()
    report = backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (report.backend, report.installed, report.method, report.verdict) == ("ncnn", True, "converter", "full")
    assert {op.op_type: op.status for op in report.ops} == dict.fromkeys(
        ["Conv", "Relu", "MaxPool", "Flatten", "Gemm"], "supported"
    )
    assert [(part.device, part.node_count) for part in report.partitions] == [("CPU", 5)]
    assert any("parity check" in note for note in report.notes)
    assert any("image [1, 3, 32, 32]" in note for note in report.notes)


@requires_ncnn
def test_custom_domain_op_is_reported_unsupported(tmp_path: Path) -> None:
    """pnnx stops (it crashes) at an operator it does not know: that one is named, the rest are not claimed."""
    report = NcnnBackend().check_support(_between_relu_and_sigmoid(tmp_path / "custom.onnx", "Foo", "com.example"))
    assert report.verdict == "partial"
    ((foo),) = report.ops
    assert (foo.domain, foo.op_type, foo.status, foo.nodes) == ("com.example", "Foo", "unsupported", ("middle",))
    assert "pnnx does not know Foo" in foo.reason
    assert "other operators were not converted" in report.error


@requires_ncnn
def test_standard_op_without_conversion_is_unsupported_and_the_others_are_listed(tmp_path: Path) -> None:
    report = NcnnBackend().check_support(_between_relu_and_sigmoid(tmp_path / "hardmax.onnx", "Hardmax"))
    statuses = {op.op_type: op.status for op in report.ops}
    assert report.verdict == "partial"
    assert statuses == {"Relu": "supported", "Hardmax": "unsupported", "Sigmoid": "supported"}
    hardmax = next(op for op in report.ops if op.op_type == "Hardmax")
    assert "todo Hardmax" in hardmax.reason


@requires_ncnn
def test_an_input_without_a_shape_is_reported_with_what_to_do(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "no_shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = _save(tmp_path / "no_shape.onnx", graph)
    report = NcnnBackend().check_support(model)
    assert report.verdict == "error"
    assert "input_shapes" in report.error
    with pytest.raises(ModelError) as caught:
        NcnnBackend().build_variants(model, FP32, None, tmp_path / "out")
    assert caught.value.code == "input_shape_unknown"
    with_shape = HardwareProfile("fp32", "cpu", ("ncnn",), ("fp32",), options={"input_shapes": {"x": [1, 8]}})
    (variant,) = NcnnBackend().build_variants(model, with_shape, None, tmp_path / "out")
    assert variant.options["input_shapes"] == {"x": [1, 8]}


# --- variants -----------------------------------------------------------------------------


def test_cnn_variants_match_onnxruntime(cnn_variants: tuple[Path, list[Variant], tuple[str, ...]]) -> None:
    model, variants, notes = cnn_variants
    assert notes == ()
    assert [(v.name, v.precision, v.format) for v in variants] == [
        ("ncnn-fp32", "fp32", "ncnn"),
        ("ncnn-fp16", "fp16", "ncnn"),
    ]
    image = _image()
    (expected,) = _reference(model, {"image": image})
    backend = NcnnBackend(threads=1)
    for variant in variants:
        assert [path.name for path in variant.files] == [
            f"{variant.name}.ncnn.param",
            f"{variant.name}.ncnn.bin",
            f"{variant.name}.ncnn.io.json",
        ]
        assert all(path.exists() for path in variant.files)
        assert variant.options["inputs"] == {"image": {"name": "image", "blob": "in0", "batch_index": 0}}
        assert variant.options["outputs"] == {"logits": {"name": "logits", "blob": "out0", "batch_index": 0}}
        session = backend.load(variant.path)
        assert (session.input_names, session.output_names) == (("image",), ("logits",))
        logits = session.run({"image": image})["logits"]
        session.close()
        assert logits.shape == expected.shape
        if variant.precision == "fp32":
            np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-4)
        else:
            assert _cosine(logits, expected) > 0.98
    weights = {variant.precision: variant.files[1].stat().st_size for variant in variants}
    assert weights["fp16"] < weights["fp32"]


def test_a_batch_runs_one_sample_at_a_time(cnn_variants: tuple[Path, list[Variant], tuple[str, ...]]) -> None:
    model, variants, _ = cnn_variants
    images = _image(batch=3, seed=11)
    (expected,) = _reference(model, {"image": images})
    logits = NcnnBackend().load(variants[0].path).run({"image": images})["logits"]
    np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-4)


@requires_ncnn
def test_blob_names_map_back_to_onnx_names_in_order(tmp_path: Path) -> None:
    model = _two_input_model(tmp_path / "two.onnx")
    (variant,) = NcnnBackend().build_variants(model, FP32, None, tmp_path / "out")
    io = json.loads(variant.files[2].read_text())
    assert [(item["name"], item["blob"]) for item in io["inputs"]] == [("a", "in0"), ("b", "in1")]
    assert [(item["name"], item["blob"]) for item in io["outputs"]] == [("sigmoid_out", "out0"), ("relu_out", "out1")]
    rng = np.random.default_rng(2)
    feeds = {
        "a": rng.standard_normal((1, 4, 6)).astype(np.float32),
        "b": rng.standard_normal((1, 5, 4)).astype(np.float32),
    }
    sigmoid_out, relu_out = _reference(model, feeds)
    outputs = NcnnBackend().load(variant.path).run(feeds)
    np.testing.assert_allclose(outputs["sigmoid_out"], sigmoid_out, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(outputs["relu_out"], relu_out, rtol=1e-3, atol=1e-4)


@requires_ncnn
def test_custom_domain_op_builds_no_variants_and_says_why(tmp_path: Path) -> None:
    backend = NcnnBackend()
    model = _between_relu_and_sigmoid(tmp_path / "custom.onnx", "Foo", "com.example")
    built = backend.build_variants(model, ARM_NCNN, None, tmp_path / "out")
    assert not built
    assert [note.split(":")[0] for note in built.notes] == [
        "ncnn-fp32 was not built",
        "ncnn-fp16 was not built",
    ]
    assert all("pnnx cannot convert Foo" in note for note in built.notes)
    assert list((tmp_path / "out").iterdir()) == []


@requires_ncnn
def test_pnnx_accepts_reduce_l2_with_axes_input_and_ncnn_computes_it_wrong(tmp_path: Path) -> None:
    """Why variants are never trusted before a parity check: the converter says yes, the output is wrong.

    pnnx drops the opset-18 axes input, and ncnn returns an unreduced tensor. If pnnx fixes
    this, the test fails and can go.
    """
    model = _reduce_l2_model(tmp_path / "reduce_l2.onnx")
    backend = NcnnBackend()
    assert backend.check_support(model).verdict == "full"
    (variant,) = backend.build_variants(model, FP32, None, tmp_path / "out")
    x = np.random.default_rng(5).standard_normal((1, 3, 4, 5)).astype(np.float32)
    (expected,) = _reference(model, {"x": x})
    output = backend.load(variant.path).run({"x": x})["y"]
    assert output.shape != expected.shape or not np.allclose(output, expected, rtol=1e-3, atol=1e-4)


# --- without ncnn or pnnx -----------------------------------------------------------------


def test_without_ncnn_the_report_says_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import ncnn` raise ImportError. Slipway ships no published
    # ncnn operator list (ncnn and pnnx publish none for ONNX), so there is nothing to fall back on.
    monkeypatch.setitem(sys.modules, "ncnn", None)
    backend = NcnnBackend()
    assert backend.available() is False
    report = backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (report.installed, report.verdict) == (False, "not_installed")
    with pytest.raises(BackendNotInstalled, match="Install the ncnn and pnnx packages"):
        backend.build_variants(tmp_path / "cnn.onnx", ARM_NCNN, None, tmp_path / "out")
    with pytest.raises(BackendNotInstalled, match="ncnn is not installed on this worker"):
        backend.load(tmp_path / "ncnn-fp32.ncnn.param")


def test_without_pnnx_nothing_can_be_converted(tmp_path: Path) -> None:
    backend = NcnnBackend(pnnx_path=tmp_path / "no-such-pnnx")
    assert backend.available() is False
    assert backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx")).verdict == "not_installed"
    with pytest.raises(BackendNotInstalled):
        backend.build_variants(tmp_path / "cnn.onnx", ARM_NCNN, None, tmp_path / "out")
