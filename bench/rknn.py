"""RKNN variants on RKNN-Toolkit2's simulator: what `RKNNBackend` makes of two models for the
`rk3588-npu` profile (which nodes the NPU takes, INT8 and FP16 .rknn files from one toolkit run),
how long that conversion takes next to onnxruntime's static INT8 quantization of the same model,
and how close the simulator's outputs are to onnxruntime's, next to that INT8 ONNX model's.

No inference speed is measured: the simulator computes the NPU's arithmetic on this x86 CPU, so
its timings say nothing of a board's (docs/adr/0018). RKNN timings come only from a board.

The models are bench/litert.py's, built here (nothing downloaded): a ResNet-18 in plain torch
(seeded weights) and a small `nn.TransformerEncoder` (2 layers, d_model 128, 4 heads, FFN 512,
input [1, 32, 128]), exported to ONNX opset 17. Inputs are generated: calibration is 16 samples
(uniform [0, 1) images for the CNN, standard normal for the transformer), parity 8 fresh samples
drawn the same way. Per model:

- placement: `RKNNBackend().check_support` (one FP16 build for rk3588): nodes on the NPU, falling
  back to the CPU, refused; and the INT8 build's placement sentence from the build's notes;
- conversion: the wall time of `RKNNBackend().build_variants` (rknn-int8 and rknn-fp16 in one
  toolkit run, accuracy analysis included, the side process's start included) against the
  reference, `OnnxRuntimeCpuBackend().build_variants` for an x86-cpu profile restricted to int8 (as
  bench/optimize.py builds it: dynamic and static QDQ INT8, whatever else that build makes), in
  the order ort, rknn, ort, ..., rknn, ort for --rounds rounds. A round's ratio is the RKNN time
  over the mean of the two ORT runs around it;
- parity: each RKNN variant on the simulator (`RKNNBackend().load`, `parity.run_session`, which
  passes all inputs to the simulator in one rebuild) and ort-int8-static-qdq in onnxruntime,
  against the original in onnxruntime FP32 (`parity.compare_variant`): max abs error, cosine
  (the lowest of one input, and the mean of 1 - cosine over inputs), top-1 agreement for the
  CNN's logits, the verdict at the rk3588-npu profile's tolerance; and RKNN INT8's error
  (1 - cosine) over ORT INT8's;
- the toolkit's accuracy analysis of rknn-int8 (one calibration sample, per layer): the output's
  cosine with errors accumulated, and the three weakest layers on their own;
- file sizes: the .rknn files, the INT8 ONNX model and the original.

Progress goes to stderr; the result is written as JSON with --json PATH and to BENCHMARKS.md's
"## RKNN variants (simulator)" section unless --no-write; --from-json re-renders a saved result.

Run time on 2 cores shared with other work (load average about 5): `--quick` (one round, both
models) took 130 s, the full run (3 rounds) 398 s, of which the CNN 312 s (its 7 conversions 240
s). Both builds use both cores, so contention moves the ratio: the CNN's was 2.8 in a quick run at
load 3, 1.9 in the full run at load 5, where onnxruntime's build slowed more than the toolkit's.

    python bench/rknn.py                                # cnn and transformer, 3 rounds
    python bench/rknn.py --quick --no-write --models transformer
    python bench/rknn.py --from-json result.json       # re-render a saved result
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from apps.hardware import seeded_profiles  # noqa: E402
from bench._benchmarks_md import cpu_line, write_section  # noqa: E402
from bench.litert import CALIBRATION_SAMPLES, CASES, DEFAULT_MODELS, ModelCase, _range, _spread, _version, log  # noqa: E402

SECTION = "RKNN variants (simulator)"
PROFILE_NAME = "rk3588-npu"
REFERENCE_PROFILE = "x86-cpu"
REFERENCE_VARIANT = "ort-int8-static-qdq"
PARITY_SAMPLES = 8
WEAKEST_LAYERS = 3
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_.]*(Error|Exception): ")


# --- placement ----------------------------------------------------------------------------


def placement(model_path: Path) -> dict[str, Any]:
    """Where the FP16 build puts each node (`check_support`): counts, the fallback and refused op
    types, and how many NPU/CPU segments the graph becomes."""
    from workers.engine.backends.rknn import RKNNBackend

    t0 = time.perf_counter()
    report = RKNNBackend().check_support(model_path)
    counts: Counter[str] = Counter()
    by_status: dict[str, Counter[str]] = {"fallback": Counter(), "unsupported": Counter()}
    for op in report.ops:
        counts[op.status] += len(op.nodes)
        if op.status in by_status:
            by_status[op.status][op.op_type] += len(op.nodes)
    return {
        "verdict": report.verdict,
        "nodes": sum(counts.values()),
        "npu": counts["supported"],
        "fallback": counts["fallback"],
        "unsupported": counts["unsupported"],
        "fallback_ops": dict(by_status["fallback"].most_common()),
        "unsupported_ops": dict(by_status["unsupported"].most_common()),
        "segments": [{"device": part.device, "nodes": part.node_count} for part in report.partitions],
        "notes": list(report.notes),
        "seconds": round(time.perf_counter() - t0, 1),
    }


# --- conversion ---------------------------------------------------------------------------


def convert(kind: str, model_path: Path, calibration: Path, out_dir: Path) -> tuple[float, Any]:
    """One `build_variants` call, timed: the RKNN profile's, or the ORT INT8 reference's."""
    from workers.engine.backends.base import Calibration, HardwareProfile
    from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
    from workers.engine.backends.rknn import RKNNBackend

    if kind == "rknn":
        seeded = seeded_profiles.profile(PROFILE_NAME)
        profile = HardwareProfile(
            PROFILE_NAME, "cpu", ("rknn",), tuple(seeded["precisions"]), seeded["queue"], dict(seeded["options"])
        )
        backend: Any = RKNNBackend()
    else:
        profile = HardwareProfile(REFERENCE_PROFILE, "cpu", ("onnxruntime",), ("int8",))
        backend = OnnxRuntimeCpuBackend()
    t0 = time.perf_counter()
    built = backend.build_variants(model_path, profile, Calibration(calibration), out_dir)
    return round(time.perf_counter() - t0, 2), built


def conversion_rounds(key: str, model_path: Path, calibration: Path, folder: Path, rounds: int) -> dict[str, Any]:
    """ort, rknn, ort, ..., rknn, ort: each RKNN time over the mean of the ORT times around it.
    The last round's builds are kept for parity."""
    # The reference builds in this process: its imports are paid once, here, not in round 1.
    import onnxruntime.quantization  # noqa: F401

    from workers.engine import mixed_precision  # noqa: F401

    ort_runs: list[float] = []
    rknn_runs: list[dict[str, Any]] = []
    builds: dict[str, Any] = {}
    sequence = ["ort"] + ["rknn", "ort"] * rounds
    for step, kind in enumerate(sequence):
        out_dir = folder / "conversion" / f"{step:02d}-{kind}"
        seconds, built = convert(kind, model_path, calibration, out_dir)
        log(f"[{key}] conversion {step + 1}/{len(sequence)}: {kind} {seconds} s ({', '.join(v.name for v in built)})")
        builds[kind] = built
        if kind == "ort":
            ort_runs.append(seconds)
        else:
            rknn_runs.append({"round": len(rknn_runs) + 1, "seconds": seconds})
    for index, run in enumerate(rknn_runs):
        run["ort_mean_s"] = round(statistics.mean(ort_runs[index : index + 2]), 2)
        run["ratio"] = round(run["seconds"] / run["ort_mean_s"], 3)
    return {
        "rknn_s": _spread([run["seconds"] for run in rknn_runs]),
        "ort_s": _spread(ort_runs),
        "ratio": _spread([run["ratio"] for run in rknn_runs]),
        "rounds": rknn_runs,
        "ort_runs": ort_runs,
        "rknn_built": [variant.name for variant in builds["rknn"]],
        "ort_built": [variant.name for variant in builds["ort"]],
        "rknn_notes": list(builds["rknn"].notes),
        "ort_notes": list(builds["ort"].notes),
        "builds": builds,
    }


