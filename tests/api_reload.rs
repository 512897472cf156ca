//! Reloading the word lists and triage rules without a restart:
//! `POST /admin/reload` and SIGHUP.
mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

fn edit(dir: &Path, file: &str, f: impl FnOnce(String) -> String) {
    let p = dir.join(file);
    let raw = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, f(raw)).unwrap();
}

/// The shipped triage.toml with another version and one more rule at the end.
fn with_rule(raw: String, version: &str, rule: &str) -> String {
    let old = raw.lines().find(|l| l.starts_with("version = ")).unwrap().to_string();
    format!("{}\n{rule}\n", raw.replacen(&old, &format!("version = \"{version}\""), 1))
}

async fn reload(app: &TestApp) -> reqwest::Response {
    app.client.post(app.url("/admin/reload")).send().await.unwrap()
}

async fn classify(app: &TestApp, text: &str) -> Value {
    let r = app.post_json("/v1/classify", &json!({"text": text})).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[actix_web::test]
async fn reload_with_changed_files_changes_results() {
    let app = spawn_own_lexicons(None, |_| {}).await;
    let dir = app.lexicons_dir();
    let text = "紫色独角兽太过分了";
    let before = classify(&app, text).await;
    assert!(before["flags"]["hits"].as_array().unwrap().is_empty());
    let seg: Value = app.post_json("/v1/segment", &json!({"text": text})).await.json().await.unwrap();
    assert!(!seg["segments"].as_array().unwrap().iter().any(|s| s["word"] == "紫色独角兽"));
    let old_version = before["triage"]["rules_version"].as_str().unwrap().to_string();

    // all three files change
    edit(&dir, "legal_risk.tsv", |raw| {
        format!(
            "{}\n紫色独角兽\tmedia\t3\ttest term\n",
            raw.replacen("# version: ", "# version: reloaded-", 1).trim_end()
        )
    });
    edit(&dir, "user_dict.txt", |raw| format!("{raw}紫色独角兽 3000 n\n"));
    edit(&dir, "triage.toml", |raw| {
        with_rule(raw, "reload-test-2", "[[rules]]\nname = \"unicorn\"\nflags_all = [\"media\"]\nmin_severity = 3\npriority = \"P1\"\nroute = \"unicorn_desk\"\n")
    });
    let r = reload(&app).await;
    assert_eq!(r.status(), 200);
    let rep: Value = r.json().await.unwrap();
    assert_eq!(rep["count"], 1);
    assert_eq!(rep["rules_version"], "reload-test-2");
    assert!(rep["lexicon_version"].as_str().unwrap().starts_with("reloaded-"));
    assert_eq!(rep["rule_count"].as_u64().unwrap(), before_rule_count(&app).await);

    let after = classify(&app, text).await;
    assert_eq!(after["flags"]["flags"], json!(["media"]));
    assert_eq!(after["triage"]["rules_version"], "reload-test-2");
    assert_ne!(after["triage"]["rules_version"], old_version.as_str());
    assert_eq!(
        (after["triage"]["priority"].as_str(), after["triage"]["route"].as_str()),
        (Some("P1"), Some("unicorn_desk")),
        "{}",
        after["triage"]
    );
    let seg: Value = app.post_json("/v1/segment", &json!({"text": text})).await.json().await.unwrap();
    assert!(seg["segments"].as_array().unwrap().iter().any(|s| s["word"] == "紫色独角兽"), "{seg}");
    let flags: Value = app.post_json("/v1/flags", &json!({"items": [{"text": text}]})).await.json().await.unwrap();
    assert!(flags["lexicon_version"].as_str().unwrap().starts_with("reloaded-"));

    let info: Value = app.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["reload"]["count"], 1);
    assert_eq!(info["reload"]["failed"], 0);
    assert_eq!(info["triage"]["rules_version"], "reload-test-2");
    assert!(info["lexicon"]["version"].as_str().unwrap().starts_with("reloaded-"));
    let m = app.get("/metrics").await.text().await.unwrap();
    assert!(m.contains(r#"kesu_reloads_total{result="ok"} 1"#), "{m}");
}

async fn before_rule_count(app: &TestApp) -> u64 {
    let info: Value = app.get("/v1/info").await.json().await.unwrap();
    info["triage"]["rule_count"].as_u64().unwrap()
}

#[actix_web::test]
async fn a_broken_file_is_refused_naming_the_line_and_nothing_changes() {
    let app = spawn_own_lexicons(None, |_| {}).await;
    let dir = app.lexicons_dir();
    let text = "我们要集体诉讼，还要去12315";
    let before = classify(&app, text).await;
    let info_before: Value = app.get("/v1/info").await.json().await.unwrap();

    // triage.toml: an unknown flag on a known line; the other two files are fine and changed
    edit(&dir, "legal_risk.tsv", |raw| format!("{raw}紫色独角兽\tmedia\t3\ttest term\n"));
    edit(&dir, "triage.toml", |raw| {
        with_rule(
            raw,
            "broken-1",
            "[[rules]]\nname = \"bad\"\nflags_any = [\"lawsuit\"]\npriority = \"P1\"\nroute = \"x\"",
        )
    });
    let raw = std::fs::read_to_string(dir.join("triage.toml")).unwrap();
    let bad_line = raw.lines().position(|l| l.contains("lawsuit")).unwrap() + 1;
    let r = reload(&app).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_triage_rules", "{body}");
    assert_eq!(body["error"]["line"], bad_line, "{body}");
    assert!(body["error"]["file"].as_str().unwrap().ends_with("triage.toml"));
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&format!("triage.toml, line {bad_line}: ")) && msg.contains("lawsuit"), "{msg}");

    // nothing changed: not the good lexicon either (all or nothing)
    let after = classify(&app, text).await;
    for k in ["flags", "triage"] {
        assert_eq!(after[k], before[k], "{k}");
    }
    assert!(classify(&app, "紫色独角兽").await["flags"]["hits"].as_array().unwrap().is_empty());
    let info: Value = app.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["reload"]["count"], 0);
    assert_eq!(info["reload"]["failed"], 1);
    assert!(info["reload"]["last_error"].as_str().unwrap().contains(&format!("line {bad_line}")));
    assert_eq!(info["reload"]["loaded_at"], info_before["reload"]["loaded_at"]);
    assert_eq!(info["triage"]["rules_version"], info_before["triage"]["rules_version"]);

    // legal_risk.tsv: a bad severity
    std::fs::copy(lexicons().join("triage.toml"), dir.join("triage.toml")).unwrap();
    edit(&dir, "legal_risk.tsv", |raw| format!("{raw}坏词\tlitigation\t9\tbad severity\n"));
    let n = std::fs::read_to_string(dir.join("legal_risk.tsv")).unwrap().lines().count();
    let r = reload(&app).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["error"]["code"].as_str(), body["error"]["line"].as_u64()),
        (Some("invalid_lexicon"), Some(n as u64)),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("severity must be"), "{body}");
    std::fs::copy(lexicons().join("legal_risk.tsv"), dir.join("legal_risk.tsv")).unwrap();

    // user_dict.txt: a bad frequency
    edit(&dir, "user_dict.txt", |raw| format!("{raw}坏词 abc\n"));
    let n = std::fs::read_to_string(dir.join("user_dict.txt")).unwrap().lines().count();
    let body: Value = reload(&app).await.json().await.unwrap();
    assert_eq!(
        (body["error"]["code"].as_str(), body["error"]["line"].as_u64()),
        (Some("invalid_user_dict"), Some(n as u64)),
        "{body}"
    );
    std::fs::copy(lexicons().join("user_dict.txt"), dir.join("user_dict.txt")).unwrap();

    // a missing file
    std::fs::remove_file(dir.join("triage.toml")).unwrap();
    let body: Value = reload(&app).await.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_triage_rules");
    assert!(body["error"].get("line").is_none());
    std::fs::copy(lexicons().join("triage.toml"), dir.join("triage.toml")).unwrap();

    // fixed: the reload goes through
    assert_eq!(reload(&app).await.status(), 200);
    let info: Value = app.get("/v1/info").await.json().await.unwrap();
    assert_eq!((info["reload"]["count"].as_u64(), info["reload"]["failed"].as_u64()), (Some(1), Some(4)));
    let m = app.get("/metrics").await.text().await.unwrap();
    assert!(m.contains(r#"kesu_reloads_total{result="error"} 4"#), "{m}");

    // only POST
    expect_error(app.get("/admin/reload").await, 405, "method_not_allowed").await;
}

#[actix_web::test]
async fn concurrent_classify_during_reloads_never_errors() {
    let app = spawn_own_lexicons(None, |_| {}).await;
    let dir = app.lexicons_dir();
    let shipped = std::fs::read_to_string(lexicons().join("triage.toml")).unwrap();
    let version_a = TriageVersion::of(&shipped);
    let alt = with_rule(
        shipped.clone(),
        "concurrent-b",
        "[[rules]]\nname = \"all\"\nmin_escalation = 0\npriority = \"P1\"\nroute = \"everyone\"\n",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (c, u, stop) = (app.client.clone(), app.url("/v1/classify"), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || i < 3 {
                let items: Vec<Value> = (0..4).map(|k| json!({"text": format!("第{w}-{i}-{k}条：我们要集体诉讼，还要去12315"), "customer_ref": format!("c{k}")})).collect();
                let r = c.post(&u).json(&json!({"items": items})).send().await.unwrap();
                assert_eq!(r.status(), 200, "classify during reload");
                let v: Value = r.json().await.unwrap();
                // one request, one snapshot: every item has the same rules version
                let versions: Vec<&str> = v["items"].as_array().unwrap().iter().map(|it| it["triage"]["rules_version"].as_str().unwrap()).collect();
                assert!(versions.iter().all(|x| *x == versions[0]), "{versions:?}");
                seen.push(versions[0].to_string());
                i += 1;
            }
            seen
        }));
    }
    for k in 0..8 {
        std::fs::write(dir.join("triage.toml"), if k % 2 == 0 { &alt } else { &shipped }).unwrap();
        let r = reload(&app).await;
        assert_eq!(r.status(), 200);
        // segments and flags keep answering too
        assert_eq!(app.post_json("/v1/flags", &json!({"text": "我要起诉"})).await.status(), 200);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        for v in w.await.unwrap() {
            assert!(v == version_a.0 || v == "concurrent-b", "{v}");
        }
    }
    let info: Value = app.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["reload"]["count"], 8);
}

