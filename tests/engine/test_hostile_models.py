"""Hostile uploads (tests/hostile.py) through the engine's real entry points.

Every case must end in a ModelError or SandboxError (or BenchmarkFailed) whose message is a
sentence a user can act on, never a traceback and never a crash of this process; the
sandboxed children stay under the memory limit set here, measured from outside; and no
pickled payload ever runs.
"""

from __future__ import annotations

import json
import pickle
import random
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests import hostile, modelzoo
from tests.hostile import HostileCase
from workers.engine.benchmark import BenchmarkConfig, BenchmarkFailed, benchmark_variant
from workers.engine.errors import ModelError
from workers.engine.importers.registry import detect_upload_format
from workers.engine.npz import describe_npz
from workers.engine.sandbox import SandboxError, SandboxLimits, run_in_sandbox

MEMORY_LIMIT = 2**30
LIMITS = SandboxLimits(memory_bytes=MEMORY_LIMIT, timeout_seconds=60)
# The web process runs detect_upload_format and describe_npz itself: they may not grow it
# by more than this, whatever the upload.
WEB_PROCESS_GROWTH_LIMIT = 64 * 2**20
PROFILE = {
    "name": "x86-cpu",
    "device_kind": "cpu",
    "backends": ["onnxruntime", "openvino"],
    "precisions": ["fp32", "int8"],
    "queue": "cpu",
    "options": {},
}
# Filled by the tests, printed at the end of the module (pytest -s) for docs/reliability.
OUTCOMES: dict[str, dict[str, object]] = {}


def assert_readable(error: ModelError | SandboxError | BenchmarkFailed) -> None:
    """A sentence (or a few) for a person: capitalised, ends with a full stop, one line, no traceback."""
    message = error.message.strip()
    assert message, error
    assert message[0].isupper() and message.endswith("."), message
    assert "\n" not in message and "Traceback" not in message and 'File "' not in message, message
    assert len(message) < 1200, message


