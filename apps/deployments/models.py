"""Serving targets (the inference servers a team deploys to) and deployments (one approved
variant pushed to one target, with what happened to it)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.crypto import EncryptedTextField
from apps.core.durable import DurableWork


class BackendMode(models.TextChoices):
    NATIVE = "native", "Triton's own backend for the variant's format"
    PYTHON = "python", "Triton's python backend running Slipway's engine backend"


class ServingTarget(models.Model):
    """An inference server of a team, and where its model repository is.

    `repository` is the model repository as the deploying workers reach it: an absolute
    directory or `s3://bucket/prefix`. `profile` is the hardware profile the server runs:
    its variants are the ones deployed there. `options` hold the driver's other, non-secret
    settings (python_paths, repository_options, timeouts: what its kind's driver declares);
    `credentials` the secret ones (request headers, S3 keys), encrypted at rest and never
    shown back. The health fields are the last check; the metrics fields the last reading of
    its metrics endpoint (the numbers are `TargetMetricSample`s).
    """

    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="serving_targets")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=63, help_text="Used in URLs and paths; unique in the team.")
    # A kind in workers.engine.targets.registry.DRIVERS, checked by the services (a kind needs
    # its driver, not a migration). Rows of kinds an earlier release offered stay readable.
    kind = models.CharField(max_length=20, default="triton", help_text="The kind of server (its driver).")
    # Checked by apps.core.outbound.check_outbound_url (scheme, host, public address), not a validator.
    url = models.CharField(max_length=2000, blank=True, help_text="The server's HTTP endpoint.")
    repository = models.CharField(max_length=1000, help_text="Absolute directory or s3://bucket/prefix.")
    backend_mode = models.CharField(max_length=10, choices=BackendMode.choices, default=BackendMode.NATIVE)
    profile = models.ForeignKey("runtimes.HardwareProfile", on_delete=models.PROTECT, related_name="+")
    options = models.JSONField(default=dict, blank=True, help_text="Non-secret driver settings.")
    credentials = EncryptedTextField(  # type: ignore[misc]  # None: no secrets set
        null=True, blank=True, help_text="A JSON object of secrets (headers, S3 keys, tokens), Fernet-encrypted."
    )
    enabled = models.BooleanField(default=True)
    allow_private = models.BooleanField(
        default=False, help_text="Whether the URL may point to a private address (set by a team admin)."
    )
    allow_private_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    allow_private_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    health_checked_at = models.DateTimeField(null=True, blank=True)
    healthy = models.BooleanField(null=True, blank=True, help_text="Live at the last check (None: never checked).")
    health_ready = models.BooleanField(null=True, blank=True, help_text="Ready at the last check.")
    server_version = models.CharField(max_length=100, blank=True)
    health_detail = models.TextField(blank=True)
    health_check_requested_at = models.DateTimeField(null=True, blank=True)
    health_changed_at = models.DateTimeField(
        null=True, blank=True, help_text="When `healthy` last changed (the first check counts as a change)."
    )
    metrics_sampled_at = models.DateTimeField(null=True, blank=True, help_text="When its metrics were last read.")
    metrics_source = models.CharField(max_length=2000, blank=True, help_text="The metrics URL last read.")
    metrics_detail = models.TextField(blank=True, help_text="Why the last reading gave no numbers; empty when it did.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "slug"], name="serving_target_slug_unique_per_team")]

    def __str__(self) -> str:
        return f"{self.team.slug}/{self.slug}"


class DeploymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PUSHING = "pushing", "Pushing"
    LIVE = "live", "Live"
    FAILED = "failed", "Failed"
    UNDEPLOYING = "undeploying", "Undeploying"
    ROLLED_BACK = "rolled_back", "Rolled back"
    RETIRED = "retired", "Retired"


# A worker is (or should be) acting on these; one at a time per model and target.
IN_PROGRESS = (DeploymentStatus.PENDING, DeploymentStatus.PUSHING, DeploymentStatus.UNDEPLOYING)
FINISHED = (DeploymentStatus.FAILED, DeploymentStatus.ROLLED_BACK, DeploymentStatus.RETIRED)


class DeploymentKind(models.TextChoices):
    DEPLOY = "deploy", "Deploy"
    ROLLBACK = "rollback", "Rollback"


class Deployment(DurableWork):
    """One variant of an approved version pushed to one serving target, and its fate.

    pending -> pushing -> live | failed; a live deployment later becomes retired (replaced
    by a newer one, or undeployed: live -> undeploying -> retired) or rolled_back (a
    rollback deployment put the one before it back). At most one deployment per model and
    target is live, and at most one is in progress: the live one keeps serving until the
    new one passed its smoke test, and both change in one transaction.

    The work follows the jobs' rules (docs/adr/0002): a worker claims the row with a
    conditional UPDATE that increments `attempt`, every later write is fenced by that
    attempt, a heartbeat says it is alive, and the reconciler takes back rows whose worker
    went silent.
    """

    target = models.ForeignKey(ServingTarget, on_delete=models.CASCADE, related_name="deployments")
    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="deployments")
    # Copied from the version, for the one-live-per-model constraint.
    model = models.ForeignKey("registry.RegisteredModel", on_delete=models.PROTECT, related_name="deployments")
    kind = models.CharField(max_length=10, choices=DeploymentKind.choices, default=DeploymentKind.DEPLOY)
    profile = models.ForeignKey("runtimes.HardwareProfile", on_delete=models.PROTECT, related_name="+")
    variant = models.CharField(max_length=100, help_text='The variant deployed, or "original" for the ONNX model.')
    artifact = models.ForeignKey(
        "registry.Artifact", on_delete=models.PROTECT, null=True, blank=True, related_name="deployments"
    )
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    engine_backend = models.CharField(max_length=40, blank=True)
    model_format = models.CharField(max_length=40, blank=True)
    precision = models.CharField(max_length=20, blank=True)
    decision = models.ForeignKey(
        "approvals.Decision", on_delete=models.PROTECT, null=True, blank=True, related_name="deployments"
    )
    evidence_sha256 = models.CharField(max_length=64, blank=True)
    tolerance = models.JSONField(default=dict, blank=True, help_text="The approved parity tolerance.")
    triton_model = models.CharField(max_length=100)
    triton_version = models.PositiveBigIntegerField()
    overrides = models.JSONField(default=dict, blank=True, help_text="Serving settings the requester chose.")
    serving = models.JSONField(default=dict, blank=True, help_text="Serving settings used, with reasons.")
    smoke = models.JSONField(default=dict, blank=True, help_text="The smoke tests' numbers.")
    steps = models.JSONField(default=list, blank=True, help_text="What the driver did, in order.")

    status = models.CharField(max_length=20, choices=DeploymentStatus.choices, default=DeploymentStatus.PENDING)
    status_reason = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    detail = models.TextField(blank=True, help_text="The server's own error text, verbatim.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    status_changed_at = models.DateTimeField(default=timezone.now)
    pushing_at = models.DateTimeField(null=True, blank=True)
    live_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    rolled_back_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    replaces = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The deployment that was live before this one went live.",
    )
    rollback_of = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="For a rollback: the live deployment it takes off.",
    )
    restores = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="For a rollback: the earlier deployment whose Triton version serves again.",
    )
    undeploy_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    undeploy_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["target", "model"],
                condition=models.Q(status="live"),
                name="deployment_one_live_per_model_and_target",
            ),
            models.UniqueConstraint(
                fields=["target", "model"],
                condition=models.Q(status__in=["pending", "pushing", "undeploying"]),
                name="deployment_one_in_progress_per_model_and_target",
            ),
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="deployment_status_heartbeat")]

    def __str__(self) -> str:
        return f"deployment {self.pk}: {self.triton_model} v{self.triton_version} on {self.target_id}"


class TargetMetricSample(models.Model):
    """One reading of a model version's counters on a serving target, as its metrics endpoint
    gave them (Triton's nv_inference_*), taken with the periodic health check.

    The counters add up from the server's start, so the numbers users see are differences
    between consecutive samples (apps.deployments.metrics); a counter that went down means
    the server restarted. Kept for a bounded time and count (`metrics.RETENTION`). None: the
    server does not export that counter.
    """

    target = models.ForeignKey(ServingTarget, on_delete=models.CASCADE, related_name="metric_samples")
    model_name = models.CharField(max_length=100)
    model_version = models.CharField(max_length=20)
    sampled_at = models.DateTimeField(default=timezone.now)
    request_success = models.FloatField(null=True, blank=True)
    request_failure = models.FloatField(null=True, blank=True)
    inference_count = models.FloatField(null=True, blank=True)
    execution_count = models.FloatField(null=True, blank=True)
    request_duration_us = models.FloatField(null=True, blank=True)
    queue_duration_us = models.FloatField(null=True, blank=True)
    compute_input_duration_us = models.FloatField(null=True, blank=True)
    compute_infer_duration_us = models.FloatField(null=True, blank=True)
    compute_output_duration_us = models.FloatField(null=True, blank=True)
    request_quantiles_us = models.JSONField(
        default=dict, blank=True, help_text='The server\'s own recent latency quantiles, e.g. {"0.5": 771.0}.'
    )

    class Meta:
        indexes = [
            models.Index(fields=["target", "model_name", "model_version", "sampled_at"], name="metric_sample_series"),
            models.Index(fields=["target", "sampled_at"], name="metric_sample_target_time"),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} v{self.model_version} on {self.target_id} at {self.sampled_at:%Y-%m-%d %H:%M:%S}"
