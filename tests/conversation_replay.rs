//! Replay real STC-3 customer–helpdesk dialogues through the conversation API
//! on the shipped model, many conversations at once, and check ordering,
//! state and alerts against an independent recomputation from the
//! per-message results and the `/v1/flags` and `/v1/classify` endpoints.
mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use serde_json::{json, Value};

const THREAT_FLAGS: [&str; 4] = ["litigation", "regulator", "media", "self_harm_violence"];

fn shipped_model() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/kesu.gguf")
}

/// Replay one dialogue; return the POST answers and the events seen by a subscriber.
async fn replay(app: &TestApp, conv: &str, turns: &[(String, String)]) -> (Vec<Value>, Vec<(String, Value)>) {
    let mut sse = Sse::open(app, &format!("/v1/conversations/{conv}/events")).await;
    let mut events = vec![sse.next().await.unwrap()];
    let mut answers = Vec::new();
    for (sender, text) in turns {
        let role = if sender == "customer" { "customer" } else { "agent" };
        let r =
            app.post_json(&format!("/v1/conversations/{conv}/messages"), &json!({"role": role, "text": text})).await;
        assert_eq!(r.status(), 200, "{conv}");
        answers.push(r.json::<Value>().await.unwrap());
    }
    for _ in turns {
        events.push(sse.next().await.unwrap());
    }
    (answers, events)
}

#[actix_web::test]
async fn replayed_stc3_dialogues_keep_order_state_and_alerts() {
    let Some(root) = corpora() else { return };
    let mut dialogues = kesu_train::corpus::stc3_dialogues(&root).unwrap();
    for d in &mut dialogues {
        d.turns.retain(|(_, t)| !t.trim().is_empty()); // an empty turn is refused (422 empty_text)
    }
    let threat = contains_any(&["12315", "工信部", "曝光", "起诉", "律师", "媒体", "消协", "银保监", "法院"]);
    // 6 dialogues with a threat word from a customer, 6 others; all at once
    let mut picked: Vec<_> = dialogues
        .iter()
        .filter(|d| d.turns.iter().any(|(s, t)| s == "customer" && threat(t)))
        .take(6)
        .cloned()
        .collect();
    picked.extend(
        dialogues.iter().filter(|d| d.turns.len() >= 5 && !d.turns.iter().any(|(_, t)| threat(t))).take(6).cloned(),
    );
    assert_eq!(picked.len(), 12);

    let model = shipped_model();
    let app = Arc::new(spawn_with(true, move |s| s.resources.model = model).await);
    let mut tasks = Vec::new();
    for d in picked.clone() {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let (answers, events) = replay(&app, &format!("stc3-{}", d.id), &d.turns).await;
            (d, answers, events)
        }));
    }
    let mut any_threat_alert = 0;
    for t in tasks {
        let (d, answers, events) = t.await.unwrap();
        any_threat_alert += check_dialogue(&app, &d.turns, &answers, &events).await as usize;
    }
    assert!(any_threat_alert >= 3, "threat words in real dialogues alert ({any_threat_alert} of 6)");
}

fn contains_any(words: &'static [&'static str]) -> impl Fn(&str) -> bool {
    move |t: &str| words.iter().any(|w| t.contains(w))
}

/// Check one replayed dialogue; returns whether a threat alert fired.
async fn check_dialogue(
    app: &TestApp,
    turns: &[(String, String)],
    answers: &[Value],
    events: &[(String, Value)],
) -> bool {
    assert_eq!(events[0].0, "snapshot");
    let (mut trend, mut run, mut peak, mut customers) = (0.0f64, 0u64, None::<(u64, u64)>, 0u64);
    let mut alerted: Vec<String> = Vec::new();
    let mut threat_fired = false;
    for (i, ((sender, text), a)) in turns.iter().zip(answers).enumerate() {
        let seq = i as u64 + 1;
        let m = &a["message"];
        assert_eq!(m["seq"], seq, "arrival order");
        assert_eq!(m["text"], text.as_str());
        let (name, ev) = &events[i + 1];
        assert_eq!((name.as_str(), &ev["message"]["seq"]), ("message", &json!(seq)), "stream order");
        assert_eq!(ev["state"], a["state"], "the event carries the same state as the answer");
        if sender != "customer" {
            assert!(m.get("emotion").is_none());
            assert_eq!(m["alerts"], json!([]));
            continue;
        }
        customers += 1;
        // the tag is the classify endpoint's answer for the same text
        let c: Value = app.post_json("/v1/classify", &json!({"text": text})).await.json().await.unwrap();
        assert_eq!(m["emotion"]["level"], c["emotion"]["level"]);
        let level = m["emotion"]["level"].as_u64().unwrap();
        let probs: Vec<f64> =
            m["emotion"]["probabilities"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect();
        let expected: f64 = probs.iter().enumerate().map(|(i, p)| i as f64 * p).sum();
        let before = trend;
        trend = 0.5 * expected + 0.5 * trend;
        run = if level >= 1 { run + 1 } else { 0 };
        if peak.is_none_or(|(l, _)| level > l) {
            peak = Some((level, seq));
        }
        let st = &a["state"];
        assert!((st["trend"].as_f64().unwrap() - trend).abs() < 1e-4, "trend is the EWMA of expected levels");
        assert_eq!(st["consecutive_negative"], run);
        assert_eq!(st["customer_messages"], customers);
        assert_eq!(st["last_level"], level);
        assert_eq!(
            (st["peak"]["level"].as_u64(), st["peak"]["seq"].as_u64()),
            (Some(peak.unwrap().0), Some(peak.unwrap().1))
        );

        let kinds: Vec<&str> = m["alerts"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds.contains(&"consecutive_negative"),
            run == 3,
            "consecutive alert exactly when the run reaches 3"
        );
        assert_eq!(kinds.contains(&"level_crossed"), before < 2.0 && trend >= 2.0);
        // threat alerts: the flags endpoint's non-negated threat hits not alerted before
        let f: Value = app.post_json("/v1/flags", &json!({"text": text})).await.json().await.unwrap();
        let mut fresh: Vec<String> = f["hits"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["negated"] == false && THREAT_FLAGS.contains(&h["flag"].as_str().unwrap()))
            .map(|h| h["flag"].as_str().unwrap().to_string())
            .filter(|fl| !alerted.contains(fl))
            .collect();
        fresh.sort();
        fresh.dedup();
        let got = m["alerts"].as_array().unwrap().iter().find(|a| a["kind"] == "threat_flag");
        match got {
            Some(g) => {
                let mut flags: Vec<String> =
                    g["flags"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
                flags.sort();
                assert_eq!(flags, fresh);
                threat_fired = true;
            }
            None => assert!(fresh.is_empty(), "missing threat alert for {fresh:?} in {text}"),
        }
        alerted.extend(fresh);
        let any_alert_so_far = answers[..=i].iter().any(|x| !x["message"]["alerts"].as_array().unwrap().is_empty());
        assert_eq!(st["handoff_recommended"], any_alert_so_far);
    }
    threat_fired
}
