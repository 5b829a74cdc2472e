// What inspection found in a model: its inputs and outputs, how Slipway will generate inputs for
// it (the input plan, and what it assumed), what each output is (declared at upload or proposed
// from the graph, and why), its operators, parameters and FLOPs.
import type {
  DetectionLayout,
  InputPlan,
  InputRecipe,
  InspectReport,
  OutputSemantics,
  TensorSpec,
} from "../api/reports";
import { Empty, KeyValues } from "../components/ui";
import { formatBytes, formatCount, formatNumber, formatShape, formatSI } from "../lib/format";
import { AssumptionList } from "./Assumptions";

function Tensors({ title, tensors }: { title: string; tensors: TensorSpec[] }) {
  return (
    <div className="table-scroll" tabIndex={0}>
      <table className="table table-compact">
        <caption>{title}</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Type</th>
            <th scope="col">Shape</th>
          </tr>
        </thead>
        <tbody>
          {tensors.map((t) => (
            <tr key={t.name}>
              <th scope="row" className="mono">
                {t.name}
              </th>
              <td className="mono">{t.dtype}</td>
              <td className="mono">
                {formatShape(t.shape)}
                {t.shape?.some((d) => typeof d === "string" || d === null) ? (
                  <span className="muted small"> (dynamic)</span>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

const INPUT_KINDS: Record<string, string> = {
  image: "image",
  token_ids: "token ids",
  attention_mask: "attention mask",
  audio: "audio signal",
  state: "recurrent state",
  values: "set values",
  features: "features",
};

/** The recipe's shape with every symbolic dim at the size the plan gives it. */
function plannedShape(plan: InputPlan, recipe: InputRecipe): string {
  if (!recipe.shape.length) return "scalar";
  return recipe.shape
    .map((dim, axis) => {
      if (typeof dim === "number" && dim > 0) return String(dim);
      if (axis === recipe.batch_axis || (typeof dim === "string" && plan.batch_symbols?.includes(dim))) return "batch";
      const key = typeof dim === "string" ? dim : `${recipe.name}:${axis}`;
      const size = plan.dims[key];
      return size === undefined ? "?" : `${size} (${key})`;
    })
    .join(" × ");
}

/** What values the generated input holds, as a person reads it. */
function plannedValues(recipe: InputRecipe): string {
  if (recipe.values?.length) {
    const listed = recipe.values.map((v) => formatNumber(v)).join(", ");
    return recipe.values.length === 1 ? `always ${listed}` : `one of ${listed}`;
  }
  if (recipe.low !== null && recipe.low !== undefined && recipe.high !== null && recipe.high !== undefined)
    return `in [${formatNumber(recipe.low)}, ${formatNumber(recipe.high)}]`;
  if (recipe.kind === "state") return "zeros (a recurrent state starts at zero)";
  if (recipe.kind === "attention_mask") return "ones, then trailing zeros";
  return recipe.dtype.startsWith("float") ? "standard-normal noise" : "small integers";
}

function InputPlanSummary({ plan }: { plan: InputPlan }) {
  const dims = Object.entries(plan.dims);
  return (
    <div className="input-plan">
      <h3 className="h3">Inputs Slipway generates</h3>
      <p className="muted small">
        Used wherever no validation or calibration set was uploaded: parity, calibration and benchmarks.
        {plan.description ? ` In short: ${plan.description}.` : ""}
      </p>
      <div className="table-scroll" tabIndex={0}>
        <table className="table table-compact">
          <caption>How each input is made</caption>
          <thead>
            <tr>
              <th scope="col">Input</th>
              <th scope="col">Kind</th>
              <th scope="col">Shape</th>
              <th scope="col">Range or values</th>
              <th scope="col">Source</th>
            </tr>
          </thead>
          <tbody>
            {plan.recipes.map((recipe) => (
              <tr key={recipe.name}>
                <th scope="row" className="mono">
                  {recipe.name}
                </th>
                <td>{INPUT_KINDS[recipe.kind] ?? recipe.kind}</td>
                <td className="mono">
                  {plannedShape(plan, recipe)}
                  {recipe.batch_axis !== null && recipe.batch_axis !== undefined && recipe.batch_axis !== 0 ? (
                    <span className="muted small"> (samples on axis {recipe.batch_axis})</span>
                  ) : null}
                </td>
                <td>{plannedValues(recipe)}</td>
                <td>{recipe.source || <span className="muted">Slipway's default for the kind</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {dims.length ? (
        <p className="muted small">
          Sizes for the symbolic dims: {dims.map(([name, size]) => `${name} = ${size}`).join(", ")}
          {plan.batch_symbols?.length ? `; ${plan.batch_symbols.join(", ")} takes the batch size` : ""}.
        </p>
      ) : null}
      {plan.assumptions?.length ? (
        <>
          <p className="small">
            What Slipway assumed, and what to declare at upload (input declarations) if it is wrong:
          </p>
          <AssumptionList items={plan.assumptions} label="What the input plan assumed" />
        </>
      ) : (
        <p className="muted small">
          Nothing was assumed: every input's kind, values and sizes were declared or read from the model.
        </p>
      )}
    </div>
  );
}

const OUTPUT_KINDS: Record<string, string> = {
  classifier: "class scores (logits or probabilities)",
  detection: "detection head",
  embedding: "embedding",
  segmentation: "segmentation map",
  regression: "regression values",
  raw: "raw tensor",
};

function columns([start, stop]: [number, number]): string {
  return stop - start === 1 ? `column ${start}` : `columns ${start}–${stop - 1}`;
}

/** A detection head's layout: where its boxes and scores are, and how its detections are decoded. */
export function describeLayout(layout: DetectionLayout): string {
  // A layout states its columns; a missing one is the server's default (workers/engine/outputs.py).
  const boxes = layout.boxes ?? [0, 4];
  const scores = layout.scores ?? [4, 5];
  const classes = scores[1] - scores[0];
  const parts = [
    `boxes in ${columns(boxes)} (${layout.box_format ?? "cxcywh"})`,
    `class scores in ${columns(scores)} (${classes} ${classes === 1 ? "class" : "classes"})`,
    layout.objectness === null || layout.objectness === undefined
      ? "no objectness column"
      : `objectness in column ${layout.objectness}`,
  ];
  const decoding = [
    layout.score_threshold !== undefined ? `score ≥ ${layout.score_threshold}` : null,
    layout.iou_threshold !== undefined ? `overlaps above IoU ${layout.iou_threshold} suppressed` : null,
    layout.match_iou !== undefined ? `matched to the original's at IoU ≥ ${layout.match_iou}` : null,
  ].filter(Boolean);
  return `Along axis ${layout.axis}: ${parts.join(", ")}.${decoding.length ? ` Detections kept at ${decoding.join(", ")}.` : ""}`;
}

function kindDetail(semantics: OutputSemantics): string | null {
  if (semantics.kind === "detection" && semantics.detection) return describeLayout(semantics.detection);
  if (semantics.kind === "classifier")
    return `Class axis ${semantics.axis ?? -1}; judged by top-1 and top-${semantics.top_k ?? 5} agreement.`;
  if (semantics.kind === "segmentation") return `Class axis ${semantics.axis ?? 1}; judged pixel by pixel.`;
  if (semantics.kind === "embedding") return `Feature axis ${semantics.axis ?? -1}; judged vector by vector.`;
  return null;
}

function OutputSemanticsTable({ semantics }: { semantics: Record<string, OutputSemantics> }) {
  const outputs = Object.values(semantics);
  if (!outputs.length) return null;
  return (
    <div className="output-semantics">
      <h3 className="h3">What each output is</h3>
      <p className="muted small">
        Parity judges each output by metrics that fit its kind. If a proposal is wrong, declare the output at upload
        (output declarations).
      </p>
      <div className="table-scroll" tabIndex={0}>
        <table className="table table-compact">
          <caption>Output kinds, declared or proposed</caption>
          <thead>
            <tr>
              <th scope="col">Output</th>
              <th scope="col">Kind</th>
              <th scope="col">From</th>
              <th scope="col">Why</th>
            </tr>
          </thead>
          <tbody>
            {outputs.map((output) => {
              const detail = kindDetail(output);
              return (
                <tr key={output.name}>
                  <th scope="row" className="mono">
                    {output.name}
                  </th>
                  <td>
                    {OUTPUT_KINDS[output.kind] ?? output.kind}
                    {detail ? <p className="muted small">{detail}</p> : null}
                  </td>
                  <td>
                    {output.source === "declared"
                      ? "declared at upload"
                      : output.source === "proposed"
                        ? "proposed by inspection"
                        : output.source}
                  </td>
                  <td>
                    {/* a declaration's "why" is only that it was declared, which From already says */}
                    {output.why && !(output.source === "declared" && output.why === "declared at upload") ? (
                      output.why
                    ) : (
                      <span className="muted">—</span>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </div>
  );
}

export function InspectionSummary({ report }: { report: InspectReport | undefined }) {
  if (!report)
    return (
      <Empty title="Not inspected yet.">
        The inspect step fills this in: inputs and outputs, operators, parameters and FLOPs.
      </Empty>
    );
  const ops = [...(report.op_counts ?? [])].sort((a, b) => b.count - a.count || a.op_type.localeCompare(b.op_type));
  const flopsByOp = Object.entries(report.flops?.by_op_type ?? {}).sort(([, a], [, b]) => b - a);
  const flopsTotal = report.flops?.total ?? null;
  return (
    <div className="inspection">
      <div className="grid-2">
        <div>
          <Tensors title="Inputs" tensors={report.inputs} />
          <Tensors title="Outputs" tensors={report.outputs} />
        </div>
        <KeyValues
          items={[
            ["Parameters", `${formatCount(report.parameters?.count)} (${formatBytes(report.parameters?.bytes)})`],
            ["FLOPs per inference", flopsTotal === null ? "unknown" : formatSI(flopsTotal, "FLOP")],
            ["Nodes", formatCount(report.node_count)],
            ["Operator types", String(ops.length)],
            [
              "Opsets",
              Object.entries(report.opset_imports ?? {})
                .map(([d, v]) => `${d} ${v}`)
                .join(", ") || "—",
            ],
            ["IR version", report.ir_version ?? "—"],
            ["Producer", [report.producer_name, report.producer_version].filter(Boolean).join(" ") || "—"],
            ["External data", report.external_data?.length ? `${report.external_data.length} file(s)` : "none"],
          ]}
        />
      </div>
      {report.input_plan ? <InputPlanSummary plan={report.input_plan} /> : null}
      {report.output_semantics ? <OutputSemanticsTable semantics={report.output_semantics} /> : null}
      <h3 className="h3">Operators</h3>
      <ul className="chips" aria-label="Operator types and how many nodes use each">
        {ops.map((op) => (
          <li key={`${op.domain}/${op.op_type}`} className="chip">
            <span className="mono">{op.op_type}</span>
            {op.domain !== "ai.onnx" ? <span className="muted small"> {op.domain}</span> : null}{" "}
            <span className="chip-count">×{op.count}</span>
          </li>
        ))}
      </ul>
      {flopsByOp.length ? (
        <>
          <h3 className="h3">Where the FLOPs are</h3>
          <div className="flops">
            {flopsByOp.map(([op, flops]) => {
              const share = flopsTotal ? flops / flopsTotal : 0;
              return (
                <div key={op} className="flops-row">
                  <span className="mono flops-op">{op}</span>
                  <span className="flops-bar" aria-hidden="true">
                    <span style={{ width: `${Math.max(1, share * 100)}%` }} />
                  </span>
                  <span className="num small">
                    {formatCount(flops)} ({(share * 100).toFixed(1)}%)
                  </span>
                </div>
              );
            })}
          </div>
          {report.flops?.assumptions ? <p className="muted small">{report.flops.assumptions}</p> : null}
        </>
      ) : null}
      {report.notes?.length ? (
        <ul className="notes-list">
          {report.notes.map((n, i) => (
            <li key={i}>{n}</li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
