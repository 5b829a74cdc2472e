// A team in the browser: its members and their roles, invitations (a link or a one-time code,
// no e-mail needed), its settings (four-eyes or an explicit single-reviewer mode) and its
// policy gates. Team admins change things; every member sees who is in the team.
import { useId, useState } from "react";
import { Link, Navigate, useParams } from "react-router";
import { ApiError, del, get, patch, post } from "../api/client";
import type { Invitation, InvitationCreated, Member, Policy, Role, TeamDetail } from "../api/types";
import type { components } from "../api/schema";
import { readSetting, SettingField, type SettingValue } from "../features/settingFields";
import { ROLES } from "../api/types";
import { useSession } from "../auth/session";
import {
  Badge,
  ConfirmButton,
  Empty,
  ErrorMessage,
  Loading,
  Notice,
  PageHeader,
  Section,
  ShownOnce,
} from "../components/ui";
import { formatDateTime, formatRelative } from "../lib/format";
import { useResource } from "../lib/hooks";

const ROLE_HELP: Record<Role, string> = {
  viewer: "sees models, reports and decisions",
  data_scientist: "also uploads models and re-runs pipelines",
  approver: "also approves, rejects, deploys and rolls back",
  admin: "everything, and manages the team",
};

function RoleSelect({
  value,
  onChange,
  id,
  disabled,
  label,
}: {
  value: Role;
  onChange: (role: Role) => void;
  id?: string;
  disabled?: boolean;
  label?: string;
}) {
  return (
    <select
      id={id}
      className="input"
      value={value}
      disabled={disabled}
      aria-label={label}
      onChange={(e) => onChange(e.target.value as Role)}
    >
      {(Object.keys(ROLES) as Role[]).map((role) => (
        <option key={role} value={role}>
          {ROLES[role]}
        </option>
      ))}
    </select>
  );
}

/** What a team needs before anything can be approved: said on the team page and the first screen. */
export function reviewerAdvice(team: { four_eyes?: boolean; reviewers: number }): string | undefined {
  if (!team.four_eyes || team.reviewers >= 2) return undefined;
  return team.reviewers === 0
    ? "Nobody in this team may approve versions yet. Invite an approver."
    : "This team has one reviewer and the four-eyes rule is on, so nothing that reviewer uploads can be approved. " +
        "Invite a second reviewer, or switch to single-reviewer mode.";
}

