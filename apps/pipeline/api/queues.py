"""`GET /api/v1/queues/`: how deep each queue is and who serves it; and the shapes of a step's place
in its queue and of what a worker runs, which the versions' and workers' answers carry.

The work is `apps.pipeline.queue_state`; this module documents the answers' shapes.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.pipeline.queue_state import SAMPLES, queue_depths


class JobEstimateSerializer(serializers.Serializer):
    starts_in_seconds = serializers.IntegerField(
        allow_null=True,
        help_text="Queued: about how many seconds until a worker takes it (0: a worker is free now); null when "
        "there is nothing to go on (no live worker on its queue, or no recent finished step to time the work "
        "ahead), which `basis` says.",
    )
    elapsed_seconds = serializers.IntegerField(allow_null=True, help_text="Running: how long it has run; else null.")
    typical_seconds = serializers.IntegerField(
        allow_null=True,
        help_text=f"The median duration of the last {SAMPLES} steps of its kind that succeeded on its queue; null "
        "when none has.",
    )
    samples = serializers.IntegerField(help_text="How many finished steps the figure rests on.")
    live_workers = serializers.IntegerField(help_text="The live workers that take its queue now.")
    basis = serializers.CharField(
        help_text='Where the figure comes from ("from the median of 12 recent optimize steps on queue cpu and the '
        '2 live workers that take it"), or a sentence saying why there is no figure.'
    )


class QueueDepthSerializer(serializers.Serializer):
    queue = serializers.CharField()
    profiles = serializers.ListField(
        child=serializers.CharField(), help_text="The enabled hardware profiles whose work goes to this queue."
    )
    queued = serializers.IntegerField(help_text="Steps of all teams waiting on this queue.")
    queued_yours = serializers.IntegerField(help_text="Of those, the steps of your teams.")
    running = serializers.IntegerField(help_text="Steps of all teams running from this queue now.")
    oldest_enqueued_at = serializers.DateTimeField(
        allow_null=True, help_text="When the step that has waited longest was queued; null when none waits."
    )
    oldest_wait_seconds = serializers.IntegerField(allow_null=True, help_text="How long that step has waited.")
    live_workers = serializers.ListField(
        child=serializers.CharField(), help_text="The live workers (heartbeat fresh) that take this queue."
    )


class RunningStepSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    kind = serializers.CharField()
    queue = serializers.CharField()
    profile = serializers.CharField(help_text="Empty for the steps that run once per version.")
    team = serializers.CharField()
    model = serializers.CharField(help_text="The model's slug.")
    version = serializers.IntegerField(help_text="The version's number in its model.")
    version_id = serializers.IntegerField()
    progress = serializers.FloatField()
    progress_message = serializers.CharField()
    started_at = serializers.DateTimeField(allow_null=True)


class QueueList(APIView):
    """Each queue work goes to: the steps waiting on it (all teams', and yours), how long the oldest
    has waited, the steps running, the hardware profiles whose work goes there and the live workers
    that take it. Other teams' steps are counted, never named."""

    @extend_schema(responses={200: QueueDepthSerializer(many=True)})
    def get(self, request: Request) -> Response:
        depths = [depth.to_dict() for depth in queue_depths(request.user)]
        return Response(QueueDepthSerializer(depths, many=True).data)
