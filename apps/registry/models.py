"""Registered models, their versions, and the artifacts (files) each version has produced."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.accounts.models import Team


class RegisteredModel(models.Model):
    """A named model a team ships, e.g. `fraud-scorer`. Its versions are the uploads."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="models")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    tolerance = models.JSONField(
        default=dict,
        blank=True,
        help_text='Accuracy tolerance overrides for every version of this model, e.g. {"min_cosine": 0.999}.',
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "slug"], name="model_slug_unique_per_team")]

    def __str__(self) -> str:
        return f"{self.team.slug}/{self.slug}"


class Framework(models.TextChoices):
    ONNX = "onnx", "ONNX"
    PYTORCH = "pytorch", "PyTorch"
    TENSORFLOW = "tensorflow", "TensorFlow"
    KERAS = "keras", "Keras"
    SKLEARN = "sklearn", "scikit-learn"
    XGBOOST = "xgboost", "XGBoost"
    LIGHTGBM = "lightgbm", "LightGBM"
    TFLITE = "tflite", "TFLite"
    CAFFE = "caffe", "Caffe"
    MXNET = "mxnet", "MXNet"
    PADDLEPADDLE = "paddlepaddle", "PaddlePaddle"


class VersionStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready for review"
    FAILED = "failed", "Failed"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    REVOKED = "revoked", "Revoked"


# Allowed moves of the version state machine; everything else is refused.
VERSION_TRANSITIONS: dict[str, frozenset[str]] = {
    VersionStatus.RECEIVED: frozenset({VersionStatus.PROCESSING, VersionStatus.FAILED}),
    VersionStatus.PROCESSING: frozenset({VersionStatus.READY, VersionStatus.FAILED}),
    VersionStatus.READY: frozenset({VersionStatus.PROCESSING, VersionStatus.APPROVED, VersionStatus.REJECTED}),
    VersionStatus.FAILED: frozenset({VersionStatus.PROCESSING}),
    # A re-run of an approved version replaces its evidence, so the approval stops applying.
    VersionStatus.APPROVED: frozenset({VersionStatus.REVOKED, VersionStatus.PROCESSING}),
    VersionStatus.REJECTED: frozenset({VersionStatus.PROCESSING}),
    VersionStatus.REVOKED: frozenset({VersionStatus.PROCESSING}),
}


class ModelVersion(models.Model):
    """One uploaded version of a registered model, numbered 1, 2, 3... per model."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    framework = models.CharField(max_length=20, choices=Framework.choices)
    status = models.CharField(max_length=20, choices=VersionStatus.choices, default=VersionStatus.RECEIVED)
    status_reason = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    source_artifact = models.ForeignKey(
        "registry.Artifact", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    notes = models.TextField(blank=True)
    input_spec = models.JSONField(
        default=list,
        blank=True,
        help_text="Inputs declared at upload: [{name, shape (ints or symbolic names), dtype}].",
    )
    input_declarations = models.JSONField(
        default=dict,
        blank=True,
        help_text='What the inputs take, declared at upload or after: {"inputs": {name: {"kind", "value", "values", '
        '"range", "batch_axis"}}, "dims": {symbolic dim: {"min", "max", "step", "typical"}}}.',
    )
    output_declarations = models.JSONField(
        default=dict,
        blank=True,
        help_text='What each output is, declared at upload or after: {name: {"kind": classifier | detection | '
        "embedding | segmentation | regression | raw, ...layout}}.",
    )
    profiles = models.ManyToManyField(
        "runtimes.HardwareProfile",
        blank=True,
        related_name="+",
        help_text="Hardware profiles to validate, optimize and benchmark this version for.",
    )
    calibration = models.ForeignKey(
        "registry.Artifact",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Representative inputs (.npz) for static quantization.",
    )
    validation = models.ForeignKey(
        "registry.Artifact",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Inputs (.npz) every variant is compared on against the FP32 reference.",
    )
    tolerance = models.JSONField(
        default=dict, blank=True, help_text="Accuracy tolerance given at upload (the model's overrides win)."
    )
    objective = models.CharField(
        max_length=40,
        default="p99_latency_batch1",
        help_text="How the recommendation ranks variants: p99_latency_batch1 or throughput_within_p99_budget.",
    )
    p99_budget_ms = models.FloatField(null=True, blank=True, help_text="The p99 latency budget for the objective.")
    benchmark_settings = models.JSONField(
        default=dict,
        blank=True,
        help_text='Sweep chosen at upload, e.g. {"batch_sizes": [1, 8], "concurrency": [1, 4]}; '
        "the hardware profile's defaults otherwise.",
    )
    four_eyes = models.BooleanField(
        default=True,
        help_text="Whether the uploader is barred from approving this version: the team's four-eyes rule when "
        "it was uploaded, turned on (never off) if the team turns the rule on later.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "number"], name="version_number_unique_per_model")]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.model} v{self.number}"


class ArtifactKind(models.TextChoices):
    SOURCE = "source", "Uploaded source"
    ONNX = "onnx", "Converted ONNX"
    VARIANT = "variant", "Optimized variant"
    CALIBRATION = "calibration", "Calibration data"
    VALIDATION = "validation", "Validation data"


class Artifact(models.Model):
    """A file a version owns: the upload, its ONNX conversion, or an optimized variant.

    The bytes live once in content-addressed storage (`storage_key` is derived from the
    sha256), so two artifacts with the same content share one blob. Lineage: `parent` is
    the artifact this one was made from and `job` the pipeline step that made it.
    """

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="artifacts")
    kind = models.CharField(max_length=20, choices=ArtifactKind.choices)
    name = models.CharField(max_length=100)
    format = models.CharField(max_length=30)
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.BigIntegerField()
    storage_key = models.CharField(max_length=255)
    original_filename = models.CharField(max_length=255, blank=True)
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="children")
    job = models.ForeignKey("jobs.Job", on_delete=models.PROTECT, null=True, blank=True, related_name="artifacts")
    tool_versions = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # A retried step re-creates the same outputs: keyed by job, they can't double up.
            models.UniqueConstraint(
                fields=["job", "name"],
                condition=models.Q(job__isnull=False),
                name="artifact_unique_per_job",
            ),
            models.CheckConstraint(condition=models.Q(size__gte=0), name="artifact_size_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sha256[:12]})"
