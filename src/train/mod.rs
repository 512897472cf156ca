//! Training and evaluation: `kesu split`, `kesu train`, `kesu eval`.
//!
//! What is trained: the two linear heads (`category`, `escalation`) on the
//! frozen encoder's pooled sentence embeddings. The encoder is not fine-tuned.

pub mod baselines;
pub mod data;
pub mod fit;
pub mod metrics;
pub mod split;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

use crate::flags::{Flag, Flagger};
use crate::model::heads::argmax;
use crate::model::{format, Classifier, HeadWeights, LoadOptions};
use data::{Dataset, Split, CATEGORIES, LEVELS};

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
    #[arg(long, default_value = "kesu-e5s-heads-1")]
    pub version: String,
    #[arg(long, default_value_t = 600)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Texts per encoder call when embedding.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
}

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
}

/// Write `data/split.tsv`.
pub fn run_split(a: &SplitArgs) -> anyhow::Result<String> {
    let rows = data::read_labels(&a.labels)?;
    let index = crate::corpus::index(crate::corpus::read_all(&a.corpora)?);
    let texts: Vec<String> = rows
        .iter()
        .map(|r| r.text.clone().or_else(|| index.get(&r.key()).cloned()).with_context(|| format!("({}, {}) not in the corpora", r.source, r.id)))
        .collect::<anyhow::Result<_>>()?;
    let s = split::assign(&rows, &texts, a.seed);
    let mut out = String::from("source\tid\tsplit\n");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&i, &j| (&rows[i].source, &rows[i].id).cmp(&(&rows[j].source, &rows[j].id)));
    for i in order {
        out += &format!("{}\t{}\t{}\n", rows[i].source, rows[i].id, s[i].as_str());
        *counts.entry(s[i].as_str()).or_default() += 1;
    }
    std::fs::write(&a.out, out)?;
    Ok(format!("wrote {} rows to {}: {:?}", rows.len(), a.out.display(), counts))
}

