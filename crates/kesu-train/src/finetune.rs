//! Fine-tuning the top encoder layers together with the heads.
//!
//! The encoder below the top `k` layers stays frozen, so its per-token output
//! (the input of layer `L - k`) is computed once per text and cached
//! ([`cache_states`], `.cache/hidden/`). Training then runs only the top `k`
//! layers ([`TopLayer`], a candle-autograd copy of `kesu_core::model::bert`'s
//! layer: same weights, same arithmetic), mean-pools their output over all
//! tokens of all windows of a text, L2-normalises it (exactly what the
//! served model's heads read), and applies the two heads. The loss is the sum
//! of the two heads' class-weighted cross-entropies.
//!
//! The heads read standardised embeddings (`(e - mean) / std`, the train
//! split's statistics of the frozen model's embeddings, constants); they are
//! warm-started by [`super::fit::fit`] on the frozen embeddings, then trained
//! with the layers. Everything is deterministic: seeded initial weights,
//! seeded batch order and dropout masks, fixed-order arithmetic.
//!
//! The trained layers are written back under the tensor names the encoder
//! loader reads (`encoder.layer.{i}.attention.self.query.weight`, ...), as F16
//! matrices and F32 vectors, so serving needs no change.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

use super::fit::{class_weights, weighted_ce, FittedHead};
use kesu_core::model::bert::{BertConfig, BertModel, WeightFormat};
use kesu_core::model::format::{self, ModelFile};
use kesu_core::model::tokenize;

/// The frozen encoder's output for one text: one `[len, hidden]` block per window.
#[derive(Debug, Clone, PartialEq)]
pub struct TextStates {
    pub windows: Vec<(usize, Vec<f32>)>,
}

impl TextStates {
    pub fn tokens(&self) -> usize {
        self.windows.iter().map(|w| w.0).sum()
    }
}

/// Per-token states of every text after the bottom `L - top` layers of the
/// model at `base` (windows as the served model makes them: `max_tokens`
/// tokens, at most `max_windows` windows), cached in `cache_dir` by model
/// file, `top`, window settings and text.
pub fn cache_states(
    base: &Path,
    texts: &[String],
    top: usize,
    max_tokens: usize,
    max_windows: usize,
    cache_dir: Option<&Path>,
) -> Result<Vec<TextStates>> {
    let mut f = ModelFile::read(base)?;
    let cfg = f.config()?;
    ensure!(top >= 1 && top <= cfg.num_hidden_layers, "can fine-tune 1..={} layers, not {top}", cfg.num_hidden_layers);
    let h = cfg.hidden_size;
    let tok = tokenize::TextTokenizer::from_json(f.get_str(format::KEY_TOKENIZER)?, f.get_str(format::KEY_PREFIX)?)?;
    let key = |t: &str| {
        let mut s = std::collections::hash_map::DefaultHasher::new();
        t.hash(&mut s);
        s.finish()
    };
    let cache: Option<PathBuf> = match cache_dir {
        Some(dir) => {
            let meta = std::fs::metadata(base)?;
            let mut s = std::collections::hash_map::DefaultHasher::new();
            (base.canonicalize()?, meta.len(), meta.modified().ok(), top, max_tokens, max_windows, "states-v1")
                .hash(&mut s);
            std::fs::create_dir_all(dir)?;
            Some(dir.join(format!("{:016x}.bin", s.finish())))
        }
        None => None,
    };
    let mut known: HashMap<u64, TextStates> = HashMap::new();
    if let Some(Ok(raw)) = cache.as_ref().map(std::fs::read) {
        known = decode_states(&raw, h);
    }
    let todo: Vec<usize> = (0..texts.len()).filter(|&i| !known.contains_key(&key(&texts[i]))).collect();
    if !todo.is_empty() {
        // the bottom layers only: the same model with fewer blocks
        let bottom = cfg.num_hidden_layers - top;
        f.metadata.insert("bert.block_count".into(), candle_core::quantized::gguf_file::Value::U32(bottom as u32));
        let enc = BertModel::load(&f, WeightFormat::F32)?;
        let pb = indicatif::ProgressBar::new(todo.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "encoding (frozen layers) {bar:40} {pos}/{len} {per_sec} eta {eta}",
            )
            .unwrap(),
        );
        let mut order = todo.clone();
        order.sort_by_key(|&i| texts[i].len());
        let mut appended = Vec::new();
        for chunk in order.chunks(16) {
            let mut wins = Vec::new();
            for (k, &i) in chunk.iter().enumerate() {
                let content = tok.content_ids(&texts[i])?;
                wins.extend(tokenize::windows(k, &content, tok.bos, tok.eos, max_tokens, max_windows).0);
            }
            let mut per_text: Vec<TextStates> = vec![TextStates { windows: vec![] }; chunk.len()];
            // windows of similar length together
            let mut worder: Vec<usize> = (0..wins.len()).collect();
            worder.sort_by_key(|&w| wins[w].ids.len());
            let mut out: Vec<Option<(usize, Vec<f32>)>> = vec![None; wins.len()];
            for sub in worder.chunks(16) {
                let l = sub.iter().map(|&w| wins[w].ids.len()).max().unwrap_or(0);
                let mut ids = vec![tok.pad; sub.len() * l];
                let mut lens = Vec::new();
                for (r, &w) in sub.iter().enumerate() {
                    ids[r * l..r * l + wins[w].ids.len()].copy_from_slice(&wins[w].ids);
                    lens.push(wins[w].ids.len());
                }
                let states = enc.forward(&Tensor::from_vec(ids, (sub.len(), l), &Device::Cpu)?, &lens)?;
                let flat = states.flatten_all()?.to_vec1::<f32>()?;
                for (r, &w) in sub.iter().enumerate() {
                    out[w] = Some((lens[r], flat[r * l * h..(r * l + lens[r]) * h].to_vec()));
                }
            }
            for (w, o) in wins.iter().zip(out) {
                per_text[w.text].windows.push(o.expect("every window encoded"));
            }
            for (&i, s) in chunk.iter().zip(per_text) {
                let k = key(&texts[i]);
                encode_states(&mut appended, k, &s);
                known.insert(k, s);
            }
            pb.inc(chunk.len() as u64);
        }
        pb.finish_and_clear();
        if let Some(c) = &cache {
            use std::io::Write;
            std::fs::OpenOptions::new().create(true).append(true).open(c)?.write_all(&appended)?;
        }
    }
    Ok(texts.iter().map(|t| known[&key(t)].clone()).collect())
}

