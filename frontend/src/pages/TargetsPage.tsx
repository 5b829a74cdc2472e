import { useId, useState } from "react";
import { ApiError, get } from "../api/client";
import {
  checkTarget,
  createTarget,
  deleteTarget,
  listTargets,
  rows,
  updateTarget,
  type TargetInput,
} from "../api/deployments";
import type { HardwareProfile } from "../api/types";
import { can, teamsWhere, useSession } from "../auth/session";
import { ConfirmButton, Empty, ErrorMessage, Loading, Notice, PageHeader, Section } from "../components/ui";
import { formatDateTime, formatRelative } from "../lib/format";
import { useResource } from "../lib/hooks";
import { HealthBadge } from "./DeploymentsPage";

// The kinds the server deploys to (workers/engine/targets/registry.py); a target of another
// kind, registered by an earlier release, is listed by its kind's name.
const KINDS: Record<string, string> = {
  triton: "Triton Inference Server",
};

function TargetForm({
  profiles,
  teams,
  onCreated,
}: {
  profiles: HardwareProfile[];
  teams: string[];
  onCreated: () => void;
}) {
  const [values, setValues] = useState<
    Required<Pick<TargetInput, "name" | "slug" | "team" | "kind" | "url" | "repository" | "profile">> &
      Pick<TargetInput, "backend_mode">
  >({
    name: "",
    slug: "",
    team: teams.length === 1 ? (teams[0] ?? "") : "",
    kind: "triton",
    url: "",
    repository: "",
    profile: profiles[0]?.slug ?? "",
    backend_mode: "native",
  });
  const [failure, setFailure] = useState<ApiError>();
  const [missing, setMissing] = useState<string>();
  const [busy, setBusy] = useState(false);
  const id = useId();
  const set = (key: keyof typeof values, value: string) => setValues((v) => ({ ...v, [key]: value }));
  const field = (key: "name" | "slug" | "url" | "repository", label: string, help?: string) => (
    <div className="field">
      <label htmlFor={`${id}-${key}`}>{label}</label>
      <input
        id={`${id}-${key}`}
        className="input"
        value={values[key]}
        onChange={(e) => set(key, e.target.value)}
        aria-describedby={help ? `${id}-${key}-help` : undefined}
      />
      {failure?.fieldMessage(key) ? (
        <p className="field-error">{failure.fieldMessage(key)}</p>
      ) : help ? (
        <p className="help" id={`${id}-${key}-help`}>
          {help}
        </p>
      ) : null}
    </div>
  );
  return (
    <form
      className="form"
      noValidate
      onSubmit={async (e) => {
        e.preventDefault();
        const needed: string[] = (["name", "url", "repository", "profile"] as const).filter((k) => !values[k]?.trim());
        if (teams.length > 1 && !values.team) needed.push("team");
        if (needed.length) {
          setMissing(`Fill in ${needed.join(", ")}.`);
          return;
        }
        setMissing(undefined);
        setBusy(true);
        setFailure(undefined);
        try {
          const body: TargetInput = { ...values };
          if (!body.slug) delete body.slug;
          if (!body.team) delete body.team;
          await createTarget(body);
          onCreated();
          setValues((v) => ({ ...v, name: "", slug: "", url: "", repository: "" }));
        } catch (err) {
          setFailure(err instanceof ApiError ? err : undefined);
        } finally {
          setBusy(false);
        }
      }}
    >
      <div className="form-grid">
        {field("name", "Name")}
        {field("slug", "Slug", "Used in URLs; made from the name if empty.")}
        {teams.length > 1 ? (
          <div className="field">
            <label htmlFor={`${id}-team`}>Team</label>
            <select
              id={`${id}-team`}
              className="input"
              value={values.team}
              onChange={(e) => set("team", e.target.value)}
            >
              <option value="">Choose a team</option>
              {teams.map((t) => (
                <option key={t}>{t}</option>
              ))}
            </select>
          </div>
        ) : null}
        <div className="field">
          <label htmlFor={`${id}-kind`}>Kind</label>
          <select id={`${id}-kind`} className="input" value={values.kind} onChange={(e) => set("kind", e.target.value)}>
            {Object.entries(KINDS).map(([k, label]) => (
              <option key={k} value={k}>
                {label}
              </option>
            ))}
          </select>
        </div>
        {field("url", "Server URL", "e.g. http://triton.internal:8000")}
        {field(
          "repository",
          "Model repository",
          "An absolute directory the deploying workers reach, or s3://bucket/prefix.",
        )}
        <div className="field">
          <label htmlFor={`${id}-profile`}>Hardware profile</label>
          <select
            id={`${id}-profile`}
            className="input"
            value={values.profile}
            onChange={(e) => set("profile", e.target.value)}
          >
            {profiles.map((p) => (
              <option key={p.slug} value={p.slug}>
                {p.name}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={`${id}-mode`}>Backend</label>
          <select
            id={`${id}-mode`}
            className="input"
            value={values.backend_mode}
            onChange={(e) => set("backend_mode", e.target.value)}
          >
            <option value="native">Triton's own backend for the variant's format</option>
            <option value="python">Triton's python backend running Slipway's engine</option>
          </select>
        </div>
      </div>
      {missing ? (
        <p className="field-error" role="alert">
          {missing}
        </p>
      ) : null}
      {failure ? <ErrorMessage error={failure} title="The target was not added" /> : null}
      <div className="form-actions">
        <button type="submit" className="button button-primary" disabled={busy}>
          {busy ? "Adding…" : "Add target"}
        </button>
      </div>
    </form>
  );
}

export function TargetsPage() {
  const { me } = useSession();
  const [nonce, setNonce] = useState(0);
  const targets = useResource(async () => rows(await listTargets()), [nonce]);
  const profiles = useResource(() => get<HardwareProfile[]>("profiles/"), []);
  const [error, setError] = useState<ApiError>();
  const [checking, setChecking] = useState<number>();
  const manageTeams = teamsWhere(me, "manage").map((t) => t.slug);

  if (targets.error?.status === 404) {
    return (
      <>
        <PageHeader title="Serving targets" />
        <Notice title="Serving targets are not available on this server yet">{targets.error.message}</Notice>
      </>
    );
  }
  const act = async (work: () => Promise<unknown>) => {
    setError(undefined);
    try {
      await work();
    } catch (err) {
      setError(err instanceof ApiError ? err : undefined);
    }
    setNonce((n) => n + 1);
  };
  return (
    <>
      <PageHeader
        title="Serving targets"
        subtitle="The inference servers your teams deploy to, and how they answered their last health check."
      />
      {error ? <ErrorMessage error={error} /> : null}
      {targets.error ? (
        <ErrorMessage error={targets.error} />
      ) : !targets.data ? (
        <Loading height={200} />
      ) : targets.data.length === 0 ? (
        <Empty title="No serving targets yet.">
          {manageTeams.length ? "Add your first inference server below." : "A team admin registers them."}
        </Empty>
      ) : (
        <div className="table-scroll">
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Target</th>
                <th scope="col">Kind · profile</th>
                <th scope="col">Health</th>
                <th scope="col">Server</th>
                <th scope="col">Last check</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {targets.data.map((t) => {
                const manage = can(me, t.team, "manage");
                return (
                  <tr key={t.id}>
                    <th scope="row">
                      {t.name}
                      <div className="muted small">
                        {t.team ? `${t.team}/` : ""}
                        {t.slug}
                      </div>
                    </th>
                    <td>
                      {KINDS[t.kind] ?? t.kind}
                      <div className="muted small">{t.profile}</div>
                    </td>
                    <td>
                      <HealthBadge target={t} />
                      {t.health.detail ? <div className="muted small">{t.health.detail}</div> : null}
                      {t.health.check_requested_at ? (
                        <div className="muted small">A check is on its way to a worker.</div>
                      ) : null}
                    </td>
                    <td className="small">
                      <span className="mono">{t.url || "—"}</span>
                      {t.health.server_version ? <div className="muted">Triton {t.health.server_version}</div> : null}
                    </td>
                    <td title={formatDateTime(t.health.checked_at)}>{formatRelative(t.health.checked_at)}</td>
                    <td className="actions">
                      <button
                        type="button"
                        className="button button-small"
                        disabled={checking === t.id}
                        onClick={async () => {
                          setChecking(t.id);
                          await act(() => checkTarget(t.id));
                          // The check runs on a worker: look again shortly.
                          setTimeout(() => {
                            setNonce((n) => n + 1);
                            setChecking(undefined);
                          }, 2500);
                        }}
                      >
                        {checking === t.id ? "Checking…" : "Check now"}
                      </button>
                      {manage ? (
                        <>
                          <button
                            type="button"
                            className="button button-small button-quiet"
                            onClick={() => act(() => updateTarget(t.id, { enabled: t.enabled === false }))}
                          >
                            {t.enabled === false ? "Enable" : "Disable"}
                          </button>
                          <ConfirmButton
                            className="button button-small button-quiet"
                            confirmLabel={`Delete ${t.slug}`}
                            onConfirm={() => act(() => deleteTarget(t.id))}
                          >
                            Delete
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
      )}
      {manageTeams.length ? (
        <Section id="add-target" title="Add a serving target">
          {profiles.data ? (
            <TargetForm profiles={profiles.data} teams={manageTeams} onCreated={() => setNonce((n) => n + 1)} />
          ) : (
            <Loading height={80} />
          )}
        </Section>
      ) : null}
    </>
  );
}
