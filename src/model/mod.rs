//! The classifier model: a quantised BERT encoder (multilingual-e5-small) with
//! a `category` head and an ordinal `escalation` head, stored as ONE GGUF file
//! that also carries the tokenizer, the label names and metadata.
//!
//! The pipeline (`crate::pipeline`) only uses [`Classifier`], [`Prediction`]
//! and [`ModelInfo`]; everything else in this folder is the model's own business.
//!
//! CONTRACT (placeholder until the encoder lands; see issue 3): the signatures
//! below are what the service depends on.

use std::path::Path;

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
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { max_tokens: 512, max_windows: 4 }
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
}

/// A loaded model, shareable across threads.
pub struct Classifier {
    info: ModelInfo,
}

impl Classifier {
    pub fn load(path: &Path, _opts: &LoadOptions) -> Result<Self, ModelError> {
        Err(ModelError::Load { path: path.display().to_string(), message: "not implemented yet".into() })
    }
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }
    /// Classify a batch; one prediction per input, in input order.
    pub fn predict(&self, _texts: &[&str]) -> Result<Vec<Prediction>, ModelError> {
        Err(ModelError::Inference("not implemented yet".into()))
    }
}
