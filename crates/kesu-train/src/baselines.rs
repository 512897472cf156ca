//! The two baselines every model is compared with on the same split:
//! keyword rules over the flagger, and a character n-gram logistic regression.

use kesu_core::flags::{Flag, FlagReport};

const INFOSEC: &[&str] = &[
    "诈骗",
    "盗刷",
    "泄露",
    "泄漏",
    "骚扰电话",
    "被盗",
    "盗号",
    "冒充",
    "冒用",
    "钓鱼",
    "验证码",
    "个人信息",
    "隐私",
    "骗子电话",
    "实名",
    "账号被",
];
const SERVICE: &[&str] = &[
    "客服",
    "服务",
    "态度",
    "退款",
    "退货",
    "快递",
    "送餐",
    "配送",
    "物流",
    "送货",
    "发货",
    "前台",
    "服务员",
    "骑手",
    "送到",
    "扣费",
    "处理",
    "回复",
    "售后",
    "投诉",
    "退费",
    "维修",
    "预订",
    "小时",
];
const ANGRY: &[&str] = &[
    "垃圾",
    "骗子",
    "气死",
    "太过分",
    "千万别",
    "恶心",
    "坑人",
    "无语",
    "滚",
    "妈的",
    "傻",
    "!!!",
    "！！！",
    "什么玩意",
    "太差劲",
    "再也不",
];
const UNHAPPY: &[&str] =
    &["不", "没", "差", "慢", "失望", "问题", "为什么", "怎么", "难", "贵", "一般", "还没", "希望"];

/// Keyword rules: category and escalation from word lists and the flagger.
pub fn keyword_rules(text: &str, flags: &FlagReport) -> (usize, usize) {
    let has = |ws: &[&str]| ws.iter().any(|w| text.contains(w));
    let category = if has(INFOSEC) || flags.flags.contains(&Flag::PrivacyBreach) {
        2
    } else if has(SERVICE) {
        1
    } else {
        0
    };
    let escalation = if flags.hits.iter().any(|h| !h.negated && h.flag.takes_it_outside() && h.severity >= 2) {
        3
    } else if has(ANGRY) {
        2
    } else if has(UNHAPPY) {
        1
    } else {
        0
    };
    (category, escalation)
}

pub use kesu_core::model::ngrams::char_ngrams;

/// Multinomial logistic regression on sparse features (SGD, L2, class weights ∝ 1/√freq).
pub struct SparseLogReg {
    pub dim: usize,
    pub classes: usize,
    w: Vec<f32>,
}

impl SparseLogReg {
    pub fn train(x: &[Vec<(usize, f32)>], y: &[usize], dim: usize, classes: usize, epochs: usize, seed: u64) -> Self {
        let mut w = vec![0f32; dim * classes + classes];
        let mut freq = vec![0usize; classes];
        for &c in y {
            freq[c] += 1;
        }
        let cw: Vec<f32> = freq
            .iter()
            .map(|&f| if f > 0 { (y.len() as f32 / classes as f32 / f as f32).sqrt() } else { 0.0 })
            .collect();
        let mut order: Vec<usize> = (0..x.len()).collect();
        let mut state = seed.wrapping_add(0x9e3779b97f4a7c15);
        let lambda = 1e-5f32;
        for epoch in 0..epochs {
            for i in (1..order.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let lr = 0.5 / (1.0 + epoch as f32);
            for &i in &order {
                let p = Self::probs_raw(&w, dim, classes, &x[i]);
                for c in 0..classes {
                    let g = (p[c] - if c == y[i] { 1.0 } else { 0.0 }) * cw[y[i]];
                    for &(k, v) in &x[i] {
                        let wi = c * dim + k;
                        w[wi] -= lr * (g * v + lambda * w[wi]);
                    }
                    w[dim * classes + c] -= lr * g;
                }
            }
        }
        SparseLogReg { dim, classes, w }
    }

    fn probs_raw(w: &[f32], dim: usize, classes: usize, x: &[(usize, f32)]) -> Vec<f32> {
        kesu_core::model::heads::softmax(&Self::logits_raw(w, dim, classes, x))
    }

    fn logits_raw(w: &[f32], dim: usize, classes: usize, x: &[(usize, f32)]) -> Vec<f32> {
        (0..classes).map(|c| w[dim * classes + c] + x.iter().map(|&(k, v)| w[c * dim + k] * v).sum::<f32>()).collect()
    }

    /// Class scores (before the softmax) of one text's features.
    pub fn logits(&self, x: &[(usize, f32)]) -> Vec<f32> {
        Self::logits_raw(&self.w, self.dim, self.classes, x)
    }

    /// The weights as an n-gram head part (`[classes, dim]` row-major, bias).
    pub fn to_ngram(&self, alpha: f32) -> kesu_core::model::ngrams::NgramWeights {
        let n = self.dim * self.classes;
        kesu_core::model::ngrams::NgramWeights {
            dim: self.dim,
            weight: self.w[..n].to_vec(),
            bias: self.w[n..].to_vec(),
            alpha,
        }
    }

    pub fn predict(&self, x: &[(usize, f32)]) -> usize {
        kesu_core::model::heads::argmax(&Self::probs_raw(&self.w, self.dim, self.classes, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bag_of_ngrams_learns_a_word() {
        let texts = ["退款太慢了", "快递很慢", "屏幕坏了", "质量太差坏了", "客服不退款", "电池坏了"];
        let y = [1, 1, 0, 0, 1, 0];
        let x: Vec<_> = texts.iter().map(|t| char_ngrams(t, 1 << 12)).collect();
        let m = SparseLogReg::train(&x, &y, 1 << 12, 2, 30, 1);
        assert_eq!(m.predict(&char_ngrams("退款呢", 1 << 12)), 1);
        assert_eq!(m.predict(&char_ngrams("又坏了", 1 << 12)), 0);
    }
}
