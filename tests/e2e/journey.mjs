// The browser half of tests/e2e/test_browser_journey.py: drives Debian's chromium through
// playwright-core (from frontend/node_modules; no browser is ever downloaded) for one phase
// of the journey, and prints one JSON line with what it found. Python starts the server, the
// worker and the users, runs the phases in order and checks the database between them.
//
//   node tests/e2e/journey.mjs <phase>
//   phase: teamadmin | invitee | scientist | approver | deployer
//   env: BASE_URL, USERNAME, PASSWORD, SHOTS (screenshot folder), WORK (scratch folder),
//        MODEL (scientist: the .onnx to upload), MODEL_NAME, VERSION_ID (approver, deployer),
//        TARGET (deployer: the target's slug), TRITON_URL and REPOSITORY (teamadmin: a target
//        to register through the form, when set), LINK (invitee: the invitation link),
//        CHROMIUM (default /usr/bin/chromium)
import fs from "node:fs";
import path from "node:path";
import { env, startBrowser } from "./browser.mjs";

const phase = process.argv[2];
const base = env("BASE_URL");
const shots = env("SHOTS");
const work = env("WORK");
const PIPELINE_TIMEOUT = Number(process.env.PIPELINE_TIMEOUT_MS ?? 420_000);
const result = { phase, steps: [], console_errors: [] };

function step(name) {
  result.steps.push(name);
  process.stderr.write(`[${phase}] ${name}\n`);
}

async function shot(page, name, options = {}) {
  fs.mkdirSync(shots, { recursive: true });
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, animations: "disabled", ...options });
  (result.screenshots ??= []).push(file);
}

async function shotOf(locator, name) {
  fs.mkdirSync(shots, { recursive: true });
  // the sticky section menu would sit over the top of an element scrolled under it
  await locator
    .page()
    .addStyleTag({ content: ".section-nav { position: static !important; }" });
  const file = path.join(shots, `${name}.png`);
  await locator.screenshot({ path: file, animations: "disabled" });
  (result.screenshots ??= []).push(file);
}

async function signIn(page, username, password) {
  await page.goto(`${base}/`); // "/" redirects to /app/, which asks who is signed in, then to the sign-in page
  await page.waitForURL(/\/app\/login/);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/app\/models/);
  await page.getByRole("heading", { name: "Models", level: 1 }).waitFor();
  step(`signed in as ${username}`);
}