@contextmanager
def child_peak_rss() -> Iterator[dict[str, int]]:
    """Sample the resident memory of every child this process starts inside the block (and
    theirs) every 5 ms, and their kernel high-water marks; yields a dict whose "peak" is the
    largest seen. Children that were already running (a session-wide Celery worker of the
    integration tests, say) are not ours to measure.

    VmHWM starts afresh at exec, so a sample taken any time after a child's peak reads it.
    getrusage(RUSAGE_CHILDREN) is no help here: Linux carries ru_maxrss across fork and exec,
    so every child would report at least this pytest process's own resident set."""
    seen: dict[str, int] = {"peak": 0}
    stop = threading.Event()
    me = psutil.Process()
    own_command = me.cmdline()
    already = {child.pid for child in me.children()}

    def ours() -> list[psutil.Process]:
        found = []
        for child in me.children():
            if child.pid not in already:
                try:
                    found += [child, *child.children(recursive=True)]
                except psutil.Error:
                    continue
        return found

    def sample() -> None:
        while not stop.is_set():
            for child in ours():
                try:
                    # Between fork and exec a child is still a copy of this pytest process,
                    # whose resident pages it shares: not the child's own memory yet.
                    if child.cmdline() == own_command:
                        continue
                    with open(f"/proc/{child.pid}/status") as status:
                        for line in status:
                            if line.startswith(("VmHWM:", "VmRSS:")):
                                seen["peak"] = max(seen["peak"], int(line.split()[1]) * 1024)
                except (OSError, ValueError, psutil.Error):
                    continue
            stop.wait(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def _record(case: HostileCase, outcome: str, seconds: float, peak: int | None = None) -> None:
    OUTCOMES[case.name] = {"stage": case.stage, "outcome": outcome, "seconds": round(seconds, 2), "peak_rss": peak}


def _payload(path: Path, fmt: str, folder: Path) -> dict[str, str]:
    return {"source": str(path), "format": fmt, "workdir": str(folder / "work"), "out_dir": str(folder / "out")}


def _params(stage: str) -> list[object]:
    return [
        pytest.param(case, id=case.name, marks=[pytest.mark.slow] if case.slow else []) for case in hostile.cases(stage)
    ]


def _self_rss_high_water() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- the payloads are live ------------------------------------------------------------------


def test_the_pickled_payloads_really_run_when_unpickled(tmp_path: Path) -> None:
    """Proof that "the marker is absent" below means "nothing unpickled it"."""
    pickle.loads(hostile.payload_pickle(tmp_path))  # noqa: S301 - our own payload, on purpose
    assert (tmp_path / hostile.PAYLOAD_MARKER).exists()
    (tmp_path / hostile.PAYLOAD_MARKER).unlink()
    with np.load(hostile.npz_object_array(tmp_path), allow_pickle=True) as data:
        data["input"]
    assert (tmp_path / hostile.PAYLOAD_MARKER).exists()


# --- refused at upload, in the web process ------------------------------------------------------


@pytest.mark.parametrize("case", _params(hostile.UPLOAD))
def test_refused_at_upload(case: HostileCase, tmp_path: Path) -> None:
    path = case.make(tmp_path)
    before = _self_rss_high_water()
    started = time.monotonic()
    with pytest.raises(ModelError) as raised:
        detect_upload_format(path)
    seconds = time.monotonic() - started
    assert raised.value.code in case.codes, raised.value
    assert case.fragment in raised.value.message
    assert_readable(raised.value)
    assert seconds < 5, f"detect_upload_format took {seconds:.1f} s"
    assert _self_rss_high_water() - before < WEB_PROCESS_GROWTH_LIMIT
    assert not (tmp_path / hostile.PAYLOAD_MARKER).exists()
    _record(case, f"upload: {raised.value.code}", seconds)


# --- accepted at upload, stopped by the sandboxed inspect step -----------------------------------


@pytest.mark.parametrize("case", _params(hostile.INSPECT))
def test_stopped_by_the_sandboxed_inspection(case: HostileCase, tmp_path: Path) -> None:
    path = case.make(tmp_path)
    fmt = detect_upload_format(path)
    assert fmt in ("onnx", "onnx-zip")
    started = time.monotonic()
    with child_peak_rss() as rss:
        try:
            report, _ = run_in_sandbox(
                "inspect", _payload(path, fmt, tmp_path), LIMITS, what="inspection", writable=[tmp_path]
            )
        except (ModelError, SandboxError) as exc:
            error: ModelError | SandboxError | None = exc
        else:
            error = None
    seconds = time.monotonic() - started
    assert rss["peak"] < MEMORY_LIMIT
    if not case.codes:
        # Hostile only in size or depth: it must inspect, in bounded time and memory.
        assert error is None, error
        assert report["node_count"] >= 1
        _record(case, f"inspected ({report['node_count']:,} nodes)", seconds, rss["peak"])
        return
    assert isinstance(error, ModelError), error
    assert error.code in case.codes, error
    assert case.fragment in error.message
    assert_readable(error)
    _record(case, f"inspect: {error.code}", seconds, rss["peak"])


# --- framework files, stopped by the sandboxed import step ---------------------------------------


@pytest.mark.parametrize("case", _params(hostile.IMPORT))
def test_stopped_by_the_sandboxed_import(case: HostileCase, tmp_path: Path) -> None:
    path = case.make(tmp_path)
    fmt = detect_upload_format(path)
    assert not fmt.startswith("onnx")
    payload = {**_payload(path, fmt, tmp_path), "inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}]}
    started = time.monotonic()
    # torch alone maps more than 1 GiB of address space; RSS is what is bounded here.
    with child_peak_rss() as rss, pytest.raises(ModelError) as raised:
        run_in_sandbox(
            "import",
            payload,
            SandboxLimits(memory_bytes=4 * 2**30, timeout_seconds=120),
            what="the import",
            writable=[tmp_path],
        )
    assert raised.value.code in case.codes, raised.value
    assert case.fragment in raised.value.message
    assert_readable(raised.value)
    assert rss["peak"] < MEMORY_LIMIT
    assert not (tmp_path / hostile.PAYLOAD_MARKER).exists(), "a pickled payload ran"
    _record(case, f"import: {raised.value.code}", time.monotonic() - started, rss["peak"])


# --- valid to the checker, trouble for the runtimes ----------------------------------------------


@pytest.mark.slow  # seconds each: the full suite runs it, make test-fast does not
@pytest.mark.parametrize("case", _params(hostile.RUNTIME))
def test_runtime_trouble_fails_validate_parity_and_benchmark_readably(case: HostileCase, tmp_path: Path) -> None:
    path = case.make(tmp_path)
    payload = _payload(path, detect_upload_format(path), tmp_path)
    timeout = 8 if case.name == "loop-forever" else 60
    limits = SandboxLimits(memory_bytes=MEMORY_LIMIT, timeout_seconds=timeout)
    started = time.monotonic()
    outcome = []
    with child_peak_rss() as rss:
        report, _ = run_in_sandbox("inspect", payload, limits, what="inspection", writable=[tmp_path])
        assert report["inputs"], "it passes inspection; the runtimes are what it is hostile to"

        for backend in ("onnxruntime", "openvino"):
            # validate never fails a job: a backend that can't take the model says why in its report.
            support, _ = run_in_sandbox(
                "validate", {**payload, "backend": backend}, limits, what="validate", writable=[tmp_path]
            )
            assert support["verdict"] in ("full", "partial", "none", "not_installed"), support
            outcome.append(f"validate {backend}: {support['verdict']}")

        code, fragment = hostile.PARITY_EXPECTED[case.name]
        store = {"model": str(path), "validation": None, "samples": 2, "store": str(tmp_path / "reference.npz")}
        with pytest.raises((ModelError, SandboxError)) as parity:
            run_in_sandbox(
                "parity_reference", store, limits, what="running the original model for parity", writable=[tmp_path]
            )
        assert parity.value.code == code and fragment in parity.value.message, parity.value
        assert_readable(parity.value)
        outcome.append(f"parity: {code}")

        code, fragment = hostile.BENCHMARK_EXPECTED[case.name]
        config = BenchmarkConfig(
            batch_sizes=(1,),
            concurrency=(1,),
            max_seconds_per_point=0.2,
            window_runs=5,
            max_windows=3,
            warmup_runs=1,
            memory_limit_bytes=MEMORY_LIMIT,
            timeout_seconds=timeout,
        )
        with pytest.raises(BenchmarkFailed) as benchmark:
            benchmark_variant("onnxruntime", path, None, config)
        assert benchmark.value.code == code and fragment in benchmark.value.message, benchmark.value
        assert_readable(benchmark.value)
        outcome.append(f"benchmark: {code}")
    assert rss["peak"] < MEMORY_LIMIT
    _record(case, "; ".join(outcome), time.monotonic() - started, rss["peak"])


def test_a_scalar_bool_input_can_be_benchmarked(tmp_path: Path) -> None:
    """Found by the corpus (nested-if): numpy made a bool scalar, not an array, for shape ()."""
    config = BenchmarkConfig(batch_sizes=(1,), concurrency=(1,), max_seconds_per_point=0.2, window_runs=5)
    result = benchmark_variant("onnxruntime", modelzoo.make_if_onnx(tmp_path / "if.onnx"), None, config)
    assert result.points[0].p50_ms > 0


# --- hostile calibration and validation files -----------------------------------------------------


@pytest.mark.parametrize("case", _params(hostile.NPZ))
def test_hostile_npz_is_refused_at_upload_and_never_unpickled(case: HostileCase, tmp_path: Path) -> None:
    path = case.make(tmp_path)
    before = _self_rss_high_water()
    started = time.monotonic()
    with pytest.raises(ModelError) as raised:
        describe_npz(path)
    seconds = time.monotonic() - started
    assert raised.value.code in case.codes and case.fragment in raised.value.message, raised.value
    assert_readable(raised.value)
    assert _self_rss_high_water() - before < WEB_PROCESS_GROWTH_LIMIT
    # And had it been stored (before these checks existed), parity still refuses it readably.
    model = modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx")
    store = {"model": str(model), "validation": str(path), "samples": 2, "store": str(tmp_path / "reference.npz")}
    with child_peak_rss() as rss, pytest.raises(ModelError) as parity:
        run_in_sandbox(
            "parity_reference", store, LIMITS, what="running the original model for parity", writable=[tmp_path]
        )
    assert parity.value.code == "validation_invalid", parity.value
    assert_readable(parity.value)
    assert rss["peak"] < MEMORY_LIMIT
    assert not (tmp_path / hostile.PAYLOAD_MARKER).exists(), "a pickled payload ran"
    _record(case, f"upload: {raised.value.code}; parity: {parity.value.code}", seconds, rss["peak"])


# --- random bit flips -------------------------------------------------------------------------------


def _flip_sweep(tmp_path: Path, count: int, seed: int) -> dict[str, int]:
    """Flip 1-3 bits of small valid models, near their ends (where the graph structure is);
    each mutant must give a readable ModelError or a report."""
    rng = random.Random(seed)
    seeds = [
        modelzoo.make_if_onnx(tmp_path / "if.onnx").read_bytes(),
        modelzoo.make_function_onnx(tmp_path / "function.onnx").read_bytes(),
        modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx").read_bytes(),
    ]
    outcomes: dict[str, int] = {}
    for index in range(count):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            data[len(data) - 1 - rng.randrange(min(len(data), 600))] ^= 1 << rng.randrange(8)
        path = tmp_path / f"mutant-{index}.onnx"
        path.write_bytes(bytes(data))
        try:
            fmt = detect_upload_format(path)
            run_in_sandbox("inspect", _payload(path, fmt, tmp_path), LIMITS, what="inspection", writable=[tmp_path])
            key = "inspected"
        except ModelError as exc:
            assert_readable(exc)
            key = exc.code
        except SandboxError as exc:
            pytest.fail(f"{path}: the sandbox reported {exc.code}: {exc.message}\n{exc.log[-2000:]}")
        outcomes[key] = outcomes.get(key, 0) + 1
    return outcomes


@pytest.mark.slow  # seconds each: the full suite runs it, make test-fast does not
def test_bit_flipped_models_fail_readably(tmp_path: Path) -> None:
    outcomes = _flip_sweep(tmp_path, 8, seed=1)
    assert sum(outcomes.values()) == 8
    OUTCOMES["bitflip-sweep-8"] = {"stage": "mixed", "outcome": json.dumps(outcomes), "seconds": None}


@pytest.mark.slow
def test_many_bit_flipped_models_fail_readably(tmp_path: Path) -> None:
    outcomes = _flip_sweep(tmp_path, 60, seed=2)
    OUTCOMES["bitflip-sweep-60"] = {"stage": "mixed", "outcome": json.dumps(outcomes), "seconds": None}


@pytest.fixture(scope="module", autouse=True)
def _print_outcomes() -> Iterator[None]:
    yield
    if OUTCOMES:
        print("\nhostile outcomes:", json.dumps(OUTCOMES, indent=1))
