import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { MatrixCell, SupportMatrix, ValidateReport } from "../api/reports";
import customOp from "../test/fixtures/custom-op-validate.json";
import version from "../test/fixtures/mlp-version.json";
import { cellExplanation, OpSupportMatrix } from "./OpSupportMatrix";

// Real validate reports from a worker: an MLP every backend runs, and a model with an op
// from a custom domain that neither onnxruntime nor OpenVINO knows.
const custom = customOp as unknown as ValidateReport;
const mlp = (version.reports.validate as unknown as Record<string, ValidateReport>)["x86-cpu"] as ValidateReport;

const withFallback: SupportMatrix = {
  backends: ["onnxruntime", "tensorrt"],
  rows: [
    {
      domain: "ai.onnx",
      op_type: "NonMaxSuppression",
      cells: {
        onnxruntime: { status: "supported", reason: "", nodes: ["nms"], device: "CUDAExecutionProvider" },
        tensorrt: {
          status: "fallback",
          reason: "TensorRT has no NonMaxSuppression plugin here; the node runs on the CPU.",
          nodes: ["nms"],
          device: "CPU",
        },
      },
    },
    {
      domain: "ai.onnx",
      op_type: "Conv",
      cells: {
        onnxruntime: { status: "supported", reason: "", nodes: ["c1", "c2"], device: "CUDAExecutionProvider" },
        tensorrt: { status: "supported", reason: "", nodes: ["c1", "c2"], device: "GPU" },
      },
    },
  ],
  verdicts: { onnxruntime: "full", tensorrt: "partial" },
  methods: { onnxruntime: "runtime", tensorrt: "published_list" },
  problems: 1,
};

function rowOf(op: string): HTMLElement {
  return screen.getByRole("rowheader", { name: new RegExp(`^${op}`) }).closest("tr") as HTMLElement;
}

