//! The one typed configuration of kesu. Every field is a CLI flag and a
//! `KESU_*` environment variable (clap); the README's configuration table is
//! this file.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;

/// Where the model and the word lists are.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Resources {
    /// Model file (one GGUF file: encoder, heads, tokenizer, labels).
    #[arg(long, env = "KESU_MODEL", default_value = "models/kesu.gguf")]
    pub model: PathBuf,
    /// Folder with legal_risk.tsv, user_dict.txt and triage.toml (reloaded together by POST /admin/reload or SIGHUP).
    #[arg(long, env = "KESU_LEXICONS", default_value = "lexicons")]
    pub lexicons: PathBuf,
    /// A non-negated flag hit of at least this severity sets needs_review.
    #[arg(long, env = "KESU_REVIEW_MIN_SEVERITY", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub review_min_severity: u8,
    /// Tokens per encoder window (at most 512).
    #[arg(long, env = "KESU_MODEL_MAX_TOKENS", default_value_t = 512, value_parser = clap::value_parser!(u16).range(16..=512))]
    pub model_max_tokens: u16,
    /// Windows per text; tokens beyond max_tokens x max_windows are not seen by the model (flags still scan everything).
    #[arg(long, env = "KESU_MODEL_MAX_WINDOWS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub model_max_windows: u16,
    /// Texts per encoder forward pass (a request's items are sorted by length and chunked).
    #[arg(long, env = "KESU_MODEL_BATCH_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub model_batch_size: u16,
    /// Repeat-contact window in seconds: an earlier contact with the same customer_ref at most this long ago makes a repeat contact (triage).
    #[arg(long, env = "KESU_REPEAT_WINDOW_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub repeat_window_secs: u64,
    /// Customers the in-memory repeat-contact tracker remembers; beyond that the least recently contacted is forgotten (0 = tracking off).
    #[arg(long, env = "KESU_REPEAT_CAPACITY", default_value_t = 100_000)]
    pub repeat_capacity: usize,
}

