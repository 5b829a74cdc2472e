"""API representations of the hardware app: what its endpoints read and write."""

from __future__ import annotations

from typing import Any, cast

from django.db.models import Count
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.api.schema import WORK_ORDER_SCHEMA
from apps.hardware import devices
from apps.hardware.models import HardwareProfile, Worker
from apps.hardware.services import Service, answer_services, answer_teams, worker_status
from apps.pipeline.api.queues import RunningStepSerializer
from apps.pipeline.models import Job, JobStatus
from apps.pipeline.queue_state import WorkerLoad, worker_loads
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
        return self._service(profile).note(answer_teams(self.context))

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
    running = serializers.SerializerMethodField(
        help_text="The steps of your teams it runs now: kind, model and version, profile, progress."
    )
    running_other_teams = serializers.SerializerMethodField(
        help_text="How many steps of teams you are not in it runs now (counted, not shown)."
    )

    class Meta:
        model = Worker
        fields = [
            "name", "host", "arch", "cpu_model", "cpu_flags", "cores", "memory_bytes", "gpus", "runtimes",
            "importers", "framework_envs", "queues", "started_at", "last_heartbeat_at", "stopped_at", "status",
            "running", "running_other_teams",
        ]  # fmt: skip

    def get_status(self, worker: Worker) -> str:
        return worker_status(worker)

    def _load(self, worker: Worker) -> WorkerLoad:
        # Looked up once per answer, however many workers it lists.
        context = cast(dict[str, Any], self.context)
        if "worker_loads" not in context:
            request = context.get("request")
            context["worker_loads"] = worker_loads(request.user) if request is not None else {}
        load: WorkerLoad = context["worker_loads"].get(worker.name, WorkerLoad())
        return load

    @extend_schema_field(RunningStepSerializer(many=True))
    def get_running(self, worker: Worker) -> list[dict[str, Any]]:
        return list(RunningStepSerializer([step.to_dict() for step in self._load(worker).steps], many=True).data)

    def get_running_other_teams(self, worker: Worker) -> int:
        return self._load(worker).other_teams


