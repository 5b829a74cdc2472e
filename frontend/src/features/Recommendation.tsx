import { Link } from "react-router";
import type { RankedVariant, RecommendReport } from "../api/reports";
import type { VersionDetail } from "../api/types";
import { Badge, Empty, Notice } from "../components/ui";
import { formatMs } from "../lib/format";
import { ChangeBadge, ComparisonTable, compareHref, latencyParts, rateParts } from "./Compare";

const OBJECTIVES: Record<string, string> = {
  p99_latency_batch1: "lowest p99 latency at batch 1",
  throughput_within_p99_budget: "highest throughput within the p99 budget",
};

const STATISTICS: Record<string, string> = {
  cpu_ms: "CPU time / inference",
  p50_ms: "p50 latency",
  p99_ms: "p99 latency",
  throughput: "Throughput",
};

/** The ranking figure with its 95% interval, as the recommendation compared it. */
function RankedFigure({ r, statistic }: { r: RankedVariant; statistic: string }) {
  if (r.value === null || r.value === undefined) return <>—</>;
  // A figure stored without an interval counts as exact: low = high = value.
  const exact = r.low == null || r.high == null || r.low === r.high;
  const parts = (statistic === "throughput" ? rateParts : latencyParts)(
    r.value,
    exact ? null : r.low,
    exact ? null : r.high,
  );
  return (
    <>
      {parts.value}
      <span className="muted small">
        <br />
        {parts.interval ? `95%: ${parts.interval}` : "no interval"}
      </span>
    </>
  );
}

/** "2.41× (95%: 2.30–2.52×)", or the point estimate alone where the report has no band. */
export function speedupText(r: RankedVariant): string {
  if (!r.speedup) return "—";
  const point = `${r.speedup.toFixed(2)}×`;
  if (r.speedup_low == null || r.speedup_high == null) return point;
  const low = r.speedup_low.toFixed(2);
  const high = r.speedup_high.toFixed(2);
  return low === high ? point : `${point} (95%: ${low}–${high}×)`;
}

export function RecommendationCard({ report }: { report: RecommendReport | undefined }) {
  if (!report)
    return (
      <Empty title="No recommendation yet.">
        The recommend step picks the fastest variant within the accuracy tolerance.
      </Empty>
    );
  const ranked = [report.winner, report.runner_up, ...report.others].filter((r): r is NonNullable<typeof r> =>
    Boolean(r),
  );
  const statistic = report.statistic ?? "p99_ms";
  const winner = report.winner;
  return (
    <div className="recommendation">
      <p className="lead">{report.summary}</p>
      {winner?.speedup ? (
        <p title={winner.speedup_sentence || undefined}>
          <strong>Speed-up over the original:</strong> {speedupText(winner)}
        </p>
      ) : null}
      <p className="muted small">
        Objective: {OBJECTIVES[report.objective] ?? report.objective}
        {report.budget_ms ? ` (budget ${formatMs(report.budget_ms)})` : ""}.
        {report.statistic_note ? ` Ranked by ${report.statistic_note}.` : ""}
      </p>
      <div className="table-scroll" tabIndex={0}>
        <table className="table">
          <thead>
            <tr>
              <th scope="col">Rank</th>
              <th scope="col">Variant</th>
              <th scope="col">Backend · precision</th>
              <th scope="col" className="num">
                {STATISTICS[statistic] ?? statistic}
              </th>
              <th scope="col" className="num">
                p99
              </th>
              <th scope="col" className="num">
                Speed-up vs original
              </th>
              <th scope="col">Why not</th>
            </tr>
          </thead>
          <tbody>
            {ranked.map((r, i) => (
              <tr key={r.name} className={i === 0 ? "row-winner" : undefined}>
                <td>{i === 0 ? <Badge tone="ok">Winner</Badge> : i === 1 && report.runner_up ? "Runner-up" : i + 1}</td>
                <th scope="row" className="mono">
                  {r.name}
                </th>
                <td>
                  {r.backend} · {r.precision}
                </td>
                <td className="num">
                  <RankedFigure r={r} statistic={r.statistic ?? statistic} />
                </td>
                <td className="num" title={r.p99_note ?? undefined}>
                  {r.p99_ms == null && r.p99_note ? (
                    <span className="muted small">not enough samples</span>
                  ) : (
                    formatMs(r.p99_ms)
                  )}
                </td>
                <td className="num" title={r.speedup_sentence || undefined}>
                  {speedupText(r)}
                </td>
                <td className="small">
                  {i === 0 ? "" : r.reason}
                  {i !== 0 && r.tied_with?.length ? ` (tied with ${r.tied_with.join(", ")})` : ""}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

/** This version's recommended variant beside the previous approved version's, on one profile,
 * computed when the version was read (`previous_approved`): it follows later approvals, and
 * every change carries its band; a difference within the noise reads "no change". */
export function PreviousApprovedCard({
  previous,
  profile,
}: {
  previous: VersionDetail["previous_approved"] | undefined;
  profile: string;
}) {
  if (!previous) {
    return <p className="muted">No earlier approved version of this model to compare with.</p>;
  }
  const comparison = previous.profiles[profile];
  if (!comparison) {
    return (
      <p className="muted">
        {previous.not_compared[profile] ??
          `Approved v${previous.number} has no comparison on ${profile || "this profile"}.`}
      </p>
    );
  }
  const headline = comparison.latency.find((c) => c.what === comparison.headline);
  const further = comparison.accuracy.filter((c) => c.verdict === "further");
  return (
    <>
      <p>
        Against approved v{previous.number}: {headline ? <ChangeBadge change={headline} /> : null}{" "}
        <span className="small">{headline?.sentence}</span>
      </p>
      <ComparisonTable comparison={comparison} compact />
      {headline?.verdict === "slower" ? (
        <Notice kind="warn">
          This version is slower than approved v{previous.number} beyond the measurement's noise: {headline.sentence}{" "}
          Check the benchmark before approving.
        </Notice>
      ) : null}
      {further.length ? (
        <Notice kind="warn">
          Further from the original than approved v{previous.number}: {further.map((c) => c.sentence).join(" ")}
        </Notice>
      ) : null}
      <p className="small">
        <Link to={compareHref(String(previous.version_id), String(comparison.b.version_id), profile)}>
          Open this comparison
        </Link>
      </p>
    </>
  );
}
