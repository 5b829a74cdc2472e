"""Service faults, end to end: Redis restarted without its data, PostgreSQL restarted, and the
artifact storage filled up, while a real worker runs pipelines and gunicorn serves the API.

The shared PostgreSQL (5432) and Redis (6379) are never touched: the module starts its own
throwaway PostgreSQL cluster and redis-server on free ports, migrates the cluster, and points a
worker (with beat, so the reconciler runs) and a web server at them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import requests

from tests import modelzoo
from tests.integration import faults

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST_RECOVERY = {
    "SLIPWAY_JOB_HEARTBEAT_SECONDS": "1",
    "SLIPWAY_WORKER_HEARTBEAT_SECONDS": "1",
    "SLIPWAY_JOB_STALE_AFTER_SECONDS": "5",
    "SLIPWAY_RECONCILE_INTERVAL_SECONDS": "2",
    "SLIPWAY_JOB_REQUEUE_AFTER_SECONDS": "5",
    "SLIPWAY_API_RATE_LIMIT": "100000/min",
    "SLIPWAY_UPLOAD_RATE_LIMIT": "100000/min",
    "SLIPWAY_BENCHMARK_MAX_SECONDS_PER_POINT": "0.3",
}

SETUP = """
import json
from django.test import Client
from apps.accounts.models import ApiToken
from apps.accounts.permissions import SCOPES
from apps.hardware.models import HardwareProfile
from tests.factories import MembershipFactory, TeamFactory, UserFactory
team = TeamFactory(slug="vision")
user = UserFactory(username="dana")
MembershipFactory(team=team, user=user, role="data_scientist")
profile = json.loads({profile!r})
HardwareProfile.objects.update_or_create(slug=profile.pop("slug"), defaults=profile)
_, token = ApiToken.issue(user, "faults", list(SCOPES))
browser = Client()
browser.force_login(user)
print("TOKEN", token, "SESSION", browser.cookies["sessionid"].value)
"""


@dataclass
class Services:
    env: dict[str, str]
    postgres: faults.PostgresCluster
    redis: faults.RedisServer
    web: faults.WebServer
    worker: faults.Worker
    api: faults.Api
    session: str
    data_dir: Path
    database_url: str

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()

    def jobs(self, version_id: int) -> list[tuple[Any, ...]]:
        """(kind, status, attempt, error_code, error) of a version's latest run, in order."""
        return self.sql(
            "SELECT j.kind, j.status, j.attempt, j.error_code, j.error FROM jobs_job j "
            "JOIN jobs_pipelinerun r ON r.id = j.run_id WHERE r.version_id = %s ORDER BY j.sequence",
            version_id,
        )


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> Iterator[Services]:
    reason = faults.postgres_skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("service-faults")
    # The cluster's folder must be reachable by the postgres user: not under pytest's private tmp.
    postgres = faults.PostgresCluster(Path(tempfile.mkdtemp(prefix="slipway-faults-pg-")))
    redis_server = faults.RedisServer().start()
    web: faults.WebServer | None = None
    held: Services | None = None
    try:
        postgres.init().start()
        postgres.create_database("slipway")
        database_url = postgres.url("slipway")
        data_dir = root / "data"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": redis_server.url(0),
            "SLIPWAY_CACHE_URL": redis_server.url(1),  # the rate limiter's counters, as in production
            "SLIPWAY_DATA_DIR": str(data_dir),
            "PYTHONPATH": os.pathsep.join([str(faults.REPO), str(faults.REPO / "platform")]),
            "PYTHONUNBUFFERED": "1",
            **FAST_RECOVERY,
        }
        faults.manage(env, "migrate", "--noinput", "-v", "0")
        out = faults.manage(env, "shell", "-c", SETUP.format(profile=json.dumps(faults.FAST_PROFILE)))
        words = out.split()
        token, session = words[words.index("TOKEN") + 1], words[words.index("SESSION") + 1]
        web = faults.WebServer(env, root / "web.log")
        worker = faults.Worker(env, "svc", root / "worker.log").launch()
        held = Services(
            env, postgres, redis_server, web, worker, faults.Api(web.url, token), session, data_dir, database_url
        )
        web.start()
        worker.wait_ready()
        yield held
    finally:
        if held is not None:
            held.worker.stop()
        if web is not None:
            web.stop()
        redis_server.stop()
        postgres.destroy()


