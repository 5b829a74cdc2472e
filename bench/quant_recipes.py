"""Quantization recipes: onnxruntime static INT8 as Slipway built it before, against the
recipe it now picks for the CPU, on the reference models.

For each model (from bench/value.py: ResNet-18, the Transformer encoder, the YOLO-style
detector; the OCR detector and the recurrent model with --models) this builds
`ort-int8-static-qdq` with `OnnxRuntimeCpuBackend.build_variants`, calibrated on 16 real-like
samples, three ways:

- **before**: int8 activations and int8 weights with one scale per tensor (S8S8 per-tensor),
  the pass every profile got until the recipes (`Calibration(per_channel=False)` on a profile
  that names a CPU without a recipe, which gives onnxruntime's QDQ default);
- **S8S8 per-channel**: the same types with a scale per output channel (what ARM64 gets);
- **recipe**: what `quant_recipes.ort_static_recipe` picks for this worker's CPU (on x86-64,
  uint8 activations with per-channel int8 weights, U8S8; 7-bit weights without VNNI);
- **mixed**: where the recipe's variant is out of tolerance on the calibration samples, the
  mixed-precision variant the build searches for (`workers/engine/mixed_precision.py`).

It judges each on 8 held-out real-like samples with the engine's comparator at the seeded
`x86-cpu` profile's tolerance and the output kinds inspection proposes, then measures the
original in plain onnxruntime and the three variants with `benchmark_interleaved` (3 trials
round robin, each a fresh process, one intra-op thread, pinned to one core). Reported: CPU
time per inference over the original's with the 95 % band. Writes the "## Quantization
recipes" section of BENCHMARKS.md unless --no-write.

    python bench/quant_recipes.py                      # cnn, transformer, detector: about 4 min
    python bench/quant_recipes.py --models cnn --seconds 1 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import value  # noqa: E402
from bench._benchmarks_md import write_section  # noqa: E402

SECTION = "Quantization recipes"
DEFAULT_MODELS = ("cnn", "transformer", "detector")
WAYS = ("before", "s8s8-per-channel", "recipe")
ALL_WAYS = (*WAYS, "mixed")
RECORDED_OPTIONS = ("activation_type", "per_channel", "reduce_range", "recipe", "reason", "mixed_precision")


def _profile(name: str, options: dict[str, Any]) -> Any:
    from workers.engine.backends.base import HardwareProfile

    return HardwareProfile(name, "cpu", ("onnxruntime",), ("int8",), options=options)


def build(model_path: Path, calibration: Path, folder: Path, semantics: dict[str, Any]) -> dict[str, Any]:
    """The static INT8 variant three ways; each with its build options (the recipe sentence)."""
    from workers.engine.backends.base import Calibration
    from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend

    backend = OnnxRuntimeCpuBackend(intra_op_threads=1)
    # The seeded x86-cpu profile's tolerance, which the mixed-precision search works to.
    seeded = value.seeded_profile_options()
    # A CPU without a recipe gets onnxruntime's QDQ default, S8S8; per_channel=False as before.
    plans = {
        "before": (
            _profile("before", {**seeded, "arch": "unknown"}),
            Calibration(calibration, per_channel=False, output_semantics=semantics),
        ),
        "s8s8-per-channel": (
            _profile("s8s8", {**seeded, "arch": "aarch64"}),
            Calibration(calibration, output_semantics=semantics),
        ),
        "recipe": (_profile("recipe", seeded), Calibration(calibration, output_semantics=semantics)),
    }
    built: dict[str, Any] = {}
    notes: list[str] = []
    for way, (profile, calib) in plans.items():
        builds = backend.build_variants(model_path, profile, calib, folder / way)
        variants = {v.name: v for v in builds}
        if "ort-int8-static-qdq" not in variants:
            raise SystemExit(f"{way}: no static INT8 variant was built: {builds.notes}")
        built[way] = variants["ort-int8-static-qdq"]
        if way == "recipe":
            if "ort-int8-static-mixed" in variants:
                built["mixed"] = variants["ort-int8-static-mixed"]
            notes += [note for note in builds.notes if note.startswith("ort-int8-static-mixed")]
    return {"variants": built, "notes": notes}


def bench_model(key: str, workdir: Path, seconds: float, core: int, tolerance: Any) -> dict[str, Any]:
    import numpy as np

    from workers.engine.benchmark import BenchmarkFailed
    from workers.engine.inputs import InputPlan
    from workers.engine.inspection import inspect_model
    from workers.engine.outputs import semantics_map
    from workers.engine.parity import evidence_inputs

    case = value.CASES[key]
    folder = workdir / key
    folder.mkdir(parents=True)
    model_path = folder / "model.onnx"
    value.log(f"[{key}] making the model")
    case.make(model_path)
    report = inspect_model(model_path)
    plan = InputPlan.from_dict(report.input_plan or {})
    semantics = semantics_map(report.output_semantics)
    np.savez(folder / "real.npz", **case.real(model_path, 2, value.EVAL_SAMPLES))
    real = evidence_inputs(model_path, folder / "real.npz", samples=value.EVAL_SAMPLES)
    np.savez(folder / "calibration.npz", **case.real(model_path, 1, value.CALIBRATION_SAMPLES))

    value.log(f"[{key}] building static INT8 three ways, and the mixed-precision search")
    # As the optimize step: the search judges its probe by the output kinds inspection proposes.
    made = build(model_path, folder / "calibration.npz", folder, dict(report.output_semantics or {}))
    built = made["variants"]
    reference = {"real": value._outputs("onnxruntime", model_path, real.feeds)}
    parity = {
        way: value.judge("onnxruntime", variant.path, {"real": real.feeds}, reference, tolerance, semantics)["real"]
        for way, variant in built.items()
    }

    value.log(f"[{key}] benchmarking the original and {len(built)} variants, {value.TRIALS} trials each")
    outcomes = value.measure(model_path, plan, [("onnxruntime", v.path) for v in built.values()], seconds, core)
    if isinstance(outcomes[0], BenchmarkFailed):
        raise SystemExit(f"[{key}] the original model could not be benchmarked: {outcomes[0]}")
    baseline = value._points(outcomes[0])[0]
    rows = {}
    for (way, variant), outcome in zip(built.items(), outcomes[1:], strict=True):
        point = None if isinstance(outcome, BenchmarkFailed) else value._points(outcome)[0]
        rows[way] = {
            "options": {key: variant.options.get(key) for key in RECORDED_OPTIONS},
            "cpu_ms": point["cpu_ms"] if point else None,
            "cpu_ratio": value.cpu_ratio(baseline, point),
            "benchmark_error": str(outcome) if point is None else None,
            "parity": value._parity_summary(parity[way]),
        }
    return {"title": case.title, "baseline_cpu_ms": baseline["cpu_ms"], "rows": rows, "notes": made["notes"]}


def _ratio(row: dict[str, Any]) -> str:
    ratio = row["cpu_ratio"]
    if not ratio:
        return f"not measured: {row['benchmark_error']}" if row["benchmark_error"] else "no band"
    return f"{ratio['ratio']:.2f} [{ratio['low']:.2f}-{ratio['high']:.2f}]"


def _verdict(row: dict[str, Any]) -> str:
    return value._first_reason(row["parity"])


def write_benchmarks(result: dict[str, Any]) -> None:
    recipe = next(iter(result["models"].values()))["rows"]["recipe"]["options"]["recipe"]
    lines = [
        f"## {SECTION}",
        "",
        f"`bench/quant_recipes.py`, {result['date']}, {result['cpu']}, {result['cores']} vCPUs shared with other "
        f"work, {result['seconds']:.0f} s; onnxruntime {result['onnxruntime']}. onnxruntime's static INT8 "
        "(`ort-int8-static-qdq`, QDQ, MinMax calibration on 16 real-like samples of bench/value.py) built three ways: "
        "**before** (S8S8, one scale per tensor: what every profile got until the recipes), **S8S8 per-channel**, "
        f"and the **recipe** `quant_recipes` picks for this CPU: {recipe} Parity on 8 held-out real-like samples "
        "at the `x86-cpu` profile's tolerance with the output kinds inspection proposes; CPU time per inference "
        "over plain onnxruntime's (below 1 is faster) with the 95% band, 3 interleaved trials in fresh "
        "processes, one thread, pinned to one core.",
        "",
        "Where the recipe's variant is out of tolerance on the calibration samples, the build also searches for "
        "**mixed** precision (`workers/engine/mixed_precision.py`): the activations whose quantization hurts the "
        "outputs most stay in float, the fewest that bring the model within tolerance.",
        "",
        "| model | original CPU ms | before: ratio [95%] | parity | S8S8 per-channel | parity | recipe | parity "
        "| mixed | parity |",
        "|---|---:|---|---|---|---|---|---|---|---|",
    ]
    for key, model in result["models"].items():
        rows = model["rows"]
        cells = " | ".join(
            f"{_ratio(rows[way])} | {_verdict(rows[way])}" if way in rows else "not built | -" for way in ALL_WAYS
        )
        lines.append(f"| `{key}` | {model['baseline_cpu_ms']:.3f} | {cells} |")
    notes = []
    for key, model in result["models"].items():
        mixed = model["rows"].get("mixed")
        if mixed:
            notes.append(f"- `{key}`, mixed: {mixed['options']['reason']}")
        notes += [f"- `{key}`: {note}" for note in model["notes"] if "was not built" in note]
    if notes:
        lines += ["", *notes]
    write_section(REPO / "BENCHMARKS.md", SECTION, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS), help=f"comma-separated, of {', '.join(value.CASES)}"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per point over the trials")
    parser.add_argument("--no-write", action="store_true", help="don't update BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in models if name not in value.CASES]
    if unknown or not models:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(value.CASES)}")
    import onnxruntime

    from workers.engine.hardware import cpu_model

    started = time.perf_counter()
    core = min(os.sched_getaffinity(0))
    tolerance = value.profile_tolerance()
    workdir = Path(tempfile.mkdtemp(prefix="slipway-bench-recipes-"))
    try:
        results = {key: bench_model(key, workdir, args.seconds, core, tolerance) for key in models}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "onnxruntime": onnxruntime.__version__,
        "seconds": time.perf_counter() - started,
        "models": results,
    }
    for key, model in results.items():
        print(key, {way: (_ratio(row), _verdict(row)[:80]) for way, row in model["rows"].items()})
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    if not args.no_write:
        write_benchmarks(result)


if __name__ == "__main__":
    main()
