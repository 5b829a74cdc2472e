import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { InspectReport } from "../api/reports";
import evidence from "../test/fixtures/evidence-reports.json";
import version from "../test/fixtures/mlp-version.json";
import { InspectionSummary } from "./Inspection";

// Real inspection reports (workers/engine/inspection.py) of two models the engine tests build:
// a voice-activity-shaped model (audio [batch, samples], a scalar sample rate the graph compares
// with 8000 and 16000, a state [2, batch, 128]; tests/engine/test_inputs.py `stateful`) and a
// YOLO-style detector whose one output holds pixel boxes beside sigmoid class scores
// (tests/engine/test_parity.py `_detector`).
const stateful = evidence.inspect_stateful as unknown as InspectReport;
const detector = evidence.inspect_detector as unknown as InspectReport;

function rowOf(tableName: RegExp, name: string): string[] {
  const table = screen.getByRole("table", { name: tableName });
  const row = within(table).getByRole("rowheader", { name }).closest("tr") as HTMLElement;
  return within(row)
    .getAllByRole("cell")
    .map((cell) => cell.textContent ?? "");
}

describe("InspectionSummary", () => {
  it("shows how each input is generated: kind, shape at the planned sizes, range or values, and source", () => {
    render(<InspectionSummary report={stateful} />);
    expect(rowOf(/How each input is made/, "input")).toEqual([
      "audio signal",
      "batch × 512 (samples)",
      "in [-1, 1]",
      "Slipway's default for the kind",
    ]);
    expect(rowOf(/How each input is made/, "sr")).toEqual([
      "set values",
      "scalar",
      "one of 8000, 16000",
      "the model's comparisons (Equal)",
    ]);
    // the state's samples are on axis 1, where a validation array must put them
    expect(rowOf(/How each input is made/, "state")).toEqual([
      "recurrent state",
      "2 × batch × 128 (samples on axis 1)",
      "zeros (a recurrent state starts at zero)",
      "Slipway's default for the kind",
    ]);
    expect(screen.getByText(/Sizes for the symbolic dims: samples = 512; batch takes the batch size\./)).toBeTruthy();
  });

  it("lists what was assumed, each with the declaration that would replace it", () => {
    render(<InspectionSummary report={stateful} />);
    const items = within(screen.getByRole("list", { name: "What the input plan assumed" })).getAllByRole("listitem");
    expect(items.map((item) => item.textContent)).toEqual(stateful.input_plan?.assumptions);
    expect(within(items[2] as HTMLElement).getByText(/^\{"dims": \{"<name>": \{"typical": <size>/).tagName).toBe(
      "CODE",
    );
  });

  it("says what each output is, whether declared or proposed, why, and a detection head's layout", () => {
    render(<InspectionSummary report={detector} />);
    const [kind, from, why] = rowOf(/Output kinds/, "detections");
    expect(kind).toBe(
      "detection headAlong axis 2: boxes in columns 0–3 (cxcywh), class scores in columns 4–83 (80 classes), no " +
        "objectness column. Detections kept at score ≥ 0.25, overlaps above IoU 0.45 suppressed, matched to the " +
        "original's at IoU ≥ 0.5.",
    );
    expect(from).toBe("proposed by inspection");
    expect(why).toBe("a Concat on axis 2 of 4 box columns and 80 score columns that end in a Sigmoid or Softmax");
    // an image input with no normalisation after it: the range was assumed, and the way out named
    expect(rowOf(/How each input is made/, "image")).toEqual([
      "image",
      "1 × 3 × 32 × 32",
      "in [0, 1]",
      "Slipway's default for the kind",
    ]);
    expect(screen.getByText('{"inputs": {"image": {"range": [low, high]}}}').tagName).toBe("CODE");
  });

  it("shows a declared output as declared, and a classifier with its top-k", () => {
    const declared: InspectReport = {
      ...stateful,
      output_semantics: {
        energy: {
          name: "energy",
          kind: "classifier",
          source: "declared",
          why: "declared at upload",
          axis: -1,
          top_k: 3,
        },
        new_state: stateful.output_semantics?.new_state as NonNullable<InspectReport["output_semantics"]>[string],
      },
    };
    render(<InspectionSummary report={declared} />);
    expect(rowOf(/Output kinds/, "energy")).toEqual([
      "class scores (logits or probabilities)Class axis -1; judged by top-1 and top-3 agreement.",
      "declared at upload",
      "—",
    ]);
    expect(rowOf(/Output kinds/, "new_state")).toEqual([
      "raw tensor",
      "proposed by inspection",
      "nothing in the graph says what it is",
    ]);
  });

  it("still renders an inspection from before input plans and output kinds", () => {
    render(<InspectionSummary report={version.reports.inspect as unknown as InspectReport} />);
    expect(screen.getByRole("table", { name: "Inputs" })).toBeTruthy();
    expect(screen.queryByRole("table", { name: /How each input is made/ })).toBeNull();
    expect(screen.queryByRole("table", { name: /Output kinds/ })).toBeNull();
  });
});
