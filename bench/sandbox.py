"""What the isolation boundary costs a sandboxed call, next to the same call without it.

Each repetition runs the same two engine calls through `run_in_sandbox`, once inside the
namespaced boundary (bubblewrap, seccomp, the sandbox user: the default) and once with
SLIPWAY_SANDBOX_ISOLATION=limits (memory and time limits only, as before ADR 0008),
interleaved in alternating order so drift hits both alike:

- `echo`: the selftest entry point, which imports nothing heavy: the fixed cost of a call;
- `inspect`: inspection of a small CNN built with onnx, a real step.

Reports the median wall time of each, the median of the per-repetition differences and
ratios, and their spread (min to max). Writes the "Sandbox" section of BENCHMARKS.md unless
--no-write.

    python bench/sandbox.py                 # 30 repetitions
    python bench/sandbox.py --repetitions 5 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import modelzoo  # noqa: E402
from workers.engine import isolation  # noqa: E402
from workers.engine.sandbox import SandboxLimits, run_in_sandbox  # noqa: E402

LIMITS = SandboxLimits(memory_bytes=2 * 2**30, timeout_seconds=120)


def timed_call(mode: str, entry: str, payload: dict[str, object], scratch: Path) -> float:
    os.environ[isolation.ISOLATION_ENV] = mode
    started = time.perf_counter()
    run_in_sandbox(entry, payload, LIMITS, writable=[scratch])
    return time.perf_counter() - started


def measure(repetitions: int) -> dict[str, dict[str, list[float]]]:
    with tempfile.TemporaryDirectory(prefix="slipway-bench-sandbox-") as folder:
        scratch = Path(folder)
        model = modelzoo.make_cnn_onnx(scratch / "cnn.onnx")
        calls = {
            "echo": ("selftest", {"action": "echo", "value": 1}),
            "inspect": ("inspect", {"source": str(model), "format": "onnx", "workdir": str(scratch)}),
        }
        times: dict[str, dict[str, list[float]]] = {name: {"namespaces": [], "limits": []} for name in calls}
        for entry, payload in calls.values():  # warm the page cache and the probe
            for mode in ("namespaces", "limits"):
                timed_call(mode, entry, payload, scratch)
        for repetition in range(repetitions):
            order = ("namespaces", "limits") if repetition % 2 == 0 else ("limits", "namespaces")
            for name, (entry, payload) in calls.items():
                for mode in order:
                    times[name][mode].append(timed_call(mode, entry, payload, scratch))
        os.environ.pop(isolation.ISOLATION_ENV, None)
    return times


def table(times: dict[str, dict[str, list[float]]]) -> str:
    rows = [
        "| call | boundary p50 | limits only p50 | difference p50 (min to max) | ratio p50 (min to max) |",
        "|---|---|---|---|---|",
    ]
    for name, by_mode in times.items():
        inside, outside = by_mode["namespaces"], by_mode["limits"]
        diffs = [(a - b) * 1000 for a, b in zip(inside, outside, strict=True)]
        ratios = [a / b for a, b in zip(inside, outside, strict=True)]
        rows.append(
            f"| {name} | {statistics.median(inside) * 1000:.0f} ms | {statistics.median(outside) * 1000:.0f} ms "
            f"| {statistics.median(diffs):+.1f} ms ({min(diffs):+.1f} to {max(diffs):+.1f}) "
            f"| {statistics.median(ratios):.3f} ({min(ratios):.3f} to {max(ratios):.3f}) |"
        )
    return "\n".join(rows)


def write_section(body: str) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md, leaving the others alone."""
    path = REPO / "BENCHMARKS.md"
    text = path.read_text()
    section = f"## Sandbox\n\n{body.strip()}\n\n"
    pattern = re.compile(r"^## Sandbox\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=30)
    parser.add_argument("--no-write", action="store_true", help="don't update BENCHMARKS.md")
    args = parser.parse_args()
    times = measure(args.repetitions)
    described = isolation.describe()
    body = (
        f"`bench/sandbox.py`, {datetime.date.today()}, {os.cpu_count()} cores, {args.repetitions} interleaved "
        f"repetitions: the same sandboxed calls inside the boundary of ADR 0008 ({described.mechanism}; "
        f"{'root worker, child dropped to the sandbox user' if os.geteuid() == 0 else 'non-root worker'}) and with "
        "`SLIPWAY_SANDBOX_ISOLATION=limits` (limits only). Wall time of the whole call as the worker sees it "
        "(process start, imports, the work, the result); `inspect` is a real step on a small CNN.\n\n" + table(times)
    )
    print(body)
    if not args.no_write:
        write_section(body)


if __name__ == "__main__":
    main()
