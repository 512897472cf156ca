//! API keys and roles on the real app: no key 401, wrong role 403 (both the
//! JSON error shape), health routes open, admin opens everything, and the
//! key's name is the actor in the audit log.
mod common;

use common::{expect_error, spawn_with, TestApp};
use kesu_server::auth::{generate_key, hash_key};
use serde_json::json;

struct Keys {
    intake: String,
    agent: String,
    reviewer: String,
    admin: String,
}

async fn app() -> (TestApp, Keys) {
    let k = Keys { intake: generate_key(), agent: generate_key(), reviewer: generate_key(), admin: generate_key() };
    let env = format!(
        "pipeline:intake:{};console:agent:{};alice:reviewer:{};root:admin:{}",
        hash_key(&k.intake),
        hash_key(&k.agent),
        hash_key(&k.reviewer),
        hash_key(&k.admin)
    );
    let app = spawn_with(true, move |s| {
        s.auth.no_auth = false;
        s.auth.api_keys = Some(env);
        s.store.store_min_escalation = Some(4);
    })
    .await;
    (app, k)
}

async fn call(app: &TestApp, method: &str, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut r = match method {
        "POST" if path == "/v1/classify" || path == "/v1/flags" || path == "/v1/segment" => {
            app.client.post(app.url(path)).json(&json!({"text": "我要去12315投诉你们"}))
        }
        "POST" if path.starts_with("/v1/conversations") => {
            app.client.post(app.url(path)).json(&json!({"role": "customer", "text": "你们太过分了"}))
        }
        "POST" => app.client.post(app.url(path)),
        _ => app.client.get(app.url(path)),
    };
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap()
}

