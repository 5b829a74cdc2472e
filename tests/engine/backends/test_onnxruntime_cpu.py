"""The onnxruntime CPU backend: which ops it runs, which variants it builds, and how they run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from tests.modelzoo import (
    make_cnn_onnx,
    make_function_onnx,
    make_if_onnx,
    make_mlp_onnx,
    rapidocr_det_model_path,
)
from workers.engine.backends.base import (
    BackendNotInstalled,
    Calibration,
    HardwareProfile,
    SupportReport,
    Variant,
)
from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from workers.engine.backends.registry import BACKENDS, get_backend, installed_backends
from workers.engine.errors import ModelError

X86_CPU = HardwareProfile("x86-cpu", "cpu", ("onnxruntime",), ("fp32", "int8"))
NVIDIA_GPU = HardwareProfile("nvidia-gpu", "gpu", ("onnxruntime",), ("fp16",), queue="gpu")
OPT_VARIANTS = ["ort-opt-basic", "ort-opt-extended", "ort-opt-all"]


@pytest.fixture
def backend() -> OnnxRuntimeCpuBackend:
    return OnnxRuntimeCpuBackend(intra_op_threads=1)


def _image(seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, 32, 32)).astype(np.float32)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def _ops(report: SupportReport) -> dict[str, tuple[str, str, str]]:
    return {f"{op.domain}:{op.op_type}": (op.status, op.device, op.reason) for op in report.ops}


def _save(path: Path, nodes: list[onnx.NodeProto], outputs: list[onnx.ValueInfoProto], **opsets: int) -> Path:
    graph = helper.make_graph(nodes, "inline", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])], outputs)
    imports = [helper.make_opsetid("", opsets.pop("default", 17))]
    imports += [helper.make_opsetid(domain.replace("_", "."), version) for domain, version in opsets.items()]
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


# --- operator support -------------------------------------------------------------------


def test_cnn_is_fully_supported_on_the_cpu_provider(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    report = backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (report.backend, report.installed, report.runtime_version) == ("onnxruntime", True, onnxruntime.__version__)
    assert (report.method, report.verdict) == ("runtime", "full")
    assert {op.op_type for op in report.ops} == {"Conv", "Relu", "MaxPool", "Flatten", "Gemm"}
    assert {(op.status, op.device) for op in report.ops} == {("supported", "CPUExecutionProvider")}
    assert [(part.device, part.node_count) for part in report.partitions] == [("CPUExecutionProvider", 5)]
    assert any("optimizations disabled" in note for note in report.notes)


def test_support_names_the_nodes_of_the_uploaded_model(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    path = make_cnn_onnx(tmp_path / "cnn.onnx")
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.name = f"backbone/{node.op_type.lower()}"
    model.graph.node[1].name = model.graph.node[0].name  # a duplicate name, as some exporters write
    onnx.save_model(model, str(path))

    report = backend.check_support(path)
    nodes = [name for part in report.partitions for name in part.nodes]
    assert nodes == ["backbone/conv_0", "backbone/conv_1", "backbone/maxpool", "backbone/flatten", "backbone/gemm"]
    # Operator fusion would merge Conv and Relu; the support check keeps them apart.
    assert {op.op_type: op.nodes for op in report.ops}["Relu"] == ("backbone/conv_1",)


def test_subgraphs_and_functions_are_reported(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    branching = backend.check_support(make_if_onnx(tmp_path / "if.onnx"))
    assert branching.verdict == "full"
    assert {op.op_type for op in branching.ops} == {"If", "Add", "Mul", "Neg"}
    assert [part.node_count for part in branching.partitions] == [1]

    function = backend.check_support(make_function_onnx(tmp_path / "function.onnx"))
    assert _ops(function) == {"slipway.tests:ScaledRelu": ("supported", "CPUExecutionProvider", "")}
    assert any("function bodies" in note for note in function.notes)


def test_external_data_and_a_real_detector(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    external = backend.check_support(make_mlp_onnx(tmp_path / "exported" / "model.onnx", with_external_data=True))
    assert (external.method, external.verdict) == ("runtime", "full")

    detector = backend.check_support(rapidocr_det_model_path())
    assert (detector.method, detector.verdict) == ("runtime", "full")
    assert {"Conv", "Resize", "Sigmoid"} <= {op.op_type for op in detector.ops}


def test_custom_domain_op_is_unsupported_and_the_rest_still_reported(
    backend: OnnxRuntimeCpuBackend, tmp_path: Path
) -> None:
    path = _save(
        tmp_path / "custom.onnx",
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Foo", ["a"], ["b"], domain="com.example"),
            helper.make_node("Sigmoid", ["b"], ["y"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        com_example=1,
    )
    report = backend.check_support(path)
    assert (report.method, report.verdict) == ("probe", "partial")
    ops = _ops(report)
    status, device, reason = ops["com.example:Foo"]
    assert (status, device) == ("unsupported", "")
    assert "Foo" in reason and "\n" not in reason and not reason.startswith("[ONNXRuntimeError]")
    assert ops["ai.onnx:Relu"][:2] == ("supported", "CPUExecutionProvider")
    assert ops["ai.onnx:Sigmoid"][:2] == ("supported", "CPUExecutionProvider")
    assert [part.nodes for part in report.partitions] == [("Relu_0",), ("Sigmoid_2",)]
    assert any("could not load the whole model" in note for note in report.notes)


def test_op_without_a_cpu_kernel_for_its_dtype(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    path = _save(
        tmp_path / "int16_relu.onnx",
        [
            helper.make_node("Relu", ["x"], ["y"]),
            helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.INT16),
            helper.make_node("Relu", ["x16"], ["y16"]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("y16", TensorProto.INT16, [2, 3]),
        ],
    )
    report = backend.check_support(path)
    assert (report.method, report.verdict) == ("probe", "partial")
    relu = {op.nodes: (op.status, op.reason) for op in report.ops if op.op_type == "Relu"}
    assert relu[("Relu_0",)] == ("supported", "")
    status, reason = relu[("Relu_2",)]
    assert status == "unsupported" and "Could not find an implementation for Relu" in reason


def test_opset_newer_than_the_runtime(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    path = _save(
        tmp_path / "future.onnx",
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        default=99,
    )
    report = backend.check_support(path)
    assert (report.method, report.verdict) == ("probe", "none")
    (relu,) = report.ops
    assert relu.status == "unsupported" and "Opset 99" in relu.reason
    assert report.partitions == ()


def test_unparsable_file_is_a_model_error(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError) as raised:
        backend.check_support(path)
    assert raised.value.code == "invalid_model"


def test_model_that_fails_for_a_reason_other_than_its_ops(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "exported" / "model.onnx", with_external_data=True)
    (tmp_path / "exported" / "weights.bin").unlink()
    report = backend.check_support(path)
    assert (report.method, report.verdict) == ("probe", "error")
    assert report.error and "\n" not in report.error
    assert {op.status for op in report.ops} == {"supported"}
    assert any("another reason" in note for note in report.notes)


# --- variants ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn_variants(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Variant]]:
    folder = tmp_path_factory.mktemp("cnn")
    model = make_cnn_onnx(folder / "cnn.onnx")
    rng = np.random.default_rng(3)
    np.savez(folder / "calibration.npz", image=rng.standard_normal((16, 3, 32, 32)).astype(np.float32))
    calibration = Calibration(folder / "calibration.npz", method="minmax")
    variants = OnnxRuntimeCpuBackend(intra_op_threads=1).build_variants(model, X86_CPU, calibration, folder / "out")
    return model, variants


def test_x86_cpu_profile_builds_six_runnable_variants(
    backend: OnnxRuntimeCpuBackend, cnn_variants: tuple[Path, list[Variant]]
) -> None:
    model, variants = cnn_variants
    assert [variant.name for variant in variants] == [
        *OPT_VARIANTS,
        "ort-int8-dynamic",
        "ort-int8-static-qdq",
        "ort-int8-static-compute",
    ]
    image = _image()
    reference = backend.load(model).run({"image": image})["logits"]
    for variant in variants:
        assert variant.backend == "onnxruntime" and variant.format == "onnx"
        assert variant.tool_versions == {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
        assert variant.files == (variant.path,) and variant.path.is_file()
        output = backend.load(variant.path).run({"image": image})["logits"]
        if variant.precision == "fp32":
            assert np.allclose(output, reference, rtol=1e-4, atol=1e-6), variant.name
        else:
            assert variant.precision == "int8"
            assert _cosine(output, reference) > 0.98, variant.name


def test_the_compute_only_variant_leaves_the_classifier_head_in_float(
    cnn_variants: tuple[Path, list[Variant]],
) -> None:
    by_name = {variant.name: variant for variant in cnn_variants[1]}
    compute = by_name["ort-int8-static-compute"]
    assert compute.options["op_types_to_quantize"] == ["Conv", "ConvTranspose", "MatMul"]
    assert compute.options["reason"].startswith("Only Conv, ConvTranspose and MatMul quantized")
    graph = onnx.load(str(compute.path)).graph
    produced = {output: node for node in graph.node for output in node.output}
    gemm = next(node for node in graph.node if node.op_type == "Gemm")
    # The Gemm reads float tensors: its inputs come from no DequantizeLinear.
    assert all(produced.get(name) is None or produced[name].op_type != "DequantizeLinear" for name in gemm.input)
    conv = next(node for node in graph.node if node.op_type == "Conv")
    assert produced[conv.input[0]].op_type == "DequantizeLinear"
    full = onnx.load(str(by_name["ort-int8-static-qdq"].path)).graph
    full_produced = {output: node for node in full.node for output in node.output}
    full_gemm = next(node for node in full.node if node.op_type == "Gemm")
    assert full_produced[full_gemm.input[1]].op_type == "DequantizeLinear"


def test_variant_options_say_how_each_was_made(cnn_variants: tuple[Path, list[Variant]]) -> None:
    by_name = {variant.name: variant for variant in cnn_variants[1]}
    assert by_name["ort-opt-basic"].options["graph_optimization_level"] == "basic"
    assert "hardware_specific" not in by_name["ort-opt-extended"].options
    assert by_name["ort-opt-all"].options["hardware_specific"] is True
    assert "same kind of hardware" in by_name["ort-opt-all"].options["warning"]
    static = by_name["ort-int8-static-qdq"]
    assert static.pass_name == "ort-quantize-static"
    assert {key: static.options[key] for key in ("quant_format", "calibrate_method", "per_channel")} == {
        "quant_format": "QDQ",
        "calibrate_method": "minmax",
        "per_channel": True,
    }
    assert static.options["calibration_batches"] == 16  # the model's batch is fixed at 1
    graph_ops = {node.op_type for node in onnx.load(str(static.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= graph_ops


def _quantized_types(path: Path) -> tuple[set[str], set[int]]:
    """The integer types activations are quantized to (QuantizeLinear's zero points), and the
    ranks of the weights' scales (1: per channel, 0: per tensor)."""
    model = onnx.load(str(path))
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    activation_types = {
        helper.tensor_dtype_to_np_dtype(initializers[node.input[2]].data_type).name
        for node in model.graph.node
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[0] not in initializers
    }
    weight_scale_ranks = {
        len(initializers[node.input[1]].dims)
        for node in model.graph.node
        if node.op_type == "DequantizeLinear"
        and node.input[0] in initializers
        and initializers[node.input[0]].data_type == TensorProto.INT8
        and len(initializers[node.input[0]].dims) > 1  # weights, not biases
    }
    return activation_types, weight_scale_ranks


def test_static_int8_follows_the_recipe_of_the_cpu_it_runs_on(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "calibration.npz", image=rng.standard_normal((16, 3, 32, 32)).astype(np.float32))
    calibration = Calibration(tmp_path / "calibration.npz")
    x86 = HardwareProfile("x86", "cpu", ("onnxruntime",), ("int8",), options={"arch": "x86_64", "cpu_flags": ["avx2"]})
    arm = HardwareProfile("arm", "cpu", ("onnxruntime",), ("int8",), options={"arch": "aarch64"})
    built = {}
    for profile in (x86, arm):
        variants = backend.build_variants(model, profile, calibration, tmp_path / profile.name)
        built[profile.name] = next(v for v in variants if v.name == "ort-int8-static-qdq")
    # x86-64 without VNNI: uint8 activations, int8 weights with a scale per output channel, 7 bits.
    assert _quantized_types(built["x86"].path) == ({"uint8"}, {1})
    assert {k: built["x86"].options[k] for k in ("activation_type", "weight_type", "per_channel", "reduce_range")} == {
        "activation_type": "uint8", "weight_type": "int8", "per_channel": True, "reduce_range": True,
    }  # fmt: skip
    assert built["x86"].options["recipe"].startswith("U8S8 for x86-64 without VNNI: ")
    # ARM64: int8 activations, per channel, full range.
    assert _quantized_types(built["arm"].path) == ({"int8"}, {1})
    assert built["arm"].options["recipe"].startswith("S8S8 for ARM64: ")
    image = _image()
    reference = backend.load(model).run({"image": image})["logits"]
    for variant in built.values():
        assert _cosine(backend.load(variant.path).run({"image": image})["logits"], reference) > 0.98, variant.options


def test_an_opset_before_per_channel_qdq_is_converted_up_for_per_channel_weights(
    backend: OnnxRuntimeCpuBackend, tmp_path: Path
) -> None:
    model = onnx.load(str(make_cnn_onnx(tmp_path / "cnn.onnx")))
    model.opset_import[0].version = 12
    onnx.save(model, str(tmp_path / "cnn12.onnx"))
    np.savez(tmp_path / "calibration.npz", image=np.random.default_rng(0).uniform(0, 1, (8, 3, 32, 32)).astype("f4"))
    variants = backend.build_variants(
        tmp_path / "cnn12.onnx", X86_CPU, Calibration(tmp_path / "calibration.npz"), tmp_path / "out"
    )
    static = next(v for v in variants if v.name == "ort-int8-static-qdq")
    assert static.options["per_channel"] is True and _quantized_types(static.path)[1] == {1}
    assert "Converted from opset 12 to 13 for per-channel weights." in static.options["preprocessing"]
    assert _opset_of(static.path) >= 13


def test_a_model_the_converter_cannot_take_keeps_its_opset_and_per_tensor_weights(
    backend: OnnxRuntimeCpuBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnx import version_converter

    def refuse(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
        raise RuntimeError("No adapter for Conv from 12 to 13")

    monkeypatch.setattr(version_converter, "convert_version", refuse)
    model = onnx.load(str(make_cnn_onnx(tmp_path / "cnn.onnx")))
    model.opset_import[0].version = 12
    onnx.save(model, str(tmp_path / "cnn12.onnx"))
    np.savez(tmp_path / "calibration.npz", image=np.random.default_rng(0).uniform(0, 1, (8, 3, 32, 32)).astype("f4"))
    variants = backend.build_variants(
        tmp_path / "cnn12.onnx", X86_CPU, Calibration(tmp_path / "calibration.npz"), tmp_path / "out"
    )
    static = next(v for v in variants if v.name == "ort-int8-static-qdq")
    assert static.options["per_channel"] is False and "opset 12 predates per-channel QDQ" in static.options["recipe"]
    assert (
        "Kept opset 12: converting it to 13 failed (No adapter for Conv from 12 to 13)."
        in (static.options["preprocessing"])
    )
    assert _quantized_types(static.path)[1] == {0}


def _opset_of(path: Path) -> int:
    return next(entry.version for entry in onnx.load(str(path)).opset_import if entry.domain in ("", "ai.onnx"))


def test_only_the_profile_precisions_are_built(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    fp32_only = HardwareProfile("x86-cpu", "cpu", ("onnxruntime",), ("fp32",))
    assert [v.name for v in backend.build_variants(model, fp32_only, None, tmp_path / "fp32")] == OPT_VARIANTS
    int8_only = HardwareProfile("x86-cpu", "cpu", ("onnxruntime",), ("int8",))
    # Without calibration data there is no static quantization, and the build notes say so.
    built = backend.build_variants(model, int8_only, None, tmp_path / "int8")
    assert [v.name for v in built] == ["ort-int8-dynamic"]
    assert any(
        note.startswith("ort-int8-static-qdq was not built") and "calibration=@calib.npz" in note
        for note in built.notes
    ), built.notes


def test_external_data_models_give_external_data_variants(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    model = make_mlp_onnx(tmp_path / "exported" / "model.onnx", with_external_data=True)
    samples = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    np.savez(tmp_path / "calibration.npz", input=samples)
    variants = backend.build_variants(model, X86_CPU, Calibration(tmp_path / "calibration.npz"), tmp_path / "out")
    assert len(variants) == 5
    rows = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    reference = backend.load(model).run({"input": rows})["output"]
    for variant in variants:
        assert variant.options["external_data"] is True
        assert all(path.is_file() for path in variant.files)
        output = backend.load(variant.path).run({"input": rows})["output"]
        assert _cosine(output, reference) > 0.95, variant.name
    for name in OPT_VARIANTS:
        files = next(variant.files for variant in variants if variant.name == name)
        assert [path.name for path in files] == [f"{name}.onnx", f"{name}.onnx.data"]


def test_gpu_profile_builds_fp16_with_float32_inputs(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    (variant,) = backend.build_variants(model, NVIDIA_GPU, None, tmp_path / "out")
    assert (variant.name, variant.precision, variant.options["keep_io_types"]) == ("ort-fp16", "fp16", True)
    weights = {tensor.data_type for tensor in onnx.load(str(variant.path)).graph.initializer}
    assert weights == {TensorProto.FLOAT16}
    image = _image()
    output = backend.load(variant.path).run({"image": image})["logits"]
    assert output.dtype == np.float32
    assert _cosine(output, backend.load(model).run({"image": image})["logits"]) > 0.99


def test_calibration_mismatch_stops_the_build(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    np.savez(tmp_path / "calibration.npz", image=np.zeros((4, 3, 64, 64), np.float32))
    with pytest.raises(ModelError) as raised:
        backend.build_variants(model, X86_CPU, Calibration(tmp_path / "calibration.npz"), tmp_path / "out")
    assert raised.value.code == "calibration_mismatch"
    assert "'image'" in raised.value.message and "[1, 3, 32, 32]" in raised.value.message
    assert not list(tmp_path.glob("out/*.onnx"))


def test_a_variant_that_does_not_load_is_dropped_with_a_note(
    backend: OnnxRuntimeCpuBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    real_verify = backend.verify

    def refuse_all_level(variant: Variant, profile: HardwareProfile) -> None:
        if variant.path.name == "ort-opt-all.onnx":
            raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : simulated kernel mismatch\nmore detail")
        real_verify(variant, profile)

    monkeypatch.setattr(backend, "verify", refuse_all_level)
    fp32_only = HardwareProfile("x86-cpu", "cpu", ("onnxruntime",), ("fp32",))
    variants = backend.build_variants(model, fp32_only, None, tmp_path / "out")
    assert [variant.name for variant in variants] == ["ort-opt-basic", "ort-opt-extended"]
    assert not (tmp_path / "out" / "ort-opt-all.onnx").exists()
    assert variants.notes == (
        "ort-simplified was not built: the optimizer found nothing to fold or remove (3 nodes).",
        "ort-opt-all was built but does not load, so it was dropped: simulated kernel mismatch",
    )


def test_a_static_int8_variant_that_does_not_load_is_dropped_and_no_search_starts_from_it(
    backend: OnnxRuntimeCpuBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    np.savez(tmp_path / "calibration.npz", input=np.random.default_rng(1).standard_normal((16, 16)).astype(np.float32))
    real_verify = backend.verify
    searched: list[str] = []

    def refuse_static(variant: Variant, profile: HardwareProfile) -> None:
        if variant.name == "ort-int8-static-qdq":
            raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : simulated kernel mismatch")
        real_verify(variant, profile)

    monkeypatch.setattr(backend, "verify", refuse_static)
    monkeypatch.setattr(backend, "_mixed_precision", lambda *args, **kwargs: searched.append("called") or (None, None))
    int8 = HardwareProfile("x86-cpu", "cpu", ("onnxruntime",), ("int8",))
    built = backend.build_variants(model, int8, Calibration(tmp_path / "calibration.npz"), tmp_path / "out")
    assert "ort-int8-static-qdq" not in [variant.name for variant in built] and not searched
    assert (
        "ort-int8-static-qdq was built but does not load, so it was dropped: simulated kernel mismatch" in built.notes
    )
    assert not (tmp_path / "out" / "ort-int8-static-qdq.onnx").exists()


# --- sessions ---------------------------------------------------------------------------


def test_session_runs_and_closes(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    session = backend.load(make_mlp_onnx(tmp_path / "mlp.onnx"))
    assert (session.input_names, session.output_names) == (("input",), ("output",))
    outputs = session.run({"input": np.ones((2, 16), np.float32)})
    assert outputs["output"].shape == (2, 4)
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        session.run({"input": np.ones((2, 16), np.float32)})


# --- onnxruntime missing ----------------------------------------------------------------


def test_missing_runtime_is_reported_not_raised(
    backend: OnnxRuntimeCpuBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert backend.runtime_version() is None
    assert backend.available() is False
    assert backend.check_support(model) == backend.not_installed_report()
    assert backend.check_support(model).verdict == "not_installed"
    with pytest.raises(BackendNotInstalled):
        backend.build_variants(model, X86_CPU, None, tmp_path / "out")
    with pytest.raises(BackendNotInstalled):
        backend.load(model)
    assert installed_backends()["onnxruntime"] is None


# --- registry ---------------------------------------------------------------------------


def test_registry_finds_backends_by_name() -> None:
    assert BACKENDS["onnxruntime"] is OnnxRuntimeCpuBackend
    assert isinstance(get_backend("onnxruntime"), OnnxRuntimeCpuBackend)
    assert installed_backends()["onnxruntime"] == onnxruntime.__version__


def test_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(KeyError) as raised:
        get_backend("quantum")
    assert str(raised.value).startswith("There is no backend named 'quantum'; known backends: ")
    assert "onnxruntime" in str(raised.value)


def _foldable_if_model(path: Path) -> Path:
    """A model whose If tests the input's (static) width, with constant arithmetic in the
    branch it takes: what exporters write for `if x.shape[1] == 512: x * (0.25 + 0.75)`."""
    from onnx import numpy_helper

    def constant(name: str, value: float) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array([value], np.float32)))

    then_branch = helper.make_graph(
        [constant("k1", 0.25), constant("k2", 0.75), helper.make_node("Add", ["k1", "k2"], ["k"]),
         helper.make_node("Mul", ["x", "k"], ["scaled"])],
        "then", [], [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [1, 512])],
    )  # fmt: skip
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["negated"])],
        "else", [], [helper.make_tensor_value_info("negated", TensorProto.FLOAT, [1, 512])],
    )  # fmt: skip
    weight = np.random.default_rng(0).standard_normal((512, 16)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Shape", ["x"], ["shape"]),
            helper.make_node("Gather", ["shape", "one"], ["width"], axis=0),
            helper.make_node("Equal", ["width", "n512"], ["wide"]),
            helper.make_node("If", ["wide"], ["branch"], then_branch=then_branch, else_branch=else_branch),
            helper.make_node("MatMul", ["branch", "w"], ["y"]),
        ],
        "foldable",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [
            numpy_helper.from_array(np.array(1, np.int64), "one"),
            numpy_helper.from_array(np.array(512, np.int64), "n512"),
            numpy_helper.from_array(weight, "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def test_a_foldable_graph_gets_a_simplified_variant_that_quantization_starts_from(
    backend: OnnxRuntimeCpuBackend, tmp_path: Path
) -> None:
    model = _foldable_if_model(tmp_path / "foldable.onnx")
    np.savez(tmp_path / "calibration.npz", x=np.random.default_rng(1).standard_normal((16, 512)).astype(np.float32))
    variants = {
        v.name: v
        for v in backend.build_variants(model, X86_CPU, Calibration(tmp_path / "calibration.npz"), tmp_path / "o")
    }
    simplified = variants["ort-simplified"]
    assert simplified.pass_name == "onnx-simplify" and simplified.precision == "fp32"
    options = simplified.options
    assert (options["control_flow_before"], options["control_flow_after"]) == (1, 0)
    assert options["nodes_after"] < options["nodes_before"] == 10  # 5 nodes, 4 + 1 in the branches
    graph_ops = [node.op_type for node in onnx.load(str(simplified.path)).graph.node]
    assert "If" not in graph_ops and "Shape" not in graph_ops
    x = np.random.default_rng(2).standard_normal((1, 512)).astype(np.float32)
    reference = backend.load(model).run({"x": x})["y"]
    np.testing.assert_allclose(backend.load(simplified.path).run({"x": x})["y"], reference, rtol=1e-5, atol=1e-5)
    # The quantized variants start from the simplified graph: no If left in them either.
    for name in ("ort-int8-dynamic", "ort-int8-static-qdq"):
        assert "simplified graph" in variants[name].options["preprocessing"], variants[name].options
        assert "If" not in [node.op_type for node in onnx.load(str(variants[name].path)).graph.node]


def test_a_graph_with_nothing_to_fold_gets_no_copy_and_a_note(backend: OnnxRuntimeCpuBackend, tmp_path: Path) -> None:
    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    fp32_only = HardwareProfile("x86-cpu", "cpu", ("onnxruntime",), ("fp32",))
    built = backend.build_variants(model, fp32_only, None, tmp_path / "o")
    assert "ort-simplified" not in [v.name for v in built]
    assert "ort-simplified was not built: the optimizer found nothing to fold or remove (3 nodes)." in built.notes


def test_a_calibration_set_too_small_still_builds_static_int8_and_says_so(
    backend: OnnxRuntimeCpuBackend, tmp_path: Path
) -> None:
    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    np.savez(tmp_path / "calibration.npz", image=np.random.default_rng(4).standard_normal((3, 3, 32, 32)).astype("f4"))
    variants = backend.build_variants(model, X86_CPU, Calibration(tmp_path / "calibration.npz"), tmp_path / "out")
    assert "ort-int8-static-qdq" in {variant.name for variant in variants}
    (note,) = [n for n in variants.notes if n.startswith("The calibration set holds 3 samples")]
    assert "fewer than the 8 that minmax calibration needs" in note


def test_the_mixed_precision_search_judges_on_the_inputs_parity_will_use_too(
    backend: OnnxRuntimeCpuBackend, tmp_path: Path
) -> None:
    # Calibration samples in a tenth of the range the parity inputs reach: the scales fitted to
    # them clip the real inputs, which the calibration samples alone can't show.
    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "calibration.npz", image=(rng.standard_normal((16, 3, 32, 32)) * 0.1).astype("f4"))
    evidence = tuple({"image": rng.standard_normal((1, 3, 32, 32)).astype("f4")} for _ in range(8))

    def full_int8(calibration: Calibration) -> tuple[str, dict]:
        variants = backend.build_variants(model, X86_CPU, calibration, tmp_path / f"out-{len(calibration.evidence)}")
        record = next(v.options["search"] for v in variants if "search" in v.options)
        assert record["candidates"][0]["label"] == "full INT8"
        return record["probe"], record["candidates"][0]

    probe, alone = full_int8(Calibration(tmp_path / "calibration.npz"))
    assert probe == "8 calibration samples"
    probe, judged = full_int8(
        Calibration(tmp_path / "calibration.npz", evidence=evidence, evidence_description="your validation set")
    )
    assert probe == "8 calibration samples and the 8 inputs parity judges on (your validation set)"
    assert judged["passed"] is False
    # The clipped parity inputs bring the worst output's score down by far more than noise.
    assert judged["score_db"] < alone["score_db"] - 6, (judged, alone)


def test_a_model_with_an_lstm_gets_the_compute_variant_with_int8_lstm_weights(
    backend: OnnxRuntimeCpuBackend, tmp_path: Path
) -> None:
    """Static QDQ cannot quantize a recurrent cell; the compute-lstm variant adds onnxruntime's
    DynamicQuantizeLSTM on top of the compute-only static pass (8 % faster on the 30-us voice
    model of bench/value.py, passing its parity)."""
    from tests.modelzoo import make_conv_lstm_onnx

    model = make_conv_lstm_onnx(tmp_path / "conv_lstm.onnx")
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "calibration.npz", signal=rng.standard_normal((16, 4, 8)).astype(np.float32))
    built = backend.build_variants(model, X86_CPU, Calibration(tmp_path / "calibration.npz"), tmp_path / "out")
    variants = {variant.name: variant for variant in built}
    assert "ort-int8-static-compute" in variants, built.notes
    lstm = variants["ort-int8-static-compute-lstm"]
    assert lstm.pass_name == "ort-quantize-static+dynamic-lstm" and lstm.precision == "int8"
    assert lstm.options["op_types_to_quantize"] == ["Conv", "ConvTranspose", "MatMul"]
    assert "DynamicQuantizeLSTM" in lstm.options["recurrent_cells"]
    graph = onnx.load(str(lstm.path)).graph
    types = [node.op_type for node in graph.node]
    assert "DynamicQuantizeLSTM" in types and "LSTM" not in types
    assert "DequantizeLinear" in types  # the static Conv/MatMul pass is still there
    # No staging file left beside the variants.
    assert sorted(path.name for path in (tmp_path / "out").iterdir() if "lstm" in path.name) == [lstm.path.name]
    signal = rng.standard_normal((1, 4, 8)).astype(np.float32)
    reference = backend.load(model).run({"signal": signal})["scores"]
    assert _cosine(backend.load(lstm.path).run({"signal": signal})["scores"], reference) > 0.98


def test_a_model_without_an_lstm_gets_no_lstm_variant(cnn_variants: tuple[Path, list[Variant]]) -> None:
    assert "ort-int8-static-compute-lstm" not in [variant.name for variant in cnn_variants[1]]
