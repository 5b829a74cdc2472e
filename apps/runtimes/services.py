"""Writes to the worker registry: workers announce themselves, beat, and sign off."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.runtimes.models import Worker


def register_worker(name: str, *, hardware: dict[str, Any], runtimes: dict[str, str | None], importers: list[str],
                    queues: list[str], pid: int) -> Worker:  # fmt: skip
    now = timezone.now()
    worker, _ = Worker.objects.update_or_create(
        name=name,
        defaults={
            "host": hardware.get("host", ""),
            "arch": hardware.get("arch", ""),
            "cpu_model": hardware.get("cpu_model", "")[:255],
            "cpu_flags": list(hardware.get("cpu_flags", [])),
            "cores": hardware.get("cores", 0),
            "memory_bytes": hardware.get("memory_bytes", 0),
            "gpus": list(hardware.get("gpus", [])),
            "runtimes": runtimes,
            "importers": importers,
            "queues": queues,
            "pid": pid,
            "started_at": now,
            "last_heartbeat_at": now,
            "stopped_at": None,
        },
    )
    return worker


def heartbeat(name: str) -> bool:
    return bool(Worker.objects.filter(name=name, stopped_at__isnull=True).update(last_heartbeat_at=timezone.now()))


def mark_stopped(name: str) -> None:
    Worker.objects.filter(name=name).update(stopped_at=timezone.now())


def worker_status(worker: Worker) -> str:
    """online, stale (no heartbeat for SLIPWAY_WORKER_STALE_AFTER_SECONDS) or stopped."""
    if worker.stopped_at is not None:
        return "stopped"
    if worker.last_heartbeat_at < timezone.now() - timedelta(seconds=settings.WORKER_STALE_AFTER_SECONDS):
        return "stale"
    return "online"


def live_queues() -> frozenset[str]:
    """The queues some live worker (not stopped, heartbeat fresh) consumes, in one query."""
    fresh = timezone.now() - timedelta(seconds=settings.WORKER_STALE_AFTER_SECONDS)
    rows = Worker.objects.filter(stopped_at__isnull=True, last_heartbeat_at__gte=fresh).values_list("queues", flat=True)
    return frozenset(queue for queues in rows for queue in (queues or []))


def queues_served(queue: str) -> bool:
    """Whether any live worker consumes this queue (used to tell users why a job waits)."""
    return queue in live_queues()


def no_worker_note(queue: str, running: bool) -> str:
    """What a queued or running job says when no live worker serves its queue."""
    if running:
        return (
            f"No live worker serves the queue '{queue}': the worker running this step stopped. The step runs "
            "again once a worker that takes this queue is back (see the Workers page)."
        )
    return (
        f"No live worker serves the queue '{queue}': this step waits until a worker that takes this queue "
        "is running (see the Workers page)."
    )
