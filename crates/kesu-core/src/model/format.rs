//! The kesu model file: ONE GGUF file (read and written with
//! `candle_core::quantized::gguf_file`) holding
//!
//! * the BERT encoder weights, named as in the Hugging Face checkpoint
//!   (`embeddings.word_embeddings.weight`, `encoder.layer.{i}.attention.self.query.weight`, ...);
//!   large matrices are usually ggml `Q4_0`, vectors `F32`;
//! * the heads `heads.category.{weight,bias}` `[3,H]`/`[3]` and
//!   `heads.escalation.{weight,bias}` `[4,H]`/`[4]` (F32); a head with a
//!   hidden ReLU layer of `U` units also has `heads.{name}.hidden.{weight,bias}`
//!   `[U,H]`/`[U]`, and its output layer is then `[labels,U]`; a head with
//!   an n-gram part also has `heads.{name}.ngram.{weight,bias,alpha}`
//!   (`[labels,D]` F16 over `D` hashed character-n-gram buckets, `[labels]`,
//!   `[1]`; see `super::ngrams`);
//! * metadata: `general.architecture = "bert"`, `bert.*` hyper-parameters,
//!   `kesu.model_version`, `kesu.labels.category`, `kesu.labels.escalation`,
//!   `kesu.input_prefix`, `kesu.pooling`, `kesu.metadata` (JSON string) and
//!   `kesu.tokenizer.json` (a Hugging Face `tokenizer.json`, Unigram).

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Seek, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};

use super::bert::BertConfig;
pub use super::ngrams::NgramWeights;

pub const ARCH: &str = "bert";
pub const KEY_VERSION: &str = "kesu.model_version";
pub const KEY_LABELS_CATEGORY: &str = "kesu.labels.category";
pub const KEY_LABELS_ESCALATION: &str = "kesu.labels.escalation";
pub const KEY_PREFIX: &str = "kesu.input_prefix";
pub const KEY_POOLING: &str = "kesu.pooling";
pub const KEY_METADATA: &str = "kesu.metadata";
pub const KEY_TOKENIZER: &str = "kesu.tokenizer.json";
pub const KEY_FORMAT: &str = "kesu.format_version";
/// What the escalation head reads: absent = the embedding only;
/// [`crate::flags::features::FLAG_FEATURES_V1`] = the embedding followed by the
/// flagger's features ([`crate::flags::features::features`]).
pub const KEY_ESCALATION_INPUTS: &str = "kesu.escalation.inputs";
/// Pooling recipe understood by this code: mean over all (non-padding) token
/// states of all windows, then L2 normalisation; the heads read that vector.
pub const POOLING_MEAN_L2: &str = "mean_l2";
pub const FORMAT_VERSION: u32 = 1;

pub const CATEGORY_LABELS: [&str; 3] = ["product", "service", "information_security"];
pub const ESCALATION_LABELS: [&str; 4] = ["calm", "dissatisfied", "angry", "escalating"];
pub const DEFAULT_PREFIX: &str = "query: ";

/// Head weights (row-major `[labels, hidden]`, or `[labels, units]` after
/// an optional hidden ReLU layer `[units, hidden]`).
#[derive(Debug, Clone, PartialEq)]
pub struct HeadWeights {
    pub category_weight: Vec<f32>,
    pub category_bias: Vec<f32>,
    pub escalation_weight: Vec<f32>,
    pub escalation_bias: Vec<f32>,
    /// Hidden layer (weight `[units, hidden]`, bias `[units]`) of the category head.
    pub category_hidden: Option<(Vec<f32>, Vec<f32>)>,
    pub escalation_hidden: Option<(Vec<f32>, Vec<f32>)>,
    /// Character-n-gram part of the category head (fused with it; see `super::ngrams`).
    pub category_ngram: Option<NgramWeights>,
    pub escalation_ngram: Option<NgramWeights>,
    /// The escalation head reads `[embedding ‖ flag features]`
    /// ([`crate::flags::features::FLAG_FEATURES`] more inputs).
    pub escalation_flags: bool,
}

