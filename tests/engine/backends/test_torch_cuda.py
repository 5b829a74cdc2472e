"""The torch_cuda backend: ONNX models converted by onnx2torch and run through PyTorch on a GPU.

Tests that need only files run everywhere. Tests that convert models need torch and
onnx2torch (not dev dependencies: they skip where those are missing) and run on the CPU.
Tests marked `gpu` build and run variants on CUDA; they skip, saying why, elsewhere.
"""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.modelzoo import make_cnn_onnx, make_mlp_onnx
from workers.engine.backends import torch_cuda
from workers.engine.backends.base import BackendNotInstalled, HardwareProfile, Variant
from workers.engine.backends.torch_cuda import (
    TorchCudaBackend,
    TorchOnnxSession,
    TorchVariantSpec,
    variant_spec_path,
)
from workers.engine.inspection import TensorSpec

NVIDIA_GPU = HardwareProfile("nvidia-gpu", "gpu", ("torch_cuda",), ("fp32", "fp16"), queue="gpu")


def _reference(model: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime

    return onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def _split_model(path: Path) -> Path:
    """x [4, 6] -> Split into two [4, 3] halves (graph outputs "left", "right") and Relu(x) ("rectified")."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["rectified"]),
            helper.make_node("Split", ["x"], ["left", "right"], axis=1),
        ],
        "split",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])],
        [
            helper.make_tensor_value_info("right", TensorProto.FLOAT, [4, 3]),
            helper.make_tensor_value_info("rectified", TensorProto.FLOAT, [4, 6]),
            helper.make_tensor_value_info("left", TensorProto.FLOAT, [4, 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def _custom_op_model(path: Path) -> Path:
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Foo", ["a"], ["b"], domain="com.example"),
            helper.make_node("Sigmoid", ["b"], ["y"]),
        ],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


# --- missing pieces ---------------------------------------------------------------------------


def _assert_not_installed(backend: TorchCudaBackend, tmp_path: Path, reason: str) -> None:
    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    assert backend.runtime_version() is None
    assert backend.available() is False
    report = backend.check_support(model)
    assert report == backend.not_installed_report()
    assert (report.verdict, report.installed) == ("not_installed", False)
    assert any(reason in note for note in report.notes)
    with pytest.raises(BackendNotInstalled, match=re.escape(reason)):
        backend.build_variants(model, NVIDIA_GPU, None, tmp_path / "out")
    with pytest.raises(BackendNotInstalled, match="torch_cuda cannot run here"):
        backend.load(model)


def test_without_torch_the_backend_is_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail, even where it is installed
    _assert_not_installed(TorchCudaBackend(), tmp_path, "PyTorch (torch) is not installed")


def test_without_cuda_the_backend_is_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_only = types.SimpleNamespace(__version__="2.13.0+cpu", cuda=types.SimpleNamespace(is_available=lambda: False))
    monkeypatch.setitem(sys.modules, "torch", cpu_only)
    _assert_not_installed(TorchCudaBackend(), tmp_path, "sees no CUDA GPU")


def test_without_onnx2torch_the_backend_is_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_cuda = types.SimpleNamespace(
        __version__="2.13.0+cu130",
        version=types.SimpleNamespace(cuda="13.0"),
        cuda=types.SimpleNamespace(is_available=lambda: True),
    )
    monkeypatch.setitem(sys.modules, "torch", with_cuda)
    monkeypatch.setitem(sys.modules, "onnx2torch", None)
    _assert_not_installed(TorchCudaBackend(), tmp_path, "onnx2torch cannot be imported")


# --- variant files ---------------------------------------------------------------------------


def test_a_variant_is_found_from_its_file_alone(tmp_path: Path) -> None:
    (tmp_path / "version").mkdir()
    model = make_cnn_onnx(tmp_path / "version" / "model.onnx")
    spec_file = variant_spec_path(tmp_path / "version" / "variants", "torch-cuda-fp16")
    assert spec_file.name == "torch-cuda-fp16.torchcuda.json"
    spec_file.parent.mkdir()
    spec = TorchVariantSpec(
        onnx="../model.onnx", onnx_source=str(model), onnx_sha256="0" * 64, precision="fp16", compile=False
    )
    spec.write(spec_file)
    assert json.loads(spec_file.read_text())["format"] == "torch-onnx2torch"
    assert TorchVariantSpec.read(spec_file) == spec
    assert spec.model_path(spec_file) == spec_file.parent / "../model.onnx"

    # The folder moves with its model: the relative path still finds it.
    moved = tmp_path / "moved"
    (tmp_path / "version").rename(moved)
    assert TorchVariantSpec.read(moved / "variants" / spec_file.name).model_path(moved / "variants" / spec_file.name)

    # Neither beside the variant nor where it was built from.
    (moved / "model.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="keep the model beside its variants or rebuild them"):
        spec.model_path(moved / "variants" / spec_file.name)

    not_a_spec = tmp_path / "other.json"
    not_a_spec.write_text('{"hello": "world"}')
    with pytest.raises(ValueError, match="is not a torch_cuda variant file"):
        TorchVariantSpec.read(not_a_spec)


def test_outputs_are_found_in_what_the_module_returns(tmp_path: Path) -> None:
    plan = torch_cuda._output_plan(onnx.load(str(_split_model(tmp_path / "split.onnx"))).graph)
    # Split (node 1, two outputs) feeds "right" and "left"; Relu (node 0) feeds "rectified".
    assert plan.nodes == ((1, 2), (0, 1))
    assert plan.outputs == {"right": (0, 1), "rectified": (1, 0), "left": (0, 0)}


def test_converter_errors_are_told_in_words() -> None:
    no_converter = NotImplementedError(
        "Converter is not implemented (OperationDescription(domain='com.example', operation_type='Foo', version=1))"
    )
    assert torch_cuda._converter_error_text(no_converter) == (
        "onnx2torch has no converter for Foo (domain com.example, opset 1)."
    )
    assert torch_cuda._converter_error_text(KeyError("onnx::Shape_3")) == "KeyError: 'onnx::Shape_3'"


def test_example_inputs_take_given_sizes_for_dynamic_dims() -> None:
    specs = [
        TensorSpec("tokens", "int64", ("batch", "sequence")),
        TensorSpec("image", "float32", ("batch", 3, "height", "width")),
    ]
    examples = torch_cuda._example_inputs(specs, {"image": [2, 3, [32, 64, 128], None]})
    assert examples["tokens"].shape == (1, 1) and examples["tokens"].dtype == np.int64
    assert examples["image"].shape == (2, 3, 64, 1) and examples["image"].dtype == np.float32


# --- conversion on the CPU (needs torch and onnx2torch) ----------------------------------------


@pytest.fixture
def converter() -> None:
    pytest.importorskip("torch", reason="torch is not installed here (it is not a dev dependency)")
    pytest.importorskip("onnx2torch", reason="onnx2torch is not installed here (it is not a dev dependency)")


@pytest.mark.usefixtures("converter")
def test_converted_models_match_onnxruntime_on_the_cpu(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cnn = make_cnn_onnx(tmp_path / "cnn.onnx")
    feeds = {"image": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)}
    session = TorchOnnxSession(cnn, device="cpu")
    assert (session.input_names, session.output_names) == (("image",), ("logits",))
    np.testing.assert_allclose(session.run(feeds)["logits"], _reference(cnn, feeds)[0], rtol=1e-4, atol=1e-5)
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        session.run(feeds)

    mlp = make_mlp_onnx(tmp_path / "mlp.onnx")
    feeds = {"input": rng.standard_normal((5, 16)).astype(np.float32)}
    output = TorchOnnxSession(mlp, device="cpu").run(feeds)["output"]
    np.testing.assert_allclose(output, _reference(mlp, feeds)[0], rtol=1e-4, atol=1e-5)

    split = _split_model(tmp_path / "split.onnx")
    feeds = {"x": rng.standard_normal((4, 6)).astype(np.float32)}
    outputs = TorchOnnxSession(split, device="cpu").run(feeds)
    right, rectified, left = _reference(split, feeds)
    assert list(outputs) == ["right", "rectified", "left"]
    np.testing.assert_array_equal(outputs["left"], left)
    np.testing.assert_array_equal(outputs["right"], right)
    np.testing.assert_array_equal(outputs["rectified"], rectified)


@pytest.mark.usefixtures("converter")
def test_support_comes_from_the_converter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The support check only converts; pretend CUDA is there so it runs on this CPU.
    monkeypatch.setattr(torch_cuda, "_runtime", lambda: ("2.x (CUDA test)", ""))
    backend = TorchCudaBackend()

    full = backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (full.method, full.verdict, full.runtime_version) == ("converter", "full", "2.x (CUDA test)")
    assert {(op.status, op.device) for op in full.ops} == {("supported", "CUDA")}
    assert [(part.device, part.node_count) for part in full.partitions] == [("CUDA", 5)]

    partial = backend.check_support(_custom_op_model(tmp_path / "custom.onnx"))
    assert partial.verdict == "partial"
    ops = {op.op_type: (op.status, op.reason) for op in partial.ops}
    assert ops["Foo"] == ("unsupported", "onnx2torch has no converter for Foo (domain com.example, opset 1).")
    assert ops["Relu"][0] == ops["Sigmoid"][0] == "supported"
    assert [(part.device, part.node_count) for part in partial.partitions] == [
        ("CUDA", 1),
        ("unsupported", 1),
        ("CUDA", 1),
    ]
    assert any("could not convert the whole model" in note for note in partial.notes)


# --- on a GPU ------------------------------------------------------------------------------------


@pytest.fixture
def gpu_backend() -> TorchCudaBackend:
    """A torch_cuda backend that can run on a GPU here, or a skip saying what is missing."""
    version, missing = torch_cuda._runtime()
    if version is None:
        pytest.skip(f"torch_cuda GPU tests need PyTorch with CUDA, a GPU and onnx2torch: {missing}")
    return TorchCudaBackend()


def _variants(
    backend: TorchCudaBackend, model: Path, out_dir: Path, profile: HardwareProfile
) -> tuple[dict[str, Variant], tuple[str, ...]]:
    """The variants built, by name, and the build's notes."""
    built = backend.build_variants(model, profile, None, out_dir)
    return {variant.name: variant for variant in built}, built.notes


@pytest.mark.gpu
def test_gpu_variants_match_onnxruntime(gpu_backend: TorchCudaBackend, tmp_path: Path) -> None:
    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    variants, notes = _variants(gpu_backend, model, tmp_path / "variants", NVIDIA_GPU)
    assert set(variants) == {"torch-cuda-fp32", "torch-cuda-fp16", "torch-cuda-compile"}, notes
    feeds = {"image": np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    (expected,) = _reference(model, feeds)
    for name, variant in variants.items():
        assert variant.format == "torch-onnx2torch" and variant.files == (variant.path,)
        assert variant.path.name == f"{name}.torchcuda.json"
        session = gpu_backend.load(variant.path)  # the variant file alone says how to run it
        output = session.run(feeds)["logits"]
        session.close()
        assert output.dtype == np.float32 and output.shape == expected.shape
        if variant.precision == "fp16":
            assert _cosine(output, expected) > 0.99
        else:
            np.testing.assert_allclose(output, expected, rtol=1e-3, atol=1e-3)
    assert variants["torch-cuda-compile"].options["compile_seconds"] > 0
    assert "torch.compile" in variants["torch-cuda-compile"].options["transform"]
    assert "half" in variants["torch-cuda-fp16"].options["transform"]


@pytest.mark.gpu
def test_gpu_dynamic_batch_and_support(gpu_backend: TorchCudaBackend, tmp_path: Path) -> None:
    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    report = gpu_backend.check_support(model)
    assert (report.method, report.verdict) == ("converter", "full")

    profile = HardwareProfile("nvidia-gpu", "gpu", ("torch_cuda",), ("fp32", "int8"), options={"torch_compile": False})
    variants, notes = _variants(gpu_backend, model, tmp_path / "variants", profile)
    assert list(variants) == ["torch-cuda-fp32"]
    assert any("'int8' was not built" in note for note in notes)
    session = gpu_backend.load(variants["torch-cuda-fp32"].path)
    for batch in (1, 7):
        feeds = {"input": np.random.default_rng(batch).standard_normal((batch, 16)).astype(np.float32)}
        np.testing.assert_allclose(session.run(feeds)["output"], _reference(model, feeds)[0], rtol=1e-3, atol=1e-3)
    session.close()
