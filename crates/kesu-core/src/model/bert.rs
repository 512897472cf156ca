//! A quantised BERT encoder (multilingual-e5-small: 12 layers, hidden 384,
//! 12 heads, FFN 1536) in the style of candle-transformers: plain structs with
//! `load` and `forward`, field names following the checkpoint's tensor names.
//!
//! Matrices come from the model file in whatever ggml type they were stored
//! (normally Q4_0) and are converted at load time according to
//! [`WeightFormat`] (see `Classifier` docs for the measured trade-offs).

use std::sync::Arc;

use anyhow::{bail, Result};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use super::format::ModelFile;

#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

impl BertConfig {
    /// multilingual-e5-small.
    pub fn e5_small(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 384,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 1536,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        }
    }
}

/// How the encoder's matrices are held in memory and multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// Dequantise to f32 at load; packed-token encoder with kesu's own
    /// kernels ([`super::packed`]). The default: fastest measured.
    #[default]
    F32,
    /// Dequantise to f32 at load; the candle path (padded batches, gemm crate).
    F32Candle,
    /// Dequantise to f16 at load; activations cast to f16 per matmul.
    F16,
    /// Requantise to Q8_0 (candle's quantised matmul, int8 dot products).
    Q8_0,
    /// Keep the stored blocks (normally Q4_0) and use candle's quantised matmul.
    Stored,
}

impl std::str::FromStr for WeightFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" => Self::F32,
            "f32_candle" | "f32-candle" | "candle" => Self::F32Candle,
            "f16" => Self::F16,
            "q8_0" | "q8" => Self::Q8_0,
            "stored" | "q4_0" | "q4" | "raw" => Self::Stored,
            _ => bail!("unknown weight format {s:?} (f32, f32_candle, f16, q8_0, stored)"),
        })
    }
}

/// `y = x W^T + b` with `W` `[out, in]`.
pub struct Linear {
    weight: QMatMul,
    bias: Tensor,
}

impl Linear {
    pub fn load(f: &ModelFile, prefix: &str, fmt: WeightFormat) -> Result<Self> {
        let w = f.tensor(&format!("{prefix}.weight"))?;
        let weight = convert(w, fmt)?;
        let bias = f.tensor(&format!("{prefix}.bias"))?.dequantize(&Device::Cpu)?;
        Ok(Self { weight, bias })
    }

    /// One linear layer over several stacked ones (e.g. query, key and value:
    /// `[3h, h]`), so the input is read by one larger matrix product. The
    /// stored blocks are concatenated row-wise, unchanged.
    pub fn load_stacked(f: &ModelFile, prefixes: &[String], fmt: WeightFormat) -> Result<Self> {
        let ws: Vec<&QTensor> = prefixes.iter().map(|p| f.tensor(&format!("{p}.weight"))).collect::<Result<_>>()?;
        let dtype = ws[0].dtype();
        let (_, inp) = ws[0].shape().dims2()?;
        let mut bytes = Vec::new();
        let mut rows = 0;
        for w in &ws {
            let (o, i) = w.shape().dims2()?;
            if w.dtype() != dtype || i != inp {
                bail!("cannot stack {prefixes:?}: different types or input sizes");
            }
            bytes.extend_from_slice(&w.data()?);
            rows += o;
        }
        let stacked = super::format::raw_qtensor(&bytes, dtype, &[rows, inp])?;
        let biases: Vec<Tensor> = prefixes
            .iter()
            .map(|p| Ok(f.tensor(&format!("{p}.bias"))?.dequantize(&Device::Cpu)?))
            .collect::<Result<_>>()?;
        Ok(Self { weight: convert(&stacked, fmt)?, bias: Tensor::cat(&biases, 0)? })
    }

    /// `x`: `[n, in]` (2-D, contiguous).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            QMatMul::Tensor(wt) => x.matmul(wt)?,
            QMatMul::TensorF16(wt) => x.to_dtype(DType::F16)?.matmul(wt)?.to_dtype(DType::F32)?,
            q => q.forward(x)?,
        };
        Ok(y.broadcast_add(&self.bias)?)
    }
}

