import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes } from "react-router";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { SessionProvider } from "../auth/session";
import { Nav } from "./Nav";

function answer(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

beforeEach(() => {
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string) =>
      url.includes("/session/")
        ? answer({
            username: "ada",
            email: "",
            is_superuser: false,
            teams: [{ slug: "default", name: "Default", role: "admin", four_eyes: true, reviewers: 1 }],
          })
        : answer({ code: "not_found", message: "Not found." }, 404),
    ),
  );
});
afterEach(() => vi.unstubAllGlobals());

async function renderNav(path = "/models") {
  render(
    <SessionProvider>
      <MemoryRouter initialEntries={[path]}>
        <Nav />
        <Routes>
          <Route path="*" element={<h1>page</h1>} />
        </Routes>
      </MemoryRouter>
    </SessionProvider>,
  );
  await screen.findByText("ada");
  const button = screen.getByRole("button", { name: "Menu" });
  const menu = document.getElementById(button.getAttribute("aria-controls") ?? "");
  if (!menu) throw new Error("the Menu button controls no element");
  return { button, menu, nav: screen.getByRole("navigation", { name: "Main" }) };
}

describe("the main navigation's Menu button (narrow screens)", () => {
  it("starts closed and controls the links and the signed-in user's block", async () => {
    const { button, menu, nav } = await renderNav();
    expect(button.getAttribute("aria-expanded")).toBe("false");
    expect(nav.classList.contains("is-open")).toBe(false);
    const links = within(menu)
      .getAllByRole("link")
      .map((link) => link.textContent);
    expect(links).toEqual(
      expect.arrayContaining(["Models", "Upload", "Review queue", "Deployments", "Team", "Audit log", "API tokens"]),
    );
    expect(within(menu).getByRole("button", { name: "Sign out" })).toBeTruthy();
  });

  it("opens and closes on a press", async () => {
    const user = userEvent.setup();
    const { button, nav } = await renderNav();
    await user.click(button);
    expect(button.getAttribute("aria-expanded")).toBe("true");
    expect(nav.classList.contains("is-open")).toBe(true);
    await user.click(button);
    expect(button.getAttribute("aria-expanded")).toBe("false");
    expect(nav.classList.contains("is-open")).toBe(false);
  });

  it("closes when a link in it is followed, even to the page already shown", async () => {
    const user = userEvent.setup();
    const { button, menu } = await renderNav("/models");
    await user.click(button);
    await user.click(within(menu).getByRole("link", { name: "Workers" }));
    expect(button.getAttribute("aria-expanded")).toBe("false");
    await user.click(button);
    await user.click(within(menu).getByRole("link", { name: "Workers" }));
    expect(button.getAttribute("aria-expanded")).toBe("false");
  });

  it("closes on Escape and gives focus back to the button when it was inside", async () => {
    const user = userEvent.setup();
    const { button, menu } = await renderNav();
    await user.click(button);
    within(menu).getByRole("link", { name: "Compare" }).focus();
    await user.keyboard("{Escape}");
    await waitFor(() => expect(button.getAttribute("aria-expanded")).toBe("false"));
    expect(document.activeElement).toBe(button);
  });
});
