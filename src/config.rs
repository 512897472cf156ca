//! The one typed configuration of kesu. Every field is a CLI flag and a
//! `KESU_*` environment variable (clap); the README's configuration table is
//! this file.
//!
//! The libraries take plain option structs ([`PipelineOptions`],
//! [`ServerSettings`], ...); this file builds them, and its defaults are read
//! from those structs' `Default`s, so each default is written once.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use kesu_core::pipeline::PipelineOptions;
use kesu_core::triage::StoreOverride;
use kesu_server::auth::limit::Rate;
use kesu_server::settings::{
    AuthSettings as AuthOptions, ConversationSettings as ConversationOptions, ServerSettings,
    StoreSettings as StoreOptions,
};
use serde::Serialize;

fn pipeline_default() -> PipelineOptions {
    PipelineOptions::default()
}
/// A retention period in days: finite, 0 or more, at most 100 years.
fn retention_days(s: &str) -> Result<f64, String> {
    let d: f64 = s.parse().map_err(|e| format!("{s:?} is not a number of days: {e}"))?;
    if d.is_finite() && (0.0..=36_500.0).contains(&d) {
        Ok(d)
    } else {
        Err(format!("{s} days: give 0 (keep forever) up to 36500"))
    }
}

fn server_default() -> ServerSettings {
    ServerSettings::default()
}
fn conversation_default() -> ConversationOptions {
    ConversationOptions::default()
}

/// Where the model and the word lists are.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Resources {
    /// Model file (one GGUF file: encoder, heads, tokenizer, labels).
    #[arg(long, env = "KESU_MODEL", default_value_os_t = pipeline_default().model)]
    pub model: PathBuf,
    /// Folder with legal_risk.tsv, user_dict.txt and triage.toml (reloaded together by POST /admin/reload or SIGHUP).
    #[arg(long, env = "KESU_LEXICONS", default_value_os_t = pipeline_default().lexicons)]
    pub lexicons: PathBuf,
    /// A non-negated flag hit of at least this severity sets needs_review.
    #[arg(long, env = "KESU_REVIEW_MIN_SEVERITY", default_value_t = pipeline_default().review_min_severity, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub review_min_severity: u8,
    /// Tokens per encoder window (at most 512).
    #[arg(long, env = "KESU_MODEL_MAX_TOKENS", default_value_t = pipeline_default().max_tokens as u16, value_parser = clap::value_parser!(u16).range(16..=512))]
    pub model_max_tokens: u16,
    /// Windows per text; tokens beyond max_tokens x max_windows are not seen by the model (flags still scan everything).
    #[arg(long, env = "KESU_MODEL_MAX_WINDOWS", default_value_t = pipeline_default().max_windows as u16, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub model_max_windows: u16,
    /// Texts per encoder forward pass (a request's items are sorted by length and chunked).
    #[arg(long, env = "KESU_MODEL_BATCH_SIZE", default_value_t = pipeline_default().batch_size as u16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub model_batch_size: u16,
    /// Repeat-contact window in seconds: an earlier contact with the same customer_ref at most this long ago makes a repeat contact (triage).
    #[arg(long, env = "KESU_REPEAT_WINDOW_SECS", default_value_t = pipeline_default().repeat_window.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub repeat_window_secs: u64,
    /// Customers the in-memory repeat-contact tracker remembers; beyond that the least recently contacted is forgotten (0 = tracking off).
    #[arg(long, env = "KESU_REPEAT_CAPACITY", default_value_t = pipeline_default().repeat_capacity)]
    pub repeat_capacity: usize,
}