fn convert(w: &QTensor, fmt: WeightFormat) -> Result<QMatMul> {
    let dev = Device::Cpu;
    Ok(match (fmt, w.dtype()) {
        // Stored transposed (`[in, out]`, contiguous): gemm packs it faster.
        (_, GgmlDType::F32) | (WeightFormat::F32 | WeightFormat::F32Candle, _) => {
            QMatMul::Tensor(w.dequantize(&dev)?.t()?.contiguous()?)
        }
        (WeightFormat::F16, _) => QMatMul::TensorF16(w.dequantize_f16(&dev)?.t()?.contiguous()?),
        (WeightFormat::Q8_0, GgmlDType::Q8_0) | (WeightFormat::Stored, _) => {
            // Raw blocks; copy through `QStorage` so we do not rely on env switches.
            QMatMul::QTensor(Arc::new(clone_qtensor(w)?))
        }
        (WeightFormat::Q8_0, _) => {
            QMatMul::QTensor(Arc::new(QTensor::quantize(&w.dequantize(&dev)?, GgmlDType::Q8_0)?))
        }
    })
}

fn clone_qtensor(w: &QTensor) -> Result<QTensor> {
    super::format::raw_qtensor(&w.data()?, w.dtype(), w.shape().dims())
}

pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(f: &ModelFile, prefix: &str, eps: f64) -> Result<Self> {
        let weight = f.tensor(&format!("{prefix}.weight"))?.dequantize(&Device::Cpu)?;
        let bias = f.tensor(&format!("{prefix}.bias"))?.dequantize(&Device::Cpu)?;
        Ok(Self { weight, bias, eps: eps as f32 })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)?)
    }
}

pub struct BertEmbeddings {
    word_embeddings: QTensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    layer_norm: LayerNorm,
}

impl BertEmbeddings {
    pub fn load(f: &ModelFile, c: &BertConfig) -> Result<Self> {
        let word_embeddings = clone_qtensor(f.tensor("embeddings.word_embeddings.weight")?)?;
        let (v, h) = word_embeddings.shape().dims2()?;
        if v != c.vocab_size || h != c.hidden_size {
            bail!("word embeddings are [{v},{h}], config says [{},{}]", c.vocab_size, c.hidden_size);
        }
        Ok(Self {
            word_embeddings,
            position_embeddings: f.tensor("embeddings.position_embeddings.weight")?.dequantize(&Device::Cpu)?,
            token_type_embeddings: f.tensor("embeddings.token_type_embeddings.weight")?.dequantize(&Device::Cpu)?,
            layer_norm: LayerNorm::load(f, "embeddings.LayerNorm", c.layer_norm_eps)?,
        })
    }

    /// `ids`: `[b, l]` u32 → `[b*l, h]`. Positions start at 0 (BERT-style,
    /// as in multilingual-e5-small); token type 0.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let words = self.word_embeddings.embedding(&ids.flatten_all()?)?; // [b*l, h]
        let h = words.dim(1)?;
        let pos = self.position_embeddings.narrow(0, 0, l)?; // [l, h]
        let tt = self.token_type_embeddings.narrow(0, 0, 1)?; // [1, h]
        let x = words.reshape((b, l, h))?.broadcast_add(&pos.broadcast_add(&tt)?)?;
        self.layer_norm.forward(&x.reshape((b * l, h))?)
    }
}

pub struct BertSelfAttention {
    /// `query`, `key` and `value` stacked: `[3h, h]`.
    query_key_value: Linear,
    num_heads: usize,
    head_dim: usize,
}

pub struct BertAttention {
    self_attention: BertSelfAttention,
    output_dense: Linear,
    output_layer_norm: LayerNorm,
}

pub struct BertLayer {
    attention: BertAttention,
    intermediate_dense: Linear,
    output_dense: Linear,
    output_layer_norm: LayerNorm,
}

impl BertLayer {
    pub fn load(f: &ModelFile, c: &BertConfig, i: usize, fmt: WeightFormat) -> Result<Self> {
        let p = format!("encoder.layer.{i}");
        Ok(Self {
            attention: BertAttention {
                self_attention: BertSelfAttention {
                    query_key_value: Linear::load_stacked(
                        f,
                        &["query", "key", "value"].map(|n| format!("{p}.attention.self.{n}")),
                        fmt,
                    )?,
                    num_heads: c.num_attention_heads,
                    head_dim: c.hidden_size / c.num_attention_heads,
                },
                output_dense: Linear::load(f, &format!("{p}.attention.output.dense"), fmt)?,
                output_layer_norm: LayerNorm::load(f, &format!("{p}.attention.output.LayerNorm"), c.layer_norm_eps)?,
            },
            intermediate_dense: Linear::load(f, &format!("{p}.intermediate.dense"), fmt)?,
            output_dense: Linear::load(f, &format!("{p}.output.dense"), fmt)?,
            output_layer_norm: LayerNorm::load(f, &format!("{p}.output.LayerNorm"), c.layer_norm_eps)?,
        })
    }

