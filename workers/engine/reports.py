"""The step reports the pipeline stores, as types: one reader for every consumer.

A report is JSON in the job's `result`, written by the worker and read by the recommender,
the evidence bundle, deployments, version comparison, the API, the browser and the CLI. Each
class here is that JSON's shape; `typed.from_dict(X, report)` reads it (`workers.engine.typed`), and
the OpenAPI document carries the same classes as JSON Schema, from which the browser's types
are generated. A field with a default may be missing from reports stored before it existed.

Every step has one: `ImportReport` (a framework file to ONNX), `InspectReport`,
`ValidateReport` (op support per backend, and the matrix the browser draws), `OptimizeReport`,
`ParityReport`, `BenchmarkReport` and `RecommendReport`. Where the engine's own result type is
the stored shape (`SupportReport`, `Recommendation`, `OutputSemantics`...), the report uses it;
where the step adds to it (validate's remediation, the recommendation's profile), the report
type extends it.

The benchmark report: per hardware profile, the original model ("baseline") and each
variant, each with its measured points. A point's keys are the benchmark's own (`PointResult`:
`batch_size`, `p50_ms`, `p99_ms`...); the recommender's former dialect (`batch`, `p50`,
`p99`), still found in recommendations stored before, is read into the same fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from workers.engine.backends.base import SupportReport
from workers.engine.detections import DetectionAgreement
from workers.engine.flops import FlopEstimate
from workers.engine.importers.base import ImportReport as EngineImportReport
from workers.engine.inputs import InputRecipe, TensorSpec
from workers.engine.inspection import OpCount, ParameterSummary
from workers.engine.onnx_checks import ExternalDataFile
from workers.engine.outputs import OutputSemantics
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
class MeasuredOn:
    """The machine a measuring step (validate, parity, benchmark) ran on, from its own hardware
    probe: a cluster worker or a device (ADR 0016). `emulation` is non-empty where the
    machine's CPU is emulated (an arm64 device under QEMU): its op support and parity are the
    runtime's ARM builds', its timings are not the device's."""

    kind: Literal["worker", "device"]
    name: str
    arch: str = ""
    cpu_model: str = ""
    cores: int = 0
    emulation: str = ""


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
    measured_on: MeasuredOn | None = None

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
    measured_on: MeasuredOn | None = None


# ---- import ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportReport(EngineImportReport):
    """How the uploaded framework file became ONNX (`importers.base.ImportReport`), with the
    stored ONNX model's files named as the artifact holds them and the artifact's id."""

    onnx_path: str  # type: ignore[assignment]  # the main file's name in the stored bundle
    files: tuple[str, ...]  # type: ignore[assignment]
    artifact_id: int | None = None
    sandbox: dict[str, Any] = field(default_factory=dict)  # how the step's children were isolated


# ---- inspect -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InputPlanReport:
    """How inputs are generated for the model (`inputs.InputPlan.to_dict`): one recipe per input,
    a size for every symbolic dim that is not a batch dim ("input:axis" for unnamed ones), what
    was assumed (each with the declaration that would replace it), and all of it in words."""

    recipes: tuple[InputRecipe, ...]
    dims: dict[str, int]
    batch_symbols: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class InspectReport:
    """What inspection found out about the model (`inspection.InspectionReport`): its graph,
    inputs and outputs, operators, weights and FLOPs, how its inputs are generated and what each
    output is (declared at upload, or proposed from the graph with the reason)."""

    ir_version: int
    opset_imports: dict[str, int]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    producer_name: str = ""
    producer_version: str = ""
    doc_string: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    op_counts: tuple[OpCount, ...] = ()
    node_count: int = 0
    parameters: ParameterSummary | None = None
    flops: FlopEstimate | None = None
    external_data: tuple[ExternalDataFile, ...] = ()
    notes: tuple[str, ...] = ()
    input_plan: InputPlanReport | None = None
    output_semantics: dict[str, OutputSemantics] | None = None
    sandbox: dict[str, Any] = field(default_factory=dict)  # how the step's children were isolated


# ---- validate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RemediationReport:
    """The rewrites that keep the model's function and let a backend take it (`remediation`):
    the chain that works (`rewrites`, empty when none did), what each step did, the ops it made
    run, every chain tried, and a sentence."""

    backend: str
    refused: tuple[dict[str, Any], ...] = ()
    rewrites: tuple[str, ...] = ()
    steps: tuple[dict[str, str], ...] = ()
    verdict_after: str = ""
    fixed: tuple[dict[str, str], ...] = ()
    max_relative_error: float | None = None
    tried: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()
    summary: str = ""


@dataclass(frozen=True)
class BackendSupport(SupportReport):
    """One backend's op support (`backends.base.SupportReport`), with the rewrites that would
    make it take the model where it refuses part of it."""

    remediation: RemediationReport | None = None