impl Resources {
    /// The pipeline these settings describe (`store` replaces the rules file's `[store]`).
    pub fn pipeline_options(&self, store: StoreOverride) -> PipelineOptions {
        PipelineOptions {
            model: self.model.clone(),
            lexicons: self.lexicons.clone(),
            review_min_severity: self.review_min_severity,
            max_tokens: self.model_max_tokens as usize,
            max_windows: self.model_max_windows as usize,
            batch_size: self.model_batch_size.max(1) as usize,
            repeat_window: Duration::from_secs(self.repeat_window_secs),
            repeat_capacity: self.repeat_capacity,
            store_override: store,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings of `kesu serve`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "KESU_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 = any free port).
    #[arg(long, env = "KESU_PORT", default_value_t = 8080)]
    pub port: u16,
    /// HTTP worker threads (async; inference runs on a separate blocking pool).
    #[arg(long, env = "KESU_WORKERS", default_value_t = server_default().workers)]
    pub workers: usize,
    #[command(flatten)]
    pub resources: Resources,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "KESU_MAX_BODY_BYTES", default_value_t = server_default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Most items in one batch request.
    #[arg(long, env = "KESU_MAX_ITEMS", default_value_t = server_default().max_items)]
    pub max_items: usize,
    /// Longest accepted text, in Unicode chars (longer: 413).
    #[arg(long, env = "KESU_MAX_TEXT_CHARS", default_value_t = server_default().max_text_chars)]
    pub max_text_chars: usize,
    /// Whole-request time limit in milliseconds (over it: 503 timeout).
    #[arg(long, env = "KESU_REQUEST_TIMEOUT_MS", default_value_t = server_default().request_timeout_ms)]
    pub request_timeout_ms: u64,
    /// Model requests running at once; more wait in a queue.
    #[arg(long, env = "KESU_MAX_CONCURRENT_INFERENCE", default_value_t = server_default().max_concurrent_inference)]
    pub max_concurrent_inference: usize,
    /// Model requests allowed to wait; beyond that: 503 with Retry-After at once.
    #[arg(long, env = "KESU_MAX_QUEUED", default_value_t = server_default().max_queued)]
    pub max_queued: usize,
    /// How long a model request may wait for its turn, in milliseconds (then 503).
    #[arg(long, env = "KESU_QUEUE_TIMEOUT_MS", default_value_t = server_default().queue_timeout_ms)]
    pub queue_timeout_ms: u64,
    /// Characters of text that /v1/flags and /v1/segment work on at once; more wait (KESU_QUEUE_TIMEOUT_MS), then 503.
    #[arg(long, env = "KESU_MAX_INFLIGHT_TEXT_CHARS", default_value_t = server_default().max_inflight_text_chars, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000_000))]
    pub max_inflight_text_chars: usize,
    /// Seconds sent in Retry-After on 503.
    #[arg(long, env = "KESU_RETRY_AFTER_SECS", default_value_t = server_default().retry_after_secs)]
    pub retry_after_secs: u64,
    /// Log format.
    #[arg(long, env = "KESU_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub conversations: ConversationSettings,
    #[command(flatten)]
    pub store: StoreSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
}

/// API keys and roles (`crates/kesu-server/src/auth/`).
#[derive(Debug, Clone, Args, Serialize)]
pub struct AuthSettings {
    /// TOML file of hashed API keys (`kesu keys add` writes it). On a first start with no keys and no --no-auth, kesu creates it with one admin key and prints that key once.
    #[arg(long, env = "KESU_API_KEYS_FILE", default_value_os_t = AuthOptions::default().api_keys_file)]
    pub api_keys_file: PathBuf,
    /// More keys: `name:role[+role]:sha256hex[:unlimited]`, separated by `;` (`:unlimited`: exempt from the rate limit).
    #[arg(long, env = "KESU_API_KEYS", hide_env_values = true)]
    #[serde(skip)]
    pub api_keys: Option<String>,
    /// Serve without API keys: every route open to anyone who can reach the port (logged as a warning at start).
    #[arg(long, env = "KESU_NO_AUTH", default_value_t = false)]
    pub no_auth: bool,
    /// A console session (POST /v1/session) ends this many seconds after it was made (in memory, per process).
    #[arg(long, env = "KESU_SESSION_TTL_SECS", default_value_t = AuthOptions::default().session_ttl_secs, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_ttl_secs: u64,
    /// Rate limit of intake keys: RATE[:BURST] tokens per second (0 = unlimited); a request costs 1 + body bytes / KESU_RATE_LIMIT_BYTES_PER_TOKEN.
    #[arg(long, env = "KESU_RATE_LIMIT_INTAKE", default_value_t = AuthOptions::default().rate_limit_intake)]
    pub rate_limit_intake: Rate,
    /// Rate limit of agent keys (RATE[:BURST]; 0 = unlimited).
    #[arg(long, env = "KESU_RATE_LIMIT_AGENT", default_value_t = AuthOptions::default().rate_limit_agent)]
    pub rate_limit_agent: Rate,
    /// Rate limit of reviewer keys (RATE[:BURST]; 0 = unlimited).
    #[arg(long, env = "KESU_RATE_LIMIT_REVIEWER", default_value_t = AuthOptions::default().rate_limit_reviewer)]
    pub rate_limit_reviewer: Rate,
    /// Rate limit of admin keys (RATE[:BURST]; 0 = unlimited).
    #[arg(long, env = "KESU_RATE_LIMIT_ADMIN", default_value_t = AuthOptions::default().rate_limit_admin)]
    pub rate_limit_admin: Rate,
    /// Request body bytes that cost one rate-limit token more.
    #[arg(long, env = "KESU_RATE_LIMIT_BYTES_PER_TOKEN", default_value_t = AuthOptions::default().rate_limit_bytes_per_token, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_bytes_per_token: u64,
}

/// The complaint store (`crates/kesu-store/`). What it keeps is the triage rules' `[store]` section.
#[derive(Debug, Clone, Args, Serialize)]
pub struct StoreSettings {
    /// Database: `sqlite://path/file.db` (created on first start) or `postgres://user:pass@host/db`.
    #[arg(long, env = "KESU_DATABASE_URL", default_value_t = StoreOptions::default().database_url.unwrap_or_default())]
    #[serde(skip)]
    pub database_url: String,
    /// Database connections at most.
    #[arg(long, env = "KESU_DATABASE_MAX_CONNECTIONS", default_value_t = StoreOptions::default().max_connections)]
    pub database_max_connections: u32,
    /// Run without a store: classify stores nothing and the review API answers 503.
    #[arg(long, env = "KESU_NO_STORE", default_value_t = false)]
    pub no_store: bool,
    /// Deprecated (use `[store] needs_review` in triage.toml): when given, replaces it.
    #[arg(long, env = "KESU_STORE_NEEDS_REVIEW", action = clap::ArgAction::Set)]
    pub store_needs_review: Option<bool>,
    /// Deprecated (use `[store] min_escalation` in triage.toml): when given, replaces it (4 = never by level).
    #[arg(long, env = "KESU_STORE_MIN_ESCALATION", value_parser = clap::value_parser!(u8).range(0..=4))]
    pub store_min_escalation: Option<u8>,
    /// Mask phone, ID-card and bank-card numbers and e-mail addresses in stored texts (on by default; turn off only where the store itself is cleared for personal data).
    #[arg(long, env = "KESU_STORE_MASK_PII", default_value_t = server_default().store_mask_pii, action = clap::ArgAction::Set)]
    pub store_mask_pii: bool,
    /// How long a classify item's `idempotency_key` is remembered, in seconds (a retry within it stores and counts nothing again).
    #[arg(long, env = "KESU_IDEMPOTENCY_WINDOW_SECS", default_value_t = server_default().idempotency_window_secs, value_parser = clap::value_parser!(u64).range(1..))]
    pub idempotency_window_secs: u64,
    /// Stored items received longer ago than this many days (a decimal; 0.5 is 12 h) are deleted (audit-logged); 0 keeps them forever.
    #[arg(long, env = "KESU_STORE_RETENTION_DAYS", default_value_t = (server_default().store_retention_secs / 86_400) as f64, value_parser = retention_days)]
    pub store_retention_days: f64,
    /// Where repeat contacts are remembered: `auto` (the store when it is PostgreSQL, so replicas share them; else memory), `memory` (this process), `store` (the complaint store, kept across restarts).
    #[arg(long, env = "KESU_REPEAT_STORE", default_value = "auto", value_parser = ["auto", "memory", "store"])]
    pub repeat_store: String,
    /// Secret (at least 16 bytes) that keys customer references in the shared contact store; the same on every replica. Without it, the database's own salt keys them.
    #[arg(long, env = "KESU_CUSTOMER_KEY", hide_env_values = true)]
    #[serde(skip)]
    pub customer_key: Option<String>,
    /// File whose first line is that secret (e.g. a mounted Secret).
    #[arg(long, env = "KESU_CUSTOMER_KEY_FILE")]
    pub customer_key_file: Option<PathBuf>,
    /// Count every classified item into the insights aggregates (minute, hour and day buckets in the store).
    #[arg(long, env = "KESU_INSIGHTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub insights: bool,
    /// Time zone of the insights buckets (an IANA name); the first replica to count fixes it for the database.
    #[arg(long, env = "KESU_INSIGHTS_TIME_ZONE", default_value = "Asia/Shanghai", value_parser = time_zone)]
    pub insights_time_zone: String,
    /// Item tags counted by insights (comma-separated names, e.g. `product_line,region`); others are ignored there.
    #[arg(long, env = "KESU_INSIGHTS_TAGS", value_delimiter = ',', num_args = 0..)]
    pub insights_tags: Vec<String>,
    /// Most distinct values counted for the channel and for each tag; later values count as `(other)`.
    #[arg(long, env = "KESU_INSIGHTS_MAX_VALUES", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub insights_max_values: u64,
    /// Minute buckets are kept this many hours (hour and day buckets keep the counts after that).
    #[arg(long, env = "KESU_INSIGHTS_MINUTE_RETENTION_HOURS", default_value_t = 48, value_parser = clap::value_parser!(u64).range(1..))]
    pub insights_minute_retention_hours: u64,
    /// Hour buckets are kept this many days.
    #[arg(long, env = "KESU_INSIGHTS_HOUR_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..))]
    pub insights_hour_retention_days: u64,
    /// Day buckets are kept this many days (0 = forever).
    #[arg(long, env = "KESU_INSIGHTS_DAY_RETENTION_DAYS", default_value_t = 1098)]
    pub insights_day_retention_days: u64,
    /// Group similar complaints into hot-spot issues (the insights worker clusters the encoder's embeddings).
    #[arg(long, env = "KESU_HOTSPOTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub hotspots: bool,
    /// Least cosine similarity of a complaint's embedding to an issue's centroid to join it.
    #[arg(long, env = "KESU_HOTSPOT_THRESHOLD", default_value_t = kesu_core::insights::hotspots::Params::default().threshold)]
    pub hotspot_threshold: f32,
    /// The hot-spot window in hours: an issue's size is its items in the window, its growth against the window before.
    #[arg(long, env = "KESU_HOTSPOT_WINDOW_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=720))]
    pub hotspot_window_hours: u64,
    /// Fewest items in the window for an issue to be emerging.
    #[arg(long, env = "KESU_HOTSPOT_MIN_SIZE", default_value_t = kesu_core::insights::hotspots::Params::default().min_size)]
    pub hotspot_min_size: u64,
    /// Least growth ((size + 1) / (previous + 1)) for an issue to be emerging.
    #[arg(long, env = "KESU_HOTSPOT_GROWTH", default_value_t = kesu_core::insights::hotspots::Params::default().growth)]
    pub hotspot_growth: f64,
    /// Most open issues (the least recently seen closes first).
    #[arg(long, env = "KESU_HOTSPOT_MAX_ISSUES", default_value_t = kesu_core::insights::hotspots::Params::default().max_issues)]
    pub hotspot_max_issues: usize,
    /// Seconds between insights worker passes (clustering, alert rules, webhooks).
    #[arg(long, env = "KESU_INSIGHTS_EVERY_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub insights_every_secs: u64,
    /// A bucket is judged by the alert rules once it ended this many seconds ago.
    #[arg(long, env = "KESU_ALERT_LATENESS_SECS", default_value_t = 60)]
    pub alert_lateness_secs: u64,
    /// How far an item's `received_at` may lie in the future, in seconds (clock skew between the caller and kesu).
    #[arg(long, env = "KESU_MAX_CLOCK_SKEW_SECS", default_value_t = server_default().max_clock_skew_secs)]
    pub max_clock_skew_secs: u64,
}

/// A known IANA time zone name.
fn time_zone(s: &str) -> Result<String, String> {
    kesu_store::insights::InsightsConfig::new(s, Vec::new()).map(|_| s.to_string())
}

impl StoreSettings {
    /// The deprecated store settings, to replace the rules file's `[store]`;
    /// logs a deprecation warning when any is given.
    pub fn store_override(&self) -> StoreOverride {
        let o = StoreOverride { needs_review: self.store_needs_review, min_escalation: self.store_min_escalation };
        if !o.is_empty() {
            tracing::warn!(
                needs_review = ?o.needs_review,
                min_escalation = ?o.min_escalation,
                "KESU_STORE_NEEDS_REVIEW / KESU_STORE_MIN_ESCALATION are deprecated: set `[store]` in triage.toml instead (these values replace it for now)"
            );
        }
        o
    }

    /// The store to open (`None` with `--no-store`).
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            database_url: (!self.no_store).then(|| self.database_url.clone()),
            max_connections: self.database_max_connections,
            repeat_store: self.repeat_store.parse().unwrap_or(kesu_server::settings::RepeatStore::Auto),
            customer_key: self.customer_key.clone(),
            customer_key_file: self.customer_key_file.clone(),
            insights: self.insights_config(),
        }
    }

