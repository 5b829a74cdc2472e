import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter } from "react-router";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Deployment, ServingTarget } from "../api/deployments";
import { DeployForm, DeploymentsTable } from "./Deployments";

const live = {
  id: 3,
  status: "live",
  status_reason: "Live on local-triton: 'digits' version 1 serves ort-opt-all of version 1.",
  error_code: "",
  detail: "",
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
} as unknown as Deployment;

const target = {
  id: 1,
  team: "vision",
  name: "Local Triton",
  slug: "local-triton",
  profile: "x86-cpu",
  enabled: true,
  health: { healthy: true, ready: true },
} as unknown as ServingTarget;

let fetchMock: ReturnType<typeof vi.fn>;
beforeEach(() => {
  fetchMock = vi.fn(async () => new Response(JSON.stringify({ ...live, id: 4, status: "pending" }), { status: 202 }));
  vi.stubGlobal("fetch", fetchMock);
});
afterEach(() => vi.unstubAllGlobals());

describe("deployments", () => {
  it("rolls back only after a second, explicit press", async () => {
    const user = userEvent.setup();
    const onChanged = vi.fn();
    render(
      <MemoryRouter>
        <DeploymentsTable deployments={[live]} onChanged={onChanged} />
      </MemoryRouter>,
    );
    expect(screen.getByRole("link", { name: "digits v1" }).getAttribute("href")).toBe("/versions/12");
    expect(screen.getByText("✓")).toBeTruthy();
    await user.click(screen.getByRole("button", { name: "Roll back" }));
    expect(fetchMock).not.toHaveBeenCalled();
    expect(document.activeElement?.textContent).toBe("Roll back now");
    await user.click(screen.getByRole("button", { name: "Roll back now" }));
    expect(fetchMock.mock.calls[0]?.[0]).toBe("/api/v1/deployments/3/rollback/");
    expect(onChanged).toHaveBeenCalled();
  });

  it("needs a version and a target before it deploys, then sends the choice", async () => {
    const user = userEvent.setup();
    const onDeployed = vi.fn();
    const versions = [
      { id: 12, label: "vision/digits v1", variants: ["ort-opt-all", "ort-int8-dynamic"], recommended: "ort-opt-all" },
      { id: 9, label: "vision/fraud-scorer v4", variants: [] },
    ];
    render(<DeployForm versions={versions} targets={[target]} onDeployed={onDeployed} />);
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    expect(screen.getByRole("alert").textContent).toBe("Choose the approved version to deploy.");
    await user.selectOptions(screen.getByLabelText("Approved version"), "vision/digits v1");
    expect(screen.getByRole("option", { name: "The recommended one (ort-opt-all)" })).toBeTruthy();
    await user.selectOptions(screen.getByLabelText("Variant"), "ort-int8-dynamic");
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    const [url, init] = fetchMock.mock.calls[0] as [string, RequestInit];
    expect(url).toBe("/api/v1/deployments/");
    expect(JSON.parse(init.body as string)).toEqual({
      version: 12,
      target: "local-triton",
      variant: "ort-int8-dynamic",
    });
    expect(onDeployed).toHaveBeenCalled();
  });
});
