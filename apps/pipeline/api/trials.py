"""The playground's routes: try a version on your own input (the original and chosen variants,
run by a worker in the sandbox), poll the trial, list a version's recent trials."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.api.scoping import TeamScoped, one_in_teams_of
from apps.core.api.errors import ApiError
from apps.core.api.parsers import JSONParser
from apps.core.idempotency import idempotent
from apps.pipeline import trials
from apps.pipeline.models import Trial
from apps.registry.models import ModelVersion

RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "nullable": True,
    "description": (
        "Bounded summaries (`workers/engine/playground.py`): `input` (kind, applied steps, preprocessing as "
        "applied, image_size [w, h], shapes), `original` and `variants` (name -> {backend, outputs, difference, "
        "error}). Each output: name, shape, dtype, kind, stats {min, max, mean, nonfinite, first}; a classifier "
        "adds top [{class, probability, score}] and scores (how probabilities were read); a detection head adds "
        "boxes [{class, score, box [x1, y1, x2, y2]}] in the original image's pixels, box_frame, layout."
    ),
    "additionalProperties": True,
}


@extend_schema_field(RESULT_SCHEMA)
class TrialResultField(serializers.JSONField):
    pass


class TrialSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.username", default="", read_only=True)
    result = TrialResultField(read_only=True)
    preprocessing = serializers.DictField(read_only=True, help_text="The image preprocessing changes asked for.")
    variants = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = Trial
        fields = [
            "id",
            "version",
            "status",
            "input_name",
            "input_size",
            "preprocessing",
            "variants",
            "result",
            "error",
            "error_code",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class TrialInput(serializers.Serializer):
    file = serializers.FileField(
        help_text="The input: a PNG or JPEG image, a WAV file, an .npz (one array per input) or JSON "
        "({input name: nested list}, or a list of token ids). Up to 20 MiB."
    )
    variants = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Comma-separated variant names (e.g. x86-cpu/ort-int8); the original always runs.",
    )
    preprocessing = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="JSON object changing the image preprocessing: size [h, w], layout NCHW|NHWC, channel_order "
        "RGB|BGR|GRAY, scale, mean [..], std [..], dtype, resample.",
    )


_PREPROCESSING_FIELDS = {"size", "layout", "channel_order", "scale", "mean", "std", "dtype", "resample"}


def _preprocessing(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ApiError(
            "invalid",
            'preprocessing: give a JSON object, e.g. {"size": [224, 224], "scale": 0.00392}, or leave it out.',
            status.HTTP_400_BAD_REQUEST,
        )
    unknown = sorted(set(data) - _PREPROCESSING_FIELDS)
    if unknown:
        raise ApiError(
            "invalid",
            f"preprocessing: {', '.join(unknown)} is not a preprocessing field; the fields are "
            f"{', '.join(sorted(_PREPROCESSING_FIELDS))}.",
            status.HTTP_400_BAD_REQUEST,
        )
    return data


class VersionTrials(TeamScoped, generics.ListAPIView):
    """A version's recent trials, newest first (GET); POST tries the version on your input: the
    original and the chosen variants run by a worker in the sandbox (202; poll the trial).
    Team members who may upload or review."""

    serializer_class = TrialSerializer
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    token_scopes = {"POST": "upload"}
    team_path = "version__model__team"
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]

    def _version(self) -> ModelVersion:
        versions = ModelVersion.objects.select_related("model__team")
        return one_in_teams_of(self.request.user, versions, "model__team", pk=self.kwargs["pk"])

    def rows(self) -> QuerySet[Trial]:
        return Trial.objects.select_related("requested_by")

    def narrow(self, qs: QuerySet[Any]) -> QuerySet[Any]:
        return qs.filter(version=self._version()).order_by("-id")

    @extend_schema(
        request={"multipart/form-data": TrialInput},
        responses={
            202: TrialSerializer,
            400: OpenApiResponse(description="A field that does not read, with a sentence naming it."),
            409: OpenApiResponse(description="The version has no inspected ONNX model yet."),
        },
    )
    @idempotent
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self._version()
        trials.require_trial_access(request.user, version)
        form = TrialInput(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        upload = data["file"]
        if upload.size > trials.MAX_INPUT_BYTES:
            raise ApiError(
                "invalid",
                f"file: it is {upload.size / 2**20:.1f} MiB; a trial takes inputs up to "
                f"{trials.MAX_INPUT_BYTES // 2**20} MiB. Give a smaller file.",
                status.HTTP_400_BAD_REQUEST,
            )
        variants = trials.parse_variants(version, data["variants"])
        preprocessing = _preprocessing(data["preprocessing"])
        trial = trials.request_trial(
            version, request.user, upload, upload.name or "input", upload.size, variants, preprocessing
        )
        return Response(TrialSerializer(trial).data, status=status.HTTP_202_ACCEPTED)


class ProposedPreprocessingSerializer(serializers.Serializer):
    preprocessing = serializers.DictField(
        allow_null=True,
        help_text="size [height, width], layout (NCHW or NHWC), channel_order (RGB, BGR or GRAY), scale, mean "
        "and std per channel, dtype, resample: what a trial applies to an image unless told otherwise; null "
        "when the model takes no single image input.",
    )
    note = serializers.CharField(help_text="Why there is no proposal; empty when there is one.")


class VersionTrialDefaults(generics.GenericAPIView):
    """The image preprocessing a trial of this version applies unless told otherwise, read from
    its input plan (the playground's form starts from it)."""

    serializer_class = ProposedPreprocessingSerializer

    @extend_schema(responses=ProposedPreprocessingSerializer)
    def get(self, request: Request, pk: int) -> Response:
        versions = ModelVersion.objects.select_related("model__team")
        version = one_in_teams_of(request.user, versions, "model__team", pk=pk)
        preprocessing, note = trials.proposed_preprocessing(version)
        return Response(ProposedPreprocessingSerializer({"preprocessing": preprocessing, "note": note}).data)


class TrialDetail(TeamScoped, generics.RetrieveAPIView):
    """One trial: its status and, once done, its result or a sentence on what went wrong."""

    serializer_class = TrialSerializer
    team_path = "version__model__team"

    def rows(self) -> QuerySet[Trial]:
        return Trial.objects.select_related("requested_by")
