//! The latency the complaint store adds to `/v1/classify` (issue 7), at a
//! sustained request rate, against its peer measured in the same run: the
//! same app and texts with the store off.
//!
//! The real app on a random port with the shipped model; STC-3 customer
//! turns sent one text per request, open loop (a request starts every 1/rate
//! seconds whether or not earlier ones have finished, as independent intake
//! channels do). Every item is stored (`KESU_STORE_MIN_ESCALATION=0`): the
//! worst case, one insert transaction per request.
//!
//! ```text
//! cargo bench --bench store                       # SQLite vs no store, 10 req/s, 20 s per run
//! KESU_BENCH_RATE=20 KESU_BENCH_SECS=30 cargo bench --bench store
//! KESU_BENCH_POSTGRES_URL=postgres://kesu@127.0.0.1:5432/postgres cargo bench --bench store
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kesu_core::pipeline::Pipeline;
use serde_json::json;

mod support;

use support::{env_num, pct};

/// Start an app; `db`: the store's URL, `None` for no store.
async fn start(db: Option<String>) -> String {
    let mut s = support::load_settings();
    s.store.store_min_escalation = Some(0);
    s.store.no_store = db.is_none();
    if let Some(db) = db {
        s.store.database_url = db;
    }
    let store = kesu_server::api::open_store(&s.store.options()).await.expect("store opens");
    let pipeline = Arc::new(Pipeline::load(&s.pipeline_options(), true).expect("shipped model loads"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = actix_web::web::Data::new(
        kesu_server::api::AppState::new(pipeline, s.server())
            .with_store(store)
            .with_access(kesu_server::auth::Access::Open),
    );
    actix_web::rt::spawn(kesu_server::api::serve(listener, state).unwrap());
    base
}

/// Send `texts` (cycled) at `rate` per second for `secs`; per-request latency in ms.
async fn run(base: &str, texts: &[String], rate: f64, secs: f64) -> Vec<f64> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let n = (rate * secs) as usize;
    let every = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = t0 + every * i as u32;
        actix_web::rt::time::sleep_until(due.into()).await;
        let (client, url, text) = (client.clone(), format!("{base}/v1/classify"), texts[i % texts.len()].clone());
        tasks.push(actix_web::rt::spawn(async move {
            let t = Instant::now();
            let r = client.post(url).json(&json!({"text": text, "channel": "bench"})).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            let v: serde_json::Value = r.json().await.unwrap();
            (t.elapsed().as_secs_f64() * 1e3, v.get("review_id").is_some())
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out.into_iter().map(|(ms, _)| ms).collect()
}

fn main() {
    let root = std::env::var_os("KESU_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"));
    let (rate, secs, rounds) =
        (env_num("KESU_BENCH_RATE", 10.0), env_num("KESU_BENCH_SECS", 20.0), env_num("KESU_BENCH_ROUNDS", 2usize));
    let texts: Vec<String> = kesu_train::corpus::stc3_dialogues(&root)
        .expect("STC-3 corpus (set KESU_CORPORA)")
        .iter()
        .flat_map(|d| {
            d.turns
                .iter()
                .filter(|(s, t)| s == "customer" && t.chars().count() >= 8)
                .map(|(_, t)| t.clone())
                .collect::<Vec<_>>()
        })
        .step_by(7)
        .take(500)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut peers: Vec<(String, Option<String>)> = vec![
        ("no store".into(), None),
        ("SQLite (WAL)".into(), Some(format!("sqlite://{}", dir.path().join("bench.db").display()))),
    ];
    if let Ok(pg) = std::env::var("KESU_BENCH_POSTGRES_URL") {
        peers.push(("PostgreSQL".into(), Some(pg)));
    }
    actix_web::rt::System::new().block_on(async move {
        let mut bases = Vec::new();
        for (name, db) in &peers {
            let base = start(db.clone()).await;
            run(&base, &texts[..5], 5.0, 1.0).await; // warm up
            bases.push((name.clone(), base));
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        println!("{cores} cores; {rate} requests/s for {secs} s per run, {rounds} rounds, configurations interleaved; every item stored");
        let mut lat: Vec<Vec<f64>> = vec![Vec::new(); bases.len()];
        for r in 0..rounds {
            let order: Vec<usize> = if r % 2 == 0 { (0..bases.len()).collect() } else { (0..bases.len()).rev().collect() };
            for i in order {
                lat[i].extend(run(&bases[i].1, &texts, rate, secs).await);
            }
        }
        for v in &mut lat {
            v.sort_by(f64::total_cmp);
        }
        println!("| store | n | p50 ms | p90 ms | p99 ms | p50 added ms | p99 added ms |");
        println!("|---|---|---|---|---|---|---|");
        for (i, (name, _)) in bases.iter().enumerate() {
            let v = &lat[i];
            println!(
                "| {name} | {} | {:.1} | {:.1} | {:.1} | {:+.1} | {:+.1} |",
                v.len(),
                pct(v, 0.5),
                pct(v, 0.9),
                pct(v, 0.99),
                pct(v, 0.5) - pct(&lat[0], 0.5),
                pct(v, 0.99) - pct(&lat[0], 0.99)
            );
        }
    });
}
