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
  min_detection_recall: 0.9,
  min_detection_precision: 0.9,
};

describe("toleranceRule", () => {
  it("states the rule as the engine applies it: max abs error outright, or else every other limit", () => {
    expect(toleranceRule(defaults)).toBe(
      "max abs error ≤ 0.001 passes outright; otherwise cosine ≥ 0.99 (an embedding's for every vector), and " +
        "top-1 agreement ≥ 0.99 (classifier outputs; a segmentation map's per pixel), and every slice (column or " +
        "channel) keeps a signal-to-noise ratio ≥ 6 dB, and a detection head finds ≥ 90.0% of the original's " +
        "detections and ≥ 90.0% of its own detections are the original's (decoded, same class, matched by IoU).",
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
              kind: "detection",
              kind_source: "proposed",
              detection: {
                images: 4,
                reference_detections: 88,
                variant_detections: 0,
                matched: 0,
                recall: 0,
                precision: null,
                mean_score_error: null,
                mean_matched_iou: null,
                score_threshold: 0.25,
                match_iou: 0.5,
              },
            },
          ],
        },
      },
    } as unknown as ParityReport;
    render(<ParityTable report={report} />);
    expect(screen.getByText("-23.5 dB").getAttribute("title")).toBe("axis 2, index 4");
    expect(screen.getByText(reason)).toBeTruthy();
    expect(screen.getByText(/passes outright; otherwise/)).toBeTruthy();
    expect(screen.getByText("detection (proposed by inspection)")).toBeTruthy();
    expect(screen.getByText("recall 0.0% (88 → 0 detections on 4 inputs)")).toBeTruthy();
  });

  it("says when the original found no detections instead of claiming they agree", () => {
    const note = "The original made no detections on 'detections' at score 1: detections were not compared.";
    const report = {
      profile: "x86-cpu",
      tolerance: defaults,
      variants: {
        "ort-fp32": {
          passed: true,
          reasons: [],
          outputs: [
            {
              name: "detections",
              passed: true,
              max_abs_error: 0,
              max_rel_error: 0,
              cosine: 1,
              kind: "detection",
              kind_source: "declared",
              notes: [note],
              detection: {
                images: 4,
                reference_detections: 0,
                variant_detections: 0,
                matched: 0,
                recall: null,
                precision: null,
                mean_score_error: null,
                mean_matched_iou: null,
                score_threshold: 1,
                match_iou: 0.5,
              },
            },
          ],
        },
      },
    } as unknown as ParityReport;
    render(<ParityTable report={report} />);
    expect(screen.getByText(note)).toBeTruthy();
    expect(screen.getByText("0 → 0 detections on 4 inputs; the original found none to compare")).toBeTruthy();
    expect(screen.getByText("detection (declared)")).toBeTruthy();
  });
});
