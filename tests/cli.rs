//! The `kesu` binary: classify and flags over text, files and stdin; exit codes.
use std::io::Write;
use std::process::{Command, Stdio};

fn kesu() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kesu"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env("RUST_LOG", "warn");
    c
}

fn lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out).lines().map(|l| serde_json::from_str(l).expect("JSONL")).collect()
}

#[test]
fn flags_on_one_text() {
    let out = kesu().args(["flags", "我要起訴你們，还要找媒体曝光你们"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = &lines(&out.stdout)[0];
    let flags: Vec<&str> = v["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(flags.contains(&"litigation") && flags.contains(&"media"), "{v}");
}

#[test]
fn classify_a_file_with_a_tiny_model_keeps_order_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    kesu_core::model::testing::write_tiny_model(&model, 3).unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\": \"a\", \"text\": \"退款太慢\"}\n纯文本一行：客服不理人\n{\"id\": \"c\", \"text\": \"\"}\n{broken\n{\"text\": \"我要报警\"}\n").unwrap();
    let out = kesu().args(["classify", "--file"]).arg(&input).arg("--model").arg(&model).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "bad lines give exit code 2: {}", String::from_utf8_lossy(&out.stderr));
    let v = lines(&out.stdout);
    assert_eq!(v.len(), 5, "one output line per input line");
    assert_eq!(v[0]["id"], "a");
    assert!(v[0]["category"]["label"].is_string());
    assert_eq!(v[1]["id"], 2);
    assert!(v[1]["emotion"]["level"].is_u64());
    assert_eq!(v[2]["id"], "c");
    assert_eq!(v[2]["error"]["code"], "bad_input");
    assert_eq!(v[3]["error"]["code"], "bad_input");
    assert_eq!(v[4]["id"], 5);
    assert_eq!(v[4]["flags"]["flags"][0], "police_crime");
}

#[test]
fn classify_jsonl_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    kesu_core::model::testing::write_tiny_model(&model, 3).unwrap();
    let mut child = kesu()
        .args(["classify", "--segments", "--model"])
        .arg(&model)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all("{\"id\": 1, \"text\": \"集体诉讼\"}\n{\"id\": 2, \"text\": \"好评\"}\n".as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v = lines(&out.stdout);
    assert_eq!((v[0]["id"].as_u64(), v[1]["id"].as_u64()), (Some(1), Some(2)));
    assert_eq!(v[0]["segments"][0]["word"], "集体诉讼");
}

#[test]
fn missing_model_exits_3_with_a_clear_message() {
    let out = kesu().args(["classify", "退款", "--model", "/nonexistent/model.gguf"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
    let out = kesu().args(["serve", "--model", "/nonexistent/model.gguf", "--port", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn missing_input_file_and_bad_usage_exit_2() {
    let out = kesu().args(["flags", "--file", "/nonexistent/in.txt"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = kesu().args(["flags", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn classify_output_has_triage_and_counts_repeat_contacts() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    kesu_core::model::testing::write_tiny_model(&model, 3).unwrap();
    let input = "{\"id\": 1, \"text\": \"退款太慢\", \"customer_ref\": \"c-9\"}\n{\"id\": 2, \"text\": \"我们要集体维权\"}\n{\"id\": 3, \"text\": \"还是没退\", \"customer_ref\": \"c-9\"}\n{\"id\": 4, \"text\": \"x\", \"customer_ref\": \" \"}\n";
    let mut child =
        kesu().args(["classify", "--model"]).arg(&model).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "the blank customer_ref line is bad input");
    let v = lines(&out.stdout);
    assert_eq!(v.len(), 4);
    assert_eq!(v[0]["triage"]["prior_contacts"], 0);
    assert!(v[1]["triage"].get("prior_contacts").is_none());
    assert_eq!(
        (v[1]["triage"]["priority"].as_str(), v[1]["triage"]["route"].as_str()),
        (Some("P1"), Some("compliance"))
    );
    assert_eq!(v[2]["triage"]["prior_contacts"], 1);
    let p = v[2]["triage"]["priority"].as_str().unwrap();
    assert!(["P1", "P2", "P3"].contains(&p), "a repeat contact is at least P3: {p}");
    assert!(v[2]["triage"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r.as_str().unwrap().contains("repeat contact (1 earlier within 24 h)")));
    assert!(v[2]["triage"]["rules_version"].is_string());
    assert_eq!(v[3]["error"]["code"], "bad_input");

    // TEXT with --customer-ref; --customer-ref without TEXT is a usage error
    let out = kesu().args(["classify", "退款", "--customer-ref", "c-1", "--model"]).arg(&model).output().unwrap();
    assert!(out.status.success());
    assert_eq!(lines(&out.stdout)[0]["triage"]["prior_contacts"], 0);
    let out = kesu()
        .args(["classify", "--customer-ref", "c-1", "--model"])
        .arg(&model)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn classify_store_keeps_what_the_rule_picks_masked() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    kesu_core::model::testing::write_tiny_model(&model, 3).unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"a\", \"text\": \"我要起诉你们，电话13812345678\"}\n{\"id\": \"b\", \"text\": \"包装很好\"}\n",
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("kesu.db").display());
    let out = kesu()
        .args([
            "classify",
            "--store",
            "--channel",
            "batch",
            "--store-min-escalation",
            "4",
            "--database-url",
            &db,
            "--file",
        ])
        .arg(&input)
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = lines(&out.stdout);
    assert!(v[0]["review_id"].is_string(), "the litigation threat is stored: {}", v[0]);
    assert!(v[1].get("review_id").is_none(), "the calm text is not");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 item(s) stored"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let item = rt.block_on(async {
        kesu_store::Store::open(&db, 1).await.unwrap().get(v[0]["review_id"].as_str().unwrap()).await.unwrap()
    });
    assert_eq!(item.caller_id.as_deref(), Some("a"));
    assert_eq!(item.channel.as_deref(), Some("batch"));
    assert!(item.text.contains("138****5678"), "{}", item.text);
    // a store that cannot be opened is a clean runtime error (exit 1), not a panic
    let out = kesu()
        .args(["classify", "--store", "--database-url", "postgres://nobody@127.0.0.1:1/x", "--model"])
        .arg(&model)
        .arg("退款")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open the complaint store"));
}

#[test]
fn eval_refuses_to_list_errors_on_the_test_split() {
    // Refused before any label, corpus or model is read (the paths do not exist).
    let out = kesu()
        .args([
            "eval",
            "--on",
            "test",
            "--flags-only",
            "--errors",
            "--labels",
            "/nonexistent/labels",
            "--corpora",
            "/nonexistent/corpora",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("train and dev only"), "{err}");
}
