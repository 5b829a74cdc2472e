// The speed/accuracy trade-off of a profile's variants, and the candidates a quantization search
// judged: pure functions from the stored reports (optimize, parity, benchmark, recommend) to
// the points the trade-off plots draw (src/features/Tradeoff.tsx), tested in tradeoff.test.ts.
import type {
  BenchmarkReport,
  OptimizeReport,
  OutputParity,
  ParityReport,
  RecommendReport,
  VariantParity,
} from "../api/reports";
import { BASELINE, pointAt } from "./series";

/** What the engine's score counts an output matching within max abs error as (mixed_precision._EXACT_DB). */
export const EXACT_DB = 200;
/** Accuracy above this is drawn at it: the difference between 60 dB and an exact match can't be seen in use. */
export const ACCURACY_CAP_DB = 60;

export interface TradeoffPoint {
  name: string;
  /** Times faster than the original (above 1 is faster). */
  speedup: number;
  /** The worst output's score in dB (EXACT_DB for an exact match). */
  accuracyDb: number;
  passed: boolean;
  baseline: boolean;
  /** The variant the recommendation picked. */
  recommended: boolean;
}

export interface Excluded {
  name: string;
  why: string;
}

export interface Tradeoff {
  points: TradeoffPoint[];
  /** Variants that are not on the plot, and why. */
  excluded: Excluded[];
  /** The benchmark figure the speed-up compares. */
  statistic: "cpu_ms" | "p50_ms";
  statisticLabel: string;
}