    /// The insights worker's settings.
    pub fn worker_settings(&self) -> kesu_server::insights::WorkerSettings {
        kesu_server::insights::WorkerSettings {
            every: std::time::Duration::from_secs(self.insights_every_secs),
            lateness: std::time::Duration::from_secs(self.alert_lateness_secs),
            hotspots: kesu_core::insights::hotspots::Params {
                threshold: self.hotspot_threshold,
                max_issues: self.hotspot_max_issues.max(1),
                window_ms: self.hotspot_window_hours as i64 * 3_600_000,
                min_size: self.hotspot_min_size,
                growth: self.hotspot_growth,
            },
            ..Default::default()
        }
    }

    /// The insights counting configuration.
    pub fn insights_config(&self) -> kesu_store::insights::InsightsConfig {
        let tags = self.insights_tags.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
        let mut c = kesu_store::insights::InsightsConfig::new(&self.insights_time_zone, tags).unwrap_or_default();
        c.enabled = self.insights;
        c.max_values = self.insights_max_values as usize;
        c.hotspots = self.hotspots;
        c.retention_secs = [
            self.insights_minute_retention_hours * 3600,
            self.insights_hour_retention_days * 86_400,
            self.insights_day_retention_days * 86_400,
        ];
        c
    }
}

impl AuthSettings {
    pub fn options(&self) -> AuthOptions {
        AuthOptions {
            api_keys_file: self.api_keys_file.clone(),
            api_keys: self.api_keys.clone(),
            no_auth: self.no_auth,
            session_ttl_secs: self.session_ttl_secs,
            rate_limit_intake: self.rate_limit_intake,
            rate_limit_agent: self.rate_limit_agent,
            rate_limit_reviewer: self.rate_limit_reviewer,
            rate_limit_admin: self.rate_limit_admin,
            rate_limit_bytes_per_token: self.rate_limit_bytes_per_token,
        }
    }
}

