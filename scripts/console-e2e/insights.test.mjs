// End-to-end test of kesu's insights console (/insights) in headless Chromium.
//
//   KESU_ANALYST_KEY=... node insights.test.mjs <base-url> [--golden FILE] [--update] [--shot FILE]
//
// The app holds three days of counted complaints with a planted spike, its
// alerts and an emerging issue (seeded by tests/insights_browser.rs). The test
// enters the analyst key when the page asks, then checks what a complaint
// manager sees: one bar per hour with the alerted bucket marked, the totals and
// breakdowns as the API gives them, the emerging issue first with its
// keywords, its examples when clicked, and acknowledging an alert from the log
// (recorded with the analyst's name). Then a screenshot is compared with the
// golden image. Exit code 0 = pass.
import assert from "node:assert/strict";
import { cli, compareGolden, launch } from "./shared.mjs";

const { base, golden, shot, update } = cli("insights.test.mjs");
const key = process.env.KESU_ANALYST_KEY, to = process.env.KESU_RANGE_TO;
assert.ok(key && to, "KESU_ANALYST_KEY and KESU_RANGE_TO are needed");
const api = async (path, opts = {}) => {
  const r = await fetch(base + path, { ...opts, headers: { authorization: "Bearer " + key, "content-type": "application/json", ...(opts.headers || {}) } });
  assert.ok(r.ok, `${path}: ${r.status}`);
  return r.json();
};

const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 1300 }, deviceScaleFactor: 1, locale: "zh-CN", timezoneId: "Asia/Shanghai" });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}/insights?to=${to}&days=3&grain=hour`);
  await page.waitForSelector("#keybox.on");
  await page.fill("#key", key);
  await page.click("#usekey");
  await page.waitForFunction(() => document.body.dataset.loaded === "yes");

  const from = new Date(Date.parse(to) - 3 * 86400000).toISOString();
  const series = await api(`/v1/insights/series?grain=hour&from=${from}&to=${to}`);
  assert.equal(await page.$$eval("#volume rect", (r) => r.length), series.buckets.length, "one bar per bucket");
  assert.equal(await page.textContent("#total"), String(series.total));
  const alerts = await api(`/v1/insights/alerts?from=${encodeURIComponent(series.from)}&to=${to}`);
  assert.ok(alerts.length >= 2, JSON.stringify(alerts));
  assert.ok((await page.$$eval("#volume .marker", (m) => m.length)) >= 1, "the alerted bucket is marked");
  assert.equal(await page.$$eval("#alerts tbody tr", (r) => r.length), alerts.length);

  // breakdowns are the API's
  const cat = await api(`/v1/insights/breakdown?by=category&from=${from}&to=${to}`);
  const shown = await page.$$eval("#breakdowns table[data-by=category] tr", (rs) => rs.map((r) => [r.cells[0].textContent, +r.cells[1].textContent]));
  assert.deepEqual(shown, cat.values.slice(0, 8).map((v) => [v.value, v.count]));

  // the emerging issue first, with its keywords; its examples on click
  const first = page.locator("#issues li").first();
  assert.ok((await first.getAttribute("class")).includes("emerging"));
  const kws = await first.locator(".chip").allTextContents();
  assert.ok(kws.some((k) => ["鼓包", "充电宝", "起火"].includes(k)), kws.join(","));
  await first.click();
  await page.waitForFunction(() => document.querySelectorAll("#examples li").length > 0);
  assert.ok((await page.textContent("#examples")).includes("充电宝"));

  // acknowledge the spike's alert from the log
  const row = page.locator("#alerts tbody tr", { hasText: "volume_spike" });
  await row.locator("button[data-act=acknowledge]").click();
  await page.waitForFunction(() => [...document.querySelectorAll("#alerts tbody tr")].some((r) => r.dataset.status === "acknowledged"));
  const acked = (await api(`/v1/insights/alerts?status=acknowledged`))[0];
  assert.equal(acked.rule, "volume_spike");
  assert.equal(acked.acknowledged_by, "ana");
  // the report link opens the HTML report with the same range
  const rep = await page.request.get(base + (await page.getAttribute("#report", "href")));
  assert.equal(rep.status(), 200);
  assert.ok((await rep.text()).includes("<svg"), "the report has its charts");
  assert.deepEqual(errors, [], "no script errors");

  await page.mouse.move(0, 0);
  await page.screenshot({ path: shot, fullPage: false, mask: [page.locator(".when"), page.locator("#range input")] });
  compareGolden(shot, golden, update);
  console.log("insights e2e: ok");
} finally {
  await browser.close();
}