#[actix_web::test]
async fn every_route_needs_its_role_and_health_stays_open() {
    let (app, k) = app().await;
    let routes: &[(&str, &str, &str)] = &[
        ("POST", "/v1/classify", "intake"),
        ("POST", "/v1/flags", "intake"),
        ("POST", "/v1/segment", "intake"),
        ("POST", "/v1/conversations/c1/messages", "agent"),
        ("GET", "/v1/conversations/c1", "agent"),
        ("GET", "/v1/reviews", "reviewer"),
        ("GET", "/v1/reviews/export", "reviewer"),
        ("GET", "/v1/reviews/false-positive-terms", "reviewer"),
        ("GET", "/metrics", "admin"),
        ("POST", "/admin/reload", "admin"),
    ];
    let key_of = |role: &str| match role {
        "intake" => k.intake.clone(),
        "agent" => k.agent.clone(),
        "reviewer" => k.reviewer.clone(),
        _ => k.admin.clone(),
    };
    for (m, path, role) in routes {
        let r = call(&app, m, path, None).await;
        assert_eq!(
            r.headers().get("www-authenticate").map(|v| v.to_str().unwrap()),
            Some("Bearer realm=\"kesu\""),
            "{path}"
        );
        expect_error(r, 401, "unauthorized").await;
        expect_error(call(&app, m, path, Some("kesu_not_a_key")).await, 401, "unauthorized").await;
        for other in ["intake", "agent", "reviewer"].into_iter().filter(|o| o != role) {
            let msg = expect_error(call(&app, m, path, Some(&key_of(other))).await, 403, "forbidden").await;
            assert!(msg.contains(role), "{msg}");
        }
        let own = call(&app, m, path, Some(&key_of(role))).await.status().as_u16();
        assert!(own < 400, "{path} with its own role: {own}");
        let admin = call(&app, m, path, Some(&k.admin)).await.status().as_u16();
        assert!(admin < 400, "{path} as admin: {admin}");
    }
    for open in ["/healthz", "/readyz", "/openapi.json", "/console", "/review"] {
        assert_eq!(call(&app, "GET", open, None).await.status(), 200, "{open} is open");
    }
    // any valid key may read /v1/info
    expect_error(call(&app, "GET", "/v1/info", None).await, 401, "unauthorized").await;
    assert_eq!(call(&app, "GET", "/v1/info", Some(&k.agent)).await.status(), 200);
    // X-Api-Key works as well as Bearer
    let r = app.client.get(app.url("/v1/reviews")).header("x-api-key", &k.reviewer).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[actix_web::test]
async fn the_audit_log_names_the_key_not_a_header() {
    let (app, k) = app().await;
    let r = app
        .client
        .post(app.url("/v1/classify"))
        .bearer_auth(&k.intake)
        .json(&json!({"text": "我已经找了律师，准备起诉你们"}))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    let id = v["review_id"].as_str().expect("stored").to_string();
    let r = app
        .client
        .patch(app.url(&format!("/v1/reviews/{id}")))
        .bearer_auth(&k.reviewer)
        .header("x-kesu-actor", "mallory")
        .json(&json!({"version": 1, "status": "in_review"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h: serde_json::Value = app
        .client
        .get(app.url(&format!("/v1/reviews/{id}/history")))
        .bearer_auth(&k.reviewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h[1]["actor"], "alice", "the key's name, whatever the header says");
}

#[actix_web::test]
async fn first_start_without_keys_creates_one_admin_key_and_keeps_only_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = kesu::config::Settings::defaults();
    s.auth.no_auth = false;
    s.auth.api_keys = None;
    s.auth.api_keys_file = dir.path().join("data/keys.toml");
    let (access, key) = kesu_server::auth::access(&s.auth.options()).unwrap();
    let key = key.expect("a key is created");
    let file = std::fs::read_to_string(&s.auth.api_keys_file).unwrap();
    assert!(!file.contains(&key) && file.contains(&hash_key(&key)));
    let kesu_server::auth::Access::Keys(keys) = access else { panic!("keys are required") };
    assert!(keys.authenticate(&key).unwrap().may(kesu_server::auth::Role::Reviewer));
    // the second start finds it and creates nothing
    let (_, again) = kesu_server::auth::access(&s.auth.options()).unwrap();
    assert!(again.is_none());
    // --no-auth opens everything and creates nothing
    let other = dir.path().join("other.toml");
    s.auth.api_keys_file = other.clone();
    s.auth.no_auth = true;
    assert!(matches!(kesu_server::auth::access(&s.auth.options()).unwrap(), (kesu_server::auth::Access::Open, None)));
    assert!(!other.exists());
}

/// The `kesu_session=<token>` pair of a response's `Set-Cookie`, and the whole header.
fn session_cookie(r: &reqwest::Response) -> (String, String) {
    let set = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("kesu_session="))
        .expect("a kesu_session cookie is set");
    (set.split(';').next().unwrap().to_string(), set)
}

async fn with_cookie(app: &TestApp, method: reqwest::Method, path: &str, cookie: &str) -> reqwest::Response {
    app.client.request(method, app.url(path)).header("cookie", cookie).send().await.unwrap()
}

#[actix_web::test]
async fn the_console_exchanges_its_key_for_an_httponly_session_cookie() {
    let (app, k) = app().await;
    // no session without a key
    expect_error(app.client.post(app.url("/v1/session")).send().await.unwrap(), 401, "unauthorized").await;
    let r = app.client.post(app.url("/v1/session")).bearer_auth(&k.reviewer).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (cookie, set) = session_cookie(&r);
    let attrs: Vec<String> = set.split(';').map(|a| a.trim().to_ascii_lowercase()).collect();
    for want in ["httponly", "samesite=strict", "path=/v1", "max-age=28800"] {
        assert!(attrs.iter().any(|a| a == want), "{want} in {set}");
    }
    assert!(!attrs.iter().any(|a| a == "secure"), "plain HTTP: no Secure ({set})");
    assert!(!set.contains(&k.reviewer) && !set.contains(&hash_key(&k.reviewer)), "the key is not in the cookie");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (v["name"].as_str(), v["roles"][0].as_str(), v["ttl_secs"].as_u64()),
        (Some("alice"), Some("reviewer"), Some(28800))
    );
    // the cookie opens what the key opens, and only that
    assert_eq!(with_cookie(&app, reqwest::Method::GET, "/v1/reviews", &cookie).await.status(), 200);
    let r = app.client.get(app.url("/v1/reviews/export?format=csv")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200, "download links carry it");
    expect_error(with_cookie(&app, reqwest::Method::GET, "/metrics", &cookie).await, 403, "forbidden").await;
    // a session does not make another session
    expect_error(with_cookie(&app, reqwest::Method::POST, "/v1/session", &cookie).await, 401, "unauthorized").await;
    // the old key cookie is no way in
    let old = format!("kesu_key={}", k.reviewer);
    expect_error(with_cookie(&app, reqwest::Method::GET, "/v1/reviews", &old).await, 401, "unauthorized").await;
    // log out: the cookie is cleared and the session refused
    let r = with_cookie(&app, reqwest::Method::DELETE, "/v1/session", &cookie).await;
    assert_eq!(r.status(), 204);
    let (cleared, set) = session_cookie(&r);
    assert!(cleared == "kesu_session=" && set.contains("Max-Age=0"), "{set}");
    expect_error(with_cookie(&app, reqwest::Method::GET, "/v1/reviews", &cookie).await, 401, "unauthorized").await;

    // behind a TLS proxy the cookie is Secure
    let r = app
        .client
        .post(app.url("/v1/session"))
        .bearer_auth(&k.agent)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let (agent_cookie, set) = session_cookie(&r);
    assert!(set.split(';').any(|a| a.trim() == "Secure"), "{set}");
    // the agent console's EventSource stream is opened with the cookie alone
    let r = with_cookie(&app, reqwest::Method::POST, "/v1/conversations/s1/messages", &agent_cookie).await;
    assert_eq!(r.status(), 415, "let in (then the body is checked)");
    let r = app
        .client
        .post(app.url("/v1/conversations/s1/messages"))
        .header("cookie", &agent_cookie)
        .json(&json!({"role": "customer", "text": "你们太过分了"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = with_cookie(&app, reqwest::Method::GET, "/v1/conversations/s1/events", &agent_cookie).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    // the pages ask for the key and never write it into a cookie
    for page in ["/console", "/review"] {
        let html = app.get(page).await.text().await.unwrap();
        assert!(html.contains("/v1/session") && !html.contains("\"kesu_key=\" +"), "{page}");
    }
}

#[actix_web::test]
async fn sessions_expire_after_their_ttl() {
    let key = generate_key();
    let env = format!("alice:reviewer:{}", hash_key(&key));
    let app = spawn_with(true, move |s| {
        s.auth.no_auth = false;
        s.auth.api_keys = Some(env);
        s.auth.session_ttl_secs = 1;
    })
    .await;
    let r = app.client.post(app.url("/v1/session")).bearer_auth(&key).send().await.unwrap();
    let (cookie, set) = session_cookie(&r);
    assert!(set.contains("Max-Age=1"), "{set}");
    assert_eq!(with_cookie(&app, reqwest::Method::GET, "/v1/reviews", &cookie).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let msg =
        expect_error(with_cookie(&app, reqwest::Method::GET, "/v1/reviews", &cookie).await, 401, "unauthorized").await;
    assert!(msg.contains("expired"), "{msg}");
}

/// A key file with `entries` (name, roles, key).
fn write_keys(file: &std::path::Path, entries: &[(&str, &str, &str)]) {
    let mut s = String::new();
    for (name, role, key) in entries {
        s += &format!("[[keys]]\nname = \"{name}\"\nroles = [\"{role}\"]\nsha256 = \"{}\"\n\n", hash_key(key));
    }
    std::fs::write(file, s).unwrap();
}

#[actix_web::test]
async fn a_reload_reads_the_key_file_again_and_a_revoked_key_is_refused_at_once() {
    let (root, alice, bob) = (generate_key(), generate_key(), generate_key());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    write_keys(&file, &[("root", "admin", &root), ("alice", "reviewer", &alice)]);
    let app = common::spawn_in(dir, true, |s| s.auth.no_auth = false).await;
    let reviews = |key: String| {
        let app = &app;
        async move { app.client.get(app.url("/v1/reviews")).bearer_auth(key).send().await.unwrap() }
    };
    let reload = || async { app.client.post(app.url("/admin/reload")).bearer_auth(&root).send().await.unwrap() };
    assert_eq!(reviews(alice.clone()).await.status(), 200);
    expect_error(reviews(bob.clone()).await, 401, "unauthorized").await;
    let (alice_session, _) =
        session_cookie(&app.client.post(app.url("/v1/session")).bearer_auth(&alice).send().await.unwrap());
    assert_eq!(with_cookie(&app, reqwest::Method::GET, "/v1/reviews", &alice_session).await.status(), 200);

    // alice revoked, bob added
    write_keys(&file, &[("root", "admin", &root), ("bob", "reviewer", &bob)]);
    let r = reload().await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["api_keys"], 2, "{v}");
    expect_error(reviews(alice.clone()).await, 401, "unauthorized").await;
    expect_error(with_cookie(&app, reqwest::Method::GET, "/v1/reviews", &alice_session).await, 401, "unauthorized")
        .await;
    assert_eq!(reviews(bob.clone()).await.status(), 200);

    // a broken key file: refused with its file and line, the keys in force keep serving
    std::fs::write(&file, format!("[[keys]]\nname = \"root\"\nroles = [\"admin\"\nsha256 = \"{}\"\n", hash_key(&root)))
        .unwrap();
    let r = reload().await;
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_keys", "{v}");
    assert_eq!(v["error"]["file"], file.display().to_string());
    assert!(v["error"]["line"].as_u64().is_some(), "{v}");
    assert_eq!(reviews(bob.clone()).await.status(), 200, "the previous keys keep serving");
    // the same key under two names: refused, naming both
    write_keys(&file, &[("root", "admin", &root), ("bob", "reviewer", &bob), ("bobby", "admin", &bob)]);
    let msg = expect_error(reload().await, 422, "invalid_api_keys").await;
    assert!(msg.contains("\"bob\"") && msg.contains("\"bobby\""), "{msg}");
    let info: serde_json::Value =
        app.client.get(app.url("/v1/info")).bearer_auth(&root).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["reload"]["failed"], 2, "{info}");
}

#[actix_web::test]
async fn each_key_has_its_own_cost_based_rate_limit_and_an_exempt_key_has_none() {
    let (a, b, fuzz, root) = (generate_key(), generate_key(), generate_key(), generate_key());
    let env = format!(
        "a:intake:{};b:intake:{};fuzz:intake:{}:unlimited;root:admin:{}",
        hash_key(&a),
        hash_key(&b),
        hash_key(&fuzz),
        hash_key(&root)
    );
    let app = spawn_with(true, move |s| {
        s.auth.no_auth = false;
        s.auth.api_keys = Some(env);
        // 3 tokens, refilled at 1 per 100 s: no refill within the test
        s.auth.rate_limit_intake = "0.01:3".parse().unwrap();
        s.auth.rate_limit_bytes_per_token = 100;
        s.store.store_min_escalation = Some(4);
    })
    .await;
    let flags = |key: String, text: String| {
        let app = &app;
        async move {
            app.client.post(app.url("/v1/flags")).bearer_auth(key).json(&json!({"text": text})).send().await.unwrap()
        }
    };
    let short = || "我要投诉".to_string();
    for i in 0..2 {
        assert_eq!(flags(a.clone(), short()).await.status(), 200, "request {i}");
    }
    // each of those cost 1 + ~25 bytes / 100: what is left is below 1
    let r = flags(a.clone(), short()).await;
    let retry: u64 = r.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    let msg = expect_error(r, 429, "rate_limited").await;
    assert!(msg.contains("\"a\""), "{msg}");
    // another key is not starved by a; a request costs its bytes: one costlier than
    // the whole bucket passes on a full bucket, then b waits (where 2 short ones passed)
    let big = "我要投诉".repeat(40); // 480 bytes: cost 1 + 4.8 + JSON
    assert_eq!(flags(b.clone(), big).await.status(), 200, "b's bucket is full");
    expect_error(flags(b.clone(), short()).await, 429, "rate_limited").await;
    // the exempt key is never limited
    for _ in 0..30 {
        assert_eq!(flags(fuzz.clone(), "我要投诉".repeat(100)).await.status(), 200);
    }
    let m = app.client.get(app.url("/metrics")).bearer_auth(&root).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("kesu_rate_limited_total{key=\"a\"} 1"), "{m}");
    assert!(m.contains("kesu_rate_limited_total{key=\"b\"} 1"), "{m}");
    assert!(!m.contains("kesu_rate_limited_total{key=\"fuzz\"}"), "{m}");
}

/// The real binary: a first start without keys and without a terminal writes
/// the admin key to a 0600 file and logs only that file's path (never the
/// key); the key file is 0600; a SIGHUP reads the key file again.
#[cfg(unix)]
#[tokio::test]
async fn first_start_key_is_not_logged_and_sighup_reloads_the_keys() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("data/keys.toml");
    let model = common::tiny_model(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_kesu"))
        .args(["serve", "--port", "0", "--log-format", "json"])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.path().join("kesu.db").display()))
        .arg("--lexicons")
        .arg(common::lexicons())
        .arg("--model")
        .arg(&model)
        .arg("--api-keys-file")
        .arg(&keys_file)
        .env("RUST_LOG", "info")
        .env_remove("KESU_API_KEYS")
        .env_remove("KESU_NO_AUTH")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("kesu listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let _ = tx.send(v["fields"]["address"].as_str().unwrap().to_string());
            }
            all.push(line);
        }
        all
    });
    let addr = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("kesu listening");
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let info = |key: String| {
        let (client, base) = (&client, &base);
        async move { client.get(format!("{base}/v1/info")).bearer_auth(key).send().await.unwrap().status().as_u16() }
    };
    // the server answers (its SIGHUP handler is in place) once this is 401
    for _ in 0..200 {
        if info("kesu_nope".into()).await == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let key_file = keys_file.with_file_name("first-admin-key");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&keys_file), 0o600);
    let admin = std::fs::read_to_string(&key_file).unwrap().lines().next().unwrap().to_string();
    assert!(admin.starts_with("kesu_"), "{admin}");
    assert_eq!(info(admin.clone()).await, 200, "the key in the file is the admin key");

    // a key added to the file works after SIGHUP, without a restart
    let added = kesu_server::auth::add_key(&keys_file, "late", &[kesu_server::auth::Role::Reviewer]).unwrap();
    assert_eq!(info(added.clone()).await, 401, "not before the reload");
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    let mut ok = false;
    for _ in 0..200 {
        if info(added.clone()).await == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "SIGHUP reloaded the keys within 20 s");

    child.kill().unwrap();
    child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let logs = logs.join().unwrap();
    let all = logs.join("\n");
    assert!(!all.contains(&admin) && !stdout.contains(&admin), "the first admin key is never in the log");
    assert!(!all.contains(&added));
    assert!(
        logs.iter().any(|l| l.contains("first-admin-key") && l.contains("admin key was created")),
        "the log names the file: {all}"
    );
    assert!(logs.iter().any(|l| l.contains("API keys reloaded") && l.contains("\"trigger\":\"sighup\"")), "{all}");
}
