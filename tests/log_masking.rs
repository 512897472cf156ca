//! No log line ever holds unmasked personal data: drive every kind of route
//! with phone, ID-card, bank-card numbers and e-mail addresses in texts,
//! ids, queries, notes and broken bodies, with kesu's JSON log at debug level
//! (spans included), and search the captured log for the raw values.
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::spawn_with;
use serde_json::json;

const PHONE: &str = "13812345678";
const ID_CARD: &str = "110101199003078515";
const BANK: &str = "6222021234567890123";
const EMAIL: &str = "zhang.san@example.com";

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[actix_web::test]
async fn nothing_personal_reaches_the_log() {
    let buf = Buf::default();
    let w = buf.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("debug,h2=info,hyper=info,reqwest=info")
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(move || w.clone())
        .init();

    let app = spawn_with(true, |s| s.store.store_min_escalation = Some(0)).await;
    let text = format!("我要起诉你们！电话{PHONE}，身份证{ID_CARD}，银行卡{BANK}被盗刷，邮箱{EMAIL}");
    let r = app.post_json("/v1/classify", &json!({"items": [{"id": "a", "text": text, "customer_ref": PHONE}, {"id": "b", "text": "再不处理就去12315投诉"}]})).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let id = v["items"][0]["review_id"].as_str().expect("stored").to_string();
    for path in ["/v1/flags", "/v1/segment"] {
        assert_eq!(app.post_json(path, &json!({"text": text})).await.status(), 200);
    }
    // broken and wrong-typed bodies whose error messages could quote them
    let r = app.post_json("/v1/classify", &json!({"text": text, "segments": PHONE})).await;
    assert_eq!(r.status(), 422);
    let r = app.post_raw("/v1/classify", Some("application/json"), format!("{{\"text\": \"{EMAIL}").into_bytes()).await;
    assert_eq!(r.status(), 400);
    // a conversation whose id is a phone number, with an alerting message
    let conv = format!("/v1/conversations/{PHONE}/messages");
    for _ in 0..3 {
        assert_eq!(app.post_json(&conv, &json!({"role": "customer", "text": text})).await.status(), 200);
    }
    // review routes: a search for the number, a note holding it, the export
    assert_eq!(app.get(&format!("/v1/reviews?q={PHONE}")).await.status(), 200);
    let r = app
        .client
        .patch(app.url(&format!("/v1/reviews/{id}")))
        .json(&json!({"version": 1, "status": "in_review", "note": format!("已联系 {PHONE} {EMAIL}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.get(&format!("/v1/reviews/nope-{PHONE}")).await.status(), 404);
    let body = app.get("/v1/reviews/export").await.text().await.unwrap();
    assert!(!body.contains(PHONE), "stored data is masked too");

    actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("HTTP request") && log.contains("/v1/reviews?q="), "the request log was captured:\n{log}");
    assert!(log.contains("classified") && log.contains("review item changed"));
    for (what, raw) in [("phone", PHONE), ("ID card", ID_CARD), ("bank card", BANK), ("e-mail", EMAIL)] {
        if let Some(line) = log.lines().find(|l| l.contains(raw)) {
            panic!("a log line holds a raw {what}: {line}");
        }
    }
}
