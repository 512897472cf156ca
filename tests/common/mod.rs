//! Start the real app on a random port and talk HTTP to it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kesu::config::Settings;
use kesu_core::pipeline::Pipeline;

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
    kesu_core::model::testing::write_tiny_model(&p, 7).expect("write tiny model");
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
    // Each app has its own store and keys file in its temp dir; keys are off
    // unless a test turns them on (`s.auth.no_auth = false`).
    s.store.database_url = format!("sqlite://{}", dir.join("kesu.db").display());
    s.store.no_store = false;
    s.auth.api_keys_file = dir.join("keys.toml");
    s.auth.api_keys = None;
    s.auth.no_auth = true;
    s
}

/// Spawn the app; `tweak` adjusts settings before start.
pub async fn spawn_with(with_model: bool, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_in(tempfile::tempdir().unwrap(), with_model, tweak).await
}

/// Spawn the app with `dir` as its temp dir (the tiny model is written there).
pub async fn spawn_in(dir: tempfile::TempDir, with_model: bool, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut s = settings(dir.path(), with_model);
    tweak(&mut s);
    let pipeline = Pipeline::load(&s.pipeline_options(), with_model).expect("pipeline loads");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let store = kesu_server::api::open_store(&s.store.options()).await.expect("store opens");
    let window = pipeline.contacts().window();
    let pipeline = match kesu_server::api::shared_contacts(store.as_ref(), &s.store.options(), window).unwrap() {
        Some(c) => Arc::new(pipeline.with_contacts(c)),
        None => Arc::new(pipeline),
    };
    let access = kesu_server::auth::access(&s.auth.options()).expect("keys load").0;
    let state = actix_web::web::Data::new(
        kesu_server::api::AppState::new(pipeline, s.server()).with_store(store).with_access(access),
    );
    let server = kesu_server::api::serve(listener, state).unwrap();
    actix_web::rt::spawn(server);
    TestApp { base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new(), dir }
}

pub async fn spawn() -> TestApp {
    spawn_with(true, |_| {}).await
}

/// Copy the shipped lexicon folder (legal_risk.tsv, user_dict.txt, triage.toml) into `dir`.
pub fn copy_lexicons(dir: &Path) -> PathBuf {
    let to = dir.join("lexicons");
    std::fs::create_dir_all(&to).unwrap();
    for f in ["legal_risk.tsv", "user_dict.txt", "triage.toml", "alerts.toml"] {
        std::fs::copy(lexicons().join(f), to.join(f)).unwrap();
    }
    to
}

/// Spawn the app on its own copy of the lexicon folder (`lexicons_dir()`),
/// which a test may edit and reload; `triage`, when given, replaces triage.toml.
pub async fn spawn_own_lexicons(triage: Option<&str>, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let lex = copy_lexicons(dir.path());
    if let Some(t) = triage {
        std::fs::write(lex.join("triage.toml"), t).unwrap();
    }
    spawn_in(dir, true, |s| {
        s.resources.lexicons = lex;
        tweak(s);
    })
    .await
}

impl TestApp {
    /// The lexicon folder of an app from [`spawn_own_lexicons`].
    pub fn lexicons_dir(&self) -> PathBuf {
        self.dir.path().join("lexicons")
    }

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

/// A Server-Sent Events reader over a streaming response.
pub struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// Open `path` as an event stream (asserts 200 and the content type).
    pub async fn open(app: &TestApp, path: &str) -> Sse {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        Sse { resp, buf: String::new() }
    }

    /// The next event as `(event name, data as JSON)`, skipping comments;
    /// `None` when the stream ended. Panics after 20 s without an event.
    pub async fn next(&mut self) -> Option<(String, serde_json::Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if data.is_empty() {
                    continue; // a comment (keep-alive)
                }
                return Some((name, serde_json::from_str(&data).expect("data is JSON")));
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), self.resp.chunk())
                .await
                .expect("an event within 20 s")
                .unwrap();
            match chunk {
                Some(b) => self.buf.push_str(std::str::from_utf8(&b).expect("UTF-8 events")),
                None => return None,
            }
        }
    }
}

/// The corpus folder (`$KESU_CORPORA`, else `../shared/corpora` beside the
/// checkout), or `None` — then corpus tests skip loudly, unless
/// `KESU_REQUIRE_CORPORA=1`, which makes a missing corpus a failure.
pub fn corpora() -> Option<PathBuf> {
    let p = std::env::var_os("KESU_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"));
    if p.join("stc3/train_data_cn.json").exists() {
        return Some(p);
    }
    assert!(
        std::env::var("KESU_REQUIRE_CORPORA").is_err(),
        "KESU_REQUIRE_CORPORA is set but {} has no corpora",
        p.display()
    );
    eprintln!("SKIPPED: no corpora at {} (set KESU_CORPORA)", p.display());
    None
}

