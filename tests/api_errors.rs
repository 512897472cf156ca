//! Every bad-input case gets the JSON error shape with the right status.
mod common;

use common::*;
use serde_json::json;

#[actix_web::test]
async fn broken_json_and_invalid_utf8_are_400() {
    let app = spawn().await;
    for path in ["/v1/classify", "/v1/flags", "/v1/segment"] {
        expect_error(app.post_raw(path, Some("application/json"), b"{\"text\": ".to_vec()).await, 400, "invalid_json")
            .await;
        expect_error(app.post_raw(path, Some("application/json"), b"".to_vec()).await, 400, "invalid_json").await;
        expect_error(
            app.post_raw(path, Some("application/json"), b"{\"text\": \"\xe6\x88\"}".to_vec()).await,
            400,
            "invalid_utf8",
        )
        .await;
    }
}

#[actix_web::test]
async fn wrong_content_type_is_415() {
    let app = spawn().await;
    let body = br#"{"text": "hi"}"#.to_vec();
    expect_error(app.post_raw("/v1/classify", Some("text/plain"), body.clone()).await, 415, "unsupported_media_type")
        .await;
    expect_error(app.post_raw("/v1/flags", None, body.clone()).await, 415, "unsupported_media_type").await;
    expect_error(
        app.post_raw("/v1/segment", Some("application/json; charset=latin1"), body.clone()).await,
        415,
        "unsupported_media_type",
    )
    .await;
    // charset=utf-8 is fine
    let r = app.post_raw("/v1/flags", Some("application/json; charset=utf-8"), body).await;
    assert_eq!(r.status(), 200);
}

#[actix_web::test]
async fn oversized_body_items_and_texts_are_413() {
    let app = spawn_with(true, |s| {
        s.max_body_bytes = 10_000;
        s.max_items = 3;
        s.max_text_chars = 50;
    })
    .await;
    let big = "投".repeat(5_000);
    expect_error(app.post_json("/v1/classify", &json!({"text": big})).await, 413, "body_too_large").await;
    let items: Vec<_> = (0..4).map(|i| json!({"id": i, "text": "退款"})).collect();
    expect_error(app.post_json("/v1/classify", &json!({"items": items})).await, 413, "too_many_items").await;
    let msg = expect_error(
        app.post_json("/v1/flags", &json!({"items": [{"text": "ok"}, {"text": "长".repeat(51)}]})).await,
        413,
        "text_too_long",
    )
    .await;
    assert!(msg.contains("items[1]"), "{msg}");
}

#[actix_web::test]
async fn empty_text_and_wrong_types_are_422() {
    let app = spawn().await;
    for path in ["/v1/classify", "/v1/flags", "/v1/segment"] {
        expect_error(app.post_json(path, &json!({"text": ""})).await, 422, "empty_text").await;
        expect_error(app.post_json(path, &json!({"text": "  \n "})).await, 422, "empty_text").await;
        expect_error(app.post_json(path, &json!({"items": [{"text": "好"}, {"text": ""}]})).await, 422, "empty_text")
            .await;
        expect_error(app.post_json(path, &json!({"text": 12})).await, 422, "invalid_request").await;
        expect_error(app.post_json(path, &json!({"items": "x"})).await, 422, "invalid_request").await;
        expect_error(app.post_json(path, &json!({"items": [{"id": [1], "text": "x"}]})).await, 422, "invalid_request")
            .await;
        expect_error(app.post_json(path, &json!({"txt": "x"})).await, 422, "invalid_request").await;
        expect_error(app.post_json(path, &json!({})).await, 422, "invalid_request").await;
        expect_error(
            app.post_json(path, &json!({"text": "a", "items": [{"text": "b"}]})).await,
            422,
            "invalid_request",
        )
        .await;
        expect_error(app.post_json(path, &json!({"items": []})).await, 422, "empty_batch").await;
        expect_error(app.post_json(path, &json!([1, 2])).await, 422, "invalid_request").await;
    }
}

