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
