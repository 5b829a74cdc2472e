"""What every step shares: the job's working folder, its model and variants fetched locally,
sandbox limits, progress scaling, and earlier steps' results."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.pipeline.models import Job, JobKind, JobStatus
from apps.pipeline.services import StepOutcome
from apps.registry.models import Artifact, ArtifactKind, ModelVersion
from apps.registry.storage import materialize
from workers.engine import isolation
from workers.engine.sandbox import SandboxError, SandboxLimits

ProgressCallback = Callable[[float, str], None]


def sandbox_limits() -> SandboxLimits:
    return SandboxLimits(
        memory_bytes=settings.SANDBOX_MEMORY_BYTES,
        timeout_seconds=float(settings.SANDBOX_TIMEOUT_SECONDS),
    )


def job_workdir(job: Job) -> AbstractContextManager[Path]:
    """A scratch folder per job attempt, removed afterwards whatever happens."""
    return scratch_dir(f"job-{job.pk}-attempt-{job.attempt}")


@contextmanager
def scratch_dir(name: str) -> Iterator[Path]:
    """WORK_DIR/<name>, empty at the start (a retried attempt's leftovers are gone) and
    removed afterwards whatever happens."""
    path = Path(settings.WORK_DIR) / name
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


def fetch_model(job: Job, workdir: Path) -> dict[str, str]:
    """Copy the version's ONNX model to the job's folder; the sandbox payload that points at it."""
    model = model_artifact(job.run.version)
    suffix = ".zip" if model.format == "onnx-zip" else ".onnx"
    local = materialize(model.storage_key, workdir / f"model{suffix}")
    return {"source": str(local), "format": model.format, "workdir": str(workdir)}


def scaled(progress: ProgressCallback, start: float, end: float) -> ProgressCallback:
    return lambda fraction, message: progress(start + (end - start) * fraction, message)


def profile_variants(job: Job) -> list[Artifact]:
    """The variants this run's optimize step built for the job's profile."""
    assert job.profile is not None
    return list(
        Artifact.objects.filter(
            version=job.run.version, kind=ArtifactKind.VARIANT, job__run=job.run, metadata__profile=job.profile.slug
        ).order_by("id")
    )


def local_model(job: Job, workdir: Path) -> Path:
    """The version's ONNX model as a local file (unpacked when it is a zip with external data)."""
    from workers.engine.archive import extract_archive

    payload = fetch_model(job, workdir)
    if payload["format"] == "onnx-zip":
        return extract_archive(Path(payload["source"]), workdir / "model")
    return Path(payload["source"])


def local_variant(artifact: Artifact, dest: Path) -> Path:
    """A variant artifact as local files; returns the file its backend loads."""
    dest.mkdir(parents=True, exist_ok=True)
    main = artifact.metadata.get("main_file") or "model"
    if artifact.format.endswith("zip"):
        bundle = materialize(artifact.storage_key, dest.parent / f"{dest.name}.zip")
        with zipfile.ZipFile(bundle) as archive:
            for member in archive.namelist():
                # Our own bundles hold plain file names; anything else is not ours.
                if Path(member).name != member:
                    raise SandboxError("engine_error", f"Variant bundle {artifact.name} has an unexpected member.")
            archive.extractall(dest)
        bundle.unlink()
        return dest / main
    return materialize(artifact.storage_key, dest / main)


def output_semantics(job: Job) -> dict[str, Any]:
    """What each output is, from the inspection report (declared at upload, else proposed from
    the graph): {} for a report from before output semantics existed."""
    inspect = job.run.jobs.filter(kind=JobKind.INSPECT, status=JobStatus.SUCCEEDED).order_by("-sequence").first()
    return dict(((inspect.result if inspect else None) or {}).get("output_semantics") or {})


def step_result(job: Job, kind: str) -> dict[str, Any]:
    earlier = job.run.jobs.filter(kind=kind, profile=job.profile, status="succeeded").order_by("-sequence").first()
    return (earlier.result if earlier else None) or {}


def sandboxed(step: Callable[[Job, ProgressCallback], StepOutcome]) -> Callable[[Job, ProgressCallback], StepOutcome]:
    """A step that opens the model in sandboxed children: its report says how they were isolated."""

    def run(job: Job, progress: ProgressCallback) -> StepOutcome:
        outcome = step(job, progress)
        outcome.result["sandbox"] = isolation.describe().to_dict()
        return outcome

    return run
