// The speed/accuracy trade-off of a profile's variants: each variant's speed-up over the
// original (from the benchmark) against its accuracy (from the parity check), coloured by
// whether parity passed, with the Pareto front; and, for a variant a quantization search made
// (or started from), every candidate model the search judged. Candidates were judged for
// accuracy only: the share of the model kept in float stands in for their speed, and the plot
// says so.
import type { BenchmarkReport, OptimizeReport, ParityReport, RecommendReport } from "../api/reports";
import { ScatterChart, type ScatterGroup, type ScatterPoint } from "../charts/ScatterChart";
import {
  ACCURACY_CAP_DB,
  formatDb,
  outOfBudget,
  paretoFront,
  searchRecords,
  tradeoffPoints,
  type SearchRecord,
} from "../charts/tradeoff";
import { Badge, Empty, Notice } from "../components/ui";

const PASSED = "Within tolerance";
const FAILED = "Out of tolerance";
const ORIGINAL = "Original model";

const GROUPS: ScatterGroup[] = [
  { name: PASSED, color: "#009E73", marker: "circle" },
  { name: FAILED, color: "#D55E00", marker: "cross" },
  { name: ORIGINAL, color: "#444444", marker: "diamond" },
];

const SEARCH_GROUPS: ScatterGroup[] = [
  { name: "Passed", color: "#009E73", marker: "circle" },
  { name: "Failed", color: "#D55E00", marker: "cross" },
  { name: "Chosen", color: "#0072B2", marker: "diamond" },
];

function formatSpeedup(value: number): string {
  return `${value.toFixed(2)}×`;
}

function plotted(db: number): number {
  return Math.min(db, ACCURACY_CAP_DB);
}

function yTick(value: number): string {
  return value >= ACCURACY_CAP_DB ? `≥${ACCURACY_CAP_DB}` : String(Number(value.toFixed(1)));
}

