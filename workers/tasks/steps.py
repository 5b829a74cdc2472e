"""What each pipeline step does on a worker, between the claimed Job and the engine.

A step receives the claimed job and a progress callback and returns a `StepOutcome`; it
raises `ModelError` / `SandboxError` for failures the user should read.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File

from apps.jobs.models import Job, JobKind
from apps.jobs.services import StepOutcome
from apps.registry.models import Artifact, ArtifactKind, ModelVersion
from apps.registry.storage import materialize, put_blob, sha256_file
from workers.engine.errors import ModelError
from workers.engine.sandbox import SandboxError, SandboxLimits, run_in_sandbox
from workers.engine.support_matrix import build_matrix

ProgressCallback = Callable[[float, str], None]


def sandbox_limits() -> SandboxLimits:
    return SandboxLimits(
        memory_bytes=settings.SANDBOX_MEMORY_BYTES,
        timeout_seconds=float(settings.SANDBOX_TIMEOUT_SECONDS),
    )


@contextmanager
def job_workdir(job: Job) -> Iterator[Path]:
    """A scratch folder per job attempt, removed afterwards whatever happens."""
    path = Path(settings.WORK_DIR) / f"job-{job.pk}-attempt-{job.attempt}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def model_artifact(version: ModelVersion) -> Artifact:
    """The ONNX model the later steps work on: the import's output, or the upload itself."""
    imported = version.artifacts.filter(kind=ArtifactKind.ONNX).order_by("-id").first()
    source = imported or version.source_artifact
    assert source is not None, "a version always has its source artifact"
    return source


def _fetch_model(job: Job, workdir: Path) -> dict[str, str]:
    """Copy the version's ONNX model to the job's folder; the sandbox payload that points at it."""
    model = model_artifact(job.run.version)
    suffix = ".zip" if model.format == "onnx-zip" else ".onnx"
    local = materialize(model.storage_key, workdir / f"model{suffix}")
    return {"source": str(local), "format": model.format, "workdir": str(workdir)}


