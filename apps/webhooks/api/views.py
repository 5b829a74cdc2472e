"""Webhook endpoints. Everything here, reading included, is for team admins (Action.MANAGE):
webhook URLs can carry the receiver's credentials and payloads describe models in detail.
So API tokens need the `admin` scope for every method, GET too (a `read` token only views)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.scoping import one_in_teams_of
from apps.accounts.models import Role, Team
from apps.accounts.permissions import Action, not_found, require
from apps.accounts.scoping import default_team, visible_teams
from apps.core.api.errors import ApiError
from apps.core.api.schema import query
from apps.core.idempotency import SHOWN_ONCE_REPLAY_DESCRIPTION, SecretShownOnce, idempotent
from apps.webhooks import services
from apps.webhooks.api.serializers import (
    DeliverySerializer,
    WebhookCreatedSerializer,
    WebhookCreateInput,
    WebhookSerializer,
    WebhookUpdateInput,
)
from apps.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery

ADMIN_ONLY = {"GET": "admin", "POST": "admin", "PATCH": "admin", "DELETE": "admin"}
SECRET_NOTICE = "Store this secret now: it is not shown again. Receivers use it to verify X-Slipway-Signature."  # noqa: S105 - a sentence, not a secret


def _webhooks() -> QuerySet[Webhook]:
    return Webhook.objects.select_related("team", "created_by", "allow_private_by")


def webhook_for(request: Request, pk: int) -> Webhook:
    """A webhook of one of the user's teams (404 otherwise) that the user may manage (403)."""
    hook = one_in_teams_of(request.user, _webhooks(), "team", pk=pk)
    services.check_can_read(request.user, hook)
    return hook


def _team_named(request: Request, slug: str) -> Team:
    team = visible_teams(request.user).filter(slug=slug).first()
    if team is None:
        raise ApiError("unknown_team", f"You are not a member of a team called '{slug}'.", status.HTTP_404_NOT_FOUND)
    require(request.user, team, Action.MANAGE)
    return team


def _admin_teams(user: Any) -> QuerySet[Team]:
    if getattr(user, "is_superuser", False):
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user, memberships__role=Role.ADMIN)


def _with_secret(hook: Webhook, secret: str, done: str, http_status: int = status.HTTP_200_OK) -> SecretShownOnce:
    """The one answer holding the signing secret; a retry of the request reads `done` instead."""
    return SecretShownOnce(
        {**WebhookSerializer(hook).data, "secret": secret, "secret_notice": SECRET_NOTICE},
        status=http_status,
        replay_message=f"This request already {done} webhook '{hook.name}' (id {hook.pk}). The signing secret was "
        "shown once, in that answer, and is not kept for retries. If you lost it, rotate the secret "
        f"(POST /api/v1/webhooks/{hook.pk}/rotate-secret/) and store the new one.",
    )


@extend_schema_view(get=extend_schema(parameters=[query("team", "Team slug")]))
class WebhookListCreate(generics.ListAPIView):
    """The webhooks of the teams you administer (?team=<slug> for one), or register one.

    The response to a create is the only one that contains the signing `secret`."""

    serializer_class = WebhookSerializer
    token_scopes = ADMIN_ONLY

    def get_queryset(self) -> QuerySet[Webhook]:
        if slug := self.request.query_params.get("team"):
            return _webhooks().filter(team=_team_named(self.request, slug))
        return _webhooks().filter(team__in=_admin_teams(self.request.user))

    @extend_schema(
        request=WebhookCreateInput,
        responses={201: WebhookCreatedSerializer, 409: OpenApiResponse(description=SHOWN_ONCE_REPLAY_DESCRIPTION)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        # The team first: someone who may not manage it learns nothing from validation errors.
        raw = request.data.get("team") if hasattr(request.data, "get") else None
        slug = str(raw or request.query_params.get("team") or "")
        if slug:
            team = _team_named(request, slug)
        else:
            team = default_team(request.user, Action.MANAGE)
            require(request.user, team, Action.MANAGE)
        form = WebhookCreateInput(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        hook, secret = services.create_webhook(
            team=team,
            user=request.user,
            name=data["name"],
            url=data["url"],
            events=data["events"],
            active=data["active"],
            allow_private=data["allow_private"],
        )
        return _with_secret(_webhooks().get(pk=hook.pk), secret, "registered", status.HTTP_201_CREATED)


class WebhookDetail(APIView):
    """One webhook: read it, change it (name, url, events, active, allow_private), delete it."""

    token_scopes = ADMIN_ONLY

    @extend_schema(responses=WebhookSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(WebhookSerializer(webhook_for(request, pk)).data)

    @extend_schema(request=WebhookUpdateInput, responses=WebhookSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        hook = webhook_for(request, pk)
        form = WebhookUpdateInput(data=request.data)
        form.is_valid(raise_exception=True)
        services.update_webhook(hook, request.user, **form.validated_data)
        return Response(WebhookSerializer(_webhooks().get(pk=hook.pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.delete_webhook(webhook_for(request, pk), request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RotateSecret(APIView):
    """Replace the signing secret. The response holds the new one, shown this once."""

    token_scopes = ADMIN_ONLY

    @extend_schema(
        request=None,
        responses={200: WebhookCreatedSerializer, 409: OpenApiResponse(description=SHOWN_ONCE_REPLAY_DESCRIPTION)},
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        hook = webhook_for(request, pk)
        secret = services.rotate_secret(hook, request.user)
        return _with_secret(hook, secret, "rotated the signing secret of")


class Ping(APIView):
    """Send a `ping` event to this webhook now; follow it in the deliveries."""

    token_scopes = ADMIN_ONLY

    @extend_schema(request=None, responses={202: DeliverySerializer})
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        delivery = services.ping(webhook_for(request, pk), request.user)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    get=extend_schema(parameters=[query("status", "pending, succeeded or failed"), query("event", "Event type")])
)
class DeliveryList(generics.ListAPIView):
    """This webhook's deliveries, newest first (?status=, ?event= to filter), each with its
    payload and a log of every attempt."""

    serializer_class = DeliverySerializer
    token_scopes = ADMIN_ONLY

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        hook = webhook_for(self.request, self.kwargs["pk"])
        qs = hook.deliveries.select_related("requested_by")
        if wanted := self.request.query_params.get("status"):
            if wanted not in DeliveryStatus.values:
                raise ApiError(
                    "invalid_status", f"Unknown status '{wanted}'; use one of {', '.join(DeliveryStatus.values)}."
                )
            qs = qs.filter(status=wanted)
        if event := self.request.query_params.get("event"):
            qs = qs.filter(event=event)
        return qs


class Redeliver(APIView):
    """Send a finished delivery's event again, as a new delivery with the same event id."""

    token_scopes = ADMIN_ONLY

    @extend_schema(request=None, responses={202: DeliverySerializer})
    @idempotent
    def post(self, request: Request, pk: int, delivery_id: int) -> Response:
        hook = webhook_for(request, pk)
        delivery = hook.deliveries.filter(pk=delivery_id).first()
        if delivery is None:
            raise not_found()
        delivery.webhook = hook
        again = services.redeliver(delivery, request.user)
        return Response(DeliverySerializer(again).data, status=status.HTTP_202_ACCEPTED)
