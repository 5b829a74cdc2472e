"""How well each backend's support check predicts what actually runs: onnxruntime, OpenVINO, MNN,
LiteRT, and RKNN on its simulator. It is over 800 lines because a bench is one script by design
(its cases, child processes, scoring and the section it writes to BENCHMARKS.md read and rerun
together).

Takes every case of ONNX's node test suite (`onnx.backend.test.case.node.collect_testcases()`:
a small model, its inputs and expected outputs) and, for each backend, asks its
`check_support` about the case's model, then runs the case with that backend and compares
the outputs with the expected ones (rtol 1e-3, atol 1e-7 unless the case sets its own, as
onnx's backend test does):

- onnxruntime: `OnnxRuntimeCpuBackend.load` on the ONNX model (CPU provider);
- OpenVINO: `OpenVinoBackend.load` on the ONNX model (CPU plugin, f32 inference precision);
- MNN: `MnnBackend.build_variants` for an fp32-only profile (MNN's converter), then
  `MnnBackend.load` on the .mnn file;
- LiteRT: `LiteRTBackend.build_variants` for an fp32-only profile (onnx2tf in the `litert`
  framework environment), then `LiteRTBackend.load` on the .tflite file (a `LiteRTSession`,
  which takes and gives ONNX names and layouts);
- RKNN: `RKNNBackend.build_variants` for an fp16-only `rk3588-npu` profile (RKNN-Toolkit2 in
  the `rknn` framework environment), then `RKNNBackend.load`: a simulator session, which
  builds the recipe again and runs every data set of the case in one call (`run_many`).
  The simulator computes the NPU's FP16, so RKNN's outputs are compared at rtol 1e-2,
  atol 1e-3 (or the case's own, where looser).

"Said supported" is a "full" verdict; for RKNN it is also a "partial" one whose every node
the NPU runs or the board's CPU takes as a fallback (no node refused or unplaced), since a
fallback still runs. "Ran" is a session (or MNN model) that was created and ran without
raising; "matched" means the outputs equal the expected ones within the tolerance (an output
whose dtype differs from the model's, such as MNN's int32 for int64, is compared after
casting it to the model's dtype, and counted). The agreement is the share of cases where
"said supported" and "ran" say the same.

LiteRT and RKNN are measured as the pipeline calls them: `check_support` and then
`build_variants` are separate calls, each converting in a side process of its framework
environment (TensorFlow or the toolkit imported each time), so a case takes them seconds
(on 2 busy cores, RKNN about 11 s: check, build and the simulator's rebuild; LiteRT about 28 s). Both need
concrete input shapes, so a case whose model declares a symbolic or missing input dim is
given to them with the dims of its first data set (as a user gives `input_shapes`); the
output counts those cases.

Native runtimes can crash (OpenVINO's reader has segfaulted on malformed node-test models,
such as a Pad without `pads`; MNN dies on several cases) or hang, so each backend works in
forked child processes, one case at a time, each in its own process group: a child that
dies or passes the per-case time limit is killed and replaced, and its case is recorded as
crashed (so is one that grows past 3 GiB resident; its address space is capped at 6 GiB).
A case whose support check crashes counts as "not said supported" and is run again,
without the check, in a fresh child.

Cases whose graph inputs or outputs have a dtype numpy lacks (bfloat16, float8, int4...)
mostly cannot be fed or fetched through the runtimes' Python APIs; the agreement is also
given without them (the same cases for every backend). The op-type summary counts the op
types (from cases that are not "_expanded" function bodies, numpy I/O cases left out) that
each backend claims, and that actually run and match, in every case that uses them.

`--budget-s` bounds the run of the fast backends (onnxruntime, OpenVINO, MNN): each gets an
equal share of what is left when its turn comes. LiteRT and RKNN get `--slow-backend-budget-s`
each (and a per-case limit of `--slow-case-timeout-s`, so a TensorFlow import on a busy
machine is not taken for a hang). Cases are run in a fixed shuffled order, so a backend cut
short by its budget has covered a spread of op types, and the output says how many cases it
covered. The op-type table is judged on the backends that covered every case; LiteRT and RKNN
get a line each on the op types of the cases they covered.
Prints the result (JSON with --json) and writes it to BENCHMARKS.md (section "Op-support
matrix (ONNX node test suite)") unless --no-write.

    python bench/op_support_matrix.py                  # every backend (~30 min on 2 cores, 22 of them LiteRT and RKNN)
    python bench/op_support_matrix.py --limit 50 --no-write --json --backends onnxruntime,openvino
    python bench/op_support_matrix.py --limit 20 --no-write --backends litert,rknn
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import combinations
from multiprocessing.connection import wait as wait_for_any
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._benchmarks_md import write_section  # noqa: E402

SECTION = "Op-support matrix (ONNX node test suite)"
BACKENDS = ("onnxruntime", "openvino", "mnn", "litert", "rknn")
# Backends that convert in a framework environment's side process, twice a case (check and build):
# seconds a case, so they get budgets of their own and cover a sample of the cases.
SLOW_BACKENDS = ("litert", "rknn")
TITLES = {"onnxruntime": "onnxruntime", "openvino": "OpenVINO", "mnn": "MNN", "litert": "LiteRT", "rknn": "RKNN"}
RTOL, ATOL = 1e-3, 1e-7
# RKNN runs FP16 on the NPU (the simulator computes it so): ~3 decimal digits, so a tolerance for fp16.
TOLERANCES = {"rknn": (1e-2, 1e-3)}
# What a converting backend builds to run a case: (profile name, precision).
BUILDS = {"mnn": ("op-support-matrix", "fp32"), "litert": ("op-support-matrix", "fp32"), "rknn": ("rk3588-npu", "fp16")}
MAX_LISTED = 15
DEFAULT_BUDGET_S = 840.0
DEFAULT_CASE_TIMEOUT_S = 60.0
DEFAULT_SLOW_BUDGET_S = 600.0
DEFAULT_SLOW_CASE_TIMEOUT_S = 120.0
# A worker past this resident size is killed (seen: MNN's OneHot growing past 15 GiB on a
# node-test case); its address space is capped at twice this, for allocations too fast to watch.
DEFAULT_MEMORY_LIMIT_BYTES = 3 * 2**30
MNN_CONVERTER_TIMEOUT_S = 20.0
SHUFFLE_SEED = 0
# ONNX element types that numpy has no dtype for, so no runtime's Python API can feed or fetch them.
NUMPY_LACKS = (
    "BFLOAT16",
    "FLOAT8E4M3FN",
    "FLOAT8E4M3FNUZ",
    "FLOAT8E5M2",
    "FLOAT8E5M2FNUZ",
    "FLOAT8E8M0",
    "FLOAT6E2M3",
    "FLOAT6E3M2",
    "FLOAT4E2M1",
    "UINT4",
    "INT4",
    "UINT2",
    "INT2",
)

_LOG_MARK = "=== op-support-matrix case: "
# The cases, sorted by name. main() fills this before forking the workers, which index into it.
_CASES: list[Any] = []


def collect_cases() -> list[Any]:
    """The node test cases, sorted by name (the generators print warnings on import)."""
    import numpy as np
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    return sorted(cases, key=lambda case: case.name)


# --- one backend, one case (in a worker process) ---------------------------------------------


class CaseRunner:
    """One backend as the matrix uses it: its support check, and a session for a case's model."""

    def __init__(self, name: str, scratch: Path) -> None:
        self.name = name
        self.scratch = scratch
        if name == "onnxruntime":
            from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend

            self.backend: Any = OnnxRuntimeCpuBackend(intra_op_threads=1)
        elif name == "openvino":
            from workers.engine.backends.openvino import OpenVinoBackend

            self.backend = OpenVinoBackend(num_threads=1)
        elif name == "mnn":
            from workers.engine.backends.mnn import MnnBackend

            self.backend = MnnBackend(threads=1, converter_timeout_s=MNN_CONVERTER_TIMEOUT_S)
        elif name == "litert":
            from workers.engine.backends.litert import LiteRTBackend

            self.backend = LiteRTBackend(threads=1)
        elif name == "rknn":
            from workers.engine.backends.rknn import RKNNBackend

            self.backend = RKNNBackend()
        else:
            raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")

    def said_supported(self, report: Any) -> bool:
        """A "full" verdict; for RKNN also a "partial" one where every node runs on the NPU or falls
        back to the CPU (a fallback still runs, between NPU segments)."""
        if report.verdict == "full":
            return True
        return (
            self.name == "rknn"
            and report.verdict == "partial"
            and bool(report.ops)
            and all(op.status in ("supported", "fallback") for op in report.ops)
        )

    def load(self, model_path: Path) -> Any:
        """A session for the model: the ONNX file itself, or the variant a converting backend builds."""
        if self.name not in BUILDS:
            return self.backend.load(model_path)
        from workers.engine.backends.base import HardwareProfile

        out_dir = self.scratch / f"{self.name}-variants"
        shutil.rmtree(out_dir, ignore_errors=True)
        profile_name, precision = BUILDS[self.name]
        profile = HardwareProfile(profile_name, "cpu", (self.name,), (precision,))
        variants = self.backend.build_variants(model_path, profile, None, out_dir)
        if not variants:
            # The notes that say why nothing was built, not those on how the build went.
            why = [note for note in variants.notes if re.search(r"not built|variant was built|dropped", note)]
            raise RuntimeError("; ".join(why or variants.notes) or f"{TITLES[self.name]} built no {precision} variant")
        return self.backend.load(variants[0].path)


