"""The MNN backend: what its converter accepts, which variants it builds, and how they run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.modelzoo import make_cnn_onnx, make_mlp_onnx
from workers.engine.backends import mnn as mnn_module
from workers.engine.backends.base import BackendNotInstalled, HardwareProfile, Variant
from workers.engine.backends.mnn import MnnBackend
from workers.engine.errors import ModelError

ARM_MNN = HardwareProfile("arm-cpu-mnn", "cpu", ("mnn", "ncnn"), ("fp32", "fp16", "int8-weights"))

requires_mnn = pytest.mark.skipif(MnnBackend().runtime_version() is None, reason="MNN is not installed here")


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


def _custom_op_model(path: Path) -> Path:
    """Relu -> com.example.Foo -> Sigmoid: one operator no runtime knows between two common ones."""
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
    return _save(path, graph, domains=("com.example",))


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


@pytest.fixture(scope="module")
def cnn_variants(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Variant], tuple[str, ...]]:
    if MnnBackend().runtime_version() is None:
        pytest.skip("MNN is not installed here")
    root = tmp_path_factory.mktemp("mnn-cnn")
    model = make_cnn_onnx(root / "cnn.onnx")
    backend = MnnBackend()
    variants = backend.build_variants(model, ARM_MNN, None, root / "variants")
    return model, variants, variants.notes


# --- operator support -------------------------------------------------------------------


@requires_mnn
def test_cnn_is_fully_supported_by_the_converter(tmp_path: Path) -> None:
    backend = MnnBackend()
    report = backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (report.backend, report.installed, report.method, report.verdict) == ("mnn", True, "converter", "full")
    assert report.runtime_version == backend.runtime_version()
    assert {op.op_type: op.status for op in report.ops} == dict.fromkeys(
        ["Conv", "Relu", "MaxPool", "Flatten", "Gemm"], "supported"
    )
    assert [(part.device, part.node_count) for part in report.partitions] == [("CPU", 5)]
    # Converter acceptance is not correctness, and the report says so.
    assert any("parity check" in note for note in report.notes)


@requires_mnn
def test_custom_domain_op_is_reported_unsupported_and_other_ops_are_listed(tmp_path: Path) -> None:
    report = MnnBackend().check_support(_custom_op_model(tmp_path / "custom.onnx"))
    ops = {(op.domain, op.op_type): op for op in report.ops}
    assert report.verdict == "partial"
    assert ops[("com.example", "Foo")].status == "unsupported"
    assert ops[("com.example", "Foo")].nodes == ("foo",)
    assert "does not support Foo" in ops[("com.example", "Foo")].reason
    assert ops[("ai.onnx", "Relu")].status == "supported"
    assert ops[("ai.onnx", "Sigmoid")].status == "supported"


@requires_mnn
def test_custom_domain_op_builds_no_variants_and_says_why(tmp_path: Path) -> None:
    backend = MnnBackend()
    variants = backend.build_variants(_custom_op_model(tmp_path / "custom.onnx"), ARM_MNN, None, tmp_path / "out")
    assert not variants
    assert variants.notes == tuple(
        f"{name} was not built: MNN does not support Foo" for name in ("mnn-fp32", "mnn-fp16", "mnn-int8-weights")
    )
    assert not list((tmp_path / "out").glob("*.mnn"))


@requires_mnn
def test_a_file_that_is_not_onnx_is_the_users_to_fix(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"this is not a model")
    with pytest.raises(ModelError) as caught:
        MnnBackend().check_support(path)
    assert caught.value.code == "invalid_model"


# --- variants -----------------------------------------------------------------------------


def test_cnn_variants_match_onnxruntime(cnn_variants: tuple[Path, list[Variant], tuple[str, ...]]) -> None:
    model, variants, notes = cnn_variants
    assert notes == ()
    assert [(v.name, v.precision, v.format) for v in variants] == [
        ("mnn-fp32", "fp32", "mnn"),
        ("mnn-fp16", "fp16", "mnn"),
        ("mnn-int8-weights", "int8-weights", "mnn"),
    ]
    image = _image()
    (expected,) = _reference(model, {"image": image})
    backend = MnnBackend()
    for variant in variants:
        assert variant.files == (variant.path,) and variant.path.exists()
        assert variant.tool_versions["mnn"] == backend.runtime_version()
        session = backend.load(variant.path)
        assert (session.input_names, session.output_names) == (("image",), ("logits",))
        logits = session.run({"image": image})["logits"]
        session.close()
        assert logits.shape == expected.shape
        if variant.precision == "fp32":
            np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-4)
        else:
            assert _cosine(logits, expected) > 0.98
    # Stored at lower precision, the weights take less space.
    sizes = {variant.precision: variant.path.stat().st_size for variant in variants}
    assert sizes["int8-weights"] < sizes["fp16"] < sizes["fp32"]


def test_a_closed_session_refuses_to_run(cnn_variants: tuple[Path, list[Variant], tuple[str, ...]]) -> None:
    session = MnnBackend().load(cnn_variants[1][0].path)
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        session.run({"image": _image()})


@requires_mnn
def test_precisions_of_the_profile_pick_the_variants(tmp_path: Path) -> None:
    profile = HardwareProfile("fp16-only", "cpu", ("mnn",), ("fp16", "int8"))
    variants = MnnBackend().build_variants(make_cnn_onnx(tmp_path / "cnn.onnx"), profile, None, tmp_path / "out")
    assert [variant.name for variant in variants] == ["mnn-fp16"]


@requires_mnn
def test_symbolic_batch_runs_at_any_batch_size(tmp_path: Path) -> None:
    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    profile = HardwareProfile("fp32", "cpu", ("mnn",), ("fp32",))
    (variant,) = MnnBackend().build_variants(model, profile, None, tmp_path / "out")
    rows = np.random.default_rng(3).standard_normal((5, 16)).astype(np.float32)
    (expected,) = _reference(model, {"input": rows})
    output = MnnBackend().load(variant.path).run({"input": rows})["output"]
    np.testing.assert_allclose(output, expected, rtol=1e-3, atol=1e-4)


@requires_mnn
def test_int8_inputs_are_refused_with_a_sentence(tmp_path: Path) -> None:
    """MNN's Python `const` has no int8 (a SystemError "returned a result with an exception
    set"), and casting to int8 inside MNN crashes its kernels: the session says what is wrong."""
    graph = helper.make_graph(
        [helper.make_node("Neg", ["a"], ["n"]), helper.make_node("Cast", ["n"], ["y"], to=TensorProto.INT32)],
        "int8",
        [helper.make_tensor_value_info("a", TensorProto.INT8, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [2, 3])],
    )
    model = _save(tmp_path / "int8.onnx", graph)
    (variant,) = MnnBackend().build_variants(model, HardwareProfile("fp32", "cpu", ("mnn",), ("fp32",)), None, tmp_path)
    session = MnnBackend().load(variant.path)
    with pytest.raises(RuntimeError, match="cannot feed int8 inputs; run this model with another backend"):
        session.run({"a": np.array([[-128, -3, 0], [1, 5, 127]], dtype=np.int8)})


