"""Writes to the worker registry: workers announce themselves, beat, and sign off."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.hardware.models import Device, HardwareProfile, Worker
from workers.engine.hardware import describe_requirements, unmet_requirements


def register_worker(name: str, *, hardware: dict[str, Any], runtimes: dict[str, str | None], importers: list[str],
                    queues: list[str], pid: int, framework_envs: dict[str, Any] | None = None) -> Worker:  # fmt: skip
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
            "framework_envs": framework_envs or {},
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


def _live_workers() -> list[Worker]:
    fresh = timezone.now() - timedelta(seconds=settings.WORKER_STALE_AFTER_SECONDS)
    return list(Worker.objects.filter(stopped_at__isnull=True, last_heartbeat_at__gte=fresh).order_by("name"))


def worker_facts(worker: Worker) -> dict[str, Any]:
    """A worker's registered probe in the keys `unmet_requirements` reads."""
    return {"arch": worker.arch, "cpu_flags": worker.cpu_flags, "gpus": worker.gpus}


def live_queues() -> frozenset[str]:
    """The queues some live worker (not stopped, heartbeat fresh) consumes, in one query."""
    return frozenset(queue for worker in _live_workers() for queue in (worker.queues or []))


@dataclass(frozen=True)
class Service:
    """Who measures for a hardware profile now: the live workers that consume its queue and
    meet its requirements (`serving`), and those that consume it but don't (`unfit`, with why)."""

    profile: str
    queue: str
    requirements: str  # in words, e.g. "an aarch64 CPU"
    serving: tuple[str, ...]
    unfit: tuple[tuple[str, str], ...]
    # Online devices (ADR 0016) enrolled for the profile whose probe meets it, as (team id,
    # name). A device leases the measuring steps of its own team's versions only.
    devices: tuple[tuple[int, str], ...] = ()
    # Whether only its benchmark needs the hardware: its backends simulate it on the workers for
    # op support and parity (`Backend.simulated_on_builders`, an NPU toolkit's simulator).
    benchmark_only: bool = False

    def served_for(self, teams: Collection[int] | None = None) -> bool:
        """Whether work of `teams` (any team: None) is served: by a worker, or a device of theirs."""
        return bool(self.serving) or any(teams is None or team in teams for team, _ in self.devices)

    @property
    def served(self) -> bool:
        return self.served_for(None)

    def note(self, teams: Collection[int] | None = None) -> str:
        """Empty when work of `teams` is served; otherwise why it waits, and how to serve it."""
        if self.served_for(teams):
            return ""
        waiting = (
            "its benchmark waits until one connects (op support, the build and parity run on the workers, on the "
            "toolkit's simulator)"
            if self.benchmark_only
            else "its measuring steps wait until one connects"
        )
        note = (
            f"No worker or device serves {self.profile}, which needs {self.requirements}: {waiting}. Connect a "
            f"device that has it (Workers page, or POST "
            f"/api/v1/devices/enrollments/ with this profile), or start a worker on such a machine with "
            f"`python manage.py run_worker --queues {self.queue}`."
        )
        for name, why in self.unfit:
            note += f" Worker {name} takes that queue but does not measure for {self.profile}: {why}."
        return note


def _online_devices() -> QuerySet[Device]:
    """Devices not revoked and seen within SLIPWAY_WORKER_STALE_AFTER_SECONDS (as workers are live)."""
    fresh = timezone.now() - timedelta(seconds=settings.WORKER_STALE_AFTER_SECONDS)
    return Device.objects.filter(revoked_at__isnull=True, last_seen_at__gte=fresh)


def _online_devices_by_profile() -> dict[str, list[tuple[int, str]]]:
    """Profile slug -> the online, unrevoked devices enrolled for it whose probe meets it."""
    found: dict[str, list[tuple[int, str]]] = {}
    for device in _online_devices().prefetch_related("profiles").order_by("name"):
        for profile in device.profiles.all():
            if not unmet_requirements(profile.requirements, device.hardware or {}):
                found.setdefault(profile.slug, []).append((device.team_id, device.name))
    return found


