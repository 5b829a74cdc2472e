"""Work orders: a profile step that measures on hardware, as data, run the same way everywhere.

The validate, parity and benchmark steps must run on the hardware their profile names
(ADR 0014). A Celery worker in the cluster and a device agent behind NAT (ADR 0016) both
run them, so what they run is one function of a `WorkOrder`: the step, the profile, the
artifacts it reads (by id and content hash) and the parameters the server settled (tolerance,
output semantics, benchmark sweep, input plan). Where the bytes come from is the caller's:
a worker reads its storage, an agent downloads them over HTTPS and checks their hash. The
result is the step's report as the server stores it (`reports.ValidateReport`,
`ParityReport`, `BenchmarkReport`).

Nothing here imports Django: the agent runs this module on the device.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from workers.engine.errors import ModelError
from workers.engine.sandbox import SandboxError, SandboxLimits, run_in_sandbox
from workers.engine.support_matrix import build_matrix

ProgressCallback = Callable[[float, str], None]
# The steps a device may run: they read the model and its variants and measure on the hardware.
DEVICE_STEPS = ("validate", "parity", "benchmark")
StepKind = Literal["validate", "parity", "benchmark"]


@dataclass(frozen=True)
class ArtifactRef:
    """One stored file the order reads: the agent downloads it by `id` and checks `sha256`."""

    id: int
    name: str
    sha256: str
    size: int
    format: str
    main_file: str = ""  # for a bundle (zip of several files), the file its backend loads
    backend: str = ""  # for a variant, the runtime that runs it


@dataclass(frozen=True)
class WorkOrder:
    """One leased step: what to run, on what, with which settled parameters and limits."""

    job: int
    attempt: int
    kind: StepKind
    profile: str
    device_kind: str
    backends: tuple[str, ...]
    model: ArtifactRef
    variants: tuple[ArtifactRef, ...] = ()
    validation: ArtifactRef | None = None
    # validate: nothing; parity: tolerance, semantics, declarations; benchmark: config,
    # inputs (the original's signature) and input_plan (InputPlan.to_dict(), or None).
    parameters: dict[str, Any] = field(default_factory=dict)
    memory_bytes: int = 4 * 1024**3
    timeout_seconds: float = 1800.0

    @property
    def limits(self) -> SandboxLimits:
        return SandboxLimits(memory_bytes=self.memory_bytes, timeout_seconds=self.timeout_seconds)


# Fetch an artifact's bytes to the given path (verified against its hash) and return the path.
Fetch = Callable[[ArtifactRef, Path], Path]


class ArtifactMismatch(SandboxError):
    """Downloaded bytes that are not the artifact the order names: nothing of them is used."""

    def __init__(self, ref: ArtifactRef, got: str) -> None:
        super().__init__(
            "artifact_mismatch",
            f"The download of {ref.name} (artifact {ref.id}) does not match its content hash: expected "
            f"sha256 {ref.sha256[:16]}..., got {got[:16]}.... It was discarded; the step was not run on it.",
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(ref: ArtifactRef, path: Path) -> Path:
    """`path` if its bytes hash to the artifact's sha256; otherwise it is removed and
    `ArtifactMismatch` says so."""
    got = sha256_of(path)
    if got != ref.sha256:
        path.unlink(missing_ok=True)
        raise ArtifactMismatch(ref, got)
    return path


def measured_on(kind: str, name: str, probe: dict[str, Any]) -> dict[str, Any]:
    """Where a step's figures were measured (`reports.MeasuredOn`), from a machine's hardware
    probe (`hardware.HardwareInfo.to_dict()`): a worker's own, or a device's registered one."""
    return {
        "kind": kind,
        "name": name,
        "arch": str(probe.get("arch") or ""),
        "cpu_model": str(probe.get("cpu_model") or ""),
        "cores": int(probe.get("cores") or 0),
        "emulation": str(probe.get("emulation") or ""),
    }


def _scaled(progress: ProgressCallback, start: float, end: float) -> ProgressCallback:
    return lambda fraction, message: progress(start + (end - start) * fraction, message)


def _raw_model(order: WorkOrder, fetch: Fetch, workdir: Path) -> Path:
    suffix = ".zip" if order.model.format == "onnx-zip" else ".onnx"
    return fetch(order.model, workdir / f"model{suffix}")


def local_model(order: WorkOrder, fetch: Fetch, workdir: Path) -> Path:
    """The order's ONNX model as a local file (unpacked when it is a zip with external data)."""
    from workers.engine.archive import extract_archive

    raw = _raw_model(order, fetch, workdir)
    if order.model.format == "onnx-zip":
        return extract_archive(raw, workdir / "model")
    return raw