describe("OpSupportMatrix", () => {
  it("marks a profile's reference columns as checked but not built", () => {
    render(<OpSupportMatrix matrix={{ ...withFallback, report_only: ["tensorrt"] }} reports={{}} />);
    const headers = screen.getAllByRole("columnheader");
    const tensorrt = headers.find((h) => h.textContent?.includes("tensorrt")) as HTMLElement;
    const onnxruntime = headers.find((h) => h.textContent?.includes("onnxruntime")) as HTMLElement;
    expect(within(tensorrt).getByText("reference only").getAttribute("title")).toContain("nothing is built for it");
    expect(within(onnxruntime).queryByText("reference only")).toBeNull();
  });

  it("marks every cell with a symbol and a word, not colour alone", () => {
    render(<OpSupportMatrix matrix={custom.matrix} reports={custom.reports} />);
    const foo = rowOf("Foo");
    expect(within(foo).getByText("com.example")).toBeTruthy();
    const cells = within(foo).getAllByRole("button");
    expect(cells.map((c) => c.getAttribute("aria-label"))).toEqual([
      "Foo on onnxruntime: Unsupported",
      "Foo on openvino: Unsupported",
    ]);
    expect(cells.every((c) => c.textContent?.includes("✕") && c.textContent.includes("Unsupported"))).toBe(true);
    const relu = rowOf("Relu");
    expect(
      within(relu)
        .getAllByRole("button")
        .map((c) => c.textContent),
    ).toEqual(["✓Supported", "✓Supported"]);
    // the column heads carry each runtime's version and how it answered
    expect(screen.getByRole("columnheader", { name: /onnxruntime/ }).textContent).toMatch(
      /^onnxruntimev1\.\d+\.\d+ · one-node probes!Partial$/,
    );
  });

  it("gives the runtime's reason to hover and keyboard focus alike", async () => {
    const user = userEvent.setup();
    render(<OpSupportMatrix matrix={custom.matrix} reports={custom.reports} />);
    const cell = screen.getByRole("button", { name: "Foo on openvino: Unsupported" });
    const tip = document.getElementById(cell.getAttribute("aria-describedby") as string);
    expect(tip?.getAttribute("role")).toBe("tooltip");
    expect(tip?.textContent).toContain("OpenVINO's ONNX frontend has no conversion rule for com.example.Foo.");
    expect(tip?.textContent).toContain("Nodes: Foo_1.");
    // the cells are real buttons: Tab reaches them
    await user.click(screen.getByRole("checkbox", { name: /Only problems/ }));
    await user.tab();
    await user.tab();
    expect(document.activeElement?.getAttribute("aria-label")).toBe("Foo on onnxruntime: Unsupported");
  });

  it("filters to the rows some backend does not fully run", async () => {
    const user = userEvent.setup();
    render(<OpSupportMatrix matrix={custom.matrix} reports={custom.reports} />);
    expect(screen.getByText("2 of 2 op types, 1 with problems")).toBeTruthy();
    await user.click(screen.getByRole("checkbox", { name: "Only problems (1)" }));
    expect(screen.queryByRole("rowheader", { name: /^Relu/ })).toBeNull();
    expect(rowOf("Foo")).toBeTruthy();
    expect(screen.getByText("1 of 2 op types, 1 with problems")).toBeTruthy();
  });

  it("says so when a model has no problems and the filter is on", async () => {
    const user = userEvent.setup();
    render(<OpSupportMatrix matrix={mlp.matrix} reports={mlp.reports} />);
    expect(screen.getAllByRole("row").length).toBe(mlp.matrix.rows.length + 1);
    await user.click(screen.getByRole("checkbox", { name: "Only problems (0)" }));
    expect(screen.getByText("No problems: every backend runs every op type.")).toBeTruthy();
  });

  it("shows fallbacks with where they run and filters by op name", async () => {
    const user = userEvent.setup();
    render(<OpSupportMatrix matrix={withFallback} />);
    const cell = screen.getByRole("button", { name: "NonMaxSuppression on tensorrt: Falls back" });
    expect(cell.textContent).toBe("↘Falls back");
    expect(screen.getByRole("columnheader", { name: /tensorrt/ }).textContent).toContain("the published op list");
    await user.type(screen.getByRole("searchbox", { name: "Filter operators" }), "conv");
    expect(screen.queryByRole("rowheader", { name: /^NonMaxSuppression/ })).toBeNull();
    expect(within(rowOf("Conv")).getByText("· 2 nodes")).toBeTruthy();
  });

  it("explains a supported cell by where it runs", () => {
    expect(
      cellExplanation("onnxruntime", {
        status: "supported",
        reason: "",
        nodes: ["Gemm_0"],
        device: "CPUExecutionProvider",
      }),
    ).toBe("onnxruntime runs it on CPUExecutionProvider. Nodes: Gemm_0.");
  });

  it("marks an op a backend runs only after a rewrite, and says what the rewrite did", () => {
    const summary =
      "mnn runs the model after rewrite expand-functions: expanded 1 Mish node into ONNX's own definition.";
    const rewritten: SupportMatrix = {
      backends: ["mnn", "ncnn"],
      rows: [
        {
          domain: "ai.onnx",
          op_type: "Mish",
          cells: {
            mnn: {
              status: "unsupported",
              reason: "MNN's converter does not know Mish.",
              nodes: ["mish"],
              device: "",
              after_rewrite: "expand-functions",
            },
            ncnn: { status: "supported", reason: "", nodes: ["mish"], device: "CPU", after_rewrite: "" },
          },
        },
      ],
      verdicts: { mnn: "partial", ncnn: "full" },
      remedies: { mnn: { rewrites: ["expand-functions"], summary } },
      problems: 1,
    };
    render(<OpSupportMatrix matrix={rewritten} />);
    const [mnn, ncnn] = within(rowOf("Mish")).getAllByRole("button") as [HTMLElement, HTMLElement];
    expect(mnn.getAttribute("aria-label")).toBe("Mish on mnn: Runs after rewrite expand-functions");
    expect(mnn.textContent).toContain("↻");
    expect(ncnn.getAttribute("aria-label")).toBe("Mish on ncnn: Supported");
    expect(screen.getByRole("list", { name: "Rewrites" }).textContent).toBe(`mnn: ${summary}`);
    const cell = rewritten.rows[0]?.cells.mnn as MatrixCell;
    expect(cellExplanation("mnn", cell)).toBe(
      "MNN's converter does not know Mish. mnn runs it after rewrite expand-functions; its variants are built " +
        "from the rewritten model. Nodes: mish.",
    );
  });
});
