//! The one place that turns a text into a result: flags, optional
//! segmentation, the model's category and escalation, and triage.
//!
//! [`Pipeline`] is built once at start-up from [`PipelineOptions`] and shared
//! (`Send + Sync`). Its methods are synchronous and CPU-bound: the HTTP layer
//! calls them on a blocking pool, never on an async worker.
//!
//! The word lists and triage rules ([`WordLists`]) sit behind one atomically
//! swapped snapshot: each call takes the snapshot once at its start and uses
//! it to the end, so [`Pipeline::reload`] never changes a request in flight.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::flags::{FlagReport, Flagger};
use crate::lists::{ListError, WordLists};
use crate::model::heads::argmax;
use crate::model::{Classifier, LoadOptions, ModelError, Prediction};
use crate::text::{Segment, Segmenter};
use crate::triage::{ContactStore, Facts, MemoryContacts, StoreOverride, Triage, TriageRules};

/// The category result of one text.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct CategoryResult {
    /// The primary category: the label with the highest score.
    pub label: String,
    /// Probability of each category (softmax; sums to 1).
    pub scores: BTreeMap<String, f32>,
}

/// The escalation result of one text (0 calm … 3 escalating, the label
/// schema's scale). The JSON field is `emotion` because agents read it as the
/// live emotion tag; `level` is the escalation level (docs/architecture.md,
/// "Names": the one place this naming is stated).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Classified {
    pub category: CategoryResult,
    pub emotion: EmotionResult,
    pub flags: FlagReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<Vec<Segment>>,
    pub model: ModelInput,
    /// Priority and route from the triage rules (`lexicons/triage.toml`).
    pub triage: Triage,
    /// Milliseconds spent on this item: its flagging and segmentation plus the
    /// encoder pass of the chunk it was batched in.
    pub took_ms: f64,
    /// The pooled sentence embedding (L2-normalised) the heads read: for the
    /// insights' hot spots. Never serialised.
    #[serde(skip)]
    #[cfg_attr(feature = "schema", schema(ignore))]
    pub embedding: Vec<f32>,
}

/// Pipeline errors.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("no model is loaded")]
    NoModel,
    /// The caller gave up (its request timed out): the work stopped between
    /// encoder chunks and nothing was recorded (no repeat contacts).
    #[error("cancelled: the caller no longer waits for this work")]
    Cancelled,
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A reload that did not happen (the previous lists keep serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    List(#[from] ListError),
    #[error("this pipeline was not loaded from a lexicon folder, so it cannot reload")]
    NoSource,
}

/// One text to classify, with the customer it came from (for repeat-contact triage).
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub text: &'a str,
    pub customer_ref: Option<&'a str>,
    /// Names this contact for the repeat-contact tracker (e.g. a scoped
    /// idempotency key): processed again, it is not counted again.
    pub contact_event: Option<&'a str>,
}

/// What [`Pipeline::load`] loads and how (the `kesu` binary's configuration
/// builds it from `KESU_MODEL`, `KESU_LEXICONS`, `KESU_MODEL_*`, ...).
/// [`Default`] holds the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineOptions {
    /// The model file (one GGUF file: encoder, heads, tokenizer, labels).
    pub model: PathBuf,
    /// Folder with legal_risk.tsv, user_dict.txt and triage.toml.
    pub lexicons: PathBuf,
    /// A non-negated flag hit of at least this severity sets needs_review (1..=3).
    pub review_min_severity: u8,
    /// Tokens per encoder window, specials included (16..=512).
    pub max_tokens: usize,
    /// Windows per text; tokens beyond max_tokens x max_windows are not seen by the model.
    pub max_windows: usize,
    /// Texts per encoder forward pass.
    pub batch_size: usize,
    /// Repeat-contact window: an earlier contact at most this long ago makes a repeat contact.
    pub repeat_window: Duration,
    /// Customers the in-memory repeat-contact tracker remembers (0 = tracking off).
    pub repeat_capacity: usize,
    /// The deprecated `KESU_STORE_*` values that replace the rules file's `[store]`.
    pub store_override: StoreOverride,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            model: PathBuf::from("models/kesu.gguf"),
            lexicons: PathBuf::from("lexicons"),
            review_min_severity: crate::flags::DEFAULT_REVIEW_MIN_SEVERITY,
            max_tokens: LoadOptions::default().max_tokens,
            max_windows: LoadOptions::default().max_windows,
            batch_size: 16,
            repeat_window: Duration::from_secs(86_400),
            repeat_capacity: 100_000,
            store_override: StoreOverride::default(),
        }
    }
}

/// Where [`Pipeline::reload`] reads the lists from, and how.
#[derive(Debug, Clone)]
struct ListSource {
    dir: PathBuf,
    review_min_severity: u8,
    store_override: StoreOverride,
}

impl ListSource {
    fn load(&self) -> Result<WordLists, ListError> {
        let mut lists = WordLists::load(&self.dir, self.review_min_severity)?;
        lists.triage.store = self.store_override.apply(lists.triage.store);
        Ok(lists)
    }
}