fn encode_states(out: &mut Vec<u8>, key: u64, s: &TextStates) {
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&(s.windows.len() as u32).to_le_bytes());
    for (len, v) in &s.windows {
        out.extend_from_slice(&(*len as u32).to_le_bytes());
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

fn decode_states(raw: &[u8], h: usize) -> HashMap<u64, TextStates> {
    let mut known = HashMap::new();
    let mut p = 0;
    let u32_at = |p: usize| u32::from_le_bytes(raw[p..p + 4].try_into().unwrap()) as usize;
    // a torn tail (interrupted write) is ignored
    while p + 12 <= raw.len() {
        let k = u64::from_le_bytes(raw[p..p + 8].try_into().unwrap());
        let nw = u32_at(p + 8);
        let mut q = p + 12;
        let mut windows = Vec::with_capacity(nw);
        let mut ok = true;
        for _ in 0..nw {
            if q + 4 > raw.len() {
                ok = false;
                break;
            }
            let len = u32_at(q);
            q += 4;
            if q + 4 * len * h > raw.len() {
                ok = false;
                break;
            }
            windows.push((
                len,
                raw[q..q + 4 * len * h].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            ));
            q += 4 * len * h;
        }
        if !ok {
            break;
        }
        known.insert(k, TextStates { windows });
        p = q;
    }
    known
}

/// A trainable copy of one encoder layer (`kesu_core::model::bert::BertLayer`).
pub struct TopLayer {
    pub index: usize,
    vars: Vec<(String, Var)>,
    num_heads: usize,
    eps: f64,
}

/// The tensors of one layer, by their name after `encoder.layer.{i}.`.
const LAYER_TENSORS: [&str; 16] = [
    "attention.self.query.weight",
    "attention.self.query.bias",
    "attention.self.key.weight",
    "attention.self.key.bias",
    "attention.self.value.weight",
    "attention.self.value.bias",
    "attention.output.dense.weight",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.weight",
    "intermediate.dense.bias",
    "output.dense.weight",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
];

impl TopLayer {
    /// Layer `index` of `f`, dequantised to f32.
    pub fn load(f: &ModelFile, cfg: &BertConfig, index: usize) -> Result<Self> {
        let mut vars = Vec::new();
        for n in LAYER_TENSORS {
            let name = format!("encoder.layer.{index}.{n}");
            let t = f.tensor(&name)?.dequantize(&Device::Cpu)?;
            vars.push((name, Var::from_tensor(&t)?));
        }
        Ok(Self { index, vars, num_heads: cfg.num_attention_heads, eps: cfg.layer_norm_eps })
    }

    fn v(&self, k: usize) -> &Tensor {
        self.vars[k].1.as_tensor()
    }

    pub fn vars(&self) -> Vec<Var> {
        self.vars.iter().map(|(_, v)| v.clone()).collect()
    }

    /// `x`: `[b*l, h]`; `mask`: additive `[b, 1, 1, l]` or `None`. Same
    /// arithmetic as the served layer (exact-erf GELU, post-LN).
    pub fn forward(&self, x: &Tensor, b: usize, l: usize, mask: Option<&Tensor>) -> Result<Tensor> {
        let lin =
            |x: &Tensor, w: usize| -> Result<Tensor> { Ok(x.matmul(&self.v(w).t()?)?.broadcast_add(self.v(w + 1))?) };
        let ln = |x: &Tensor, w: usize| -> Result<Tensor> {
            Ok(candle_nn::ops::layer_norm_slow(x, self.v(w), self.v(w + 1), self.eps as f32)?)
        };
        let h = x.dim(1)?;
        let (nh, hd) = (self.num_heads, h / self.num_heads);
        let heads = |t: Tensor| -> Result<Tensor> { Ok(t.reshape((b, l, nh, hd))?.transpose(1, 2)?.contiguous()?) };
        let (q, k, v) = (heads(lin(x, 0)?)?, heads(lin(x, 2)?)?, heads(lin(x, 4)?)?);
        let mut scores = (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (hd as f64).sqrt()))?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b * l, h))?;
        let x1 = ln(&(lin(&ctx, 6)? + x)?, 8)?;
        let mid = lin(&x1, 10)?.gelu_erf()?;
        let out = lin(&mid, 12)?;
        ln(&(out + x1)?, 14)
    }

    /// The trained tensors under the loader's names: matrices F16, vectors F32.
    pub fn export(&self) -> Result<Vec<(String, QTensor)>> {
        self.vars
            .iter()
            .map(|(n, v)| {
                let t = v.as_tensor();
                let dtype = if t.rank() == 2 { GgmlDType::F16 } else { GgmlDType::F32 };
                Ok((n.clone(), QTensor::quantize(t, dtype)?))
            })
            .collect()
    }
}

