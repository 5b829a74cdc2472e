import { useId, useMemo } from "react";
import { Link, useSearchParams } from "react-router";
import { getAll } from "../api/client";
import { FRAMEWORKS, VERSION_STATUSES, type Framework, type Model, type VersionStatus } from "../api/types";
import { canAnywhere, useSession } from "../auth/session";
import { Empty, ErrorMessage, Loading, Notice, PageHeader, StatusBadge } from "../components/ui";
import { reviewerAdvice } from "./TeamPage";
import { formatRelative } from "../lib/format";
import { useDebounced, useResource } from "../lib/hooks";

export function filterModels(models: Model[], framework: string, status: string): Model[] {
  return models.filter((model) => {
    const latest = model.latest_version;
    if (framework && latest?.framework !== framework) return false;
    if (status === "none") return !latest;
    if (status && latest?.status !== status) return false;
    return true;
  });
}

export function ModelsPage() {
  const { me } = useSession();
  const [params, setParams] = useSearchParams();
  const q = params.get("q") ?? "";
  const team = params.get("team") ?? "";
  const framework = params.get("framework") ?? "";
  const status = params.get("status") ?? "";
  const ordering = params.get("ordering") ?? "";
  const query = useDebounced(q, 250);
  const ids = { q: useId(), team: useId(), framework: useId(), status: useId(), ordering: useId() };
  const models = useResource(() => getAll<Model>("models/", { q: query, team, ordering }), [query, team, ordering]);
  const shown = useMemo(
    () => filterModels(models.data?.items ?? [], framework, status),
    [models.data, framework, status],
  );
  const set = (key: string, value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(key, value);
    else next.delete(key);
    setParams(next, { replace: true });
  };
  const filtered = Boolean(q || team || framework || status);

  return (
    <>
      <PageHeader
        title="Models"
        subtitle="Every model of your teams, with the state of its newest version."
        actions={
          canAnywhere(me, "upload") ? (
            <Link className="button button-primary" to="/upload">
              Upload a model
            </Link>
          ) : null
        }
      />
      {(me?.teams ?? [])
        .filter((t) => t.role === "admin" && reviewerAdvice(t))
        .map((t) => (
          // A fresh install's first screen: with the four-eyes rule on and one reviewer, nothing
          // uploaded here could ever be approved; say so and lead the admin to the fix.
          <Notice key={t.slug} kind="warn" title={`Team ${t.name} can't approve anything yet`}>
            {reviewerAdvice(t)} <Link to={`/teams/${t.slug}#invite`}>Invite a reviewer</Link> or{" "}
            <Link to={`/teams/${t.slug}#settings`}>choose single-reviewer mode</Link>.
          </Notice>
        ))}
      <div className="filters" role="search">
        <div className="field">
          <label htmlFor={ids.q}>Search</label>
          <input
            id={ids.q}
            type="search"
            className="input"
            placeholder="Name or slug"
            value={q}
            onChange={(e) => set("q", e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor={ids.team}>Team</label>
          <select id={ids.team} className="input" value={team} onChange={(e) => set("team", e.target.value)}>
            <option value="">All teams</option>
            {me?.teams.map((t) => (
              <option key={t.slug} value={t.slug}>
                {t.name || t.slug}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={ids.framework}>Framework</label>
          <select
            id={ids.framework}
            className="input"
            value={framework}
            onChange={(e) => set("framework", e.target.value)}
          >
            <option value="">Any framework</option>
            {(Object.keys(FRAMEWORKS) as Framework[]).map((f) => (
              <option key={f} value={f}>
                {FRAMEWORKS[f]}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={ids.status}>Latest version</label>
          <select id={ids.status} className="input" value={status} onChange={(e) => set("status", e.target.value)}>
            <option value="">Any state</option>
            {(Object.keys(VERSION_STATUSES) as VersionStatus[]).map((s) => (
              <option key={s} value={s}>
                {VERSION_STATUSES[s]}
              </option>
            ))}
            <option value="none">No versions yet</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor={ids.ordering}>Sort</label>
          <select
            id={ids.ordering}
            className="input"
            value={ordering}
            onChange={(e) => set("ordering", e.target.value)}
          >
            <option value="">Newest first</option>
            <option value="name">Name A–Z</option>
            <option value="-name">Name Z–A</option>
            <option value="id">Oldest first</option>
          </select>
        </div>
      </div>
      {models.error ? (
        <ErrorMessage
          error={models.error}
          title="The models could not be loaded"
          action={
            <button className="button" onClick={models.reload}>
              Retry
            </button>
          }
        />
      ) : !models.data ? (
        <Loading label="Loading models…" height={240} />
      ) : shown.length === 0 ? (
        filtered ? (
          <Empty title="No model matches these filters.">
            <button className="button" onClick={() => setParams(new URLSearchParams(), { replace: true })}>
              Clear the filters
            </button>
          </Empty>
        ) : (
          <Empty title="No models yet.">
            {canAnywhere(me, "upload") ? (
              <>
                Upload an ONNX file or a framework model to start: <Link to="/upload">upload a model</Link>.
              </>
            ) : (
              "Your teams have not uploaded any models. Data scientists and admins can upload them."
            )}
          </Empty>
        )
      ) : (
        <div className={`table-scroll${models.loading ? " is-refreshing" : ""}`} tabIndex={0}>
          <table className="table">
            <caption className="visually-hidden">Models</caption>
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Team</th>
                <th scope="col">Latest version</th>
                <th scope="col">State</th>
                <th scope="col">Framework</th>
                <th scope="col">Uploaded by</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((model) => {
                const latest = model.latest_version;
                return (
                  <tr key={model.id}>
                    <th scope="row">
                      <Link to={`/models/${model.slug}?team=${model.team}`} className="strong-link">
                        {model.name}
                      </Link>
                      {model.name !== model.slug ? <div className="muted small">{model.slug}</div> : null}
                    </th>
                    <td>{model.team}</td>
                    <td>
                      {latest ? (
                        <Link to={`/versions/${latest.id}`}>v{latest.number}</Link>
                      ) : (
                        <span className="muted">none</span>
                      )}
                    </td>
                    <td>{latest ? <StatusBadge status={latest.status ?? "received"} /> : null}</td>
                    <td>{latest ? (FRAMEWORKS[latest.framework] ?? latest.framework) : "—"}</td>
                    <td>{latest?.created_by ?? model.created_by}</td>
                    <td title={latest?.created_at ?? model.created_at}>
                      {formatRelative(latest?.status_changed_at ?? latest?.created_at ?? model.created_at)}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <p className="muted small">
            {shown.length} of {models.data.items.length} models
            {models.data.truncated ? " (only the first 2,000 are listed: narrow the search)" : ""}.
          </p>
        </div>
      )}
    </>
  );
}
