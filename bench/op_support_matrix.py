"""How well the onnxruntime backend's support check predicts what actually runs.

Takes every case of ONNX's node test suite (`onnx.backend.test.case.node.collect_testcases()`:
a small model, its inputs and expected outputs), asks `OnnxRuntimeCpuBackend.check_support`
about the case's model, then runs the case with the backend's own session and compares the
outputs with the expected ones (rtol 1e-3, atol 1e-7, as onnx's backend test does). "Said
supported" is a "full" verdict; "ran" is a session that was created and ran without raising.
The agreement is the share of cases where the two say the same. Prints the result as JSON
and writes it to BENCHMARKS.md (section "Op-support matrix (ONNX node test suite)") unless
--no-write.

    python bench/op_support_matrix.py              # every case (about 1900, a few minutes)
    python bench/op_support_matrix.py --limit 50 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SECTION = "Op-support matrix (ONNX node test suite)"
RTOL, ATOL = 1e-3, 1e-7
MAX_LISTED = 15
NUMPY_IO_ERROR = re.compile(
    r"can't be converted to MLDataType|No corresponding Numpy type|Unable to handle object of type"
)


def collect_cases() -> list[Any]:
    """The node test cases, sorted by name (the generators print warnings on import)."""
    import numpy as np
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    return sorted(cases, key=lambda case: case.name)


def run_case(backend: Any, case: Any, model_path: Path) -> dict[str, Any]:
    """Check support for one case, then run it and compare with the expected outputs."""
    import onnx
    from onnx.backend.test.runner import Runner

    onnx.save_model(case.model, str(model_path))
    result: dict[str, Any] = {"case": case.name}
    try:
        report = backend.check_support(model_path)
        result["verdict"] = report.verdict
        result["method"] = report.method
        result["unsupported"] = sorted({f"{op.op_type}: {op.reason}" for op in report.ops if op.status != "supported"})
    except Exception as exc:
        result.update(verdict="check_failed", method="", unsupported=[f"{type(exc).__name__}: {exc}"])
    result["said_supported"] = result["verdict"] == "full"

    graph = case.model.graph
    runs = []
    try:
        session = backend.load(model_path)
        for inputs, expected in case.data_sets:
            feeds = {value.name: _as_test_data(data, value) for data, value in zip(inputs, graph.input, strict=False)}
            outputs = session.run(feeds)
            runs.append(([outputs[name] for name in session.output_names], expected))
        session.close()
    except Exception as exc:
        result.update(ran=False, matched=False, run_error=_first_line(exc))
        # numpy has no bfloat16, float8, int4...: the Python API cannot feed or fetch them.
        result["numpy_io"] = bool(NUMPY_IO_ERROR.search(result["run_error"]))
        return result

    result.update(ran=True, matched=True, numpy_io=False)
    try:
        for actual, expected in runs:
            expected = [_as_test_data(data, value) for data, value in zip(expected, graph.output, strict=False)]
            Runner.assert_similar_outputs(expected, actual, rtol=case.rtol or RTOL, atol=case.atol or ATOL)
    except (AssertionError, TypeError, ValueError) as exc:
        result.update(matched=False, mismatch=_first_line(exc))
    return result


def summarize(results: list[dict[str, Any]], cases: list[Any], seconds: float) -> dict[str, Any]:
    """Counts and the agreement between "said supported" and "ran"."""
    import onnx
    import onnxruntime

    op_types = {op for case in cases for op in _op_types(case)}
    ran_op_types = {op for case, result in zip(cases, results, strict=True) if result["ran"] for op in _op_types(case)}
    agree = sum(result["said_supported"] == result["ran"] for result in results)
    comparable = [result for result in results if not result["numpy_io"]]
    agree_comparable = sum(result["said_supported"] == result["ran"] for result in comparable)
    false_yes = [result for result in comparable if result["said_supported"] and not result["ran"]]
    false_no = [result for result in results if not result["said_supported"] and result["ran"]]
    return {
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cores": os.cpu_count(),
        "seconds": round(seconds, 1),
        "cases": len(results),
        "op_types": len(op_types),
        "op_types_in_a_case_that_ran": len(ran_op_types),
        "said_supported": sum(result["said_supported"] for result in results),
        "ran": sum(result["ran"] for result in results),
        "ran_and_matched": sum(result["matched"] for result in results),
        "agreement_percent": round(100 * agree / len(results), 2) if results else 0.0,
        "numpy_io_cases": len(results) - len(comparable),
        "agreement_percent_without_numpy_io": round(100 * agree_comparable / len(comparable), 2) if comparable else 0.0,
        "said_supported_but_failed": sum(result["said_supported"] and not result["ran"] for result in results),
        "said_supported_but_failed_without_numpy_io": len(false_yes),
        "said_unsupported_but_ran": len(false_no),
        "methods": dict(Counter(result["method"] for result in results)),
        "verdicts": dict(Counter(result["verdict"] for result in results)),
        "disagreements": [
            {
                "case": result["case"],
                "verdict": result["verdict"],
                "ran": result["ran"],
                "detail": result.get("run_error") or "; ".join(result["unsupported"])[:200],
            }
            for result in (false_yes + false_no)[:MAX_LISTED]
        ],
    }


def write_benchmarks(summary: dict[str, Any]) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md, leaving the others alone."""
    path = REPO / "BENCHMARKS.md"
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nNumbers from `bench/`; each is a ratio to a reference run in the same run.\n"
    )
    rows = [
        ("cases", summary["cases"]),
        ("op types in the case models", summary["op_types"]),
        ("op types in at least one case that ran", summary["op_types_in_a_case_that_ran"]),
        ("said supported (verdict `full`)", summary["said_supported"]),
        ("ran (session created, run without error)", summary["ran"]),
        ("ran and matched the expected outputs", summary["ran_and_matched"]),
        ("**agreement: said supported == ran**", f"**{summary['agreement_percent']} %**"),
        ("said supported but failed to run", summary["said_supported_but_failed"]),
        ("cases whose bfloat16/float8/int4... data the Python API cannot feed or fetch", summary["numpy_io_cases"]),
        (
            "**agreement without those numpy I/O cases**",
            f"**{summary['agreement_percent_without_numpy_io']} %** "
            f"({summary['cases'] - summary['numpy_io_cases']} cases)",
        ),
        ("said unsupported but ran", summary["said_unsupported_but_ran"]),
        (
            "support method (runtime / probe)",
            f"{summary['methods'].get('runtime', 0)} / {summary['methods'].get('probe', 0)}",
        ),
        ("time", f"{summary['seconds']} s"),
    ]
    section = (
        f"## {SECTION}\n\n"
        f"`bench/op_support_matrix.py`, {time.strftime('%Y-%m-%d')}, {summary['cores']} cores, onnx "
        f"{summary['onnx']}, onnxruntime {summary['onnxruntime']}: every case of ONNX's node test suite, "
        "asked to `OnnxRuntimeCpuBackend.check_support` and then run with onnxruntime (CPU) against its "
        f"expected outputs (rtol {RTOL}, atol {ATOL}, as onnx's backend test).\n\n"
        "| measure | value |\n|---|---|\n" + "".join(f"| {name} | {value} |\n" for name, value in rows) + "\n"
    )
    if summary["disagreements"]:
        section += (
            "A support check loads the model; it cannot see a kernel that exists but fails at run time on "
            "particular inputs. Disagreements other than numpy I/O:\n\n"
        )
        for item in summary["disagreements"]:
            outcome = "ran" if item["ran"] else "failed"
            detail = item["detail"].replace("|", "/").replace("\n", " ")
            section += f"- `{item['case']}`: verdict {item['verdict']}, {outcome}: {detail}\n"
    pattern = re.compile(rf"## {re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n"), text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text if text.endswith("\n") else text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases (by name)")
    parser.add_argument("--no-write", action="store_true", help="don't update BENCHMARKS.md")
    parser.add_argument("--details", type=Path, help="also write every case's result to this JSON file")
    args = parser.parse_args()

    from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend

    backend = OnnxRuntimeCpuBackend()
    cases = collect_cases()[: args.limit]
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="op-support-") as scratch:
        model_path = Path(scratch) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for index, case in enumerate(cases, start=1):
                results.append(run_case(backend, case, model_path))
                if index % 200 == 0:
                    print(f"{index}/{len(cases)} cases", file=sys.stderr)
    summary = summarize(results, cases, time.perf_counter() - started)
    print(json.dumps(summary, indent=2))
    if args.details:
        args.details.write_text(json.dumps(results, indent=1))
    if not args.no_write:
        write_benchmarks(summary)


def _as_test_data(data: Any, value: Any) -> Any:
    """A case's input or output as onnx's backend test feeds it: written to a .pb and read back.

    Cases hold numpy scalars, lists, or TensorProtos (for dtypes numpy lacks); the test
    suite's own files are made by `onnx.backend.test.cmd_tools.generate_data` and read by
    `Runner._load_proto`, and this does the same round trip in memory.
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    kind = value.type.WhichOneof("value")
    if kind == "sequence_type":
        return numpy_helper.to_list(numpy_helper.from_list(data, value.name))
    if kind == "optional_type":
        return numpy_helper.to_optional(numpy_helper.from_optional(data, value.name))
    if kind == "tensor_type":
        tensor = data if isinstance(data, TensorProto) else numpy_helper.from_array(np.asarray(data), value.name)
        return numpy_helper.to_array(tensor)
    return data


def _op_types(case: Any) -> set[tuple[str, str]]:
    return {(node.domain or "ai.onnx", node.op_type) for node in case.model.graph.node}


def _first_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return text[:300]


if __name__ == "__main__":
    main()
