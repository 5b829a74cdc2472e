"""node_support: a validate report's op support, found on the drawn graph's nodes."""

from __future__ import annotations

from typing import Any

from workers.engine.graph_support import node_support
from workers.engine.reports import ValidateReport
from workers.engine.support_matrix import build_matrix
from workers.engine.typed import from_dict

# A drawn graph (graph_view's shape): two Convs, a custom op, an unnamed Relu numbered differently
# in file order, and an If whose bodies are not drawn.
NODES: list[dict[str, Any]] = [
    {"id": "conv_a", "op": "Conv", "in": ["x", "w"], "out": ["a"]},
    {"id": "conv_b", "op": "Conv", "in": ["a", "w"], "out": ["b"]},
    {"id": "foo", "op": "Foo", "dom": "com.example", "in": ["b"], "out": ["c"]},
    {"id": "Relu_3", "name": "", "alt": "Relu_0", "op": "Relu", "in": ["c"], "out": ["d"]},
    {"id": "If_4", "name": "", "op": "If", "in": ["flag"], "out": ["y"], "note": "Holds 2 subgraphs", "inner": 2},
]


def _op(
    op_type: str, status: str, nodes: list[str], reason: str = "", domain: str = "ai.onnx", device: str = ""
) -> dict:
    return {"op_type": op_type, "domain": domain, "status": status, "reason": reason, "nodes": nodes, "device": device}


def _backend(name: str, verdict: str, ops: list[dict], **extra: Any) -> dict[str, Any]:
    return {
        "backend": name,
        "runtime_version": "1",
        "installed": True,
        "method": "runtime",
        "verdict": verdict,
        "ops": ops,
        **extra,
    }


def _report(reports: dict[str, dict[str, Any]], report_only: tuple[str, ...] = ()) -> ValidateReport:
    """A validate report as the step stores it: each backend's answer and the matrix built from them."""
    return from_dict(
        ValidateReport, {"profile": "x86-cpu", "reports": reports, "matrix": build_matrix(reports, report_only)}
    )


def _status(result: Any, backend: str) -> dict[str, str]:
    entry = next(each for each in result if each.backend == backend)
    return {node: group.status for group in entry.groups for node in group.nodes}


def test_each_listed_node_gets_its_own_outcome() -> None:
    """A backend that splits Conv's nodes over two outcomes: the matrix keeps one cell, the graph both."""
    ort = _backend(
        "onnxruntime",
        "partial",
        [
            _op("Conv", "supported", ["conv_a"], device="CUDAExecutionProvider"),
            _op("Conv", "fallback", ["conv_b"], "runs on the CPU", device="CPUExecutionProvider"),
            _op("Foo", "unsupported", ["foo"], "no kernel", domain="com.example"),
            _op("Relu", "supported", ["Relu_3"]),
            _op("If", "supported", ["If_4"]),
            _op("Add", "unsupported", ["If_4/then_branch/Add_0"], "no Add in this body"),
        ],
    )
    (result,) = node_support(NODES, _report({"onnxruntime": ort}))

    assert _status([result], "onnxruntime") == {
        "conv_a": "supported",
        "conv_b": "fallback",
        "foo": "unsupported",
        "Relu_3": "supported",
        "If_4": "unsupported",  # through its body
    }
    assert result.counts == {"supported": 2, "unknown": 0, "fallback": 1, "unsupported": 2}
    by_node = {node: group for group in result.groups for node in group.nodes}
    assert by_node["conv_b"].reason == "runs on the CPU" and by_node["conv_b"].device == "CPUExecutionProvider"
    assert by_node["If_4"].reason == "1 node inside its subgraphs: unsupported. no Add in this body"
    assert (result.profile, result.verdict, result.report_only) == ("x86-cpu", "partial", False)
    assert sorted(node for group in result.groups for node in group.nodes) == sorted(node["id"] for node in NODES)


def test_a_backend_that_numbers_nodes_in_file_order_is_read_that_way() -> None:
    mnn = _backend(
        "mnn",
        "partial",
        [
            _op("Conv", "supported", ["conv_a", "conv_b"]),
            _op("Foo", "unsupported", ["foo"], domain="com.example"),
            _op("Relu", "unsupported", ["Relu_0"], "no Relu here"),
            _op("If", "supported", ["If_4"]),
        ],
    )
    statuses = _status(node_support(NODES, _report({"mnn": mnn})), "mnn")

    assert statuses["Relu_3"] == "unsupported"


def test_an_entry_without_nodes_speaks_for_its_operator() -> None:
    published = _backend(
        "rknn",
        "partial",
        [
            _op("Conv", "supported", []),
            _op("Foo", "unsupported", [], "not in the published list", domain="com.example"),
            _op("Relu", "fallback", ["Relu_3"]),
        ],
        method="published_list",
    )
    statuses = _status(node_support(NODES, _report({"rknn": published})), "rknn")

    assert statuses == {
        "conv_a": "supported",
        "conv_b": "supported",
        "foo": "unsupported",
        "Relu_3": "fallback",
        "If_4": "unknown",  # no entry for If at all
    }


def test_a_backend_that_could_not_answer_leaves_every_node_unknown_with_its_error() -> None:
    broken = _backend("openvino", "error", [], error="OpenVINO crashed reading the model.")
    (result,) = node_support(NODES, _report({"openvino": broken}))

    ((group),) = result.groups
    assert group.status == "unknown" and group.reason == "OpenVINO crashed reading the model."
    assert result.counts["unknown"] == len(NODES)


def test_an_unlisted_node_takes_its_operator_outcome_only_when_that_is_one() -> None:
    ort = _backend(
        "onnxruntime",
        "partial",
        [_op("Conv", "supported", ["conv_a"]), _op("Foo", "unsupported", ["elsewhere"], domain="com.example")],
    )
    statuses = _status(node_support(NODES[:3], _report({"onnxruntime": ort})), "onnxruntime")
    assert statuses == {"conv_a": "supported", "conv_b": "supported", "foo": "unsupported"}

    split = _backend(
        "onnxruntime",
        "partial",
        [_op("Conv", "supported", ["elsewhere"]), _op("Conv", "fallback", ["other"])],
    )
    result = node_support(NODES[:2], _report({"onnxruntime": split}))
    assert _status(result, "onnxruntime") == {"conv_a": "unknown", "conv_b": "unknown"}
    assert result[0].groups[0].reason == "onnxruntime gave no answer for this op (partial)."


def test_rewrites_and_reference_columns_are_carried() -> None:
    remediation = {
        "backend": "mnn",
        "rewrites": ["expand-functions"],
        "fixed": [{"domain": "com.example", "op_type": "Foo"}],
    }
    mnn = _backend(
        "mnn",
        "partial",
        [_op("Foo", "unsupported", ["foo"], domain="com.example")],
        remediation=remediation,
    )
    tflite = _backend("litert", "full", [_op("Foo", "supported", ["foo"], domain="com.example")])
    results = node_support(NODES[2:3], _report({"mnn": mnn, "litert": tflite}, report_only=("litert",)))

    assert [(each.backend, each.report_only) for each in results] == [("litert", True), ("mnn", False)]
    assert results[1].groups[0].after_rewrite == "expand-functions"
