"""Leases: a device agent asks for work over HTTPS and gets a pipeline job of its team, for a
profile its own probe meets, as a work order (ADR 0016).

The lease is the job and the attempt the agent claimed (`pipeline.services.lease_next`, on the
durable-work kernel). Everything the agent does afterwards names both, and is refused (409)
once the job is no longer held by that device at that attempt: a result that arrives after
the job was taken back from a silent device, a replayed post, or a post for a job the device
never held. The device downloads only the artifacts its order names; what it reports is
read by type before it is stored, and stamped with the device's own registered probe, not
with anything the device says about itself in the result.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q

from apps.core.errors import Conflict, DomainError
from apps.hardware.devices import holder, serving
from apps.hardware.models import Device, HardwareProfile
from apps.pipeline import services
from apps.pipeline.models import FINISHED_JOB_STATUSES, Job, JobKind, JobStatus
from apps.pipeline.work_orders import order_artifacts, readable_artifacts, work_order
from apps.registry.models import Artifact
from workers.engine import work
from workers.engine.errors import ModelError
from workers.engine.reports import BenchmarkReport, ParityReport, ValidateReport
from workers.engine.typed import ReportShapeError, from_dict
from workers.engine.work import WorkOrder

MAX_WAIT_SECONDS = 25.0
POLL_SECONDS = 0.5
REPORTS: dict[str, type] = {
    JobKind.VALIDATE: ValidateReport,
    JobKind.PARITY: ParityReport,
    JobKind.BENCHMARK: BenchmarkReport,
}


def served_profiles(device: Device) -> list[HardwareProfile]:
    """The enrolled profiles the device's latest probe meets: the only ones it may lease for."""
    met = {s.profile for s in serving(device) if not s.unmet}
    return [p for p in device.profiles.filter(enabled=True) if p.slug in met]


def _leasable(device: Device, kinds: list[str]) -> Q | None:
    profiles = served_profiles(device)
    wanted = [kind for kind in kinds if kind in work.DEVICE_STEPS] if kinds else list(work.DEVICE_STEPS)
    if not profiles or not wanted:
        return None
    return Q(run__version__model__team=device.team, profile__in=profiles, kind__in=wanted)


# Clients that found every waiting slot taken come back after about this long (with jitter).
BUSY_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Leased:
    """What a lease call got: an order, or none and when to ask again (`retry_after` seconds,
    0 when the call already waited)."""

    order: WorkOrder | None
    retry_after: float = 0.0


_waiters: dict[int, threading.BoundedSemaphore] = {}
_waiters_lock = threading.Lock()


def _waiting_slots(size: int) -> threading.BoundedSemaphore:
    """This web process's `size` waiting slots (settings.LEASE_WAITERS, read at each call)."""
    with _waiters_lock:
        return _waiters.setdefault(size, threading.BoundedSemaphore(size))


def lease(device: Device, kinds: list[str], wait_seconds: float) -> Leased:
    """The next job for `device` as its work order. With none ready, the call waits up to
    `wait_seconds` for one (a long poll) when a waiting slot of this web process is free;
    otherwise it answers at once, saying when to ask again."""
    where = _leasable(device, kinds)

    def take() -> WorkOrder | None:
        job = services.lease_next(where, holder(device), f"lease-{secrets.token_hex(8)}") if where else None
        return work_order(job) if job is not None else None

    order = take()
    wait = min(max(wait_seconds, 0.0), MAX_WAIT_SECONDS)
    if order is not None or wait < POLL_SECONDS:
        return Leased(order)
    size = int(settings.LEASE_WAITERS)
    slot = _waiting_slots(size) if size > 0 else None
    if slot is None or not slot.acquire(blocking=False):
        return Leased(None, BUSY_RETRY_SECONDS * (0.5 + random.random()))  # noqa: S311 - jitter, not a secret
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() + POLL_SECONDS <= deadline:
            if not connection.in_atomic_block:
                connection.close()  # hold no database connection while waiting
            time.sleep(POLL_SECONDS)
            order = take()
            if order is not None:
                return Leased(order)
        return Leased(None)
    finally:
        slot.release()