#[actix_web::test]
async fn unknown_route_and_wrong_method_are_json() {
    let app = spawn().await;
    expect_error(app.get("/nope").await, 404, "not_found").await;
    expect_error(app.get("/v1/classify").await, 405, "method_not_allowed").await;
    expect_error(app.post_json("/healthz", &json!({})).await, 405, "method_not_allowed").await;
}

/// 405 says which methods the path answers (`Allow`), and HEAD answers where GET does.
#[actix_web::test]
async fn wrong_method_says_allow_and_head_answers_like_get() {
    let app = spawn().await;
    let cases = [
        (reqwest::Method::POST, "/healthz", "GET, HEAD"),
        (reqwest::Method::GET, "/v1/classify", "POST"),
        (reqwest::Method::PUT, "/v1/reviews/x", "GET, HEAD, PATCH"),
        (reqwest::Method::HEAD, "/v1/conversations/c1/events", "GET"),
        (reqwest::Method::GET, "/admin/reload", "POST"),
    ];
    for (method, path, allow) in cases {
        let r = app.client.request(method.clone(), app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers().get("allow").and_then(|v| v.to_str().ok()), Some(allow), "{method} {path}");
    }
    for path in ["/healthz", "/readyz", "/openapi.json", "/console", "/review", "/v1/info"] {
        let get = app.get(path).await;
        let head = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(head.headers().get("content-type"), get.headers().get("content-type"), "HEAD {path}");
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD {path} sent a body");
    }
}

/// A JSON value of the wrong type where an enum goes is 422, like every other wrong type.
#[actix_web::test]
async fn wrong_enum_type_is_422() {
    let app = spawn().await;
    for role in [json!(5), json!(true), json!(null), json!(["customer"]), json!("boss")] {
        expect_error(
            app.post_json("/v1/conversations/e1/messages", &json!({"role": role, "text": "你好"})).await,
            422,
            "invalid_request",
        )
        .await;
    }
}

