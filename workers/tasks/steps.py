"""What each pipeline step does on a worker, between the claimed Job and the engine.

A step receives the claimed job and a progress callback and returns a `StepOutcome`; it
raises `ModelError` / `SandboxError` for failures the user should read.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from apps.jobs.models import Job, JobKind
from apps.jobs.services import StepOutcome
from apps.registry.storage import materialize
from workers.engine.sandbox import SandboxLimits, run_in_sandbox

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


def run_inspect(job: Job, progress: ProgressCallback) -> StepOutcome:
    version = job.run.version
    source = version.source_artifact
    assert source is not None, "a version always has its source artifact"
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the uploaded file")
        suffix = ".zip" if source.format == "onnx-zip" else ".onnx"
        local = materialize(source.storage_key, workdir / f"source{suffix}")
        # Scale the engine's 0..1 into the job's 0.05..1 so the fetch above keeps its share.
        report, log = run_in_sandbox(
            "inspect",
            {"source": str(local), "format": source.format, "workdir": str(workdir)},
            sandbox_limits(),
            on_progress=lambda p, m: progress(0.05 + 0.95 * p, m),
            what="inspection",
        )
    return StepOutcome(result=report, log=log[-5000:] if log else "")


STEPS: dict[str, Callable[[Job, ProgressCallback], StepOutcome]] = {
    JobKind.INSPECT: run_inspect,
}
