//! The plain settings the server runs with. The `kesu` binary's typed
//! configuration (`src/config.rs`: every field a flag and a `KESU_*`
//! variable) builds them; their [`Default`]s are the documented defaults,
//! which that configuration reads, so each default is written once, here.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::conversation::registry::RegistryLimits;
use crate::conversation::AlertRules;

/// Settings of one HTTP server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSettings {
    /// HTTP worker threads (inference runs on a separate blocking pool).
    pub workers: usize,
    /// The model file the pipeline was loaded from (shown by `/v1/info`).
    pub model_path: PathBuf,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Most items in one batch request.
    pub max_items: usize,
    /// Longest accepted text, in Unicode chars.
    pub max_text_chars: usize,
    /// Whole-request time limit of the routes whose table entry has one.
    pub request_timeout_ms: u64,
    /// Model requests running at once.
    pub max_concurrent_inference: usize,
    /// Model requests allowed to wait.
    pub max_queued: usize,
    /// How long a model request may wait for its turn.
    pub queue_timeout_ms: u64,
    /// Characters of text that `/v1/flags` and `/v1/segment` hold in work at once
    /// (more wait up to `queue_timeout_ms`, then 503).
    pub max_inflight_text_chars: usize,
    /// Seconds sent in `Retry-After` on every 503.
    pub retry_after_secs: u64,
    /// Live conversations: memory bounds and alert rules.
    pub conversations: ConversationSettings,
    /// Mask personal data in stored texts, references, channels and notes.
    pub store_mask_pii: bool,
    /// How long a classify item's idempotency key is remembered (seconds).
    pub idempotency_window_secs: u64,
    /// Stored items older than this are deleted (seconds; 0 keeps them forever).
    pub store_retention_secs: u64,
    /// How far an item's `received_at` may lie in the future (seconds): clock skew between caller and kesu.
    pub max_clock_skew_secs: u64,
    /// The insights worker (hot spots, alerts, webhooks).
    #[serde(skip)]
    pub insights: crate::insights::WorkerSettings,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            workers: 2,
            model_path: kesu_core::pipeline::PipelineOptions::default().model,
            max_body_bytes: 2 * 1024 * 1024,
            max_items: 64,
            max_text_chars: 20_000,
            request_timeout_ms: 30_000,
            max_concurrent_inference: 2,
            max_queued: 64,
            queue_timeout_ms: 10_000,
            max_inflight_text_chars: 2_000_000,
            retry_after_secs: 1,
            conversations: ConversationSettings::default(),
            store_mask_pii: true,
            idempotency_window_secs: 24 * 3600,
            store_retention_secs: 3 * 365 * 24 * 3600,
            max_clock_skew_secs: 300,
            insights: Default::default(),
        }
    }
}

impl ServerSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }
    /// How often the store is swept (retention, expired idempotency keys):
    /// a quarter of the shorter period, between 1 s and 1 h.
    pub fn store_sweep_every(&self) -> Duration {
        let shortest = match self.store_retention_secs {
            0 => self.idempotency_window_secs,
            r => r.min(self.idempotency_window_secs),
        };
        Duration::from_millis(shortest.saturating_mul(250)).clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }
}

/// Live conversations (`/v1/conversations`): memory bounds and alert rules
/// (see `conversation/mod.rs` for the rules' exact meaning).
#[derive(Debug, Clone, Serialize)]
pub struct ConversationSettings {
    /// A conversation idle this long expires.
    pub ttl_secs: u64,
    /// Most live conversations.
    pub max_conversations: usize,
    /// Newest messages kept per conversation.
    pub max_messages: u64,
    /// Event-stream subscribers per conversation.
    pub max_subscribers: usize,
    /// An event stream ends after this many seconds (0: never); clients reconnect.
    pub max_stream_secs: u64,
    /// Most bytes of messages kept per conversation (older ones go first).
    pub max_conversation_bytes: usize,
    /// Most bytes of messages kept by all conversations together (beyond: 503).
    pub max_total_bytes: usize,
    /// The alert rules.
    pub alerts: AlertRules,
}

