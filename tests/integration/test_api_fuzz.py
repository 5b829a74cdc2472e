"""schemathesis against the running app: generated requests for every operation of the
committed schema (docs/openapi.yaml), as a team admin with every token scope, over real
HTTP to gunicorn on the test database. No request may get a 5xx, and every response must
match the schema: status code, content type and body."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from apps.accounts.models import ApiToken
from apps.accounts.permissions import SCOPES
from tests.factories import MembershipFactory, TeamFactory, UserFactory
from tests.finished import finished_version
from tests.integration.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_schemathesis_finds_no_server_error_and_no_schema_violation(worker_env, tmp_path):
    team = TeamFactory(slug="fuzz")
    admin = UserFactory(username="fuzzer", email="fuzzer@example.com")
    MembershipFactory(team=team, user=admin, role="admin")
    uploader = UserFactory(username="uploader")
    MembershipFactory(team=team, user=uploader, role="data_scientist")
    for _ in range(2):
        finished_version(team=team, uploader=uploader)
    _, token = ApiToken.issue(admin, "fuzz", list(SCOPES))

    port = _free_port()
    env = {**worker_env, "SLIPWAY_API_RATE_LIMIT": "100000/min", "SLIPWAY_UPLOAD_RATE_LIMIT": "100000/min"}
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            pytest.fail(f"gunicorn did not start:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
        schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
        run = subprocess.run(
            [
                schemathesis,
                "run",
                str(REPO / "docs" / "openapi.yaml"),
                "--url",
                f"http://127.0.0.1:{port}",
                "-H",
                f"Authorization: Bearer {token}",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                os.environ.get("SLIPWAY_FUZZ_EXAMPLES", "8"),
                "--seed",
                "20261202",
                "--max-time",
                "150",
                # one worker: hypothesis' lambda-source cache is not thread-safe
                "--workers",
                "1",
                "--no-color",
                "--output-sanitize",
                "true",
            ],
            capture_output=True,
            text=True,
            timeout=400,
            cwd=tmp_path,
        )
        report = run.stdout[-12000:] + run.stderr[-3000:]
        assert run.returncode == 0, f"schemathesis found problems:\n{report}"
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
