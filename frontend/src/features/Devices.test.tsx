import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { HardwareProfile } from "../api/types";
import { Devices, validateEnrollment } from "./Devices";

const profiles = [
  { slug: "arm-cpu-mnn", needs: "an aarch64 CPU", enabled: true },
  { slug: "x86-cpu", needs: "an x86_64 CPU", enabled: true },
] as unknown as HardwareProfile[];

const board = {
  id: 7,
  team: "vision",
  name: "rk3588-lab-1",
  status: "online",
  hardware: { arch: "aarch64", cpu_model: "Cortex-A76", cores: 8 },
  runtimes: { mnn: "3.2.0", onnxruntime: null },
  agent_version: "0.1.0",
  serving: [
    { profile: "arm-cpu-mnn", meets: true, unmet: "" },
    { profile: "x86-cpu", meets: false, unmet: "it is aarch64, not x86_64" },
  ],
  registered_at: "2026-12-07T09:00:00Z",
  last_seen_at: "2026-12-07T09:59:50Z",
  revoked_at: null,
  running: [
    {
      id: 41,
      kind: "benchmark",
      profile: "arm-cpu-mnn",
      version: 3,
      attempt: 1,
      progress: 0.4,
      progress_message: "mnn-fp16",
    },
  ],
};

function answer(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

let fetchMock: ReturnType<typeof vi.fn>;
function serve(role: string) {
  fetchMock = vi.fn(async (url: string, init?: RequestInit) => {
    if (url.includes("/devices/enrollments/")) {
      const body = JSON.parse(String(init?.body));
      return answer(
        {
          id: 1,
          team: body.team,
          name: body.name,
          profiles: body.profiles,
          expires_at: "2026-12-08T10:00:00Z",
          token: "sle_abc_secret",
          connect:
            "python3 -m slipway_agent register --server http://slipway --token sle_abc_secret && python3 -m slipway_agent run",
        },
        201,
      );
    }
    if (url.includes("/devices/")) return answer({ results: [board], next: null });
    if (url.includes("/teams/")) return answer([{ slug: "vision", name: "Vision", role }]);
    return answer({}, 404);
  });
  vi.stubGlobal("fetch", fetchMock);
}
beforeEach(() => serve("admin"));
afterEach(() => vi.unstubAllGlobals());

describe("devices", () => {
  it("shows each device by its own probe, and which enrolled profiles it can't serve and why", async () => {
    render(<Devices profiles={profiles} now={Date.parse("2026-12-07T10:00:00Z")} />);
    const row = (await screen.findByText("rk3588-lab-1")).closest("tr")!;
    expect(within(row).getByText(/Cortex-A76 · aarch64 · 8 cores/)).toBeTruthy();
    expect(within(row).getByText(/mnn 3.2.0, onnxruntime not installed/)).toBeTruthy();
    expect(within(row).getByText("✗ x86-cpu: it is aarch64, not x86_64")).toBeTruthy();
    expect(within(row).getByText("✓ arm-cpu-mnn")).toBeTruthy();
    expect(within(row).getByText("running benchmark for arm-cpu-mnn: 40% (mnn-fp16)")).toBeTruthy();
  });

  it("lets a team admin make an enrollment token, shown once with the command to run", async () => {
    const user = userEvent.setup();
    render(<Devices profiles={profiles} now={Date.now()} />);
    await screen.findByText("rk3588-lab-1");
    await user.click(screen.getByRole("button", { name: "Make an enrollment token" }));
    expect(screen.getByRole("alert").textContent).toBe("Choose at least one hardware profile the device may serve.");
    await user.click(screen.getByRole("checkbox", { name: /arm-cpu-mnn/ }));
    await user.click(screen.getByRole("button", { name: "Make an enrollment token" }));
    const command = await screen.findByLabelText("The command that registers the device");
    expect(command.textContent).toBe(
      "python3 -m slipway_agent register --server http://slipway --token sle_abc_secret && python3 -m slipway_agent run",
    );
    const sent = fetchMock.mock.calls.find(([url]) => String(url).includes("enrollments"))!;
    expect(JSON.parse(String(sent[1].body))).toEqual({
      team: "vision",
      name: "",
      profiles: ["arm-cpu-mnn"],
      hours: 24,
    });
  });

  it("offers no enrollment or revocation to a member who is not an admin", async () => {
    serve("viewer");
    render(<Devices profiles={profiles} now={Date.now()} />);
    await screen.findByText("rk3588-lab-1");
    expect(screen.queryByRole("button", { name: "Make an enrollment token" })).toBeNull();
    expect(screen.queryByRole("button", { name: "Revoke" })).toBeNull();
  });

  it("checks the form as the server does", () => {
    expect(validateEnrollment("", ["x86-cpu"], "24")).toBe("Choose the team the device will work for.");
    expect(validateEnrollment("vision", ["x86-cpu"], "200")).toBe("The token lasts a whole number of hours, 1 to 168.");
    expect(validateEnrollment("vision", ["x86-cpu"], "24")).toBeUndefined();
  });
});
