"""REST endpoints for teams, models, versions and jobs. Everything is scoped to the user's teams."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.scoping import TeamScoped, in_teams_of
from apps.accounts.models import Membership, Role
from apps.accounts.scoping import visible_teams
from apps.core.api.errors import ApiError
from apps.core.api.parsers import JSONParser
from apps.core.api.schema import query
from apps.core.api.throttling import PerTokenRateThrottle, UploadRateThrottle
from apps.core.idempotency import idempotent
from apps.pipeline.models import Job, PipelineRun
from apps.registry import services
from apps.registry.api.serializers import (
    JobDetailSerializer,
    ModelCreateSerializer,
    ModelSerializer,
    TeamSerializer,
    VersionDetailSerializer,
    VersionSummarySerializer,
    VersionUploadSerializer,
)
from apps.registry.models import ModelVersion, RegisteredModel, VersionStatus
from apps.registry.uploads import UploadTooLarge


class TeamList(generics.ListAPIView):
    """Teams you are a member of, with your role in each."""

    serializer_class = TeamSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet:
        return visible_teams(self.request.user).order_by("slug").distinct()

    def get_serializer_context(self) -> dict[str, Any]:
        user: Any = self.request.user
        roles = dict(Membership.objects.filter(user=user).values_list("team_id", "role"))
        return {**super().get_serializer_context(), "roles": roles}


def _model_rows() -> QuerySet[RegisteredModel]:
    newest_first = ModelVersion.objects.select_related("model", "model__team", "created_by").order_by("-number")
    return RegisteredModel.objects.select_related("team", "created_by").prefetch_related(
        Prefetch("versions", queryset=newest_first)
    )


def _models_for(user: Any) -> QuerySet[RegisteredModel]:
    return in_teams_of(user, _model_rows(), "team")


def _model_by_slug(request: Request, slug: str) -> RegisteredModel | None:
    """The model with this slug in the user's teams; `?team=` disambiguates. None if absent."""
    candidates = _models_for(request.user).filter(slug=slug)
    team = request.query_params.get("team") or (request.data.get("team") if hasattr(request.data, "get") else None)
    if team:
        candidates = candidates.filter(team__slug=team)
    found = list(candidates[:2])
    if len(found) > 1:
        raise ApiError(
            "ambiguous_model",
            f"Several of your teams have a model called '{slug}'; add ?team=<team slug> to say which.",
        )
    return found[0] if found else None


