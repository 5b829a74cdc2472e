"""The anchor bench's bookkeeping: which candidate counts as an anchor's best, the goal per row,
the cached anchor environment, the feeds the anchor processes read, and its BENCHMARKS.md section."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import _anchor_worker as worker
from bench import anchors


def point(cpu_ms: float, spread: float = 0.02) -> dict[str, Any]:
    return {"cpu_ms": cpu_ms, "cpu_ci_ms": [cpu_ms * (1 - spread), cpu_ms * (1 + spread)], "samples": 30, "trials": 3}


def candidate(config: str, anchor: str, cpu_ms: float | None, passed: bool, baseline_ms: float = 10.0) -> dict:
    measured = point(cpu_ms) if cpu_ms is not None and passed else None
    return {
        "config": config,
        "anchor": anchor,
        "description": f"{config} does things",
        "built": True,
        "detail": config,
        "build_seconds": 1.0,
        "parity": {"passed": passed, "reasons": [] if passed else ["Top-1 agreement is 50%."]},
        "point": measured,
        "cpu_ratio": anchors.value.cpu_ratio(point(baseline_ms), measured),
    }


def test_an_anchors_best_is_its_fastest_candidate_that_passed_and_was_measured() -> None:
    candidates = [
        candidate("olive-static", "olive", 2.0, passed=False),  # fastest, but out of tolerance
        candidate("olive-conv-only", "olive", 4.0, passed=True),
        candidate("olive-peephole", "olive", 9.0, passed=True),
        {**candidate("inc-static", "inc", 3.0, passed=True), "point": None},  # its benchmark failed
        candidate("onnxslim", "onnxslim", 9.5, passed=True),
    ]

    best = anchors.best_per_anchor(candidates)

    assert best["olive"] is not None and best["olive"]["config"] == "olive-conv-only"
    assert best["inc"] is None
    assert best["onnxslim"] is not None and best["onnxslim"]["config"] == "onnxslim"


@pytest.mark.parametrize(
    ("ratio", "anchor_speeds_up", "met"),
    [(0.85, True, True), (0.95, True, False), (1.0, False, True), (1.05, False, False), (None, False, False)],
)
def test_the_goal_is_at_most_1_and_below_0_9_where_an_anchor_speeds_up(
    ratio: float | None, anchor_speeds_up: bool, met: bool
) -> None:
    assert anchors.goal_verdict(ratio, anchor_speeds_up)[0] is met


def test_slipway_loses_a_row_to_an_anchor_that_is_faster_beyond_the_noise() -> None:
    baseline = point(10.0)
    recommended = {"name": "ort-opt-all", "backend": "onnxruntime", "precision": "fp32", "point": point(10.0)}
    candidates = [candidate("olive-conv-only", "olive", 3.0, passed=True), candidate("onnxslim", "onnxslim", 9.9, True)]

    row = anchors.comparison(baseline, recommended, candidates)

    assert row["best_anchor"] == "olive-conv-only"
    assert row["anchor_speeds_up"] is True
    assert row["slipway_over_anchor"]["ratio"] == pytest.approx(10.0 / 3.0)
    assert row["goal_met"] is False


def test_keeping_the_original_ties_when_no_anchor_candidate_passes() -> None:
    row = anchors.comparison(point(10.0), None, [candidate("olive-static", "olive", 2.0, passed=False)])

    assert row["best_anchor"] is None
    assert row["slipway_over_anchor"]["ratio"] == 1.0
    assert row["goal_met"] is True


def test_the_anchor_environment_is_reused_while_its_pins_are_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "anchors-venv"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").write_text("")
    version = f"{anchors.sys.version_info.major}.{anchors.sys.version_info.minor}"
    (root / ".slipway-requirements").write_text(anchors.requirements_stamp(anchors.REQUIREMENTS, version))

    def no_install(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"the environment was rebuilt: {args}")

    monkeypatch.setattr(subprocess, "run", no_install)
    assert anchors.anchor_env(root) == root / "bin" / "python"

    changed = [*anchors.REQUIREMENTS[:-1], "scipy==0.0.1"]
    assert anchors.requirements_stamp(changed, version) != anchors.requirements_stamp(anchors.REQUIREMENTS, version)
    # torch stays pinned to the CPU wheel: an unpinned one pulls a multi-GB CUDA build.
    assert any(pin.startswith("torch==") for pin in anchors.REQUIREMENTS)


def test_the_anchor_processes_read_the_calibration_feeds_in_order(tmp_path: Path) -> None:
    feeds = [
        {"input": np.full((1, 512), index, np.float32), "state": np.full((2, 1, 128), -index, np.float32)}
        for index in range(12)
    ]
    anchors.write_feeds(tmp_path / "feeds.npz", feeds)

    read = worker.read_feeds(tmp_path / "feeds.npz")

    assert [float(feed["input"][0, 0]) for feed in read] == list(range(12))
    assert read[11]["state"].shape == (2, 1, 128)


def test_every_reference_model_gets_each_anchor_and_only_the_transformer_its_optimizer() -> None:
    for key in ("cnn", "transformer", "ocr", "detector", "recurrent"):
        names = {config.name for config in worker.configs_for(key)}
        assert {config.anchor for config in worker.configs_for(key)} == set(anchors.ANCHORS)
        assert ("olive-transformers-opt" in names) is (key == "transformer")
    assert set(anchors.MISSING) == {config.name for config in worker.CONFIGS}


def result_with(model: dict[str, Any]) -> dict[str, Any]:
    return {
        "date": "2026-12-06",
        "cpu": "a CPU",
        "cores": 2,
        "pinned_core": 0,
        "load_average_before": [1.0],
        "load_average_after": [2.0],
        "seconds_per_point": 2.0,
        "seconds": 600.0,
        "versions": {"onnxruntime": "1.32.0"},
        "anchor_versions": {"olive-ai": "0.13.0"},
        "models": {"cnn": model},
    }


def test_the_section_replaces_its_previous_run_and_leaves_the_others(tmp_path: Path) -> None:
    baseline = point(10.0)
    recommended = {
        "name": "ort-opt-all",
        "backend": "onnxruntime",
        "precision": "fp32",
        "point": point(10.0),
        "cpu_ratio": anchors.value.cpu_ratio(baseline, point(10.0)),
    }
    candidates = [candidate("olive-static-u8s8-conv-matmul", "olive", 3.0, passed=True)]
    model = {
        "title": "ResNet-18",
        "baseline": baseline,
        "slipway": {
            "recommended": recommended,
            "fastest_passing": recommended,
            "summary": "Use it.",
            "variants": [{"name": "ort-int8-static-qdq", "passed": False, "first_run_cpu_ratio": {"ratio": 0.3}}],
            "seconds": 60,
        },
        "candidates": candidates,
        **anchors.comparison(baseline, recommended, candidates),
        "seconds": 120.0,
    }
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Anchors\n\nold figures\n\n## Value\n\nvalue figures\n")

    anchors.write_benchmarks(result_with(model), path)

    text = path.read_text()
    assert "old figures" not in text
    assert text.count("## Anchors") == 1
    assert "## Value\n\nvalue figures\n" in text
    row = next(line for line in text.splitlines() if line.startswith("| `cnn` |"))
    assert "olive-static-u8s8-conv-matmul 0.30" in row
    assert "missed" in row
    # Where Slipway loses, the note names the optimization it lacks.
    assert "Missing in Slipway: static INT8 of Conv and MatMul only" in text
    assert "fail the accuracy rule on the real-like samples: ort-int8-static-qdq 0.30" in text


def test_a_missed_row_within_the_noise_says_so_instead_of_naming_an_optimization() -> None:
    baseline = point(10.0)
    # Slipway's recommended and the best anchor measure the same within their intervals.
    same = {
        "name": "ort-int8-static-compute",
        "backend": "onnxruntime",
        "precision": "int8",
        "point": point(3.1, spread=0.1),
        "cpu_ratio": anchors.value.cpu_ratio(baseline, point(3.1, spread=0.1)),
        "first_run_cpu_ratio": {"ratio": 0.31},
    }
    faster = {"name": "olive-static-u8s8-conv-matmul", **candidate("olive-static-u8s8-conv-matmul", "olive", 3.2, True)}
    faster["point"] = point(3.2, spread=0.1)
    model = {
        "slipway": {
            "recommended": same,
            "fastest_passing": same,
            "variants": [{"name": "ort-int8-static-qdq", "passed": False, "first_run_cpu_ratio": {"ratio": 0.28}}],
        },
        "candidates": [faster],
        **anchors.comparison(baseline, same, [faster]),
    }
    assert model["goal_met"] is False  # not 10 % faster

    note = anchors.row_note("cnn", model)

    assert "Slipway is as fast as the best anchor within the noise" in note
    assert "Missing in Slipway" not in note
    assert "Slipway's faster variants fail the accuracy rule on the real-like samples: ort-int8-static-qdq 0.28" in note
