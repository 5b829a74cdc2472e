import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type {
  BenchmarkReport,
  OptimizeReport,
  ParityReport,
  QuantizationSearch,
  RecommendReport,
} from "../api/reports";
import { Tradeoff } from "./Tradeoff";

// Three variants around an original at 1.0 ms p50: one fast but out of tolerance, one on the
// front, one beaten on both speed and accuracy. The mixed one's search ran out of time.
const search: QuantizationSearch = {
  budget_s: 1,
  max_candidates: 300,
  spent_s: 1.2,
  activations: 10,
  float_unit: "activations",
  activations_measured: 2,
  stopped: "budget",
  stopped_because: "the time budget ran out",
  probe: "8 calibration samples",
  candidates: [
    {
      label: "full INT8",
      stage: "full-int8",
      float_activations: 0,
      float_share: 0,
      score_db: 2,
      passed: false,
      chosen: false,
    },
    {
      label: "scores in float (+1 with it)",
      stage: "sensitivity",
      float_activations: 2,
      float_share: 0.2,
      score_db: 25,
      passed: true,
      chosen: true,
    },
    {
      label: "boxes in float",
      stage: "sensitivity",
      float_activations: 1,
      float_share: 0.1,
      score_db: 2.5,
      passed: false,
      chosen: false,
    },
  ],
};

function variant(name: string, options: Record<string, unknown> = {}) {
  return { name, backend: "onnxruntime", format: "onnx", precision: "int8", pass_name: "p", options };
}

function point(p50: number) {
  return { batch_size: 1, concurrency: 1, p50_ms: p50, p99_ms: p50 * 2, throughput: 1000 / p50 };
}

function check(passed: boolean, sqnr: number) {
  return {
    passed,
    reasons: [],
    outputs: [{ name: "y", passed, max_abs_error: 0.5, max_rel_error: 0.1, cosine: 0.99, sqnr_db: sqnr }],
  };
}

const optimize: OptimizeReport = {
  profile: "x86-cpu",
  variants: [
    variant("ort-int8-static-qdq"),
    variant("ort-int8-static-mixed", { search }),
    variant("ort-int8-dynamic"),
    variant("ov-ir-fp32"),
  ],
};
const benchmark: BenchmarkReport = {
  profile: "x86-cpu",
  baseline: { points: [point(1.0)] },
  variants: {
    "ort-int8-static-qdq": { points: [point(1 / 3)] },
    "ort-int8-static-mixed": { points: [point(0.5)] },
    "ort-int8-dynamic": { points: [point(1 / 1.5)] },
    "ov-ir-fp32": { points: [], error: "could not load" },
  },
};
const parity: ParityReport = {
  profile: "x86-cpu",
  variants: {
    "ort-int8-static-qdq": check(false, 2),
    "ort-int8-static-mixed": check(true, 25),
    "ort-int8-dynamic": check(true, 20),
  },
};
const recommend = {
  profile: "x86-cpu",
  objective: "p99_latency_batch1",
  winner: { name: "ort-int8-static-mixed" },
  runner_up: null,
  others: [],
  summary: "",
} as unknown as RecommendReport;

function plotted(container: HTMLElement) {
  const figure = within(container).getByRole("figure", { name: /speed-up over the original/ });
  return Array.from(figure.querySelectorAll("[data-point]")).map((g) => ({
    name: g.getAttribute("data-point"),
    front: g.getAttribute("data-front") === "yes",
    title: g.querySelector("title")?.textContent ?? "",
  }));
}

describe("Tradeoff", () => {
  it("plots every measured variant and the original, and draws the front through those nothing beats", () => {
    const { container } = render(
      <Tradeoff optimize={optimize} parity={parity} benchmark={benchmark} recommend={recommend} />,
    );
    const points = plotted(container);
    expect(points.map((p) => p.name).sort()).toEqual(
      ["original", "ort-int8-dynamic", "ort-int8-static-mixed", "ort-int8-static-qdq"].sort(),
    );
    // ort-int8-dynamic (1.5x, 20 dB) is beaten on both by ort-int8-static-mixed (2x, 25 dB).
    expect(
      points
        .filter((p) => p.front)
        .map((p) => p.name)
        .sort(),
    ).toEqual(["original", "ort-int8-static-mixed", "ort-int8-static-qdq"]);
    const mixed = points.find((p) => p.name === "ort-int8-static-mixed");
    expect(mixed?.title).toBe(
      "ort-int8-static-mixed: 2.00× the original's speed, worst output 25.0 dB, within tolerance (recommended)",
    );
    expect(points.find((p) => p.name === "ort-int8-static-qdq")?.title).toContain("out of tolerance");
    // Which variant is missing, and why.
    expect(screen.getByText(/Not on the plot/).textContent).toContain(
      "ov-ir-fp32 (not benchmarked (it failed to run))",
    );
    // The axes say what is measured.
    expect(container.textContent).toContain("Speed-up over the original (p50), ×");
    expect(container.textContent).toContain("Worst output SNR, dB");
  });

  it("lists every candidate of a search, says it ran out of budget, and marks the chosen one", () => {
    render(<Tradeoff optimize={optimize} parity={parity} benchmark={benchmark} recommend={recommend} />);
    const section = screen.getByRole("region", { name: "The search behind ort-int8-static-mixed" });
    expect(within(section).getByText("The search ran out of budget")).toBeTruthy();
    expect(section.textContent).toContain("It judged 3 candidate models in 1.2 s (budget: 1 s, 300 candidates)");
    expect(section.textContent).toContain("measuring 2 of 10 activations, and stopped: the time budget ran out.");
    const rows = within(within(section).getByRole("table")).getAllByRole("row").slice(1);
    expect(rows.map((row) => within(row).getByRole("rowheader").textContent)).toEqual([
      "full INT8",
      "scores in float (+1 with it)",
      "boxes in float",
    ]);
    expect(rows[1]?.textContent).toContain("2 (20%)");
    expect(rows[1]?.textContent).toContain("chosen");
    expect(section.querySelectorAll("[data-point]")).toHaveLength(3);
  });

  it("says what it needs when no variant has both a speed and an accuracy", () => {
    render(<Tradeoff optimize={optimize} parity={undefined} benchmark={benchmark} />);
    expect(screen.getByText("No variant has both a speed and an accuracy yet.")).toBeTruthy();
    expect(screen.queryByRole("figure", { name: /speed-up over the original/ })).toBeNull();
  });
});
