// Deployments: the table of what was pushed where (with rollback and undeploy), and the
// deploy form. Built against the deployments API's contract (src/api/deployments.ts). Each
// action is confirmed in a dialog that says what comes, what goes, and what the worker does
// (apps/deployments/deploying.py, workers/tasks/deployments.py).
import { useId, useState } from "react";
import { Link } from "react-router";
import { ApiError, get } from "../api/client";
import {
  deploy,
  DEPLOYMENT_STATUSES,
  IN_PROGRESS,
  listDeployments,
  rollback,
  rows,
  undeploy,
  type DeployInput,
  type Deployment,
  type ServingTarget,
} from "../api/deployments";
import type { VersionDetail } from "../api/types";
import { can, useMe } from "../auth/session";
import { ConfirmDialog, Empty, ErrorMessage, KeyValues, StatusBadge } from "../components/ui";
import { formatDateTime, formatRelative } from "../lib/format";
import { useResource } from "../lib/hooks";
import { TargetHealthNote } from "./DeploymentMetrics";

/** "digits v2 · ort-int8", the way the tables name what serves. */
function served(d: Deployment): string {
  return `${d.model} v${d.version_number} · ${d.variant || "original"}`;
}

/** Rolling back brings back the deployment this one replaced (`replaces`); the row only has its
 * id, so its version and variant are read from the list, or else from the API. */
function RollbackDialog({
  deployment: d,
  known,
  onConfirm,
  onClose,
}: {
  deployment: Deployment;
  known: Deployment[];
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const listed = known.find((k) => k.id === d.replaces);
  const looked = useResource(
    async (signal) =>
      d.replaces === null || listed ? undefined : get<Deployment>(`deployments/${d.replaces}/`, undefined, signal),
    [d.replaces],
  );
  const previous = listed ?? looked.data;
  const title = `Roll back ${d.model} on ${d.target}?`;
  if (d.replaces === null) {
    return (
      <ConfirmDialog title={title} onClose={onClose}>
        <p>
          Deployment #{d.id} is the first live deployment of {d.model} on {d.target}: there is no earlier one to roll
          back to. Undeploy it instead, or deploy another version.
        </p>
      </ConfirmDialog>
    );
  }
  return (
    <ConfirmDialog
      title={title}
      confirmLabel={previous ? `Roll back to v${previous.version_number}` : `Roll back to deployment #${d.replaces}`}
      busyLabel="Rolling back…"
      onConfirm={onConfirm}
      onClose={onClose}
    >
      <KeyValues
        items={[
          [
            "Comes back",
            previous ? (
              <>
                <strong>{served(previous)}</strong>
                <div className="muted small">
                  deployment #{previous.id}
                  {previous.triton_model
                    ? `, Triton '${previous.triton_model}' version ${previous.triton_version}`
                    : ""}
                </div>
              </>
            ) : looked.error ? (
              <>
                Deployment #{d.replaces}, the one that served before this one (its details could not be read:{" "}
                {looked.error.message})
              </>
            ) : (
              <>Deployment #{d.replaces}, the one that served before this one (looking it up…)</>
            ),
          ],
          [
            "Goes away",
            <>
              <strong>{served(d)}</strong>
              <div className="muted small">
                deployment #{d.id}
                {d.triton_model ? `, Triton '${d.triton_model}' version ${d.triton_version}` : ""}; marked rolled back
              </div>
            </>,
          ],
        ]}
      />
      <p>
        A worker switches {d.target} back to the earlier version's files and serving settings, which stay in its model
        repository, and smoke-tests it. If that fails, v{d.version_number} serves again and the rollback is marked
        failed with the reason.
      </p>
      <p className="small">
        {previous ? `v${previous.version_number}` : "The earlier version"} must still be approved: if its approval was
        revoked, the rollback is refused.
      </p>
    </ConfirmDialog>
  );
}

function UndeployDialog({
  deployment: d,
  onConfirm,
  onClose,
}: {
  deployment: Deployment;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  return (
    <ConfirmDialog
      title={`Undeploy ${d.model} from ${d.target}?`}
      confirmLabel={`Undeploy ${d.model}`}
      busyLabel="Undeploying…"
      onConfirm={onConfirm}
      onClose={onClose}
    >
      <p>
        <strong>
          Nothing will serve {d.model} on {d.target}.
        </strong>{" "}
        A worker unloads {d.triton_model ? `'${d.triton_model}'` : "the model"} from the server and removes every
        version of it from the model repository, so requests for it fail from then on, and nothing is left to roll back
        to.
      </p>
      <p>
        {served(d)} keeps serving until the worker gets to it; if taking it off fails, it stays live and says why. To
        serve {d.model} there again, deploy an approved version.
      </p>
    </ConfirmDialog>
  );
}

function DeploymentActions({
  deployment,
  known,
  act,
}: {
  deployment: Deployment;
  known: Deployment[];
  act: (work: () => Promise<unknown>) => Promise<void>;
}) {
  const [asking, setAsking] = useState<"rollback" | "undeploy" | null>(null);
  const close = () => setAsking(null);
  return (
    <>
      <button type="button" className="button button-small" onClick={() => setAsking("rollback")}>
        Roll back
      </button>
      <button type="button" className="button button-small button-quiet" onClick={() => setAsking("undeploy")}>
        Undeploy
      </button>
      {asking === "rollback" ? (
        <RollbackDialog
          deployment={deployment}
          known={known}
          onConfirm={() => act(() => rollback(deployment.id))}
          onClose={close}
        />
      ) : asking === "undeploy" ? (
        <UndeployDialog deployment={deployment} onConfirm={() => act(() => undeploy(deployment.id))} onClose={close} />
      ) : null}
    </>
  );
}

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
      <div className="table-scroll" tabIndex={0}>
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
                    {d.status === "live" ? <TargetHealthNote health={d.target_health} /> : null}
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
                      <DeploymentActions deployment={d} known={deployments} act={act} />
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
  /** The model's slug, to find what is live on the target; without it the confirmation reads
   * it from the version. */
  model?: string;
}

