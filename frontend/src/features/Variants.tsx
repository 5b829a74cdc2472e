import type { BenchmarkReport, OptimizeReport, ParityReport, RecommendReport } from "../api/reports";
import { apiUrl } from "../api/client";
import type { Artifact } from "../api/types";
import { Badge, Empty } from "../components/ui";
import { formatBytes, formatMs, formatRate } from "../lib/format";
import { pointAt } from "../charts/series";
import { Tradeoff } from "./Tradeoff";

// The rewrites the variant's model went through before its backend would take it (see the
// op-support matrix), in a sentence: "Built after rewrite expand-functions: expanded 1 Mish node...".
export function rewriteText(options: Record<string, unknown> | undefined): string {
  const rewrites = options?.rewrites;
  if (!Array.isArray(rewrites) || !rewrites.length) return "";
  const steps = Array.isArray(options?.rewrite_steps) ? (options.rewrite_steps as { detail?: unknown }[]) : [];
  const details = steps.map((step) => (typeof step.detail === "string" ? step.detail : "")).filter(Boolean);
  return `Built after rewrite ${rewrites.join(" + ")}${details.length ? `: ${details.join("; ")}` : ""}.`;
}

export function VariantsTable({
  optimize,
  parity,
  benchmark,
  recommend,
  artifacts,
  profile,
}: {
  optimize: OptimizeReport | undefined;
  parity: ParityReport | undefined;
  benchmark: BenchmarkReport | undefined;
  recommend: RecommendReport | undefined;
  artifacts: Artifact[];
  profile: string;
}) {
  if (!optimize) return <Empty title="No variants yet.">The optimize step builds them for this profile.</Empty>;
  const byName = new Map(
    artifacts.filter((a) => a.kind === "variant").map((a) => [a.name.split("/").slice(1).join("/") || a.name, a]),
  );
  const errors = Object.entries(optimize.errors ?? {});
  const skipped = Object.entries(optimize.skipped ?? {});
  const notes = Object.entries(optimize.notes ?? {}).flatMap(([backend, lines]) =>
    lines.map((line, i) => ({ key: `n-${backend}-${i}`, backend, line })),
  );
  return (
    <>
      {optimize.variants.length === 0 ? (
        <Empty title="No variant could be built for this profile." />
      ) : (
        <div className="table-scroll" tabIndex={0}>
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Variant</th>
                <th scope="col">Backend</th>
                <th scope="col">Precision</th>
                <th scope="col">Format</th>
                <th scope="col" className="num">
                  Size
                </th>
                <th scope="col">Parity</th>
                <th scope="col" className="num">
                  p99, batch 1
                </th>
                <th scope="col" className="num">
                  Throughput
                </th>
                <th scope="col">File</th>
              </tr>
            </thead>
            <tbody>
              {optimize.variants.map((v) => {
                const artifact = byName.get(`${v.name}`) ?? artifacts.find((a) => a.name === `${profile}/${v.name}`);
                const check = parity?.variants?.[v.name];
                const run = benchmark?.variants?.[v.name];
                const point = run ? (pointAt(run, 1, 1) ?? run.points?.[0]) : undefined;
                const winner = recommend?.winner?.name === v.name;
                return (
                  <tr key={v.name} className={winner ? "row-winner" : undefined}>
                    <th scope="row">
                      <span className="mono">{v.name}</span> {winner ? <Badge tone="ok">Recommended</Badge> : null}
                      <div className="muted small">{v.pass_name}</div>
                      {typeof v.options?.recipe === "string" ? (
                        <div className="muted small variant-recipe">{v.options.recipe}</div>
                      ) : null}
                      {typeof v.options?.reason === "string" ? (
                        <div className="muted small variant-reason">{v.options.reason}</div>
                      ) : null}
                      {rewriteText(v.options) ? (
                        <div className="muted small variant-rewrite">{rewriteText(v.options)}</div>
                      ) : null}
                    </th>
                    <td>{v.backend}</td>
                    <td>{v.precision}</td>
                    <td>{v.format}</td>
                    <td className="num">{artifact ? formatBytes(artifact.size) : "—"}</td>
                    <td>
                      {check ? (
                        <Badge tone={check.passed ? "ok" : "bad"}>
                          {check.passed ? "Within tolerance" : "Out of tolerance"}
                        </Badge>
                      ) : (
                        <span className="muted">not checked</span>
                      )}
                    </td>
                    <td className="num">
                      {point ? (
                        formatMs(point.p99_ms)
                      ) : run?.error ? (
                        <span className="text-bad small" title={run.error}>
                          not measured
                        </span>
                      ) : (
                        "—"
                      )}
                    </td>
                    <td className="num">{point ? formatRate(point.throughput) : "—"}</td>
                    <td>
                      {artifact ? (
                        <a
                          href={apiUrl(`artifacts/${artifact.id}/download/`)}
                          download
                          aria-label={`Download ${v.name}`}
                          title={`sha256 ${artifact.sha256}`}
                        >
                          Download
                        </a>
                      ) : (
                        "—"
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {errors.length || skipped.length || notes.length ? (
        <ul className="notes-list">
          {errors.map(([name, why]) => (
            <li key={`e-${name}`}>
              <strong className="text-bad">{name} could not be built:</strong> {why}
            </li>
          ))}
          {skipped.map(([name, why]) => (
            <li key={`s-${name}`}>
              <strong>{name} skipped:</strong> {why}
            </li>
          ))}
          {notes.map(({ key, backend, line }) => (
            <li key={key}>
              <strong>{backend}:</strong> {line}
            </li>
          ))}
        </ul>
      ) : null}
      {optimize.variants.length ? (
        <Tradeoff optimize={optimize} parity={parity} benchmark={benchmark} recommend={recommend} />
      ) : null}
    </>
  );
}