impl Default for ConversationSettings {
    fn default() -> Self {
        ConversationSettings {
            ttl_secs: 1800,
            max_conversations: 10_000,
            max_messages: 200,
            max_subscribers: 8,
            max_stream_secs: 3600,
            max_conversation_bytes: 1 << 20,
            max_total_bytes: 512 << 20,
            alerts: AlertRules::default(),
        }
    }
}

impl ConversationSettings {
    /// The alert rules (α clamped into (0, 1]).
    pub fn rules(&self) -> AlertRules {
        AlertRules { alpha: self.alerts.alpha.clamp(f32::EPSILON, 1.0), ..self.alerts.clone() }
    }

    /// The registry limits these settings describe.
    pub fn limits(&self) -> RegistryLimits {
        RegistryLimits {
            ttl: Duration::from_secs(self.ttl_secs),
            max_conversations: self.max_conversations,
            max_messages: self.max_messages as usize,
            max_alerts: 200,
            channel_capacity: 64,
            max_conversation_bytes: self.max_conversation_bytes,
            max_total_bytes: self.max_total_bytes,
        }
    }
}

/// Which database the complaint store is on.
#[derive(Debug, Clone, Serialize)]
pub struct StoreSettings {
    /// `sqlite://path/file.db` or `postgres://...`; `None`: no store (the review API answers 503).
    #[serde(skip)]
    pub database_url: Option<String>,
    /// Database connections at most.
    pub max_connections: u32,
    /// Where repeat contacts are remembered.
    pub repeat_store: RepeatStore,
    /// The secret that keys customer references in the shared contact store.
    #[serde(skip)]
    pub customer_key: Option<String>,
    /// A file holding that secret (its first line).
    pub customer_key_file: Option<PathBuf>,
    /// What classified items are counted by for insights.
    #[serde(skip)]
    pub insights: kesu_store::insights::InsightsConfig,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            database_url: Some("sqlite://kesu-data/kesu.db".into()),
            max_connections: 8,
            repeat_store: RepeatStore::Auto,
            customer_key: None,
            customer_key_file: None,
            insights: Default::default(),
        }
    }
}

/// Where the repeat-contact tracker keeps contacts (`KESU_REPEAT_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RepeatStore {
    /// The complaint store when it is PostgreSQL (replicas share it), else memory.
    Auto,
    /// This process's memory (bounded by `KESU_REPEAT_CAPACITY`; lost on restart).
    Memory,
    /// The complaint store (SQLite or PostgreSQL): shared by replicas, kept across restarts.
    Store,
}

impl std::str::FromStr for RepeatStore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(RepeatStore::Auto),
            "memory" => Ok(RepeatStore::Memory),
            "store" => Ok(RepeatStore::Store),
            _ => Err(format!("{s:?}: auto, memory or store")),
        }
    }
}

/// API keys (`auth`): where they are, console sessions and rate limits.
#[derive(Debug, Clone, Serialize)]
pub struct AuthSettings {
    /// TOML file of hashed keys; on a first start with none, one admin key is created there.
    pub api_keys_file: PathBuf,
    /// More keys: `name:role[+role]:sha256hex[:unlimited]`, separated by `;`.
    #[serde(skip)]
    pub api_keys: Option<String>,
    /// Everything open, no keys.
    pub no_auth: bool,
    /// A console session (`POST /v1/session`) ends this long after it was made.
    pub session_ttl_secs: u64,
    /// Rate limit of keys with the `intake` role (a key with several roles gets the most generous).
    pub rate_limit_intake: crate::auth::limit::Rate,
    pub rate_limit_agent: crate::auth::limit::Rate,
    pub rate_limit_reviewer: crate::auth::limit::Rate,
    pub rate_limit_admin: crate::auth::limit::Rate,
    /// Request body bytes that cost one token more (a request costs 1 + body bytes / this).
    pub rate_limit_bytes_per_token: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        use crate::auth::limit::Rate;
        AuthSettings {
            api_keys_file: PathBuf::from("kesu-data/keys.toml"),
            api_keys: None,
            no_auth: false,
            session_ttl_secs: 8 * 3600,
            rate_limit_intake: Rate::new(50.0, 200.0),
            rate_limit_agent: Rate::new(20.0, 100.0),
            rate_limit_reviewer: Rate::new(20.0, 100.0),
            rate_limit_admin: Rate::new(20.0, 100.0),
            rate_limit_bytes_per_token: 3000,
        }
    }
}
