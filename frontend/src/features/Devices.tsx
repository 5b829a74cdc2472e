import { useId, useState } from "react";
import { ApiError, getAll, post } from "../api/client";
import type { Device, Enrollment, HardwareProfile, Team } from "../api/types";
import { ConfirmButton, CopyButton, Empty, ErrorMessage, Loading, Section, StatusBadge } from "../components/ui";
import { formatDateTime, formatRelative } from "../lib/format";
import { useResource } from "../lib/hooks";

interface Probe {
  arch?: string;
  cpu_model?: string;
  cores?: number;
}

/** What is wrong with an enrollment form, in a sentence; undefined when it can be sent. */
export function validateEnrollment(team: string, profiles: string[], hours: string): string | undefined {
  if (!team) return "Choose the team the device will work for.";
  if (!profiles.length) return "Choose at least one hardware profile the device may serve.";
  const n = Number(hours);
  if (!Number.isInteger(n) || n < 1 || n > 168) return "The token lasts a whole number of hours, 1 to 168.";
  return undefined;
}

function EnrollmentCreated({ enrollment, onDone }: { enrollment: Enrollment; onDone: () => void }) {
  return (
    <div className="alert alert-warn token-created" role="status">
      <span className="alert-icon" aria-hidden="true">
        !
      </span>
      <div>
        <strong className="alert-title">Copy the enrollment token now</strong>
        <p>
          It is shown once, registers one device for team {enrollment.team} to serve {enrollment.profiles.join(", ")},
          and expires {formatDateTime(enrollment.expires_at)}. Run this on the device, in a checkout of Slipway: it
          probes the device's own hardware and registers it; the answer holds the device's credential, shown once.
        </p>
        <div className="token-value">
          <code aria-label="The command that registers the device">{enrollment.connect}</code>
          <CopyButton text={enrollment.connect} label="Copy command" />
        </div>
        <button type="button" className="button button-quiet button-small" onClick={onDone}>
          I have copied it
        </button>
      </div>
    </div>
  );
}

