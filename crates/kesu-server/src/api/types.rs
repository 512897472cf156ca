//! Request and response bodies of the HTTP API (the OpenAPI schemas).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use kesu_core::flags::FlagReport;
use kesu_core::pipeline::Classified;
use kesu_core::text::Segment;

/// A caller's id for an item: a string or an integer, echoed back as given
/// (an integer written as a number with a zero fraction, `7.0`, is the integer `7`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ItemId {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for ItemId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ItemId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an integer (-2^63 to 2^63-1)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ItemId, E> {
                Ok(ItemId::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ItemId, E> {
                i64::try_from(v).map(ItemId::Int).map_err(|_| E::custom(format!("id {v} is over 2^63-1")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ItemId, E> {
                integral(v).map(ItemId::Int).ok_or_else(|| E::custom(format!("id {v} is not an integer")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ItemId, E> {
                Ok(ItemId::Str(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<ItemId, E> {
                Ok(ItemId::Str(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `v` as an i64 when it is a whole number that a double holds exactly
/// (|v| < 2^53; JSON Schema's `integer` includes `7.0`). Beyond 2^53 a
/// written number and its double differ, so it is refused rather than changed.
pub fn integral(v: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    (v.fract() == 0.0 && v.abs() < EXACT).then_some(v as i64)
}

/// Deserialize an optional i64 that may be written `7.0` (serde `deserialize_with`).
pub fn integral_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => n
            .as_i64()
            .or_else(|| n.as_f64().and_then(integral))
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not an integer (-2^63 to 2^63-1)"))),
    }
}

/// One text of a batch.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemIn {
    /// Echoed back; defaults to the item's 0-based position in `items`.
    pub id: Option<ItemId>,
    /// The customer text (non-empty, at most `max_text_chars` chars).
    pub text: String,
    /// Classify only: who sent it (1–256 chars, opaque; e.g. a customer or account
    /// number). The same reference seen again within the repeat window makes a
    /// repeat contact for triage. Never logged; kept in memory only as a hash.
    pub customer_ref: Option<String>,
    /// Classify only: the intake channel (e.g. `app`, `call_centre`, `weibo`); overrides the request's `channel`. Stored with the item.
    pub channel: Option<String>,
    /// Classify only: the caller's key for this item (1-128 printable ASCII
    /// characters, unique per API key). The same key with the same text again
    /// within `KESU_IDEMPOTENCY_WINDOW_SECS` is a retry: it is answered
    /// (`replayed: true`, the first answer's `review_id`) but stores and counts
    /// nothing again; with a different text it is 422 `idempotency_key_reused`.
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]{1,128}$")]
    pub idempotency_key: Option<String>,
    /// Classify only: free tags counted by insights (at most 16; names of
    /// 1-64 ASCII letters, digits, `_`, `-`, `.`; values up to 128 chars).
    /// Only the names in `KESU_INSIGHTS_TAGS` are counted.
    #[serde(default)]
    #[schema(example = json!({"product_line": "credit_card", "region": "shanghai"}))]
    pub tags: std::collections::BTreeMap<String, String>,
    /// Classify only: when the complaint was received (RFC 3339), for
    /// loading history; at most `KESU_MAX_CLOCK_SKEW_SECS` in the future.
    /// Insights count the item at this time (default: now).
    #[schema(example = "2026-12-04T09:30:00+08:00")]
    pub received_at: Option<String>,
}

/// Either one text (`text`, optional `id`) or a batch (`items`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"items": [{"id": "a1", "text": "客服三天不回，再不退款我就去12315投诉"}], "segments": false}))]
pub struct TextsRequest {
    /// One text. Give either `text` or `items`, not both.
    pub text: Option<String>,
    /// With `text`: the caller's id, echoed back.
    pub id: Option<ItemId>,
    /// With `text`, classify only: who sent it (see `items[].customer_ref`).
    pub customer_ref: Option<String>,
    /// With `text`, classify only: see `items[].idempotency_key`.
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]{1,128}$")]
    pub idempotency_key: Option<String>,
    /// Classify only: the intake channel for the text or every item of the batch (1-64 chars), stored with items kept for review.
    pub channel: Option<String>,
    /// With `text`, classify only: see `items[].tags`.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// With `text`, classify only: see `items[].received_at`.
    pub received_at: Option<String>,
    /// A batch of texts (at most `max_items`).
    pub items: Option<Vec<ItemIn>>,
    /// Also return jieba segments of each text (classify only).
    #[serde(default)]
    pub segments: bool,
}

/// One classified item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClassifyItem {
    /// The caller's id (or the item's position); null for a single text without id.
    pub id: Option<ItemId>,
    #[serde(flatten)]
    pub result: Classified,
    /// kesu's id of the stored review item, when this item matched the store rule
    /// (committed before this response was sent); absent when not stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_id: Option<String>,
    /// True when the item's `idempotency_key` was seen before with the same
    /// text: answered again, nothing stored or counted again (`review_id` is
    /// the first answer's). Absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// The answer to a batch classify request: one item per input, in input order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClassifyBatchResponse {
    pub items: Vec<ClassifyItem>,
    pub model_version: String,
    /// Milliseconds for the whole request.
    pub took_ms: f64,
}

/// One flagged item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlagsItem {
    pub id: Option<ItemId>,
    #[serde(flatten)]
    pub flags: FlagReport,
}

/// The answer to a batch flags request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlagsBatchResponse {
    pub items: Vec<FlagsItem>,
    pub lexicon_version: String,
    pub took_ms: f64,
}

/// One segmented item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SegmentItem {
    pub id: Option<ItemId>,
    pub segments: Vec<Segment>,
}

/// The answer to a batch segment request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SegmentBatchResponse {
    pub items: Vec<SegmentItem>,
    pub took_ms: f64,
}

/// `/healthz` and `/readyz` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_loaded: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lexicon_terms: Option<usize>,
}

/// `/v1/info` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Info {
    pub service_version: String,
    pub model: Option<ModelInfoOut>,
    pub lexicon: LexiconInfo,
    pub triage: TriageInfo,
    /// The word lists and rules in force: when they were loaded and how often reloaded.
    pub reload: ReloadInfo,
    pub store: StoreInfo,
    /// `keys` (API keys and roles enforced) or `open` (`--no-auth`).
    pub auth: String,
    pub limits: Limits,
}

/// The complaint store and what classify stores.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StoreInfo {
    /// The database URL, password hidden; null when run without a store.
    pub database: Option<String>,
    pub store_needs_review: bool,
    pub store_min_escalation: u8,
    pub mask_pii: bool,
}