def _timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def _upload(services: Services, slug: str, path: Path) -> int:
    response = services.api.upload(slug, path, profiles="faults-ort")
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_a_redis_restart_that_loses_every_message_loses_no_job(services, tmp_path):
    broker = redis.Redis(port=services.redis.port, db=0)
    running = _upload(services, "redis-a", modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx"))
    waiting = _upload(services, "redis-b", modelzoo.make_cnn_onnx(tmp_path / "cnn.onnx"))

    def message_waiting_in_redis() -> bool:
        busy = any(status == "running" for _, status, *_ in services.jobs(running))
        queued = services.jobs(waiting)[0][1] == "queued"
        # a step's priority picks its list: "cpu" for 0, "cpu:N" for N (CELERY_BROKER_TRANSPORT_OPTIONS)
        waiting_messages = sum(broker.llen(key) for key in ["cpu", *(f"cpu:{level}" for level in range(1, 10))])
        return busy and queued and waiting_messages >= 1

    faults.wait_until(message_waiting_in_redis, 120, "a running job and a message waiting in Redis")
    services.redis.shutdown_nosave()
    down_at = time.monotonic()

    # Redis down: reads and uploads keep working (the rate limiter fails open, the upload's job
    # is committed and its message is sent later by the reconciler).
    reads = [_timed(lambda: services.api.get(f"/api/v1/versions/{running}/")) for _ in range(3)]
    assert all(r.status_code == 200 for r, _ in reads), [r.text for r, _ in reads]
    uploaded, upload_s = _timed(
        lambda: services.api.upload("redis-c", modelzoo.make_mlp_onnx(tmp_path / "c.onnx"), profiles="faults-ort")
    )
    assert uploaded.status_code == 201, uploaded.text
    assert max(s for _, s in reads) < 5 and upload_s < 5, "a dead Redis must not make requests hang"
    during = uploaded.json()["id"]
    time.sleep(max(0.0, 3 - (time.monotonic() - down_at)))
    services.redis.start()
    up_at = time.monotonic()

    for version_id in (running, waiting, during):
        body = services.api.finished(version_id, timeout=180)
        assert body["status"] == "ready", (version_id, body["status_reason"], services.worker.log()[-3000:])
    recovered_s = time.monotonic() - up_at
    for version_id in (running, waiting, during):
        assert all(status == "succeeded" for _, status, *_ in services.jobs(version_id))
    assert "re-sent" in services.worker.log(), "the reconciler re-sent the lost messages"
    assert "rate-limit cache unreachable" in services.web.log_path.read_text(), "the rate limiter failed open"
    assert services.worker.alive()
    duplicates = services.sql(
        "SELECT job_id, name FROM registry_artifact WHERE job_id IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert not duplicates
    faults.record(
        {
            "fault": "Redis SHUTDOWN NOSAVE for 3 s during a pipeline, one message queued",
            "outcome": "3 of 3 versions ready, nothing lost",
            "read_latency_while_down_s": round(max(s for _, s in reads), 2),
            "upload_latency_while_down_s": round(upload_s, 2),
            "all_ready_after_restart_s": round(recovered_s, 1),
            "attempts": sorted({attempt for v in (running, waiting, during) for _, _, attempt, *_ in services.jobs(v)}),
        }
    )


def _assert_503(response: requests.Response, elapsed: float, json_body: bool = True) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers.get("Retry-After") == "5"
    assert elapsed < 5, f"answered in {elapsed:.1f} s: a dead database must not make requests hang"
    if json_body:
        body = response.json()
        assert set(body) == {"code", "message", "fields"} and body["code"] == "database_unavailable", body
        assert "database" in body["message"] and body["message"].endswith(".")


def test_a_postgres_restart_mid_pipeline_answers_503_then_resumes(services, tmp_path):
    version_id = _upload(services, "pg", modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx"))
    faults.wait_until(
        lambda: any(kind == "optimize" and status == "running" for kind, status, *_ in services.jobs(version_id)),
        120,
        "the optimize job to be running",
    )
    worker_pid = services.worker.proc.pid
    services.postgres.stop("fast")
    down_at = time.monotonic()

    api = services.api
    answers = [
        _timed(lambda: api.get(f"/api/v1/versions/{version_id}/")),
        _timed(lambda: api.get("/api/v1/versions/")),
        _timed(lambda: api.upload("pg-down", modelzoo.make_mlp_onnx(tmp_path / "b.onnx"))),
    ]
    for response, elapsed in answers:
        _assert_503(response, elapsed)
    health, health_s = _timed(lambda: requests.get(f"{services.web.url}/healthz", timeout=10))
    assert health.status_code == 503 and health.json()["status"] == "unavailable" and health_s < 5
    # Outside the REST API (a signed-in browser on the admin: the session is read from the
    # database in a middleware), the same 503 and sentence.
    admin, admin_s = _timed(
        lambda: requests.get(
            f"{services.web.url}/admin/", cookies={"sessionid": services.session}, timeout=10, allow_redirects=False
        )
    )
    _assert_503(admin, admin_s, json_body=False)
    assert "database" in admin.text
    # Down for longer than a heartbeat may be missed (5 s): the job must not be presumed dead.
    time.sleep(max(0.0, 7 - (time.monotonic() - down_at)))
    services.postgres.start()
    up_at = time.monotonic()

    def read_ok() -> bool:
        return api.get(f"/api/v1/versions/{version_id}/").status_code == 200

    faults.wait_until(read_ok, 30, "reads to work again", interval=0.2)
    reads_back_s = time.monotonic() - up_at
    body = api.finished(version_id, timeout=180)
    assert body["status"] in ("ready", "failed")
    if body["status"] == "failed":
        assert body["status_reason"].endswith(".") and "internal error" not in body["status_reason"]
    assert services.worker.alive() and services.worker.proc.pid == worker_pid
    survived = (
        "heartbeat for job",  # beat missed, step went on
        "could not record progress",  # progress missed, step went on
        "database unreachable while recording",  # outcome written once the database was back
        "lost the database mid-step",  # step stopped; the reconciler re-queued it (attempt 2)
    )
    seen = [line for line in survived if line in services.worker.log()]
    assert seen, "the outage reached the running step"
    optimize = next(j for j in services.jobs(version_id) if j[0] == "optimize")
    faults.record(
        {
            "fault": "PostgreSQL stopped (-m fast) for 7 s during optimize",
            "outcome": f"version {body['status']}; API answered 503 + Retry-After while down; worker survived",
            "slowest_503_s": round(max([s for _, s in answers] + [health_s, admin_s]), 2),
            "reads_back_after_start_s": round(reads_back_s, 1),
            "pipeline_done_after_start_s": round(time.monotonic() - up_at, 1),
            "optimize_attempts": optimize[2],
            "worker_logged": seen,
        }
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".partial")]


def test_a_full_artifact_storage_refuses_uploads_with_507_and_fails_steps_readably(services, tmp_path):
    # The worker is frozen while the disk is filled, so what fills it is known.
    services.worker.pause()
    artifacts = services.data_dir / "artifacts"
    with faults.tmpfs(artifacts, "32m"):
        accepted: dict[int, str] = {}
        refused = None
        for seed in range(6):
            model = faults.make_weighty_onnx(tmp_path / f"w{seed}.onnx", megabytes=10, seed=seed)
            response = services.api.upload("filler", model, profiles="faults-ort")
            if response.status_code != 201:
                refused = response
                break
            accepted[response.json()["id"]] = _sha256(model)
        assert refused is not None, "32 MiB took six 10 MB uploads"
        assert refused.status_code == 507, refused.text
        body = refused.json()
        assert set(body) == {"code", "message", "fields"} and body["code"] == "storage_full"
        # the sentence names the disk that is full: the one holding the artifact folder
        assert f"The disk holding {artifacts} is full" in body["message"] and body["message"].endswith(".")
        # Nothing of the refused upload stays; what was accepted before is whole.
        assert not _partials(artifacts)
        versions = services.sql(
            "SELECT v.id FROM registry_modelversion v JOIN registry_registeredmodel m ON m.id = v.model_id "
            "WHERE m.slug = 'filler'"
        )
        assert sorted(v for (v,) in versions) == sorted(accepted)
        for version_id, digest in accepted.items():
            ((key, sha),) = services.sql(
                "SELECT storage_key, sha256 FROM registry_artifact WHERE version_id = %s AND kind = 'source'",
                version_id,
            )
            assert sha == digest and _sha256(artifacts / key) == digest
        usage = shutil.disk_usage(artifacts)

        # A step that can't store its variants fails its job with the same sentence.
        services.worker.resume()
        first = min(accepted)
        body = services.api.finished(first, timeout=120)
        assert body["status"] == "failed"
        optimize = next(j for j in services.jobs(first) if j[0] == "optimize")
        assert optimize[1] == "failed" and optimize[3] == "storage_full", optimize
        assert optimize[4].startswith(f"The disk holding {artifacts} is full") and optimize[4].endswith(".")
        assert body["status_reason"] == f"Optimize: {optimize[4]}"
        assert not _partials(artifacts)
        assert services.worker.alive()
        services.worker.kill_hard()  # the other queued versions would fail the same way
    faults.record(
        {
            "fault": "artifact storage full (32 MiB tmpfs, 10 MB uploads)",
            "outcome": f"{len(accepted)} uploads stored intact, the next refused with 507 storage_full, "
            "no partial blob or version row; optimize failed with storage_full",
            "free_bytes_when_refused": usage.free,
        }
    )


def test_a_full_upload_spool_is_a_507_and_leaves_no_temporary_file(settings, tmp_path):
    """The upload spool shares the data volume in a one-volume deployment: a full disk while
    receiving is the same 507, and the partial temporary file is gone at once."""
    from apps.registry.uploads import HashingUploadHandler, UploadSpoolFull

    spool = tmp_path / "spool"
    with faults.tmpfs(spool, "1m"):
        settings.FILE_UPLOAD_TEMP_DIR = str(spool)
        handler = HashingUploadHandler()
        handler.new_file("file", "big.onnx", "application/octet-stream", 3 * 2**20)
        with pytest.raises(UploadSpoolFull) as info:
            for start in range(0, 3 * 2**20, 2**20):
                handler.receive_data_chunk(b"\0" * 2**20, start)
            handler.file_complete(3 * 2**20)
        assert info.value.status_code == 507 and info.value.code == "storage_full"
        assert list(spool.iterdir()) == []
