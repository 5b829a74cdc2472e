"""The optimize step: each backend of the profile builds its variants (after the rewrites validate
found them necessary), stored as artifacts with their notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apps.pipeline.models import Job, JobKind
from apps.pipeline.services import StepOutcome
from apps.registry.models import Artifact, ArtifactKind
from apps.registry.storage import materialize
from workers.engine.errors import ModelError
from workers.engine.sandbox import SandboxError, run_in_sandbox
from workers.tasks.steps.common import (
    ProgressCallback,
    fetch_model,
    job_workdir,
    model_artifact,
    output_semantics,
    sandbox_limits,
    scaled,
    step_result,
)
from workers.tasks.steps.import_ import store_files


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
    notes: dict[str, list[str]] = {}
    stored: list[dict[str, Any]] = []
    logs = []
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the model")
        payload = fetch_model(job, workdir)
        calibration = validation = None
        if version.calibration is not None:
            calibration = str(materialize(version.calibration.storage_key, workdir / "calibration.npz"))
            if version.validation is not None:
                validation = str(materialize(version.validation.storage_key, workdir / "validation.npz"))
        semantics = output_semantics(job)
        support = step_result(job, JobKind.VALIDATE).get("reports", {})
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
                        # A quantization search judges its probe by what the outputs are, as parity
                        # does, and on the inputs parity will use (validation set or generated).
                        "output_semantics": semantics,
                        "validation": validation,
                        "declarations": version.input_declarations,
                        **_remedy(support.get(backend)),
                        "out_dir": str(workdir / "variants" / backend),
                    },
                    sandbox_limits(),
                    on_progress=scaled(progress, start, end),
                    what=f"building {backend} variants",
                    writable=[workdir],
                )
            except (ModelError, SandboxError) as exc:
                errors[backend] = exc.message
                logs.append(f"[{backend}] {getattr(exc, 'log', '')[-2000:]}")
                continue
            if log:
                logs.append(f"[{backend}] {log[-2000:]}")
            if built.get("skipped"):
                skipped[backend] = built["skipped"]
            if built.get("notes"):
                notes[backend] = [str(note) for note in built["notes"]]
            for variant in built["variants"]:
                files = [Path(f) for f in variant.get("files") or [variant["path"]]]
                bundle = workdir / "bundles" / f"{variant['name']}.zip"
                stored.append(
                    {
                        "variant": variant,
                        **store_files(files, Path(variant["path"]), variant["format"], bundle, workdir),
                    }
                )
                variants.append(
                    {k: variant[k] for k in ("name", "backend", "format", "precision", "pass_name", "options")}
                )
        progress(0.97, "recording variants")

    result: dict[str, Any] = {
        "profile": profile.slug,
        "variants": variants,
        "errors": errors,
        "skipped": skipped,
        "notes": notes,
    }

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


def _remedy(report: dict[str, Any] | None) -> dict[str, Any]:
    """The rewrites validate found that make a backend take the model, for optimize's payload."""
    remediation = (report or {}).get("remediation") or {}
    if not remediation.get("rewrites"):
        return {}
    return {
        "rewrites": list(remediation["rewrites"]),
        "refused": [[op.get("domain", ""), op["op_type"]] for op in remediation.get("refused", [])],
    }
