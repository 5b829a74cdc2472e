import { useEffect, useId, useState } from "react";
import { useSearchParams } from "react-router";
import { getAll } from "../api/client";
import {
  DEPLOYMENT_STATUSES,
  listDeployments,
  listTargets,
  rows,
  type Deployment,
  type DeploymentStatus,
  type ServingTarget,
} from "../api/deployments";
import type { VersionSummary } from "../api/types";
import { canAnywhere, teamsWhere, useSession } from "../auth/session";
import { Badge, Empty, ErrorMessage, Loading, Notice, PageHeader, Section } from "../components/ui";
import { DeploymentMetricsPanel } from "../features/DeploymentMetrics";
import { DeployForm, DeploymentsTable, hasInProgress } from "../features/Deployments";
import { formatRelative } from "../lib/format";
import { useResource } from "../lib/hooks";

export function HealthBadge({ target }: { target: ServingTarget }) {
  if (target.enabled === false) return <Badge tone="idle">Disabled</Badge>;
  const { healthy, ready } = target.health;
  if (healthy === null || healthy === undefined) return <Badge tone="idle">Not checked</Badge>;
  if (!healthy) return <Badge tone="bad">Down</Badge>;
  if (ready === false) return <Badge tone="warn">Live, not ready</Badge>;
  return <Badge tone="ok">Healthy</Badge>;
}

export function LiveWhere({ deployments, targets }: { deployments: Deployment[]; targets: ServingTarget[] }) {
  const live = deployments.filter((d) => d.status === "live");
  if (!targets.length)
    return (
      <Empty title="No serving targets yet.">A team admin registers inference servers under Serving targets.</Empty>
    );
  return (
    <div className="live-grid">
      {targets.map((t) => {
        const here = live.filter((d) => d.target_id === t.id);
        return (
          <div key={t.id} className="live-card">
            <div className="live-card-head">
              <strong>{t.name}</strong> <HealthBadge target={t} />
            </div>
            <p className="muted small">
              {t.team}/{t.slug} · {t.profile} · {t.kind}
            </p>
            {here.length ? (
              <ul className="live-list">
                {here.map((d) => (
                  <li key={d.id}>
                    <span className="mono">{d.model}</span> v{d.version_number} ·{" "}
                    <span className="mono small">{d.variant}</span>
                    <span className="muted small"> since {formatRelative(d.live_at)}</span>
                  </li>
                ))}
              </ul>
            ) : (
              <p className="muted small">Nothing live here.</p>
            )}
          </div>
        );
      })}
    </div>
  );
}

export function DeploymentsPage() {
  const { me } = useSession();
  const [params, setParams] = useSearchParams();
  const status = params.get("status") ?? "";
  const target = params.get("target") ?? "";
  const model = params.get("model") ?? "";
  const [nonce, setNonce] = useState(0);
  const ids = { status: useId(), target: useId(), model: useId() };
  const deployments = useResource(
    async () => (await getAll<Deployment>("deployments/", { status, target, model })).items,
    [status, target, model, nonce],
  );
  const all = useResource(async () => rows(await listDeployments({ status: "live" })), [nonce]);
  const targets = useResource(async () => rows(await listTargets()), []);
  const approved = useResource(
    async () => (await getAll<VersionSummary>("versions/", { status: "approved" })).items,
    [nonce],
  );
  useEffect(() => {
    if (!hasInProgress(deployments.data)) return;
    const timer = setTimeout(() => setNonce((n) => n + 1), 2000);
    return () => clearTimeout(timer);
  }, [deployments.data]);
  const set = (key: string, value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(key, value);
    else next.delete(key);
    setParams(next, { replace: true });
  };

  if (deployments.error?.status === 404 || targets.error?.status === 404) {
    return (
      <>
        <PageHeader title="Deployments" />
        <Notice title="Deployments are not available on this server yet">
          {(deployments.error ?? targets.error)?.message}
        </Notice>
      </>
    );
  }
  const deployTeams = teamsWhere(me, "deploy").map((t) => t.slug);
  return (
    <>
      <PageHeader
        title="Deployments"
        subtitle="What is live on which inference server, how it got there, and the way back."
      />
      <Section id="live" title="Live now">
        {targets.error ? (
          <ErrorMessage error={targets.error} />
        ) : !targets.data || !all.data ? (
          <Loading height={120} />
        ) : (
          <LiveWhere deployments={all.data} targets={targets.data} />
        )}
      </Section>
      <Section
        id="traffic"
        title="Traffic, errors and latency"
        description="What each live deployment's serving target reports (Triton's metrics endpoint), read at every health check: means between samples, over the last hour."
      >
        {all.error ? (
          <ErrorMessage error={all.error} />
        ) : !all.data ? (
          <Loading height={120} />
        ) : all.data.length ? (
          <div className="metrics-list">
            {all.data.map((d) => (
              <DeploymentMetricsPanel key={d.id} deployment={d} refresh={nonce} />
            ))}
          </div>
        ) : (
          <Empty title="Nothing is live.">Traffic figures appear here once a deployment is live.</Empty>
        )}
      </Section>
      {canAnywhere(me, "deploy") ? (
        <Section
          id="deploy"
          title="Deploy an approved version"
          description="The recommended variant goes out unless you pick another (per-variant choice is on the version page). The target smoke-tests it before it takes traffic."
        >
          {approved.error ? (
            <ErrorMessage error={approved.error} />
          ) : !approved.data || !targets.data ? (
            <Loading height={80} />
          ) : (
            <DeployForm
              versions={approved.data
                .filter((v) => me?.is_superuser || deployTeams.includes(v.team))
                .map((v) => ({
                  id: v.id,
                  label: `${v.team}/${v.model} v${v.number}`,
                  variants: [],
                  model: v.model,
                }))}
              targets={targets.data}
              onDeployed={() => setNonce((n) => n + 1)}
            />
          )}
        </Section>
      ) : null}
      <Section id="history" title="All deployments">
        <div className="filters">
          <div className="field">
            <label htmlFor={ids.status}>State</label>
            <select id={ids.status} className="input" value={status} onChange={(e) => set("status", e.target.value)}>
              <option value="">Any state</option>
              {(Object.keys(DEPLOYMENT_STATUSES) as DeploymentStatus[]).map((s) => (
                <option key={s} value={s}>
                  {DEPLOYMENT_STATUSES[s]}
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor={ids.target}>Target</label>
            <select id={ids.target} className="input" value={target} onChange={(e) => set("target", e.target.value)}>
              <option value="">Any target</option>
              {(targets.data ?? []).map((t) => (
                <option key={t.id} value={t.slug}>
                  {t.name}
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor={ids.model}>Model</label>
            <input
              id={ids.model}
              className="input"
              placeholder="Model slug"
              value={model}
              onChange={(e) => set("model", e.target.value)}
            />
          </div>
        </div>
        {deployments.error ? (
          <ErrorMessage error={deployments.error} />
        ) : !deployments.data ? (
          <Loading height={160} />
        ) : (
          <DeploymentsTable deployments={deployments.data} onChanged={() => setNonce((n) => n + 1)} />
        )}
      </Section>
    </>
  );
}
