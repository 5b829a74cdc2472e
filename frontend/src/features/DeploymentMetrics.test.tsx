// A live deployment's target health beside "Live", and its traffic, errors and latency: the
// charts, the figures and where they come from, the empty states, and nothing axe objects to.
import { render, screen, waitFor, within } from "@testing-library/react";
import axe from "axe-core";
import { MemoryRouter } from "react-router";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Deployment, DeploymentMetrics, MetricsInterval } from "../api/deployments";
import {
  DeploymentMetricsPanel,
  metricsSeries,
  provenanceText,
  targetHealthText,
  windowText,
} from "./DeploymentMetrics";
import { DeploymentsTable } from "./Deployments";

const NOW = new Date("2026-12-07T14:30:00").getTime();
const local = (hhmm: string) => new Date(`2026-12-07T${hhmm}:00`).toISOString();

const live = {
  id: 3,
  status: "live",
  status_reason: "Live on local-triton.",
  kind: "deploy",
  team: "vision",
  target: "local-triton",
  target_id: 1,
  version: 12,
  version_number: 1,
  model: "digits",
  profile: "x86-cpu",
  variant: "ort-opt-all",
  triton_model: "digits",
  triton_version: 1,
  requested_by: "april",
  created_at: "2026-12-02T10:00:00Z",
  live_at: "2026-12-02T10:00:05Z",
  target_health: { healthy: true, ready: true, checked_at: local("14:29"), since: local("09:00"), detail: "" },
} as unknown as Deployment;

function interval(startMinute: number, requestsPerSecond: number, latencyMs: number, reset = false): MetricsInterval {
  const at = (minute: number) => new Date(new Date(local("14:00")).getTime() + minute * 60000).toISOString();
  return {
    start: at(startMinute),
    end: at(startMinute + 1),
    seconds: 60,
    requests: requestsPerSecond * 60,
    failures: 0,
    requests_per_second: requestsPerSecond,
    failures_per_second: 0,
    error_rate: 0,
    mean_latency_ms: latencyMs,
    mean_queue_ms: latencyMs / 4,
    mean_compute_ms: latencyMs / 2,
    counter_reset: reset,
  };
}

const metrics: DeploymentMetrics = {
  deployment: 3,
  model_name: "digits",
  model_version: "1",
  available: true,
  detail: "",
  intervals: [interval(0, 10, 4), interval(1, 12.5, 5), interval(2, 3, 3.2, true)],
  totals: { ...interval(0, 8.5, 4.1), seconds: 180, requests: 1530 },
  latest_quantiles_ms: { "0.5": 3.9, "0.99": 11.2 },
  provenance: {
    source: "Triton metrics endpoint http://triton.internal:8002/metrics",
    sampling_interval_seconds: 60,
    samples: 4,
    method: "means between samples, not percentiles",
    window_seconds: 3600,
    first_sample_at: local("14:00"),
    last_sample_at: local("14:03"),
    last_attempt_at: local("14:03"),
    last_error: "",
    quantiles: "The server's own latency quantiles over its recent requests, at the last sample.",
  },
  target_health: { healthy: true, ready: true, checked_at: local("14:03"), since: local("09:00"), detail: "" },
};

let answer: unknown;
beforeEach(() => {
  // the components read the clock ("14:02" today, "7 Dec 14:02" another day): the tests' today is NOW's
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(NOW);
  answer = metrics;
  vi.stubGlobal(
    "fetch",
    vi.fn(async () => new Response(JSON.stringify(answer), { status: 200 })),
  );
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});

describe("the target's health beside Live", () => {
  it("says since when a target is down, in a warning", () => {
    const down = { healthy: false, ready: null, checked_at: local("14:29"), since: local("14:02"), detail: "" };
    expect(targetHealthText(down, NOW)).toEqual({ text: "target down since 14:02", warn: true });
  });

  it("says when a healthy target was checked, and when it was never checked", () => {
    const healthy = { healthy: true, ready: true, checked_at: local("14:29"), since: local("09:00"), detail: "" };
    expect(targetHealthText(healthy, NOW)).toEqual({ text: "target healthy, checked 1 min ago", warn: false });
    expect(targetHealthText({ ...healthy, ready: false }, NOW).warn).toBe(true);
    const never = { healthy: null, ready: null, checked_at: null, since: null, detail: "Not checked yet." };
    expect(targetHealthText(never, NOW).text).toBe("target not checked yet");
  });

  it("shows it in the deployments table next to the Live badge", () => {
    const down = {
      ...live,
      target_health: { healthy: false, ready: null, checked_at: local("14:03"), since: local("14:02"), detail: "" },
    } as Deployment;
    render(
      <MemoryRouter>
        <DeploymentsTable deployments={[down]} onChanged={vi.fn()} />
      </MemoryRouter>,
    );
    const state = screen.getByText("Live").closest("td") as HTMLElement;
    expect(state.textContent).toContain("Live · target down since 14:02");
    expect(within(state).getByText(/target down since/).className).toContain("text-warn");
  });
});

