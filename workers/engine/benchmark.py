"""Latency and throughput of one model variant on this worker, measured the way it will serve.
It is over 600 lines because it is the whole parent side of one measurement protocol, whose
settings, result types, input shapes and child orchestration (one variant, or several
interleaved) change together; the child's side is already its own module (`benchmark_child`).

`benchmark_variant` runs every measurement in a fresh Python process of its own
(`python -m workers.engine.benchmark_child`): pinned to the chosen cores with sched_setaffinity
before it starts, with the thread-count variables (OMP_NUM_THREADS, ...) in its environment
before any runtime is imported, in its own process group, with no core dumps. Nothing else
runs in it: no sampler thread, no other runtime, and it talks to the parent only between
measurements. Two benchmarks therefore never share a runtime's thread pools or allocator.

In the child: the backend loads the variant (timed); for each batch size, seeded random inputs
are built from the input signature (a symbolic leading dim takes the batch size); for each
(batch size, concurrency) point the session is warmed up, then requests are timed in windows
until `stable_windows` consecutive window medians agree within `stability_tolerance`, or a cap
(`max_windows`, `max_seconds_per_point`) is reached. With concurrency N, N threads each call
`run` in a loop, and latency is per request while throughput counts all of them. The garbage
collector is off while timing. Statistics cover every timed window (warm-up excluded).

The parent samples the child's resident memory with psutil from outside (sampling inside would
take the child's GIL in the middle of timed requests), enforces an overall timeout by killing
the child's process group, and turns every way the child can fail into `BenchmarkFailed`: the
caller (a Celery worker) is never taken down by a variant that crashes or hangs its runtime.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import statistics
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.child import run_child
from workers.engine.isolation import IsolationUnavailable, SandboxView

if TYPE_CHECKING:
    import numpy as np

ProgressCallback = Callable[[float, str], None]

_REPO_ROOT = Path(__file__).resolve().parents[2]

# Set to the intra-op thread count in the child's environment, so that OpenMP, BLAS and
# friends size their pools to the pinned cores instead of to the whole machine.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
# A point that reaches its time cap still gets this many timed requests.
MIN_REQUESTS_AT_CAP = 3
# How often the parent samples the child's resident memory.
RSS_SAMPLE_SECONDS = 0.02
MAX_TRIALS = 20
# Latencies one trial hands back for pooling (evenly thinned above this): enough for the
# order statistics of p99.9, small enough to pass through a pipe.
POOLED_SAMPLES_PER_TRIAL = 100_000
_INT_RANGES = {"uint8": (0, 256), "int8": (-128, 128)}
_SUPPORTED_DTYPES = (
    "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool",
)  # fmt: skip


class BenchmarkFailed(Exception):
    """The benchmark produced no result. `code` is stable, `message` is a sentence for people.

    Codes: "invalid_input" (the request can't be measured: bad config, unknown backend, an input
    signature that doesn't fit the batch sizes), "not_installed", "load_failed", "run_failed"
    (the runtime raised while running), "crashed" (the benchmark process died), "timeout",
    "sandbox_unavailable" (this worker can't isolate the variant's code), "simulator_only" (the
    runtime here is a simulator of the accelerator, whose timings are not the accelerator's).
    `log` holds the tail of what the child printed.
    """

    def __init__(self, code: str, message: str, log: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.log = code, message, log

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"BenchmarkFailed({self.code!r}, {self.message!r})"


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to measure and when to stop.

    A window is `window_runs` requests, or `window_seconds` of requests when that is set. A point
    is stable once `stable_windows` consecutive window p50s are within `stability_tolerance` of
    each other ((max - min) / median); measuring stops then, or after `max_windows` windows, or
    when the point (warm-up included) has used `max_seconds_per_point` (warm-up may use at most
    half of it). `intra_op_threads` None uses one thread per pinned core; `pin_cores` None pins
    to the worker's own affinity. Symbolic dims other than the batch take `input_overrides`
    (by dim name, or "input:axis" for unnamed dims), else 1. `timeout_seconds` None allows
    300 s plus twice `max_seconds_per_point` per point. `memory_limit_bytes` caps the child's
    address space (leave it None for GPU runtimes, which reserve large address ranges).

    `trials` fresh processes measure every point (pyperf's processes x values): the time budget
    of a point is shared between them, and the intervals of means come from the spread between
    trials. `min_samples` is the number of timed requests a point wants over all its trials
    before it stops at stability (1,000 lets p99 be reported); the time cap still wins, and a
    percentile the samples can't support is then reported as None with a note.
    """

    batch_sizes: tuple[int, ...] = (1,)
    concurrency: tuple[int, ...] = (1,)
    warmup_runs: int = 10
    warmup_seconds: float = 0.5
    window_runs: int = 50
    window_seconds: float | None = None
    stable_windows: int = 3
    stability_tolerance: float = 0.10
    max_windows: int = 20
    max_seconds_per_point: float = 20.0
    intra_op_threads: int | None = None
    pin_cores: tuple[int, ...] | None = None
    keep_samples: int = 2000
    input_overrides: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    timeout_seconds: float | None = None
    memory_limit_bytes: int | None = None
    trials: int = 1
    min_samples: int = 1000

    def __post_init__(self) -> None:
        def positive_ints(name: str, values: tuple[int, ...]) -> None:
            if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
                raise ValueError(f"{name} must be a non-empty tuple of positive integers, not {values!r}.")

        positive_ints("batch_sizes", self.batch_sizes)
        positive_ints("concurrency", self.concurrency)
        if self.pin_cores is not None and (
            not self.pin_cores or any(not isinstance(c, int) or c < 0 for c in self.pin_cores)
        ):
            raise ValueError(f"pin_cores must name CPU ids (0, 1, ...), not {self.pin_cores!r}.")
        for name in ("window_runs", "stable_windows", "max_windows", "keep_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1.")
        if self.stable_windows > self.max_windows:
            raise ValueError("stable_windows can't be more than max_windows.")
        if self.warmup_runs < 0 or self.warmup_seconds < 0 or self.stability_tolerance < 0:
            raise ValueError("warmup_runs, warmup_seconds and stability_tolerance can't be negative.")
        if self.max_seconds_per_point <= 0 or (self.window_seconds is not None and self.window_seconds <= 0):
            raise ValueError("max_seconds_per_point and window_seconds must be positive.")
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise ValueError("intra_op_threads must be at least 1 (or None for one per pinned core).")
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or not 1 <= self.trials <= MAX_TRIALS:
            raise ValueError(f"trials must be a whole number from 1 to {MAX_TRIALS}, not {self.trials!r}.")
        if self.min_samples < 0:
            raise ValueError("min_samples can't be negative.")

    def trial_config(self) -> BenchmarkConfig:
        """What one of `trials` fresh processes measures: its share of the time budget and of
        the wanted samples, keeping every sample (the parent pools and thins them)."""
        return replace(
            self,
            trials=1,
            max_seconds_per_point=self.max_seconds_per_point / self.trials,
            min_samples=math.ceil(self.min_samples / self.trials),
            keep_samples=max(self.keep_samples, POOLED_SAMPLES_PER_TRIAL),
            timeout_seconds=None if self.timeout_seconds is None else self.timeout_seconds / self.trials,
        )

    @property
    def point_count(self) -> int:
        return len(self.batch_sizes) * len(self.concurrency)

    def overall_timeout(self) -> float:
        """Seconds the whole benchmark may take before its process is killed."""
        if self.timeout_seconds is not None:
            return self.timeout_seconds
        return 300.0 + self.point_count * 2 * self.max_seconds_per_point


@dataclass(frozen=True)
class PointResult:
    """One (batch size, concurrency) point. Latencies are per request, in ms; a request runs
    `batch_size` inferences, and `throughput` counts inferences per second over all threads.
    `samples_ms` are raw latencies in time order, evenly thinned to `keep_samples`.
    `peak_rss_bytes` is the child's largest sampled resident set while this point ran;
    `peak_gpu_memory_bytes` is torch's allocator peak where torch.cuda is in use, else None.

    Confidence (see `workers.engine.timing`): `samples` timed requests pooled over `trials`
    fresh processes. Percentiles come from the pooled samples with a 95 % order-statistic
    interval (widened to the spread between trials where that is larger); p99 and p99.9 are
    None, with a note, when the samples can't support them. `cpu_ms` is process CPU time per
    inference and `throughput` inferences per second, each the mean over trials with a 95 %
    t-interval (with one trial, over its windows). `trial_*` hold the per-trial values;
    `interval_method` says in words how the intervals were obtained."""

    batch_size: int
    concurrency: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float | None
    p99_9_ms: float | None
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput: float
    requests_per_second: float
    requests: int
    warmup_runs: int
    windows: int
    window_p50s_ms: tuple[float, ...]
    stable: bool
    seconds: float
    cpu_ms_per_request: float
    sessions: int  # 1 when the threads share a session, else one per thread
    samples_ms: tuple[float, ...]
    samples: int
    trials: int
    p50_ci_ms: tuple[float, float]
    p99_ci_ms: tuple[float, float] | None
    p99_note: str | None
    p99_9_ci_ms: tuple[float, float] | None
    p99_9_note: str | None
    cpu_ms: float
    cpu_ci_ms: tuple[float, float]
    throughput_ci: tuple[float, float]
    trial_p50_ms: tuple[float, ...]
    trial_cpu_ms: tuple[float, ...]
    trial_throughput: tuple[float, ...]
    interval_method: str
    peak_rss_bytes: int | None = None
    peak_gpu_memory_bytes: int | None = None


@dataclass(frozen=True)
class ThreadSettings:
    """The thread settings the child actually ran with, read back inside it."""

    intra_op_threads: int
    threads_argument: str | None  # the backend's constructor argument that took it; None: no such knob
    pinned_cores: tuple[int, ...]  # os.sched_getaffinity in the child
    env: dict[str, str]
    os_threads_after_load: int | None  # threads of the child process once the model was loaded


@dataclass(frozen=True)
class HarnessOverhead:
    """The harness's own cost, measured by timing a no-op with the same loop.

    `per_inference_us`: wall time per request of the whole loop (timer calls, the call itself,
    recording, window bookkeeping) around a no-op; it is what the harness adds to a request.
    `reported_latency_us`: the p50 latency the harness reports for the no-op, i.e. the bias in
    every latency it reports. `percent_of_1ms`: `per_inference_us` as a share of a 1 ms model."""

    per_inference_us: float
    reported_latency_us: float
    requests: int
    percent_of_1ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchmarkResult:
    """Everything one `benchmark_variant` call measured."""

    backend: str
    variant_path: str
    runtime_version: str | None
    load_ms: float
    points: tuple[PointResult, ...]
    threads: ThreadSettings
    sessions_shared_between_threads: bool
    inputs: dict[str, dict[str, dict[str, Any]]]  # batch size -> input name -> {"shape", "dtype"}
    cpu_model: str
    cpu_count: int
    peak_rss_bytes: int | None  # the kernel's high-water mark for the child (VmHWM)
    harness_overhead: HarnessOverhead | None
    load_average: tuple[float, ...]
    seconds: float
    python: str
    notes: tuple[str, ...]
    config: BenchmarkConfig

    def point(self, batch_size: int, concurrency: int = 1) -> PointResult:
        """The point measured at this batch size and concurrency."""
        for point in self.points:
            if point.batch_size == batch_size and point.concurrency == concurrency:
                return point
        raise KeyError(f"no point with batch size {batch_size} and concurrency {concurrency}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- input data ----------------------------------------------------------------------------


def _spec_fields(spec: Any) -> dict[str, Any]:
    """An InputSpec, TensorSpec or {"name", "shape", "dtype"} mapping as plain JSON."""
    recipe = None
    if isinstance(spec, Mapping):
        name, shape, dtype = spec.get("name"), spec.get("shape"), spec.get("dtype", "float32")
        recipe = spec.get("recipe")  # from the model's input plan (`inputs.InputRecipe.to_dict`)
    else:
        name, shape, dtype = spec.name, spec.shape, getattr(spec, "dtype", "float32")
    fields = {"name": str(name), "shape": None if shape is None else list(shape), "dtype": dtype or "float32"}
    return {**fields, "recipe": recipe} if recipe else fields


def resolve_input_shapes(
    input_specs: Sequence[Any], batch_size: int, overrides: Mapping[str, int] | None = None
) -> dict[str, tuple[int, ...]]:
    """The concrete shape of every input at `batch_size`.

    A symbolic (named or unknown) leading dim is the batch dim and takes `batch_size`, as does
    any other dim with the same name; other symbolic dims take `overrides[name]` (or
    `overrides["input:axis"]`), else 1. When no input has a symbolic leading dim the model has
    fixed shapes and only batch size 1 is accepted. Raises BenchmarkFailed("invalid_input").
    """
    overrides = overrides or {}
    specs = [_spec_fields(spec) for spec in input_specs]
    for spec in specs:
        if spec["shape"] is None:
            raise BenchmarkFailed(
                "invalid_input",
                f"The rank of input '{spec['name']}' is unknown, so no input can be made for it; "
                "declare its shape in the input signature.",
            )
        if spec["dtype"] not in _SUPPORTED_DTYPES:
            raise BenchmarkFailed(
                "invalid_input",
                f"Input '{spec['name']}' has dtype {spec['dtype']}, for which the benchmark can't make random "
                f"data; it supports {', '.join(_SUPPORTED_DTYPES)}.",
            )
    leading = [spec["shape"][0] for spec in specs if spec["shape"] and not isinstance(spec["shape"][0], int)]
    batched = bool(leading)
    batch_symbols = {dim for dim in leading if dim is not None}
    if not batched and batch_size != 1:
        fixed = ", ".join(f"{spec['name']} {'x'.join(map(str, spec['shape'])) or 'scalar'}" for spec in specs)
        raise BenchmarkFailed(
            "invalid_input",
            f"The model's inputs have fixed shapes ({fixed}), so batch size {batch_size} can't be benchmarked; "
            "benchmark batch size 1, or export the model with a dynamic batch dimension.",
        )
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        dims: list[int] = []
        for axis, dim in enumerate(spec["shape"]):
            if isinstance(dim, int):
                dims.append(dim)
            elif (axis == 0 and batched) or dim in batch_symbols:
                dims.append(batch_size)
            else:
                value = overrides.get(dim) if isinstance(dim, str) else None
                value = value or overrides.get(f"{spec['name']}:{axis}") or 1
                dims.append(int(value))
        shapes[spec["name"]] = tuple(dims)
    return shapes


def make_inputs(
    input_specs: Sequence[Any], batch_size: int, overrides: Mapping[str, int] | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded inputs at `batch_size` from the engine's one generator (`input_generation.make_feeds`).

    A spec mapping may carry the "recipe" the model's input plan gives it (an inspection
    report's `input_plan`: image-like in the model's range, token ids in its vocabulary, a
    scalar's valid values, a zero state); without one, what an input holds is read from its
    name, shape and dtype alone (`input_planning.plan_inputs` without a graph)."""
    from dataclasses import replace

    from workers.engine.errors import ModelError
    from workers.engine.input_generation import make_feeds
    from workers.engine.input_planning import plan_inputs
    from workers.engine.inputs import InputPlan, InputRecipe, TensorSpec

    shapes = resolve_input_shapes(input_specs, batch_size, overrides)
    fields = [_spec_fields(spec) for spec in input_specs]
    try:
        guessed = plan_inputs(
            None,
            [TensorSpec(f["name"], f["dtype"], shapes[f["name"]]) for f in fields if not f.get("recipe")],
        )
        by_name = {recipe.name: recipe for recipe in guessed.recipes}
        recipes = []
        for f in fields:
            # The recipe says what to draw; the shape is the one resolved at this batch size.
            recipe = InputRecipe.from_dict(f["recipe"]) if f.get("recipe") else by_name[f["name"]]
            recipes.append(replace(recipe, dtype=f["dtype"], shape=shapes[f["name"]]))
        return make_feeds(InputPlan(tuple(recipes), {}), samples=1, seed=seed)[0]
    except ModelError as exc:
        raise BenchmarkFailed("invalid_input", exc.message) from None


# ---- the parent side ---------------------------------------------------------------------


class _RssSampler(threading.Thread):
    """Samples the child's resident set from outside; attributes each sample to the point running."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="benchmark-rss", daemon=True)
        self.point = -1  # set by the reader as the child reports; -1 between points
        self.peaks: dict[int, int] = {}
        self.done = threading.Event()
        try:
            import psutil

            self._process: Any = psutil.Process(pid)
            self._errors: tuple[type[BaseException], ...] = (psutil.Error,)
        except Exception:  # psutil missing, or the child already gone: no memory figures
            self._process = None

    def sample(self) -> bool:
        if self._process is None:
            return False
        try:
            rss = int(self._process.memory_info().rss)
        except self._errors:
            return False
        point = self.point
        self.peaks[point] = max(self.peaks.get(point, 0), rss)
        return True

    def run(self) -> None:
        while not self.done.wait(RSS_SAMPLE_SECONDS):
            if not self.sample():
                return


def _pinned_cores(config: BenchmarkConfig) -> list[int]:
    available = sorted(os.sched_getaffinity(0))
    if config.pin_cores is None:
        return available
    outside = sorted(set(config.pin_cores) - set(available))
    if outside:
        raise BenchmarkFailed(
            "invalid_input",
            f"pin_cores asks for CPU(s) {', '.join(map(str, outside))}, which this worker may not use; "
            f"it may use {', '.join(map(str, available))}.",
        )
    return sorted(set(config.pin_cores))


def benchmark_variant(
    backend_name: str,
    variant_path: Path | str,
    input_specs: Sequence[Any] | None = None,
    config: BenchmarkConfig | None = None,
    progress: ProgressCallback | None = None,
) -> BenchmarkResult:
    """Benchmark one variant with one backend in a fresh, pinned child process.

    `input_specs`: InputSpec/TensorSpec objects or {"name", "shape", "dtype"} mappings, one per
    model input; None or empty reads them from the file when it is ONNX. `progress(fraction,
    message)` is called from this thread as the child reports. Raises BenchmarkFailed (see its
    codes) whenever there is no result; the calling process is never at risk.
    """
    outcome = benchmark_interleaved([BenchmarkRequest(backend_name, variant_path, input_specs)], config, progress)[0]
    if isinstance(outcome, BenchmarkFailed):
        raise outcome
    return outcome


@dataclass(frozen=True)
class BenchmarkRequest:
    """One variant to measure in `benchmark_interleaved`: its backend, its file, and its inputs
    (as `benchmark_variant` takes them; None reads them from an ONNX file)."""

    backend: str
    variant_path: Path | str
    input_specs: Sequence[Any] | None = None


@dataclass
class _Pending:
    payload: dict[str, Any]
    cores: list[int]
    env: dict[str, str]
    trials: list[dict[str, Any]] = field(default_factory=list)
    failure: BenchmarkFailed | None = None


def _prepare(request: BenchmarkRequest, config: BenchmarkConfig) -> _Pending:
    path = Path(request.variant_path).resolve()
    if not path.is_file():
        raise BenchmarkFailed("load_failed", f"There is no variant file at {path}.")
    specs = [_spec_fields(spec) for spec in request.input_specs or ()]
    if specs:
        for batch_size in config.batch_sizes:
            resolve_input_shapes(specs, batch_size, config.input_overrides)
    cores = _pinned_cores(config)
    threads = config.intra_op_threads or len(cores)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")])),
        **{var: str(threads) for var in THREAD_ENV_VARS},
    }
    payload = {
        "backend": request.backend,
        "variant_path": str(path),
        "inputs": specs,
        "threads": threads,
        "config": asdict(config.trial_config()),
    }
    return _Pending(payload, cores, env)


def benchmark_interleaved(
    requests: Sequence[BenchmarkRequest],
    config: BenchmarkConfig | None = None,
    progress: ProgressCallback | None = None,
) -> list[BenchmarkResult | BenchmarkFailed]:
    """Benchmark several variants in `config.trials` rounds, round robin, one fresh process per
    variant per round (baseline, v1, v2, ..., baseline, v1, v2, ...).

    Interleaving spreads a change in the machine's load over every variant instead of landing
    on whichever happened to run then; fresh processes let each trial draw its own memory layout
    and thread placement, so the spread between trials is the spread a user will see. Each round
    gets 1/trials of the point's time budget. Returns, in the order of `requests`, a
    BenchmarkResult whose points pool the trials (see `combine_trials`), or the BenchmarkFailed
    of the first trial that failed (a failed variant takes no part in later rounds).
    """
    config = config or BenchmarkConfig()
    pending: list[_Pending | None] = []
    outcomes: list[BenchmarkResult | BenchmarkFailed | None] = []
    for request in requests:
        try:
            pending.append(_prepare(request, config))
            outcomes.append(None)
        except BenchmarkFailed as exc:
            pending.append(None)
            outcomes.append(exc)
    units = max(1, sum(1 for each in pending if each is not None) * config.trials)
    done = 0
    for trial in range(config.trials):
        for each in pending:
            if each is None or each.failure is not None:
                continue
            payload = {**each.payload, "measure_overhead": trial == 0}
            start = done / units

            def report(fraction: float, message: str, start: float = start, trial: int = trial) -> None:
                if progress is not None:
                    label = f"trial {trial + 1}/{config.trials}: {message}" if config.trials > 1 else message
                    progress(start + fraction / units, label)

            scratch = tempfile.mkdtemp(prefix="slipway-benchmark-")
            try:
                each.trials.append(_run_parent(payload, config.trial_config(), each.cores, each.env, scratch, report))
            except BenchmarkFailed as exc:
                each.failure = exc
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            done += 1
    results: list[BenchmarkResult | BenchmarkFailed] = []
    for each, outcome in zip(pending, outcomes, strict=True):
        if each is None:
            assert outcome is not None
            results.append(outcome)
        elif each.failure is not None:
            results.append(each.failure)
        else:
            results.append(_result_from_data(_combine_runs(each.trials, config), config))
    if progress is not None:
        progress(1.0, f"benchmarked {len(results)} variant(s) in {config.trials} trial(s) each")
    return results


def _combine_runs(runs: Sequence[dict[str, Any]], config: BenchmarkConfig) -> dict[str, Any]:
    """One result from the trials of one variant: points pooled, the rest from the first trial
    (load time the median, memory the peak)."""
    from workers.engine.measure import combine_trials  # the measuring side; it imports this module

    first = runs[0]
    points = []
    for index in range(len(first["points"])):
        trial_points = [run["points"][index] for run in runs]
        point = combine_trials(trial_points, config.keep_samples)
        peaks = [p.get("peak_rss_bytes") for p in trial_points if p.get("peak_rss_bytes")]
        gpu = [p.get("peak_gpu_memory_bytes") for p in trial_points if p.get("peak_gpu_memory_bytes") is not None]
        point["peak_rss_bytes"] = max(peaks) if peaks else None
        point["peak_gpu_memory_bytes"] = max(gpu) if gpu else None
        points.append(point)
    notes = list(dict.fromkeys(note for run in runs for note in run["notes"]))
    if len(runs) > 1:
        notes.append(
            f"Measured in {len(runs)} trials, each in a fresh process, interleaved round robin with the other "
            "variants of this benchmark; intervals are 95% confidence intervals."
        )
    peaks = [run["peak_rss_bytes"] for run in runs if run.get("peak_rss_bytes")]
    return {
        **first,
        "load_ms": round(statistics.median(run["load_ms"] for run in runs), 3),
        "points": points,
        "peak_rss_bytes": max(peaks) if peaks else None,
        "harness_overhead": next((run["harness_overhead"] for run in runs if run.get("harness_overhead")), None),
        "seconds": round(sum(run["seconds"] for run in runs), 3),
        "notes": notes,
    }


def _run_parent(
    payload: dict[str, Any],
    config: BenchmarkConfig,
    cores: list[int],
    env: dict[str, str],
    scratch: str,
    progress: ProgressCallback | None,
) -> dict[str, Any]:
    what = f"benchmarking {Path(payload['variant_path']).name} with {payload['backend']}"
    timeout = config.overall_timeout()
    result: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    samplers: list[_RssSampler] = []

    def on_start(pid: int) -> None:
        samplers.append(_RssSampler(pid))
        samplers[0].start()

    def on_message(message: dict[str, Any]) -> None:
        nonlocal result, failure
        kind = message.get("type")
        sampler = samplers[0]
        if kind == "point_start":
            sampler.point = int(message["index"])
            sampler.sample()
        elif kind == "point_end":
            sampler.sample()
            sampler.point = -1
        elif kind == "progress" and progress is not None:
            progress(float(message.get("progress", 0.0)), str(message.get("message", "")))
        elif kind == "result":
            result = message.get("data") or {}
        elif kind in ("failed", "crash"):
            failure = message

    try:
        outcome = run_child(
            ["-m", "workers.engine.benchmark_child"],
            payload,
            env=env,
            cwd=scratch,  # runtimes that drop files in the working directory must not litter the code tree
            timeout=timeout,
            memory_bytes=config.memory_limit_bytes,
            cores=cores,
            on_message=on_message,
            on_start=on_start,
            # The variant is an untrusted model's build: the same boundary as the sandbox.
            view=SandboxView.of(writable=[scratch], readable=[Path(payload["variant_path"]).parent]),
        )
    except IsolationUnavailable as exc:
        raise BenchmarkFailed("sandbox_unavailable", str(exc)) from None
    finally:
        for sampler in samplers:
            sampler.done.set()
    sampler = samplers[0]
    returncode, log = outcome.returncode, outcome.log

    if outcome.timed_out:
        raise BenchmarkFailed(
            "timeout",
            f"{what.capitalize()} did not finish within {timeout:.0f} s and was stopped. The model may hang in "
            "this runtime, or it is too slow for these settings: lower max_seconds_per_point or the number of "
            "points, or raise timeout_seconds.",
            log,
        )
    if failure is not None:
        log = log + "\n" + str(failure.get("traceback", ""))
        if failure["type"] == "failed":
            raise BenchmarkFailed(str(failure["code"]), str(failure["message"]), log)
        raise BenchmarkFailed(
            "crashed",
            f"{what.capitalize()} failed with an unexpected {failure.get('exception')}: {failure.get('message')}",
            log,
        )
    if returncode != 0 or result is None:
        if returncode < 0:
            name = signal.Signals(-returncode).name
            hint = " (the system may have run out of memory)" if -returncode == signal.SIGKILL else ""
            raise BenchmarkFailed(
                "crashed",
                f"The runtime crashed ({name}{hint}) while {what}. The variant may be corrupt or use something the "
                "runtime can't handle; the worker itself is unaffected.",
                log,
            )
        raise BenchmarkFailed("crashed", f"{what.capitalize()} stopped unexpectedly (exit code {returncode}).", log)
    for index, point in enumerate(result["points"]):
        point["peak_rss_bytes"] = sampler.peaks.get(index)
    sampled = max(sampler.peaks.values(), default=0)
    result["peak_rss_bytes"] = max(result.get("peak_rss_bytes") or 0, sampled) or None
    return result


_TUPLE_FIELDS = (
    "window_p50s_ms", "samples_ms", "p50_ci_ms", "p99_ci_ms", "p99_9_ci_ms", "cpu_ci_ms", "throughput_ci",
    "trial_p50_ms", "trial_cpu_ms", "trial_throughput",
)  # fmt: skip


def _result_from_data(data: dict[str, Any], config: BenchmarkConfig) -> BenchmarkResult:
    points = tuple(
        PointResult(
            **{
                **point,
                **{key: tuple(point[key]) if point.get(key) is not None else None for key in _TUPLE_FIELDS},
            }
        )
        for point in data["points"]
    )
    threads = data["threads"]
    overhead = data.get("harness_overhead")
    return BenchmarkResult(
        backend=data["backend"],
        variant_path=data["variant_path"],
        runtime_version=data["runtime_version"],
        load_ms=data["load_ms"],
        points=points,
        threads=ThreadSettings(
            intra_op_threads=threads["intra_op_threads"],
            threads_argument=threads["threads_argument"],
            pinned_cores=tuple(threads["pinned_cores"]),
            env=dict(threads["env"]),
            os_threads_after_load=threads["os_threads_after_load"],
        ),
        sessions_shared_between_threads=data["sessions_shared_between_threads"],
        inputs=data["inputs"],
        cpu_model=data["cpu_model"],
        cpu_count=data["cpu_count"],
        peak_rss_bytes=data["peak_rss_bytes"],
        harness_overhead=HarnessOverhead(**overhead) if overhead else None,
        load_average=tuple(data["load_average"]),
        seconds=data["seconds"],
        python=data["python"],
        notes=tuple(data["notes"]),
        config=config,
    )
