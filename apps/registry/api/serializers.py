"""API representations of models, versions, artifacts, runs and jobs."""

from __future__ import annotations

from typing import Any, cast

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.accounts.models import Team
from apps.core.api.parsers import JSONField
from apps.core.api.schema import REPORTS_SCHEMA
from apps.hardware.services import answer_services, answer_teams, live_queues, no_worker_note, wrong_hardware
from apps.pipeline.api.compare import PreviousApprovedSerializer
from apps.pipeline.api.queues import JobEstimateSerializer
from apps.pipeline.compare import previous_approved
from apps.pipeline.models import Job, JobStatus, PipelineRun
from apps.pipeline.queue_state import outlook
from apps.pipeline.services import needs_hardware
from apps.registry.models import Artifact, ModelVersion, RegisteredModel


class TeamSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ["slug", "name", "role", "created_at"]

    def get_role(self, team: Team) -> str | None:
        roles: dict[int, str] = self.context.get("roles", {})
        return roles.get(team.pk)


class ArtifactSerializer(serializers.ModelSerializer):
    parent_id = serializers.IntegerField(allow_null=True, read_only=True)
    job_id = serializers.IntegerField(allow_null=True, read_only=True)
    download_url = serializers.SerializerMethodField(
        help_text="Where to download the artifact's bytes (a path on this server; the answer's X-Slipway-SHA256 "
        "header carries their sha256)."
    )

    class Meta:
        model = Artifact
        fields = [
            "id",
            "kind",
            "name",
            "format",
            "sha256",
            "size",
            "original_filename",
            "parent_id",
            "job_id",
            "tool_versions",
            "metadata",
            "created_at",
            "download_url",
        ]

    def get_download_url(self, artifact: Artifact) -> str:
        return reverse("artifact-download", kwargs={"pk": artifact.pk})


class JobSerializer(serializers.ModelSerializer):
    profile: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True, help_text="Null for steps that run once per version."
    )
    worker_note = serializers.SerializerMethodField(
        help_text="For a queued or running step: a sentence when no live worker serves its queue (it waits, or "
        "its worker stopped), instead of it looking queued or running forever. Null otherwise."
    )
    queue_position = serializers.SerializerMethodField(
        help_text="For a queued step: its place in its queue, 1 being the next a worker takes (later steps of "
        "started pipelines go first where the broker serves priorities, then first come, first served). Null "
        "otherwise."
    )
    ahead = serializers.SerializerMethodField(
        help_text="For a queued step: how many queued steps of all teams a worker takes before it. Null otherwise."
    )
    estimate = serializers.SerializerMethodField(
        help_text="For a queued step: about when it starts; for a running one: how long it has run and usually "
        "runs. Each says what it comes from, or why there is no figure. Null otherwise."
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "profile",
            "sequence",
            "status",
            "queue",
            "progress",
            "progress_message",
            "attempt",
            "max_attempts",
            "worker_host",
            "enqueued_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
            "error",
            "error_code",
            "worker_note",
            "queue_position",
            "ahead",
            "estimate",
        ]

    def get_worker_note(self, job: Job) -> str | None:
        if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return None
        if job.profile is not None and needs_hardware(job.kind, job.profile):
            # A worker that takes the queue but lacks the profile's hardware does not count; a
            # device counts for its own team's jobs.
            service = answer_services(self.context).get(job.profile.slug)
            note = service.note(answer_teams(self.context)) if service is not None else ""
            if note and job.status == JobStatus.RUNNING:
                note = "The worker running this step stopped. " + note
            return note or None
        # One query per answer, however many jobs it lists (the context is the whole answer's dict).
        context = cast(dict[str, Any], self.context)
        if "live_queues" not in context:
            context["live_queues"] = live_queues()
        if job.queue in context["live_queues"]:
            return None
        return no_worker_note(job.queue, running=job.status == JobStatus.RUNNING)

    # One `Outlook` per answer (apps/pipeline/queue_state.py): what the places need is looked up once.
    def get_queue_position(self, job: Job) -> int | None:
        return outlook(self.context).place(job).position

    def get_ahead(self, job: Job) -> int | None:
        return outlook(self.context).place(job).ahead

    @extend_schema_field(JobEstimateSerializer(allow_null=True))
    def get_estimate(self, job: Job) -> dict[str, Any] | None:
        estimate = outlook(self.context).place(job).estimate
        return estimate.to_dict() if estimate is not None else None


class JobDetailSerializer(JobSerializer):
    run_id = serializers.IntegerField(read_only=True)

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "run_id", "log", "result"]


