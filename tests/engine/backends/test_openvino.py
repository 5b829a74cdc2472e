"""The OpenVINO CPU backend: which ops it runs, which IR variants it builds, and how they run."""

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
    make_if_onnx,
    make_mlp_onnx,
    make_outlier_channel_onnx,
    rapidocr_det_model_path,
)
from workers.engine.backends import openvino as openvino_backend
from workers.engine.backends.base import BackendNotInstalled, Calibration, HardwareProfile, SupportReport, Variant
from workers.engine.backends.openvino import OpenVinoBackend
from workers.engine.backends.published import load_published_list
from workers.engine.errors import ModelError

openvino = pytest.importorskip("openvino")

X86_CPU = HardwareProfile("x86-cpu", "cpu", ("onnxruntime", "openvino"), ("fp32", "int8"))
ALL_VARIANTS = ["ov-ir-fp32", "ov-ir-fp16", "ov-ir-int8", "ov-ir-int8-weights"]


@pytest.fixture
def backend() -> OpenVinoBackend:
    return OpenVinoBackend(num_threads=1)


def _image(seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, 32, 32)).astype(np.float32)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def _ops(report: SupportReport) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    return {f"{op.domain}:{op.op_type}": (op.status, op.device, op.nodes) for op in report.ops}


def _custom_op_model(path: Path) -> Path:
    """Relu -> com.example.Foo -> Sigmoid: OpenVINO has no conversion for Foo."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Foo", ["r"], ["f"], name="foo", domain="com.example", alpha=2.0),
            helper.make_node("Sigmoid", ["f"], ["y"], name="sigmoid"),
        ],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


# --- operator support -------------------------------------------------------------------


def test_cnn_is_fully_supported_on_the_cpu(backend: OpenVinoBackend, tmp_path: Path) -> None:
    report = backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (report.backend, report.installed, report.method, report.verdict) == ("openvino", True, "runtime", "full")
    assert report.runtime_version == openvino.__version__.split("-")[0]
    assert _ops(report) == {
        "ai.onnx:Conv": ("supported", "CPU", ("Conv_0",)),
        "ai.onnx:Relu": ("supported", "CPU", ("Relu_1",)),
        "ai.onnx:MaxPool": ("supported", "CPU", ("MaxPool_2",)),
        "ai.onnx:Flatten": ("supported", "CPU", ("Flatten_3",)),
        "ai.onnx:Gemm": ("supported", "CPU", ("Gemm_4",)),
    }
    assert [(part.device, part.node_count) for part in report.partitions] == [("CPU", 5)]
    assert any("query_model" in note for note in report.notes)


def test_named_nodes_of_a_real_model_map_back_one_to_one(backend: OpenVinoBackend) -> None:
    try:
        path = rapidocr_det_model_path()
    except LookupError:
        pytest.skip("rapidocr_onnxruntime is not installed")
    report = backend.check_support(path)
    reported = [name for op in report.ops for name in op.nodes]
    model = onnx.load(str(path), load_external_data=False)
    assert report.verdict == "full"
    assert len(set(reported)) == len(reported) == len(model.graph.node)
    assert {node.name for node in model.graph.node if node.name} <= set(reported)


def test_a_folded_dropout_does_not_take_its_producers_place(backend: OpenVinoBackend, tmp_path: Path) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Dropout", ["r"], ["d"], name="dropout"),
            helper.make_node("Neg", ["d"], ["y"], name="neg"),
        ],
        "dropout",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp_path / "dropout.onnx"))

    report = backend.check_support(tmp_path / "dropout.onnx")
    assert report.verdict == "full"
    assert [(part.device, part.nodes) for part in report.partitions] == [("CPU", ("relu", "dropout", "neg"))]
    (folded,) = [note for note in report.notes if "no OpenVINO operation of their own" in note]
    assert folded.endswith(": dropout.")


def test_an_input_that_feeds_straight_into_a_dropout_keeps_its_name(backend: OpenVinoBackend, tmp_path: Path) -> None:
    """OpenVINO folds the Dropout and names the input's tensor after its output; the model is
    still fed by its own input name, loaded from ONNX and as an IR variant (the node test
    suite's test_dropout_default cases failed with "it takes y; missing y")."""
    graph = helper.make_graph(
        [helper.make_node("Dropout", ["x"], ["d"]), helper.make_node("Neg", ["d"], ["y"])],
        "dropout-first",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp_path / "dropout-first.onnx"))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)

    session = backend.load(tmp_path / "dropout-first.onnx")
    assert session.input_names == ("x",) and session.output_names == ("y",)
    np.testing.assert_array_equal(session.run({"x": x})["y"], -x)
    (fp32, *_) = backend.build_variants(tmp_path / "dropout-first.onnx", X86_CPU, None, tmp_path / "ir")
    ir_session = backend.load(fp32.path)
    assert ir_session.input_names == ("x",)
    np.testing.assert_array_equal(ir_session.run({"x": x})["y"], -x)


