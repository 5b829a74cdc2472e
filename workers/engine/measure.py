"""The measurement loops a benchmark's child process runs, and how trials combine into figures.

`measure_serial` times one caller back to back, `measure_concurrent` N callers at once, each in
windows until the window medians agree or a cap is reached (see `workers.engine.benchmark`'s
docstring for the rules); `combine_trials` pools the trials of one point into percentiles and
means with their 95 % intervals (`workers.engine.timing`), and `measure_harness_overhead` times
the loop itself around a no-op.
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from workers.engine.benchmark import MIN_REQUESTS_AT_CAP, BenchmarkConfig, HarnessOverhead


@dataclass
class _Measured:
    latencies_ns: list[int]
    window_p50s_ns: list[float]
    stable: bool
    wall_ns: int  # from the first timed request's start to the last window's end
    cpu_ns: int
    warmup_runs: int
    # Per window: requests completed, wall and process CPU time it took. With a single trial
    # these are the units the intervals of means are computed over.
    window_counts: list[int] = field(default_factory=list)
    window_wall_ns: list[int] = field(default_factory=list)
    window_cpu_ns: list[int] = field(default_factory=list)


def _enough(latencies: Sequence[int], config: BenchmarkConfig) -> bool:
    return len(latencies) >= config.min_samples


def _is_stable(p50s: Sequence[float], config: BenchmarkConfig) -> bool:
    """The last `stable_windows` window p50s agree within the tolerance."""
    if len(p50s) < config.stable_windows:
        return False
    last = p50s[-config.stable_windows :]
    spread = max(last) - min(last)
    return spread == 0 or spread <= config.stability_tolerance * statistics.median(last)


def measure_serial(run: Callable[[Any], object], feed: Any, config: BenchmarkConfig) -> _Measured:
    """Warm up, then time `run(feed)` back to back in windows until stable or capped."""
    clock = time.perf_counter_ns
    point_start = clock()
    point_end = point_start + int(config.max_seconds_per_point * 1e9)
    warmup_end = point_start + int(config.warmup_seconds * 1e9)
    warmup_cap = point_start + (point_end - point_start) // 2
    warmup = 0
    while warmup < config.warmup_runs or clock() < warmup_end:
        run(feed)
        warmup += 1
        if clock() >= warmup_cap:
            break

    latencies: list[int] = []
    record = latencies.append
    p50s: list[float] = []
    counts: list[int] = []
    walls: list[int] = []
    cpus: list[int] = []
    stable = False
    window_ns = int(config.window_seconds * 1e9) if config.window_seconds else 0
    gc_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        cpu_start = time.process_time_ns()
        started = clock()
        window_cpu, window_wall = cpu_start, started
        while True:
            first = len(latencies)
            window_end = min(clock() + window_ns, point_end) if window_ns else point_end
            left = config.window_runs if not window_ns else -1
            while True:
                t0 = clock()
                run(feed)
                t1 = clock()
                record(t1 - t0)
                left -= 1
                if left == 0 or t1 >= window_end:
                    break
            p50s.append(statistics.median(latencies[first:]))
            now_cpu, now_wall = time.process_time_ns(), clock()
            counts.append(len(latencies) - first)
            walls.append(now_wall - window_wall)
            cpus.append(now_cpu - window_cpu)
            window_cpu, window_wall = now_cpu, now_wall
            # Stability alone doesn't stop a point short of the samples its percentiles need.
            if _is_stable(p50s, config) and _enough(latencies, config):
                stable = True
                break
            if len(p50s) >= config.max_windows and _enough(latencies, config):
                break
            if t1 >= point_end and len(latencies) >= MIN_REQUESTS_AT_CAP:
                stable = _is_stable(p50s, config)
                break
        ended = clock()
        cpu_ns = time.process_time_ns() - cpu_start
    finally:
        if gc_enabled:
            gc.enable()
    return _Measured(latencies, p50s, stable, ended - started, cpu_ns, warmup, counts, walls, cpus)


def measure_concurrent(runs: Sequence[Callable[[Any], object]], feed: Any, config: BenchmarkConfig) -> _Measured:
    """N threads (one per callable) run requests back to back; the main thread only watches
    the clock and cuts the stream of completed requests into windows. Requests that straddle a
    window boundary count in the window where they complete."""
    clock = time.perf_counter_ns
    records: list[list[tuple[int, int]]] = [[] for _ in runs]  # per thread: (end_ns, latency_ns)
    stop = threading.Event()
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(runs) + 1)

    def loop(index: int) -> None:
        run, record, stopped = runs[index], records[index].append, stop.is_set
        try:
            barrier.wait()
            while not stopped():
                t0 = clock()
                run(feed)
                t1 = clock()
                record((t1, t1 - t0))
        except BaseException as exc:  # handed to the main thread, which raises it
            errors.append(exc)
            stop.set()

    def completed() -> int:
        return sum(len(r) for r in records)

    workers = [threading.Thread(target=loop, args=(i,), name=f"benchmark-{i}", daemon=True) for i in range(len(runs))]
    for worker in workers:
        worker.start()
    point_start = clock()
    point_end = point_start + int(config.max_seconds_per_point * 1e9)
    warmup_end = point_start + int(config.warmup_seconds * 1e9)
    warmup_cap = point_start + (point_end - point_start) // 2
    gc_enabled = gc.isenabled()
    try:
        barrier.wait()
        while not stop.is_set():
            now = clock()
            if (now >= warmup_end and completed() >= config.warmup_runs) or now >= warmup_cap:
                break
            time.sleep(0.001)
        if errors:
            raise errors[0]
        warmup = completed()
        done = [r[-1][1] for r in records if r]
        typical_ns = statistics.median(done) if done else 1_000_000
        # Wake often enough to cut windows close to their size, rarely enough to stay out of the way.
        poll_s = min(0.02, max(0.0005, typical_ns * config.window_runs / len(runs) / 20 / 1e9))
        gc.collect()
        gc.disable()
        measure_from = clock()
        cpu_start = time.process_time_ns()
        cursors = [0] * len(runs)
        latencies: list[int] = []
        p50s: list[float] = []
        stable = False
        window_ns = int(config.window_seconds * 1e9) if config.window_seconds else 0
        boundary = measure_from
        counts: list[int] = []
        walls: list[int] = []
        cpus: list[int] = []
        window_cpu, window_wall = cpu_start, measure_from
        while True:
            window_end = min(clock() + window_ns, point_end) if window_ns else point_end
            counted = sum(cursors)
            window: list[int] = []
            while not stop.is_set():
                time.sleep(poll_s)
                now = clock()
                if now >= window_end or (not window_ns and completed() - counted >= config.window_runs):
                    boundary = now
                    for i, thread_records in enumerate(records):
                        j, end = cursors[i], len(thread_records)
                        while j < end and thread_records[j][0] <= boundary:
                            if thread_records[j][0] > measure_from:
                                window.append(thread_records[j][1])
                            j += 1
                        cursors[i] = j
                    if window:
                        break
            if errors:
                raise errors[0]
            latencies.extend(window)
            p50s.append(statistics.median(window))
            now_cpu = time.process_time_ns()
            counts.append(len(window))
            walls.append(boundary - window_wall)
            cpus.append(now_cpu - window_cpu)
            window_cpu, window_wall = now_cpu, boundary
            if _is_stable(p50s, config) and _enough(latencies, config):
                stable = True
                break
            if len(p50s) >= config.max_windows and _enough(latencies, config):
                break
            if boundary >= point_end and len(latencies) >= MIN_REQUESTS_AT_CAP:
                stable = _is_stable(p50s, config)
                break
        cpu_ns = time.process_time_ns() - cpu_start
    finally:
        stop.set()
        if gc_enabled:
            gc.enable()
        for worker in workers:
            worker.join(timeout=60)
    if errors:
        raise errors[0]
    return _Measured(latencies, p50s, stable, boundary - measure_from, cpu_ns, warmup, counts, walls, cpus)


def _noop(feed: Any) -> Any:
    return feed


def measure_harness_overhead(config: BenchmarkConfig | None = None, min_seconds: float = 0.3) -> HarnessOverhead:
    """Time a no-op with the harness's own serial loop and window bookkeeping (the `config`'s
    window size, so the per-window work is amortized as in a real run), repeatedly for at least
    `min_seconds`, in this process. Returns the median over repeats of the cost per request.

    This is the harness's cost per inference at concurrency 1; with several threads the loop is
    the same per thread but requests also wait for the GIL around the runtime call.
    """
    config = config or BenchmarkConfig()
    config = BenchmarkConfig(
        window_runs=config.window_runs,
        window_seconds=config.window_seconds,
        warmup_runs=100,
        warmup_seconds=0.0,
        stable_windows=config.stable_windows,
        stability_tolerance=config.stability_tolerance,
        max_windows=config.max_windows,
        max_seconds_per_point=max(min_seconds, 0.05),
    )
    per_request: list[float] = []
    reported: list[float] = []
    requests = 0
    started = time.perf_counter()
    while not per_request or time.perf_counter() - started < min_seconds:
        measured = measure_serial(_noop, {}, config)
        per_request.append(measured.wall_ns / len(measured.latencies_ns))
        reported.append(statistics.median(measured.latencies_ns))
        requests += len(measured.latencies_ns)
    per_inference_us = statistics.median(per_request) / 1000
    return HarnessOverhead(
        per_inference_us=round(per_inference_us, 4),
        reported_latency_us=round(statistics.median(reported) / 1000, 4),
        requests=requests,
        percent_of_1ms=round(per_inference_us / 1000 * 100, 4),
    )


def _thin(values: Sequence[float], keep: int) -> list[float]:
    """At most `keep` of `values`, evenly spaced in time order (a systematic sample keeps the
    distribution and shows drift)."""
    if len(values) <= keep:
        return list(values)
    last = len(values) - 1
    return [values[round(i * last / (keep - 1))] for i in range(keep)] if keep > 1 else [values[0]]


def trial_summary(
    measured: _Measured, batch_size: int, concurrency: int, sessions: int, keep: int, seconds: float
) -> dict[str, Any]:
    """One trial's raw figures for the parent to pool (see `combine_trials`)."""
    values = [ns / 1e6 for ns in measured.latencies_ns]
    return {
        "batch_size": batch_size,
        "concurrency": concurrency,
        "p50_ms": round(statistics.median(values), 4),
        "requests": len(values),
        "warmup_runs": measured.warmup_runs,
        "window_p50s_ms": [round(p / 1e6, 4) for p in measured.window_p50s_ns],
        "stable": measured.stable,
        "seconds": round(seconds, 4),
        "wall_ns": measured.wall_ns,
        "cpu_ns": measured.cpu_ns,
        "window_counts": measured.window_counts,
        "window_wall_ns": measured.window_wall_ns,
        "window_cpu_ns": measured.window_cpu_ns,
        "sessions": sessions,
        "samples_ms": [round(v, 6) for v in _thin(values, keep)],
    }


