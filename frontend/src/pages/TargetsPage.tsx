import { useId, useState } from "react";
import { ApiError, get } from "../api/client";
import {
  checkTarget,
  createTarget,
  deleteTarget,
  listTargetKinds,
  listTargets,
  rows,
  updateTarget,
  type TargetInput,
  type TargetKind,
} from "../api/deployments";
import type { HardwareProfile } from "../api/types";
import { can, teamsWhere, useSession } from "../auth/session";
import { ConfirmButton, Empty, ErrorMessage, Loading, Notice, PageHeader, Section } from "../components/ui";
import { formatDateTime, formatRelative } from "../lib/format";
import { useResource } from "../lib/hooks";
import { FieldShell, readSetting, SettingField, type SettingValue, type Where } from "../features/settingFields";
import { HealthBadge } from "./DeploymentsPage";

// What each kind of target takes comes from the server (GET /targets/kinds/: the drivers'
// option and credential specs), so the form completes for every kind it accepts and checks
// each value as the server will; the server's own refusal is shown next to the field it names.

type Errors = Record<string, string>;
type CoreKey = "name" | "slug" | "url" | "repository";

const settingId = (where: Where, key: string) => `${where}.${key}`;

const SERVER_URL = /^https?:\/\/[^/\s?#]+\/?$/i;

/** Whether a URL names a loopback or private address by itself (a host name is resolved by the server). */
function literalPrivateHost(url: string): string | undefined {
  let host: string;
  try {
    host = new URL(url).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return undefined;
  }
  if (host === "localhost" || host.endsWith(".localhost") || host === "::1" || host === "0.0.0.0") return host;
  const ip = host.match(/^(\d+)\.(\d+)\.\d+\.\d+$/);
  if (!ip) return undefined;
  const [a, b] = [Number(ip[1]), Number(ip[2])];
  const isPrivate =
    a === 10 || a === 127 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254);
  return isPrivate ? host : undefined;
}

/**
 * The field a refusal from the server is about, when it names one: the serializer's `fields`,
 * else the error's code, else (for a kind's settings) the key its sentence names.
 */
export function fieldOfRefusal(error: ApiError, kind: TargetKind | undefined): string | undefined {
  const named = Object.keys(error.fields).find((name) => error.fieldMessage(name));
  if (named && named !== "options" && named !== "credentials") return named;
  const message = error.message;
  const names = (where: Where) =>
    (kind?.[where] ?? []).find((spec) => new RegExp(`(^|[^a-z0-9_])${spec.key}([^a-z0-9_]|$)`).test(message));
  switch (error.code) {
    case "invalid_name":
      return "name";
    case "invalid_slug":
    case "slug_taken":
      return "slug";
    case "unknown_profile":
      return "profile";
    case "unknown_team":
    case "team_required":
      return "team";
    case "invalid_kind":
      return "kind";
    case "invalid_backend_mode":
      return "backend_mode";
    case "invalid_repository":
    case "repository_not_allowed":
      return "repository";
    case "invalid_url":
    case "private_address":
    case "unresolvable_host":
      if (message.includes("S3 endpoint")) {
        return kind?.options.some((s) => s.key === "repository_options") ? "options.repository_options" : "repository";
      }
      return "url";
    case "invalid_target":
      if (message.includes("python path")) return "options.python_paths";
      if (message.includes("model repository")) return "repository";
      return message.includes("URL") ? "url" : undefined;
    case "invalid_options": {
      const spec = names("options");
      return spec ? settingId("options", spec.key) : "options";
    }
    case "invalid_credentials": {
      const spec = names("credentials");
      return spec ? settingId("credentials", spec.key) : "credentials";
    }
    default:
      return named;
  }
}

function initialSettings(kind: TargetKind | undefined): Record<string, SettingValue> {
  const values: Record<string, SettingValue> = {};
  for (const where of ["options", "credentials"] as const) {
    for (const spec of kind?.[where] ?? []) {
      values[settingId(where, spec.key)] = spec.type === "boolean" ? spec.default === true : "";
    }
  }
  return values;
}