/// Word lists and triage rules (one swappable snapshot) + (optional) model + contact store.
pub struct Pipeline {
    lists: ArcSwap<WordLists>,
    contacts: Arc<dyn ContactStore>,
    model: Option<Classifier>,
    batch_size: usize,
    /// Where the lists were loaded from and how, for reloads.
    source: Option<ListSource>,
    reload_lock: Mutex<()>,
}

impl Pipeline {
    /// Load the word lists and, when `with_model`, the model file.
    pub fn load(res: &PipelineOptions, with_model: bool) -> anyhow::Result<Pipeline> {
        let source = ListSource {
            dir: res.lexicons.clone(),
            review_min_severity: res.review_min_severity,
            store_override: res.store_override,
        };
        let lists = source.load()?;
        let contacts = Arc::new(MemoryContacts::new(res.repeat_capacity, res.repeat_window));
        let model = if with_model {
            let opts =
                LoadOptions { max_tokens: res.max_tokens, max_windows: res.max_windows, ..LoadOptions::default() };
            Some(Classifier::load(&res.model, &opts)?)
        } else {
            None
        };
        Ok(Pipeline {
            lists: ArcSwap::from_pointee(lists),
            contacts,
            model,
            batch_size: res.batch_size.max(1),
            source: Some(source),
            reload_lock: Mutex::new(()),
        })
    }

    /// Assemble from parts (tests, embedding): no triage rules (everything P4
    /// `standard`, see [`Pipeline::with_triage`]), no reloads, a default contact store.
    pub fn from_parts(
        segmenter: Segmenter,
        flagger: Flagger,
        model: Option<Classifier>,
        batch_size: usize,
    ) -> Pipeline {
        Pipeline {
            lists: ArcSwap::from_pointee(WordLists::from_parts(flagger, segmenter, TriageRules::default())),
            contacts: {
                let d = PipelineOptions::default();
                Arc::new(MemoryContacts::new(d.repeat_capacity, d.repeat_window))
            },
            model,
            batch_size: batch_size.max(1),
            source: None,
            reload_lock: Mutex::new(()),
        }
    }

    /// Replace the triage rules (embedding, tests).
    ///
    /// # Panics
    /// When a snapshot taken with [`Pipeline::lists`] is still alive.
    pub fn with_triage(self, rules: TriageRules) -> Pipeline {
        let Pipeline { lists, contacts, model, batch_size, source, reload_lock } = self;
        let Ok(lists) = Arc::try_unwrap(lists.into_inner()) else {
            panic!("Pipeline::with_triage: a snapshot from Pipeline::lists() is still alive")
        };
        Pipeline {
            lists: ArcSwap::from_pointee(WordLists { triage: rules, ..lists }),
            contacts,
            model,
            batch_size,
            source,
            reload_lock,
        }
    }

    /// Replace the repeat-contact store (e.g. a database-backed one).
    pub fn with_contacts(mut self, store: Arc<dyn ContactStore>) -> Pipeline {
        self.contacts = store;
        self
    }

    pub fn model(&self) -> Option<&Classifier> {
        self.model.as_ref()
    }

    /// The current word lists and rules (a snapshot: unaffected by later reloads).
    pub fn lists(&self) -> Arc<WordLists> {
        self.lists.load_full()
    }

    pub fn contacts(&self) -> &dyn ContactStore {
        &*self.contacts
    }

    /// Re-read the lexicon folder's three files and swap them in together;
    /// on any error nothing changes. Reloads run one at a time.
    pub fn reload(&self) -> Result<Arc<WordLists>, ReloadError> {
        let source = self.source.as_ref().ok_or(ReloadError::NoSource)?;
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut lists = source.load()?;
        lists.generation = self.lists.load().generation + 1;
        let lists = Arc::new(lists);
        self.lists.store(Arc::clone(&lists));
        Ok(lists)
    }

    /// Flags of one text.
    pub fn flags(&self, text: &str) -> FlagReport {
        self.lists.load().flagger.scan(text)
    }

    /// Segmentation of one text.
    pub fn segment(&self, text: &str) -> Vec<Segment> {
        self.lists.load().segmenter.segment(text)
    }

    /// Classify `texts` (no customer references): see [`Pipeline::classify_items`].
    pub fn classify(&self, texts: &[&str], with_segments: bool) -> Result<Vec<Classified>, PipelineError> {
        let items: Vec<Input> =
            texts.iter().map(|&text| Input { text, customer_ref: None, contact_event: None }).collect();
        self.classify_items(&items, with_segments)
    }