async function scientist(page) {
  await signIn(page, env("USERNAME"), env("PASSWORD"));
  await page.getByText("No models yet.").waitFor();
  await page.getByRole("link", { name: "Upload", exact: true }).click();
  await page.getByRole("heading", { name: "Upload a model" }).waitFor();
  // the file input behind the drop zone, as a user picking a file would use it
  await page.locator('input[type="file"]').first().setInputFiles(env("MODEL"));
  await page.getByText(path.basename(env("MODEL"))).waitFor();
  await page.getByLabel("Model", { exact: true }).fill(env("MODEL_NAME"));
  await page.getByText("Advanced: objective, benchmark sweep").click();
  await page.getByLabel("Batch sizes").fill("1, 8");
  await page.getByLabel("Concurrency", { exact: true }).fill("1, 4");
  await page.evaluate(() => {
    window.__sameDocument = true; // gone if anything reloads the page
  });
  await page
    .getByRole("button", { name: "Upload and start the pipeline" })
    .click();
  step("uploaded through the file input");

  // The live pipeline is at the version's own URL, so a reload keeps it.
  await page.waitForURL(/\/app\/versions\/\d+/, { timeout: 60_000 });
  result.version_id = Number(page.url().match(/versions\/(\d+)/)[1]);
  const summary = page.locator("#pipeline .pipeline-summary");
  await summary.waitFor();
  const seen = new Set();
  const state = async () =>
    (await summary.locator(".badge").first().textContent()) ?? "";
  const deadline = Date.now() + PIPELINE_TIMEOUT;
  while (Date.now() < deadline) {
    const now = await state();
    seen.add(now);
    if (/Succeeded/.test(now)) break;
    if (/Failed/.test(now))
      throw new Error(
        `the pipeline failed: ${await page.locator(".pipeline").textContent()}`,
      );
    if (seen.size === 2) await shot(page, "upload-pipeline-running");
    await page.waitForTimeout(500);
  }
  if (!/Succeeded/.test(await state()))
    throw new Error(
      `the pipeline did not finish in ${PIPELINE_TIMEOUT / 1000} s`,
    );
  result.pipeline_states_seen = [...seen];
  result.same_document = await page.evaluate(
    () => window.__sameDocument === true,
  );
  step("watched the pipeline finish without a reload");
  await shot(page, "upload-pipeline");

  const matrix = page.locator("#matrix");
  await matrix.locator("table").waitFor();
  const cells = matrix.locator("td.matrix-cell button");
  result.matrix_cells = await cells.count();
  result.matrix_labels = [...new Set(await cells.allTextContents())];
  // the reason shows on hover and on keyboard focus
  await cells.first().hover();
  result.tooltip_on_hover = await matrix
    .locator(".cell-tip")
    .first()
    .isVisible();
  await cells.nth(1).focus();
  result.tooltip_on_focus = (await matrix
    .locator(".cell-tip")
    .nth(1)
    .isVisible())
    ? await matrix.locator(".cell-tip").nth(1).textContent()
    : null;
  await page.mouse.move(0, 0);
  await page.evaluate(() => document.activeElement?.blur());
  step("read the op-support matrix");

  const charts = page.locator("#benchmarks figure.chart");
  await charts.first().waitFor();
  result.charts = await charts.locator("figcaption").allTextContents();
  result.chart_svgs = await page
    .locator("#benchmarks figure.chart svg[role=img]")
    .count();
  result.parity_rows = await page.locator("#parity tbody tr").count();
  result.recommendation = await page
    .locator("#recommendation .lead")
    .textContent();
  step("saw the benchmark plots, parity and recommendation");
  await page.locator("body").evaluate(() => window.scrollTo(0, 0));
  await shot(page, "version-page", { fullPage: true });
  await shotOf(matrix, "version-matrix");
  await shotOf(page.locator("#benchmarks"), "version-benchmarks");

  // The graph: opened on demand, a node found by its operator, its details read in the panel
  // after a click, coloured by a backend's verdict.
  const graph = page.locator("#graph");
  await graph.getByText("Show the graph").click();
  const nodes = graph.locator("g[data-node]");
  await nodes.first().waitFor();
  result.graph_nodes = await nodes.count();
  await graph.getByLabel("Find a node by name or operator").fill("Gemm");
  await graph.getByRole("button", { name: "Find", exact: true }).click();
  result.graph_found = await graph
    .locator("g[data-node][aria-pressed=true]")
    .getAttribute("data-node");
  await nodes.last().click();
  const details = graph.locator("aside");
  await details.locator("dl").waitFor();
  result.graph_details = await details.textContent();
  result.graph_colour_by = await graph
    .getByLabel("Colour by")
    .evaluate((select) => select.selectedOptions[0]?.textContent ?? "");
  await shotOf(graph, "version-graph");
  step("looked at the graph, found a node and read its details");

  const onlyProblems = matrix.getByRole("checkbox", { name: /Only problems/ });
  await onlyProblems.check();
  result.problems_filter = await matrix
    .locator(".empty-title")
    .textContent()
    .catch(() => null);
  await onlyProblems.uncheck();

  await page.getByRole("link", { name: "Models", exact: true }).click();
  await page.getByRole("link", { name: env("MODEL_NAME") }).waitFor();
  result.models_row = await page.locator("tbody tr").first().textContent();
  step("saw the model in the models list");
}

