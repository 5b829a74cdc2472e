import { describe, expect, it } from "vitest";
import type { BenchmarkPoint, BenchmarkReport } from "../api/reports";
import evidence from "../test/fixtures/evidence-reports.json";
import version from "../test/fixtures/mlp-version.json";
import {
  BASELINE,
  failedRuns,
  figureRows,
  histogram,
  latencyByBatch,
  measuredRuns,
  measuredSweep,
  percentileRows,
  samplesAt,
  throughputByConcurrency,
} from "./series";

// A real benchmark report (an MLP on x86-cpu: batch 1 and 8, concurrency 1 and 4; the
// OpenVINO IR variants could not be measured), raw samples shortened to 60 per point.
const report = (version.reports.benchmark as unknown as Record<string, BenchmarkReport>)["x86-cpu"] as BenchmarkReport;

describe("benchmark report -> plot series", () => {
  it("lists the original and every measured variant, and why the others have no numbers", () => {
    expect(measuredRuns(report).map((r) => r.name)).toEqual([
      BASELINE,
      "ort-int8-dynamic",
      "ort-opt-all",
      "ort-opt-basic",
      "ort-opt-extended",
    ]);
    const failed = failedRuns(report);
    expect(failed.map((f) => f.name)).toEqual(["ov-ir-fp16", "ov-ir-fp32", "ov-ir-int8-weights"]);
    expect(failed[0]?.reason).toMatch(/not an ONNX file/);
  });

  it("finds the measured sweep", () => {
    expect(measuredSweep(report)).toEqual({ batchSizes: [1, 8], concurrencies: [1, 4] });
    expect(measuredSweep(undefined)).toEqual({ batchSizes: [], concurrencies: [] });
  });

  it("takes the five percentiles per variant at one point, fastest p99 first", () => {
    const rows = percentileRows(report, 1, 1);
    expect(rows).toHaveLength(5);
    const p99s = rows.map((r) => r.values.p99_ms as number);
    expect([...p99s].sort((a, b) => a - b)).toEqual(p99s);
    const original = rows.find((r) => r.baseline);
    const point = report.baseline?.points?.find((p) => p.batch_size === 1 && p.concurrency === 1);
    expect(original?.values).toEqual({
      p50_ms: point?.p50_ms,
      p90_ms: point?.p90_ms,
      p95_ms: point?.p95_ms,
      p99_ms: point?.p99_ms,
      p99_9_ms: point?.p99_9_ms,
    });
    for (const row of rows) {
      const v = row.values;
      expect(
        v.p50_ms! <= v.p90_ms! && v.p90_ms! <= v.p95_ms! && v.p95_ms! <= v.p99_ms! && v.p99_ms! <= v.p99_9_ms!,
      ).toBe(true);
    }
    expect(percentileRows(report, 32, 1)).toEqual([]);
  });

  it("draws latency against batch size at one concurrency", () => {
    const series = latencyByBatch(report, 4, "p50_ms");
    expect(series.map((s) => s.name)).toEqual([
      BASELINE,
      "ort-int8-dynamic",
      "ort-opt-all",
      "ort-opt-basic",
      "ort-opt-extended",
    ]);
    const basic = series.find((s) => s.name === "ort-opt-basic");
    const points = report.variants["ort-opt-basic"]?.points?.filter((p) => p.concurrency === 4) ?? [];
    expect(basic?.points).toEqual(points.map((p) => ({ x: p.batch_size, y: p.p50_ms })).sort((a, b) => a.x - b.x));
    expect(basic?.points.map((p) => p.x)).toEqual([1, 8]);
  });

  it("draws throughput against concurrency at one batch size", () => {
    const series = throughputByConcurrency(report, 8);
    expect(series).toHaveLength(5);
    for (const s of series) {
      expect(s.points.map((p) => p.x)).toEqual([1, 4]);
      expect(s.points.every((p) => p.y > 0)).toBe(true);
    }
    expect(series[0]?.baseline).toBe(true);
  });

  it("bins raw samples, logarithmically when the tail is long", () => {
    const samples = samplesAt(report, "ort-opt-all", 1, 1);
    expect(samples).toHaveLength(60);
    const h = histogram(samples, 20);
    expect(h.total).toBe(60);
    expect(h.bins.reduce((n, b) => n + b.count, 0)).toBe(60);
    expect(h.bins[0]?.x0).toBe(Math.min(...samples));
    expect(h.bins[h.bins.length - 1]?.x1).toBeCloseTo(Math.max(...samples));
    expect(h.log).toBe(Math.max(...samples) / Math.min(...samples) > 20);
    // equal widths on a log axis
    if (h.log) {
      const ratios = h.bins.map((b) => b.x1 / b.x0);
      expect(Math.max(...ratios) / Math.min(...ratios)).toBeCloseTo(1, 6);
    }
  });

  it("bins a narrow distribution linearly and a constant one into one bar", () => {
    const linear = histogram([1, 1.5, 2, 2, 2.5, 3], 4);
    expect(linear.log).toBe(false);
    expect(linear.bins.map((b) => b.count)).toEqual([1, 1, 2, 2]);
    expect(histogram([2, 2, 2]).bins).toEqual([{ x0: 1.9, x1: 2.1, count: 3 }]);
    expect(histogram([]).bins).toEqual([]);
    expect(samplesAt(report, "no-such-variant", 1, 1)).toEqual([]);
  });
});

