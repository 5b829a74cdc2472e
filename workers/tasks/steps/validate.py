"""The validate step: each backend of the profile says, op by op, whether it runs the model."""

from __future__ import annotations

from typing import Any

from apps.pipeline.models import Job
from apps.pipeline.services import StepOutcome
from workers.engine.errors import ModelError
from workers.engine.sandbox import SandboxError, run_in_sandbox
from workers.engine.support_matrix import build_matrix
from workers.tasks.steps.common import ProgressCallback, fetch_model, job_workdir, sandbox_limits, scaled


def error_report(backend: str, exc: ModelError | SandboxError) -> dict[str, Any]:
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
        payload = fetch_model(job, workdir)
        for index, backend in enumerate(backends):
            start, end = 0.05 + 0.95 * index / len(backends), 0.05 + 0.95 * (index + 1) / len(backends)
            try:
                report, log = run_in_sandbox(
                    "validate",
                    {**payload, "backend": backend},
                    sandbox_limits(),
                    on_progress=scaled(progress, start, end),
                    what=f"the {backend} support check",
                    writable=[workdir],
                )
            except (ModelError, SandboxError) as exc:
                report, log = error_report(backend, exc), getattr(exc, "log", "")
            reports[backend] = report
            if log:
                logs.append(f"[{backend}] {log[-2000:]}")
    result = {"profile": job.profile.slug, "reports": reports, "matrix": build_matrix(reports)}
    return StepOutcome(result=result, log="\n".join(logs))
