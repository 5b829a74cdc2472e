"""LiteRT variants on this x86 CPU: what `LiteRTBackend.build_variants` makes of two models for the
`mobile-litert` profile (FP32, FP16, calibrated full INT8 .tflite files, all three from one
onnx2tf run), how close each is to onnxruntime, and how fast it runs next to onnxruntime.

The models are built here (nothing downloaded): a ResNet-18 in plain torch (the one of
bench/framework_import.py, seeded weights) and a small `nn.TransformerEncoder` (2 layers,
d_model 128, 4 heads, FFN 512, batch_first, input [1, 32, 128]), each exported to ONNX opset 17
with `torch.onnx.export(dynamo=False)`. Calibration: 16 samples (uniform [0, 1) images for the
CNN, standard normal for the transformer). Per model:

- conversion: the wall time of the whole `build_variants` call (one onnx2tf run in the litert
  framework environment builds all three variants, then each is loaded once to verify it), and
  its notes (a variant LiteRT cannot load is dropped there, with the reason);
- parity: each variant (through Slipway's LiteRT session, ONNX names and layouts) against
  onnxruntime on 4 fresh inputs: max abs error and cosine, the worst over the inputs;
- speed: the original model in onnxruntime (CPUExecutionProvider, intra- and inter-op threads 1:
  the baseline) and each variant (`LiteRTBackend(threads=1).load`, XNNPACK applied by default),
  each in a fresh process (`--worker`), in the order baseline, v1, baseline, v2, ..., baseline,
  the variants' order rotated each round, for --rounds rounds. A process warms up, picks N so
  that N runs last about 2 s (0.3 s with --quick), then takes the process CPU time
  (time.process_time) around the N runs (the CPU time per inference: steadier than wall clock
  on a busy machine, and with one thread not inflated by spinning) and each run's wall time
  (its p50). A variant's ratio in a round is its CPU time per inference over the mean of the
  two baseline runs around it; the table gives the median over rounds and the min-max range.

The result is printed as JSON on stdout (progress goes to stderr) and written to BENCHMARKS.md's
"## LiteRT variants" section unless --no-write; --from-json re-renders a saved result.

Run time on 2 cores, measured with the quick mode and extrapolated: `--quick --models transformer`
took 18 s (12 s of it the conversion), `--quick --models cnn` 94 s (88 s of it onnx2tf converting
the ResNet-18). A full-mode timing process takes about 2.7 s (start, load, 0.5 s warm-up, 2 s
timed) against about 0.55 s in quick mode, and a round is 7 processes per model (5 for the CNN
when its INT8 variant is dropped), so the full run (3 rounds, both models) takes about 3.5-4
minutes; one full-mode round of the transformer alone took 31 s.

    python bench/litert.py                               # cnn and transformer, 3 rounds
    python bench/litert.py --quick --no-write --models transformer
    python bench/litert.py --from-json result.json      # re-render a saved result
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._benchmarks_md import cpu_line, write_section  # noqa: E402

SECTION = "LiteRT variants"
PROFILE_NAME = "mobile-litert"
PRECISIONS = ("fp32", "fp16", "int8")
OPSET = 17
CALIBRATION_SAMPLES = 16
PARITY_SAMPLES = 4
WORKER_TIMEOUT_S = 300
DEFAULT_MODELS = ("cnn", "transformer")
BASELINE = "onnxruntime"
CNN_SHAPE = (1, 3, 224, 224)
SEQ_LEN, D_MODEL, HEADS, FFN, LAYERS = 32, 128, 4, 512, 2


@dataclass(frozen=True)
class Timing:
    """One timing process: `warmup_runs` runs and at least `warmup_s` seconds of warm-up, then N
    timed runs, N such that they last about `target_s` (from the warm-up's pace), at least
    `min_runs`."""

    warmup_runs: int
    warmup_s: float
    target_s: float
    min_runs: int
    max_runs: int = 100_000


FULL = Timing(warmup_runs=5, warmup_s=0.5, target_s=2.0, min_runs=10)
QUICK = Timing(warmup_runs=2, warmup_s=0.05, target_s=0.3, min_runs=3)


@dataclass(frozen=True)
class Runtime:
    """The runtime a bench sets against onnxruntime (bench/executorch_variants.py runs this one's machinery
    for ExecuTorch): its backend's registry name (which builds the variants, and loads them in the
    timing processes), the profile it builds for, and how its notes and versions name it."""

    backend: str
    title: str  # as the backend's notes name it: "No LiteRT variant was built"
    profile: str
    precisions: tuple[str, ...]
    package: str  # the runtime's wheel, the first of the result's versions
    # An extra look at the original model (op support), stored as the model's "support" when given.
    support: Callable[[Path], dict[str, Any]] | None = None


LITERT = Runtime("litert", "LiteRT", PROFILE_NAME, PRECISIONS, "ai-edge-litert")


_STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"{time.perf_counter() - _STARTED:6.1f}s {message}", file=sys.stderr, flush=True)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# --- models -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCase:
    key: str
    title: str
    input_name: str
    shape: tuple[int, ...]
    make: Callable[[Path, Path], str]  # (onnx path, scratch folder) -> how it was made
    samples: Callable[[Any, int], Any]  # (numpy Generator, count) -> float32 array, batch on axis 0


def _export(model: Any, example: Any, path: Path, input_name: str, output_name: str) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_name],
            output_names=[output_name],
        )


def make_cnn(path: Path, scratch: Path) -> str:
    import torch

    from bench.framework_import import torchscript_resnet18

    scripted = torch.jit.load(str(torchscript_resnet18(scratch / "resnet18.pt"))).eval()
    with torch.no_grad():
        _export(scripted, torch.rand(CNN_SHAPE), path, "image", "logits")
    return (
        f"ResNet-18 in plain torch {torch.__version__} (`torchscript_resnet18` of bench/framework_import.py: "
        "seeded weights, eval mode, BatchNorm folded on export), exported with `torch.onnx.export(dynamo=False)`, "
        f"opset {OPSET}"
    )


def make_transformer(path: Path, scratch: Path) -> str:
    import torch
    from torch import nn

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, FFN, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False).eval()
    # Exported with gradients enabled: under no_grad, eval mode takes PyTorch's fused
    # encoder-layer fast path, which has no ONNX export.
    _export(model, torch.randn(1, SEQ_LEN, D_MODEL), path, "x", "y")
    return (
        f"`nn.TransformerEncoder` in torch {torch.__version__}: {LAYERS} post-norm layers, d_model {D_MODEL}, "
        f"{HEADS} heads, FFN {FFN}, ReLU, batch_first, seeded random weights, exported with "
        f"`torch.onnx.export(dynamo=False)`, opset {OPSET} (attention as MatMul + Softmax)"
    )


def _uniform(rng: Any, count: int) -> Any:
    import numpy as np

    return rng.random((count, *CNN_SHAPE[1:]), dtype=np.float32)


def _normal(rng: Any, count: int) -> Any:
    import numpy as np

    return rng.standard_normal((count, SEQ_LEN, D_MODEL), dtype=np.float32)


CASES: dict[str, ModelCase] = {
    case.key: case
    for case in (
        ModelCase("cnn", "ResNet-18, 1x3x224x224 -> 1000 logits", "image", CNN_SHAPE, make_cnn, _uniform),
        ModelCase(
            "transformer",
            f"Transformer encoder, {LAYERS} layers, d_model {D_MODEL}, {HEADS} heads, 1x{SEQ_LEN}x{D_MODEL}",
            "x",
            (1, SEQ_LEN, D_MODEL),
            make_transformer,
            _normal,
        ),
    )
}


# --- timing one model file in a process of its own ----------------------------------------


def worker(spec_path: Path) -> None:
    """Load one model (onnxruntime, or the backend spec["runtime"] names, one thread), warm up, time
    N runs; writes a JSON result to spec["result"]."""
    import numpy as np

    from workers.engine.backends.registry import BACKENDS

    spec = json.loads(spec_path.read_text())
    timing = Timing(**spec["timing"])
    with np.load(spec["feed"]) as data:
        feed = {name: data[name] for name in data.files}
    started = time.perf_counter()
    if spec["runtime"] == BASELINE:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        ort_session = onnxruntime.InferenceSession(spec["path"], options, providers=["CPUExecutionProvider"])

        def infer() -> Any:
            return ort_session.run(None, feed)
    else:
        session = BACKENDS[spec["runtime"]](threads=1).load(Path(spec["path"]))  # type: ignore[call-arg]

        def infer() -> Any:
            return session.run(feed)

    load_ms = (time.perf_counter() - started) * 1000
    started, warmup = time.perf_counter(), 0
    while warmup < timing.warmup_runs or time.perf_counter() - started < timing.warmup_s:
        infer()
        warmup += 1
    pace = (time.perf_counter() - started) / warmup
    runs = max(timing.min_runs, min(timing.max_runs, math.ceil(timing.target_s / pace)))
    walls: list[int] = []
    gc.collect()
    gc.disable()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        infer()
        walls.append(time.perf_counter_ns() - t0)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    gc.enable()
    Path(spec["result"]).write_text(
        json.dumps(
            {
                "runs": runs,
                "warmup_runs": warmup,
                "load_ms": round(load_ms, 1),
                "seconds": round(wall, 3),
                "cpu_ms": round(cpu * 1000 / runs, 4),
                "wall_mean_ms": round(wall * 1000 / runs, 4),
                "wall_p50_ms": round(statistics.median(walls) / 1e6, 4),
                "wall_min_ms": round(min(walls) / 1e6, 4),
            }
        )
    )


def measure(runtime: str, path: Path, feed: Path, timing: Timing, scratch: Path) -> dict[str, Any]:
    scratch.mkdir(parents=True, exist_ok=True)
    spec = {
        "runtime": runtime,
        "path": str(path),
        "feed": str(feed),
        "timing": asdict(timing),
        "result": str(scratch / "result.json"),
    }
    spec_path = scratch / "spec.json"
    spec_path.write_text(json.dumps(spec))
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"the timing process ran over {WORKER_TIMEOUT_S} s"}
    if done.returncode != 0 or not Path(spec["result"]).is_file():
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"error": (lines[-1] if lines else f"exit status {done.returncode}")[:300]}
    return json.loads(Path(spec["result"]).read_text())


# --- parity -------------------------------------------------------------------------------


def parity(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> dict[str, Any]:
    """Max abs error and cosine of every output, the worst over inputs and outputs."""
    import numpy as np

    worst_abs, worst_cos = 0.0, 1.0
    for want, got in zip(expected, actual, strict=True):
        for name, ref in want.items():
            value = got[name]
            if value.shape != ref.shape:
                return {"error": f"output {name} has shape {list(value.shape)}, onnxruntime's {list(ref.shape)}"}
            a, b = ref.astype(np.float64).ravel(), value.astype(np.float64).ravel()
            norms = float(np.linalg.norm(a) * np.linalg.norm(b))
            cosine = float(a @ b / norms) if norms else float(not a.any() and not b.any())
            worst_abs = max(worst_abs, float(np.max(np.abs(a - b))))
            worst_cos = min(worst_cos, cosine)
    return {"max_abs": float(f"{worst_abs:.4g}"), "cosine": round(worst_cos, 7)}


# --- one model ----------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def bench_model(
    case: ModelCase, workdir: Path, rounds: int, timing: Timing, runtime: Runtime = LITERT
) -> dict[str, Any]:
    import numpy as np
    import onnxruntime

    from workers.engine.backends.base import Calibration, HardwareProfile
    from workers.engine.backends.registry import BACKENDS

    backend_class = BACKENDS[runtime.backend]
    # Each backend module lists the variants it can build as (name, precision) in VARIANT_PLANS.
    plans = importlib.import_module(backend_class.__module__).VARIANT_PLANS
    started = time.perf_counter()
    folder = workdir / case.key
    folder.mkdir(parents=True)
    model_path = folder / "model.onnx"
    log(f"[{case.key}] making the model")
    made_with = case.make(model_path, folder)
    calibration = folder / "calibration.npz"
    np.savez(calibration, **{case.input_name: case.samples(np.random.default_rng(1), CALIBRATION_SAMPLES)})
    fresh = case.samples(np.random.default_rng(2), PARITY_SAMPLES)
    feeds = [{case.input_name: fresh[i : i + 1]} for i in range(PARITY_SAMPLES)]
    feed_path = folder / "feed.npz"
    np.savez(feed_path, **feeds[0])

    profile = HardwareProfile(runtime.profile, "cpu", (runtime.backend,), runtime.precisions)
    log(f"[{case.key}] building the {runtime.title} variants (one conversion run)")
    t0 = time.perf_counter()
    built = backend_class().build_variants(model_path, profile, Calibration(calibration), folder / runtime.backend)
    conversion_s = round(time.perf_counter() - t0, 1)
    variants = list(built)
    log(f"[{case.key}] built {', '.join(v.name for v in variants) or 'nothing'} in {conversion_s} s")
    built_names = {variant.name for variant in variants}
    not_built = []
    for name, precision in plans:
        if precision in runtime.precisions and name not in built_names:
            why = next((note for note in built.notes if note.startswith(name)), None) or next(
                (note for note in built.notes if f"No {runtime.title} variant" in note), "no note says why"
            )
            not_built.append({"name": name, "precision": precision, "note": why})
    support = runtime.support(model_path) if runtime.support else None

    reference_session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [output.name for output in reference_session.get_outputs()]
    expected = [dict(zip(names, reference_session.run(None, feed), strict=True)) for feed in feeds]
    reference_max = max(float(np.max(np.abs(value))) for sample in expected for value in sample.values())
    rows: dict[str, dict[str, Any]] = {}
    for variant in variants:
        row: dict[str, Any] = {
            "name": variant.name,
            "precision": variant.precision,
            "file_bytes": sum(path.stat().st_size for path in variant.files if path.is_file()),
            "runs": [],
        }
        try:
            session = backend_class(threads=1).load(variant.path)  # type: ignore[call-arg]
            row["parity"] = parity(expected, [session.run(feed) for feed in feeds])
            session.close()
        except Exception as exc:  # a variant that does not run is reported, not fatal
            row["parity"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        log(f"[{case.key}] parity {variant.name}: {row['parity']}")
        rows[variant.name] = row

    baseline_runs: list[dict[str, Any]] = []
    for index in range(rounds):
        shift = index % len(variants) if variants else 0
        order = variants[shift:] + variants[:shift]
        sequence: list[tuple[str, Path, str]] = [(BASELINE, model_path, "baseline")]
        for variant in order:
            sequence += [(runtime.backend, variant.path, variant.name), (BASELINE, model_path, "baseline")]
        results = []
        for step, (runtime_name, path, label) in enumerate(sequence):
            result = measure(runtime_name, path, feed_path, timing, folder / "runs" / f"{index}-{step:02d}-{label}")
            result.update({"round": index + 1, "step": step})
            text = result.get("error") or f"{result['cpu_ms']:.3f} ms CPU, wall p50 {result['wall_p50_ms']:.3f} ms"
            log(f"[{case.key}] round {index + 1}: {label}: {text}")
            results.append(result)
            if label == "baseline":
                baseline_runs.append(result)
        for step in range(1, len(sequence), 2):
            result, before, after = results[step], results[step - 1], results[step + 1]
            around = [run for run in (before, after) if "error" not in run]
            if "error" not in result and around:
                mean_cpu = statistics.mean(run["cpu_ms"] for run in around)
                mean_wall = statistics.mean(run["wall_p50_ms"] for run in around)
                result["ratio"] = round(result["cpu_ms"] / mean_cpu, 4)
                result["wall_ratio"] = round(result["wall_p50_ms"] / mean_wall, 4)
                result["baseline_cpu_ms"] = round(mean_cpu, 4)
            rows[sequence[step][2]]["runs"].append(result)

    good = [run for run in baseline_runs if "error" not in run]
    if not good:
        raise SystemExit(f"[{case.key}] the original model did not run in onnxruntime: {baseline_runs[0]['error']}")
    baseline = {
        "cpu_ms": _spread([run["cpu_ms"] for run in good]),
        "wall_p50_ms": _spread([run["wall_p50_ms"] for run in good]),
        "runs": baseline_runs,
        "file_bytes": model_path.stat().st_size,
    }
    median_cpu = baseline["cpu_ms"]["median"]
    baseline["spread"] = {
        "min": round(baseline["cpu_ms"]["min"] / median_cpu, 4),
        "max": round(baseline["cpu_ms"]["max"] / median_cpu, 4),
    }
    for row in rows.values():
        timed = [run for run in row["runs"] if "ratio" in run]
        errors = [run["error"] for run in row["runs"] if "error" in run]
        if errors:
            row["error"] = errors[0]
        if timed:
            row["cpu_ms"] = _spread([run["cpu_ms"] for run in timed])
            row["ratio"] = _spread([run["ratio"] for run in timed])
            row["wall_p50_ms"] = _spread([run["wall_p50_ms"] for run in timed])
            row["wall_ratio"] = _spread([run["wall_ratio"] for run in timed])
    result = {
        "title": case.title,
        "made_with": made_with,
        "input": {"name": case.input_name, "shape": list(case.shape), "dtype": "float32"},
        "calibration": f"{CALIBRATION_SAMPLES} samples, "
        + ("uniform [0, 1)" if case.samples is _uniform else "standard normal"),
        "parity_samples": PARITY_SAMPLES,
        "reference_max_abs": float(f"{reference_max:.4g}"),
        "conversion_s": conversion_s,
        "notes": list(built.notes),
        "tool_versions": variants[0].tool_versions if variants else {},
        "not_built": not_built,
        "baseline": baseline,
        "variants": list(rows.values()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if support is not None:
        result["support"] = support
    return result


def run(
    models: list[str], rounds: int, quick: bool, runtime: Runtime = LITERT, cases: dict[str, ModelCase] = CASES
) -> dict[str, Any]:
    from workers.engine.backends.registry import BACKENDS

    backend = BACKENDS[runtime.backend]()
    if not backend.available():
        raise SystemExit(backend.not_installed_text())
    timing = QUICK if quick else FULL
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix=f"bench-{runtime.backend}-") as tmp:
        results = {key: bench_model(cases[key], Path(tmp), rounds, timing, runtime) for key in models}
    tool_versions = next((model["tool_versions"] for model in results.values() if model["tool_versions"]), {})
    return {
        "mode": "quick" if quick else "full",
        "rounds": rounds,
        "timing": asdict(timing),
        "cpu": cpu_line(),
        "cores": os.cpu_count(),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "versions": {
            runtime.package: _version(runtime.package),
            "onnxruntime": _version("onnxruntime"),
            "torch": _version("torch"),
            **{key: value for key, value in tool_versions.items() if key != runtime.package},
        },
        "models": results,
        "seconds": round(time.perf_counter() - started, 1),
    }


# --- BENCHMARKS.md ------------------------------------------------------------------------


def _range(stats: dict[str, float], fmt: str) -> str:
    return f"{stats['median']:{fmt}} ({stats['min']:{fmt}}-{stats['max']:{fmt}})"


def model_table(key: str, model: dict[str, Any]) -> str:
    base = model["baseline"]
    lines = [
        f"### `{key}`: {model['title']}",
        "",
        f"{model['made_with']}. Calibration: {model['calibration']}; parity on {model['parity_samples']} fresh "
        f"inputs (onnxruntime's outputs reach |y| = {model['reference_max_abs']:.3g}).",
        "",
        "| variant | conversion (all variants, one run) | parity max abs / cosine | CPU time per inference (ms) | "
        "ratio to onnxruntime (min-max) | wall p50 ms (ratio) |",
        "|---|---|---|---|---|---|",
        f"| onnxruntime (baseline, original ONNX) | - | reference | {_range(base['cpu_ms'], '.3f')} | "
        f"1 (its runs: {base['spread']['min']:.3f}-{base['spread']['max']:.3f} of their median) | "
        f"{base['wall_p50_ms']['median']:.3f} (1) |",
    ]
    for index, row in enumerate(model["variants"]):
        conversion = f"{model['conversion_s']:.0f} s" if index == 0 else "(same run)"
        check = row["parity"]
        accuracy = check.get("error") or f"{check['max_abs']:.3g} / {check['cosine']:.7f}"
        if "ratio" in row:
            speed = (
                f"{_range(row['cpu_ms'], '.3f')} | **{row['ratio']['median']:.3f}** "
                f"({row['ratio']['min']:.3f}-{row['ratio']['max']:.3f}) | "
                f"{row['wall_p50_ms']['median']:.3f} ({row['wall_ratio']['median']:.3f}) |"
            )
        else:
            speed = f"failed: {row.get('error', 'not timed')} | - | - |"
        lines.append(f"| {row['name']} ({row['file_bytes'] / 2**20:.1f} MiB) | {conversion} | {accuracy} | {speed}")
    if not model["variants"]:
        lines.append(f"| (no variant built) | {model['conversion_s']:.0f} s | - | - | - | - |")
    lines.append("")
    for item in model["not_built"]:
        lines.append(f"Not built: **{item['name']}**: {item['note'].removeprefix(item['name'] + ' was not built: ')}")
        lines.append("")
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    versions = result["versions"]
    timing = result["timing"]
    rounds = result["rounds"]
    load = result["load_average"]
    paragraph = (
        f"`python bench/litert.py` ({result['mode']} run, {result['seconds']:.0f} s) on {result['cpu']}, "
        f"{result['cores']} cores (load average {load[0]:.1f} at the start, {load[1]:.1f} at the end): the "
        f"`{PROFILE_NAME}` profile's LiteRT variants (FP32, FP16 weights, full INT8 calibrated on generated samples) "
        f"as `LiteRTBackend.build_variants` makes them, converted by onnx2tf {versions.get('onnx2tf')} "
        f"(TensorFlow {versions.get('tensorflow')}, in the litert framework environment) and run by LiteRT "
        f"(ai-edge-litert {versions.get('ai-edge-litert')}) with one thread and XNNPACK, the CPU delegate LiteRT "
        f"applies by default, through Slipway's LiteRT session (ONNX names and layouts, so its NCHW/NHWC transposes "
        f"are timed too), against the original ONNX model in onnxruntime {versions.get('onnxruntime')} "
        "(CPUExecutionProvider, one intra-op and one inter-op thread). **These are x86 timings: the "
        f"`{PROFILE_NAME}` profile's own timings come from an aarch64 device agent**, where XNNPACK's ARM kernels "
        "(and FP16 arithmetic where the CPU has it) can rank the variants differently.\n\n"
        "Each measurement is a fresh process, in the order baseline, variant 1, baseline, variant 2, ..., baseline "
        f"(variant order rotated each round), {rounds} round(s): {timing['warmup_runs']} warm-up runs (at least "
        f"{timing['warmup_s']} s), then N runs with N set so that they last about {timing['target_s']} s. **CPU time "
        "per inference** is the process CPU time (time.process_time) over the N runs / N, median over rounds "
        "(min-max); **ratio** is a round's CPU time per inference over the mean of the two baseline runs around it, "
        "median over rounds (min-max), below 1 is faster. The baseline row's range is its runs' spread around their "
        "median, the noise floor. **wall p50** is the median single-run wall time, with its ratio to the baseline "
        "runs around it in brackets. **Conversion** is the wall time of the whole `build_variants` call: one "
        "onnx2tf run in its own environment (TensorFlow's import included) makes all three variants, then each is "
        "loaded once to verify it. **Parity** compares each variant's outputs with onnxruntime's on fresh inputs: "
        "the largest absolute error and the lowest cosine over the inputs."
    )
    parts = [f"## {SECTION}", "", paragraph, ""]
    parts += [model_table(key, model) for key, model in result["models"].items()]
    return "\n".join(parts)


def print_summary(result: dict[str, Any]) -> None:
    for key, model in result["models"].items():
        base = model["baseline"]
        log(f"{key}: conversion {model['conversion_s']} s; onnxruntime {_range(base['cpu_ms'], '.3f')} ms CPU")
        for row in model["variants"]:
            ratio = _range(row["ratio"], ".3f") if "ratio" in row else row.get("error", "not timed")
            log(f"  {row['name']:<12} parity {row['parity']}  ratio {ratio}")
        for item in model["not_built"]:
            log(f"  {item['name']:<12} not built: {item['note']}")


def main(
    runtime: Runtime = LITERT,
    section: str = SECTION,
    render_result: Callable[[dict[str, Any]], str] = render,
    summary: Callable[[dict[str, Any]], None] = print_summary,
    description: str | None = __doc__,
    cases: dict[str, ModelCase] = CASES,
    default_models: tuple[str, ...] = DEFAULT_MODELS,
) -> None:
    """The command line of this bench, and of bench/executorch_variants.py with its runtime, models and renderer."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(default_models), help=f"comma-separated, of {', '.join(cases)}")
    parser.add_argument("--rounds", type=int, help="rounds of interleaved timing (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="one round, about 0.3 s per timing: a smoke test")
    parser.add_argument("--no-write", action="store_true", help="don't update BENCHMARKS.md")
    parser.add_argument("--from-json", type=Path, help="re-render a run's printed JSON instead of measuring")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        models = [name.strip() for name in args.models.split(",") if name.strip()]
        unknown = [name for name in models if name not in cases]
        if unknown or not models:
            parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(cases)}")
        rounds = args.rounds or (1 if args.quick else 3)
        from workers.engine.child import stdout_to_stderr

        with stdout_to_stderr() as real_stdout:
            result = run(models, rounds, args.quick, runtime, cases)
            summary(result)
            print(json.dumps(result, indent=1), file=real_stdout)
    if args.from_json:
        print(json.dumps(result, indent=1))
    if not args.no_write:
        write_section(REPO / "BENCHMARKS.md", section, render_result(result))


if __name__ == "__main__":
    main()
