import type { RecommendReport, Regression } from "../api/reports";
import { Badge, Empty, Notice } from "../components/ui";
import { formatMs } from "../lib/format";

const OBJECTIVES: Record<string, string> = {
  p99_latency_batch1: "lowest p99 latency at batch 1",
  throughput_within_p99_budget: "highest throughput within the p99 budget",
};

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
  return (
    <div className="recommendation">
      <p className="lead">{report.summary}</p>
      <p className="muted small">
        Objective: {OBJECTIVES[report.objective] ?? report.objective}
        {report.budget_ms ? ` (budget ${formatMs(report.budget_ms)})` : ""}.
      </p>
      <div className="table-scroll">
        <table className="table">
          <thead>
            <tr>
              <th scope="col">Rank</th>
              <th scope="col">Variant</th>
              <th scope="col">Backend · precision</th>
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
                <td className="num">{formatMs(r.p99_ms)}</td>
                <td className="num">{r.speedup ? `${r.speedup.toFixed(2)}×` : "—"}</td>
                <td className="small">{i === 0 ? "" : r.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

function change(
  delta: number | null,
  ratio: number | null,
  unit: "ms" | "cosine",
): { text: string; tone: "ok" | "bad" | "idle" } {
  if (delta === null) return { text: "not comparable", tone: "idle" };
  if (unit === "ms") {
    const pct = ratio ? (ratio - 1) * 100 : null;
    if (Math.abs(delta) < 1e-9) return { text: "unchanged", tone: "idle" };
    const words = `${delta > 0 ? "slower" : "faster"} by ${formatMs(Math.abs(delta))}${pct !== null ? ` (${Math.abs(pct).toFixed(0)}%)` : ""}`;
    return { text: words, tone: delta > 0 ? "bad" : "ok" };
  }
  if (Math.abs(delta) < 1e-9) return { text: "unchanged", tone: "idle" };
  return {
    text: `${delta > 0 ? "closer to" : "further from"} the original by ${Math.abs(delta).toExponential(2)}`,
    tone: delta > 0 ? "ok" : "bad",
  };
}

/** This version's recommended variant beside the previous approved version's. */
export function RegressionCard({ regression }: { regression: Regression | null | undefined }) {
  if (!regression) {
    return <p className="muted">No earlier approved version of this model on this profile to compare with.</p>;
  }
  const latency = change(regression.latency_delta_ms, regression.latency_ratio, "ms");
  const cosine = change(regression.cosine_delta, null, "cosine");
  return (
    <>
      <div className="table-scroll">
        <table className="table compare-table">
          <thead>
            <tr>
              <th scope="col" />
              <th scope="col">Approved v{regression.previous_version}</th>
              <th scope="col">This version</th>
              <th scope="col">Change</th>
            </tr>
          </thead>
          <tbody>
            <tr>
              <th scope="row">Recommended variant</th>
              <td className="mono">{regression.previous.name}</td>
              <td className="mono">{regression.current.name}</td>
              <td>{regression.previous.name === regression.current.name ? "same" : "different"}</td>
            </tr>
            <tr>
              <th scope="row">p99 latency</th>
              <td className="num">{formatMs(regression.previous.p99_ms)}</td>
              <td className="num">{formatMs(regression.current.p99_ms)}</td>
              <td>
                <Badge tone={latency.tone === "idle" ? "idle" : latency.tone}>{latency.text}</Badge>
              </td>
            </tr>
            <tr>
              <th scope="row">Worst cosine vs FP32</th>
              <td className="num">{regression.previous.min_cosine?.toFixed(6) ?? "—"}</td>
              <td className="num">{regression.current.min_cosine?.toFixed(6) ?? "—"}</td>
              <td>
                <Badge tone={cosine.tone === "idle" ? "idle" : cosine.tone}>{cosine.text}</Badge>
              </td>
            </tr>
          </tbody>
        </table>
      </div>
      {latency.tone === "bad" ? (
        <Notice kind="warn">
          This version is slower than the one approved before it. Check the benchmark before approving.
        </Notice>
      ) : null}
    </>
  );
}