/// Live conversations (`/v1/conversations`): memory bounds and alert rules
/// (see `crates/kesu-server/src/conversation/mod.rs` for the rules' exact meaning).
#[derive(Debug, Clone, Args, Serialize)]
pub struct ConversationSettings {
    /// A conversation with no message (or subscription) for this many seconds expires.
    #[arg(long, env = "KESU_CONVERSATION_TTL_SECS", default_value_t = conversation_default().ttl_secs, value_parser = clap::value_parser!(u64).range(1..))]
    pub conversation_ttl_secs: u64,
    /// Most live conversations; a new one beyond that gets 503 too_many_conversations (live ones are never evicted).
    #[arg(long, env = "KESU_MAX_CONVERSATIONS", default_value_t = conversation_default().max_conversations)]
    pub max_conversations: usize,
    /// Newest messages kept in memory per conversation (the counters cover all).
    #[arg(long, env = "KESU_CONVERSATION_MAX_MESSAGES", default_value_t = conversation_default().max_messages, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub conversation_max_messages: u64,
    /// Event-stream subscribers per conversation.
    #[arg(long, env = "KESU_CONVERSATION_MAX_SUBSCRIBERS", default_value_t = conversation_default().max_subscribers)]
    pub conversation_max_subscribers: usize,
    /// An event stream is closed after this many seconds (the browser's EventSource reconnects after its retry delay, a few seconds,
    /// possibly to another replica, and gets a fresh snapshot); 0: never.
    #[arg(long, env = "KESU_EVENTS_MAX_SECS", default_value_t = conversation_default().max_stream_secs)]
    pub events_max_secs: u64,
    /// Most bytes of messages kept in memory per conversation (each message counts its text + 1 KiB); older ones go first.
    #[arg(long, env = "KESU_CONVERSATION_MAX_BYTES", default_value_t = conversation_default().max_conversation_bytes)]
    pub conversation_max_bytes: usize,
    /// Most bytes of messages kept by all live conversations together; a message beyond it gets 503 too_many_conversations.
    #[arg(long, env = "KESU_CONVERSATIONS_MAX_BYTES", default_value_t = conversation_default().max_total_bytes)]
    pub conversations_max_bytes: usize,
    /// Trend smoothing factor alpha (0 < alpha <= 1; 1 = last message only).
    #[arg(long, env = "KESU_ALERT_ALPHA", default_value_t = conversation_default().alerts.alpha)]
    pub alert_alpha: f32,
    /// level_crossed: the trend rising to this level (0..3) alerts.
    #[arg(long, env = "KESU_ALERT_LEVEL", default_value_t = conversation_default().alerts.level)]
    pub alert_level: f32,
    /// fast_rise: a rise of the trend by this many levels ...
    #[arg(long, env = "KESU_ALERT_RISE", default_value_t = conversation_default().alerts.rise)]
    pub alert_rise: f32,
    /// ... within this many customer messages alerts.
    #[arg(long, env = "KESU_ALERT_RISE_WINDOW", default_value_t = conversation_default().alerts.rise_window)]
    pub alert_rise_window: usize,
    /// consecutive_negative: this many dissatisfied-or-worse customer messages in a row alert (0 = off).
    #[arg(long, env = "KESU_ALERT_CONSECUTIVE", default_value_t = conversation_default().alerts.consecutive)]
    pub alert_consecutive: u32,
    /// threat_flag: non-negated hits of these flags alert (comma-separated).
    #[arg(long, env = "KESU_ALERT_THREAT_FLAGS", value_delimiter = ',', default_values_t = conversation_default().alerts.threat_flags)]
    pub alert_threat_flags: Vec<kesu_core::flags::Flag>,
}