def _per_inference(trial: Mapping[str, Any]) -> tuple[float, float]:
    """(CPU ms per inference, inferences per second) of one trial."""
    inferences = trial["requests"] * trial["batch_size"]
    cpu_ms = trial["cpu_ns"] / 1e6 / inferences
    throughput = inferences / (trial["wall_ns"] / 1e9) if trial["wall_ns"] else 0.0
    return cpu_ms, throughput


def _window_rates(trial: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """CPU ms per inference and inferences per second of every window of one trial."""
    cpu, rate = [], []
    for count, wall_ns, cpu_ns in zip(
        trial["window_counts"], trial["window_wall_ns"], trial["window_cpu_ns"], strict=True
    ):
        inferences = count * trial["batch_size"]
        if inferences and wall_ns > 0:
            cpu.append(cpu_ns / 1e6 / inferences)
            rate.append(inferences / (wall_ns / 1e9))
    return cpu, rate


def combine_trials(trials: Sequence[Mapping[str, Any]], keep_samples: int) -> dict[str, Any]:
    """One point's figures from its trials (each a fresh process), with 95 % intervals.

    Percentiles come from every trial's latencies pooled, with distribution-free order-statistic
    intervals; with two trials or more each interval is widened to the t-interval of the
    per-trial values where that is wider, so a process that ran differently shows in the band.
    p99 and p99.9 are None, with a note, where the pooled samples can't support them. CPU time
    per inference and throughput are means over trials with t-intervals; a single trial falls
    back to the spread of its windows, which is narrower than the truth across processes and
    says so in `interval_method`."""
    from workers.engine.timing import (
        not_enough_samples,
        percentile,
        percentile_interval,
        percentile_supported,
        positive_interval,
    )

    if not trials:
        raise ValueError("no trials to combine")
    first = trials[0]
    batch_size = first["batch_size"]
    count = len(trials)
    pooled_in_order = [v for trial in trials for v in trial["samples_ms"]]
    pooled = sorted(pooled_in_order)
    samples = sum(trial["requests"] for trial in trials)
    trial_sorted = [sorted(trial["samples_ms"]) for trial in trials]

    def ms(value: float) -> float:
        return round(float(value), 4)

    def band(values: Sequence[float]) -> tuple[float, float]:
        _, low, high = positive_interval(values)
        return low, high

    def quantile(q: float) -> tuple[float | None, list[float] | None, str | None]:
        if not percentile_supported(samples, q) or (interval := percentile_interval(pooled, q)) is None:
            return None, None, not_enough_samples(samples, q)
        low, high = interval
        per_trial = [trial["requests"] for trial in trials]
        if count >= 2 and all(percentile_supported(n, q) for n in per_trial):
            t_low, t_high = band([percentile(values, q) for values in trial_sorted])
            low, high = min(low, t_low), max(high, t_high)
        value = percentile(pooled, q)
        return ms(value), [ms(min(low, value)), ms(max(high, value))], None

    p50 = percentile(pooled, 0.5)
    p50_interval = percentile_interval(pooled, 0.5)
    if p50_interval is None:
        # Under six samples no pair of ranks holds the median with 95 %: the range is all there is.
        p50_interval = (pooled[0], pooled[-1])
    trial_p50s = [percentile(values, 0.5) for values in trial_sorted]
    if count >= 2:
        t_low, t_high = band(trial_p50s)
        p50_interval = (min(p50_interval[0], t_low), max(p50_interval[1], t_high))
    p99, p99_ci, p99_note = quantile(0.99)
    p999, p999_ci, p999_note = quantile(0.999)

    rates = [_per_inference(trial) for trial in trials]
    trial_cpu = [cpu for cpu, _ in rates]
    trial_throughput = [rate for _, rate in rates]
    if count >= 2:
        cpu_ms, throughput = statistics.fmean(trial_cpu), statistics.fmean(trial_throughput)
        _, cpu_low, cpu_high = positive_interval(trial_cpu)
        _, tp_low, tp_high = positive_interval(trial_throughput)
        cpu_low, cpu_high = min(cpu_low, cpu_ms), max(cpu_high, cpu_ms)
        tp_low, tp_high = min(tp_low, throughput), max(tp_high, throughput)
        method = (
            f"percentiles: 95% order-statistic intervals over {samples:,} requests pooled from {count} trials, "
            f"widened to the spread between trials where larger; CPU time and throughput: mean of {count} trials "
            "(each a fresh process); the spread between trials is a 95% t-interval on the log scale, which keeps "
            "times and rates above zero"
        )
    else:
        window_cpu, window_rate = _window_rates(first)
        cpu_ms, throughput = trial_cpu[0], trial_throughput[0]
        cpu_low = cpu_high = cpu_ms
        tp_low = tp_high = throughput
        if len(window_cpu) >= 2:
            _, cpu_low, cpu_high = positive_interval(window_cpu)
            _, tp_low, tp_high = positive_interval(window_rate)
            cpu_low, cpu_high = min(cpu_low, cpu_ms), max(cpu_high, cpu_ms)
            tp_low, tp_high = min(tp_low, throughput), max(tp_high, throughput)
        method = (
            f"percentiles: 95% order-statistic intervals over {samples:,} requests from 1 trial; CPU time and "
            f"throughput: 95% t-interval over its {len(window_cpu)} windows, which can't see how much a fresh "
            "process varies (measure 3 trials or more for that)"
        )
    values = pooled
    mean = statistics.fmean(values)
    wall_s = sum(trial["wall_ns"] for trial in trials) / 1e9
    requests_per_second = samples / wall_s if wall_s else 0.0
    return {
        "batch_size": batch_size,
        "concurrency": first["concurrency"],
        "p50_ms": ms(p50),
        "p90_ms": ms(percentile(pooled, 0.90)),
        "p95_ms": ms(percentile(pooled, 0.95)),
        "p99_ms": p99,
        "p99_9_ms": p999,
        "mean_ms": ms(mean),
        "std_ms": ms(statistics.stdev(values) if len(values) > 1 else 0.0),
        "min_ms": ms(pooled[0]),
        "max_ms": ms(pooled[-1]),
        "throughput": round(throughput, 3),
        "requests_per_second": round(requests_per_second, 3),
        "requests": samples,
        "warmup_runs": sum(trial["warmup_runs"] for trial in trials),
        "windows": sum(len(trial["window_p50s_ms"]) for trial in trials),
        "window_p50s_ms": [p for trial in trials for p in trial["window_p50s_ms"]],
        "stable": all(trial["stable"] for trial in trials),
        "seconds": round(sum(trial["seconds"] for trial in trials), 3),
        "cpu_ms_per_request": round(cpu_ms * batch_size, 6),
        "sessions": first["sessions"],
        "samples_ms": [ms(v) for v in _thin(pooled_in_order, keep_samples)],
        "samples": samples,
        "trials": count,
        "p50_ci_ms": [ms(min(p50_interval[0], p50)), ms(max(p50_interval[1], p50))],
        "p99_ci_ms": p99_ci,
        "p99_note": p99_note,
        "p99_9_ci_ms": p999_ci,
        "p99_9_note": p999_note,
        "cpu_ms": round(cpu_ms, 6),
        "cpu_ci_ms": [round(max(cpu_low, 0.0), 6), round(cpu_high, 6)],
        "throughput_ci": [round(max(tp_low, 0.0), 3), round(tp_high, 3)],
        "trial_p50_ms": [ms(v) for v in trial_p50s],
        "trial_cpu_ms": [round(v, 6) for v in trial_cpu],
        "trial_throughput": [round(v, 3) for v in trial_throughput],
        "interval_method": method,
    }
