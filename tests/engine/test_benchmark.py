"""The benchmark harness measures a real model in a pinned child process, and a variant that
fails, crashes or hangs its runtime becomes a BenchmarkFailed instead of taking the caller down."""

from __future__ import annotations

import json
import os
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import onnx
import pytest

from tests.modelzoo import make_cnn_onnx
from workers.engine.benchmark import (
    BenchmarkConfig,
    BenchmarkFailed,
    BenchmarkRequest,
    BenchmarkResult,
    benchmark_interleaved,
    benchmark_variant,
    make_inputs,
    resolve_input_shapes,
)
from workers.engine.importers.base import InputSpec
from workers.engine.measure import measure_harness_overhead

# Small windows: the tests check what is reported, not how fast anything is.
QUICK = BenchmarkConfig(
    batch_sizes=(1, 4),
    concurrency=(1, 2),
    warmup_runs=3,
    warmup_seconds=0.0,
    window_runs=20,
    max_windows=4,
    max_seconds_per_point=1.0,
    keep_samples=25,
    timeout_seconds=60,
)
ONE_POINT = BenchmarkConfig(warmup_runs=1, warmup_seconds=0.0, window_runs=5, max_windows=3, timeout_seconds=60)

# Test-only backends, registered inside the benchmark's child process by a sitecustomize module
# on its PYTHONPATH (the child is a fresh interpreter, so monkeypatching here can't reach it).
FAKE_BACKENDS = """
import os
import signal
import time

from workers.engine.backends import registry
from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend


class SegfaultingBackend(OnnxRuntimeCpuBackend):
    name = "test-segfault"

    def load(self, variant_path):
        os.kill(os.getpid(), signal.SIGSEGV)


class HangingBackend(OnnxRuntimeCpuBackend):
    name = "test-hang"

    def load(self, variant_path):
        session = super().load(variant_path)
        session.run = lambda inputs: time.sleep(3600)
        return session


registry.BACKENDS.update({"test-segfault": SegfaultingBackend, "test-hang": HangingBackend})
"""


def _dynamic_batch_cnn(path: Path) -> Path:
    """The modelzoo CNN with its batch dim made symbolic ("batch"), so it runs at any batch size."""
    model = onnx.load(str(make_cnn_onnx(path)))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def cnn_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _dynamic_batch_cnn(tmp_path_factory.mktemp("benchmark") / "cnn.onnx")


@pytest.fixture(scope="module")
def quick_result(cnn_path: Path) -> tuple[BenchmarkResult, list[tuple[float, str]]]:
    seen: list[tuple[float, str]] = []
    core = min(os.sched_getaffinity(0))
    config = replace(QUICK, pin_cores=(core,))
    return benchmark_variant("onnxruntime", cnn_path, None, config, lambda f, m: seen.append((f, m))), seen


@pytest.fixture
def fake_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(FAKE_BACKENDS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))


def test_every_point_has_ordered_latencies_throughput_and_bounded_samples(quick_result) -> None:
    result, _ = quick_result
    assert [(p.batch_size, p.concurrency) for p in result.points] == [(1, 1), (1, 2), (4, 1), (4, 2)]
    for point in result.points:
        # A point measures on past stability until its p99 has the 1,000 samples it needs.
        assert point.requests >= QUICK.min_samples == 1000 and point.samples == point.requests
        assert point.p99_ms is not None and point.p99_note is None
        assert 0 < point.min_ms <= point.p50_ms <= point.p90_ms <= point.p95_ms <= point.p99_ms <= point.max_ms
        # ... but not p99.9, which needs 10,000: it says so instead of showing the slowest few.
        assert point.p99_9_ms is None and point.p99_9_note and "for p99.9" in point.p99_9_note
        assert point.min_ms <= point.mean_ms <= point.max_ms and point.std_ms >= 0
        assert point.throughput > 0
        assert point.windows >= 1 and len(point.window_p50s_ms) == point.windows
        # Raw samples are kept for plots, thinned to keep_samples.
        assert 0 < len(point.samples_ms) == min(point.requests, QUICK.keep_samples)
        assert all(point.min_ms <= s <= point.max_ms for s in point.samples_ms)
        assert point.peak_rss_bytes and point.peak_rss_bytes > 10 * 2**20
        assert point.peak_gpu_memory_bytes is None
        assert point.sessions == 1  # onnxruntime sessions are shared between threads
    assert result.load_ms > 0
    assert result.runtime_version and result.cpu_model and result.peak_rss_bytes


