"""Hardware profiles: where variants are meant to run, and which worker queue serves them."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models


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
    queues = models.JSONField(default=list, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name