# --- parity -------------------------------------------------------------------------------


def compare(expected: list[dict[str, Any]], actual: list[dict[str, Any]], tolerance: Any) -> dict[str, Any]:
    """Over all inputs: max abs error, top-1 agreement and the verdict at `tolerance`; per input:
    the cosine, whose lowest and mean 1 - cosine are kept."""
    from workers.engine.parity import compare_variant

    verdict = compare_variant(expected, actual, tolerance)
    per_input = [compare_variant(want, got, tolerance) for want, got in zip(expected, actual, strict=True)]
    cosines = [min(output.cosine for output in item.outputs if output.cosine is not None) for item in per_input]
    top1 = [output.top1_agreement for output in verdict.outputs if output.top1_agreement is not None]
    return {
        "max_abs": float(f"{max(output.max_abs_error or 0.0 for output in verdict.outputs):.4g}"),
        "cosine_min": min(cosines),
        "error_mean": statistics.mean(1 - cosine for cosine in cosines),
        "top1": min(top1) if top1 else None,
        "passed": verdict.passed,
        "reasons": list(verdict.reasons),
    }


def beyond_calibration(expected: list[dict[str, Any]], calibrated: list[dict[str, Any]]) -> float:
    """How far the original's outputs on the parity inputs go past the range its outputs span on
    the calibration samples: there a minmax-calibrated INT8 output clips, whatever the runtime."""
    import numpy as np

    excess = 0.0
    for name in expected[0]:
        low = min(float(np.min(run[name])) for run in calibrated)
        high = max(float(np.max(run[name])) for run in calibrated)
        for run in expected:
            excess = max(excess, float(np.max(run[name])) - high, low - float(np.min(run[name])))
    return float(f"{excess:.4g}")