function finite(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function outputScore(output: OutputParity, maxAbsError: number): number | null {
  const maxAbs = finite(output.max_abs_error);
  if (maxAbs !== null && maxAbs <= maxAbsError) return EXACT_DB;
  const scores: number[] = [];
  const sqnr = finite(output.worst_slice_sqnr_db) ?? finite(output.sqnr_db);
  if (sqnr === null) return null;
  scores.push(sqnr);
  const rates = [output.detection?.recall, output.detection?.precision].map(finite).filter((r) => r !== null);
  if (rates.length) scores.push(-20 * Math.log10(Math.max(1 - Math.min(...rates), 1e-4)));
  return Math.min(...scores);
}

/**
 * How far a variant's worst output is from the original, in dB (higher is better), as the
 * engine's mixed-precision search scores its candidates (workers/engine/mixed_precision.py
 * score_db): per output, the lowest slice signal-to-noise ratio, else the whole output's; an
 * output within max abs error counts as exact; a detection head also counts the share of
 * detections it misses or adds. Null where an output has no ratio (parity results stored
 * before ratios were recorded, or an output that could not be compared).
 */
export function accuracyDb(check: VariantParity, maxAbsError = 1e-3): number | null {
  if (check.error || !check.outputs?.length) return null;
  let worst = Infinity;
  for (const output of check.outputs) {
    const score = outputScore(output, maxAbsError);
    if (score === null) return null;
    worst = Math.min(worst, score);
  }
  return worst;
}

/** "12.3 dB", or "exact" for an output that matches within max abs error. */
export function formatDb(value: number | null): string {
  if (value === null) return "—";
  if (value >= EXACT_DB) return "exact";
  return `${value.toFixed(1)} dB`;
}

/**
 * The profile's variants as points: speed-up over the original at batch 1, concurrency 1 (on
 * CPU time per inference where the recommendation ranked by it, else the wall-clock p50) and
 * accuracy (`accuracyDb`), with the original at 1x and exact. A variant without a benchmark
 * point, a parity verdict or a score is listed in `excluded` with the reason.
 */
export function tradeoffPoints(
  optimize: OptimizeReport | undefined,
  parity: ParityReport | undefined,
  benchmark: BenchmarkReport | undefined,
  recommend?: RecommendReport,
): Tradeoff {
  const statistic = recommend?.statistic === "cpu_ms" ? "cpu_ms" : "p50_ms";
  const statisticLabel = statistic === "cpu_ms" ? "CPU time per inference" : "p50 latency";
  const result: Tradeoff = { points: [], excluded: [], statistic, statisticLabel };
  const basePoint = benchmark?.baseline ? pointAt(benchmark.baseline, 1, 1) : undefined;
  const baseValue = basePoint ? finite(basePoint[statistic]) : null;
  if (!optimize || baseValue === null || baseValue <= 0) return result;
  const maxAbsError = finite(parity?.tolerance?.max_abs_error) ?? 1e-3;
  result.points.push({
    name: BASELINE,
    speedup: 1,
    accuracyDb: EXACT_DB,
    passed: true,
    baseline: true,
    recommended: false,
  });
  for (const variant of optimize.variants) {
    const run = benchmark?.variants?.[variant.name];
    const point = run ? pointAt(run, 1, 1) : undefined;
    const value = point ? finite(point[statistic]) : null;
    const check = parity?.variants?.[variant.name];
    const accuracy = check ? accuracyDb(check, maxAbsError) : null;
    let why = "";
    if (value === null || value <= 0) why = run?.error ? "not benchmarked (it failed to run)" : "not benchmarked";
    else if (!check) why = "no accuracy check";
    else if (accuracy === null) why = check.error ? "its accuracy check failed" : "its accuracy check has no SNR";
    if (why) {
      result.excluded.push({ name: variant.name, why });
      continue;
    }
    result.points.push({
      name: variant.name,
      speedup: baseValue / (value as number),
      accuracyDb: accuracy as number,
      passed: Boolean(check?.passed),
      baseline: false,
      recommended: recommend?.winner?.name === variant.name,
    });
  }
  return result;
}

/**
 * The points no other point beats on both counts (at least as far right and as high, and
 * strictly better on one): the trade-off curve, fastest last. Bigger x and bigger y are better.
 */
export function paretoFront<T extends { x: number; y: number }>(points: T[]): T[] {
  const usable = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const front = usable.filter(
    (p) => !usable.some((q) => q !== p && q.x >= p.x && q.y >= p.y && (q.x > p.x || q.y > p.y)),
  );
  // Equal points are both on the front; keep one of each.
  const seen = new Set<string>();
  return front
    .filter((p) => {
      const key = `${p.x},${p.y}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort((a, b) => a.x - b.x || b.y - a.y);
}

// ---- a variant's search -----------------------------------------------------------------

export interface SearchCandidate {
  label: string;
  stage: string;
  floatCount: number | null;
  floatShare: number | null;
  scoreDb: number | null;
  passed: boolean;
  chosen: boolean;
}

export interface SearchRecord {
  variant: string;
  budgetSeconds: number | null;
  maxCandidates: number | null;
  spentSeconds: number | null;
  /** What stayed in float is counted in: "activations" (onnxruntime) or "quantizers" (NNCF). */
  unit: string;
  total: number | null;
  measured: number | null;
  stopped: string;
  stoppedBecause: string;
  probe: string;
  candidates: SearchCandidate[];
}

function text(value: unknown): string {
  return typeof value === "string" ? value : "";
}

/** A variant's `options.search` (workers/engine/mixed_precision.py MixedPrecisionResult.record), or null. */
export function searchRecord(variant: string, options: Record<string, unknown> | undefined): SearchRecord | null {
  const raw = options?.search;
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return null;
  const search = raw as Record<string, unknown>;
  const candidates = Array.isArray(search.candidates) ? search.candidates : [];
  return {
    variant,
    budgetSeconds: finite(search.budget_s),
    maxCandidates: finite(search.max_candidates),
    spentSeconds: finite(search.spent_s),
    unit: text(search.float_unit) || "activations",
    total: finite(search.activations),
    measured: finite(search.activations_measured),
    stopped: text(search.stopped),
    stoppedBecause: text(search.stopped_because) || text(search.stopped),
    probe: text(search.probe),
    candidates: candidates
      .filter((c): c is Record<string, unknown> => Boolean(c) && typeof c === "object")
      .map((c) => ({
        label: text(c.label),
        stage: text(c.stage),
        floatCount: finite(c.float_activations),
        floatShare: finite(c.float_share),
        scoreDb: finite(c.score_db),
        passed: c.passed === true,
        chosen: c.chosen === true,
      })),
  };
}

/** Every variant's search record on the profile, in the optimize report's order. */
export function searchRecords(optimize: OptimizeReport | undefined): SearchRecord[] {
  return (optimize?.variants ?? [])
    .map((v) => searchRecord(v.name, v.options))
    .filter((r): r is SearchRecord => r !== null);
}

/** True when a search was cut short by its budget (time or candidates). */
export function outOfBudget(record: SearchRecord): boolean {
  return record.stopped === "budget" || record.stopped === "candidates";
}
