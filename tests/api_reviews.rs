//! The review workflow over HTTP on the real app and a real store: classify
//! stores what the rule picks (PII-masked, spans intact), the queue filters
//! and pages, status moves with optimistic concurrency and an audit log,
//! streamed export, false-positive counts per term, and a database that goes
//! away mid-run (503, nothing stored).
mod common;

use common::{expect_error, spawn_with, PgServer, TestApp};
use serde_json::{json, Value};

/// Texts with a review-worthy flag, and calm ones without.
const FLAGGED: &[&str] = &[
    "你们再不退款我就去12315投诉，电话13812345678随时找我",
    "已经找了律师，准备起诉你们公司",
    "我要向银保监会举报你们的暴力催收",
    "信不信我把这事发到微博上曝光你们",
    "客服态度恶劣，我要去消费者协会投诉",
];
const CALM: &[&str] = &["东西收到了，包装挺好的", "请问这个快递什么时候能到"];

/// An app that stores only by flags (the tiny model's escalation is arbitrary).
async fn app() -> TestApp {
    spawn_with(true, |s| s.store.store_min_escalation = Some(4)).await
}

async fn classify(app: &TestApp, texts: &[&str]) -> Vec<Value> {
    let items: Vec<Value> =
        texts.iter().enumerate().map(|(i, t)| json!({"id": format!("t{i}"), "text": t, "channel": "app"})).collect();
    let r = app.post_json("/v1/classify", &json!({"items": items})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["items"].as_array().unwrap().clone()
}

async fn json_of(r: reqwest::Response) -> Value {
    assert!(r.status().is_success(), "status {}", r.status());
    r.json().await.unwrap()
}

async fn patch(app: &TestApp, id: &str, body: Value, actor: &str) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/v1/reviews/{id}")))
        .header("x-kesu-actor", actor)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn classify_stores_exactly_the_items_the_rule_picks_masked_with_spans_intact() {
    let app = app().await;
    let mut texts = FLAGGED.to_vec();
    texts.extend(CALM);
    let items = classify(&app, &texts).await;
    let mut stored = 0;
    for (it, text) in items.iter().zip(&texts) {
        let needs = it["flags"]["needs_review"].as_bool().unwrap();
        assert_eq!(it["review_id"].is_string(), needs, "stored iff the rule matches: {it}");
        if !needs {
            continue;
        }
        stored += 1;
        let item = json_of(app.get(&format!("/v1/reviews/{}", it["review_id"].as_str().unwrap())).await).await;
        assert_eq!(item["status"], "new");
        assert_eq!(item["version"], 1);
        assert_eq!(item["channel"], "app");
        assert_eq!(item["caller_id"], it["id"]);
        assert_eq!(item["priority"], it["triage"]["priority"]);
        assert_eq!(item["route"], it["triage"]["route"]);
        let s = item["text"].as_str().unwrap();
        assert_eq!(s.chars().count(), text.chars().count(), "masking keeps the length");
        assert!(!s.contains("13812345678"), "phone masked: {s}");
        let chars: Vec<char> = s.chars().collect();
        for h in item["result"]["flags"]["hits"].as_array().unwrap() {
            let (a, b) = (h["start"].as_u64().unwrap() as usize, h["end"].as_u64().unwrap() as usize);
            assert_eq!(
                chars[a..b].iter().collect::<String>(),
                h["text"].as_str().unwrap(),
                "span points into the stored text"
            );
        }
        let hist = json_of(app.get(&format!("/v1/reviews/{}/history", item["id"].as_str().unwrap())).await).await;
        assert_eq!(hist[0]["action"], "stored");
    }
    assert!(stored >= 4, "the flagged texts are stored ({stored})");
    let q = json_of(app.get("/v1/reviews?limit=100").await).await;
    assert_eq!(q["items"].as_array().unwrap().len(), stored);
    // the response's own texts are not masked: the caller sent them
    assert!(items[0]["flags"]["hits"].as_array().is_some());
}

#[actix_web::test]
async fn queue_filters_pages_and_orders_by_priority_then_age() {
    let app = app().await;
    for _ in 0..3 {
        classify(&app, FLAGGED).await;
    }
    let all = json_of(app.get("/v1/reviews?limit=500").await).await;
    let all = all["items"].as_array().unwrap().clone();
    assert!(all.len() >= 12);
    // order: priority rank, then received time
    let keys: Vec<(String, String)> = all
        .iter()
        .map(|i| (i["priority"].as_str().unwrap().into(), i["received_at"].as_str().unwrap().into()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // keyset pages of 5 visit every item once, in the same order
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(a) => format!("/v1/reviews?limit=5&after={a}"),
            None => "/v1/reviews?limit=5".into(),
        };
        let page = json_of(app.get(&url).await).await;
        seen.extend(page["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, all.iter().map(|i| i["id"].as_str().unwrap().to_string()).collect::<Vec<_>>());
    // filters
    let lit = json_of(app.get("/v1/reviews?flag=litigation&limit=500").await).await;
    let lit = lit["items"].as_array().unwrap();
    assert!(!lit.is_empty());
    assert!(lit.iter().all(|i| i["flags"].as_array().unwrap().iter().any(|f| f == "litigation")));
    let q = json_of(app.get(&format!("/v1/reviews?q={}&limit=500", urlencode("律师"))).await).await;
    assert_eq!(q["items"].as_array().unwrap().len(), 3);
    let p = all[0]["priority"].as_str().unwrap();
    let byp = json_of(app.get(&format!("/v1/reviews?priority={p}&limit=500")).await).await;
    assert!(byp["items"].as_array().unwrap().iter().all(|i| i["priority"] == p));
    let sev = json_of(app.get("/v1/reviews?min_severity=3&limit=500").await).await;
    assert!(sev["items"].as_array().unwrap().iter().all(|i| i["max_severity"].as_u64().unwrap() >= 3));
    let future = json_of(app.get("/v1/reviews?from=2999-01-01T00:00:00Z").await).await;
    assert!(future["items"].as_array().unwrap().is_empty());
    // bad queries are 422s
    expect_error(app.get("/v1/reviews?flag=nonsense").await, 422, "invalid_query").await;
    expect_error(app.get("/v1/reviews?after=garbage").await, 422, "invalid_cursor").await;
    expect_error(app.get("/v1/reviews?limit=0").await, 422, "invalid_query").await;
    expect_error(app.get("/v1/reviews?from=yesterday").await, 422, "invalid_query").await;
    expect_error(app.get("/v1/reviews/nope").await, 404, "unknown_item").await;
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[actix_web::test]
async fn status_moves_are_versioned_audited_and_leave_the_queue() {
    let app = app().await;
    let items = classify(&app, &FLAGGED[..1]).await;
    let id = items[0]["review_id"].as_str().unwrap().to_string();
    let r = patch(&app, &id, json!({"version": 1, "status": "in_review", "assignee": "alice"}), "alice").await;
    assert_eq!(r.headers()["etag"], "\"2\"");
    let v = json_of(r).await;
    assert_eq!(
        (v["status"].as_str(), v["version"].as_i64(), v["assignee"].as_str()),
        (Some("in_review"), Some(2), Some("alice"))
    );
    // stale version: 409, nothing changed
    expect_error(patch(&app, &id, json!({"version": 1, "status": "confirmed"}), "bob").await, 409, "version_conflict")
        .await;
    expect_error(patch(&app, &id, json!({"status": "confirmed"}), "bob").await, 422, "missing_version").await;
    // If-Match works as the version; notes are PII-masked
    let r = app
        .client
        .patch(app.url(&format!("/v1/reviews/{id}")))
        .header("if-match", "\"2\"")
        .header("x-kesu-actor", "bob")
        .json(&json!({"status": "confirmed", "note": "客户电话13900001111已回访"}))
        .send()
        .await
        .unwrap();
    let v = json_of(r).await;
    assert_eq!(v["status"], "confirmed");
    assert!(!v["note"].as_str().unwrap().contains("13900001111"));
    // not a permitted move: a confirmed item cannot go back to new
    expect_error(patch(&app, &id, json!({"version": 3, "status": "new"}), "bob").await, 409, "invalid_transition")
        .await;
    // confirmed items leave the open queue but stay in `status=all`
    let open = json_of(app.get("/v1/reviews").await).await;
    assert!(open["items"].as_array().unwrap().iter().all(|i| i["id"] != id.as_str()));
    let all = json_of(app.get("/v1/reviews?status=all").await).await;
    assert!(all["items"].as_array().unwrap().iter().any(|i| i["id"] == id.as_str()));
    // the audit log: who, when, what, in order
    let h = json_of(app.get(&format!("/v1/reviews/{id}/history")).await).await;
    let h = h.as_array().unwrap();
    assert_eq!(h.iter().map(|c| c["action"].as_str().unwrap()).collect::<Vec<_>>(), ["stored", "updated", "updated"]);
    assert_eq!(h.iter().map(|c| c["actor"].as_str().unwrap()).collect::<Vec<_>>(), ["intake", "alice", "bob"]);
    assert_eq!(h[2]["changes"]["status"]["to"], "confirmed", "{}", h[2]);
    assert!(h.iter().all(|c| c["at"].as_str().unwrap().ends_with('Z')));
}

#[actix_web::test]
async fn of_eight_reviewers_marking_one_item_exactly_one_wins() {
    let app = app().await;
    let id = classify(&app, &FLAGGED[1..2]).await[0]["review_id"].as_str().unwrap().to_string();
    let tries = (0..8).map(|i| {
        let (app, id) = (&app, id.clone());
        async move {
            patch(app, &id, json!({"version": 1, "status": "in_review", "assignee": format!("r{i}")}), &format!("r{i}"))
                .await
                .status()
                .as_u16()
        }
    });
    let mut codes = futures_util::future::join_all(tries).await;
    codes.sort();
    assert_eq!(codes, [200, 409, 409, 409, 409, 409, 409, 409]);
    let h = json_of(app.get(&format!("/v1/reviews/{id}/history")).await).await;
    assert_eq!(h.as_array().unwrap().len(), 2, "one change recorded");
}

#[actix_web::test]
async fn export_streams_every_item_as_jsonl_or_csv_and_false_positives_count_per_term() {
    let app = app().await;
    for _ in 0..120 {
        // > one export page (500) needs many items: send batches
        if json_of(app.get("/v1/reviews?status=all&limit=500").await).await["next"].is_string() {
            break;
        }
        classify(&app, FLAGGED).await;
    }
    let n = {
        let mut n = 0;
        let mut after: Option<String> = None;
        loop {
            let url = after
                .as_ref()
                .map(|a| format!("/v1/reviews?status=all&limit=500&after={a}"))
                .unwrap_or("/v1/reviews?status=all&limit=500".into());
            let p = json_of(app.get(&url).await).await;
            n += p["items"].as_array().unwrap().len();
            match p["next"].as_str() {
                Some(a) => after = Some(a.into()),
                None => break n,
            }
        }
    };
    assert!(n > 500);
    let r = app.get("/v1/reviews/export?format=jsonl").await;
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let body = r.text().await.unwrap();
    let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), n);
    let r = app.get("/v1/reviews/export?format=csv&flag=litigation").await;
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let body = r.text().await.unwrap();
    let mut rd = csv::Reader::from_reader(body.as_bytes());
    assert_eq!(rd.headers().unwrap().iter().next(), Some("id"));
    let rows: Vec<_> = rd.records().map(|r| r.unwrap()).collect();
    assert!(!rows.is_empty() && rows.len() < n);
    assert!(rows.iter().all(|r| r.get(7).unwrap().contains("litigation")));
    expect_error(app.get("/v1/reviews/export?format=xml").await, 422, "invalid_query").await;

    // CSV injection (issue 14): cells a spreadsheet would run as formulas get a leading '.
    let items = json!({"items": [{"id": "f1", "text": "=HYPERLINK(\"http://x\",\"我要起诉你们\")", "channel": "@app", "customer_ref": "+861380000"}]});
    assert_eq!(app.post_json("/v1/classify", &items).await.status(), 200);
    let body = app.get("/v1/reviews/export?format=csv&q=HYPERLINK").await.text().await.unwrap();
    let mut rd = csv::Reader::from_reader(body.as_bytes());
    let rows: Vec<_> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1, "{body}");
    assert_eq!(rows[0].get(10), Some("'@app"));
    assert_eq!(rows[0].get(11), Some("'+861380000"));
    assert!(rows[0].get(15).unwrap().starts_with("'=HYPERLINK("), "{body}");

    // mark two litigation items false positive: their terms are counted
    let lit = json_of(app.get("/v1/reviews?flag=litigation&limit=2").await).await;
    let mut terms = std::collections::BTreeSet::new();
    for it in lit["items"].as_array().unwrap() {
        let id = it["id"].as_str().unwrap();
        let v = json_of(patch(&app, id, json!({"version": 1, "status": "in_review"}), "r").await).await;
        json_of(patch(&app, id, json!({"version": v["version"], "status": "false_positive"}), "r").await).await;
        for h in it["result"]["flags"]["hits"].as_array().unwrap() {
            if h["flag"] == "litigation" {
                terms.insert(h["term"].as_str().unwrap().to_string());
            }
        }
    }
    let fp = json_of(app.get("/v1/reviews/false-positive-terms").await).await;
    let fp = fp.as_array().unwrap();
    for t in &terms {
        let row = fp.iter().find(|r| r["term"] == t.as_str()).unwrap_or_else(|| panic!("{t} counted: {fp:?}"));
        assert_eq!(row["flag"], "litigation");
        assert!(row["items"].as_u64().unwrap() >= 1);
    }
    let csv = app.get("/v1/reviews/false-positive-terms?format=csv").await.text().await.unwrap();
    assert!(csv.starts_with("term,flag,items,negated"));
}

#[actix_web::test]
async fn without_a_store_classify_still_answers_and_reviews_say_503() {
    let app = spawn_with(true, |s| s.store.no_store = true).await;
    let items = classify(&app, FLAGGED).await;
    assert!(items.iter().all(|i| i.get("review_id").is_none()));
    expect_error(app.get("/v1/reviews").await, 503, "store_disabled").await;
}

/// A shared PostgreSQL that goes away mid-run: classify answers 503
/// `store_unavailable` (not 200), and nothing of the failed requests is stored.
/// With insights on, every item is counted in the store, so even a text the
/// store rule does not pick gets 503 (and is counted once when retried).
#[actix_web::test]
async fn postgres_store_going_away_fails_requests_instead_of_losing_items() {
    store_going_away(true).await;
    store_going_away(false).await;
}

async fn store_going_away(insights: bool) {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.url();
    let app = spawn_with(true, move |s| {
        s.store.database_url = url;
        s.store.store_min_escalation = Some(4);
        s.store.insights = insights;
    })
    .await;
    let ok = classify(&app, FLAGGED).await;
    let stored: Vec<String> = ok.iter().filter_map(|i| i["review_id"].as_str().map(String::from)).collect();
    assert!(!stored.is_empty());
    pg.stop();
    let r = app.post_json("/v1/classify", &json!({"items": [{"text": FLAGGED[0]}, {"text": FLAGGED[1]}]})).await;
    let msg = expect_error(r, 503, "store_unavailable").await;
    assert!(msg.contains("nothing was stored"), "{msg}");
    let r = app.post_json("/v1/classify", &json!({"text": CALM[0]})).await;
    if insights {
        // counted in the store: no answer without it (the caller retries)
        expect_error(r, 503, "store_unavailable").await;
    } else {
        // a text that the rule does not pick needs no store and still works
        assert_eq!(r.status(), 200);
    }
    expect_error(app.get("/v1/reviews").await, 503, "store_unavailable").await;
    pg.start_again();
    let all = json_of(app.get("/v1/reviews?status=all&limit=500").await).await;
    let ids: Vec<&str> = all["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), stored.len(), "exactly the acknowledged items are stored");
    assert!(stored.iter().all(|s| ids.contains(&s.as_str())));
}

#[actix_web::test]
async fn every_review_route_is_in_the_openapi_document_with_its_role() {
    let app = app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    for (p, m) in [
        ("/v1/reviews", "get"),
        ("/v1/reviews/{id}", "get"),
        ("/v1/reviews/{id}", "patch"),
        ("/v1/reviews/{id}/history", "get"),
        ("/v1/reviews/export", "get"),
        ("/v1/reviews/false-positive-terms", "get"),
    ] {
        let op = &doc["paths"][p][m];
        assert!(op.is_object(), "{m} {p} documented");
        assert_eq!(op["security"][0]["api_key"], json!([]), "{m} {p} needs a key");
        assert!(op["description"].as_str().unwrap().contains("`reviewer` role"), "{m} {p}");
    }
    assert!(doc["paths"]["/review"]["get"].is_object());
    assert!(doc["paths"]["/review"]["get"]["security"].is_null(), "the page itself is open");
    assert!(doc["paths"]["/v1/classify"]["post"]["description"].as_str().unwrap().contains("`intake` role"));
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
}

fn keyed(items: &[(&str, &str, Option<&str>)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(key, text, customer)| json!({"text": text, "idempotency_key": key, "customer_ref": customer}))
        .collect();
    json!({"items": items})
}

async fn queue_len(app: &TestApp) -> usize {
    json_of(app.get("/v1/reviews?status=all&limit=500").await).await["items"].as_array().unwrap().len()
}

/// Idempotency (issue 14): a retried request stores nothing again and answers
/// the first review ids; a reused key with another text is 422; of eight
/// concurrent requests with one key exactly one stores.
#[actix_web::test]
async fn a_retried_item_is_stored_and_counted_once() {
    let app = app().await;
    let body = keyed(&[("k-1", FLAGGED[1], Some("c-9")), ("k-2", CALM[0], Some("c-9")), ("k-3", FLAGGED[2], None)]);
    let first = json_of(app.post_json("/v1/classify", &body).await).await;
    let stored_first: Vec<Value> = first["items"].as_array().unwrap().iter().map(|i| i["review_id"].clone()).collect();
    assert!(stored_first[0].is_string() && stored_first[1].is_null() && stored_first[2].is_string(), "{first}");
    assert!(first["items"][0].get("replayed").is_none(), "a first answer is not a replay");
    assert_eq!(first["items"][1]["triage"]["prior_contacts"], 1, "{}", first["items"][1]["triage"]);
    let n = queue_len(&app).await;
    let again = json_of(app.post_json("/v1/classify", &body).await).await;
    for (i, it) in again["items"].as_array().unwrap().iter().enumerate() {
        assert_eq!(it["replayed"], true, "{it}");
        assert_eq!(it["review_id"], stored_first[i], "the first answer's review id");
    }
    assert_eq!(queue_len(&app).await, n, "a retry stores nothing");
    // the replay added no repeat contact: a new item of the same customer is the second contact
    let next = json_of(app.post_json("/v1/classify", &keyed(&[("k-4", CALM[1], Some("c-9"))])).await).await;
    assert_eq!(next["items"][0]["triage"]["prior_contacts"], 2, "{}", next["items"][0]["triage"]);
    // a single text with a key
    let one = json!({"text": FLAGGED[3], "idempotency_key": "single-1"});
    let a = json_of(app.post_json("/v1/classify", &one).await).await;
    let b = json_of(app.post_json("/v1/classify", &one).await).await;
    assert_eq!((a["review_id"].is_string(), &b["review_id"], &b["replayed"]), (true, &a["review_id"], &json!(true)));
    // the same key with another text: refused before any work, nothing stored
    let n = queue_len(&app).await;
    let msg = expect_error(
        app.post_json("/v1/classify", &keyed(&[("k-1", FLAGGED[4], None)])).await,
        422,
        "idempotency_key_reused",
    )
    .await;
    assert!(msg.contains("k-1") && msg.contains("different text"), "{msg}");
    assert_eq!(queue_len(&app).await, n);
    // malformed keys
    for bad in [json!(""), json!("has space"), json!("键"), json!("x".repeat(129))] {
        let r = app.post_json("/v1/classify", &json!({"items": [{"text": CALM[0], "idempotency_key": bad}]})).await;
        expect_error(r, 422, "invalid_idempotency_key").await;
    }
    let r = app.post_json("/v1/classify", &keyed(&[("dup", CALM[0], None), ("dup", CALM[1], None)])).await;
    expect_error(r, 422, "invalid_idempotency_key").await;
    let r = app.post_json("/v1/flags", &json!({"text": FLAGGED[0], "idempotency_key": "f"})).await;
    expect_error(r, 422, "invalid_idempotency_key").await;
    let r = app.post_json("/v1/classify", &json!({"items": [{"text": CALM[0]}], "idempotency_key": "top"})).await;
    expect_error(r, 422, "invalid_request").await;
    // eight concurrent requests with one key: one stores, seven are replays
    let n = queue_len(&app).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url) = (app.client.clone(), app.url("/v1/classify"));
        tasks.push(tokio::spawn(async move {
            let r =
                client.post(url).json(&json!({"text": FLAGGED[0], "idempotency_key": "race"})).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut replays = 0;
    for t in tasks {
        let v = t.await.unwrap();
        ids.insert(v["review_id"].as_str().unwrap().to_string());
        replays += (v["replayed"] == true) as usize;
    }
    assert_eq!((ids.len(), replays), (1, 7), "one stored item, seven replays");
    assert_eq!(queue_len(&app).await, n + 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("kesu_idempotent_replays_total 11"), "3 + 1 replayed above and 7 in the race");
}

/// Two replicas on one PostgreSQL: the same keyed item sent to both is stored once.
#[actix_web::test]
async fn two_replicas_on_postgres_store_a_keyed_item_once() {
    let Some(pg) = PgServer::start() else { return };
    let (u1, u2) = (pg.url(), pg.url());
    let a = spawn_with(true, move |s| {
        s.store.database_url = u1;
        s.store.store_min_escalation = Some(4);
    })
    .await;
    let b = spawn_with(true, move |s| {
        s.store.database_url = u2;
        s.store.store_min_escalation = Some(4);
    })
    .await;
    let body = keyed(&[("pg-1", FLAGGED[1], Some("c")), ("pg-2", FLAGGED[2], None)]);
    let (ra, rb) = tokio::join!(a.post_json("/v1/classify", &body), b.post_json("/v1/classify", &body));
    let (va, vb) = (json_of(ra).await, json_of(rb).await);
    for i in 0..2 {
        assert_eq!(va["items"][i]["review_id"], vb["items"][i]["review_id"], "one item, both answers name it");
        assert_eq!(
            (va["items"][i]["replayed"] == true) as u8 + (vb["items"][i]["replayed"] == true) as u8,
            1,
            "exactly one of the two replicas stored it"
        );
    }
    assert_eq!(queue_len(&a).await, 2);
    let r = b.post_json("/v1/classify", &keyed(&[("pg-1", FLAGGED[3], None)])).await;
    expect_error(r, 422, "idempotency_key_reused").await;
}

/// Replicas share repeat contacts on PostgreSQL (issue 17): a customer seen
/// by one replica is a repeat contact on the other, as with one process;
/// with `KESU_REPEAT_STORE=memory` each replica only knows its own.
#[actix_web::test]
async fn two_replicas_on_postgres_share_repeat_contacts() {
    let Some(pg) = PgServer::start() else { return };
    let replica = |url: String, repeat: &'static str| {
        spawn_with(true, move |s| {
            s.store.database_url = url;
            s.store.repeat_store = repeat.into();
            s.store.customer_key = Some("a-secret-of-at-least-16-bytes".into());
        })
    };
    let (a, b) = (replica(pg.url(), "auto").await, replica(pg.url(), "auto").await);
    let prior = |v: Value| v["triage"]["prior_contacts"].as_u64();
    async fn say(app: &TestApp, who: &str) -> Value {
        json_of(app.post_json("/v1/classify", &json!({"text": "快递三天没到", "customer_ref": who})).await).await
    }
    assert_eq!(prior(say(&a, "13800138000").await), Some(0));
    assert_eq!(prior(say(&b, "13800138000").await), Some(1), "the other replica knows the first contact");
    assert_eq!(prior(say(&a, "13800138000").await), Some(2));
    assert_eq!(prior(say(&b, "13900139000").await), Some(0), "another customer");
    let info = json_of(b.get("/v1/info").await).await;
    assert_eq!(info["triage"]["repeat_store"], "store");

    // Erasing the customer forgets their contacts on every replica.
    let r = a.post_json("/v1/customers/erase", &json!({"customer_ref": "13800138000"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(prior(say(&b, "13800138000").await), Some(0), "erased: a first contact again");

    let (c, d) = (replica(pg.url(), "memory").await, replica(pg.url(), "memory").await);
    assert_eq!(prior(say(&c, "13700137000").await), Some(0));
    assert_eq!(prior(say(&d, "13700137000").await), Some(0), "memory: per process");
    assert_eq!(json_of(d.get("/v1/info").await).await["triage"]["repeat_store"], "memory");
}

/// Erasure per customer (issue 14): exactly that customer's stored items go,
/// with their history; the audit log names the customer by hash only.
#[actix_web::test]
async fn erasing_a_customer_deletes_exactly_their_items_and_is_audit_logged() {
    let app = app().await;
    let items = |c: &str| {
        json!({"items": [
            {"text": FLAGGED[1], "customer_ref": c},
            {"text": FLAGGED[2], "customer_ref": c},
        ]})
    };
    let mine = json_of(app.post_json("/v1/classify", &items("13800138000")).await).await;
    let other = json_of(app.post_json("/v1/classify", &items("13811112222")).await).await;
    let mine: Vec<&str> = mine["items"].as_array().unwrap().iter().map(|i| i["review_id"].as_str().unwrap()).collect();
    let other_id = other["items"][0]["review_id"].as_str().unwrap();
    // both references are stored masked
    let m = json_of(app.get(&format!("/v1/reviews/{}", mine[0])).await).await;
    assert!(!m["customer_ref"].as_str().unwrap().contains("13800138000"), "{m}");
    let r = json_of(app.post_json("/v1/customers/erase", &json!({"customer_ref": "13800138000"})).await).await;
    assert_eq!((r["items"].as_u64(), r["history_entries"].as_u64()), (Some(2), Some(2)), "{r}");
    for id in &mine {
        expect_error(app.get(&format!("/v1/reviews/{id}")).await, 404, "unknown_item").await;
        expect_error(app.get(&format!("/v1/reviews/{id}/history")).await, 404, "unknown_item").await;
    }
    assert_eq!(
        json_of(app.get(&format!("/v1/reviews/{other_id}")).await).await["id"],
        other_id,
        "the other customer stays"
    );
    let log = json_of(app.get("/v1/audit?limit=10").await).await;
    assert_eq!(log[0]["action"], "customer_deleted");
    assert_eq!(log[0]["subject"], format!("customer:{}", r["customer_hash"].as_str().unwrap()));
    assert!(!log.to_string().contains("1380013"), "no reference in the audit log: {log}");
    expect_error(
        app.post_json("/v1/customers/erase", &json!({"customer_ref": " "})).await,
        422,
        "invalid_customer_ref",
    )
    .await;
    expect_error(app.post_json("/v1/customers/erase", &json!({})).await, 422, "invalid_request").await;
    expect_error(app.get("/v1/audit?limit=0").await, 422, "invalid_query").await;
    let off = spawn_with(true, |s| s.store.no_store = true).await;
    expect_error(off.post_json("/v1/customers/erase", &json!({"customer_ref": "c"})).await, 503, "store_disabled")
        .await;
}

/// Retention (issue 14): items past `KESU_STORE_RETENTION_DAYS` are deleted by
/// the sweep, audit-logged.
#[actix_web::test]
async fn items_past_retention_are_swept_and_audit_logged() {
    let app = spawn_with(true, |s| {
        s.store.store_min_escalation = Some(4);
        s.store.store_retention_days = 1.5 / 86_400.0; // 1.5 s: swept every second
    })
    .await;
    classify(&app, FLAGGED).await;
    assert!(queue_len(&app).await >= 4);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while queue_len(&app).await > 0 {
        assert!(std::time::Instant::now() < deadline, "items past retention were not swept");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let log = json_of(app.get("/v1/audit").await).await;
    let purges: u64 = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "retention_purge")
        .map(|e| e["detail"]["items"].as_u64().unwrap())
        .sum();
    assert!(purges >= 4, "{log}");
    assert_eq!(log[0]["actor"], "retention");
}
