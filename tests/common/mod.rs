//! Start the real app on a random port and talk HTTP to it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kesu::config::Settings;
use kesu::pipeline::Pipeline;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

pub fn lexicons() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lexicons")
}

/// Write the tiny test model (real model code, random weights) into `dir`.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let p = dir.join("tiny.gguf");
    kesu::model::testing::write_tiny_model(&p, 7).expect("write tiny model");
    p
}

/// Settings for tests: shipped lexicons, a tiny model in a temp dir.
pub fn settings(dir: &Path, with_model: bool) -> Settings {
    let mut s = Settings::defaults();
    s.host = "127.0.0.1".into();
    s.port = 0;
    s.workers = 2;
    s.resources.lexicons = lexicons();
    s.resources.model = if with_model { tiny_model(dir) } else { dir.join("absent.gguf") };
    s
}

/// Spawn the app; `tweak` adjusts settings before start.
pub async fn spawn_with(with_model: bool, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), with_model);
    tweak(&mut s);
    let pipeline = Arc::new(Pipeline::load(&s.resources, with_model).expect("pipeline loads"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = actix_web::web::Data::new(kesu::api::AppState::new(pipeline, s));
    let server = kesu::api::serve(listener, state).unwrap();
    actix_web::rt::spawn(server);
    TestApp { base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new(), dir }
}

pub async fn spawn() -> TestApp {
    spawn_with(true, |_| {}).await
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.unwrap()
    }

    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> reqwest::Response {
        let mut r = self.client.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        r.send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }
}

/// Assert the JSON error shape and code; returns the message.
pub async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(resp.status().as_u16(), status, "status");
    assert!(resp.headers().get("content-type").unwrap().to_str().unwrap().starts_with("application/json"));
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], code, "{v}");
    let msg = v["error"]["message"].as_str().expect("message is a string").to_string();
    assert!(!msg.is_empty());
    msg
}