impl HeadWeights {
    pub fn zeros(hidden: usize) -> Self {
        Self {
            category_weight: vec![0.0; CATEGORY_LABELS.len() * hidden],
            category_bias: vec![0.0; CATEGORY_LABELS.len()],
            escalation_weight: vec![0.0; ESCALATION_LABELS.len() * hidden],
            escalation_bias: vec![0.0; ESCALATION_LABELS.len()],
            category_hidden: None,
            escalation_hidden: None,
            category_ngram: None,
            escalation_ngram: None,
            escalation_flags: false,
        }
    }

    /// Inputs of the escalation head for an encoder of `hidden` size.
    pub fn escalation_inputs(&self, hidden: usize) -> usize {
        hidden + if self.escalation_flags { crate::flags::features::FLAG_FEATURES } else { 0 }
    }

    /// Checks the shapes against the encoder's `hidden` size and label counts.
    pub fn check(&self, hidden: usize, n_category: usize, n_escalation: usize) -> Result<()> {
        for (name, w, b, hid, n, hidden) in [
            ("category", &self.category_weight, &self.category_bias, &self.category_hidden, n_category, hidden),
            (
                "escalation",
                &self.escalation_weight,
                &self.escalation_bias,
                &self.escalation_hidden,
                n_escalation,
                self.escalation_inputs(hidden),
            ),
        ] {
            let inp = match hid {
                Some((hw, hb)) => {
                    if hb.is_empty() || hw.len() != hb.len() * hidden {
                        bail!(
                            "{name} head: hidden layer has {} weights for {} units, hidden size {hidden}",
                            hw.len(),
                            hb.len()
                        );
                    }
                    hb.len()
                }
                None => hidden,
            };
            if b.len() != n || w.len() != n * inp {
                bail!("{name} head: {} weights and {} biases, expected {n}x{inp} and {n}", w.len(), b.len());
            }
        }
        for (name, ng, n) in
            [("category", &self.category_ngram, n_category), ("escalation", &self.escalation_ngram, n_escalation)]
        {
            if let Some(g) = ng {
                if g.dim == 0 || g.bias.len() != n || g.weight.len() != n * g.dim || !g.alpha.is_finite() {
                    bail!(
                        "{name} head: n-gram part has {} weights and {} biases for {} buckets, expected {n} labels",
                        g.weight.len(),
                        g.bias.len(),
                        g.dim
                    );
                }
            }
        }
        Ok(())
    }

    /// The head tensors as stored (F32).
    pub fn tensors(&self, n_category: usize, n_escalation: usize) -> Result<Vec<(String, QTensor)>> {
        let mut out = Vec::new();
        for (name, w, b, hid, n) in [
            ("category", &self.category_weight, &self.category_bias, &self.category_hidden, n_category),
            ("escalation", &self.escalation_weight, &self.escalation_bias, &self.escalation_hidden, n_escalation),
        ] {
            if let Some((hw, hb)) = hid {
                out.push((
                    format!("heads.{name}.hidden.weight"),
                    f32_qtensor(hw.clone(), &[hb.len(), hw.len() / hb.len()])?,
                ));
                out.push((format!("heads.{name}.hidden.bias"), f32_qtensor(hb.clone(), &[hb.len()])?));
            }
            out.push((format!("heads.{name}.weight"), f32_qtensor(w.clone(), &[n, w.len() / n.max(1)])?));
            out.push((format!("heads.{name}.bias"), f32_qtensor(b.clone(), &[n])?));
        }
        for (name, ng) in [("category", &self.category_ngram), ("escalation", &self.escalation_ngram)] {
            if let Some(g) = ng {
                let n = g.bias.len();
                let t = Tensor::from_vec(g.weight.clone(), (n, g.dim), &Device::Cpu)?;
                out.push((format!("heads.{name}.ngram.weight"), QTensor::quantize(&t, GgmlDType::F16)?));
                out.push((format!("heads.{name}.ngram.bias"), f32_qtensor(g.bias.clone(), &[n])?));
                out.push((format!("heads.{name}.ngram.alpha"), f32_qtensor(vec![g.alpha], &[1])?));
            }
        }
        Ok(out)
    }
}