    /// Classify `items`: exactly one result per item, in input order.
    ///
    /// Texts are sorted by length and run through the encoder in chunks of
    /// `model_batch_size` (the packed encoder does not pad at all; the candle
    /// formats pad only to the longest text of the chunk). Contacts are recorded in input order (a `customer_ref`
    /// twice in one batch: the second is a repeat).
    pub fn classify_items(&self, items: &[Input<'_>], with_segments: bool) -> Result<Vec<Classified>, PipelineError> {
        self.classify_items_until(items, with_segments, &AtomicBool::new(false))
    }

    /// [`Pipeline::classify_items`] that stops with [`PipelineError::Cancelled`]
    /// as soon as `cancelled` is set: it is checked before each encoder chunk
    /// (at most `batch_size` texts) and before anything is recorded, so a
    /// cancelled call holds the CPU for at most one chunk more and changes no state.
    pub fn classify_items_until(
        &self,
        items: &[Input<'_>],
        with_segments: bool,
        cancelled: &AtomicBool,
    ) -> Result<Vec<Classified>, PipelineError> {
        let is_cancelled = || cancelled.load(std::sync::atomic::Ordering::Relaxed);
        if is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
        let lists = self.lists.load_full();
        let texts: Vec<&str> = items.iter().map(|i| i.text).collect();
        let model = self.model.as_ref().ok_or(PipelineError::NoModel)?;
        let info = model.info();
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        // Flags first: the escalation head may read them.
        let t_flags = Instant::now();
        let mut reports: Vec<Option<FlagReport>> = texts.iter().map(|t| Some(lists.flagger.scan(t))).collect();
        let flag_ms = t_flags.elapsed().as_secs_f64() * 1e3 / texts.len().max(1) as f64;
        let mut preds: Vec<Option<(Prediction, f64)>> = vec![None; texts.len()];
        for chunk in order.chunks(self.batch_size) {
            if is_cancelled() {
                return Err(PipelineError::Cancelled);
            }
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let flags: Vec<&FlagReport> = chunk.iter().map(|&i| reports[i].as_ref().expect("scanned")).collect();
            let t0 = Instant::now();
            let out = model.predict_with_flags(&batch, Some(&flags))?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if out.len() != batch.len() {
                return Err(ModelError::Inference(format!(
                    "model returned {} predictions for {} texts",
                    out.len(),
                    batch.len()
                ))
                .into());
            }
            for (&i, p) in chunk.iter().zip(out) {
                preds[i] = Some((p, ms));
            }
        }
        if is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
        let mut results = Vec::with_capacity(texts.len());
        for ((item, pred), report) in items.iter().zip(preds).zip(reports.iter_mut()) {
            let (p, model_ms) = pred.expect("every index is in exactly one chunk");
            let t0 = Instant::now();
            let flags = report.take().expect("scanned");
            let segments = with_segments.then(|| lists.segmenter.segment(item.text));
            let category = category_result(&info.category_labels, &p.category);
            let emotion = emotion_result(&info.escalation_labels, &p.escalation);
            let prior_contacts =
                item.customer_ref.and_then(|c| match self.contacts.record(c, SystemTime::now(), item.contact_event) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        tracing::warn!(error = %e, "repeat-contact lookup failed; triaged without it");
                        None
                    }
                });
            let facts = Facts {
                flags: &flags,
                category: &category.label,
                escalation: emotion.level,
                prior_contacts,
                repeat_window: self.contacts.window(),
            };
            let triage = lists.triage.evaluate(&facts);
            let own_ms = t0.elapsed().as_secs_f64() * 1e3;
            results.push(Classified {
                category,
                emotion,
                flags,
                segments,
                model: ModelInput {
                    model_version: info.version.clone(),
                    tokens: p.tokens,
                    windows: p.windows,
                    truncated: p.truncated,
                },
                triage,
                took_ms: own_ms + model_ms + flag_ms,
                embedding: p.embedding,
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
    fn cancelled_work_stops_and_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny.gguf");
        crate::model::testing::write_tiny_model(&model, 7).unwrap();
        let opts = PipelineOptions {
            model,
            lexicons: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../lexicons")),
            batch_size: 1,
            ..PipelineOptions::default()
        };
        let p = Pipeline::load(&opts, true).unwrap();
        let items = [
            Input { text: "退款三天没到账", customer_ref: Some("c1"), contact_event: None },
            Input { text: "我要起诉", customer_ref: Some("c2"), contact_event: None },
        ];
        let cancelled = AtomicBool::new(true);
        assert!(matches!(p.classify_items_until(&items, false, &cancelled), Err(PipelineError::Cancelled)));
        assert_eq!(p.contacts().tracked(), 0, "a cancelled call records no contacts");
        let live = AtomicBool::new(false);
        assert_eq!(p.classify_items_until(&items, false, &live).unwrap().len(), 2);
        assert_eq!(p.contacts().tracked(), 2);
    }

    #[test]
    fn category_picks_the_top_label() {
        let labels: Vec<String> = ["product", "service", "information_security"].map(String::from).to_vec();
        let c = category_result(&labels, &[0.2, 0.7, 0.1]);
        assert_eq!(c.label, "service");
        assert_eq!(c.scores.len(), 3);
    }
}
