// What a live deployment's serving target says about it: the target's health beside "Live",
// and the traffic, error rate and latency read from the target's metrics endpoint (Triton's
// /metrics) at every health check, drawn over time with where the numbers come from
// (GET /deployments/{id}/metrics/, apps/deployments/metrics.py).
import { useId } from "react";
import {
  deploymentMetrics,
  type Deployment,
  type DeploymentMetrics,
  type MetricsInterval,
  type TargetHealthNow,
} from "../api/deployments";
import { LineChart } from "../charts/Charts";
import type { Series } from "../charts/series";
import { Empty, ErrorMessage, KeyValues, Loading, StatusBadge } from "../components/ui";
import { formatCount, formatDateTime, formatMs, formatPercent, formatRate, formatRelative } from "../lib/format";
import { useResource } from "../lib/hooks";

/** "14:02" today, "6 Dec 14:02" on another day (local time). */
export function clockTime(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return "an unknown time";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const time = date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date(now).toDateString()) return time;
  return `${date.toLocaleDateString("en-GB", { day: "numeric", month: "short" })} ${time}`;
}

/** The target's last health check in a few words, and whether it calls for attention. */
export function targetHealthText(
  health: TargetHealthNow | undefined,
  now: number = Date.now(),
): { text: string; warn: boolean } {
  if (!health || health.healthy === null || health.healthy === undefined) {
    return { text: "target not checked yet", warn: false };
  }
  if (!health.healthy)
    return { text: `target down since ${clockTime(health.since ?? health.checked_at, now)}`, warn: true };
  const checked = formatRelative(health.checked_at, now);
  if (health.ready === false) return { text: `target live but not ready, checked ${checked}`, warn: true };
  return { text: `target healthy, checked ${checked}`, warn: false };
}

/** " · target healthy, checked 1 min ago", to follow a "Live" badge. */
export function TargetHealthNote({ health }: { health: TargetHealthNow | undefined }) {
  const { text, warn } = targetHealthText(health);
  return (
    <span className={`small ${warn ? "text-warn" : "muted"}`} title={health?.detail || undefined}>
      {" "}
      · {text}
    </span>
  );
}

/** "20 s", "30 min", "1 h", "7 d": a window's length. */
export function windowText(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 2 * 86400) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

/** The plotted series: x is minutes from the first sample to each interval's end. */
export function metricsSeries(metrics: DeploymentMetrics): {
  origin: string | null;
  traffic: Series[];
  latency: Series[];
} {
  const first = metrics.intervals[0];
  if (!first) return { origin: null, traffic: [], latency: [] };
  const origin = new Date(first.start).getTime();
  const series = (name: string, value: (i: MetricsInterval) => number | null | undefined): Series => ({
    name,
    baseline: false,
    points: metrics.intervals.flatMap((i) => {
      const y = value(i);
      const x = Math.round(((new Date(i.end).getTime() - origin) / 60000) * 100) / 100;
      return y === null || y === undefined || !Number.isFinite(y) ? [] : [{ x, y }];
    }),
  });
  const shown = (s: Series) => s.points.length > 0;
  return {
    origin: first.start,
    traffic: [
      series("Requests/s", (i) => i.requests_per_second),
      series("Failures/s", (i) => i.failures_per_second),
    ].filter(shown),
    latency: [
      series("Mean request", (i) => i.mean_latency_ms),
      series("Mean queue", (i) => i.mean_queue_ms),
      series("Mean compute", (i) => i.mean_compute_ms),
    ].filter(shown),
  };
}

/** Where the numbers come from, in one sentence. */
export function provenanceText(metrics: DeploymentMetrics): string {
  const p = metrics.provenance;
  const parts = [
    p.source || "The target's metrics endpoint",
    `sampled every ${p.sampling_interval_seconds} s`,
    `${p.samples} sample${p.samples === 1 ? "" : "s"} in the last ${windowText(p.window_seconds)}`,
    p.method,
  ];
  return `${parts.join(" · ")}.`;
}

