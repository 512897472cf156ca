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
//! cargo bench --bench conversations                      # 32 conversations
//! KESU_BENCH_CONVERSATIONS=64 cargo bench --bench conversations
//! ```
//! Prints p50/p90/p99 per-message latency for customer messages, agent
//! messages and the classify peer, and the customer/peer ratios.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kesu::config::Settings;
use kesu::pipeline::Pipeline;
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

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
                    client.post(format!("{base}/v1/conversations/{tag}-{i}/messages")).json(&json!({"role": role, "text": text})).send().await.unwrap()
                };
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                r.bytes().await.unwrap();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                if is_customer { customer.push(ms) } else { agent.push(ms) }
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
    let root = std::env::var_os("KESU_CORPORA").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"));
    let n = env_usize("KESU_BENCH_CONVERSATIONS", 32);
    let rounds = env_usize("KESU_BENCH_ROUNDS", 2);
    let all = kesu::corpus::stc3_dialogues(&root).expect("STC-3 corpus (set KESU_CORPORA)");
    // dialogues of 4+ turns, spread over the file
    let long: Vec<_> = all.iter().filter(|d| d.turns.len() >= 4).collect();
    let step = (long.len() / n).max(1);
    let dialogues: Vec<Vec<(String, String)>> = long.iter().step_by(step).take(n).map(|d| d.turns.clone()).collect();

    let mut s = Settings::defaults();
    s.port = 0;
    s.resources.lexicons = Path::new(env!("CARGO_MANIFEST_DIR")).join("lexicons");
    s.resources.model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/kesu.gguf");
    s.max_queued = 4096;
    s.queue_timeout_ms = 600_000;
    s.request_timeout_ms = 600_000;
    let (inference, workers) = (s.max_concurrent_inference, s.workers);

    actix_web::rt::System::new().block_on(async move {
        let pipeline = Arc::new(Pipeline::load(&s.resources, true).expect("shipped model loads"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = actix_web::web::Data::new(kesu::api::AppState::new(pipeline, s));
        actix_web::rt::spawn(kesu::api::serve(listener, state).unwrap());
        // warm up
        run(&base, &dialogues[..2.min(dialogues.len())], false, "warm").await;

        let (mut conv, mut peer) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            // interleave the two so machine noise hits both
            conv.push(run(&base, &dialogues, false, &format!("r{r}")).await);
            peer.push(run(&base, &dialogues, true, "peer").await);
        }
        let merge = |runs: &[Run], f: fn(&Run) -> &Vec<f64>| {
            let mut v: Vec<f64> = runs.iter().flat_map(|r| f(r).iter().copied()).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let (c, a, p) = (merge(&conv, |r| &r.customer), merge(&conv, |r| &r.agent), merge(&peer, |r| &r.customer));
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        println!("conversations: {n} concurrent STC-3 dialogues x {rounds} rounds; {cores} cores, {workers} HTTP workers, {inference} inference slots");
        println!("| messages | n | p50 ms | p90 ms | p99 ms |");
        println!("|---|---|---|---|---|");
        for (name, v) in [("customer (classified + state + event)", &c), ("agent (recorded only)", &a), ("peer: /v1/classify of the same customer texts", &p)] {
            println!("| {name} | {} | {:.1} | {:.1} | {:.1} |", v.len(), pct(v, 0.5), pct(v, 0.9), pct(v, 0.99));
        }
        println!("customer/peer ratio: p50 {:.2}, p99 {:.2}", pct(&c, 0.5) / pct(&p, 0.5), pct(&c, 0.99) / pct(&p, 0.99));
        let cw: f64 = conv.iter().map(|r| r.wall.as_secs_f64()).sum();
        println!("throughput: {:.1} messages/s (conversation runs), {:.1} texts/s (peer runs)", (c.len() + a.len()) as f64 / cw, p.len() as f64 / peer.iter().map(|r| r.wall.as_secs_f64()).sum::<f64>());
    });
}
