"""README command 1 as a newcomer runs it: embedded default (SQLite, local storage, filesystem
broker, a real worker), the printed URL answers, the printed login works, an upload is inspected.

And what makes it safe to leave running on a laptop (security review, issue 14): no debug
pages (JSON errors under /api/), the production web server (gunicorn), a worker that is
started again when it is killed (the job it was running still finishes), its log in the data
folder, and nothing written in the user's HOME cache folders or the system temp folder."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime
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
    "SLIPWAY_CONFINE_FILES",
)
# Short enough that a killed worker's step is taken back within the test's time.
_QUICK_RECOVERY = {
    "SLIPWAY_JOB_HEARTBEAT_SECONDS": "2",
    "SLIPWAY_JOB_STALE_AFTER_SECONDS": "10",
    "SLIPWAY_RECONCILE_INTERVAL_SECONDS": "3",
    "SLIPWAY_WORKER_HEARTBEAT_SECONDS": "2",
    "SLIPWAY_WORKER_STALE_AFTER_SECONDS": "8",
}
# The pipeline's correctness is what is checked here, not its timings: short benchmark points,
# as the integration worker measures (tests/integration/conftest.py).
_SHORT_BENCHMARKS = {
    "SLIPWAY_BENCHMARK_MAX_SECONDS_PER_POINT": "0.4",
    "SLIPWAY_BENCHMARK_MAX_TRIALS": "2",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Output:
    """Everything run.sh prints, collected by a thread so the test never blocks on it."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)


def test_run_script_serves_the_api_and_processes_an_upload(tmp_path):
    home, system_tmp, data = tmp_path / "home", tmp_path / "system-tmp", tmp_path / "var"
    home.mkdir()
    system_tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED and not k.startswith("XDG_")}
    env.update(
        SLIPWAY_DATA_DIR=str(data),
        SLIPWAY_PORT=str(_free_port()),
        # the newcomer's own HOME and temp folder: Slipway and its runtimes must leave them alone
        HOME=str(home),
        TMPDIR=str(system_tmp),
        **_QUICK_RECOVERY,
        **_SHORT_BENCHMARKS,
    )
    proc = subprocess.Popen(
        ["bash", "scripts/run.sh"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = _Output(proc.stdout)
    try:
        wait_for(
            lambda: "worker log:" in output.text or proc.poll() is not None,
            timeout=300,
            what="run.sh to print the login and where the worker log is",
        )
        url = re.search(r"running at (http://\S+)", output.text)
        password = re.search(r"password:\s+(\S+)", output.text)
        assert url and password, f"run.sh did not print a URL and login:\n{output.text}"
        base = url.group(1).rstrip("/")
        assert f"worker log:  {data}/worker.log" in output.text

        session = requests.Session()
        wait_for(lambda: _answers(session, f"{base}/healthz"), timeout=60, what="the printed URL to answer")
        # the production web server, not Django's development server
        assert "gunicorn" in session.get(f"{base}/healthz").headers.get("Server", ""), output.text[-3000:]
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
        writes = {"X-CSRFToken": session.cookies["csrftoken"], "Referer": base + "/"}

        # DEBUG is off: errors under /api/ are the API's JSON body, never Django's debug pages
        for response, status in (
            (session.get(f"{base}/api/v1/no-such-endpoint/"), 404),
            (session.put(f"{base}/api/v1/teams/", json={}, headers=writes), 405),
            (session.get(f"{base}/api/v1/audit/?action=" + "x" * 6000), 414),
        ):
            assert response.status_code == status and response.headers["Content-Type"] == "application/json"
            assert set(response.json()) == {"code", "message", "fields"}, response.text[:500]
        assert "urlpatterns" not in session.get(f"{base}/no-such-page/").text
        # static files are still served with DEBUG off (WhiteNoise): the admin's and the browser app's
        assert session.get(f"{base}/static/admin/css/base.css").status_code == 200
        app = session.get(f"{base}/app/")
        script = re.search(r'src="(/static/app/assets/[^"]+\.js)"', app.text)
        assert app.status_code == 200 and script, app.text[:500]
        assert session.get(base + script.group(1)).status_code == 200

        model = modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx")
        version_id = _upload(session, base, writes, model, "first-model")
        body = wait_for(
            lambda: _finished(session, base, version_id), timeout=180, what="the embedded worker to inspect the upload"
        )
        assert body["status"] == "ready", body
        assert body["reports"]["inspect"]["inputs"][0]["name"] == "input"
        # the worker's log goes to the file the startup message names
        assert "ready." in (data / "worker.log").read_text()

        # kill -9 the worker while it runs a step: it is started again, and the step finishes
        version_id = _upload(session, base, writes, model, "second-model")
        wait_for(
            lambda: any(j["status"] == "running" for j in _jobs(session, base, version_id)),
            timeout=120,
            interval=0.05,
            what="a step of the second upload to run",
        )
        pid = int(re.findall(r"worker started \(pid (\d+)\)", output.text)[-1])
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: "(restart 1)" in output.text, timeout=30, what="the supervisor to notice the death")
        assert f"worker (pid {pid}) killed by SIGKILL" in output.text
        assert f"worker (pid {pid}) killed by SIGKILL" in (data / "worker.log").read_text()
        body = wait_for(
            lambda: _finished(session, base, version_id), timeout=240, what="the killed worker's job to finish"
        )
        assert body["status"] == "ready", body
        assert re.findall(r"worker started \(pid (\d+)\)", output.text)[-1] != str(pid)
        # the Workers page shows the restarted worker: online, up since after the kill
        (worker,) = session.get(f"{base}/api/v1/workers/").json()
        assert worker["status"] == "online"
        assert datetime.fromisoformat(worker["started_at"]).timestamp() >= killed_at - 1, worker
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

    # nothing of Slipway's or its runtimes' in the user's HOME (npm, which builds the browser
    # app, keeps its own cache and logs there) or in the system temp folder
    assert {p.name for p in home.iterdir()} <= {".npm"}, sorted(home.rglob("*"))
    assert list(system_tmp.iterdir()) == []
    assert (data / "home" / "intel" / "openvino_telemetry").read_text() == "0"
    assert not (data / "home" / ".cache" / "Microsoft").exists()


def _upload(session: requests.Session, base: str, headers: dict[str, str], model: Path, slug: str) -> int:
    with open(model, "rb") as fh:
        created = session.post(
            f"{base}/api/v1/models/{slug}/versions/", files={"file": ("mlp.onnx", fh)}, headers=headers
        )
    assert created.status_code == 201, created.text
    return created.json()["id"]


def _jobs(session: requests.Session, base: str, version_id: int) -> list[dict]:
    run = session.get(f"{base}/api/v1/versions/{version_id}/").json()["latest_run"]
    return run["jobs"] if run else []


def _finished(session: requests.Session, base: str, version_id: int) -> dict | None:
    body = session.get(f"{base}/api/v1/versions/{version_id}/").json()
    return body if body["status"] in ("ready", "failed") else None


def _answers(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=5).ok
    except requests.RequestException:  # refused, or accepted while gunicorn's workers still boot
        return False
