"""Stability: the recommendation on the same model, five times, while another process loads a core.

Builds a small ONNX MLP (512 -> 1024 -> 1024 -> 10) and three real variants of it (the same
graph re-saved, onnxruntime's offline-optimized graph, dynamic INT8 quantization), judges
their parity against the original with the engine's comparator on the engine's generated
inputs, then runs the whole recommendation (interleaved trials in fresh processes, intervals,
ties) `--runs` times while a busy-loop process spins on a core. It reports each run's winner
and its speed-up band over the original, and checks the issue's two claims: the same winner
every time, and the winner's speed-up band in every run covering the other runs' point
estimates of that variant's speed-up.

Beside the engine's verdict it reruns `recommend` on the same figures with the tie test it
used before (any overlap of the two 95 % intervals ties; see `overlap_tie`), so the report
shows what the engine's test (each figure inside the other's interval, or within 5 %) changes.
It records the host's steal time on the benchmark core (this is a virtual machine: CPU time
per inference counts the time the host took the core away). Writes the "## Stability" section
of BENCHMARKS.md unless --no-write; --json keeps every run's figures.

    python bench/stability.py                  # 5 runs, 3 trials each, a busy loop on another core
    python bench/stability.py --runs 15        # and the claims over each group of 5: how often they hold
    python bench/stability.py --same-core      # the busy loop on the benchmark's own core
    python bench/stability.py --runs 2 --no-write --json /tmp/stability.json
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._benchmarks_md import write_section  # noqa: E402
from workers.engine.benchmark import (  # noqa: E402
    BenchmarkConfig,
    BenchmarkFailed,
    BenchmarkRequest,
    BenchmarkResult,
    benchmark_interleaved,
)
from workers.engine.hardware import cpu_model  # noqa: E402
from workers.engine.recommend import benchmark_points, recommend  # noqa: E402
from workers.engine.timing import Estimate, latency_change  # noqa: E402

SECTION = "Stability"
OBJECTIVE = "p99_latency_batch1"
BUSY_LOOP = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"
# The bench's own tolerance: top-1 agreement 90 % (the profile asks 99 %) so that the INT8
# variant, 3x faster, stays a contender; what is measured here is the ranking, not accuracy.
TOLERANCE = {"max_abs_error": 1e-3, "min_cosine": 0.99, "min_top1_agreement": 0.9}
PARITY_SAMPLES = 32


def build_models(folder: Path) -> dict[str, Path]:
    """The original MLP and its three variants, as files in `folder`."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    sizes = [512, 1024, 1024, 10]
    nodes, weights, previous = [], [], "x"
    for index, (rows, cols) in enumerate(itertools.pairwise(sizes)):
        weight = (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{index}"))
        out = f"h{index}" if index < len(sizes) - 2 else "logits"
        if out == "logits":
            nodes.append(helper.make_node("MatMul", [previous, f"w{index}"], [out]))
        else:
            nodes.append(helper.make_node("MatMul", [previous, f"w{index}"], [f"m{index}"]))
            nodes.append(helper.make_node("Relu", [f"m{index}"], [out]))
        previous = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    paths = {"original": folder / "original.onnx", "ort-fp32-resaved": folder / "resaved.onnx"}
    onnx.save_model(model, str(paths["original"]))
    onnx.save_model(model, str(paths["ort-fp32-resaved"]))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    paths["ort-fp32-optimized"] = folder / "optimized.onnx"
    options.optimized_model_filepath = str(paths["ort-fp32-optimized"])
    ort.InferenceSession(str(paths["original"]), options, providers=["CPUExecutionProvider"])
    paths["ort-int8-dynamic"] = folder / "int8.onnx"
    quantize_dynamic(str(paths["original"]), str(paths["ort-int8-dynamic"]), weight_type=QuantType.QInt8)
    return paths


def parity_of(paths: dict[str, Path]) -> tuple[dict[str, dict[str, Any]], str]:
    """Every variant's parity verdict against the original, on the engine's generated inputs
    (`evidence_inputs` without a validation set), and how those inputs were made."""
    from workers.engine.backends.registry import get_backend
    from workers.engine.parity import Tolerance, compare_variant, evidence_inputs, run_session

    evidence = evidence_inputs(paths["original"], samples=PARITY_SAMPLES)
    backend = get_backend("onnxruntime")

    def outputs(path: Path) -> list[dict[str, Any]]:
        session = backend.load(path)
        try:
            return run_session(session, evidence.feeds)
        finally:
            session.close()

    reference = outputs(paths["original"])
    tolerance = Tolerance(**TOLERANCE)
    verdicts = {
        name: compare_variant(reference, outputs(path), tolerance).to_dict()
        for name, path in paths.items()
        if name != "original"
    }
    return verdicts, f"{evidence.description}, {len(evidence.feeds)} samples"


def _points(result: Any) -> list[dict[str, Any]]:
    """Benchmark points as the pipeline's benchmark step hands them to the recommender (as JSON,
    so the run's record can be written out)."""
    return [asdict(point) for point in benchmark_points(result.to_dict(), device_kind="cpu")]


def _core_times(core: int) -> tuple[int, int]:
    """(steal, total) jiffies of one CPU from /proc/stat; (0, 0) where there is no such file."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return 0, 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] == f"cpu{core}":
            values = [int(v) for v in fields[1:9]]
            return values[7], sum(values)
    return 0, 0


def overlap_tie(best: Estimate, other: Estimate, min_relative: float) -> bool:
    """The tie test `recommend` used before (`_within_noise` until 2026-12-06): `other` is tied
    with the fastest (`best`) whenever `latency_change` finds no difference beyond the noise,
    that is when the two intervals overlap, the gap is under `min_relative`, or either
    interval reaches zero. One wide interval then ties a slow variant with the fastest."""
    return latency_change(other, best, min_relative=min_relative).verdict in ("no_change", "unknown")


@contextlib.contextmanager
def tie_test(test: Callable[[Estimate, Estimate, float], bool]) -> Iterator[None]:
    """Run `recommend` with another tie test in its place (the previous rule, for comparison)."""
    import workers.engine.recommend as engine

    saved = engine._within_noise
    engine._within_noise = test  # type: ignore[assignment]
    try:
        yield
    finally:
        engine._within_noise = saved


def _outcomes(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every ranked or rejected variant's figures and reason in a recommendation, by name."""
    return {
        outcome["name"]: {
            key: outcome[key]
            for key in ("speedup", "speedup_low", "speedup_high", "value", "low", "high", "tied_with", "reason")
        }
        for outcome in (result["winner"], result["runner_up"], *result["others"])
        if outcome is not None
    }


def one_run(
    paths: dict[str, Path], parity: dict[str, dict[str, Any]], config: BenchmarkConfig, core: int
) -> dict[str, Any]:
    """One recommendation: every model benchmarked in interleaved trials, then `recommend`."""
    names = list(paths)
    started = time.perf_counter()
    steal_before = _core_times(core)
    outcomes = benchmark_interleaved([BenchmarkRequest("onnxruntime", paths[name]) for name in names], config)
    steal_after = _core_times(core)
    failed = {name: str(o) for name, o in zip(names, outcomes, strict=True) if isinstance(o, BenchmarkFailed)}
    if failed:
        raise SystemExit(f"The benchmark failed, so the run has no recommendation: {failed}")
    by_name = {name: o for name, o in zip(names, outcomes, strict=True) if isinstance(o, BenchmarkResult)}
    sizes = {name: paths[name].stat().st_size for name in names}
    candidates = [
        {
            "name": name,
            "backend": "onnxruntime",
            "precision": "int8" if "int8" in name else "fp32",
            "parity": parity[name],
            "points": _points(by_name[name]),
            "size_bytes": sizes[name],
        }
        for name in names
        if name != "original"
    ]
    result = recommend(candidates, _points(by_name["original"]), OBJECTIVE).to_dict()
    with tie_test(overlap_tie):
        overlap_rule = recommend(candidates, _points(by_name["original"]), OBJECTIVE).to_dict()
    winner = result["winner"] or {}
    verdicts = _outcomes(result)
    figures = {}
    for name in names:
        point = by_name[name].points[0]
        figures[name] = {
            "cpu_ms": point.cpu_ms,
            "cpu_ci_ms": list(point.cpu_ci_ms),
            "p50_ms": point.p50_ms,
            "p50_ci_ms": list(point.p50_ci_ms),
            "samples": point.samples,
            "trial_cpu_ms": list(point.trial_cpu_ms),
            "trial_p50_ms": list(point.trial_p50_ms),
        }
    steal, total = (after - before for after, before in zip(steal_after, steal_before, strict=True))
    return {
        "winner": winner.get("name"),
        "tied_with": winner.get("tied_with", []),
        "speedup": winner.get("speedup"),
        "speedup_low": winner.get("speedup_low"),
        "speedup_high": winner.get("speedup_high"),
        "statistic": result["statistic"],
        "summary": result["summary"],
        "variants": verdicts,
        "figures": figures,
        "overlap_rule": {
            "winner": (overlap_rule["winner"] or {}).get("name"),
            "speedup": (overlap_rule["winner"] or {}).get("speedup"),
            "speedup_low": (overlap_rule["winner"] or {}).get("speedup_low"),
            "speedup_high": (overlap_rule["winner"] or {}).get("speedup_high"),
            "variants": _outcomes(overlap_rule),
        },
        "steal_percent": round(100 * steal / total, 1) if total else None,
        "load_average": list(os.getloadavg()),
        "seconds": round(time.perf_counter() - started, 1),
    }


def check(runs: list[dict[str, Any]], speedups: list[dict[str, tuple[float, float, float]]]) -> dict[str, Any]:
    """The issue's two claims over `runs`: one winner, and each run's band for its winner's
    speed-up covering the other runs' point estimates of that same variant's speed-up.
    `speedups[i]` maps a variant to (speed-up, low, high) in run i."""
    winners = [run["winner"] for run in runs]
    pairs = covered = 0
    misses = []
    for i, winner in enumerate(winners):
        if winner is None:
            continue
        # A winner without a band (an interval that reaches zero has no ratio) covers nothing.
        _, low, high = speedups[i].get(winner, (math.nan, math.nan, math.nan))
        for j in range(len(runs)):
            if i == j or winner not in speedups[j]:
                continue
            pairs += 1
            estimate = speedups[j][winner][0]
            if low <= estimate <= high:
                covered += 1
            else:
                misses.append(
                    {"run": i + 1, "other": j + 1, "variant": winner, "band": [low, high], "other_estimate": estimate}
                )
    counts = Counter(str(winner) for winner in winners)
    return {
        "same_winner": len(counts) == 1,
        "winners": dict(counts.most_common()),
        "pairs": pairs,
        "covered": covered,
        "misses": misses,
    }


def claims(runs: list[dict[str, Any]], group: int, *, overlap_rule: bool) -> dict[str, Any]:
    """`check` over all runs, and over each consecutive group of `group` runs (one bench of the
    issue's five runs each), for the engine's verdicts or the previous rule's."""

    def verdict(chosen: list[dict[str, Any]]) -> dict[str, Any]:
        if overlap_rule:
            return check(
                [{**run, "winner": run["overlap_rule"]["winner"]} for run in chosen],
                [speedups(run["overlap_rule"]["variants"]) for run in chosen],
            )
        return check(chosen, [speedups(run["variants"]) for run in chosen])

    overall = verdict(runs)
    groups = [verdict(runs[i : i + group]) for i in range(0, len(runs) - group + 1, group)] if group < len(runs) else []
    overall["groups"] = [
        {"same_winner": each["same_winner"], "covered": each["covered"], "pairs": each["pairs"]} for each in groups
    ]
    return overall


def speedups(variants: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float, float]]:
    """Every ranked variant's speed-up over the original with its band, as `recommend` gave it."""
    return {
        name: (v["speedup"], v["speedup_low"], v["speedup_high"])
        for name, v in variants.items()
        if v.get("speedup") is not None
    }


