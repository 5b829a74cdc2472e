"""Team settings, members and API tokens."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import services
from apps.accounts.api.scoping import team_named
from apps.accounts.api.serializers import (
    InvitationCreatedSerializer,
    InvitationSerializer,
    MemberSerializer,
    TeamDetailSerializer,
    TokenCreatedSerializer,
    TokenSerializer,
)
from apps.accounts.models import INVITATION_DAYS, ApiToken, Invitation, Membership, Role, Team
from apps.accounts.permissions import SCOPES, Action, not_found, require
from apps.core.api.errors import ApiError
from apps.core.idempotency import SHOWN_ONCE_REPLAY_DESCRIPTION, SecretShownOnce, idempotent


def _user(request: Request) -> Any:
    return request.user  # authenticated: every view here requires it


def team_for(request: Request, slug: str) -> Team:
    return team_named(request.user, slug)


class TeamUpdate(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    four_eyes = serializers.BooleanField(
        required=False,
        help_text="Whoever uploaded a version may not approve it. Turning it on applies to every version at once; "
        "turning it off (single-reviewer mode) is audited and applies only to versions uploaded afterwards.",
    )
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Why the settings change, kept in the audit trail (asked when turning four-eyes off).",
    )


class TeamDetail(APIView):
    """A team with its settings; team admins change the name and the four-eyes rule."""

    token_scopes = {"PATCH": "admin"}

    @extend_schema(responses=TeamDetailSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return Response(TeamDetailSerializer(team_for(request, slug), context={"request": request}).data)

    @extend_schema(request=TeamUpdate, responses=TeamDetailSerializer)
    def patch(self, request: Request, slug: str) -> Response:
        form = TeamUpdate(data=request.data)
        form.is_valid(raise_exception=True)
        team = services.update_team(team_for(request, slug), request.user, dict(form.validated_data))
        return Response(TeamDetailSerializer(team, context={"request": request}).data)


class MemberInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class RoleInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class MemberListAdd(generics.ListAPIView):
    """A team's members and roles; team admins add members."""

    serializer_class = MemberSerializer
    pagination_class = None
    token_scopes = {"POST": "admin"}

    def get_queryset(self) -> QuerySet[Membership]:
        return team_for(self.request, self.kwargs["slug"]).memberships.select_related("user").order_by("user__username")

    @extend_schema(request=MemberInput, responses={201: MemberSerializer})
    @idempotent
    def post(self, request: Request, slug: str) -> Response:
        form = MemberInput(data=request.data)
        form.is_valid(raise_exception=True)
        membership = services.add_member(
            team_for(request, slug), request.user, form.validated_data["username"], form.validated_data["role"]
        )
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetail(APIView):
    """One member: change the role or remove them (team admins)."""

    token_scopes = {"PATCH": "admin", "DELETE": "admin"}

    def _membership(self, request: Request, slug: str, username: str) -> Membership:
        team = team_for(request, slug)
        return get_object_or_404(Membership.objects.select_related("user", "team"), team=team, user__username=username)

    @extend_schema(responses=MemberSerializer)
    def get(self, request: Request, slug: str, username: str) -> Response:
        return Response(MemberSerializer(self._membership(request, slug, username)).data)

    @extend_schema(request=RoleInput, responses=MemberSerializer)
    def patch(self, request: Request, slug: str, username: str) -> Response:
        form = RoleInput(data=request.data)
        form.is_valid(raise_exception=True)
        membership = services.change_role(
            self._membership(request, slug, username), request.user, form.validated_data["role"]
        )
        return Response(MemberSerializer(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, username: str) -> Response:
        services.remove_member(self._membership(request, slug, username), request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)
    note = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="Who it is for, shown in the team's list."
    )
    expires_in_days = serializers.IntegerField(
        default=INVITATION_DAYS, help_text=f"1 to {services.MAX_INVITATION_DAYS}; {INVITATION_DAYS} by default."
    )


def _team_admin(request: Request, slug: str) -> Team:
    team = team_for(request, slug)
    require(request.user, team, Action.MANAGE)
    return team


