"""The inspect step: read the model's graph, inputs, outputs and what they look like, in the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apps.pipeline.models import InspectionGraph, Job
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
    # The graph goes into a row of its own: the report is read on every version page, the graph
    # only when someone opens it.
    graph = report.pop("graph", None)
    return StepOutcome(
        result=report, persist=_store_graph(graph) if graph is not None else None, log=log[-5000:] if log else ""
    )


def _store_graph(graph: dict[str, Any]) -> Callable[[Job], None]:
    def persist(job: Job) -> None:
        # Keyed by the job: a retried attempt replaces the graph, never adds a second one.
        InspectionGraph.objects.update_or_create(job=job, defaults={"data": graph})

    return persist