/// Sentence embeddings of `texts`, cached in `.cache/embeddings/` by model file and text.
pub fn embed_all(model: &Classifier, model_path: &Path, texts: &[String], batch: usize) -> anyhow::Result<Vec<Vec<f32>>> {
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
        pb.set_style(indicatif::ProgressStyle::with_template("embedding {bar:40} {pos}/{len} {per_sec} eta {eta}").unwrap());
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

/// Train the heads and write the model; returns a human summary.
pub fn run_train(a: &TrainArgs) -> anyhow::Result<String> {
    let ds = Dataset::load(&a.data.labels, &a.data.split, &a.data.corpora)?;
    let base = Classifier::load(&a.base, &LoadOptions::default()).with_context(|| format!("loading base model {} (run scripts/fetch-base-model.sh and `kesu import-base`)", a.base.display()))?;
    let emb = embed_all(&base, &a.base, &ds.texts, a.batch)?;
    let (tr, dv) = (ds.indices(Split::Train), ds.indices(Split::Dev));
    anyhow::ensure!(!tr.is_empty() && !dv.is_empty(), "train and dev splits must not be empty");
    let cfg = fit::FitConfig { epochs: a.epochs, lr: a.lr, weight_decay: a.weight_decay, ..Default::default() };
    let xs = |idx: &[usize]| idx.iter().map(|&i| emb[i].clone()).collect::<Vec<_>>();
    let (xtr, xdv) = (xs(&tr), xs(&dv));
    let ycat: Vec<usize> = tr.iter().map(|&i| ds.rows[i].category).collect();
    let yesc: Vec<usize> = tr.iter().map(|&i| ds.rows[i].escalation).collect();
    let dcat: Vec<usize> = dv.iter().map(|&i| ds.rows[i].category).collect();
    let desc: Vec<usize> = dv.iter().map(|&i| ds.rows[i].escalation).collect();
    // Model selection on dev only: the class-weight strength of each head.
    let mut cat: Option<(f64, fit::FittedHead)> = None;
    let mut esc: Option<(f64, fit::FittedHead)> = None;
    for power in [0.0, 0.25, 0.5] {
        let cfg = fit::FitConfig { class_weight_power: power, ..cfg.clone() };
        let c = fit::fit(&xtr, &ycat, 3, &cfg, |h| {
            let p: Vec<usize> = xdv.iter().map(|x| h.predict(x)).collect();
            metrics::report(&CATEGORIES, &dcat, &p).macro_f1
        })?;
        if cat.as_ref().is_none_or(|b| c.best_dev_score > b.1.best_dev_score) {
            cat = Some((power, c));
        }
        let e = fit::fit(&xtr, &yesc, 4, &cfg, |h| {
            let p: Vec<usize> = xdv.iter().map(|x| h.predict(x)).collect();
            let r = metrics::report(&LEVELS, &desc, &p);
            0.5 * r.qwk + 0.5 * r.macro_f1
        })?;
        if esc.as_ref().is_none_or(|b| e.best_dev_score > b.1.best_dev_score) {
            esc = Some((power, e));
        }
    }
    let ((cat_power, cat), (esc_power, esc)) = (cat.expect("fitted"), esc.expect("fitted"));
    let pc: Vec<usize> = xdv.iter().map(|x| cat.predict(x)).collect();
    let pe: Vec<usize> = xdv.iter().map(|x| esc.predict(x)).collect();
    let rc = metrics::report(&CATEGORIES, &dcat, &pc);
    let re = metrics::report(&LEVELS, &desc, &pe);
    let meta = json!({
        "trained": "category and escalation linear heads on the frozen encoder's mean-pooled, L2-normalised embeddings",
        "base_model": a.base.file_name().map(|f| f.to_string_lossy().to_string()),
        "data": summary(&ds),
        "fit": {"config": cfg, "category_class_weight_power": cat_power, "escalation_class_weight_power": esc_power, "category_best_epoch": cat.best_epoch, "escalation_best_epoch": esc.best_epoch,
                "category_loss": [cat.loss_start, cat.loss_best], "escalation_loss": [esc.loss_start, esc.loss_best]},
        "dev": {"category_accuracy": rc.accuracy, "category_macro_f1": rc.macro_f1, "escalation_macro_f1": re.macro_f1, "escalation_qwk": re.qwk},
    });
    let heads = HeadWeights { category_weight: cat.weight, category_bias: cat.bias, escalation_weight: esc.weight, escalation_bias: esc.bias };
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    format::write_model_with_heads(&a.base, &a.out, &heads, &a.version, meta)?;
    Ok(format!(
        "wrote {} ({} train / {} dev rows)\n{}{}",
        a.out.display(),
        tr.len(),
        dv.len(),
        metrics::render("dev category", &rc),
        metrics::render("dev escalation", &re)
    ))
}

/// Score a model (and optionally the baselines) on a split.
pub fn run_eval(a: &EvalArgs) -> anyhow::Result<String> {
    let on: Split = a.on.parse().map_err(anyhow::Error::msg)?;
    // Rows of label files newer than the split file have no split: they are not scored.
    let (ds, _unsplit) = Dataset::load_split_rows(&a.data.labels, &a.data.split, &a.data.corpora)?;
    let idx = ds.indices(on);
    anyhow::ensure!(!idx.is_empty(), "split {} is empty", a.on);
    anyhow::ensure!(!(a.errors && on == Split::Test), "--errors is for train and dev only: the test split is for the final report, not for tuning");
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
    let mut preds = Vec::with_capacity(texts.len());
    let pb = indicatif::ProgressBar::new(texts.len() as u64);
    for chunk in texts.chunks(a.batch.max(1)) {
        preds.extend(model.predict(chunk)?);
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
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
    text += &flags_text;
    if a.baselines {
        let (kc, ke): (Vec<usize>, Vec<usize>) = texts.iter().zip(&reports).map(|(t, r)| baselines::keyword_rules(t, r)).unzip();
        let tr = ds.indices(Split::Train);
        const DIM: usize = 1 << 18;
        let xtr: Vec<_> = tr.iter().map(|&i| baselines::char_ngrams(&ds.texts[i], DIM)).collect();
        let xte: Vec<_> = texts.iter().map(|t| baselines::char_ngrams(t, DIM)).collect();
        let lc = baselines::SparseLogReg::train(&xtr, &tr.iter().map(|&i| ds.rows[i].category).collect::<Vec<_>>(), DIM, 3, 8, 1);
        let le = baselines::SparseLogReg::train(&xtr, &tr.iter().map(|&i| ds.rows[i].escalation).collect::<Vec<_>>(), DIM, 4, 8, 1);
        let bc: Vec<usize> = xte.iter().map(|x| lc.predict(x)).collect();
        let be: Vec<usize> = xte.iter().map(|x| le.predict(x)).collect();
        for (name, c, e) in [("keyword rules", &kc, &ke), ("char 1-3-gram logistic regression", &bc, &be)] {
            text += &metrics::render(&format!("{name} category"), &metrics::report(&CATEGORIES, &gc, c));
            text += &metrics::render(&format!("{name} escalation"), &metrics::report(&LEVELS, &ge, e));
        }
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

/// Flagger precision/recall against the labels on the rows `idx` (micro over
/// all flags, and per flag): the JSON object and its text table.
fn flag_scores(ds: &Dataset, idx: &[usize], reports: &[crate::flags::FlagReport]) -> (serde_json::Value, String) {
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
        lines += &format!("  {:<20} P={:.3} R={:.3} support={} tp={} fp={} fn={}\n", f.as_str(), b.precision(), b.recall(), b.tp + b.fn_, b.tp, b.fp, b.fn_);
    }
    text += &format!("flags (flagger vs labels): micro P={:.3} R={:.3} tp={} fp={} fn={}\n", any.precision(), any.recall(), any.tp, any.fp, any.fn_);
    text += &lines;
    (json!({"micro_precision": any.precision(), "micro_recall": any.recall(), "tp": any.tp, "fp": any.fp, "fn": any.fn_, "per_flag": per_flag}), text)
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
pub fn flag_errors(ds: &Dataset, idx: &[usize], reports: &[crate::flags::FlagReport]) -> Vec<FlagError> {
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
            hits: reports[k].hits.iter().map(|h| format!("{}{}:{}@{}", h.flag, if h.negated { "!" } else { "" }, h.term, h.text)).collect(),
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
