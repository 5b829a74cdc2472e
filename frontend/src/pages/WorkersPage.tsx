import { Link } from "react-router";
import { get } from "../api/client";
import type { HardwareProfile, QueueDepth, RunningStep, Worker } from "../api/types";
import { Devices } from "../features/Devices";
import { ProfileService } from "../features/ProfileService";
import { Empty, ErrorMessage, Loading, PageHeader, StatusBadge } from "../components/ui";
import { formatBytes, formatDateTime, formatPercent, formatRelative } from "../lib/format";
import { useNow, useResource } from "../lib/hooks";
import { useEffect } from "react";

interface Gpu {
  name?: string;
  memory_bytes?: number;
  compute_capability?: string;
  driver?: string;
}

const FLAGS_SHOWN = [
  "avx2",
  "avx512f",
  "avx512_vnni",
  "avx_vnni",
  "amx_tile",
  "amx_int8",
  "amx_bf16",
  "asimd",
  "asimddp",
  "fphp",
  "i8mm",
  "sve",
];

/** Each queue work goes to: how many steps wait (yours among them) and how long the oldest has
 *  waited, how many run, and the live workers that take it. Other teams' steps are only counted. */
export function QueueTable({ queues, now }: { queues: readonly QueueDepth[]; now: number }) {
  if (queues.length === 0) return null;
  return (
    <div className="table-scroll" tabIndex={0}>
      <table className="table">
        <caption className="muted small">Queues: the steps waiting for a worker, and who takes them</caption>
        <thead>
          <tr>
            <th scope="col">Queue</th>
            <th scope="col">Profiles</th>
            <th scope="col">Waiting</th>
            <th scope="col">Running</th>
            <th scope="col">Live workers</th>
          </tr>
        </thead>
        <tbody>
          {queues.map((q) => (
            <tr key={q.queue}>
              <th scope="row" className="mono">
                {q.queue}
              </th>
              <td className="small mono">{q.profiles.join(", ") || "—"}</td>
              <td className="small">
                {q.queued} waiting{q.queued ? ` (${q.queued_yours} of your teams)` : ""}
                {q.oldest_enqueued_at ? (
                  <div className="muted" title={formatDateTime(q.oldest_enqueued_at)}>
                    oldest queued {formatRelative(q.oldest_enqueued_at, now)}
                  </div>
                ) : null}
              </td>
              <td className="small">{q.running} running</td>
              <td className="small">
                {q.live_workers.length ? (
                  <span className="mono">{q.live_workers.join(", ")}</span>
                ) : (
                  <span className={q.queued ? "text-warn" : "muted"}>
                    no live worker takes it{q.queued ? ": its steps wait until one does" : ""}
                  </span>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function RunningNow({ steps, others }: { steps: readonly RunningStep[]; others: number }) {
  if (steps.length === 0 && others === 0) return <span className="muted">idle</span>;
  return (
    <ul className="plain">
      {steps.map((step) => (
        <li key={step.job}>
          {step.kind} of{" "}
          <Link to={`/versions/${step.version_id}`}>
            {step.model} v{step.version}
          </Link>
          {step.profile ? ` for ${step.profile}` : ""}: {formatPercent(step.progress, 0)}
          {step.progress_message ? <span className="muted"> ({step.progress_message})</span> : null}
        </li>
      ))}
      {others ? (
        <li className="muted">
          {others} step{others === 1 ? "" : "s"} of other teams
        </li>
      ) : null}
    </ul>
  );
}

export function WorkersPage() {
  const workers = useResource(() => get<Worker[]>("workers/"), []);
  const profiles = useResource(() => get<HardwareProfile[]>("profiles/"), []);
  const queues = useResource(() => get<QueueDepth[]>("queues/"), []);
  const now = useNow(5000);
  // Heartbeats and queues move: look again every 15 s.
  useEffect(() => {
    const timer = setInterval(() => {
      workers.reload();
      profiles.reload();
      queues.reload();
    }, 15000);
    return () => clearInterval(timer);
  }, [workers.reload, profiles.reload, queues.reload]);
  return (
    <>
      <PageHeader
        title="Workers"
        subtitle="The machines that run pipelines: their hardware, the runtimes installed, the queues they take work from. A worker whose heartbeat stopped is marked stale. A worker runs a profile's steps only when its own hardware meets the profile."
      />
      {profiles.data ? <ProfileService profiles={profiles.data} /> : null}
      {queues.error ? <ErrorMessage error={queues.error} /> : null}
      {queues.data ? <QueueTable queues={queues.data} now={now} /> : null}
      {workers.error ? (
        <ErrorMessage error={workers.error} />
      ) : !workers.data ? (
        <Loading height={200} />
      ) : workers.data.length === 0 ? (
        <Empty title="No worker has reported in.">
          Start one with `manage.py run_worker`; jobs wait in their queue until a worker that serves it is online.
        </Empty>
      ) : (
        <div className="table-scroll" tabIndex={0}>
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Worker</th>
                <th scope="col">State</th>
                <th scope="col">Hardware</th>
                <th scope="col">Runtimes</th>
                <th scope="col">Queues</th>
                <th scope="col">Running now</th>
                <th scope="col">Heartbeat</th>
              </tr>
            </thead>
            <tbody>
              {workers.data.map((w) => {
                const runtimes = Object.entries((w.runtimes as Record<string, string | null>) ?? {});
                const flags = ((w.cpu_flags as string[]) ?? []).filter((f) => FLAGS_SHOWN.includes(f));
                const gpus = (w.gpus as Gpu[]) ?? [];
                return (
                  <tr
                    key={w.name}
                    className={w.status === "stale" ? "row-stale" : w.status === "stopped" ? "row-stopped" : undefined}
                  >
                    <th scope="row">
                      <span className="mono">{w.name}</span>
                      <div className="muted small">{w.host}</div>
                    </th>
                    <td>
                      <StatusBadge status={w.status} />
                      {w.status === "stale" ? (
                        <div className="small text-warn">
                          No heartbeat for {formatRelative(w.last_heartbeat_at, now).replace(" ago", "")}: it may have
                          died; its jobs are retried elsewhere.
                        </div>
                      ) : null}
                    </td>
                    <td className="small">
                      {w.cpu_model || w.arch} · {w.cores} cores · {formatBytes(w.memory_bytes)}
                      {flags.length ? <div className="muted">{flags.join(", ")}</div> : null}
                      {gpus.length ? (
                        <ul className="plain">
                          {gpus.map((g, i) => (
                            <li key={i}>
                              GPU: {g.name ?? "unknown"}
                              {g.memory_bytes ? `, ${formatBytes(g.memory_bytes)}` : ""}
                              {g.compute_capability ? `, sm ${g.compute_capability}` : ""}
                            </li>
                          ))}
                        </ul>
                      ) : (
                        <div className="muted">no GPU</div>
                      )}
                    </td>
                    <td className="small">
                      <ul className="plain">
                        {runtimes.map(([name, version]) => (
                          <li key={name} className={version ? undefined : "muted"}>
                            {version ? "✓" : "–"} {name} {version ?? "not installed"}
                          </li>
                        ))}
                      </ul>
                      {((w.importers as string[]) ?? []).length ? (
                        <div className="muted">imports: {((w.importers as string[]) ?? []).join(", ")}</div>
                      ) : null}
                      {Object.keys((w.framework_envs as Record<string, unknown>) ?? {}).length ? (
                        <div className="muted" title="Frameworks that run in an interpreter environment of their own">
                          own environments: {Object.keys(w.framework_envs as Record<string, unknown>).join(", ")}
                        </div>
                      ) : null}
                    </td>
                    <td className="small mono">{((w.queues as string[]) ?? []).join(", ")}</td>
                    <td className="small">
                      <RunningNow steps={w.running ?? []} others={w.running_other_teams ?? 0} />
                    </td>
                    <td title={formatDateTime(w.last_heartbeat_at)}>
                      {formatRelative(w.last_heartbeat_at, now)}
                      <div className="muted small">up since {formatDateTime(w.started_at)}</div>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {profiles.data ? <Devices profiles={profiles.data} now={now} /> : null}
    </>
  );
}