export function TargetForm({
  profiles,
  teams,
  kinds,
  onCreated,
}: {
  profiles: HardwareProfile[];
  teams: string[];
  kinds: TargetKind[];
  onCreated: () => void;
}) {
  const firstKind = kinds.find((k) => k.kind === "triton") ?? kinds[0];
  const [values, setValues] = useState<
    Required<Pick<TargetInput, "name" | "slug" | "team" | "url" | "repository" | "profile">> &
      Pick<TargetInput, "backend_mode"> & { kind: string }
  >({
    name: "",
    slug: "",
    team: teams.length === 1 ? (teams[0] ?? "") : "",
    kind: firstKind?.kind ?? "",
    url: "",
    repository: "",
    profile: profiles[0]?.slug ?? "",
    backend_mode: "native",
  });
  const [settings, setSettings] = useState<Record<string, SettingValue>>(() => initialSettings(firstKind));
  const [allowPrivate, setAllowPrivate] = useState(false);
  const [errors, setErrors] = useState<Errors>({});
  const [failure, setFailure] = useState<ApiError>();
  const [summary, setSummary] = useState<string>();
  const [busy, setBusy] = useState(false);
  const id = useId();
  const kind = kinds.find((k) => k.kind === values.kind);
  // the fields this form shows: a refusal about another one is shown above the button instead
  const shown = new Set<string>(["name", "slug", "kind", "url", "repository", "profile", "backend_mode"]);
  if (teams.length > 1) shown.add("team");
  for (const where of ["options", "credentials"] as const) {
    if (kind?.[where].length) shown.add(where);
    for (const spec of kind?.[where] ?? []) shown.add(settingId(where, spec.key));
  }
  const placeOf = (refusal: ApiError) => {
    const at = fieldOfRefusal(refusal, kind);
    return at && shown.has(at) ? at : undefined;
  };
  const refusedField = failure ? placeOf(failure) : undefined;
  // a field's error: what the form found, else the server's refusal when it names this field
  const errorOf = (field: string) =>
    errors[field] ?? (failure && refusedField === field ? (failure.fieldMessage(field) ?? failure.message) : undefined);
  const set = (key: keyof typeof values, value: string) => setValues((v) => ({ ...v, [key]: value }));
  const domId = (field: string) => (field.includes(".") ? `${id}-${field.replace(".", "-")}` : `${id}-${field}`);

  const field = (key: CoreKey, label: string, help?: string, required = false) => (
    <FieldShell id={domId(key)} label={label} required={required} help={help} error={errorOf(key)}>
      {(describedBy, invalid) => (
        <input
          id={domId(key)}
          className="input"
          value={values[key]}
          required={required}
          aria-required={required || undefined}
          aria-invalid={invalid || undefined}
          aria-describedby={describedBy}
          onChange={(e) => set(key, e.target.value)}
        />
      )}
    </FieldShell>
  );

  const check = (): { errors: Errors; options: Record<string, unknown>; credentials: Record<string, unknown> } => {
    const found: Errors = {};
    const sent = { options: {} as Record<string, unknown>, credentials: {} as Record<string, unknown> };
    if (!values.name.trim()) found.name = "Give the target a name, e.g. Production Triton.";
    if (values.slug.trim() && !/^[a-z0-9][a-z0-9-]{0,62}$/.test(values.slug.trim())) {
      found.slug = "Use 1 to 63 lower-case letters, digits and '-', starting with a letter or digit.";
    }
    if (teams.length > 1 && !values.team) found.team = "Choose the team the target is for.";
    const url = values.url.trim();
    const privateHost = SERVER_URL.test(url) ? literalPrivateHost(url) : undefined;
    if (!url) found.url = "Give the server's URL, e.g. http://triton.internal:8000.";
    else if (!SERVER_URL.test(url)) {
      found.url =
        "Give the server's URL as http:// or https:// with host and port and no path, e.g. http://triton.internal:8000.";
    } else if (privateHost && !allowPrivate && kind?.private_needs_allow_private !== false) {
      found.url = `${privateHost} is a private or loopback address: tick "Allow a private or loopback address" below, or give a public address.`;
    }
    if (!values.repository.trim()) {
      found.repository =
        "Give the model repository: an absolute directory the workers and the server see, or s3://bucket/prefix.";
    }
    if (!values.profile) found.profile = "Choose the hardware profile the server runs.";
    for (const where of ["options", "credentials"] as const) {
      for (const spec of kind?.[where] ?? []) {
        const read = readSetting(spec, settings[settingId(where, spec.key)], where);
        if (read.error) found[settingId(where, spec.key)] = read.error;
        else if (read.value !== undefined) sent[where][spec.key] = read.value;
      }
    }
    return { errors: found, ...sent };
  };

  return (
    <form
      className="form"
      noValidate
      onSubmit={async (e) => {
        e.preventDefault();
        const checked = check();
        setErrors(checked.errors);
        setFailure(undefined);
        const wrong = Object.keys(checked.errors);
        if (wrong.length) {
          setSummary(
            wrong.length === 1
              ? "One field needs a change before the target can be added; it is marked below."
              : `${wrong.length} fields need a change before the target can be added; they are marked below.`,
          );
          document.getElementById(domId(wrong[0] ?? ""))?.focus();
          return;
        }
        setSummary(undefined);
        setBusy(true);
        try {
          const body: Record<string, unknown> = {
            ...values,
            name: values.name.trim(),
            url: values.url.trim(),
            repository: values.repository.trim(),
            options: checked.options,
            allow_private: allowPrivate,
          };
          if (Object.keys(checked.credentials).length) body.credentials = checked.credentials;
          if (!values.slug.trim()) delete body.slug;
          if (!body.team) delete body.team;
          // `kind` and the settings are the server's own list (GET /targets/kinds/), checked above by its specs.
          await createTarget(body as TargetInput);
          onCreated();
          setValues((v) => ({ ...v, name: "", slug: "", url: "", repository: "" }));
          setSettings(initialSettings(kind));
          setAllowPrivate(false);
        } catch (err) {
          const refusal = err instanceof ApiError ? err : undefined;
          setFailure(refusal);
          const at = refusal ? placeOf(refusal) : undefined;
          if (at) document.getElementById(domId(at))?.focus();
        } finally {
          setBusy(false);
        }
      }}
    >
      <p className="help">
        Fields marked <span aria-hidden="true">*</span>
        <span className="visually-hidden">with an asterisk</span> are required.
      </p>
      <div className="form-grid">
        {field("name", "Name", undefined, true)}
        {field("slug", "Slug", "Used in URLs; made from the name if empty.")}
        {teams.length > 1 ? (
          <FieldShell id={domId("team")} label="Team" required error={errorOf("team")}>
            {(describedBy, invalid) => (
              <select
                id={domId("team")}
                className="input"
                value={values.team}
                required
                aria-required
                aria-invalid={invalid || undefined}
                aria-describedby={describedBy}
                onChange={(e) => set("team", e.target.value)}
              >
                <option value="">Choose a team</option>
                {teams.map((t) => (
                  <option key={t}>{t}</option>
                ))}
              </select>
            )}
          </FieldShell>
        ) : null}
        <FieldShell id={domId("kind")} label="Kind" required error={errorOf("kind")}>
          {(describedBy, invalid) => (
            <select
              id={domId("kind")}
              className="input"
              value={values.kind}
              aria-invalid={invalid || undefined}
              aria-describedby={describedBy}
              onChange={(e) => {
                const next = kinds.find((k) => k.kind === e.target.value);
                set("kind", e.target.value);
                setSettings(initialSettings(next));
                setErrors({});
                setFailure(undefined);
              }}
            >
              {kinds.map((k) => (
                <option key={k.kind} value={k.kind}>
                  {k.label}
                </option>
              ))}
            </select>
          )}
        </FieldShell>
        {field("url", "Server URL", "e.g. http://triton.internal:8000", true)}
        {field(
          "repository",
          "Model repository",
          "An absolute directory the deploying workers reach, or s3://bucket/prefix.",
          true,
        )}
        <FieldShell id={domId("profile")} label="Hardware profile" required error={errorOf("profile")}>
          {(describedBy, invalid) => (
            <select
              id={domId("profile")}
              className="input"
              value={values.profile}
              aria-invalid={invalid || undefined}
              aria-describedby={describedBy}
              onChange={(e) => set("profile", e.target.value)}
            >
              {profiles.map((p) => (
                <option key={p.slug} value={p.slug}>
                  {p.name}
                </option>
              ))}
            </select>
          )}
        </FieldShell>
        <FieldShell id={domId("backend_mode")} label="Backend" error={errorOf("backend_mode")}>
          {(describedBy) => (
            <select
              id={domId("backend_mode")}
              className="input"
              value={values.backend_mode}
              aria-describedby={describedBy}
              onChange={(e) => set("backend_mode", e.target.value)}
            >
              <option value="native">Triton's own backend for the variant's format</option>
              <option value="python">Triton's python backend running Slipway's engine</option>
            </select>
          )}
        </FieldShell>
      </div>
      {(["options", "credentials"] as const).map((where) =>
        kind?.[where].length ? (
          <fieldset key={where} className="fieldset">
            <legend>{where === "options" ? `${kind.label} settings` : `${kind.label} credentials`}</legend>
            {where === "credentials" ? (
              <p className="help">
                Secrets are encrypted and never shown again; leave empty what the server does not need.
              </p>
            ) : null}
            {errorOf(where) ? (
              <p className="field-error" id={domId(where)} tabIndex={-1}>
                {errorOf(where)}
              </p>
            ) : null}
            <div className="form-grid">
              {kind[where].map((spec) => (
                <SettingField
                  key={spec.key}
                  baseId={id}
                  spec={spec}
                  where={where}
                  value={settings[settingId(where, spec.key)]}
                  error={errorOf(settingId(where, spec.key))}
                  onChange={(value) => setSettings((s) => ({ ...s, [settingId(where, spec.key)]: value }))}
                />
              ))}
            </div>
          </fieldset>
        ) : null,
      )}
      <div className="field">
        <label className="checkbox" htmlFor={domId("allow_private")}>
          <input
            id={domId("allow_private")}
            type="checkbox"
            checked={allowPrivate}
            onChange={(e) => setAllowPrivate(e.target.checked)}
            aria-describedby={`${domId("allow_private")}-help`}
          />
          Allow a private or loopback address
        </label>
        <p className="help" id={`${domId("allow_private")}-help`}>
          Slipway sends requests only to public addresses unless a team admin allows a target's private or loopback URL
          and S3 endpoint (such as http://127.0.0.1:8000 or 10.0.0.5), so that a target can't be used to reach services
          inside the platform's network. Tick it for a server on your own network; who allowed it is recorded in the
          audit trail.
          {kind && !kind.private_needs_allow_private
            ? " This server's operator allows private addresses for every target, so it is not needed here."
            : ""}
        </p>
      </div>
      <div aria-live="polite" role="status">
        {summary ? <p className="field-error">{summary}</p> : null}
        {failure && refusedField ? (
          <p className="field-error">The target was not added: the server refused a field, marked above.</p>
        ) : null}
      </div>
      {failure && !refusedField ? <ErrorMessage error={failure} title="The target was not added" /> : null}
      <div className="form-actions">
        <button type="submit" className="button button-primary" disabled={busy || !kind}>
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
  const kinds = useResource((signal) => listTargetKinds(signal), []);
  // a target of a kind this release no longer offers is listed by its kind's name
  const kindLabel = (kind: string) => kinds.data?.find((k) => k.kind === kind)?.label ?? kind;
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
        <div className="table-scroll" tabIndex={0}>
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
                      {kindLabel(t.kind)}
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
          {kinds.error ? (
            <ErrorMessage error={kinds.error} title="The kinds of target could not be read" />
          ) : profiles.data && kinds.data ? (
            <TargetForm
              profiles={profiles.data}
              teams={manageTeams}
              kinds={kinds.data}
              onCreated={() => setNonce((n) => n + 1)}
            />
          ) : (
            <Loading height={80} />
          )}
        </Section>
      ) : null}
    </>
  );
}
