"""Worker faults, end to end: real workers killed with SIGKILL (their whole process group, the
sandbox child included) in the middle of a step, and a step that hangs.

PostgreSQL is the truth (docs/adr/0002): the dead worker's heartbeat goes stale, the reconciler
re-queues its job, another worker claims it as attempt 2, and the pipeline still ends `ready`
once, with one set of outputs. Everything runs over HTTP against gunicorn, with a private Redis
as broker, so no other suite's worker can pick up these jobs and the shared Redis is untouched.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db.models import Count
from django.utils import timezone

from apps.accounts.models import ApiToken
from apps.accounts.permissions import SCOPES
from apps.audit.models import AuditEvent
from apps.hardware.models import HardwareProfile
from apps.pipeline.models import Job, JobKind, JobStatus, PipelineRun
from apps.registry.models import Artifact, ArtifactKind, ModelVersion
from apps.registry.storage import artifact_storage, sha256_file
from tests import modelzoo
from tests.integration import faults
from tests.integration.test_import import MLP_INPUTS, build_torchscript

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Detection in seconds rather than minutes: a job without a heartbeat for 5 s is presumed dead,
# the reconciler runs every 2 s, a queued job's message is presumed lost after 5 s.
FAST_RECOVERY = {
    "SLIPWAY_JOB_HEARTBEAT_SECONDS": "1",
    "SLIPWAY_JOB_STALE_AFTER_SECONDS": "5",
    "SLIPWAY_RECONCILE_INTERVAL_SECONDS": "2",
    "SLIPWAY_JOB_REQUEUE_AFTER_SECONDS": "5",
    "SLIPWAY_API_RATE_LIMIT": "100000/min",
    "SLIPWAY_UPLOAD_RATE_LIMIT": "100000/min",
}
HANG_TIMEOUT_SECONDS = 8


@dataclass
class Stack:
    env: dict[str, str]
    redis: faults.RedisServer
    web: faults.WebServer
    pool: faults.WorkerPool
    root: Path

    def api(self, user: Any) -> faults.Api:
        _, token = ApiToken.issue(user, "faults", list(SCOPES))
        return faults.Api(self.web.url, token)


@pytest.fixture(scope="module")
def stack(worker_env, tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("worker-faults")
    redis = faults.RedisServer().start()
    env = {**worker_env, "CELERY_BROKER_URL": redis.url(), **FAST_RECOVERY}
    web = faults.WebServer(env, root / "web.log")
    pool = faults.WorkerPool(env, root, "faults")
    try:
        web.start()
        yield Stack(env, redis, web, pool, root)
    finally:
        pool.stop_all()
        web.stop()
        redis.stop()


def _running(version_id: int, kind: str, timeout: float = 300) -> Job:
    """The version's `kind` job once a worker has claimed it and started the work."""

    def claimed() -> Job | None:
        return (
            Job.objects.filter(run__version_id=version_id, kind=kind, status=JobStatus.RUNNING, progress__gt=0)
            .exclude(celery_task_id="")
            .first()
        )

    return faults.wait_until(claimed, timeout, f"the {kind} job to be running", interval=0.1)


def _fast_profile() -> HardwareProfile:
    profile, _ = HardwareProfile.objects.update_or_create(
        slug=faults.FAST_PROFILE["slug"], defaults={k: v for k, v in faults.FAST_PROFILE.items() if k != "slug"}
    )
    return profile


def _kill_mid_step(stack: Stack, job: Job) -> tuple[faults.Worker, Any, float]:
    """SIGKILL the worker running `job` while its sandbox (or benchmark) child is at work; the
    worker, and the wall-clock and monotonic times of the kill."""
    victim = stack.pool.holder(job.celery_task_id)
    faults.wait_until(victim.engine_children, 30, f"the {job.kind} step's child process", interval=0.02)
    victim.kill_hard()
    killed = timezone.now(), time.monotonic()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.attempt == 1, f"the {job.kind} step ended before the kill"
    return victim, *killed