class RunSerializer(serializers.ModelSerializer):
    jobs = JobSerializer(many=True, read_only=True)

    class Meta:
        model = PipelineRun
        fields = ["id", "status", "created_at", "started_at", "finished_at", "jobs"]


class ProfileReadinessSerializer(serializers.Serializer):
    """One hardware profile's readiness in the latest run (apps/pipeline/outcomes.py)."""

    profile = serializers.CharField()
    status = serializers.ChoiceField(choices=["ready", "failed", "processing"])
    reason = serializers.CharField(help_text="Why the profile has no measured evidence; empty when ready.")
    step = serializers.CharField(allow_null=True, help_text="The step that failed, when one did.")
    hardware_note = serializers.CharField(
        help_text="When a worker that ran the profile's steps does not meet its hardware requirements (by its own "
        "probe): what it was, and that the figures are not the profile's hardware's; empty otherwise."
    )
    service_note = serializers.CharField(
        help_text="While processing: why the profile's steps wait (no live worker meets its hardware "
        "requirements), and how to connect one; empty when something serves it."
    )


class VersionSummarySerializer(serializers.ModelSerializer):
    model: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    team = serializers.CharField(source="model.team.slug", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "team",
            "model",
            "number",
            "framework",
            "status",
            "status_reason",
            "status_changed_at",
            "notes",
            "input_spec",
            "created_by",
            "created_at",
        ]


class VersionDetailSerializer(VersionSummarySerializer):
    source_artifact = ArtifactSerializer(read_only=True)
    artifacts = ArtifactSerializer(many=True, read_only=True)
    latest_run = serializers.SerializerMethodField()
    reports = serializers.SerializerMethodField()
    approval = serializers.SerializerMethodField()
    profile_readiness = serializers.SerializerMethodField()
    previous_approved = serializers.SerializerMethodField(
        help_text="This version against the model's previous approved version, per profile, computed when read "
        "(so it follows later approvals and revocations); null when there is no earlier approved version."
    )
    rerun_blocked = serializers.SerializerMethodField(
        help_text="Why running the pipeline again would fail the same way (the latest run failed on something only "
        "a new upload can give, such as an input signature), with what to do instead; empty when a re-run may help."
    )

    class Meta(VersionSummarySerializer.Meta):
        fields = [
            *VersionSummarySerializer.Meta.fields,
            "profile_readiness",
            "approval",
            "tolerance",
            "objective",
            "p99_budget_ms",
            "benchmark_settings",
            "input_declarations",
            "output_declarations",
            "source_artifact",
            "artifacts",
            "latest_run",
            "reports",
            "previous_approved",
            "rerun_blocked",
        ]

    def _latest_run(self, version: ModelVersion) -> PipelineRun | None:
        runs = list(version.runs.all())  # prefetched, newest first
        return runs[0] if runs else None

    def get_approval(self, version: ModelVersion) -> dict[str, Any]:
        """Whether the version is approved and the approval still matches its evidence."""
        from apps.approvals.services import approval_state

        return approval_state(version)

    def get_latest_run(self, version: ModelVersion) -> dict[str, Any] | None:
        run = self._latest_run(version)
        return RunSerializer(run, context=self.context).data if run else None

    @extend_schema_field(ProfileReadinessSerializer(many=True))
    def get_profile_readiness(self, version: ModelVersion) -> list[dict[str, Any]]:
        """Per hardware profile of the latest run: ready (measured evidence) or failed with the
        reason, so a version that is ready overall still says which profiles have no numbers."""
        from apps.pipeline.outcomes import profile_outcomes

        run = self._latest_run(version)
        if run is None:
            return []
        jobs = list(run.jobs.all())
        outcomes = [o.to_dict() for o in profile_outcomes(run, jobs)]
        waiting = [o["profile"] for o in outcomes if o["status"] == "processing"]
        services = answer_services(self.context) if waiting else {}
        profiles = {job.profile.slug: job.profile for job in jobs if job.profile is not None}
        for outcome in outcomes:
            service = services.get(outcome["profile"]) if outcome["status"] == "processing" else None
            outcome["service_note"] = service.note([version.model.team_id]) if service is not None else ""
            profile = profiles.get(outcome["profile"])
            hosts = [
                job.worker_host
                for job in jobs
                if job.profile is not None
                and job.profile.slug == outcome["profile"]
                and needs_hardware(job.kind, job.profile)
            ]
            outcome["hardware_note"] = wrong_hardware(profile, hosts) if profile is not None else ""
        return outcomes

    def get_rerun_blocked(self, version: ModelVersion) -> str:
        from apps.approvals.services import rerun_blocker

        return rerun_blocker(version)

    @extend_schema_field(PreviousApprovedSerializer(allow_null=True))
    def get_previous_approved(self, version: ModelVersion) -> dict[str, Any] | None:
        """The "previous approved version" card (`apps.pipeline.compare.previous_approved`)."""
        return previous_approved(version)

    @extend_schema_field(REPORTS_SCHEMA)
    def get_reports(self, version: ModelVersion) -> dict[str, Any]:
        """Each finished step's report from the latest run: by step kind, then by profile for
        steps that run per hardware profile (validate, optimize)."""
        run = self._latest_run(version)
        if run is None:
            return {}
        reports: dict[str, Any] = {}
        for job in run.jobs.all():
            if job.status != JobStatus.SUCCEEDED or job.result is None:
                continue
            if job.profile is not None:
                reports.setdefault(job.kind, {})[job.profile.slug] = job.result
            else:
                reports[job.kind] = job.result
        return reports


