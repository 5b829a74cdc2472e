"""Serving targets (team admins write, members read) and deployments (approvers and admins
deploy, roll back and undeploy; members read). Everything is scoped to the user's teams:
another team's targets and deployments answer 404."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.scoping import TeamScoped, one_in_teams_of
from apps.accounts.models import Team
from apps.accounts.permissions import Action, require
from apps.accounts.scoping import resolve_team
from apps.core.api.errors import ApiError
from apps.core.api.filters import integer_filter
from apps.core.api.schema import query
from apps.core.idempotency import idempotent
from apps.deployments import deploying, metrics, targets
from apps.deployments.api.serializers import (
    DeployInput,
    DeploymentMetricsSerializer,
    DeploymentSerializer,
    TargetCreateInput,
    TargetKindSerializer,
    TargetSerializer,
    TargetUpdateInput,
)
from apps.deployments.models import Deployment, DeploymentStatus, ServingTarget
from apps.registry.models import ModelVersion

ADMIN_WRITES = {"POST": "admin", "PATCH": "admin", "DELETE": "admin"}
DEPLOY_WRITES = {"POST": "deploy"}


class TargetRows(TeamScoped):
    """Views over serving targets: those of the user's teams."""

    team_path = "team"

    def rows(self) -> QuerySet[ServingTarget]:
        return ServingTarget.objects.select_related("team", "profile", "created_by", "allow_private_by")


class DeploymentRows(TeamScoped):
    """Views over deployments: those to the targets of the user's teams."""

    team_path = "target__team"

    def rows(self) -> QuerySet[Deployment]:
        return Deployment.objects.select_related(
            "target__team", "version", "model", "profile", "requested_by", "undeploy_requested_by"
        )


def _team_for_new_target(request: Request, slug: str) -> Team:
    return resolve_team(request.user, slug, Action.MANAGE)