@dataclass(frozen=True)
class MatrixCell:
    """One operator on one backend: supported, refused, falling back or unknown, and why.
    `after_rewrite` names the rewrite chain after which the backend runs an op it refuses."""

    status: Literal["supported", "unsupported", "fallback", "unknown"]
    reason: str = ""
    nodes: tuple[str, ...] = ()
    device: str = ""
    after_rewrite: str = ""


@dataclass(frozen=True)
class MatrixRow:
    domain: str
    op_type: str
    cells: dict[str, MatrixCell]


@dataclass(frozen=True)
class Remedy:
    rewrites: tuple[str, ...]
    summary: str = ""


@dataclass(frozen=True)
class SupportMatrix:
    """Operators by backend (`support_matrix.build_matrix`): `problems` counts the operators
    some backend the profile builds for does not fully support; `report_only` names the columns
    asked for reference only (the profile's `report_backends`: checked, not built)."""

    backends: tuple[str, ...]
    rows: tuple[MatrixRow, ...]
    verdicts: dict[str, str]
    problems: int
    methods: dict[str, str] = field(default_factory=dict)
    remedies: dict[str, Remedy] = field(default_factory=dict)
    report_only: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidateReport:
    """The validate step's report for one hardware profile: each backend's answer, and the matrix."""

    profile: str
    reports: dict[str, BackendSupport]
    matrix: SupportMatrix
    sandbox: dict[str, Any] = field(default_factory=dict)  # how the step's children were isolated
    measured_on: MeasuredOn | None = None


# ---- optimize ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantSummary:
    """One variant built (`backends.base.Variant`, without its files): how it was made.
    `options.search` holds a quantization search's record where one made it or started from it."""

    name: str
    backend: str
    format: str
    precision: str
    pass_name: str
    options: dict[str, Any] = field(default_factory=dict)
    artifact_id: int | None = None


@dataclass(frozen=True)
class OptimizeReport:
    """The optimize step's report for one hardware profile: the variants built, and per backend
    the error that stopped it, why it was skipped, and its notes (variants not built and why)."""

    profile: str
    variants: tuple[VariantSummary, ...]
    errors: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sandbox: dict[str, Any] = field(default_factory=dict)  # how the step's children were isolated


# ---- recommend ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateOutcome:
    """Where one candidate ended up.

    `value` is the ranking statistic (`statistic`: "cpu_ms", "p50_ms", "throughput", or
    "p99_ms" for points stored without intervals) at the candidate's best point, `low`/`high`
    its 95 % interval, from `samples` timed requests over `trials` fresh processes; `p99_ms`,
    `p50_ms` and `cpu_ms` are that point's figures beside it (`p99_ms` None with `p99_note`
    where the samples couldn't support a p99). All None when the candidate had no usable point.
    `speedup` is how many times faster than the original model (above 1 is faster) with its
    95 % band `speedup_low`-`speedup_high` and `speedup_sentence`; None without a baseline.
    `tied_with` names the variants it was tied with within the noise. `reason` says, in one
    sentence, why it lost; for the winner it is empty.
    """

    name: str
    backend: str
    precision: str
    value: float | None = None
    p99_ms: float | None = None
    batch: int | None = None
    concurrency: int | None = None
    speedup: float | None = None
    reason: str = ""
    statistic: str | None = None
    low: float | None = None
    high: float | None = None
    samples: int | None = None
    trials: int | None = None
    p50_ms: float | None = None
    cpu_ms: float | None = None
    p99_note: str | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    speedup_sentence: str = ""
    tied_with: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recommendation:
    """The variant to run on one hardware profile, the runner-up, and why every other lost.

    `winner` is None when no variant passes parity with a usable benchmark; then
    `use_baseline` is true and `summary` says to keep the original model.
    `statistic` is what the ranking compared ("cpu_ms", "p50_ms", "throughput", or "p99_ms"
    for points without intervals) and `statistic_note` why that one.
    `baseline_value` is the original model's figure on the same statistic, if measured, with
    its interval in `baseline_low`/`baseline_high`.
    """

    objective: str
    budget_ms: float | None
    winner: CandidateOutcome | None
    runner_up: CandidateOutcome | None
    others: tuple[CandidateOutcome, ...]
    baseline_value: float | None
    use_baseline: bool
    summary: str
    statistic: str = "p99_ms"
    statistic_note: str = ""
    baseline_low: float | None = None
    baseline_high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The recommendation as plain dicts, lists, strings and numbers, ready for JSON."""
        data = asdict(self)
        data["others"] = list(data["others"])
        for outcome in (data["winner"], data["runner_up"], *data["others"]):
            if outcome is not None:
                outcome["tied_with"] = list(outcome["tied_with"])
        return data


@dataclass(frozen=True)
class RecommendReport(Recommendation):
    """The recommendation for one hardware profile, as the recommend step stores it."""

    profile: str = ""


# The report classes the OpenAPI document describes, in the order they appear there.
SCHEMA_CLASSES: tuple[type, ...] = (
    ImportReport,
    InspectReport,
    ValidateReport,
    OptimizeReport,
    BenchmarkReport,
    ParityReport,
    RecommendReport,
)
