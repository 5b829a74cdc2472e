"""The child process of a benchmark (`python -m workers.engine.benchmark_child`): load the variant,
build inputs, measure every point, report back over the channel.

It runs pinned, with its thread variables set before any runtime is imported, its network
forbidden (the variant is an untrusted model's build), and talks to the parent
(`workers.engine.benchmark`) only between measurements; every failure is a message, never a
hang or a crash of the caller.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.child import forbid_network, open_channel

if TYPE_CHECKING:
    pass

from workers.engine.benchmark import THREAD_ENV_VARS, BenchmarkConfig, BenchmarkFailed, make_inputs
from workers.engine.hardware import cpu_model
from workers.engine.measure import measure_concurrent, measure_harness_overhead, measure_serial, trial_summary


class _ChildFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _os_threads() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def _peak_rss_kernel() -> int | None:
    """VmHWM: the kernel's exact high-water mark of this process's resident set."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _torch_cuda() -> Any:
    """torch, when the backend already imported it and a GPU is in use; the benchmark never imports it."""
    torch = sys.modules.get("torch")
    try:
        return torch if torch is not None and torch.cuda.is_available() else None
    except Exception:  # a broken CUDA setup must not fail the benchmark
        return None


def _specs_from_onnx(path: Path) -> list[dict[str, Any]]:
    import onnx

    from workers.engine.inspection import graph_input_specs

    model = onnx.load(str(path), load_external_data=False)
    return [{"name": s.name, "shape": s.shape, "dtype": s.dtype} for s in graph_input_specs(model.graph)]