def parity_rows(
    key: str, expected: list[dict[str, Any]], feeds: list[dict[str, Any]], variants: list[Any]
) -> list[dict[str, Any]]:
    """Each variant's outputs on `feeds` against the original's in onnxruntime FP32 (`expected`)."""
    from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
    from workers.engine.backends.rknn import RKNNBackend
    from workers.engine.parity import Tolerance, run_session

    tolerance = Tolerance.from_options(seeded_profiles.profile(PROFILE_NAME)["options"])
    rows = []
    for variant in variants:
        row: dict[str, Any] = {
            "name": variant.name,
            "runtime": "RKNN-Toolkit2 simulator" if variant.backend == "rknn" else "onnxruntime",
            "file_bytes": variant.path.stat().st_size,
        }
        side_log = io.StringIO()
        try:
            backend: Any = RKNNBackend() if variant.backend == "rknn" else OnnxRuntimeCpuBackend()
            session = backend.load(variant.path)
            row["simulated"] = bool(getattr(session, "simulated", False))
            # The side's log comes back on stderr; kept to name the toolkit's own error.
            with contextlib.redirect_stderr(side_log):
                outputs = run_session(session, feeds)
            row.update(compare(expected, outputs, tolerance))
            session.close()
        except Exception as exc:  # a variant that does not run is reported, not fatal
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            if cause := toolkit_error(side_log.getvalue()):
                row["error"] = f"the simulator raised {cause}"
        finally:
            print(side_log.getvalue(), end="", file=sys.stderr)
        log(f"[{key}] parity {variant.name}: {row.get('error') or {k: row[k] for k in ('max_abs', 'cosine_min')}}")
        rows.append(row)
    return rows


def toolkit_error(side_log: str) -> str:
    """The last Python exception line in the side's log ("AttributeError: ..."), else ""."""
    lines = [_ANSI.sub("", line).strip() for line in side_log.splitlines()]
    found = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return found[-1][:300] if found else ""


