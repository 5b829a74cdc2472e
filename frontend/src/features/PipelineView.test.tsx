import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { Job, PipelineRun } from "../api/types";
import { PipelineView } from "./PipelineView";

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

  it("shows no note while a worker serves the queue", () => {
    render(<PipelineView run={run([job])} />);
    expect(screen.queryByText(/No live worker/)).toBeNull();
    expect(screen.getByText(/queued on cpu, waiting for a worker/)).toBeTruthy();
  });
});