def check_case(runner: CaseRunner, case: Any, model_path: Path) -> dict[str, Any]:
    """Ask the backend's support check about the case's model (already saved at model_path)."""
    result: dict[str, Any] = {"case": case.name, "said_supported": False}
    try:
        report = runner.backend.check_support(model_path)
        result["verdict"] = report.verdict
        result["method"] = report.method
        result["unsupported"] = sorted({f"{op.op_type}: {op.reason}" for op in report.ops if op.status != "supported"})
        if report.error:
            result["unsupported"].append(report.error)
        result["said_supported"] = runner.said_supported(report)
        result["fallback"] = sorted({op.op_type for op in report.ops if op.status == "fallback"})
    except Exception as exc:
        result.update(verdict="check_failed", method="", unsupported=[f"{type(exc).__name__}: {exc}"])
    return result


def run_case(runner: CaseRunner, case: Any, model_path: Path) -> dict[str, Any]:
    """Run the case's model on every data set of the case and compare with the expected outputs."""
    import numpy as np
    from onnx.backend.test.runner import Runner

    graph = case.model.graph
    output_names = [value.name for value in graph.output]
    rtol, atol = case.rtol or RTOL, case.atol or ATOL
    if runner.name in TOLERANCES:
        rtol, atol = max(rtol, TOLERANCES[runner.name][0]), max(atol, TOLERANCES[runner.name][1])
    runs = []
    try:
        session = runner.load(model_path)
        takes = set(session.input_names)
        feeds = [
            {
                value.name: _as_test_data(data, value)
                for data, value in zip(inputs, graph.input, strict=False)
                if value.name in takes
            }
            for inputs, _ in case.data_sets
        ]
        # RKNN's simulator builds the model again for each call: every data set in one call, as parity does.
        results = session.run_many(feeds) if hasattr(session, "run_many") else [session.run(feed) for feed in feeds]
        for outputs, (_, expected) in zip(results, case.data_sets, strict=True):
            if all(name in outputs for name in output_names):
                actual = [outputs[name] for name in output_names]
            else:  # named otherwise by the runtime: take them in order
                actual = [outputs[name] for name in session.output_names]
            runs.append((actual, expected))
        session.close()
    except Exception as exc:
        return {"ran": False, "matched": False, "run_error": _first_line(exc)}

    result: dict[str, Any] = {"ran": True, "matched": True, "dtype_cast": False}
    try:
        for actual, expected in runs:
            expected = [_as_test_data(data, value) for data, value in zip(expected, graph.output, strict=False)]
            for position, (got, want) in enumerate(zip(actual, expected, strict=False)):
                if (
                    isinstance(got, np.ndarray)
                    and isinstance(want, np.ndarray)
                    and got.dtype != want.dtype
                    and want.dtype != object
                ):
                    # e.g. MNN computes int64 as int32: compare the values, count the cast.
                    actual[position] = got.astype(want.dtype)
                    result["dtype_cast"] = True
            Runner.assert_similar_outputs(expected, actual, rtol=rtol, atol=atol)
    except Exception as exc:  # AssertionError mostly; a list where a tensor was expected raises others
        result.update(matched=False, mismatch=_first_line(exc))
    return result


