//! Fitting a softmax head on frozen sentence embeddings with candle-nn.
//!
//! Features are standardised for training and the standardisation is folded
//! back into the weights, so the stored head applies to raw pooled embeddings.
//! Weights start at zero (deterministic), full-batch AdamW, class-weighted
//! cross-entropy (weights ∝ frequency^-power), early stopping on a dev score.

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

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
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig { epochs: 400, lr: 0.01, weight_decay: 0.01, eval_every: 10, patience: 8, class_weight_power: 0.5 }
    }
}

/// A fitted head, row-major `[classes, dim]`, applying to raw features.
#[derive(Debug, Clone)]
pub struct FittedHead {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub best_epoch: usize,
    pub best_dev_score: f64,
    /// Training loss at the start and at the best epoch.
    pub loss_start: f64,
    pub loss_best: f64,
}

impl FittedHead {
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        let d = x.len();
        self.bias.iter().enumerate().map(|(c, b)| b + self.weight[c * d..(c + 1) * d].iter().zip(x).map(|(w, v)| w * v).sum::<f32>()).collect()
    }
    pub fn predict(&self, x: &[f32]) -> usize {
        crate::model::heads::argmax(&self.logits(x))
    }
}

fn weighted_ce(logits: &Tensor, y: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let lsm = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = lsm.gather(&y.unsqueeze(1)?, 1)?.squeeze(1)?;
    let wsum = w.sum_all()?;
    (picked * w)?.sum_all()?.neg()?.broadcast_div(&wsum)
}

/// Fit a `classes`-way head on `x` (`n` rows of `dim`) with labels `y`.
/// `dev_score(head)` returns the score to maximise (e.g. dev macro-F1).
pub fn fit(x: &[Vec<f32>], y: &[usize], classes: usize, cfg: &FitConfig, mut dev_score: impl FnMut(&FittedHead) -> f64) -> anyhow::Result<FittedHead> {
    let n = x.len();
    anyhow::ensure!(n > 0 && n == y.len(), "no training rows");
    let dim = x[0].len();
    let dev = Device::Cpu;
    // standardisation
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
        *s = s.sqrt().max(1e-6);
    }
    let flat: Vec<f32> = x.iter().flat_map(|r| r.iter().zip(&mean).zip(&std).map(|((v, m), s)| (v - m) / s)).collect();
    let xt = Tensor::from_vec(flat, (n, dim), &dev)?;
    let yt = Tensor::from_vec(y.iter().map(|&v| v as u32).collect::<Vec<_>>(), n, &dev)?;
    let mut freq = vec![0usize; classes];
    for &v in y {
        freq[v] += 1;
    }
    let cw: Vec<f32> = freq.iter().map(|&f| if f > 0 { (f as f32).powf(-cfg.class_weight_power as f32) } else { 0.0 }).collect();
    let wt = Tensor::from_vec(y.iter().map(|&v| cw[v]).collect::<Vec<_>>(), n, &dev)?;
    let w = Var::zeros((classes, dim), DType::F32, &dev)?;
    let b = Var::zeros(classes, DType::F32, &dev)?;
    let mut opt = AdamW::new(vec![w.clone(), b.clone()], ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() })?;
    let unfold = |w: &Var, b: &Var| -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
        let wv: Vec<Vec<f32>> = w.as_tensor().to_vec2()?;
        let bv: Vec<f32> = b.as_tensor().to_vec1()?;
        let mut weight = Vec::with_capacity(classes * dim);
        let mut bias = Vec::with_capacity(classes);
        for c in 0..classes {
            let row: Vec<f32> = wv[c].iter().zip(&std).map(|(w, s)| w / s).collect();
            bias.push(bv[c] - row.iter().zip(&mean).map(|(w, m)| w * m).sum::<f32>());
            weight.extend(row);
        }
        Ok((weight, bias))
    };
    let mut best: Option<FittedHead> = None;
    let mut since = 0;
    let mut loss_start = f64::NAN;
    for epoch in 1..=cfg.epochs {
        let logits = xt.broadcast_matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?;
        let loss = weighted_ce(&logits, &yt, &wt)?;
        let lv = loss.to_scalar::<f32>()? as f64;
        if epoch == 1 {
            loss_start = lv;
        }
        opt.backward_step(&loss)?;
        if epoch % cfg.eval_every == 0 || epoch == cfg.epochs {
            let (weight, bias) = unfold(&w, &b)?;
            let mut head = FittedHead { weight, bias, best_epoch: epoch, best_dev_score: 0.0, loss_start, loss_best: lv };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_data_is_learned_and_loss_falls() {
        // two clusters in 4-d
        let x: Vec<Vec<f32>> = (0..40).map(|i| if i % 2 == 0 { vec![1.0, 0.2, 0.0, (i as f32) * 0.01] } else { vec![-1.0, 0.1, 0.3, (i as f32) * 0.01] }).collect();
        let y: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let (xc, yc) = (x.clone(), y.clone());
        let head = fit(&x, &y, 2, &FitConfig { epochs: 100, ..Default::default() }, move |h| xc.iter().zip(&yc).filter(|(r, &t)| h.predict(r) == t).count() as f64 / 40.0).unwrap();
        assert_eq!(head.best_dev_score, 1.0);
        assert!(head.loss_best < head.loss_start * 0.75, "{} -> {}", head.loss_start, head.loss_best);
    }
}
