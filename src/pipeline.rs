//! The one place that turns a text into a result: flags, optional
//! segmentation, and the model's category and escalation.
//!
//! [`Pipeline`] is built once at start-up from [`Resources`] and shared
//! (`Send + Sync`). Its methods are synchronous and CPU-bound: the HTTP layer
//! calls them on a blocking pool, never on an async worker.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::config::Resources;
use crate::flags::{FlagReport, Flagger};
use crate::model::heads::argmax;
use crate::model::{Classifier, LoadOptions, ModelError, Prediction};
use crate::text::{Segment, Segmenter};

/// The category result of one text.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CategoryResult {
    /// The primary category: the label with the highest score.
    pub label: String,
    /// Probability of each category (softmax; sums to 1).
    pub scores: BTreeMap<String, f32>,
}

/// The emotion / escalation result of one text.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EmotionResult {
    /// 0 calm, 1 dissatisfied, 2 angry, 3 escalating (the most probable level).
    pub level: u8,
    /// The level's tag (`calm`, `dissatisfied`, `angry`, `escalating`).
    pub tag: String,
    /// Probability of each level, indexed by level.
    pub probabilities: Vec<f32>,
    /// Expected level divided by 3: 0 = surely calm, 1 = surely escalating.
    pub escalation_score: f32,
}

/// What the model saw of the text.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelInput {
    pub model_version: String,
    /// Tokens the text produced.
    pub tokens: usize,
    /// Encoder windows the text was split into (texts longer than one window
    /// are read window by window and pooled together).
    pub windows: usize,
    /// True when the text was longer than max_tokens x max_windows and its tail
    /// was not seen by the model (the flagger always scans the full text).
    pub truncated: bool,
}

/// One classified text.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Classified {
    pub category: CategoryResult,
    pub emotion: EmotionResult,
    pub flags: FlagReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<Vec<Segment>>,
    pub model: ModelInput,
    /// Milliseconds spent on this item: its flagging and segmentation plus the
    /// encoder pass of the chunk it was batched in.
    pub took_ms: f64,
}

/// Pipeline errors.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("no model is loaded")]
    NoModel,
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Segmenter + flagger + (optional) model.
pub struct Pipeline {
    segmenter: Segmenter,
    flagger: Flagger,
    model: Option<Classifier>,
    batch_size: usize,
}

impl Pipeline {
    /// Load the word lists and, when `with_model`, the model file.
    pub fn load(res: &Resources, with_model: bool) -> anyhow::Result<Pipeline> {
        let segmenter = Segmenter::load(&res.user_dict_path())?;
        let flagger = Flagger::load(&res.legal_risk_path(), res.review_min_severity).map_err(anyhow::Error::msg)?;
        let model = if with_model {
            let opts = LoadOptions { max_tokens: res.model_max_tokens as usize, max_windows: res.model_max_windows as usize, ..LoadOptions::default() };
            Some(Classifier::load(&res.model, &opts)?)
        } else {
            None
        };
        Ok(Pipeline { segmenter, flagger, model, batch_size: res.model_batch_size.max(1) as usize })
    }

    /// Assemble from parts (tests, embedding).
    pub fn from_parts(segmenter: Segmenter, flagger: Flagger, model: Option<Classifier>, batch_size: usize) -> Pipeline {
        Pipeline { segmenter, flagger, model, batch_size: batch_size.max(1) }
    }

    pub fn model(&self) -> Option<&Classifier> {
        self.model.as_ref()
    }
    pub fn flagger(&self) -> &Flagger {
        &self.flagger
    }
    pub fn segmenter(&self) -> &Segmenter {
        &self.segmenter
    }

    /// Flags of one text.
    pub fn flags(&self, text: &str) -> FlagReport {
        self.flagger.scan(text)
    }

    /// Segmentation of one text.
    pub fn segment(&self, text: &str) -> Vec<Segment> {
        self.segmenter.segment(text)
    }

    /// Classify `texts`: exactly one result per text, in input order.
    ///
    /// Texts are sorted by length and run through the encoder in chunks of
    /// `model_batch_size`, so each forward pass pads only to the longest text
    /// of its chunk.
    pub fn classify(&self, texts: &[&str], with_segments: bool) -> Result<Vec<Classified>, PipelineError> {
        let model = self.model.as_ref().ok_or(PipelineError::NoModel)?;
        let info = model.info();
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut preds: Vec<Option<(Prediction, f64)>> = vec![None; texts.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let t0 = Instant::now();
            let out = model.predict(&batch)?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if out.len() != batch.len() {
                return Err(ModelError::Inference(format!("model returned {} predictions for {} texts", out.len(), batch.len())).into());
            }
            for (&i, p) in chunk.iter().zip(out) {
                preds[i] = Some((p, ms));
            }
        }
        let mut results = Vec::with_capacity(texts.len());
        for (text, pred) in texts.iter().zip(preds) {
            let (p, model_ms) = pred.expect("every index is in exactly one chunk");
            let t0 = Instant::now();
            let flags = self.flagger.scan(text);
            let segments = with_segments.then(|| self.segmenter.segment(text));
            let own_ms = t0.elapsed().as_secs_f64() * 1e3;
            results.push(Classified {
                category: category_result(&info.category_labels, &p.category),
                emotion: emotion_result(&info.escalation_labels, &p.escalation),
                flags,
                segments,
                model: ModelInput { model_version: info.version.clone(), tokens: p.tokens, windows: p.windows, truncated: p.truncated },
                took_ms: own_ms + model_ms,
            });
        }
        Ok(results)
    }
}

fn category_result(labels: &[String], probs: &[f32]) -> CategoryResult {
    let best = argmax(probs);
    CategoryResult {
        label: labels.get(best).cloned().unwrap_or_default(),
        scores: labels.iter().cloned().zip(probs.iter().copied()).collect(),
    }
}

fn emotion_result(labels: &[String], probs: &[f32]) -> EmotionResult {
    let level = argmax(probs);
    let top = (probs.len().max(2) - 1) as f32;
    let expected: f32 = probs.iter().enumerate().map(|(i, p)| i as f32 * p).sum();
    EmotionResult {
        level: level as u8,
        tag: labels.get(level).cloned().unwrap_or_default(),
        probabilities: probs.to_vec(),
        escalation_score: (expected / top).clamp(0.0, 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emotion_score_is_expected_level_over_three() {
        let labels: Vec<String> = ["calm", "dissatisfied", "angry", "escalating"].map(String::from).to_vec();
        let e = emotion_result(&labels, &[0.0, 0.0, 0.5, 0.5]);
        assert_eq!((e.level, e.tag.as_str()), (2, "angry"));
        assert!((e.escalation_score - 2.5 / 3.0).abs() < 1e-6);
        assert_eq!(emotion_result(&labels, &[1.0, 0.0, 0.0, 0.0]).escalation_score, 0.0);
        assert_eq!(emotion_result(&labels, &[0.0, 0.0, 0.0, 1.0]).escalation_score, 1.0);
    }

    #[test]
    fn category_picks_the_top_label() {
        let labels: Vec<String> = ["product", "service", "information_security"].map(String::from).to_vec();
        let c = category_result(&labels, &[0.2, 0.7, 0.1]);
        assert_eq!(c.label, "service");
        assert_eq!(c.scores.len(), 3);
    }
}