/// The triage rules and the repeat-contact tracker.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TriageInfo {
    /// The `version` of `triage.toml` in force.
    pub rules_version: String,
    pub rule_count: usize,
    /// Repeat-contact window in seconds.
    pub repeat_window_secs: u64,
    /// Customers remembered now / at most (null: unbounded store).
    pub tracked_customers: usize,
    pub repeat_capacity: Option<usize>,
    /// Where contacts are kept: `memory` (this process) or `store` (the complaint store, shared by replicas).
    pub repeat_store: String,
}

/// Reload state of the word lists and rules.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReloadInfo {
    /// Successful reloads since start (0: the lists loaded at start-up serve).
    pub count: u64,
    /// When the lists in force were loaded (RFC 3339, UTC).
    pub loaded_at: String,
    /// Failed reload attempts since start (the previous lists kept serving).
    pub failed: u64,
    /// The last failed attempt's error (file and line), if any failed.
    pub last_error: Option<String>,
}

/// The answer to `POST /admin/reload`: what is in force now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReloadReport {
    /// Successful reloads since start, this one included.
    pub count: u64,
    pub loaded_at: String,
    pub lexicon_version: String,
    pub lexicon_terms: usize,
    pub user_dict_words: usize,
    pub rules_version: String,
    pub rule_count: usize,
    /// API keys now in force (the key file and `KESU_API_KEYS`, read again); absent with `--no-auth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<usize>,
    pub took_ms: f64,
}

/// The loaded model.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelInfoOut {
    pub version: String,
    pub path: String,
    pub category_labels: Vec<String>,
    pub escalation_labels: Vec<String>,
    pub max_tokens: usize,
    pub max_windows: usize,
    /// The escalation head reads the flagger's hits beside the embedding:
    /// reloading the lexicon (`lexicon.version`) can then change escalation.
    pub escalation_uses_flags: bool,
    /// Training summary and dev metrics stored in the model file.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

/// The loaded word lists.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LexiconInfo {
    pub version: String,
    pub term_count: usize,
    pub flags: Vec<kesu_core::flags::Flag>,
    pub user_dict_words: usize,
}

/// The request limits in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_items: usize,
    pub max_text_chars: usize,
    pub request_timeout_ms: u64,
    pub max_concurrent_inference: usize,
    pub max_queued: usize,
}