/// Runs `layers` over the cached states of `texts` (all windows of each text
/// in one pass) and returns their pooled, L2-normalised embeddings `[n, h]`.
fn pooled(layers: &[TopLayer], states: &[&TextStates], h: usize) -> Result<Tensor> {
    let dev = Device::Cpu;
    let wins: Vec<&(usize, Vec<f32>)> = states.iter().flat_map(|s| s.windows.iter()).collect();
    let l = wins.iter().map(|w| w.0).max().unwrap_or(1).max(1);
    let nw = wins.len();
    let mut x = vec![0f32; nw * l * h];
    let mut mask = vec![0f32; nw * l];
    for (r, (len, v)) in wins.iter().enumerate() {
        x[r * l * h..(r * l + len) * h].copy_from_slice(v);
        for m in &mut mask[r * l + len..(r + 1) * l] {
            *m = -1e9;
        }
    }
    let padded = wins.iter().any(|w| w.0 != l);
    let mask = if padded { Some(Tensor::from_vec(mask, (nw, 1, 1, l), &dev)?) } else { None };
    let mut x = Tensor::from_vec(x, (nw * l, h), &dev)?;
    for layer in layers {
        x = layer.forward(&x, nw, l, mask.as_ref())?;
    }
    // mean over the tokens of all windows of a text: one matrix product
    let mut pool = vec![0f32; states.len() * nw * l];
    let mut r = 0;
    for (t, s) in states.iter().enumerate() {
        let n = s.tokens().max(1) as f32;
        for (len, _) in &s.windows {
            for j in 0..*len {
                pool[t * nw * l + r * l + j] = 1.0 / n;
            }
            r += 1;
        }
    }
    let mean = Tensor::from_vec(pool, (states.len(), nw * l), &dev)?.matmul(&x)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-6, f64::MAX)?;
    Ok(mean.broadcast_div(&norm)?)
}

