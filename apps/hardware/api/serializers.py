"""API representations of the hardware app: what its endpoints read and write."""

from __future__ import annotations

from typing import Any, cast

from django.db.models import Count
from rest_framework import serializers

from apps.hardware.models import HardwareProfile, Worker
from apps.hardware.services import Service, answer_services, worker_status
from apps.pipeline.models import Job, JobStatus
from workers.engine.hardware import describe_requirements


class HardwareProfileSerializer(serializers.ModelSerializer):
    needs = serializers.SerializerMethodField(help_text='The requirements in words, e.g. "an aarch64 CPU".')
    served_by = serializers.SerializerMethodField(
        help_text="The live workers that measure for it now: they take its queue and meet its requirements."
    )
    service_note = serializers.SerializerMethodField(
        help_text="Why work for it would wait (nothing that meets it is connected) and how to connect one; "
        "empty when served."
    )
    queued = serializers.SerializerMethodField(help_text="Steps of all teams waiting for this profile's machines.")
    running = serializers.SerializerMethodField(help_text="Steps of all teams running on this profile's machines now.")

    class Meta:
        model = HardwareProfile
        fields = [
            "slug",
            "name",
            "description",
            "device_kind",
            "backends",
            "precisions",
            "queue",
            "requirements",
            "needs",
            "served_by",
            "service_note",
            "queued",
            "running",
            "options",
            "enabled",
        ]

    def _service(self, profile: HardwareProfile) -> Service:
        return answer_services(self.context)[profile.slug]

    def get_needs(self, profile: HardwareProfile) -> str:
        return describe_requirements(profile.requirements)

    def get_served_by(self, profile: HardwareProfile) -> list[str]:
        return list(self._service(profile).serving)

    def get_service_note(self, profile: HardwareProfile) -> str:
        return self._service(profile).note()

    def _depth(self, profile: HardwareProfile) -> dict[str, int]:
        context = cast(dict[str, Any], self.context)
        if "queue_depth" not in context:
            active = Job.objects.filter(status__in=(JobStatus.QUEUED, JobStatus.RUNNING), profile__isnull=False)
            counts: dict[str, dict[str, int]] = {}
            for row in active.values("profile__slug", "status").annotate(n=Count("id")):
                counts.setdefault(row["profile__slug"], {})[row["status"]] = row["n"]
            context["queue_depth"] = counts
        depth: dict[str, int] = context["queue_depth"].get(profile.slug, {})
        return depth

    def get_queued(self, profile: HardwareProfile) -> int:
        return self._depth(profile).get(JobStatus.QUEUED, 0)

    def get_running(self, profile: HardwareProfile) -> int:
        return self._depth(profile).get(JobStatus.RUNNING, 0)


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
