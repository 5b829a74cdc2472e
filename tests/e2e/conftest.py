"""The real thing for browser tests: the built app served with the API by gunicorn on the test
PostgreSQL database, a real Celery worker, and Debian's chromium driven by playwright-core.

The server and worker reuse tests/integration/conftest.py's fixtures (the worker's
environment, the worker process, the seeded reference data after each truncation).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import celery_worker_process, seeded_reference_data, worker_env  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
FRONTEND = REPO / "frontend"
CHROMIUM = Path(os.environ.get("SLIPWAY_E2E_CHROMIUM", "/usr/bin/chromium"))
JOURNEY = Path(__file__).with_name("journey.mjs")
# Screenshots of the main pages land here (README shows some of them).
# Screenshots go to a scratch folder, so a test run leaves the tree clean; `make screenshots`
# runs the journey with SLIPWAY_E2E_SCREENSHOTS=docs/screenshots to refresh the README's.
SCREENSHOTS = Path(
    os.environ.get("SLIPWAY_E2E_SCREENSHOTS") or Path(tempfile.gettempdir()) / f"slipway-e2e-screens-{os.getpid()}"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback server
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def browser_ready() -> None:
    """Chromium, Node.js and a built app with playwright-core next to it, or a skip saying which is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed to build the browser app and drive chromium")
    # `make frontend` runs npm ci when the lockfile changed and vite build when a source did.
    subprocess.run(["make", "--no-print-directory", "frontend"], cwd=REPO, check=True, stdout=sys.stderr)
    assert (FRONTEND / "node_modules" / "playwright-core").is_dir(), "npm ci did not install playwright-core"


@pytest.fixture(scope="session")
def app_server(browser_ready, worker_env, celery_worker_process, tmp_path_factory) -> Iterator[str]:  # noqa: F811
    """gunicorn serving the app and the API, as in production, on a free loopback port."""
    log = tmp_path_factory.mktemp("web") / "gunicorn.log"
    # WhiteNoise serves what collectstatic gathered (the app's build included) from STATIC_ROOT.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--clear"],
        cwd=REPO,
        env=worker_env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port = _free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--timeout",
                "300",
                "--access-logfile",
                "-",
            ],
            cwd=REPO,
            env=worker_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not _answers(f"{url}/healthz"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"gunicorn did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.3)
    proc.log_path = log  # type: ignore[attr-defined]
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def journey(app_server, tmp_path):
    """Run one phase of tests/e2e/journey.mjs in a fresh chromium profile; its JSON findings."""

    def run(phase: str, timeout: float = 600, script: Path = JOURNEY, **values: Any) -> dict[str, Any]:
        env = {
            **os.environ,
            "BASE_URL": app_server,
            "SHOTS": str(SCREENSHOTS),
            "WORK": str(tmp_path),
            "CHROMIUM": str(CHROMIUM),
            **{key.upper(): str(value) for key, value in values.items()},
        }
        done = subprocess.run(
            ["node", str(script), phase],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        found: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        assert done.returncode == 0, (
            f"the {phase} phase failed in the browser: {found.get('error') or done.stderr[-3000:]}\n"
            f"at {found.get('url')}; screenshot {found.get('failure_screenshot')}\n"
            f"page text:\n{found.get('page_text', '')}\nsteps done: {found.get('steps')}\n"
            f"progress:\n{done.stderr[-2000:]}"
        )
        return found

    return run
