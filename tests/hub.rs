//! `--model hf://owner/repo/file` against a local HTTP server that serves a
//! tiny model the way the Hugging Face hub does (`/{repo}/resolve/{revision}/{file}`,
//! ranged GETs, `ETag` and `X-Repo-Commit` headers). Nothing leaves the machine.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Serve `file` at `/kesu/tiny/resolve/main/tiny.gguf` until the test ends;
/// returns the endpoint and a count of the requests served.
fn hub(file: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    let etag = {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(&file))
    };
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let path = head.first().and_then(|l| l.split(' ').nth(1)).unwrap_or("").to_string();
            let range = head
                .iter()
                .find_map(|h| h.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_string))
                .and_then(|r| {
                    let (a, b) = r.split_once('-')?;
                    let a: usize = a.parse().ok()?;
                    let b: usize = if b.is_empty() { file.len() - 1 } else { b.parse().ok()? };
                    Some((a, b.min(file.len() - 1)))
                });
            let response = if path == "/kesu/tiny/resolve/main/tiny.gguf" {
                let (a, b) = range.unwrap_or((0, file.len() - 1));
                let body = &file[a..=b];
                let mut r = format!(
                    "HTTP/1.1 {}\r\nContent-Length: {}\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n",
                    if range.is_some() { "206 Partial Content" } else { "200 OK" },
                    body.len()
                )
                .into_bytes();
                if range.is_some() {
                    r.extend(format!("Content-Range: bytes {a}-{b}/{}\r\n", file.len()).bytes());
                }
                r.extend(b"\r\n");
                r.extend(body);
                r
            } else {
                b"HTTP/1.1 404 Not Found\r\nX-Error-Code: EntryNotFound\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            };
            let _ = conn.write_all(&response);
        }
    });
    (endpoint, served)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn kesu(model: &str, hf_home: &std::path::Path, endpoint: &str, offline: bool) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kesu"));
    c.args(["classify", "--model", model, "--lexicons"])
        .arg(common::lexicons())
        .arg("快递三天没到，客服也不回复")
        .env("HF_HOME", hf_home)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE");
    if offline {
        c.env("HF_HUB_OFFLINE", "1");
    }
    c.output().unwrap()
}

#[test]
fn models_load_from_a_hub_into_its_cache_and_then_offline() {
    let dir = tempfile::tempdir().unwrap();
    let model = std::fs::read(common::tiny_model(dir.path())).unwrap();
    let (endpoint, served) = hub(model.clone());
    let hf_home = dir.path().join("hf");

    // First use: fetched through the hub client, cached, loaded.
    let out = kesu("hf://kesu/tiny/tiny.gguf", &hf_home, &endpoint, false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(line["category"]["label"].is_string(), "{line}");
    assert!(served.load(Ordering::SeqCst) >= 2, "metadata and download requests");
    let cached = hf_home.join("hub/models--kesu--tiny/snapshots").join(COMMIT).join("tiny.gguf");
    assert_eq!(std::fs::read(&cached).unwrap(), model, "the cached copy is the served file");

    // Cached: no request at all, online or offline.
    let before = served.load(Ordering::SeqCst);
    for offline in [false, true] {
        let out = kesu("hf://kesu/tiny/tiny.gguf", &hf_home, &endpoint, offline);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(served.load(Ordering::SeqCst), before);

    // A file the hub does not have, a malformed reference, an empty cache offline: exit 3, a clear message.
    let cases = [
        ("hf://kesu/tiny/absent.gguf", false, "absent.gguf"),
        ("hf://kesu/tiny", false, "give hf://owner/repo/file"),
        ("hf://kesu/other/tiny.gguf", true, "HF_HUB_OFFLINE"),
    ];
    for (reference, offline, says) in cases {
        let out = kesu(reference, &hf_home, &endpoint, offline);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{reference}: {err}");
        assert!(err.contains(says), "{reference}: {err}");
    }
}