function Members({ team, manage, onChanged }: { team: TeamDetail; manage: boolean; onChanged: () => void }) {
  const members = useResource(() => get<Member[]>(`teams/${team.slug}/members/`), [team.slug]);
  const [failure, setFailure] = useState<ApiError>();
  const act = async (work: () => Promise<unknown>) => {
    setFailure(undefined);
    try {
      await work();
    } catch (err) {
      setFailure(err instanceof ApiError ? err : undefined);
    }
    members.reload();
    onChanged();
  };
  if (members.error) return <ErrorMessage error={members.error} />;
  if (!members.data) return <Loading height={100} />;
  return (
    <>
      {failure ? <ErrorMessage error={failure} title="The change was not made" /> : null}
      <div className="table-scroll" tabIndex={0}>
        <table className="table">
          <thead>
            <tr>
              <th scope="col">Member</th>
              <th scope="col">Role</th>
              <th scope="col">Since</th>
              {manage ? (
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              ) : null}
            </tr>
          </thead>
          <tbody>
            {members.data.map((m) => (
              <tr key={m.username}>
                <th scope="row">
                  {m.username}
                  {m.email ? <div className="muted small">{m.email}</div> : null}
                </th>
                <td>
                  {manage ? (
                    <RoleSelect
                      value={m.role as Role}
                      label={`Role of ${m.username}`}
                      onChange={(role) => void act(() => patch(`teams/${team.slug}/members/${m.username}/`, { role }))}
                    />
                  ) : (
                    (ROLES[m.role as Role] ?? m.role)
                  )}
                </td>
                <td title={formatDateTime(m.created_at)}>{formatRelative(m.created_at)}</td>
                {manage ? (
                  <td className="actions">
                    <ConfirmButton
                      className="button button-small button-quiet"
                      confirmLabel={`Remove ${m.username} from ${team.slug}`}
                      onConfirm={() => act(() => del(`teams/${team.slug}/members/${m.username}/`))}
                    >
                      Remove
                    </ConfirmButton>
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

function CreatedInvitation({ invitation, onDone }: { invitation: InvitationCreated; onDone: () => void }) {
  return (
    <ShownOnce
      title={`Send this invitation (${ROLES[invitation.role as Role]}) to ${invitation.note || "the new member"} now`}
      values={[
        { label: "The invitation link", text: invitation.link, copyLabel: "Copy link" },
        { label: "The invitation code", text: invitation.code, copyLabel: "Copy code" },
      ]}
      doneLabel="I have passed it on"
      onDone={onDone}
    >
      It works once, until {formatDateTime(invitation.expires_at)}. Slipway keeps only its hash and sends no e-mail:
      pass the link (or the code) on yourself, through a channel you trust.
    </ShownOnce>
  );
}

const STATE_TONE: Record<string, "ok" | "warn" | "bad" | "idle"> = {
  pending: "warn",
  accepted: "ok",
  revoked: "idle",
  expired: "idle",
};

function Invitations({ team, onChanged }: { team: TeamDetail; onChanged: () => void }) {
  const invitations = useResource(() => get<Invitation[]>(`teams/${team.slug}/invitations/`), [team.slug]);
  const [role, setRole] = useState<Role>("approver");
  const [note, setNote] = useState("");
  const [days, setDays] = useState("7");
  const [problem, setProblem] = useState<string>();
  const [failure, setFailure] = useState<ApiError>();
  const [created, setCreated] = useState<InvitationCreated>();
  const [busy, setBusy] = useState(false);
  const id = useId();
  return (
    <>
      {created ? (
        <CreatedInvitation
          invitation={created}
          onDone={() => {
            setCreated(undefined);
            onChanged();
          }}
        />
      ) : null}
      <form
        className="form"
        noValidate
        aria-label="Invite someone"
        onSubmit={async (e) => {
          e.preventDefault();
          const n = Number(days);
          const found = !Number.isInteger(n) || n < 1 || n > 30 ? "An invitation lasts 1 to 30 days." : undefined;
          setProblem(found);
          setFailure(undefined);
          if (found) return;
          setBusy(true);
          try {
            setCreated(
              await post<InvitationCreated>(`teams/${team.slug}/invitations/`, {
                role,
                note: note.trim(),
                expires_in_days: n,
              }),
            );
            setNote("");
            invitations.reload();
          } catch (err) {
            setFailure(err instanceof ApiError ? err : undefined);
          } finally {
            setBusy(false);
          }
        }}
      >
        <div className="form-grid">
          <div className="field">
            <label htmlFor={`${id}-role`}>Role</label>
            <RoleSelect id={`${id}-role`} value={role} onChange={setRole} />
            <p className="help">{ROLE_HELP[role]}</p>
          </div>
          <div className="field">
            <label htmlFor={`${id}-note`}>For whom (optional)</label>
            <input
              id={`${id}-note`}
              className="input"
              value={note}
              maxLength={200}
              placeholder="Rita, the on-call reviewer"
              onChange={(e) => setNote(e.target.value)}
            />
          </div>
          <div className="field">
            <label htmlFor={`${id}-days`}>Valid for (days)</label>
            <input
              id={`${id}-days`}
              className="input"
              inputMode="numeric"
              value={days}
              aria-invalid={problem ? true : undefined}
              aria-describedby={problem ? `${id}-days-err` : undefined}
              onChange={(e) => setDays(e.target.value)}
            />
            {problem ? (
              <p className="field-error" id={`${id}-days-err`} role="alert">
                {problem}
              </p>
            ) : null}
          </div>
        </div>
        {failure ? <ErrorMessage error={failure} title="The invitation was not created" /> : null}
        <div className="form-actions">
          <button type="submit" className="button button-primary" disabled={busy}>
            {busy ? "Creating…" : "Create invitation"}
          </button>
        </div>
      </form>
      {invitations.error ? (
        <ErrorMessage error={invitations.error} />
      ) : !invitations.data ? (
        <Loading height={80} />
      ) : invitations.data.length === 0 ? (
        <p className="muted">No invitations yet.</p>
      ) : (
        <div className="table-scroll" tabIndex={0}>
          <table className="table">
            <caption className="visually-hidden">Invitations of team {team.slug}</caption>
            <thead>
              <tr>
                <th scope="col">For</th>
                <th scope="col">Role</th>
                <th scope="col">State</th>
                <th scope="col">Code</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {invitations.data.map((inv) => (
                <tr key={inv.id}>
                  <th scope="row">{inv.note || <span className="muted">(no note)</span>}</th>
                  <td>{ROLES[inv.role as Role] ?? inv.role}</td>
                  <td>
                    <Badge tone={STATE_TONE[inv.state] ?? "idle"}>{inv.state}</Badge>
                    {inv.accepted_by ? <span className="small"> by {inv.accepted_by}</span> : null}
                  </td>
                  <td className="mono small">{inv.prefix}</td>
                  <td>{formatDateTime(inv.expires_at)}</td>
                  <td className="actions">
                    {inv.state === "pending" ? (
                      <ConfirmButton
                        className="button button-small button-quiet"
                        confirmLabel="Withdraw this invitation"
                        onConfirm={async () => {
                          try {
                            await del(`teams/${team.slug}/invitations/${inv.id}/`);
                          } catch (err) {
                            setFailure(err instanceof ApiError ? err : undefined);
                          }
                          invitations.reload();
                        }}
                      >
                        Withdraw
                      </ConfirmButton>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

function Settings({ team, onSaved }: { team: TeamDetail; onSaved: () => void }) {
  const [name, setName] = useState(team.name);
  const [reason, setReason] = useState("");
  const [asking, setAsking] = useState(false);
  const [failure, setFailure] = useState<ApiError>();
  const [problem, setProblem] = useState<string>();
  const id = useId();
  const save = async (changes: Record<string, unknown>) => {
    setFailure(undefined);
    try {
      await patch(`teams/${team.slug}/`, changes);
      setAsking(false);
      setReason("");
      onSaved();
    } catch (err) {
      setFailure(err instanceof ApiError ? err : undefined);
    }
  };
  return (
    <div className="form">
      {failure ? <ErrorMessage error={failure} title="The settings were not saved" /> : null}
      <form
        className="form"
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          if (name.trim() && name.trim() !== team.name) void save({ name: name.trim() });
        }}
      >
        <div className="field">
          <label htmlFor={`${id}-name`}>Team name</label>
          <input id={`${id}-name`} className="input" value={name} onChange={(e) => setName(e.target.value)} />
        </div>
        <div className="form-actions">
          <button type="submit" className="button" disabled={!name.trim() || name.trim() === team.name}>
            Rename
          </button>
        </div>
      </form>
      <h3>Who may approve a version</h3>
      {team.four_eyes ? (
        <>
          <p>
            <Badge tone="ok">Four eyes</Badge> Whoever uploads a version may not approve it: another approver or admin
            decides.
          </p>
          {!asking ? (
            <div className="form-actions">
              <button type="button" className="button button-quiet" onClick={() => setAsking(true)}>
                Switch to single-reviewer mode…
              </button>
            </div>
          ) : (
            <form
              className="form confirm-panel"
              noValidate
              onSubmit={(e) => {
                e.preventDefault();
                if (!reason.trim()) {
                  setProblem("Say why the team works with a single reviewer; it is kept in the audit trail.");
                  return;
                }
                setProblem(undefined);
                void save({ four_eyes: false, reason: reason.trim() });
              }}
            >
              <p>
                In single-reviewer mode an approver may approve a version they uploaded. It applies to versions uploaded
                from now on; each such approval is marked <strong>single reviewer</strong> wherever it is shown, and the
                switch is recorded in the audit trail with your reason.
              </p>
              <div className="field">
                <label htmlFor={`${id}-reason`}>Why</label>
                <textarea
                  id={`${id}-reason`}
                  className="input"
                  rows={2}
                  value={reason}
                  aria-invalid={problem ? true : undefined}
                  aria-describedby={problem ? `${id}-reason-err` : undefined}
                  onChange={(e) => setReason(e.target.value)}
                  placeholder="A team of one until the second reviewer starts in January"
                />
                {problem ? (
                  <p className="field-error" id={`${id}-reason-err`} role="alert">
                    {problem}
                  </p>
                ) : null}
              </div>
              <div className="form-actions">
                <button type="submit" className="button button-danger">
                  Turn four-eyes off
                </button>
                <button type="button" className="button button-quiet" onClick={() => setAsking(false)}>
                  Cancel
                </button>
              </div>
            </form>
          )}
        </>
      ) : (
        <>
          <p>
            <Badge tone="warn">Single reviewer</Badge> An approver may approve what they uploaded; such approvals are
            marked on each decision.
          </p>
          <div className="form-actions">
            <ConfirmButton
              className="button"
              confirmLabel="Turn four-eyes on for every version"
              onConfirm={() => save({ four_eyes: true })}
            >
              Turn four-eyes on
            </ConfirmButton>
          </div>
          <p className="help">Turning it on applies at once to every version of the team, including those uploaded.</p>
        </>
      )}
    </div>
  );
}

/** A policy kind as the server declares it (GET /policies/kinds/, apps/approvals/gates.py). */
export type PolicyKindSpec = components["schemas"]["PolicyKind"];

/** The params a policy form's values make, checked as the kind's specs check them: the params,
 * or the sentence per field (and "" for the form as a whole) saying what is wrong. */
export function policyParams(
  kind: PolicyKindSpec,
  values: Record<string, SettingValue>,
): { params: Record<string, unknown> } | { errors: Record<string, string> } {
  const params: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  for (const spec of kind.params) {
    const read = readSetting(spec, values[spec.key], "options");
    if (read.error) errors[spec.key] = read.error;
    else if (read.value !== undefined) params[spec.key] = read.value;
  }
  if (Object.keys(errors).length) return { errors };
  if (kind.at_least_one && !Object.keys(params).length) return { errors: { "": "Give at least one limit." } };
  return { params };
}

function Policies({ team, manage }: { team: TeamDetail; manage: boolean }) {
  const policies = useResource(
    () => get<{ results: Policy[] }>("policies/", { team: team.slug, page_size: 100 }),
    [team.slug],
  );
  const kinds = useResource(() => get<PolicyKindSpec[]>("policies/kinds/"), []);
  const [kindName, setKindName] = useState("max_accuracy_drift");
  const [name, setName] = useState("");
  const [values, setValues] = useState<Record<string, SettingValue>>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [problem, setProblem] = useState<string>();
  const kind = kinds.data?.find((k) => k.kind === kindName);
  const [failure, setFailure] = useState<ApiError>();
  const id = useId();
  const act = async (work: () => Promise<unknown>) => {
    setFailure(undefined);
    try {
      await work();
      return true;
    } catch (err) {
      setFailure(err instanceof ApiError ? err : undefined);
      return false;
    } finally {
      policies.reload();
    }
  };
  const rows = policies.data?.results ?? [];
  return (
    <>
      {failure ? <ErrorMessage error={failure} title="The policy was not changed" /> : null}
      {policies.error ? (
        <ErrorMessage error={policies.error} />
      ) : !policies.data ? (
        <Loading height={80} />
      ) : rows.length === 0 ? (
        <p className="muted">No gates: versions are judged on their evidence alone.</p>
      ) : (
        <ul className="gates">
          {rows.map((p) => (
            <li key={p.id} className="gate">
              <Badge tone={p.enabled ? "ok" : "idle"}>{p.enabled ? "On" : "Off"}</Badge>
              <div>
                <strong>{p.name}</strong>{" "}
                <span className="muted small">
                  ({p.kind.replace(/_/g, " ")}
                  {p.profile ? `, ${p.profile}` : ", every profile"}
                  {p.model ? `, model ${p.model}` : ""})
                </span>
                <p className="mono small">{JSON.stringify(p.params)}</p>
                {manage ? (
                  <div className="form-actions">
                    <button
                      type="button"
                      className="button button-small"
                      onClick={() => void act(() => patch(`policies/${p.id}/`, { enabled: !p.enabled }))}
                    >
                      {p.enabled ? "Turn off" : "Turn on"}
                    </button>
                    <ConfirmButton
                      className="button button-small button-quiet"
                      confirmLabel={`Delete the gate ${p.name}`}
                      onConfirm={async () => {
                        await act(() => del(`policies/${p.id}/`));
                      }}
                    >
                      Delete
                    </ConfirmButton>
                  </div>
                ) : null}
              </div>
            </li>
          ))}
        </ul>
      )}
      {manage ? (
        <form
          className="form"
          noValidate
          aria-label="Add a gate"
          onSubmit={async (e) => {
            e.preventDefault();
            if (!kind) return;
            const read = policyParams(kind, values);
            const fieldErrors = "errors" in read ? read.errors : {};
            setErrors(fieldErrors);
            const found = !name.trim() ? "Name the gate." : fieldErrors[""];
            setProblem(found);
            if (found || !("params" in read)) return;
            const body = { team: team.slug, name: name.trim(), kind: kind.kind, params: read.params };
            if (await act(() => post("policies/", body))) {
              setName("");
              setValues({});
            }
          }}
        >
          <h3>Add a gate</h3>
          <div className="form-grid">
            <div className="field">
              <label htmlFor={`${id}-kind`}>Kind</label>
              <select
                id={`${id}-kind`}
                className="input"
                value={kindName}
                onChange={(e) => {
                  setKindName(e.target.value);
                  setValues({});
                  setErrors({});
                }}
              >
                {(kinds.data ?? []).map((k) => (
                  <option key={k.kind} value={k.kind}>
                    {k.label}
                  </option>
                ))}
              </select>
              {kind ? <p className="help">Takes {kind.help}.</p> : null}
            </div>
            <div className="field">
              <label htmlFor={`${id}-pname`}>Name</label>
              <input id={`${id}-pname`} className="input" value={name} onChange={(e) => setName(e.target.value)} />
            </div>
            {kind?.params.map((spec) => (
              <SettingField
                key={`${kind.kind}-${spec.key}`}
                baseId={`${id}-${kind.kind}`}
                spec={spec}
                where="options"
                value={values[spec.key]}
                error={errors[spec.key]}
                onChange={(value) => setValues({ ...values, [spec.key]: value })}
              />
            ))}
          </div>
          {problem ? (
            <p className="field-error" role="alert">
              {problem}
            </p>
          ) : null}
          <div className="form-actions">
            <button type="submit" className="button button-primary">
              Add gate
            </button>
          </div>
        </form>
      ) : null}
    </>
  );
}

export function TeamPage() {
  const { slug } = useParams();
  const { me, refresh } = useSession();
  // At /teams (no slug) the page only redirects to the first team: nothing to fetch.
  const team = useResource(
    () => (slug ? get<TeamDetail>(`teams/${slug}/`) : new Promise<TeamDetail>(() => undefined)),
    [slug],
  );
  if (!slug) {
    const first = me?.teams[0];
    return first ? (
      <Navigate to={`/teams/${first.slug}`} replace />
    ) : (
      <Empty title="You are not in a team yet.">Ask a team admin for an invitation.</Empty>
    );
  }
  if (team.error) return <ErrorMessage error={team.error} title={`Team ${slug}`} />;
  if (!team.data) return <Loading height={200} />;
  const data = team.data;
  const manage = data.role === "admin";
  const changed = () => {
    team.reload();
    void refresh();
  };
  const advice = reviewerAdvice(data);
  const others = (me?.teams ?? []).filter((t) => t.slug !== data.slug);
  return (
    <>
      <PageHeader
        title={`Team ${data.name}`}
        subtitle={`${data.members} member${data.members === 1 ? "" : "s"}, ${data.reviewers} who may approve · your role: ${
          data.role ? ROLES[data.role as Role] : "none"
        }`}
      />
      {others.length ? (
        <p className="small">
          Your other teams:{" "}
          {others.map((t, i) => (
            <span key={t.slug}>
              {i ? ", " : ""}
              <Link to={`/teams/${t.slug}`}>{t.name}</Link>
            </span>
          ))}
        </p>
      ) : null}
      {advice ? (
        <Notice kind="warn" title="No one can approve yet">
          {advice}
          {manage ? " Create an invitation below." : " Ask a team admin."}
        </Notice>
      ) : null}
      <Section id="members" title="Members">
        <Members team={data} manage={manage} onChanged={changed} />
      </Section>
      {manage ? (
        <Section id="invite" title="Invite someone">
          <Invitations team={data} onChanged={changed} />
        </Section>
      ) : null}
      {manage ? (
        <Section id="settings" title="Settings">
          <Settings team={data} onSaved={changed} />
        </Section>
      ) : (
        <Section id="settings" title="Settings">
          <p>
            {data.four_eyes ? (
              <>
                <Badge tone="ok">Four eyes</Badge> Whoever uploads a version may not approve it.
              </>
            ) : (
              <>
                <Badge tone="warn">Single reviewer</Badge> An approver may approve what they uploaded.
              </>
            )}
          </p>
        </Section>
      )}
      <Section id="policies" title="Policies and gates">
        <Policies team={data} manage={manage} />
      </Section>
    </>
  );
}
