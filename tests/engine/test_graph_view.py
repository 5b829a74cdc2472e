"""describe_graph: the graph the version page draws, with shapes, attributes and the labels reports use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.modelzoo import make_cnn_onnx, make_if_onnx
from workers.engine.graph_view import describe_graph
from workers.engine.inspection import inspect_model


def _conv_model() -> onnx.ModelProto:
    """x -> Conv (weights 64x3x7x7) -> Relu -> unnamed Add(+bias) -> y, with shapes inferred."""
    weight = numpy_helper.from_array(np.full((64, 3, 7, 7), 0.123456, dtype=np.float32), "conv_w")
    bias = numpy_helper.from_array(np.full((1, 64, 1, 1), 7.654321, dtype=np.float32), "bias")
    nodes = [
        helper.make_node(
            "Conv", ["x", "conv_w"], ["c"], name="stem/conv", kernel_shape=[7, 7], pads=[3, 3, 3, 3], strides=[2, 2]
        ),
        helper.make_node("Relu", ["c"], ["r"], name="stem/relu"),
        helper.make_node("Add", ["r", "bias"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(model)


def test_nodes_edges_shapes_and_attributes() -> None:
    view = describe_graph(_conv_model()).to_dict()

    assert view["node_count"] == 3 and view["omitted"] == ""
    conv, relu, add = view["nodes"]
    assert (conv["id"], conv["op"], conv["in"], conv["out"]) == ("stem/conv", "Conv", ["x", "conv_w"], ["c"])
    assert conv["attrs"] == {"kernel_shape": "[7, 7]", "pads": "[3, 3, 3, 3]", "strides": "[2, 2]"}
    assert relu["in"] == ["c"]  # the edge Conv -> Relu
    # An unnamed node gets the label the support reports give it, and no name of its own.
    assert add["id"] == "Add_2" and add["name"] == ""
    assert view["inputs"] == ["x"] and view["outputs"] == ["y"]
    values = view["values"]
    assert values["x"] == {"t": "float32", "s": ["batch", 3, 32, 32]}
    assert values["c"] == {"t": "float32", "s": ["batch", 64, 16, 16]}  # from shape inference
    assert values["conv_w"] == {"t": "float32", "s": [64, 3, 7, 7], "w": 1}
    assert "conv_w" not in view["inputs"]


def test_weights_never_travel(tmp_path: Path) -> None:
    model = _conv_model()
    constant = helper.make_node(
        "Constant",
        [],
        ["k"],
        name="k",
        value=numpy_helper.from_array(np.full((4, 4), 3.14159, dtype=np.float32)),
    )
    model.graph.node.append(constant)
    text = json.dumps(describe_graph(model).to_dict())

    assert "0.123456" not in text and "7.654321" not in text and "3.14159" not in text
    node = next(node for node in describe_graph(model).to_dict()["nodes"] if node["id"] == "k")
    assert node["attrs"] == {"value": "tensor float32[4,4]"}
    assert len(text) < 2000


def test_long_lists_and_strings_are_summarised() -> None:
    node = helper.make_node(
        "Custom", ["x"], ["y"], name="c", domain="my.ops", many=list(range(100)), mode="x" * 500, scale=0.5
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)])
    (described,) = describe_graph(model).to_dict()["nodes"]

    assert described["dom"] == "my.ops"
    assert described["attrs"]["many"] == "[0, 1, 2, 3, 4, 5, 6, 7, … 100 values]"
    assert described["attrs"]["scale"] == "0.5"
    assert len(described["attrs"]["mode"]) < 90 and described["attrs"]["mode"].endswith("…'")


def test_order_and_labels_match_the_support_reports() -> None:
    """Nodes out of file order are listed in topological order and labelled as `label_nodes` labels
    them; the file-order label the other backends use rides along where it differs."""
    nodes = [
        helper.make_node("Relu", ["a"], ["b"]),  # reads what the next node makes
        helper.make_node("Neg", ["x"], ["a"]),
        helper.make_node("Relu", ["b"], ["y"], name="dup"),
        helper.make_node("Relu", ["b"], ["z"], name="dup"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2]) for name in ("y", "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    view = describe_graph(model).to_dict()

    assert [(node["op"], node["id"], node.get("alt")) for node in view["nodes"]] == [
        ("Neg", "Neg_0", "Neg_1"),
        ("Relu", "Relu_1", "Relu_0"),
        ("Relu", "dup_2", "dup"),
        ("Relu", "dup_3", "dup"),
    ]
    assert view["nodes"][2]["name"] == "dup"


def test_subgraphs_get_a_note_not_a_drawing(tmp_path: Path) -> None:
    model = onnx.load(str(make_if_onnx(tmp_path / "if.onnx")))
    view = describe_graph(model).to_dict()

    (if_node,) = [node for node in view["nodes"] if node["op"] == "If"]
    assert "2 subgraphs (else_branch, then_branch) of 3 nodes" in if_node["note"] and if_node["inner"] == 3
    assert "then_branch" not in if_node.get("attrs", {})
    assert [node["op"] for node in view["nodes"]] == ["If"]


def test_a_graph_too_big_is_counted_not_described() -> None:
    nodes = [helper.make_node("Relu", [f"v{i}"], [f"v{i + 1}"]) for i in range(12)]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("v0", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("v12", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    assert len(describe_graph(model, max_nodes=12).nodes) == 12
    view = describe_graph(model, max_nodes=11).to_dict()
    assert view["nodes"] == [] and view["values"] == {} and view["node_count"] == 12
    assert "12 nodes" in view["omitted"]


def test_inspection_carries_the_graph(tmp_path: Path) -> None:
    report = inspect_model(make_cnn_onnx(tmp_path / "cnn.onnx"))

    assert report.graph is not None
    assert [node["op"] for node in report.graph["nodes"]] == ["Conv", "Relu", "MaxPool", "Flatten", "Gemm"]
    gemm_out = report.graph["nodes"][-1]["out"][0]
    assert report.graph["values"][gemm_out]["s"] == [1, 10]


def test_a_graph_that_cannot_be_described_does_not_fail_inspection(tmp_path: Path, monkeypatch) -> None:
    def broken(model: onnx.ModelProto) -> None:
        raise RecursionError("a graph nobody has seen")

    monkeypatch.setattr("workers.engine.inspection.describe_graph", broken)
    report = inspect_model(make_cnn_onnx(tmp_path / "cnn.onnx"))

    assert report.graph is not None and report.graph["nodes"] == [] and report.graph["node_count"] == 5
    assert report.graph["omitted"] == "The graph could not be described for drawing."
    assert any("could not be described for drawing (RecursionError)" in note for note in report.notes)