/// Everything a model file holds, in memory.
pub struct ModelParts {
    pub config: BertConfig,
    /// Encoder tensors by HF name (shape `[out, in]` for matrices).
    pub encoder: Vec<(String, QTensor)>,
    pub heads: HeadWeights,
    pub category_labels: Vec<String>,
    pub escalation_labels: Vec<String>,
    pub version: String,
    pub input_prefix: String,
    pub metadata: serde_json::Value,
    pub tokenizer_json: String,
}

pub fn f32_qtensor(data: Vec<f32>, shape: &[usize]) -> Result<QTensor> {
    let t = Tensor::from_vec(data, shape, &Device::Cpu)?;
    Ok(QTensor::quantize(&t, GgmlDType::F32)?)
}

/// A QTensor over raw ggml block bytes (kept bit-exact).
pub fn raw_qtensor(bytes: &[u8], dtype: GgmlDType, shape: &[usize]) -> Result<QTensor> {
    let n: usize = shape.iter().product();
    let expect = n / dtype.block_size() * dtype.type_size();
    if !n.is_multiple_of(dtype.block_size()) || bytes.len() != expect {
        bail!("raw tensor {shape:?} {dtype:?}: {} bytes, expected {expect}", bytes.len());
    }
    let storage = QStorage::from_data(std::borrow::Cow::Borrowed(bytes), &Device::Cpu, dtype)?;
    Ok(QTensor::new(storage, shape)?)
}

fn strings(v: &[String]) -> gguf_file::Value {
    gguf_file::Value::Array(v.iter().map(|s| gguf_file::Value::String(s.clone())).collect())
}

