// End-to-end test of kesu's agent console in headless Chromium.
//
//   node console.test.mjs <base-url> [--golden FILE] [--update] [--shot FILE]
//
// Opens /console for a fresh conversation, types customer and agent messages,
// pastes a transcript, and checks what an agent sees: every message in order,
// customer messages tagged and coloured by level, agent messages untagged,
// flagged words highlighted (negated ones struck through), threat alerts and
// the hand-over banner; a second console following the same conversation gets
// a message posted through the API live. Then a screenshot is compared with
// the golden image (--golden; --update rewrites it). Exit code 0 = pass.
// Run by tests/console_browser.rs against the real app with the tiny test model.
import assert from "node:assert/strict";
import { cli, compareGolden, launch } from "./shared.mjs";

const { base, golden, shot, update } = cli("console.test.mjs");
const browser = await launch();
const conv = "e2e-" + (process.env.KESU_E2E_ID || "demo");
try {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 860 }, deviceScaleFactor: 1, locale: "zh-CN" });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}/console?id=${conv}`);
  await page.waitForFunction((id) => document.getElementById("conn").textContent === "live: " + id, conv);

  // a second agent console following the same conversation
  const watcher = await ctx.newPage();
  await watcher.goto(`${base}/console?id=${conv}`);
  await watcher.waitForFunction((id) => document.getElementById("conn").textContent === "live: " + id, conv);

  const send = async (role, text) => {
    await page.selectOption("#role", role);
    await page.fill("#text", text);
    await page.press("#text", "Enter");
  };
  const typed = [
    ["customer", "你好，我家宽带断了三天了，一直没人来修"],
    ["agent", "您好，非常抱歉，已为您加急报修"],
    ["customer", "我不想起诉，只想尽快修好"],
    ["customer", "已经打了五次电话了还没人来！太过分了！！"],
  ];
  for (const [i, [role, text]] of typed.entries()) {
    await send(role, text);
    // one at a time, as an agent types: wait until this one is shown
    await page.waitForFunction((n) => document.querySelectorAll("#log .msg").length >= n, i + 1);
  }
  await page.click("summary");
  await page.fill("#transcript", "客服：请您提供一下宽带账号\n客户：再不修好我就去工信部投诉，还要找媒体曝光");
  await page.click("#replay");
  const total = typed.length + 2;
  await page.waitForFunction((n) => document.querySelectorAll("#log .msg").length === n, total);

  // every message, in order, with the right role and tag colour
  const rows = await page.$$eval("#log .msg", (els) => els.map((e) => ({
    seq: +e.dataset.seq, role: e.dataset.role, level: e.dataset.level, text: e.querySelector(".text").textContent,
    tag: e.querySelector(".tag")?.textContent, tagClass: e.querySelector(".tag")?.className,
    border: getComputedStyle(e).borderLeftColor,
  })));
  const want = [...typed, ["agent", "请您提供一下宽带账号"], ["customer", "再不修好我就去工信部投诉，还要找媒体曝光"]];
  assert.deepEqual(rows.map((r) => r.seq), want.map((_, i) => i + 1), "messages in arrival order");
  const colours = { 0: "rgb(46, 125, 50)", 1: "rgb(184, 134, 11)", 2: "rgb(230, 81, 0)", 3: "rgb(198, 40, 40)" };
  const tags = ["calm", "dissatisfied", "angry", "escalating"];
  rows.forEach((r, i) => {
    assert.equal(r.role, want[i][0]);
    assert.ok(r.text.includes(want[i][1]), `row ${i + 1} shows its text`);
    if (r.role === "customer") {
      assert.ok(["0", "1", "2", "3"].includes(r.level), `customer row ${i + 1} has a level`);
      assert.equal(r.tag, tags[+r.level]);
      assert.equal(r.tagClass, "tag lvl-" + r.level);
      assert.equal(r.border, colours[r.level], `row ${i + 1} coloured by its level`);
    } else {
      assert.equal(r.tag, undefined, "agent messages carry no emotion tag");
    }
  });
  // highlighted spans from the flag offsets
  const marks = await page.$$eval("#log mark.hit", (ms) => ms.map((m) => ({ flag: m.dataset.flag, text: m.textContent, negated: m.classList.contains("negated") })));
  assert.ok(marks.some((m) => m.flag === "litigation" && m.text === "起诉" && m.negated), "negated hit struck through: " + JSON.stringify(marks));
  assert.ok(marks.some((m) => m.flag === "regulator" && m.text.includes("工信部") && !m.negated), JSON.stringify(marks));
  assert.ok(marks.some((m) => m.flag === "media" && !m.negated), JSON.stringify(marks));

  // alerts and state
  const alerts = await page.$$eval("#alerts li", (ls) => ls.map((l) => ({ kind: l.dataset.kind, seq: +l.dataset.seq, text: l.textContent })));
  const threat = alerts.find((a) => a.kind === "threat_flag");
  assert.ok(threat && threat.seq === total && threat.text.includes("工信部"), "threat alert on the last message: " + JSON.stringify(alerts));
  assert.equal(await page.getAttribute("#status", "data-status"), "alert");
  assert.ok(await page.isVisible("#handoff"), "hand-over banner shown");
  assert.equal(await page.textContent("#count"), `${total} (4 customer)`);
  assert.equal(await page.$$eval("#spark polyline", (p) => p.length), 1, "trend line drawn");

  // the second console saw all of it live, plus a message posted through the API
  const r = await fetch(`${base}/v1/conversations/${conv}/messages`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role: "agent", text: "已安排师傅明天上门" }),
  });
  assert.equal(r.status, 200);
  await watcher.waitForFunction((n) => document.querySelectorAll("#log .msg").length === n, total + 1);
  assert.equal(await watcher.getAttribute("#status", "data-status"), "alert");
  await page.waitForFunction((n) => document.querySelectorAll("#log .msg").length === n, total + 1);
  assert.deepEqual(errors, [], "no script errors");

  // screenshot test
  await page.mouse.move(0, 0);
  await page.screenshot({ path: shot });
  compareGolden(shot, golden, update);
  console.log("console e2e: ok");
} finally {
  await browser.close();
}
