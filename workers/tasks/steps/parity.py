"""The parity step: every variant against the FP32 original on the same inputs, each in its own sandbox."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from apps.pipeline.models import Job
from apps.pipeline.services import StepOutcome
from apps.registry.storage import materialize
from workers.engine.errors import ModelError
from workers.engine.sandbox import SandboxError, run_in_sandbox
from workers.tasks.steps.common import (
    ProgressCallback,
    job_workdir,
    local_model,
    local_variant,
    output_semantics,
    profile_variants,
    sandbox_limits,
    scaled,
)


def _tolerance_for(job: Job) -> dict[str, Any]:
    """Profile defaults, then the upload's tolerance, then the model's own overrides."""
    from workers.engine.parity import Tolerance

    assert job.profile is not None
    version = job.run.version
    overrides = {**(version.tolerance or {}), **(version.model.tolerance or {})}
    return asdict(Tolerance.from_options(job.profile.options, overrides))


def run_parity(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Compare every variant with the FP32 original on the same inputs, each in its own sandbox."""
    assert job.profile is not None
    version = job.run.version
    tolerance = _tolerance_for(job)
    variants = profile_variants(job)
    semantics = output_semantics(job)
    results: dict[str, dict[str, Any]] = {}
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the model")
        model = local_model(job, workdir)
        validation = None
        if version.validation is not None:
            validation = str(materialize(version.validation.storage_key, workdir / "validation.npz"))
        store = workdir / "reference.npz"
        reference, _ = run_in_sandbox(
            "parity_reference",
            {
                "model": str(model),
                "validation": validation,
                "samples": 8,
                "store": str(store),
                "declarations": version.input_declarations,
            },
            sandbox_limits(),
            on_progress=scaled(progress, 0.05, 0.2),
            what="running the original model for parity",
            writable=[workdir],
        )
        for index, artifact in enumerate(variants):
            name = artifact.name.split("/", 1)[-1]
            backend = artifact.metadata.get("backend", "")
            start = 0.2 + 0.8 * index / max(1, len(variants))
            try:
                path = local_variant(artifact, workdir / "variants" / name)
                results[name], _ = run_in_sandbox(
                    "parity_variant",
                    {
                        "backend": backend,
                        "variant": str(path),
                        "store": str(store),
                        "tolerance": tolerance,
                        "semantics": semantics,
                    },
                    sandbox_limits(),
                    on_progress=scaled(progress, start, start + 0.8 / max(1, len(variants))),
                    what=f"the parity check of {name}",
                    writable=[workdir],
                )
            except (ModelError, SandboxError) as exc:
                results[name] = {"passed": False, "reasons": [exc.message], "error": exc.message, "outputs": []}
            results[name]["artifact_id"] = artifact.pk
            results[name]["backend"] = backend
    passed = sorted(name for name, r in results.items() if r.get("passed"))
    return StepOutcome(
        result={
            "profile": job.profile.slug,
            "tolerance": tolerance,
            "inputs": reference,
            "variants": results,
            "passed": passed,
        }
    )
