"""`GET /api/v1/compare/?a=REF&b=REF`: two versions or two variants side by side, computed when asked.

The work is `apps.pipeline.compare`; this module only reads the query, scopes it to the
user's teams (through that module) and documents the answer's shape for the OpenAPI schema.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.pipeline.compare import REF_HELP, compare


class FigureSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True, help_text="Null when this side has no such figure.")
    low = serializers.FloatField(allow_null=True, help_text="Lower end of the 95% interval; null without one.")
    high = serializers.FloatField(allow_null=True, help_text="Upper end of the 95% interval; null without one.")
    samples = serializers.IntegerField(allow_null=True, help_text="Timed inferences behind it, over all trials.")
    trials = serializers.IntegerField(allow_null=True, help_text="Fresh processes it was measured in.")
    how = serializers.CharField(help_text="How it was obtained, or why there is no figure or no interval.")


class ChangeSerializer(serializers.Serializer):
    what = serializers.CharField(help_text="The statistic (p50_ms, throughput, size...) or OUTPUT:METRIC.")
    verdict = serializers.CharField(
        help_text="faster | slower | no_change | unknown for timings (higher | lower for throughput); "
        "same | closer | further | unknown for accuracy; same | smaller | larger | unknown for size; "
        "same | different | unknown for op support."
    )
    sentence = serializers.CharField(help_text="The verdict in words, with the band it rests on.")
    ratio = serializers.FloatField(
        allow_null=True, help_text="How many times better b is (a's time / b's, b's throughput / a's, a's size / b's)."
    )
    ratio_low = serializers.FloatField(allow_null=True, help_text="95% band of the ratio, where intervals exist.")
    ratio_high = serializers.FloatField(allow_null=True)


class OutputAccuracySerializer(serializers.Serializer):
    name = serializers.CharField()
    passed = serializers.BooleanField(allow_null=True)
    cosine = serializers.FloatField(allow_null=True)
    max_abs_error = serializers.FloatField(allow_null=True)
    top1_agreement = serializers.FloatField(allow_null=True)
    kind = serializers.CharField(allow_null=True, help_text="What the output is (classifier, detection...).")
    sqnr_db = serializers.FloatField(allow_null=True, help_text="The whole output's signal-to-noise ratio (dB).")
    worst_slice = serializers.CharField(allow_null=True)
    worst_slice_sqnr_db = serializers.FloatField(allow_null=True)


class PointSerializer(serializers.Serializer):
    batch = serializers.IntegerField()
    concurrency = serializers.IntegerField()


class SideSerializer(serializers.Serializer):
    ref = serializers.CharField(help_text="The reference as given.")
    version_id = serializers.IntegerField()
    model = serializers.CharField()
    team = serializers.CharField()
    number = serializers.IntegerField()
    status = serializers.CharField()
    variant = serializers.CharField(
        allow_null=True, help_text="The variant compared; 'original' is the uploaded model in plain onnxruntime."
    )
    chosen = serializers.CharField(help_text="named | recommended | original (no variant won) | none")
    backend = serializers.CharField()
    precision = serializers.CharField()
    size_bytes = serializers.IntegerField(allow_null=True)
    point = PointSerializer(allow_null=True, help_text="The benchmark point compared.")
    latency = serializers.DictField(child=FigureSerializer(), help_text="p50_ms, p99_ms and cpu_ms.")
    throughput = FigureSerializer(help_text="Inferences per second.")
    parity_passed = serializers.BooleanField(allow_null=True)
    parity_samples = serializers.IntegerField(allow_null=True)
    parity_inputs = serializers.CharField(help_text="What parity ran on: the validation set, or generated inputs.")
    outputs = OutputAccuracySerializer(many=True, help_text="Each output against this side's own FP32 original.")
    support_verdict = serializers.CharField(allow_null=True, help_text="full | partial | none | error ...")
    unsupported_ops = serializers.ListField(child=serializers.CharField())
    fallback_ops = serializers.ListField(child=serializers.CharField())
    measured_on = serializers.CharField(help_text="The worker and CPU its benchmark ran on.")
    runtime_version = serializers.CharField(allow_null=True)
    notes = serializers.ListField(child=serializers.CharField())


class ComparisonSerializer(serializers.Serializer):
    profile = serializers.CharField()
    a = SideSerializer(help_text="The side before.")
    b = SideSerializer(help_text="The side after.")
    headline = serializers.CharField(
        help_text="The latency statistic the summary leads with: cpu_ms for single-threaded CPU runs, else p50_ms."
    )
    latency = ChangeSerializer(many=True)
    throughput = ChangeSerializer()
    accuracy = ChangeSerializer(many=True)
    size = ChangeSerializer()
    support = ChangeSerializer()
    summary = serializers.CharField()
    notes = serializers.ListField(child=serializers.CharField())


class PreviousApprovedSerializer(serializers.Serializer):
    """The version detail's `previous_approved`: computed when read, so it follows approvals."""

    version_id = serializers.IntegerField()
    number = serializers.IntegerField()
    profiles = serializers.DictField(
        child=ComparisonSerializer(), help_text="Per profile both ran on: that version (a) against this one (b)."
    )
    not_compared = serializers.DictField(
        child=serializers.CharField(), help_text="Per profile of this version that can't be compared: why."
    )


def _ref_parameter(name: str, which: str) -> OpenApiParameter:
    return OpenApiParameter(
        name, str, OpenApiParameter.QUERY, required=True, description=f"The {which} side: {REF_HELP}."
    )


class Compare(APIView):
    """Two versions of a model, or two variants, side by side on one hardware profile: latency with
    its 95% interval, throughput, accuracy per output, op support and size, with verdicts that only
    call a change the noise can't explain. Computed from the latest evidence when asked."""

    @extend_schema(
        parameters=[
            _ref_parameter("a", "before"),
            _ref_parameter("b", "after"),
            OpenApiParameter(
                "profile",
                str,
                OpenApiParameter.QUERY,
                required=False,
                description="Hardware profile slug; needed when both sides ran on several.",
            ),
            OpenApiParameter(
                "team",
                str,
                OpenApiParameter.QUERY,
                required=False,
                description="Team slug, when a model name exists in several of your teams.",
            ),
        ],
        responses=ComparisonSerializer,
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        comparison = compare(
            request.user,
            params.get("a", ""),
            params.get("b", ""),
            profile=params.get("profile") or None,
            team=params.get("team") or None,
        )
        return Response(ComparisonSerializer(comparison.to_dict()).data)
