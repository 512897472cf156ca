// Helpers shared by the browser tests: launch Debian's Chromium headless with
// settings that make screenshots reproducible, and compare a screenshot with
// its golden image.
import { chromium } from "playwright-core";
import { PNG } from "pngjs";
import pixelmatch from "pixelmatch";
import fs from "node:fs";
import assert from "node:assert/strict";

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--font-render-hinting=none", "--force-color-profile=srgb"],
  });
}

// The command line: <base-url> [--golden FILE] [--update] [--shot FILE].
export function cli(name) {
  const args = process.argv.slice(2);
  const opt = (o) => { const i = args.indexOf(o); return i >= 0 ? args[i + 1] : undefined; };
  const base = args[0];
  assert.ok(base, `usage: node ${name} <base-url> [--golden FILE] [--update] [--shot FILE]`);
  return { base, golden: opt("--golden"), shot: opt("--shot") || name.replace(/\.test\.mjs$/, ".png"), update: args.includes("--update") };
}

// Compare `shot` with `golden` (at most 1% of pixels may differ; a diff image
// is written next to `shot` when more do). `update` rewrites the golden image;
// a missing golden image is written and fails the run, to be checked by eye.
export function compareGolden(shot, golden, update) {
  if (!golden) return;
  if (update || !fs.existsSync(golden)) {
    fs.copyFileSync(shot, golden);
    console.log(`golden written: ${golden}`);
    if (!update) throw new Error(`no golden image at ${golden}: wrote one; check it and rerun`);
    return;
  }
  const a = PNG.sync.read(fs.readFileSync(golden)), b = PNG.sync.read(fs.readFileSync(shot));
  assert.deepEqual([b.width, b.height], [a.width, a.height], "screenshot size");
  const diff = new PNG({ width: a.width, height: a.height });
  const bad = pixelmatch(a.data, b.data, diff.data, a.width, a.height, { threshold: 0.2 });
  const ratio = bad / (a.width * a.height);
  if (ratio > 0.01) {
    fs.writeFileSync(shot.replace(/\.png$/, "") + ".diff.png", PNG.sync.write(diff));
    throw new Error(`screenshot differs from ${golden} in ${(ratio * 100).toFixed(2)}% of pixels (diff image written next to ${shot})`);
  }
  console.log(`screenshot matches golden (${(ratio * 100).toFixed(3)}% pixels differ)`);
}
