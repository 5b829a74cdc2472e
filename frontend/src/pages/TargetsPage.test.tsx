import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter } from "react-router";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { OptionSpec, TargetKind } from "../api/deployments";
import { SessionProvider } from "../auth/session";
import { TargetsPage } from "./TargetsPage";

function answer(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const spec = (key: string, type: OptionSpec["type"], help: string, more: Partial<OptionSpec> = {}): OptionSpec => ({
  key,
  type,
  help,
  required: false,
  default: null,
  choices: [],
  minimum: null,
  maximum: null,
  secret_keys: [],
  example: "",
  ...more,
});

// GET /api/v1/targets/kinds/ as a server with a Docker-image kind would answer it.
const KINDS: TargetKind[] = [
  {
    kind: "docker_image",
    label: "Docker image",
    options: [
      spec("image_repository", "string", "where the image is pushed", {
        required: true,
        example: "ghcr.io/acme/models",
      }),
      spec("registry_url", "url", "the registry's API", { example: "https://ghcr.io" }),
      spec("push_attempts", "integer", "how often a push is tried", { default: 3, minimum: 1, maximum: 10 }),
    ],
    credentials: [spec("registry_password", "string", "the registry's password or token")],
    private_needs_allow_private: true,
  },
  {
    kind: "triton",
    label: "Triton Inference Server",
    options: [
      spec("python_paths", "path_list", "sys.path entries the python backend needs on the server"),
      spec("repository_options", "text_map", "S3 client settings for an s3:// repository", {
        secret_keys: ["aws_secret_access_key"],
      }),
      spec("request_timeout_seconds", "number", "seconds to wait for one request", {
        default: 30,
        minimum: 1,
        maximum: 3600,
      }),
    ],
    credentials: [spec("headers", "headers", "HTTP headers sent with every request")],
    private_needs_allow_private: true,
  },
];

const ME = {
  username: "ada",
  email: "",
  is_superuser: false,
  teams: [{ slug: "vision", name: "Vision", role: "admin", four_eyes: true, reviewers: 1 }],
};

let fetchMock: ReturnType<typeof vi.fn>;
let refusal: { code: string; message: string } | undefined;

beforeEach(() => {
  refusal = undefined;
  fetchMock = vi.fn(async (url: string, init?: RequestInit) => {
    const method = init?.method ?? "GET";
    if (url.includes("/session/")) return answer(ME);
    if (url.includes("/targets/kinds/")) return answer(KINDS);
    if (url.includes("/profiles/")) return answer([{ slug: "x86-cpu", name: "x86 CPU" }]);
    if (url.includes("/targets/") && method === "POST") {
      if (refusal) return answer({ ...refusal, fields: {} }, 400);
      return answer({ id: 1, ...JSON.parse(String(init?.body)) }, 201);
    }
    if (url.includes("/targets/")) return answer({ results: [], next: null });
    return answer({ code: "not_found", message: "Not found.", fields: {} }, 404);
  });
  vi.stubGlobal("fetch", fetchMock);
});
afterEach(() => vi.unstubAllGlobals());

function posted(): Record<string, unknown> | undefined {
  const call = fetchMock.mock.calls.find(([, init]) => (init as RequestInit | undefined)?.method === "POST");
  return call ? (JSON.parse(String((call[1] as RequestInit).body)) as Record<string, unknown>) : undefined;
}

async function openForm() {
  const user = userEvent.setup();
  render(
    <MemoryRouter>
      <SessionProvider>
        <TargetsPage />
      </SessionProvider>
    </MemoryRouter>,
  );
  const kind = (await screen.findByLabelText(/^Kind/)) as HTMLSelectElement;
  await user.type(screen.getByLabelText(/^Name/), "Edge registry");
  await user.type(screen.getByLabelText(/^Server URL/), "http://127.0.0.1:8000");
  await user.type(screen.getByLabelText(/^Model repository/), "/srv/triton/edge");
  return { user, kind };
}

describe("registering a serving target", () => {
  it("shows the Docker image kind's fields from the kinds endpoint and sends them with allow_private", async () => {
    const { user, kind } = await openForm();
    expect(kind.value).toBe("triton");
    expect(screen.getByLabelText(/^Python paths/)).toBeTruthy();
    expect(screen.queryByLabelText(/^Image repository/)).toBeNull();

    await user.selectOptions(kind, "Docker image");
    const image = screen.getByLabelText(/^Image repository/) as HTMLInputElement;
    expect(image.getAttribute("aria-required")).toBe("true");
    expect(screen.getByText(/Where the image is pushed\./)).toBeTruthy();
    expect((screen.getByLabelText(/^Push attempts/) as HTMLInputElement).placeholder).toBe("3");
    expect((screen.getByLabelText(/^Registry password/) as HTMLInputElement).type).toBe("password");
    expect(screen.queryByLabelText(/^Python paths/)).toBeNull();

    // checked as the server checks: the required field, and the loopback URL without the allowance
    await user.click(screen.getByRole("button", { name: "Add target" }));
    expect(posted()).toBeUndefined();
    expect(screen.getByRole("status").textContent).toContain("2 fields need a change");
    expect(image.getAttribute("aria-invalid")).toBe("true");
    const imageError = document.getElementById(image.getAttribute("aria-describedby")!.split(" ")[0]!);
    expect(imageError?.textContent).toBe(
      "Fill in image repository: where the image is pushed, e.g. ghcr.io/acme/models.",
    );
    expect(document.activeElement).toBe(screen.getByLabelText(/^Server URL/));
    expect(screen.getByLabelText(/^Server URL/).getAttribute("aria-invalid")).toBe("true");

    await user.type(image, "ghcr.io/acme/models");
    await user.type(screen.getByLabelText(/^Push attempts/), "11");
    const allow = screen.getByLabelText("Allow a private or loopback address") as HTMLInputElement;
    expect(document.getElementById(allow.getAttribute("aria-describedby")!)?.textContent).toContain(
      "only to public addresses",
    );
    await user.click(allow);
    await user.click(screen.getByRole("button", { name: "Add target" }));
    expect(posted()).toBeUndefined();
    expect(screen.getByText("Push attempts must be a whole number from 1 to 10.")).toBeTruthy();

    await user.clear(screen.getByLabelText(/^Push attempts/));
    await user.type(screen.getByLabelText(/^Push attempts/), "4");
    await user.click(screen.getByRole("button", { name: "Add target" }));
    await vi.waitFor(() => expect(posted()).toBeDefined());
    expect(posted()).toMatchObject({
      kind: "docker_image",
      name: "Edge registry",
      url: "http://127.0.0.1:8000",
      options: { image_repository: "ghcr.io/acme/models", push_attempts: 4 },
      allow_private: true,
    });
    expect(posted()).not.toHaveProperty("credentials");
    expect(posted()?.options).not.toHaveProperty("registry_url");
  });

  it("shows the server's refusal next to the setting it names", async () => {
    const { user, kind } = await openForm();
    await user.selectOptions(kind, "Docker image");
    await user.type(screen.getByLabelText(/^Image repository/), "ghcr.io/acme/models");
    await user.click(screen.getByLabelText("Allow a private or loopback address"));
    refusal = {
      code: "invalid_options",
      message: "The option image_repository must name a repository the registry has; create it first.",
    };
    await user.click(screen.getByRole("button", { name: "Add target" }));
    const image = screen.getByLabelText(/^Image repository/);
    await vi.waitFor(() => expect(image.getAttribute("aria-invalid")).toBe("true"));
    const field = image.closest(".field") as HTMLElement;
    expect(within(field).getByText(refusal.message)).toBeTruthy();
    expect(image.getAttribute("aria-describedby")).toContain(within(field).getByText(refusal.message).id);
    expect(screen.getByRole("status").textContent).toContain("the server refused a field, marked above");
    expect(document.activeElement).toBe(image);
  });

  it("points a refused private address at the URL and the allowance that lifts it", async () => {
    const { user } = await openForm();
    await user.clear(screen.getByLabelText(/^Server URL/));
    await user.type(screen.getByLabelText(/^Server URL/), "http://triton.internal:8000");
    refusal = {
      code: "private_address",
      message:
        "The host triton.internal resolves to 10.0.0.5, a private address. Outbound requests go only to public " +
        "addresses; a team admin can allow it for this object (allow_private).",
    };
    await user.click(screen.getByRole("button", { name: "Add target" }));
    const url = screen.getByLabelText(/^Server URL/);
    await vi.waitFor(() => expect(url.getAttribute("aria-invalid")).toBe("true"));
    expect(posted()).toMatchObject({ url: "http://triton.internal:8000", allow_private: false });
    const field = url.closest(".field") as HTMLElement;
    expect(within(field).getByText(refusal.message)).toBeTruthy();
    expect(document.activeElement).toBe(url);
  });

  it("reads lines of directories and of name: value pairs, refusing a secret among the settings", async () => {
    const { user } = await openForm();
    await user.click(screen.getByLabelText("Allow a private or loopback address"));
    await user.type(screen.getByLabelText(/^Python paths/), "/opt/slipway{Enter}/opt/site");
    await user.type(screen.getByLabelText(/^Repository options/), "aws_secret_access_key: x");
    await user.click(screen.getByRole("button", { name: "Add target" }));
    expect(posted()).toBeUndefined();
    expect(screen.getByText(/aws_secret_access_key is a secret: give it with the credentials below/)).toBeTruthy();

    await user.clear(screen.getByLabelText(/^Repository options/));
    await user.type(screen.getByLabelText(/^Repository options/), "endpoint_url: http://minio:9000");
    await user.type(screen.getByLabelText(/^Headers/), "Authorization: Bearer t");
    await user.click(screen.getByRole("button", { name: "Add target" }));
    await vi.waitFor(() => expect(posted()).toBeDefined());
    expect(posted()).toMatchObject({
      kind: "triton",
      options: {
        python_paths: ["/opt/slipway", "/opt/site"],
        repository_options: { endpoint_url: "http://minio:9000" },
      },
      credentials: { headers: { Authorization: "Bearer t" } },
      allow_private: true,
    });
  });
});
