"""The ExecuTorch backend: XNNPACK's share of each ONNX node as op support, .pte variants (FP32,
calibrated INT8) that take and give what the ONNX model does, and how the exporter's answer becomes
a support report.

The conversions are slow (the side imports PyTorch and ExecuTorch in the `executorch` environment,
built on a fresh machine first) and need ExecuTorch's runtime in this interpreter; the mapping from
the exporter's answer to a report is not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.framework_envs import ready
from tests.modelzoo import make_cnn_onnx
from workers.engine.backends.base import Calibration, HardwareProfile
from workers.engine.backends.executorch import (
    DELEGATED_DEVICE,
    MIXED_DEVICE,
    PORTABLE_DEVICE,
    ExecuTorchBackend,
    ExecuTorchSession,
    io_path,
    support_rows,
)

CPU = HardwareProfile("x86-cpu-executorch", "cpu", ("executorch",), ("fp32", "int8"))


def _node(name: str, op_type: str, status: str, reason: str = "") -> dict:
    return {"name": name, "op_type": op_type, "domain": "", "status": status, "reason": reason, "aten_ops": []}


def _answer(nodes: list[dict], converted: bool = True, error: str = "") -> dict:
    delegation = {"partitions": 2, "delegated": {"aten.relu.default": 2}, "not_delegated": {"aten.erf.default": 1}}
    answer = {"converted": converted, "nodes": nodes, "delegation": delegation, "variants": {}, "notes": []}
    if error:
        answer["error"] = error
    return answer


def test_delegated_and_portable_nodes_are_supported_on_their_own_devices():
    answer = _answer(
        [
            _node("relu", "Relu", "delegated", "XNNPACK takes aten.relu.default."),
            _node("identity", "Identity", "no_ops", "No operator of its own is left."),
            _node("erf", "Erf", "portable", "XNNPACK does not take aten.erf.default."),
            _node("softplus", "Softplus", "partly_delegated", "XNNPACK takes aten.exp.default; ..."),
            _node("relu2", "Relu", "delegated"),
        ]
    )
    rows = {row[0]: row for row in support_rows(answer)}
    assert rows["relu"][3:5] == ("supported", DELEGATED_DEVICE)
    assert rows["identity"][3:5] == ("supported", DELEGATED_DEVICE), "a folded node sits with the node before it"
    assert rows["erf"][3:5] == ("supported", PORTABLE_DEVICE) and "aten.erf.default" in rows["erf"][5]
    assert rows["softplus"][3:5] == ("supported", MIXED_DEVICE)
    report = ExecuTorchBackend().report_from_answer("1.4.1", answer)
    assert report.verdict == "full" and report.method == "converter"
    assert [(p.device, p.nodes) for p in report.partitions] == [
        (DELEGATED_DEVICE, ("relu", "identity")),
        (PORTABLE_DEVICE, ("erf",)),
        (MIXED_DEVICE, ("softplus",)),
        (DELEGATED_DEVICE, ("relu2",)),
    ]
    assert any("XNNPACK takes 2 operator(s)" in note and "aten.erf.default x1" in note for note in report.notes)


def test_a_failed_node_is_named_and_the_nodes_it_kept_from_lowering_are_not_known():
    answer = _answer(
        [
            _node("relu", "Relu", "not_reached"),
            _node("mish", "Mish", "failed", "onnx2torch 1.5.15 has no converter for Mish (opset 18)."),
            _node("sigmoid", "Sigmoid", "not_reached"),
        ],
        converted=False,
        error="onnx2torch 1.5.15 has no converter for Mish (opset 18).",
    )
    report = ExecuTorchBackend().report_from_answer("1.4.1", answer)
    assert report.verdict == "none" and report.partitions == ()
    by_node = {node: op for op in report.ops for node in op.nodes}
    assert by_node["mish"].status == "unsupported" and "no converter for Mish" in by_node["mish"].reason
    assert by_node["relu"].status == "unsupported" and by_node["relu"].reason.startswith("Not known")
    assert "'mish' (Mish)" in by_node["sigmoid"].reason
    assert any("The conversion stopped" in note for note in report.notes)


def test_a_stop_that_names_no_node_leaves_every_node_not_known_with_the_reason():
    answer = _answer([_node("relu", "Relu", "not_reached")], converted=False, error="torch.export could not trace")
    (row,) = support_rows(answer)
    assert row[3] == "unsupported" and "torch.export could not trace" in row[5]


def test_a_session_without_its_io_json_says_to_rebuild(tmp_path):
    program = tmp_path / "executorch-fp32.pte"
    program.write_bytes(b"not a program")
    assert io_path(program).name == "executorch-fp32.io.json"
    with pytest.raises(RuntimeError, match="Rebuild the variant"):
        ExecuTorchSession(program)


# --- conversions in the executorch environment, run by ExecuTorch's runtime here ---------------


@pytest.fixture(scope="module")
def backend() -> ExecuTorchBackend:
    backend = ExecuTorchBackend()
    if not backend.runs_here():
        # make setup installs the runtime: not loading here is a failure, not a reason to skip (a
        # bench/executorch.py on sys.path once shadowed the package, and these tests skipped silently).
        pytest.fail(backend.not_installed_text())
    ready("executorch")
    return backend


def _chain_model(path: Path, middle: str, opset: int = 17) -> Path:
    """Relu -> `middle` -> Sigmoid on a [1, 8] input, nodes named relu, mid, sigmoid."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node(middle, ["r"], ["m"], name="mid"),
            helper.make_node("Sigmoid", ["m"], ["y"], name="sigmoid"),
        ],
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


