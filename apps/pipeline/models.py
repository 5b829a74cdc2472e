"""Pipeline runs and their jobs: the source of truth for all background work."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.durable import DurableWork


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class PipelineRun(models.Model):
    """One pass of the pipeline over a model version: an ordered list of jobs."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"run {self.pk} of {self.version}"


class JobKind(models.TextChoices):
    IMPORT = "import", "Import to ONNX"
    INSPECT = "inspect", "Inspect"
    VALIDATE = "validate", "Validate op support"
    OPTIMIZE = "optimize", "Optimize"
    BENCHMARK = "benchmark", "Benchmark"
    PARITY = "parity", "Accuracy parity"
    RECOMMEND = "recommend", "Recommend"


class JobStatus(models.TextChoices):
    PENDING = "pending", "Waiting for earlier steps"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_JOB_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class Job(DurableWork):
    """One step of a run, executed by a worker.

    A worker claims a job with a conditional UPDATE (queued -> running) that also bumps
    `attempt`; every later write by that worker is conditioned on the same attempt, so a
    worker that was presumed dead and replaced can't overwrite its successor's work.
    """

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=20, choices=JobKind.choices)
    sequence = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.PENDING)
    queue = models.CharField(max_length=50, default="cpu")
    profile = models.ForeignKey(
        "runtimes.HardwareProfile",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The hardware profile this step works for (validate, optimize, benchmark).",
    )
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    log = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "sequence"], name="job_sequence_unique_per_run"),
            models.CheckConstraint(condition=models.Q(progress__gte=0.0, progress__lte=1.0), name="job_progress_0_1"),
        ]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["status", "enqueued_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"


class InspectionGraph(models.Model):
    """The model's graph as the browser draws it (`workers.engine.graph_view.GraphView.to_dict`),
    read by the inspect job in the sandbox. Kept apart from the job's report: a graph runs to
    hundreds of kilobytes, and the reports go out with every version page and evidence snapshot."""

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="graph")
    data = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"graph of job {self.job_id}"


class TrialStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Trial(models.Model):
    """One playground run: the original model and the chosen variants on one input a user gave
    (an image, WAV, .npz or JSON), run by a worker in the sandbox (`workers.engine.playground`).

    The input's bytes are a blob in artifact storage (`input_key`, by its sha256); `result` holds
    bounded summaries only (top classes, boxes, statistics, the difference from the original),
    never whole output arrays. A worker claims the row with a conditional UPDATE (queued ->
    running) and writes the outcome once."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE, related_name="trials")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    input_name = models.CharField(max_length=255, help_text="The file name as uploaded.")
    input_key = models.CharField(max_length=255, help_text="The input's blob in artifact storage.")
    input_sha256 = models.CharField(max_length=64)
    input_size = models.BigIntegerField()
    preprocessing = models.JSONField(
        default=dict, blank=True, help_text="The user's changes to the image preprocessing."
    )
    variants = models.JSONField(default=list, blank=True, help_text="Variant names run beside the original.")
    status = models.CharField(max_length=20, choices=TrialStatus.choices, default=TrialStatus.QUEUED)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="What went wrong, as a sentence for the user.")
    error_code = models.CharField(max_length=50, blank=True)
    worker_host = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["version", "-created_at"])]

    def __str__(self) -> str:
        return f"trial {self.pk} of {self.version_id} ({self.status})"