/// Writes `parts` as a GGUF model file (atomically: temp file + rename).
pub fn write_model(path: &Path, parts: &ModelParts) -> Result<()> {
    use gguf_file::Value as V;
    let c = &parts.config;
    let h = c.hidden_size;
    let mut meta: Vec<(&str, V)> = vec![
        ("general.architecture", V::String(ARCH.into())),
        ("general.name", V::String(format!("kesu {}", parts.version))),
        ("bert.vocab_size", V::U32(c.vocab_size as u32)),
        ("bert.context_length", V::U32(c.max_position_embeddings as u32)),
        ("bert.embedding_length", V::U32(h as u32)),
        ("bert.block_count", V::U32(c.num_hidden_layers as u32)),
        ("bert.attention.head_count", V::U32(c.num_attention_heads as u32)),
        ("bert.feed_forward_length", V::U32(c.intermediate_size as u32)),
        ("bert.token_type_count", V::U32(c.type_vocab_size as u32)),
        ("bert.attention.layer_norm_epsilon", V::F32(c.layer_norm_eps as f32)),
        ("bert.pooling_type", V::U32(1)), // llama.cpp: 1 = mean
        (KEY_FORMAT, V::U32(FORMAT_VERSION)),
        (KEY_VERSION, V::String(parts.version.clone())),
        (KEY_LABELS_CATEGORY, strings(&parts.category_labels)),
        (KEY_LABELS_ESCALATION, strings(&parts.escalation_labels)),
        (KEY_PREFIX, V::String(parts.input_prefix.clone())),
        (KEY_POOLING, V::String(POOLING_MEAN_L2.into())),
        (KEY_METADATA, V::String(serde_json::to_string(&parts.metadata)?)),
        (KEY_TOKENIZER, V::String(parts.tokenizer_json.clone())),
    ];
    if parts.heads.escalation_flags {
        meta.push((KEY_ESCALATION_INPUTS, V::String(crate::flags::features::FLAG_FEATURES_V1.into())));
    }
    let nc = parts.category_labels.len();
    let ne = parts.escalation_labels.len();
    parts.heads.check(h, nc, ne)?;
    let heads = parts.heads.tensors(nc, ne)?;
    let meta_refs: Vec<(&str, &V)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> =
        parts.encoder.iter().chain(heads.iter()).map(|(n, t)| (n.as_str(), t)).collect();
    let tmp = path.with_extension("gguf.tmp");
    {
        let f = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        let mut w = BufWriter::new(f);
        gguf_file::write(&mut w, &meta_refs, &tensors)?;
        w.flush()?;
        w.stream_position()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// A parsed model file: metadata plus all tensors (as stored).
pub struct ModelFile {
    pub metadata: HashMap<String, gguf_file::Value>,
    pub tensors: HashMap<String, QTensor>,
    /// Tensor names in file order is not kept by GGUF readers; this is sorted.
    pub names: Vec<String>,
}

impl ModelFile {
    pub fn read(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let content = gguf_file::Content::read(&mut r).map_err(|e| anyhow!("not a GGUF file: {e}"))?;
        let mut names: Vec<String> = content.tensor_infos.keys().cloned().collect();
        names.sort();
        let mut tensors = HashMap::new();
        for n in &names {
            tensors.insert(n.clone(), content.tensor(&mut r, n, &Device::Cpu)?);
        }
        Ok(Self { metadata: content.metadata, tensors, names })
    }

    pub fn get(&self, key: &str) -> Result<&gguf_file::Value> {
        self.metadata.get(key).ok_or_else(|| anyhow!("missing metadata key {key}"))
    }
    pub fn get_u32(&self, key: &str) -> Result<usize> {
        Ok(self.get(key)?.to_u32()? as usize)
    }
    pub fn get_str(&self, key: &str) -> Result<&str> {
        Ok(self.get(key)?.to_string()?.as_str())
    }
    pub fn get_strings(&self, key: &str) -> Result<Vec<String>> {
        self.get(key)?.to_vec()?.iter().map(|v| Ok(v.to_string()?.clone())).collect()
    }
    pub fn tensor(&self, name: &str) -> Result<&QTensor> {
        self.tensors.get(name).ok_or_else(|| anyhow!("missing tensor {name}"))
    }
    pub fn f32_vec(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name)?.dequantize(&Device::Cpu)?;
        Ok(t.flatten_all()?.to_vec1::<f32>()?)
    }

    pub fn config(&self) -> Result<BertConfig> {
        let arch = self.get_str("general.architecture")?;
        if arch != ARCH {
            bail!("architecture {arch:?}, expected {ARCH:?}");
        }
        Ok(BertConfig {
            vocab_size: self.get_u32("bert.vocab_size")?,
            hidden_size: self.get_u32("bert.embedding_length")?,
            num_hidden_layers: self.get_u32("bert.block_count")?,
            num_attention_heads: self.get_u32("bert.attention.head_count")?,
            intermediate_size: self.get_u32("bert.feed_forward_length")?,
            max_position_embeddings: self.get_u32("bert.context_length")?,
            type_vocab_size: self.get_u32("bert.token_type_count")?,
            layer_norm_eps: self.get("bert.attention.layer_norm_epsilon")?.to_f32()? as f64,
        })
    }

    pub fn heads(&self) -> Result<HeadWeights> {
        let hidden = |name: &str| -> Result<Option<(Vec<f32>, Vec<f32>)>> {
            let w = format!("heads.{name}.hidden.weight");
            if !self.tensors.contains_key(&w) {
                return Ok(None);
            }
            Ok(Some((self.f32_vec(&w)?, self.f32_vec(&format!("heads.{name}.hidden.bias"))?)))
        };
        let ngram = |name: &str| -> Result<Option<NgramWeights>> {
            let w = format!("heads.{name}.ngram.weight");
            let Some(t) = self.tensors.get(&w) else { return Ok(None) };
            let dim = *t.shape().dims().last().context("n-gram weight has no shape")?;
            Ok(Some(NgramWeights {
                dim,
                weight: self.f32_vec(&w)?,
                bias: self.f32_vec(&format!("heads.{name}.ngram.bias"))?,
                alpha: *self.f32_vec(&format!("heads.{name}.ngram.alpha"))?.first().context("empty n-gram alpha")?,
            }))
        };
        Ok(HeadWeights {
            category_weight: self.f32_vec("heads.category.weight")?,
            category_bias: self.f32_vec("heads.category.bias")?,
            escalation_weight: self.f32_vec("heads.escalation.weight")?,
            escalation_bias: self.f32_vec("heads.escalation.bias")?,
            category_hidden: hidden("category")?,
            escalation_hidden: hidden("escalation")?,
            category_ngram: ngram("category")?,
            escalation_ngram: ngram("escalation")?,
            escalation_flags: match self.metadata.get(KEY_ESCALATION_INPUTS) {
                None => false,
                Some(v) => match v.to_string()?.as_str() {
                    crate::flags::features::FLAG_FEATURES_V1 => true,
                    other => bail!("unknown escalation inputs {other:?}"),
                },
            },
        })
    }

    /// Reassembles the parts (to rewrite the file with new heads/metadata).
    pub fn into_parts(mut self) -> Result<ModelParts> {
        let config = self.config()?;
        let heads = self.heads()?;
        let metadata = match self.metadata.get(KEY_METADATA) {
            Some(v) => serde_json::from_str(v.to_string()?)?,
            None => serde_json::json!({}),
        };
        let category_labels = self.get_strings(KEY_LABELS_CATEGORY)?;
        let escalation_labels = self.get_strings(KEY_LABELS_ESCALATION)?;
        let version = self.get_str(KEY_VERSION)?.to_string();
        let input_prefix = self.get_str(KEY_PREFIX)?.to_string();
        let tokenizer_json = self.get_str(KEY_TOKENIZER)?.to_string();
        let mut encoder = Vec::new();
        for n in std::mem::take(&mut self.names) {
            if n.starts_with("heads.") {
                continue;
            }
            let t = self.tensors.remove(&n).unwrap();
            encoder.push((n, t));
        }
        Ok(ModelParts {
            config,
            encoder,
            heads,
            category_labels,
            escalation_labels,
            version,
            input_prefix,
            metadata,
            tokenizer_json,
        })
    }
}

/// Rewrites the model at `src` into `dst` with new heads, version and metadata
/// (the encoder weights and the tokenizer are copied unchanged).
pub fn write_model_with_heads(
    src: &Path,
    dst: &Path,
    heads: &HeadWeights,
    version: &str,
    metadata: serde_json::Value,
) -> Result<()> {
    write_model_with(src, dst, heads, Vec::new(), version, metadata)
}

/// Like [`write_model_with_heads`], also replacing encoder tensors: each of
/// `encoder` must have the name and shape of a tensor of the source model
/// (e.g. fine-tuned layers; any ggml type the loader can dequantise).
pub fn write_model_with(
    src: &Path,
    dst: &Path,
    heads: &HeadWeights,
    encoder: Vec<(String, QTensor)>,
    version: &str,
    metadata: serde_json::Value,
) -> Result<()> {
    let mut parts = ModelFile::read(src)?.into_parts()?;
    let h = parts.config.hidden_size;
    heads.check(h, parts.category_labels.len(), parts.escalation_labels.len())?;
    for (name, t) in encoder {
        let slot = parts
            .encoder
            .iter_mut()
            .find(|(n, _)| *n == name)
            .with_context(|| format!("the model has no tensor {name}"))?;
        if slot.1.shape().dims() != t.shape().dims() {
            bail!("{name}: shape {:?}, the model's is {:?}", t.shape().dims(), slot.1.shape().dims());
        }
        slot.1 = t;
    }
    parts.heads = heads.clone();
    parts.version = version.to_string();
    parts.metadata = metadata;
    write_model(dst, &parts)
}
