import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { Job, PipelineRun } from "../api/types";
import { formatAbout, ordinal, PipelineView } from "./PipelineView";

const job: Job = {
  id: 7,
  kind: "inspect",
  profile: null,
  sequence: 0,
  status: "queued",
  queue: "cpu",
  progress: 0,
  progress_message: "",
  attempt: 0,
  max_attempts: 3,
  worker_host: "",
  enqueued_at: "2026-12-02T10:00:00Z",
  started_at: null,
  heartbeat_at: null,
  finished_at: null,
  error: "",
  error_code: "",
  worker_note: null,
};

function run(jobs: Job[]): PipelineRun {
  return { id: 1, status: "queued", created_at: "2026-12-02T10:00:00Z", started_at: null, finished_at: null, jobs };
}

describe("PipelineView", () => {
  it("says when no live worker serves a step's queue, instead of only 'waiting'", () => {
    const note =
      "No live worker serves the queue 'cpu': this step waits until a worker that takes this queue is running (see the Workers page).";
    render(<PipelineView run={run([{ ...job, worker_note: note }])} />);
    expect(screen.getByRole("status").textContent).toBe(note);
  });

  it("says above the steps which chosen profile nothing serves, and how to connect one", () => {
    const note =
      "No worker serves arm-cpu-mnn, which needs an aarch64 CPU: its steps wait until one connects. " +
      "Start a worker on such a machine with `python manage.py run_worker --queues arm64`.";
    const readiness = [
      {
        profile: "arm-cpu-mnn",
        status: "processing" as const,
        reason: "",
        step: null,
        service_note: note,
        hardware_note: "",
      },
      {
        profile: "x86-cpu",
        status: "processing" as const,
        reason: "",
        step: null,
        service_note: "",
        hardware_note: "",
      },
    ];
    render(<PipelineView run={run([job])} readiness={readiness} />);
    const [shown, ...others] = screen.getAllByRole("status");
    expect(others).toHaveLength(0);
    expect(shown!.textContent).toBe(`arm-cpu-mnn: ${note}`);
  });

  it("offers to stop waiting for a profile nothing serves, where the user may", async () => {
    const dropped: string[] = [];
    const readiness = [
      {
        profile: "arm-cpu-mnn",
        status: "processing" as const,
        reason: "",
        step: null,
        service_note: "No worker serves arm-cpu-mnn.",
        hardware_note: "",
      },
    ];
    render(<PipelineView run={run([job])} readiness={readiness} onDropProfile={(p) => dropped.push(p)} />);
    screen.getByRole("button", { name: "Stop waiting for arm-cpu-mnn" }).click();
    expect(dropped).toEqual(["arm-cpu-mnn"]);
  });

  it("marks a profile whose steps ran on hardware it does not name", () => {
    const note = "Measured on cpu@box (x86_64, AMD EPYC), which is not the hardware arm-cpu-mnn names (an aarch64 CPU)";
    const readiness = [
      {
        profile: "arm-cpu-mnn",
        status: "ready" as const,
        reason: "",
        step: null,
        service_note: "",
        hardware_note: note,
      },
    ];
    render(<PipelineView run={run([job])} readiness={readiness} />);
    expect(screen.getByRole("alert").textContent).toBe(`arm-cpu-mnn, measured on other hardware: ${note}`);
  });

  it("says a queued step's place in line and when it likely starts, with what that comes from", () => {
    const basis = "from the median of 12 recent optimize steps on queue cpu and the 2 live workers that take it";
    const estimate = {
      starts_in_seconds: 130,
      elapsed_seconds: null,
      typical_seconds: 95,
      samples: 12,
      live_workers: 2,
      basis,
    };
    render(<PipelineView run={run([{ ...job, kind: "optimize", queue_position: 3, ahead: 2, estimate }])} />);
    expect(screen.getByText(/in line on queue/).textContent).toBe(
      `3rd in line on queue cpu; about 2 min from now, ${basis}`,
    );
  });

  it("says why there is no estimate instead of inventing one", () => {
    const basis = "No optimize step has finished on queue cpu lately, so there is no estimate of when it starts yet.";
    const estimate = {
      starts_in_seconds: null,
      elapsed_seconds: null,
      typical_seconds: null,
      samples: 0,
      live_workers: 1,
      basis,
    };
    render(<PipelineView run={run([{ ...job, queue_position: 1, ahead: 0, estimate }])} />);
    expect(screen.getByText(/in line on queue/).textContent).toBe(`next in line on queue cpu. ${basis}`);
  });

  it("says how long a running step's kind usually takes", () => {
    const estimate = {
      starts_in_seconds: null,
      elapsed_seconds: 40,
      typical_seconds: 180,
      samples: 7,
      live_workers: 1,
      basis: "from the median of 7 recent inspect steps on queue cpu",
    };
    const running: Job = { ...job, status: "running", progress_message: "reading the graph", estimate };
    render(<PipelineView run={run([running])} />);
    expect(screen.getByText(/reading the graph/).textContent).toContain(
      "reading the graph · usually about 3 min, from the median of 7 recent inspect steps on queue cpu",
    );
  });

  it("words places and spans as people read them", () => {
    expect([1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111].map(ordinal)).toEqual([
      "next",
      "2nd",
      "3rd",
      "4th",
      "11th",
      "12th",
      "13th",
      "21st",
      "22nd",
      "101st",
      "111th",
    ]);
    expect([0, 42, 89, 130, 3600, 3900].map(formatAbout)).toEqual([
      "0 s",
      "42 s",
      "1 min",
      "2 min",
      "1 h",
      "1 h 5 min",
    ]);
  });

  it("shows no note while a worker serves the queue", () => {
    render(<PipelineView run={run([job])} />);
    expect(screen.queryByText(/No live worker/)).toBeNull();
    expect(screen.getByText(/queued on cpu, waiting for a worker/)).toBeTruthy();
  });
});
