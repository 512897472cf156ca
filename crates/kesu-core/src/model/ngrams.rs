//! Character n-gram features and the n-gram part of a head.
//!
//! A text's features are its character 1–3-grams (whitespace dropped), hashed
//! (FNV-1a) into `dim` buckets, counted, L2-normalised: the same features as
//! the bag-of-n-grams baseline. A head may carry a linear layer over them
//! (`heads.{name}.ngram.{weight,bias,alpha}`); its log-softmax, times `alpha`,
//! is added to the encoder head's log-softmax before the final softmax (a
//! product of the two models' distributions, weighted by `alpha`).

use std::collections::HashMap;

/// Character 1–3-gram features of `text`, hashed into `dim` buckets,
/// L2-normalised, sorted by bucket.
pub fn char_ngrams(text: &str, dim: usize) -> Vec<(usize, f32)> {
    let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut m: HashMap<usize, f32> = HashMap::new();
    for n in 1..=3 {
        for w in chars.windows(n) {
            let mut h: u64 = 1469598103934665603 ^ n as u64;
            for c in w {
                h = (h ^ *c as u64).wrapping_mul(1099511628211);
            }
            *m.entry((h % dim as u64) as usize).or_default() += 1.0;
        }
    }
    let norm = m.values().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
    let mut v: Vec<(usize, f32)> = m.into_iter().map(|(k, x)| (k, x / norm)).collect();
    v.sort_unstable_by_key(|p| p.0);
    v
}

/// A linear layer over hashed n-gram features, with its fusion weight.
#[derive(Debug, Clone, PartialEq)]
pub struct NgramWeights {
    /// Hash buckets.
    pub dim: usize,
    /// `[labels, dim]` row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    /// Weight of this part's log-probabilities in the fused head.
    pub alpha: f32,
}

impl NgramWeights {
    pub fn logits(&self, x: &[(usize, f32)]) -> Vec<f32> {
        self.bias
            .iter()
            .enumerate()
            .map(|(c, b)| b + x.iter().map(|&(k, v)| self.weight[c * self.dim + k] * v).sum::<f32>())
            .collect()
    }
}

/// `log_softmax(a) + alpha * log_softmax(b)`: the fused scores (softmax them
/// for probabilities).
pub fn fuse(a: &[f32], b: &[f32], alpha: f32) -> Vec<f32> {
    let ls = |z: &[f32]| -> Vec<f32> {
        let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
        z.iter().map(|v| v - lse).collect()
    };
    ls(a).iter().zip(ls(b)).map(|(x, y)| x + alpha * y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_unit_and_fusion_is_a_weighted_product() {
        let f = char_ngrams("退款 退款", 1 << 10);
        let n: f32 = f.iter().map(|(_, v)| v * v).sum();
        assert!((n - 1.0).abs() < 1e-5);
        assert_eq!(f, char_ngrams("退款退款", 1 << 10), "whitespace is dropped");
        let a = [1.0, 0.0, -1.0];
        assert_eq!(crate::model::heads::softmax(&fuse(&a, &[5.0, 0.0, 0.0], 0.0)), crate::model::heads::softmax(&a));
        let p = crate::model::heads::softmax(&fuse(&a, &[0.0, 3.0, 0.0], 1.0));
        // product of experts: proportional to softmax(a) * softmax(b)
        let (pa, pb) = (crate::model::heads::softmax(&a), crate::model::heads::softmax(&[0.0, 3.0, 0.0]));
        let q: Vec<f32> = pa.iter().zip(&pb).map(|(x, y)| x * y).collect();
        let s: f32 = q.iter().sum();
        for (x, y) in p.iter().zip(&q) {
            assert!((x - y / s).abs() < 1e-5);
        }
    }
}
