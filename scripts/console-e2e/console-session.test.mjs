// End-to-end test of the agent console with API keys on, in headless Chromium.
//
//   KESU_AGENT_KEY=... node console-session.test.mjs <base-url> [--golden FILE] [--update] [--shot FILE]
//
// The page asks for the key, refuses a wrong one with kesu's message, exchanges
// the right one for a console session (POST /v1/session: an HttpOnly cookie;
// the key is in no cookie), then follows the conversation over EventSource with
// that cookie alone: a message typed in the page and one posted through the API
// both arrive live. "Log out" ends the session (the page asks for the key again
// and the API refuses the old cookie). Run by tests/console_session_browser.rs.
import assert from "node:assert/strict";
import { cli, compareGolden, launch } from "./shared.mjs";

const { base, golden, shot, update } = cli("console-session.test.mjs");
const key = process.env.KESU_AGENT_KEY;
assert.ok(key, "KESU_AGENT_KEY is needed");
const conv = "sess-e2e";
const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 860 }, deviceScaleFactor: 1, locale: "zh-CN" });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}/console?id=${conv}`);
  await page.waitForSelector("#keybox.on");

  // a wrong key: refused, with kesu's message
  await page.fill("#key", "kesu_wrong");
  await page.click("#usekey");
  await page.waitForFunction(() => document.getElementById("error").textContent.includes("unauthorized"));
  assert.ok(await page.isVisible("#keybox"), "still asking for a key");

  await page.fill("#key", key);
  await page.click("#usekey");
  await page.waitForSelector("#logout.on");
  await page.waitForFunction((id) => document.getElementById("conn").textContent === "live: " + id, conv);
  assert.equal(await page.inputValue("#key"), "", "the key is not left in the page");
  assert.ok(!(await page.evaluate(() => document.cookie)).includes(key), "no script-readable cookie holds the key");
  const cookies = await ctx.cookies();
  assert.ok(!cookies.some((c) => c.value.includes(key)), "the key is in no cookie");
  const session = cookies.find((c) => c.name === "kesu_session");
  assert.ok(session && session.httpOnly && session.sameSite === "Strict" && session.path === "/v1", JSON.stringify(cookies));

  // typed in the page: posted with the cookie, shown from the event stream
  await page.fill("#text", "我家宽带断了三天了，再不修我就去工信部投诉");
  await page.press("#text", "Enter");
  await page.waitForFunction(() => document.querySelectorAll("#log .msg").length === 1);
  // posted through the API with the key: arrives live over the cookie-authenticated stream
  const r = await fetch(`${base}/v1/conversations/${conv}/messages`, {
    method: "POST", headers: { authorization: "Bearer " + key, "content-type": "application/json" },
    body: JSON.stringify({ role: "agent", text: "您好，已为您加急报修" }),
  });
  assert.equal(r.status, 200);
  await page.waitForFunction(() => document.querySelectorAll("#log .msg").length === 2);
  assert.deepEqual(errors, [], "no script errors");

  await page.mouse.move(0, 0);
  await page.screenshot({ path: shot, mask: [page.locator("#conn")] });
  compareGolden(shot, golden, update);

  // log out: the page asks for the key again; the old cookie opens nothing
  const old = (await ctx.cookies()).find((c) => c.name === "kesu_session").value;
  await page.click("#logout");
  await page.waitForSelector("#keybox.on");
  const again = await fetch(`${base}/v1/conversations/${conv}`, { headers: { cookie: "kesu_session=" + old } });
  assert.equal(again.status, 401, "the session ended");
  console.log("console-session e2e: ok");
} finally {
  await browser.close();
}