impl ConversationSettings {
    pub fn options(&self) -> ConversationOptions {
        ConversationOptions {
            ttl_secs: self.conversation_ttl_secs,
            max_conversations: self.max_conversations,
            max_messages: self.conversation_max_messages,
            max_subscribers: self.conversation_max_subscribers,
            max_stream_secs: self.events_max_secs,
            max_conversation_bytes: self.conversation_max_bytes,
            max_total_bytes: self.conversations_max_bytes,
            alerts: kesu_server::conversation::AlertRules {
                alpha: self.alert_alpha,
                level: self.alert_level,
                rise: self.alert_rise,
                rise_window: self.alert_rise_window,
                consecutive: self.alert_consecutive,
                threat_flags: self.alert_threat_flags.clone(),
            },
        }
    }
}

impl Settings {
    /// The pipeline to load (with the deprecated store settings applied).
    pub fn pipeline_options(&self) -> PipelineOptions {
        self.resources.pipeline_options(self.store.store_override())
    }

    /// The server settings.
    pub fn server(&self) -> ServerSettings {
        ServerSettings {
            workers: self.workers,
            model_path: self.resources.model.clone(),
            max_body_bytes: self.max_body_bytes,
            max_items: self.max_items,
            max_text_chars: self.max_text_chars,
            request_timeout_ms: self.request_timeout_ms,
            max_concurrent_inference: self.max_concurrent_inference,
            max_queued: self.max_queued,
            queue_timeout_ms: self.queue_timeout_ms,
            max_inflight_text_chars: self.max_inflight_text_chars,
            retry_after_secs: self.retry_after_secs,
            conversations: self.conversations.options(),
            store_mask_pii: self.store.store_mask_pii,
            idempotency_window_secs: self.store.idempotency_window_secs,
            store_retention_secs: (self.store.store_retention_days * 86_400.0).ceil() as u64,
            max_clock_skew_secs: self.store.max_clock_skew_secs,
            insights: self.store.worker_settings(),
        }
    }

