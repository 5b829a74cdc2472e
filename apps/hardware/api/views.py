"""Hardware profiles are shared reference data: every signed-in user can list them."""

from django.db.models import QuerySet
from rest_framework import generics

from apps.hardware.api.serializers import HardwareProfileSerializer, WorkerSerializer
from apps.hardware.models import HardwareProfile, Worker


class HardwareProfileList(generics.ListAPIView):
    """The hardware profiles variants can be built and benchmarked for."""

    serializer_class = HardwareProfileSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[HardwareProfile]:
        return HardwareProfile.objects.order_by("slug")


class WorkerList(generics.ListAPIView):
    """Workers with their hardware, installed runtimes and importers, queues and heartbeat.

    `status` is online, stale (no heartbeat for SLIPWAY_WORKER_STALE_AFTER_SECONDS) or stopped.
    """

    serializer_class = WorkerSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Worker]:
        return Worker.objects.order_by("stopped_at", "-last_heartbeat_at")
