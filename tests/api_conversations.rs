//! The conversation API against the real app on a random port (tiny model):
//! recording, ordering, the event stream, limits, expiry and every error.
mod common;

use common::*;
use serde_json::{json, Value};

async fn say(app: &TestApp, id: &str, role: &str, text: &str) -> Value {
    let r = app.post_json(&format!("/v1/conversations/{id}/messages"), &json!({"role": role, "text": text})).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[actix_web::test]
async fn messages_are_numbered_scored_and_kept() {
    let app = spawn().await;
    let a = say(&app, "conv-1", "customer", "宽带断了三天了，一直没人来修").await;
    assert_eq!(a["message"]["seq"], 1);
    assert_eq!(a["message"]["role"], "customer");
    let level = a["message"]["emotion"]["level"].as_u64().unwrap();
    assert!(level <= 3);
    assert_eq!(a["state"]["last_level"], level);
    assert_eq!(a["state"]["peak"]["seq"], 1);
    assert!(a["message"]["category"]["label"].is_string());
    assert!(a["message"]["trend"].as_f64().unwrap() >= 0.0);
    assert!(a["message"]["received_at"].as_str().unwrap().contains('T'));

    let b = app
        .post_json(
            "/v1/conversations/conv-1/messages",
            &json!({"role": "agent", "text": "您好，非常抱歉，已为您催促", "timestamp": "2026-11-23T10:15:00+08:00"}),
        )
        .await;
    assert_eq!(b.status(), 200);
    let b: Value = b.json().await.unwrap();
    assert_eq!(b["message"]["seq"], 2);
    assert!(b["message"].get("emotion").is_none(), "agent messages are not scored");
    assert_eq!(b["message"]["timestamp"], "2026-11-23T10:15:00+08:00");
    assert_eq!((b["state"]["messages"].as_u64(), b["state"]["customer_messages"].as_u64()), (Some(2), Some(1)));
    assert_eq!(b["state"]["trend"], a["state"]["trend"], "agent text does not move the trend");

    let v: Value = app.get("/v1/conversations/conv-1").await.json().await.unwrap();
    assert_eq!(v["state"]["messages"], 2);
    assert_eq!(
        v["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect::<Vec<_>>(),
        vec![1, 2]
    );

    // other conversations are separate
    assert_eq!(say(&app, "conv-2", "customer", "你好").await["message"]["seq"], 1);

    let d = app.client.delete(app.url("/v1/conversations/conv-1")).send().await.unwrap();
    assert_eq!(d.status(), 204);
    expect_error(app.get("/v1/conversations/conv-1").await, 404, "unknown_conversation").await;
    expect_error(
        app.client.delete(app.url("/v1/conversations/conv-1")).send().await.unwrap(),
        404,
        "unknown_conversation",
    )
    .await;
    // a new message starts it afresh
    assert_eq!(say(&app, "conv-1", "customer", "还在吗").await["message"]["seq"], 1);
}

#[actix_web::test]
async fn threat_words_alert_once_and_negated_ones_do_not() {
    let app = spawn().await;
    let n = say(&app, "t", "customer", "我不想去12315投诉，只想退款").await;
    assert!(n["message"]["alerts"].as_array().unwrap().iter().all(|a| a["kind"] != "threat_flag"), "negated: {n}");
    let a = say(&app, "t", "customer", "再不处理我就去１２３１５投诉，还要找媒体曝光").await;
    let threat = a["message"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "threat_flag")
        .expect("threat alert")
        .clone();
    assert_eq!(threat["flags"], json!(["regulator", "media"]));
    assert_eq!(threat["seq"], 2);
    assert!(threat["reason"].as_str().unwrap().contains("１２３１５"), "reason names the original text: {threat}");
    assert_eq!(a["state"]["handoff_recommended"], true);
    assert_eq!(a["state"]["status"], "alert");
    let again = say(&app, "t", "customer", "12315见").await;
    assert!(again["message"]["alerts"].as_array().unwrap().iter().all(|a| a["kind"] != "threat_flag"), "once per flag");
    assert_eq!(again["state"]["handoff_recommended"], true, "sticky");
}

#[actix_web::test]
async fn concurrent_messages_get_distinct_ordered_seqs_and_the_stream_sees_them_in_order() {
    let app = std::sync::Arc::new(spawn().await);
    let mut sse = Sse::open(&app, "/v1/conversations/busy/events").await;
    let (name, snap) = sse.next().await.unwrap();
    assert_eq!(name, "snapshot");
    assert_eq!(snap["state"]["messages"], 0);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let role = if i % 3 == 2 { "agent" } else { "customer" };
            let v = say(&app, "busy", role, &format!("第{i}条消息：怎么还没到货")).await;
            (i, v["message"]["seq"].as_u64().unwrap(), v["message"]["text"].as_str().unwrap().to_string())
        }));
    }
    let mut answered = Vec::new();
    for t in tasks {
        answered.push(t.await.unwrap());
    }
    let mut seqs: Vec<u64> = answered.iter().map(|a| a.1).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>(), "every message recorded once");
    let mut last = 0;
    for _ in 0..12 {
        let (name, ev) = sse.next().await.unwrap();
        assert_eq!(name, "message");
        let seq = ev["message"]["seq"].as_u64().unwrap();
        assert_eq!(seq, last + 1, "events in seq order without gaps");
        last = seq;
        let (_, _, text) = answered.iter().find(|a| a.1 == seq).unwrap();
        assert_eq!(ev["message"]["text"], text.as_str(), "the event is the POST answer");
        assert_eq!(ev["state"]["messages"], seq);
    }
    let v: Value = app.get("/v1/conversations/busy").await.json().await.unwrap();
    assert_eq!(v["state"]["customer_messages"], 8);

    // a late subscriber gets everything in its snapshot
    let mut late = Sse::open(&app, "/v1/conversations/busy/events").await;
    let (_, snap) = late.next().await.unwrap();
    assert_eq!(snap["messages"].as_array().unwrap().len(), 12);

    // ending the conversation ends both streams with `closed`
    app.client.delete(app.url("/v1/conversations/busy")).send().await.unwrap();
    for s in [&mut sse, &mut late] {
        let (name, ev) = s.next().await.unwrap();
        assert_eq!((name.as_str(), ev["reason"].as_str()), ("closed", Some("deleted")));
        assert!(s.next().await.is_none(), "stream ends");
    }
}

