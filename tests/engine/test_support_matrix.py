"""The matrix lines up ops across backends and marks what a backend could not answer."""

from workers.engine.support_matrix import build_matrix


def _op(op_type, status, reason="", domain="ai.onnx"):
    return {"op_type": op_type, "domain": domain, "status": status, "reason": reason, "nodes": [op_type.lower()]}


def test_rows_cover_every_op_of_every_backend_and_count_problems():
    matrix = build_matrix(
        {
            "onnxruntime": {
                "verdict": "partial",
                "method": "probe",
                "ops": [_op("Conv", "supported"), _op("Foo", "unsupported", "no kernel", "com.example")],
            },
            "openvino": {"verdict": "full", "method": "runtime", "ops": [_op("Conv", "supported")]},
            "mnn": {"verdict": "error", "method": "converter", "error": "converter crashed (SIGSEGV)", "ops": []},
        }
    )
    assert matrix["backends"] == ["mnn", "onnxruntime", "openvino"]
    assert [(r["domain"], r["op_type"]) for r in matrix["rows"]] == [("ai.onnx", "Conv"), ("com.example", "Foo")]
    conv, foo = matrix["rows"]
    assert conv["cells"]["onnxruntime"]["status"] == "supported"
    assert conv["cells"]["mnn"] == {
        "status": "unknown",
        "reason": "converter crashed (SIGSEGV)",
        "nodes": [],
        "device": "",
        "after_rewrite": "",
    }
    assert foo["cells"]["onnxruntime"]["reason"] == "no kernel"
    assert foo["cells"]["openvino"]["status"] == "unknown"
    assert matrix["problems"] == 2
    assert matrix["verdicts"] == {"mnn": "error", "onnxruntime": "partial", "openvino": "full"}
    assert matrix["remedies"] == {}


def test_an_op_a_rewrite_makes_run_is_marked_with_the_rewrite():
    remediation = {
        "rewrites": ["expand-functions"],
        "fixed": [{"domain": "ai.onnx", "op_type": "Mish"}],
        "refused": [{"domain": "ai.onnx", "op_type": "Mish", "nodes": ["mish"]}],
        "summary": "mnn runs the model after rewrite expand-functions: expanded 1 Mish node.",
    }
    failed = {"rewrites": [], "fixed": [], "summary": "No rewrite Slipway knows made ncnn take the model."}
    matrix = build_matrix(
        {
            "mnn": {
                "verdict": "partial",
                "ops": [_op("Conv", "supported"), _op("Mish", "unsupported", "not in MNN")],
                "remediation": remediation,
            },
            "ncnn": {
                "verdict": "partial",
                "ops": [_op("Conv", "supported"), _op("Mish", "unsupported", "no layer")],
                "remediation": failed,
            },
        }
    )
    conv, mish = matrix["rows"]
    assert mish["cells"]["mnn"]["status"] == "unsupported"
    assert mish["cells"]["mnn"]["after_rewrite"] == "expand-functions"
    assert mish["cells"]["ncnn"]["after_rewrite"] == ""
    assert conv["cells"]["mnn"]["after_rewrite"] == ""
    assert matrix["remedies"] == {
        "mnn": {"rewrites": ["expand-functions"], "summary": remediation["summary"]},
        "ncnn": {"rewrites": [], "summary": failed["summary"]},
    }


def test_reference_columns_are_shown_but_not_counted_as_problems():
    reports = {
        "onnxruntime": {"verdict": "full", "method": "runtime", "ops": [_op("Erf", "supported")]},
        "rknn": {"verdict": "partial", "method": "converter", "ops": [_op("Erf", "fallback", "no NPU kernel")]},
    }
    built_for_both = build_matrix(reports)
    assert built_for_both["problems"] == 1 and built_for_both["report_only"] == []
    reference = build_matrix(reports, ("rknn",))
    assert reference["problems"] == 0 and reference["report_only"] == ["rknn"]
    assert reference["rows"][0]["cells"]["rknn"]["status"] == "fallback"
