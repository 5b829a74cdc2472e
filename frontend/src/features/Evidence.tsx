// The evidence snapshot an approval binds to (apps/approvals/evidence.py), per profile: the
// worker it was measured on, each backend's support verdict, the tolerance, and the
// recommended variant's benchmark and worst parity numbers beside the original's.
import { Badge, KeyValues } from "../components/ui";
import { formatMs, formatNumber, formatRate } from "../lib/format";

interface EvidencePoint {
  batch: number;
  concurrency: number;
  p50_ms: number;
  p99_ms: number;
  throughput: number;
}

interface ProfileEvidence {
  hardware_profile?: { slug: string; device_kind?: string };
  worker?: { host?: string; cpu_model?: string; cores?: number; gpus?: unknown[] } | null;
  support?: Record<
    string,
    { verdict: string; runtime_version?: string | null; unsupported_ops?: string[]; fallback_ops?: string[] }
  >;
  tolerance?: Record<string, number | null>;
  baseline_benchmark?: EvidencePoint[];
  recommendation?: {
    summary?: string;
    winner?: {
      name: string;
      backend: string;
      precision: string;
      benchmark?: EvidencePoint[];
      parity?: Record<string, number | boolean | null>;
    } | null;
    speedup?: number | null;
  } | null;
}

export interface EvidenceSnapshot {
  version?: { uploaded_by?: string };
  artifacts?: { source?: { sha256: string; size: number; format: string } | null };
  profiles?: Record<string, ProfileEvidence>;
}

const VERDICT_TONE: Record<string, "ok" | "warn" | "bad" | "idle"> = {
  full: "ok",
  partial: "warn",
  none: "bad",
  error: "bad",
  not_installed: "idle",
};

export function EvidenceSummary({ evidence }: { evidence: EvidenceSnapshot }) {
  const profiles = Object.entries(evidence.profiles ?? {});
  if (!profiles.length) return <p className="muted">The evidence is incomplete: no finished per-profile steps.</p>;
  return (
    <div className="evidence">
      {profiles.map(([slug, p]) => {
        const winner = p.recommendation?.winner;
        const base = new Map((p.baseline_benchmark ?? []).map((pt) => [`${pt.batch}x${pt.concurrency}`, pt]));
        return (
          <div key={slug} className="evidence-profile">
            <h4 className="h4">{slug}</h4>
            <KeyValues
              items={[
                [
                  "Measured on",
                  p.worker
                    ? `${p.worker.host ?? "?"}${p.worker.cpu_model ? `, ${p.worker.cpu_model}` : ""}${p.worker.cores ? `, ${p.worker.cores} cores` : ""}`
                    : "unknown worker",
                ],
                [
                  "Recommended",
                  winner
                    ? `${winner.name} (${winner.backend}, ${winner.precision})`
                    : "no variant passed; the original model",
                ],
                ["Speed-up", p.recommendation?.speedup ? `${p.recommendation.speedup.toFixed(2)}× the original` : "—"],
              ]}
            />
            <div className="support-verdicts">
              {Object.entries(p.support ?? {}).map(([backend, s]) => (
                <span key={backend} className="verdict">
                  <Badge tone={VERDICT_TONE[s.verdict] ?? "idle"}>
                    {backend}: {s.verdict.replace(/_/g, " ")}
                  </Badge>
                  {s.unsupported_ops?.length ? (
                    <span className="small text-bad"> unsupported {s.unsupported_ops.join(", ")}</span>
                  ) : null}
                  {s.fallback_ops?.length ? (
                    <span className="small text-warn"> falls back {s.fallback_ops.join(", ")}</span>
                  ) : null}
                </span>
              ))}
            </div>
            {winner?.benchmark?.length ? (
              <div className="table-scroll" tabIndex={0}>
                <table className="table table-compact">
                  <caption>Recommended variant vs the original</caption>
                  <thead>
                    <tr>
                      <th scope="col">Batch × conc.</th>
                      <th scope="col" className="num">
                        p50
                      </th>
                      <th scope="col" className="num">
                        p99
                      </th>
                      <th scope="col" className="num">
                        original p99
                      </th>
                      <th scope="col" className="num">
                        Throughput
                      </th>
                    </tr>
                  </thead>
                  <tbody>
                    {winner.benchmark.map((pt) => (
                      <tr key={`${pt.batch}x${pt.concurrency}`}>
                        <th scope="row">
                          {pt.batch} × {pt.concurrency}
                        </th>
                        <td className="num">{formatMs(pt.p50_ms)}</td>
                        <td className="num">{formatMs(pt.p99_ms)}</td>
                        <td className="num">{formatMs(base.get(`${pt.batch}x${pt.concurrency}`)?.p99_ms)}</td>
                        <td className="num">{formatRate(pt.throughput)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            ) : null}
            {winner?.parity ? (
              <p className="small">
                Worst parity vs FP32: cosine {formatNumber(winner.parity.cosine as number | null, 7)}, max abs error{" "}
                {formatNumber(winner.parity.max_abs_error as number | null)}
                {winner.parity.top1_agreement !== undefined && winner.parity.top1_agreement !== null
                  ? `, top-1 agreement ${formatNumber(winner.parity.top1_agreement as number)}`
                  : ""}
                .
              </p>
            ) : null}
          </div>
        );
      })}
      {evidence.artifacts?.source ? (
        <p className="muted small">
          Source {evidence.artifacts.source.format}, sha256{" "}
          <code>{evidence.artifacts.source.sha256.slice(0, 16)}…</code>
        </p>
      ) : null}
    </div>
  );
}
