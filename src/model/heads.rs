//! The classification heads: two linear layers over the pooled, L2-normalised
//! sentence embedding, each followed by a softmax.

use anyhow::{bail, Result};

use super::format::{HeadWeights, ModelFile};

/// One linear head (`[labels, hidden]` row-major weight + bias).
pub struct Head {
    weight: Vec<f32>,
    bias: Vec<f32>,
    hidden: usize,
}

impl Head {
    pub fn new(weight: Vec<f32>, bias: Vec<f32>, hidden: usize) -> Result<Self> {
        if bias.is_empty() || weight.len() != bias.len() * hidden {
            bail!("head weight has {} values, expected {}x{hidden}", weight.len(), bias.len());
        }
        Ok(Self { weight, bias, hidden })
    }
    pub fn labels(&self) -> usize {
        self.bias.len()
    }
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        self.weight
            .chunks_exact(self.hidden)
            .zip(&self.bias)
            .map(|(row, b)| b + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>())
            .collect()
    }
    pub fn probs(&self, x: &[f32]) -> Vec<f32> {
        softmax(&self.logits(x))
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
}

impl Heads {
    pub fn load(f: &ModelFile, hidden: usize) -> Result<Self> {
        Self::from_weights(f.heads()?, hidden)
    }
    pub fn from_weights(w: HeadWeights, hidden: usize) -> Result<Self> {
        Ok(Self {
            category: Head::new(w.category_weight, w.category_bias, hidden)?,
            escalation: Head::new(w.escalation_weight, w.escalation_bias, hidden)?,
        })
    }
}
