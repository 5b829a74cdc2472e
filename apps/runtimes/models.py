"""Hardware profiles: where variants are meant to run, and which worker queue serves them."""

from __future__ import annotations

from django.db import models

from workers.engine.backends.base import HardwareProfile as EngineProfile


class DeviceKind(models.TextChoices):
    CPU = "cpu", "CPU"
    GPU = "gpu", "GPU"


class HardwareProfile(models.Model):
    """A target class of hardware, e.g. `x86-cpu`: the backends and precisions allowed on it,
    and the Celery queue whose workers have that hardware (benchmarks are only valid there)."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    device_kind = models.CharField(max_length=10, choices=DeviceKind.choices)
    backends = models.JSONField(default=list, help_text='Runtime backend names, e.g. ["onnxruntime", "openvino"].')
    precisions = models.JSONField(default=list, help_text="Allowed precisions: fp32, fp16, int8, int8-weights.")
    queue = models.CharField(max_length=50, help_text="Celery queue consumed by workers with this hardware.")
    options = models.JSONField(default=dict, blank=True, help_text="Defaults such as batch sizes and tolerances.")
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.slug

    def to_engine(self) -> EngineProfile:
        return EngineProfile(
            name=self.slug,
            device_kind=self.device_kind,  # type: ignore[arg-type]
            backends=tuple(self.backends),
            precisions=tuple(self.precisions),
            queue=self.queue,
            options=dict(self.options),
        )