def held(device: Device, job_id: int, attempt: int) -> Job:
    """The job, only while `device` holds it at `attempt`; 409 (saying why) otherwise."""
    job = Job.objects.select_related("run__version__model__team", "profile").filter(pk=job_id).first()
    if job is None or job.run.version.model.team_id != device.team_id:
        raise DomainError("job_not_found", f"Job {job_id} does not exist or is not your team's.", 404)
    if job.worker_host != holder(device) or job.attempt != attempt or job.status != JobStatus.RUNNING:
        if job.status != JobStatus.RUNNING:
            why = f"it is {job.status} now"
        elif job.worker_host != holder(device):
            why = f"it is held by {job.worker_host or 'nobody'}"
        else:
            why = f"it is at attempt {job.attempt} now, not {attempt}"
        raise Conflict(
            "lease_lost",
            f"This device does not hold job {job_id} at attempt {attempt}: {why} (taken back after the device "
            "went silent, finished, or never leased). Nothing was recorded; drop this job and lease again.",
        )
    return job


def _recorded(device: Device, job_id: int, attempt: int) -> Job | None:
    """The job when it already finished under this device's lease at `attempt`."""
    return (
        Job.objects.filter(
            pk=job_id, worker_host=holder(device), attempt=attempt, run__version__model__team=device.team
        )
        .filter(status__in=FINISHED_JOB_STATUSES)
        .first()
    )


def progress(device: Device, job_id: int, attempt: int, fraction: float, message: str) -> None:
    """The device's progress on its lease, which is also the lease's heartbeat."""
    job = held(device, job_id, attempt)
    if not services.report_progress(job, fraction, message):
        raise Conflict("lease_lost", f"This device no longer holds job {job_id} at attempt {attempt}.")


def artifact(device: Device, job_id: int, attempt: int, artifact_id: int) -> Artifact:
    """An artifact the device's lease reads; 404 for any other (another job's, another team's)."""
    job = held(device, job_id, attempt)
    if artifact_id not in readable_artifacts(job):
        raise DomainError("artifact_not_found", f"Job {job_id} reads no artifact {artifact_id}.", 404)
    return Artifact.objects.get(pk=artifact_id)


def _check_artifacts(result: dict[str, Any], job: Job) -> None:
    allowed = {a.pk for a in order_artifacts(job)[1]}
    for name, entry in (result.get("variants") or {}).items():
        claimed = entry.get("artifact_id") if isinstance(entry, dict) else None
        if claimed is not None and claimed not in allowed:
            raise DomainError(
                "invalid_result",
                f"The result's variant {name} names artifact {claimed}, which job {job.pk} did not measure.",
            )


def complete(device: Device, job_id: int, attempt: int, result: Any, log: str = "") -> Job:
    """Record the device's result for its lease and move the pipeline on. The result is read as
    the step's report type (400 naming the field that doesn't fit); one that measured nothing
    fails the step as a worker's would. The same post repeated after its answer was lost finds
    the job finished by this device at this attempt and is answered as recorded."""
    earlier = _recorded(device, job_id, attempt)
    if earlier is not None:
        return earlier
    job = held(device, job_id, attempt)
    report_type = REPORTS[job.kind]
    if not isinstance(result, dict):
        raise DomainError("invalid_result", "result must be the step's report, an object.")
    try:
        from_dict(report_type, result)
    except ReportShapeError as exc:
        raise DomainError("invalid_result", f"The result is not a {job.kind} report: {exc}") from None
    _check_artifacts(result, job)
    assert job.profile is not None, "a leased job is a profile's step"
    profile = job.profile.slug
    stored = {
        **result,
        "profile": profile,
        "measured_on": work.measured_on("device", device.name, device.hardware or {}),
    }
    if job.kind == JobKind.BENCHMARK:
        stored["worker_host"] = holder(device)
        try:
            work.require_measurement(profile, stored.get("baseline") or {}, stored.get("variants") or {})
        except ModelError as exc:
            services.fail(job, exc.code, exc.message, log=log[-20000:])
            return job
    if not services.complete(job, services.StepOutcome(result=stored, log=log[-20000:])):
        raise Conflict("lease_lost", f"This device no longer holds job {job_id} at attempt {attempt}.")
    return job


def fail(device: Device, job_id: int, attempt: int, code: str, message: str, log: str = "") -> Job:
    """The device could not run its lease: the step fails with the device's sentence, as a
    worker's would, naming the device."""
    earlier = _recorded(device, job_id, attempt)
    if earlier is not None:
        return earlier
    job = held(device, job_id, attempt)
    text = (message or "").strip() or "The device gave no reason."
    services.fail(job, (code or "device_error")[:50], f"On device {device.name}: {text[:2000]}", log=log[-20000:])
    return job


def order_dict(order: WorkOrder) -> dict[str, Any]:
    return asdict(order)
