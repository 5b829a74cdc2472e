import type { ParityReport } from "../api/reports";
import { Badge, Empty } from "../components/ui";
import { formatNumber, formatPercent } from "../lib/format";

type Tolerance = Record<string, number | null | undefined>;

/** The rule as workers/engine/parity.py applies it: an output passes outright within the
 * max abs error; otherwise each of the other limits must hold, the slices' included. */
export function toleranceRule(tolerance: Tolerance | undefined): string {
  const t = tolerance ?? {};
  const set = (key: string) => t[key] !== null && t[key] !== undefined;
  if (!Object.keys(t).length) return "the profile's defaults.";
  const otherwise: string[] = [];
  if (set("min_cosine")) otherwise.push(`cosine ≥ ${t.min_cosine}`);
  if (set("min_top1_agreement")) otherwise.push(`top-1 agreement ≥ ${t.min_top1_agreement} (classifier outputs)`);
  if (set("p99_abs_error")) otherwise.push(`p99 abs error ≤ ${t.p99_abs_error}`);
  if (set("max_rel_error")) otherwise.push(`max rel error ≤ ${t.max_rel_error}`);
  if (set("min_slice_sqnr_db"))
    otherwise.push(`every slice (column or channel) keeps a signal-to-noise ratio ≥ ${t.min_slice_sqnr_db} dB`);
  const outright = set("max_abs_error") ? `max abs error ≤ ${t.max_abs_error} passes outright` : "";
  const rest = otherwise.length ? `otherwise ${otherwise.join(", and ")}` : "";
  return `${[outright, rest].filter(Boolean).join("; ")}.`;
}

export function ParityTable({ report }: { report: ParityReport | undefined }) {
  if (!report)
    return (
      <Empty title="No accuracy check yet.">
        The parity step compares every variant with the FP32 original on the same inputs.
      </Empty>
    );
  const names = Object.keys(report.variants).sort();
  return (
    <>
      <p className="muted small">
        {report.inputs?.samples
          ? `${report.inputs.samples} samples from ${report.inputs.source ?? "the validation inputs"}. `
          : ""}
        Per output: {toleranceRule(report.tolerance)}
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
              <th scope="col" className="num" title="The lowest signal-to-noise ratio of the output's slices">
                Worst slice
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
                  <td className="num" title={o?.worst_slice ?? undefined}>
                    {o?.worst_slice_sqnr_db === null || o?.worst_slice_sqnr_db === undefined
                      ? "—"
                      : `${o.worst_slice_sqnr_db.toFixed(1)} dB`}
                  </td>
                </tr>
              ));
            })}
          </tbody>
        </table>
      </div>
    </>
  );
}
