"""The `slipway` CLI as a CI job runs it, against the real web app (a `runserver` process)
and a real worker on the test database: push a model and wait for its pipeline, pass a
gate, fail a gate, read the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from apps.accounts.models import ApiToken
from tests import modelzoo
from tests.factories import MembershipFactory, TeamFactory, UserFactory

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _slipway_command() -> list[str]:
    script = Path(sys.executable).parent / "slipway"
    return [str(script)] if script.exists() else [sys.executable, "-m", "slipway_cli"]


def test_ci_job_pushes_waits_and_gates(celery_worker_process, web_server, tmp_path):
    user = UserFactory(username="ci-bot")
    MembershipFactory(team=TeamFactory(slug="ml"), user=user, role="admin")
    _, token = ApiToken.issue(user, "ci", ["read", "upload", "admin"])
    # The environment a CI job has: no Django settings, no database; only the CLI's variables.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "SLIPWAY_URL": web_server,
        "SLIPWAY_TOKEN": token,
        "SLIPWAY_POLL_SECONDS": "0.5",
    }

    def slipway(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_slipway_command(), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
        )

    model = modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx")
    pushed = slipway("push", str(model), "--model", "scorer", "--profile", "x86-cpu", "--wait", "--print-id")
    assert pushed.returncode == 0, pushed.stderr
    version_id = int(pushed.stdout.strip())
    assert "Uploading mlp.onnx" in pushed.stderr and "recommend" in pushed.stderr
    assert token not in pushed.stdout + pushed.stderr

    listed = slipway("models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(m["slug"], m["latest_version"]["status"]) for m in json.loads(listed.stdout)] == [("scorer", "ready")]

    def policy(name: str, max_ms: float) -> None:
        created = requests.post(
            f"{web_server}/api/v1/policies/",
            json={"team": "ml", "name": name, "kind": "max_p99_latency", "params": {"max_ms": max_ms}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert created.status_code == 201, created.text

    policy("p99 under 1 s", 1000)
    passed = slipway("gate", str(version_id))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "pass  p99 under 1 s (max_p99_latency, x86-cpu)" in passed.stdout

    policy("p99 impossibly fast", 0.000001)
    failed = slipway("gate", "scorer:1")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAIL  p99 impossibly fast (max_p99_latency, x86-cpu)" in failed.stdout
    assert "vs threshold 1e-06" in failed.stdout and "fails 1 of 2 gates" in failed.stdout

    raw = slipway("report", str(version_id), "--json")
    assert raw.returncode == 0, raw.stderr
    report = json.loads(raw.stdout)
    assert report["version"]["id"] == version_id and report["version"]["status"] == "ready"
    assert len(report["review"]["gates"]) == 2
    (tmp_path / "report.json").write_text(raw.stdout)

    human = slipway("report", str(version_id))
    assert human.returncode == 0, human.stderr
    assert "Profile x86-cpu" in human.stdout and "Recommended (*): " in human.stdout
    assert "onnxruntime" in human.stdout and "Gates: 1 of 2 failed" in human.stdout
