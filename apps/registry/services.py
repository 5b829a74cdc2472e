"""Writes to the registry: models, versions and their uploaded artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from workers.engine.errors import ModelError
from workers.engine.formats import detect_format

# The format detector's answer -> the framework recorded on the version.
FORMAT_FRAMEWORK = {"onnx": Framework.ONNX, "onnx-zip": Framework.ONNX}


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


def upload_version(*, model: RegisteredModel, user: Any, uploaded: Any, notes: str = "") -> ModelVersion:
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
        fmt = detect_format(Path(uploaded.temporary_file_path()))
    except ModelError as exc:
        raise ApiError(exc.code, exc.message) from exc

    sha256 = uploaded.sha256
    key, created = put_blob(uploaded, sha256)
    try:
        with transaction.atomic():
            # Lock the model row so concurrent uploads get distinct, gapless numbers.
            RegisteredModel.objects.select_for_update().filter(pk=model.pk).first()
            number = (model.versions.aggregate(n=Max("number"))["n"] or 0) + 1
            version = ModelVersion.objects.create(
                model=model,
                number=number,
                framework=FORMAT_FRAMEWORK[fmt],
                notes=notes,
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
            version.save(update_fields=["source_artifact"])
            jobs.start_pipeline(version, user)
    except BaseException:
        if created:
            delete_blob_if_unreferenced(key)
        raise
    return version
