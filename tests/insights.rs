//! Insights aggregates (issue 15) on SQLite and on a real PostgreSQL:
//! buckets in the configured time zone, breakdowns, counted once per
//! idempotency key, replicas adding concurrently, value caps, retention,
//! and the HTTP API (`/v1/insights/...`, `analyst` role) over the real app.
mod common;

use std::collections::BTreeMap;

use common::{expect_error, PgServer};
use kesu_store::insights::{By, Column, Counted, Grain, InsightsConfig, Selection, OTHER};
use kesu_store::{text_sha256, KeyClaim, Store, StoreError};
use serde_json::{json, Value};

fn ms(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn counted(
    at: &str,
    category: &str,
    escalation: u8,
    flags: &[&str],
    channel: Option<&str>,
    tags: &[(&str, &str)],
) -> Counted {
    Counted {
        at_ms: ms(at),
        category: category.into(),
        escalation,
        priority: if escalation == 3 { "P1".into() } else { "P3".into() },
        route: "agent".into(),
        channel: channel.map(str::to_string),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        embedding: Vec::new(),
        words: Vec::new(),
        stored: None,
    }
}

/// Recent times, so every grain is inside its retention: `h` hours before the
/// current hour's start plus `m` minutes.
fn recent(h: i64, m: i64) -> String {
    let now = jiff::Timestamp::now().as_millisecond();
    let t = now - now.rem_euclid(3_600_000) - h * 3_600_000 + m * 60_000;
    jiff::Timestamp::from_millisecond(t).unwrap().to_string()
}

async fn total(store: &Store, grain: Grain, from: i64, to: i64, sel: &Selection) -> (i64, i64) {
    let cells = store.insight_cells(grain, from, to, sel, None).await.unwrap();
    (cells.iter().map(|c| c.count).sum(), cells.iter().map(|c| c.escalation_sum).sum())
}

fn by_key(cells: &[kesu_store::insights::Cell]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for c in cells {
        *m.entry(c.key.clone()).or_default() += c.count;
    }
    m
}

async fn suite(store: Store, replica: Store) {
    let far = (0, i64::MAX / 4);
    // Breakdowns: labels, flags (an item with two counts under both), tags.
    let items = vec![
        counted(
            &recent(3, 1),
            "service",
            3,
            &["litigation", "regulator"],
            Some("app"),
            &[("region", "sh"), ("unlisted", "x")],
        ),
        counted(&recent(3, 2), "service", 1, &[], Some("app"), &[("region", "bj")]),
        counted(&recent(3, 59), "product", 2, &["media"], Some("weibo"), &[("region", "sh")]),
        counted(&recent(2, 0), "information_security", 0, &[], None, &[]),
    ];
    store.insert_claimed(&[], "", &[], 0, &items, "t").await.unwrap();
    let all = Selection::default();
    assert_eq!(total(&store, Grain::Hour, far.0, far.1, &all).await, (4, 6));
    assert_eq!(total(&store, Grain::Minute, far.0, far.1, &all).await, (4, 6));
    assert_eq!(total(&store, Grain::Day, far.0, far.1, &all).await, (4, 6));
    let hours = store.insight_cells(Grain::Hour, far.0, far.1, &all, None).await.unwrap();
    assert_eq!(hours.iter().map(|c| c.count).collect::<Vec<_>>(), vec![3, 1], "two hour buckets: {hours:?}");
    let cat = store.insight_cells(Grain::Hour, far.0, far.1, &all, Some(&By::Column(Column::Category))).await.unwrap();
    assert_eq!(
        by_key(&cat),
        BTreeMap::from([("information_security".into(), 1), ("product".into(), 1), ("service".into(), 2)])
    );
    let lv = store.insight_cells(Grain::Day, far.0, far.1, &all, Some(&By::Column(Column::Escalation))).await.unwrap();
    assert_eq!(by_key(&lv).get("3"), Some(&1));
    let flags = store.insight_cells(Grain::Hour, far.0, far.1, &all, Some(&By::Flag)).await.unwrap();
    assert_eq!(
        by_key(&flags),
        BTreeMap::from([("litigation".into(), 1), ("media".into(), 1), ("regulator".into(), 1)])
    );
    let region = store.insight_cells(Grain::Hour, far.0, far.1, &all, Some(&By::Tag("region".into()))).await.unwrap();
    assert_eq!(by_key(&region), BTreeMap::from([("bj".into(), 1), ("sh".into(), 2)]));
    let unlisted =
        store.insight_cells(Grain::Hour, far.0, far.1, &all, Some(&By::Tag("unlisted".into()))).await.unwrap();
    assert!(unlisted.is_empty(), "only configured tag names are counted");
    let ch = store.insight_cells(Grain::Hour, far.0, far.1, &all, Some(&By::Column(Column::Channel))).await.unwrap();
    assert_eq!(by_key(&ch), BTreeMap::from([("".into(), 1), ("app".into(), 2), ("weibo".into(), 1)]));
    // Filters: a flag, a tag value, a column, a level.
    let lit = Selection { flag: Some("litigation".into()), ..Default::default() };
    assert_eq!(total(&store, Grain::Hour, far.0, far.1, &lit).await, (1, 3));
    let sh = Selection { tag: Some(("region".into(), "sh".into())), ..Default::default() };
    let sh_cat =
        store.insight_cells(Grain::Hour, far.0, far.1, &sh, Some(&By::Column(Column::Category))).await.unwrap();
    assert_eq!(by_key(&sh_cat), BTreeMap::from([("product".into(), 1), ("service".into(), 1)]));
    let svc = Selection {
        equal: vec![(Column::Category, "service".into()), (Column::Escalation, "1".into())],
        ..Default::default()
    };
    assert_eq!(total(&store, Grain::Hour, far.0, far.1, &svc).await, (1, 1));
    // A NUL in a filter or an issue id: an answer, never a database error (PostgreSQL refuses NUL).
    let nul = Selection {
        equal: vec![(Column::Channel, "a\u{0}b".into())],
        flag: Some("x\u{0}".into()),
        ..Default::default()
    };
    assert_eq!(total(&store, Grain::Hour, far.0, far.1, &nul).await, (0, 0));
    assert!(store.issue_span("h\u{0}").await.unwrap().is_none());
    assert!(store.issue_examples("h\u{0}", 5).await.unwrap().is_empty());
    // A LIKE wildcard in a tag name matches nothing but itself.
    assert!(store
        .insight_cells(Grain::Hour, far.0, far.1, &all, Some(&By::Tag("re%".into())))
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.insight_cells(Grain::Hour, far.0, far.1, &lit, Some(&By::Flag)).await,
        Err(StoreError::Query(_))
    ));

    // Counted with its idempotency claim: a second claim of the key counts nothing.
    let claim = |k: &str| KeyClaim { key: k.into(), text_sha256: text_sha256(k), item: None };
    let one = [counted(&recent(1, 5), "product", 2, &[], Some("app"), &[])];
    store.insert_claimed(&[], "scope", &[claim("k1")], 0, &one, "t").await.unwrap();
    let again = replica.insert_claimed(&[], "scope", &[claim("k1")], 0, &one, "t").await;
    assert!(matches!(again, Err(StoreError::KeyTaken(_))), "{again:?}");
    assert_eq!(total(&store, Grain::Hour, far.0, far.1, &all).await.0, 5, "the replay counted nothing");

    // Replicas adding to the same rows at once: every count lands.
    let mut tasks = Vec::new();
    for r in 0..8 {
        let s = if r % 2 == 0 { store.clone() } else { replica.clone() };
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let batch: Vec<Counted> = (0..5)
                    .map(|i| counted(&recent(1, i), "service", 2, &["media"], Some("app"), &[("region", "sh")]))
                    .collect();
                s.insert_claimed(&[], "", &[], 0, &batch, "t").await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(total(&store, Grain::Hour, far.0, far.1, &all).await.0, 5 + 200);
    assert_eq!(total(&replica, Grain::Day, far.0, far.1, &lit).await.0, 1);
    let media = Selection { flag: Some("media".into()), ..Default::default() };
    assert_eq!(total(&replica, Grain::Minute, far.0, far.1, &media).await.0, 201);

    // Value caps (2 here): a third channel counts as (other), shared by replicas.
    let chans: Vec<Counted> =
        ["c1", "c2", "c3", "c1"].iter().map(|c| counted(&recent(0, 0), "service", 0, &[], Some(c), &[])).collect();
    store.insert_claimed(&[], "", &[], 0, &chans[..2], "t").await.unwrap();
    replica.insert_claimed(&[], "", &[], 0, &chans[2..], "t").await.unwrap();
    let now_hour = ms(&recent(0, 0));
    let ch = store
        .insight_cells(Grain::Hour, now_hour, now_hour + 3_600_000, &all, Some(&By::Column(Column::Channel)))
        .await
        .unwrap();
    // "app" and "weibo" were registered first: every new channel is past the cap.
    assert_eq!(by_key(&ch), BTreeMap::from([(OTHER.into(), 4)]));

    // History older than a grain's retention skips that grain; the sweep deletes expired buckets.
    let old = [counted("2026-01-05T10:00:00Z", "product", 3, &[], None, &[])];
    store.insert_claimed(&[], "", &[], 0, &old, "t").await.unwrap();
    let jan = (ms("2026-01-01T00:00:00Z"), ms("2026-02-01T00:00:00Z"));
    assert_eq!(total(&store, Grain::Minute, jan.0, jan.1, &all).await.0, 0, "minutes of January are past retention");
    assert_eq!(total(&store, Grain::Hour, jan.0, jan.1, &all).await.0, 0, "hours too (90 days)");
    assert_eq!(total(&store, Grain::Day, jan.0, jan.1, &all).await.0, 1);
    let in_three_days = jiff::Timestamp::now().as_millisecond() + 3 * 86_400_000;
    assert!(store.purge_insights(in_three_days).await.unwrap() > 0);
    assert_eq!(total(&store, Grain::Minute, far.0, far.1, &all).await.0, 0, "minute buckets expire after 48 h");
    assert_eq!(total(&store, Grain::Hour, far.0, far.1, &all).await.0, 209, "hours keep the counts");
    assert_eq!(total(&store, Grain::Day, far.0, far.1, &all).await.0, 210);
}

fn config() -> InsightsConfig {
    let mut c = InsightsConfig::new("Asia/Shanghai", vec!["region".into()]).unwrap();
    c.max_values = 2;
    c
}

async fn open(url: &str) -> Store {
    Store::open(url, 4).await.unwrap().with_insights(config()).await.unwrap()
}

/// Shanghai days start at 16:00 UTC; a store configured with another zone on
/// the same database is refused; counting off writes nothing.
async fn zones_and_switch(url: &str, store: &Store) {
    let day = |s: &str| store.insights().bucket_start(Grain::Day, ms(s));
    assert_eq!(day("2026-12-03T15:59:59Z"), ms("2026-12-02T16:00:00Z"));
    assert_eq!(day("2026-12-03T16:00:00Z"), ms("2026-12-03T16:00:00Z"));
    let utc = InsightsConfig::new("UTC", vec![]).unwrap();
    let refused = Store::open(url, 1).await.unwrap().with_insights(utc.clone()).await;
    assert!(matches!(&refused, Err(e) if e.to_string().contains("Asia/Shanghai")), "another zone is refused");
    let mut off = utc;
    off.enabled = false;
    let quiet = Store::open(url, 1).await.unwrap().with_insights(off).await.unwrap();
    let before = total(store, Grain::Day, 0, i64::MAX / 4, &Selection::default()).await.0;
    quiet.insert_claimed(&[], "", &[], 0, &[counted(&recent(0, 1), "service", 1, &[], None, &[])], "t").await.unwrap();
    assert_eq!(total(store, Grain::Day, 0, i64::MAX / 4, &Selection::default()).await.0, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/kesu.db", dir.path().display());
    let store = open(&url).await;
    suite(store.clone(), open(&url).await).await;
    zones_and_switch(&url, &store).await;
    // a restart keeps every count
    drop(store);
    let again = open(&url).await;
    assert_eq!(total(&again, Grain::Day, 0, i64::MAX / 4, &Selection::default()).await.0, 210);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_aggregates() {
    let Some(pg) = PgServer::start() else { return };
    let store = open(&pg.url()).await;
    suite(store.clone(), open(&pg.url()).await).await;
    zones_and_switch(&pg.url(), &store).await;
}

// ---- the HTTP API over the real app (tiny model, SQLite) ----

async fn json(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[actix_web::test]
async fn http_counts_everything_classified_once() {
    let app = common::spawn_with(true, |s| s.store.insights_tags = vec!["product_line".into()]).await;
    let now = jiff::Timestamp::now();
    let earlier = |h: i64| (now - jiff::SignedDuration::from_hours(h)).to_string();
    let items: Vec<Value> = (0..6)
        .map(|i| {
            json!({
                "text": format!("信用卡被盗刷了第{i}次，再不处理我就去银保监投诉"),
                "idempotency_key": format!("k{i}"),
                "channel": if i % 2 == 0 { "app" } else { "weibo" },
                "tags": {"product_line": if i < 4 { "credit_card" } else { "loan" }},
                "received_at": earlier(if i < 3 { 30 } else { 2 }),
            })
        })
        .collect();
    let r = app.post_json("/v1/classify", &json!({"items": items})).await;
    assert_eq!(r.status(), 200);
    // the same request again (a retry): answered, counted nothing
    let r = json(app.post_json("/v1/classify", &json!({"items": items})).await).await;
    assert!(r["items"].as_array().unwrap().iter().all(|i| i["replayed"] == true));
    // one text without key or event time: counted now
    json(app.post_json("/v1/classify", &json!({"text": "快递三天没到"})).await).await;

    let from = (now - jiff::SignedDuration::from_hours(48)).to_string();
    let s = json(app.get(&format!("/v1/insights/series?grain=hour&from={from}&by=tag:product_line")).await).await;
    assert_eq!(s["total"], 7, "{s}");
    assert_eq!(s["time_zone"], "Asia/Shanghai");
    assert!(s["from"].as_str().unwrap().ends_with("+08:00"));
    let buckets = s["buckets"].as_array().unwrap();
    assert!((48..=49).contains(&buckets.len()), "every hour, empty ones too: {}", buckets.len());
    let counts: Vec<i64> = buckets.iter().map(|b| b["count"].as_i64().unwrap()).filter(|n| *n > 0).collect();
    assert_eq!(counts, vec![3, 3, 1], "30 h ago, 2 h ago, now");
    let with_loan: i64 = buckets.iter().map(|b| b["by"]["loan"].as_i64().unwrap_or(0)).sum();
    assert_eq!(with_loan, 2);
    assert!(buckets.iter().filter(|b| b["count"] == 0).all(|b| b["negative_index"].is_null()));
    let idx = s["negative_index"].as_f64().unwrap();
    assert!((0.0..=3.0).contains(&idx));

    let b = json(app.get(&format!("/v1/insights/breakdown?from={from}&by=channel")).await).await;
    assert_eq!(b["total"], 7);
    let values = b["values"].as_array().unwrap();
    assert_eq!((values[0]["value"].as_str(), values[0]["count"].as_i64()), (Some("app"), Some(3)));
    let shares: f64 = values.iter().map(|v| v["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-3, "{b}");
    let d = json(app.get(&format!("/v1/insights/series?grain=day&from={from}&channel=weibo")).await).await;
    assert_eq!(d["total"], 3);

    // Bad input: a clear 422, never a 500.
    let cases = [
        "/v1/insights/series?grain=week",
        "/v1/insights/series?from=yesterday",
        "/v1/insights/series?from=2026-12-05T00:00:00Z&to=2026-12-04T00:00:00Z",
        "/v1/insights/series?grain=minute&from=2026-01-01T00:00:00Z&to=2026-12-01T00:00:00Z",
        "/v1/insights/series?by=text",
        "/v1/insights/series?flag=nonsense",
        "/v1/insights/series?by=flag&flag=litigation",
        "/v1/insights/series?tag=novalue",
        "/v1/insights/series?escalation=7",
        "/v1/insights/series?bogus=1",
        "/v1/insights/breakdown",
        "/v1/insights/breakdown?by=flag&grain=week",
    ];
    for c in cases {
        expect_error(app.get(c).await, 422, "invalid_query").await;
    }
    let future = (now + jiff::SignedDuration::from_hours(1)).to_string();
    let r = app.post_json("/v1/classify", &json!({"text": "x", "received_at": future})).await;
    expect_error(r, 422, "invalid_timestamp").await;
    let r = app.post_json("/v1/classify", &json!({"text": "x", "tags": {"bad name": "v"}})).await;
    expect_error(r, 422, "invalid_request").await;
    let r = app.post_json("/v1/classify", &json!({"items": [{"text": "x"}], "tags": {"a": "b"}})).await;
    expect_error(r, 422, "invalid_request").await;
}

#[actix_web::test]
async fn analyst_role_opens_insights_only() {
    let keys = "ana:analyst:{};bot:intake:{};boss:admin:{}";
    let keys = keys
        .replacen("{}", &kesu_server::auth::hash_key("k-ana"), 1)
        .replacen("{}", &kesu_server::auth::hash_key("k-bot"), 1)
        .replacen("{}", &kesu_server::auth::hash_key("k-boss"), 1);
    let app = common::spawn_with(true, |s| {
        s.auth.no_auth = false;
        s.auth.api_keys = Some(keys);
    })
    .await;
    let get = |key: &'static str, path: &'static str| app.client.get(app.url(path)).bearer_auth(key).send();
    assert_eq!(get("k-ana", "/v1/insights/series").await.unwrap().status(), 200);
    assert_eq!(get("k-boss", "/v1/insights/breakdown?by=category").await.unwrap().status(), 200);
    expect_error(get("k-bot", "/v1/insights/series").await.unwrap(), 403, "forbidden").await;
    expect_error(get("k-ana", "/v1/reviews").await.unwrap(), 403, "forbidden").await;
    let r =
        app.client.post(app.url("/v1/classify")).bearer_auth("k-ana").json(&json!({"text": "x"})).send().await.unwrap();
    expect_error(r, 403, "forbidden").await;
}

#[actix_web::test]
async fn without_a_store_insights_answer_503() {
    let app = common::spawn_with(true, |s| s.store.no_store = true).await;
    expect_error(app.get("/v1/insights/series").await, 503, "store_disabled").await;
}

// ---- the worker: hot spots, alert rules, webhooks ----

/// A webhook receiver on a random port: answers 500 to the first `fail`
/// requests, then 200; keeps (headers, body) of each.
struct Receiver {
    url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

fn receiver(fail: usize) -> Receiver {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for (n, conn) in l.incoming().enumerate() {
            let Ok(mut s) = conn else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            g.lock().unwrap().push((head, String::from_utf8_lossy(&body).to_string()));
            let status = if n < fail { "500 Internal Server Error" } else { "200 OK" };
            let _ = write!(s, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    Receiver { url, got }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..120 {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}");
}

#[actix_web::test]
async fn history_with_a_spike_raises_signed_alerts_and_an_emerging_issue() {
    let hook = receiver(1);
    std::env::set_var("KESU_TEST_HOOK_SECRET", "s3cret-for-tests");
    let rules = format!(
        r#"version = "test-1"
[[target]]
name = "hook"
url = "{}"
secret_env = "KESU_TEST_HOOK_SECRET"
timeout_ms = 2000

[[rule]]
name = "volume_spike"
kind = "volume"
z = 4.0
min_count = 20
history = 24
alpha = 0.1
severity = "warning"
targets = ["hook"]

[[rule]]
name = "collective"
kind = "flag"
flag = "collective_action"
above = 5
min_count = 5
severity = "critical"

[[rule]]
name = "emerging"
kind = "emerging_issue"
min_count = 8
severity = "warning"
"#,
        hook.url
    );
    let app = common::spawn_own_lexicons(None, |s| {
        s.store.insights_every_secs = 1;
        s.store.alert_lateness_secs = 0;
        s.store.hotspot_min_size = 8;
        s.store.store_min_escalation = Some(0);
    })
    .await;
    std::fs::write(app.lexicons_dir().join("alerts.toml"), rules).unwrap();
    let r = app.post_json("/admin/reload", &json!({})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let now = jiff::Timestamp::now().as_millisecond();
    let hour0 = now - now.rem_euclid(3_600_000);
    let at =
        |h: i64, i: i64| jiff::Timestamp::from_millisecond(hour0 - h * 3_600_000 + i * 30_000).unwrap().to_string();
    let ordinary =
        ["快递三天没到，客服也不回复", "退款申请一周了还没处理", "账单上多扣了一笔费用", "客服电话一直打不通"];
    let mut items = Vec::new();
    for h in (3..=52).rev() {
        for i in 0..10 {
            items.push(
                json!({"text": format!("{}（订单{h}-{i}）", ordinary[(i % 4) as usize]), "received_at": at(h, i)}),
            );
        }
    }
    // the spike two hours ago: one defect, many customers, and a group action forming
    for i in 0..60 {
        items.push(json!({"text": format!("充电宝鼓包起火，差点烧了房子（第{i}位）"), "received_at": at(2, i % 100)}));
    }
    for i in 0..6 {
        items.push(json!({"text": format!("我们几十个人一起去集体维权，联名投诉（{i}）"), "received_at": at(2, i)}));
    }
    for i in 0..5 {
        items.push(json!({"text": ordinary[i % 4], "received_at": at(1, i as i64)}));
    }
    for chunk in items.chunks(64) {
        let r = app.post_json("/v1/classify", &json!({"items": chunk})).await;
        assert_eq!(r.status(), 200);
    }
    let spike = hour0 - 2 * 3_600_000;
    let alerts_url = app.url("/v1/insights/alerts");
    let alerts = || async {
        let v: Value = app.client.get(&alerts_url).send().await.unwrap().json().await.unwrap();
        v.as_array().cloned().unwrap_or_default()
    };
    wait_for("three alerts", || async { alerts().await.len() >= 3 }).await;
    let got = alerts().await;
    let rule =
        |name: &str| got.iter().find(|a| a["rule"] == name).cloned().unwrap_or_else(|| panic!("no {name}: {got:?}"));
    let vol = rule("volume_spike");
    assert_eq!(vol["bucket"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_millisecond(), spike);
    assert!(vol["detail"]["z"].as_f64().unwrap() >= 4.0, "{vol}");
    assert_eq!(got.iter().filter(|a| a["rule"] == "volume_spike").count(), 1, "no false alarm: {got:?}");
    assert_eq!(got.iter().filter(|a| a["rule"] == "emerging").count(), 1, "only the planted issue emerges: {got:?}");
    let coll = rule("collective");
    assert_eq!(coll["severity"], "critical");
    assert_eq!(coll["detail"]["count"], 6);
    let em = rule("emerging");
    let words: Vec<&str> = em["detail"]["keywords"].as_array().unwrap().iter().filter_map(|w| w.as_str()).collect();
    assert!(words.iter().take(5).any(|w| ["鼓包", "充电宝", "起火"].contains(w)), "{words:?}");

    // the issue, with stored examples (masked text as stored)
    let issue_id = em["detail"]["issue"].as_str().unwrap();
    let d = json(app.get(&format!("/v1/insights/issues/{issue_id}?at={}", at(1, 0))).await).await;
    assert_eq!(d["size"], 60, "{d}");
    assert!(d["emerging"].as_bool().unwrap());
    assert!(!d["examples"].as_array().unwrap().is_empty());
    assert!(d["examples"][0]["text"].as_str().unwrap().contains("充电宝"));
    let list = json(app.get(&format!("/v1/insights/issues?at={}", at(1, 0))).await).await;
    assert_eq!(list["issues"][0]["id"], issue_id, "emerging first: {list}");
    expect_error(app.get("/v1/insights/issues/nope").await, 404, "unknown_item").await;

    // the webhook: refused once, delivered on the retry, signed
    wait_for("the retried delivery", || async { hook.got.lock().unwrap().len() >= 2 }).await;
    let (head, body) = hook.got.lock().unwrap()[1].clone();
    let ts: i64 = header(&head, "x-kesu-timestamp").unwrap().parse().unwrap();
    let sig = header(&head, "x-kesu-signature").unwrap();
    assert_eq!(sig, kesu_server::insights::webhook::signature(b"s3cret-for-tests", ts, body.as_bytes()));
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sent["alert"]["id"], vol["id"]);
    assert_eq!(sent["attempt"], 2);
    assert_eq!(header(&head, "x-kesu-alert"), vol["id"].as_str());

    // acknowledge, resolve, and a stale or repeated move is refused
    let id = vol["id"].as_str().unwrap();
    let ack = json(app.post_json(&format!("/v1/insights/alerts/{id}/acknowledge"), &json!({"version": 1})).await).await;
    assert_eq!((ack["status"].as_str(), ack["acknowledged_by"].as_str()), (Some("acknowledged"), Some("anonymous")));
    let r = app.post_json(&format!("/v1/insights/alerts/{id}/resolve"), &json!({"version": 1})).await;
    expect_error(r, 409, "version_conflict").await;
    let res = json(app.post_json(&format!("/v1/insights/alerts/{id}/resolve"), &json!({"version": 2})).await).await;
    assert_eq!(res["status"], "resolved");
    assert!(res["resolved_at"].is_string());
    let r = app.post_json(&format!("/v1/insights/alerts/{id}/acknowledge"), &json!({"version": 3})).await;
    expect_error(r, 409, "invalid_transition").await;
    let open = json(app.get("/v1/insights/alerts?status=resolved").await).await;
    assert_eq!(open.as_array().unwrap().len(), 1);
    expect_error(app.get("/v1/insights/alerts?status=maybe").await, 422, "invalid_query").await;
}

/// Two stores on one database: exactly one holds the worker lease at a time;
/// the other takes over when it lapses.
async fn lease(a: &Store, b: &Store) {
    let t = 1_000_000;
    assert!(a.take_lease("w", "a", t, 30_000).await.unwrap());
    assert!(!b.take_lease("w", "b", t + 1, 30_000).await.unwrap());
    assert!(a.take_lease("w", "a", t + 10_000, 30_000).await.unwrap(), "renewed");
    assert!(!b.take_lease("w", "b", t + 39_000, 30_000).await.unwrap());
    assert!(b.take_lease("w", "b", t + 40_001, 30_000).await.unwrap(), "lapsed: taken over");
    assert!(!a.take_lease("w", "a", t + 40_002, 30_000).await.unwrap());
    // an alert is logged once per key, whoever raises it
    let na = kesu_store::alerts::NewAlert {
        dedupe: "r@hour@1".into(),
        rule: "r".into(),
        severity: "warning".into(),
        grain: "hour".into(),
        bucket_ms: 3_600_000,
        detail: json!({"value": 1}),
        targets: vec!["t".into()],
    };
    let (x, y) = tokio::join!(a.raise_alert(&na), b.raise_alert(&na));
    let raised = [x.unwrap(), y.unwrap()].into_iter().flatten().count();
    assert_eq!(raised, 1);
    assert_eq!(a.alerts(None, 0, i64::MAX / 4, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_at_a_time_on_both_databases() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/kesu.db", dir.path().display());
    lease(&open(&url).await, &open(&url).await).await;
    if let Some(pg) = PgServer::start() {
        lease(&open(&pg.url()).await, &open(&pg.url()).await).await;
    }
}

/// `kesu report` reads the store's insights and prints the review in
/// Markdown and in HTML (with its chart), with the alerts of the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kesu_report_prints_the_week() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/kesu.db", dir.path().display());
    // November 2026, kept whatever the day the test runs
    let mut c = InsightsConfig::new("Asia/Shanghai", vec![]).unwrap();
    c.retention_secs = [0, 0, 0];
    let store = Store::open(&url, 2).await.unwrap().with_insights(c).await.unwrap();
    let items: Vec<Counted> = (0..30)
        .map(|i| {
            counted(
                &format!("2026-11-2{}T0{}:00:00Z", 3 + i % 5, i % 9),
                "service",
                (i % 4) as u8,
                if i % 6 == 0 { &["media"] } else { &[] },
                Some("app"),
                &[],
            )
        })
        .collect();
    store.insert_claimed(&[], "", &[], 0, &items, "t").await.unwrap();
    store
        .raise_alert(&kesu_store::alerts::NewAlert {
            dedupe: "volume_spike@hour@x".into(),
            rule: "volume_spike".into(),
            severity: "warning".into(),
            grain: "hour".into(),
            bucket_ms: ms("2026-11-25T02:00:00Z"),
            detail: json!({"value": 9}),
            targets: vec![],
        })
        .await
        .unwrap();
    let run = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kesu"))
            .args([
                "report",
                "--database-url",
                &url,
                "--from",
                "2026-11-22T00:00:00+08:00",
                "--to",
                "2026-11-29T00:00:00+08:00",
            ])
            .args([
                "--format",
                format,
                "--insights-day-retention-days",
                "0",
                "--insights-hour-retention-days",
                "100000",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let md = run("md");
    assert!(md.contains("# Complaint review 2026-11-22T00:00:00+08:00"), "{md}");
    assert!(md.contains("30 complaints"), "{md}");
    assert!(md.contains("| service | 30 | 100.0% |"), "{md}");
    assert!(md.contains("| media | 5 |"), "{md}");
    assert!(md.contains("volume_spike"), "the alert is listed and marked: {md}");
    assert_eq!(md.matches("T00:00 | ").count(), 7, "one row per day: {md}");
    let html = run("html");
    assert!(
        html.starts_with("<!doctype html>") && html.contains("<svg") && html.contains("▲"),
        "chart with the alert marker"
    );
    assert!(!html.contains("<script"), "self-contained, no script");
    // bad input: a clear error and exit code 2
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_kesu"))
        .args(["report", "--database-url", &url, "--from", "yesterday", "--to", "2026-11-29T00:00:00Z"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not RFC 3339"));
}