// The same kind of report measured with intervals (workers/engine/measure.py combine_trials):
// the original in 3 trials with 1,050 requests, "ort-opt-all" in 1 trial with 180 (no p99).
const withIntervals = evidence.benchmark as unknown as BenchmarkReport;

describe("benchmark figures with their intervals", () => {
  it("carries each percentile's interval, and the note where a percentile is missing", () => {
    const rows = percentileRows(withIntervals, 1, 1);
    const original = rows.find((r) => r.baseline);
    const point = withIntervals.baseline?.points?.[0];
    expect(original?.intervals).toEqual({ p50_ms: point?.p50_ci_ms, p99_ms: point?.p99_ci_ms });
    expect(original?.notes).toEqual({ p99_9_ms: point?.p99_9_note });
    const short = rows.find((r) => r.name === "ort-opt-all");
    expect(short?.values.p99_ms).toBeNull();
    expect(short?.notes.p99_ms).toBe("not enough samples (180) for p99: it needs at least 1,000");
    // runs with a p99 first; among runs without one, the faster p50 first
    expect(rows.map((r) => r.name)).toEqual(["original", "ort-opt-all"]);
    const noP99 = structuredClone(withIntervals);
    const first = noP99.baseline?.points?.[0] as BenchmarkPoint;
    Object.assign(first, { p99_ms: null, p50_ms: 1 });
    expect(percentileRows(noP99, 1, 1).map((r) => r.name)).toEqual(["ort-opt-all", "original"]);
  });

  it("puts the intervals on the plotted points, and none on an older report's", () => {
    const [original] = latencyByBatch(withIntervals, 1, "p99_ms");
    const point = withIntervals.baseline?.points?.[0];
    expect(original?.points).toEqual([
      { x: 1, y: point?.p99_ms, low: point?.p99_ci_ms?.[0], high: point?.p99_ci_ms?.[1] },
    ]);
    const throughput = throughputByConcurrency(withIntervals, 1).find((s) => s.name === "ort-opt-all");
    expect(throughput?.points[0]?.low).toBe(withIntervals.variants["ort-opt-all"]?.points?.[0]?.throughput_ci?.[0]);
    for (const series of latencyByBatch(report, 1)) {
      for (const p of series.points) expect("low" in p || "high" in p).toBe(false);
    }
  });

  it("gives the table's figures: samples, trials, CPU time per inference and throughput with intervals", () => {
    const rows = figureRows(withIntervals, 1, 1);
    const original = rows.find((r) => r.baseline);
    const point = withIntervals.baseline?.points?.[0];
    expect(original).toMatchObject({
      samples: 1050,
      trials: 3,
      cpu: { value: point?.cpu_ms, interval: point?.cpu_ci_ms },
      throughput: { value: point?.throughput, interval: point?.throughput_ci },
      method: point?.interval_method,
    });
    // an older report: the request count, one trial, CPU time per request over the batch size
    const legacy = figureRows(report, 8, 1).find((r) => r.name === "ort-opt-all");
    const legacyPoint = report.variants["ort-opt-all"]?.points?.find((p) => p.batch_size === 8 && p.concurrency === 1);
    expect(legacy).toMatchObject({ samples: legacyPoint?.requests, trials: 1, method: null });
    expect(legacy?.cpu.value).toBeCloseTo((legacyPoint?.cpu_ms_per_request as number) / 8, 9);
    expect(legacy?.cpu.interval).toBeNull();
    expect(legacy?.p50.interval).toBeNull();
  });
});
