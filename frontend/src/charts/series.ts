// Benchmark reports -> the series the plots draw. Pure functions, tested on real report shapes
// (src/charts/series.test.ts); the chart components only place what these return.
import type { BenchmarkPoint, BenchmarkReport, BenchmarkRun } from "../api/reports";

export const BASELINE = "original";

export const PERCENTILES = [
  { key: "p50_ms", label: "p50" },
  { key: "p90_ms", label: "p90" },
  { key: "p95_ms", label: "p95" },
  { key: "p99_ms", label: "p99" },
  { key: "p99_9_ms", label: "p99.9" },
] as const;

export type PercentileKey = (typeof PERCENTILES)[number]["key"];

export interface NamedRun {
  name: string;
  run: BenchmarkRun;
  baseline: boolean;
}

/** The original model (as "original") and every variant that has measured points. */
export function measuredRuns(report: BenchmarkReport | undefined): NamedRun[] {
  if (!report) return [];
  const runs: NamedRun[] = [];
  if (report.baseline?.points?.length) runs.push({ name: BASELINE, run: report.baseline, baseline: true });
  for (const [name, run] of Object.entries(report.variants ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    if (run.points?.length) runs.push({ name, run, baseline: false });
  }
  return runs;
}

/** Variants that were benchmarked but produced no numbers, with the reason. */
export function failedRuns(report: BenchmarkReport | undefined): { name: string; reason: string }[] {
  if (!report) return [];
  return Object.entries(report.variants ?? {})
    .filter(([, run]) => !run.points?.length)
    .map(([name, run]) => ({ name, reason: run.error || "No measurements were recorded." }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The batch sizes and concurrencies that were actually measured, ascending. */
export function measuredSweep(report: BenchmarkReport | undefined): { batchSizes: number[]; concurrencies: number[] } {
  const batches = new Set<number>();
  const concurrencies = new Set<number>();
  for (const { run } of measuredRuns(report)) {
    for (const point of run.points ?? []) {
      batches.add(point.batch_size);
      concurrencies.add(point.concurrency);
    }
  }
  const ascending = (a: number, b: number) => a - b;
  return { batchSizes: [...batches].sort(ascending), concurrencies: [...concurrencies].sort(ascending) };
}

export function pointAt(run: BenchmarkRun, batch: number, concurrency: number): BenchmarkPoint | undefined {
  return run.points?.find((p) => p.batch_size === batch && p.concurrency === concurrency);
}

export type Interval = [number, number];

function finite(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function validInterval(value: unknown): Interval | null {
  if (!Array.isArray(value) || value.length !== 2) return null;
  const low = finite(value[0]);
  const high = finite(value[1]);
  return low !== null && high !== null && low <= high ? [low, high] : null;
}

// The engine gives intervals for these percentiles only (p90 and p95 are reported bare).
const INTERVAL_KEYS: Partial<Record<PercentileKey, "p50_ci_ms" | "p99_ci_ms" | "p99_9_ci_ms">> = {
  p50_ms: "p50_ci_ms",
  p99_ms: "p99_ci_ms",
  p99_9_ms: "p99_9_ci_ms",
};
const NOTE_KEYS: Partial<Record<PercentileKey, "p99_note" | "p99_9_note">> = {
  p99_ms: "p99_note",
  p99_9_ms: "p99_9_note",
};

/** A percentile's 95% interval, or null where the report has none (older reports, p90, p95). */
export function percentileInterval(point: BenchmarkPoint, key: PercentileKey): Interval | null {
  const field = INTERVAL_KEYS[key];
  return field ? validInterval(point[field]) : null;
}

/** Why a percentile is missing ("not enough samples (180) for p99: ..."), or null. */
export function percentileNote(point: BenchmarkPoint, key: PercentileKey): string | null {
  const field = NOTE_KEYS[key];
  const note = field ? point[field] : null;
  return typeof note === "string" && note ? note : null;
}

export interface PercentileRow {
  name: string;
  baseline: boolean;
  values: Record<PercentileKey, number | null>;
  /** 95% intervals, for the percentiles the report gives one for. */
  intervals: Partial<Record<PercentileKey, Interval>>;
  /** Why a percentile is null, where the report says. */
  notes: Partial<Record<PercentileKey, string>>;
}

/** Fastest first: by p99, by p50 where p99 is missing (too few samples), then by name. */
function byLatency(a: PercentileRow, b: PercentileRow): number {
  const p99 = (a.values.p99_ms ?? Infinity) - (b.values.p99_ms ?? Infinity);
  if (p99) return p99; // NaN (both missing) falls through too
  const p50 = (a.values.p50_ms ?? Infinity) - (b.values.p50_ms ?? Infinity);
  return p50 || a.name.localeCompare(b.name);
}

/** Latency percentiles per variant at one batch size and concurrency, fastest p99 first. */
export function percentileRows(
  report: BenchmarkReport | undefined,
  batch: number,
  concurrency: number,
): PercentileRow[] {
  const rows: PercentileRow[] = [];
  for (const { name, run, baseline } of measuredRuns(report)) {
    const point = pointAt(run, batch, concurrency);
    if (!point) continue;
    const values = {} as Record<PercentileKey, number | null>;
    const intervals: PercentileRow["intervals"] = {};
    const notes: PercentileRow["notes"] = {};
    for (const { key } of PERCENTILES) {
      values[key] = finite(point[key]);
      const interval = values[key] === null ? null : percentileInterval(point, key);
      if (interval) intervals[key] = interval;
      const note = values[key] === null ? percentileNote(point, key) : null;
      if (note) notes[key] = note;
    }
    rows.push({ name, baseline, values, intervals, notes });
  }
  return rows.sort(byLatency);
}

/** A figure with its 95% interval (null: the report has none) and why it is missing, if it is. */
export interface Estimate {
  value: number | null;
  interval: Interval | null;
  note: string | null;
}

/** One run's figures at one batch size and concurrency, each with its confidence. */
export interface FigureRow {
  name: string;
  baseline: boolean;
  p50: Estimate;
  p99: Estimate;
  p99_9: Estimate;
  /** CPU time per inference (one sample), in ms. */
  cpu: Estimate;
  throughput: Estimate;
  /** Timed requests the percentiles rest on; trials: fresh processes they came from. */
  samples: number | null;
  trials: number | null;
  method: string | null;
}

function estimate(point: BenchmarkPoint, key: PercentileKey): Estimate {
  const value = finite(point[key]);
  return {
    value,
    interval: value === null ? null : percentileInterval(point, key),
    note: value === null ? percentileNote(point, key) : null,
  };
}

/**
 * The figures the benchmark table shows, in the percentile chart's order. Reports from before
 * intervals existed have no `samples`, `trials`, `cpu_ms` or intervals: they show the request
 * count, one trial (each variant was measured in one process then), CPU time per request
 * divided by the batch size, and no interval.
 */
export function figureRows(report: BenchmarkReport | undefined, batch: number, concurrency: number): FigureRow[] {
  const order = percentileRows(report, batch, concurrency).map((r) => r.name);
  const rows: FigureRow[] = [];
  for (const { name, run, baseline } of measuredRuns(report)) {
    const point = pointAt(run, batch, concurrency);
    if (!point) continue;
    const legacyCpu = finite(point.cpu_ms_per_request);
    const cpu = finite(point.cpu_ms) ?? (legacyCpu === null ? null : legacyCpu / Math.max(1, point.batch_size));
    rows.push({
      name,
      baseline,
      p50: estimate(point, "p50_ms"),
      p99: estimate(point, "p99_ms"),
      p99_9: estimate(point, "p99_9_ms"),
      cpu: { value: cpu, interval: finite(point.cpu_ms) === null ? null : validInterval(point.cpu_ci_ms), note: null },
      throughput: { value: finite(point.throughput), interval: validInterval(point.throughput_ci), note: null },
      samples: finite(point.samples) ?? finite(point.requests),
      trials: finite(point.trials) ?? 1,
      method: point.interval_method || null,
    });
  }
  return rows.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
}

export interface XY {
  x: number;
  y: number;
  /** The 95% interval of y, where the report gives one. */
  low?: number;
  high?: number;
}

function withInterval(xy: XY, interval: Interval | null): XY {
  return interval ? { ...xy, low: interval[0], high: interval[1] } : xy;
}

export interface Series {
  name: string;
  baseline: boolean;
  points: XY[];
}

function seriesOf(report: BenchmarkReport | undefined, pick: (point: BenchmarkPoint) => XY | null): Series[] {
  const out: Series[] = [];
  for (const { name, run, baseline } of measuredRuns(report)) {
    const points = (run.points ?? [])
      .map(pick)
      .filter((p): p is XY => p !== null && Number.isFinite(p.x) && Number.isFinite(p.y))
      .sort((a, b) => a.x - b.x);
    if (points.length) out.push({ name, baseline, points });
  }
  return out;
}

/** Latency (a percentile, default p99) against batch size, at one concurrency. */
export function latencyByBatch(
  report: BenchmarkReport | undefined,
  concurrency: number,
  key: PercentileKey = "p99_ms",
): Series[] {
  return seriesOf(report, (p) => {
    const value = p[key];
    return p.concurrency === concurrency && typeof value === "number"
      ? withInterval({ x: p.batch_size, y: value }, percentileInterval(p, key))
      : null;
  });
}

/** Throughput (inferences per second) against concurrent callers, at one batch size. */
export function throughputByConcurrency(report: BenchmarkReport | undefined, batch: number): Series[] {
  return seriesOf(report, (p) =>
    p.batch_size === batch && typeof p.throughput === "number"
      ? withInterval({ x: p.concurrency, y: p.throughput }, validInterval(p.throughput_ci))
      : null,
  );
}

export function samplesAt(
  report: BenchmarkReport | undefined,
  name: string,
  batch: number,
  concurrency: number,
): number[] {
  const run = name === BASELINE ? report?.baseline : report?.variants?.[name];
  const point = run ? pointAt(run, batch, concurrency) : undefined;
  return (point?.samples_ms ?? []).filter((v) => Number.isFinite(v) && v >= 0);
}

export interface Bin {
  x0: number;
  x1: number;
  count: number;
}

export interface Histogram {
  bins: Bin[];
  log: boolean;
  total: number;
  min: number;
  max: number;
}

/**
 * Raw latency samples into bins. Latencies are long-tailed (a p50 of 40 µs beside a 30 ms
 * outlier), so when the largest sample is more than 20x the smallest the bins are spaced
 * logarithmically: equal widths on a log axis, and the tail stays visible.
 */
export function histogram(samples: number[], binCount = 30): Histogram {
  const values = samples.filter((v) => Number.isFinite(v) && v >= 0);
  if (!values.length) return { bins: [], log: false, total: 0, min: 0, max: 0 };
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (min === max) {
    const half = min === 0 ? 0.5 : min * 0.05;
    return {
      bins: [{ x0: min - half, x1: max + half, count: values.length }],
      log: false,
      total: values.length,
      min,
      max,
    };
  }
  const log = min > 0 && max / min > 20;
  const count = Math.max(1, Math.min(binCount, values.length));
  const edges: number[] = [];
  for (let i = 0; i <= count; i += 1) {
    edges.push(log ? min * Math.pow(max / min, i / count) : min + ((max - min) * i) / count);
  }
  const bins: Bin[] = edges.slice(0, -1).map((x0, i) => ({ x0, x1: edges[i + 1] as number, count: 0 }));
  for (const v of values) {
    const position = log ? Math.log(v / min) / Math.log(max / min) : (v - min) / (max - min);
    const index = Math.min(count - 1, Math.max(0, Math.floor(position * count)));
    (bins[index] as Bin).count += 1;
  }
  return { bins, log, total: values.length, min, max };
}
