// What the browser scripts (journey.mjs, phone.mjs, compare.mjs) share: playwright-core and
// axe-core from frontend/node_modules, their environment variables, and Debian's chromium
// (CHROMIUM, default /usr/bin/chromium; Playwright never downloads a browser) started headless
// with a fresh profile under WORK.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const require = createRequire(
  path.join(here, "../../frontend/package.json"),
);
const { chromium } = require("playwright-core");

/** The environment variable `name`, or `fallback`; an error when neither is there. */
export function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
}

/** A headless chromium with a fresh profile (a folder under `work` named after `name`) and its
 * first page, which waits up to 30 s for what it is asked; `close` closes it and removes the
 * profile. `options` go to the context (viewport, deviceScaleFactor...). */
export async function startBrowser(work, name, options = {}) {
  const profile = fs.mkdtempSync(path.join(work, `chromium-${name}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--headless",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    viewport: { width: 1280, height: 900 },
    deviceScaleFactor: 1,
    ...options,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  const close = async () => {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, close };
}
