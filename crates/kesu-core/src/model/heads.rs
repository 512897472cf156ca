//! The classification heads over the pooled, L2-normalised sentence
//! embedding: each is a linear layer, optionally after one hidden ReLU layer,
//! followed by a softmax. A head may also carry a character-n-gram part
//! whose log-probabilities, times its `alpha`, are added to the head's
//! (a weighted product of the two distributions; see `super::ngrams`).

use anyhow::{bail, Result};

use super::format::{HeadWeights, ModelFile};
use super::ngrams::{char_ngrams, fuse, NgramWeights};

/// One head: optional hidden ReLU layer (`[units, hidden]` + bias), then a
/// linear layer (`[labels, units or hidden]` row-major weight + bias).
pub struct Head {
    first: Option<Box<Head>>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    ngram: Option<NgramWeights>,
}

impl Head {
    /// A linear head over `hidden` inputs.
    pub fn new(weight: Vec<f32>, bias: Vec<f32>, hidden: usize) -> Result<Self> {
        if bias.is_empty() || weight.len() != bias.len() * hidden {
            bail!("head weight has {} values, expected {}x{hidden}", weight.len(), bias.len());
        }
        Ok(Self { first: None, weight, bias, inputs: hidden, ngram: None })
    }
    /// A head with a hidden ReLU layer `hidden_layer` (`[units, hidden]`, `[units]`).
    pub fn with_hidden(
        hidden_layer: (Vec<f32>, Vec<f32>),
        weight: Vec<f32>,
        bias: Vec<f32>,
        hidden: usize,
    ) -> Result<Self> {
        let first = Head::new(hidden_layer.0, hidden_layer.1, hidden)?;
        let mut h = Head::new(weight, bias, first.labels())?;
        h.first = Some(Box::new(first));
        Ok(h)
    }
    pub fn labels(&self) -> usize {
        self.bias.len()
    }
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        let relu;
        let x = match &self.first {
            Some(f) => {
                relu = f.logits(x).into_iter().map(|v| v.max(0.0)).collect::<Vec<f32>>();
                &relu[..]
            }
            None => x,
        };
        self.weight
            .chunks_exact(self.inputs)
            .zip(&self.bias)
            .map(|(row, b)| b + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>())
            .collect()
    }
    pub fn probs(&self, x: &[f32]) -> Vec<f32> {
        softmax(&self.logits(x))
    }
    /// Adds a character-n-gram part (checked: the head's label count, at least
    /// one bucket, a finite weight).
    pub fn with_ngram(mut self, ngram: Option<NgramWeights>) -> Result<Self> {
        if let Some(g) = &ngram {
            if g.bias.len() != self.labels() || g.weight.len() != g.dim * self.labels() {
                bail!("n-gram part has {} labels, the head {}", g.bias.len(), self.labels());
            }
            // Checked at load, so that no text can divide by zero or fuse with NaN.
            if g.dim == 0 || !g.alpha.is_finite() {
                bail!(
                    "n-gram part has {} buckets and weight {}: needs at least one bucket and a finite weight",
                    g.dim,
                    g.alpha
                );
            }
        }
        self.ngram = ngram;
        Ok(self)
    }
    pub fn ngram(&self) -> Option<&NgramWeights> {
        self.ngram.as_ref()
    }
    /// Probabilities for a text with pooled embedding `x`: the head's softmax,
    /// fused with the n-gram part's when the head has one.
    pub fn probs_for(&self, x: &[f32], text: &str) -> Vec<f32> {
        match &self.ngram {
            None => self.probs(x),
            Some(g) => softmax(&fuse(&self.logits(x), &g.logits(&char_ngrams(text, g.dim)), g.alpha)),
        }
    }
}

/// Index of the largest value (the first one on ties; 0 for an empty slice).
pub fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

pub fn softmax(z: &[f32]) -> Vec<f32> {
    let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

pub struct Heads {
    pub category: Head,
    pub escalation: Head,
    /// The escalation head reads `[embedding ‖ flag features]`.
    pub escalation_flags: bool,
}

impl Heads {
    pub fn load(f: &ModelFile, hidden: usize) -> Result<Self> {
        Self::from_weights(f.heads()?, hidden)
    }
    pub fn from_weights(w: HeadWeights, hidden: usize) -> Result<Self> {
        let head = |hid: Option<(Vec<f32>, Vec<f32>)>, w: Vec<f32>, b: Vec<f32>, inputs: usize| match hid {
            Some(l) => Head::with_hidden(l, w, b, inputs),
            None => Head::new(w, b, inputs),
        };
        let escalation_inputs = w.escalation_inputs(hidden);
        Ok(Self {
            category: head(w.category_hidden, w.category_weight, w.category_bias, hidden)?
                .with_ngram(w.category_ngram)?,
            escalation: head(w.escalation_hidden, w.escalation_weight, w.escalation_bias, escalation_inputs)?
                .with_ngram(w.escalation_ngram)?,
            escalation_flags: w.escalation_flags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngram_parts_that_could_break_a_request_are_refused_at_load() {
        let head = || Head::new(vec![0.0; 2 * 4], vec![0.0; 2], 4).unwrap();
        let part = |dim: usize, alpha: f32| NgramWeights { dim, weight: vec![0.1; 2 * dim], bias: vec![0.0; 2], alpha };
        assert!(head().with_ngram(Some(part(0, 1.0))).is_err(), "zero buckets");
        assert!(head().with_ngram(Some(part(8, f32::NAN))).is_err(), "NaN weight");
        assert!(head().with_ngram(Some(part(8, f32::INFINITY))).is_err(), "infinite weight");
        assert!(head().with_ngram(Some(NgramWeights { bias: vec![0.0; 3], ..part(8, 1.0) })).is_err(), "label count");
        let ok = head().with_ngram(Some(part(8, 0.5))).unwrap();
        let p = ok.probs_for(&[0.0; 4], "客服不理人");
        assert!(p.iter().all(|v| v.is_finite()) && (p.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{p:?}");
    }
}
