// The op-support matrix: operator types x runtime backends. Each cell says its status in
// colour, a symbol and a word, and shows the runtime's reason (or where the op runs) on
// hover and on keyboard focus. "Only problems" keeps the rows some backend doesn't fully run.
import { useId, useMemo, useState } from "react";
import type { MatrixCell, SupportMatrix, SupportReport, SupportStatus } from "../api/reports";
import { Badge, Empty } from "../components/ui";

export const CELL: Record<SupportStatus, { icon: string; label: string; className: string }> = {
  supported: { icon: "✓", label: "Supported", className: "cell-ok" },
  fallback: { icon: "↘", label: "Falls back", className: "cell-warn" },
  unsupported: { icon: "✕", label: "Unsupported", className: "cell-bad" },
  unknown: { icon: "?", label: "No answer", className: "cell-unknown" },
};

// An op the backend refuses as uploaded but runs after a rewrite that keeps the model's function.
export const REWRITTEN = { icon: "↻", label: "Runs after rewrite", className: "cell-warn" };

const VERDICT: Record<string, { tone: "ok" | "warn" | "bad" | "idle"; label: string }> = {
  full: { tone: "ok", label: "Runs every op" },
  partial: { tone: "warn", label: "Partial" },
  none: { tone: "bad", label: "Runs none" },
  not_installed: { tone: "idle", label: "Not installed here" },
  error: { tone: "bad", label: "Check failed" },
};

const METHOD: Record<string, string> = {
  runtime: "asked the runtime",
  probe: "one-node probes",
  converter: "the converter's report",
  published_list: "the published op list",
};

export function isProblem(cells: Record<string, MatrixCell>): boolean {
  return Object.values(cells).some((cell) => cell.status !== "supported");
}

export function cellExplanation(backend: string, cell: MatrixCell): string {
  const named = cell.nodes ?? [];
  const nodes = named.length
    ? ` Nodes: ${named.slice(0, 8).join(", ")}${named.length > 8 ? ` and ${named.length - 8} more` : ""}.`
    : "";
  const rewrite = cell.after_rewrite
    ? ` ${backend} runs it after rewrite ${cell.after_rewrite}; its variants are built from the rewritten model.`
    : "";
  if (cell.reason) return `${cell.reason}${rewrite}${nodes}`;
  if (rewrite) return `${rewrite.trim()}${nodes}`;
  if (cell.status === "supported") return `${backend} runs it${cell.device ? ` on ${cell.device}` : ""}.${nodes}`;
  return `${backend} gave no reason.${nodes}`;
}

function Cell({ backend, op, cell }: { backend: string; op: string; cell: MatrixCell }) {
  const id = useId();
  const look = cell.after_rewrite ? REWRITTEN : (CELL[cell.status] ?? CELL.unknown);
  return (
    <td className={`matrix-cell ${look.className}`}>
      <button
        type="button"
        className="cell-button"
        aria-describedby={id}
        aria-label={`${op} on ${backend}: ${look.label}${cell.after_rewrite ? ` ${cell.after_rewrite}` : ""}`}
      >
        <span aria-hidden="true" className="cell-icon">
          {look.icon}
        </span>
        <span className="cell-label">{look.label}</span>
        {cell.after_rewrite ? <span className="cell-label muted small"> {cell.after_rewrite}</span> : null}
      </button>
      <span role="tooltip" id={id} className="hint-body cell-tip">
        {cellExplanation(backend, cell)}
      </span>
    </td>
  );
}