def _worker_main(backend_name: str, conn: Any, scratch: Path, memory_limit_bytes: int) -> None:
    """A worker: receives (case index, skip_check), answers ("checked", ...) then ("ran", ...)."""
    import resource

    os.setsid()  # its own process group: the parent kills it whole, converter children included
    resource.setrlimit(resource.RLIMIT_AS, (2 * memory_limit_bytes, 2 * memory_limit_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    log = os.open(scratch / "log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)  # runtimes print to the descriptors; keep that off the bench's output
    os.dup2(log, 2)
    warnings.simplefilter("ignore")
    import onnx

    runner = CaseRunner(backend_name, scratch)
    model_path = scratch / "model.onnx"
    while (task := conn.recv()) is not None:
        index, skip_check = task
        case = _CASES[index]
        os.write(1, f"\n{_LOG_MARK}{case.name}\n".encode())  # the log tail after a crash starts here
        model, shapes_from_data = case.model, False
        if backend_name in SLOW_BACKENDS:
            model, shapes_from_data = _with_data_shapes(case)
        onnx.save_model(model, str(model_path))
        if not skip_check:
            conn.send(("checked", {**check_case(runner, case, model_path), "shapes_from_data": shapes_from_data}))
        conn.send(("ran", run_case(runner, case, model_path)))


# --- the worker pool (in the parent) ------------------------------------------------------------


@dataclass
class _Slot:
    scratch: Path
    process: Any = None
    conn: Any = None
    task: tuple[int, bool] | None = None
    started: float = 0.0
    check: dict[str, Any] | None = None


@dataclass
class BackendRun:
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    budget_s: float = 0.0
    case_timeout_s: float = 0.0
    out_of_budget: bool = False


def run_backend(
    name: str,
    order: list[int],
    workers: int,
    budget_s: float,
    case_timeout_s: float,
    scratch: Path,
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
) -> BackendRun:
    """Every case of `order` on one backend, in `workers` child processes, until the budget runs out."""
    context = multiprocessing.get_context("fork")
    started = time.monotonic()
    deadline = started + budget_s
    run = BackendRun(budget_s=budget_s, case_timeout_s=case_timeout_s)
    queue: deque[tuple[int, bool]] = deque((index, False) for index in order)
    crashed_checks: dict[int, dict[str, Any]] = {}
    slots = [_Slot(scratch=scratch / f"{name}-{number}") for number in range(workers)]

    def start(slot: _Slot) -> None:
        shutil.rmtree(slot.scratch, ignore_errors=True)
        slot.scratch.mkdir(parents=True)
        parent_end, child_end = context.Pipe()
        slot.process = context.Process(
            target=_worker_main, args=(name, child_end, slot.scratch, memory_limit_bytes), daemon=True
        )
        slot.process.start()
        child_end.close()
        slot.conn = parent_end

    def finish(slot: _Slot, ran: dict[str, Any]) -> None:
        assert slot.task is not None
        index = slot.task[0]
        check = slot.check or crashed_checks.pop(index)
        run.results[index] = {**check, **ran}
        slot.task = None
        if len(run.results) % 200 == 0:
            print(f"{name}: {len(run.results)}/{len(order)} cases", file=sys.stderr, flush=True)

    def lost(slot: _Slot, how: str) -> None:
        """The worker died or hung on its case: record it, replace the worker."""
        assert slot.task is not None
        index, skip_check = slot.task
        detail = f"{how}: {_log_tail(slot.scratch / 'log')}".rstrip(": ")
        _stop(slot)
        if slot.check is None and not skip_check:
            # Lost in the support check: not said supported. Run the case alone in a fresh worker.
            crashed_checks[index] = {
                "case": _CASES[index].name,
                "verdict": "crashed",
                "method": "",
                "unsupported": [detail],
                "said_supported": False,
                "crashed_in": "check_support",
            }
            queue.appendleft((index, True))
            slot.task = None
            return
        outcome = {"ran": False, "matched": False, "run_error": detail}
        if "crashed_in" not in (slot.check or crashed_checks.get(index, {})):
            outcome["crashed_in"] = "run"
        finish(slot, outcome)

    try:
        while True:
            now = time.monotonic()
            for slot in slots:
                # A case whose check crashed is run even past the deadline, so it is not left half done.
                if slot.task is None and queue and (now < deadline or queue[0][1]):
                    if slot.process is None:
                        start(slot)
                    slot.task, slot.started, slot.check = queue.popleft(), time.monotonic(), None
                    slot.conn.send(slot.task)
            busy = [slot for slot in slots if slot.task is not None]
            if not busy:
                break
            wait_for_any([slot.conn for slot in busy] + [slot.process.sentinel for slot in busy], timeout=0.5)
            for slot in busy:
                dead = False
                try:
                    while slot.task is not None and slot.conn.poll():
                        kind, data = slot.conn.recv()
                        if kind == "checked":
                            slot.check = data
                        else:
                            finish(slot, data)
                except (EOFError, OSError):
                    dead = True
                if slot.task is None:
                    continue
                if dead or not slot.process.is_alive():
                    slot.process.join(timeout=5)
                    code = slot.process.exitcode
                    signame = signal.Signals(-code).name if code is not None and code < 0 else f"exit code {code}"
                    lost(slot, f"crashed ({signame})")
                elif time.monotonic() - slot.started > case_timeout_s:
                    lost(slot, f"timed out after {case_timeout_s:.0f} s")
                elif _resident_bytes(slot.process.pid) > memory_limit_bytes:
                    lost(slot, f"killed: resident memory past {memory_limit_bytes / 2**30:.1f} GiB")
    finally:
        for slot in slots:
            _stop(slot)
    run.seconds = time.monotonic() - started
    run.out_of_budget = bool(queue)
    return run


def _stop(slot: _Slot) -> None:
    if slot.process is None:
        return
    if slot.process.is_alive():
        with contextlib.suppress(OSError):
            slot.conn.send(None)
        slot.process.join(timeout=0.5)
    if slot.process.is_alive():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(slot.process.pid, signal.SIGKILL)
        slot.process.join(timeout=10)
    else:
        # The group may outlive its leader (a converter child): end it too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(slot.process.pid, signal.SIGKILL)
    slot.conn.close()
    slot.process = slot.conn = None


def _resident_bytes(pid: int) -> int:
    """The process's resident set size (0 when it cannot be read)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _log_tail(path: Path) -> str:
    """The worker log's last two meaningful lines: what the runtime said before it died."""
    try:
        text = path.read_bytes()[-4000:].decode("utf-8", "replace")
    except OSError:
        return ""
    text = text.rpartition(_LOG_MARK)[2].partition("\n")[2]
    # Not MNN's banner, printed by every process that loads it.
    lines = [line.strip() for line in text.splitlines() if line.strip() and "device supports" not in line]
    return " / ".join(lines[-2:])[:300]


# --- summaries ----------------------------------------------------------------------------------


def summarize_backend(name: str, cases: list[Any], run: BackendRun, numpy_io: set[str]) -> dict[str, Any]:
    """Counts and the agreement between "said supported" and "ran" for one backend."""
    results = [run.results[index] for index in sorted(run.results)]
    for result in results:
        result["numpy_io"] = result["case"] in numpy_io
    comparable = [result for result in results if not result["numpy_io"]]

    def agreement(items: list[dict[str, Any]], key: str = "ran") -> float:
        return round(100 * sum(item["said_supported"] == item[key] for item in items) / len(items), 2) if items else 0.0

    false_yes = [result for result in comparable if result["said_supported"] and not result["ran"]]
    false_no = [result for result in results if not result["said_supported"] and result["ran"]]
    wrong = [result for result in comparable if result["said_supported"] and result["ran"] and not result["matched"]]
    lost = [result for result in results if "crashed_in" in result]
    by_name = {case.name: case for case in cases}

    def by_op_type(items: list[dict[str, Any]]) -> dict[str, int]:
        """How many of the items' cases use each op type (non-"_expanded" cases only), most first."""
        counts = Counter(
            op for item in items if not item["case"].endswith("_expanded") for op in _op_types(by_name[item["case"]])
        )
        return dict(counts.most_common())

    failures: dict[str, list[str]] = {}
    for result in false_yes:
        failures.setdefault(_error_kind(result.get("run_error", "")), []).append(result["case"])
    crashes: dict[str, list[dict[str, Any]]] = {}
    for result in lost:
        crashes.setdefault(_lost_detail(result).partition(":")[0], []).append(result)
    rtol, atol = TOLERANCES.get(name, (RTOL, ATOL))
    return {
        "version": _version(name),
        "cases": len(cases),
        "covered": len(results),
        "out_of_budget": run.out_of_budget,
        "budget_s": round(run.budget_s, 1),
        "case_timeout_s": run.case_timeout_s,
        "seconds": round(run.seconds, 1),
        "rtol": rtol,
        "atol": atol,
        "shapes_from_data": sum(bool(result.get("shapes_from_data")) for result in results),
        "said_supported": sum(result["said_supported"] for result in results),
        "said_supported_with_fallback": sum(
            bool(result["said_supported"] and result.get("fallback")) for result in results
        ),
        # Said supported with CPU fallback (RKNN): cases per op type that fell back.
        "fallback_op_types": dict(
            Counter(
                op for result in results if result["said_supported"] for op in result.get("fallback", [])
            ).most_common()
        ),
        "ran": sum(result["ran"] for result in results),
        "ran_and_matched": sum(result["matched"] for result in results),
        "agreement_percent": agreement(results),
        "agreement_with_matched_percent": agreement(results, "matched"),
        "numpy_io_cases": len(results) - len(comparable),
        "agreement_percent_without_numpy_io": agreement(comparable),
        "agreement_with_matched_percent_without_numpy_io": agreement(comparable, "matched"),
        "said_supported_but_failed": sum(result["said_supported"] and not result["ran"] for result in results),
        "said_supported_but_failed_without_numpy_io": len(false_yes),
        "said_unsupported_but_ran": len(false_no),
        "said_supported_ran_but_mismatched": len(wrong),
        "output_dtype_cast": sum(bool(result.get("dtype_cast")) for result in results),
        "crashes": len(lost),
        "crashes_in_check_support": sum(result["crashed_in"] == "check_support" for result in lost),
        "timeouts": sum("timed out" in _lost_detail(result) for result in lost),
        "crashed_cases": [
            {"case": result["case"], "in": result["crashed_in"], "detail": _lost_detail(result)} for result in lost
        ],
        "methods": dict(Counter(result["method"] for result in results)),
        "verdicts": dict(Counter(result["verdict"] for result in results)),
        "disagreements": [
            {
                "case": result["case"],
                "verdict": result["verdict"],
                "ran": result["ran"],
                "detail": result.get("run_error") or "; ".join(result["unsupported"])[:200],
            }
            for result in (false_yes + false_no)[:MAX_LISTED]
        ],
        "wrong_results": [
            {"case": result["case"], "detail": result.get("mismatch", "")[:200]} for result in wrong[:MAX_LISTED]
        ],
        # Said supported but failed to run (numpy I/O cases left out), grouped by error.
        "failures_by_error": [
            {"error": error, "cases": len(names), "example": names[0]}
            for error, names in sorted(failures.items(), key=lambda item: -len(item[1]))
        ],
        "crashes_by_kind": [
            {"kind": kind, "cases": len(items), "op_types": sorted(by_op_type(items))}
            for kind, items in sorted(crashes.items(), key=lambda item: -len(item[1]))
        ],
        # Said supported, ran, wrong outputs (numpy I/O cases left out): cases per op type.
        "wrong_by_op_type": by_op_type(wrong),
        "said_unsupported_but_ran_by_op_type": by_op_type(false_no),
        "op_types": op_type_matrix(cases, {name: run}, numpy_io),
    }


def op_type_matrix(cases: list[Any], runs: dict[str, BackendRun], numpy_io: set[str]) -> dict[str, Any]:
    """Per op type: which backends claim it, and which run it right, in every case that uses it.

    Judged on the cases every backend covered, leaving out "_expanded" cases (function bodies:
    they test the composed op, not each op of the body) and numpy I/O cases. A backend
    "claims" an op type when its check said supported in all of them, and "runs" it when all
    of them ran and matched.
    """
    names = list(runs)
    shared = set.intersection(*(set(run.results) for run in runs.values())) if runs else set()
    judged = [
        index
        for index in sorted(shared)
        if not cases[index].name.endswith("_expanded") and cases[index].name not in numpy_io
    ]
    uses: dict[str, list[int]] = {}
    for index in judged:
        for op in _op_types(cases[index]):
            uses.setdefault(op, []).append(index)
    claims = {
        name: {op for op, indexes in uses.items() if all(runs[name].results[i]["said_supported"] for i in indexes)}
        for name in names
    }
    works = {
        name: {op for op, indexes in uses.items() if all(runs[name].results[i]["matched"] for i in indexes)}
        for name in names
    }

    def breakdown(sets: dict[str, set[str]]) -> dict[str, int]:
        rows: dict[str, int] = {}
        for size in range(len(names), 0, -1):
            for group in combinations(names, size):
                key = "all" if size == len(names) and size > 1 else "+".join(group) + " only"
                rows[key] = sum(
                    all(op in sets[name] for name in group) and not any(op in sets[n] for n in names if n not in group)
                    for op in uses
                )
        rows["none"] = sum(not any(op in sets[name] for name in names) for op in uses)
        return rows

    return {
        "backends": names,
        "op_types": len(uses),
        "cases": len(judged),
        "claimed": breakdown(claims),
        "ran_and_matched": breakdown(works),
        "claimed_but_wrong": {name: sorted(claims[name] - works[name]) for name in names},
        "run_but_not_claimed": {name: sorted(works[name] - claims[name]) for name in names},
        "run_by_none": sorted(op for op in uses if not any(op in works[name] for name in names)),
    }


def write_benchmarks(summary: dict[str, Any]) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md, leaving the others alone."""
    write_section(REPO / "BENCHMARKS.md", SECTION, render_section(summary))


def render_section(summary: dict[str, Any]) -> str:
    # Each column knows its backend's name, for rows that differ by backend.
    backends = {name: {**column, "name": name} for name, column in summary["backends"].items()}
    names = list(backends)
    slow = [name for name in names if name in SLOW_BACKENDS]

    def row(label: str, value: Any) -> str:
        return f"| {label} | " + " | ".join(str(value(backends[name])) for name in names) + " |\n"

    def slow_only(value: Any) -> Any:
        return lambda b: value(b) if b["name"] in SLOW_BACKENDS else "n/a"

    versions = ", ".join(f"{TITLES[name]} {backends[name]['version']}" for name in names)
    fast_titles = ", ".join(TITLES[name] for name in names if name not in SLOW_BACKENDS)
    section = (
        f"## {SECTION}\n\n"
        f"`bench/op_support_matrix.py`, {time.strftime('%Y-%m-%d')}, {summary['cores']} cores, "
        f"{summary['workers']} worker processes a backend, onnx {summary['onnx']}, {versions}; the run took "
        f"{summary['seconds'] / 60:.0f} min. The {summary['cases']} cases of ONNX's node test suite, each asked to "
        'every backend\'s `check_support` ("said supported": verdict `full`) and then run with that backend against '
        f"the case's expected outputs (rtol {RTOL}, atol {ATOL} unless the case sets its own, as onnx's backend test). "
        "onnxruntime and OpenVINO load the ONNX model (`load`, CPU; OpenVINO at f32 inference precision); MNN "
        "converts it to an fp32 `.mnn` (`build_variants`) and runs that. Each backend works in forked child "
        f"processes that are replaced when one crashes, passes {summary['case_timeout_s']:.0f} s on a case or "
        f"{summary['memory_limit_gib']:g} GiB resident; the case is then recorded as crashed (a crash in the support "
        "check counts as not said supported, and the case is run again without it)."
    )
    if fast_titles:
        section += (
            f" Time budget {summary['budget_s']:.0f} s for {fast_titles} together, each an equal share of what is "
            "left when its turn comes."
        )
    if slow:
        rtol, atol = TOLERANCES["rknn"]
        section += (
            "\n\nLiteRT and RKNN are measured as the pipeline calls them: `check_support`, then `build_variants` "
            "(LiteRT: an fp32-only profile, onnx2tf in the `litert` framework environment, the `.tflite` run by "
            "`LiteRTSession` with ONNX names and layouts; RKNN: an fp16-only `rk3588-npu` profile, RKNN-Toolkit2 in "
            "the `rknn` environment, then `load`, whose simulator session builds the recipe again and runs every "
            "data set of the case in one call). Each of those calls starts a side process that imports TensorFlow "
            "or the toolkit, so a case costs seconds: each gets a budget of its own "
            f"({summary['slow_backend_budget_s']:.0f} s) and a per-case limit of "
            f"{summary['slow_case_timeout_s']:.0f} s, and covers the first cases of the same shuffled order (a sample "
            'of the suite: its agreement is over the cases it covered). For RKNN, "said supported" is verdict `full` '
            "(every node on the NPU) or `partial` with every node on the NPU or falling back to the board's CPU (a "
            "fallback still runs); a node refused or not placed is not supported. The simulator computes the NPU's "
            f"FP16, so RKNN's outputs are compared at rtol {rtol:g}, atol {atol:g} (or the case's own, where looser). "
            "Both converters need concrete input shapes: a case whose model declares a symbolic or missing input dim "
            "is given to them with the dims of its first data set, as a user gives `input_shapes`."
        )
    section += (
        "\n\n| measure | " + " | ".join(TITLES[name] for name in names) + " |\n|---|" + "---|" * len(names) + "\n"
    )
    section += row("cases covered", lambda b: f"{b['covered']} of {b['cases']}")
    section += row(
        "output tolerance (rtol, atol; the case's own where looser)", lambda b: f"{b['rtol']:g}, {b['atol']:g}"
    )
    section += row(
        "said supported (verdict `full`; RKNN also `partial` with only CPU fallback: in brackets)",
        lambda b: (
            f"{b['said_supported']} ({b['said_supported_with_fallback']})"
            if b["name"] == "rknn"
            else b["said_supported"]
        ),
    )
    section += row("ran (session created, run without error)", lambda b: b["ran"])
    section += row("ran and matched the expected outputs", lambda b: b["ran_and_matched"])
    section += row("**agreement: said supported == ran**", lambda b: f"**{b['agreement_percent']} %**")
    section += row("agreement: said supported == ran and matched", lambda b: f"{b['agreement_with_matched_percent']} %")
    section += row(
        "crashed or hung (child lost; in `check_support`)",
        lambda b: f"{b['crashes']} ({b['crashes_in_check_support']})",
    )
    section += row(
        "cases with bfloat16/float8/int4... inputs or outputs (the Python APIs mostly cannot feed or fetch them)",
        lambda b: b["numpy_io_cases"],
    )
    section += row(
        "**agreement without those numpy I/O cases**",
        lambda b: f"**{b['agreement_percent_without_numpy_io']} %** ({b['covered'] - b['numpy_io_cases']} cases)",
    )
    section += row(
        "agreement with ran and matched, without numpy I/O cases",
        lambda b: f"{b['agreement_with_matched_percent_without_numpy_io']} %",
    )
    section += row(
        "said supported but failed to run (without numpy I/O cases)",
        lambda b: f"{b['said_supported_but_failed']} ({b['said_supported_but_failed_without_numpy_io']})",
    )
    section += row("said unsupported but ran", lambda b: b["said_unsupported_but_ran"])
    section += row(
        "said supported, ran, wrong outputs (without numpy I/O cases)", lambda b: b["said_supported_ran_but_mismatched"]
    )
    section += row(
        "ran with an output dtype other than the model's (compared after a cast)", lambda b: b["output_dtype_cast"]
    )
    if slow:
        section += row("input shapes taken from the case's data", slow_only(lambda b: b["shapes_from_data"]))
    section += row(
        "support method", lambda b: ", ".join(f"{method or 'none'} {count}" for method, count in b["methods"].items())
    )
    section += row("time", lambda b: f"{b['seconds']} s")

    matrix = summary.get("op_type_matrix")
    judged = matrix["backends"] if matrix else []
    if matrix and len(judged) > 1:
        section += (
            f"\nOp types, judged on the {matrix['cases']} cases that "
            + ", ".join(TITLES[name] for name in judged[:-1])
            + f" and {TITLES[judged[-1]]} all covered that are not `_expanded` function bodies or numpy I/O "
            "cases: a backend claims an op type when its check said supported in every case that uses it, and runs "
            "it when every such case ran and matched "
            f"({matrix['op_types']} op types).\n\n| op types | claimed | ran and matched |\n|---|---|---|\n"
        )
        for key, count in matrix["claimed"].items():
            label = "all " + str(len(judged)) if key == "all" else key.replace("+", " + ")
            for name in judged:
                label = label.replace(name, TITLES[name])
            section += f"| {label} | {count} | {matrix['ran_and_matched'][key]} |\n"
        section += "\n"
        for name in judged:
            wrong = matrix["claimed_but_wrong"][name]
            if wrong:
                section += f"- {TITLES[name]} claims but does not run right in every case: " + _short(wrong) + "\n"
        if matrix["run_by_none"]:
            section += "- run right by none: " + _short(matrix["run_by_none"]) + "\n"
    for name in slow:
        own = backends[name]["op_types"]
        claimed, works = own["claimed"].get(f"{name} only", 0), own["ran_and_matched"].get(f"{name} only", 0)
        section += (
            f"- {TITLES[name]}, on the {own['cases']} cases it covered that are not `_expanded` or numpy I/O "
            f"({own['op_types']} op types): claims {claimed}, runs right {works}"
        )
        if own["claimed_but_wrong"][name]:
            section += "; claims but does not run right in every case: " + _short(own["claimed_but_wrong"][name])
        if own["run_but_not_claimed"][name]:
            section += "; runs right but does not claim: " + _short(own["run_but_not_claimed"][name])
        section += "\n"

    section += (
        "\nWhere the checks and the runs part ways (numpy I/O cases left out; op types counted over cases "
        "that are not `_expanded`):\n\n"
    )
    for name in names:
        backend = backends[name]
        failed = "; ".join(
            f"{item['cases']}x `{_cell(item['error'], 90)}` (e.g. `{item['example']}`)"
            for item in backend["failures_by_error"][:6]
        )
        crashed = "; ".join(
            f"{item['kind']}: {item['cases']} cases ({', '.join(item['op_types'][:8]) or '_expanded cases'})"
            for item in backend["crashes_by_kind"]
        )
        wrong = ", ".join(f"{op} {count}" for op, count in list(backend["wrong_by_op_type"].items())[:20])
        if not wrong:
            wrong = "only `_expanded` cases" if backend["said_supported_ran_but_mismatched"] else "none"
        section += f"- **{TITLES[name]}**: said supported but failed to run: {failed or 'none'}.\n"
        if crashed:
            section += f"  Lost (crashed or hung): {crashed}.\n"
        section += (
            f"  Said supported, ran, wrong outputs ({backend['said_supported_ran_but_mismatched']} cases), "
            f"cases per op type: {wrong}.\n"
        )
        if backend["said_unsupported_but_ran"]:
            ran = ", ".join(
                f"{op} {count}" for op, count in list(backend["said_unsupported_but_ran_by_op_type"].items())[:20]
            )
            section += (
                f"  Said unsupported but ran ({backend['said_unsupported_but_ran']} cases), cases per op type: "
                f"{ran or 'only `_expanded` cases'}.\n"
            )
        if backend["fallback_op_types"]:
            fallback = ", ".join(f"{op} {count}" for op, count in list(backend["fallback_op_types"].items())[:20])
            section += (
                f"  Said supported with CPU fallback ({backend['said_supported_with_fallback']} cases), cases per "
                f"op type that falls back: {fallback}.\n"
            )
    return section


def render_text(summary: dict[str, Any]) -> str:
    """A short plain-text table for the terminal."""
    lines = []
    for name, backend in summary["backends"].items():
        lines.append(
            f"{TITLES[name]:12} covered {backend['covered']}/{backend['cases']}  said {backend['said_supported']}  "
            f"ran {backend['ran']}  matched {backend['ran_and_matched']}  agreement {backend['agreement_percent']} % "
            f"(without numpy I/O {backend['agreement_percent_without_numpy_io']} %)  crashes {backend['crashes']}  "
            f"{backend['seconds']} s"
        )
    matrix = summary.get("op_type_matrix")
    if matrix:
        lines.append(f"op types ({matrix['op_types']}): claimed {matrix['claimed']}")
        lines.append(f"  ran and matched {matrix['ran_and_matched']}")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases (by name)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, from: " + ", ".join(BACKENDS))
    parser.add_argument("--no-write", action="store_true", help="don't update BENCHMARKS.md")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument(
        "--budget-s", type=float, default=DEFAULT_BUDGET_S, help="time for onnxruntime, OpenVINO and MNN together"
    )
    parser.add_argument("--case-timeout-s", type=float, default=DEFAULT_CASE_TIMEOUT_S, help="per case and backend")
    parser.add_argument(
        "--slow-backend-budget-s",
        type=float,
        default=DEFAULT_SLOW_BUDGET_S,
        help="time for each of " + " and ".join(TITLES[name] for name in SLOW_BACKENDS),
    )
    parser.add_argument(
        "--slow-case-timeout-s",
        type=float,
        default=DEFAULT_SLOW_CASE_TIMEOUT_S,
        help="per case for " + " and ".join(TITLES[name] for name in SLOW_BACKENDS) + " (a side process each call)",
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="child processes a backend")
    parser.add_argument("--details", type=Path, help="also write every case's result to this JSON file")
    args = parser.parse_args()
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown or not names:
        parser.error(f"unknown backends {unknown}; choose from {', '.join(BACKENDS)}")

    import onnx

    started = time.monotonic()
    _CASES[:] = collect_cases()[: args.limit]
    numpy_io = {case.name for case in _CASES if _lacks_numpy_dtype(case)}
    order = list(range(len(_CASES)))
    random.Random(SHUFFLE_SEED).shuffle(order)
    runs: dict[str, BackendRun] = {}
    fast = [name for name in names if name not in SLOW_BACKENDS]
    with tempfile.TemporaryDirectory(prefix="op-support-") as scratch:
        for name in names:
            if name in SLOW_BACKENDS:
                share, timeout = args.slow_backend_budget_s, args.slow_case_timeout_s
            else:
                position = fast.index(name)
                left = args.budget_s - (time.monotonic() - started)
                share, timeout = max(left, 0.0) / (len(fast) - position), args.case_timeout_s
            print(f"{name}: {len(order)} cases, budget {share:.0f} s", file=sys.stderr, flush=True)
            runs[name] = run_backend(name, order, args.workers, share, timeout, Path(scratch))
            print(f"{name}: {len(runs[name].results)} cases in {runs[name].seconds:.0f} s", file=sys.stderr)

    summary: dict[str, Any] = {
        "onnx": onnx.__version__,
        "cores": os.cpu_count(),
        "workers": args.workers,
        "budget_s": args.budget_s,
        "case_timeout_s": args.case_timeout_s,
        "slow_backend_budget_s": args.slow_backend_budget_s,
        "slow_case_timeout_s": args.slow_case_timeout_s,
        "memory_limit_gib": DEFAULT_MEMORY_LIMIT_BYTES / 2**30,
        "cases": len(_CASES),
        "op_types": len({op for case in _CASES for op in _op_types(case)}),
        "backends": {name: summarize_backend(name, _CASES, run, numpy_io) for name, run in runs.items()},
        # Judged on the backends that cover every case (the fast ones; all given, if only slow ones are).
        "op_type_matrix": op_type_matrix(
            _CASES, {name: run for name, run in runs.items() if name not in SLOW_BACKENDS} or runs, numpy_io
        ),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary, indent=2) if args.json else render_text(summary))
    if args.details:
        details = {name: [run.results[index] for index in sorted(run.results)] for name, run in runs.items()}
        args.details.write_text(json.dumps(details, indent=1))
    if not args.no_write:
        write_benchmarks(summary)


# --- helpers ------------------------------------------------------------------------------------


def _as_test_data(data: Any, value: Any) -> Any:
    """A case's input or output as onnx's backend test feeds it: written to a .pb and read back.

    Cases hold numpy scalars, lists, or TensorProtos (for dtypes numpy lacks); the test
    suite's own files are made by `onnx.backend.test.cmd_tools.generate_data` and read by
    `Runner._load_proto`, and this does the same round trip in memory.
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    kind = value.type.WhichOneof("value")
    if kind == "sequence_type":
        return numpy_helper.to_list(numpy_helper.from_list(data, value.name))
    if kind == "optional_type":
        return numpy_helper.to_optional(numpy_helper.from_optional(data, value.name))
    if kind == "tensor_type":
        tensor = data if isinstance(data, TensorProto) else numpy_helper.from_array(np.asarray(data), value.name)
        return numpy_helper.to_array(tensor)
    return data


def _with_data_shapes(case: Any) -> tuple[Any, bool]:
    """The case's model with every tensor input's declared shape made concrete from its first data
    set where a dim is symbolic or the shape is missing (LiteRT's and RKNN's converters need
    concrete shapes, and would set a symbolic dim to 1), and whether it changed anything."""
    import onnx
    from onnx import TensorProto

    if not case.data_sets:
        return case.model, False
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    changed = False
    for data, value in zip(case.data_sets[0][0], model.graph.input, strict=False):
        if value.type.WhichOneof("value") != "tensor_type":
            continue
        tensor_type = value.type.tensor_type
        shape = tuple(data.dims) if isinstance(data, TensorProto) else _shape_of(data)
        dims = tensor_type.shape.dim
        if (
            tensor_type.HasField("shape")
            and len(dims) == len(shape)
            and all(dim.WhichOneof("value") == "dim_value" for dim in dims)
        ):
            continue
        tensor_type.shape.Clear()
        tensor_type.shape.SetInParent()  # a scalar's shape is present and empty
        for size in shape:
            tensor_type.shape.dim.add().dim_value = int(size)
        changed = True
    return model, changed


def _shape_of(data: Any) -> tuple[int, ...]:
    import numpy as np

    return tuple(np.shape(np.asarray(data)))


def _lacks_numpy_dtype(case: Any) -> bool:
    """Whether a graph input or output of the case has an element type numpy has no dtype for."""
    from onnx import TensorProto

    lacking = {getattr(TensorProto, name) for name in NUMPY_LACKS if hasattr(TensorProto, name)}

    def element_types(type_proto: Any) -> list[int]:
        kind = type_proto.WhichOneof("value")
        if kind == "tensor_type":
            return [type_proto.tensor_type.elem_type]
        if kind == "sequence_type":
            return element_types(type_proto.sequence_type.elem_type)
        if kind == "optional_type":
            return element_types(type_proto.optional_type.elem_type)
        if kind == "map_type":
            return [type_proto.map_type.key_type, *element_types(type_proto.map_type.value_type)]
        return []

    graph = case.model.graph
    return any(kind in lacking for value in [*graph.input, *graph.output] for kind in element_types(value.type))


def _op_types(case: Any) -> set[str]:
    """The case's op types: "Add", or "domain.Op" outside the default domain."""
    return {
        node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        for node in case.model.graph.node
    }


def _version(name: str) -> str:
    import importlib.metadata

    if name in SLOW_BACKENDS:
        return _framework_env_versions(name)
    package = {"onnxruntime": "onnxruntime", "openvino": "openvino", "mnn": "MNN"}[name]
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _framework_env_versions(name: str) -> str:
    """LiteRT's runtime with its converter's versions, or RKNN-Toolkit2's, from the framework environment."""
    import importlib.metadata

    from workers.engine import framework_envs

    packages = (framework_envs.stamp(framework_envs.get(name)) or {}).get("packages", {})
    if name == "rknn":
        return f"(RKNN-Toolkit2 {packages.get('rknn-toolkit2', 'not built')}, onnx {packages.get('onnx', '?')})"
    try:
        runtime = importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:
        runtime = "not installed"
    return (
        f"{runtime} (onnx2tf {packages.get('onnx2tf', 'not built')}, TensorFlow {packages.get('tensorflow_cpu', '?')}, "
        f"onnx {packages.get('onnx', '?')})"
    )


def _error_kind(text: str) -> str:
    """An error message without what varies from case to case (node names, sizes, paths)."""
    text = re.sub(r"Name:'[^']*'", "Name:''", text)
    text = re.sub(r"\b\d{3,}\b", "N", text)
    return text[:160]


def _lost_detail(result: dict[str, Any]) -> str:
    if result.get("crashed_in") == "check_support":
        return result["unsupported"][0] if result["unsupported"] else ""
    return str(result.get("run_error", ""))


def _short(items: list[str], limit: int = 25) -> str:
    return ", ".join(f"`{item}`" for item in items[:limit]) + (
        f" and {len(items) - limit} more" if len(items) > limit else ""
    )


def _cell(text: str, limit: int) -> str:
    return text.replace("|", "/").replace("\n", " ")[:limit]


def _first_line(exc: BaseException) -> str:
    """The first line that says something: not OpenVINO's "Exception from src/....cpp:117:" lines."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not re.match(r"^(Exception from |Check '.*' failed at )\S+", line)]
    return next(iter(useful or lines), type(exc).__name__)[:300]


if __name__ == "__main__":
    main()
