//! Per-message latency of the conversation API with many concurrent
//! conversations (issue 5), against its peer measured in the same run: the
//! same customer texts sent to `/v1/classify` one at a time at the same
//! concurrency.
//!
//! The real app on a random port with the shipped model; STC-3 dialogues from
//! the corpora replayed turn by turn (each conversation waits for the answer
//! to one message before sending the next, as a live chat does).
//!
//! ```text
//! cargo bench --bench conversations                      # 1, 8 and 32 conversations at once
//! KESU_BENCH_CONVERSATIONS=64 cargo bench --bench conversations
//! ```
//! Prints, per concurrency level, p50/p90/p99 per-message latency for customer
//! messages, agent messages and the classify peer, and the customer/peer ratios.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kesu_core::pipeline::Pipeline;
use serde_json::json;

mod support;

use support::{env_num, pct};

struct Run {
    customer: Vec<f64>,
    agent: Vec<f64>,
    wall: Duration,
}

/// Replay `dialogues` as conversations, all at once. `classify_peer`: send the
/// customer texts to /v1/classify instead (agent turns skipped).
async fn run(base: &str, dialogues: &[Vec<(String, String)>], classify_peer: bool, tag: &str) -> Run {
    let client = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (i, turns) in dialogues.iter().cloned().enumerate() {
        let (client, base, tag) = (client.clone(), base.to_string(), tag.to_string());
        tasks.push(actix_web::rt::spawn(async move {
            let (mut customer, mut agent) = (Vec::new(), Vec::new());
            for (sender, text) in turns {
                let is_customer = sender == "customer";
                if classify_peer && !is_customer {
                    continue;
                }
                let t = Instant::now();
                let r = if classify_peer {
                    client.post(format!("{base}/v1/classify")).json(&json!({"text": text})).send().await.unwrap()
                } else {
                    let role = if is_customer { "customer" } else { "agent" };
                    client
                        .post(format!("{base}/v1/conversations/{tag}-{i}/messages"))
                        .json(&json!({"role": role, "text": text}))
                        .send()
                        .await
                        .unwrap()
                };
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                r.bytes().await.unwrap();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                if is_customer {
                    customer.push(ms)
                } else {
                    agent.push(ms)
                }
            }
            (customer, agent)
        }));
    }
    let (mut customer, mut agent) = (Vec::new(), Vec::new());
    for t in tasks {
        let (c, a) = t.await.unwrap();
        customer.extend(c);
        agent.extend(a);
    }
    customer.sort_by(f64::total_cmp);
    agent.sort_by(f64::total_cmp);
    Run { customer, agent, wall: t0.elapsed() }
}

fn main() {
    let root = std::env::var_os("KESU_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"));
    let levels: Vec<usize> = std::env::var("KESU_BENCH_CONVERSATIONS")
        .unwrap_or_else(|_| "1,8,32".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let rounds = env_num("KESU_BENCH_ROUNDS", 4usize);
    let all = kesu_train::corpus::stc3_dialogues(&root).expect("STC-3 corpus (set KESU_CORPORA)");
    // dialogues of 4+ turns, spread over the file
    // (empty turns, which the API rightly refuses, are left out)
    let long: Vec<Vec<(String, String)>> = all
        .iter()
        .map(|d| d.turns.iter().filter(|(_, t)| !t.trim().is_empty()).cloned().collect::<Vec<_>>())
        .filter(|turns| turns.len() >= 4)
        .collect();

    let s = support::load_settings();
    let (inference, workers) = (s.max_concurrent_inference, s.workers);

    actix_web::rt::System::new().block_on(async move {
        let pipeline = Arc::new(Pipeline::load(&s.pipeline_options(), true).expect("shipped model loads"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = actix_web::web::Data::new(kesu_server::api::AppState::new(pipeline, s.server()).with_access(kesu_server::auth::Access::Open));
        actix_web::rt::spawn(kesu_server::api::serve(listener, state).unwrap());
        run(&base, &long[..2], false, "warm").await;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        println!("{cores} cores, {workers} HTTP workers, {inference} inference slots; {rounds} rounds per level, conversation and peer runs interleaved");
        println!("| concurrent conversations | messages | n | p50 ms | p90 ms | p99 ms |");
        println!("|---|---|---|---|---|---|");
        let mut ratios = Vec::new();
        for &n in &levels {
            let step = (long.len() / n.max(1)).max(1);
            let dialogues: Vec<Vec<(String, String)>> = long.iter().step_by(step).take(n).cloned().collect();
            let (mut conv, mut peer) = (Vec::new(), Vec::new());
            for r in 0..rounds {
                // alternate which goes first, so drift in machine load hits both alike
                if r % 2 == 0 {
                    conv.push(run(&base, &dialogues, false, &format!("n{n}r{r}")).await);
                    peer.push(run(&base, &dialogues, true, "peer").await);
                } else {
                    peer.push(run(&base, &dialogues, true, "peer").await);
                    conv.push(run(&base, &dialogues, false, &format!("n{n}r{r}")).await);
                }
            }
            let merge = |runs: &[Run], f: fn(&Run) -> &Vec<f64>| {
                let mut v: Vec<f64> = runs.iter().flat_map(|r| f(r).iter().copied()).collect();
                v.sort_by(f64::total_cmp);
                v
            };
            let (c, a, p) = (merge(&conv, |r| &r.customer), merge(&conv, |r| &r.agent), merge(&peer, |r| &r.customer));
            for (name, v) in [("customer (classified + state + event)", &c), ("agent (recorded only)", &a), ("peer: /v1/classify, same customer texts", &p)] {
                println!("| {n} | {name} | {} | {:.1} | {:.1} | {:.1} |", v.len(), pct(v, 0.5), pct(v, 0.9), pct(v, 0.99));
            }
            let cw: f64 = conv.iter().map(|r| r.wall.as_secs_f64()).sum();
            ratios.push(format!(
                "{n} conversations: customer/peer p50 {:.2}, p99 {:.2}; {:.1} messages/s",
                pct(&c, 0.5) / pct(&p, 0.5),
                pct(&c, 0.99) / pct(&p, 0.99),
                (c.len() + a.len()) as f64 / cw
            ));
        }
        for r in ratios {
            println!("{r}");
        }
    });
}