def test_custom_op_is_unsupported_by_name_and_the_rest_still_judged(backend: OpenVinoBackend, tmp_path: Path) -> None:
    report = backend.check_support(_custom_op_model(tmp_path / "custom.onnx"))
    assert report.verdict == "partial"
    assert _ops(report) == {
        "ai.onnx:Relu": ("supported", "CPU", ("relu",)),
        "com.example:Foo": ("unsupported", "", ("foo",)),
        "ai.onnx:Sigmoid": ("supported", "CPU", ("sigmoid",)),
    }
    foo = next(op for op in report.ops if op.op_type == "Foo")
    assert "no conversion rule for com.example.Foo" in foo.reason
    assert [(part.device, part.nodes) for part in report.partitions] == [
        ("CPU", ("relu",)),
        ("", ("foo",)),
        ("CPU", ("sigmoid",)),
    ]
    assert any("converted partially" in note for note in report.notes)


def test_custom_op_inside_a_branch_makes_its_if_unsupported(backend: OpenVinoBackend, tmp_path: Path) -> None:
    model = onnx.load(str(make_if_onnx(tmp_path / "if.onnx")))
    then_branch = next(attr.g for attr in model.graph.node[0].attribute if attr.name == "then_branch")
    then_branch.node[0].op_type, then_branch.node[0].domain = "Foo", "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save_model(model, str(tmp_path / "if_custom.onnx"))

    ops = _ops(backend.check_support(tmp_path / "if_custom.onnx"))
    assert ops["com.example:Foo"] == ("unsupported", "", ("If_0/then_branch/Foo_0",))
    assert ops["ai.onnx:If"][:2] == ("unsupported", "")
    assert ops["ai.onnx:Mul"][:2] == ("unsupported", "")  # runs inside the If, which cannot run


def test_a_file_that_is_not_onnx_is_a_model_error(backend: OpenVinoBackend, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"definitely not protobuf")
    with pytest.raises(ModelError) as caught:
        backend.check_support(path)
    assert caught.value.code == "invalid_model"


# --- variants ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn_variants(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Variant], OpenVinoBackend]:
    root = tmp_path_factory.mktemp("openvino")
    model_path = make_cnn_onnx(root / "cnn.onnx")
    samples = np.random.default_rng(3).standard_normal((32, 3, 32, 32)).astype(np.float32)
    np.savez(root / "calibration.npz", image=samples)
    backend = OpenVinoBackend(num_threads=1)
    variants = backend.build_variants(model_path, X86_CPU, Calibration(root / "calibration.npz"), root / "variants")
    # INT8 already within tolerance: nothing for the accuracy-controlled search to restore.
    assert variants.notes == (
        "ov-ir-int8-mixed was not built: ov-ir-int8 is within the profile's tolerance on 8 calibration samples.",
    )
    return model_path, variants, backend


