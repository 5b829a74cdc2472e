"""Writes to the registry: models, versions and their uploaded artifacts."""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, ProtectedError
from django.utils.text import slugify
from rest_framework import status

from apps.accounts.models import Team
from apps.accounts.permissions import Action, require
from apps.accounts.scoping import resolve_team
from apps.audit.services import record
from apps.core.api.errors import ApiError, Conflict
from apps.hardware.models import HardwareProfile
from apps.registry.events import version_created
from apps.registry.models import Artifact, ArtifactKind, Framework, ModelVersion, RegisteredModel
from apps.registry.storage import StorageFull, delete_blob_if_unreferenced, put_blob
from workers.engine.errors import ModelError
from workers.engine.importers.registry import detect_upload_format, framework_of
from workers.engine.npz import describe_npz
from workers.engine.outputs import parse_output_declarations
from workers.engine.signature import parse_input_declarations, parse_input_specs, specs_to_json


def framework_for(fmt: str) -> str:
    """The framework recorded on a version for a detected format."""
    if fmt in ("onnx", "onnx-zip"):
        return Framework.ONNX
    return Framework(framework_of(fmt))


SLUG_MAX_LENGTH = 100  # RegisteredModel.slug's column


def check_model_slug(slug: str) -> str:
    """`slug` if it fits the column; a 400 before anything is stored otherwise (SQLite would
    keep any length, PostgreSQL fail with an unhelpful error)."""
    if len(slug) > SLUG_MAX_LENGTH:
        raise ApiError(
            "invalid_slug",
            f"The model slug '{slug[:40]}…' is {len(slug)} characters long; a slug has at most "
            f"{SLUG_MAX_LENGTH}. Use a shorter one.",
        )
    return slug


def create_model(*, team: Team, user: Any, name: str, slug: str = "", description: str = "") -> RegisteredModel:
    require(user, team, Action.UPLOAD)
    slug = check_model_slug(slug or slugify(name))
    if not slug:
        raise ApiError("invalid_name", "The model name must contain at least one letter or digit.")
    try:
        with transaction.atomic():
            return RegisteredModel.objects.create(
                team=team, name=name, slug=slug, description=description, created_by=user
            )
    except IntegrityError:
        raise ApiError(
            "model_exists",
            f"Team {team.slug} already has a model with the slug '{slug}'. Pick another name.",
            status.HTTP_409_CONFLICT,
        ) from None


@dataclass(frozen=True)
class NewModel:
    """A model that an upload registers: created with its first version, in the version's
    transaction, so that an upload refused before its version exists leaves no model behind."""

    team: Team
    slug: str


def _model_for_upload(target: RegisteredModel | NewModel, user: Any) -> RegisteredModel:
    """The model a version goes into, locked so that concurrent uploads get distinct, gapless
    numbers (and a delete of the empty model waits). Runs inside the version's transaction.
    Two first uploads to a new slug at once both land in the one model (get_or_create reads
    the winner's row after the unique constraint stops the second insert)."""
    if isinstance(target, NewModel):
        target, _ = RegisteredModel.objects.get_or_create(
            team=target.team, slug=target.slug, defaults={"name": target.slug, "created_by": user}
        )
    locked = RegisteredModel.objects.select_for_update().filter(pk=target.pk).first()
    if locked is None:
        raise Conflict(
            "model_deleted",
            f"The model {target.slug} was deleted while this version was uploading, so nothing was stored. "
            "Upload it again: that registers the model anew.",
        )
    return target


def delete_empty_model(model: RegisteredModel, user: Any) -> None:
    """Delete a model that has no versions (e.g. registered by hand and never used). A model
    with versions stays: its versions, reports and decisions are evidence."""
    require(user, model.team, Action.UPLOAD)
    with transaction.atomic():
        # The model's lock, as an upload takes it before numbering its version: either the
        # upload's version exists now, or the upload finds the model gone and says so.
        RegisteredModel.objects.select_for_update().filter(pk=model.pk).first()
        count = model.versions.count()
        if count:
            raise Conflict(
                "model_has_versions",
                f"The model {model.slug} has {count} version{'s' if count != 1 else ''}, so it can't be deleted: "
                "versions, their reports and review decisions are evidence that Slipway keeps. Only a model with "
                "no versions can be deleted.",
            )
        before = {
            "name": model.name,
            "slug": model.slug,
            "description": model.description,
            "policies": list(model.policies.values_list("name", flat=True)),
        }
        record("model.deleted", model, actor=user, before=before)
        try:
            model.delete()
        except ProtectedError:
            raise Conflict(
                "model_in_use",
                f"The model {model.slug} is still referenced (by deployments), so it can't be deleted.",
            ) from None


