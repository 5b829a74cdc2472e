import { describe, expect, it } from "vitest";
import type { BenchmarkReport, OptimizeReport, ParityReport, RecommendReport, VariantParity } from "../api/reports";
import version from "../test/fixtures/mlp-version.json";
import { accuracyDb, EXACT_DB, formatDb, paretoFront, searchRecord, tradeoffPoints } from "./tradeoff";

// A real report set (an MLP on x86-cpu, parity from before ratios were recorded).
const reports = version.reports as unknown as {
  optimize: Record<string, OptimizeReport>;
  parity: Record<string, ParityReport>;
  benchmark: Record<string, BenchmarkReport>;
  recommend: Record<string, RecommendReport>;
};
const profile = "x86-cpu";

function output(fields: Record<string, unknown>) {
  return { name: "y", passed: true, max_abs_error: 0.5, max_rel_error: 0.1, cosine: 0.99, ...fields };
}

describe("Pareto front", () => {
  it("keeps the points nothing beats on both axes, slowest first", () => {
    const points = [
      { key: "a", x: 1, y: 60 }, // the original: exact, 1x
      { key: "b", x: 2, y: 30 },
      { key: "c", x: 1.5, y: 20 }, // beaten by b on both
      { key: "d", x: 3, y: 5 },
      { key: "e", x: 0.9, y: 60 }, // slower than a, no more accurate
      { key: "f", x: 2, y: 25 }, // same speed as b, less accurate
    ];
    expect(paretoFront(points).map((p) => p.key)).toEqual(["a", "b", "d"]);
  });

  it("keeps one of equal points and ignores points that are not numbers", () => {
    const points = [
      { key: "a", x: 2, y: 10 },
      { key: "b", x: 2, y: 10 },
      { key: "c", x: Number.NaN, y: 99 },
    ];
    expect(paretoFront(points).map((p) => p.key)).toEqual(["a"]);
    expect(paretoFront([])).toEqual([]);
  });
});

describe("accuracy in dB", () => {
  it("takes the worst output: its worst slice, else its whole SNR; within max abs error is exact", () => {
    const check: VariantParity = {
      passed: false,
      reasons: [],
      outputs: [
        output({ worst_slice_sqnr_db: 4.5, sqnr_db: 30 }),
        output({ sqnr_db: 12 }),
        output({ max_abs_error: 0.0001 }),
      ],
    };
    expect(accuracyDb(check)).toBe(4.5);
    expect(accuracyDb({ ...check, outputs: [output({ max_abs_error: 0 })] })).toBe(EXACT_DB);
    expect(formatDb(EXACT_DB)).toBe("exact");
  });

  it("counts a detection head's missed detections, and has no score without a ratio", () => {
    const detection = { recall: 0.9, precision: 1 } as unknown as VariantParity["outputs"][number]["detection"];
    const check: VariantParity = { passed: true, reasons: [], outputs: [output({ sqnr_db: 40, detection })] };
    expect(accuracyDb(check)).toBeCloseTo(20, 5); // 10 % missed: 20 dB
    expect(accuracyDb({ passed: true, reasons: [], outputs: [output({})] })).toBeNull();
    expect(accuracyDb({ passed: false, reasons: [], outputs: [], error: "did not run" })).toBeNull();
  });
});

describe("variants as trade-off points", () => {
  it("puts the original at 1x and says why a variant is not on the plot", () => {
    const t = tradeoffPoints(
      reports.optimize[profile],
      reports.parity[profile],
      reports.benchmark[profile],
      reports.recommend[profile],
    );
    expect(t.statistic).toBe("p50_ms");
    const byName = Object.fromEntries(t.points.map((p) => [p.name, p]));
    expect(byName.original).toMatchObject({ speedup: 1, accuracyDb: EXACT_DB, baseline: true });
    // 0.011 ms for the original, 0.007 ms for ort-opt-all
    expect(byName["ort-opt-all"]?.speedup).toBeCloseTo(0.011 / 0.007, 6);
    expect(byName["ort-opt-all"]).toMatchObject({ accuracyDb: EXACT_DB, passed: true, recommended: true });
    expect(t.excluded).toEqual([
      { name: "ort-int8-dynamic", why: "its accuracy check has no SNR" },
      { name: "ov-ir-fp32", why: "not benchmarked (it failed to run)" },
      { name: "ov-ir-fp16", why: "not benchmarked (it failed to run)" },
      { name: "ov-ir-int8-weights", why: "not benchmarked (it failed to run)" },
    ]);
  });

  it("has no points without a benchmarked original", () => {
    const t = tradeoffPoints(reports.optimize[profile], reports.parity[profile], undefined);
    expect(t.points).toEqual([]);
  });
});

describe("a variant's search record", () => {
  it("reads every candidate and ignores what is not a record", () => {
    const record = searchRecord("ort-int8-static-mixed", {
      search: {
        budget_s: 120,
        max_candidates: 300,
        spent_s: 2.5,
        activations: 11,
        float_unit: "activations",
        activations_measured: 3,
        stopped: "budget",
        stopped_because: "the time budget ran out",
        candidates: [
          {
            label: "full INT8",
            stage: "full-int8",
            float_activations: 0,
            float_share: 0,
            score_db: -23.4,
            passed: false,
            chosen: false,
          },
          {
            label: "joined in float",
            stage: "sensitivity",
            float_activations: 2,
            float_share: 0.18,
            score_db: 23.2,
            passed: true,
            chosen: true,
          },
          "garbage",
        ],
      },
    });
    expect(record?.stopped).toBe("budget");
    expect(record?.candidates.map((c) => [c.label, c.floatCount, c.scoreDb, c.passed, c.chosen])).toEqual([
      ["full INT8", 0, -23.4, false, false],
      ["joined in float", 2, 23.2, true, true],
    ]);
    expect(searchRecord("x", { search: "nope" })).toBeNull();
    expect(searchRecord("x", undefined)).toBeNull();
  });
});
