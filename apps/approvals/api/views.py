"""Review endpoints (evidence, gates, approve/reject/revoke, re-run, history) and policies."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.scoping import TeamScoped, one_in_teams_of
from apps.accounts.permissions import Action, can
from apps.accounts.scoping import resolve_team
from apps.approvals import services
from apps.approvals.api.serializers import (
    DecisionDetailSerializer,
    DecisionSerializer,
    PolicyKindSerializer,
    PolicySerializer,
    RerunSerializer,
    ReviewSerializer,
)
from apps.approvals.models import Decision, Policy, PolicyKind
from apps.core.api.schema import query
from apps.core.idempotency import idempotent
from apps.registry.models import ModelVersion, RegisteredModel, VersionStatus


def version_for(request: Request, pk: int) -> ModelVersion:
    """A version of one of the user's teams; 404 otherwise."""
    versions = ModelVersion.objects.select_related("model__team", "created_by")
    return one_in_teams_of(request.user, versions, "model__team", pk=pk)


class ReviewView(APIView):
    """What a reviewer decides on: the evidence snapshot and its hash, each gate's result,
    whether an existing approval still applies, and whether you may approve."""

    @extend_schema(
        responses={
            200: ReviewSerializer,
            409: OpenApiResponse(description="The version's pipeline has not finished successfully: no evidence yet."),
        }
    )
    def get(self, request: Request, pk: int) -> Response:
        version = version_for(request, pk)
        current = services.review(version)
        team = version.model.team
        uploader = version.created_by_id == getattr(request.user, "pk", None)
        return Response(
            {
                "version": services.version_payload(version),
                "evidence": current.evidence,
                "evidence_sha256": current.evidence_sha256,
                "gates": [g.to_dict() for g in current.gates],
                "gates_passed": current.gates_passed,
                "approval": services.approval_state(version),
                "four_eyes": {
                    "enabled": version.four_eyes,
                    "you_uploaded": uploader,
                    # Only a decision still to be made is blocked: once another reviewer has
                    # decided, the uploader's page says so instead.
                    "blocks_you": version.four_eyes and uploader and version.status == VersionStatus.READY,
                },
                "you_can_review": can(request.user, team, Action.REVIEW) and not (version.four_eyes and uploader),
            }
        )


class ApproveInput(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=services.COMMENT_LIMIT)
    override_reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=services.COMMENT_LIMIT,
        help_text="Needed when a gate fails: why the version may go ahead anyway.",
    )


class CommentInput(serializers.Serializer):
    # Required-ness is checked by the service, which says why in a sentence.
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=services.COMMENT_LIMIT)


class _DecisionAction(APIView):
    token_scopes = {"POST": "approve"}
    input_class: type[serializers.Serializer] = CommentInput

    def decide(self, version: ModelVersion, user: Any, data: dict[str, Any]) -> Decision:
        raise NotImplementedError

    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        version = version_for(request, pk)
        form = self.input_class(data=request.data)
        form.is_valid(raise_exception=True)
        decision = self.decide(version, request.user, form.validated_data)
        return Response(DecisionSerializer(decision).data, status=status.HTTP_201_CREATED)


@extend_schema(request=ApproveInput, responses={201: DecisionSerializer})
class ApproveView(_DecisionAction):
    """Approve a version that is ready for review. A failing gate needs `override_reason`."""

    input_class = ApproveInput

    def decide(self, version: ModelVersion, user: Any, data: dict[str, Any]) -> Decision:
        return services.approve(version, user, data["comment"], data["override_reason"])


@extend_schema(request=CommentInput, responses={201: DecisionSerializer})
class RejectView(_DecisionAction):
    """Reject a version that is ready for review; `comment` (required) says why."""

    def decide(self, version: ModelVersion, user: Any, data: dict[str, Any]) -> Decision:
        return services.reject(version, user, data["comment"])


@extend_schema(request=CommentInput, responses={201: DecisionSerializer})
class RevokeView(_DecisionAction):
    """Withdraw a version's approval; `comment` (required) says why."""

    def decide(self, version: ModelVersion, user: Any, data: dict[str, Any]) -> Decision:
        return services.revoke(version, user, data["comment"])


class RerunView(APIView):
    """Run the version's pipeline again (new evidence; an approval stops applying)."""

    token_scopes = {"POST": "upload"}

    @extend_schema(request=None, responses={202: RerunSerializer})
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        version = version_for(request, pk)
        run = services.rerun(version, request.user)
        return Response({"run_id": run.pk, "version": services.version_payload(version)}, status=202)


