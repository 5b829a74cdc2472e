import { render, screen, waitFor, within } from "@testing-library/react";
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

// v2's deployment #5 replaced #3 (v1) on local-triton; a rollback brings #3 back.
const current = {
  ...live,
  id: 5,
  version: 14,
  version_number: 2,
  variant: "ort-int8-dynamic",
  triton_version: 2,
  replaces: 3,
  status_reason: "Live on local-triton.",
} as unknown as Deployment;
const retired = { ...live, status: "retired", status_reason: "Replaced by deployment 5 (version 2)." } as Deployment;

let fetchMock: ReturnType<typeof vi.fn>;
// GETs by path; anything else (the POSTs) answers a pending deployment.
let reads: Record<string, unknown> = {};
beforeEach(() => {
  reads = {};
  fetchMock = vi.fn(async (url: string, init: RequestInit) => {
    const path = url.split("?")[0] ?? url;
    if (init.method === "GET") {
      return path in reads
        ? new Response(JSON.stringify(reads[path]), { status: 200 })
        : new Response(JSON.stringify({ code: "not_found", message: "Not found.", fields: {} }), { status: 404 });
    }
    return new Response(JSON.stringify({ ...live, id: 6, status: "pending" }), { status: 202 });
  });
  vi.stubGlobal("fetch", fetchMock);
});
afterEach(() => vi.unstubAllGlobals());

function posts(): [string, RequestInit][] {
  return (fetchMock.mock.calls as [string, RequestInit][]).filter(([, init]) => init.method === "POST");
}

function table(deployments: Deployment[], onChanged = vi.fn()) {
  return render(
    <MemoryRouter>
      <DeploymentsTable deployments={deployments} onChanged={onChanged} />
    </MemoryRouter>,
  );
}

