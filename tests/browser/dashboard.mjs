// End-to-end test of the reelrank dashboard in headless Chromium: every page loads and shows
// what the API says; a "not interested" click removes the item from the next feed; deleting an
// interest tag changes the feed; an item reported by three users waits in the moderation queue,
// and rejecting it there heads the audit log. Screenshots of each page go to OUT_DIR.
//
//   node dashboard.mjs http://127.0.0.1:PORT OUT_DIR
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, out] = process.argv.slice(2);
if (!base || !out) throw new Error("usage: node dashboard.mjs BASE_URL OUT_DIR");
mkdirSync(out, { recursive: true });

const api = async (path, options = {}) => {
  const response = await fetch(base + path, { headers: { "content-type": "application/json" }, ...options });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
};
const check = (ok, message) => {
  if (!ok) throw new Error(message);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const problems = [];
page.on("pageerror", (error) => problems.push(error.message));
const shot = (name) => page.screenshot({ path: join(out, `${name}.png`), fullPage: true });

try {
  // Overview: the counts are the store's.
  await page.goto(`${base}/dashboard#overview`);
  await page.getByTestId("items").waitFor();
  const overview = await api("/v1/admin/overview");
  const shown = (await page.getByTestId("items").textContent()).replaceAll(",", "");
  check(shown === String(overview.items), `overview shows ${shown} items, the API ${overview.items}`);
  check((await page.getByTestId("model-version").textContent()) === overview.model_version, "model version differs");
  await shot("overview");

  // Charts: the week's rows, in the API's order.
  await page.goto(`${base}/dashboard#charts`);
  await page.getByTestId("chart").waitFor();
  const chart = await api("/v1/charts?category=all&period=week&limit=50");
  const rows = await page.locator("[data-testid=chart] tr[data-item]").evaluateAll((trs) => trs.map((tr) => tr.dataset.item));
  check(JSON.stringify(rows) === JSON.stringify(chart.rows.map((r) => r.item_id)), "chart rows differ from the API's");
  check(rows.length > 0, "the chart is empty");
  await page.getByTestId("category").selectOption("micro_drama");
  await page.waitForFunction(() => [...document.querySelectorAll("[data-testid=chart] td")].length > 0);
  await shot("charts");

  // Feed preview: "not interested" removes the item from the next feed.
  const user = "u1";
  await page.goto(`${base}/dashboard#feed?user=${user}`);
  const cards = page.locator("[data-testid=cards] .card");
  await cards.first().waitFor();
  await shot("feed");
  const first = await cards.first().getAttribute("data-item");
  const before = await cards.evaluateAll((cs) => cs.map((c) => c.dataset.item));
  await cards.first().getByTestId("not-interested").click();
  await page.waitForFunction((old) => {
    const now = [...document.querySelectorAll("[data-testid=cards] .card")].map((c) => c.dataset.item);
    return now.length > 0 && now.join() !== old;
  }, before.join());
  const after = await cards.evaluateAll((cs) => cs.map((c) => c.dataset.item));
  check(!after.includes(first), `${first} is still in the feed after "not interested"`);
  const explained = await api(`/v1/explain?user_id=${user}&item_id=${first}`);
  check(explained.filtered_by.includes("not_interested"), `${first} is not filtered as not interested`);

  // Deleting an interest tag: it leaves the list and the feed changes.
  const tags = page.locator("[data-testid=tags] .tag");
  await tags.first().waitFor();
  const tag = await tags.first().getAttribute("data-tag");
  const feedBefore = after.join();
  await tags.first().getByRole("button").click();
  await page.waitForFunction((t) => ![...document.querySelectorAll("[data-testid=tags] .tag")].some((x) => x.dataset.tag === t), tag);
  const feedAfter = await cards.evaluateAll((cs) => cs.map((c) => c.dataset.item).join());
  check(feedAfter !== feedBefore, "the feed did not change after deleting a tag");
  const listed = await api(`/v1/users/${user}/tags`);
  check(listed.hidden.includes(tag) && !listed.tags.some((t) => t.tag === tag), `${tag} is still used`);

  // Models and moderation.
  await page.goto(`${base}/dashboard#models`);
  await page.getByTestId("online").waitFor();
  const logs = await api("/v1/admin/models");
  const curves = await page.getByTestId("curve").count();
  check(logs.retrieval && logs.ranking, "a model has no training log");
  check(curves >= 4, `the models page draws ${curves} training curves`);
  const polyline = await page.locator("[data-testid=curve] polyline").first().getAttribute("points");
  check(polyline.split(" ").length === logs.retrieval.curves.filter((c) => c.stage === logs.retrieval.curves[0].stage).length,
    "the first loss curve does not have a point per epoch");
  await shot("models");
  // Moderation: three users' reports put an item in the queue; rejecting it there is audited.
  const reported = rows[rows.length - 1];
  const reports = ["u2", "u3", "u4"].map((u) => ({ event_id: `report-${u}`, user_id: u, item_id: reported, kind: "report", ts: Date.now() }));
  await api("/v1/events", { method: "POST", body: JSON.stringify(reports) });
  await page.goto(`${base}/dashboard#moderation`);
  await page.locator(`[data-testid=queue] tr[data-item="${reported}"]`).waitFor();
  await shot("moderation");
  page.once("dialog", (dialog) => dialog.accept("misleading title"));
  await page.locator(`[data-testid=queue] tr[data-item="${reported}"] button`, { hasText: "Reject" }).click();
  await page.locator("[data-testid=audit] tr[data-seq]", { hasText: "misleading title" }).waitFor();
  const audit = await api("/v1/moderation/audit?latest=true&limit=1");
  const newest = await page.locator("[data-testid=audit] tr[data-seq]").first().textContent();
  check(audit.entries[0].target_id === reported && audit.entries[0].to_status === "rejected", "the rejection is not audited");
  check(newest.includes(reported) && newest.includes("misleading title"), `the audit shows "${newest}" first`);
  check((await page.locator(`[data-testid=queue] tr[data-item="${reported}"]`).count()) === 0, "the rejected item is still queued");

  check(problems.length === 0, `script errors: ${problems.join("; ")}`);
  console.log(`dashboard ok: ${rows.length} chart rows, "${first}" dropped, tag "${tag}" deleted, "${reported}" rejected`);
} finally {
  await browser.close();
}
