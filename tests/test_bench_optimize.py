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