@pytest.mark.slow  # seconds each: the full suite runs it, make test-fast does not
def test_interleaved_trials_in_fresh_processes_give_every_figure_its_interval(cnn_path: Path, tmp_path: Path) -> None:
    # The same model twice under two names: the original and a "variant" measured round robin.
    twin = tmp_path / "twin.onnx"
    twin.write_bytes(cnn_path.read_bytes())
    seen: list[str] = []
    config = BenchmarkConfig(
        warmup_runs=3, warmup_seconds=0.0, window_runs=50, max_seconds_per_point=3.0, trials=3, timeout_seconds=120,
        pin_cores=(min(os.sched_getaffinity(0)),),
    )  # fmt: skip
    requests = [BenchmarkRequest("onnxruntime", cnn_path), BenchmarkRequest("onnxruntime", twin)]
    results = benchmark_interleaved(requests, config, lambda fraction, message: seen.append(message))
    assert all(isinstance(result, BenchmarkResult) for result in results)
    # Round robin: trial 1 of both, then trial 2 of both...
    order = [m.split(":")[0] for m in seen if m.startswith("trial") and "loading" in m]
    assert order == ["trial 1/3", "trial 1/3", "trial 2/3", "trial 2/3", "trial 3/3", "trial 3/3"]
    for result in results:
        assert isinstance(result, BenchmarkResult)
        data = json.loads(json.dumps(result.to_dict()))
        point = data["points"][0]
        assert point["trials"] == 3 and point["samples"] == point["requests"] >= 1000
        assert len(point["trial_cpu_ms"]) == 3 and len(point["trial_p50_ms"]) == 3
        for value, interval in (
            (point["p50_ms"], point["p50_ci_ms"]),
            (point["p99_ms"], point["p99_ci_ms"]),
            (point["cpu_ms"], point["cpu_ci_ms"]),
            (point["throughput"], point["throughput_ci"]),
        ):
            assert interval[0] <= value <= interval[1] and interval[0] < interval[1]
        assert point["p99_note"] is None
        assert point["cpu_ms"] > 0 and "3 trials" in point["interval_method"]
        # Process CPU time per inference, single-threaded: a share of the wall clock, not more.
        assert point["cpu_ms"] <= point["mean_ms"] * 1.5
        assert any("3 trials" in note for note in data["notes"])
        assert data["harness_overhead"] is not None


def test_the_child_is_pinned_and_its_thread_settings_are_recorded(quick_result) -> None:
    result, _ = quick_result
    core = min(os.sched_getaffinity(0))
    assert result.threads.pinned_cores == (core,)
    assert result.threads.intra_op_threads == 1  # one per pinned core
    assert result.threads.threads_argument == "intra_op_threads"
    assert result.threads.env["OMP_NUM_THREADS"] == "1"
    assert result.sessions_shared_between_threads


def test_a_symbolic_batch_dim_takes_the_batch_size(quick_result) -> None:
    result, _ = quick_result
    assert result.inputs["1"]["image"]["shape"] == [1, 3, 32, 32]
    assert result.inputs["4"]["image"]["shape"] == [4, 3, 32, 32]

    specs = [InputSpec("ids", ("batch", "seq")), {"name": "mask", "shape": ["batch", None, 2], "dtype": "bool"}]
    assert resolve_input_shapes(specs, 8, {"seq": 16}) == {"ids": (8, 16), "mask": (8, 1, 2)}
    feeds = make_inputs([InputSpec("ids", ("batch", 5), "int64")], 3, seed=1)
    assert feeds["ids"].shape == (3, 5) and str(feeds["ids"].dtype) == "int64"


