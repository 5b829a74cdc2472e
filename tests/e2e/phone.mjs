// The app on a phone: drives Debian's chromium through playwright-core (from frontend/node_modules;
// no browser is ever downloaded) at 390 x 844 CSS pixels, signs in, opens each main page and
// prints one JSON line with what it measured there: whether the page itself scrolls sideways
// (and which elements stick out), the smallest chart text as rendered, and whether the main
// navigation's links stay hidden until the Menu button is pressed. A screenshot of each page
// goes to SHOTS as phone-<page>.png, and one of the open menu as phone-menu-open.png. axe-core
// (from frontend/node_modules) checks each page for accessibility violations.
//
//   node tests/e2e/phone.mjs
//   env: BASE_URL, USERNAME, PASSWORD, SHOTS (screenshot folder), VERSION_ID (a version whose
//        page to measure too, with its charts; optional), WORK (scratch folder; default the
//        system's), CHROMIUM (default /usr/bin/chromium)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { env, require, startBrowser } from "./browser.mjs";

const AXE = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const base = env("BASE_URL");
const shots = env("SHOTS");
const work = env("WORK", os.tmpdir());
const VIEWPORT = { width: 390, height: 844 };
// The smallest chart text a phone user can be expected to read, in CSS pixels.
const READABLE_PX = 11;
const PAGES = [
  ["models", "/app/models"],
  ["teams", "/app/teams"],
  ["targets", "/app/targets"],
  ["workers", "/app/workers"],
  ["deployments", "/app/deployments"],
  ["audit", "/app/audit"],
  ["tokens", "/app/tokens"],
  ...(process.env.VERSION_ID
    ? [["version", `/app/versions/${process.env.VERSION_ID}`]]
    : []),
];
const result = {
  viewport: VIEWPORT,
  pages: [],
  problems: [],
  console_errors: [],
};

async function signIn(page) {
  await page.goto(`${base}/`); // "/" redirects to /app/, which asks who is signed in, then to the sign-in page
  await page.waitForURL(/\/app\/login/);
  await page.getByLabel("Username").fill(env("USERNAME"));
  await page.getByLabel("Password").fill(env("PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/app\/models/);
  await page.getByRole("heading", { name: "Models", level: 1 }).waitFor();
}

async function shot(page, name, options = {}) {
  fs.mkdirSync(shots, { recursive: true });
  const file = path.join(shots, `${name}.png`);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: file, animations: "disabled", ...options });
  return file;
}

async function settle(page) {
  await page.locator("main h1").first().waitFor();
  await page.waitForLoadState("networkidle").catch(() => undefined);
  await page
    .locator("main .loading")
    .first()
    .waitFor({ state: "detached", timeout: 15_000 })
    .catch(() => undefined);
  await page.waitForTimeout(300); // charts measure their box and draw again
}

// Runs in the page: sideways scrolling, what sticks out, and the chart text as rendered.
function measure() {
  const scroller = document.scrollingElement;
  const inner = window.innerWidth;
  const describe = (el) =>
    el.tagName.toLowerCase() +
    (el.id ? `#${el.id}` : "") +
    (typeof el.className === "string" && el.className.trim()
      ? `.${el.className.trim().split(/\s+/).join(".")}`
      : "");
  // elements whose right edge passes the viewport's, unless a scrolling or clipping ancestor
  // holds them (one inside their containing block, for absolutely positioned ones)
  const held = (el) => {
    const position = getComputedStyle(el).position;
    if (position === "fixed") return false;
    const block = position === "absolute" ? el.offsetParent : null;
    for (
      let a = el.parentElement;
      a && a !== document.body;
      a = a.parentElement
    ) {
      if (
        getComputedStyle(a).overflowX !== "visible" &&
        (!block || a === block || a.contains(block))
      )
        return true;
    }
    return false;
  };
  const outside = [];
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (box.width && box.right > inner + 1 && !held(el)) {
      outside.push(`${describe(el)} (right ${Math.round(box.right)})`);
      if (outside.length >= 8) break;
    }
  }
  const sizes = [];
  let cutOff = 0;
  for (const text of document.querySelectorAll("svg text")) {
    const box = text.getBoundingClientRect();
    if (!box.width || !box.height || !text.checkVisibility()) continue;
    const ctm = text.getScreenCTM();
    if (!ctm) continue;
    // the font size in the SVG's units times the units' size on screen (rotation included)
    const px =
      parseFloat(getComputedStyle(text).fontSize) * Math.hypot(ctm.a, ctm.b);
    sizes.push(Math.round(px * 10) / 10);
    const svg = text.ownerSVGElement?.getBoundingClientRect();
    if (
      svg &&
      (box.left < svg.left - 1 ||
        box.right > svg.right + 1 ||
        box.top < svg.top - 1 ||
        box.bottom > svg.bottom + 1)
    )
      cutOff += 1;
  }
  return {
    scroll_width: scroller.scrollWidth,
    inner_width: inner,
    sideways_scroll: scroller.scrollWidth > inner,
    sticking_out: outside,
    svg_texts: sizes.length,
    min_svg_text_px: sizes.length ? Math.min(...sizes) : null,
    svg_texts_cut_off: cutOff,
  };
}

