import type { InspectReport, TensorSpec } from "../api/reports";
import { Empty, KeyValues } from "../components/ui";
import { formatBytes, formatCount, formatShape, formatSI } from "../lib/format";

function Tensors({ title, tensors }: { title: string; tensors: TensorSpec[] }) {
  return (
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