def _store_files(files: list[Path], main: Path, fmt: str, bundle: Path) -> dict[str, Any]:
    """Store one artifact's files as one blob: the file itself, or an uncompressed zip of all
    of them (a model with external data, an IR with its weights). Returns what the row needs."""
    if len(files) > 1:
        bundle.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(bundle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for file in files:
                archive.write(file, file.name)
        path, fmt = bundle, f"{fmt}-zip" if fmt == "onnx" else f"{fmt}+zip"
    else:
        path = main
    digest = sha256_file(path)
    with open(path, "rb") as fh:
        key, _ = put_blob(File(fh, name=path.name), digest)
    return {
        "sha256": digest,
        "size": path.stat().st_size,
        "key": key,
        "format": fmt,
        "main_file": main.name,
        "files": [f.name for f in files],
    }


def run_import(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Convert the uploaded framework file to ONNX (checked, with parity) and store it."""
    version = job.run.version
    source = version.source_artifact
    assert source is not None, "a version always has its source artifact"
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the uploaded file")
        local = materialize(source.storage_key, workdir / "upload.bin")
        report, log = run_in_sandbox(
            "import",
            {
                "source": str(local),
                "format": source.format,
                "out_dir": str(workdir / "onnx"),
                "inputs": version.input_spec,
            },
            sandbox_limits(),
            on_progress=_scaled(progress, 0.05, 0.95),
            what="the import",
        )
        files = [Path(f) for f in report["files"]]
        stored = _store_files(files, Path(report["onnx_path"]), "onnx", workdir / "bundle.zip")
    # Paths inside the sandbox's scratch folder mean nothing to readers of the report.
    report = {**report, "onnx_path": stored["main_file"], "files": stored["files"]}

    def persist(locked: Job) -> None:
        artifact = Artifact.objects.create(
            version=version,
            kind=ArtifactKind.ONNX,
            name="onnx",
            format=stored["format"],
            sha256=stored["sha256"],
            size=stored["size"],
            storage_key=stored["key"],
            parent=source,
            job=locked,
            tool_versions=report.get("tool_versions", {}),
            metadata={
                "converter": report["converter"],
                "method": report["method"],
                "fallback_reason": report.get("fallback_reason", ""),
                "main_file": stored["main_file"],
                "files": stored["files"],
            },
        )
        report["artifact_id"] = artifact.pk

    return StepOutcome(result=report, persist=persist, log=log[-5000:] if log else "")


def _scaled(progress: ProgressCallback, start: float, end: float) -> ProgressCallback:
    return lambda fraction, message: progress(start + (end - start) * fraction, message)


def run_inspect(job: Job, progress: ProgressCallback) -> StepOutcome:
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the uploaded file")
        payload = _fetch_model(job, workdir)
        report, log = run_in_sandbox(
            "inspect", payload, sandbox_limits(), on_progress=_scaled(progress, 0.05, 1.0), what="inspection"
        )
    return StepOutcome(result=report, log=log[-5000:] if log else "")


def _error_report(backend: str, exc: ModelError | SandboxError) -> dict[str, Any]:
    return {
        "backend": backend,
        "runtime_version": None,
        "installed": True,
        "method": "runtime",
        "verdict": "error",
        "ops": [],
        "partitions": [],
        "notes": [],
        "error": exc.message,
    }


def run_validate(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Ask every backend of the job's profile which ops it supports, each in its own sandbox.

    A backend that crashes or rejects the model gets an error column; the others still report.
    """
    assert job.profile is not None, "validate runs per hardware profile"
    backends = list(job.profile.backends)
    reports: dict[str, dict[str, Any]] = {}
    logs = []
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the model")
        payload = _fetch_model(job, workdir)
        for index, backend in enumerate(backends):
            start, end = 0.05 + 0.95 * index / len(backends), 0.05 + 0.95 * (index + 1) / len(backends)
            try:
                report, log = run_in_sandbox(
                    "validate",
                    {**payload, "backend": backend},
                    sandbox_limits(),
                    on_progress=_scaled(progress, start, end),
                    what=f"the {backend} support check",
                )
            except (ModelError, SandboxError) as exc:
                report, log = _error_report(backend, exc), getattr(exc, "log", "")
            reports[backend] = report
            if log:
                logs.append(f"[{backend}] {log[-2000:]}")
    result = {"profile": job.profile.slug, "reports": reports, "matrix": build_matrix(reports)}
    return StepOutcome(result=result, log="\n".join(logs))


def run_optimize(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Build every backend's variants for the job's profile and store each as an artifact."""
    assert job.profile is not None, "optimize runs per hardware profile"
    version = job.run.version
    profile = job.profile
    parent = model_artifact(version)
    backends = list(profile.backends)
    variants: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    stored: list[dict[str, Any]] = []
    logs = []
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the model")
        payload = _fetch_model(job, workdir)
        calibration = None
        if version.calibration is not None:
            calibration = str(materialize(version.calibration.storage_key, workdir / "calibration.npz"))
        for index, backend in enumerate(backends):
            start, end = 0.05 + 0.9 * index / len(backends), 0.05 + 0.9 * (index + 1) / len(backends)
            profile_fields = {
                "name": profile.slug,
                "device_kind": profile.device_kind,
                "backends": list(profile.backends),
                "precisions": list(profile.precisions),
                "queue": profile.queue,
                "options": dict(profile.options),
            }
            try:
                built, log = run_in_sandbox(
                    "optimize",
                    {
                        **payload,
                        "backend": backend,
                        "profile": profile_fields,
                        "calibration": calibration,
                        "out_dir": str(workdir / "variants" / backend),
                    },
                    sandbox_limits(),
                    on_progress=_scaled(progress, start, end),
                    what=f"building {backend} variants",
                )
            except (ModelError, SandboxError) as exc:
                errors[backend] = exc.message
                logs.append(f"[{backend}] {getattr(exc, 'log', '')[-2000:]}")
                continue
            if log:
                logs.append(f"[{backend}] {log[-2000:]}")
            if built.get("skipped"):
                skipped[backend] = built["skipped"]
            for variant in built["variants"]:
                files = [Path(f) for f in variant.get("files") or [variant["path"]]]
                bundle = workdir / "bundles" / f"{variant['name']}.zip"
                stored.append(
                    {"variant": variant, **_store_files(files, Path(variant["path"]), variant["format"], bundle)}
                )
                variants.append(
                    {k: variant[k] for k in ("name", "backend", "format", "precision", "pass_name", "options")}
                )
        progress(0.97, "recording variants")

    result: dict[str, Any] = {"profile": profile.slug, "variants": variants, "errors": errors, "skipped": skipped}

    def persist(locked: Job) -> None:
        for entry, summary in zip(stored, variants, strict=True):
            variant = entry["variant"]
            artifact = Artifact.objects.create(
                version=version,
                kind=ArtifactKind.VARIANT,
                name=f"{profile.slug}/{variant['name']}",
                format=entry["format"],
                sha256=entry["sha256"],
                size=entry["size"],
                storage_key=entry["key"],
                parent=parent,
                job=locked,
                tool_versions=variant.get("tool_versions", {}),
                metadata={
                    "profile": profile.slug,
                    "backend": variant["backend"],
                    "precision": variant["precision"],
                    "pass": variant["pass_name"],
                    "options": variant.get("options", {}),
                    "main_file": entry["main_file"],
                    "files": entry["files"],
                },
            )
            summary["artifact_id"] = artifact.pk

    return StepOutcome(result=result, persist=persist, log="\n".join(logs))


STEPS: dict[str, Callable[[Job, ProgressCallback], StepOutcome]] = {
    JobKind.IMPORT: run_import,
    JobKind.INSPECT: run_inspect,
    JobKind.VALIDATE: run_validate,
    JobKind.OPTIMIZE: run_optimize,
}
