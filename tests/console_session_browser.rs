//! The agent console (`GET /console`) with API keys on, end to end in headless
//! Chromium: the key the user enters is exchanged for an `HttpOnly` session
//! cookie (never stored in a cookie itself), the `EventSource` stream runs on
//! that cookie, and "Log out" ends the session. Driven by
//! `scripts/console-e2e/console-session.test.mjs`; see [`common::run_browser_script`].
mod common;

use common::*;
use kesu_server::auth::{generate_key, hash_key};

#[actix_web::test]
async fn agent_console_with_keys_uses_a_session_in_headless_chromium() {
    let agent = generate_key();
    let keys = format!("desk:agent:{}", hash_key(&agent));
    let app = spawn_with(true, move |s| {
        s.auth.no_auth = false;
        s.auth.api_keys = Some(keys);
    })
    .await;
    run_browser_script(&app, "console-session.test.mjs", "console-session.golden.png", &[("KESU_AGENT_KEY", &agent)])
        .await;
}
