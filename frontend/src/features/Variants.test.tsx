import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { OptimizeReport } from "../api/reports";
import { VariantsTable } from "./Variants";

describe("VariantsTable", () => {
  it("says which variants were not built and why", () => {
    const note =
      "ort-int8-static-qdq was not built: static INT8 quantization needs calibration data. Upload " +
      "calibration=@calib.npz (one array per model input) to build it.";
    const optimize: OptimizeReport = {
      profile: "x86-cpu",
      variants: [],
      errors: {},
      skipped: {},
      notes: { onnxruntime: [note] },
    };
    render(
      <VariantsTable
        optimize={optimize}
        parity={undefined}
        benchmark={undefined}
        recommend={undefined}
        artifacts={[]}
        profile="x86-cpu"
      />,
    );
    expect(screen.getByText(note)).toBeTruthy();
    expect(screen.getByText("onnxruntime:")).toBeTruthy();
  });
});