describe("the metrics panel", () => {
  it("plots requests/s and mean latency over minutes, with the numbers and their source", async () => {
    render(<DeploymentMetricsPanel deployment={live} />);
    await screen.findByText("Requests per second");
    expect(screen.getByRole("heading", { name: "digits v1 on local-triton" })).toBeTruthy();
    expect(screen.getByText("Mean latency (ms)")).toBeTruthy();
    expect(screen.getAllByText("Minutes since 14:00 (local time)").length).toBeGreaterThan(0);
    // the chart's own table: one column per interval
    const tables = screen.getAllByRole("table");
    expect(within(tables[0] as HTMLElement).getByRole("rowheader", { name: "Requests/s" })).toBeTruthy();
    expect(tables[0]?.textContent).toContain("12.5/s");
    expect(tables[1]?.textContent).toContain("5.00 ms");
    const text = document.body.textContent ?? "";
    expect(text).toContain("8.5/s (1,530 requests in 3 min)");
    expect(text).toContain("3.90 ms / 11.2 ms");
    expect(text).toContain(
      "Triton metrics endpoint http://triton.internal:8002/metrics · sampled every 60 s · 4 samples in the last 1 h · means between samples, not percentiles.",
    );
    expect(text).toContain("The server restarted during this window");
    expect(vi.mocked(fetch).mock.calls[0]?.[0]).toContain("/api/v1/deployments/3/metrics/");
  });

  it("says when the first figures will come", async () => {
    answer = {
      ...metrics,
      intervals: [],
      totals: null,
      detail: "No samples yet: metrics appear after the next health checks, every 60 s.",
      provenance: { ...metrics.provenance, samples: 0, first_sample_at: null, last_sample_at: null },
    };
    render(<DeploymentMetricsPanel deployment={live} />);
    expect(await screen.findByText("No traffic figures yet")).toBeTruthy();
    expect(screen.getByText("No samples yet: metrics appear after the next health checks, every 60 s.")).toBeTruthy();
    expect(screen.queryByText("Requests per second")).toBeNull();
  });

  it("says when the target's kind reports no metrics", async () => {
    answer = {
      ...metrics,
      available: false,
      intervals: [],
      totals: null,
      detail: "This kind of target reports no metrics.",
    };
    render(<DeploymentMetricsPanel deployment={live} />);
    expect(await screen.findByText("This kind of target reports no metrics.")).toBeTruthy();
    expect(screen.queryByText(/sampled every/)).toBeNull();
  });

  it("has nothing axe-core objects to", async () => {
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null);
    const { container } = render(<DeploymentMetricsPanel deployment={live} />);
    await screen.findByText("Requests per second");
    await waitFor(() => expect(container.querySelectorAll("svg[role=img]").length).toBe(2));
    const results = await axe.run(container, { rules: { "color-contrast": { enabled: false } } });
    expect(results.violations.map((violation) => `${violation.id}: ${violation.help}`)).toEqual([]);
  });
});

describe("the series and words", () => {
  it("places each interval at its end, in minutes from the first sample, leaving out missing values", () => {
    const gap = { ...interval(3, 0, 0), mean_latency_ms: null, mean_queue_ms: null, mean_compute_ms: null };
    const { traffic, latency } = metricsSeries({ ...metrics, intervals: [...metrics.intervals, gap] });
    expect(traffic[0]?.points).toEqual([
      { x: 1, y: 10 },
      { x: 2, y: 12.5 },
      { x: 3, y: 3 },
      { x: 4, y: 0 },
    ]);
    expect(latency.map((s) => s.name)).toEqual(["Mean request", "Mean queue", "Mean compute"]);
    expect(latency[0]?.points.length).toBe(3);
  });

  it("names windows and provenance as people read them", () => {
    expect([windowText(20.4), windowText(1800), windowText(3600), windowText(86400), windowText(604800)]).toEqual([
      "20 s",
      "30 min",
      "1 h",
      "24 h",
      "7 d",
    ]);
    expect(provenanceText({ ...metrics, provenance: { ...metrics.provenance, samples: 1 } })).toContain("1 sample in");
  });
});