def local_variant(ref: ArtifactRef, fetch: Fetch, dest: Path) -> Path:
    """A variant as local files; returns the file its backend loads."""
    dest.mkdir(parents=True, exist_ok=True)
    main = ref.main_file or "model"
    if not ref.format.endswith("zip"):
        return fetch(ref, dest / main)
    bundle = fetch(ref, dest.parent / f"{dest.name}.zip")
    with zipfile.ZipFile(bundle) as archive:
        for member in archive.namelist():
            # Our own bundles hold plain file names; anything else is not ours.
            if Path(member).name != member:
                raise SandboxError("engine_error", f"Variant bundle {ref.name} has an unexpected member.")
        archive.extractall(dest)
    bundle.unlink()
    return dest / main


def variant_name(ref: ArtifactRef) -> str:
    """A variant's name within its profile ("x86-cpu/ort-int8" -> "ort-int8")."""
    return ref.name.split("/", 1)[-1]


@dataclass(frozen=True)
class Done:
    """What an order produced: the step's report and the log lines worth keeping."""

    result: dict[str, Any]
    log: str = ""


def run_order(order: WorkOrder, fetch: Fetch, workdir: Path, progress: ProgressCallback) -> Done:
    """Run the order's step in `workdir` (an empty folder the caller removes afterwards)."""
    runner = {"validate": _validate, "parity": _parity, "benchmark": _benchmark}.get(order.kind)
    if runner is None:
        raise SandboxError("unknown_step", f"This engine does not run '{order.kind}' orders. Update it.")
    return runner(order, fetch, workdir, progress)


# ---- validate -----------------------------------------------------------------------------


def _error_report(backend: str, exc: ModelError | SandboxError) -> dict[str, Any]:
    return {
        "backend": backend,
        "runtime_version": None,
        "installed": True,
        "method": "runtime",
        "verdict": "error",
        "ops": [],
        "partitions": [],
        "notes": [],
        "error": exc.message,
    }


def _validate(order: WorkOrder, fetch: Fetch, workdir: Path, progress: ProgressCallback) -> Done:
    """Ask every backend of the profile which ops it supports, each in its own sandbox. A backend
    that crashes or rejects the model gets an error column; the others still report."""
    progress(0.01, "fetching the model")
    source = _raw_model(order, fetch, workdir)
    payload = {"source": str(source), "format": order.model.format, "workdir": str(workdir)}
    reports: dict[str, dict[str, Any]] = {}
    logs = []
    # The profile's reference columns (`report_backends`): checked for the matrix, never built.
    report_only = tuple(b for b in order.parameters.get("report_backends") or () if b not in order.backends)
    backends = [*order.backends, *report_only]
    for index, backend in enumerate(backends):
        start, end = 0.05 + 0.95 * index / len(backends), 0.05 + 0.95 * (index + 1) / len(backends)
        try:
            report, log = run_in_sandbox(
                "validate",
                {**payload, "backend": backend, "report_only": backend in report_only},
                order.limits,
                on_progress=_scaled(progress, start, end),
                what=f"the {backend} support check",
                writable=[workdir],
            )
        except (ModelError, SandboxError) as exc:
            report, log = _error_report(backend, exc), getattr(exc, "log", "")
        reports[backend] = report
        if log:
            logs.append(f"[{backend}] {log[-2000:]}")
    result = {"profile": order.profile, "reports": reports, "matrix": build_matrix(reports, report_only)}
    return Done(result, "\n".join(logs))


# ---- parity -------------------------------------------------------------------------------


