"""Device leases (issue 18, ADR 0016): an agent leases a measuring step of its own team's versions
for a profile its probe meets, downloads only what its order reads, and its posts are bound to
the job and attempt it leased."""

from __future__ import annotations

import hashlib
import io
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from onnx import TensorProto, helper
from rest_framework.test import APIClient

from apps.hardware.models import Device, HardwareProfile
from apps.pipeline import services
from apps.pipeline.models import Job, JobKind, JobStatus
from apps.registry.models import Artifact, ArtifactKind
from apps.registry.storage import put_blob
from tests.apps.test_devices import ARM_BOARD, _as_device, _enroll, _register
from tests.conftest import client_for
from tests.factories import ModelVersionFactory, RegisteredModelFactory, TeamFactory
from workers.engine.support_matrix import build_matrix

pytestmark = pytest.mark.django_db


def _onnx_bytes() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _version(team: Any, profile: str = "arm-cpu-mnn") -> Any:
    version = ModelVersionFactory(model=RegisteredModelFactory(team=team))
    data = _onnx_bytes()
    digest = hashlib.sha256(data).hexdigest()
    key, _ = put_blob(io.BytesIO(data), digest)
    source = Artifact.objects.create(
        version=version, kind=ArtifactKind.SOURCE, name="model.onnx", format="onnx", sha256=digest, size=len(data),
        storage_key=key,
    )  # fmt: skip
    version.source_artifact = source
    version.save(update_fields=["source_artifact"])
    version.profiles.set([HardwareProfile.objects.get(slug=profile)])
    return version


def _ready_validate(version: Any, profile: str = "arm-cpu-mnn") -> Job:
    """A run whose validate step for `profile` waits for a machine."""
    chosen = HardwareProfile.objects.get(slug=profile)
    run = services.start_pipeline(
        version, version.created_by, steps=[services.PlannedStep(JobKind.VALIDATE, chosen.queue, chosen)]
    )
    job = run.jobs.get()
    assert job.status == JobStatus.QUEUED
    return job


def _device(personas: Any, profiles: list[str], hardware: dict[str, Any] | None = None, name: str = "board-1"):
    credential = _register(_enroll(personas, profiles)["token"], name=name, hardware=hardware).json()["credential"]
    return _as_device(credential), Device.objects.get(name=name)


def _lease(client: APIClient, **body: Any) -> Any:
    return client.post("/api/v1/agent/lease/", {"wait": 0, **body}, format="json")


def _report(order: dict[str, Any]) -> dict[str, Any]:
    reports = {
        "mnn": {
            "backend": "mnn", "runtime_version": "3.2.0", "installed": True, "method": "runtime",
            "verdict": "full", "ops": [], "partitions": [], "notes": [],
        }
    }  # fmt: skip
    return {"profile": order["profile"], "reports": reports, "matrix": build_matrix(reports)}


