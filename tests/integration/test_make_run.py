"""README command 1 as a newcomer runs it: embedded default (SQLite, local storage, filesystem
broker, a real worker), the printed URL answers, the printed login works, an upload is inspected."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests import modelzoo
from tests.integration.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Variables the test settings put in this process's environment; the newcomer has none of them.
_NOT_INHERITED = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SETTINGS_MODULE",
    "SLIPWAY_SECRET_KEY",
    "SLIPWAY_DATA_DIR",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_script_serves_the_api_and_processes_an_upload(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    env.update(SLIPWAY_DATA_DIR=str(tmp_path / "var"), SLIPWAY_PORT=str(_free_port()))
    proc = subprocess.Popen(
        ["bash", "scripts/run.sh"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = ""
        deadline = time.monotonic() + 120
        while "password:" not in output and time.monotonic() < deadline and proc.poll() is None:
            output += proc.stdout.readline()  # type: ignore[union-attr]
        url = re.search(r"running at (http://\S+)", output)
        password = re.search(r"password:\s+(\S+)", output)
        assert url and password, f"run.sh did not print a URL and login:\n{output}"
        base = url.group(1).rstrip("/")

        session = requests.Session()
        wait_for(lambda: _answers(session, f"{base}/healthz"), timeout=60, what="the printed URL to answer")
        session.get(f"{base}/admin/login/")
        login = session.post(
            f"{base}/admin/login/",
            data={
                "username": "admin",
                "password": password.group(1),
                "next": "/admin/",
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            headers={"Referer": f"{base}/admin/login/"},
        )
        assert login.ok and "sessionid" in session.cookies, "the printed login works"
        teams = session.get(f"{base}/api/v1/teams/").json()
        assert [t["slug"] for t in teams] == ["default"]

        model = modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx")
        with open(model, "rb") as fh:
            created = session.post(
                f"{base}/api/v1/models/first-model/versions/",
                files={"file": ("mlp.onnx", fh)},
                headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": base + "/"},
            )
        assert created.status_code == 201, created.text
        version_id = created.json()["id"]

        def finished():
            body = session.get(f"{base}/api/v1/versions/{version_id}/").json()
            return body if body["status"] in ("ready", "failed") else None

        body = wait_for(finished, timeout=120, what="the embedded worker to inspect the upload")
        assert body["status"] == "ready", body
        assert body["reports"]["inspect"]["inputs"][0]["name"] == "input"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _answers(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False
