"""Hardware profiles are shared reference data: every signed-in user can list them."""

from django.db.models import QuerySet
from rest_framework import generics, serializers

from apps.runtimes.models import HardwareProfile, Worker
from apps.runtimes.services import worker_status


class HardwareProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = HardwareProfile
        fields = ["slug", "name", "description", "device_kind", "backends", "precisions", "queue", "options", "enabled"]


class HardwareProfileList(generics.ListAPIView):
    """The hardware profiles variants can be built and benchmarked for."""

    serializer_class = HardwareProfileSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[HardwareProfile]:
        return HardwareProfile.objects.order_by("slug")


class WorkerSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = Worker
        fields = [
            "name", "host", "arch", "cpu_model", "cpu_flags", "cores", "memory_bytes", "gpus", "runtimes",
            "importers", "queues", "started_at", "last_heartbeat_at", "stopped_at", "status",
        ]  # fmt: skip

    def get_status(self, worker: Worker) -> str:
        return worker_status(worker)


class WorkerList(generics.ListAPIView):
    """Workers with their hardware, installed runtimes and importers, queues and heartbeat.

    `status` is online, stale (no heartbeat for SLIPWAY_WORKER_STALE_AFTER_SECONDS) or stopped.
    """

    serializer_class = WorkerSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Worker]:
        return Worker.objects.order_by("stopped_at", "-last_heartbeat_at")
