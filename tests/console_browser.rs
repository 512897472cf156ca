//! The agent console (`GET /console`) end to end in headless Chromium: the
//! real app on a random port (tiny test model), driven by
//! `scripts/console-e2e/console.test.mjs` (Playwright), including a screenshot
//! compared with `scripts/console-e2e/console.golden.png`.
//!
//! Needs Debian's `chromium`, Node.js and `npm ci --prefix scripts/console-e2e`
//! (`.ci/run` does all three). Without them the test says SKIPPED and passes,
//! unless `KESU_REQUIRE_BROWSER=1` (set by `.ci/run`) makes that a failure.
//! `KESU_UPDATE_GOLDEN=1` rewrites the golden image.
mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[actix_web::test]
async fn agent_console_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/console-e2e");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = Command::new("node").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    let missing: Vec<&str> = [
        (!Path::new(&chromium).exists()).then_some("chromium"),
        (!node_ok).then_some("node"),
        (!dir.join("node_modules/playwright-core").exists()).then_some("npm ci --prefix scripts/console-e2e"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        assert!(std::env::var("KESU_REQUIRE_BROWSER").is_err(), "KESU_REQUIRE_BROWSER is set but missing: {missing:?}");
        eprintln!("SKIPPED: the console browser test needs {missing:?}");
        return;
    }
    let app = spawn().await;
    let shot = app.dir.path().join("console.png");
    let mut cmd = tokio::process::Command::new("node");
    cmd.current_dir(&dir).arg("console.test.mjs").arg(&app.base).arg("--golden").arg("console.golden.png").arg("--shot").arg(&shot).env("CHROMIUM", &chromium);
    if std::env::var("KESU_UPDATE_GOLDEN").is_ok() {
        cmd.arg("--update");
    }
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(180), cmd.output()).await.expect("browser test within 180 s").unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        // keep the screenshot and its diff for a look
        let keep = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for f in ["console.png", "console.diff.png"] {
            let _ = std::fs::copy(app.dir.path().join(f), keep.join(f));
        }
        panic!("console e2e failed (screenshots copied to {}):\n{log}", keep.display());
    }
    assert!(log.contains("console e2e: ok"), "{log}");
    assert!(log.contains("screenshot matches golden") || log.contains("golden written"), "{log}");
}
