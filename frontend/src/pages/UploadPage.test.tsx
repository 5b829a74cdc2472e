// After a browser upload, the live pipeline lives at the version's own URL: a reload keeps it.
import { act, render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes, useLocation, useNavigate } from "react-router";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { VersionDetail } from "../api/types";
import type { UploadHandle } from "../api/upload";
import { SessionProvider } from "../auth/session";
import { UploadPage } from "./UploadPage";

const uploads = vi.hoisted(() => ({ resolve: (_v: VersionDetail) => undefined as void }));
vi.mock("../api/upload", () => ({
  uploadVersion: vi.fn((): UploadHandle => ({
    promise: new Promise<VersionDetail>((resolve) => {
      uploads.resolve = resolve;
    }),
    abort: vi.fn(),
  })),
}));

function answer(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const me = {
  username: "dana",
  email: "",
  is_superuser: false,
  teams: [{ slug: "vision", name: "Vision", role: "data_scientist", four_eyes: true, reviewers: 1 }],
};

beforeEach(() => {
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string) => {
      if (url.includes("/session/")) return answer(me);
      if (url.includes("/profiles/")) return answer([]);
      if (url.includes("/models/")) return answer({ results: [], next: null });
      return answer({ code: "not_found", message: "Not found." }, 404);
    }),
  );
});
afterEach(() => vi.unstubAllGlobals());

function Where() {
  const location = useLocation();
  const navigate = useNavigate();
  return (
    <>
      <output aria-label="location">{location.pathname}</output>
      <button type="button" onClick={() => navigate(-1)}>
        Back
      </button>
    </>
  );
}

describe("UploadPage", () => {
  it("goes to the version's page once the upload is stored, replacing /upload in the history", async () => {
    const user = userEvent.setup();
    render(
      <SessionProvider>
        <MemoryRouter initialEntries={["/models", "/upload"]} initialIndex={1}>
          <Routes>
            <Route path="/upload" element={<UploadPage />} />
            <Route path="/versions/:id" element={<p>the version page</p>} />
            <Route path="/models" element={<p>the models page</p>} />
          </Routes>
          <Where />
        </MemoryRouter>
      </SessionProvider>,
    );
    await user.upload(await screen.findByLabelText(/Choose a file/), new File([new Uint8Array([8, 1])], "mlp.onnx"));
    await user.type(screen.getByLabelText("Model"), "mlp");
    await user.click(screen.getByRole("button", { name: "Upload and start the pipeline" }));
    await act(async () => uploads.resolve({ id: 17 } as VersionDetail));

    expect(screen.getByLabelText("location").textContent).toBe("/versions/17");
    expect(screen.getByText("the version page")).toBeTruthy();
    await user.click(screen.getByRole("button", { name: "Back" }));
    expect(screen.getByLabelText("location").textContent).toBe("/models");
  });
});