@extend_schema_view(get=extend_schema(parameters=[query("team", "Team slug"), query("q", "Part of the name or slug")]))
class ModelListCreate(TeamScoped, generics.ListCreateAPIView):
    """List the models of your teams (filter with ?team= and ?q=), or register a new one."""

    serializer_class = ModelSerializer
    token_scopes = {"POST": "upload"}
    ordering_fields = ["id", "name", "slug", "created_at"]

    def rows(self) -> QuerySet[RegisteredModel]:
        return _model_rows()

    def narrow(self, qs: QuerySet[Any]) -> QuerySet[Any]:
        if q := self.request.query_params.get("q"):
            qs = qs.filter(name__icontains=q) | qs.filter(slug__icontains=q)
        return qs

    @extend_schema(request=ModelCreateSerializer, responses={201: ModelSerializer})
    @idempotent
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = ModelCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        team = services.resolve_team_for_new_model(request.user, data.get("team"))
        model = services.create_model(
            team=team,
            user=request.user,
            name=data["name"],
            slug=data.get("slug", ""),
            description=data["description"],
        )
        return Response(ModelSerializer(self.one(model.pk)).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(parameters=[query("team", "Team slug, if several of your teams use the slug")]),
    delete=extend_schema(parameters=[query("team", "Team slug, if several of your teams use the slug")]),
)
class ModelDetail(APIView):
    """One model of your teams, by slug; DELETE removes a model that has no versions."""

    token_scopes = {"DELETE": "upload"}

    @extend_schema(responses=ModelSerializer)
    def get(self, request: Request, slug: str) -> Response:
        model = _model_by_slug(request, slug)
        if model is None:
            raise Http404
        return Response(ModelSerializer(model).data)

    @extend_schema(
        responses={
            204: None,
            409: OpenApiResponse(description="The model has versions: they are evidence and are kept."),
        }
    )
    def delete(self, request: Request, slug: str) -> Response:
        model = _model_by_slug(request, slug)
        if model is None:
            raise Http404
        services.delete_empty_model(model, request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionListUpload(generics.ListAPIView):
    """List a model's versions, or upload a new one (multipart, field `file`).

    Uploading to a slug that does not exist yet registers the model in your team, together with
    the version: an upload that is refused registers nothing.
    """

    serializer_class = VersionSummarySerializer
    token_scopes = {"POST": "upload"}
    ordering_fields = ["id", "created_at", "number"]
    throttle_classes = [PerTokenRateThrottle, UploadRateThrottle]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def get_queryset(self) -> QuerySet:
        model = _model_by_slug(self.request, self.kwargs["slug"])
        if model is None:
            raise Http404
        return model.versions.select_related("model", "model__team", "created_by").order_by("-number")

    @extend_schema(
        request={"multipart/form-data": VersionUploadSerializer},
        responses={
            201: VersionDetailSerializer,
            413: OpenApiResponse(description="The upload is larger than SLIPWAY_MAX_UPLOAD_BYTES."),
            507: OpenApiResponse(description="Artifact storage is full; nothing was stored."),
        },
    )
    @idempotent
    def post(self, request: Request, slug: str) -> Response:
        # Refuse an oversized body from its declared length, before reading a byte of it.
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.MAX_UPLOAD_BYTES + 1024 * 1024:
            raise UploadTooLarge(settings.MAX_UPLOAD_BYTES)
        services.check_model_slug(slug)
        form = VersionUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        model: RegisteredModel | services.NewModel | None = _model_by_slug(request, slug)
        if model is None:
            # Registered with the version, so an upload refused on the way registers nothing.
            team = services.resolve_team_for_new_model(request.user, form.validated_data.get("team"))
            model = services.NewModel(team=team, slug=slug)
        data = form.validated_data
        version = services.upload_version(
            model=model,
            user=request.user,
            uploaded=data["file"],
            notes=data["notes"],
            profiles=[p.strip() for p in data["profiles"].split(",") if p.strip()],
            calibration=data.get("calibration"),
            validation=data.get("validation"),
            inputs=data.get("inputs"),
            input_declarations=data.get("input_declarations"),
            output_declarations=data.get("output_declarations"),
            evaluation=services.Evaluation(
                tolerance=data.get("tolerance") or {},
                objective=data["objective"],
                p99_budget_ms=data.get("p99_budget_ms"),
                benchmark=data.get("benchmark") or {},
            ),
        )
        return Response(
            VersionDetailSerializer(in_teams_of(request.user, _version_rows(), "model__team").get(pk=version.pk)).data,
            status=201,
        )


def _version_rows() -> QuerySet[ModelVersion]:
    """Versions with what their detail shows: runs with their jobs, and artifacts."""
    runs = PipelineRun.objects.order_by("-id").prefetch_related(
        Prefetch("jobs", queryset=Job.objects.select_related("profile").order_by("sequence"))
    )
    rows = ModelVersion.objects.select_related("model", "model__team", "created_by", "source_artifact")
    return rows.prefetch_related(Prefetch("runs", queryset=runs), "artifacts")


@extend_schema_view(
    get=extend_schema(
        parameters=[
            query("team", "Team slug"),
            query("model", "Model slug"),
            query("status", "Version status, e.g. ready"),
            query("reviewable", "true: the versions waiting for your review", bool),
        ]
    )
)
class VersionList(TeamScoped, generics.ListAPIView):
    """Versions across your teams, newest first. Filters: ?team=, ?model=, ?status= (e.g. ready),
    ?reviewable=true (ready for review in teams where you approve, and not your own upload
    where the four-eyes rule applies to it): the review queue."""

    serializer_class = VersionSummarySerializer
    ordering_fields = ["id", "created_at", "number", "status_changed_at"]

    team_path = "model__team"

    def rows(self) -> QuerySet[ModelVersion]:
        return ModelVersion.objects.select_related("model", "model__team", "created_by")

    def narrow(self, qs: QuerySet[Any]) -> QuerySet[Any]:
        params = self.request.query_params
        if model := params.get("model"):
            qs = qs.filter(model__slug=model)
        if state := params.get("status"):
            qs = qs.filter(status=state)
        if params.get("reviewable") in ("1", "true", "yes"):
            user: Any = self.request.user
            reviewing = Membership.objects.filter(user=user, role__in=(Role.APPROVER, Role.ADMIN)).values("team_id")
            if not user.is_superuser:
                qs = qs.filter(model__team__in=reviewing)
            qs = qs.filter(status=VersionStatus.READY).exclude(four_eyes=True, created_by=user)
        return qs


class VersionDetail(TeamScoped, generics.RetrieveAPIView):
    """A version with its artifacts, its latest pipeline run's jobs, and the step reports."""

    serializer_class = VersionDetailSerializer
    team_path = "model__team"

    def rows(self) -> QuerySet[ModelVersion]:
        return _version_rows()


class JobDetail(TeamScoped, generics.RetrieveAPIView):
    """One job with its full log and result."""

    serializer_class = JobDetailSerializer
    team_path = "run__version__model__team"

    def rows(self) -> QuerySet[Job]:
        return Job.objects.all()