async function approver(page) {
  await signIn(page, env("USERNAME"), env("PASSWORD"));
  const id = env("VERSION_ID");
  await page.getByRole("link", { name: env("MODEL_NAME") }).waitFor();
  result.models = (await page.locator("tbody th").allTextContents()).sort();
  await shot(page, "models");
  await page.getByLabel("Latest version").selectOption({ label: "Approved" });
  await page.getByText(/^1 of \d+ models/).waitFor();
  result.approved_models = await page.locator("tbody th").allTextContents();
  await page.getByLabel("Search").fill("dig");
  await page.getByText("No model matches these filters.").waitFor();
  await page.getByRole("button", { name: "Clear the filters" }).click();
  step("filtered the models list");
  await page.getByRole("link", { name: "Review queue" }).click();
  await page.getByRole("heading", { name: "Review queue" }).waitFor();
  const item = page.getByRole("link", {
    name: new RegExp(`^${env("MODEL_NAME")} v1`),
  });
  await item.waitFor();
  await item.click();
  await page.waitForURL(new RegExp(`/app/review/${id}$`));
  await page.getByRole("heading", { name: "Evidence" }).waitFor();
  await page.getByText("Recommended variant vs the original").waitFor();
  result.gates_text = await page
    .locator(".review-detail")
    .getByText(/gates apply|Every gate passes|A gate fails/)
    .first()
    .textContent();
  await shot(page, "review-queue", { fullPage: true });
  step("read the evidence in the review queue");

  await page
    .getByLabel("Comment")
    .fill("Parity and latency look right; approved for the x86 fleet.");
  await page.getByRole("button", { name: "Approve", exact: true }).click();
  // The confirmation says what approving does; it opens at the end of the page, outside the form.
  const approval = page.getByRole("dialog");
  result.approve_dialog = await approval.textContent();
  await approval.getByRole("button", { name: /^Approve v\d+/ }).click();
  await page.getByText("Decision recorded").waitFor();
  await page
    .getByText("Nothing waits for your review.")
    .waitFor({ timeout: 10_000 })
    .catch(() => undefined);
  result.queue_after = await page.locator(".queue-list").textContent();
  step("approved with a comment");

  await page.getByRole("link", { name: "Open the version" }).click();
  await page.waitForURL(new RegExp(`/app/versions/${id}`));
  await page.locator("#review .history li").first().waitFor();
  result.version_badge = await page
    .locator(".page-header h1 .badge")
    .textContent();
  result.history = await page.locator("#review .history").textContent();
  step("saw the approval on the version page");
}

async function teamadmin(page) {
  await signIn(page, env("USERNAME"), env("PASSWORD"));
  await page.getByRole("link", { name: /^Teams?$/ }).click();
  await page.getByRole("heading", { name: "Members" }).waitFor();
  const form = page.getByRole("form", { name: "Invite someone" });
  await form.getByLabel("Role").selectOption("approver");
  await form
    .getByLabel("For whom (optional)")
    .fill("Rita, the second reviewer");
  await form.getByRole("button", { name: "Create invitation" }).click();
  result.link = await page.getByLabel("The invitation link").textContent();
  step("created an invitation for a reviewer");
  await shot(page, "team", { fullPage: true });
  await page.getByRole("button", { name: "I have passed it on" }).click();
  result.invitations = await page.locator("#invite tbody").textContent();

  if (process.env.TRITON_URL) {
    await page.getByRole("link", { name: "Serving targets" }).click();
    const add = page.locator("form", {
      has: page.getByRole("button", { name: "Add target" }),
    });
    await add.waitFor();
    await add.getByLabel("Name", { exact: false }).first().fill("Local Triton");
    await add.getByLabel("Server URL").fill(env("TRITON_URL"));
    await add.getByLabel("Model repository").fill(env("REPOSITORY"));
    await add.getByLabel("Hardware profile").selectOption("x86-cpu");
    await add.getByLabel("Backend").selectOption("python");
    await add.getByLabel("Allow a private or loopback address").check();
    if (process.env.METRICS_URL)
      await add.getByLabel("Metrics URL").fill(env("METRICS_URL"));
    await add.getByRole("button", { name: "Add target" }).click();
    const row = page.locator("tbody tr", { hasText: "Local Triton" });
    await row.waitFor({ timeout: 30_000 });
    result.target_row = await row.textContent();
    step("registered the serving target through the form");
  }
}