#[actix_web::test]
async fn idle_conversations_expire() {
    let app = spawn_with(true, |s| s.conversations.conversation_ttl_secs = 1).await;
    say(&app, "idle", "customer", "在吗").await;
    let mut sse = Sse::open(&app, "/v1/conversations/idle/events").await;
    assert_eq!(sse.next().await.unwrap().0, "snapshot");
    let (name, ev) = sse.next().await.unwrap();
    assert_eq!((name.as_str(), ev["reason"].as_str()), ("closed", Some("expired")));
    expect_error(app.get("/v1/conversations/idle").await, 404, "unknown_conversation").await;
    let m = app.get("/metrics").await.text().await.unwrap();
    assert!(m.contains("kesu_conversations_live 0"), "{m}");
}

#[actix_web::test]
async fn limits_on_conversations_and_subscribers() {
    let app = spawn_with(true, |s| {
        s.conversations.max_conversations = 2;
        s.conversations.conversation_max_subscribers = 1;
    })
    .await;
    say(&app, "a", "agent", "您好").await;
    say(&app, "b", "agent", "您好").await;
    let r = app.post_json("/v1/conversations/c/messages", &json!({"role": "agent", "text": "您好"})).await;
    assert!(r.headers().get("retry-after").is_some());
    expect_error(r, 503, "too_many_conversations").await;
    assert_eq!(say(&app, "a", "agent", "还在").await["message"]["seq"], 2, "live conversations keep working");
    let _one = Sse::open(&app, "/v1/conversations/a/events").await;
    expect_error(app.get("/v1/conversations/a/events").await, 503, "too_many_subscribers").await;
    app.client.delete(app.url("/v1/conversations/b")).send().await.unwrap();
    say(&app, "c", "agent", "您好").await;
}

