"""What each pipeline step does on a worker, between the claimed Job and the engine.

A step receives the claimed job and a progress callback and returns a `StepOutcome`; it
raises `ModelError` / `SandboxError` for failures the user should read.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File

from apps.pipeline.models import Job, JobKind, JobStatus
from apps.pipeline.services import StepOutcome
from apps.registry.models import Artifact, ArtifactKind, ModelVersion
from apps.registry.storage import materialize, put_blob, sha256_file
from workers.engine import isolation
from workers.engine.errors import ModelError
from workers.engine.reports import BenchmarkPoint
from workers.engine.sandbox import SandboxError, SandboxLimits, output_file, run_in_sandbox
from workers.engine.support_matrix import build_matrix

ProgressCallback = Callable[[float, str], None]


def sandbox_limits() -> SandboxLimits:
    return SandboxLimits(
        memory_bytes=settings.SANDBOX_MEMORY_BYTES,
        timeout_seconds=float(settings.SANDBOX_TIMEOUT_SECONDS),
    )


def job_workdir(job: Job) -> AbstractContextManager[Path]:
    """A scratch folder per job attempt, removed afterwards whatever happens."""
    return scratch_dir(f"job-{job.pk}-attempt-{job.attempt}")


@contextmanager
def scratch_dir(name: str) -> Iterator[Path]:
    """WORK_DIR/<name>, empty at the start (a retried attempt's leftovers are gone) and
    removed afterwards whatever happens."""
    path = Path(settings.WORK_DIR) / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def model_artifact(version: ModelVersion) -> Artifact:
    """The ONNX model the later steps work on: the import's output, or the upload itself."""
    imported = version.artifacts.filter(kind=ArtifactKind.ONNX).order_by("-id").first()
    source = imported or version.source_artifact
    assert source is not None, "a version always has its source artifact"
    return source


def _fetch_model(job: Job, workdir: Path) -> dict[str, str]:
    """Copy the version's ONNX model to the job's folder; the sandbox payload that points at it."""
    model = model_artifact(job.run.version)
    suffix = ".zip" if model.format == "onnx-zip" else ".onnx"
    local = materialize(model.storage_key, workdir / f"model{suffix}")
    return {"source": str(local), "format": model.format, "workdir": str(workdir)}


def _store_files(files: list[Path], main: Path, fmt: str, bundle: Path, scratch: Path) -> dict[str, Any]:
    """Store one artifact's files as one blob: the file itself, or an uncompressed zip of all
    of them (a model with external data, an IR with its weights). Returns what the row needs.
    The files were named by a sandboxed child: each must be a plain file in `scratch`."""
    files = [output_file(f, scratch) for f in files]
    main = output_file(main, scratch)
    if len(files) > 1:
        bundle.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(bundle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for file in files:
                archive.write(file, file.name)
        path, fmt = bundle, f"{fmt}-zip" if fmt == "onnx" else f"{fmt}+zip"
    else:
        path = main
    digest = sha256_file(path)
    with open(path, "rb") as fh:
        key, _ = put_blob(File(fh, name=path.name), digest)
    return {
        "sha256": digest,
        "size": path.stat().st_size,
        "key": key,
        "format": fmt,
        "main_file": main.name,
        "files": [f.name for f in files],
    }


def run_import(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Convert the uploaded framework file to ONNX (checked, with parity) and store it."""
    version = job.run.version
    source = version.source_artifact
    assert source is not None, "a version always has its source artifact"
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the uploaded file")
        local = materialize(source.storage_key, workdir / "upload.bin")
        report, log = run_in_sandbox(
            "import",
            {
                "source": str(local),
                "format": source.format,
                "out_dir": str(workdir / "onnx"),
                "inputs": version.input_spec,
                "declarations": version.input_declarations,
            },
            sandbox_limits(),
            on_progress=_scaled(progress, 0.05, 0.95),
            what="the import",
            writable=[workdir],
        )
        files = [Path(f) for f in report["files"]]
        stored = _store_files(files, Path(report["onnx_path"]), "onnx", workdir / "bundle.zip", workdir)
    # Paths inside the sandbox's scratch folder mean nothing to readers of the report.
    report = {**report, "onnx_path": stored["main_file"], "files": stored["files"]}

    def persist(locked: Job) -> None:
        artifact = Artifact.objects.create(
            version=version,
            kind=ArtifactKind.ONNX,
            name="onnx",
            format=stored["format"],
            sha256=stored["sha256"],
            size=stored["size"],
            storage_key=stored["key"],
            parent=source,
            job=locked,
            tool_versions=report.get("tool_versions", {}),
            metadata={
                "converter": report["converter"],
                "method": report["method"],
                "fallback_reason": report.get("fallback_reason", ""),
                "main_file": stored["main_file"],
                "files": stored["files"],
            },
        )
        report["artifact_id"] = artifact.pk

    return StepOutcome(result=report, persist=persist, log=log[-5000:] if log else "")


def _scaled(progress: ProgressCallback, start: float, end: float) -> ProgressCallback:
    return lambda fraction, message: progress(start + (end - start) * fraction, message)


def run_inspect(job: Job, progress: ProgressCallback) -> StepOutcome:
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the uploaded file")
        payload = _fetch_model(job, workdir)
        report, log = run_in_sandbox(
            "inspect",
            # The declarations shape the input plan (kinds, values, dim sizes) every later step uses,
            # and say what each output is, which decides how parity judges it.
            {
                **payload,
                "declarations": job.run.version.input_declarations,
                "output_declarations": job.run.version.output_declarations,
            },
            sandbox_limits(),
            on_progress=_scaled(progress, 0.05, 1.0),
            what="inspection",
            writable=[workdir],
        )
    return StepOutcome(result=report, log=log[-5000:] if log else "")


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


def run_validate(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Ask every backend of the job's profile which ops it supports, each in its own sandbox.

    A backend that crashes or rejects the model gets an error column; the others still report.
    """
    assert job.profile is not None, "validate runs per hardware profile"
    backends = list(job.profile.backends)
    reports: dict[str, dict[str, Any]] = {}
    logs = []
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the model")
        payload = _fetch_model(job, workdir)
        for index, backend in enumerate(backends):
            start, end = 0.05 + 0.95 * index / len(backends), 0.05 + 0.95 * (index + 1) / len(backends)
            try:
                report, log = run_in_sandbox(
                    "validate",
                    {**payload, "backend": backend},
                    sandbox_limits(),
                    on_progress=_scaled(progress, start, end),
                    what=f"the {backend} support check",
                    writable=[workdir],
                )
            except (ModelError, SandboxError) as exc:
                report, log = _error_report(backend, exc), getattr(exc, "log", "")
            reports[backend] = report
            if log:
                logs.append(f"[{backend}] {log[-2000:]}")
    result = {"profile": job.profile.slug, "reports": reports, "matrix": build_matrix(reports)}
    return StepOutcome(result=result, log="\n".join(logs))


def run_optimize(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Build every backend's variants for the job's profile and store each as an artifact."""
    assert job.profile is not None, "optimize runs per hardware profile"
    version = job.run.version
    profile = job.profile
    parent = model_artifact(version)
    backends = list(profile.backends)
    variants: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    notes: dict[str, list[str]] = {}
    stored: list[dict[str, Any]] = []
    logs = []
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the model")
        payload = _fetch_model(job, workdir)
        calibration = validation = None
        if version.calibration is not None:
            calibration = str(materialize(version.calibration.storage_key, workdir / "calibration.npz"))
            if version.validation is not None:
                validation = str(materialize(version.validation.storage_key, workdir / "validation.npz"))
        semantics = _output_semantics(job)
        support = _step_result(job, JobKind.VALIDATE).get("reports", {})
        for index, backend in enumerate(backends):
            start, end = 0.05 + 0.9 * index / len(backends), 0.05 + 0.9 * (index + 1) / len(backends)
            profile_fields = {
                "name": profile.slug,
                "device_kind": profile.device_kind,
                "backends": list(profile.backends),
                "precisions": list(profile.precisions),
                "queue": profile.queue,
                "options": dict(profile.options),
            }
            try:
                built, log = run_in_sandbox(
                    "optimize",
                    {
                        **payload,
                        "backend": backend,
                        "profile": profile_fields,
                        "calibration": calibration,
                        # A quantization search judges its probe by what the outputs are, as parity
                        # does, and on the inputs parity will use (validation set or generated).
                        "output_semantics": semantics,
                        "validation": validation,
                        "declarations": version.input_declarations,
                        **_remedy(support.get(backend)),
                        "out_dir": str(workdir / "variants" / backend),
                    },
                    sandbox_limits(),
                    on_progress=_scaled(progress, start, end),
                    what=f"building {backend} variants",
                    writable=[workdir],
                )
            except (ModelError, SandboxError) as exc:
                errors[backend] = exc.message
                logs.append(f"[{backend}] {getattr(exc, 'log', '')[-2000:]}")
                continue
            if log:
                logs.append(f"[{backend}] {log[-2000:]}")
            if built.get("skipped"):
                skipped[backend] = built["skipped"]
            if built.get("notes"):
                notes[backend] = [str(note) for note in built["notes"]]
            for variant in built["variants"]:
                files = [Path(f) for f in variant.get("files") or [variant["path"]]]
                bundle = workdir / "bundles" / f"{variant['name']}.zip"
                stored.append(
                    {
                        "variant": variant,
                        **_store_files(files, Path(variant["path"]), variant["format"], bundle, workdir),
                    }
                )
                variants.append(
                    {k: variant[k] for k in ("name", "backend", "format", "precision", "pass_name", "options")}
                )
        progress(0.97, "recording variants")

    result: dict[str, Any] = {
        "profile": profile.slug,
        "variants": variants,
        "errors": errors,
        "skipped": skipped,
        "notes": notes,
    }

    def persist(locked: Job) -> None:
        for entry, summary in zip(stored, variants, strict=True):
            variant = entry["variant"]
            artifact = Artifact.objects.create(
                version=version,
                kind=ArtifactKind.VARIANT,
                name=f"{profile.slug}/{variant['name']}",
                format=entry["format"],
                sha256=entry["sha256"],
                size=entry["size"],
                storage_key=entry["key"],
                parent=parent,
                job=locked,
                tool_versions=variant.get("tool_versions", {}),
                metadata={
                    "profile": profile.slug,
                    "backend": variant["backend"],
                    "precision": variant["precision"],
                    "pass": variant["pass_name"],
                    "options": variant.get("options", {}),
                    "main_file": entry["main_file"],
                    "files": entry["files"],
                },
            )
            summary["artifact_id"] = artifact.pk

    return StepOutcome(result=result, persist=persist, log="\n".join(logs))


def _remedy(report: dict[str, Any] | None) -> dict[str, Any]:
    """The rewrites validate found that make a backend take the model, for optimize's payload."""
    remediation = (report or {}).get("remediation") or {}
    if not remediation.get("rewrites"):
        return {}
    return {
        "rewrites": list(remediation["rewrites"]),
        "refused": [[op.get("domain", ""), op["op_type"]] for op in remediation.get("refused", [])],
    }


# ---- parity, benchmark, recommendation --------------------------------------------------


def _profile_variants(job: Job) -> list[Artifact]:
    """The variants this run's optimize step built for the job's profile."""
    assert job.profile is not None
    return list(
        Artifact.objects.filter(
            version=job.run.version, kind=ArtifactKind.VARIANT, job__run=job.run, metadata__profile=job.profile.slug
        ).order_by("id")
    )


def _local_model(job: Job, workdir: Path) -> Path:
    """The version's ONNX model as a local file (unpacked when it is a zip with external data)."""
    from workers.engine.archive import extract_archive

    payload = _fetch_model(job, workdir)
    if payload["format"] == "onnx-zip":
        return extract_archive(Path(payload["source"]), workdir / "model")
    return Path(payload["source"])


def _local_variant(artifact: Artifact, dest: Path) -> Path:
    """A variant artifact as local files; returns the file its backend loads."""
    dest.mkdir(parents=True, exist_ok=True)
    main = artifact.metadata.get("main_file") or "model"
    if artifact.format.endswith("zip"):
        bundle = materialize(artifact.storage_key, dest.parent / f"{dest.name}.zip")
        with zipfile.ZipFile(bundle) as archive:
            for member in archive.namelist():
                # Our own bundles hold plain file names; anything else is not ours.
                if Path(member).name != member:
                    raise SandboxError("engine_error", f"Variant bundle {artifact.name} has an unexpected member.")
            archive.extractall(dest)
        bundle.unlink()
        return dest / main
    return materialize(artifact.storage_key, dest / main)


def _tolerance_for(job: Job) -> dict[str, Any]:
    """Profile defaults, then the upload's tolerance, then the model's own overrides."""
    from workers.engine.parity import Tolerance

    assert job.profile is not None
    version = job.run.version
    overrides = {**(version.tolerance or {}), **(version.model.tolerance or {})}
    return asdict(Tolerance.from_options(job.profile.options, overrides))


def run_parity(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Compare every variant with the FP32 original on the same inputs, each in its own sandbox."""
    assert job.profile is not None
    version = job.run.version
    tolerance = _tolerance_for(job)
    variants = _profile_variants(job)
    semantics = _output_semantics(job)
    results: dict[str, dict[str, Any]] = {}
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the model")
        model = _local_model(job, workdir)
        validation = None
        if version.validation is not None:
            validation = str(materialize(version.validation.storage_key, workdir / "validation.npz"))
        store = workdir / "reference.npz"
        reference, _ = run_in_sandbox(
            "parity_reference",
            {
                "model": str(model),
                "validation": validation,
                "samples": 8,
                "store": str(store),
                "declarations": version.input_declarations,
            },
            sandbox_limits(),
            on_progress=_scaled(progress, 0.05, 0.2),
            what="running the original model for parity",
            writable=[workdir],
        )
        for index, artifact in enumerate(variants):
            name = artifact.name.split("/", 1)[-1]
            backend = artifact.metadata.get("backend", "")
            start = 0.2 + 0.8 * index / max(1, len(variants))
            try:
                path = _local_variant(artifact, workdir / "variants" / name)
                results[name], _ = run_in_sandbox(
                    "parity_variant",
                    {
                        "backend": backend,
                        "variant": str(path),
                        "store": str(store),
                        "tolerance": tolerance,
                        "semantics": semantics,
                    },
                    sandbox_limits(),
                    on_progress=_scaled(progress, start, start + 0.8 / max(1, len(variants))),
                    what=f"the parity check of {name}",
                    writable=[workdir],
                )
            except (ModelError, SandboxError) as exc:
                results[name] = {"passed": False, "reasons": [exc.message], "error": exc.message, "outputs": []}
            results[name]["artifact_id"] = artifact.pk
            results[name]["backend"] = backend
    passed = sorted(name for name, r in results.items() if r.get("passed"))
    return StepOutcome(
        result={
            "profile": job.profile.slug,
            "tolerance": tolerance,
            "inputs": reference,
            "variants": results,
            "passed": passed,
        }
    )


def _benchmark_config(job: Job, memory_limit: int | None) -> Any:
    from workers.engine.benchmark import BenchmarkConfig

    assert job.profile is not None
    options = {**job.profile.options, **(job.run.version.benchmark_settings or {})}
    seconds = float(options.get("max_seconds_per_point", 5.0))
    if settings.BENCHMARK_MAX_SECONDS_PER_POINT > 0:
        seconds = min(seconds, settings.BENCHMARK_MAX_SECONDS_PER_POINT)
    trials = int(options.get("trials", 3))
    if settings.BENCHMARK_MAX_TRIALS > 0:
        trials = min(trials, settings.BENCHMARK_MAX_TRIALS)
    return BenchmarkConfig(
        batch_sizes=tuple(int(b) for b in options.get("batch_sizes", [1])),
        concurrency=tuple(int(c) for c in options.get("concurrency", [1])),
        window_runs=int(options.get("window_runs", 30)),
        max_windows=int(options.get("max_windows", 10)),
        max_seconds_per_point=seconds,
        warmup_runs=int(options.get("warmup_runs", 5)),
        memory_limit_bytes=memory_limit,
        # Three fresh processes per variant, interleaved with the original: the intervals and
        # the ranking then rest on process-to-process spread, not on one lucky run.
        trials=trials,
        min_samples=int(options.get("min_samples", 1000)),
        intra_op_threads=int(options["intra_op_threads"]) if options.get("intra_op_threads") else None,
    )


def _model_inputs(job: Job) -> list[dict[str, Any]]:
    """The original model's inputs as its inspection found them (names, dims, dtypes).

    Every variant is fed by this signature: an OpenVINO IR, MNN or ncnn file can't be read
    for its inputs without its runtime, and the variants take the original's inputs."""
    inspect = job.run.jobs.filter(kind=JobKind.INSPECT, status=JobStatus.SUCCEEDED).order_by("-sequence").first()
    return list(((inspect.result if inspect else None) or {}).get("inputs") or [])


def _output_semantics(job: Job) -> dict[str, Any]:
    """What each output is, from the inspection report (declared at upload, else proposed from
    the graph): {} for a report from before output semantics existed."""
    inspect = job.run.jobs.filter(kind=JobKind.INSPECT, status=JobStatus.SUCCEEDED).order_by("-sequence").first()
    return dict(((inspect.result if inspect else None) or {}).get("output_semantics") or {})


def _input_plan(job: Job) -> Any:
    """The inspection's input plan (`workers.engine.inputs.InputPlan`): what each input holds
    and the typical size of each symbolic dim; None for a report from before plans existed."""
    from workers.engine.inputs import InputPlan

    inspect = job.run.jobs.filter(kind=JobKind.INSPECT, status=JobStatus.SUCCEEDED).order_by("-sequence").first()
    data = ((inspect.result if inspect else None) or {}).get("input_plan")
    return InputPlan.from_dict(data) if data else None


def _planned_inputs(plan: Any) -> list[dict[str, Any]]:
    """The benchmark's input specs from the plan: each carries its recipe, so that a variant gets
    the values its inputs take (a sample rate of 16000, token ids in the vocabulary)."""
    return [
        {"name": recipe.name, "shape": list(recipe.shape), "dtype": recipe.dtype, "recipe": recipe.to_dict()}
        for recipe in plan.recipes
    ]


def _benchmark(
    backend: str, path: Path, inputs: list[dict[str, Any]], config: Any, progress: ProgressCallback
) -> dict[str, Any]:
    """One variant's sweep; an ONNX file is fed by its own declared inputs, any other format by
    the original model's (`inputs`)."""
    from workers.engine.benchmark import BenchmarkFailed, benchmark_variant

    specs = None if path.suffix.lower() == ".onnx" else inputs
    try:
        return benchmark_variant(backend, path, specs, config, progress).to_dict()
    except BenchmarkFailed as exc:
        return _benchmark_failure(backend, path, inputs, config, progress, exc)


def _benchmark_failure(
    backend: str, path: Path, inputs: list[dict[str, Any]], config: Any, progress: ProgressCallback, exc: Any
) -> dict[str, Any]:
    """What a failed benchmark stores: a model with a fixed batch is measured again at batch 1
    (it can only be measured as it is); any other failure keeps its sentence and code."""
    if exc.code == "invalid_input" and config.batch_sizes != (1,):
        result = _benchmark(backend, path, inputs, replace(config, batch_sizes=(1,)), progress)
        result.setdefault("notes", [])
        result["notes"] = [*result["notes"], f"Only batch 1 was measured: {exc.message}"]
        return result
    return {"error": exc.message, "error_code": exc.code, "backend": backend, "points": []}


def run_benchmark(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Benchmark the original model (plain onnxruntime) and every variant on this worker's
    hardware over the profile's (or upload's) sweep: `trials` rounds, round robin (original,
    v1, v2, ..., original, v1, v2, ...), one fresh pinned process per variant per round."""
    from workers.engine.backends.registry import get_backend
    from workers.engine.benchmark import BenchmarkFailed, BenchmarkRequest, benchmark_interleaved

    assert job.profile is not None
    gpu = job.profile.device_kind == "gpu"
    config = _benchmark_config(job, None if gpu else settings.SANDBOX_MEMORY_BYTES)
    variants = _profile_variants(job)
    results: dict[str, dict[str, Any]] = {}
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the model")
        model = _local_model(job, workdir)
        inputs = _model_inputs(job)
        plan = _input_plan(job)
        if plan is not None:
            # Benchmarks run at the plan's typical sizes (declared, or inferred: never a 1-pixel
            # image) and on its data-like inputs; every variant, ONNX or not, takes the same ones.
            inputs = _planned_inputs(plan)
            config = replace(config, input_overrides={**plan.dims, **config.input_overrides})
        # (name or None for the original, backend, local path, artifact id)
        measured: list[tuple[str | None, str, Path, int | None]] = [(None, "onnxruntime", model, None)]
        for artifact in variants:
            name = artifact.name.split("/", 1)[-1]
            backend = artifact.metadata.get("backend", "")
            if not get_backend(backend).available():
                results[name] = {"error": f"{backend} is not installed on this worker.", "points": []}
                continue
            measured.append((name, backend, _local_variant(artifact, workdir / "variants" / name), artifact.pk))
        progress(
            0.03, f"benchmarking the original model and {len(measured) - 1} variant(s) in {config.trials} trial(s)"
        )
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
            entry["device_kind"] = job.profile.device_kind
            if variant is None:
                baseline = entry
            else:
                results[variant] = {**entry, "artifact_id": artifact_id}
    require_measurement(job.profile.slug, baseline, results)
    return StepOutcome(
        result={
            "profile": job.profile.slug,
            "worker_host": job.worker_host,
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
    )


def _points(benchmark: dict[str, Any]) -> list[BenchmarkPoint]:
    """A stored entry's points, marked for the recommender (`workers.engine.recommend.benchmark_points`)."""
    from workers.engine.recommend import benchmark_points

    return benchmark_points(benchmark)


def _step_result(job: Job, kind: str) -> dict[str, Any]:
    earlier = job.run.jobs.filter(kind=kind, profile=job.profile, status="succeeded").order_by("-sequence").first()
    return (earlier.result if earlier else None) or {}


def run_recommend(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Pick the fastest variant that passes parity, by the version's objective. (The comparison
    with the previous approved version is made when the version is read: apps/pipeline/compare.py.)"""
    from workers.engine.recommend import recommend

    assert job.profile is not None
    version = job.run.version
    parity, benchmark = _step_result(job, JobKind.PARITY), _step_result(job, JobKind.BENCHMARK)
    candidates = []
    for artifact in _profile_variants(job):
        name = artifact.name.split("/", 1)[-1]
        measured = benchmark.get("variants", {}).get(name, {})
        candidates.append(
            {
                "name": name,
                "backend": artifact.metadata.get("backend", ""),
                "precision": artifact.metadata.get("precision", ""),
                "parity": parity.get("variants", {}).get(name),
                "points": _points(measured),
                "benchmark_error": measured.get("error", "") if measured else "not benchmarked",
                "size_bytes": artifact.size,
            }
        )
    progress(0.5, "ranking the variants")
    baseline = benchmark.get("baseline") or {}
    result = recommend(
        candidates, _points(baseline) or None, version.objective, budget_ms=version.p99_budget_ms
    ).to_dict()
    require_recommendation_evidence(job.profile.slug, result, baseline)
    result["profile"] = job.profile.slug
    return StepOutcome(result=result)


# ---- no verdict without evidence (docs/adr/0009) ------------------------------------------


def _measured(entry: dict[str, Any] | None) -> bool:
    return bool((entry or {}).get("points"))


def _why_not_measured(entry: dict[str, Any] | None) -> str:
    return str((entry or {}).get("error") or "it has no benchmark points").rstrip(". ")


def require_measurement(profile: str, baseline: dict[str, Any], variants: dict[str, dict[str, Any]]) -> None:
    """Fail the benchmark step when it measured nothing, the original model included: a step
    that 'succeeded' with every entry failed let the version go ready on no numbers at all.
    The sentence keeps every entry's own reason, so the cause (usually inputs the model can't
    take) is read where the failure is shown."""
    if _measured(baseline) or any(_measured(entry) for entry in variants.values()):
        return
    causes = [f"the original model (onnxruntime): {_why_not_measured(baseline)}."]
    causes += [f"{name}: {_why_not_measured(entry)}." for name, entry in variants.items()]
    raise ModelError(
        "nothing_measured",
        f"Nothing could be measured on {profile}: every benchmark failed, the original model's included. "
        + " ".join(causes)
        + " Fix the cause (often inputs the model can't take: declare their shapes and values at upload) "
        "and re-run the pipeline.",
    )


def require_recommendation_evidence(profile: str, recommendation: dict[str, Any], baseline: dict[str, Any]) -> None:
    """Fail the recommend step rather than advise keeping an original model nobody measured:
    with no winner, "keep the original" is only a verdict when the original has numbers."""
    if recommendation.get("winner") or _measured(baseline):
        return
    lost = [recommendation.get("runner_up"), *(recommendation.get("others") or [])]
    causes = " ".join(f"{o['name']}: {str(o.get('reason') or '').rstrip('. ')}." for o in lost if o)
    raise ModelError(
        "nothing_measured",
        f"There is no recommendation for {profile}: no variant that passes the accuracy check was measured, "
        f"and the original model was not measured either ({_why_not_measured(baseline)}), so not even keeping "
        f"it is a measured choice. {causes} Fix the cause and re-run the pipeline.".replace("  ", " "),
    )


def _sandboxed(step: Callable[[Job, ProgressCallback], StepOutcome]) -> Callable[[Job, ProgressCallback], StepOutcome]:
    """A step that opens the model in sandboxed children: its report says how they were isolated."""

    def run(job: Job, progress: ProgressCallback) -> StepOutcome:
        outcome = step(job, progress)
        outcome.result["sandbox"] = isolation.describe().to_dict()
        return outcome

    return run


STEPS: dict[str, Callable[[Job, ProgressCallback], StepOutcome]] = {
    JobKind.IMPORT: _sandboxed(run_import),
    JobKind.INSPECT: _sandboxed(run_inspect),
    JobKind.VALIDATE: _sandboxed(run_validate),
    JobKind.OPTIMIZE: _sandboxed(run_optimize),
    JobKind.PARITY: _sandboxed(run_parity),
    JobKind.BENCHMARK: _sandboxed(run_benchmark),
    JobKind.RECOMMEND: run_recommend,
}
