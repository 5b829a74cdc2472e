"""The playground's writes: a trial requested (input stored, message sent after commit), claimed
by a worker with a conditional UPDATE, and finished once.

What a trial can run is what the pipeline made: the ONNX model the later steps work on, its
inspection (input plan and output semantics) and the variants optimize built. The running
itself is the worker's (`workers/tasks/trials.py`), in the sandbox.
"""

from __future__ import annotations

import hashlib
import socket
from typing import IO, Any

from django.db import transaction
from django.utils import timezone
from rest_framework import status

from apps.accounts.models import Role
from apps.accounts.permissions import Action, not_found
from apps.accounts.scoping import role_in
from apps.core.api.errors import ApiError
from apps.core.messages import Message, send_on_commit
from apps.pipeline.models import Job, JobKind, JobStatus, Trial, TrialStatus
from apps.registry.models import Artifact, ArtifactKind, ModelVersion
from apps.registry.storage import put_blob

RUN_TRIAL_TASK = "slipway.trials.run"
TRIAL_QUEUE = "cpu"
ORIGINAL = "original"
MAX_INPUT_BYTES = 20 * 2**20
MAX_VARIANTS = 8


def require_trial_access(user: Any, version: ModelVersion) -> None:
    """Team members who may upload or review may run trials (they use workers); viewers get a
    403 saying so, outsiders a 404."""
    from apps.accounts.permissions import ROLE_ACTIONS

    role = role_in(user, version.model.team)
    if role is None:
        raise not_found()
    if not ROLE_ACTIONS[role] & {Action.UPLOAD, Action.REVIEW}:
        raise ApiError(
            "forbidden",
            f"Your role in team {version.model.team.slug} is {Role(role).label.lower()}; trying a model runs it on the "
            "workers and needs data scientist, approver or admin. Ask a team admin to change your role.",
            status.HTTP_403_FORBIDDEN,
        )


def inspection(version: ModelVersion) -> dict[str, Any] | None:
    """The latest successful inspection report of the version, or None when none has run yet."""
    job = (
        Job.objects.filter(run__version=version, kind=JobKind.INSPECT, status=JobStatus.SUCCEEDED)
        .order_by("-id")
        .only("result")
        .first()
    )
    return (job.result or {}) if job is not None else None


def proposed_preprocessing(version: ModelVersion) -> tuple[dict[str, Any] | None, str]:
    """The image preprocessing a trial applies unless told otherwise, as the version's input plan
    implies it (`playground.default_preprocessing`: read from the inspection's JSON, never from
    the model), or None with a sentence saying why there is none."""
    from workers.engine.errors import ModelError
    from workers.engine.inputs import InputPlan
    from workers.engine.playground import default_preprocessing

    report = inspection(version)
    if report is None:
        return None, "The version has not been inspected yet: its pipeline's inspect step proposes the preprocessing."
    if not report.get("input_plan"):
        return None, "The inspection made no input plan; the worker plans the inputs from the graph when a trial runs."
    plan = InputPlan.from_dict(report["input_plan"])
    images = [recipe for recipe in plan.recipes if recipe.kind == "image"]
    if len(images) != 1:
        kinds = ", ".join(f"'{recipe.name}' ({recipe.kind})" for recipe in plan.recipes) or "none"
        return None, f"The model takes no single image input (its inputs: {kinds}): give an .npz or JSON."
    try:
        return default_preprocessing(plan, images[0]).to_dict(), ""
    except ModelError as exc:
        return None, exc.message


def variants_of(version: ModelVersion) -> dict[str, Artifact]:
    """The version's variants by name ("x86-cpu/ort-int8"), the latest build of each."""
    found: dict[str, Artifact] = {}
    for artifact in version.artifacts.filter(kind=ArtifactKind.VARIANT).order_by("id"):
        found[artifact.name] = artifact
    return found


def parse_variants(version: ModelVersion, text: str) -> list[str]:
    """The variant names asked for (comma-separated; "original" always runs): 400 naming the
    version's variants for a name it does not have."""
    asked = [name.strip() for name in (text or "").split(",") if name.strip() and name.strip() != ORIGINAL]
    known = variants_of(version)
    unknown = [name for name in asked if name not in known]
    if unknown:
        names = ", ".join(sorted(known)) or "none yet"
        raise ApiError(
            "invalid",
            f"variants: {', '.join(unknown)} is not a variant of this version. Its variants are: {names} "
            f"(and {ORIGINAL}, which always runs).",
            status.HTTP_400_BAD_REQUEST,
        )
    unique = list(dict.fromkeys(asked))
    if len(unique) > MAX_VARIANTS:
        raise ApiError(
            "invalid",
            f"variants: {len(unique)} were asked for; a trial runs up to {MAX_VARIANTS} beside the original. "
            "Choose fewer.",
            status.HTTP_400_BAD_REQUEST,
        )
    return unique


def request_trial(
    version: ModelVersion,
    user: Any,
    upload: IO[bytes],
    filename: str,
    size: int,
    variants: list[str],
    preprocessing: dict[str, Any],
) -> Trial:
    """Store the input, create the queued trial and send it to a worker after commit. 409 when
    the pipeline has not inspected an ONNX model of the version yet."""
    if inspection(version) is None:
        raise ApiError(
            "not_ready",
            "This version has no inspected ONNX model yet, so there is nothing to run. Wait for its pipeline's "
            "import and inspect steps to finish (or fix what failed there), then try again.",
            status.HTTP_409_CONFLICT,
        )
    digest = hashlib.sha256()
    for chunk in iter(lambda: upload.read(1 << 20), b""):
        digest.update(chunk)
    upload.seek(0)
    sha256 = digest.hexdigest()
    key, _ = put_blob(upload, sha256)
    with transaction.atomic():
        trial = Trial.objects.create(
            version=version,
            requested_by=user,
            input_name=filename[:255],
            input_key=key,
            input_sha256=sha256,
            input_size=size,
            preprocessing=preprocessing,
            variants=variants,
        )
        send_on_commit(
            Message(RUN_TRIAL_TASK, trial.pk, TRIAL_QUEUE),
            if_lost="the trial stays queued; request it again",
        )
    return trial


def claim_trial(trial_id: int) -> Trial | None:
    """Take a queued trial (queued -> running) for this worker; None when another has it or it
    is done (a message delivered twice)."""
    taken = Trial.objects.filter(pk=trial_id, status=TrialStatus.QUEUED).update(
        status=TrialStatus.RUNNING, started_at=timezone.now(), worker_host=socket.gethostname()[:255]
    )
    if not taken:
        return None
    return Trial.objects.select_related("version__model").get(pk=trial_id)


def finish_trial(trial: Trial, result: dict[str, Any] | None, error: str = "", error_code: str = "") -> None:
    """Write the outcome of a running trial once."""
    Trial.objects.filter(pk=trial.pk, status=TrialStatus.RUNNING).update(
        status=TrialStatus.FAILED if error else TrialStatus.SUCCEEDED,
        result=result,
        error=error,
        error_code=error_code,
        finished_at=timezone.now(),
    )
