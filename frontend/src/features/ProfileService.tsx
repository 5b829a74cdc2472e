// Which machines measure for each hardware profile: a profile's numbers are only valid on the
// hardware it names, so one that nothing serves says why its work waits and how to connect a
// machine (the server's `service_note`), instead of leaving uploads waiting in silence.
import type { HardwareProfile } from "../api/types";

export function ProfileService({ profiles }: { profiles: readonly HardwareProfile[] }) {
  const shown = profiles.filter((p) => p.enabled !== false);
  if (shown.length === 0) return null;
  return (
    <div className="table-scroll" tabIndex={0}>
      <table className="table">
        <caption className="muted small">Hardware profiles and the live workers that measure for them</caption>
        <thead>
          <tr>
            <th scope="col">Profile</th>
            <th scope="col">Needs</th>
            <th scope="col">Served by</th>
            <th scope="col">Steps</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((p) => (
            <tr key={p.slug}>
              <th scope="row">
                {p.name} <span className="muted small mono">({p.slug})</span>
              </th>
              <td className="small">{p.needs}</td>
              <td className="small">
                {p.served_by.length ? (
                  <span className="mono">{p.served_by.join(", ")}</span>
                ) : (
                  <span className="text-warn" role="status">
                    {p.service_note}
                  </span>
                )}
              </td>
              <td className="small">
                {p.running} running · {p.queued} waiting
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
