// The browser half of tests/e2e/test_compare.py: drives Debian's chromium through playwright-core
// (from frontend/node_modules) over the compare view, and prints one JSON line with what it saw.
//
//   node tests/e2e/compare.mjs
//   env: BASE_URL, USERNAME, PASSWORD, SHOTS (screenshot folder), WORK (scratch folder),
//        VERSION_ID (the version whose page is opened), PREVIOUS_ID (the approved one before it),
//        MODEL_NAME, CHROMIUM (default /usr/bin/chromium)
import fs from "node:fs";
import path from "node:path";
import { env, startBrowser } from "./browser.mjs";

const base = env("BASE_URL");
const work = env("WORK");
const result = { steps: [], console_errors: [] };
let expectingRefusal = false;

function step(name) {
  result.steps.push(name);
  process.stderr.write(`[compare] ${name}\n`);
}

async function signIn(page) {
  await page.goto(`${base}/`);
  await page.waitForURL(/\/app\/login/);
  await page.getByLabel("Username").fill(env("USERNAME"));
  await page.getByLabel("Password").fill(env("PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/app\/models/);
  step("signed in");
}

/** The compare table's rows as {label: [A, B, change]}. */
async function tableRows(page) {
  const rows = {};
  for (const row of await page.locator(".comparison table tbody tr").all()) {
    // textContent: the table's CSS may change the case of what innerText reports
    const label = (await row.locator("th").textContent())
      .replace(/\s+/g, " ")
      .trim();
    rows[label] = (await row.locator("td").allInnerTexts()).map((t) =>
      t.replace(/\s+/g, " ").trim(),
    );
  }
  return rows;
}

async function run(page) {
  await signIn(page);
  const id = env("VERSION_ID");
  await page.goto(`${base}/app/versions/${id}#recommendation`);
  const section = page.locator("#recommendation");
  await section.getByText(/^Against approved v1:/).waitFor();
  result.previous_card = (
    await section.getByText(/^Against approved v1:/).innerText()
  ).replace(/\s+/g, " ");
  result.previous_rows = await section
    .locator(".compare-table tbody tr")
    .count();
  fs.mkdirSync(env("SHOTS"), { recursive: true });
  await section.screenshot({
    path: path.join(env("SHOTS"), "compare-card.png"),
  });
  step("read the previous approved version card");

  // "Compare with…": this version's recommended variant against the approved one's.
  const form = page.getByRole("form", {
    name: "Compare with another version or variant",
  });
  await form
    .getByLabel("Compare with")
    .locator("option", { hasText: "v1 (approved)" })
    .waitFor({ state: "attached" });
  result.compare_with_default = await form
    .getByLabel("Compare with")
    .inputValue();
  await form.getByRole("button", { name: "Compare…" }).click();
  await page.waitForURL(/\/app\/compare\?/);
  result.compare_url =
    new URL(page.url()).pathname + new URL(page.url()).search;
  await page.locator(".comparison table").waitFor();
  result.summary = await page.locator(".comparison .lead").innerText();
  result.rows = await tableRows(page);
  result.headers = await page
    .locator(".comparison table thead th")
    .allTextContents();
  fs.mkdirSync(env("SHOTS"), { recursive: true });
  await page.screenshot({
    path: path.join(env("SHOTS"), "compare.png"),
    fullPage: true,
  });
  step("compared with the previous approved version from the version page");

  // By URL: two variants of the same version.
  const name = env("MODEL_NAME");
  await page.goto(
    `${base}/app/compare?a=${name}:2/original&b=${name}:2/ort-int8`,
  );
  await page.locator(".comparison table").waitFor();
  result.variants_summary = await page.locator(".comparison .lead").innerText();
  result.variants_rows = await tableRows(page);
  step("compared two variants by URL");

  // A reference that names nothing: the API's sentence, in the page.
  expectingRefusal = true;
  await page.goto(`${base}/app/compare?a=${name}&b=${name}:2`);
  result.refusal = await page.getByRole("alert").innerText();
  step("read why a bad reference can't be compared");
}

const { page, close } = await startBrowser(work, "compare");
page.on("console", (message) => {
  if (message.type() !== "error") return;
  // the first "who am I" answers 401 by design; the bad reference answers 400 on purpose
  if (/401 \(Unauthorized\)/.test(message.text())) return;
  if (expectingRefusal && /400 \(Bad Request\)/.test(message.text())) return;
  result.console_errors.push(message.text());
});
page.on("pageerror", (error) =>
  result.console_errors.push(`page error: ${error.message}`),
);
let code = 0;
try {
  await run(page);
} catch (error) {
  code = 1;
  result.error = String(error?.stack ?? error);
  result.url = page.url();
  try {
    result.page_text = (await page.locator("body").innerText()).slice(0, 4000);
  } catch {
    // the browser itself failed
  }
} finally {
  await close();
}
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(code);
