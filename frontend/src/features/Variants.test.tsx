import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { OptimizeReport } from "../api/reports";
import type { Artifact } from "../api/types";
import { rewriteText, VariantsTable } from "./Variants";

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

  it("shows the quantization recipe a variant was built with, and what a mixed one kept in float", () => {
    const recipe =
      "U8S8 for x86-64 with VNNI (avx512_vnni): uint8 activations with int8 weights (U8S8), the pairing " +
      "onnxruntime's x86 integer kernels run natively; with VNNI the dot products sum into 32 bits, so weights " +
      "keep their full 8 bits.";
    const optimize: OptimizeReport = {
      profile: "x86-cpu",
      variants: [
        {
          name: "ort-int8-static-qdq",
          backend: "onnxruntime",
          format: "onnx",
          precision: "int8",
          pass_name: "ort-quantize-static",
          options: { recipe, activation_type: "uint8", per_channel: true },
        },
        {
          name: "ort-int8-static-mixed",
          backend: "onnxruntime",
          format: "onnx",
          precision: "int8",
          pass_name: "ort-quantize-static-mixed",
          options: {
            recipe,
            reason: "keeping 4 of its 11 quantized activations in float (ss, scores, joined, detections)",
          },
        },
        { name: "ort-opt-all", backend: "onnxruntime", format: "onnx", precision: "fp32", pass_name: "ort-optimize" },
      ],
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
    expect(screen.getAllByText(recipe)).toHaveLength(2);
    expect(document.querySelectorAll(".variant-recipe")).toHaveLength(2);
    expect(screen.getByText(/keeping 4 of its 11 quantized activations in float/)).toBeTruthy();
  });

  it("links each built variant to its download", () => {
    const optimize: OptimizeReport = {
      profile: "x86-cpu",
      variants: [
        { name: "ort-int8", backend: "onnxruntime", format: "onnx", precision: "int8", pass_name: "ort-quantize" },
        { name: "ov-fp16", backend: "openvino", format: "openvino-ir+zip", precision: "fp16", pass_name: "ov" },
      ],
    };
    const artifact: Artifact = {
      id: 42,
      kind: "variant",
      name: "x86-cpu/ort-int8",
      format: "onnx",
      sha256: "ab".repeat(32),
      size: 2048,
      parent_id: 7,
      job_id: 9,
      download_url: "/api/v1/artifacts/42/download/",
    };
    render(
      <VariantsTable
        optimize={optimize}
        parity={undefined}
        benchmark={undefined}
        recommend={undefined}
        artifacts={[artifact]}
        profile="x86-cpu"
      />,
    );
    const link = screen.getByRole("link", { name: "Download ort-int8" });
    expect(link.getAttribute("href")).toBe("/api/v1/artifacts/42/download/");
    expect(link.hasAttribute("download")).toBe(true);
    // a variant with no stored artifact has nothing to download
    expect(screen.queryByRole("link", { name: "Download ov-fp16" })).toBeNull();
  });
});

describe("rewriteText", () => {
  it("names the rewrites a variant's model went through, with what each did", () => {
    expect(
      rewriteText({
        rewrites: ["expand-functions"],
        rewrite_steps: [{ rewrite: "expand-functions", detail: "expanded 1 Mish node into ONNX's own definition" }],
      }),
    ).toBe("Built after rewrite expand-functions: expanded 1 Mish node into ONNX's own definition.");
    expect(rewriteText({ rewrites: ["expand-functions", "fold-constants"] })).toBe(
      "Built after rewrite expand-functions + fold-constants.",
    );
    expect(rewriteText({ recipe: "U8S8" })).toBe("");
    expect(rewriteText(undefined)).toBe("");
  });
});
