"""Hardware profiles: where variants are meant to run, and which worker queue serves them."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class DeviceKind(models.TextChoices):
    CPU = "cpu", "CPU"
    GPU = "gpu", "GPU"


class HardwareProfile(models.Model):
    """A target class of hardware, e.g. `x86-cpu`: the backends and precisions allowed on it,
    what a machine must have to measure for it (`requirements`, checked against each worker's
    own probe by `workers.engine.hardware.unmet_requirements`), and the Celery queue its work
    goes to. A worker that does not meet the requirements never runs the profile's work, even
    when it consumes the queue: measurements are only valid on the hardware the profile names."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    device_kind = models.CharField(max_length=10, choices=DeviceKind.choices)
    backends = models.JSONField(default=list, help_text='Runtime backend names, e.g. ["onnxruntime", "openvino"].')
    precisions = models.JSONField(default=list, help_text="Allowed precisions: fp32, fp16, bf16, int8, int8-weights.")
    queue = models.CharField(max_length=50, help_text="Celery queue consumed by workers with this hardware.")
    requirements = models.JSONField(
        default=dict,
        blank=True,
        help_text='What a machine must have: arch ("x86_64", "aarch64"), cpu_features, accelerator ("cuda").',
    )
    options = models.JSONField(default=dict, blank=True, help_text="Defaults such as batch sizes and tolerances.")
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        """Requirements a machine can be checked against, normalised ("arm64" -> "aarch64"), and
        backends that exist and whose runtimes ship for the architectures required."""
        from workers.engine.backends.registry import BACKENDS
        from workers.engine.hardware import check_requirements

        try:
            self.requirements = check_requirements(self.requirements)
        except ValueError as exc:
            raise ValidationError({"requirements": str(exc)}) from None
        names = self.backends if isinstance(self.backends, list) else []
        unknown = [name for name in names if name not in BACKENDS]
        if unknown:
            known = ", ".join(sorted(BACKENDS))
            raise ValidationError({"backends": f"No backend is named {', '.join(map(repr, unknown))}; known: {known}."})
        extra = (self.options or {}).get("report_backends") if isinstance(self.options, dict) else None
        if extra is not None and (
            not isinstance(extra, list) or any(not isinstance(name, str) or name not in BACKENDS for name in extra)
        ):
            known = ", ".join(sorted(BACKENDS))
            raise ValidationError(
                {"options": f"options.report_backends must be a list of backend names (known: {known}); got {extra!r}."}
            )
        arches = set(self.requirements.get("arch") or ())
        for name in names:
            shipped = BACKENDS[name].architectures
            if arches and not arches & set(shipped):
                raise ValidationError(
                    {
                        "backends": f"{name} ships for {', '.join(shipped)} only, and this profile requires "
                        f"{', '.join(sorted(arches))}: drop {name} or the architecture requirement."
                    }
                )


class Worker(models.Model):
    """A Celery worker process as it describes itself at start and by heartbeat: its hardware,
    the runtimes and importers installed, and the queues it consumes."""

    name = models.CharField(max_length=255, unique=True, help_text="Celery node name, e.g. cpu@host-1.")
    host = models.CharField(max_length=255)
    arch = models.CharField(max_length=32, blank=True)
    cpu_model = models.CharField(max_length=255, blank=True)
    cpu_flags = models.JSONField(default=list, blank=True)
    cores = models.PositiveIntegerField(default=0)
    memory_bytes = models.BigIntegerField(default=0)
    gpus = models.JSONField(default=list, blank=True)
    runtimes = models.JSONField(default=dict, blank=True, help_text="Backend name -> version (null: not installed).")
    importers = models.JSONField(default=list, blank=True, help_text="Framework formats this worker can import.")
    framework_envs = models.JSONField(
        default=dict,
        blank=True,
        help_text="Framework environments built on this worker: name -> {framework, packages} (docs/adr/0017).",
    )
    queues = models.JSONField(default=list, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


DEVICE_CREDENTIAL_PREFIX = "sld"
ENROLLMENT_TOKEN_PREFIX = "sle"  # noqa: S105 - a public marker, not a secret


class DeviceEnrollment(models.Model):
    """A one-time registration token a team admin made for one device, and the profiles that
    device may serve. Only the token's hash is kept; the token is shown once."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="device_enrollments")
    name = models.CharField(max_length=100, blank=True, help_text="What the admin called the device it is for.")
    key_id = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    profiles = models.ManyToManyField(HardwareProfile, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"enrollment {self.key_id} for {self.team_id}"


class Device(models.Model):
    """A machine outside the cluster that runs the Slipway agent: it registered with an
    enrollment token and holds a device credential (only its hash is kept) scoped to the
    profiles it may serve. `hardware` is its own probe (`workers.engine.hardware`), the same
    facts a worker registers: what it is judged by, never what it was said to be."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="devices")
    name = models.CharField(max_length=100)
    profiles = models.ManyToManyField(HardwareProfile, related_name="devices")
    enrollment = models.OneToOneField(
        DeviceEnrollment, on_delete=models.SET_NULL, null=True, blank=True, related_name="device"
    )
    key_id = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    hardware = models.JSONField(default=dict, help_text="The device's own hardware probe, as last reported.")
    runtimes = models.JSONField(default=dict, blank=True, help_text="Backend name -> version (null: not installed).")
    agent_version = models.CharField(max_length=40, blank=True)
    registered_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    credential_rotated_at = models.DateTimeField(null=True, blank=True)
    # The credential before the last rotation, still accepted until `previous_valid_until` or
    # until the new one is first used: a rotation whose answer was lost locks nobody out.
    previous_key_id = models.CharField(max_length=16, blank=True, db_index=True)
    previous_key_hash = models.CharField(max_length=64, blank=True)
    previous_valid_until = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "name"], condition=models.Q(revoked_at__isnull=True), name="device_name_unique_in_team"
            )
        ]

    def __str__(self) -> str:
        return f"device {self.name} ({self.team_id})"

    @property
    def rate_limit_key(self) -> str:
        """What the API's rate limits count this device's requests under (apps/core/api/throttling.py)."""
        return f"device:{self.key_id}"
