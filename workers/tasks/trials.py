"""Celery entry point for the playground: claim a trial, run the original and each chosen variant
on the user's input in the sandbox (`workers.engine.playground`), store the bounded result.

The original runs first ("trial": the input read and preprocessed, onnxruntime CPU, feeds and
outputs kept in the scratch folder); then each variant in its own sandbox with its backend on
the same feeds ("trial_variant"), as parity runs them. A variant that fails gets its sentence
in the result; the others still report.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from apps.pipeline import trials
from apps.pipeline.work_orders import model_artifact
from apps.registry.storage import materialize
from workers.engine.errors import ModelError
from workers.engine.sandbox import SandboxError, run_in_sandbox
from workers.tasks.steps.common import local_variant, sandbox_limits, scratch_dir

SOFT_TIME_LIMIT = 1200  # the original and up to 8 variants (apps.pipeline.trials.MAX_VARIANTS), 120 s each
SANDBOX_SECONDS = 120.0


@shared_task(
    name=trials.RUN_TRIAL_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=SOFT_TIME_LIMIT + 60,
)
def run_trial(trial_id: int) -> str:
    trial = trials.claim_trial(trial_id)
    if trial is None:
        return "not queued"  # done already, or another worker has it: the broker may deliver twice
    try:
        result = _run(trial)
    except (ModelError, SandboxError) as exc:
        trials.finish_trial(trial, None, exc.message, exc.code)
        return "failed"
    except SoftTimeLimitExceeded:
        trials.finish_trial(
            trial, None, f"The trial took longer than {SOFT_TIME_LIMIT // 60} minutes and was stopped.", "timeout"
        )
        return "failed"
    except Exception as exc:  # the row must not stay running: say what happened
        trials.finish_trial(
            trial, None, f"The trial failed unexpectedly on the worker ({type(exc).__name__}).", "error"
        )
        raise
    trials.finish_trial(trial, result)
    return "succeeded"


def _run(trial: Any) -> dict[str, Any]:
    from workers.engine.archive import extract_archive

    version = trial.version
    report = trials.inspection(version) or {}
    semantics = report.get("output_semantics") or {}
    # One input through each model: minutes at most, inside the task's own time limit.
    limits = replace(sandbox_limits(), timeout_seconds=min(sandbox_limits().timeout_seconds, SANDBOX_SECONDS))
    with scratch_dir(f"trial-{trial.pk}") as workdir:
        source = model_artifact(version)
        suffix = ".zip" if source.format == "onnx-zip" else ".onnx"
        model = materialize(source.storage_key, workdir / f"model{suffix}")
        if source.format == "onnx-zip":
            model = extract_archive(model, workdir / "model")
        given = materialize(trial.input_key, workdir / "input" / "file")
        store = workdir / "trial.npz"
        original, _ = run_in_sandbox(
            "trial",
            {
                "model": str(model),
                "input": str(given),
                "input_plan": report.get("input_plan"),
                "declarations": version.input_declarations or {},
                "semantics": semantics,
                "preprocessing": trial.preprocessing or None,
                "store": str(store),
            },
            limits,
            what="running the original on your input",
            writable=[workdir],
        )
        known = trials.variants_of(version)
        variants: dict[str, dict[str, Any]] = {}
        for name in trial.variants:
            artifact = known.get(name)
            backend = str((artifact.metadata or {}).get("backend") or "") if artifact else ""
            if artifact is None:
                variants[name] = {"backend": "", "error": f"The variant {name} no longer exists."}
                continue
            try:
                path = local_variant(artifact, workdir / "variants" / Path(name).name)
                ran, _ = run_in_sandbox(
                    "trial_variant",
                    {
                        "backend": backend,
                        "variant": str(path),
                        "store": str(store),
                        "semantics": semantics,
                        "input": original["input"],
                    },
                    limits,
                    what=f"running {name} on your input",
                    writable=[workdir],
                )
                variants[name] = {"backend": backend, **ran}
            except (ModelError, SandboxError) as exc:
                variants[name] = {"backend": backend, "error": exc.message}
    return {
        "input": original["input"],
        "original": {"backend": "onnxruntime", "outputs": original["outputs"]},
        "variants": variants,
    }