    /// `x`: `[b*l, h]`; `mask`: additive `[b, 1, 1, l]` (0 or -inf-ish), or
    /// `None` when no sequence is padded.
    pub fn forward(&self, x: &Tensor, b: usize, l: usize, mask: Option<&Tensor>) -> Result<Tensor> {
        let sa = &self.attention.self_attention;
        let (nh, hd) = (sa.num_heads, sa.head_dim);
        let h = nh * hd;
        let qkv = sa.query_key_value.forward(x)?; // [b*l, 3h]
        let split = |i: usize| -> Result<Tensor> {
            // [b, nh, l, hd]
            Ok(qkv.narrow(1, i * h, h)?.reshape((b, l, nh, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let scale = 1.0 / (hd as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?; // [b, nh, l, l]
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b * l, nh * hd))?;
        let attn = self.attention.output_dense.forward(&ctx)?;
        let x = self.attention.output_layer_norm.forward(&(attn + x)?)?;
        let mid = self.intermediate_dense.forward(&x)?.apply_op1_no_bwd(&GeluErf)?;
        let out = self.output_dense.forward(&mid)?;
        self.output_layer_norm.forward(&(out + x)?)
    }
}

pub struct BertModel {
    pub config: BertConfig,
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
}

impl BertModel {
    pub fn load(f: &ModelFile, fmt: WeightFormat) -> Result<Self> {
        let config = f.config()?;
        if config.hidden_size % config.num_attention_heads != 0 {
            bail!("hidden size not divisible by head count");
        }
        let embeddings = BertEmbeddings::load(f, &config)?;
        let layers =
            (0..config.num_hidden_layers).map(|i| BertLayer::load(f, &config, i, fmt)).collect::<Result<Vec<_>>>()?;
        Ok(Self { config, embeddings, layers })
    }

    /// Runs the encoder over `ids` `[b, l]` (u32, right-padded) with
    /// per-row valid lengths `lens`; returns the last hidden states `[b, l, h]`.
    pub fn forward(&self, ids: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        if l > self.config.max_position_embeddings {
            bail!("sequence of {l} tokens exceeds the context length {}", self.config.max_position_embeddings);
        }
        let mask = if lens.iter().all(|&n| n == l) {
            None
        } else {
            let mut m = vec![0f32; b * l];
            for (r, &n) in lens.iter().enumerate() {
                for v in &mut m[r * l + n..(r + 1) * l] {
                    *v = f32::NEG_INFINITY;
                }
            }
            Some(Tensor::from_vec(m, (b, 1, 1, l), ids.device())?)
        };
        let mut x = self.embeddings.forward(ids)?;
        for layer in &self.layers {
            x = layer.forward(&x, b, l, mask.as_ref())?;
        }
        let h = x.dim(D::Minus1)?;
        Ok(x.reshape((b, l, h))?)
    }
}

/// Exact (erf) GELU on candle tensors: the kernels' scalar [`gelu`] (erf from
/// Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7). candle's `gelu_erf` calls the `libm`
/// crate's scalar `erff`, which took ~15% of the encoder's time.
struct GeluErf;

pub use super::kernels::gelu;

impl candle_core::CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "kesu-gelu-erf"
    }
    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let data = s.as_slice::<f32>()?;
        let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("gelu: input not contiguous") };
        let out: Vec<f32> = data[a..b].iter().map(|&x| gelu(x)).collect();
        Ok((candle_core::CpuStorage::F32(out), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gelu_matches_exact_erf() {
        for i in -800..=800 {
            let x = i as f64 / 100.0;
            let exact = 0.5 * x * (1.0 + crate::model::kernels::erf_series(x / std::f64::consts::SQRT_2));
            let got = super::gelu(x as f32) as f64;
            assert!((got - exact).abs() < 2e-6 * (1.0 + x.abs()), "x={x}: {got} vs {exact}");
        }
    }
}