def resolve_team_for_new_model(user: Any, team_slug: str | None) -> Team:
    """The team named by slug (any the user can see), else `default_team` for uploading."""
    return resolve_team(user, team_slug, Action.UPLOAD)


def resolve_profiles(slugs: list[str] | None) -> list[HardwareProfile]:
    """The enabled hardware profiles named, or the configured defaults; unknown names are a 400."""
    wanted = slugs or list(settings.DEFAULT_PROFILES)
    found = {p.slug: p for p in HardwareProfile.objects.filter(slug__in=wanted, enabled=True)}
    missing = [slug for slug in wanted if slug not in found]
    if missing:
        known = ", ".join(HardwareProfile.objects.filter(enabled=True).order_by("slug").values_list("slug", flat=True))
        raise ApiError(
            "unknown_profile",
            f"Unknown or disabled hardware profile(s): {', '.join(missing)}. Available: {known}.",
        )
    return [found[slug] for slug in dict.fromkeys(wanted)]


def _check_npz(uploaded: Any, what: str) -> None:
    if uploaded.size == 0:
        raise ApiError(f"invalid_{what}", f"The {what} file is empty. Upload an .npz with one array per model input.")
    try:
        describe_npz(Path(uploaded.temporary_file_path()))
    except ModelError as exc:
        raise ApiError(
            f"invalid_{what}", exc.message.replace("calibration", what).replace("Calibration", what.title())
        ) from exc


# Read no more of an MXNet zip's symbol than this in the web process; a bigger one is left to the worker.
MXNET_SYMBOL_READ_LIMIT = 16 * 2**20


def check_signature_given(fmt: str, path: Path, specs: tuple[Any, ...]) -> None:
    """A 400 before anything is stored when the file records no input shapes and no `inputs`
    came with it (TorchScript; an MXNet symbol without shape hints): its import would only
    fail at the worker, leaving a failed version that no re-run can help."""
    if specs:
        return
    if fmt == "pytorch-torchscript":
        what = "A TorchScript file does not record its input shapes"
        names = ["input"]
        per_input = "one entry per argument of the module's forward, in order"
        varying = 'a name such as "batch" for each dim that varies'
    elif fmt == "mxnet":
        names = _mxnet_inputs_without_shapes(path)
        if not names:
            return
        what = "This MXNet symbol records no input shapes (no variable has a __shape__)"
        per_input = "one entry per data input of the symbol"
        varying = 'only the first dim (the batch) may vary, e.g. "batch"'
    else:
        return
    example = json.dumps([{"name": name, "shape": ["batch", 3, 224, 224], "dtype": "float32"} for name in names])
    raise ApiError(
        "inputs_required",
        f"{what}, so Slipway needs them at upload: send the 'inputs' field with each input's name, shape and "
        f"dtype ({per_input}; {varying}), for example inputs={example} with your model's sizes. "
        "Nothing was stored.",
    )


def _mxnet_inputs_without_shapes(path: Path) -> list[str]:
    """The first variable of an uploaded MXNet zip's symbol (its data input, as HybridBlock.export
    and the Module API write them), when no variable records a shape; [] when one does (the
    import may find what it needs) or the symbol can't be read here: the worker judges those."""
    from workers.engine.archive import zip_names
    from workers.engine.importers.side import MxnetImporter

    try:
        roles, _ = MxnetImporter().pick(zip_names(path) or [])
        with zipfile.ZipFile(path) as zipped:
            info = zipped.getinfo(roles["symbol"])
            if info.file_size > MXNET_SYMBOL_READ_LIMIT:
                return []
            with zipped.open(info) as member:
                document = json.loads(member.read(MXNET_SYMBOL_READ_LIMIT + 1))
    # RuntimeError: an encrypted member, or JSON nested past the recursion limit.
    except (
        ModelError,
        KeyError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
        EOFError,
        NotImplementedError,
        RuntimeError,
        zlib.error,
    ):
        return []
    nodes = document.get("nodes") if isinstance(document, dict) else None
    if not isinstance(nodes, list):
        return []
    variables = [node for node in nodes if isinstance(node, dict) and node.get("op") == "null"]
    for node in variables:
        # MXNet has written a node's attributes under each of these keys over its versions.
        for key in ("attrs", "attr", "param"):
            attrs = node.get(key)
            if isinstance(attrs, dict) and "__shape__" in attrs:
                return []
    first = variables[0].get("name") if variables else None
    return [first] if isinstance(first, str) and first else []


