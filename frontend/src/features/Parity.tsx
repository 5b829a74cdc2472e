import type { OutputParity, ParityReport } from "../api/reports";
import { Badge, Empty } from "../components/ui";
import { formatNumber, formatPercent } from "../lib/format";

type Tolerance = Record<string, number | null | undefined>;

/** The rule as workers/engine/parity.py applies it: an output passes outright within the
 * max abs error; otherwise each of the other limits must hold, the slices' and the output
 * kind's included (top-1 per pixel of a segmentation map, cosine per vector of an embedding,
 * decoded detections of a detection head). */
export function toleranceRule(tolerance: Tolerance | undefined): string {
  const t = tolerance ?? {};
  const set = (key: string) => t[key] !== null && t[key] !== undefined;
  if (!Object.keys(t).length) return "the profile's defaults.";
  const otherwise: string[] = [];
  if (set("min_cosine")) otherwise.push(`cosine ≥ ${t.min_cosine} (an embedding's for every vector)`);
  if (set("min_top1_agreement"))
    otherwise.push(`top-1 agreement ≥ ${t.min_top1_agreement} (classifier outputs; a segmentation map's per pixel)`);
  if (set("p99_abs_error")) otherwise.push(`p99 abs error ≤ ${t.p99_abs_error}`);
  if (set("max_rel_error")) otherwise.push(`max rel error ≤ ${t.max_rel_error}`);
  if (set("min_slice_sqnr_db"))
    otherwise.push(`every slice (column or channel) keeps a signal-to-noise ratio ≥ ${t.min_slice_sqnr_db} dB`);
  if (set("min_detection_recall") || set("min_detection_precision")) {
    const parts = [];
    if (set("min_detection_recall"))
      parts.push(`finds ≥ ${formatPercent(t.min_detection_recall)} of the original's detections`);
    if (set("min_detection_precision"))
      parts.push(`≥ ${formatPercent(t.min_detection_precision)} of its own detections are the original's`);
    otherwise.push(`a detection head ${parts.join(" and ")} (decoded, same class, matched by IoU)`);
  }
  const outright = set("max_abs_error") ? `max abs error ≤ ${t.max_abs_error} passes outright` : "";
  const rest = otherwise.length ? `otherwise ${otherwise.join(", and ")}` : "";
  return `${[outright, rest].filter(Boolean).join("; ")}.`;
}

/** What an output is, as the table's "Output" cell says it under the name. */
function kindLabel(o: OutputParity | null): string {
  if (!o?.kind) return "";
  return o.kind_source === "declared" ? `${o.kind} (declared)` : `${o.kind} (proposed by inspection)`;
}

/** The figures of the output's kind: detections for a detection head, top-k for a classifier,
 * per-pixel agreement for a segmentation map, the worst vector for an embedding. */
export function kindFigures(o: OutputParity | null): string {
  if (!o) return "—";
  const d = o.detection;
  if (d) {
    const counts = `${d.reference_detections} → ${d.variant_detections} detections on ${d.images} inputs`;
    if (d.recall === null) return `${counts}; the original found none to compare`;
    const precision = d.precision === null ? "" : `, precision ${formatPercent(d.precision)}`;
    const iou = d.mean_matched_iou === null ? "" : `, mean IoU ${d.mean_matched_iou.toFixed(2)}`;
    return `recall ${formatPercent(d.recall)}${precision}${iou} (${counts})`;
  }
  if (o.topk_agreement !== null && o.topk_agreement !== undefined && o.top_k)
    return `top-${o.top_k} agreement ${formatPercent(o.topk_agreement)}`;
  if (o.pixel_agreement !== null && o.pixel_agreement !== undefined)
    return `same class on ${formatPercent(o.pixel_agreement)} of pixels`;
  if (o.min_row_cosine !== null && o.min_row_cosine !== undefined)
    return `worst vector's cosine ${o.min_row_cosine.toFixed(6)}`;
  return "—";
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
          ? `${report.inputs.samples} samples from ${report.inputs.source ?? "the validation inputs"}${
              report.inputs.description ? ` (${report.inputs.description})` : ""
            }. `
          : ""}
        Per output: {toleranceRule(report.tolerance)}
      </p>
      <div className="table-scroll" tabIndex={0}>
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
              <th scope="col" title="The metrics of what the output is: detections, top-k, pixels, vectors">
                By kind
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
                      {v.outputs
                        .flatMap((each) => each.notes ?? [])
                        .map((note) => (
                          <div key={note} className="small muted">
                            {note}
                          </div>
                        ))}
                    </td>
                  ) : null}
                  <td>
                    <span className="mono">{o?.name ?? "—"}</span>
                    {o?.kind ? <div className="small muted">{kindLabel(o)}</div> : null}
                  </td>
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
                  <td className="small">{kindFigures(o)}</td>
                </tr>
              ));
            })}
          </tbody>
        </table>
      </div>
    </>
  );
}