async function invitee(page) {
  // A fresh browser with no account: the link's fragment carries the code.
  await page.goto(env("LINK"));
  await page.getByText(/invites you to team/).waitFor();
  result.invitation_text = await page
    .locator(".login-card p")
    .first()
    .textContent();
  await page.getByLabel("Choose a user name").fill(env("USERNAME"));
  await page.getByLabel("Choose a password").fill(env("PASSWORD"));
  await page.getByLabel("The password again").fill(env("PASSWORD"));
  await shot(page, "join");
  await page
    .getByRole("button", { name: "Create the account and join" })
    .click();
  await page.waitForURL(/\/app\/teams\//);
  await page.getByRole("heading", { name: "Members" }).waitFor();
  result.members = await page.locator("#members tbody").textContent();
  step("joined the team through the link");
}

// Deploy `label` (e.g. "vision/digits v1") to the target from the deployments page's form,
// confirming in the dialog (its text kept as `result[dialogKey]`), and wait until the newest
// row of the history is live or failed: its state.
async function deployFromTheForm(page, label, dialogKey) {
  // the main navigation's link: a version page has a "Deployments" section link of its own
  await page
    .getByRole("navigation", { name: "Main" })
    .getByRole("link", { name: "Deployments", exact: true })
    .click();
  await page
    .getByRole("heading", { name: "Deploy an approved version" })
    .waitFor();
  const form = page.locator("#deploy");
  await form.getByLabel("Approved version").selectOption({ label });
  // the history loaded (a row, or the empty state) before the newest id is read
  await page
    .locator("#history tbody tr, #history .empty-title")
    .first()
    .waitFor();
  const before = await newestId(page);
  await form
    .getByLabel("Serving target")
    .selectOption({ value: env("TARGET") });
  await form.getByRole("button", { name: "Deploy" }).click();
  const confirm = page.getByRole("dialog");
  result[dialogKey] = await confirm.textContent();
  await confirm.getByRole("button", { name: /^Deploy to / }).click();
  return newestSettles(page, label, before);
}

// The id of the newest deployment in the history (its first column); 0 when there is none.
async function newestId(page) {
  const rows = page.locator("#history tbody tr");
  if (!(await rows.count())) return 0;
  return Number(await rows.first().locator("td").first().textContent());
}

// The newest row of the deployments history once it is a deployment made after `after` (an
// id) and live or failed (up to 3 minutes).
async function newestSettles(page, what, after) {
  const history = page.locator("#history tbody tr").first();
  const deadline = Date.now() + 180_000;
  let state = "";
  while (Date.now() < deadline) {
    if ((await newestId(page)) > after) {
      state = (await history.locator(".badge").first().textContent()) ?? "";
      if (/Live|Failed/.test(state)) break;
    }
    await page.waitForTimeout(500);
  }
  if (!/Live|Failed/.test(state))
    throw new Error(`${what} was not live or failed within 3 minutes`);
  return { state, row: (await history.textContent()) ?? "" };
}

async function deployer(page) {
  await signIn(page, env("USERNAME"), env("PASSWORD"));
  await page.getByRole("link", { name: "Serving targets" }).click();
  const row = page.locator("tbody tr", { hasText: env("TARGET") });
  await row.waitFor();
  await row.getByRole("button", { name: "Check now" }).click();
  await row
    .getByText("Healthy")
    .waitFor({ timeout: 60_000 })
    .catch(() => undefined);
  result.target_health = await row.locator(".badge").first().textContent();
  await shot(page, "targets");
  step("checked the target's health");

  const deployed = await deployFromTheForm(
    page,
    `vision/${env("MODEL_NAME")} v1`,
    "deploy_dialog",
  );
  step("asked for the deployment");
  const state = deployed.state;
  result.deployment_state = state;
  result.deployment_row = deployed.row;
  await page
    .locator("#live")
    .getByText(`${env("MODEL_NAME")}`)
    .waitFor({ timeout: 10_000 })
    .catch(() => undefined);
  result.live_card = await page.locator("#live").textContent();
  await shot(page, "deployments", { fullPage: true });
  step("saw it live on the target");
}

async function watcher(page) {
  // The traffic was sent and one sample of the server's counters taken before; a health check
  // asked for on the targets page takes the second, and the deployment's panel draws the rates.
  await signIn(page, env("USERNAME"), env("PASSWORD"));
  await page.getByRole("link", { name: "Serving targets" }).click();
  const row = page.locator("tbody tr", { hasText: env("TARGET") });
  await row.getByRole("button", { name: "Check now" }).click();
  step("asked for a health check, which reads the metrics too");
  await page.getByRole("link", { name: "Deployments" }).click();
  const traffic = page.locator("#traffic");
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    await traffic.locator(".metrics-panel").first().waitFor();
    if (await traffic.locator("figure.chart svg").count()) break;
    await page.waitForTimeout(2_000);
    await page.reload();
  }
  await traffic.locator("figure.chart svg").first().waitFor({ timeout: 5_000 });
  result.metrics_panel = await traffic
    .locator(".metrics-panel")
    .first()
    .textContent();
  result.metrics_charts = await traffic
    .locator("figure.chart figcaption")
    .allTextContents();
  await shotOf(traffic, "deployment-metrics");
  step("read the deployment's traffic, errors and latency");
}