def test_a_device_leases_its_teams_step_reads_its_model_and_posts_the_report(personas):
    client, _ = _device(personas, ["arm-cpu-mnn"])
    job = _ready_validate(_version(personas.team))

    answer = _lease(client)
    assert answer.status_code == 200, answer.content
    order = answer.json()["order"]
    assert (order["job"], order["attempt"], order["kind"], order["profile"]) == (job.pk, 1, "validate", "arm-cpu-mnn")
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.worker_host == "device:vision/board-1"

    # It downloads the bytes its order names, with their hash; nothing else.
    model = order["model"]
    url = f"/api/v1/agent/jobs/{job.pk}/artifacts/{model['id']}/?attempt=1"
    download = client.get(url)
    assert download.status_code == 200 and download["X-Content-SHA256"] == model["sha256"]
    assert hashlib.sha256(b"".join(download.streaming_content)).hexdigest() == model["sha256"]
    other = _version(personas.team).source_artifact
    assert client.get(f"/api/v1/agent/jobs/{job.pk}/artifacts/{other.pk}/?attempt=1").status_code == 404

    beat = client.post(f"/api/v1/agent/jobs/{job.pk}/progress/", {"attempt": 1, "progress": 0.5, "message": "mnn"})
    assert beat.status_code == 200, beat.content
    job.refresh_from_db()
    assert (job.progress, job.progress_message) == (0.5, "mnn")
    # The fleet shows what the device is running.
    listed = client_for(personas.viewer).get("/api/v1/devices/").json()["results"]
    assert listed[0]["running"] == [
        {"id": job.pk, "kind": "validate", "profile": "arm-cpu-mnn", "version": job.run.version_id, "attempt": 1,
         "progress": 0.5, "progress_message": "mnn"}
    ]  # fmt: skip

    posted = client.post(
        f"/api/v1/agent/jobs/{job.pk}/result/", {"attempt": 1, "result": _report(order)}, format="json"
    )
    assert posted.status_code == 200, posted.content
    assert posted.json()["status"] == "succeeded"
    job.refresh_from_db()
    # Stamped with the device's registered probe, not with anything the result says.
    assert job.result["measured_on"] == {
        "kind": "device", "name": "board-1", "arch": "aarch64", "cpu_model": "Cortex-A76", "cores": 8, "emulation": "",
    }  # fmt: skip
    # The same post again (its answer was lost) is answered as recorded; it changes nothing.
    again = client.post(f"/api/v1/agent/jobs/{job.pk}/result/", {"attempt": 1, "result": _report(order)}, format="json")
    assert again.status_code == 200 and again.json()["status"] == "succeeded"


def test_a_device_gets_only_work_its_probe_meets_of_its_own_team(personas):
    x86_client, _ = _device(personas, ["arm-cpu-mnn"], hardware={**ARM_BOARD, "arch": "x86_64"}, name="pc")
    arm_client, _ = _device(personas, ["arm-cpu-mnn"], name="board-1")
    outsiders = _ready_validate(_version(TeamFactory(slug="other")))
    # Enrolled for ARM but probed as x86: it leases nothing, however long it waits.
    assert _lease(x86_client).status_code == 204
    # Another team's step is never offered.
    assert _lease(arm_client).status_code == 204
    outsiders.refresh_from_db()
    assert outsiders.status == JobStatus.QUEUED
    ours = _ready_validate(_version(personas.team))
    assert _lease(arm_client, kinds=["benchmark"]).status_code == 204  # not a step it asked for
    assert _lease(arm_client, kinds=["validate"]).json()["order"]["job"] == ours.pk


def test_posts_for_a_lease_the_device_lost_are_refused(personas):
    client, _ = _device(personas, ["arm-cpu-mnn"])
    thief, _ = _device(personas, ["arm-cpu-mnn"], name="board-2")
    job = _ready_validate(_version(personas.team))
    order = _lease(client).json()["order"]
    # Another device can't post for it, even naming the right attempt.
    stolen = thief.post(f"/api/v1/agent/jobs/{job.pk}/result/", {"attempt": 1, "result": _report(order)}, format="json")
    assert stolen.status_code == 409 and stolen.json()["code"] == "lease_lost"

    # The device goes silent: the reconciler takes the job back and board-2 leases attempt 2.
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    services.reconcile()
    assert _lease(thief).json()["order"]["attempt"] == 2
    late = client.post(f"/api/v1/agent/jobs/{job.pk}/result/", {"attempt": 1, "result": _report(order)}, format="json")
    assert late.status_code == 409 and "held by device:vision/board-2" in late.json()["message"]
    assert client.post(f"/api/v1/agent/jobs/{job.pk}/progress/", {"attempt": 1, "progress": 0.9}).status_code == 409
    url = f"/api/v1/agent/jobs/{job.pk}/artifacts/{order['model']['id']}/?attempt=1"
    assert client.get(url).status_code == 409