impl Resources {
    pub fn legal_risk_path(&self) -> PathBuf {
        self.lexicons.join("legal_risk.tsv")
    }
    pub fn user_dict_path(&self) -> PathBuf {
        self.lexicons.join("user_dict.txt")
    }
    pub fn triage_rules_path(&self) -> PathBuf {
        self.lexicons.join(crate::lists::TRIAGE_FILE)
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
    #[arg(long, env = "KESU_WORKERS", default_value_t = 2)]
    pub workers: usize,
    #[command(flatten)]
    pub resources: Resources,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "KESU_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most items in one batch request.
    #[arg(long, env = "KESU_MAX_ITEMS", default_value_t = 64)]
    pub max_items: usize,
    /// Longest accepted text, in Unicode chars (longer: 413).
    #[arg(long, env = "KESU_MAX_TEXT_CHARS", default_value_t = 20_000)]
    pub max_text_chars: usize,
    /// Whole-request time limit in milliseconds (over it: 503 timeout).
    #[arg(long, env = "KESU_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Model requests running at once; more wait in a queue.
    #[arg(long, env = "KESU_MAX_CONCURRENT_INFERENCE", default_value_t = 2)]
    pub max_concurrent_inference: usize,
    /// Model requests allowed to wait; beyond that: 503 with Retry-After at once.
    #[arg(long, env = "KESU_MAX_QUEUED", default_value_t = 64)]
    pub max_queued: usize,
    /// How long a model request may wait for its turn, in milliseconds (then 503).
    #[arg(long, env = "KESU_QUEUE_TIMEOUT_MS", default_value_t = 10_000)]
    pub queue_timeout_ms: u64,
    /// Seconds sent in Retry-After on 503.
    #[arg(long, env = "KESU_RETRY_AFTER_SECS", default_value_t = 1)]
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

/// API keys and roles (`src/auth/`).
#[derive(Debug, Clone, Args, Serialize)]
pub struct AuthSettings {
    /// TOML file of hashed API keys (`kesu keys add` writes it). On a first start with no keys and no --no-auth, kesu creates it with one admin key and prints that key once.
    #[arg(long, env = "KESU_API_KEYS_FILE", default_value = "kesu-data/keys.toml")]
    pub api_keys_file: PathBuf,
    /// More keys: `name:role[+role]:sha256hex`, separated by `;`.
    #[arg(long, env = "KESU_API_KEYS", hide_env_values = true)]
    #[serde(skip)]
    pub api_keys: Option<String>,
    /// Serve without API keys: every route open to anyone who can reach the port (logged as a warning at start).
    #[arg(long, env = "KESU_NO_AUTH", default_value_t = false)]
    pub no_auth: bool,
}

/// The complaint store (`src/store/`) and what classify stores.
#[derive(Debug, Clone, Args, Serialize)]
pub struct StoreSettings {
    /// Database: `sqlite://path/file.db` (created on first start) or `postgres://user:pass@host/db`.
    #[arg(long, env = "KESU_DATABASE_URL", default_value = "sqlite://kesu-data/kesu.db")]
    #[serde(skip)]
    pub database_url: String,
    /// Database connections at most.
    #[arg(long, env = "KESU_DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub database_max_connections: u32,
    /// Run without a store: classify stores nothing and the review API answers 503.
    #[arg(long, env = "KESU_NO_STORE", default_value_t = false)]
    pub no_store: bool,
    /// Store classified items that need review (a non-negated flag hit of review severity, or any self-harm / collective-action hit).
    #[arg(long, env = "KESU_STORE_NEEDS_REVIEW", default_value_t = true, action = clap::ArgAction::Set)]
    pub store_needs_review: bool,
    /// Store classified items at this escalation level or above (4 = never by level).
    #[arg(long, env = "KESU_STORE_MIN_ESCALATION", default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=4))]
    pub store_min_escalation: u8,
    /// Mask phone, ID-card and bank-card numbers and e-mail addresses in stored texts (on by default; turn off only where the store itself is cleared for personal data).
    #[arg(long, env = "KESU_STORE_MASK_PII", default_value_t = true, action = clap::ArgAction::Set)]
    pub store_mask_pii: bool,
}

impl StoreSettings {
    /// Whether a classified item must be stored.
    pub fn should_store(&self, needs_review: bool, escalation: u8) -> bool {
        (self.store_needs_review && needs_review) || escalation >= self.store_min_escalation
    }
}

/// Live conversations (`/v1/conversations`): memory bounds and alert rules
/// (see `src/conversation/mod.rs` for the rules' exact meaning).
#[derive(Debug, Clone, Args, Serialize)]
pub struct ConversationSettings {
    /// A conversation with no message (or subscription) for this many seconds expires.
    #[arg(long, env = "KESU_CONVERSATION_TTL_SECS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub conversation_ttl_secs: u64,
    /// Most live conversations; a new one beyond that gets 503 too_many_conversations (live ones are never evicted).
    #[arg(long, env = "KESU_MAX_CONVERSATIONS", default_value_t = 10_000)]
    pub max_conversations: usize,
    /// Newest messages kept in memory per conversation (the counters cover all).
    #[arg(long, env = "KESU_CONVERSATION_MAX_MESSAGES", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub conversation_max_messages: u64,
    /// Event-stream subscribers per conversation.
    #[arg(long, env = "KESU_CONVERSATION_MAX_SUBSCRIBERS", default_value_t = 8)]
    pub conversation_max_subscribers: usize,
    /// Trend smoothing factor alpha (0 < alpha <= 1; 1 = last message only).
    #[arg(long, env = "KESU_ALERT_ALPHA", default_value_t = 0.5)]
    pub alert_alpha: f32,
    /// level_crossed: the trend rising to this level (0..3) alerts.
    #[arg(long, env = "KESU_ALERT_LEVEL", default_value_t = 2.0)]
    pub alert_level: f32,
    /// fast_rise: a rise of the trend by this many levels ...
    #[arg(long, env = "KESU_ALERT_RISE", default_value_t = 1.0)]
    pub alert_rise: f32,
    /// ... within this many customer messages alerts.
    #[arg(long, env = "KESU_ALERT_RISE_WINDOW", default_value_t = 3)]
    pub alert_rise_window: usize,
    /// consecutive_negative: this many dissatisfied-or-worse customer messages in a row alert (0 = off).
    #[arg(long, env = "KESU_ALERT_CONSECUTIVE", default_value_t = 3)]
    pub alert_consecutive: u32,
    /// threat_flag: non-negated hits of these flags alert (comma-separated).
    #[arg(long, env = "KESU_ALERT_THREAT_FLAGS", value_delimiter = ',', default_value = "litigation,regulator,media,self_harm_violence")]
    pub alert_threat_flags: Vec<crate::flags::Flag>,
}

impl ConversationSettings {
    /// The alert rules these settings describe.
    pub fn rules(&self) -> crate::conversation::AlertRules {
        crate::conversation::AlertRules {
            alpha: self.alert_alpha.clamp(f32::EPSILON, 1.0),
            level: self.alert_level,
            rise: self.alert_rise,
            rise_window: self.alert_rise_window,
            consecutive: self.alert_consecutive,
            threat_flags: self.alert_threat_flags.clone(),
        }
    }

    /// The registry limits these settings describe.
    pub fn limits(&self) -> crate::conversation::registry::Limits {
        crate::conversation::registry::Limits {
            ttl: Duration::from_secs(self.conversation_ttl_secs),
            max_conversations: self.max_conversations,
            max_messages: self.conversation_max_messages as usize,
            max_alerts: 200,
            channel_capacity: 64,
        }
    }
}

impl Settings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
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
