//! The insights console (`GET /insights`) end to end in headless Chromium,
//! with API keys on: three days of complaints with a planted spike and an
//! emerging issue go through classify (fixed dates, so the page looks the same
//! every run), the worker raises its alerts, then
//! `scripts/console-e2e/insights.test.mjs` opens the page with an analyst key,
//! checks the charts, breakdowns, hot spots and alert log against the API,
//! acknowledges an alert and compares a screenshot with
//! `scripts/console-e2e/insights.golden.png`. See [`common::run_browser_script`].
mod common;

use common::*;
use kesu_server::auth::{generate_key, hash_key};
use serde_json::{json, Value};

const TO: &str = "2026-11-23T00:00:00Z";

#[actix_web::test]
async fn insights_console_in_headless_chromium() {
    let (intake, analyst) = (generate_key(), generate_key());
    let keys = format!("pipeline:intake:{};ana:analyst:{}", hash_key(&intake), hash_key(&analyst));
    let app = spawn_with(true, move |s| {
        s.auth.no_auth = false;
        s.auth.api_keys = Some(keys);
        s.store.store_min_escalation = Some(0);
        s.store.insights_every_secs = 1;
        s.store.alert_lateness_secs = 0;
        s.store.hotspot_min_size = 8;
        // fixed dates: keep their hours whatever the day the test runs
        s.store.insights_hour_retention_days = 1_000_000;
    })
    .await;
    let end = TO.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    let at = |h: i64, i: i64| jiff::Timestamp::from_millisecond(end - h * 3_600_000 + i * 50_000).unwrap().to_string();
    let ordinary =
        ["快递三天没到，客服也不回复", "退款申请一周了还没处理", "账单上多扣了一笔费用", "客服电话一直打不通"];
    let mut items = Vec::new();
    for h in (6..=72).rev() {
        for i in 0..8 {
            items.push(json!({"text": format!("{}（订单{h}-{i}）", ordinary[(i % 4) as usize]), "received_at": at(h, i), "channel": if i % 3 == 0 { "weibo" } else { "app" }}));
        }
    }
    for i in 0..50 {
        items.push(json!({"text": format!("充电宝鼓包起火，差点烧了房子（第{i}位）"), "received_at": at(5, i % 70), "channel": "app"}));
    }
    for chunk in items.chunks(64) {
        let r = app
            .client
            .post(app.url("/v1/classify"))
            .bearer_auth(&intake)
            .json(&json!({"items": chunk}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // wait for the worker: the spike's alert and the emerging issue's
    let mut ok = false;
    for _ in 0..120 {
        let r = app.client.get(app.url("/v1/insights/alerts")).bearer_auth(&analyst).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        let rules: Vec<&str> = v.as_array().unwrap().iter().filter_map(|a| a["rule"].as_str()).collect();
        if rules.contains(&"volume_spike") && rules.contains(&"emerging_issue") {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(ok, "the worker raised the spike and emerging-issue alerts");
    run_browser_script(
        &app,
        "insights.test.mjs",
        "insights.golden.png",
        &[("KESU_ANALYST_KEY", &analyst), ("KESU_RANGE_TO", TO)],
    )
    .await;
}
