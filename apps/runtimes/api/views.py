"""Hardware profiles are shared reference data: every signed-in user can list them."""

from django.db.models import QuerySet
from rest_framework import generics, serializers

from apps.runtimes.models import HardwareProfile


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