def device_serves(profile: HardwareProfile, team_id: int) -> bool:
    """Whether an online, unrevoked device of the team is enrolled for `profile` and meets it."""
    rows = _online_devices().filter(team_id=team_id, profiles=profile)
    return any(
        not unmet_requirements(profile.requirements, hardware or {})
        for hardware in rows.values_list("hardware", flat=True)
    )


def profile_services(profiles: list[HardwareProfile] | None = None) -> dict[str, Service]:
    """Each profile's `Service` (all enabled profiles by default), from one query of the workers
    and one of the devices."""
    workers = _live_workers()
    devices = _online_devices_by_profile()
    chosen = profiles if profiles is not None else list(HardwareProfile.objects.filter(enabled=True).order_by("slug"))
    found: dict[str, Service] = {}
    for profile in chosen:
        serving, unfit = [], []
        for worker in workers:
            if profile.queue not in (worker.queues or []):
                continue
            unmet = unmet_requirements(profile.requirements, worker_facts(worker))
            if unmet:
                unfit.append((worker.name, "; ".join(unmet)))
            else:
                serving.append(worker.name)
        found[profile.slug] = Service(
            profile.slug,
            profile.queue,
            describe_requirements(profile.requirements),
            tuple(serving),
            tuple(unfit),
            tuple(devices.get(profile.slug, ())),
            benchmark_only=_simulated_on_builders(profile),
        )
    return found


def _simulated_on_builders(profile: HardwareProfile) -> bool:
    from workers.engine.backends.registry import BACKENDS

    names = profile.backends if isinstance(profile.backends, list) else []
    return bool(names) and all(name in BACKENDS and BACKENDS[name].simulated_on_builders for name in names)


def worker_by_host(host: str) -> Worker | None:
    """The registered worker a job's `worker_host` names (the newest by heartbeat), or None.
    Jobs record the worker's node name ("cpu@host"); older ones only its host."""
    workers = Worker.objects.filter(Q(name=host) | Q(host=host)) if host else Worker.objects.none()
    return workers.order_by("-last_heartbeat_at").first()


def wrong_hardware(profile: HardwareProfile, hosts: Iterable[str]) -> str:
    """A sentence when a worker that ran the profile's steps (by the hosts the jobs recorded)
    does not meet the profile's requirements by its own probe; empty otherwise, and for workers
    no longer registered (nothing to judge them by)."""
    for host in sorted({host for host in hosts if host}):
        worker = worker_by_host(host)
        if worker is None:
            continue
        unmet = unmet_requirements(profile.requirements, worker_facts(worker))
        if unmet:
            machine = f"{worker.arch or 'unknown architecture'}, {worker.cpu_model or 'unknown CPU'}"
            needs = describe_requirements(profile.requirements)
            return (
                f"Measured on {worker.name} ({machine}), which is not the hardware {profile.slug} names ({needs}): "
                f"{'; '.join(unmet)}. Its op support, parity and timings are not that hardware's; re-run the "
                "pipeline once a worker that meets the profile serves it."
            )
    return ""


def answer_services(context: Any) -> dict[str, Service]:
    """`profile_services` for every profile, looked up once per API answer: `context` is the
    serializers' shared dict, which keeps it however many jobs or profiles the answer lists."""
    if "profile_services" not in context:
        context["profile_services"] = profile_services(list(HardwareProfile.objects.all()))
    services: dict[str, Service] = context["profile_services"]
    return services


def answer_teams(context: Any) -> list[int] | None:
    """The teams whose devices count in one API answer: the request user's (looked up once per
    answer, in the serializers' shared dict); None outside a request (every team's count)."""
    request = context.get("request") if isinstance(context, dict) else None
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    if "device_teams" not in context:
        context["device_teams"] = list(user.memberships.values_list("team_id", flat=True))
    teams: list[int] = context["device_teams"]
    return teams


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