@pytest.mark.slow
def test_a_cnn_is_fully_delegated_to_xnnpack(backend, tmp_path):
    report = backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert report.installed and report.method == "converter"
    assert report.verdict == "full", report
    assert {op.device for op in report.ops} == {DELEGATED_DEVICE}
    assert [partition.device for partition in report.partitions] == [DELEGATED_DEVICE]
    assert report.partitions[0].node_count == 5
    assert any("in 1 delegated partition(s)" in note for note in report.notes), report.notes


@pytest.mark.slow
def test_an_operator_xnnpack_does_not_take_runs_on_portable_kernels(backend, tmp_path):
    report = backend.check_support(_chain_model(tmp_path / "erf.onnx", "Erf"))
    assert report.verdict == "full"
    by_node = {node: op for op in report.ops for node in op.nodes}
    assert by_node["mid"].device == PORTABLE_DEVICE and "aten.erf.default" in by_node["mid"].reason
    assert by_node["relu"].device == by_node["sigmoid"].device == DELEGATED_DEVICE
    assert [partition.device for partition in report.partitions] == [
        DELEGATED_DEVICE,
        PORTABLE_DEVICE,
        DELEGATED_DEVICE,
    ]


@pytest.mark.slow
def test_an_operator_onnx2torch_lacks_is_named_and_what_follows_is_unknown(backend, tmp_path):
    report = backend.check_support(_chain_model(tmp_path / "mish.onnx", "Mish", opset=18))
    assert report.verdict == "none"
    by_node = {node: op for op in report.ops for node in op.nodes}
    assert by_node["mid"].status == "unsupported" and "Mish" in by_node["mid"].reason
    assert by_node["sigmoid"].status == "unsupported" and by_node["sigmoid"].reason.startswith("Not known")


@pytest.mark.slow
def test_the_variants_take_and_give_what_the_onnx_model_does(backend, tmp_path):
    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    rng = np.random.default_rng(0)
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, image=rng.random((16, 3, 32, 32), dtype=np.float32))
    built = backend.build_variants(model, CPU, Calibration(calibration), tmp_path / "variants")
    assert [variant.name for variant in built] == ["executorch-fp32", "executorch-int8"], built.notes
    assert sorted(path.name for path in (tmp_path / "variants").iterdir()) == sorted(
        path.name for variant in built for path in variant.files
    ), "only the variants' files are left: the exporter's folder is removed"
    feeds = {"image": rng.random((1, 3, 32, 32), dtype=np.float32)}
    expected = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    for variant in built:
        assert variant.format == "pte" and io_path(variant.path) in variant.files
        assert json.loads(io_path(variant.path).read_text())["inputs"][0]["onnx_name"] == "image"
        session = backend.load(variant.path)
        assert session.input_names == ("image",) and session.output_names == ("logits",)
        got = session.run(feeds)["logits"]
        with pytest.raises(RuntimeError, match="shape"):
            session.run({"image": np.zeros((2, 3, 32, 32), np.float32)})
        session.close()
        assert got.shape == expected.shape and got.dtype == np.float32, variant.name
        if variant.precision == "fp32":
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        cosine = float((got * expected).sum() / (np.linalg.norm(got) * np.linalg.norm(expected)))
        assert cosine > (0.99 if variant.precision == "int8" else 0.99999), (variant.name, cosine)


def _exporter_shaped_model(path: Path) -> Path:
    """What torch.onnx writes and onnx2torch alone can't take: a Conv whose bias comes through an
    Identity of a shared initializer, then a Reshape, a Slice, an Unsqueeze and a Gather whose
    shapes, bounds and index are tensors (constants, and one computed from the input's Shape)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.2).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(4, dtype=np.float32), "shared_zero"),
        numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "flat"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
        numpy_helper.from_array(np.array([100], dtype=np.int64), "upto"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "first"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["shared_zero"], ["bias"], name="bias_identity"),
            helper.make_node("Conv", ["image", "w", "bias"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Reshape", ["c", "flat"], ["r"], name="flatten"),
            helper.make_node("Shape", ["r"], ["shape"], name="shape"),
            helper.make_node("Gather", ["shape", "one"], ["width"], name="width", axis=0),
            helper.make_node("Div", ["width", "upto"], ["half"], name="part"),
            helper.make_node("Slice", ["r", "zero", "half", "one"], ["s"], name="slice"),
            helper.make_node("Unsqueeze", ["s", "zero"], ["u"], name="unsqueeze"),
            helper.make_node("Gather", ["u", "first"], ["y"], name="pick", axis=0),
        ],
        "exporter_shaped",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


@pytest.mark.slow
def test_exporter_shaped_graphs_go_through_torch_export(backend, tmp_path):
    # Found by bench/executorch.py: a ResNet-18 and a Transformer from torch.onnx were refused, the first
    # for Identity-fed Conv biases (onnx2torch), the second for Reshape's shape tensor (torch.export).
    model_path = _exporter_shaped_model(tmp_path / "shaped.onnx")
    report = backend.check_support(model_path)
    refused = [op for op in report.ops if op.status != "supported"]
    assert not refused, refused
    assert any("read an Identity of a constant" in note for note in report.notes), report.notes
    assert any("take their shape values as numbers" in note for note in report.notes), report.notes
    # No calibration: INT8 is skipped with the reason (checked on this build, for the suite's budget).
    builds = backend.build_variants(model_path, CPU, None, tmp_path / "out")
    assert [variant.name for variant in builds] == ["executorch-fp32"], builds.notes
    assert any("executorch-int8 was not built" in note and "calibration" in note for note in builds.notes)
    (fp32,) = [variant for variant in builds if variant.precision == "fp32"]
    feed = {"image": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    expected = onnxruntime.InferenceSession(str(model_path)).run(None, feed)[0]
    session = backend.load(fp32.path)
    got = session.run(feed)["y"]
    session.close()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