struct TriageVersion(String);

impl TriageVersion {
    fn of(raw: &str) -> TriageVersion {
        let l = raw.lines().find(|l| l.starts_with("version = ")).unwrap();
        TriageVersion(l.trim_start_matches("version = ").trim_matches('"').to_string())
    }
}

/// SIGHUP reloads a running `kesu serve` (the real binary).
#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_running_service() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let lex = copy_lexicons(dir.path());
    let model = tiny_model(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_kesu"))
        .args(["serve", "--port", "0", "--log-format", "json", "--no-auth"])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.path().join("kesu.db").display()))
        .arg("--lexicons")
        .arg(&lex)
        .arg("--model")
        .arg(&model)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the address from the "kesu listening" log line; then keep draining stderr
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("kesu listening") {
                let v: Value = serde_json::from_str(&line).unwrap();
                let _ = tx.send(v["fields"]["address"].as_str().unwrap().to_string());
            }
            all.push(line);
        }
        all
    });
    let addr = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("kesu listening");
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let info = || async { client.get(format!("{base}/v1/info")).send().await.unwrap().json::<Value>().await.unwrap() };
    assert_eq!(info().await["reload"]["count"], 0);

    edit(&lex, "triage.toml", |raw| with_rule(raw, "sighup-2", ""));
    let hup = |pid: u32| assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    hup(child.id());
    let mut reloaded = false;
    for _ in 0..200 {
        let v = info().await;
        if v["reload"]["count"] == 1 {
            assert_eq!(v["triage"]["rules_version"], "sighup-2");
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reloaded, "SIGHUP reloaded within 20 s");

    // a broken file on SIGHUP: refused, logged, the service keeps serving
    edit(&lex, "triage.toml", |raw| {
        raw.replacen("priority = \"P4\"\nroute = \"standard\"", "priority = \"P0\"\nroute = \"standard\"", 1)
    });
    hup(child.id());
    for _ in 0..200 {
        if info().await["reload"]["failed"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let v = info().await;
    assert_eq!((v["reload"]["failed"].as_u64(), v["reload"]["count"].as_u64()), (Some(1), Some(1)));
    assert_eq!(v["triage"]["rules_version"], "sighup-2");
    let r = client
        .post(format!("{base}/v1/classify"))
        .json(&json!({"text": "我要起诉，把我的私人信息泄露了"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    child.kill().unwrap();
    child.wait().unwrap();
    let logs = logs.join().unwrap();
    let reload_logs: Vec<&String> = logs.iter().filter(|l| l.contains("reload")).collect();
    assert!(
        reload_logs.iter().any(|l| l.contains("\"trigger\":\"sighup\"") && l.contains("sighup-2")),
        "{reload_logs:?}"
    );
    assert!(reload_logs.iter().any(|l| l.contains("reload refused") && l.contains("\"line\":")), "{reload_logs:?}");
    // no complaint text in the logs
    assert!(!logs.iter().any(|l| l.contains("私人信息")), "complaint text logged");
}
