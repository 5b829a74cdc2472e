"""A real Celery worker process on the test database (PostgreSQL) and Redis.

Tests here commit their data (`transactional_db`) so the worker, a separate process, sees it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connection

REPO = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("integration tests need PostgreSQL (DATABASE_URL=postgres://...)")
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return (
        f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{connection.settings_dict['NAME']}"
    )


def _purge_broker() -> None:
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


@pytest.fixture(scope="session")
def worker_env(django_db_setup, django_db_blocker) -> dict[str, str]:
    with django_db_blocker.unblock():
        url = _database_url()
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "SLIPWAY_DATA_DIR": str(settings.DATA_DIR),
        "SLIPWAY_JOB_HEARTBEAT_SECONDS": "1",
        "SLIPWAY_WORKER_HEARTBEAT_SECONDS": "1",
        # Tests check the pipeline's correctness, not timings: keep each benchmark point short.
        "SLIPWAY_BENCHMARK_MAX_SECONDS_PER_POINT": "0.4",
        # Two fresh processes per variant still pool trials, interleave and give t-intervals; a
        # third would only add a process start per variant to every pipeline of the suite.
        "SLIPWAY_BENCHMARK_MAX_TRIALS": "2",
        # Webhook retries within a second, so the delivery test is quick.
        "SLIPWAY_WEBHOOK_BACKOFF_BASE_SECONDS": "1",
        "SLIPWAY_WEBHOOK_CONNECT_TIMEOUT_SECONDS": "2",
        "SLIPWAY_WEBHOOK_READ_TIMEOUT_SECONDS": "5",
        # Review emails go to files the tests read.
        "SLIPWAY_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "SLIPWAY_EMAIL_FILE_PATH": str(settings.DATA_DIR / "mail"),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "platform")]),
        "PYTHONUNBUFFERED": "1",
    }


def start_worker(env: dict[str, str], name: str, log_path: Path, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """A real worker process on the cpu and default queues; `extra` adds Celery worker options."""
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_worker",
            "--queues",
            "cpu,default",
            "--",
            *extra,
            "-n",
            f"{name}@%h",
            "--concurrency=1",
            "--prefetch-multiplier=1",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def celery_worker_process(worker_env, tmp_path_factory) -> Iterator[subprocess.Popen[bytes]]:
    """One worker for the whole session, consuming the cpu and default queues, and the import
    queues of every framework it has: the framework environments are built first (once per
    machine; `make test` has built them already), since a worker subscribes at start."""
    from workers.engine import framework_envs

    for name in framework_envs.ENVS:
        framework_envs.build(name)
    _purge_broker()
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_worker(worker_env, "it", log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the Celery worker exited at start:\n{log_path.read_text()[-4000:]}")
        if "ready." in log_path.read_text():
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the Celery worker did not become ready in 60 s:\n{log_path.read_text()[-4000:]}")
    proc.log_path = log_path  # type: ignore[attr-defined]
    yield proc
    stop_worker(proc)


@pytest.fixture(autouse=True)
def seeded_reference_data(request):
    """Transactional tests truncate every table afterwards, seed data included: put it back."""
    if not request.node.get_closest_marker("django_db"):
        return
    request.getfixturevalue("transactional_db")
    from apps.hardware.models import HardwareProfile
    from apps.hardware.seeded_profiles import seed

    seed(HardwareProfile)
    if not request.node.get_closest_marker("reference_columns"):
        # The suite's budget: x86-cpu's reference columns (LiteRT, RKNN and ExecuTorch, each a
        # conversion in its own environment, ~15-25 s a model together) are checked only by the
        # tests marked `reference_columns`; every other pipeline validates what it builds for.
        profile = HardwareProfile.objects.get(slug="x86-cpu")
        profile.options = {**profile.options, "report_backends": []}
        profile.save(update_fields=["options"])


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def uploaded_and_ready(user: Any, slug: str, path: Path, timeout: float = 300) -> Any:
    """Upload `path` as a new version of model `slug` over the API as `user`, wait for the real
    worker's pipeline to finish, and return the version, which must be ready."""
    from apps.registry.models import ModelVersion, VersionStatus
    from tests.conftest import client_for

    with open(path, "rb") as fh:
        created = client_for(user).post(f"/api/v1/models/{slug}/versions/", {"file": fh}, format="multipart")
    assert created.status_code == 201, created.json()
    version = ModelVersion.objects.get(pk=created.json()["id"])
    done = (VersionStatus.READY, VersionStatus.FAILED)
    wait_for(
        lambda: ModelVersion.objects.filter(pk=version.pk, status__in=done).exists(),
        timeout=timeout,
        what=f"the pipeline of {slug} v{version.number} to finish",
    )
    version.refresh_from_db()
    assert version.status == VersionStatus.READY, version.status_reason
    return version


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web_server(worker_env, tmp_path) -> Iterator[str]:
    """`manage.py runserver` on a free port, on the worker's database and storage; yields its URL."""
    port = _free_port()
    log_path = tmp_path / "runserver.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{port}"],
            cwd=REPO,
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"runserver exited at start:\n{log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"runserver did not answer /healthz in 30 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
