// Deployments: the table of what was pushed where (with rollback and undeploy), and the
// deploy form. Built against the deployments API's contract (src/api/deployments.ts).
import { useId, useState } from "react";
import { Link } from "react-router";
import { ApiError } from "../api/client";
import {
  deploy,
  DEPLOYMENT_STATUSES,
  IN_PROGRESS,
  rollback,
  undeploy,
  type DeployInput,
  type Deployment,
  type ServingTarget,
} from "../api/deployments";
import { can, useMe } from "../auth/session";
import { ConfirmButton, Empty, ErrorMessage, StatusBadge } from "../components/ui";
import { formatDateTime, formatRelative } from "../lib/format";

export function DeploymentsTable({
  deployments,
  onChanged,
  showVersion = true,
}: {
  deployments: Deployment[];
  onChanged: () => void;
  showVersion?: boolean;
}) {
  const me = useMe();
  const [error, setError] = useState<ApiError>();
  if (!deployments.length) return <Empty title="Nothing deployed yet." />;
  const act = async (work: () => Promise<unknown>) => {
    setError(undefined);
    try {
      await work();
      onChanged();
    } catch (err) {
      setError(err instanceof ApiError ? err : undefined);
    }
  };
  return (
    <>
      {error ? <ErrorMessage error={error} title="That did not work" /> : null}
      <div className="table-scroll">
        <table className="table">
          <thead>
            <tr>
              <th scope="col">#</th>
              {showVersion ? <th scope="col">Model · version</th> : null}
              <th scope="col">Variant</th>
              <th scope="col">Target</th>
              <th scope="col">State</th>
              <th scope="col">Triton</th>
              <th scope="col">By</th>
              <th scope="col">When</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {deployments.map((d) => {
              // without a known session (isolated tests) the API alone decides
              const mayDeploy = me === undefined || can(me, d.team, "deploy");
              return (
                <tr key={d.id}>
                  <td>{d.id}</td>
                  {showVersion ? (
                    <td>
                      <Link to={`/versions/${d.version}`}>
                        {d.model} v{d.version_number}
                      </Link>
                      <div className="muted small">{d.team}</div>
                    </td>
                  ) : null}
                  <td className="mono">{d.variant || "—"}</td>
                  <td>
                    {d.target}
                    <div className="muted small">{d.profile}</div>
                  </td>
                  <td>
                    <StatusBadge status={d.status} label={DEPLOYMENT_STATUSES[d.status]} />
                    {d.status_reason ? (
                      <div className={`small ${d.status === "failed" ? "text-bad" : "muted"}`}>{d.status_reason}</div>
                    ) : null}
                    {d.status === "failed" && d.detail ? (
                      <details className="small">
                        <summary>Server said</summary>
                        <pre className="log">{d.detail}</pre>
                      </details>
                    ) : null}
                  </td>
                  <td className="mono small">{d.triton_model ? `${d.triton_model} v${d.triton_version}` : "—"}</td>
                  <td>{d.requested_by}</td>
                  <td title={formatDateTime(d.live_at ?? d.created_at)}>{formatRelative(d.live_at ?? d.created_at)}</td>
                  <td className="actions">
                    {mayDeploy && d.status === "live" ? (
                      <>
                        <ConfirmButton
                          className="button button-small"
                          confirmLabel="Roll back now"
                          onConfirm={() => act(() => rollback(d.id))}
                        >
                          Roll back
                        </ConfirmButton>
                        <ConfirmButton
                          className="button button-small button-quiet"
                          confirmLabel="Undeploy now"
                          onConfirm={() => act(() => undeploy(d.id))}
                        >
                          Undeploy
                        </ConfirmButton>
                      </>
                    ) : null}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </>
  );
}

export function hasInProgress(deployments: Deployment[] | undefined): boolean {
  return Boolean(deployments?.some((d) => IN_PROGRESS.includes(d.status)));
}

export interface DeployChoice {
  id: number;
  label: string;
  variants: string[];
  recommended?: string | undefined;
}

/** Choose an approved version (or get one fixed), a target and optionally a variant; POST. */
export function DeployForm({
  versions,
  targets,
  onDeployed,
  chooseVersion = true,
}: {
  versions: DeployChoice[];
  targets: ServingTarget[];
  onDeployed: (d: Deployment) => void;
  chooseVersion?: boolean;
}) {
  const [versionId, setVersionId] = useState<number | "">(versions.length === 1 ? (versions[0]?.id ?? "") : "");
  const [target, setTarget] = useState(targets.length === 1 ? (targets[0]?.slug ?? "") : "");
  const [variant, setVariant] = useState("");
  const [error, setError] = useState<string>();
  const [failure, setFailure] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const ids = { version: useId(), target: useId(), variant: useId() };
  const chosen = versions.find((v) => v.id === versionId);
  if (!versions.length) return <p className="muted">Only approved versions can be deployed; none is approved yet.</p>;
  if (!targets.length)
    return (
      <p className="muted">
        No serving target is registered for your teams. A team admin adds one under Serving targets.
      </p>
    );
  return (
    <form
      className="form deploy-form"
      noValidate
      onSubmit={async (e) => {
        e.preventDefault();
        setFailure(undefined);
        if (versionId === "" || !target) {
          setError(
            versionId === "" ? "Choose the approved version to deploy." : "Choose the serving target to deploy to.",
          );
          return;
        }
        setError(undefined);
        setBusy(true);
        try {
          const body: DeployInput = { version: versionId, target };
          if (variant) body.variant = variant;
          onDeployed(await deploy(body));
        } catch (err) {
          setFailure(err instanceof ApiError ? err : undefined);
        } finally {
          setBusy(false);
        }
      }}
    >
      <div className="form-grid">
        {chooseVersion ? (
          <div className="field">
            <label htmlFor={ids.version}>Approved version</label>
            <select
              id={ids.version}
              className="input"
              value={versionId}
              onChange={(e) => setVersionId(e.target.value ? Number(e.target.value) : "")}
            >
              <option value="">Choose a version</option>
              {versions.map((v) => (
                <option key={v.id} value={v.id}>
                  {v.label}
                </option>
              ))}
            </select>
          </div>
        ) : null}
        <div className="field">
          <label htmlFor={ids.target}>Serving target</label>
          <select id={ids.target} className="input" value={target} onChange={(e) => setTarget(e.target.value)}>
            <option value="">Choose a target</option>
            {targets.map((t) => (
              <option key={t.id} value={t.slug} disabled={t.enabled === false}>
                {t.name} ({t.slug}
                {t.profile ? `, ${t.profile}` : ""}
                {t.health.healthy === false ? ", down at the last check" : ""}
                {t.enabled === false ? ", disabled" : ""})
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={ids.variant}>Variant</label>
          <select id={ids.variant} className="input" value={variant} onChange={(e) => setVariant(e.target.value)}>
            <option value="">The recommended one{chosen?.recommended ? ` (${chosen.recommended})` : ""}</option>
            {(chosen?.variants ?? []).map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </div>
      </div>
      {error ? (
        <p className="field-error" role="alert">
          {error}
        </p>
      ) : null}
      {failure ? <ErrorMessage error={failure} title="The deployment was not started" /> : null}
      <div className="form-actions">
        <button type="submit" className="button button-primary" disabled={busy}>
          {busy ? "Starting…" : "Deploy"}
        </button>
      </div>
    </form>
  );
}
