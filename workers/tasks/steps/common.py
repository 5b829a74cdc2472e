"""What every step shares: the job's working folder, its model and variants fetched locally,
sandbox limits, progress scaling, and earlier steps' results."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.pipeline.models import Job
from apps.pipeline.services import StepOutcome
from apps.pipeline.work_orders import (
    fetch_from_storage,
    model_artifact,
    output_semantics,
    profile_variants,
    ref,
    work_order,
)
from apps.registry.models import Artifact
from apps.registry.storage import materialize
from workers.engine import isolation, work
from workers.engine.sandbox import SandboxLimits

__all__ = ["model_artifact", "output_semantics", "profile_variants"]

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


def fetch_model(job: Job, workdir: Path) -> dict[str, str]:
    """Copy the version's ONNX model to the job's folder; the sandbox payload that points at it."""
    model = model_artifact(job.run.version)
    suffix = ".zip" if model.format == "onnx-zip" else ".onnx"
    local = materialize(model.storage_key, workdir / f"model{suffix}")
    return {"source": str(local), "format": model.format, "workdir": str(workdir)}


def scaled(progress: ProgressCallback, start: float, end: float) -> ProgressCallback:
    return lambda fraction, message: progress(start + (end - start) * fraction, message)


def local_model(job: Job, workdir: Path) -> Path:
    """The version's ONNX model as a local file (unpacked when it is a zip with external data)."""
    from workers.engine.archive import extract_archive

    payload = fetch_model(job, workdir)
    if payload["format"] == "onnx-zip":
        return extract_archive(Path(payload["source"]), workdir / "model")
    return Path(payload["source"])


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


def local_variant(artifact: Artifact, dest: Path) -> Path:
    """A variant artifact as local files, checked against its hash; returns the file its backend loads."""
    return work.local_variant(ref(artifact), fetch_from_storage, dest)


def run_as_order(job: Job, progress: ProgressCallback) -> StepOutcome:
    """A measuring step (validate, parity, benchmark) run as its work order, reading the
    artifacts from storage: the same function a device agent runs on what it downloads."""
    from workers.tasks.worker_registry import own_facts

    with job_workdir(job) as workdir:
        done = work.run_order(work_order(job), fetch_from_storage, workdir, progress)
    measured_on = work.measured_on("worker", job.worker_host, own_facts())
    return StepOutcome(result={**done.result, "measured_on": measured_on}, log=done.log)
