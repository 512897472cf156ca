//! The agent console (`GET /console`) end to end in headless Chromium: the
//! real app on a random port (tiny test model), driven by
//! `scripts/console-e2e/console.test.mjs` (Playwright), including a screenshot
//! compared with `scripts/console-e2e/console.golden.png`.
//!
//! Needs Debian's `chromium`, Node.js and `npm ci --prefix scripts/console-e2e`
//! (`.ci/run` does all three); see [`common::run_browser_script`].
mod common;

use common::*;

#[actix_web::test]
async fn agent_console_in_headless_chromium() {
    let app = spawn().await;
    run_browser_script(&app, "console.test.mjs", "console.golden.png", &[]).await;
}
