"""The step reports the pipeline stores, as types: one reader for every consumer.

A report is JSON in the job's `result`, written by the worker and read by the recommender,
the evidence bundle, deployments, version comparison, the API, the browser and the CLI. Each
class here is that JSON's shape; `X.from_dict(report)` reads it (`workers.engine.typed`), and
the OpenAPI document carries the same classes as JSON Schema, from which the browser's types
are generated. A field with a default may be missing from reports stored before it existed.

The benchmark report: per hardware profile, the original model ("baseline") and each
variant, each with its measured points. A point's keys are the benchmark's own (`PointResult`:
`batch_size`, `p50_ms`, `p99_ms`...); the recommender's former dialect (`batch`, `p50`,
`p99`), still found in recommendations stored before, is read into the same fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.engine.detections import DetectionAgreement
from workers.engine.parity import OutputComparison
from workers.engine.typed import from_dict

# The recommender's former names for a point's fields, read as the benchmark's own.
_LEGACY_POINT_KEYS = {"batch": "batch_size", "p50": "p50_ms", "p99": "p99_ms"}

Interval = tuple[float, float]


@dataclass(frozen=True)
class BenchmarkPoint:
    """One measured (batch size, concurrency) point; latencies per request in ms, throughput in
    inferences per second (see `workers.engine.benchmark.PointResult`, which writes it). The
    intervals are 95 % [low, high]; p99 and p99.9 are null, with a note, where the samples can't
    support them."""

    batch_size: int
    concurrency: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    throughput: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_9_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    requests_per_second: float | None = None
    requests: int | None = None
    warmup_runs: int | None = None
    windows: int | None = None
    window_p50s_ms: tuple[float, ...] = ()
    stable: bool | None = None
    seconds: float | None = None
    cpu_ms_per_request: float | None = None
    sessions: int | None = None
    samples_ms: tuple[float, ...] = ()
    samples: int | None = None  # timed requests over all trials
    trials: int | None = None  # fresh processes the point was measured in
    p50_ci_ms: Interval | None = None
    p99_ci_ms: Interval | None = None
    p99_note: str | None = None
    p99_9_ci_ms: Interval | None = None
    p99_9_note: str | None = None
    cpu_ms: float | None = None  # CPU time per inference, mean over trials
    cpu_ci_ms: Interval | None = None
    throughput_ci: Interval | None = None
    trial_p50_ms: tuple[float, ...] = ()
    trial_cpu_ms: tuple[float, ...] = ()
    trial_throughput: tuple[float, ...] = ()
    interval_method: str | None = None
    peak_rss_bytes: int | None = None
    peak_gpu_memory_bytes: int | None = None
    error: str | None = None  # a point that could not be measured
    # Set by the recommender, not the benchmark: CPU time may rank this point (one thread, CPU).
    single_threaded_cpu: bool | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> BenchmarkPoint:
        renamed = {_LEGACY_POINT_KEYS.get(key, key): value for key, value in data.items()}
        return from_dict(cls, renamed, strict=strict)

    @property
    def key(self) -> tuple[int, int]:
        """(batch size, concurrency)."""
        return self.batch_size, self.concurrency

    def figure(self, statistic: str) -> float | None:
        """The figure called `statistic` ("p50_ms", "p99_ms", "cpu_ms", "throughput", "max_ms")."""
        value = getattr(self, statistic, None)
        return value if isinstance(value, float) else None

    def interval(self, statistic: str) -> Interval | None:
        """The 95 % interval of `statistic`, where the point carries one."""
        name = "throughput_ci" if statistic == "throughput" else statistic.replace("_ms", "_ci_ms")
        value = getattr(self, name, None)
        return value if isinstance(value, tuple) else None


@dataclass(frozen=True)
class BenchmarkThreads:
    """The thread settings a measurement ran with, read back inside its process."""

    intra_op_threads: int | None = None
    threads_argument: str | None = None
    pinned_cores: tuple[int, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    os_threads_after_load: int | None = None


@dataclass(frozen=True)
class BenchmarkEntry:
    """One model measured: the original ("baseline") or a variant. A failed measurement has an
    `error` (and `error_code`) and no points."""

    backend: str = ""
    points: tuple[BenchmarkPoint, ...] = ()
    error: str = ""
    error_code: str = ""
    runtime_version: str | None = None
    load_ms: float | None = None
    notes: tuple[str, ...] = ()
    cpu_model: str | None = None
    cpu_count: int | None = None
    peak_rss_bytes: int | None = None
    device_kind: str | None = None  # "cpu" or "gpu": the profile's
    artifact_id: int | None = None  # the variant's artifact; none for the original
    variant_path: str | None = None
    threads: BenchmarkThreads | None = None
    sessions_shared_between_threads: bool | None = None
    # Batch size -> input name -> {"shape", "dtype", ...}: what was fed.
    inputs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    harness_overhead: dict[str, Any] | None = None
    load_average: tuple[float, ...] = ()
    seconds: float | None = None
    python: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> BenchmarkEntry:
        return from_dict(cls, data, strict=strict)

    @property
    def measured(self) -> bool:
        return bool(self.points)

    @property
    def single_threaded_cpu(self) -> bool:
        """Whether it ran one thread on a CPU: only then may CPU time per inference rank it (with
        several threads CPU time counts their spinning; on a GPU the CPU mostly waits)."""
        return self.threads is not None and self.threads.intra_op_threads == 1 and self.device_kind == "cpu"

    def point(self, batch_size: int, concurrency: int = 1) -> BenchmarkPoint | None:
        return next((p for p in self.points if p.key == (batch_size, concurrency)), None)


@dataclass(frozen=True)
class ReportInputs:
    """The inputs a report's figures rest on: the user's samples or generated ones, and how made."""

    source: str = ""  # "validation set", "generated inputs"
    description: str = ""
    # What was assumed, each with the declaration that would replace the assumption.
    assumptions: tuple[str, ...] = ()
    samples: int | None = None


@dataclass(frozen=True)
class BenchmarkReport:
    """The benchmark step's report for one hardware profile."""

    profile: str
    variants: dict[str, BenchmarkEntry]
    baseline: BenchmarkEntry = field(default_factory=BenchmarkEntry)
    worker_host: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    inputs: ReportInputs = field(default_factory=ReportInputs)
    sandbox: dict[str, Any] = field(default_factory=dict)  # how the measuring processes were isolated

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> BenchmarkReport:
        return from_dict(cls, data, strict=strict)

    def entry(self, variant: str | None) -> BenchmarkEntry:
        """The variant's entry (the original's for None); an empty one where nothing was stored."""
        return self.baseline if variant is None else self.variants.get(variant) or BenchmarkEntry()


