"""The RKNN backend: RKNN-Toolkit2's placement table as op support (NPU, CPU fallback, refused),
.rknn variants (calibrated INT8, FP16) with their recipe, parity from the toolkit's simulator,
and a benchmark that refuses the simulator's timings.

The conversions run the toolkit in the `rknn` environment (built on a fresh machine first); the
mapping from the side's placement to report rows is tested without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.framework_envs import ready
from tests.modelzoo import make_cnn_onnx, make_mlp_onnx
from workers.engine.backends.base import Calibration, HardwareProfile
from workers.engine.backends.rknn import RKNNBackend, placement_summary, recipe_path, support_rows
from workers.engine.benchmark import BenchmarkConfig, BenchmarkFailed, benchmark_variant
from workers.engine.errors import ModelError
from workers.engine.parity import Tolerance, compare_variant, run_session

NPU = HardwareProfile("rk3588-npu", "cpu", ("rknn",), ("int8", "fp16"), queue="rk3588", options={})


def _node(name: str, op_type: str, status: str, reason: str = "") -> dict:
    return {"name": name, "op_type": op_type, "status": status, "reason": reason, "rknn_ops": []}


def test_placement_becomes_supported_fallback_and_refused_rows():
    nodes = [
        _node("conv", "Conv", "npu", "RKNN made Conv (INT8) on the NPU from it."),
        _node("erf", "Erf", "cpu", "RKNN made Erf (INT8) on the CPU from it."),
        _node("shape", "Shape", "folded", "Computed from constants"),
    ]
    rows = support_rows(["conv", "erf", "shape"], {}, nodes, "rk3588", "2.5.0")
    assert [(row[0], row[3], row[4]) for row in rows] == [
        ("conv", "supported", "RK3588 NPU"),
        ("erf", "fallback", "RK3588 CPU (RKNN fallback)"),
        ("shape", "supported", "RK3588 NPU"),
    ]
    assert "board's CPU" in rows[1][5]
    assert "1 fall back to the CPU (Erf)" in placement_summary(rows, "rk3588")
    assert "Most of the graph" not in placement_summary(rows, "rk3588")


def test_a_node_the_placement_table_does_not_name_runs_when_the_model_was_built():
    nodes = [_node("conv", "Conv", "npu"), _node("tfidf", "TfIdfVectorizer", "unplaced")]
    rows = support_rows(["conv", "tfidf"], {}, nodes, "rk3588", "2.5.0")
    assert rows[1][3:5] == ("supported", "RK3588 (placement not reported)")
    assert "names no operator made from this node" in rows[1][5]


def test_a_refusal_names_the_node_and_the_rest_is_not_known():
    nodes = [_node("conv", "Conv", "not_reached"), _node("nz", "NonZero", "refused", "NonZero('nz') is dynamic")]
    rows = support_rows(["conv", "nz"], {}, nodes, "rk3588", "2.5.0")
    assert rows[1][3] == "unsupported" and "refuses it: NonZero('nz') is dynamic" in rows[1][5]
    assert rows[0][3] == "unsupported" and "Not known: the toolkit refused 'nz' (NonZero)" in rows[0][5]


def test_a_model_mostly_on_the_cpu_is_told_so():
    nodes = [_node("a", "Erf", "cpu"), _node("b", "Erf", "cpu"), _node("c", "Conv", "npu")]
    rows = support_rows(["a", "b", "c"], {}, nodes, "rk3566", "2.5.0")
    summary = placement_summary(rows, "rk3566")
    assert "1 of 3 nodes run on the RK3566 NPU and 2 fall back" in summary
    assert "Most of the graph runs on the CPU, not the NPU" in summary


@pytest.fixture(scope="module")
def backend() -> RKNNBackend:
    ready("rknn")
    return RKNNBackend()


def _calibration(folder: Path, shape: tuple[int, ...], name: str = "image", samples: int = 8) -> Calibration:
    path = folder / "calibration.npz"
    np.savez(path, **{name: np.random.default_rng(3).standard_normal((samples, *shape[1:])).astype(np.float32)})
    return Calibration(path)


def _erf_model(path: Path) -> Path:
    """Conv -> Erf -> Conv: the NPU has no Erf kernel, so it falls back to the CPU between two NPU convolutions."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((4, 8, 3, 3)) * 0.2).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
            helper.make_node("Erf", ["c1"], ["e"], name="erf"),
            helper.make_node("Conv", ["e", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
        ],
        "erf",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def _nonzero_model(path: Path) -> Path:
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["image"], ["r"], name="relu"),
            helper.make_node("NonZero", ["r"], ["nz"], name="where_positive"),
        ],
        "nonzero",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("nz", TensorProto.INT64, [4, "n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


@pytest.mark.slow
def test_a_cnn_runs_on_the_npu(backend, tmp_path):
    report = backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert report.installed and report.method == "converter"
    assert report.verdict == "full", report
    assert {op.device for op in report.ops} == {"RK3588 NPU"}
    assert any("All 5 placed nodes run on the RK3588 NPU" in note for note in report.notes), report.notes


@pytest.mark.slow
def test_an_operator_without_an_npu_kernel_falls_back_to_the_cpu(backend, tmp_path):
    report = backend.check_support(_erf_model(tmp_path / "erf.onnx"))
    statuses = {node: op.status for op in report.ops for node in op.nodes}
    assert statuses == {"conv1": "supported", "erf": "fallback", "conv2": "supported"}, report.ops
    assert report.verdict == "partial"
    assert [partition.device for partition in report.partitions] == [
        "RK3588 NPU",
        "RK3588 CPU (RKNN fallback)",
        "RK3588 NPU",
    ]


@pytest.mark.slow
def test_a_refused_operator_is_named_with_the_toolkits_reason(backend, tmp_path):
    report = backend.check_support(_nonzero_model(tmp_path / "nonzero.onnx"))
    refused = [op for op in report.ops if op.status == "unsupported" and "where_positive" in op.nodes]
    assert refused and "NonZero('where_positive')" in refused[0].reason, report.ops
    assert report.verdict == "none"


@pytest.mark.slow
def test_int8_and_fp16_variants_match_onnxruntime_on_the_simulator(backend, tmp_path):
    model_path = make_cnn_onnx(tmp_path / "cnn.onnx")
    calibration = _calibration(tmp_path, (1, 3, 32, 32))
    builds = backend.build_variants(model_path, NPU, calibration, tmp_path / "out")
    assert [variant.name for variant in builds] == ["rknn-int8", "rknn-fp16"], builds.notes
    int8 = builds[0]
    assert int8.path.read_bytes()[:4] == b"RKNN"
    assert recipe_path(int8.path) in int8.files and all(path.exists() for path in int8.files)
    assert int8.options["accuracy_analysis"] and int8.options["calibration_samples"] == 8
    assert any("rknn-int8: Accuracy analysis on the simulator" in note for note in builds.notes), builds.notes
    assert not (tmp_path / "out" / ".rknn-build").exists()

    rng = np.random.default_rng(9)
    feeds = [{"image": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(3)]
    reference_session = onnxruntime.InferenceSession(str(model_path))
    reference = [{"logits": reference_session.run(None, feed)[0]} for feed in feeds]
    for variant, cosine in ((int8, 0.99), (builds[1], 0.9999)):
        session = backend.load(variant.path)
        assert session.simulated
        outputs = run_session(session, feeds)
        session.close()
        parity = compare_variant(reference, outputs, Tolerance(max_abs_error=1.0, min_cosine=cosine))
        assert parity.passed, (variant.name, parity)


@pytest.mark.slow
def test_a_calibration_set_of_the_wrong_shape_is_refused_readably(backend, tmp_path):
    calibration = _calibration(tmp_path, (1, 3, 16, 16))
    with pytest.raises(ModelError) as caught:
        backend.build_variants(make_cnn_onnx(tmp_path / "cnn.onnx"), NPU, calibration, tmp_path / "out")
    assert caught.value.code == "invalid_calibration"
    assert "has shape [8, 3, 16, 16]; the model takes [1, 3, 32, 32]" in caught.value.message
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_model_with_flat_inputs_runs_on_the_simulator_and_int8_waits_for_calibration(backend, tmp_path):
    # Found by bench/rknn.py: the layout list given to the simulator had None for inputs that are not 4-D.
    # One build serves both checks (the suite's budget): no calibration, so INT8 is skipped with a note.
    model_path = make_mlp_onnx(tmp_path / "mlp.onnx", batch=1)
    builds = backend.build_variants(model_path, NPU, None, tmp_path / "out")
    assert [variant.name for variant in builds] == ["rknn-fp16"], builds.notes
    assert any("rknn-int8 was not built: the NPU's INT8 needs calibration data" in note for note in builds.notes)
    reference_session = onnxruntime.InferenceSession(str(model_path))
    name = reference_session.get_inputs()[0].name
    width = reference_session.get_inputs()[0].shape[1]
    feeds = [{name: np.random.default_rng(i).standard_normal((1, width)).astype(np.float32)} for i in range(2)]
    reference = [
        dict(zip([o.name for o in reference_session.get_outputs()], reference_session.run(None, f), strict=True))
        for f in feeds
    ]
    session = backend.load(builds[0].path)
    outputs = run_session(session, feeds)
    parity = compare_variant(reference, outputs, Tolerance(max_abs_error=0.05, min_cosine=0.999))
    assert parity.passed, parity
    # The simulator's timings would be the x86 CPU's: the benchmark refuses it.
    specs = [{"name": name, "shape": [1, width], "dtype": "float32"}]
    with pytest.raises(BenchmarkFailed) as caught:
        benchmark_variant("rknn", builds[0].path, specs, BenchmarkConfig(batch_sizes=(1,), concurrency=(1,)))
    assert caught.value.code == "simulator_only"
    assert "its timings are not the accelerator's" in caught.value.message