    /// Defaults as if no flag or variable were given (for tests and embedding).
    pub fn defaults() -> Settings {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            s: Settings,
        }
        <P as clap::Parser>::parse_from(["kesu"]).s
    }
}

/// Kafka intake (`kesu consume`, `kesu produce`): plain Kafka client settings.
#[derive(Debug, Clone, Args, Serialize)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port,...`.
    #[arg(long = "brokers", env = "KESU_KAFKA_BROKERS", default_value_t = kafka_default().brokers)]
    pub brokers: String,
    /// Consumer group: consumers of one group share the input topic's partitions.
    #[arg(long = "group", env = "KESU_KAFKA_GROUP", default_value_t = kafka_default().group_id)]
    pub group: String,
    #[arg(long, env = "KESU_KAFKA_INPUT_TOPIC", default_value_t = kafka_default().input_topic)]
    pub input_topic: String,
    #[arg(long, env = "KESU_KAFKA_RESULTS_TOPIC", default_value_t = kafka_default().results_topic)]
    pub results_topic: String,
    #[arg(long, env = "KESU_KAFKA_DEAD_LETTER_TOPIC", default_value_t = kafka_default().dead_letter_topic)]
    pub dead_letter_topic: String,
    /// Most records classified together.
    #[arg(long, env = "KESU_KAFKA_BATCH_SIZE", default_value_t = kafka_default().batch_size, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub kafka_batch_size: usize,
    /// How long a batch waits for more records after its first.
    #[arg(long, env = "KESU_KAFKA_BATCH_WAIT_MS", default_value_t = kafka_default().batch_wait.as_millis() as u64)]
    pub kafka_batch_wait_ms: u64,
    /// How soon the group notices a consumer gone (`session.timeout.ms`).
    #[arg(long, env = "KESU_KAFKA_SESSION_TIMEOUT_MS", default_value_t = kafka_default().session_timeout_ms)]
    pub kafka_session_timeout_ms: u32,
    /// Longest one batch, with its retries, may take before the group moves its partitions (`max.poll.interval.ms`).
    #[arg(long, env = "KESU_KAFKA_MAX_POLL_INTERVAL_MS", default_value_t = kafka_default().max_poll_interval_ms)]
    pub kafka_max_poll_interval_ms: u32,
    /// plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[arg(long, env = "KESU_KAFKA_SECURITY_PROTOCOL", value_parser = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"])]
    pub kafka_security_protocol: Option<String>,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "KESU_KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,
    #[arg(long, env = "KESU_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    #[arg(long, env = "KESU_KAFKA_SASL_PASSWORD", hide_env_values = true)]
    #[serde(skip)]
    pub kafka_sasl_password: Option<String>,
    /// A file whose first line is the SASL password (e.g. a mounted Secret).
    #[arg(long, env = "KESU_KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,
    /// CA bundle (PEM) for the brokers' certificates.
    #[arg(long, env = "KESU_KAFKA_SSL_CA")]
    pub kafka_ssl_ca: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    #[arg(long, env = "KESU_KAFKA_SSL_CERT")]
    pub kafka_ssl_cert: Option<PathBuf>,
    /// Client key (PEM), for mutual TLS.
    #[arg(long, env = "KESU_KAFKA_SSL_KEY")]
    pub kafka_ssl_key: Option<PathBuf>,
    /// Any other librdkafka setting, name=value (repeat; in the variable, comma-separated).
    #[arg(long = "kafka-option", env = "KESU_KAFKA_OPTIONS", value_delimiter = ',', value_parser = kesu_kafka::settings::parse_extra)]
    pub kafka_options: Vec<(String, String)>,
    /// Create the input, results and dead-letter topics with this many partitions where missing (demo and test clusters).
    #[arg(long, env = "KESU_KAFKA_CREATE_TOPICS")]
    pub create_topics: Option<i32>,
}