def _band(low: float | None, high: float | None) -> str:
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "none"
    return f"{low:.2f}-{high:.2f}"


def _speedup(found: dict[str, Any]) -> str:
    """ "2.84x [1.49-6.01]" from a dict with speedup, speedup_low and speedup_high."""
    if found.get("speedup") is None:
        # `latency_change` gives no ratio when an interval reaches zero.
        return "no ratio (an interval reaches 0)"
    return f"{found['speedup']:.2f}x [{_band(found['speedup_low'], found['speedup_high'])}]"


def _interval(value: float, interval: list[float]) -> str:
    return f"{value:.4f} [{interval[0]:.4f}-{interval[1]:.4f}]"


def _trials(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def diagnosis(runs: list[dict[str, Any]], verdict: dict[str, Any]) -> list[str]:
    """Sentences on why a claim failed, from the figures of the runs that broke it."""
    lines = []
    usual = next(iter(verdict["winners"]))
    for index, run in enumerate(runs, start=1):
        if run["winner"] == usual:
            continue
        lost = run["variants"].get(usual, {})
        mine, theirs = run["figures"][run["winner"]], run["figures"].get(usual, {})
        original = run["figures"]["original"]
        lines.append(
            f'- Run {index} picked `{run["winner"]}` ({_speedup(run)}) over `{usual}`: "{lost.get("reason", "")}" '
            f"CPU ms per trial: `{run['winner']}` {_trials(mine['trial_cpu_ms'])} (mean "
            f"{_interval(mine['cpu_ms'], mine['cpu_ci_ms'])}); `{usual}` {_trials(theirs.get('trial_cpu_ms', []))}; "
            f"the original {_trials(original['trial_cpu_ms'])}."
        )
    for miss in verdict["misses"][:6]:
        lines.append(
            f"- Run {miss['run']}'s band for `{miss['variant']}`, {_band(*miss['band'])}x, misses run "
            f"{miss['other']}'s estimate {miss['other_estimate']:.2f}x."
        )
    if len(verdict["misses"]) > 6:
        lines.append(f"- ... and {len(verdict['misses']) - 6} more pairs.")
    return lines


def drift(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How much the usual winner's speed-up moved between runs, against how wide one run's band
    is: when the spread between runs is larger than a run's own trials show, a run's band can't
    cover the other runs' estimates, whatever the tie rule."""
    usual = Counter(run["winner"] for run in runs).most_common(1)[0][0]
    points = [speedups(run["variants"]).get(usual) for run in runs]
    found = [p for p in points if p is not None and not math.isnan(p[1]) and not math.isnan(p[2])]
    if len(found) < 2:
        return None
    estimates = [p[0] for p in found]
    halves = sorted((high - low) / 2 / estimate for estimate, low, high in found)
    spread = statistics.stdev(estimates) / statistics.fmean(estimates)
    return {
        "variant": usual,
        "low": min(estimates),
        "high": max(estimates),
        "variation": spread,
        "median_half_width": halves[len(halves) // 2],
        "narrowest_half_width": halves[0],
    }


def _drift_sentence(found: dict[str, Any]) -> str:
    return (
        f"Between runs, `{found['variant']}`'s speed-up estimate ranged {found['low']:.2f}x-{found['high']:.2f}x "
        f"(coefficient of variation {found['variation']:.0%}); one run's band is +/-{found['median_half_width']:.0%} "
        f"of its estimate at the median and +/-{found['narrowest_half_width']:.0%} at the narrowest. A band comes "
        "from the spread of one run's trials, which follow each other within seconds; where the machine's speed "
        "for this variant drifts over longer periods than a run, the runs whose trials happened to agree give "
        "bands that miss the other runs' estimates."
    )


def _groups_sentence(groups: list[dict[str, Any]], size: int) -> str:
    same = sum(1 for each in groups if each["same_winner"])
    both = sum(1 for each in groups if each["same_winner"] and each["covered"] == each["pairs"])
    return (
        f"Taken as {len(groups)} benches of {size} consecutive runs, as the issue states the claim: the same winner "
        f"in {same} of {len(groups)}, both claims in {both} of {len(groups)}."
    )


def write_benchmarks(
    runs: list[dict[str, Any]],
    verdict: dict[str, Any],
    overlap_rule: dict[str, Any],
    inputs: str,
    args: argparse.Namespace,
) -> None:
    """Replace (or append) this bench's section of BENCHMARKS.md, leaving the others alone."""
    where = "the benchmark's own core" if args.same_core else "the other core"
    lines = [
        f"## {SECTION}",
        "",
        f"`bench/stability.py`, {time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} vCPUs (a KVM guest) "
        f"shared with other work. The recommendation (objective `{OBJECTIVE}`, single-threaded onnxruntime pinned "
        f"to one core) on the same model, {len(runs)} times, while a busy-loop process spins on {where}. Each run "
        f"measures the original MLP (512-1024-1024-10) and three variants (re-saved, offline-optimized, dynamic "
        f"INT8) in {args.trials} interleaved trials, each a fresh process, {args.seconds:g} s per point over the "
        f"trials; `recommend` ranks by {runs[0]['statistic']} (CPU time per inference, the mean of the trials with "
        "a 95% t-interval), ties two variants only when each figure lies inside the other's interval or they are "
        "within 5%, and breaks ties by accuracy. Parity: "
        f"`compare_variant` on {inputs} (tolerance: top-1 agreement 90%, so that INT8 stays a contender). Steal "
        "is the share of the benchmark core's time the host took away during the run; CPU time counts it.",
        "",
        "| run | winner (tied with) | speed-up [95% band] | winner CPU ms [95%] per trial | original CPU ms per "
        "trial | winner p50 ms [95%] | samples | load average | steal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, start=1):
        win = run["figures"].get(run["winner"], {})
        base = run["figures"]["original"]
        tied = f" ({', '.join(run['tied_with'])})" if run["tied_with"] else ""
        steal = "-" if run["steal_percent"] is None else f"{run['steal_percent']:.1f}%"
        lines.append(
            f"| {index} | {run['winner']}{tied} | {_speedup(run)} | {_interval(win['cpu_ms'], win['cpu_ci_ms'])}: "
            f"{_trials(win['trial_cpu_ms'])} | {_trials(base['trial_cpu_ms'])} | "
            f"{_interval(win['p50_ms'], win['p50_ci_ms'])} | {win['samples']} | {run['load_average'][0]:.2f} "
            f"| {steal} |"
        )
    winners = ", ".join(f"{name} {count}x" for name, count in verdict["winners"].items())
    lines += [
        "",
        f"Same winner in every run: **{'yes' if verdict['same_winner'] else 'no'}** ({winners}). The winner's "
        f"speed-up band covers the other runs' estimates of that variant's speed-up in **{verdict['covered']} of "
        f"{verdict['pairs']}** pairs of runs.",
    ]
    problems = diagnosis(runs, verdict)
    if problems:
        lines += ["", "Where the claims broke:", "", *problems]
    if verdict["groups"]:
        lines += ["", _groups_sentence(verdict["groups"], args.group)]
    if verdict["misses"] and (found := drift(runs)):
        lines += ["", _drift_sentence(found)]
    overlap_rule_winners = ", ".join(f"{name} {count}x" for name, count in overlap_rule["winners"].items())
    lines += [
        "",
        "The previous rule, on the same figures: `recommend` tying any two variants whose intervals overlap (what "
        f"it did before this round) picks {overlap_rule_winners}; its band covers the other runs' estimates in "
        f"{overlap_rule['covered']} of {overlap_rule['pairs']} pairs."
        + (f" {_groups_sentence(overlap_rule['groups'], args.group)}" if overlap_rule["groups"] else ""),
    ]
    write_section(REPO / "BENCHMARKS.md", SECTION, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--group", type=int, default=5, help="also check the claims over each group of this many runs")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget per point over all trials")
    parser.add_argument("--same-core", action="store_true", help="spin the busy loop on the benchmark's core")
    parser.add_argument("--no-write", action="store_true", help="don't update BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    bench_core = cores[0]
    load_core = bench_core if args.same_core or len(cores) == 1 else cores[-1]
    config = BenchmarkConfig(
        trials=args.trials,
        max_seconds_per_point=args.seconds,
        intra_op_threads=1,
        pin_cores=(bench_core,),
        warmup_runs=10,
        window_runs=50,
    )
    with tempfile.TemporaryDirectory(prefix="slipway-stability-") as folder:
        paths = build_models(Path(folder))
        parity, inputs = parity_of(paths)
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(load_core)])
        try:
            runs = []
            for index in range(args.runs):
                run = one_run(paths, parity, config, bench_core)
                runs.append(run)
                if args.json:  # as it goes, so that a run that fails leaves the others behind
                    args.json.write_text(json.dumps({"runs": runs, "inputs": inputs}, indent=1))
                print(
                    f"run {index + 1}: {run['winner']} {_speedup(run)}; overlap rule: {run['overlap_rule']['winner']} "
                    f"{_speedup(run['overlap_rule'])}; steal {run['steal_percent']}%; {run['seconds']} s",
                    flush=True,
                )
        finally:
            busy.kill()
            busy.wait()
    verdict = claims(runs, args.group, overlap_rule=False)
    overlap_rule = claims(runs, args.group, overlap_rule=True)
    print(json.dumps({"engine": verdict, "overlap_rule": overlap_rule}))
    if args.json:
        args.json.write_text(
            json.dumps({"runs": runs, "verdict": verdict, "overlap_rule": overlap_rule, "inputs": inputs}, indent=1)
        )
    if not args.no_write:
        write_benchmarks(runs, verdict, overlap_rule, inputs, args)


if __name__ == "__main__":
    main()
