//! Fitting a softmax head on fixed features (pooled sentence embeddings,
//! optionally with extra features) with candle-nn.
//!
//! Features are standardised for training and the standardisation is folded
//! back into the first layer, so the stored head applies to raw features.
//! A head is linear (`hidden = 0`, weights start at zero) or one hidden ReLU
//! layer with dropout (weights start from a seeded uniform draw, dropout masks
//! from the same seeded generator), so a run is deterministic. Full-batch
//! AdamW, class-weighted cross-entropy (weights ∝ frequency^-power), early
//! stopping on a dev score.

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Training settings of one head.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FitConfig {
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Evaluate on dev every this many epochs.
    pub eval_every: usize,
    /// Stop after this many evaluations without improvement.
    pub patience: usize,
    /// Class weights are frequency^-power (0 = unweighted, 0.5 = 1/sqrt).
    pub class_weight_power: f64,
    /// Units of the hidden ReLU layer; 0 = a linear head.
    pub hidden: usize,
    /// Dropout on the hidden layer while training.
    pub dropout: f64,
    /// Seed of the initial weights and the dropout masks.
    pub seed: u64,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            epochs: 400,
            lr: 0.01,
            weight_decay: 0.01,
            eval_every: 10,
            patience: 8,
            class_weight_power: 0.5,
            hidden: 0,
            dropout: 0.0,
            seed: 20261122,
        }
    }
}

/// A fitted head applying to raw features: optional hidden ReLU layer
/// `[hidden, dim]`, then the output layer `[classes, hidden or dim]` (row-major).
#[derive(Debug, Clone)]
pub struct FittedHead {
    pub hidden: Option<(Vec<f32>, Vec<f32>)>,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub best_epoch: usize,
    pub best_dev_score: f64,
    /// Training loss at the start and at the best epoch.
    pub loss_start: f64,
    pub loss_best: f64,
}

/// `W x + b` with `W` row-major `[b.len(), x.len()]`.
pub fn affine(w: &[f32], b: &[f32], x: &[f32]) -> Vec<f32> {
    let d = x.len();
    b.iter()
        .enumerate()
        .map(|(c, b)| b + w[c * d..(c + 1) * d].iter().zip(x).map(|(w, v)| w * v).sum::<f32>())
        .collect()
}

impl FittedHead {
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        match &self.hidden {
            None => affine(&self.weight, &self.bias, x),
            Some((w1, b1)) => {
                let h: Vec<f32> = affine(w1, b1, x).into_iter().map(|v| v.max(0.0)).collect();
                affine(&self.weight, &self.bias, &h)
            }
        }
    }
    pub fn predict(&self, x: &[f32]) -> usize {
        kesu_core::model::heads::argmax(&self.logits(x))
    }
}

/// Class-weighted mean cross-entropy.
pub fn weighted_ce(logits: &Tensor, y: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let lsm = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = lsm.gather(&y.unsqueeze(1)?, 1)?.squeeze(1)?;
    let wsum = w.sum_all()?;
    (picked * w)?.sum_all()?.neg()?.broadcast_div(&wsum)
}

/// Per-class weights ∝ frequency^-power (0 for absent classes).
pub fn class_weights(y: &[usize], classes: usize, power: f64) -> Vec<f32> {
    let mut freq = vec![0usize; classes];
    for &v in y {
        freq[v] += 1;
    }
    freq.iter().map(|&f| if f > 0 { (f as f32).powf(-power as f32) } else { 0.0 }).collect()
}

/// Uniform(-scale, scale) values from `rng`.
pub fn uniform(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
}

/// Per-feature mean and standard deviation of `x`.
pub fn standardisation(x: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let n = x.len();
    let dim = x[0].len();
    let mut mean = vec![0f32; dim];
    for r in x {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v / n as f32;
        }
    }
    let mut std = vec![0f32; dim];
    for r in x {
        for ((s, v), m) in std.iter_mut().zip(r).zip(&mean) {
            *s += (v - m).powi(2) / n as f32;
        }
    }
    for s in std.iter_mut() {
        // A constant feature (e.g. a flag never seen in train) is left
        // unscaled: dividing by a tiny std would blow up an unseen value.
        let sd = s.sqrt();
        *s = if sd < 1e-6 { 1.0 } else { sd };
    }
    (mean, std)
}

