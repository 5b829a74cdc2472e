import { Fragment, useId, useState } from "react";
import { useSearchParams } from "react-router";
import { apiUrl, get, sameOrigin } from "../api/client";
import type { AuditEvent, Page } from "../api/types";
import { useSession } from "../auth/session";
import { Empty, ErrorMessage, Loading, PageHeader } from "../components/ui";
import { formatDateTime } from "../lib/format";
import { useResource } from "../lib/hooks";

const FILTERS = ["team", "action", "actor", "since", "until"] as const;

/** <input type="datetime-local"> gives local time without a zone; the API wants ISO 8601. */
export function toIso(local: string): string {
  if (!local) return "";
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? local : date.toISOString();
}

export function AuditPage() {
  const { me } = useSession();
  const [params, setParams] = useSearchParams();
  const [cursor, setCursor] = useState<string | null>(null);
  const [history, setHistory] = useState<(string | null)[]>([]);
  const [open, setOpen] = useState<number>();
  const base = useId();
  const ids = Object.fromEntries(FILTERS.map((f) => [f, `${base}-${f}`])) as Record<(typeof FILTERS)[number], string>;
  const query: Record<string, string> = {};
  for (const f of FILTERS) {
    const value = params.get(f);
    if (value) query[f] = f === "since" || f === "until" ? toIso(value) : value;
  }
  const key = JSON.stringify(query);
  const page = useResource(
    () =>
      cursor ? get<Page<AuditEvent>>(sameOrigin(cursor)) : get<Page<AuditEvent>>("audit/", { ...query, page_size: 50 }),
    [key, cursor],
  );
  const set = (name: string, value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(name, value);
    else next.delete(name);
    setParams(next, { replace: true });
    setCursor(null);
    setHistory([]);
  };
  return (
    <>
      <PageHeader
        title="Audit log"
        subtitle="Every change, who made it, how they signed in and from where, newest first. Admins and approvers see their teams' events; everyone sees their own."
        actions={
          <>
            <a className="button" href={apiUrl("audit/export/", { ...query, format: "csv" })} download>
              Export CSV
            </a>
            <a className="button" href={apiUrl("audit/export/", { ...query, format: "json" })} download>
              Export JSON
            </a>
          </>
        }
      />
      <div className="filters" role="search">
        <div className="field">
          <label htmlFor={ids.team}>Team</label>
          <select
            id={ids.team}
            className="input"
            value={params.get("team") ?? ""}
            onChange={(e) => set("team", e.target.value)}
          >
            <option value="">All teams</option>
            {me?.teams.map((t) => (
              <option key={t.slug} value={t.slug}>
                {t.slug}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={ids.action}>Action starts with</label>
          <input
            id={ids.action}
            className="input"
            placeholder="version. or token.created"
            value={params.get("action") ?? ""}
            onChange={(e) => set("action", e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor={ids.actor}>Actor</label>
          <input
            id={ids.actor}
            className="input"
            placeholder="username"
            value={params.get("actor") ?? ""}
            onChange={(e) => set("actor", e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor={ids.since}>From</label>
          <input
            id={ids.since}
            type="datetime-local"
            className="input"
            value={params.get("since") ?? ""}
            onChange={(e) => set("since", e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor={ids.until}>Until</label>
          <input
            id={ids.until}
            type="datetime-local"
            className="input"
            value={params.get("until") ?? ""}
            onChange={(e) => set("until", e.target.value)}
          />
        </div>
      </div>
      {page.error ? (
        <ErrorMessage error={page.error} />
      ) : !page.data ? (
        <Loading height={300} />
      ) : page.data.results.length === 0 ? (
        <Empty title={Object.keys(query).length ? "No event matches these filters." : "No events yet."} />
      ) : (
        <>
          <div className={`table-scroll${page.loading ? " is-refreshing" : ""}`} tabIndex={0}>
            <table className="table">
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Actor</th>
                  <th scope="col">Action</th>
                  <th scope="col">Object</th>
                  <th scope="col">Team</th>
                  <th scope="col">From</th>
                  <th scope="col">
                    <span className="visually-hidden">Details</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {page.data.results.map((e) => (
                  <Fragment key={e.id}>
                    <tr>
                      <td className="nowrap">{formatDateTime(e.created_at)}</td>
                      <td>
                        {e.actor}
                        <div className="muted small">{e.via}</div>
                      </td>
                      <td className="mono small">{e.action}</td>
                      <td>{e.object_repr || `${e.object_type} ${e.object_id}`}</td>
                      <td>{e.team || "—"}</td>
                      <td className="mono small">{e.ip ?? "—"}</td>
                      <td>
                        {e.before || e.after ? (
                          <button
                            type="button"
                            className="button button-small button-quiet"
                            aria-expanded={open === e.id}
                            onClick={() => setOpen(open === e.id ? undefined : e.id)}
                          >
                            {open === e.id ? "Hide" : "Changes"}
                          </button>
                        ) : null}
                      </td>
                    </tr>
                    {open === e.id ? (
                      <tr className="detail-row">
                        <td colSpan={7}>
                          <div className="grid-2">
                            <div>
                              <strong className="small">Before</strong>
                              <pre className="log">{JSON.stringify(e.before, null, 2)}</pre>
                            </div>
                            <div>
                              <strong className="small">After</strong>
                              <pre className="log">{JSON.stringify(e.after, null, 2)}</pre>
                            </div>
                          </div>
                          {e.request_id ? <p className="muted small">Request {e.request_id}</p> : null}
                        </td>
                      </tr>
                    ) : null}
                  </Fragment>
                ))}
              </tbody>
            </table>
          </div>
          <div className="pager">
            <button
              type="button"
              className="button"
              disabled={!history.length}
              onClick={() => {
                const previous = history[history.length - 1] ?? null;
                setHistory(history.slice(0, -1));
                setCursor(previous);
              }}
            >
              ← Newer
            </button>
            <button
              type="button"
              className="button"
              disabled={!page.data.next}
              onClick={() => {
                setHistory([...history, cursor]);
                setCursor(page.data?.next ?? null);
              }}
            >
              Older →
            </button>
          </div>
        </>
      )}
    </>
  );
}
