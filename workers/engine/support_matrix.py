"""Combine per-backend support reports into the op-type x backend matrix users read."""

from __future__ import annotations

from typing import Any


def build_matrix(reports: dict[str, dict[str, Any]], report_only: tuple[str, ...] = ()) -> dict[str, Any]:
    """reports: backend name -> SupportReport.to_dict() (or an error report).

    Returns {"backends": [...], "rows": [{"domain", "op_type", "cells": {backend: cell}}],
    "verdicts": {backend: verdict}, "remedies": {backend: remedy}, "problems": n}. A cell is
    {"status", "reason", "nodes", "device", "after_rewrite"}; a backend that could not answer
    gives cells of status "unknown". Backends in `report_only` are columns for reference
    (checked, not built for), so their cells don't count as problems. `after_rewrite` names the
    rewrite chain after which the backend runs an op it refuses ("" when none does); a remedy
    is {"rewrites", "summary"} for
    each backend whose report tried rewrites (see workers/engine/remediation.py).
    """
    backends = sorted(reports)
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    remedies: dict[str, dict[str, Any]] = {}
    for backend in backends:
        remediation = reports[backend].get("remediation") or {}
        rewrites = list(remediation.get("rewrites") or [])
        fixed = {(op.get("domain") or "ai.onnx", op["op_type"]) for op in remediation.get("fixed", [])}
        if remediation:
            remedies[backend] = {"rewrites": rewrites, "summary": remediation.get("summary", "")}
        for op in reports[backend].get("ops", []):
            key = (op.get("domain") or "ai.onnx", op["op_type"])
            rows.setdefault(key, {})[backend] = {
                "status": op["status"],
                "reason": op.get("reason", ""),
                "nodes": list(op.get("nodes", [])),
                "device": op.get("device", ""),
                "after_rewrite": " + ".join(rewrites) if op["status"] != "supported" and key in fixed else "",
            }
    table = []
    problems = 0
    for (domain, op_type), cells in sorted(rows.items(), key=lambda item: (item[0][0] != "ai.onnx", item[0])):
        for backend in backends:
            if backend not in cells:
                report = reports[backend]
                cells[backend] = {
                    "status": "unknown",
                    "reason": report.get("error") or f"{backend} gave no answer for this op ({report.get('verdict')}).",
                    "nodes": [],
                    "device": "",
                    "after_rewrite": "",
                }
        if any(cell["status"] != "supported" for backend, cell in cells.items() if backend not in report_only):
            problems += 1
        table.append({"domain": domain, "op_type": op_type, "cells": cells})
    return {
        "backends": backends,
        "rows": table,
        "verdicts": {backend: reports[backend].get("verdict", "error") for backend in backends},
        "methods": {backend: reports[backend].get("method", "") for backend in backends},
        "remedies": remedies,
        "problems": problems,
        "report_only": [backend for backend in backends if backend in report_only],
    }