@requires_mnn
def test_converter_accepts_reduce_l2_with_axes_input_and_computes_it_wrong(tmp_path: Path) -> None:
    """Why variants are never trusted before a parity check: the converter says yes, the output is wrong.

    MNN reduces over every axis instead of the one the opset-18 axes input names. If MNN
    fixes this, the test fails and can go.
    """
    model = _reduce_l2_model(tmp_path / "reduce_l2.onnx")
    backend = MnnBackend()
    assert backend.check_support(model).verdict == "full"
    profile = HardwareProfile("fp32", "cpu", ("mnn",), ("fp32",))
    (variant,) = backend.build_variants(model, profile, None, tmp_path / "out")
    x = np.random.default_rng(5).standard_normal((1, 3, 4, 5)).astype(np.float32)
    (expected,) = _reference(model, {"x": x})
    output = backend.load(variant.path).run({"x": x})["y"]
    assert output.shape != expected.shape or not np.allclose(output, expected, rtol=1e-3, atol=1e-4)


# --- without MNN -----------------------------------------------------------------------


@pytest.fixture
def without_mnn(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import MNN` / `import _tools` raise ImportError.
    monkeypatch.setitem(sys.modules, "MNN", None)
    monkeypatch.setitem(sys.modules, "_tools", None)


@pytest.mark.usefixtures("without_mnn")
def test_without_mnn_support_comes_from_the_published_list(tmp_path: Path) -> None:
    backend = MnnBackend()
    assert backend.available() is False
    assert backend.runtime_version() is None

    report = backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (report.installed, report.method, report.verdict) == (False, "published_list", "full")
    assert "published operator list" in report.notes[0]

    custom = backend.check_support(_custom_op_model(tmp_path / "custom.onnx"))
    foo = next(op for op in custom.ops if op.op_type == "Foo")
    assert (custom.verdict, foo.status) == ("partial", "unsupported")


@pytest.mark.usefixtures("without_mnn")
def test_without_mnn_or_its_list_the_report_says_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnn_module, "load_published_list", lambda runtime: None)
    report = MnnBackend().check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (report.installed, report.verdict) == (False, "not_installed")


@pytest.mark.usefixtures("without_mnn")
def test_without_mnn_building_and_loading_say_what_to_do(tmp_path: Path) -> None:
    backend = MnnBackend()
    with pytest.raises(BackendNotInstalled, match="MNN is not installed on this worker"):
        backend.build_variants(make_cnn_onnx(tmp_path / "cnn.onnx"), ARM_MNN, None, tmp_path / "out")
    with pytest.raises(BackendNotInstalled, match="Install the MNN package"):
        backend.load(tmp_path / "mnn-fp32.mnn")