#[actix_web::test]
async fn overload_gets_503_with_retry_after_and_health_still_answers() {
    let app = spawn_with(true, |s| {
        s.max_concurrent_inference = 1;
        s.max_queued = 0;
        s.retry_after_secs = 3;
    })
    .await;
    let long = "客服态度太差，退款一直不到账，我要投诉到12315。".repeat(40);
    let items: Vec<_> = (0..64).map(|i| json!({"id": i, "text": long})).collect();
    let body = json!({"items": items});
    let mut handles = Vec::new();
    for _ in 0..6 {
        let (c, u, b) = (app.client.clone(), app.url("/v1/classify"), body.clone());
        handles.push(tokio::spawn(async move { c.post(u).json(&b).send().await.unwrap() }));
    }
    // while the model is busy, liveness answers
    let h = app.get("/healthz").await;
    assert_eq!(h.status(), 200);
    let mut ok = 0;
    let mut refused = 0;
    for h in handles {
        let r = h.await.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(r.headers().get("retry-after").unwrap(), "3");
                expect_error(r, 503, "overloaded").await;
                refused += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(ok >= 1, "at least one request runs");
    assert!(refused >= 1, "with one slot and no queue some requests are refused");
}

#[actix_web::test]
async fn request_timeout_is_503_not_a_hang() {
    let app = spawn_with(true, |s| s.request_timeout_ms = 1).await;
    let long = "服务太差".repeat(2000);
    let items: Vec<_> = (0..32).map(|_| json!({"text": long})).collect();
    let r = app.post_json("/v1/classify", &json!({"items": items})).await;
    assert!(r.headers().get("retry-after").is_some());
    expect_error(r, 503, "timeout").await;
}

#[actix_web::test]
async fn classify_without_model_is_503_but_flags_work() {
    let app = spawn_with(false, |_| {}).await;
    expect_error(app.post_json("/v1/classify", &json!({"text": "退款"})).await, 503, "not_ready").await;
    expect_error(app.get("/readyz").await, 503, "not_ready").await;
    assert_eq!(app.post_json("/v1/flags", &json!({"text": "我要起诉"})).await.status(), 200);
    assert_eq!(app.get("/healthz").await.status(), 200);
}

/// Every answer, errors included, says `nosniff`; the console pages carry a
/// policy that allows only their own inline code, and refuse framing.
#[actix_web::test]
async fn security_headers() {
    let app = spawn().await;
    let h = |r: &reqwest::Response, name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    for r in [
        app.get("/healthz").await,
        app.get("/nope").await,
        app.post_json("/v1/flags", &json!({"text": ""})).await,
        app.post_json("/v1/flags", &json!({"text": "我要起诉"})).await,
    ] {
        assert_eq!(h(&r, "x-content-type-options").as_deref(), Some("nosniff"), "{}", r.url());
        assert!(h(&r, "x-request-id").is_some(), "{}", r.url());
    }
    for path in ["/console", "/review"] {
        let r = app.get(path).await;
        let csp = h(&r, "content-security-policy").expect("CSP");
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("script-src 'sha256-") && !csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(h(&r, "x-frame-options").as_deref(), Some("DENY"));
        assert_eq!(h(&r, "referrer-policy").as_deref(), Some("no-referrer"));
    }
}

/// Model work whose request timed out stops at its next chunk and frees its
/// inference slot: a small request sent just after the 503 is served, where
/// (before the fix) it waited behind the abandoned batch and timed out too.
#[actix_web::test]
async fn timed_out_work_is_cancelled_and_frees_its_slot() {
    let text = "快递三天了还没到，客服也不回复，退款也不处理，我要投诉到12315！".repeat(8);
    // How long the tiny model takes per text here, to size a batch that runs >= 4 s uncancelled.
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), true);
    let pipeline = kesu_core::pipeline::Pipeline::load(&s.pipeline_options(), true).unwrap();
    let probe: Vec<&str> = vec![text.as_str(); 50];
    let t0 = std::time::Instant::now();
    pipeline.classify(&probe, false).unwrap();
    let per_text = t0.elapsed().as_secs_f64() / 50.0;
    let n = ((4.0 / per_text).ceil() as usize).clamp(200, 200_000);
    let app = spawn_with(true, |s| {
        s.max_concurrent_inference = 1;
        s.max_queued = 4;
        s.queue_timeout_ms = 10_000;
        s.request_timeout_ms = 400;
        s.max_items = n;
        s.max_body_bytes = 1 << 30;
        s.resources.model_batch_size = 1;
    })
    .await;
    let items: Vec<_> = (0..n).map(|i| json!({"id": i, "text": text})).collect();
    expect_error(app.post_json("/v1/classify", &json!({"items": items})).await, 503, "timeout").await;
    let t1 = std::time::Instant::now();
    let r = app.post_json("/v1/classify", &json!({"text": "退款"})).await;
    assert_eq!(r.status(), 200, "the abandoned batch ({n} texts, ~{:.1} s) still held the slot", n as f64 * per_text);
    assert!(t1.elapsed().as_secs_f64() < 0.4);
}

