import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { ParityReport } from "../api/reports";
import { ParityTable, toleranceRule } from "./Parity";

const defaults = {
  max_abs_error: 0.001,
  min_cosine: 0.99,
  min_top1_agreement: 0.99,
  max_rel_error: null,
  p99_abs_error: null,
  min_slice_sqnr_db: 6,
};

describe("toleranceRule", () => {
  it("states the rule as the engine applies it: max abs error outright, or else every other limit", () => {
    expect(toleranceRule(defaults)).toBe(
      "max abs error ≤ 0.001 passes outright; otherwise cosine ≥ 0.99, and top-1 agreement ≥ 0.99 " +
        "(classifier outputs), and every slice (column or channel) keeps a signal-to-noise ratio ≥ 6 dB.",
    );
  });

  it("names the optional limits only when they are set", () => {
    const rule = toleranceRule({ ...defaults, p99_abs_error: 0.01 });
    expect(rule).toContain("p99 abs error ≤ 0.01");
    expect(rule).not.toContain("max rel error");
  });
});

describe("ParityTable", () => {
  it("shows the worst slice and why a variant whose scores collapsed failed", () => {
    const reason =
      "Output 'detections' lost 80 of its 84 slices on axis 2 (index 4-83); 80 of them went (nearly) constant.";
    const report: ParityReport = {
      profile: "x86-cpu",
      tolerance: defaults,
      inputs: { samples: 8, source: "generated inputs" },
      passed: [],
      variants: {
        "ort-int8-static-qdq": {
          passed: false,
          reasons: [reason],
          outputs: [
            {
              name: "detections",
              passed: false,
              max_abs_error: 4.07,
              max_rel_error: 1,
              cosine: 0.99997,
              top1_agreement: null,
              worst_slice_sqnr_db: -23.5,
              worst_slice: "axis 2, index 4",
            },
          ],
        },
      },
    } as unknown as ParityReport;
    render(<ParityTable report={report} />);
    expect(screen.getByText("-23.5 dB").getAttribute("title")).toBe("axis 2, index 4");
    expect(screen.getByText(reason)).toBeTruthy();
    expect(screen.getByText(/passes outright; otherwise/)).toBeTruthy();
  });
});
