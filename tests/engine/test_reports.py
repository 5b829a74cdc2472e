"""Stored step reports read by type (workers.engine.reports, workers.engine.typed): the benchmark
report's type declares everything the benchmark writes, reads reports written before fields or
names changed, and refuses a report of another shape naming the field."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from workers.engine.backends.base import OpSupport, SupportReport, Variant
from workers.engine.benchmark import BenchmarkResult, PointResult, ThreadSettings
from workers.engine.detections import DetectionAgreement
from workers.engine.importers.base import ImportReport as EngineImportReport
from workers.engine.parity import OutputComparison, VariantParity
from workers.engine.remediation import Remediation
from workers.engine.reports import (
    BackendSupport,
    BenchmarkEntry,
    BenchmarkPoint,
    BenchmarkReport,
    BenchmarkThreads,
    CandidateOutcome,
    ImportReport,
    InspectReport,
    OptimizeReport,
    OutputParity,
    ParityReport,
    Recommendation,
    RecommendReport,
    RemediationReport,
    ReportInputs,
    ValidateReport,
    VariantParityReport,
    VariantSummary,
)
from workers.engine.support_matrix import build_matrix
from workers.engine.typed import ReportShapeError, from_dict, json_schema

FIXTURE = Path(__file__).resolve().parents[2] / "frontend/src/test/fixtures/mlp-version.json"


def _names(cls: type) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}


def test_the_report_types_declare_every_field_the_benchmark_writes() -> None:
    assert _names(PointResult) <= _names(BenchmarkPoint)
    assert _names(ThreadSettings) <= _names(BenchmarkThreads)
    # What run_benchmark adds to each entry beside BenchmarkResult.to_dict().
    assert _names(BenchmarkResult) | {"device_kind", "artifact_id", "error", "error_code"} <= _names(BenchmarkEntry)


def test_a_stored_report_reads_strictly_and_by_type() -> None:
    stored = json.loads(FIXTURE.read_text())["reports"]["benchmark"]["x86-cpu"]
    report = from_dict(BenchmarkReport, stored, strict=True)
    assert report.profile == "x86-cpu" and set(report.variants) == set(stored["variants"])
    point = report.baseline.points[0]
    assert point.key == (point.batch_size, point.concurrency)
    assert point.p50_ms == stored["baseline"]["points"][0]["p50_ms"]
    assert report.entry("no-such-variant") == BenchmarkEntry()


def test_the_recommenders_former_key_names_read_into_the_benchmarks_own() -> None:
    point = BenchmarkPoint.from_dict({"batch": 4, "concurrency": 2, "p50": 1.5, "p99": 2, "throughput": 900})
    assert (point.batch_size, point.p50_ms, point.p99_ms, point.throughput) == (4, 1.5, 2.0, 900.0)


def test_older_reports_without_later_fields_read_with_their_defaults() -> None:
    entry = from_dict(
        BenchmarkEntry,
        {"backend": "onnxruntime", "points": [{"batch_size": 1, "concurrency": 1, "p50_ms": 2.0, "p99_ms": None}]},
    )
    (point,) = entry.points
    assert point.p50_ci_ms is None and point.samples is None and point.samples_ms == ()
    assert entry.threads is None and not entry.single_threaded_cpu
    # a newer report's keys this reader does not know are ignored, unless asked to be strict
    assert BenchmarkPoint.from_dict({"batch_size": 1, "concurrency": 1, "p42_ms": 1.0}).batch_size == 1
    with pytest.raises(ReportShapeError, match="does not declare: p42_ms"):
        BenchmarkPoint.from_dict({"batch_size": 1, "concurrency": 1, "p42_ms": 1.0}, strict=True)


@pytest.mark.parametrize(
    ("stored", "said"),
    [
        ({"profile": "x", "variants": {"v": {"points": [{"concurrency": 1}]}}}, "BenchmarkPoint.batch_size is missing"),
        (
            {"profile": "x", "variants": {"v": {"points": [{"batch_size": "1", "concurrency": 1}]}}},
            "BenchmarkPoint.batch_size should be a whole number, not '1'",
        ),
        (
            {"profile": "x", "variants": {"v": {"points": [{"batch_size": 1, "concurrency": 1, "p50_ci_ms": [1]}]}}},
            "BenchmarkPoint.p50_ci_ms should hold 2 items, not 1",
        ),
        ({"profile": "x", "variants": []}, "BenchmarkReport.variants should be an object, not list"),
        ({"profile": "x"}, "BenchmarkReport.variants is missing"),
        (
            {"profile": "x", "variants": {}, "baseline": {"load_ms": True}},
            "BenchmarkReport.baseline.load_ms should be a number, not True",
        ),
    ],
)
def test_a_report_of_another_shape_is_refused_naming_the_field(stored: dict, said: str) -> None:
    with pytest.raises(ReportShapeError, match=said):
        from_dict(BenchmarkReport, stored)


def test_the_json_schema_describes_the_same_classes() -> None:
    assert {"OutputParity", "DetectionAgreement", "VariantParityReport"} <= set(json_schema(ParityReport))
    schemas = json_schema(BenchmarkReport)
    assert set(schemas) == {
        "BenchmarkReport", "BenchmarkEntry", "BenchmarkPoint", "BenchmarkThreads", "ReportInputs", "MeasuredOn",
    }  # fmt: skip
    report = schemas["BenchmarkReport"]
    assert report["required"] == ["profile", "variants"]
    assert report["properties"]["variants"]["additionalProperties"] == {"$ref": "#/components/schemas/BenchmarkEntry"}
    point = schemas["BenchmarkPoint"]["properties"]
    assert point["p99_ms"] == {"type": "number", "nullable": True}
    assert point["p50_ci_ms"] == {
        "type": "array",
        "items": {"type": "number"},
        "minItems": 2,
        "maxItems": 2,
        "nullable": True,
    }
    assert point["samples_ms"] == {"type": "array", "items": {"type": "number"}}
    assert schemas["ReportInputs"]["properties"]["assumptions"] == {"type": "array", "items": {"type": "string"}}
    assert ReportInputs().source == ""


def test_a_stored_parity_report_reads_strictly_with_its_detections_typed() -> None:
    stored = json.loads(FIXTURE.read_text())["reports"]["parity"]["x86-cpu"]
    report = from_dict(ParityReport, stored, strict=True)
    assert set(report.passed) <= set(report.variants) and report.inputs.samples == stored["inputs"]["samples"]
    verdict = from_dict(
        VariantParityReport,
        {
            "passed": False,
            "reasons": ["The variant finds 0 of the original's 12 detections"],
            "outputs": [
                {"name": "boxes", "passed": False, "cosine": 0.5, "max_abs_error": 3, "detection": _DETECTION},
                {"name": "scores", "passed": True, "cosine": 0.99, "max_abs_error": 0.01},
            ],
        },
        strict=True,
    )
    boxes = verdict.outputs[0]
    assert boxes.detection == DetectionAgreement(**_DETECTION)
    assert (verdict.worst("cosine"), verdict.worst("max_abs_error"), verdict.worst("top1_agreement")) == (
        0.5,
        3.0,
        None,
    )
    # What the parity engine writes is what the report declares.
    assert {field.name for field in dataclasses.fields(VariantParity)} - {"tolerance"} <= _names(VariantParityReport)
    assert _names(OutputComparison) == _names(OutputParity)


_DETECTION = {
    "images": 8,
    "reference_detections": 12,
    "variant_detections": 0,
    "matched": 0,
    "recall": 0.0,
    "precision": None,
    "mean_score_error": None,
    "mean_matched_iou": None,
    "score_threshold": 0.25,
    "match_iou": 0.5,
}


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("inspect", InspectReport),
        ("validate", ValidateReport),
        ("optimize", OptimizeReport),
        ("recommend", RecommendReport),
    ],
)
def test_every_step_report_of_a_stored_version_reads_strictly(kind: str, cls: type) -> None:
    stored = json.loads(FIXTURE.read_text())["reports"][kind]
    for report in [stored] if kind == "inspect" else list(stored.values()):
        assert from_dict(cls, report, strict=True)


def test_the_validate_report_types_what_each_backend_and_the_matrix_hold(tmp_path: Path) -> None:
    """What validate_entry and build_matrix write, remediation included, is what the types declare."""
    assert _names(SupportReport) | {"remediation"} == _names(BackendSupport)
    assert _names(Remediation) | {"summary"} == _names(RemediationReport)
    refused = SupportReport(
        backend="mnn",
        runtime_version="3.0",
        installed=True,
        method="converter",
        verdict="partial",
        ops=(OpSupport("Gelu", "", "unsupported", "no converter", ("gelu_1",)),),
    ).to_dict()
    refused["remediation"] = {
        "backend": "mnn",
        "refused": [{"domain": "", "op_type": "Gelu", "nodes": ["gelu_1"]}],
        "rewrites": ["expand-gelu"],
        "fixed": [{"domain": "", "op_type": "Gelu"}],
        "summary": "mnn runs the model after rewrite expand-gelu.",
    }
    reports = {"mnn": refused, "onnxruntime": SupportReport("onnxruntime", "1.20", True, "runtime", "full").to_dict()}
    report = from_dict(
        ValidateReport, {"profile": "arm", "reports": reports, "matrix": build_matrix(reports)}, strict=True
    )
    assert report.reports["mnn"].remediation is not None and report.reports["mnn"].remediation.rewrites == (
        "expand-gelu",
    )
    (row,) = report.matrix.rows
    assert row.cells["mnn"].after_rewrite == "expand-gelu" and row.cells["onnxruntime"].status == "unknown"
    assert report.matrix.remedies["mnn"].summary.startswith("mnn runs")


def test_the_optimize_and_import_reports_declare_what_their_steps_write() -> None:
    # The optimize step keeps these keys of each Variant, and adds the stored artifact's id.
    kept = {"name", "backend", "format", "precision", "pass_name", "options"}
    assert kept <= _names(Variant) and _names(VariantSummary) == kept | {"artifact_id"}
    # Every sandboxed step's report says how its children were isolated (steps.common.sandboxed).
    for report in (ImportReport, InspectReport, ValidateReport, OptimizeReport, ParityReport, BenchmarkReport):
        assert "sandbox" in _names(report), report
    # The import step stores the engine's report with its files renamed as stored, and the artifact's id.
    assert _names(EngineImportReport) | {"artifact_id", "sandbox"} == _names(ImportReport)


def test_a_recommendation_reads_back_into_its_own_type() -> None:
    outcome = CandidateOutcome("ort-int8", "onnxruntime", "int8", value=1.5, tied_with=("ort-fp32",))
    recommendation = Recommendation(
        objective="latency",
        budget_ms=None,
        winner=outcome,
        runner_up=None,
        others=(),
        baseline_value=2.0,
        use_baseline=False,
        summary="Use 'ort-int8'.",
    )
    stored = {**recommendation.to_dict(), "profile": "x86-cpu"}
    report = from_dict(RecommendReport, json.loads(json.dumps(stored)), strict=True)
    assert report.winner == outcome and report.profile == "x86-cpu"


def test_two_report_types_of_one_name_are_refused_by_the_schema() -> None:
    with pytest.raises(TypeError, match="Two report types are named BenchmarkPoint"):
        json_schema(_Holder)


@dataclasses.dataclass(frozen=True)
class _OtherPoint:
    batch_size: int


_OtherPoint.__name__ = "BenchmarkPoint"  # the benchmark's point has this name already


@dataclasses.dataclass(frozen=True)
class _Holder:
    mine: _OtherPoint
    theirs: BenchmarkEntry
