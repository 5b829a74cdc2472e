"""Serving throughput and p99 through a real Triton server, next to the same variant in-process.

Builds two models (a small MLP whose cost is all overhead, and a wide MLP whose cost is
compute), builds their ONNX Runtime fp32 variant with Slipway's engine backend, deploys it to
a real tritonserver (tests/triton_server.py: the nvidia-pytriton build, python backend,
Slipway's `triton_python_model.py` running the engine backend) twice, without and with the
dynamic batcher, through `TritonTarget.deploy` (candidate, smoke test, switch), and sends
batch-1 requests with `tritonclient.http` at concurrency 1, 4 and 16 (one client per thread).
The reference is the same variant file run in this process with the engine backend
(`get_backend(...).load(path).run`), the same number of threads sharing one session.

Repetitions are interleaved (every mode and concurrency once, then again, in a rotated
order) so that drift in machine load hits every column alike; the tables show the median
over repetitions and the ratios Triton / in-process. Client, server and the in-process run
share the machine's cores; the load average before and after is written with the numbers.
Writes the section "Serving" of BENCHMARKS.md unless --no-write; --json prints the numbers.

    python bench/serving.py                       # 3 repetitions x 2 s per point
    python bench/serving.py --seconds 1 --repetitions 2 --no-write --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONCURRENCY = (1, 4, 16)
MODES = ("in-process", "triton", "triton+batching")


def build_mlp(path: Path, widths: tuple[int, ...], seed: int = 0) -> Path:
    """An MLP input [batch, widths[0]] -> Gemm/Relu ... -> output [batch, widths[-1]]."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, previous = [], [], "input"
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = rng.standard_normal(fan_out).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{index}"), numpy_helper.from_array(b, f"b{index}")]
        last = index == len(widths) - 2
        out = "output" if last else f"h{index}"
        nodes.append(helper.make_node("Gemm", [previous, f"w{index}", f"b{index}"], [out if last else f"g{index}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"g{index}"], [out]))
        previous = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", widths[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", widths[-1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_variant(model: Path, out_dir: Path) -> Any:
    """The ONNX Runtime fp32 graph-optimized variant, as the optimize step builds it."""
    from workers.engine.backends.base import HardwareProfile
    from workers.engine.backends.registry import get_backend

    profile = HardwareProfile("x86-cpu", "cpu", ("onnxruntime",), ("fp32",))
    variants = get_backend("onnxruntime").build_variants(model, profile, None, out_dir)
    fp32 = [v for v in variants if v.precision == "fp32"]
    return next((v for v in fp32 if v.name == "ort-opt-all"), fp32[0])


def deploy(server: Any, name: str, variant: Any, widths: tuple[int, ...], batching: bool) -> None:
    """Push the variant as model `name` through the driver's switch-over (candidate, smoke test, live)."""
    import numpy as np

    from workers.engine.backends.registry import get_backend
    from workers.engine.targets.base import DeploymentSpec, DynamicBatching, TargetSettings, TensorSignature
    from workers.engine.targets.triton import TritonTarget

    width = widths[0]
    feeds = [{"input": np.random.default_rng(i).standard_normal((1, width)).astype(np.float32)} for i in range(2)]
    session = get_backend(variant.backend).load(variant.path)
    reference = [session.run(feed) for feed in feeds]
    session.close()
    spec = DeploymentSpec(
        model_name=name,
        version=1,
        model_file=variant.path,
        engine_backend=variant.backend,
        model_format=variant.format,
        inputs=(TensorSignature("input", "float32", (-1, width)),),
        outputs=(TensorSignature("output", "float32", (-1, widths[-1])),),
        max_batch_size=16,
        dynamic_batching=DynamicBatching((), 200) if batching else None,
        extra_files=tuple(p for p in variant.files if p != variant.path),
        reference_inputs=tuple(feeds),
        reference_outputs=tuple(reference),
    )
    settings = TargetSettings(
        name="bench", url=server.url, repository=str(server.repository), backend_mode="python", load_timeout_seconds=120
    )
    TritonTarget(settings).deploy(spec)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(send_factory: Any, concurrency: int, seconds: float) -> dict[str, float]:
    """Run `concurrency` threads, each sending requests back to back for `seconds` after a warmup."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker(index: int) -> None:
        send, close = send_factory()
        try:
            warm_until = time.perf_counter() + 0.3
            while time.perf_counter() < warm_until:
                send()
            start.wait()
            mine = latencies[index]
            while True:
                began = time.perf_counter()
                if began >= stop_at[0]:
                    break
                send()
                mine.append(time.perf_counter() - began)
        finally:
            close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + 3600
    start.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    pooled = [value * 1000 for mine in latencies for value in mine]
    return {
        "requests": len(pooled),
        "throughput": len(pooled) / elapsed,
        "p50_ms": _percentile(pooled, 0.5),
        "p99_ms": _percentile(pooled, 0.99),
    }


def in_process_sender(variant: Any, width: int) -> Any:
    import numpy as np

    from workers.engine.backends.registry import get_backend

    session = get_backend(variant.backend).load(variant.path)  # shared: ORT sessions are thread-safe
    feed = {"input": np.random.default_rng(0).standard_normal((1, width)).astype(np.float32)}

    def factory() -> Any:
        return (lambda: session.run(feed)), (lambda: None)

    return factory, session


def triton_sender(url: str, name: str, width: int) -> Any:
    import numpy as np
    import tritonclient.http as httpclient

    x = np.random.default_rng(0).standard_normal((1, width)).astype(np.float32)

    def factory() -> Any:
        client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
        tensor = httpclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        outputs = [httpclient.InferRequestedOutput("output", binary_data=True)]

        def send() -> None:
            client.infer(name, [tensor], outputs=outputs).as_numpy("output")

        return send, client.close

    return factory


def run(seconds: float, repetitions: int) -> dict[str, Any]:
    from tests.triton_server import start_triton_server, triton_skip_reason

    reason = triton_skip_reason()
    if reason:
        raise SystemExit(f"can't run: {reason}")
    load_before = os.getloadavg()
    models = {"mlp-small": (16, 32, 4), "mlp-wide": (512, 2048, 2048, 10)}
    results: dict[str, Any] = {"models": {}}
    with tempfile.TemporaryDirectory(prefix="slipway-bench-serving-") as scratch:
        root = Path(scratch)
        (root / "repository").mkdir()
        server = start_triton_server(root / "repository", root / "server")
        try:
            for label, widths in models.items():
                model = build_mlp(root / f"{label}.onnx", widths)
                variant = build_variant(model, root / f"{label}-variants")
                deploy(server, label, variant, widths, batching=False)
                deploy(server, f"{label}-batching", variant, widths, batching=True)
                factory, session = in_process_sender(variant, widths[0])
                senders = {
                    "in-process": factory,
                    "triton": triton_sender(server.url, label, widths[0]),
                    "triton+batching": triton_sender(server.url, f"{label}-batching", widths[0]),
                }
                samples: dict[str, dict[int, list[dict[str, float]]]] = {m: {c: [] for c in CONCURRENCY} for m in MODES}
                points = [(m, c) for m in MODES for c in CONCURRENCY]
                for rep in range(repetitions):
                    shift = rep % len(points)
                    for mode, concurrency in points[shift:] + points[:shift]:
                        samples[mode][concurrency].append(measure(senders[mode], concurrency, seconds))
                session.close()
                table = {}
                for mode in MODES:
                    for concurrency in CONCURRENCY:
                        runs = samples[mode][concurrency]
                        table[f"{mode}@{concurrency}"] = {
                            "throughput": round(statistics.median(r["throughput"] for r in runs), 1),
                            "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 3),
                            "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 3),
                            "throughput_spread": round(
                                (max(r["throughput"] for r in runs) - min(r["throughput"] for r in runs))
                                / statistics.median(r["throughput"] for r in runs),
                                3,
                            ),
                        }
                results["models"][label] = {"widths": list(widths), "variant": variant.name, "table": table}
            results["server_version"] = _server_version(server.url)
        finally:
            server.stop()
    results.update(
        {
            "seconds_per_point": seconds,
            "repetitions": repetitions,
            "cores": os.cpu_count(),
            "load_before": [round(v, 2) for v in load_before],
            "load_after": [round(v, 2) for v in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d"),
        }
    )
    return results


def _server_version(url: str) -> str:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    try:
        return str(client.get_server_metadata().get("version", ""))
    finally:
        client.close()


def write_benchmarks(result: dict[str, Any]) -> None:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = [
        "## Serving",
        "",
        f"`bench/serving.py`, {result['date']}, {result['cores']} cores, tritonserver {result['server_version']} "
        "(the nvidia-pytriton build, CPU, python backend running Slipway's ONNX Runtime backend). Batch-1 requests "
        "from `tritonclient.http` (one client per thread) against the same fp32 variant run in this process with "
        "the engine backend (threads sharing one session). Median of "
        f"{result['repetitions']} interleaved repetitions of {result['seconds_per_point']:g} s per point; "
        "`triton+batching` adds the dynamic batcher (no preferred size, 200 us queue delay, max batch 16). "
        f"Load average (1/5/15 min) {'/'.join(map(str, result['load_before']))} before, "
        f"{'/'.join(map(str, result['load_after']))} after: client, server and the in-process run share the cores, "
        "and other work was running on this machine.",
        "",
    ]
    for label, model in result["models"].items():
        widths = " -> ".join(map(str, model["widths"]))
        lines += [
            f"### `{label}`: MLP {widths}, variant `{model['variant']}`",
            "",
            "| concurrency | in-process req/s | p99 ms | Triton req/s | p99 ms | Triton+batching req/s | p99 ms "
            "| throughput Triton / in-process | p99 Triton / in-process | throughput batching / in-process |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        table = model["table"]
        for concurrency in CONCURRENCY:
            local, triton, batched = (table[f"{m}@{concurrency}"] for m in MODES)
            lines.append(
                f"| {concurrency} | {local['throughput']:.0f} | {local['p99_ms']:.2f} | {triton['throughput']:.0f} "
                f"| {triton['p99_ms']:.2f} | {batched['throughput']:.0f} | {batched['p99_ms']:.2f} "
                f"| {triton['throughput'] / local['throughput']:.3f} | {triton['p99_ms'] / local['p99_ms']:.2f} "
                f"| {batched['throughput'] / local['throughput']:.3f} |"
            )
        spread = max(row["throughput_spread"] for row in table.values())
        caveat = (
            " That is more than half the median: these numbers are dominated by the machine's load, so take only "
            "their order of magnitude, and rerun on an idle machine before comparing columns closely."
            if spread > 0.5
            else ""
        )
        lines += [
            "",
            f"Largest spread of throughput between repetitions (max - min) / median: {spread:.2f}.{caveat}",
            "",
        ]
    lines.append(
        "What the ratios say: every Triton request pays HTTP, (de)serialization and the python backend's "
        "shared-memory hop to its stub on top of the same `session.run`, so for the small MLP the server's "
        "overhead is the whole cost, while for the wide MLP compute dominates. The dynamic batcher turns "
        "concurrent batch-1 requests into batches, which is where a server can beat threads calling one session."
    )
    section = "\n".join(lines) + "\n"
    pattern = re.compile(r"## Serving\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(text):  # a blank line before the next section; a function, so "\" stays literal
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per point (default 2)")
    parser.add_argument("--repetitions", type=int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--no-write", action="store_true", help="don't update BENCHMARKS.md")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    result = run(args.seconds, args.repetitions)
    if args.json:
        print(json.dumps(result, indent=2))
    if not args.no_write:
        write_benchmarks(result)
        print("BENCHMARKS.md updated (section Serving)")


if __name__ == "__main__":
    main()