# ---- parity ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputParity(OutputComparison):
    """One output of a variant against the original's, over all evidence inputs: the errors and
    cosine over the values finite in both, the signal-to-noise ratios, and what the output's
    kind is judged by (top-1/top-k agreement, decoded detections, pixel classes, row cosines).
    A metric is null where it could not be computed."""

    # Stored as `DetectionAgreement.to_dict()`; typed here so readers and the browser know its fields.
    detection: DetectionAgreement | None = None  # type: ignore[assignment]


@dataclass(frozen=True)
class VariantParityReport:
    """A variant's parity verdict (`parity.VariantParity.to_dict()`, with the backend that ran it
    and its artifact): `passed`, one sentence per problem in `reasons`, and per output figures."""

    passed: bool
    outputs: tuple[OutputParity, ...]
    reasons: tuple[str, ...]
    samples: int | None = None
    tolerance: dict[str, float | None] = field(default_factory=dict)
    error: str = ""  # what the variant raised, when it could not run
    notes: tuple[str, ...] = ()  # what could not be judged, from every output
    backend: str = ""
    artifact_id: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> VariantParityReport:
        return from_dict(cls, data, strict=strict)

    def worst(self, metric: str) -> float | None:
        """The worst value of `metric` over the outputs: the lowest for agreement-like figures
        (cosine, top-1 agreement), the highest for errors; None where no output has it."""
        values = [value for output in self.outputs if isinstance(value := getattr(output, metric, None), float)]
        if not values:
            return None
        return min(values) if metric in ("cosine", "top1_agreement", "sqnr_db", "worst_slice_sqnr_db") else max(values)


@dataclass(frozen=True)
class ParityReport:
    """The parity step's report for one hardware profile: every variant against the FP32
    original on the same inputs, under the profile's tolerance."""

    profile: str
    variants: dict[str, VariantParityReport]
    tolerance: dict[str, float | None] = field(default_factory=dict)
    inputs: ReportInputs = field(default_factory=ReportInputs)
    passed: tuple[str, ...] = ()  # the variants that passed, by name
    sandbox: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> ParityReport:
        return from_dict(cls, data, strict=strict)


# The report classes the OpenAPI document describes, in the order they appear there.
SCHEMA_CLASSES: tuple[type, ...] = (BenchmarkReport, ParityReport)