/// Pooled embeddings of many texts (no gradients), batched.
pub fn embed_states(layers: &[TopLayer], states: &[TextStates], idx: &[usize], h: usize) -> Result<Vec<Vec<f32>>> {
    let mut out = vec![Vec::new(); idx.len()];
    let mut order: Vec<usize> = (0..idx.len()).collect();
    order.sort_by_key(|&k| states[idx[k]].windows.iter().map(|w| w.0).max().unwrap_or(0));
    for chunk in batches(&order, |k| states[idx[k]].windows.iter().map(|w| w.0).max().unwrap_or(1), 8192, 64) {
        let refs: Vec<&TextStates> = chunk.iter().map(|&k| &states[idx[k]]).collect();
        let e = pooled(layers, &refs, h)?.detach();
        for (&k, row) in chunk.iter().zip(e.to_vec2::<f32>()?) {
            out[k] = row;
        }
    }
    Ok(out)
}

/// Consecutive runs of `order` (sorted by length) whose padded size
/// (`count x longest`) stays within `budget` tokens and `max_rows` texts.
fn batches(order: &[usize], len: impl Fn(usize) -> usize, budget: usize, max_rows: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut longest = 0;
    for &k in order {
        let l = len(k).max(1);
        if !cur.is_empty() && ((cur.len() + 1) * longest.max(l) > budget || cur.len() >= max_rows) {
            out.push(std::mem::take(&mut cur));
            longest = 0;
        }
        longest = longest.max(l);
        cur.push(k);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Fine-tuning settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FinetuneConfig {
    pub epochs: usize,
    /// AdamW learning rate of the encoder layers.
    pub lr_layers: f64,
    /// AdamW learning rate of the heads.
    pub lr_heads: f64,
    pub weight_decay: f64,
    /// Texts per optimiser step (fewer when long: at most `batch_tokens` padded tokens).
    pub batch: usize,
    pub batch_tokens: usize,
    /// Dropout on the heads' hidden layers.
    pub dropout: f64,
    /// Evaluate on dev this many times per epoch.
    pub evals_per_epoch: usize,
    pub seed: u64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            epochs: 4,
            lr_layers: 3e-5,
            lr_heads: 1e-3,
            weight_decay: 0.01,
            batch: 16,
            batch_tokens: 4096,
            dropout: 0.3,
            evals_per_epoch: 2,
            seed: 20261122,
        }
    }
}

/// A head as trainable variables: optional hidden ReLU layer, output layer.
struct HeadVars {
    hidden: Option<(Var, Var)>,
    w: Var,
    b: Var,
}

impl HeadVars {
    /// From a head fitted on standardised embeddings.
    fn from_fitted(h: &FittedHead, classes: usize, dim: usize) -> Result<Self> {
        let dev = Device::Cpu;
        let hidden = match &h.hidden {
            Some((w1, b1)) => {
                let u = b1.len();
                Some((Var::from_vec(w1.clone(), (u, dim), &dev)?, Var::from_vec(b1.clone(), u, &dev)?))
            }
            None => None,
        };
        let inp = h.weight.len() / classes;
        Ok(Self {
            hidden,
            w: Var::from_vec(h.weight.clone(), (classes, inp), &dev)?,
            b: Var::from_vec(h.bias.clone(), classes, &dev)?,
        })
    }
    fn vars(&self) -> Vec<Var> {
        let mut v = vec![self.w.clone(), self.b.clone()];
        if let Some((a, b)) = &self.hidden {
            v.push(a.clone());
            v.push(b.clone());
        }
        v
    }
    fn forward(&self, z: &Tensor, dropout: Option<(&mut StdRng, f64)>) -> Result<Tensor> {
        let mut x = z.clone();
        if let Some((w1, b1)) = &self.hidden {
            x = x.matmul(&w1.as_tensor().t()?)?.broadcast_add(b1.as_tensor())?.relu()?;
            if let Some((rng, p)) = dropout {
                if p > 0.0 {
                    let (n, u) = x.dims2()?;
                    let keep = 1.0 - p;
                    let m: Vec<f32> =
                        (0..n * u).map(|_| if rng.gen::<f64>() < keep { (1.0 / keep) as f32 } else { 0.0 }).collect();
                    x = (x * Tensor::from_vec(m, (n, u), &Device::Cpu)?)?;
                }
            }
        }
        Ok(x.matmul(&self.w.as_tensor().t()?)?.broadcast_add(self.b.as_tensor())?)
    }
    /// As a [`FittedHead`] on standardised embeddings.
    fn fitted(&self) -> Result<FittedHead> {
        let hidden = match &self.hidden {
            Some((w, b)) => Some((w.as_tensor().flatten_all()?.to_vec1()?, b.as_tensor().to_vec1()?)),
            None => None,
        };
        Ok(FittedHead {
            hidden,
            weight: self.w.as_tensor().flatten_all()?.to_vec1()?,
            bias: self.b.as_tensor().to_vec1()?,
            best_epoch: 0,
            best_dev_score: 0.0,
            loss_start: f64::NAN,
            loss_best: f64::NAN,
        })
    }
}