function EnrollForm({
  teams,
  profiles,
  onCreated,
}: {
  teams: Team[];
  profiles: HardwareProfile[];
  onCreated: (enrollment: Enrollment) => void;
}) {
  const id = useId();
  const [team, setTeam] = useState(teams.length === 1 ? teams[0]!.slug : "");
  const [name, setName] = useState("");
  const [chosen, setChosen] = useState<string[]>([]);
  const [hours, setHours] = useState("24");
  const [problem, setProblem] = useState<string>();
  const [failure, setFailure] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  return (
    <form
      className="form"
      noValidate
      onSubmit={async (e) => {
        e.preventDefault();
        const found = validateEnrollment(team, chosen, hours);
        setProblem(found);
        setFailure(undefined);
        if (found) return;
        setBusy(true);
        try {
          onCreated(
            await post<Enrollment>("devices/enrollments/", {
              team,
              name: name.trim(),
              profiles: chosen,
              hours: Number(hours),
            }),
          );
          setName("");
          setChosen([]);
        } catch (err) {
          setFailure(err instanceof ApiError ? err : undefined);
        } finally {
          setBusy(false);
        }
      }}
    >
      <div className="form-grid">
        <div className="field">
          <label htmlFor={`${id}-team`}>Team</label>
          <select id={`${id}-team`} className="input" value={team} onChange={(e) => setTeam(e.target.value)}>
            <option value="">Choose…</option>
            {teams.map((t) => (
              <option key={t.slug} value={t.slug}>
                {t.name}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={`${id}-name`}>Device (for your records)</label>
          <input
            id={`${id}-name`}
            className="input"
            value={name}
            onChange={(e) => setName(e.target.value)}
            placeholder="rk3588-lab-1"
          />
        </div>
        <div className="field">
          <label htmlFor={`${id}-hours`}>Token valid for (hours)</label>
          <input
            id={`${id}-hours`}
            className="input"
            inputMode="numeric"
            value={hours}
            onChange={(e) => setHours(e.target.value)}
          />
        </div>
      </div>
      <fieldset className="field fieldset">
        <legend>Profiles it may serve</legend>
        <div className="checks">
          {profiles.map((p) => (
            <label key={p.slug} className="checkbox">
              <input
                type="checkbox"
                checked={chosen.includes(p.slug)}
                onChange={(e) => setChosen(e.target.checked ? [...chosen, p.slug] : chosen.filter((s) => s !== p.slug))}
              />
              <span>
                {p.slug} <span className="muted small">({p.needs})</span>
              </span>
            </label>
          ))}
        </div>
        <p className="muted small">
          The device serves a profile only where its own hardware probe meets it, whatever it was enrolled for.
        </p>
      </fieldset>
      {problem ? (
        <p className="text-error" role="alert">
          {problem}
        </p>
      ) : null}
      {failure ? <ErrorMessage error={failure} /> : null}
      <button type="submit" className="button button-primary" disabled={busy}>
        {busy ? "Making the token…" : "Make an enrollment token"}
      </button>
    </form>
  );
}

/** The devices outside the cluster (machines running the Slipway agent) and, for team admins,
 * how to connect one: an enrollment token, shown once. */
export function Devices({ profiles, now }: { profiles: HardwareProfile[]; now: number }) {
  const devices = useResource(async () => (await getAll<Device>("devices/")).items, []);
  const teams = useResource(async () => (await getAll<Team>("teams/")).items, []);
  const [created, setCreated] = useState<Enrollment>();
  const [failure, setFailure] = useState<ApiError>();
  const adminOf = (teams.data ?? []).filter((t) => t.role === "admin");
  return (
    <Section id="devices" title="Devices">
      <p className="muted">
        Machines outside the cluster (boards, phones, a Jetson) run the Slipway agent: it registers with an enrollment
        token, reports its own hardware and runtimes, and calls in over HTTPS. It never holds the database or broker
        credentials.
      </p>
      {created ? <EnrollmentCreated enrollment={created} onDone={() => setCreated(undefined)} /> : null}
      {failure ? <ErrorMessage error={failure} /> : null}
      {devices.error ? (
        <ErrorMessage error={devices.error} />
      ) : !devices.data ? (
        <Loading height={120} />
      ) : devices.data.length === 0 ? (
        <Empty title="No device has registered.">
          {adminOf.length
            ? "Make an enrollment token below and run the command it gives on the device."
            : "A team admin makes an enrollment token for each device."}
        </Empty>
      ) : (
        <div className="table-scroll" tabIndex={0}>
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">State</th>
                <th scope="col">Hardware (its own probe)</th>
                <th scope="col">Profiles</th>
                <th scope="col">Last seen</th>
                {adminOf.length ? <th scope="col">Actions</th> : null}
              </tr>
            </thead>
            <tbody>
              {devices.data.map((d) => {
                const probe = (d.hardware as Probe) ?? {};
                const runtimes = Object.entries((d.runtimes as Record<string, string | null>) ?? {});
                return (
                  <tr key={d.id} className={d.status === "revoked" ? "row-stopped" : undefined}>
                    <th scope="row">
                      <span className="mono">{d.name}</span>
                      <div className="muted small">
                        team {d.team}
                        {d.agent_version ? ` · agent ${d.agent_version}` : ""}
                      </div>
                    </th>
                    <td>
                      <StatusBadge status={d.status} />
                      {d.running.map((job) => (
                        <div key={job.id} className="small">
                          running {job.kind} for {job.profile}: {Math.round(job.progress * 100)}%
                          {job.progress_message ? ` (${job.progress_message})` : ""}
                        </div>
                      ))}
                    </td>
                    <td className="small">
                      {probe.cpu_model || probe.arch} · {probe.arch} · {probe.cores ?? "?"} cores
                      {runtimes.length ? (
                        <div className="muted">
                          {runtimes.map(([name, version]) => `${name} ${version ?? "not installed"}`).join(", ")}
                        </div>
                      ) : null}
                    </td>
                    <td className="small">
                      <ul className="plain">
                        {d.serving.map((s) => (
                          <li key={s.profile} className={s.meets ? undefined : "text-warn"}>
                            {s.meets ? "✓" : "✗"} {s.profile}
                            {s.meets ? "" : `: ${s.unmet}`}
                          </li>
                        ))}
                      </ul>
                    </td>
                    <td title={formatDateTime(d.last_seen_at)}>{formatRelative(d.last_seen_at, now)}</td>
                    {adminOf.length ? (
                      <td>
                        {d.status !== "revoked" && adminOf.some((t) => t.slug === d.team) ? (
                          <ConfirmButton
                            className="button button-small"
                            confirmLabel={`Revoke ${d.name}: its credential stops working now`}
                            onConfirm={async () => {
                              setFailure(undefined);
                              try {
                                await post(`devices/${d.id}/revoke/`);
                              } catch (err) {
                                setFailure(err instanceof ApiError ? err : undefined);
                              }
                              devices.reload();
                            }}
                          >
                            Revoke
                          </ConfirmButton>
                        ) : null}
                      </td>
                    ) : null}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {adminOf.length ? (
        <>
          <h3>Connect a device</h3>
          <EnrollForm
            teams={adminOf}
            profiles={profiles.filter((p) => p.enabled !== false)}
            onCreated={(enrollment) => {
              setCreated(enrollment);
              devices.reload();
            }}
          />
        </>
      ) : null}
    </Section>
  );
}