class InvitationListCreate(generics.ListAPIView):
    """A team's invitations (never their codes); team admins create one: its code and link are
    in that one response only. Whoever redeems it (POST /api/v1/invitations/accept/) joins the
    team with its role, with an account they already have or one they create."""

    serializer_class = InvitationSerializer
    pagination_class = None
    token_scopes = {"POST": "admin"}

    def get_queryset(self) -> QuerySet[Invitation]:
        team = _team_admin(self.request, self.kwargs["slug"])
        return team.invitations.select_related("created_by", "accepted_by").order_by("-id")

    @extend_schema(
        request=InvitationInput,
        responses={201: InvitationCreatedSerializer, 409: OpenApiResponse(description=SHOWN_ONCE_REPLAY_DESCRIPTION)},
    )
    @idempotent
    def post(self, request: Request, slug: str) -> Response:
        form = InvitationInput(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        invitation, code = services.create_invitation(
            team_for(request, slug), request.user, data["role"], data.get("note", ""), data["expires_in_days"]
        )
        return SecretShownOnce(
            {
                **InvitationSerializer(invitation).data,
                "code": code,
                # The code travels in the fragment, which browsers never send to a server or a log.
                "link": request.build_absolute_uri("/app/join") + "#code=" + code,
            },
            status=status.HTTP_201_CREATED,
            replay_message=f"This request already created invitation {invitation.pk}. Its code was shown once, in "
            "that answer; Slipway keeps only its hash. If it was lost, revoke that invitation and create a new one.",
        )


class InvitationDetail(APIView):
    """One invitation of the team; DELETE withdraws it while it is unused (team admins)."""

    token_scopes = {"DELETE": "admin"}

    def _invitation(self, request: Request, slug: str, pk: int) -> Invitation:
        team = _team_admin(request, slug)
        return get_object_or_404(
            Invitation.objects.select_related("team", "created_by", "accepted_by"), team=team, pk=pk
        )

    @extend_schema(responses=InvitationSerializer)
    def get(self, request: Request, slug: str, pk: int) -> Response:
        return Response(InvitationSerializer(self._invitation(request, slug, pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        services.revoke_invitation(self._invitation(request, slug, pk), request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=list(SCOPES)), allow_empty=False)
    expires_in_days = serializers.IntegerField(default=90, help_text=f"1 to {services.MAX_TOKEN_DAYS}.")


class TokenListCreate(generics.ListAPIView):
    """Your API tokens (never their values); create one: its value is in this one response only."""

    serializer_class = TokenSerializer
    pagination_class = None
    token_scopes = {"POST": "admin"}

    def get_queryset(self) -> QuerySet[ApiToken]:
        return ApiToken.objects.filter(user=_user(self.request)).order_by("-id")

    @extend_schema(
        request=TokenInput,
        responses={201: TokenCreatedSerializer, 409: OpenApiResponse(description=SHOWN_ONCE_REPLAY_DESCRIPTION)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        form = TokenInput(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        token, value = services.create_token(
            request.user,
            data["name"],
            data["scopes"],
            data["expires_in_days"],
            via_token=request.auth if isinstance(request.auth, ApiToken) else None,
        )
        return SecretShownOnce(
            {
                **TokenSerializer(token).data,
                "token": value,
                "message": "Copy this token now: Slipway stores only its hash and can't show it again.",
            },
            status=status.HTTP_201_CREATED,
            replay_message=f"This request already created the API token '{token.name}' (id {token.pk}). Its value "
            "was shown once, in that answer, and Slipway keeps only its hash, so it can't be shown again. If you "
            "lost it, revoke that token and create a new one.",
        )


class TokenDetail(APIView):
    """One of your tokens; DELETE revokes it at once (it stays listed as revoked)."""

    token_scopes = {"DELETE": "admin"}

    def _token(self, request: Request, pk: int) -> ApiToken:
        token = ApiToken.objects.filter(user=_user(request), pk=pk).first()
        if token is None:
            raise not_found()
        return token

    @extend_schema(responses=TokenSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(TokenSerializer(self._token(request, pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        token = self._token(request, pk)
        if isinstance(request.auth, ApiToken) and request.auth.pk == token.pk:
            raise ApiError("revoke_self", "A token can't revoke itself; use another token or the browser.")
        services.revoke_token(token, request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
