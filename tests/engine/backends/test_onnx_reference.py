"""The ONNX reference evaluator as a backend: found by the registry from its module alone, its op
support from the evaluator itself, and its one variant computing what onnxruntime computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.modelzoo import make_cnn_onnx, make_mlp_onnx
from workers.engine.backends.base import BackendNotInstalled, Calibration, HardwareProfile
from workers.engine.backends.onnx_reference import OnnxReferenceBackend
from workers.engine.backends.registry import BACKENDS, get_backend, installed_backends
from workers.engine.errors import ModelError

REFERENCE = HardwareProfile("reference", "cpu", ("onnx_reference",), ("fp32",))


def _custom_op_model(path: Path) -> Path:
    """Relu -> com.example.Foo -> Sigmoid: one operator the specification does not define."""
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
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


def test_the_registry_finds_the_backend_from_its_module() -> None:
    assert BACKENDS["onnx_reference"] is OnnxReferenceBackend
    assert isinstance(get_backend("onnx_reference"), OnnxReferenceBackend)
    assert installed_backends()["onnx_reference"] == onnx.__version__


def test_every_operator_of_a_standard_model_is_supported(tmp_path: Path) -> None:
    report = OnnxReferenceBackend().check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (report.installed, report.method, report.verdict) == (True, "runtime", "full")
    assert {op.status for op in report.ops} == {"supported"}
    assert "Conv" in {op.op_type for op in report.ops}
    assert [partition.device for partition in report.partitions] == ["reference"]


def test_an_operator_outside_the_specification_is_named_with_the_evaluators_reason(tmp_path: Path) -> None:
    report = OnnxReferenceBackend().check_support(_custom_op_model(tmp_path / "custom.onnx"))
    ops = {(op.domain, op.op_type): op for op in report.ops}
    assert (report.method, report.verdict) == ("probe", "partial")
    foo = ops[("com.example", "Foo")]
    assert foo.status == "unsupported" and foo.nodes == ("foo",)
    assert "Foo" in foo.reason and "com.example" in foo.reason
    assert ops[("ai.onnx", "Relu")].status == ops[("ai.onnx", "Sigmoid")].status == "supported"
    # The refused node splits the graph: reference, nothing, reference.
    assert [(p.device, p.nodes) for p in report.partitions] == [
        ("reference", ("relu",)),
        ("", ("foo",)),
        ("reference", ("sigmoid",)),
    ]


def test_its_variant_computes_what_onnxruntime_computes(tmp_path: Path) -> None:
    from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend

    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    built = OnnxReferenceBackend().build_variants(model, REFERENCE, None, tmp_path / "out")
    (variant,) = built
    assert (variant.name, variant.format, variant.precision) == ("onnx-reference-fp32", "onnx", "fp32")
    assert variant.files == (variant.path,) and variant.tool_versions == {"onnx": onnx.__version__}
    assert built.notes == ()
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    session = OnnxReferenceBackend().load(variant.path)
    assert session.input_names == ("input",)
    got = session.run({"input": x})
    session.close()
    expected = OnnxRuntimeCpuBackend().load(model).run({"input": x})
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="closed"):
        session.run({"input": x})


def test_precisions_it_does_not_build_are_noted_not_built(tmp_path: Path) -> None:
    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    int8 = HardwareProfile("int8", "cpu", ("onnx_reference",), ("int8",))
    np.savez(tmp_path / "calibration.npz", input=np.zeros((4, 16), np.float32))
    built = OnnxReferenceBackend().build_variants(
        model, int8, Calibration(tmp_path / "calibration.npz"), tmp_path / "o"
    )
    assert not built
    assert built.notes == (
        "onnx_reference runs the model as it is, in fp32; int8 variants were not built.",
        "onnx_reference does not quantize, so the calibration data was not used.",
    )


def test_a_file_that_is_not_onnx_is_the_users_to_fix_and_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError) as raised:
        OnnxReferenceBackend().build_variants(bad, REFERENCE, None, tmp_path / "out")
    assert raised.value.code == "invalid_model"
    assert not (tmp_path / "out").exists()


def test_without_onnx_nothing_is_built_and_the_reason_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = OnnxReferenceBackend()
    monkeypatch.setattr(backend, "runtime_version", lambda: None)
    assert backend.check_support(tmp_path / "any.onnx").verdict == "not_installed"
    with pytest.raises(BackendNotInstalled, match="onnx_reference is not installed on this worker"):
        backend.build_variants(tmp_path / "any.onnx", REFERENCE, None, tmp_path / "out")
    with pytest.raises(BackendNotInstalled):
        backend.load(tmp_path / "any.onnx")
