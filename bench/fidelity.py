"""Benchmark fidelity: Slipway's harness against bare loops and OpenVINO's own benchmark_app.

On one model of a few milliseconds (a ResNet-18 layout at 3/8 width on 1x3x64x64 images, seeded
weights, built with onnx helpers), at batch 1, with the same intra-op threads and the same pinned
cores, five measurements are taken back to back in one run, each in a fresh process:

  slipway-ort     `benchmark_variant` with the onnxruntime backend (its default windows and stop rule)
  bare-ort        a tight `sess.run` loop over a plain onnxruntime session, perf_counter around each
                  run, median; no Slipway code in the timed path
  benchmark_app   OpenVINO's `benchmark_app` (-hint latency -api sync, the threads and f32 precision
                  through -load_config, as Slipway's OpenVINO backend compiles), its printed median
  slipway-ov      `benchmark_variant` with the openvino backend
  bare-ov         a tight `request.infer({0: x})` loop over an OpenVINO infer request compiled with
                  the same properties: it splits slipway-ov / benchmark_app into what Slipway adds
                  (slipway-ov / bare-ov) and what benchmark_app's own loop saves (bare-ov / benchmark_app)

They are repeated in rotating order (a b c d e, b c d e a, ...) so that drift of the machine hits
all alike. The ratios slipway-ort / bare-ort and slipway-ov / benchmark_app are taken within each
repetition and reported as median and range; each method's spread over its repetitions shows the
noise. The harness's own cost per inference is measured inside each harness child (a no-op timed
with the same loop) and reported in µs and as a share of a 1 ms model. Writes the BENCHMARKS.md
section "Benchmark fidelity" unless --no-write; --json prints the result on stdout.

    python bench/fidelity.py                     # 5 repetitions, 1 thread: about 1 min on 2 cores
    python bench/fidelity.py --reps 2 --no-write --json
    python bench/fidelity.py --threads 2
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SECTION = "Benchmark fidelity"
OPSET = 17
IMAGE_SIZE = 64
WIDTHS = (24, 48, 96, 192)
METHODS = ("slipway-ort", "bare-ort", "benchmark_app", "slipway-ov", "bare-ov")
BARE_WARMUP_RUNS, BARE_WARMUP_S = 10, 0.5  # as the harness's defaults
MEASURE_S = 2  # bare loop and benchmark_app; the harness stops by its own rule
CHILD_TIMEOUT_S = 180
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"{time.perf_counter() - _STARTED:6.1f}s {message}", file=sys.stderr, flush=True)


def make_model(path: Path) -> str:
    """ResNet-18's layout (a stride-2 3x3 stem, 4 stages of 2 basic blocks with residual adds) at
    3/8 width, seeded He-initialized weights, global average pool and a 1000-way classifier: about
    0.17 GFLOPs, a few milliseconds on one core."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes: list[Any] = []
    weights: list[Any] = []

    def conv(x: str, cin: int, cout: int, kernel: int, stride: int, relu: bool) -> str:
        index = len(weights) // 2
        w = rng.standard_normal((cout, cin, kernel, kernel)) * np.sqrt(2.0 / (cin * kernel * kernel))
        weights.append(numpy_helper.from_array(w.astype(np.float32), f"conv{index}.w"))
        weights.append(numpy_helper.from_array((rng.standard_normal(cout) * 0.01).astype(np.float32), f"conv{index}.b"))
        out = f"conv{index}"
        pad = kernel // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"conv{index}.w", f"conv{index}.b"],
                [out],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad] * 4,
            )
        )
        if not relu:
            return out
        nodes.append(helper.make_node("Relu", [out], [f"{out}.relu"]))
        return f"{out}.relu"

    x, cin = conv("image", 3, WIDTHS[0], 3, 2, relu=True), WIDTHS[0]
    for stage, cout in enumerate(WIDTHS):
        for block in range(2):
            stride = 2 if block == 0 and stage > 0 else 1
            y = conv(conv(x, cin, cout, 3, stride, relu=True), cout, cout, 3, 1, relu=False)
            shortcut = x if stride == 1 and cin == cout else conv(x, cin, cout, 1, stride, relu=False)
            name = f"stage{stage}.block{block}"
            nodes += [
                helper.make_node("Add", [y, shortcut], [f"{name}.add"]),
                helper.make_node("Relu", [f"{name}.add"], [name]),
            ]
            x, cin = name, cout
    fc = rng.standard_normal((1000, cin)) * np.sqrt(1.0 / cin)
    weights += [
        numpy_helper.from_array(fc.astype(np.float32), "fc.w"),
        numpy_helper.from_array(np.zeros(1000, np.float32), "fc.b"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "resnet18_half",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="slipway-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    params = sum(int(np.prod(t.dims)) for t in weights)
    return (
        f"ResNet-18 layout at 3/8 width (stride-2 3x3 stem, stages of {', '.join(map(str, WIDTHS))} channels), "
        f"{params / 1e6:.1f} M parameters, seeded He-initialized weights, built with onnx helpers, opset {OPSET}"
    )


# --- the measurements, each in a process of its own --------------------------------------


def harness(backend: str, model: Path, threads: int, cores: list[int]) -> dict[str, Any]:
    """Slipway's harness with its default windows and stop rule; it spawns its own pinned child."""
    from workers.engine.benchmark import BenchmarkConfig, BenchmarkFailed, benchmark_variant

    config = BenchmarkConfig(intra_op_threads=threads, pin_cores=tuple(cores), timeout_seconds=CHILD_TIMEOUT_S)
    try:
        result = benchmark_variant(backend, model, None, config)
    except BenchmarkFailed as exc:
        return {"error": f"{exc.code}: {exc.message}"}
    point = result.points[0]
    overhead = result.harness_overhead
    return {
        "p50_ms": point.p50_ms,
        "p99_ms": point.p99_ms,
        "requests": point.requests,
        "windows": point.windows,
        "stable": point.stable,
        "cpu_ms_per_request": point.cpu_ms_per_request,
        "overhead_us": overhead.per_inference_us if overhead else None,
        "reported_latency_us": overhead.reported_latency_us if overhead else None,
        "runtime_version": result.runtime_version,
        "pinned_cores": list(result.threads.pinned_cores),
    }


def bare_worker(spec_path: Path) -> None:
    """A reference loop with no Slipway code in the timed path: a plain onnxruntime session
    (`sess.run(None, feed)`) or a plain OpenVINO infer request (`request.infer({0: x})`, compiled
    with the same properties as Slipway's backend), the same input, perf_counter around each run."""
    import numpy as np

    from workers.engine.benchmark import make_inputs

    spec = json.loads(spec_path.read_text())
    specs = [{"name": "image", "shape": [1, 3, IMAGE_SIZE, IMAGE_SIZE], "dtype": "float32"}]
    feed = make_inputs(specs, 1, seed=1)  # the harness's seed for batch 1: the same numbers
    if spec["runtime"] == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = spec["threads"]
        session = onnxruntime.InferenceSession(spec["model"], options, providers=["CPUExecutionProvider"])

        def run() -> Any:
            return session.run(None, feed)

    else:
        import openvino

        core = openvino.Core()
        properties = {"INFERENCE_NUM_THREADS": spec["threads"], "INFERENCE_PRECISION_HINT": "f32"}
        request = core.compile_model(core.read_model(spec["model"]), "CPU", properties).create_infer_request()
        image = feed["image"]

        def run() -> Any:
            return request.infer({0: image})

    started, runs = time.perf_counter(), 0
    while runs < BARE_WARMUP_RUNS or time.perf_counter() - started < BARE_WARMUP_S:
        run()
        runs += 1
    times = []
    cpu_start = time.process_time()
    end = time.perf_counter() + spec["seconds"]
    while True:
        t0 = time.perf_counter()
        run()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if t1 >= end:
            break
    cpu = time.process_time() - cpu_start
    print(
        json.dumps(
            {
                "p50_ms": round(statistics.median(times) * 1000, 3),
                "p99_ms": round(float(np.percentile(times, 99)) * 1000, 3),
                "requests": len(times),
                "cpu_ms_per_request": round(cpu * 1000 / len(times), 3),
                "pinned_cores": sorted(os.sched_getaffinity(0)),
            }
        )
    )


def _pinned(cores: list[int]) -> Any:
    def apply() -> None:
        os.sched_setaffinity(0, cores)

    return apply


def _env(threads: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env.update({var: str(threads) for var in THREAD_ENV_VARS})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def bare(runtime: str, model: Path, threads: int, cores: list[int], scratch: Path) -> dict[str, Any]:
    spec = scratch / f"bare-{runtime}.json"
    spec.write_text(json.dumps({"runtime": runtime, "model": str(model), "threads": threads, "seconds": MEASURE_S}))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--bare", str(spec)],
        capture_output=True,
        text=True,
        env=_env(threads),
        preexec_fn=_pinned(cores),
        timeout=CHILD_TIMEOUT_S,
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def benchmark_app_path() -> str | None:
    beside = Path(sys.executable).parent / "benchmark_app"
    return str(beside) if beside.is_file() else shutil.which("benchmark_app")


def benchmark_app(model: Path, threads: int, cores: list[int], scratch: Path) -> dict[str, Any]:
    """OpenVINO's benchmark_app, compiled as Slipway's backend compiles: latency hint, the thread
    count and f32 inference precision (through -load_config, since -nthreads needs -hint none)."""
    program = benchmark_app_path()
    if program is None:
        return {"error": "benchmark_app is not installed (it comes with the openvino package)"}
    config = scratch / "ov_config.json"
    config.write_text(json.dumps({"CPU": {"INFERENCE_NUM_THREADS": str(threads), "INFERENCE_PRECISION_HINT": "f32"}}))
    command = [program, "-m", str(model), "-d", "CPU", "-hint", "latency", "-api", "sync"]
    command += ["-load_config", str(config), "-t", str(MEASURE_S)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=_env(threads),
        preexec_fn=_pinned(cores),
        cwd=scratch,
        timeout=CHILD_TIMEOUT_S,
    )
    out = done.stdout + done.stderr

    def number(label: str) -> float | None:
        found = re.search(rf"{label}:\s+([\d.]+)", out)
        return float(found.group(1)) if found else None

    median, count = number("Median"), number("Count")
    if done.returncode != 0 or median is None:
        return {"error": (out.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:300]}
    threads_used = re.search(r"INFERENCE_NUM_THREADS:\s+(\d+)", out)
    return {
        "p50_ms": median,
        "p99_ms": None,
        "requests": int(count or 0),
        "inference_num_threads": int(threads_used.group(1)) if threads_used else None,
        "command": " ".join(["benchmark_app", *command[1:]]),
    }


# --- the run ----------------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _spread(values: list[float]) -> float:
    return round(100 * (max(values) - min(values)) / statistics.median(values), 1) if values else 0.0


def run(reps: int, threads: int) -> dict[str, Any]:
    from workers.engine.benchmark import cpu_model

    available = sorted(os.sched_getaffinity(0))
    if threads > len(available):
        raise SystemExit(f"--threads {threads} is more than the {len(available)} core(s) this process may use")
    cores = available[:threads]
    load_before = [round(v, 2) for v in os.getloadavg()]
    scratch = Path(tempfile.mkdtemp(prefix="slipway-bench-fidelity-"))
    try:
        model = scratch / "model.onnx"
        made_with = make_model(model)
        measure = {
            "slipway-ort": lambda: harness("onnxruntime", model, threads, cores),
            "bare-ort": lambda: bare("onnxruntime", model, threads, cores, scratch),
            "bare-ov": lambda: bare("openvino", model, threads, cores, scratch),
            "benchmark_app": lambda: benchmark_app(model, threads, cores, scratch),
            "slipway-ov": lambda: harness("openvino", model, threads, cores),
        }
        repetitions = []
        for rep in range(reps):
            order = METHODS[rep % len(METHODS) :] + METHODS[: rep % len(METHODS)]
            results = {}
            for method in order:
                log(f"repetition {rep + 1}/{reps}: {method}")
                results[method] = measure[method]()
                if "error" in results[method]:
                    log(f"  failed: {results[method]['error']}")
                else:
                    log(f"  p50 {results[method]['p50_ms']} ms")
            repetitions.append({"order": list(order), "results": results})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def p50s(method: str) -> list[float]:
        return [r["results"][method]["p50_ms"] for r in repetitions if "p50_ms" in r["results"][method]]

    def ratios(numerator: str, denominator: str, key: str = "p50_ms") -> list[float]:
        found = []
        for r in repetitions:
            a, b = r["results"][numerator], r["results"][denominator]
            if a.get(key) and b.get(key):
                found.append(round(a[key] / b[key], 4))
        return found

    methods = {
        method: {
            "p50_ms_each": p50s(method),
            "p50_ms": round(statistics.median(p50s(method)), 3) if p50s(method) else None,
            "spread_percent": _spread(p50s(method)),
            "errors": [r["results"][method]["error"] for r in repetitions if "error" in r["results"][method]],
        }
        for method in METHODS
    }
    overheads = [
        r["results"][m]["overhead_us"]
        for r in repetitions
        for m in ("slipway-ort", "slipway-ov")
        if r["results"][m].get("overhead_us")
    ]
    summary = {}
    for name, (numerator, denominator, key) in {
        "slipway_ort_vs_bare_ort": ("slipway-ort", "bare-ort", "p50_ms"),
        "slipway_ov_vs_benchmark_app": ("slipway-ov", "benchmark_app", "p50_ms"),
        "slipway_ort_vs_bare_ort_cpu_time": ("slipway-ort", "bare-ort", "cpu_ms_per_request"),
        "slipway_ov_vs_bare_ov": ("slipway-ov", "bare-ov", "p50_ms"),
        "bare_ov_vs_benchmark_app": ("bare-ov", "benchmark_app", "p50_ms"),
    }.items():
        each = ratios(numerator, denominator, key)
        summary[name] = {
            "each": each,
            "median": round(statistics.median(each), 4) if each else None,
            "min": min(each, default=None),
            "max": max(each, default=None),
        }
    overhead_us = round(statistics.median(overheads), 3) if overheads else None
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "threads": threads,
        "pinned_cores": cores,
        "reps": reps,
        "load_average_before": load_before,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "model": made_with,
        "input": f"image float32 1x3x{IMAGE_SIZE}x{IMAGE_SIZE}",
        "versions": {p: v for p in ("onnxruntime", "openvino", "numpy", "onnx") if (v := _version(p))},
        "methods": methods,
        "ratios": summary,
        "harness_overhead_us": overhead_us,
        "harness_overhead_us_each": overheads,
        "harness_overhead_percent_of_1ms": round(overhead_us / 10, 4) if overhead_us is not None else None,
        "repetitions": repetitions,
        "seconds": round(time.perf_counter() - _STARTED, 1),
    }


# --- BENCHMARKS.md ----------------------------------------------------------------------------


def _fmt(values: list[float], spec: str = ".3f") -> str:
    return ", ".join(format(v, spec) for v in values) or "—"


def section(result: dict[str, Any]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in result["versions"].items())
    load = f"{result['load_average_before'][0]:.1f} -> {result['load_average_after'][0]:.1f}"
    labels = {
        "slipway-ort": "Slipway harness, onnxruntime backend",
        "bare-ort": "bare onnxruntime loop (`sess.run`, perf_counter, median)",
        "benchmark_app": "OpenVINO `benchmark_app` (median it prints)",
        "slipway-ov": "Slipway harness, openvino backend",
        "bare-ov": "bare OpenVINO loop (`request.infer({0: x})`, perf_counter, median)",
    }
    rows = [
        f"| {labels[m]} | {_fmt(info['p50_ms_each'])} | {info['p50_ms']:.3f} | {info['spread_percent']:.1f} % |"
        if info["p50_ms"] is not None
        else f"| {labels[m]} | failed: {'; '.join(info['errors'])[:200]} | | |"
        for m, info in result["methods"].items()
    ]
    ratio_rows = []
    for key, label in (
        ("slipway_ort_vs_bare_ort", "Slipway (onnxruntime) / bare onnxruntime loop, p50"),
        ("slipway_ort_vs_bare_ort_cpu_time", "Slipway (onnxruntime) / bare onnxruntime loop, CPU time per request"),
        ("slipway_ov_vs_benchmark_app", "Slipway (openvino) / `benchmark_app`, p50"),
        ("slipway_ov_vs_bare_ov", "of which: Slipway (openvino) / bare OpenVINO loop, p50"),
        ("bare_ov_vs_benchmark_app", "of which: bare OpenVINO loop / `benchmark_app`, p50"),
    ):
        r = result["ratios"][key]
        if r["median"] is None:
            ratio_rows.append(f"| {label} | — | — |")
        else:
            spread = f"**{r['median']:.3f}** ({r['min']:.3f} to {r['max']:.3f})"
            ratio_rows.append(f"| {label} | {spread} | {_fmt(r['each'])} |")
    overhead = result["harness_overhead_us"]
    overhead_text = (
        f"**{overhead:.2f} µs per inference = {result['harness_overhead_percent_of_1ms']:.3f} % of a 1 ms model** "
        f"(median of {len(result['harness_overhead_us_each'])} measurements, one in each harness child: "
        f"{_fmt(result['harness_overhead_us_each'], '.2f')} µs)"
        if overhead is not None
        else "not measured (every harness run failed)"
    )
    return (
        f"## {SECTION}\n\n"
        f"`bench/fidelity.py`, {result['date']}, {result['cores']} cores ({result['cpu_model']}; 1-minute load "
        f"average {load} over the run), {result['threads']} intra-op thread(s) pinned to core(s) "
        f"{', '.join(map(str, result['pinned_cores']))}, batch 1, {result['reps']} repetitions in "
        f"{result['seconds']:.0f} s; {versions}.\n\n"
        f"Model: {result['model']}; input {result['input']}. Each measurement runs in a fresh process pinned to "
        "the same core(s) with the same thread settings, in rotating order (a b c d e, b c d e a, ...) within one "
        "run, so machine drift hits all alike. The Slipway harness runs with its default windows and stop "
        f"rule (10 warm-up runs and 0.5 s, windows of 50 requests until 3 window p50s agree within 10 %); the bare "
        f"loops and `benchmark_app` warm up and then time {MEASURE_S} s. The bare loops have no Slipway code in "
        "the timed path and take the same input array. `benchmark_app` runs `-hint latency -api "
        "sync` with the thread count and f32 precision given through `-load_config`, i.e. the configuration "
        "Slipway's OpenVINO backend compiles with. A ratio is taken within each repetition; the table gives the "
        "median and the range. The spread of a method is (max - min) / median of its p50s.\n\n"
        "| method | p50 ms per repetition | median p50 ms | spread |\n|---|---|---:|---:|\n"
        + "\n".join(rows)
        + "\n\n| ratio | median (range) | per repetition |\n|---|---:|---|\n"
        + "\n".join(ratio_rows)
        + f"\n\nHarness overhead (a no-op timed with the harness's own loop and window bookkeeping): {overhead_text}. "
        "It is what the harness adds per request around the runtime call; the ratios above also include what "
        "Slipway's session adapters add (output lists and dicts for onnxruntime; input and output copies, "
        "`share_inputs=False`, for OpenVINO), which is real serving cost.\n"
    )


def write_benchmarks(result: dict[str, Any]) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md, leaving the others alone."""
    path = REPO / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"## {re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.S)
    new = section(result).rstrip("\n")
    text = pattern.sub(lambda _: new, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + new
    path.write_text(text + ("" if text.endswith("\n") else "\n"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions of the five measurements")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (and pinned cores)")
    parser.add_argument("--no-write", action="store_true", help="don't update BENCHMARKS.md")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_worker(args.bare)
        return
    result = run(args.reps, args.threads)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for method, info in result["methods"].items():
            print(f"{method:<14} p50 {info['p50_ms']} ms (spread {info['spread_percent']} %)")
        for name, ratio in result["ratios"].items():
            print(f"{name:<34} {ratio['median']} ({ratio['min']} - {ratio['max']})")
        share = result["harness_overhead_percent_of_1ms"]
        print(f"harness overhead {result['harness_overhead_us']} µs per inference ({share} % of a 1 ms model)")
    if not args.no_write:
        write_benchmarks(result)


if __name__ == "__main__":
    main()
