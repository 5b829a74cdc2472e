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

export interface PercentileRow {
  name: string;
  baseline: boolean;
  values: Record<PercentileKey, number | null>;
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
    for (const { key } of PERCENTILES) {
      const value = point[key];
      values[key] = typeof value === "number" && Number.isFinite(value) ? value : null;
    }
    rows.push({ name, baseline, values });
  }
  return rows.sort(
    (a, b) => (a.values.p99_ms ?? Infinity) - (b.values.p99_ms ?? Infinity) || a.name.localeCompare(b.name),
  );
}

export interface XY {
  x: number;
  y: number;
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
    return p.concurrency === concurrency && typeof value === "number" ? { x: p.batch_size, y: value } : null;
  });
}

/** Throughput (inferences per second) against concurrent callers, at one batch size. */
export function throughputByConcurrency(report: BenchmarkReport | undefined, batch: number): Series[] {
  return seriesOf(report, (p) => (p.batch_size === batch ? { x: p.concurrency, y: p.throughput } : null));
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

/** The value below which `q` (0..1) of the samples fall (nearest rank), for marking p50/p99. */
export function quantile(samples: number[], q: number): number | null {
  const sorted = samples.filter(Number.isFinite).sort((a, b) => a - b);
  if (!sorted.length) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}