class ModelSerializer(serializers.ModelSerializer):
    team: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = [
            "id",
            "team",
            "name",
            "slug",
            "description",
            "created_by",
            "created_at",
            "latest_version",
        ]

    def get_latest_version(self, model: RegisteredModel) -> dict[str, Any] | None:
        versions = list(model.versions.all())  # prefetched, newest first
        return VersionSummarySerializer(versions[0]).data if versions else None


class ModelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    slug = serializers.SlugField(max_length=100, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    team = serializers.SlugField(
        required=False, allow_blank=True, help_text="Team slug; needed if you are in several teams."
    )


class VersionUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        allow_empty_file=True,  # refused by the upload service with a clearer sentence
        help_text="An ONNX model (.onnx), or a .zip holding model.onnx plus its external data files.",
    )
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)
    team = serializers.SlugField(
        required=False,
        allow_blank=True,
        help_text="Team for a model created by this upload; needed only when you may upload in several teams.",
    )
    profiles = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Comma-separated hardware profile slugs (default: the server's SLIPWAY_DEFAULT_PROFILES).",
    )
    inputs = JSONField(
        required=False,
        help_text="Input signature for formats that don't carry one, e.g. "
        '[{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]. Symbolic dims stay dynamic. '
        "Required for TorchScript, and for an MXNet symbol none of whose variables records a shape: the upload "
        "is refused without it. Refused for ONNX uploads, whose file carries its signature: declare what the "
        "inputs take with input_declarations instead.",
    )
    input_declarations = JSONField(
        required=False,
        help_text="What the inputs take, used when Slipway generates inputs (no validation or calibration set) "
        'and to read your arrays: {"inputs": {name: {"kind": image | token_ids | attention_mask | audio | state | '
        'values | features, "value": 16000, "values": [8000, 16000], "range": [0, 1], "batch_axis": 1}}, '
        '"dims": {symbolic dim: {"min": 320, "max": 1280, "step": 32, "typical": 640}}}. '
        "What is not declared is inferred from the model, and the reports say what was assumed.",
    )
    output_declarations = JSONField(
        required=False,
        help_text='What each output is, so that parity judges it by metrics that fit it: {name: {"kind": '
        "classifier | detection | embedding | segmentation | regression | raw, ...}}. A detection head also "
        'says where its columns are: {"output0": {"kind": "detection", "boxes": [0, 4], "scores": [4, 84], '
        '"box_format": "cxcywh" | "xyxy" | "xywh", "objectness": null, "axis": -1, "score_threshold": 0.25, '
        '"iou_threshold": 0.45, "match_iou": 0.5}}; a classifier may set "top_k" (5). Outputs not declared '
        "get the kind inspection reads from the graph, shown with its reason in the inspection report.",
    )
    validation = serializers.FileField(
        required=False,
        allow_empty_file=True,
        help_text="Inputs every variant is compared on against the FP32 reference: an .npz, one array per input.",
    )
    tolerance = JSONField(
        required=False,
        help_text='Accuracy tolerance, e.g. {"max_abs_error": 1e-3, "min_cosine": 0.999, "min_top1_agreement": 0.99}. '
        "Defaults come from the hardware profile; the model's own overrides win.",
    )
    objective = serializers.ChoiceField(
        choices=["p99_latency_batch1", "throughput_within_p99_budget"], required=False, default="p99_latency_batch1"
    )
    p99_budget_ms = serializers.FloatField(required=False, allow_null=True, default=None)
    benchmark = JSONField(
        required=False,
        help_text='Benchmark sweep, e.g. {"batch_sizes": [1, 8], "concurrency": [1, 4]}; '
        "the hardware profile's defaults otherwise.",
    )
    calibration = serializers.FileField(
        required=False,
        allow_empty_file=True,
        help_text="Representative inputs for INT8 static quantization: an .npz with one array per model input.",
    )
