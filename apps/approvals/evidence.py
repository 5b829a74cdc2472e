"""The evidence a review decision binds to: what was measured, on what, with which tools.

The snapshot is built from the version's latest finished pipeline run and holds only what a
reviewer decides on (no raw latency samples, no logs), so its hash changes exactly when the
decision's basis does: a re-run, a different artifact, another runtime version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rest_framework import status

from apps.core.api.errors import ApiError
from apps.hardware.services import worker_by_host, wrong_hardware
from apps.pipeline.models import JobKind, JobStatus, PipelineRun, RunStatus
from apps.pipeline.outcomes import ProfileOutcome, ProfileStatus, profile_outcomes
from apps.pipeline.services import needs_hardware
from apps.registry.models import ArtifactKind, ModelVersion
from workers.engine.reports import BenchmarkEntry, BenchmarkPoint, VariantParityReport
from workers.engine.typed import read

_PARITY_FIELDS = ("max_abs_error", "max_rel_error", "p99_abs_error", "cosine", "top1_agreement")


def evidence_hash(evidence: dict[str, Any]) -> str:
    """SHA-256 of the evidence as canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(evidence, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def latest_run(version: ModelVersion) -> PipelineRun | None:
    return version.runs.order_by("-id").first()


def _points(benchmark: dict[str, Any]) -> list[dict[str, Any]]:
    entry = read(BenchmarkEntry, benchmark)
    return [_point(p) for p in entry.points] if entry is not None else []


def _point(p: BenchmarkPoint) -> dict[str, Any]:
    """A benchmark point as the evidence snapshot keeps it (its keys are part of the hash)."""
    point: dict[str, Any] = {
        "batch": p.batch_size,
        "concurrency": p.concurrency,
        "p50_ms": p.p50_ms,
        "p99_ms": p.p99_ms,
        "throughput": p.throughput,
    }
    if p.p99_ms is None and p.p99_note:
        # Too few samples for a p99: what the latency gate can still judge by (the slowest request
        # bounds the p99) and why. Only then, so a snapshot with a p99 hashes as it always did.
        point.update(max_ms=p.max_ms, samples=p.samples, p99_note=p.p99_note)
    return point


def _parity_summary(parity: dict[str, Any]) -> dict[str, Any]:
    """Whether the variant passed, and the worst value of each accuracy metric over its outputs
    (only the metrics some output has: the snapshot's keys are part of its hash)."""
    if not parity:
        return {"passed": None}
    verdict = read(VariantParityReport, parity)
    if verdict is None:
        return {"passed": parity.get("passed")}
    worst = {metric: verdict.worst(metric) for metric in _PARITY_FIELDS}
    return {"passed": verdict.passed, **{metric: value for metric, value in worst.items() if value is not None}}


def _worker_summary(host: str) -> dict[str, Any] | None:
    worker = worker_by_host(host)
    if worker is None:
        return None
    return {
        "host": worker.host,
        "cpu_model": worker.cpu_model,
        "cores": worker.cores,
        "gpus": [{k: g.get(k) for k in ("name", "memory_bytes", "compute_capability", "driver")} for g in worker.gpus],
    }


def _support_summary(validate: dict[str, Any]) -> dict[str, Any]:
    """Per backend: verdict, runtime version, and how many ops are unsupported or fall back."""
    summary = {}
    for backend, report in (validate.get("reports") or {}).items():
        ops = report.get("ops") or []
        summary[backend] = {
            "verdict": report.get("verdict"),
            "runtime_version": report.get("runtime_version"),
            "unsupported_ops": sorted({o["op_type"] for o in ops if o.get("status") == "unsupported"}),
            "fallback_ops": sorted({o["op_type"] for o in ops if o.get("status") == "fallback"}),
            "devices": sorted({p.get("device", "") for p in report.get("partitions") or [] if p.get("device")}),
        }
    return summary


def _profile_evidence(
    version: ModelVersion, profile: Any, results: dict[str, Any], worker_host: str, hosts: set[str]
) -> dict:
    validate = results.get(JobKind.VALIDATE) or {}
    parity = results.get(JobKind.PARITY) or {}
    benchmark = results.get(JobKind.BENCHMARK) or {}
    recommendation = results.get(JobKind.RECOMMEND) or {}
    winner = recommendation.get("winner") or None
    chosen: dict[str, Any] | None = None
    if winner:
        name = winner["name"]
        artifact = (
            version.artifacts.filter(kind=ArtifactKind.VARIANT, name=f"{profile.slug}/{name}").order_by("-id").first()
        )
        variant_parity = (parity.get("variants") or {}).get(name) or {}
        chosen = {
            "name": name,
            "backend": winner.get("backend"),
            "precision": winner.get("precision"),
            "artifact_id": artifact.pk if artifact else None,
            "sha256": artifact.sha256 if artifact else None,
            "tool_versions": artifact.tool_versions if artifact else {},
            "benchmark": _points((benchmark.get("variants") or {}).get(name) or {}),
            "parity": _parity_summary(variant_parity),
        }
    runner_up = recommendation.get("runner_up") or None
    evidence = {
        "hardware_profile": {
            "slug": profile.slug,
            "device_kind": profile.device_kind,
            "backends": list(profile.backends),
            "precisions": list(profile.precisions),
        },
        "worker": _worker_summary(worker_host),
        "support": _support_summary(validate),
        "tolerance": parity.get("tolerance"),
        "baseline_benchmark": _points(benchmark.get("baseline") or {}),
        "recommendation": {
            "objective": recommendation.get("objective"),
            "budget_ms": recommendation.get("budget_ms"),
            "use_baseline": recommendation.get("use_baseline"),
            "summary": recommendation.get("summary"),
            "winner": chosen,
            "winner_value": winner.get("value") if winner else None,
            "speedup": winner.get("speedup") if winner else None,
            "runner_up": runner_up.get("name") if runner_up else None,
        },
    }
    measured_on = benchmark.get("measured_on") or {}
    if measured_on.get("kind") == "device":
        # A device is no registered worker: where it measured comes with its report. Only here,
        # so the snapshot (and its hash) of a worker's evidence is what it was before.
        evidence["measured_on"] = measured_on
    mismatch = wrong_hardware(profile, hosts)
    if mismatch:
        # Only where a worker that ran the profile's steps lacks its hardware, so the snapshot
        # (and its hash) of evidence measured where it should be is what it was before.
        evidence["measured_on_other_hardware"] = mismatch
    return evidence


def _has_points(entry: Any) -> bool:
    return isinstance(entry, dict) and bool(entry.get("points"))


def missing_evidence(profile: str, outcome: ProfileOutcome | None, results: dict[str, Any]) -> str:
    """Why `profile` has no measured evidence in the run, as a sentence; empty when it has.

    A profile has evidence when its steps all succeeded and its benchmark measured the original
    model or a variant. Runs from before the benchmark step failed on nothing measured can have
    a succeeded benchmark with no points: those count as missing too."""
    if outcome is None:
        return f"The latest pipeline run did not include the {profile} profile; re-run the pipeline."
    if outcome.status != ProfileStatus.READY:
        return f"The {profile} profile has no measured evidence: {outcome.reason}"
    benchmark = results.get(JobKind.BENCHMARK)
    if benchmark is None:
        return f"The {profile} profile has no benchmark in the latest run; re-run the pipeline."
    if not _has_points(benchmark.get("baseline")) and not any(
        _has_points(entry) for entry in (benchmark.get("variants") or {}).values()
    ):
        return (
            f"Nothing was measured on the {profile} profile: every benchmark failed, the original model's included. "
            "Re-run the pipeline to see why."
        )
    return ""


def collect_evidence(version: ModelVersion) -> dict[str, Any]:
    """The evidence snapshot of the version's latest run; a 409 if that run has not finished well."""
    run = latest_run(version)
    if run is None or run.status != RunStatus.SUCCEEDED:
        state = "has no pipeline run" if run is None else f"has a pipeline run that is {run.status}"
        raise ApiError(
            "no_evidence",
            f"Version {version.number} of {version.model.slug} {state}; evidence exists once its pipeline "
            "has finished successfully.",
            status.HTTP_409_CONFLICT,
        )
    results: dict[str | None, dict[str, Any]] = {}
    hosts: dict[str | None, str] = {}
    ran_on: dict[str | None, set[str]] = {}
    for job in run.jobs.filter(status=JobStatus.SUCCEEDED).select_related("profile").order_by("sequence"):
        slug = job.profile.slug if job.profile else None
        results.setdefault(slug, {})[job.kind] = job.result or {}
        if needs_hardware(job.kind, job.profile):
            # Only the steps that measure must run on the profile's hardware; building portable
            # files and ranking run on the server's CPU workers (docs/adr/0016).
            ran_on.setdefault(slug, set()).add(job.worker_host)
        if job.kind == JobKind.BENCHMARK:
            hosts[slug] = job.worker_host
    onnx = version.artifacts.filter(kind=ArtifactKind.ONNX, job__run=run).order_by("-id").first()
    source = version.source_artifact
    outcomes = {o.profile: o for o in profile_outcomes(run)}
    profiles = {}
    for profile in version.profiles.order_by("slug"):
        profiles[profile.slug] = _profile_evidence(
            version,
            profile,
            results.get(profile.slug, {}),
            hosts.get(profile.slug, ""),
            ran_on.get(profile.slug, set()),
        )
        missing = missing_evidence(profile.slug, outcomes.get(profile.slug), results.get(profile.slug, {}))
        if missing:
            # Only where evidence is missing, so the snapshot (and its hash) of a fully
            # measured version is what it was before this key existed.
            profiles[profile.slug]["evidence_missing"] = missing
    return {
        "version": {
            "id": version.pk,
            "team": version.model.team.slug,
            "model": version.model.slug,
            "number": version.number,
            "framework": version.framework,
            "uploaded_by": version.created_by.get_username(),
        },
        "run_id": run.pk,
        "artifacts": {
            "source": {"sha256": source.sha256, "format": source.format, "size": source.size} if source else None,
            "onnx": {
                "sha256": onnx.sha256,
                "converter": onnx.metadata.get("converter"),
                "tool_versions": onnx.tool_versions,
            }
            if onnx
            else None,
        },
        "profiles": profiles,
    }