/// Folds `(x - mean) / std` into a layer `[rows, dim]`: returns the weight and
/// bias applying to raw `x`.
fn unfold(w: &Tensor, b: &Tensor, mean: &[f32], std: &[f32]) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
    let wv: Vec<Vec<f32>> = w.to_vec2()?;
    let bv: Vec<f32> = b.to_vec1()?;
    let mut weight = Vec::new();
    let mut bias = Vec::new();
    for (row, b) in wv.iter().zip(bv) {
        let row: Vec<f32> = row.iter().zip(std).map(|(w, s)| w / s).collect();
        bias.push(b - row.iter().zip(mean).map(|(w, m)| w * m).sum::<f32>());
        weight.extend(row);
    }
    Ok((weight, bias))
}

/// Fit a `classes`-way head on `x` (`n` rows of `dim`) with labels `y`.
/// `dev_score(head)` returns the score to maximise (e.g. dev macro-F1).
pub fn fit(
    x: &[Vec<f32>],
    y: &[usize],
    classes: usize,
    cfg: &FitConfig,
    mut dev_score: impl FnMut(&FittedHead) -> f64,
) -> anyhow::Result<FittedHead> {
    let n = x.len();
    anyhow::ensure!(n > 0 && n == y.len(), "no training rows");
    let dim = x[0].len();
    let dev = Device::Cpu;
    let (mean, std) = standardisation(x);
    let flat: Vec<f32> = x.iter().flat_map(|r| r.iter().zip(&mean).zip(&std).map(|((v, m), s)| (v - m) / s)).collect();
    let xt = Tensor::from_vec(flat, (n, dim), &dev)?;
    let yt = Tensor::from_vec(y.iter().map(|&v| v as u32).collect::<Vec<_>>(), n, &dev)?;
    let cw = class_weights(y, classes, cfg.class_weight_power);
    let wt = Tensor::from_vec(y.iter().map(|&v| cw[v]).collect::<Vec<_>>(), n, &dev)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let h = cfg.hidden;
    let (w1, b1) = if h > 0 {
        let s = (6.0 / dim as f32).sqrt(); // He-uniform for ReLU
        (Some(Var::from_vec(uniform(&mut rng, h * dim, s), (h, dim), &dev)?), Some(Var::zeros(h, DType::F32, &dev)?))
    } else {
        (None, None)
    };
    let (w, b) = if h > 0 {
        let s = (1.0 / h as f32).sqrt();
        (Var::from_vec(uniform(&mut rng, classes * h, s), (classes, h), &dev)?, Var::zeros(classes, DType::F32, &dev)?)
    } else {
        (Var::zeros((classes, dim), DType::F32, &dev)?, Var::zeros(classes, DType::F32, &dev)?)
    };
    let mut vars = vec![w.clone(), b.clone()];
    vars.extend(w1.iter().cloned());
    vars.extend(b1.iter().cloned());
    let mut opt = AdamW::new(vars, ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() })?;
    let export = || -> anyhow::Result<Exported> {
        Ok(match (&w1, &b1) {
            (Some(w1), Some(b1)) => {
                let hidden = unfold(w1.as_tensor(), b1.as_tensor(), &mean, &std)?;
                (Some(hidden), w.as_tensor().flatten_all()?.to_vec1()?, b.as_tensor().to_vec1()?)
            }
            _ => {
                let (wv, bv) = unfold(w.as_tensor(), b.as_tensor(), &mean, &std)?;
                (None, wv, bv)
            }
        })
    };
    let mut best: Option<FittedHead> = None;
    let mut since = 0;
    let mut loss_start = f64::NAN;
    for epoch in 1..=cfg.epochs {
        let feats = match (&w1, &b1) {
            (Some(w1), Some(b1)) => {
                let mut hid = xt.broadcast_matmul(&w1.as_tensor().t()?)?.broadcast_add(b1.as_tensor())?.relu()?;
                if cfg.dropout > 0.0 {
                    let keep = 1.0 - cfg.dropout;
                    let mask: Vec<f32> =
                        (0..n * h).map(|_| if rng.gen::<f64>() < keep { (1.0 / keep) as f32 } else { 0.0 }).collect();
                    hid = (hid * Tensor::from_vec(mask, (n, h), &dev)?)?;
                }
                hid
            }
            _ => xt.clone(),
        };
        let logits = feats.broadcast_matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?;
        let loss = weighted_ce(&logits, &yt, &wt)?;
        let lv = loss.to_scalar::<f32>()? as f64;
        if epoch == 1 {
            loss_start = lv;
        }
        opt.backward_step(&loss)?;
        if epoch % cfg.eval_every == 0 || epoch == cfg.epochs {
            let (hidden, weight, bias) = export()?;
            let mut head =
                FittedHead { hidden, weight, bias, best_epoch: epoch, best_dev_score: 0.0, loss_start, loss_best: lv };
            let score = dev_score(&head);
            head.best_dev_score = score;
            if best.as_ref().is_none_or(|b| score > b.best_dev_score + 1e-6) {
                best = Some(head);
                since = 0;
            } else {
                since += 1;
                if since >= cfg.patience {
                    break;
                }
            }
        }
    }
    Ok(best.expect("at least one evaluation"))
}

