"""Writes to the registry: models, versions and their uploaded artifacts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils.text import slugify
from rest_framework import status

from apps.accounts.models import Team
from apps.accounts.permissions import Action, require
from apps.accounts.scoping import visible_teams
from apps.core.api.errors import ApiError
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


def get_or_create_model(*, team: Team, user: Any, slug: str) -> RegisteredModel:
    """The team's model with this slug, registered now if it does not exist yet. Two first
    uploads to a new slug at once both land in the one model (the loser of the race reads it)."""
    existing = RegisteredModel.objects.filter(team=team, slug=slug).first()
    if existing is not None:
        return existing
    try:
        return create_model(team=team, user=user, name=slug, slug=slug)
    except ApiError as exc:
        if exc.code != "model_exists":
            raise
        return RegisteredModel.objects.get(team=team, slug=slug)


def resolve_team_for_new_model(user: Any, team_slug: str | None) -> Team:
    teams = visible_teams(user)
    if team_slug:
        team = teams.filter(slug=team_slug).first()
        if team is None:
            raise ApiError(
                "unknown_team",
                f"You are not a member of a team called '{team_slug}'.",
                status.HTTP_404_NOT_FOUND,
            )
        return team
    candidates = list(teams[:2])
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ApiError(
            "no_team",
            "You are not a member of any team yet. Ask an admin to add you to one.",
            status.HTTP_403_FORBIDDEN,
        )
    raise ApiError(
        "team_required",
        "You belong to several teams; say which one with the 'team' field (its slug).",
    )


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
    model: RegisteredModel,
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

    `uploaded` is the handler's temporary file (already on disk, hashed); `calibration` and
    `validation` optional .npz files likewise. Bad input is refused here with a 400 before
    anything is stored; a failure after blobs were written removes them again unless another
    artifact shares them.
    """
    require(user, model.team, Action.UPLOAD)
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
            # Lock the model row so concurrent uploads get distinct, gapless numbers.
            RegisteredModel.objects.select_for_update().filter(pk=model.pk).first()
            number = (model.versions.aggregate(n=Max("number"))["n"] or 0) + 1
            # The four-eyes rule in force now stays with the version (turning it off later does
            # not lift it). Read under the model's lock, which turning the rule on also takes.
            four_eyes = Team.objects.filter(pk=model.team_id).values_list("four_eyes", flat=True).get()
            version = ModelVersion.objects.create(
                model=model,
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
