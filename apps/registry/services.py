"""Writes to the registry: models, versions and their uploaded artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils.text import slugify
from rest_framework import status

from apps.accounts.models import UPLOAD_ROLES, Team
from apps.accounts.scoping import role_in, visible_teams
from apps.core.api.errors import ApiError
from apps.jobs import services as jobs
from apps.registry.models import Artifact, ArtifactKind, Framework, ModelVersion, RegisteredModel
from apps.registry.storage import delete_blob_if_unreferenced, put_blob
from apps.runtimes.models import HardwareProfile
from workers.engine.errors import ModelError
from workers.engine.importers.registry import detect_upload_format, framework_of
from workers.engine.npz import describe_npz
from workers.engine.signature import parse_input_specs, specs_to_json


def framework_for(fmt: str) -> str:
    """The framework recorded on a version for a detected format."""
    if fmt in ("onnx", "onnx-zip"):
        return Framework.ONNX
    return Framework(framework_of(fmt))


def require_upload_role(user: Any, team: Team) -> None:
    role = role_in(user, team)
    if role is None:
        raise ApiError(
            "not_found",
            "Not found. It does not exist or you have no access to it.",
            status.HTTP_404_NOT_FOUND,
        )
    if role not in UPLOAD_ROLES:
        raise ApiError(
            "forbidden",
            f"Your role in team {team.slug} is {role.replace('_', ' ')}; uploading needs data scientist or admin. "
            "Ask a team admin to change your role.",
            status.HTTP_403_FORBIDDEN,
        )


def create_model(*, team: Team, user: Any, name: str, slug: str = "", description: str = "") -> RegisteredModel:
    require_upload_role(user, team)
    slug = slug or slugify(name)
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


def _check_calibration(uploaded: Any) -> None:
    if uploaded.size == 0:
        raise ApiError("invalid_calibration", "The calibration file is empty. Upload an .npz with one array per input.")
    try:
        describe_npz(Path(uploaded.temporary_file_path()))
    except ModelError as exc:
        raise ApiError(exc.code, exc.message) from exc


def upload_version(
    *,
    model: RegisteredModel,
    user: Any,
    uploaded: Any,
    notes: str = "",
    profiles: list[str] | None = None,
    calibration: Any = None,
    inputs: Any = None,
) -> ModelVersion:
    """Store an uploaded file, create the next version, and start its pipeline after commit.

    `uploaded` is the handler's temporary file (already on disk, hashed). Bad files are
    refused here with a 400 before anything is stored; a failure after the blob was written
    removes the blob again unless another artifact shares it.
    """
    require_upload_role(user, model.team)
    if uploaded.size == 0:
        raise ApiError(
            "empty_file",
            "The uploaded file is empty (0 bytes). Choose the model file again and re-upload.",
        )
    try:
        fmt = detect_upload_format(Path(uploaded.temporary_file_path()))
        specs = parse_input_specs(inputs) if inputs is not None else ()
    except ModelError as exc:
        raise ApiError(exc.code, exc.message) from exc
    chosen_profiles = resolve_profiles(profiles)
    if calibration is not None:
        _check_calibration(calibration)

    sha256 = uploaded.sha256
    key, created = put_blob(uploaded, sha256)
    new_keys = [key] if created else []
    if calibration is not None:
        calibration_key, calibration_created = put_blob(calibration, calibration.sha256)
        if calibration_created:
            new_keys.append(calibration_key)
    try:
        with transaction.atomic():
            # Lock the model row so concurrent uploads get distinct, gapless numbers.
            RegisteredModel.objects.select_for_update().filter(pk=model.pk).first()
            number = (model.versions.aggregate(n=Max("number"))["n"] or 0) + 1
            version = ModelVersion.objects.create(
                model=model,
                number=number,
                framework=framework_for(fmt),
                notes=notes,
                input_spec=specs_to_json(specs),
                created_by=user,
            )
            artifact = Artifact.objects.create(
                version=version,
                kind=ArtifactKind.SOURCE,
                name="source",
                format=fmt,
                sha256=sha256,
                size=uploaded.size,
                storage_key=key,
                original_filename=(uploaded.name or "")[:255],
            )
            version.source_artifact = artifact
            if calibration is not None:
                version.calibration = Artifact.objects.create(
                    version=version,
                    kind=ArtifactKind.CALIBRATION,
                    name="calibration",
                    format="npz",
                    sha256=calibration.sha256,
                    size=calibration.size,
                    storage_key=calibration_key,
                    original_filename=(calibration.name or "")[:255],
                )
            version.save(update_fields=["source_artifact", "calibration"])
            version.profiles.set(chosen_profiles)
            jobs.start_pipeline(version, user)
    except BaseException:
        for new_key in new_keys:
            delete_blob_if_unreferenced(new_key)
        raise
    return version
