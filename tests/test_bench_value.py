"""The value bench runs end to end on the stateful recurrent model and reports both kinds of evidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_the_recurrent_model_is_judged_on_generated_and_real_like_inputs() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    done = subprocess.run(
        [
            sys.executable,
            "bench/value.py",
            "--models",
            "recurrent",
            "--backends",
            "onnxruntime",
            "--seconds",
            "0.6",
            "--no-write",
            "--json",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # about a minute on a quiet 2-core machine
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    model = result["models"]["recurrent"]

    # The two kinds of evidence: the engine's generated inputs (a zero state), and the
    # real-like stream given as a validation set, whose state samples sit on axis 1.
    assert model["inputs"]["generated"]["source"] == "generated inputs"
    assert "zeros 2x1x128" in model["inputs"]["generated"]["description"]
    assert model["inputs"]["real"]["source"] == "validation set"
    assert model["inputs"]["real"]["samples"] == result["eval_samples"]

    names = {row["name"] for row in model["variants"]}
    # Static INT8 was built: the calibration set's state samples on axis 1 were accepted.
    assert {"ort-opt-all", "ort-int8-dynamic", "ort-int8-static-qdq"} <= names, model["build_notes"]
    for row in model["variants"]:
        for kind in ("generated", "real"):
            verdict = row["parity"][kind]
            assert isinstance(verdict["passed"], bool), row
            assert verdict["passed"] or verdict["reasons"], row
        assert row["point"] is not None, row
        ratio = row["cpu_ratio"]
        assert 0 < ratio["low"] <= ratio["ratio"] <= ratio["high"], row
    assert model["baseline"]["cpu_ms"] > 0 and model["baseline"]["trials"] == 3

    by_name = {row["name"]: row for row in model["variants"]}
    # An FP32 graph optimization computes the same numbers on either input.
    assert by_name["ort-opt-all"]["parity"]["generated"]["passed"]
    assert by_name["ort-opt-all"]["parity"]["real"]["passed"]
    for kind in ("generated", "real"):
        winner = model["recommendation"][kind]["winner"]
        assert winner is None or by_name[winner["name"]]["parity"][kind]["passed"], winner
    accepted = model["fastest_real_accepted"]
    assert accepted is not None and by_name[accepted]["parity"]["real"]["passed"]
    disagree = {
        name for name, row in by_name.items() if row["parity"]["generated"]["passed"] != row["parity"]["real"]["passed"]
    }
    assert set(model["disagreements"]) == disagree