describe("deployments", () => {
  it("says which version comes back before it rolls back, and sends the rollback once confirmed", async () => {
    const user = userEvent.setup();
    const onChanged = vi.fn();
    table([current, retired], onChanged);
    expect(screen.getByRole("link", { name: "digits v2" }).getAttribute("href")).toBe("/versions/14");
    expect(screen.getByText("✓")).toBeTruthy();
    await user.click(screen.getByRole("button", { name: "Roll back" }));
    const dialog = screen.getByRole("dialog", { name: "Roll back digits on local-triton?" });
    expect(document.activeElement?.textContent).toBe("Cancel");
    const comes = within(dialog).getByText("Comes back").parentElement;
    expect(comes?.textContent).toContain("digits v1 · ort-opt-all");
    expect(comes?.textContent).toContain("deployment #3");
    const goes = within(dialog).getByText("Goes away").parentElement;
    expect(goes?.textContent).toContain("digits v2 · ort-int8-dynamic");
    expect(fetchMock).not.toHaveBeenCalled();
    await user.click(within(dialog).getByRole("button", { name: "Roll back to v1" }));
    expect(posts().map(([url]) => url)).toEqual(["/api/v1/deployments/5/rollback/"]);
    expect(onChanged).toHaveBeenCalled();
    expect(screen.queryByRole("dialog")).toBeNull();
  });

  it("reads the replaced deployment when the list does not hold it, and cancelling sends nothing", async () => {
    const user = userEvent.setup();
    reads["/api/v1/deployments/3/"] = retired;
    table([current]);
    const rollBack = screen.getByRole("button", { name: "Roll back" });
    await user.click(rollBack);
    const dialog = screen.getByRole("dialog");
    expect(await within(dialog).findByRole("button", { name: "Roll back to v1" })).toBeTruthy();
    expect(within(dialog).getByText("Comes back").parentElement?.textContent).toContain("digits v1 · ort-opt-all");
    await user.keyboard("{Escape}");
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(document.activeElement).toBe(rollBack);
    await user.click(rollBack);
    await user.click(within(screen.getByRole("dialog")).getByRole("button", { name: "Cancel" }));
    expect(posts()).toHaveLength(0);
  });

  it("explains that a first deployment has nothing to roll back to, and offers no rollback", async () => {
    const user = userEvent.setup();
    table([{ ...live, replaces: null } as Deployment]);
    await user.click(screen.getByRole("button", { name: "Roll back" }));
    const dialog = screen.getByRole("dialog");
    expect(dialog.textContent).toContain("there is no earlier one to roll back to");
    expect(within(dialog).queryByRole("button", { name: /^Roll back/ })).toBeNull();
    await user.click(within(dialog).getByRole("button", { name: "Close" }));
    expect(posts()).toHaveLength(0);
  });

  it("says nothing will serve the model once undeployed", async () => {
    const user = userEvent.setup();
    table([current]);
    await user.click(screen.getByRole("button", { name: "Undeploy" }));
    const dialog = screen.getByRole("dialog", { name: "Undeploy digits from local-triton?" });
    expect(dialog.textContent).toContain("Nothing will serve digits on local-triton.");
    await user.click(within(dialog).getByRole("button", { name: "Undeploy digits" }));
    expect(posts().map(([url]) => url)).toEqual(["/api/v1/deployments/5/undeploy/"]);
  });

  it("needs a version and a target before it deploys, then sends the choice", async () => {
    const user = userEvent.setup();
    const onDeployed = vi.fn();
    reads["/api/v1/deployments/"] = { results: [] };
    const versions = [
      {
        id: 12,
        label: "vision/digits v1",
        variants: ["ort-opt-all", "ort-int8-dynamic"],
        recommended: "ort-opt-all",
        model: "digits",
      },
      { id: 9, label: "vision/fraud-scorer v4", variants: [] },
    ];
    render(<DeployForm versions={versions} targets={[target]} onDeployed={onDeployed} />);
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    expect(screen.getByRole("alert").textContent).toBe("Choose the approved version to deploy.");
    await user.selectOptions(screen.getByLabelText("Approved version"), "vision/digits v1");
    expect(screen.getByRole("option", { name: "The recommended one (ort-opt-all)" })).toBeTruthy();
    await user.selectOptions(screen.getByLabelText("Variant"), "ort-int8-dynamic");
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    const confirm = within(screen.getByRole("dialog")).getByRole("button", { name: "Deploy to Local Triton" });
    await waitFor(() => expect((confirm as HTMLButtonElement).disabled).toBe(false));
    await user.click(confirm);
    const [url, init] = posts()[0] as [string, RequestInit];
    expect(url).toBe("/api/v1/deployments/");
    expect(JSON.parse(init.body as string)).toEqual({
      version: 12,
      target: "local-triton",
      variant: "ort-int8-dynamic",
    });
    expect(onDeployed).toHaveBeenCalled();
  });

  it("names what is live on the target and is replaced, and what happens if the smoke test fails", async () => {
    const user = userEvent.setup();
    const onDeployed = vi.fn();
    // The version page's form knows no model slug: the confirmation reads it from the version.
    reads["/api/v1/versions/14/"] = { id: 14, team: "vision", model: "digits", number: 2 };
    reads["/api/v1/deployments/"] = { results: [live] };
    render(
      <DeployForm
        chooseVersion={false}
        versions={[{ id: 14, label: "digits v2", variants: ["ort-int8-dynamic"], recommended: "ort-int8-dynamic" }]}
        targets={[target]}
        onDeployed={onDeployed}
      />,
    );
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    const dialog = screen.getByRole("dialog", { name: "Deploy digits v2 to Local Triton?" });
    expect(within(dialog).getByText("Variant").parentElement?.textContent).toContain(
      "the recommended one, ort-int8-dynamic",
    );
    expect(within(dialog).getByText("Target").parentElement?.textContent).toContain(
      "Local Triton (vision/local-triton, x86-cpu)",
    );
    await waitFor(() =>
      expect(within(dialog).getByText("Live there now").parentElement?.textContent).toContain(
        "digits v1 · ort-opt-all",
      ),
    );
    expect(dialog.textContent).toContain("it is replaced");
    expect(dialog.textContent).toContain(
      "the deployment is marked failed and digits v1 · ort-opt-all keeps serving (or serves again, if the switch had started)",
    );
    expect(dialog.textContent).toContain("deployment #3 is retired; its files stay on the server");
    const query = new URL(
      (fetchMock.mock.calls as [string][]).find(([u]) => u.startsWith("/api/v1/deployments/"))?.[0] ?? "",
      "http://x",
    ).searchParams;
    expect([query.get("status"), query.get("target"), query.get("model")]).toEqual(["live", "local-triton", "digits"]);

    await user.click(within(dialog).getByRole("button", { name: "Cancel" }));
    expect(posts()).toHaveLength(0);
    expect(onDeployed).not.toHaveBeenCalled();

    await user.click(screen.getByRole("button", { name: "Deploy" }));
    const confirm = within(screen.getByRole("dialog")).getByRole("button", { name: "Deploy to Local Triton" });
    await waitFor(() => expect((confirm as HTMLButtonElement).disabled).toBe(false));
    await user.click(confirm);
    expect(JSON.parse(posts()[0]?.[1].body as string)).toEqual({ version: 14, target: "local-triton" });
    expect(onDeployed).toHaveBeenCalled();
  });
});
