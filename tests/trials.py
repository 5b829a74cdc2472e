"""One benchmark trial's raw figures, as the benchmark's child process reports them, for tests
of what combines and reads them (`combine_trials`, the recommender, the comparison views)."""

from __future__ import annotations

from typing import Any

import numpy as np


def raw_trial(latencies_ms: list[float], *, cpu_ms_each: float, wall_ms_each: float | None = None) -> dict[str, Any]:
    """One trial at batch 1, serial: its timed requests, windows of about 50, and its CPU time."""
    n = len(latencies_ms)
    wall = wall_ms_each if wall_ms_each is not None else sum(latencies_ms) / n
    windows = max(1, n // 50)
    per_window = n // windows
    return {
        "batch_size": 1,
        "concurrency": 1,
        "p50_ms": float(np.median(latencies_ms)),
        "requests": n,
        "warmup_runs": 5,
        "window_p50s_ms": [float(np.median(latencies_ms))] * windows,
        "stable": True,
        "seconds": n * wall / 1000,
        "wall_ns": int(n * wall * 1e6),
        "cpu_ns": int(n * cpu_ms_each * 1e6),
        "window_counts": [per_window] * windows,
        "window_wall_ns": [int(per_window * wall * 1e6)] * windows,
        "window_cpu_ns": [int(per_window * cpu_ms_each * 1e6)] * windows,
        "sessions": 1,
        "samples_ms": latencies_ms,
    }