function MetricsFigures({ metrics }: { metrics: DeploymentMetrics }) {
  const { origin, traffic, latency } = metricsSeries(metrics);
  const totals = metrics.totals;
  const quantiles = metrics.latest_quantiles_ms;
  const restarted = metrics.intervals.some((i) => i.counter_reset);
  const xLabel = `Minutes since ${clockTime(origin)} (local time)`;
  return (
    <>
      {totals ? (
        <KeyValues
          items={[
            [
              "Traffic",
              `${formatRate(totals.requests_per_second)} (${formatCount(totals.requests)} requests in ${windowText(totals.seconds)})`,
            ],
            ["Error rate", `${formatPercent(totals.error_rate, 2)} (${formatCount(totals.failures)} failed)`],
            [
              "Mean latency",
              `${formatMs(totals.mean_latency_ms)} (queue ${formatMs(totals.mean_queue_ms)}, compute ${formatMs(totals.mean_compute_ms)})`,
            ],
            ...(quantiles["0.5"] !== undefined && quantiles["0.99"] !== undefined
              ? ([
                  [
                    "Server's own p50 / p99",
                    `${formatMs(quantiles["0.5"])} / ${formatMs(quantiles["0.99"])} (its recent requests, at the last sample)`,
                  ],
                ] as [string, string][])
              : []),
          ]}
        />
      ) : null}
      <div className="metrics-charts">
        {traffic.length ? (
          <LineChart
            title="Requests per second"
            description={`Requests and failures per second on ${metrics.model_name} version ${metrics.model_version}, one point per interval between samples.`}
            series={traffic}
            xLabel={xLabel}
            yLabel="Per second"
            xMode="linear"
            valueFormat={formatRate}
            xName="min"
          />
        ) : null}
        {latency.length ? (
          <LineChart
            title="Mean latency (ms)"
            description={`Mean request, queue and compute time of ${metrics.model_name} version ${metrics.model_version} between samples; means, not percentiles.`}
            series={latency}
            xLabel={xLabel}
            yLabel="Milliseconds"
            xMode="linear"
            valueFormat={formatMs}
            xName="min"
          />
        ) : (
          <p className="muted small">No request was answered in this window, so there is no latency to show.</p>
        )}
      </div>
      {restarted ? (
        <p className="small text-warn">
          The server restarted during this window (its counters went down): those intervals count only what came after.
        </p>
      ) : null}
    </>
  );
}

/** One live deployment's traffic, errors and latency over the last hour, with its target's health. */
export function DeploymentMetricsPanel({ deployment, refresh = 0 }: { deployment: Deployment; refresh?: number }) {
  const id = useId();
  const answer = useResource((signal) => deploymentMetrics(deployment.id, signal), [deployment.id, refresh]);
  const metrics = answer.data;
  const health = metrics?.target_health ?? deployment.target_health;
  const lastError = metrics?.provenance.last_error;
  return (
    <article className="metrics-panel" aria-labelledby={`${id}-title`}>
      <h3 id={`${id}-title`} className="metrics-title">
        {deployment.model} v{deployment.version_number} on {deployment.target}
      </h3>
      <p className="small">
        <StatusBadge status="live" />
        <TargetHealthNote health={health} />
      </p>
      {health?.healthy === false && health.detail ? <p className="small text-warn">{health.detail}</p> : null}
      {answer.error ? (
        <ErrorMessage error={answer.error} title="The metrics could not be read" />
      ) : !metrics ? (
        <Loading height={160} label="Reading metrics…" />
      ) : !metrics.available || !metrics.intervals.length ? (
        <Empty title={metrics.available ? "No traffic figures yet" : "No metrics for this kind of target"}>
          {metrics.detail}
        </Empty>
      ) : (
        <MetricsFigures metrics={metrics} />
      )}
      {metrics && metrics.available ? (
        <p className="small muted metrics-provenance">
          {provenanceText(metrics)}
          {metrics.provenance.last_sample_at
            ? ` Last sample ${formatRelative(metrics.provenance.last_sample_at)} (${formatDateTime(metrics.provenance.last_sample_at)}).`
            : ""}
        </p>
      ) : null}
      {metrics && lastError && metrics.intervals.length ? (
        <p className="small text-warn">The last reading of the metrics failed: {lastError}</p>
      ) : null}
    </article>
  );
}