/// Conversations' memory is bounded in bytes: per conversation (older
/// messages go) and in total (a message beyond it: 503, nothing recorded).
#[actix_web::test]
async fn conversations_are_bounded_in_bytes() {
    let app = spawn_with(true, |s| {
        s.conversations.conversation_max_bytes = 2 * 1024 + 100;
        s.conversations.conversations_max_bytes = 5 * 1024;
    })
    .await;
    for _ in 0..3 {
        say(&app, "m", "agent", "您好，请问有什么可以帮您").await;
    }
    let v: Value = app.get("/v1/conversations/m").await.json().await.unwrap();
    let seqs: Vec<i64> = v["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![2, 3], "two messages fit the per-conversation bytes");
    assert_eq!(v["state"]["messages"], 3, "the counters cover all");
    say(&app, "n", "agent", "您好").await;
    say(&app, "n", "agent", "您好").await;
    let r = app.post_json("/v1/conversations/n/messages", &json!({"role": "agent", "text": "您好"})).await;
    assert!(r.headers().get("retry-after").is_some());
    expect_error(r, 503, "too_many_conversations").await;
    let v: Value = app.get("/v1/conversations/n").await.json().await.unwrap();
    assert_eq!(v["state"]["messages"], 2, "the refused message was not recorded");
    app.client.delete(app.url("/v1/conversations/m")).send().await.unwrap();
    say(&app, "n", "agent", "您好").await;
}

/// A client that goes away frees its subscriber slot at once: an agent who
/// reloads the console five times in a row is never locked out (before: the
/// slot stayed taken until two keep-alives failed, about 30 s).
#[actix_web::test]
async fn a_gone_subscriber_frees_its_slot_at_once() {
    let app = spawn_with(true, |s| s.conversations.conversation_max_subscribers = 1).await;
    say(&app, "r", "agent", "您好").await;
    for i in 0..5 {
        let t0 = std::time::Instant::now();
        let mut sse = Sse::open(&app, "/v1/conversations/r/events").await;
        assert_eq!(sse.next().await.unwrap().0, "snapshot", "reload {i}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(2), "reload {i} took {:?}", t0.elapsed());
        drop(sse);
    }
    // A subscriber that is still there keeps its slot, and gets every message.
    let mut live = Sse::open(&app, "/v1/conversations/r/events").await;
    assert_eq!(live.next().await.unwrap().0, "snapshot");
    expect_error(app.get("/v1/conversations/r/events").await, 503, "too_many_subscribers").await;
    say(&app, "r", "agent", "还在").await;
    let (name, data) = live.next().await.unwrap();
    assert_eq!((name.as_str(), data["message"]["seq"].as_i64()), ("message", Some(2)));
}

/// An event stream ends after `KESU_EVENTS_MAX_SECS` (the client reconnects
/// and gets a fresh snapshot) and frees its subscriber slot.
#[actix_web::test]
async fn an_event_stream_ends_after_its_lifetime_and_a_reconnect_gets_a_snapshot() {
    let app = spawn_with(true, |s| {
        s.conversations.events_max_secs = 1;
        s.conversations.conversation_max_subscribers = 1;
    })
    .await;
    say(&app, "l", "agent", "您好").await;
    let t0 = std::time::Instant::now();
    let mut sse = Sse::open(&app, "/v1/conversations/l/events").await;
    assert_eq!(sse.next().await.unwrap().0, "snapshot");
    assert!(sse.next().await.is_none(), "the stream ends");
    let took = t0.elapsed();
    assert!(took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(10), "{took:?}");
    let mut again = Sse::open(&app, "/v1/conversations/l/events").await;
    let (name, data) = again.next().await.unwrap();
    assert_eq!((name.as_str(), data["state"]["messages"].as_i64()), ("snapshot", Some(1)), "the slot was freed");
}

#[actix_web::test]
async fn bad_messages_get_json_errors_and_are_not_recorded() {
    let app = spawn().await;
    let p = "/v1/conversations/e/messages";
    expect_error(app.post_json(p, &json!({"role": "customer", "text": "  "})).await, 422, "empty_text").await;
    expect_error(app.post_json(p, &json!({"role": "boss", "text": "hi"})).await, 422, "invalid_request").await;
    expect_error(app.post_json(p, &json!({"text": "hi"})).await, 422, "invalid_request").await;
    expect_error(
        app.post_json(p, &json!({"role": "customer", "text": "hi", "extra": 1})).await,
        422,
        "invalid_request",
    )
    .await;
    expect_error(
        app.post_json(p, &json!({"role": "customer", "text": "hi", "timestamp": "yesterday"})).await,
        422,
        "invalid_timestamp",
    )
    .await;
    expect_error(
        app.post_json(p, &json!({"role": "customer", "text": "长".repeat(20_001)})).await,
        413,
        "text_too_long",
    )
    .await;
    expect_error(app.post_raw(p, Some("text/plain"), b"{}".to_vec()).await, 415, "unsupported_media_type").await;
    expect_error(app.post_raw(p, Some("application/json"), b"{\"role\":".to_vec()).await, 400, "invalid_json").await;
    expect_error(
        app.post_raw(p, Some("application/json"), b"{\"role\":\"customer\",\"text\":\"\xff\"}".to_vec()).await,
        400,
        "invalid_utf8",
    )
    .await;
    let long_id = format!("/v1/conversations/{}/messages", "x".repeat(129));
    expect_error(
        app.post_json(&long_id, &json!({"role": "customer", "text": "hi"})).await,
        422,
        "invalid_conversation_id",
    )
    .await;
    expect_error(
        app.post_json("/v1/conversations/a%20b/messages", &json!({"role": "customer", "text": "hi"})).await,
        422,
        "invalid_conversation_id",
    )
    .await;
    expect_error(app.get("/v1/conversations/e/messages").await, 405, "method_not_allowed").await;
    // nothing above was recorded, so the conversation was never opened
    expect_error(app.get("/v1/conversations/e").await, 404, "unknown_conversation").await;
}

#[actix_web::test]
async fn without_a_model_customer_messages_wait_but_agent_messages_record() {
    let app = spawn_with(false, |_| {}).await;
    let r = app.post_json("/v1/conversations/n/messages", &json!({"role": "customer", "text": "在吗"})).await;
    expect_error(r, 503, "not_ready").await;
    assert_eq!(say(&app, "n", "agent", "您好").await["message"]["seq"], 1);
}

#[actix_web::test]
async fn console_page_and_openapi() {
    let app = spawn().await;
    let r = app.get("/console").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = r.text().await.unwrap();
    assert!(html.contains("EventSource") && html.contains("/v1/conversations/"));
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    for p in ["/v1/conversations/{id}/messages", "/v1/conversations/{id}/events", "/v1/conversations/{id}", "/console"]
    {
        assert!(doc["paths"].get(p).is_some(), "{p} in the OpenAPI document");
    }
    assert!(doc["paths"]["/v1/conversations/{id}"].get("delete").is_some());
    for s in ["MessageIn", "Recorded", "View", "Alert", "Event"] {
        assert!(doc["components"]["schemas"].get(s).is_some(), "schema {s}");
    }
}

/// The triage file's store rule keeps conversation customer messages exactly
/// as it keeps classified items; a reload of the rules changes what is kept.
#[actix_web::test]
async fn customer_messages_are_stored_by_the_triage_store_rule() {
    let shipped = std::fs::read_to_string(lexicons().join("triage.toml")).unwrap();
    let section = "[store]\nneeds_review = true\nmin_escalation = 2\n";
    let by_flags_only = shipped.replace(section, "[store]\nneeds_review = true\nmin_escalation = 4\n");
    assert_ne!(by_flags_only, shipped, "the shipped file has a [store] section");
    let app = spawn_own_lexicons(Some(&by_flags_only), |_| {}).await;

    let threat = say(&app, "conv-s", "customer", "已经找了律师，准备起诉你们公司").await;
    assert!(threat["message"]["flags"]["needs_review"].as_bool().unwrap());
    let review_id = threat["message"]["review_id"].as_str().expect("the threat is stored").to_string();
    let agent = say(&app, "conv-s", "agent", "您好，我们马上为您处理").await;
    assert!(agent["message"].get("review_id").is_none(), "agent messages are never stored");
    let calm = say(&app, "conv-s", "customer", "请问快递什么时候到").await;
    assert!(!calm["message"]["flags"]["needs_review"].as_bool().unwrap());
    assert!(calm["message"].get("review_id").is_none(), "not needing review and never by level: not stored");

    let item: Value = app.get(&format!("/v1/reviews/{review_id}")).await.json().await.unwrap();
    assert_eq!(item["channel"], "conversation");
    assert_eq!(item["caller_id"], "conv-s:1");
    assert_eq!(item["text"], "已经找了律师，准备起诉你们公司");
    let v: Value = app.get("/v1/conversations/conv-s").await.json().await.unwrap();
    assert_eq!(v["messages"][0]["review_id"], review_id.as_str(), "the kept message carries its review id");

    // Store everything from level 0: after a reload the calm message is kept too.
    let everything = shipped
        .replace(section, "[store]\nneeds_review = true\nmin_escalation = 0\n")
        .replace("version = \"", "version = \"all-");
    std::fs::write(app.lexicons_dir().join("triage.toml"), everything).unwrap();
    assert_eq!(app.client.post(app.url("/admin/reload")).send().await.unwrap().status(), 200);
    let calm = say(&app, "conv-s", "customer", "请问快递什么时候到").await;
    let id = calm["message"]["review_id"].as_str().expect("stored after the reload");
    let item: Value = app.get(&format!("/v1/reviews/{id}")).await.json().await.unwrap();
    assert_eq!(item["caller_id"], "conv-s:4");
    let q: Value = app.get("/v1/reviews?limit=100").await.json().await.unwrap();
    assert_eq!(q["items"].as_array().unwrap().len(), 2);
}
