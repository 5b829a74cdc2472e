import type { ParityReport } from "../api/reports";
import { Badge, Empty } from "../components/ui";
import { formatNumber, formatPercent } from "../lib/format";

const TOLERANCE: Record<string, string> = {
  max_abs_error: "max abs error ≤",
  max_rel_error: "max rel error ≤",
  p99_abs_error: "p99 abs error ≤",
  min_cosine: "cosine ≥",
  min_top1_agreement: "top-1 agreement ≥",
};

export function ParityTable({ report }: { report: ParityReport | undefined }) {
  if (!report)
    return (
      <Empty title="No accuracy check yet.">
        The parity step compares every variant with the FP32 original on the same inputs.
      </Empty>
    );
  const tolerance = Object.entries(report.tolerance ?? {}).filter(([, v]) => v !== null && v !== undefined);
  const names = Object.keys(report.variants).sort();
  return (
    <>
      <p className="muted small">
        {report.inputs?.samples
          ? `${report.inputs.samples} samples from ${report.inputs.source ?? "the validation inputs"}. `
          : ""}
        Tolerance:{" "}
        {tolerance.length
          ? tolerance.map(([k, v]) => `${TOLERANCE[k] ?? k} ${v}`).join(", ")
          : "the profile's defaults"}
        .
      </p>
      <div className="table-scroll">
        <table className="table">
          <thead>
            <tr>
              <th scope="col">Variant</th>
              <th scope="col">Verdict</th>
              <th scope="col">Output</th>
              <th scope="col" className="num">
                Max abs error
              </th>
              <th scope="col" className="num">
                Max rel error
              </th>
              <th scope="col" className="num">
                p99 abs error
              </th>
              <th scope="col" className="num">
                Cosine
              </th>
              <th scope="col" className="num">
                Top-1 agreement
              </th>
            </tr>
          </thead>
          <tbody>
            {names.map((name) => {
              const v = report.variants[name];
              if (!v) return null;
              const outputs = v.outputs.length ? v.outputs : [null];
              return outputs.map((o, i) => (
                <tr key={`${name}-${o?.name ?? i}`} className={!v.passed ? "row-problem" : undefined}>
                  {i === 0 ? (
                    <th scope="row" rowSpan={outputs.length} className="mono">
                      {name}
                    </th>
                  ) : null}
                  {i === 0 ? (
                    <td rowSpan={outputs.length}>
                      <Badge tone={v.passed ? "ok" : "bad"}>{v.passed ? "Pass" : "Fail"}</Badge>
                      {!v.passed && (v.reasons.length || v.error) ? (
                        <div className="small text-bad">{v.error || v.reasons.join(" ")}</div>
                      ) : null}
                    </td>
                  ) : null}
                  <td className="mono">{o?.name ?? "—"}</td>
                  <td className="num">{formatNumber(o?.max_abs_error)}</td>
                  <td className="num">{formatNumber(o?.max_rel_error)}</td>
                  <td className="num">{formatNumber(o?.p99_abs_error)}</td>
                  <td className="num">{o?.cosine === null || o?.cosine === undefined ? "—" : o.cosine.toFixed(6)}</td>
                  <td className="num">{formatPercent(o?.top1_agreement)}</td>
                </tr>
              ));
            })}
          </tbody>
        </table>
      </div>
    </>
  );
}
