"""A large upload does not grow the web process: run bench/upload.py small and check its numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

_NOT_INHERITED = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SETTINGS_MODULE",
    "SLIPWAY_SECRET_KEY",
    "SLIPWAY_DATA_DIR",
)


def test_256_mib_upload_grows_the_web_worker_by_less_than_64_mib():
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    done = subprocess.run(
        [sys.executable, "bench/upload.py", "--size-mib", "256", "--no-write", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["file_mib"] >= 256
    assert result["web_rss_growth_mib"] < 64, result