def test_cpu_profile_builds_fp32_fp16_weights_and_int8_ir(
    cnn_variants: tuple[Path, list[Variant], OpenVinoBackend],
) -> None:
    _, variants, _ = cnn_variants
    assert [variant.name for variant in variants] == ALL_VARIANTS
    assert [variant.precision for variant in variants] == ["fp32", "fp16-weights", "int8", "int8-weights"]
    for variant in variants:
        assert (variant.backend, variant.format) == ("openvino", "openvino-ir")
        assert variant.files == (variant.path, variant.path.with_suffix(".bin"))
        assert all(path.is_file() for path in variant.files)
        assert set(variant.tool_versions) == {"openvino", "nncf", "onnx"}


def test_every_variant_runs_close_to_onnxruntime(cnn_variants: tuple[Path, list[Variant], OpenVinoBackend]) -> None:
    model_path, variants, backend = cnn_variants
    image = _image()
    (expected,) = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(
        None, {"image": image}
    )
    for variant in variants:
        session = backend.load(variant.path)
        assert (session.input_names, session.output_names) == (("image",), ("logits",))
        logits = session.run({"image": image})["logits"]
        session.close()
        assert logits.shape == (1, 10)
        if variant.precision == "fp32":
            np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-4)
        else:
            assert _cosine(logits, expected) > 0.98, variant.name


def test_without_calibration_int8_is_weights_only(backend: OpenVinoBackend, tmp_path: Path) -> None:
    model_path = make_mlp_onnx(tmp_path / "mlp.onnx")
    variants = backend.build_variants(model_path, X86_CPU, None, tmp_path / "variants")
    assert [variant.name for variant in variants] == ["ov-ir-fp32", "ov-ir-fp16", "ov-ir-int8-weights"]
    assert any("needs calibration data" in note for note in variants.notes)


def test_calibration_that_does_not_fit_is_the_users_to_fix(backend: OpenVinoBackend, tmp_path: Path) -> None:
    model_path = make_cnn_onnx(tmp_path / "cnn.onnx")
    np.savez(tmp_path / "calibration.npz", pixels=np.zeros((4, 3, 32, 32), dtype=np.float32))
    with pytest.raises(ModelError) as caught:
        backend.build_variants(model_path, X86_CPU, Calibration(tmp_path / "calibration.npz"), tmp_path / "out")
    assert caught.value.code == "calibration_mismatch"
    assert not (tmp_path / "out").exists()


def test_load_runs_an_onnx_model_with_a_dynamic_batch(backend: OpenVinoBackend, tmp_path: Path) -> None:
    model_path = make_mlp_onnx(tmp_path / "mlp.onnx")
    rows = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    (expected,) = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(
        None, {"input": rows}
    )
    session = backend.load(model_path)
    assert (session.input_names, session.output_names) == (("input",), ("output",))
    np.testing.assert_allclose(session.run({"input": rows})["output"], expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="do not match"):
        session.run({"rows": rows})
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        session.run({"input": rows})


