"""The op-support matrix bench runs every backend on a slice of ONNX's node test suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("onnxruntime", "openvino", "mnn")

pytestmark = pytest.mark.slow


def test_matrix_reports_agreement_for_every_backend() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    done = subprocess.run(
        [
            sys.executable,
            "bench/op_support_matrix.py",
            "--limit",
            "40",
            "--no-write",
            "--json",
            "--backends",
            ",".join(BACKENDS),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # ~20 s on a quiet machine
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)

    assert result["cases"] == 40
    assert set(result["backends"]) == set(BACKENDS)
    for name, column in result["backends"].items():
        assert column["covered"] == 40, (name, column)
        assert column["said_supported"] <= column["covered"], name
        assert column["ran_and_matched"] <= column["ran"] <= column["covered"], name
        for key in ("agreement_percent", "agreement_percent_without_numpy_io", "agreement_with_matched_percent"):
            assert 0.0 <= column[key] <= 100.0, (name, key, column[key])
        assert column["crashes"] >= 0, name
    # onnxruntime's support check asks onnxruntime itself: it must predict what runs.
    assert result["backends"]["onnxruntime"]["agreement_percent"] >= 90.0, result["backends"]["onnxruntime"]

    matrix = result["op_type_matrix"]
    assert matrix["op_types"] > 0
    for kind in ("claimed", "ran_and_matched"):
        assert sum(matrix[kind].values()) == matrix["op_types"], matrix[kind]