export function Tradeoff({
  optimize,
  parity,
  benchmark,
  recommend,
}: {
  optimize: OptimizeReport | undefined;
  parity: ParityReport | undefined;
  benchmark: BenchmarkReport | undefined;
  recommend?: RecommendReport | undefined;
}) {
  const tradeoff = tradeoffPoints(optimize, parity, benchmark, recommend);
  const variants = tradeoff.points.filter((p) => !p.baseline);
  const searches = searchRecords(optimize);
  const points: ScatterPoint[] = tradeoff.points.map((p) => ({
    key: p.name,
    x: p.speedup,
    y: plotted(p.accuracyDb),
    group: p.baseline ? ORIGINAL : p.passed ? PASSED : FAILED,
    label: p.name,
    title: `${p.name}: ${formatSpeedup(p.speedup)} the original's speed, worst output ${formatDb(p.accuracyDb)}${
      p.baseline ? "" : p.passed ? ", within tolerance" : ", out of tolerance"
    }${p.recommended ? " (recommended)" : ""}`,
    emphasis: p.recommended,
  }));
  const front = paretoFront(points).map((p) => p.key);
  return (
    <div className="tradeoff">
      <h3 className="h3">Speed against accuracy</h3>
      {variants.length === 0 ? (
        <Empty title="No variant has both a speed and an accuracy yet.">
          The plot needs the benchmark and the accuracy check of at least one variant.
        </Empty>
      ) : (
        <div className="charts">
          <ScatterChart
            title={`Each variant's speed-up over the original (${tradeoff.statisticLabel}, batch 1) against its accuracy`}
            description={`${variants.length} variants and the original. The Pareto front joins those no other variant beats on both speed and accuracy: ${front.join(", ")}.`}
            points={points}
            groups={GROUPS}
            front={front}
            xLabel={`Speed-up over the original (${tradeoff.statistic === "cpu_ms" ? "CPU time" : "p50"}), ×`}
            yLabel={`Worst output SNR, dB (≥${ACCURACY_CAP_DB} at top)`}
            yFormat={yTick}
            xFormat={(v) => `${Number(v.toFixed(2))}`}
            table={
              <table className="table table-compact">
                <thead>
                  <tr>
                    <th scope="col">Variant</th>
                    <th scope="col" className="num">
                      Speed-up
                    </th>
                    <th scope="col" className="num">
                      Worst output
                    </th>
                    <th scope="col">Parity</th>
                    <th scope="col">On the front</th>
                  </tr>
                </thead>
                <tbody>
                  {tradeoff.points.map((p) => (
                    <tr key={p.name}>
                      <th scope="row" className="mono">
                        {p.name}
                      </th>
                      <td className="num">{formatSpeedup(p.speedup)}</td>
                      <td className="num">{formatDb(p.accuracyDb)}</td>
                      <td>{p.baseline ? "reference" : p.passed ? "within tolerance" : "out of tolerance"}</td>
                      <td>{front.includes(p.name) ? "yes" : "no"}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            }
          />
          <div className="tradeoff-notes small">
            <p>
              Speed-up: the original&apos;s {tradeoff.statisticLabel} at batch 1 over the variant&apos;s, from the
              benchmark. Accuracy: the worst output&apos;s signal-to-noise ratio against the original on the parity
              inputs (its worst slice where it has slices; a detection head also counts the detections it misses), as
              the quantization search scores its candidates. Exact matches and anything above {ACCURACY_CAP_DB} dB are
              drawn at the top. Up and to the right is better; the dashed line is the Pareto front.
            </p>
            {tradeoff.excluded.length ? (
              <p className="muted">
                Not on the plot:{" "}
                {tradeoff.excluded.map((e, i) => (
                  <span key={e.name}>
                    {i ? "; " : ""}
                    <span className="mono">{e.name}</span> ({e.why})
                  </span>
                ))}
                .
              </p>
            ) : null}
          </div>
        </div>
      )}
      {searches.map((record) => (
        <SearchCandidates key={record.variant} record={record} />
      ))}
    </div>
  );
}

function SearchCandidates({ record }: { record: SearchRecord }) {
  const unit = record.unit;
  const points: ScatterPoint[] = record.candidates.flatMap((c, i) =>
    c.floatShare === null || c.scoreDb === null
      ? []
      : [
          {
            key: String(i),
            x: c.floatShare * 100,
            y: plotted(c.scoreDb),
            group: c.chosen ? "Chosen" : c.passed ? "Passed" : "Failed",
            label: c.label,
            title: `${c.label}: ${c.floatCount ?? "?"} ${unit} in float (${(c.floatShare * 100).toFixed(0)}%), worst output ${formatDb(c.scoreDb)}, ${c.passed ? "passed" : "failed"}${c.chosen ? " (chosen)" : ""}`,
            emphasis: c.chosen,
          },
        ],
  );
  const unplotted = record.candidates.length - points.length;
  const budget = [
    record.budgetSeconds !== null ? `${record.budgetSeconds} s` : null,
    record.maxCandidates !== null ? `${record.maxCandidates} candidates` : null,
  ]
    .filter(Boolean)
    .join(", ");
  return (
    <section className="search-record" aria-label={`The search behind ${record.variant}`}>
      <h4 className="h4">
        The search behind <span className="mono">{record.variant}</span>
      </h4>
      <p className="small">
        It judged {record.candidates.length} candidate models
        {record.spentSeconds !== null ? ` in ${record.spentSeconds} s` : ""}
        {budget ? ` (budget: ${budget})` : ""}
        {record.probe ? ` on ${record.probe}` : ""}
        {record.measured !== null && record.total !== null
          ? `, measuring ${record.measured} of ${record.total} ${unit}`
          : ""}
        , and stopped: {record.stoppedBecause || "—"}.
      </p>
      {outOfBudget(record) ? (
        <Notice kind="warn" title="The search ran out of budget">
          What it measured is kept below; a larger budget (search_budget_s, search_max_candidates in the hardware
          profile&apos;s options) may find a mix with fewer {unit} in float.
        </Notice>
      ) : null}
      <div className="charts">
        {points.length ? (
          <ScatterChart
            title="Candidates: accuracy against the share kept in float"
            description={`${points.length} candidate models of the search behind ${record.variant}. Candidates were judged for accuracy only; the share kept in float stands in for speed.`}
            points={points}
            groups={SEARCH_GROUPS}
            xLabel={`Share of ${unit} kept in float, %`}
            yLabel={`Worst output SNR, dB (≥${ACCURACY_CAP_DB} at top)`}
            yFormat={yTick}
          />
        ) : (
          <Empty title="No candidate to plot.">
            {record.unit === "quantizers"
              ? "NNCF does not say how many layers each of its candidates kept in float."
              : "No candidate could be scored."}
          </Empty>
        )}
        <div className="table-scroll" tabIndex={0}>
          <table className="table table-compact search-candidates">
            <caption className="small muted">
              Every candidate judged, in order. Only the chosen one was built and benchmarked: left of the plot, less in
              float, is faster.
              {unplotted ? ` ${unplotted} without a share in float are listed here only.` : ""}
            </caption>
            <thead>
              <tr>
                <th scope="col">Candidate</th>
                <th scope="col" className="num">
                  In float
                </th>
                <th scope="col" className="num">
                  Worst output
                </th>
                <th scope="col">Result</th>
              </tr>
            </thead>
            <tbody>
              {record.candidates.map((c, i) => (
                <tr key={i} className={c.chosen ? "row-winner" : undefined}>
                  <th scope="row" className="mono small">
                    {c.label}
                  </th>
                  <td className="num">
                    {c.floatCount === null
                      ? "—"
                      : `${c.floatCount}${c.floatShare !== null ? ` (${(c.floatShare * 100).toFixed(0)}%)` : ""}`}
                  </td>
                  <td className="num">{formatDb(c.scoreDb)}</td>
                  <td>
                    <Badge tone={c.passed ? "ok" : "bad"}>{c.passed ? "passed" : "failed"}</Badge>
                    {c.chosen ? <span className="small"> chosen</span> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </div>
    </section>
  );
}
