import { render, screen, within } from "@testing-library/react";
import { MemoryRouter } from "react-router";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { QueueDepth, Worker } from "../api/types";
import { WorkersPage } from "./WorkersPage";

function answer(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();

// GET /api/v1/queues/ as a reader in team vision sees it: other teams' steps only counted.
const QUEUES: QueueDepth[] = [
  {
    queue: "arm64",
    profiles: ["arm-cpu-mnn"],
    queued: 3,
    queued_yours: 0,
    running: 0,
    oldest_enqueued_at: minutesAgo(42),
    oldest_wait_seconds: 42 * 60,
    live_workers: [],
  },
  {
    queue: "cpu",
    profiles: ["x86-cpu"],
    queued: 5,
    queued_yours: 2,
    running: 2,
    oldest_enqueued_at: minutesAgo(7),
    oldest_wait_seconds: 7 * 60,
    live_workers: ["cpu@box-1", "cpu@box-2"],
  },
];

const worker = (name: string, more: Partial<Worker>) =>
  ({
    name,
    host: "box",
    arch: "x86_64",
    cpu_model: "EPYC",
    cpu_flags: [],
    cores: 8,
    memory_bytes: 2 ** 34,
    gpus: [],
    runtimes: { onnxruntime: "1.32.0" },
    importers: [],
    framework_envs: {},
    queues: ["cpu"],
    started_at: minutesAgo(60),
    last_heartbeat_at: minutesAgo(0),
    stopped_at: null,
    status: "online",
    running: [],
    running_other_teams: 0,
    ...more,
  }) as Worker;

const WORKERS: Worker[] = [
  worker("cpu@box-1", {
    running: [
      {
        job: 41,
        kind: "optimize",
        queue: "cpu",
        profile: "x86-cpu",
        team: "vision",
        model: "resnet",
        version: 3,
        version_id: 17,
        progress: 0.4,
        progress_message: "building int8",
        started_at: minutesAgo(2),
      },
    ],
  }),
  worker("cpu@box-2", { running_other_teams: 1 }),
  worker("cpu@box-3", {}),
];

beforeEach(() => {
  const fetchMock = vi.fn(async (url: string) => {
    if (url.includes("/workers/")) return answer(WORKERS);
    if (url.includes("/queues/")) return answer(QUEUES);
    if (url.includes("/profiles/")) return answer([]);
    if (url.includes("/devices/")) return answer({ results: [], next: null });
    if (url.includes("/teams/")) return answer([]);
    return answer({ code: "not_found", message: "Not found.", fields: {} }, 404);
  });
  vi.stubGlobal("fetch", fetchMock);
});
afterEach(() => vi.unstubAllGlobals());

function show() {
  render(
    <MemoryRouter>
      <WorkersPage />
    </MemoryRouter>,
  );
}

describe("the Workers page", () => {
  it("shows each queue's depth, how long its oldest step has waited and the live workers that take it", async () => {
    show();
    const table = (await screen.findByText(/^Queues:/)).closest("table")!;
    const [arm, cpu] = within(table).getAllByRole("row").slice(1);
    expect(within(cpu!).getByRole("rowheader").textContent).toBe("cpu");
    expect(cpu!.textContent).toContain("5 waiting (2 of your teams)");
    expect(cpu!.textContent).toContain("oldest queued 7 min ago");
    expect(cpu!.textContent).toContain("2 running");
    expect(cpu!.textContent).toContain("cpu@box-1, cpu@box-2");
    expect(arm!.textContent).toContain("3 waiting (0 of your teams)");
    expect(arm!.textContent).toContain("oldest queued 42 min ago");
    expect(arm!.textContent).toContain("no live worker takes it: its steps wait until one does");
  });

  it("says what each worker runs now, and only counts other teams' steps", async () => {
    show();
    const busy = (await screen.findByText("cpu@box-1")).closest("tr")!;
    expect(busy.textContent).toContain("optimize of resnet v3 for x86-cpu: 40% (building int8)");
    expect(within(busy).getByRole("link", { name: "resnet v3" }).getAttribute("href")).toBe("/versions/17");
    const theirs = screen.getByText("cpu@box-2").closest("tr")!;
    expect(theirs.textContent).toContain("1 step of other teams");
    expect(within(theirs).queryByRole("link")).toBeNull();
    expect(screen.getByText("cpu@box-3").closest("tr")!.textContent).toContain("idle");
  });
});