/// The OpenAPI document states what the server enforces (Schemathesis checks
/// the whole of it in `.ci/run`; this pins the parts found missing): one
/// schema per status enum, every error answer of every route, both export
/// formats, the limits, and the one-text-or-a-batch rule.
#[actix_web::test]
async fn the_openapi_document_states_the_limits_and_every_error_answer() {
    let app = spawn().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    assert!(schemas.get("Status").is_none(), "no shared Status schema");
    assert!(schemas["ReviewStatus"]["enum"].as_array().unwrap().contains(&json!("false_positive")));
    assert!(schemas["ConversationStatus"]["enum"].as_array().unwrap().contains(&json!("watch")));

    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let has = |s: &str| op["responses"].get(s).is_some();
            if op.get("security").is_some() {
                for s in ["401", "403", "429"] {
                    assert!(has(s), "{method} {path}: {s} undocumented");
                }
                assert!(op["responses"]["429"]["headers"]["Retry-After"].is_object(), "{method} {path}");
            }
            if op.get("requestBody").is_some() {
                for s in ["400", "413", "415", "422"] {
                    assert!(has(s), "{method} {path}: {s} undocumented");
                }
            }
            if let Some(r) = op["responses"].get("503") {
                assert!(r["headers"]["Retry-After"].is_object(), "{method} {path}: 503 without Retry-After");
            }
        }
    }
    let export = &doc["paths"]["/v1/reviews/export"]["get"]["responses"]["200"]["content"];
    assert!(export["application/x-ndjson"].is_object() && export["text/csv"].is_object(), "{export}");
    assert!(
        doc["paths"]["/v1/reviews/false-positive-terms"]["get"]["responses"]["200"]["content"]["text/csv"].is_object()
    );

    let params = doc["paths"]["/v1/reviews"]["get"]["parameters"].as_array().unwrap();
    let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!((limit["schema"]["minimum"].as_u64(), limit["schema"]["maximum"].as_u64()), (Some(1), Some(500)));
    assert!(params.iter().all(|p| p["name"] != "format"), "format is the export's");
    let export_params = doc["paths"]["/v1/reviews/export"]["get"]["parameters"].as_array().unwrap();
    assert!(
        export_params.iter().all(|p| p["name"] != "limit" && p["name"] != "after"),
        "the export streams everything"
    );

    assert_eq!(schemas["ClassifyRequest"]["oneOf"].as_array().unwrap().len(), 2);
    assert_eq!(schemas["ClassifyText"]["required"], json!(["text"]));
    assert_eq!(schemas["ClassifyText"]["additionalProperties"], json!(false));
    assert!(schemas["ClassifyText"]["properties"].get("items").is_none(), "text and items exclude each other");
    let items = &schemas["ClassifyBatch"]["properties"]["items"];
    assert_eq!((items["minItems"].as_u64(), items["maxItems"].as_u64()), (Some(1), Some(64)));
    assert_eq!(schemas["ItemIn"]["properties"]["text"]["maxLength"], 20_000);
    assert_eq!(schemas["ItemIn"]["properties"]["text"]["minLength"], 1);
    assert_eq!(schemas["PatchIn"]["required"], json!(["version"]));
    let id = &doc["paths"]["/v1/conversations/{id}"]["get"]["parameters"][0]["schema"];
    assert!(id["pattern"].as_str().unwrap().contains("{1,128}"), "{id}");
}

/// What the document allows, the server accepts: a JSON Schema integer may
/// be written `7.0`; beyond 2^53 or with a fraction it is refused. The
/// queue refuses the export's parameters and the export the queue's page.
#[actix_web::test]
async fn integral_numbers_and_route_specific_parameters() {
    let app = spawn().await;
    let r = app.post_json("/v1/flags", &json!({"items": [{"id": 7.0, "text": "我要起诉"}]})).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["items"][0]["id"], json!(7));
    for bad in [json!(1.5), json!(1e300), json!(-9.3e18)] {
        let r = app.post_json("/v1/flags", &json!({"items": [{"id": bad, "text": "我要起诉"}]})).await;
        expect_error(r, 422, "invalid_request").await;
    }
    let v: serde_json::Value =
        app.post_json("/v1/classify", &json!({"text": "再不退款我就去法院起诉你们"})).await.json().await.unwrap();
    let review = v["review_id"].as_str().expect("a litigation threat is stored").to_string();
    let r = app
        .client
        .patch(app.url(&format!("/v1/reviews/{review}")))
        .json(&json!({"version": 1.0, "status": "in_review"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "version 1.0 is version 1");
    for q in ["/v1/reviews?format=csv", "/v1/reviews?min_severity=4", "/v1/reviews/export?limit=5"] {
        expect_error(app.get(q).await, 422, "invalid_query").await;
    }
    assert_eq!(app.get("/v1/reviews?limit=5&status=in_review").await.status(), 200);
    expect_error(app.get("/v1/reviews?status=new,%20in_review").await, 422, "invalid_query").await;
    // `channel` is classify's, like `customer_ref` (the document's TextsRequest has neither).
    for body in
        [json!({"text": "我要起诉", "channel": "app"}), json!({"items": [{"text": "我要起诉", "channel": "app"}]})]
    {
        expect_error(app.post_json("/v1/flags", &body).await, 422, "invalid_request").await;
    }
    assert_eq!(app.get("/v1/reviews/export?format=csv&status=all").await.status(), 200);
}