def _run_child(payload: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Load, then measure every point; returns the result as JSON-able data."""
    from workers.engine.backends.registry import BACKENDS

    started = time.perf_counter()
    config = BenchmarkConfig(
        **{
            **payload["config"],
            **{key: tuple(payload["config"][key]) for key in ("batch_sizes", "concurrency")},
            "pin_cores": tuple(payload["config"]["pin_cores"]) if payload["config"]["pin_cores"] else None,
        }
    )
    name, path, threads = payload["backend"], Path(payload["variant_path"]), int(payload["threads"])
    backend_class = BACKENDS.get(name)
    if backend_class is None:
        known = ", ".join(sorted(BACKENDS))
        raise _ChildFailure("invalid_input", f"There is no backend named '{name}'; known backends: {known}.")
    # The plug-in says how it takes a thread count and whether a session can be shared.
    parameter = backend_class.thread_argument
    backend = backend_class(**({parameter: threads} if parameter else {}))
    version = backend.runtime_version()
    if version is None:
        raise _ChildFailure("not_installed", f"{name} is not installed on this worker, so it can't benchmark.")

    send({"type": "progress", "progress": 0.02, "message": f"loading {path.name} with {name}"})
    t0 = time.perf_counter_ns()
    try:
        session = backend.load(path)
    except Exception as exc:
        raise _ChildFailure("load_failed", f"The {name} runtime could not load {path.name}: {_reason(exc)}.") from exc
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    if getattr(session, "simulated", False):
        session.close()
        raise _ChildFailure(
            "simulator_only",
            f"{name} runs {path.name} here on its simulator, which computes the accelerator's arithmetic on this "
            "machine's CPU: its timings are not the accelerator's. Benchmark it on the device itself (a device agent "
            "with the runtime installed).",
        )
    os_threads = _os_threads()

    specs = payload["inputs"]
    if not specs:
        if path.suffix.lower() != ".onnx":
            raise _ChildFailure(
                "invalid_input", f"{path.name} is not an ONNX file, so its inputs must be given to benchmark it."
            )
        specs = _specs_from_onnx(path)
    shared = backend_class.thread_safe_sessions
    notes: list[str] = []
    if max(config.concurrency) > 1 and not shared:
        notes.append(
            f"{name} sessions are not safe to call from several threads at once, so at concurrency N each "
            "of the N threads ran its own session (the variant loaded N times)."
        )
    sessions = [session]
    if not parameter:
        notes.append(f"{name} takes no thread-count argument; only the environment and the pinning apply.")
    torch = _torch_cuda()
    if torch is None:
        notes.append("No GPU memory figures: torch.cuda is not in use in this runtime.")
    else:
        notes.append("GPU memory is the peak held by torch's CUDA allocator.")

    points: list[dict[str, Any]] = []
    inputs: dict[str, dict[str, dict[str, Any]]] = {}
    total = config.point_count
    for batch_size in config.batch_sizes:
        try:
            feed = make_inputs(specs, batch_size, config.input_overrides, seed=config.seed + batch_size)
        except BenchmarkFailed as exc:
            raise _ChildFailure(exc.code, exc.message) from exc
        inputs[str(batch_size)] = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in feed.items()}
        for concurrency in config.concurrency:
            index = len(points)
            while not shared and len(sessions) < concurrency:
                try:
                    sessions.append(backend.load(path))
                except Exception as exc:
                    raise _ChildFailure(
                        "load_failed",
                        f"The {name} runtime loaded {path.name} once but not {len(sessions) + 1} times (one "
                        f"session per thread at concurrency {concurrency}): {_reason(exc)}.",
                    ) from exc
            send({"type": "point_start", "index": index})
            if torch is not None:
                torch.cuda.reset_peak_memory_stats()
            point_started = time.perf_counter()
            try:
                if concurrency == 1:
                    measured = measure_serial(session.run, feed, config)
                else:
                    runs = [session.run] * concurrency if shared else [s.run for s in sessions[:concurrency]]
                    measured = measure_concurrent(runs, feed, config)
            except Exception as exc:
                raise _ChildFailure(
                    "run_failed",
                    f"The {name} runtime failed running {path.name} at batch size {batch_size}, concurrency "
                    f"{concurrency}: {_reason(exc)}.",
                ) from exc
            point = trial_summary(
                measured,
                batch_size,
                concurrency,
                1 if shared or concurrency == 1 else concurrency,
                config.keep_samples,
                time.perf_counter() - point_started,
            )
            point["peak_gpu_memory_bytes"] = int(torch.cuda.max_memory_allocated()) if torch is not None else None
            points.append(point)
            send({"type": "point_end", "index": index})
            send(
                {
                    "type": "progress",
                    "progress": 0.05 + 0.9 * len(points) / total,
                    "message": f"batch {batch_size}, concurrency {concurrency}: p50 {point['p50_ms']} ms",
                }
            )
    for each in sessions:
        each.close()
    # Once per variant is enough: the harness's cost doesn't change between trials.
    overhead = measure_harness_overhead(config, min_seconds=0.2) if payload.get("measure_overhead", True) else None
    return {
        "backend": name,
        "variant_path": str(path),
        "runtime_version": version,
        "load_ms": round(load_ms, 3),
        "points": points,
        "threads": {
            "intra_op_threads": threads,
            "threads_argument": parameter,
            "pinned_cores": sorted(os.sched_getaffinity(0)),
            "env": {var: os.environ[var] for var in THREAD_ENV_VARS if var in os.environ},
            "os_threads_after_load": os_threads,
        },
        "sessions_shared_between_threads": shared,
        "inputs": inputs,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "peak_rss_bytes": _peak_rss_kernel(),
        "harness_overhead": overhead.to_dict() if overhead is not None else None,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "seconds": round(time.perf_counter() - started, 3),
        "python": platform.python_version(),
        "notes": notes,
    }


def _reason(exc: BaseException) -> str:
    """A runtime's error as the end of a sentence a user reads: the whole message, without
    status prefixes and C++ source locations. Not its first line only: OpenVINO's first line
    is where it failed ("Exception from src/inference/src/cpp/infer_request.cpp:224:") and the
    cause follows on the next lines."""
    from workers.engine.errors import runtime_cause

    return runtime_cause(exc).rstrip(". ") or type(exc).__name__


def _child_main() -> int:
    send = open_channel()
    forbid_network()  # a variant is built from an untrusted model: it runs as in the sandbox
    try:
        payload = json.loads(sys.stdin.read())
        send({"type": "result", "data": _run_child(payload, send)})
    except _ChildFailure as exc:
        send({"type": "failed", "code": exc.code, "message": exc.message, "traceback": traceback.format_exc()})
        return 1
    except BaseException as exc:  # report everything; the parent decides what it means
        send(
            {
                "type": "crash",
                "exception": type(exc).__name__,
                "message": str(exc)[:2000],
                "traceback": traceback.format_exc()[-20000:],
            }
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