/// A private PostgreSQL server for tests: a fresh cluster in a temp dir on a
/// random port, run as the `postgres` user (initdb refuses root), stopped on
/// drop. `None` (tests say SKIPPED) where Debian's PostgreSQL server is not
/// installed, unless `KESU_REQUIRE_POSTGRES=1` (set by `.ci/run`).
pub struct PgServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
}

impl PgServer {
    pub fn start() -> Option<PgServer> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            let mut v: Vec<PathBuf> =
                d.flatten().map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect();
            v.sort();
            v.pop()
        });
        let Some(bin) = bin else {
            assert!(
                std::env::var("KESU_REQUIRE_POSTGRES").is_err(),
                "KESU_REQUIRE_POSTGRES is set but no PostgreSQL server under /usr/lib/postgresql"
            );
            eprintln!("SKIPPED: no PostgreSQL server installed (apt-get install postgresql)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let root = unsafe { libc_geteuid() } == 0;
        let pg = PgServer { dir, port, bin };
        if root {
            assert!(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap()
                .success());
        }
        let data = pg.dir.path().join("data");
        pg.run(
            root,
            &[
                pg.bin.join("initdb").to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
                "-U",
                "kesu",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start_again();
        Some(pg)
    }

    /// Start the (stopped) server again on the same port and data.
    pub fn start_again(&self) {
        let root = unsafe { libc_geteuid() } == 0;
        let data = self.dir.path().join("data");
        let opts =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        self.run(
            root,
            &[
                self.bin.join("pg_ctl").to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                self.dir.path().join("log").to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    fn run(&self, root: bool, args: &[&str]) {
        let out = if root {
            Command::new("runuser").args(["-u", "postgres", "--"]).args(args).output().unwrap()
        } else {
            Command::new(args[0]).args(&args[1..]).output().unwrap()
        };
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://kesu@127.0.0.1:{}/postgres", self.port)
    }

    /// Stop the server now (fast shutdown: open connections are cut).
    pub fn stop(&self) {
        let root = unsafe { libc_geteuid() } == 0;
        let data = self.dir.path().join("data");
        self.run(
            root,
            &[self.bin.join("pg_ctl").to_str().unwrap(), "-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let args = [
            self.bin.join("pg_ctl").to_string_lossy().to_string(),
            "-D".into(),
            data.to_string_lossy().to_string(),
            "-m".into(),
            "immediate".into(),
            "stop".into(),
        ];
        let _ = if unsafe { libc_geteuid() } == 0 {
            Command::new("runuser").args(["-u", "postgres", "--"]).args(&args).output()
        } else {
            Command::new(&args[0]).args(&args[1..]).output()
        };
    }
}

use std::process::Command;

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Run a browser test script of `scripts/console-e2e/` against `app` in
/// headless Chromium, comparing its screenshot with `golden` (in that folder).
/// Returns false (SKIPPED) where Chromium, Node.js or the npm packages are
/// missing, which is a failure under `KESU_REQUIRE_BROWSER=1` (`.ci/run`).
/// `KESU_UPDATE_GOLDEN=1` rewrites the golden image. Panics with the script's
/// output (screenshot and diff copied to the target tmp dir) when it fails.
pub async fn run_browser_script(app: &TestApp, script: &str, golden: &str, env: &[(&str, &str)]) -> bool {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/console-e2e");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = Command::new("node").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    let missing: Vec<&str> = [
        (!Path::new(&chromium).exists()).then_some("chromium"),
        (!node_ok).then_some("node"),
        (!dir.join("node_modules/playwright-core").exists()).then_some("npm ci --prefix scripts/console-e2e"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        assert!(std::env::var("KESU_REQUIRE_BROWSER").is_err(), "KESU_REQUIRE_BROWSER is set but missing: {missing:?}");
        eprintln!("SKIPPED: the browser test {script} needs {missing:?}");
        return false;
    }
    let stem = script.trim_end_matches(".test.mjs");
    let shot = app.dir.path().join(format!("{stem}.png"));
    let mut cmd = tokio::process::Command::new("node");
    cmd.current_dir(&dir)
        .arg(script)
        .arg(&app.base)
        .arg("--golden")
        .arg(golden)
        .arg("--shot")
        .arg(&shot)
        .env("CHROMIUM", &chromium);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if std::env::var("KESU_UPDATE_GOLDEN").is_ok() {
        cmd.arg("--update");
    }
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(180), cmd.output())
        .await
        .expect("browser test within 180 s")
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let keep = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for f in [format!("{stem}.png"), format!("{stem}.diff.png")] {
            let _ = std::fs::copy(app.dir.path().join(&f), keep.join(&f));
        }
        panic!("{script} failed (screenshots copied to {}):\n{log}", keep.display());
    }
    assert!(log.contains("e2e: ok"), "{log}");
    assert!(log.contains("screenshot matches golden") || log.contains("golden written"), "{log}");
    true
}
