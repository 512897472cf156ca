//! Test helpers: TINY models built with the real model code and file format
//! (public so that the service's integration tests can use them).

use std::path::Path;

use anyhow::Result;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::bert::BertConfig;
use super::format::{self, HeadWeights, ModelParts};
use super::tokenize::xlmr_tokenizer_json;

/// The tiny model's configuration: 2 layers, hidden 64, 2 heads, FFN 128.
pub fn tiny_config(vocab_size: usize) -> BertConfig {
    BertConfig {
        vocab_size,
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 128,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
    }
}

/// A small Unigram vocabulary: specials, `▁`, printable ASCII (alone and
/// `▁`-prefixed), a few words, CJK punctuation and every CJK unified
/// ideograph U+4E00..=U+9FA5.
pub fn tiny_vocab() -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = ["<s>", "<pad>", "</s>", "<unk>"].iter().map(|s| (s.to_string(), 0.0)).collect();
    v.push(("\u{2581}".into(), -3.0));
    for w in ["\u{2581}query", "\u{2581}the", "\u{2581}order", "ing", "\u{2581}退款", "客服", "投诉", "快递"] {
        v.push((w.into(), -4.0));
    }
    for c in 0x21u8..=0x7e {
        v.push(((c as char).to_string(), -6.0 - c as f64 * 1e-3));
        v.push((format!("\u{2581}{}", c as char), -6.5 - c as f64 * 1e-3));
    }
    for c in "，。！？、；：“”‘’（）《》【】…—～·".chars() {
        v.push((c.to_string(), -7.0));
    }
    for cp in 0x4E00u32..=0x9FA5 {
        v.push((char::from_u32(cp).unwrap().to_string(), -8.0 - (cp - 0x4E00) as f64 * 1e-5));
    }
    v
}

fn uniform(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
}

/// Builds the tiny model's parts (random weights from `seed`, heads random
/// and small, standard labels).
pub fn tiny_parts(seed: u64) -> Result<ModelParts> {
    let mut rng = StdRng::seed_from_u64(seed);
    let vocab = tiny_vocab();
    let c = tiny_config(vocab.len());
    let (h, ff) = (c.hidden_size, c.intermediate_size);
    let normalizer = serde_json::json!({"type": "Sequence", "normalizers": [
        {"type": "NFKC"},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}
    ]});
    let tokenizer_json = xlmr_tokenizer_json(&vocab, normalizer)?;
    let mut enc: Vec<(String, QTensor)> = Vec::new();
    let q4 = |data: Vec<f32>, shape: &[usize]| -> Result<QTensor> {
        let t = Tensor::from_vec(data, shape, &Device::Cpu)?;
        Ok(QTensor::quantize(&t, GgmlDType::Q4_0)?)
    };
    let ln = |rng: &mut StdRng, enc: &mut Vec<(String, QTensor)>, p: &str| -> Result<()> {
        let w: Vec<f32> = (0..h).map(|_| 1.0 + rng.gen_range(-0.1f32..0.1)).collect();
        enc.push((format!("{p}.weight"), format::f32_qtensor(w, &[h])?));
        enc.push((format!("{p}.bias"), format::f32_qtensor(uniform(rng, h, 0.1), &[h])?));
        Ok(())
    };
    enc.push((
        "embeddings.word_embeddings.weight".into(),
        q4(uniform(&mut rng, c.vocab_size * h, 1.0), &[c.vocab_size, h])?,
    ));
    enc.push((
        "embeddings.position_embeddings.weight".into(),
        format::f32_qtensor(uniform(&mut rng, c.max_position_embeddings * h, 0.5), &[c.max_position_embeddings, h])?,
    ));
    enc.push((
        "embeddings.token_type_embeddings.weight".into(),
        format::f32_qtensor(uniform(&mut rng, c.type_vocab_size * h, 0.1), &[c.type_vocab_size, h])?,
    ));
    ln(&mut rng, &mut enc, "embeddings.LayerNorm")?;
    for i in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        let lin = [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", ff, h),
            ("output.dense", h, ff),
        ];
        for (name, out, inp) in lin {
            let s = 1.0 / (inp as f32).sqrt() * 1.7;
            enc.push((format!("{p}.{name}.weight"), q4(uniform(&mut rng, out * inp, s), &[out, inp])?));
            enc.push((format!("{p}.{name}.bias"), format::f32_qtensor(uniform(&mut rng, out, 0.05), &[out])?));
            if name == "attention.output.dense" {
                ln(&mut rng, &mut enc, &format!("{p}.attention.output.LayerNorm"))?;
            }
        }
        ln(&mut rng, &mut enc, &format!("{p}.output.LayerNorm"))?;
    }
    let heads = HeadWeights {
        category_weight: uniform(&mut rng, 3 * h, 2.0),
        category_bias: uniform(&mut rng, 3, 0.1),
        escalation_weight: uniform(&mut rng, 4 * h, 2.0),
        escalation_bias: uniform(&mut rng, 4, 0.1),
        category_hidden: None,
        escalation_hidden: None,
        category_ngram: None,
        escalation_ngram: None,
        escalation_flags: false,
    };
    Ok(ModelParts {
        config: c,
        encoder: enc,
        heads,
        category_labels: format::CATEGORY_LABELS.iter().map(|s| s.to_string()).collect(),
        escalation_labels: format::ESCALATION_LABELS.iter().map(|s| s.to_string()).collect(),
        version: format!("tiny-{seed}"),
        input_prefix: format::DEFAULT_PREFIX.into(),
        metadata: serde_json::json!({"tiny": true, "seed": seed}),
        tokenizer_json,
    })
}

/// Writes a TINY model (2 layers, hidden 64, 2 heads, FFN 128, ~21k-piece
/// Unigram vocabulary covering CJK + ASCII, Q4_0 matrices, random weights
/// from `seed`, standard labels) to `path`. About 1 MB; takes milliseconds.
pub fn write_tiny_model(path: &Path, seed: u64) -> Result<()> {
    format::write_model(path, &tiny_parts(seed)?)
}
