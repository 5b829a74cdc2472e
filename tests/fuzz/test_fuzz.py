"""Run each atheris fuzz target for a bounded time; any crash, hang or blow-up fails the test.

Each target runs in its own process (libFuzzer owns the process it fuzzes) on a seed corpus
built by code, for SLIPWAY_FUZZ_SECONDS seconds (default 20), with -max_len, -rss_limit_mb
and -timeout set. A failure prints the reproducer's path: run the target on that file alone
(python -m tests.fuzz.fuzz_upload PATH) to see the exception.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is in the dev extra: pip install atheris")

from tests.fuzz import seeds

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("SLIPWAY_FUZZ_SECONDS", "20"))
TARGETS = {
    # target module: (seed corpus, -max_len)
    "fuzz_upload": (seeds.upload_seeds, 65536),
    "fuzz_inspection": (seeds.model_seeds, 8192),
    "fuzz_signature": (seeds.signature_seeds, 4096),
}
RSS_LIMIT_MB = 2048
TIMEOUT_SECONDS = 20
# Filled by the tests; printed at the end (pytest -s) for docs/reliability/hostile.md.
STATS: dict[str, dict[str, object]] = {}


def _final_stats(log: str) -> dict[str, object]:
    executions = re.findall(r"stat::number_of_executed_units: (\d+)", log)
    coverage = re.findall(r"\bcov: (\d+) ft: (\d+) corp: (\d+)", log)
    stats: dict[str, object] = {"executions": int(executions[-1]) if executions else None}
    if coverage:
        cov, features, corpus = coverage[-1]
        stats.update(coverage_edges=int(cov), features=int(features), corpus_entries=int(corpus))
    return stats


def _with_own_peak_rss(command: list[str]) -> list[str]:
    """Start `command` from a small shell that forks it, not straight from pytest.

    -rss_limit_mb is checked against getrusage's ru_maxrss, which Linux carries across fork
    and exec: a target started by this pytest process would begin with pytest's own resident
    set (2 GB late in a full run, with torch, TensorFlow and OpenVINO loaded) and be reported
    out of memory before its first input. The shell is small, and `; exit $?` keeps it from
    exec'ing the command in its own place, so the target's peak is its own."""
    return ["sh", "-c", '"$@"; exit $?', "sh", *command]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    make_seeds, max_len = TARGETS[target]
    corpus = seeds.write(make_seeds(), tmp_path / "corpus")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "platform")]),
        "PYTHONHASHSEED": "0",
        "SLIPWAY_FUZZ_SCRATCH": str(tmp_path / "scratch"),
    }
    command = [
        sys.executable,
        "-m",
        f"tests.fuzz.{target}",
        str(corpus),
        f"-max_total_time={SECONDS}",
        f"-max_len={max_len}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-timeout={TIMEOUT_SECONDS}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    # libFuzzer stops at -max_total_time only between inputs: allow one slow input and start-up.
    done = subprocess.run(
        _with_own_peak_rss(command),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SECONDS + TIMEOUT_SECONDS + 120,
    )
    # atheris prints an uncaught exception's traceback to stdout and libFuzzer its report to
    # stderr: stdout goes last, so the excerpt below ends with the traceback.
    log = done.stderr + done.stdout
    reproducers = sorted(str(path) for path in artifacts.iterdir())
    STATS[target] = {"seconds": SECONDS, "returncode": done.returncode, **_final_stats(log), "found": reproducers}
    if done.returncode != 0 or reproducers:
        excerpt = "\n".join(log.splitlines()[-60:])
        pytest.fail(
            f"{target} found a crash, hang or blow-up (exit {done.returncode}). Reproducer(s): "
            f"{', '.join(reproducers) or 'none written'}.\nReplay: PYTHONPATH={REPO}:{REPO}/platform "
            f"{sys.executable} -m tests.fuzz.{target} {reproducers[0] if reproducers else ''}\n{excerpt}"
        )
    assert STATS[target]["executions"], log[-3000:]


@pytest.fixture(scope="module", autouse=True)
def _print_stats():
    yield
    if STATS:
        print("\nfuzz stats:", json.dumps(STATS, indent=1))
