"""The worker registry: registration, heartbeat, staleness, the API list and queue selection."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.hardware import services
from apps.hardware.models import Worker
from apps.pipeline.management.commands.run_worker import hardware_queues, worker_queues
from tests.conftest import client_for
from tests.factories import ModelVersionFactory
from workers.engine import hardware
from workers.engine.hardware import describe_hardware

pytestmark = pytest.mark.django_db


def _register(name="cpu@box-1"):
    return services.register_worker(
        name,
        hardware=describe_hardware().to_dict(),
        runtimes={"onnxruntime": "1.32.0", "tensorrt": None},
        importers=["keras"],
        queues=["cpu", "default"],
        pid=123,
    )


def test_workers_are_listed_with_hardware_and_status(personas, settings):
    _register("cpu@box-1")
    _register("cpu@box-2")
    Worker.objects.filter(name="cpu@box-2").update(
        last_heartbeat_at=timezone.now() - timedelta(seconds=settings.WORKER_STALE_AFTER_SECONDS + 1)
    )
    services.mark_stopped("cpu@box-1")
    _register("gpu@box-3")
    body = client_for(personas.viewer).get("/api/v1/workers/").json()
    status = {w["name"]: w["status"] for w in body}
    assert status == {"cpu@box-1": "stopped", "cpu@box-2": "stale", "gpu@box-3": "online"}
    entry = next(w for w in body if w["name"] == "gpu@box-3")
    assert entry["cores"] >= 1 and entry["cpu_model"] and entry["runtimes"]["onnxruntime"] == "1.32.0"


def test_heartbeat_brings_a_stale_worker_back(settings):
    _register()
    Worker.objects.update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    assert services.worker_status(Worker.objects.get()) == "stale"
    assert services.heartbeat("cpu@box-1")
    assert services.worker_status(Worker.objects.get()) == "online"
    assert "cpu" in services.live_queues() and "gpu" not in services.live_queues()


def test_workers_need_authentication(db):
    assert APIClient().get("/api/v1/workers/").status_code in (401, 403)


def test_a_machine_takes_the_queues_of_the_profiles_its_probe_meets(monkeypatch):
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("the seeded profiles' queues are checked from an x86_64 machine")
    monkeypatch.setattr("workers.engine.hardware.query_gpus", lambda: ())
    assert hardware_queues() == ["default", "cpu"]  # not arm64: this machine is no aarch64 device
    h100 = hardware.GpuInfo("NVIDIA H100", 81559, "9.0", "550.54")
    monkeypatch.setattr("workers.engine.hardware.query_gpus", lambda: (h100,))
    assert hardware_queues() == ["default", "gpu", "cpu"]  # by profile slug: nvidia-gpu before x86-cpu
    monkeypatch.setattr("workers.engine.hardware.platform.machine", lambda: "aarch64")
    assert hardware_queues() == ["default", "arm64", "gpu"]
    assert worker_queues(["cpu"], with_imports=False) == ["cpu"]


def test_a_step_no_live_worker_serves_says_so_instead_of_waiting_silently(personas, settings, broker):
    from apps.pipeline import services as jobs
    from apps.pipeline.models import JobKind

    version = ModelVersionFactory(model__team=personas.team)
    run = jobs.start_pipeline(version, version.created_by, steps=[jobs.PlannedStep(JobKind.INSPECT)])
    job = run.jobs.get()
    client = client_for(personas.viewer)

    def notes() -> tuple[str | None, str | None]:
        detail = client.get(f"/api/v1/versions/{version.pk}/").json()
        listed = detail["latest_run"]["jobs"][0]["worker_note"]
        return listed, client.get(f"/api/v1/jobs/{job.pk}/").json()["worker_note"]

    # queued, and no worker at all
    listed, alone = notes()
    assert listed == alone and alone.startswith("No live worker serves the queue 'cpu': this step waits")
    # a live worker on that queue: nothing to say
    _register("cpu@box-1")
    assert notes() == (None, None)
    # running, and its worker died (no heartbeat for WORKER_STALE_AFTER_SECONDS)
    jobs.claim(job.pk, "cpu@box-1", "task-1")
    Worker.objects.update(last_heartbeat_at=timezone.now() - timedelta(seconds=settings.WORKER_STALE_AFTER_SECONDS + 1))
    listed, alone = notes()
    assert listed == alone and "the worker running this step stopped" in alone
    # a worker that signed off counts as gone too; the restarted one (same name) brings it back
    services.mark_stopped("cpu@box-1")
    assert "No live worker serves the queue 'cpu'" in notes()[1]
    _register("cpu@box-1")
    assert notes() == (None, None)
