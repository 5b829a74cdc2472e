"""The inspect step: read the model's graph, inputs, outputs and what they look like, in the sandbox."""

from __future__ import annotations

from apps.pipeline.models import Job
from apps.pipeline.services import StepOutcome
from workers.engine.sandbox import run_in_sandbox
from workers.tasks.steps.common import ProgressCallback, fetch_model, job_workdir, sandbox_limits, scaled


def run_inspect(job: Job, progress: ProgressCallback) -> StepOutcome:
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the uploaded file")
        payload = fetch_model(job, workdir)
        report, log = run_in_sandbox(
            "inspect",
            # The declarations shape the input plan (kinds, values, dim sizes) every later step uses,
            # and say what each output is, which decides how parity judges it.
            {
                **payload,
                "declarations": job.run.version.input_declarations,
                "output_declarations": job.run.version.output_declarations,
            },
            sandbox_limits(),
            on_progress=scaled(progress, 0.05, 1.0),
            what="inspection",
            writable=[workdir],
        )
    return StepOutcome(result=report, log=log[-5000:] if log else "")