def _parity(order: WorkOrder, fetch: Fetch, workdir: Path, progress: ProgressCallback) -> Done:
    """Compare every variant with the FP32 original on the same inputs, each in its own sandbox."""
    params = order.parameters
    progress(0.01, "fetching the model")
    model = local_model(order, fetch, workdir)
    validation = None
    if order.validation is not None:
        validation = str(fetch(order.validation, workdir / "validation.npz"))
    store = workdir / "reference.npz"
    reference, _ = run_in_sandbox(
        "parity_reference",
        {
            "model": str(model),
            "validation": validation,
            "samples": 8,
            "store": str(store),
            "declarations": params.get("declarations") or {},
        },
        order.limits,
        on_progress=_scaled(progress, 0.05, 0.2),
        what="running the original model for parity",
        writable=[workdir],
    )
    results: dict[str, dict[str, Any]] = {}
    count = max(1, len(order.variants))
    for index, ref in enumerate(order.variants):
        name = variant_name(ref)
        start = 0.2 + 0.8 * index / count
        try:
            path = local_variant(ref, fetch, workdir / "variants" / name)
            results[name], _ = run_in_sandbox(
                "parity_variant",
                {
                    "backend": ref.backend,
                    "variant": str(path),
                    "store": str(store),
                    "tolerance": params.get("tolerance") or {},
                    "semantics": params.get("semantics") or {},
                },
                order.limits,
                on_progress=_scaled(progress, start, start + 0.8 / count),
                what=f"the parity check of {name}",
                writable=[workdir],
            )
        except (ModelError, SandboxError) as exc:
            results[name] = {"passed": False, "reasons": [exc.message], "error": exc.message, "outputs": []}
        results[name]["artifact_id"] = ref.id
        results[name]["backend"] = ref.backend
    passed = sorted(name for name, r in results.items() if r.get("passed"))
    result = {
        "profile": order.profile,
        "tolerance": params.get("tolerance") or {},
        "inputs": reference,
        "variants": results,
        "passed": passed,
    }
    return Done(result)


# ---- benchmark ----------------------------------------------------------------------------


def benchmark_config_from(data: dict[str, Any]) -> Any:
    """`benchmark.BenchmarkConfig` from its `asdict` form (lists back to tuples)."""
    from workers.engine.benchmark import BenchmarkConfig

    known = {f.name for f in fields(BenchmarkConfig)}
    values: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
    return BenchmarkConfig(**values)


def _planned_inputs(plan: Any) -> list[dict[str, Any]]:
    """The benchmark's input specs from the plan: each carries its recipe, so that a variant gets
    the values its inputs take (a sample rate of 16000, token ids in the vocabulary)."""
    return [
        {"name": recipe.name, "shape": list(recipe.shape), "dtype": recipe.dtype, "recipe": recipe.to_dict()}
        for recipe in plan.recipes
    ]


def _benchmark_failure(
    backend: str, path: Path, inputs: list[dict[str, Any]], config: Any, progress: ProgressCallback, exc: Any
) -> dict[str, Any]:
    """What a failed benchmark stores: a model with a fixed batch is measured again at batch 1
    (it can only be measured as it is); any other failure keeps its sentence and code."""
    from workers.engine.benchmark import BenchmarkFailed, benchmark_variant

    if exc.code == "invalid_input" and config.batch_sizes != (1,):
        single = replace(config, batch_sizes=(1,))
        specs = None if path.suffix.lower() == ".onnx" else inputs
        try:
            result = benchmark_variant(backend, path, specs, single, progress).to_dict()
        except BenchmarkFailed as again:
            return _benchmark_failure(backend, path, inputs, single, progress, again)
        result["notes"] = [*result.get("notes", []), f"Only batch 1 was measured: {exc.message}"]
        return result
    return {"error": exc.message, "error_code": exc.code, "backend": backend, "points": []}


def measured(entry: dict[str, Any] | None) -> bool:
    """Whether a stored benchmark entry has points."""
    return bool((entry or {}).get("points"))