/** What deploying does: which variant of which version goes where, what serves there now and
 * is replaced, and the smoke tests that guard the switch. What is live is read when asked. */
function DeployDialog({
  choice,
  target,
  variant,
  onConfirm,
  onClose,
}: {
  choice: DeployChoice;
  target: ServingTarget;
  variant: string;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const live = useResource(
    async (signal) => {
      const model = choice.model ?? (await get<VersionDetail>(`versions/${choice.id}/`, undefined, signal)).model;
      const found = rows(await listDeployments({ status: "live", target: target.slug, model, team: target.team }));
      return { model, now: found.find((d) => d.target_id === target.id && d.model === model) };
    },
    [choice.id, choice.model, target.id],
  );
  const now = live.data?.now;
  const model = live.data?.model ?? choice.model ?? "the model";
  const failure = now
    ? `the deployment is marked failed and ${served(now)} keeps serving (or serves again, if the switch had started).`
    : live.data
      ? `the deployment is marked failed and nothing of ${model} serves there, as now.`
      : "the deployment is marked failed and whatever served before keeps serving.";
  return (
    <ConfirmDialog
      title={`Deploy ${choice.label} to ${target.name}?`}
      confirmLabel={`Deploy to ${target.name}`}
      busyLabel="Starting…"
      tone="primary"
      confirmDisabled={live.loading && !live.error}
      onConfirm={onConfirm}
      onClose={onClose}
    >
      <KeyValues
        items={[
          ["Version", choice.label],
          [
            "Variant",
            variant ? (
              <span className="mono">{variant}</span>
            ) : choice.recommended ? (
              <>
                the recommended one, <span className="mono">{choice.recommended}</span>
              </>
            ) : (
              `the one recommended for ${target.profile} (the original model where the recommendation was to keep it)`
            ),
          ],
          [
            "Target",
            `${target.name} (${target.team}/${target.slug}, ${target.profile})${target.health.healthy === false ? ", down at the last check" : ""}`,
          ],
          [
            "Live there now",
            live.error ? (
              <span className="text-warn">could not be read ({live.error.message})</span>
            ) : !live.data ? (
              <span role="status">looking…</span>
            ) : now ? (
              <>
                <strong>{served(now)}</strong>
                <div className="muted small">
                  deployment #{now.id}, live since {formatRelative(now.live_at)}; it is replaced
                </div>
              </>
            ) : (
              `nothing of ${model}: this is its first deployment there`
            ),
          ],
        ]}
      />
      <p>
        A worker pushes the variant to {target.name} and loads it beside what serves now, then smoke-tests it against
        the original model, within the approved tolerance, before any traffic reaches it. Only then does it take over,
        and the serving instances are smoke-tested again.
      </p>
      <p>
        <strong>If a smoke test or any step fails,</strong> {failure}
        {now
          ? ` Once the new one is live, deployment #${now.id} is retired; its files stay on the server, so Roll back can bring it back.`
          : ""}
      </p>
      {target.health.healthy === false ? (
        <p className="text-warn">
          {target.name} was down at its last check: the worker retries while it can't reach it, then gives up and marks
          the deployment failed.
        </p>
      ) : null}
    </ConfirmDialog>
  );
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
  const [asking, setAsking] = useState(false);
  const ids = { version: useId(), target: useId(), variant: useId() };
  const chosen = versions.find((v) => v.id === versionId);
  const chosenTarget = targets.find((t) => t.slug === target);
  const send = async () => {
    if (versionId === "") return;
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
  };
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
      onSubmit={(e) => {
        e.preventDefault();
        setFailure(undefined);
        if (versionId === "" || !target) {
          setError(
            versionId === "" ? "Choose the approved version to deploy." : "Choose the serving target to deploy to.",
          );
          return;
        }
        setError(undefined);
        setAsking(true);
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
      {asking && chosen && chosenTarget ? (
        <DeployDialog
          choice={chosen}
          target={chosenTarget}
          variant={variant}
          onConfirm={send}
          onClose={() => setAsking(false)}
        />
      ) : null}
    </form>
  );
}