class DecisionList(generics.ListAPIView):
    """A version's review history, newest first."""

    serializer_class = DecisionSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Decision]:
        version = version_for(self.request, self.kwargs["pk"])
        return version.decisions.select_related("actor").order_by("-id")


class DecisionDetail(TeamScoped, generics.RetrieveAPIView):
    """One decision with the full evidence it was made on."""

    serializer_class = DecisionDetailSerializer
    team_path = "version__model__team"

    def rows(self) -> QuerySet[Decision]:
        return Decision.objects.select_related("actor")


# ---- policies ----------------------------------------------------------------------------


class PolicyInput(serializers.Serializer):
    team = serializers.SlugField(required=False, help_text="Team slug; needed if you are in several teams.")
    model = serializers.SlugField(required=False, allow_null=True, help_text="Limit the gate to one model (slug).")
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=PolicyKind.choices)
    profile = serializers.SlugField(required=False, allow_null=True, help_text="Limit the gate to one profile.")
    params = serializers.JSONField(required=False, default=dict)
    enabled = serializers.BooleanField(required=False, default=True)


class PolicyUpdate(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    kind = serializers.ChoiceField(choices=PolicyKind.choices, required=False)
    profile = serializers.SlugField(required=False, allow_null=True)
    params = serializers.JSONField(required=False)
    enabled = serializers.BooleanField(required=False)


class PolicyRows(TeamScoped):
    """Views over gates: those of the user's teams."""

    def rows(self) -> QuerySet[Policy]:
        return Policy.objects.select_related("team", "model", "profile", "created_by")


@extend_schema_view(get=extend_schema(parameters=[query("team", "Team slug"), query("model", "Model slug")]))
class PolicyKindList(APIView):
    """The kinds of policy (gate) a team can set, with the parameters each takes (type, required,
    default, bounds, help) as apps.approvals.gates declares them: the same specs check a policy
    when it is created, and the team page builds its form from them."""

    @extend_schema(responses=PolicyKindSerializer(many=True))
    def get(self, request: Request) -> Response:
        from apps.approvals import gates

        kinds = [
            {
                "kind": kind.value,
                "label": kind.label,
                "help": gates.PARAM_HELP[kind],
                "params": list(gates.PARAM_SPECS[kind]),
                "at_least_one": kind in gates.AT_LEAST_ONE,
            }
            for kind in PolicyKind
        ]
        return Response(PolicyKindSerializer(kinds, many=True).data)


class PolicyListCreate(PolicyRows, generics.ListCreateAPIView):
    """The gates of your teams (?team=, ?model=), or add one (team admins)."""

    serializer_class = PolicySerializer
    token_scopes = {"POST": "admin"}
    ordering_fields = ["id", "name", "updated_at"]

    def narrow(self, qs: QuerySet[Policy]) -> QuerySet[Policy]:
        if model := self.request.query_params.get("model"):
            qs = qs.filter(Q(model__slug=model) | Q(model__isnull=True))
        return qs

    @extend_schema(request=PolicyInput, responses={201: PolicySerializer})
    @idempotent
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = PolicyInput(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        team = resolve_team(request.user, data.get("team"), Action.MANAGE)
        model = None
        if data.get("model"):
            model = RegisteredModel.objects.filter(team=team, slug=data["model"]).first()
            if model is None:
                raise Http404
        policy = services.create_policy(
            team=team,
            user=request.user,
            name=data["name"],
            kind=data["kind"],
            params=data["params"],
            model=model,
            profile=data.get("profile"),
            enabled=data["enabled"],
        )
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)


class PolicyDetail(PolicyRows, APIView):
    """One gate: read it, change it or delete it (team admins)."""

    token_scopes = {"PATCH": "admin", "DELETE": "admin"}

    @extend_schema(responses=PolicySerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(PolicySerializer(self.one(pk)).data)

    @extend_schema(request=PolicyUpdate, responses=PolicySerializer)
    def patch(self, request: Request, pk: int) -> Response:
        form = PolicyUpdate(data=request.data)
        form.is_valid(raise_exception=True)
        policy = services.update_policy(self.one(pk), request.user, dict(form.validated_data))
        return Response(PolicySerializer(policy).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.delete_policy(self.one(pk), request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