fn kafka_default() -> kesu_kafka::KafkaOptions {
    kesu_kafka::KafkaOptions::default()
}

impl KafkaSettings {
    pub fn options(&self) -> Result<kesu_kafka::KafkaOptions, String> {
        let password = match (&self.kafka_sasl_password, &self.kafka_sasl_password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("KESU_KAFKA_SASL_PASSWORD_FILE {}: {e}", f.display()))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            ),
            (None, None) => None,
        };
        Ok(kesu_kafka::KafkaOptions {
            brokers: self.brokers.clone(),
            group_id: self.group.clone(),
            input_topic: self.input_topic.clone(),
            results_topic: self.results_topic.clone(),
            dead_letter_topic: self.dead_letter_topic.clone(),
            batch_size: self.kafka_batch_size,
            batch_wait: Duration::from_millis(self.kafka_batch_wait_ms),
            session_timeout_ms: self.kafka_session_timeout_ms,
            max_poll_interval_ms: self.kafka_max_poll_interval_ms,
            security_protocol: self.kafka_security_protocol.clone(),
            sasl_mechanism: self.kafka_sasl_mechanism.clone(),
            sasl_username: self.kafka_sasl_username.clone(),
            sasl_password: password,
            ssl_ca_location: self.kafka_ssl_ca.clone(),
            ssl_certificate_location: self.kafka_ssl_cert.clone(),
            ssl_key_location: self.kafka_ssl_key.clone(),
            extra: self.kafka_options.clone(),
        })
    }
}