def test_progress_is_reported_and_the_result_is_json(quick_result) -> None:
    result, seen = quick_result
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    data = json.loads(json.dumps(result.to_dict()))
    assert data["points"][0]["p50_ms"] == result.points[0].p50_ms
    assert result.point(4, 2).batch_size == 4


def test_harness_overhead_is_measured_and_reported(quick_result) -> None:
    overhead = measure_harness_overhead(min_seconds=0.05)
    assert overhead.per_inference_us > 0 and overhead.requests > 0
    assert overhead.percent_of_1ms == pytest.approx(overhead.per_inference_us / 10, rel=1e-3)
    result, _ = quick_result
    assert result.harness_overhead is not None and result.harness_overhead.per_inference_us > 0


def test_fixed_batch_model_refuses_other_batch_sizes_before_starting(tmp_path: Path) -> None:
    fixed = make_cnn_onnx(tmp_path / "fixed.onnx")
    specs = [{"name": "image", "shape": [1, 3, 32, 32], "dtype": "float32"}]
    with pytest.raises(BenchmarkFailed) as info:
        benchmark_variant("onnxruntime", fixed, specs, BenchmarkConfig(batch_sizes=(4,)))
    assert info.value.code == "invalid_input"
    assert "batch size 4" in info.value.message


def test_a_file_the_runtime_cannot_load_is_load_failed(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07 this is not a model")
    with pytest.raises(BenchmarkFailed) as info:
        benchmark_variant("onnxruntime", broken, None, ONE_POINT)
    assert info.value.code == "load_failed"
    assert "broken.onnx" in info.value.message


def test_inputs_the_model_rejects_are_run_failed(cnn_path: Path) -> None:
    wrong = [{"name": "image", "shape": ["batch", 3, 32, 32], "dtype": "int64"}]
    with pytest.raises(BenchmarkFailed) as info:
        benchmark_variant("onnxruntime", cnn_path, wrong, ONE_POINT)
    assert info.value.code == "run_failed"


def test_a_runtime_that_segfaults_is_crashed_and_the_caller_survives(cnn_path: Path, fake_backends: None) -> None:
    with pytest.raises(BenchmarkFailed) as info:
        benchmark_variant("test-segfault", cnn_path, None, ONE_POINT)
    assert info.value.code == "crashed"
    assert "SIGSEGV" in info.value.message and "worker itself is unaffected" in info.value.message


@pytest.mark.slow  # seconds each: the full suite runs it, make test-fast does not
def test_a_runtime_that_hangs_is_stopped_at_the_timeout(cnn_path: Path, fake_backends: None) -> None:
    config = replace(ONE_POINT, timeout_seconds=6)
    started = time.monotonic()
    with pytest.raises(BenchmarkFailed) as info:
        benchmark_variant("test-hang", cnn_path, None, config)
    assert info.value.code == "timeout"
    assert time.monotonic() - started < 30


def test_unknown_backend_and_bad_config_are_told_plainly(cnn_path: Path) -> None:
    with pytest.raises(BenchmarkFailed) as info:
        benchmark_variant("no-such-runtime", cnn_path, None, ONE_POINT)
    assert info.value.code == "invalid_input" and "onnxruntime" in info.value.message
    with pytest.raises(ValueError, match="batch_sizes"):
        BenchmarkConfig(batch_sizes=())
    with pytest.raises(BenchmarkFailed) as info:
        benchmark_variant("onnxruntime", cnn_path, None, BenchmarkConfig(pin_cores=(4096,)))
    assert info.value.code == "invalid_input"