@extend_schema_view(get=extend_schema(parameters=[query("team", "Team slug")]))
class TargetListCreate(TargetRows, generics.ListAPIView):
    """The serving targets of your teams (?team=<slug> for one), or register one (team admins).

    Credentials are write-only: responses say which are set (`credential_keys`), never their values."""

    serializer_class = TargetSerializer
    token_scopes = ADMIN_WRITES
    ordering_fields = ["id", "slug", "name", "created_at"]

    @extend_schema(request=TargetCreateInput, responses={201: TargetSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        # The team first: someone who may not manage it learns nothing from validation errors.
        raw = request.data.get("team") if hasattr(request.data, "get") else None
        team = _team_for_new_target(request, str(raw or request.query_params.get("team") or ""))
        require(request.user, team, Action.MANAGE)
        form = TargetCreateInput(data=request.data)
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        data.pop("team", None)
        target = targets.create_target(team=team, user=request.user, **data)
        return Response(TargetSerializer(self.one(target.pk)).data, status=status.HTTP_201_CREATED)


class TargetKindList(APIView):
    """The kinds of serving target that can be registered, with every option and credential each
    takes (type, required, default, allowed values, help) as its driver declares them, for forms
    and scripts; the same specs check a target when it is registered or changed."""

    @extend_schema(responses=TargetKindSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(TargetKindSerializer(targets.kind_descriptions(), many=True).data)


class TargetDetail(TargetRows, APIView):
    """One serving target: read it, change it (team admins), delete it (when nothing is live there)."""

    token_scopes = ADMIN_WRITES

    @extend_schema(responses=TargetSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(TargetSerializer(self.one(pk)).data)

    @extend_schema(request=TargetUpdateInput, responses=TargetSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        target = self.one(pk)
        require(request.user, target.team, Action.MANAGE)
        form = TargetUpdateInput(data=request.data)
        form.is_valid(raise_exception=True)
        targets.update_target(target, request.user, **form.validated_data)
        return Response(TargetSerializer(self.one(target.pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        targets.delete_target(self.one(pk), request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TargetCheck(TargetRows, APIView):
    """Check the server's health now: a worker asks it and records the answer in `health`."""

    token_scopes = DEPLOY_WRITES

    @extend_schema(request=None, responses={202: TargetSerializer})
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        target = targets.request_health_check(self.one(pk), request.user)
        return Response(TargetSerializer(target).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    get=extend_schema(
        parameters=[
            query("team", "Team slug"),
            query("model", "Model slug"),
            query("target", "Target slug"),
            query("status", "pending, pushing, live, failed, undeploying, rolled_back or retired"),
            query("version", "Version id", int),
        ]
    )
)
class DeploymentListCreate(DeploymentRows, generics.ListAPIView):
    """Deployments of your teams, newest first (?team=, ?model=, ?target=, ?status=, ?version=),
    or deploy an approved version to a target: the answer (202) is the pending deployment;
    follow it with GET /deployments/{id}/."""

    serializer_class = DeploymentSerializer
    token_scopes = DEPLOY_WRITES
    ordering_fields = ["id", "created_at", "status_changed_at"]

    def narrow(self, qs: QuerySet[Deployment]) -> QuerySet[Deployment]:
        params = self.request.query_params
        if model := params.get("model"):
            qs = qs.filter(model__slug=model)
        if target := params.get("target"):
            qs = qs.filter(target__slug=target)
        if wanted := params.get("status"):
            if wanted not in DeploymentStatus.values:
                raise ApiError(
                    "invalid_status", f"Unknown status '{wanted}'; use one of {', '.join(DeploymentStatus.values)}."
                )
            qs = qs.filter(status=wanted)
        if (version := integer_filter(params, "version", "a version id")) is not None:
            qs = qs.filter(version_id=version)
        return qs

    @extend_schema(request=DeployInput, responses={202: DeploymentSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        form = DeployInput(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        versions = ModelVersion.objects.select_related("model__team", "created_by")
        version = one_in_teams_of(request.user, versions, "model__team", pk=data["version"])
        require(request.user, version.model.team, Action.DEPLOY)
        target = (
            ServingTarget.objects.filter(team=version.model.team, slug=data["target"])
            .select_related("team", "profile")
            .first()
        )
        if target is None:
            known = ", ".join(
                ServingTarget.objects.filter(team=version.model.team).order_by("slug").values_list("slug", flat=True)
            )
            raise ApiError(
                "unknown_target",
                f"Team {version.model.team.slug} has no serving target '{data['target']}'. "
                + (f"Its targets: {known}." if known else "A team admin can register one (POST /api/v1/targets/)."),
            )
        deployment = deploying.deploy(
            version,
            target,
            request.user,
            variant=data.get("variant") or None,
            overrides=data.get("overrides"),
            profile=data.get("profile") or None,
        )
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)


class DeploymentDetail(DeploymentRows, generics.RetrieveAPIView):
    """One deployment: its state and why, the variant and serving settings, the smoke tests' numbers."""

    serializer_class = DeploymentSerializer


class DeploymentMetrics(DeploymentRows, APIView):
    """What the deployment's target reports about it: requests/s, failures/s, error rate and mean
    request, queue and compute times between consecutive samples of the server's counters (read
    with each health check), over the last `window` seconds (default an hour, at most 7 days),
    with where the numbers come from and the target's last health."""

    @extend_schema(
        parameters=[
            query(
                "window",
                "Seconds back from now to cover: at least 60, default 3600; beyond 604800 (the 7 days samples are "
                "kept) it covers what is kept",
                int,
            )
        ],
        responses=DeploymentMetricsSerializer,
    )
    def get(self, request: Request, pk: int) -> Response:
        # the query is read first, so a bad one is refused the same way whatever the deployment
        window = integer_filter(request.query_params, "window", "a number of seconds")
        if window is not None and window < 60:
            raise ApiError("invalid_window", f"The window must be at least 60 seconds, not {window}.")
        deployment = self.one(pk)
        # samples are kept for 7 days: a longer window covers what is kept, and says so
        longest = int(metrics.RETENTION.total_seconds())
        answer = metrics.deployment_metrics(deployment, min(window or metrics.DEFAULT_WINDOW_SECONDS, longest))
        return Response(DeploymentMetricsSerializer(answer).data)


class DeploymentRollback(DeploymentRows, APIView):
    """Roll this live deployment back to the one that was live before it: the answer (202) is
    the new (rollback) deployment."""

    token_scopes = DEPLOY_WRITES

    @extend_schema(request=None, responses={202: DeploymentSerializer})
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        deployment = deploying.rollback(self.one(pk), request.user)
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)


class DeploymentUndeploy(DeploymentRows, APIView):
    """Take this live deployment off its server (202; it is retired once the worker is done)."""

    token_scopes = DEPLOY_WRITES

    @extend_schema(request=None, responses={202: DeploymentSerializer})
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        deployment = deploying.undeploy(self.one(pk), request.user)
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)