@dataclass(frozen=True)
class Evaluation:
    """How the version's variants are judged: accuracy tolerance and the ranking objective."""

    tolerance: dict[str, Any] = field(default_factory=dict)
    objective: str = "p99_latency_batch1"
    p99_budget_ms: float | None = None
    benchmark: dict[str, Any] = field(default_factory=dict)


BENCHMARK_LISTS = ("batch_sizes", "concurrency")
BENCHMARK_NUMBERS = ("max_seconds_per_point", "window_runs", "max_windows", "warmup_runs")


def check_evaluation(evaluation: Evaluation) -> None:
    from workers.engine.parity import Tolerance
    from workers.engine.recommend import OBJECTIVES

    if not isinstance(evaluation.tolerance, dict):
        raise ApiError("invalid_tolerance", 'The tolerance must be a JSON object, e.g. {"min_cosine": 0.999}.')
    try:
        Tolerance.from_options(None, evaluation.tolerance)
    except ModelError as exc:
        raise ApiError(exc.code, exc.message) from exc
    if evaluation.objective not in OBJECTIVES:
        raise ApiError(
            "invalid_objective", f"Unknown objective '{evaluation.objective}'; use one of {', '.join(OBJECTIVES)}."
        )
    if evaluation.objective == "throughput_within_p99_budget" and not evaluation.p99_budget_ms:
        raise ApiError(
            "invalid_objective",
            "The objective throughput_within_p99_budget needs p99_budget_ms, the p99 latency (ms) a request may take.",
        )
    if evaluation.p99_budget_ms is not None and evaluation.p99_budget_ms <= 0:
        raise ApiError("invalid_objective", "p99_budget_ms must be a positive number of milliseconds.")
    example = 'e.g. {"batch_sizes": [1, 8, 32], "concurrency": [1, 4], "max_seconds_per_point": 10}'
    if not isinstance(evaluation.benchmark, dict):
        raise ApiError("invalid_benchmark", f"The benchmark settings must be a JSON object, {example}.")
    for key, value in evaluation.benchmark.items():
        if key in BENCHMARK_LISTS:
            ok = isinstance(value, list) and 0 < len(value) <= 16
            ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in value)
        elif key in BENCHMARK_NUMBERS:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 3600
        else:
            raise ApiError(
                "invalid_benchmark",
                f"Unknown benchmark setting '{key}'; use {', '.join(BENCHMARK_LISTS + BENCHMARK_NUMBERS)}.",
            )
        if not ok:
            raise ApiError("invalid_benchmark", f"The benchmark setting '{key}' has an invalid value, {example}.")


def _store_upload(uploaded: Any, sha256: str) -> tuple[str, bool]:
    """put_blob for an upload: a full artifact storage is a 507 with a sentence, not a 500. The
    partial file is already gone, and no version row exists yet (it is created after the blobs)."""
    try:
        return put_blob(uploaded, sha256)
    except StorageFull as exc:
        raise ApiError(exc.code, exc.message, status.HTTP_507_INSUFFICIENT_STORAGE) from exc