class EnrollmentInput(serializers.Serializer):
    team = serializers.SlugField(required=False, help_text="Team slug; needed if you are in several teams.")
    profiles = serializers.ListField(
        child=serializers.SlugField(), min_length=1, help_text="The hardware profiles the device may serve."
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    hours = serializers.IntegerField(required=False, default=24, help_text="How long the token can be used (1-168).")


class EnrollmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team.slug")
    name = serializers.CharField()
    profiles = serializers.ListField(child=serializers.CharField(), help_text="The profiles the device may serve.")
    expires_at = serializers.DateTimeField()
    token = serializers.CharField(help_text="Shown once: give it to the device's agent to register.")
    connect = serializers.CharField(help_text="The command that registers a device with this token.")


class DeviceServingSerializer(serializers.Serializer):
    profile = serializers.CharField()
    meets = serializers.BooleanField(help_text="Whether the device's own probe meets the profile's requirements.")
    unmet = serializers.CharField(help_text="What the device lacks for the profile, in words; empty when it meets it.")


class DeviceJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    profile = serializers.CharField()
    version = serializers.IntegerField(help_text="The version's id.")
    attempt = serializers.IntegerField()
    progress = serializers.FloatField()
    progress_message = serializers.CharField()


class DeviceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team.slug")
    name = serializers.CharField()
    status = serializers.SerializerMethodField(help_text="online, offline or revoked.")
    hardware = serializers.JSONField(help_text="The device's own hardware probe, as last reported.")
    runtimes = serializers.JSONField()
    agent_version = serializers.CharField()
    serving = serializers.SerializerMethodField(help_text="The profiles it was enrolled for, judged by its probe.")
    registered_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    running = serializers.SerializerMethodField(help_text="The steps it holds a lease on now.")

    def get_status(self, device: Any) -> str:
        return devices.device_status(device)

    @extend_schema_field(DeviceJobSerializer(many=True))
    def get_running(self, device: Any) -> list[dict[str, Any]]:
        # One query per answer, however many devices it lists.
        context = cast(dict[str, Any], self.context)
        if "device_jobs" not in context:
            held: dict[str, list[dict[str, Any]]] = {}
            rows = Job.objects.filter(status=JobStatus.RUNNING, worker_host__startswith="device:").order_by("id")
            for job in rows.values("id", "kind", "profile__slug", "run__version_id", "attempt", "progress",
                                   "progress_message", "worker_host"):  # fmt: skip
                held.setdefault(job["worker_host"], []).append(
                    {
                        "id": job["id"],
                        "kind": job["kind"],
                        "profile": job["profile__slug"] or "",
                        "version": job["run__version_id"],
                        "attempt": job["attempt"],
                        "progress": job["progress"],
                        "progress_message": job["progress_message"],
                    }
                )
            context["device_jobs"] = held
        return list(context["device_jobs"].get(devices.holder(device), []))

    @extend_schema_field(DeviceServingSerializer(many=True))
    def get_serving(self, device: Any) -> list[dict[str, Any]]:
        return [{"profile": s.profile, "meets": not s.unmet, "unmet": s.sentence} for s in devices.serving(device)]


class RegisterInput(serializers.Serializer):
    token = serializers.CharField(help_text="The enrollment token a team admin made for this device.")
    name = serializers.CharField(max_length=100, help_text="The device's name in its team, e.g. its host name.")
    hardware = serializers.JSONField(help_text="The device's hardware probe (workers.engine.hardware).")
    runtimes = serializers.JSONField(required=False, help_text="Backend name -> version (null: not installed).")
    agent_version = serializers.CharField(required=False, allow_blank=True, max_length=40, default="")


class RegisteredSerializer(serializers.Serializer):
    device = DeviceSerializer()
    credential = serializers.CharField(
        help_text="Shown once: the agent keeps it (mode 0600) and sends it on every call."
    )


class BeatInput(serializers.Serializer):
    hardware = serializers.JSONField(required=False, help_text="The probe now, if it changed.")
    runtimes = serializers.JSONField(required=False)
    agent_version = serializers.CharField(required=False, max_length=40)


class LeaseInput(serializers.Serializer):
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=["validate", "parity", "benchmark"]),
        required=False,
        help_text="The steps this agent runs (default: all it may).",
    )
    wait = serializers.FloatField(
        required=False, default=20.0, min_value=0.0, max_value=25.0, help_text="Seconds to wait for work (long poll)."
    )


class LeaseSerializer(serializers.Serializer):
    """A leased job: run `order`, then post its progress and result naming its job and attempt."""

    order = serializers.SerializerMethodField()

    @extend_schema_field(WORK_ORDER_SCHEMA)
    def get_order(self, lease: Any) -> dict[str, Any]:
        return dict(lease["order"])


class LeaseProgressInput(serializers.Serializer):
    attempt = serializers.IntegerField(min_value=1)
    progress = serializers.FloatField(min_value=0.0, max_value=1.0)
    message = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class LeaseResultInput(serializers.Serializer):
    attempt = serializers.IntegerField(min_value=1)
    result = serializers.JSONField(required=False, help_text="The step's report, when it ran to the end.")
    error = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=4000),
        required=False,
        help_text="{code, message} when the step could not run.",
    )
    log = serializers.CharField(required=False, allow_blank=True, default="", max_length=200_000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("result" in attrs) == ("error" in attrs):
            raise serializers.ValidationError("Send either result (the step's report) or error ({code, message}).")
        if "error" in attrs and not str(attrs["error"].get("message") or "").strip():
            raise serializers.ValidationError({"error": "Say what went wrong in error.message."})
        return attrs


class LeaseRecordedSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    attempt = serializers.IntegerField()
    status = serializers.CharField(help_text="The job's status after the post.")


class RotatedSerializer(serializers.Serializer):
    credential = serializers.CharField(
        help_text="The new device credential, shown once; the one this call was made with works for an hour more, "
        "or until this one is first used."
    )
