// End-to-end test of kesu's review console (/review) in headless Chromium.
//
//   KESU_REVIEWER_KEY=... node review.test.mjs <base-url> [--golden FILE] [--update] [--shot FILE]
//
// The app runs with API keys on and holds items stored by classify (seeded by
// tests/review_browser.rs). The test enters the reviewer key when the page asks,
// then checks what a compliance officer sees and does: the queue ordered by
// priority then age, flagged spans highlighted from the offsets (negated hits
// struck through), filtering by flag, marking the selected item with the
// keyboard (it leaves the queue; the audit trail names the reviewer), a 409
// when someone else changed the item first, and the CSV export link. Then a
// screenshot is compared with the golden image. Exit code 0 = pass.
import assert from "node:assert/strict";
import { cli, compareGolden, launch } from "./shared.mjs";

const { base, golden, shot, update } = cli("review.test.mjs");
const key = process.env.KESU_REVIEWER_KEY;
assert.ok(key, "KESU_REVIEWER_KEY is needed");
const api = async (path, opts = {}) => {
  const r = await fetch(base + path, { ...opts, headers: { authorization: "Bearer " + key, "content-type": "application/json", ...(opts.headers || {}) } });
  assert.ok(r.ok, `${path}: ${r.status}`);
  return r.json();
};
const queue = (page) => page.$$eval("#queue .item", (els) => els.map((e) => ({
  id: e.dataset.id, priority: e.querySelector(".badge").textContent, chips: [...e.querySelectorAll(".chip")].map((c) => c.textContent),
  selected: e.classList.contains("selected"),
})));

const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: { width: 1300, height: 900 }, deviceScaleFactor: 1, locale: "zh-CN" });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}/review`);

  // no key yet: the page asks for one
  await page.waitForSelector("#keybox.on");
  await page.fill("#key", key);
  await page.click("#usekey");
  await page.waitForFunction(() => document.querySelectorAll("#queue .item").length > 0);
  // the key was exchanged for a session: no script-readable cookie holds it
  assert.ok(!(await page.evaluate(() => document.cookie)).includes(key), "the key is not in a script-readable cookie");
  const cookies = await ctx.cookies();
  assert.ok(!cookies.some((c) => c.value.includes(key)), "the key is in no cookie");
  const session = cookies.find((c) => c.name === "kesu_session");
  assert.ok(session && session.httpOnly && session.sameSite === "Strict" && session.path === "/v1", JSON.stringify(cookies));

  // the open queue, in the API's order: priority, then age
  const want = (await api("/v1/reviews?limit=500")).items;
  let rows = await queue(page);
  assert.deepEqual(rows.map((r) => r.id), want.map((i) => i.id), "queue = API order");
  const ranks = rows.map((r) => +r.priority.slice(1));
  assert.deepEqual(ranks, [...ranks].sort((a, b) => a - b), "P1 first");
  assert.ok(rows[0].selected, "first item selected");

  // flagged spans from the offsets; negated hits struck through
  const marks = await page.$$eval("#queue mark.hit", (ms) => ms.map((m) => ({ flag: m.dataset.flag, text: m.textContent, negated: m.classList.contains("negated") })));
  assert.ok(marks.some((m) => m.flag === "litigation" && m.text === "起诉" && m.negated), "negated hit: " + JSON.stringify(marks));
  assert.ok(marks.some((m) => m.flag === "regulator" && !m.negated), JSON.stringify(marks));
  const masked = await page.$$eval("#queue .text", (ts) => ts.map((t) => t.textContent).join("\n"));
  assert.ok(!masked.includes("13812345678"), "stored texts are PII-masked");

  // the filter lists are /v1/info's vocabularies, in its order
  const info = await api("/v1/info");
  const options = (name) => page.$$eval(`#filters select[name=${name}] option`, (os) => os.slice(1).map((o) => o.value));
  await page.waitForFunction(() => document.querySelectorAll("#filters select[name=flag] option").length > 1);
  assert.deepEqual(await options("flag"), info.lexicon.flags, "flags from /v1/info");
  assert.deepEqual(await options("category"), info.model.category_labels, "categories from the model file");

  // filter by flag
  await page.selectOption("select[name=flag]", "media");
  await page.click("#filters button[type=submit]");
  await page.waitForFunction(() => [...document.querySelectorAll("#queue .item")].every((e) => e.textContent.includes("media")));
  rows = await queue(page);
  const media = (await api("/v1/reviews?flag=media&limit=500")).items;
  assert.equal(rows.length, media.length);
  assert.ok(rows.length >= 2, "at least two media items seeded");

  // mark with the keyboard: c confirms the selected item, which leaves the queue
  const first = rows[0].id;
  await page.locator("body").press("c");
  await page.waitForFunction((id) => !document.querySelector(`#queue .item[data-id="${id}"]`), first);
  let item = await api(`/v1/reviews/${first}`);
  assert.equal(item.status, "confirmed");
  const trail = await api(`/v1/reviews/${first}/history`);
  assert.equal(trail.at(-1).actor, "alice", "the audit log names the reviewer's key");
  // j moves down, f marks false positive
  rows = await queue(page);
  if (rows.length >= 2) {
    await page.locator("body").press("j");
    await page.waitForFunction(() => document.querySelectorAll("#queue .item")[1]?.classList.contains("selected"));
    const second = rows[1].id;
    await page.locator("body").press("f");
    await page.waitForFunction((id) => !document.querySelector(`#queue .item[data-id="${id}"]`), second);
    assert.equal((await api(`/v1/reviews/${second}`)).status, "false_positive");
  }

  // someone else moves the selected item first: the page says so (409) and reloads it
  await page.selectOption("select[name=flag]", "");
  await page.click("#filters button[type=submit]");
  await page.waitForFunction((n) => document.querySelectorAll("#queue .item").length === n, (await api("/v1/reviews?limit=500")).items.length);
  rows = await queue(page);
  const sel = rows.find((r) => r.selected).id;
  item = await api(`/v1/reviews/${sel}`);
  await api(`/v1/reviews/${sel}`, { method: "PATCH", body: JSON.stringify({ version: item.version, status: "in_review", assignee: "bob" }) });
  await page.locator("body").press("c");
  await page.waitForFunction(() => document.getElementById("msg").textContent.includes("Someone else changed"));
  assert.equal((await api(`/v1/reviews/${sel}`)).status, "in_review", "the stale mark did not apply");
  // the audit trail of the selected item is shown
  await page.waitForFunction(() => document.querySelectorAll("#trail li").length >= 2);

  // the export link carries the filters and the key (cookie)
  const href = await page.getAttribute("#csv", "href");
  const csv = await page.request.get(base + href);
  assert.equal(csv.status(), 200);
  const lines = (await csv.text()).trim().split("\n");
  assert.ok(lines[0].startsWith("id,received_at,priority"), lines[0]);
  assert.deepEqual(errors, [], "no script errors");

  // screenshot (times and ids masked: they differ per run)
  await page.mouse.move(0, 0);
  await page.screenshot({ path: shot, mask: [page.locator(".when"), page.locator("#detail"), page.locator("#trail"), page.locator("#csv"), page.locator("#jsonl")] });
  compareGolden(shot, golden, update);
  // log out: the session ends, the page asks for the key again
  await page.click("#logout");
  await page.waitForSelector("#keybox.on");
  assert.ok(!(await ctx.cookies()).some((c) => c.name === "kesu_session" && c.value), "the session cookie is cleared");
  console.log("review e2e: ok");
} finally {
  await browser.close();
}
