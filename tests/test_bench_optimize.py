"""The optimized-variants bench runs end to end on a real CNN and reports sane numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_quick_bench_times_the_baseline_and_every_variant() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    done = subprocess.run(
        [sys.executable, "bench/optimize.py", "--quick", "--models", "cnn", "--no-write", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # ~50 s on a quiet 2-core machine; generous for a busy one
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)

    assert result["mode"] == "quick"
    assert "onnxruntime" in result["profile"]["backends"]
    cnn = result["models"]["cnn"]
    baseline = cnn["baseline"]
    assert baseline["p50_ms"] > 0
    # Interleaved: one baseline run before the first variant and one after each variant.
    assert len(baseline["p50_ms_each_run"]) == len(cnn["variants"]) + 1
    assert baseline["self_check"]["cosine"] == pytest.approx(1.0)

    _check_recommendation(result, "cnn")

    variants = cnn["variants"]
    assert len(variants) >= 4, cnn["build_notes"]
    names = {variant["name"] for variant in variants}
    assert {"ort-opt-all", "ort-int8-dynamic", "ort-int8-static-qdq"} <= names
    for variant in variants:
        assert "error" not in variant, variant
        assert variant["p50_ms"] > 0, variant
        assert variant["ratio_vs_baseline"] > 0, variant
        assert variant["cosine"] > 0.9, variant
        assert variant["file_bytes"] > 0, variant
        assert variant["p99_ratio_vs_baseline"] > 0, variant
        # Slipway's own parity verdict at the x86-cpu profile's tolerance, with a reason for a failure.
        assert isinstance(variant["parity"]["passed"], bool), variant
        assert variant["parity"]["passed"] or variant["parity"]["reasons"], variant


def _check_recommendation(result: dict, key: str) -> None:
    model = result["models"][key]
    rec = model["recommendation"]
    assert rec["objective"] == "p99_latency_batch1"
    # The seeded x86-cpu profile's tolerance.
    assert rec["tolerance"]["max_abs_error"] == pytest.approx(1e-3)
    assert rec["tolerance"]["min_cosine"] == pytest.approx(0.99)
    assert rec["summary"]
    by_name = {variant["name"]: variant for variant in model["variants"]}
    failed = {item["name"] for item in rec["failed_parity"]}
    assert failed == {name for name, variant in by_name.items() if not variant["parity"]["passed"]}
    assert all(item["reasons"] for item in rec["failed_parity"])
    if rec["use_baseline"]:
        assert rec["winner"] is None
        assert rec["value"] == 1.0
        return
    winner = rec["winner"]
    assert winner["name"] in by_name
    assert by_name[winner["name"]]["parity"]["passed"], winner
    assert winner["parity_passed"]
    for ratio in ("ratio_vs_baseline", "cpu_ratio_vs_baseline", "p99_ratio_vs_baseline"):
        assert winner[ratio] > 0, winner
    # One thread (the default): the figure to quote is the CPU-time p50 ratio.
    assert rec["value"] == winner["cpu_ratio_vs_baseline"]
    assert result["value"][key] == rec["value"]
    if rec["runner_up"] is not None:
        assert rec["runner_up"]["name"] != winner["name"]
        assert by_name[rec["runner_up"]["name"]]["parity"]["passed"]
