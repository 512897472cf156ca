//! Classification metrics: accuracy, per-class precision/recall/F1, macro-F1,
//! confusion matrix, quadratic weighted kappa, Cohen's kappa.

use serde::Serialize;

/// Per-class scores.
#[derive(Debug, Clone, Serialize)]
pub struct ClassScores {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// Scores of one classification task.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassScores>,
    /// `confusion[gold][pred]`.
    pub confusion: Vec<Vec<usize>>,
    /// Quadratic weighted kappa (meaningful for ordinal labels).
    pub qwk: f64,
}

/// Score predictions `pred` against `gold` (class indices `< labels.len()`).
pub fn report(labels: &[&str], gold: &[usize], pred: &[usize]) -> Report {
    assert_eq!(gold.len(), pred.len());
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&g, &p) in gold.iter().zip(pred) {
        confusion[g][p] += 1;
    }
    let n = gold.len();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let per_class: Vec<ClassScores> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: usize = (0..k).map(|g| confusion[g][c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = if predicted > 0 { tp / predicted as f64 } else { 0.0 };
            let recall = if support > 0 { tp / support as f64 } else { 0.0 };
            let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            ClassScores { label: labels[c].to_string(), precision, recall, f1, support }
        })
        .collect();
    let macro_f1 = per_class.iter().map(|c| c.f1).sum::<f64>() / k as f64;
    Report {
        n,
        accuracy: if n > 0 { correct as f64 / n as f64 } else { 0.0 },
        macro_f1,
        per_class,
        qwk: weighted_kappa(k, gold, pred, true),
        confusion,
    }
}

/// Cohen's kappa, unweighted (`quadratic = false`) or quadratic weighted.
pub fn weighted_kappa(k: usize, a: &[usize], b: &[usize], quadratic: bool) -> f64 {
    let n = a.len() as f64;
    if n == 0.0 || k < 2 {
        return 0.0;
    }
    let mut obs = vec![vec![0f64; k]; k];
    let (mut ha, mut hb) = (vec![0f64; k], vec![0f64; k]);
    for (&x, &y) in a.iter().zip(b) {
        obs[x][y] += 1.0;
        ha[x] += 1.0;
        hb[y] += 1.0;
    }
    let w = |i: usize, j: usize| {
        if quadratic {
            ((i as f64 - j as f64) / (k as f64 - 1.0)).powi(2)
        } else if i == j {
            0.0
        } else {
            1.0
        }
    };
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            num += w(i, j) * obs[i][j] / n;
            den += w(i, j) * ha[i] * hb[j] / (n * n);
        }
    }
    if den == 0.0 {
        1.0
    } else {
        1.0 - num / den
    }
}

/// Precision and recall of a binary decision.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Binary {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
}

impl Binary {
    pub fn add(&mut self, gold: bool, pred: bool) {
        match (gold, pred) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            _ => {}
        }
    }
    pub fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
}

/// A human-readable table of a report.
/// Expected calibration error of the top-class confidence: predictions are
/// put in `bins` equal-width bins by their highest probability, and the
/// bins' |accuracy − mean confidence| are averaged weighted by their size.
/// 0 for perfectly calibrated probabilities; 0 for no predictions.
pub fn ece(probs: &[Vec<f32>], gold: &[usize], bins: usize) -> f64 {
    assert_eq!(probs.len(), gold.len());
    let bins = bins.max(1);
    let mut acc = vec![(0usize, 0f64, 0f64); bins]; // (n, correct, confidence)
    for (p, &g) in probs.iter().zip(gold) {
        let (top, conf) = p.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        let b = ((conf.clamp(0.0, 1.0) as f64 * bins as f64) as usize).min(bins - 1);
        acc[b].0 += 1;
        acc[b].1 += f64::from(u8::from(top == g));
        acc[b].2 += conf as f64;
    }
    let n = probs.len().max(1) as f64;
    acc.iter().filter(|b| b.0 > 0).map(|&(_, c, f)| (c - f).abs() / n).sum()
}

pub fn render(title: &str, r: &Report) -> String {
    let mut s = format!("{title}: n={} accuracy={:.3} macro-F1={:.3} QWK={:.3}\n", r.n, r.accuracy, r.macro_f1, r.qwk);
    s += &format!("  {:<22} {:>9} {:>9} {:>9} {:>8}\n", "class", "precision", "recall", "F1", "support");
    for c in &r.per_class {
        s += &format!("  {:<22} {:>9.3} {:>9.3} {:>9.3} {:>8}\n", c.label, c.precision, c.recall, c.f1, c.support);
    }
    s += "  confusion (rows gold, cols predicted):\n";
    for (i, row) in r.confusion.iter().enumerate() {
        s += &format!("  {:<22} {}\n", r.per_class[i].label, row.iter().map(|v| format!("{v:>6}")).collect::<String>());
    }
    s
}

#[cfg(test)]
mod ece_tests {
    use super::ece;

    #[test]
    fn ece_is_zero_when_confidence_matches_accuracy_and_measures_overconfidence() {
        // Two predictions at 0.5 confidence, one right: calibrated.
        let p = vec![vec![0.5, 0.5], vec![0.5, 0.5]];
        assert!(ece(&p, &[0, 1], 10) < 1e-9);
        // Always 0.9 sure and always wrong: ECE 0.9.
        let p = vec![vec![0.9, 0.1]; 4];
        assert!((ece(&p, &[1; 4], 10) - 0.9).abs() < 1e-6);
        // Half the items 1.0 sure and right, half 0.8 sure and right: 0.1 (weighted).
        let p = vec![vec![1.0, 0.0], vec![0.8, 0.2]];
        assert!((ece(&p, &[0, 0], 10) - 0.1).abs() < 1e-6);
        assert_eq!(ece(&[], &[], 10), 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_known_values() {
        let r = report(&["a", "b"], &[0, 0, 1, 1], &[0, 0, 1, 1]);
        assert_eq!((r.accuracy, r.macro_f1, r.qwk), (1.0, 1.0, 1.0));
        // gold a a b b, pred a b b b: a P=1 R=.5 F=.667; b P=.667 R=1 F=.8
        let r = report(&["a", "b"], &[0, 0, 1, 1], &[0, 1, 1, 1]);
        assert!((r.per_class[0].f1 - 2.0 / 3.0).abs() < 1e-9);
        assert!((r.per_class[1].f1 - 0.8).abs() < 1e-9);
        assert_eq!(r.confusion, vec![vec![1, 1], vec![0, 2]]);
    }

    #[test]
    fn kappa_values() {
        // by hand: one (3,2) disagreement, weight 1/9, over 5 → 1/45; expected 61/225 → 1 - 5/61
        let q = weighted_kappa(4, &[0, 1, 2, 3, 3], &[0, 1, 2, 2, 3], true);
        assert!((q - 56.0 / 61.0).abs() < 1e-9, "{q}");
        // unweighted: cohen_kappa_score([0,0,1,1],[0,1,1,1]) = 0.5
        assert!((weighted_kappa(2, &[0, 0, 1, 1], &[0, 1, 1, 1], false) - 0.5).abs() < 1e-9);
        // chance-level: constant predictions give 0
        assert_eq!(weighted_kappa(3, &[0, 1, 2], &[1, 1, 1], true), 0.0);
    }
}