export function OpSupportMatrix({
  matrix,
  reports = {},
}: {
  matrix: SupportMatrix;
  reports?: Record<string, SupportReport>;
}) {
  const [onlyProblems, setOnlyProblems] = useState(false);
  const [query, setQuery] = useState("");
  const rows = useMemo(() => {
    const q = query.trim().toLowerCase();
    return matrix.rows.filter(
      (row) =>
        (!onlyProblems || isProblem(row.cells)) &&
        (!q || row.op_type.toLowerCase().includes(q) || row.domain.toLowerCase().includes(q)),
    );
  }, [matrix.rows, onlyProblems, query]);
  const problems = matrix.rows.filter((row) => isProblem(row.cells)).length;
  const remedied = Object.values(matrix.remedies ?? {}).filter((remedy) => remedy.rewrites.length);
  const filterId = useId();

  if (!matrix.rows.length) {
    return (
      <Empty title="The support check found no operators.">
        The model's graph may be empty, or every backend failed before listing ops; see each backend's note below.
      </Empty>
    );
  }
  return (
    <div className="matrix">
      <div className="toolbar">
        <label className="checkbox">
          <input type="checkbox" checked={onlyProblems} onChange={(e) => setOnlyProblems(e.target.checked)} />
          Only problems ({problems})
        </label>
        <label htmlFor={filterId} className="visually-hidden">
          Filter operators
        </label>
        <input
          id={filterId}
          type="search"
          className="input input-small"
          placeholder="Filter ops, e.g. Conv"
          value={query}
          onChange={(e) => setQuery(e.target.value)}
        />
        <span className="muted" aria-live="polite">
          {rows.length} of {matrix.rows.length} op types
          {problems ? `, ${problems} with problems` : ", no problems"}
        </span>
      </div>
      <div className="legend legend-matrix" aria-label="What the marks mean">
        {(Object.keys(CELL) as SupportStatus[]).map((status) => (
          <span key={status} className={`legend-cell ${CELL[status].className}`}>
            <span aria-hidden="true">{CELL[status].icon}</span> {CELL[status].label}
          </span>
        ))}
        {remedied.length ? (
          <span className={`legend-cell ${REWRITTEN.className}`}>
            <span aria-hidden="true">{REWRITTEN.icon}</span> {REWRITTEN.label}
          </span>
        ) : null}
      </div>
      {Object.entries(matrix.remedies ?? {}).length ? (
        <ul className="notes" aria-label="Rewrites">
          {Object.entries(matrix.remedies ?? {}).map(([backend, remedy]) => (
            <li key={backend}>
              <strong>{backend}</strong>: {remedy.summary}
            </li>
          ))}
        </ul>
      ) : null}
      {/* its cells are buttons, so the keyboard already reaches (and scrolls) it */}
      <div className="table-scroll">
        <table className="table matrix-table">
          <thead>
            <tr>
              <th scope="col">Operator</th>
              {matrix.backends.map((backend) => {
                const report = reports[backend];
                const verdict = VERDICT[String(matrix.verdicts[backend])] ?? {
                  tone: "idle" as const,
                  label: String(matrix.verdicts[backend] ?? "—"),
                };
                const method = matrix.methods?.[backend] ?? report?.method ?? "";
                return (
                  <th scope="col" key={backend}>
                    <div className="backend-head">
                      <span className="backend-name">{backend}</span>
                      <span className="muted small">
                        {report?.runtime_version ? `v${report.runtime_version}` : "version unknown"}
                        {method ? ` · ${METHOD[method] ?? method}` : ""}
                      </span>
                      <Badge tone={verdict.tone} title={report?.error || undefined}>
                        {verdict.label}
                      </Badge>
                      {matrix.report_only?.includes(backend) ? (
                        <span
                          className="muted small"
                          title="The profile lists this runtime for reference: its op support is checked, nothing is built for it."
                        >
                          reference only
                        </span>
                      ) : null}
                    </div>
                  </th>
                );
              })}
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => {
              const nodes = Math.max(0, ...Object.values(row.cells).map((c) => (c.nodes ?? []).length));
              return (
                <tr key={`${row.domain}/${row.op_type}`} className={isProblem(row.cells) ? "row-problem" : undefined}>
                  <th scope="row">
                    <span className="op-name">{row.op_type}</span>
                    {row.domain !== "ai.onnx" ? <span className="muted small"> {row.domain}</span> : null}
                    {nodes ? (
                      <span className="muted small">
                        {" "}
                        · {nodes} node{nodes === 1 ? "" : "s"}
                      </span>
                    ) : null}
                  </th>
                  {matrix.backends.map((backend) => {
                    const cell = row.cells[backend] ?? {
                      status: "unknown" as const,
                      reason: `${backend} gave no answer for this op.`,
                      nodes: [],
                      device: "",
                    };
                    return <Cell key={backend} backend={backend} op={row.op_type} cell={cell} />;
                  })}
                </tr>
              );
            })}
          </tbody>
        </table>
        {!rows.length ? (
          <Empty
            title={
              onlyProblems && !query
                ? "No problems: every backend runs every op type."
                : "No op type matches the filter."
            }
          />
        ) : null}
      </div>
      {Object.values(reports).some((r) => r.error || r.notes?.length) ? (
        <details className="notes">
          <summary>How each backend answered</summary>
          <ul>
            {Object.values(reports).map((r) => (
              <li key={r.backend}>
                <strong>{r.backend}</strong>: {r.error ? <span className="text-bad">{r.error}</span> : null}{" "}
                {(r.notes ?? []).join(" ")}
              </li>
            ))}
          </ul>
        </details>
      ) : null}
    </div>
  );
}