def _two_in_two_out_model(path: Path) -> Path:
    """x float32 [batch, 4] and n int64 [batch, 4] -> "scaled" = 2x, "shifted" = x + n (as float)."""
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["two"], value=helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])),
            helper.make_node("Mul", ["x", "two"], ["scaled"]),
            helper.make_node("Cast", ["n"], ["n_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["x", "n_float"], ["shifted"]),
        ],
        "two_in_two_out",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("n", TensorProto.INT64, ["batch", 4]),
        ],
        [
            helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("shifted", TensorProto.FLOAT, ["batch", 4]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def test_every_run_answers_its_own_inputs_with_outputs_the_caller_owns(
    backend: OpenVinoBackend, tmp_path: Path
) -> None:
    # The session copies inputs into the request's own tensors and reuses them from call to
    # call: a stale tensor would answer an earlier input, a shared output would change later.
    session = backend.load(_two_in_two_out_model(tmp_path / "two.onnx"))
    assert (session.input_names, session.output_names) == (("x", "n"), ("scaled", "shifted"))
    rng = np.random.default_rng(0)
    calls = []
    for batch in (2, 2, 5, 2, 5, 5, 1):
        feed = {
            "x": rng.standard_normal((batch, 4)).astype(np.float32),
            "n": rng.integers(-5, 5, (batch, 4)).astype(np.int64),
        }
        kept = {name: array.copy() for name, array in feed.items()}
        calls.append((kept, session.run(feed)))
        for name, array in feed.items():
            np.testing.assert_array_equal(array, kept[name])  # the caller's inputs are left alone
    for feed, outputs in calls:
        assert list(outputs) == ["scaled", "shifted"]
        np.testing.assert_array_equal(outputs["scaled"], feed["x"] * 2)
        np.testing.assert_allclose(outputs["shifted"], feed["x"] + feed["n"], rtol=1e-6)
    # Another dtype than the model's is converted, as OpenVINO's own infer(inputs) converts it.
    x64 = rng.standard_normal((2, 4))
    outputs = session.run({"x": x64, "n": np.zeros((2, 4), np.int64)})
    np.testing.assert_allclose(outputs["scaled"], x64 * 2, rtol=1e-6)
    outputs = session.run({"x": x64.astype(np.float32), "n": np.ones((2, 4), np.int64)})
    np.testing.assert_allclose(outputs["shifted"], x64.astype(np.float32) + 1, rtol=1e-6)
    session.close()


# --- without OpenVINO -------------------------------------------------------------------


@pytest.fixture
def without_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import openvino` raise ImportError.
    monkeypatch.setitem(sys.modules, "openvino", None)


@pytest.mark.usefixtures("without_openvino")
def test_not_installed_answers_from_the_published_list(backend: OpenVinoBackend, tmp_path: Path) -> None:
    model_path = make_cnn_onnx(tmp_path / "cnn.onnx")
    assert (backend.available(), backend.runtime_version()) == (False, None)
    report = backend.check_support(model_path)
    assert (report.installed, report.method, report.verdict) == (False, "published_list", "full")
    assert "not installed" in report.notes[0]
    with pytest.raises(BackendNotInstalled, match="not installed"):
        backend.build_variants(model_path, X86_CPU, None, tmp_path / "out")
    with pytest.raises(BackendNotInstalled, match="not installed"):
        backend.load(model_path)


@pytest.mark.usefixtures("without_openvino")
def test_not_installed_without_a_published_list(
    backend: OpenVinoBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openvino_backend, "load_published_list", lambda runtime: None)
    report = backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (report.installed, report.verdict) == (False, "not_installed")


def test_published_list_says_where_it_comes_from() -> None:
    oplist = load_published_list("openvino")
    assert oplist is not None
    assert oplist.runtime == "openvino"
    assert "supported_ops.md" in oplist.source and oplist.retrieved
    assert oplist.lookup("", "Conv")[0] == "supported"
    assert oplist.lookup("ai.onnx", "Det")[0] == "unsupported"  # listed without a supported version
    assert oplist.lookup("com.example", "Foo")[0] == "unsupported"
    statuses = {entry["status"] for ops in oplist.domains.values() for entry in ops.values()}
    assert statuses == {"supported", "unsupported"}


def test_int8_out_of_tolerance_gets_an_accuracy_controlled_variant_that_passes(tmp_path: Path) -> None:
    """One per-tensor scale for a convolution's input that holds a channel in pixels beside two
    in [0, 1]: ov-ir-int8 loses the output channels that read the small ones; NNCF's accuracy
    control, with the engine's parity rule as its metric, keeps that layer in float."""
    from workers.engine.parity import Tolerance, compare_variant, run_session

    model = make_outlier_channel_onnx(tmp_path / "outlier.onnx")
    images = np.random.default_rng(1).uniform(0, 1, (16, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "calibration.npz", image=images)
    backend = OpenVinoBackend()
    int8 = HardwareProfile("x86-cpu", "cpu", ("openvino",), ("int8",))
    built = backend.build_variants(model, int8, Calibration(tmp_path / "calibration.npz"), tmp_path / "out")
    variants = {v.name: v for v in built}
    assert "ov-ir-int8-mixed" in variants, built.notes
    # Judged on fresh images, as the parity step would.
    feeds = [
        {"image": image[None]} for image in np.random.default_rng(9).uniform(0, 1, (6, 3, 32, 32)).astype(np.float32)
    ]
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    reference = [{"embedding": session.run(None, feed)[0]} for feed in feeds]

    def verdict(name: str):
        return compare_variant(reference, run_session(backend.load(variants[name].path), feeds), Tolerance())

    assert not verdict("ov-ir-int8").passed and verdict("ov-ir-int8-mixed").passed
    options = variants["ov-ir-int8-mixed"].options
    assert 0 < options["quantizers_kept"] < options["quantizers_full"]
    assert options["full_int8_worst_slice_db"] < 6 <= options["mixed_worst_slice_db"]
    assert "NNCF's accuracy control kept" in options["reason"] and options["probe"] == "8 calibration samples"
    assert variants["ov-ir-int8-mixed"].files[0].suffix == ".xml" and variants["ov-ir-int8-mixed"].files[1].is_file()


def test_no_accuracy_controlled_variant_when_int8_is_within_tolerance(tmp_path: Path) -> None:
    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    images = np.random.default_rng(3).standard_normal((16, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "calibration.npz", image=images)
    backend = OpenVinoBackend()
    loose = HardwareProfile(
        "loose",
        "cpu",
        ("openvino",),
        ("int8",),
        options={"min_cosine": 0.5, "min_slice_sqnr_db": 0, "min_top1_agreement": 0},
    )
    built = backend.build_variants(model, loose, Calibration(tmp_path / "calibration.npz"), tmp_path / "out")
    names = [v.name for v in built]
    assert "ov-ir-int8" in names and "ov-ir-int8-mixed" not in names
    assert "ov-ir-int8-mixed was not built: ov-ir-int8 is within the profile's tolerance on 8 calibration samples." in (
        built.notes
    )


def test_accuracy_control_out_of_budget_keeps_what_it_judged_and_says_so(tmp_path: Path) -> None:
    """NNCF's accuracy control within a profile's candidate budget of 2: the full INT8 model and
    NNCF's result are judged, nothing in between; no variant passes, and the note and the
    INT8 variant's search record say what was kept."""
    model = make_outlier_channel_onnx(tmp_path / "outlier.onnx")
    images = np.random.default_rng(1).uniform(0, 1, (16, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "calibration.npz", image=images)
    backend = OpenVinoBackend()
    tight = HardwareProfile("tight", "cpu", ("openvino",), ("int8",), options={"search_max_candidates": 2})
    built = backend.build_variants(model, tight, Calibration(tmp_path / "calibration.npz"), tmp_path / "out")
    variants = {v.name: v for v in built}
    assert "ov-ir-int8-mixed" not in variants
    search = variants["ov-ir-int8"].options["search"]
    assert search["stopped"] == "candidates" and search["max_candidates"] == 2 and search["float_unit"] == "quantizers"
    assert [candidate["stage"] for candidate in search["candidates"]] == ["full-int8", "nncf"]
    assert not any(candidate["passed"] for candidate in search["candidates"])
    assert any(
        note.startswith("ov-ir-int8-mixed was not built: NNCF's accuracy control ran out of its budget of 2 candidate")
        and "kept what was measured" in note
        for note in built.notes
    ), built.notes


# --- BF16 arithmetic (ov-ir-bf16) ----------------------------------------------------------

X86_CPU_BF16 = HardwareProfile("x86-cpu", "cpu", ("onnxruntime", "openvino"), ("fp32", "bf16"))
HAS_BF16 = openvino_backend.bf16_arithmetic(*openvino_backend.cpu_features()) is not None


def test_bf16_is_not_built_on_a_cpu_without_it(
    backend: OpenVinoBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openvino_backend, "cpu_features", lambda: ("x86_64", ("avx2", "avx512_vnni")))
    model_path = make_mlp_onnx(tmp_path / "mlp.onnx")
    variants = backend.build_variants(model_path, X86_CPU_BF16, None, tmp_path / "variants")
    assert [variant.name for variant in variants] == ["ov-ir-fp32", "ov-ir-fp16"]
    (note,) = [note for note in variants.notes if "ov-ir-bf16" in note]
    assert "has no native BF16 arithmetic (AMX-BF16 or AVX512-BF16)" in note


def test_bf16_is_not_built_where_only_the_profiles_cpu_has_it(
    backend: OpenVinoBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The profile names a Sapphire Rapids; this worker is an AVX2 machine: what it measured
    # would be FP32, not the variant's BF16.
    monkeypatch.setattr(openvino_backend, "cpu_features", lambda: ("x86_64", ("avx2",)))
    profile = HardwareProfile(
        "spr", "cpu", ("openvino",), ("fp32", "bf16"), options={"arch": "x86_64", "cpu_flags": ["amx_bf16"]}
    )
    variants = backend.build_variants(make_mlp_onnx(tmp_path / "mlp.onnx"), profile, None, tmp_path / "variants")
    assert "ov-ir-bf16" not in [variant.name for variant in variants]
    (note,) = [note for note in variants.notes if "ov-ir-bf16" in note]
    assert "computes in BF16 (AMX-BF16 (amx_bf16)) but this worker's CPU does not" in note


def test_bf16_is_only_built_when_the_profile_allows_it(backend: OpenVinoBackend, tmp_path: Path) -> None:
    variants = backend.build_variants(make_mlp_onnx(tmp_path / "mlp.onnx"), X86_CPU, None, tmp_path / "variants")
    assert "ov-ir-bf16" not in [variant.name for variant in variants]
    assert not [note for note in variants.notes if "bf16" in note]


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no native BF16 arithmetic (AMX-BF16 or AVX512-BF16)")
def test_bf16_variant_computes_in_bf16_where_the_cpu_has_it(backend: OpenVinoBackend, tmp_path: Path) -> None:
    model_path = make_cnn_onnx(tmp_path / "cnn.onnx")
    variants = backend.build_variants(model_path, X86_CPU_BF16, None, tmp_path / "variants")
    by_name = {variant.name: variant for variant in variants}
    bf16 = by_name["ov-ir-bf16"]
    assert (bf16.precision, bf16.pass_name, bf16.format) == ("bf16", "ov-bf16-inference", "openvino-ir")
    assert bf16.options["cpu"] in ("AMX-BF16 (amx_bf16)", "AVX512-BF16 (avx512_bf16)")
    image = _image()
    (expected,) = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(
        None, {"image": image}
    )
    session = backend.load(bf16.path)
    try:
        prop = session._compiled.get_property("INFERENCE_PRECISION_HINT")
        assert prop.get_type_name() == "bf16"
        logits = session.run({"image": image})["logits"]
    finally:
        session.close()
    # BF16 keeps 8 bits of mantissa: close, but not FP32's answer.
    assert _cosine(logits, expected) > 0.99
    assert not np.allclose(logits, expected, rtol=1e-6, atol=0)
    # The FP32 IR stays pinned to FP32 on the same CPU, whose plugin default would be BF16.
    fp32 = backend.load(by_name["ov-ir-fp32"].path)
    try:
        assert fp32._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
        np.testing.assert_allclose(fp32.run({"image": image})["logits"], expected, rtol=1e-3, atol=1e-4)
    finally:
        fp32.close()


def test_a_variant_whose_arithmetic_the_cpu_lacks_refuses_to_run() -> None:
    class Compiled:  # what the plugin reports after ignoring a bf16 hint it cannot honour
        def get_property(self, name: str) -> object:
            assert name == "INFERENCE_PRECISION_HINT"
            return openvino.Type.f32

    with pytest.raises(RuntimeError, match="ov-ir-bf16 computes in bf16, which this CPU does not: OpenVINO would"):
        openvino_backend._check_precision(Compiled(), "bf16", Path("/variants/ov-ir-bf16.xml"))
