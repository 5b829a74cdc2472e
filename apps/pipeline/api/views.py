"""The pipeline's own actions on a version's run."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.scoping import one_in_teams_of
from apps.core.idempotency import idempotent
from apps.pipeline import services
from apps.registry.models import ModelVersion


class ProfileDropInput(serializers.Serializer):
    comment = serializers.CharField(
        required=False, allow_blank=True, max_length=500, default="", help_text="Why, for the audit trail."
    )


class ProfileDropped(serializers.Serializer):
    profile = serializers.CharField()
    dropped_steps = serializers.IntegerField(help_text="Steps of the profile that will not run.")
    run_status = serializers.CharField(help_text="The run's status now: it finishes when nothing else is left.")
    version_status = serializers.CharField()


class VersionProfileDrop(APIView):
    """Stop waiting for one hardware profile of the version's latest run (team uploaders).

    Its steps that have not started are cancelled, saying who dropped it (a running step
    finishes); the run finishes once nothing else is left, so the profiles that were measured
    can be reviewed. For a profile nothing serves, which would keep the version waiting."""

    token_scopes = {"POST": "upload"}

    @extend_schema(request=ProfileDropInput, responses={200: ProfileDropped})
    @idempotent
    def post(self, request: Request, pk: int, profile: str) -> Response:
        form = ProfileDropInput(data=request.data)
        form.is_valid(raise_exception=True)
        versions = ModelVersion.objects.select_related("model__team")
        version = one_in_teams_of(request.user, versions, "model__team", pk=pk)
        dropped = services.drop_profile(version, profile, request.user, comment=form.validated_data["comment"])
        version.refresh_from_db()
        run = version.runs.order_by("-id").first()
        body = {
            "profile": profile,
            "dropped_steps": dropped,
            "run_status": run.status if run is not None else "",
            "version_status": version.status,
        }
        return Response(ProfileDropped(body).data)