// axe-core's violations on the page as it stands (evaluated through the DevTools protocol, which
// the app's Content-Security-Policy does not govern).
async function accessibility(page) {
  await page.evaluate(AXE);
  return page.evaluate(async () => {
    const found = await window.axe.run(document, {
      resultTypes: ["violations"],
    });
    return found.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
    }));
  });
}

// The main navigation: its links hidden until Menu is pressed, shown then, hidden on Escape.
async function checkMenu(page, photograph) {
  const nav = page.getByRole("navigation", { name: "Main" });
  const link = nav.getByRole("link", { name: "Models", exact: true });
  const button = nav.getByRole("button", { name: "Menu" });
  const found = {
    links_hidden_before_press: !(await link.isVisible()),
    menu_button_visible: await button.isVisible(),
    nav_height_closed: Math.round((await nav.boundingBox())?.height ?? 0),
  };
  if (!found.menu_button_visible) return found;
  await button.click();
  found.links_shown_after_press = await link.isVisible();
  found.expanded_after_press =
    (await button.getAttribute("aria-expanded")) === "true";
  found.nav_height_open = Math.round((await nav.boundingBox())?.height ?? 0);
  if (photograph) result.menu_screenshot = await shot(page, "phone-menu-open");
  await page.keyboard.press("Escape");
  found.hidden_after_escape = !(await link.isVisible());
  return found;
}

async function visit(page, name, url) {
  await page.goto(`${base}${url}`);
  await settle(page);
  const found = { page: name, path: url, ...(await page.evaluate(measure)) };
  found.axe_violations = await accessibility(page);
  found.screenshot = await shot(page, `phone-${name}`, { fullPage: true });
  found.nav = await checkMenu(page, name === "models");
  result.pages.push(found);
  process.stderr.write(`[phone] ${name}: ${JSON.stringify(found)}\n`);

  if (found.sideways_scroll)
    result.problems.push(
      `${url} scrolls sideways: ${found.scroll_width} px wide in a ${found.inner_width} px window (${found.sticking_out.join(", ")})`,
    );
  if (found.min_svg_text_px !== null && found.min_svg_text_px < READABLE_PX)
    result.problems.push(
      `${url} has chart text ${found.min_svg_text_px} px high (under ${READABLE_PX})`,
    );
  if (found.svg_texts_cut_off)
    result.problems.push(
      `${url} has ${found.svg_texts_cut_off} chart labels cut off at the chart's edge`,
    );
  for (const v of found.axe_violations)
    result.problems.push(
      `${url}: axe-core ${v.id} (${v.impact}): ${v.help} at ${v.targets.join(", ")}`,
    );
  const nav = found.nav;
  if (
    !nav.links_hidden_before_press ||
    !nav.menu_button_visible ||
    !nav.links_shown_after_press ||
    !nav.hidden_after_escape
  )
    result.problems.push(
      `${url}: the navigation is not a closed menu that Menu opens and Escape closes (${JSON.stringify(nav)})`,
    );
}

// Following a link in the open menu shows its page with the menu closed again.
async function checkMenuNavigation(page) {
  const nav = page.getByRole("navigation", { name: "Main" });
  await page.goto(`${base}/app/models`);
  await settle(page);
  await nav.getByRole("button", { name: "Menu" }).click();
  await nav.getByRole("link", { name: "Workers", exact: true }).click();
  await page.waitForURL(/\/app\/workers/);
  await page.getByRole("heading", { name: "Workers", level: 1 }).waitFor();
  result.menu_closed_after_navigation = !(await nav
    .getByRole("link", { name: "Models", exact: true })
    .isVisible());
  if (!result.menu_closed_after_navigation)
    result.problems.push(
      "following a link in the open menu left the menu open over the page",
    );
}

const { page, close } = await startBrowser(work, "phone", {
  viewport: VIEWPORT,
  // not isMobile: a mobile viewport zooms out to fit a page that is too wide, and hides the very
  // sideways scrolling this measures
});
page.on("console", (message) => {
  // the first "who am I" before signing in answers 401 by design
  if (
    message.type() === "error" &&
    !/401 \(Unauthorized\)/.test(message.text())
  )
    result.console_errors.push(message.text());
});
page.on("response", (response) => {
  if (response.status() >= 400 && response.status() !== 401)
    (result.failed_requests ??= []).push(
      `${response.status()} ${response.url()}`,
    );
});
page.on("pageerror", (error) =>
  result.console_errors.push(`page error: ${error.message}`),
);
let code = 0;
try {
  await signIn(page);
  for (const [name, url] of PAGES) await visit(page, name, url);
  await checkMenuNavigation(page);
} catch (error) {
  code = 1;
  result.error = String(error?.stack ?? error);
  result.url = page.url();
} finally {
  await close();
}
result.ok = code === 0 && result.problems.length === 0;
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(code);
