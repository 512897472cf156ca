//! Happy paths of the HTTP API against the real app on a random port.
mod common;

use common::*;
use serde_json::{json, Value};

fn assert_classified(v: &Value) {
    let scores = v["category"]["scores"].as_object().expect("scores");
    assert_eq!(scores.len(), 3);
    let sum: f64 = scores.values().map(|x| x.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-3, "category scores sum {sum}");
    let label = v["category"]["label"].as_str().unwrap();
    assert!(["product", "service", "information_security"].contains(&label));
    let p = v["emotion"]["probabilities"].as_array().unwrap();
    assert_eq!(p.len(), 4);
    let sum: f64 = p.iter().map(|x| x.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-3);
    let level = v["emotion"]["level"].as_u64().unwrap();
    assert!(level <= 3);
    assert_eq!(v["emotion"]["tag"], ["calm", "dissatisfied", "angry", "escalating"][level as usize]);
    let s = v["emotion"]["escalation_score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&s));
    assert!(v["model"]["model_version"].is_string());
    assert!(v["took_ms"].as_f64().unwrap() >= 0.0);
    assert!(v["flags"]["hits"].is_array());
}

#[actix_web::test]
async fn classify_one_text() {
    let app = spawn().await;
    let r =
        app.post_json("/v1/classify", &json!({"id": "c-1", "text": "我要起訴你們！再不退款就去１２３１５投诉"})).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-request-id").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "c-1");
    assert_classified(&v);
    assert!(v.get("segments").is_none(), "segments only on request");
    let flags: Vec<&str> = v["flags"]["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(flags.contains(&"litigation") && flags.contains(&"regulator"), "{flags:?}");
    let hit = v["flags"]["hits"].as_array().unwrap().iter().find(|h| h["flag"] == "litigation").unwrap();
    assert_eq!(hit["text"], "起訴");
    assert_eq!((hit["start"].as_u64(), hit["end"].as_u64()), (Some(2), Some(4)));
    assert_eq!(v["flags"]["needs_review"], true);
}

#[actix_web::test]
async fn batch_keeps_input_order_and_ids() {
    let app = spawn().await;
    // different lengths so the pipeline's length sort really reorders them
    let texts: Vec<String> = (0..40).map(|i| format!("第{i}条：{}", "快递太慢了，".repeat((i * 7) % 13 + 1))).collect();
    let items: Vec<Value> = texts.iter().enumerate().map(|(i, t)| json!({"id": format!("x{i}"), "text": t})).collect();
    let r = app.post_json("/v1/classify", &json!({"items": items, "segments": true})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let out = v["items"].as_array().unwrap();
    assert_eq!(out.len(), 40, "one result per input");
    for (i, o) in out.iter().enumerate() {
        assert_eq!(o["id"], format!("x{i}"));
        assert_classified(o);
        let joined: String = o["segments"].as_array().unwrap().iter().map(|s| s["word"].as_str().unwrap()).collect();
        assert_eq!(joined, texts[i], "segments belong to their own text");
    }
    assert!(v["model_version"].is_string());
    // default ids are positions
    let r = app.post_json("/v1/classify", &json!({"items": [{"text": "好"}, {"text": "差"}]})).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["items"][0]["id"], 0);
    assert_eq!(v["items"][1]["id"], 1);
}

#[actix_web::test]
async fn batch_results_equal_single_results() {
    let app = spawn().await;
    let texts = ["屏幕坏了", "客服三天不回，太过分了！！！", "我的信用卡被盗刷了，已经报警", "谢谢，很满意"];
    let items: Vec<Value> = texts.iter().map(|t| json!({"text": t})).collect();
    let batch: Value = app.post_json("/v1/classify", &json!({"items": items})).await.json().await.unwrap();
    for (i, t) in texts.iter().enumerate() {
        let one: Value = app.post_json("/v1/classify", &json!({"text": t})).await.json().await.unwrap();
        for k in 0..4 {
            let a = one["emotion"]["probabilities"][k].as_f64().unwrap();
            let b = batch["items"][i]["emotion"]["probabilities"][k].as_f64().unwrap();
            assert!((a - b).abs() < 1e-4, "text {i}: single {a} vs batch {b}");
        }
        assert_eq!(one["category"]["label"], batch["items"][i]["category"]["label"]);
    }
}

#[actix_web::test]
async fn concurrent_requests_each_get_their_own_answer() {
    let app = spawn().await;
    let mut handles = Vec::new();
    for i in 0..16 {
        let (c, u) = (app.client.clone(), app.url("/v1/classify"));
        let text = format!("订单{i}号：{}", "退款".repeat(i + 1));
        handles.push(tokio::spawn(async move {
            let r = c.post(u).json(&json!({"id": i, "text": text, "segments": true})).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            (i, text, v)
        }));
    }
    for h in handles {
        let (i, text, v) = h.await.unwrap();
        assert_eq!(v["id"], i);
        let joined: String = v["segments"].as_array().unwrap().iter().map(|s| s["word"].as_str().unwrap()).collect();
        assert_eq!(joined, text);
    }
}

#[actix_web::test]
async fn long_text_is_windowed_and_flags_scan_everything() {
    let app = spawn_with(true, |s| {
        s.resources.model_max_tokens = 32;
        s.resources.model_max_windows = 2;
    })
    .await;
    let text = format!("{}最后我要报警", "服务很差。".repeat(200));
    let v: Value = app.post_json("/v1/classify", &json!({"text": text})).await.json().await.unwrap();
    assert_eq!(v["model"]["windows"], 2);
    assert_eq!(v["model"]["truncated"], true);
    let hits = v["flags"]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["start"], 1000 + 4);
}

#[actix_web::test]
async fn flags_and_segment_endpoints() {
    let app = spawn().await;
    let v: Value =
        app.post_json("/v1/flags", &json!({"text": "我不想起诉，但是会打12315"})).await.json().await.unwrap();
    let hits = v["flags"].as_array().map(|_| v["hits"].as_array().unwrap()).unwrap();
    let sue = hits.iter().find(|h| h["flag"] == "litigation").unwrap();
    assert_eq!(sue["negated"], true);
    let reg = hits.iter().find(|h| h["flag"] == "regulator").unwrap();
    assert_eq!(reg["negated"], false);
    let v: Value = app
        .post_json("/v1/flags", &json!({"items": [{"id": "a", "text": "没事"}, {"id": "b", "text": "遭遇暴力催收"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["items"][0]["id"], "a");
    assert_eq!(v["items"][0]["hits"].as_array().unwrap().len(), 0);
    assert_eq!(v["items"][1]["flags"][0], "collection_abuse");
    assert!(v["lexicon_version"].is_string());
    let v: Value = app.post_json("/v1/segment", &json!({"text": "我们要集体诉讼"})).await.json().await.unwrap();
    let words: Vec<&str> = v["segments"].as_array().unwrap().iter().map(|s| s["word"].as_str().unwrap()).collect();
    assert!(words.contains(&"集体诉讼"), "{words:?}");
}

#[actix_web::test]
async fn health_ready_info_metrics_openapi() {
    let app = spawn().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let r: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(r["status"], "ready");
    let info: Value = app.get("/v1/info").await.json().await.unwrap();
    assert!(info["model"]["version"].is_string());
    assert_eq!(info["model"]["category_labels"], json!(["product", "service", "information_security"]));
    assert!(info["lexicon"]["term_count"].as_u64().unwrap() >= 400);
    assert!(info["lexicon"]["user_dict_words"].as_u64().unwrap() >= 100);
    assert_eq!(info["limits"]["max_items"], 64);

    app.post_json("/v1/classify", &json!({"text": "我要起诉"})).await;
    app.post_json("/v1/classify", &json!({"text": ""})).await;
    let m = app.get("/metrics").await.text().await.unwrap();
    assert!(m.contains(r#"kesu_http_requests_total{route="/v1/classify",status="200"} 1"#), "{m}");
    assert!(m.contains(r#"kesu_http_requests_total{route="/v1/classify",status="422"} 1"#), "{m}");
    assert!(m.contains("kesu_items_classified_total 1"));
    assert!(m.contains(r#"kesu_flags_raised_total{flag="litigation"} 1"#));
    assert!(m.contains("kesu_escalation_level_total{level="));
    assert!(m.contains("kesu_http_request_duration_seconds_bucket"));

    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    for p in
        ["/v1/classify", "/v1/flags", "/v1/segment", "/healthz", "/readyz", "/v1/info", "/metrics", "/openapi.json"]
    {
        assert!(doc["paths"][p].is_object(), "{p} missing from the OpenAPI document");
    }
    for s in ["TextsRequest", "ClassifyResponse", "FlagReport", "FlagHit", "ErrorBody", "Info"] {
        assert!(doc["components"]["schemas"][s].is_object(), "schema {s} missing");
    }
}
