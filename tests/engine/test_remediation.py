"""Op-support remediation: a runtime that refuses an operator runs the model after a rewrite
that keeps what it computes, and the rewrite's variants run there and match the original."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from tests.modelzoo import make_activation_cnn_onnx, make_function_onnx
from workers.engine import entrypoints, remediation
from workers.engine.backends.mnn import MnnBackend
from workers.engine.backends.ncnn import NcnnBackend
from workers.engine.backends.registry import get_backend

requires_mnn = pytest.mark.skipif(MnnBackend().runtime_version() is None, reason="MNN is not installed here")
requires_ncnn = pytest.mark.skipif(NcnnBackend().runtime_version() is None, reason="ncnn is not installed here")

ARM = {
    "name": "arm-cpu-mnn",
    "device_kind": "cpu",
    "backends": ["mnn", "ncnn"],
    "precisions": ["fp32", "fp16", "int8-weights"],
    "queue": "cpu",
    "options": {},
}


def _image(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, 32, 32)).astype(np.float32)


def _onnxruntime(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _validate(model: Path, backend: str, workdir: Path) -> dict:
    payload = {"source": str(model), "format": "onnx", "workdir": str(workdir), "backend": backend}
    return entrypoints.validate_entry(payload, lambda fraction, message: None)


@requires_mnn
def test_mnn_refuses_mish_and_its_variants_are_built_from_the_expanded_model(tmp_path):
    model = make_activation_cnn_onnx(tmp_path / "mish.onnx", "Mish")
    report = _validate(model, "mnn", tmp_path)
    assert report["verdict"] == "partial"
    assert {op["op_type"] for op in report["ops"] if op["status"] == "unsupported"} == {"Mish"}
    remedy = report["remediation"]
    assert remedy["rewrites"] == ["expand-functions"]
    assert remedy["fixed"] == [{"domain": "ai.onnx", "op_type": "Mish"}]
    assert remedy["verdict_after"] == "full"
    assert remedy["max_relative_error"] < 1e-5
    assert "mnn runs the model after rewrite expand-functions" in remedy["summary"]
    assert "expanded 1 Mish node" in remedy["summary"]

    # Optimize, given the chain validate found, builds MNN's variants from the rewritten model.
    built = entrypoints.optimize_entry(
        {
            "source": str(model),
            "format": "onnx",
            "workdir": str(tmp_path),
            "backend": "mnn",
            "profile": ARM,
            "calibration": None,
            "rewrites": remedy["rewrites"],
            "refused": [[op["domain"], op["op_type"]] for op in remedy["refused"]],
            "out_dir": str(tmp_path / "variants" / "mnn"),
        },
        lambda fraction, message: None,
    )
    assert built["variants"], built["notes"]
    assert any("after rewrite expand-functions" in note for note in built["notes"])
    image = _image()
    expected = _onnxruntime(model, {"image": image})
    for variant in built["variants"]:
        assert variant["options"]["rewrites"] == ["expand-functions"]
        assert variant["options"]["rewrite_steps"][0]["rewrite"] == "expand-functions"
        session = get_backend("mnn").load(Path(variant["path"]))
        got = next(iter(session.run({"image": image}).values()))
        session.close()
        cosine = float((got.ravel() @ expected.ravel()) / (np.linalg.norm(got) * np.linalg.norm(expected)))
        assert cosine > 0.99, (variant["name"], cosine)
    fp32 = next(v for v in built["variants"] if v["precision"] == "fp32")
    session = get_backend("mnn").load(Path(fp32["path"]))
    np.testing.assert_allclose(next(iter(session.run({"image": image}).values())), expected, rtol=1e-4, atol=1e-5)
    session.close()


@requires_ncnn
def test_ncnn_takes_softsign_once_the_model_is_converted_up_to_its_definition(tmp_path):
    model = make_activation_cnn_onnx(tmp_path / "softsign.onnx", "Softsign", opset=13)
    report = _validate(model, "ncnn", tmp_path)
    assert report["verdict"] != "full"
    remedy = report["remediation"]
    assert remedy["rewrites"] == ["expand-functions"]
    (step,) = remedy["steps"]
    assert "converting the model from opset 13 to 18" in step["detail"]


@requires_ncnn
def test_an_op_no_rewrite_helps_says_what_was_tried(tmp_path):
    # ONNX defines ThresholdedRelu with Less and Where, which ncnn lacks too.
    model = make_activation_cnn_onnx(tmp_path / "thresholded.onnx", "ThresholdedRelu", opset=13)
    report = _validate(model, "ncnn", tmp_path)
    remedy = report["remediation"]
    assert remedy["rewrites"] == []
    assert remedy["fixed"] == []
    tried = {" + ".join(t["rewrites"]): t["outcome"] for t in remedy["tried"]}
    assert "ncnn still" in tried["expand-functions"]
    assert all(outcome.startswith(("not applicable", "ncnn still")) for outcome in tried.values()), tried
    assert remedy["summary"].startswith("No rewrite Slipway knows made ncnn take the model")


@requires_mnn
def test_a_rewrite_that_changes_the_outputs_is_refused(tmp_path, monkeypatch):
    model = make_activation_cnn_onnx(tmp_path / "mish.onnx", "Mish")

    def wrong(proto, name, refused):  # a "rewrite" that swaps Mish for Relu: MNN takes it, but it computes otherwise
        changed = onnx.ModelProto()
        changed.CopyFrom(proto)
        for node in changed.graph.node:
            if node.op_type == "Mish":
                node.op_type = "Relu"
        return changed, "replaced Mish"

    monkeypatch.setattr(remediation, "rewrite", wrong)
    backend = get_backend("mnn")
    result = remediation.find(model, backend, backend.check_support(model), tmp_path)
    assert result is not None and not result.found
    assert all("differ from the original's" in t["outcome"] for t in result.tried), result.tried


def test_expansion_substitutes_attribute_defaults_and_matches_the_operator(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])
    # ThresholdedRelu with its alpha left at the default (1.0), and Celu with alpha set.
    graph = helper.make_graph(
        [
            helper.make_node("ThresholdedRelu", ["x"], ["t"], name="thresholded"),
            helper.make_node("Celu", ["t"], ["y"], name="celu", alpha=0.5),
        ],
        "g",
        [x],
        [y],
    )
    original = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = tmp_path / "original.onnx"
    onnx.save(original, path)
    expanded, detail = remediation.expand_functions(original, {("", "ThresholdedRelu"), ("", "Celu")})
    assert {node.op_type for node in expanded.graph.node}.isdisjoint({"ThresholdedRelu", "Celu"})
    assert not expanded.functions
    assert "1 Celu node, 1 ThresholdedRelu node" in detail
    onnx.checker.check_model(expanded, full_check=True)
    rewritten = tmp_path / "expanded.onnx"
    onnx.save(expanded, rewritten)
    feeds = {"x": np.linspace(-3, 3, 32, dtype=np.float32).reshape(2, 16)}
    np.testing.assert_allclose(_onnxruntime(rewritten, feeds), _onnxruntime(path, feeds), rtol=1e-6, atol=1e-6)


def test_local_functions_are_inlined(tmp_path):
    model = onnx.load(str(make_function_onnx(tmp_path / "function.onnx")))
    expanded, detail = remediation.expand_functions(model, {("slipway.tests", "ScaledRelu")})
    assert [node.op_type for node in expanded.graph.node] == ["Relu", "Mul"]
    assert not expanded.functions
    assert "1 local function" in detail


def test_nothing_to_expand_is_not_applicable():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Foo", ["x"], ["y"], domain="com.example")], "g", [x], [x])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(remediation.RewriteFailed, match="has a function body in ONNX"):
        remediation.expand_functions(model, {("com.example", "Foo")})


def test_a_fully_supported_model_gets_no_remediation(tmp_path):
    model = make_activation_cnn_onnx(tmp_path / "relu.onnx", "Relu", opset=17)
    report = _validate(model, "onnxruntime", tmp_path)
    assert report["verdict"] == "full"
    assert "remediation" not in report