def test_a_result_that_is_not_the_steps_report_is_refused_and_an_error_fails_the_step(personas):
    client, _ = _device(personas, ["arm-cpu-mnn"])
    job = _ready_validate(_version(personas.team))
    order = _lease(client).json()["order"]
    url = f"/api/v1/agent/jobs/{job.pk}/result/"
    bad = client.post(url, {"attempt": 1, "result": {"profile": "arm-cpu-mnn", "reports": []}}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_result"
    both = client.post(url, {"attempt": 1, "result": _report(order), "error": {"message": "x"}}, format="json")
    assert both.status_code == 400
    failed = client.post(url, {"attempt": 1, "error": {"code": "oom", "message": "ran out of memory"}}, format="json")
    assert failed.status_code == 200 and failed.json()["status"] == "failed"
    job.refresh_from_db()
    assert job.error == "On device board-1: ran out of memory"


def test_a_revoked_device_leases_nothing(personas):
    client, device = _device(personas, ["arm-cpu-mnn"])
    _ready_validate(_version(personas.team))
    Device.objects.filter(pk=device.pk).update(revoked_at=timezone.now())
    refused = _lease(client)
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]


def test_an_online_device_serves_its_teams_profile_and_arm_steps_that_build_anywhere_run_on_the_server(personas):
    version = _version(personas.team)
    arm = HardwareProfile.objects.get(slug="arm-cpu-mnn")
    queues = {step.kind: step.queue for step in services.plan_steps([arm])}
    # MNN and ncnn files are built the same anywhere, and ranking measures nothing: those go to
    # the server's CPU workers; what measures stays on the profile's hardware.
    assert queues == {"inspect": "cpu", "validate": "arm64", "optimize": "cpu", "parity": "arm64",
                      "benchmark": "arm64", "recommend": "cpu"}  # fmt: skip
    gpu = HardwareProfile.objects.get(slug="nvidia-gpu")
    assert {s.kind: s.queue for s in services.plan_steps([gpu])}["optimize"] == "gpu"  # TensorRT builds on its GPU

    listed = APIClient()
    listed.force_authenticate(personas.owner)
    note = {p["slug"]: p["service_note"] for p in listed.get("/api/v1/profiles/").json()}
    assert note["arm-cpu-mnn"].startswith("No worker or device serves arm-cpu-mnn")
    _device(personas, ["arm-cpu-mnn"])
    note = {p["slug"]: p["service_note"] for p in listed.get("/api/v1/profiles/").json()}
    assert note["arm-cpu-mnn"] == ""
    detail = listed.get(f"/api/v1/models/{version.model.slug}/versions/{version.number}/")
    assert detail.status_code in (200, 404)


def test_a_step_only_devices_serve_sends_no_message_no_worker_would_take(
    personas, broker, django_capture_on_commit_callbacks
):
    sent = broker.view(lambda m: (m.object_id, m.queue), tasks=[services.RUN_JOB_TASK])
    with django_capture_on_commit_callbacks(execute=True):
        nobody = _ready_validate(_version(personas.team))
    # Nothing serves it: the message waits in the broker for the aarch64 worker that may start.
    assert sent == [(nobody.pk, "arm64")]
    sent.clear()
    _device(personas, ["arm-cpu-mnn"])
    with django_capture_on_commit_callbacks(execute=True):
        leased = _ready_validate(_version(personas.team))
    assert sent == []
    assert Job.objects.get(pk=leased.pk).status == JobStatus.QUEUED  # the device leases it from the database


def test_long_polls_take_at_most_their_share_of_web_threads(personas, settings):
    """With every waiting slot taken, a lease call is answered at once with Retry-After, so
    polling devices never hold the threads users need."""
    from apps.pipeline import leases

    client, _ = _device(personas, ["arm-cpu-mnn"])
    settings.LEASE_WAITERS = 1
    slots = leases._waiting_slots(1)
    assert slots.acquire(blocking=False)  # another agent is waiting
    try:
        started = time.monotonic()
        busy = _lease(client, wait=10)
        assert busy.status_code == 204 and 1 <= int(busy["Retry-After"]) <= 8
        assert time.monotonic() - started < 2
    finally:
        slots.release()
    # A free slot: the call waits its time, and says nothing of retrying.
    started = time.monotonic()
    waited = _lease(client, wait=1.2)
    assert waited.status_code == 204 and "Retry-After" not in waited
    assert time.monotonic() - started >= 1.0