def upload_version(
    *,
    model: RegisteredModel | NewModel,
    user: Any,
    uploaded: Any,
    notes: str = "",
    profiles: list[str] | None = None,
    calibration: Any = None,
    validation: Any = None,
    inputs: Any = None,
    evaluation: Evaluation | None = None,
    input_declarations: Any = None,
    output_declarations: Any = None,
) -> ModelVersion:
    """Store an uploaded file, create the next version, and announce it (`events.version_created`:
    the pipeline starts its run in the same transaction and sends its first job after commit).

    `model` is a `NewModel` when the upload registers it: the model is created with the version,
    in one transaction, so a refused upload leaves no empty model. `uploaded` is the handler's
    temporary file (already on disk, hashed); `calibration` and `validation` optional .npz files
    likewise. Bad input is refused here with a 400 before anything is stored; a failure after
    blobs were written removes them again unless another artifact shares them.
    """
    team = model.team
    require(user, team, Action.UPLOAD)
    evaluation = evaluation or Evaluation()
    if uploaded.size == 0:
        raise ApiError(
            "empty_file",
            "The uploaded file is empty (0 bytes). Choose the model file again and re-upload.",
        )
    try:
        fmt = detect_upload_format(Path(uploaded.temporary_file_path()))
        specs = parse_input_specs(inputs) if inputs is not None else ()
        declarations = parse_input_declarations(input_declarations)
        # Checked against the model's outputs by inspection, which fails with the reason.
        parse_output_declarations(output_declarations)
    except ModelError as exc:
        raise ApiError(exc.code, exc.message) from exc
    check_signature_given(fmt, Path(uploaded.temporary_file_path()), specs)
    if specs and fmt in ("onnx", "onnx-zip"):
        # An ONNX file carries its own signature; accepting another one and ignoring it would
        # let a user believe the shapes they gave are the ones measured.
        raise ApiError(
            "inputs_not_applicable",
            "An ONNX model carries its own input signature, so 'inputs' is not used for it. To say what the "
            "inputs take (a scalar's values, a dim's typical size and step), send input_declarations, e.g. "
            '{"inputs": {"sr": {"values": [8000, 16000]}}, "dims": {"height": {"typical": 640, "step": 32}}}.',
        )
    chosen_profiles = resolve_profiles(profiles)
    side_files = {"calibration": calibration, "validation": validation}
    for what, side in side_files.items():
        if side is not None:
            _check_npz(side, what)
    check_evaluation(evaluation)

    sha256 = uploaded.sha256
    key, created = _store_upload(uploaded, sha256)
    new_keys = [key] if created else []
    side_keys: dict[str, str] = {}
    try:
        for what, side in side_files.items():
            if side is not None:
                side_keys[what], side_created = _store_upload(side, side.sha256)
                if side_created:
                    new_keys.append(side_keys[what])
        with transaction.atomic():
            registered = _model_for_upload(model, user)
            number = (registered.versions.aggregate(n=Max("number"))["n"] or 0) + 1
            # The four-eyes rule in force now stays with the version (turning it off later does
            # not lift it). Read under the model's lock, which turning the rule on also takes.
            four_eyes = Team.objects.filter(pk=team.pk).values_list("four_eyes", flat=True).get()
            version = ModelVersion.objects.create(
                model=registered,
                number=number,
                framework=framework_for(fmt),
                notes=notes,
                input_spec=specs_to_json(specs),
                input_declarations=declarations.to_json(),
                output_declarations=output_declarations or {},
                tolerance=evaluation.tolerance,
                objective=evaluation.objective,
                p99_budget_ms=evaluation.p99_budget_ms,
                benchmark_settings=evaluation.benchmark,
                four_eyes=four_eyes,
                created_by=user,
            )
            version.source_artifact = Artifact.objects.create(
                version=version,
                kind=ArtifactKind.SOURCE,
                name="source",
                format=fmt,
                sha256=sha256,
                size=uploaded.size,
                storage_key=key,
                original_filename=(uploaded.name or "")[:255],
            )
            for what, side in side_files.items():
                if side is not None:
                    artifact = Artifact.objects.create(
                        version=version,
                        kind=ArtifactKind(what),
                        name=what,
                        format="npz",
                        sha256=side.sha256,
                        size=side.size,
                        storage_key=side_keys[what],
                        original_filename=(side.name or "")[:255],
                    )
                    setattr(version, what, artifact)
            version.save(update_fields=["source_artifact", "calibration", "validation"])
            version.profiles.set(chosen_profiles)
            version_created.send(sender=ModelVersion, version=version, user=user)
    except BaseException:
        for new_key in new_keys:
            delete_blob_if_unreferenced(new_key)
        raise
    return version