def why_not_measured(entry: dict[str, Any] | None) -> str:
    """A stored benchmark entry's reason for having no points, as a clause."""
    return str((entry or {}).get("error") or "it has no benchmark points").rstrip(". ")


def require_measurement(profile: str, baseline: dict[str, Any], variants: dict[str, dict[str, Any]]) -> None:
    """Fail the benchmark step when it measured nothing, the original model included: a step
    that 'succeeded' with every entry failed let the version go ready on no numbers at all
    (docs/adr/0009). The sentence keeps every entry's own reason."""
    if measured(baseline) or any(measured(entry) for entry in variants.values()):
        return
    causes = [f"the original model (onnxruntime): {why_not_measured(baseline)}."]
    causes += [f"{name}: {why_not_measured(entry)}." for name, entry in variants.items()]
    raise ModelError(
        "nothing_measured",
        f"Nothing could be measured on {profile}: every benchmark failed, the original model's included. "
        + " ".join(causes)
        + " Fix the cause (often inputs the model can't take: declare their shapes and values at upload) "
        "and re-run the pipeline.",
    )


def _benchmark(order: WorkOrder, fetch: Fetch, workdir: Path, progress: ProgressCallback) -> Done:
    """Benchmark the original model (plain onnxruntime) and every variant here, over the order's
    sweep: `trials` rounds, round robin (original, v1, v2, ..., original, v1, v2, ...), one fresh
    pinned process per variant per round."""
    from workers.engine.backends.registry import get_backend
    from workers.engine.benchmark import BenchmarkFailed, BenchmarkRequest, benchmark_interleaved
    from workers.engine.inputs import InputPlan

    params = order.parameters
    config = benchmark_config_from(dict(params.get("config") or {}))
    progress(0.01, "fetching the model")
    model = local_model(order, fetch, workdir)
    inputs: list[dict[str, Any]] = list(params.get("inputs") or [])
    plan = InputPlan.from_dict(params["input_plan"]) if params.get("input_plan") else None
    if plan is not None:
        # Benchmarks run at the plan's typical sizes (declared, or inferred: never a 1-pixel
        # image) and on its data-like inputs; every variant, ONNX or not, takes the same ones.
        inputs = _planned_inputs(plan)
        config = replace(config, input_overrides={**plan.dims, **config.input_overrides})
    results: dict[str, dict[str, Any]] = {}
    # (name or None for the original, backend, local path, artifact id)
    measured: list[tuple[str | None, str, Path, int | None]] = [(None, "onnxruntime", model, None)]
    for ref in order.variants:
        name = variant_name(ref)
        if not get_backend(ref.backend).runs_here():
            results[name] = {"error": f"{ref.backend} is not installed on this machine.", "points": []}
            continue
        measured.append((name, ref.backend, local_variant(ref, fetch, workdir / "variants" / name), ref.id))
    progress(0.03, f"benchmarking the original model and {len(measured) - 1} variant(s) in {config.trials} trial(s)")
    requests = [
        BenchmarkRequest(backend, path, None if path.suffix.lower() == ".onnx" and plan is None else inputs)
        for _, backend, path, _ in measured
    ]
    outcomes = benchmark_interleaved(requests, config, _scaled(progress, 0.03, 0.97))
    baseline: dict[str, Any] = {}
    for (variant, backend, path, artifact_id), outcome in zip(measured, outcomes, strict=True):
        if isinstance(outcome, BenchmarkFailed):
            entry = _benchmark_failure(backend, path, inputs, config, _scaled(progress, 0.97, 0.99), outcome)
        else:
            entry = outcome.to_dict()
        entry["device_kind"] = order.device_kind
        if variant is None:
            baseline = entry
        else:
            results[variant] = {**entry, "artifact_id": artifact_id}
    require_measurement(order.profile, baseline, results)
    result = {
        "profile": order.profile,
        "config": asdict(config),
        "baseline": baseline,
        "variants": results,
        # What the timings were measured on: generated inputs, and how they were made.
        "inputs": {
            "source": "generated inputs",
            "description": plan.describe() if plan else "generated from the model's signature",
            "assumptions": list(plan.assumptions) if plan else [],
        },
    }
    return Done(result)