/// A trained head as plain numbers: the hidden layer's (weights, bias) if any, then the output layer's weights and bias.
type Exported = (Option<(Vec<f32>, Vec<f32>)>, Vec<f32>, Vec<f32>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_data_is_learned_and_loss_falls() {
        // two clusters in 4-d
        let x: Vec<Vec<f32>> = (0..40)
            .map(|i| {
                if i % 2 == 0 {
                    vec![1.0, 0.2, 0.0, (i as f32) * 0.01]
                } else {
                    vec![-1.0, 0.1, 0.3, (i as f32) * 0.01]
                }
            })
            .collect();
        let y: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let (xc, yc) = (x.clone(), y.clone());
        let head = fit(&x, &y, 2, &FitConfig { epochs: 100, ..Default::default() }, move |h| {
            xc.iter().zip(&yc).filter(|(r, &t)| h.predict(r) == t).count() as f64 / 40.0
        })
        .unwrap();
        assert_eq!(head.best_dev_score, 1.0);
        assert!(head.loss_best < head.loss_start * 0.75, "{} -> {}", head.loss_start, head.loss_best);
    }

    #[test]
    fn a_hidden_layer_learns_xor_and_is_deterministic() {
        // XOR of the signs of the first two features: not linearly separable
        let x: Vec<Vec<f32>> = (0..80)
            .map(|i| {
                vec![
                    if i % 2 == 0 { 1.0 } else { -1.0 },
                    if (i / 2) % 2 == 0 { 1.0 } else { -1.0 },
                    (i as f32 * 0.37).sin() * 0.1,
                ]
            })
            .collect();
        let y: Vec<usize> = x.iter().map(|r| ((r[0] > 0.0) != (r[1] > 0.0)) as usize).collect();
        let acc = |h: &FittedHead| x.iter().zip(&y).filter(|(r, &t)| h.predict(r) == t).count() as f64 / 80.0;
        let cfg =
            FitConfig { epochs: 300, hidden: 16, dropout: 0.1, eval_every: 10, patience: 100, ..Default::default() };
        let a = fit(&x, &y, 2, &cfg, acc).unwrap();
        assert_eq!(a.best_dev_score, 1.0);
        assert!(a.loss_best < a.loss_start * 0.5, "{} -> {}", a.loss_start, a.loss_best);
        assert!(a.hidden.is_some());
        let linear = fit(&x, &y, 2, &FitConfig { epochs: 300, ..Default::default() }, acc).unwrap();
        assert!(linear.best_dev_score <= 0.8, "a linear head cannot learn XOR: {}", linear.best_dev_score);
        let b = fit(&x, &y, 2, &cfg, acc).unwrap();
        assert_eq!((a.weight, a.hidden), (b.weight, b.hidden), "same seed, same head");
    }
}