def accuracy(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """The accuracy analysis' output layer (the last scored one) and its weakest single layers."""
    scored = [layer for layer in layers if "single_cosine" in layer]
    if not scored:
        return {}
    low = sorted(scored, key=lambda layer: float(layer["single_cosine"]))[:WEAKEST_LAYERS]
    return {
        "layers": len(layers),
        "scored": len(scored),
        "output": {key: scored[-1][key] for key in ("layer", "op", "entire_cosine")},
        "weakest": [{key: layer[key] for key in ("layer", "op", "single_cosine", "entire_cosine")} for layer in low],
    }


# --- one model ----------------------------------------------------------------------------


def bench_model(case: ModelCase, workdir: Path, rounds: int) -> dict[str, Any]:
    import numpy as np

    from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
    from workers.engine.parity import run_session

    started = time.perf_counter()
    folder = workdir / case.key
    folder.mkdir(parents=True)
    model_path = folder / "model.onnx"
    log(f"[{case.key}] making the model")
    made_with = case.make(model_path, folder)
    calibration = folder / "calibration.npz"
    samples = case.samples(np.random.default_rng(1), CALIBRATION_SAMPLES)
    np.savez(calibration, **{case.input_name: samples})
    fresh = case.samples(np.random.default_rng(2), PARITY_SAMPLES)
    feeds = [{case.input_name: fresh[i : i + 1]} for i in range(PARITY_SAMPLES)]
    original = OnnxRuntimeCpuBackend().load(model_path)
    expected = run_session(original, feeds)
    calibrated = run_session(original, [{case.input_name: samples[i : i + 1]} for i in range(len(samples))])
    original.close()
    reference_max = max(float(np.max(np.abs(value))) for sample in expected for value in sample.values())

    log(f"[{case.key}] placement (check_support, one FP16 build)")
    placed = placement(model_path)
    log(f"[{case.key}] {placed['npu']} NPU, {placed['fallback']} CPU, {placed['unsupported']} refused")

    conversion = conversion_rounds(case.key, model_path, calibration, folder, rounds)
    builds = conversion.pop("builds")
    rknn_variants = list(builds["rknn"])
    reference = [variant for variant in builds["ort"] if variant.name == REFERENCE_VARIANT]
    int8_placement = next((note for note in builds["rknn"].notes if note.startswith("RKNN placement")), "")

    rows = parity_rows(case.key, expected, feeds, rknn_variants + reference)
    by_name = {row["name"]: row for row in rows}
    rknn_int8, ort_int8 = by_name.get("rknn-int8", {}), by_name.get(REFERENCE_VARIANT, {})
    error_ratio = None
    if "error_mean" in rknn_int8 and ort_int8.get("error_mean"):
        error_ratio = {
            "mean": round(rknn_int8["error_mean"] / ort_int8["error_mean"], 2),
            "worst": round((1 - rknn_int8["cosine_min"]) / max(1 - ort_int8["cosine_min"], 1e-12), 2),
        }
    analysis = {variant.name: accuracy(variant.options.get("accuracy_analysis") or []) for variant in rknn_variants}
    return {
        "title": case.title,
        "made_with": made_with,
        "input": {"name": case.input_name, "shape": list(case.shape), "dtype": "float32"},
        "calibration": f"{CALIBRATION_SAMPLES} generated samples, "
        + ("uniform [0, 1)" if case.key == "cnn" else "standard normal"),
        "parity_samples": PARITY_SAMPLES,
        "reference_max_abs": float(f"{reference_max:.4g}"),
        "beyond_calibration": beyond_calibration(expected, calibrated),
        "onnx_bytes": model_path.stat().st_size,
        "placement": placed,
        "int8_placement": int8_placement.removeprefix("RKNN placement of the int8 build: "),
        "conversion": conversion,
        "parity": rows,
        "error_ratio": error_ratio,
        "accuracy_analysis": analysis,
        "tool_versions": rknn_variants[0].tool_versions if rknn_variants else {},
        "seconds": round(time.perf_counter() - started, 1),
    }


def run(models: list[str], rounds: int, quick: bool) -> dict[str, Any]:
    from workers.engine import framework_envs
    from workers.engine.backends.rknn import RKNNBackend

    if not RKNNBackend().available():
        raise SystemExit(RKNNBackend().not_installed_text())
    packages = (framework_envs.stamp(framework_envs.get("rknn")) or {}).get("packages", {})
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-rknn-") as tmp:
        results = {key: bench_model(CASES[key], Path(tmp), rounds) for key in models}
    return {
        "mode": "quick" if quick else "full",
        "rounds": rounds,
        "cpu": cpu_line(),
        "cores": os.cpu_count(),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "versions": {
            "rknn-toolkit2": packages.get("rknn-toolkit2"),
            "rknn env onnxruntime": packages.get("onnxruntime"),
            "rknn env torch": packages.get("torch"),
            "onnxruntime": _version("onnxruntime"),
            "torch": _version("torch"),
        },
        "models": results,
        "seconds": round(time.perf_counter() - started, 1),
    }


# --- BENCHMARKS.md ------------------------------------------------------------------------


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"


def _counts(ops: dict[str, int]) -> str:
    return ", ".join(f"{op} x{count}" if count > 1 else op for op, count in ops.items())


def placement_text(model: dict[str, Any]) -> str:
    placed = model["placement"]
    text = (
        f"**Placement** (`check_support`, FP16 build for rk3588): {placed['npu']} of {placed['nodes']} ONNX nodes on "
        f"the NPU, {placed['fallback']} on the CPU"
    )
    text += f" ({_counts(placed['fallback_ops'])})" if placed["fallback_ops"] else ""
    text += f", {placed['unsupported']} refused" + (
        f" ({_counts(placed['unsupported_ops'])})" if placed["unsupported_ops"] else ""
    )
    segments = placed["segments"]
    if len(segments) > 1:
        text += f"; the graph runs as {len(segments)} NPU/CPU segments, each switch a copy between their memories"
    text += f"; verdict `{placed['verdict']}`."
    if model["int8_placement"]:
        text += f" The INT8 build: {model['int8_placement']}"
    return text


def conversion_table(model: dict[str, Any]) -> list[str]:
    conv = model["conversion"]
    per_round = ", ".join(f"{run['ratio']:.2f}" for run in conv["rounds"])
    return [
        "| conversion | wall time, s (min-max) | ratio to the ORT INT8 build (min-max) | ratio per round | built |",
        "|---|---|---|---|---|",
        f"| onnxruntime INT8 (reference, {REFERENCE_PROFILE} profile, int8 only) | {_range(conv['ort_s'], '.1f')} "
        f"| 1 | - | {', '.join(conv['ort_built'])} |",
        f"| RKNN-Toolkit2, rk3588 (INT8 + FP16, accuracy analysis) | {_range(conv['rknn_s'], '.1f')} | "
        f"**{_range(conv['ratio'], '.2f')}** | {per_round} | {', '.join(conv['rknn_built'])} |",
    ]


def parity_table(model: dict[str, Any]) -> list[str]:
    lines = [
        "| variant | runs on | file size (to the ONNX) | max abs error | cosine, lowest of one input | "
        "1 - cosine, mean over inputs | top-1 agreement | rk3588-npu tolerance |",
        "|---|---|---|---|---|---|---|---|",
        f"| original (FP32 ONNX) | onnxruntime | {_mib(model['onnx_bytes'])} (1) | reference | 1 | 0 | 1 | - |",
    ]
    for row in model["parity"]:
        size = f"{_mib(row['file_bytes'])} ({row['file_bytes'] / model['onnx_bytes']:.2f}x)"
        head = f"| {row['name']} | {row['runtime']} | {size} |"
        if "error" in row:
            lines.append(f"{head} failed: {row['error']} | - | - | - | - |")
            continue
        top1 = "-" if row["top1"] is None else f"{row['top1']:.3f}"
        verdict = "passes" if row["passed"] else "fails"
        lines.append(
            f"{head} {row['max_abs']:.3g} | {row['cosine_min']:.6f} | {row['error_mean']:.3g} | {top1} | {verdict} |"
        )
    return lines


def accuracy_text(model: dict[str, Any]) -> str:
    int8 = model["accuracy_analysis"].get("rknn-int8") or {}
    if not int8:
        return "No accuracy analysis came back for rknn-int8."
    weakest = "; ".join(f"`{layer['layer']}` ({layer['op']}) {layer['single_cosine']:.5f}" for layer in int8["weakest"])
    text = (
        f"**Accuracy analysis** of rknn-int8 (the toolkit's, on the simulator, one calibration sample, "
        f"{int8['scored']} scored layers of {int8['layers']}): the output `{int8['output']['layer']}` has cosine "
        f"{int8['output']['entire_cosine']:.5f} with errors accumulated from the input; the weakest layers on their "
        f"own: {weakest}."
    )
    fp16 = model["accuracy_analysis"].get("rknn-fp16") or {}
    if fp16:
        text += f" rknn-fp16's output: {fp16['output']['entire_cosine']:.5f}."
    return text


def model_section(key: str, model: dict[str, Any]) -> str:
    ratio = model["error_ratio"]
    error_text = (
        f"**RKNN INT8 against ORT INT8**: rknn-int8's error (1 - cosine) is **{ratio['mean']:.2f}x** "
        f"{REFERENCE_VARIANT}'s on the mean over inputs ({ratio['worst']:.2f}x on the worst input), "
        "same calibration samples."
        if ratio
        else "RKNN INT8 against ORT INT8: no ratio (a variant is missing, or ORT INT8's error is 0)."
    )
    if model.get("beyond_calibration", 0) > 0:
        error_text += (
            f" On these inputs the original's outputs go up to {model['beyond_calibration']:.3g} past the range they "
            "span on the calibration samples: an INT8 output with minmax scales clips there, in either runtime, so "
            "an INT8 variant's max abs error is at least about that."
        )
    lines = [
        f"### `{key}`: {model['title']}",
        "",
        f"{model['made_with']}. Calibration: {model['calibration']}; parity on {model['parity_samples']} fresh "
        f"generated inputs (onnxruntime's outputs reach |y| = {model['reference_max_abs']:.3g}).",
        "",
        placement_text(model),
        "",
        *conversion_table(model),
        "",
        *parity_table(model),
        "",
        error_text,
        "",
        accuracy_text(model),
        "",
    ]
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    versions = result["versions"]
    load = result["load_average"]
    rounds = result["rounds"]
    paragraph = (
        f"`python bench/rknn.py` ({result['mode']} run, {result['seconds']:.0f} s) on {result['cpu']}, "
        f"{result['cores']} cores (load average {load[0]:.1f} at the start, {load[1]:.1f} at the end): the "
        f"`{PROFILE_NAME}` profile's variants (rknn-int8 calibrated on generated samples, rknn-fp16) as "
        f"`RKNNBackend.build_variants` makes them with RKNN-Toolkit2 {versions.get('rknn-toolkit2')} (in the rknn "
        f"framework environment, torch {versions.get('rknn env torch')}) for target platform rk3588. **No inference "
        "speed here: the toolkit's simulator computes the NPU's arithmetic on this x86 CPU, so its outputs are the "
        "NPU's numerics as the toolkit models them (a board may round differently) and its timings mean nothing; "
        "RKNN timings come only from a board** (docs/adr/0018).\n\n"
        "**Placement** is `RKNNBackend().check_support` (an FP16 build; ONNX nodes fused into a neighbour count with "
        "it) and the INT8 build's placement sentence from its notes. **Conversion** is the wall time of one "
        "`build_variants` call: for RKNN, one toolkit run in its own process (its start and imports included) that "
        "builds both variants and runs the toolkit's accuracy analysis; the reference is onnxruntime "
        f"{versions.get('onnxruntime')}'s INT8 build of the same model with the same calibration set "
        f"(`OnnxRuntimeCpuBackend.build_variants`, an {REFERENCE_PROFILE} profile with int8 only, in this process: "
        "dynamic and static QDQ INT8 and what else that build makes, listed). Order: ort, rknn, ort, ..., rknn, ort, "
        f"{rounds} round(s); a round's ratio is the RKNN time over the mean of the two ORT runs around it, shown as "
        "median (min-max). **Parity** runs each RKNN variant on the simulator (`RKNNBackend().load`, all inputs in "
        f"one rebuild through `parity.run_session`) and {REFERENCE_VARIANT} in onnxruntime, against the original in "
        "onnxruntime FP32 (`parity.compare_variant`): the largest absolute error over all inputs, the lowest cosine of "
        "one input, the mean of 1 - cosine over the inputs, top-1 agreement of the logits (CNN), and the verdict at "
        f"the {PROFILE_NAME} profile's tolerance (max abs 5e-2, or cosine 0.98 and its other checks)."
    )
    parts = [f"## {SECTION}", "", paragraph, ""]
    parts += [model_section(key, model) for key, model in result["models"].items()]
    return "\n".join(parts)


def print_summary(result: dict[str, Any]) -> None:
    for key, model in result["models"].items():
        placed, conv = model["placement"], model["conversion"]
        log(f"{key}: placement {placed['npu']} NPU / {placed['fallback']} CPU / {placed['unsupported']} refused")
        log(f"  conversion ratio {_range(conv['ratio'], '.2f')} (rknn {_range(conv['rknn_s'], '.1f')} s)")
        for row in model["parity"]:
            shown = {k: row.get(k) for k in ("max_abs", "cosine_min", "error_mean", "top1", "passed", "error")}
            log(f"  {row['name']:<20} {shown}")
        log(f"  error ratio rknn-int8 / ort-int8: {model['error_ratio']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--rounds", type=int, help="interleaved conversion rounds (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="one conversion round: a smoke test")
    parser.add_argument("--no-write", action="store_true", help="don't update BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="write the result as JSON to this file")
    parser.add_argument("--from-json", type=Path, help="re-render a saved result instead of measuring")
    args = parser.parse_args()
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        models = [name.strip() for name in args.models.split(",") if name.strip()]
        unknown = [name for name in models if name not in CASES]
        if unknown or not models:
            parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
        result = run(models, args.rounds or (1 if args.quick else 3), args.quick)
        print_summary(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
    if not args.no_write:
        write_section(REPO / "BENCHMARKS.md", SECTION, render(result))


if __name__ == "__main__":
    main()
