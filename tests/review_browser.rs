//! The review console (`GET /review`) end to end in headless Chromium, with
//! API keys on: complaint texts go through classify with an intake key (and
//! are stored), then `scripts/console-e2e/review.test.mjs` opens the queue
//! with a reviewer key, filters by flag, marks items with the keyboard and
//! sees them leave the queue, and compares a screenshot with
//! `scripts/console-e2e/review.golden.png`. See [`common::run_browser_script`].
mod common;

use common::*;
use kesu_server::auth::{generate_key, hash_key};
use serde_json::json;

const TEXTS: &[&str] = &[
    "我不想起诉，但你们再不处理我就去12315投诉",
    "再不退款我就找媒体曝光你们，电话13812345678",
    "我要发微博曝光你们这种黑心商家",
    "已经请了律师，下周起诉你们",
    "你们的暴力催收已经严重影响我的生活，我要向银保监会举报",
    "几十个业主准备集体维权",
];

#[actix_web::test]
async fn review_console_in_headless_chromium() {
    let (intake, reviewer) = (generate_key(), generate_key());
    let keys = format!("pipeline:intake:{};alice:reviewer:{}", hash_key(&intake), hash_key(&reviewer));
    let app = spawn_with(true, move |s| {
        s.auth.no_auth = false;
        s.auth.api_keys = Some(keys);
        s.store.store_min_escalation = Some(4);
    })
    .await;
    let items: Vec<_> =
        TEXTS.iter().enumerate().map(|(i, t)| json!({"id": format!("w{i}"), "text": t, "channel": "weibo"})).collect();
    let r = app
        .client
        .post(app.url("/v1/classify"))
        .bearer_auth(&intake)
        .json(&json!({"items": items}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["items"].as_array().unwrap().iter().all(|i| i["review_id"].is_string()), "all seeded texts stored: {v}");
    run_browser_script(&app, "review.test.mjs", "review.golden.png", &[("KESU_REVIEWER_KEY", &reviewer)]).await;
}