async function upgrader(page) {
  // v2, approved, against v1 on its page; deployed in v1's place, then rolled back to v1.
  await signIn(page, env("USERNAME"), env("PASSWORD"));
  await page.goto(`${base}/app/versions/${env("VERSION_ID")}#recommendation`);
  const against = page.getByText(/^Against approved v1/);
  await against.waitFor();
  result.previous_card = await against.textContent();
  step("compared v2 with the approved v1 on its page");

  const deployed = await deployFromTheForm(
    page,
    `vision/${env("MODEL_NAME")} v2`,
    "upgrade_dialog",
  );
  result.upgrade_state = deployed.state;
  step("deployed v2 in v1's place");

  const live = page.locator("#history tbody tr").first();
  const upgraded = await newestId(page);
  await live.getByRole("button", { name: "Roll back" }).click();
  const confirm = page.getByRole("dialog");
  await confirm.getByRole("button", { name: /^Roll back to / }).waitFor();
  result.rollback_dialog = await confirm.textContent();
  await shotOf(confirm, "rollback-dialog");
  await confirm.getByRole("button", { name: /^Roll back to / }).click();
  const settled = await newestSettles(page, "the rollback", upgraded);
  result.rollback_state = settled.state;
  result.rollback_row = settled.row;
  result.live_after_rollback = await page.locator("#live").textContent();
  step("rolled back to v1");
}

async function tryer(page) {
  // The version page's "Try it": an image in, the preprocessing shown (and left as the input
  // plan proposes), the original and one variant run by a worker, top classes side by side.
  await signIn(page, env("USERNAME"), env("PASSWORD"));
  await page.goto(`${base}/app/versions/${env("VERSION_ID")}#try`);
  const section = page.locator("#try");
  await section
    .getByLabel("Input file (PNG or JPEG image, WAV, .npz or JSON)")
    .setInputFiles(env("IMAGE"));
  await section.getByAltText("Preview of the chosen image").waitFor();
  result.size_proposed = [
    await section.getByLabel("Height").inputValue(),
    await section.getByLabel("Width").inputValue(),
  ];
  const models = section.getByRole("group", { name: "Models to run" });
  const variant = models.getByRole("checkbox").nth(1);
  await variant.check();
  result.variant = (await models.locator("label").nth(1).textContent())?.trim();
  await section.getByRole("button", { name: "Run", exact: true }).click();
  step("asked for a trial of the original and a variant");
  const results = section.getByRole("region", { name: "Trial results" });
  await results.waitFor({ timeout: 180_000 });
  result.runs = await results.locator("article h3").allTextContents();
  result.applied = await results.locator("code").allTextContents();
  result.top_captions = await results
    .locator("caption", { hasText: /^Top \d+ classes by/ })
    .allTextContents();
  result.top_rows = await results
    .locator("article")
    .first()
    .locator("tbody tr")
    .count();
  result.difference = await results
    .locator("table", { hasText: "Difference from the original on this input" })
    .textContent();
  await shotOf(section, "try-it");
  step("read what the original and the variant made of the image");
}

const phases = {
  tryer,
  teamadmin,
  invitee,
  scientist,
  approver,
  deployer,
  watcher,
  upgrader,
};
const { page, close } = await startBrowser(work, phase);
page.on("console", (message) => {
  // the first "who am I" before signing in answers 401 by design
  if (
    message.type() === "error" &&
    !/401 \(Unauthorized\)/.test(message.text())
  )
    result.console_errors.push(message.text());
});
page.on("pageerror", (error) =>
  result.console_errors.push(`page error: ${error.message}`),
);
let code = 0;
try {
  if (!phases[phase]) throw new Error(`unknown phase ${phase}`);
  await phases[phase](page);
} catch (error) {
  code = 1;
  result.error = String(error?.stack ?? error);
  result.url = page.url();
  try {
    await page.screenshot({
      path: path.join(work, `failure-${phase}.png`),
      fullPage: true,
    });
    result.failure_screenshot = path.join(work, `failure-${phase}.png`);
    result.page_text = (await page.locator("body").innerText()).slice(0, 4000);
  } catch {
    // the browser itself failed
  }
} finally {
  await close();
}
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(code);