def test_a_hanging_step_fails_at_the_sandbox_deadline_and_the_worker_serves_the_next_upload(stack, personas, tmp_path):
    # This worker alone consumes the queue (the pool's workers, if any, would take the job with
    # the production half-hour deadline).
    stack.pool.stop_all()
    _fast_profile()
    worker = faults.Worker(
        {**stack.env, "SLIPWAY_SANDBOX_TIMEOUT_SECONDS": str(HANG_TIMEOUT_SECONDS)}, "hang", stack.root / "hang.log"
    ).start()
    try:
        api = stack.api(personas.owner)
        hanging = api.upload("hangs", faults.make_hanging_onnx(tmp_path / "hang.onnx"), profiles="faults-ort")
        assert hanging.status_code == 201, hanging.text
        started = time.monotonic()
        body = api.finished(hanging.json()["id"], timeout=180)
        assert body["status"] == "failed", body["latest_run"]
        parity = next(j for j in body["latest_run"]["jobs"] if j["kind"] == "parity")
        assert parity["status"] == "failed" and parity["error_code"] == "timeout", parity
        assert f"did not finish within {HANG_TIMEOUT_SECONDS} s and was stopped" in parity["error"]
        assert body["status_reason"] == f"{JobKind.PARITY.label}: {parity['error']}"
        assert [j["status"] for j in body["latest_run"]["jobs"] if j["sequence"] > parity["sequence"]] == [
            "cancelled",
            "cancelled",
        ]
        hang_s = time.monotonic() - started
        # The same worker process survived, and the hung child's process group is gone.
        assert worker.alive()
        assert not worker.engine_children()

        started = time.monotonic()
        following = api.upload("after-hang", modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx"), profiles="faults-ort")
        assert following.status_code == 201, following.text
        body = api.finished(following.json()["id"], timeout=180)
        assert body["status"] == "ready", body["latest_run"]
        assert all(worker.received(j.celery_task_id) for j in Job.objects.filter(run__version_id=body["id"]))
        assert worker.alive()
        faults.record(
            {
                "fault": "sandboxed step hangs (Loop of 2**62 iterations, parity reference)",
                "sandbox_timeout_s": HANG_TIMEOUT_SECONDS,
                "outcome": f"parity failed: {parity['error_code']}; worker survived",
                "hang_pipeline_s": round(hang_s, 1),
                "next_upload_ready_s": round(time.monotonic() - started, 1),
            }
        )
    finally:
        worker.stop()


@dataclass
class Kill:
    job_id: int
    worker: str
    at: Any  # wall clock, to compare with the retried attempt's started_at
    progress: float
    reclaimed_s: float = 0.0


def test_workers_killed_during_import_optimize_and_benchmark_cost_a_retry_and_nothing_else(stack, personas, tmp_path):
    _fast_profile()
    stack.pool.ensure(2)
    api = stack.api(personas.owner)
    started = time.monotonic()
    created = api.upload(
        "survivor", build_torchscript(tmp_path / "mlp.pt"), inputs=json.dumps(MLP_INPUTS), profiles="faults-ort"
    )
    assert created.status_code == 201, created.text
    version_id = created.json()["id"]

    kills: dict[str, Kill] = {}
    for kind in ("import", "optimize", "benchmark"):
        job = _running(version_id, kind)
        victim, killed_wall, killed_at = _kill_mid_step(stack, job)
        kill = Kill(job.pk, victim.name, killed_wall, job.progress)
        stack.pool.launch()  # the replacement boots while the surviving worker takes over

        def retried(job_id: int = job.pk) -> bool:
            return Job.objects.filter(
                pk=job_id, attempt=2, status__in=(JobStatus.RUNNING, JobStatus.SUCCEEDED)
            ).exists()

        faults.wait_until(retried, 90, f"the killed {kind} job to be claimed again", interval=0.1)
        kill.reclaimed_s = time.monotonic() - killed_at
        kills[kind] = kill

    body = api.finished(version_id, timeout=300)
    total_s = time.monotonic() - started
    assert body["status"] == "ready", (body["status_reason"], stack.pool.logs())

    version = ModelVersion.objects.get(pk=version_id)
    assert ModelVersion.objects.filter(model__slug="survivor").count() == 1
    assert PipelineRun.objects.filter(version=version).count() == 1
    ready_events = AuditEvent.objects.filter(
        action="version.status_changed", object_id=str(version_id), after__status="ready"
    )
    assert ready_events.count() == 1, "the version became ready exactly once"

    jobs = {job.kind: job for job in Job.objects.filter(run__version=version)}
    assert all(job.status == JobStatus.SUCCEEDED for job in jobs.values())
    for kind, job in jobs.items():
        if kind not in kills:
            assert job.attempt == 1, (kind, job.log)
            continue
        kill = kills[kind]
        assert job.attempt == 2, (kind, job.log)
        # the log names the killed worker (its node name, name@host), and another worker finished it
        assert re.search(rf"worker {kill.worker}@\S+ stopped responding during attempt 1; re-queued", job.log), job.log
        assert not job.worker_host.startswith(f"{kill.worker}@"), job.log
        assert "attempt 2 of 3 started" in job.log
        # What is shown is the retried attempt's: it started after the kill and succeeded once.
        assert job.started_at > kill.at
        assert job.log.count("succeeded\n") == 1
        profile = "faults-ort" if job.profile_id else None
        shown = body["reports"][kind][profile] if profile else body["reports"][kind]
        assert shown == job.result

    # No duplicate outputs: one artifact per (job, name); the ONNX import and the variants
    # belong to the attempt that finished, and every blob is intact.
    artifacts = Artifact.objects.filter(version=version)
    assert not artifacts.values("job_id", "name").annotate(n=Count("id")).filter(n__gt=1).exists()
    results = {kind: job.result or {} for kind, job in jobs.items()}
    (onnx,) = artifacts.filter(kind=ArtifactKind.ONNX)
    assert onnx.job_id == jobs["import"].pk and results["import"]["artifact_id"] == onnx.pk
    variants = artifacts.filter(kind=ArtifactKind.VARIANT)
    assert {v.job_id for v in variants} == {jobs["optimize"].pk}
    assert {v["artifact_id"] for v in results["optimize"]["variants"]} == {v.pk for v in variants}
    measured = {r["artifact_id"] for r in results["benchmark"]["variants"].values() if "artifact_id" in r}
    assert measured and measured <= {v.pk for v in variants}
    for artifact in artifacts:
        assert sha256_file(Path(artifact_storage().path(artifact.storage_key))) == artifact.sha256

    assert not Job.objects.filter(status=JobStatus.RUNNING).exists()
    for kind, kill in kills.items():
        job = jobs[kind]
        faults.record(
            {
                "fault": f"worker SIGKILLed during {kind}",
                "killed_at_progress": round(kill.progress, 2),
                "reclaimed_s": round(kill.reclaimed_s, 1),
                "step_done_after_kill_s": round((job.finished_at - kill.at).total_seconds(), 1),
                "attempts": job.attempt,
            }
        )
    faults.record({"fault": "3 worker kills in one pipeline", "outcome": "ready once", "pipeline_s": round(total_s, 1)})


def test_a_worker_killed_mid_deploy_leaves_the_deploy_to_another_worker(stack, personas, tmp_path):
    pytest.importorskip("workers.tasks.deployments", reason="deployments are not in this checkout")
    from apps.deployments.models import Deployment, DeploymentStatus
    from tests.triton_server import start_triton_server, triton_skip_reason

    if reason := triton_skip_reason():
        pytest.skip(reason)
    _fast_profile()
    stack.pool.ensure(2)
    owner, approver, admin = (stack.api(p) for p in (personas.owner, personas.approver, personas.admin))
    model = modelzoo.make_mlp_onnx(tmp_path / "scorer.onnx")
    created = owner.upload("scorer", model, profiles="faults-ort")
    assert created.status_code == 201, created.text
    version_id = created.json()["id"]
    assert owner.finished(version_id)["status"] == "ready"
    assert approver.post(f"/api/v1/versions/{version_id}/approve/").status_code == 201

    repository = tmp_path / "repository"
    repository.mkdir()
    triton = start_triton_server(repository, tmp_path / "triton")
    try:
        registered = admin.post(
            "/api/v1/targets/",
            {
                "team": "vision",
                "name": "Local Triton",
                "url": triton.url,
                "repository": str(repository),
                "backend_mode": "python",
                "profile": "faults-ort",
                "allow_private": True,
            },
        )
        assert registered.status_code == 201, registered.text
        requested = approver.post("/api/v1/deployments/", {"version": version_id, "target": "local-triton"})
        assert requested.status_code == 202, requested.text
        deployment_id = requested.json()["id"]

        # Kill the pushing worker while its candidate entry is on the server: mid-deploy.
        def candidate_on_server() -> Deployment | None:
            row = Deployment.objects.filter(pk=deployment_id, status=DeploymentStatus.PUSHING).first()
            written = any(p.name.endswith(".candidate") for p in repository.iterdir())
            return row if row is not None and written and row.celery_task_id else None

        pushing = faults.wait_until(candidate_on_server, 120, "the deploy's candidate on the server", interval=0.05)
        victim = stack.pool.holder(pushing.celery_task_id)
        killed_at = time.monotonic()
        victim.kill_hard()
        stack.pool.launch()

        def settled() -> dict[str, Any] | None:
            body = approver.get(f"/api/v1/deployments/{deployment_id}/").json()
            return body if body["status"] in ("live", "failed") else None

        body = faults.wait_until(settled, 120, f"deployment {deployment_id} to settle", interval=0.2)
        recovered_s = time.monotonic() - killed_at
        assert body["status"] == "live", (body["status_reason"], body.get("detail"), stack.pool.logs())
        row = Deployment.objects.get(pk=deployment_id)
        assert row.attempt == 2 and row.live_at is not None
        assert body["smoke"]["live"]["passed"], body["smoke"]
        # One live deployment, served from the model's own entry; the killed attempt's candidate is gone.
        assert Deployment.objects.filter(status=DeploymentStatus.LIVE).count() == 1
        assert not [p.name for p in repository.iterdir() if p.name.endswith(".candidate")]
        assert (repository / "scorer" / str(row.triton_version)).is_dir()
        ready = requests.get(f"{triton.url}/v2/models/scorer/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        assert AuditEvent.objects.filter(action="deployment.live", object_id=str(deployment_id)).count() == 1
    finally:
        triton.stop()
    faults.record(
        {
            "fault": "worker SIGKILLed mid-deploy (candidate loaded on Triton)",
            "outcome": "live on attempt 2, candidate leftover discarded",
            "live_after_kill_s": round(recovered_s, 1),
            "attempts": row.attempt,
        }
    )


def test_a_job_killed_on_its_last_attempt_fails_with_attempts_exhausted(stack, personas, tmp_path):
    _fast_profile()
    stack.pool.ensure(2)
    api = stack.api(personas.owner)
    created = api.upload(
        "exhausted", build_torchscript(tmp_path / "mlp.pt"), inputs=json.dumps(MLP_INPUTS), profiles="faults-ort"
    )
    assert created.status_code == 201, created.text
    version_id = created.json()["id"]
    # Its jobs get one attempt each, so the first lost worker uses them up.
    Job.objects.filter(run__version_id=version_id).update(max_attempts=1)
    job = _running(version_id, "import")
    _, _, killed_at = _kill_mid_step(stack, job)  # the other worker's reconciler notices

    body = api.finished(version_id, timeout=90)
    failed_s = time.monotonic() - killed_at
    assert body["status"] == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "attempts_exhausted"
    assert job.error == (
        f"The import to onnx step's worker ({job.worker_host}) stopped responding on attempt 1 of 1. "
        "Check the worker's logs and memory limits, then re-run the pipeline."
    )
    assert body["status_reason"] == f"{JobKind.IMPORT.label}: {job.error}"
    later = Job.objects.filter(run__version_id=version_id, sequence__gt=job.sequence)
    assert later.exists() and all(j.status == JobStatus.CANCELLED for j in later)
    assert not Artifact.objects.filter(version_id=version_id).exclude(kind=ArtifactKind.SOURCE).exists()
    faults.record(
        {
            "fault": "worker SIGKILLed on a job's last attempt (import)",
            "outcome": "failed: attempts_exhausted",
            "failed_after_kill_s": round(failed_s, 1),
        }
    )