/// What [`finetune`] returns.
pub struct Finetuned {
    pub layers: Vec<TopLayer>,
    /// Heads on standardised embeddings (`(e - mean) / std`).
    pub category: FittedHead,
    pub escalation: FittedHead,
    pub best_step: usize,
    pub best_epoch: f64,
    pub best_dev_score: f64,
    /// Mean training loss of the first and of the best epoch's batches.
    pub loss_first_epoch: f64,
    pub loss_at_best: f64,
    /// (epoch, dev score) of every evaluation.
    pub history: Vec<(f64, f64)>,
}

/// Labels and class weights of one task.
pub struct Task<'a> {
    pub y: &'a [usize],
    pub classes: usize,
    pub class_weight_power: f64,
    pub init: &'a FittedHead,
}

/// Fine-tunes `layers` and the two heads (warm-started from `cat.init` and
/// `esc.init`, fitted on standardised frozen embeddings) on the `train` texts;
/// keeps the state with the best `dev_score(layers, cat_head, esc_head)`.
#[allow(clippy::too_many_arguments)]
pub fn finetune(
    mut layers: Vec<TopLayer>,
    states: &[TextStates],
    train: &[usize],
    cat: Task,
    esc: Task,
    mean: &[f32],
    std: &[f32],
    cfg: &FinetuneConfig,
    mut dev_score: impl FnMut(&[TopLayer], &FittedHead, &FittedHead) -> Result<f64>,
) -> Result<Finetuned> {
    let dev = Device::Cpu;
    let h = mean.len();
    let hc = HeadVars::from_fitted(cat.init, cat.classes, h)?;
    let he = HeadVars::from_fitted(esc.init, esc.classes, h)?;
    let mut opt_layers = AdamW::new(
        layers.iter().flat_map(|l| l.vars()).collect(),
        ParamsAdamW { lr: cfg.lr_layers, weight_decay: cfg.weight_decay, ..Default::default() },
    )?;
    let mut opt_heads = AdamW::new(
        hc.vars().into_iter().chain(he.vars()).collect(),
        ParamsAdamW { lr: cfg.lr_heads, weight_decay: cfg.weight_decay, ..Default::default() },
    )?;
    let mean_t = Tensor::from_vec(mean.to_vec(), (1, h), &dev)?;
    let std_t = Tensor::from_vec(std.to_vec(), (1, h), &dev)?;
    let cw_c = class_weights(cat.y, cat.classes, cat.class_weight_power);
    let cw_e = class_weights(esc.y, esc.classes, esc.class_weight_power);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    // batches of similar length, fixed; their order is shuffled every epoch
    let mut order: Vec<usize> = (0..train.len()).collect();
    let longest = |k: usize| states[train[k]].windows.iter().map(|w| w.0).max().unwrap_or(1);
    order.sort_by_key(|&k| (longest(k), k));
    let mut bs = batches(&order, |k| longest(k) * states[train[k]].windows.len(), cfg.batch_tokens, cfg.batch);
    let steps_per_epoch = bs.len();
    let eval_at: Vec<usize> =
        (1..=cfg.evals_per_epoch.max(1)).map(|k| k * steps_per_epoch / cfg.evals_per_epoch.max(1)).collect();
    let snapshot =
        |layers: &[TopLayer], hc: &HeadVars, he: &HeadVars| -> Result<(Vec<Vec<Tensor>>, FittedHead, FittedHead)> {
            Ok((
                layers
                    .iter()
                    .map(|l| l.vars.iter().map(|(_, v)| v.as_tensor().copy()).collect::<candle_core::Result<Vec<_>>>())
                    .collect::<candle_core::Result<Vec<_>>>()?,
                hc.fitted()?,
                he.fitted()?,
            ))
        };
    let mut best_score = dev_score(&layers, cat.init, esc.init)?;
    let mut history = vec![(0.0, best_score)];
    let mut best = (snapshot(&layers, &hc, &he)?, 0usize, 0.0f64);
    let pb = indicatif::ProgressBar::new((cfg.epochs * steps_per_epoch) as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("fine-tuning {bar:40} {pos}/{len} steps, epoch {msg} eta {eta}")
            .unwrap(),
    );
    let (mut loss_first_epoch, mut loss_at_best) = (f64::NAN, f64::NAN);
    let mut step = 0;
    for epoch in 0..cfg.epochs {
        bs.shuffle(&mut rng);
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        for (bi, b) in bs.iter().enumerate() {
            let refs: Vec<&TextStates> = b.iter().map(|&k| &states[train[k]]).collect();
            let e = pooled(&layers, &refs, h)?;
            let z = e.broadcast_sub(&mean_t)?.broadcast_div(&std_t)?;
            let yc: Vec<u32> = b.iter().map(|&k| cat.y[k] as u32).collect();
            let ye: Vec<u32> = b.iter().map(|&k| esc.y[k] as u32).collect();
            let wc: Vec<f32> = b.iter().map(|&k| cw_c[cat.y[k]]).collect();
            let we: Vec<f32> = b.iter().map(|&k| cw_e[esc.y[k]]).collect();
            let n = b.len();
            let lc = weighted_ce(
                &hc.forward(&z, Some((&mut rng, cfg.dropout)))?,
                &Tensor::from_vec(yc, n, &dev)?,
                &Tensor::from_vec(wc, n, &dev)?,
            )?;
            let le = weighted_ce(
                &he.forward(&z, Some((&mut rng, cfg.dropout)))?,
                &Tensor::from_vec(ye, n, &dev)?,
                &Tensor::from_vec(we, n, &dev)?,
            )?;
            let loss = (lc + le)?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            loss_n += 1;
            let grads = loss.backward()?;
            opt_layers.step(&grads)?;
            opt_heads.step(&grads)?;
            step += 1;
            pb.set_message(format!("{}/{} loss {:.3}", epoch + 1, cfg.epochs, loss_sum / loss_n as f64));
            pb.inc(1);
            if eval_at.contains(&(bi + 1)) {
                let (c, e) = (hc.fitted()?, he.fitted()?);
                let s = dev_score(&layers, &c, &e)?;
                let at = epoch as f64 + (bi + 1) as f64 / steps_per_epoch as f64;
                history.push((at, s));
                let msg = format!(
                    "fine-tuning: epoch {at:.2}, mean train loss {:.4}, dev score {s:.4}",
                    loss_sum / loss_n as f64
                );
                pb.suspend(|| eprintln!("{msg}"));
                if s > best_score + 1e-6 {
                    best_score = s;
                    best = (snapshot(&layers, &hc, &he)?, step, at);
                    loss_at_best = loss_sum / loss_n as f64;
                }
            }
        }
        if epoch == 0 {
            loss_first_epoch = loss_sum / loss_n.max(1) as f64;
        }
    }
    pb.finish_and_clear();
    let ((tensors, category, escalation), best_step, best_epoch) = best;
    for (layer, ts) in layers.iter_mut().zip(tensors) {
        for ((_, v), t) in layer.vars.iter_mut().zip(ts) {
            v.set(&t)?;
        }
    }
    let _ = DType::F32;
    Ok(Finetuned {
        layers,
        category,
        escalation,
        best_step,
        best_epoch,
        best_dev_score: best_score,
        loss_first_epoch,
        loss_at_best,
        history,
    })
}

/// Folds `(e - mean) / std` into a head fitted on standardised embeddings.
pub fn fold_standardisation(h: &FittedHead, mean: &[f32], std: &[f32]) -> FittedHead {
    let fold = |w: &[f32], b: &[f32]| -> (Vec<f32>, Vec<f32>) {
        let d = mean.len();
        let mut wo = Vec::with_capacity(w.len());
        let mut bo = Vec::with_capacity(b.len());
        for (row, bb) in w.chunks_exact(d).zip(b) {
            let r: Vec<f32> = row.iter().zip(std).map(|(w, s)| w / s).collect();
            bo.push(bb - r.iter().zip(mean).map(|(w, m)| w * m).sum::<f32>());
            wo.extend(r);
        }
        (wo, bo)
    };
    let mut out = h.clone();
    match &h.hidden {
        Some((w1, b1)) => out.hidden = Some(fold(w1, b1)),
        None => {
            let (w, b) = fold(&h.weight, &h.bias);
            out.weight = w;
            out.bias = b;
        }
    }
    out
}
