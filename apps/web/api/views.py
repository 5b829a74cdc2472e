"""GET who you are, POST to sign in, DELETE to sign out: the browser app's session.

The browser sends the session cookie and, on writes, the CSRF cookie's value in
X-CSRFToken. Sign-in checks that token too (DRF only checks it for signed-in sessions), so
another site can't sign a visitor in to an account of its choosing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware, get_token
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.serializers import reviewer_count
from apps.accounts.models import Membership
from apps.accounts.permissions import TokenScopePermission
from apps.core.api.errors import ApiError
from apps.core.api.parsers import JSONParser
from apps.core.api.throttling import PerTokenRateThrottle, SignInThrottle
from apps.web import services
from apps.web.api.serializers import MeSerializer


class SignInInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, trim_whitespace=False, style={"input_type": "password"})


def me_payload(user: Any) -> dict[str, Any]:
    memberships = Membership.objects.filter(user=user).select_related("team").order_by("team__slug")
    return {
        "username": user.get_username(),
        "email": user.email or "",
        "is_superuser": bool(user.is_superuser),
        "teams": [
            {
                "slug": m.team.slug,
                "name": m.team.name,
                "role": m.role,
                "four_eyes": m.team.four_eyes,
                "reviewers": reviewer_count(m.team),
            }
            for m in memberships
        ],
    }


def _no_response(request: HttpRequest) -> HttpResponse:
    return HttpResponse()  # never called: only the middleware's checks are used


def _check_csrf(request: Request) -> None:
    check = CsrfViewMiddleware(_no_response)
    check.process_request(request._request)
    refused = check.process_view(request._request, _no_response, (), {})
    if refused is not None:
        raise ApiError(
            "csrf_failed",
            "The sign-in form has expired (its CSRF token is missing or stale). Reload the page and sign in again.",
            status.HTTP_403_FORBIDDEN,
        )


def _naturally_idempotent(handler: Any) -> Any:
    """Signing in twice leaves what signing in once does (a session for that user), so a
    retry is always safe; and each answer must carry its own new session cookie, which a
    stored Idempotency-Key answer would not. So this create honours Idempotency-Key by
    acting again (tests/apps/test_api_conventions.py asks every POST to honour it)."""
    handler.idempotent = True
    return handler


class SessionView(APIView):
    """The browser session; every answer sets the `csrftoken` cookie whose value writes send
    back in X-CSRFToken."""

    throttle_classes = [PerTokenRateThrottle, SignInThrottle]
    parser_classes = [JSONParser]
    token_scopes = {"POST": "read", "DELETE": "read"}

    def get_permissions(self) -> Sequence[Any]:
        if self.request.method == "POST":
            return [permissions.AllowAny(), TokenScopePermission()]
        return super().get_permissions()

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        get_token(request._request)  # CsrfViewMiddleware then sets (or refreshes) the cookie
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        summary="Who is signed in", description="The signed-in user with their teams and roles.", responses=MeSerializer
    )
    def get(self, request: Request) -> Response:
        return Response(me_payload(request.user))

    @extend_schema(
        summary="Sign in",
        description="Start a browser session with a username and password. Send the `csrftoken` cookie's value "
        "in X-CSRFToken (GET this endpoint, or any /app/ page, to get the cookie). Attempts are rate-limited per "
        "client address and failures are recorded in the audit trail.",
        request=SignInInput,
        responses={200: MeSerializer},
    )
    @_naturally_idempotent
    def post(self, request: Request) -> Response:
        _check_csrf(request)
        form = SignInInput(data=request.data)
        form.is_valid(raise_exception=True)
        user = services.sign_in(request._request, form.validated_data["username"], form.validated_data["password"])
        return Response(me_payload(user))

    @extend_schema(summary="Sign out", description="End the browser session.", request=None, responses={204: None})
    def delete(self, request: Request) -> Response:
        services.sign_out(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationCodeInput(serializers.Serializer):
    code = serializers.CharField(max_length=200, help_text="The invitation's one-time code, 'slwinv_…'.")


class InvitationPreviewSerializer(serializers.Serializer):
    team = serializers.CharField(help_text="The team's slug.")
    team_name = serializers.CharField()
    role = serializers.CharField(help_text="viewer, data_scientist, approver or admin")
    invited_by = serializers.CharField()
    expires_at = serializers.DateTimeField()
    state = serializers.ChoiceField(choices=["pending", "accepted", "revoked", "expired"])
    signed_in_as = serializers.CharField(allow_null=True, help_text="Who would join, if someone is signed in.")


class AcceptInput(InvitationCodeInput):
    username = serializers.CharField(
        required=False, allow_blank=True, max_length=150, help_text="A new account's user name (signed out only)."
    )
    password = serializers.CharField(
        required=False, allow_blank=True, max_length=1024, trim_whitespace=False, style={"input_type": "password"}
    )


class _InvitationEndpoint(APIView):
    """Open to a signed-out visitor (the code is the credential), rate-limited like sign-in,
    and checked for CSRF like it (a session cookie is about to be set)."""

    throttle_classes = [PerTokenRateThrottle, SignInThrottle]
    parser_classes = [JSONParser]
    token_scopes = {"POST": "read"}

    def get_permissions(self) -> Sequence[Any]:
        return [permissions.AllowAny(), TokenScopePermission()]

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        get_token(request._request)
        return super().finalize_response(request, response, *args, **kwargs)


def _signed_in(request: Request) -> Any | None:
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


class InvitationPreview(_InvitationEndpoint):
    @extend_schema(
        summary="Read an invitation",
        description="Which team and role an invitation code is for, and whether it can still be used. Sent as a "
        "POST so the code stays out of URLs and logs; it changes nothing.",
        request=InvitationCodeInput,
        responses={200: InvitationPreviewSerializer},
    )
    @_naturally_idempotent
    def post(self, request: Request) -> Response:
        from apps.accounts.services import find_invitation

        form = InvitationCodeInput(data=request.data)
        form.is_valid(raise_exception=True)
        invitation = find_invitation(form.validated_data["code"])
        signed_in = _signed_in(request)
        return Response(
            {
                "team": invitation.team.slug,
                "team_name": invitation.team.name,
                "role": invitation.role,
                "invited_by": invitation.created_by.get_username(),
                "expires_at": invitation.expires_at,
                "state": invitation.state,
                "signed_in_as": signed_in.get_username() if signed_in else None,
            }
        )


class InvitationAccept(_InvitationEndpoint):
    @extend_schema(
        summary="Accept an invitation",
        description="Join the invitation's team with its role: as the signed-in user, or, signed out, with a new "
        "account (username and password, checked by the site's password rules), which is then signed in. "
        "A code works once.",
        request=AcceptInput,
        responses={200: MeSerializer},
    )
    @_naturally_idempotent
    def post(self, request: Request) -> Response:
        from apps.accounts.services import accept_invitation

        _check_csrf(request)
        form = AcceptInput(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        signed_in = _signed_in(request)
        membership = accept_invitation(data["code"], signed_in, data.get("username", ""), data.get("password", ""))
        if signed_in is None:
            services.start_session(request._request, membership.user)
        return Response(me_payload(membership.user))
