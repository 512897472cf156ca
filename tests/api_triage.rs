//! Triage in classify results over HTTP: priority, route, reasons, rules
//! version, repeat contacts by customer_ref.
mod common;

use common::*;
use serde_json::{json, Value};

/// Only the repeat-contact rule, so the tiny model's random category and
/// escalation cannot decide.
const REPEAT_ONLY: &str = r#"
version = "repeat-only-1"
[default]
priority = "P4"
route = "standard"

[[rules]]
name = "repeat_contact"
repeat_contact = true
priority = "P3"
route = "senior_agent"

[[rules]]
name = "frequent"
min_prior_contacts = 2
priority = "P2"
route = "retention"
"#;

fn priority(v: &Value) -> u8 {
    let p = v["triage"]["priority"].as_str().expect("priority");
    assert!(["P1", "P2", "P3", "P4"].contains(&p), "{p}");
    p[1..].parse().unwrap()
}

#[actix_web::test]
async fn every_classify_result_has_a_triage() {
    let app = spawn().await;
    let info: Value = app.get("/v1/info").await.json().await.unwrap();
    let version = info["triage"]["rules_version"].as_str().unwrap().to_string();
    assert!(info["triage"]["rule_count"].as_u64().unwrap() >= 6);
    assert_eq!(info["triage"]["repeat_window_secs"], 86_400);
    assert_eq!(info["reload"]["count"], 0);
    assert!(info["reload"]["loaded_at"].as_str().unwrap().ends_with('Z'));

    // collective action: P1 compliance whatever the model says
    let v: Value = app
        .post_json("/v1/classify", &json!({"id": "a", "text": "我们几十个人要集体诉讼"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["triage"]["priority"], "P1", "{v}");
    assert_eq!(v["triage"]["route"], "compliance");
    assert_eq!(v["triage"]["rules_version"], version.as_str());
    let reasons: Vec<&str> = v["triage"]["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(reasons.contains(&"P1: collective_action flag (rule crisis)"), "{reasons:?}");
    assert!(v["triage"].get("prior_contacts").is_none(), "no customer_ref, no count");
    // existing fields are unchanged
    assert!(v["category"]["label"].is_string() && v["emotion"]["level"].is_u64() && v["flags"]["hits"].is_array());

    // a regulator threat: P2 compliance (P1 only comes from crisis flags)
    let v: Value =
        app.post_json("/v1/classify", &json!({"text": "再不退款我就去12315投诉"})).await.json().await.unwrap();
    assert_eq!((priority(&v), v["triage"]["route"].as_str()), (2, Some("compliance")), "{}", v["triage"]);
    assert!(v["triage"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r.as_str().unwrap().starts_with("P2: regulator flag")));

    // a negated threat is not one: the litigation rule does not match
    let v: Value = app.post_json("/v1/classify", &json!({"text": "我不想起诉"})).await.json().await.unwrap();
    assert!(
        !v["triage"]["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().contains("external_threat")),
        "{}",
        v["triage"]
    );

    // batch: every item has one, and the reasons agree with the priority
    let items: Vec<Value> = ["屏幕坏了", "快递太慢", "我要跳楼"].iter().map(|t| json!({"text": t})).collect();
    let v: Value = app.post_json("/v1/classify", &json!({"items": items})).await.json().await.unwrap();
    for it in v["items"].as_array().unwrap() {
        let p = priority(it);
        let reasons = it["triage"]["reasons"].as_array().unwrap();
        if p == 4 {
            assert!(reasons.is_empty() && it["triage"]["route"] == "standard", "{it}");
        } else {
            assert!(reasons.iter().any(|r| r.as_str().unwrap().starts_with(&format!("P{p}: "))), "{it}");
        }
    }
    assert_eq!(v["items"][2]["triage"]["priority"], "P1");

    let m = app.get("/metrics").await.text().await.unwrap();
    assert!(m.contains(r#"kesu_triage_priority_total{priority="P1",route="compliance"} 2"#), "{m}");
}

#[actix_web::test]
async fn repeat_contact_raises_priority_within_the_window() {
    let app = spawn_own_lexicons(Some(REPEAT_ONLY), |_| {}).await;
    let ask = |r: Option<&str>| {
        let body = match r {
            Some(r) => json!({"text": "退款还没到账", "customer_ref": r}),
            None => json!({"text": "退款还没到账"}),
        };
        let app = &app;
        async move {
            let resp = app.post_json("/v1/classify", &body).await;
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()["triage"].clone()
        }
    };
    let t = ask(Some("cust-42")).await;
    assert_eq!(
        (t["priority"].as_str(), t["route"].as_str(), t["prior_contacts"].as_u64()),
        (Some("P4"), Some("standard"), Some(0))
    );
    assert_eq!(t["rules_version"], "repeat-only-1");
    let t = ask(Some("cust-42")).await;
    assert_eq!(
        (t["priority"].as_str(), t["route"].as_str(), t["prior_contacts"].as_u64()),
        (Some("P3"), Some("senior_agent"), Some(1))
    );
    assert_eq!(t["reasons"], json!(["P3: repeat contact (1 earlier within 24 h) (rule repeat_contact)"]));
    let t = ask(Some("cust-42")).await;
    assert_eq!((t["priority"].as_str(), t["route"].as_str()), (Some("P2"), Some("retention")));
    assert_eq!(t["reasons"].as_array().unwrap().len(), 2);
    // another customer, and no customer at all
    assert_eq!(ask(Some("cust-7")).await["priority"], "P4");
    assert_eq!(ask(None).await["priority"], "P4");

    // within one batch, in input order
    let v: Value = app
        .post_json("/v1/classify", &json!({"items": [{"text": "a", "customer_ref": "b-1"}, {"text": "b"}, {"text": "c", "customer_ref": "b-1"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["items"][0]["triage"]["prior_contacts"], 0);
    assert!(v["items"][1]["triage"].get("prior_contacts").is_none());
    assert_eq!(v["items"][2]["triage"]["prior_contacts"], 1);
    assert_eq!(v["items"][2]["triage"]["priority"], "P3");

    let info: Value = app.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["triage"]["tracked_customers"], 3);
}

#[actix_web::test]
async fn repeat_window_and_capacity_come_from_the_configuration() {
    let app = spawn_own_lexicons(Some(REPEAT_ONLY), |s| {
        s.resources.repeat_window_secs = 1;
        s.resources.repeat_capacity = 1;
    })
    .await;
    let ask = |r: &'static str| {
        let app = &app;
        async move {
            app.post_json("/v1/classify", &json!({"text": "又是我", "customer_ref": r}))
                .await
                .json::<Value>()
                .await
                .unwrap()["triage"]
                .clone()
        }
    };
    assert_eq!(ask("x").await["prior_contacts"], 0);
    assert_eq!(ask("x").await["prior_contacts"], 1);
    // capacity 1: y evicts x
    assert_eq!(ask("y").await["prior_contacts"], 0);
    assert_eq!(ask("x").await["prior_contacts"], 0);
    // past the 1 s window
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let t = ask("x").await;
    assert_eq!((t["prior_contacts"].as_u64(), t["priority"].as_str()), (Some(0), Some("P4")));
    let info: Value = app.get("/v1/info").await.json().await.unwrap();
    assert_eq!(
        (info["triage"]["repeat_window_secs"].as_u64(), info["triage"]["repeat_capacity"].as_u64()),
        (Some(1), Some(1))
    );
}

#[actix_web::test]
async fn customer_ref_is_validated_and_only_for_classify() {
    let app = spawn().await;
    expect_error(
        app.post_json("/v1/classify", &json!({"text": "退款", "customer_ref": "  "})).await,
        422,
        "invalid_customer_ref",
    )
    .await;
    let long = "x".repeat(257);
    let msg = expect_error(
        app.post_json("/v1/classify", &json!({"items": [{"text": "退款"}, {"text": "退款", "customer_ref": long}]}))
            .await,
        422,
        "invalid_customer_ref",
    )
    .await;
    assert!(msg.contains("items[1].customer_ref"), "{msg}");
    expect_error(
        app.post_json("/v1/classify", &json!({"text": "退款", "customer_ref": 42})).await,
        422,
        "invalid_request",
    )
    .await;
    expect_error(
        app.post_json("/v1/classify", &json!({"items": [{"text": "退款"}], "customer_ref": "c"})).await,
        422,
        "invalid_request",
    )
    .await;
    for path in ["/v1/flags", "/v1/segment"] {
        let msg = expect_error(
            app.post_json(path, &json!({"text": "退款", "customer_ref": "c"})).await,
            422,
            "invalid_request",
        )
        .await;
        assert!(msg.contains("/v1/classify"), "{msg}");
    }
    assert_eq!(
        app.post_json("/v1/classify", &json!({"text": "退款", "customer_ref": "x".repeat(256)})).await.status(),
        200
    );
}

#[actix_web::test]
async fn openapi_documents_triage_and_reload() {
    let app = spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["paths"]["/admin/reload"]["post"].is_object(), "reload route documented");
    for s in ["Triage", "Priority", "ReloadReport", "TriageInfo", "ReloadInfo"] {
        assert!(doc["components"]["schemas"][s].is_object(), "schema {s} missing");
    }
    assert!(doc["components"]["schemas"]["ItemIn"]["properties"]["customer_ref"].is_object());
    assert!(doc["components"]["schemas"]["ClassifyText"]["properties"]["customer_ref"].is_object());
    assert!(doc["components"]["schemas"]["OneText"]["properties"]["customer_ref"].is_null(), "classify only");
    assert!(doc["components"]["schemas"]["Classified"]["properties"]["triage"].is_object());
    assert!(doc["components"]["schemas"]["ErrorDetail"]["properties"]["line"].is_object());
}
