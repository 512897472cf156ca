//! The complaint store: classified items kept for compliance review, their
//! review status, and an append-only audit log of every change.
//!
//! One code path for both databases (sqlx's `Any` driver, `$n` placeholders,
//! portable SQL): an embedded SQLite file by default (created and migrated on
//! first open, WAL journal), or PostgreSQL for several replicas
//! (`KESU_DATABASE_URL=postgres://...`).
//!
//! Guarantees:
//! * [`Store::insert`] returns only after the item and its first audit entry
//!   are committed (one transaction); if it returns an error nothing was stored.
//! * [`Store::update`] is optimistic: it applies only when the caller's
//!   `version` is the item's current one (else [`StoreError::Conflict`]), and
//!   writes the change and its audit entry in one transaction, so of several
//!   concurrent writers holding the same version exactly one wins.
//! * Texts are stored as given to [`Store::insert`]; the caller masks personal
//!   data first (`kesu_core::text::pii`).
//! * Idempotency ([`Store::insert_claimed`]): an item's idempotency key is
//!   claimed in the same transaction that stores it, so of two requests with
//!   the same key (on any replica of one database) exactly one commits; the
//!   other gets [`StoreError::KeyTaken`] and nothing of it was stored.
//! * Deletion ([`Store::delete_customer`], [`Store::purge_items`]) removes the
//!   items and their history in one transaction with an entry in the audit log
//!   ([`Store::audit_log`]), which names a customer only by a salted hash.

pub mod alerts;
pub mod contacts;
pub mod hotspots;
pub mod insights;
pub mod record;

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use time::OffsetDateTime;

/// Review status of a stored item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema), schema(as = ReviewStatus))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    New,
    InReview,
    Confirmed,
    FalsePositive,
    Resolved,
}

impl Status {
    pub const ALL: [Status; 5] =
        [Status::New, Status::InReview, Status::Confirmed, Status::FalsePositive, Status::Resolved];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::InReview => "in_review",
            Status::Confirmed => "confirmed",
            Status::FalsePositive => "false_positive",
            Status::Resolved => "resolved",
        }
    }

    /// Whether a reviewer may move an item from `self` to `to`: forward along
    /// new → in_review → confirmed / false_positive / resolved (steps may be
    /// skipped), in_review back to new (release to the queue), confirmed →
    /// resolved, and any closed status back to in_review (reopen).
    pub fn can_move_to(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (New, InReview | Confirmed | FalsePositive | Resolved)
                | (InReview, Confirmed | FalsePositive | Resolved | New)
                | (Confirmed, Resolved | InReview)
                | (FalsePositive | Resolved, InReview)
        )
    }

    /// Open statuses are the review queue.
    pub fn is_open(self) -> bool {
        matches!(self, Status::New | Status::InReview)
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Status::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}; one of new, in_review, confirmed, false_positive, resolved"))
    }
}

/// What to store about one classified item.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub caller_id: Option<String>,
    pub channel: Option<String>,
    pub customer_ref: Option<String>,
    /// The caller's `customer_ref` as given (unmasked): never stored, only its
    /// salted hash, so that [`Store::delete_customer`] finds exactly this
    /// customer's items even when masked references look alike.
    pub customer_ref_given: Option<String>,
    /// The text, already PII-masked.
    pub text: String,
    /// The full classify result (JSON), flag spans pointing into `text`.
    pub result: serde_json::Value,
    pub flags: Vec<String>,
    pub max_severity: u8,
    pub category: String,
    pub escalation: u8,
    /// `P1`..`P4`.
    pub priority: String,
    pub route: String,
}

/// A stored item.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Item {
    /// kesu's id.
    pub id: String,
    pub caller_id: Option<String>,
    pub channel: Option<String>,
    pub customer_ref: Option<String>,
    /// RFC 3339.
    pub received_at: String,
    /// The PII-masked text; flag spans in `result` point into it.
    pub text: String,
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub result: serde_json::Value,
    pub flags: Vec<String>,
    pub max_severity: u8,
    pub category: String,
    pub escalation: u8,
    pub priority: String,
    pub route: String,
    pub status: Status,
    pub assignee: Option<String>,
    pub note: Option<String>,
    /// Optimistic-concurrency version: send it back with a change.
    pub version: i64,
    /// RFC 3339.
    pub updated_at: String,
}

/// One audit-log entry.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Change {
    /// The item's version this change produced (1 = stored).
    pub version: i64,
    /// RFC 3339.
    pub at: String,
    pub actor: String,
    /// `stored` or `updated`.
    pub action: String,
    /// For `updated`: each changed field as `{"from": .., "to": ..}`.
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub changes: serde_json::Value,
}

/// A reviewer's change; `None` fields stay as they are (an empty string
/// clears `assignee` or `note`).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Patch {
    pub status: Option<Status>,
    pub assignee: Option<String>,
    pub note: Option<String>,
}

/// Filters of the review queue; all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Vec<Status>,
    pub flag: Option<String>,
    pub min_severity: Option<u8>,
    pub category: Option<String>,
    pub priority: Option<String>,
    pub route: Option<String>,
    /// Received at or after (unix ms).
    pub from_ms: Option<i64>,
    /// Received before (unix ms).
    pub to_ms: Option<i64>,
    /// Substring of the (masked) text.
    pub q: Option<String>,
}

/// One page of the queue.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Page {
    pub items: Vec<Item>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no stored item {0:?}")]
    NotFound(String),
    #[error("item {id:?} is at version {current}, not {given}: reload it and retry")]
    Conflict { id: String, current: i64, given: i64 },
    #[error("cannot move an item from {from} to {to}")]
    Transition { from: &'static str, to: &'static str },
    #[error("bad cursor {0:?}")]
    Cursor(String),
    /// A query the store cannot answer as asked (the message says why).
    #[error("{0}")]
    Query(String),
    /// An idempotency key of the batch was claimed by another request since
    /// it was looked up: nothing was stored; look the keys up again.
    #[error("idempotency key {0:?} was claimed concurrently")]
    KeyTaken(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    url_redacted: String,
    sqlite: bool,
    /// This database's salt for customer hashes (`kesu_meta.customer_salt`),
    /// the same for every replica of one database.
    salt: std::sync::Arc<String>,
    /// What classified items are counted by ([`insights`]).
    insights: std::sync::Arc<insights::InsightsConfig>,
    values: std::sync::Arc<std::sync::Mutex<insights::ValueCache>>,
}

/// 2: idempotency keys, the audit log, salted customer hashes.
const SCHEMA_VERSION: i64 = 2;

/// Tables added since version 1, created by every start (idempotent). A new
/// table needs no version bump: an older kesu on the same database ignores it,
/// so replicas can be upgraded one at a time.
const MIGRATIONS_V2: &[&str] = &[
    // Repeat contacts shared by replicas (`contacts::StoreContacts`): one row per contact.
    "CREATE TABLE IF NOT EXISTS contacts (customer_key TEXT NOT NULL, at_ms BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS contacts_key_at ON contacts (customer_key, at_ms)",
    "CREATE INDEX IF NOT EXISTS contacts_at ON contacts (at_ms)",
    // Named contacts (an item's scoped idempotency key, hashed): one contact however often it is processed.
    "CREATE TABLE IF NOT EXISTS contact_events (customer_key TEXT NOT NULL, event TEXT NOT NULL, at_ms BIGINT NOT NULL, PRIMARY KEY (customer_key, event))",
    "CREATE INDEX IF NOT EXISTS contact_events_at ON contact_events (at_ms)",
    "CREATE TABLE IF NOT EXISTS kesu_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS idempotency (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        text_sha256 TEXT NOT NULL,
        item_id TEXT,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (scope, key))",
    "CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_at)",
    "CREATE TABLE IF NOT EXISTS audit_log (
        id TEXT PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at, id)",
];

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kesu_schema (version BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS items (
        id TEXT PRIMARY KEY,
        caller_id TEXT, channel TEXT, customer_ref TEXT,
        received_at BIGINT NOT NULL,
        arrival BIGINT NOT NULL,
        text TEXT NOT NULL,
        result TEXT NOT NULL,
        flags TEXT NOT NULL,
        max_severity BIGINT NOT NULL,
        category TEXT NOT NULL,
        escalation BIGINT NOT NULL,
        priority TEXT NOT NULL,
        priority_rank BIGINT NOT NULL,
        route TEXT NOT NULL,
        status TEXT NOT NULL,
        assignee TEXT, note TEXT,
        version BIGINT NOT NULL,
        updated_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS items_queue ON items (priority_rank, arrival, id)",
    "CREATE INDEX IF NOT EXISTS items_status ON items (status)",
    "CREATE TABLE IF NOT EXISTS item_history (
        item_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        changes TEXT NOT NULL,
        PRIMARY KEY (item_id, version))",
];

pub(crate) fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Queue order key: arrival time in microseconds × 1000 + position in the
/// batch, so items of one request keep their order.
fn arrival_key(i: usize) -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64 * 1000 + (i as i64 % 1000)
}

/// RFC 3339 in UTC with exactly three fraction digits (`2026-11-23T09:36:06.310Z`):
/// fixed width, so these strings sort as text in time order.
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => ms.to_string(),
    }
}

fn priority_rank(p: &str) -> i64 {
    p.strip_prefix('P').and_then(|n| n.parse().ok()).unwrap_or(9)
}

/// `sqlite://...` URLs get `mode=rwc` so the file is created on first open.
fn with_create(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains("mode=") && !url.contains(":memory:") {
        format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
    } else {
        url.to_string()
    }
}

/// The URL without a password, for logs and `/v1/info`.
/// `s` with every NUL (U+0000) replaced by U+FFFD, the replacement character
/// (PostgreSQL text cannot hold NUL; SQLite stores the same for one behaviour).
/// Char counts and char offsets are unchanged.
pub fn nul_free(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// [`nul_free`] applied to every string (keys included) inside a JSON value.
fn nul_free_json(v: &serde_json::Value) -> std::borrow::Cow<'_, serde_json::Value> {
    use serde_json::Value;
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(has_nul),
            Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    fn clean(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(nul_free(s)),
            Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (nul_free(k), clean(v))).collect()),
            other => other.clone(),
        }
    }
    if has_nul(v) {
        std::borrow::Cow::Owned(clean(v))
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s && url[s + 3..at].contains(':') => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Connect to `url` (`sqlite://path/file.db` or `postgres://...`), create
    /// the tables if they are missing, and check the schema version.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if sqlite {
            if let Some(parent) = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .map(std::path::Path::new)
                .and_then(|p| p.parent())
            {
                if !parent.as_os_str().is_empty() {
                    let _ = std::fs::create_dir_all(parent);
                }
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&with_create(url))
            .await?;
        if sqlite {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        let mut store = Store {
            pool,
            url_redacted: redact(url),
            sqlite,
            salt: Default::default(),
            insights: Default::default(),
            values: Default::default(),
        };
        // Two replicas starting at once on PostgreSQL may race on the schema
        // change; the loser finds it done on a second try.
        if let Err(e) = store.migrate().await {
            tracing_free_retry_pause().await;
            store.migrate().await.map_err(|_| e)?;
        }
        store.salt = std::sync::Arc::new(store.load_salt().await?);
        Ok(store)
    }

    /// The database's customer salt, created once (the first replica to
    /// insert it wins; all read the same value).
    async fn load_salt(&self) -> Result<String, StoreError> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        sqlx::query("INSERT INTO kesu_meta (name, value) VALUES ('customer_salt', $1) ON CONFLICT (name) DO NOTHING")
            .bind(fresh)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query("SELECT value FROM kesu_meta WHERE name = 'customer_salt'")
            .fetch_one(&self.pool)
            .await?
            .try_get("value")?)
    }

    /// The salted hash that identifies a customer reference in this database
    /// (hex SHA-256 of salt and reference; the reference is not recoverable
    /// from it without the salt).
    pub fn customer_hash(&self, customer_ref: &str) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.salt.as_bytes());
        h.update([0u8]);
        h.update(customer_ref.as_bytes());
        hex::encode(h.finalize())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for m in MIGRATIONS
            .iter()
            .chain(MIGRATIONS_V2)
            .chain(insights::MIGRATIONS)
            .chain(hotspots::MIGRATIONS)
            .chain(alerts::MIGRATIONS)
        {
            sqlx::query(m).execute(&mut *tx).await?;
        }
        let v: Option<i64> =
            sqlx::query("SELECT MAX(version) AS v FROM kesu_schema").fetch_one(&mut *tx).await?.try_get("v").ok();
        if let Some(v) = v.filter(|v| *v > SCHEMA_VERSION) {
            return Err(StoreError::Db(sqlx::Error::Protocol(format!(
                "database schema version {v} is newer than this kesu ({SCHEMA_VERSION})"
            ))));
        }
        if v.unwrap_or(0) < 2 {
            // New in 2: the salted customer hash of each item (fresh databases
            // and version 1 alike get the column here).
            sqlx::query("ALTER TABLE items ADD COLUMN customer_hash TEXT").execute(&mut *tx).await?;
            sqlx::query("CREATE INDEX IF NOT EXISTS items_customer ON items (customer_hash)").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM kesu_schema").execute(&mut *tx).await?;
            sqlx::query("INSERT INTO kesu_schema (version) VALUES ($1)").bind(SCHEMA_VERSION).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether this is a PostgreSQL store (several replicas can share it).
    pub fn is_postgres(&self) -> bool {
        !self.sqlite
    }

    /// The database URL with any password hidden.
    pub fn url(&self) -> &str {
        &self.url_redacted
    }

    /// The pool (tests close it to simulate a database going away).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Store `items` in one transaction: all are committed or none is.
    /// Returns kesu's ids, in order. A NUL character (U+0000) in any stored
    /// string is stored as U+FFFD on both databases (PostgreSQL refuses NUL in
    /// text): one character for one, so char offsets of flag spans still hold.
    pub async fn insert(&self, items: &[NewItem], actor: &str) -> Result<Vec<String>, StoreError> {
        self.insert_claimed(items, "", &[], 0, &[], actor).await
    }

    /// [`Store::insert`], and in the same transaction claim each of `claims`
    /// (idempotency keys of `scope`, e.g. the API key's name) for its item:
    /// `claim.item` indexes `items` when that item is stored, `None` when the
    /// keyed item was classified but not kept. A claim older than `since_ms`
    /// (outside the idempotency window) is replaced. If another request holds
    /// a live claim on one of the keys, nothing is stored and the answer is
    /// [`StoreError::KeyTaken`]. In the same transaction, `counted` (the
    /// classified items that are not replays, stored or not) are counted
    /// into the insights aggregates ([`insights`]).
    pub async fn insert_claimed(
        &self,
        items: &[NewItem],
        scope: &str,
        claims: &[KeyClaim],
        since_ms: i64,
        counted: &[insights::Counted],
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        let counts = self.count_rows(counted, now).await?;
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let id = uuid::Uuid::new_v4().to_string();
            sqlx::query(
                "INSERT INTO items (id, caller_id, channel, customer_ref, received_at, arrival, text, result, flags, max_severity, category, escalation, priority, priority_rank, route, status, assignee, note, version, updated_at, customer_hash)
                 VALUES ($1, $2, $3, $4, $5, $17, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, NULL, NULL, 1, $16, $18)",
            )
            .bind(&id)
            .bind(it.caller_id.as_deref().map(nul_free))
            .bind(it.channel.as_deref().map(nul_free))
            .bind(it.customer_ref.as_deref().map(nul_free))
            .bind(now)
            .bind(nul_free(&it.text))
            .bind(nul_free_json(&it.result).to_string())
            .bind(format!(",{},", it.flags.join(",")))
            .bind(it.max_severity as i64)
            .bind(&it.category)
            .bind(it.escalation as i64)
            .bind(&it.priority)
            .bind(priority_rank(&it.priority))
            .bind(&it.route)
            .bind(Status::New.as_str())
            .bind(now)
            .bind(arrival_key(i))
            .bind(it.customer_ref_given.as_deref().map(|c| self.customer_hash(c)))
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO item_history (item_id, version, at, actor, action, changes) VALUES ($1, 1, $2, $3, 'stored', '{}')")
                .bind(&id)
                .bind(now)
                .bind(actor)
                .execute(&mut *tx)
                .await?;
            ids.push(id);
        }
        for c in claims {
            sqlx::query("DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND created_at < $3")
                .bind(scope)
                .bind(&c.key)
                .bind(since_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO idempotency (scope, key, text_sha256, item_id, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(scope)
            .bind(&c.key)
            .bind(&c.text_sha256)
            .bind(c.item.and_then(|i| ids.get(i).cloned()))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::KeyTaken(c.key.clone()),
                _ => StoreError::Db(e),
            })?;
        }
        insights::upsert(&mut tx, &counts, now).await?;
        if self.insights.enabled && self.insights.hotspots {
            hotspots::enqueue(&mut tx, counted, &ids).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// The live claims (made at or after `since_ms`) on `keys` in `scope`.
    pub async fn seen_keys(
        &self,
        scope: &str,
        keys: &[&str],
        since_ms: i64,
    ) -> Result<std::collections::HashMap<String, Seen>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for chunk in keys.chunks(200) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
            let sql = format!(
                "SELECT key, text_sha256, item_id FROM idempotency WHERE scope = $1 AND created_at >= $2 AND key IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(scope).bind(since_ms);
            for k in chunk {
                q = q.bind(*k);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.insert(
                    r.try_get("key")?,
                    Seen { text_sha256: r.try_get("text_sha256")?, item_id: r.try_get("item_id")? },
                );
            }
        }
        Ok(out)
    }

    /// Forget idempotency claims made before `before_ms` (outside the window).
    pub async fn purge_keys(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Retention: delete every item received before `before_ms` with its
    /// history, in one transaction with one audit entry (`retention_purge`,
    /// written only when something was deleted). Returns how many items went.
    pub async fn purge_items(&self, before_ms: i64, actor: &str) -> Result<u64, StoreError> {
        let mut tx =
            if self.sqlite { self.pool.begin_with("BEGIN IMMEDIATE").await? } else { self.pool.begin().await? };
        sqlx::query("DELETE FROM item_history WHERE item_id IN (SELECT id FROM items WHERE received_at < $1)")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM items WHERE received_at < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            audit(
                &mut tx,
                actor,
                "retention_purge",
                "items",
                serde_json::json!({"received_before": rfc3339_ms(before_ms), "items": n}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Delete everything stored for one customer (the `customer_ref` as the
    /// caller sent it with the items): items and their history, and the
    /// customer's idempotency claims lose their item. One transaction, with an
    /// audit entry (`customer_deleted`) naming the customer only by its salted
    /// hash. Deleting an unknown customer deletes nothing and still writes the
    /// audit entry (the request was made).
    pub async fn delete_customer(&self, customer_ref: &str, actor: &str) -> Result<Deleted, StoreError> {
        let hash = self.customer_hash(customer_ref);
        let mut tx =
            if self.sqlite { self.pool.begin_with("BEGIN IMMEDIATE").await? } else { self.pool.begin().await? };
        let history =
            sqlx::query("DELETE FROM item_history WHERE item_id IN (SELECT id FROM items WHERE customer_hash = $1)")
                .bind(&hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query(
            "UPDATE idempotency SET item_id = NULL WHERE item_id IN (SELECT id FROM items WHERE customer_hash = $1)",
        )
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        let items = sqlx::query("DELETE FROM items WHERE customer_hash = $1")
            .bind(&hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        audit(
            &mut tx,
            actor,
            "customer_deleted",
            &format!("customer:{hash}"),
            serde_json::json!({"items": items, "history_entries": history}),
        )
        .await?;
        tx.commit().await?;
        Ok(Deleted { customer_hash: hash, items, history_entries: history })
    }

    /// Record one contact of the customer keyed `key` at `at_ms` and return
    /// how many earlier contacts of the same key lie within `window_ms`
    /// (`at_ms - window_ms <= t`, later-stamped ones included), at most `cap`.
    /// A contact named `event` that was recorded before is not recorded
    /// again: the answer then counts the key's other contacts. Several
    /// replicas see each other's contacts; two contacts recorded at the same
    /// moment by two replicas may each miss the other.
    pub async fn record_contact(
        &self,
        key: &str,
        at_ms: i64,
        window_ms: i64,
        cap: u32,
        event: Option<&str>,
    ) -> Result<u32, StoreError> {
        let since = at_ms.saturating_sub(window_ms);
        let mut tx = self.pool.begin().await?;
        let seen: Option<i64> = match event {
            None => None,
            Some(e) => sqlx::query("SELECT at_ms FROM contact_events WHERE customer_key = $1 AND event = $2")
                .bind(key)
                .bind(e)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("at_ms"))
                .transpose()?,
        };
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM (SELECT 1 FROM contacts WHERE customer_key = $1 AND at_ms >= $2 LIMIT $3) AS c",
        )
        .bind(key)
        .bind(since)
        .bind(cap as i64 + 1)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if let Some(first_at) = seen {
            tx.commit().await?;
            let own = i64::from(first_at >= since);
            return Ok((n - own).clamp(0, cap as i64) as u32);
        }
        sqlx::query("INSERT INTO contacts (customer_key, at_ms) VALUES ($1, $2)")
            .bind(key)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
        if let Some(e) = event {
            sqlx::query("INSERT INTO contact_events (customer_key, event, at_ms) VALUES ($1, $2, $3)")
                .bind(key)
                .bind(e)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(n.clamp(0, cap as i64) as u32)
    }

    /// Customers with a contact at or after `since_ms`.
    pub async fn contact_customers(&self, since_ms: i64) -> Result<usize, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(DISTINCT customer_key) AS n FROM contacts WHERE at_ms >= $1")
            .bind(since_ms)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n.max(0) as usize)
    }

    /// Forget contacts recorded before `before_ms` (outside the window).
    /// Returns the contacts deleted (their events go with them).
    pub async fn purge_contacts(&self, before_ms: i64) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM contact_events WHERE at_ms < $1").bind(before_ms).execute(&self.pool).await?;
        Ok(sqlx::query("DELETE FROM contacts WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Forget every contact of the customer keyed `key` (erasure).
    pub async fn delete_contacts(&self, key: &str) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM contact_events WHERE customer_key = $1").bind(key).execute(&self.pool).await?;
        Ok(sqlx::query("DELETE FROM contacts WHERE customer_key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// The store-wide audit log (deletions), newest first, at most `limit`.
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT at, actor, action, subject, detail FROM audit_log ORDER BY at DESC, id DESC LIMIT {}",
            limit.clamp(1, 10_000)
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: rfc3339_ms(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject: r.try_get("subject")?,
                    detail: serde_json::from_str(&r.try_get::<String, _>("detail")?).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// One item.
    pub async fn get(&self, id: &str) -> Result<Item, StoreError> {
        // No stored id holds NUL (PostgreSQL text cannot): look up its U+FFFD form.
        let id = nul_free(id);
        let id = id.as_str();
        let row = sqlx::query("SELECT * FROM items WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| item(&r)).transpose()?.ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    /// The queue: items matching `filter`, by priority (P1 first) then
    /// arrival (oldest first; a request's items in request order), `limit` per page, after the cursor `after`.
    pub async fn list(&self, filter: &Filter, after: Option<&str>, limit: usize) -> Result<Page, StoreError> {
        let mut sql = String::from("SELECT * FROM items WHERE 1=1");
        let mut args: Vec<Arg> = Vec::new();
        let mut push = |sql: &mut String, clause: &str, a: Arg| {
            args.push(a);
            sql.push_str(&clause.replace("$?", &format!("${}", args.len())));
        };
        if !filter.status.is_empty() {
            let list: Vec<String> = filter.status.iter().map(|s| format!("'{}'", s.as_str())).collect(); // fixed enum names, not input
            sql.push_str(&format!(" AND status IN ({})", list.join(",")));
        }
        if let Some(f) = &filter.flag {
            push(&mut sql, " AND flags LIKE $?", Arg::S(format!("%,{},%", escape_like(f))));
            sql.push_str(" ESCAPE '\\'");
        }
        if let Some(s) = filter.min_severity {
            push(&mut sql, " AND max_severity >= $?", Arg::I(s as i64));
        }
        if let Some(c) = &filter.category {
            push(&mut sql, " AND category = $?", Arg::S(c.clone()));
        }
        if let Some(p) = &filter.priority {
            push(&mut sql, " AND priority = $?", Arg::S(p.clone()));
        }
        if let Some(r) = &filter.route {
            push(&mut sql, " AND route = $?", Arg::S(r.clone()));
        }
        if let Some(t) = filter.from_ms {
            push(&mut sql, " AND received_at >= $?", Arg::I(t));
        }
        if let Some(t) = filter.to_ms {
            push(&mut sql, " AND received_at < $?", Arg::I(t));
        }
        if let Some(q) = &filter.q {
            push(&mut sql, " AND text LIKE $?", Arg::S(format!("%{}%", escape_like(&nul_free(q)))));
            sql.push_str(" ESCAPE '\\'");
        }
        if let Some(c) = after {
            let (rank, at, id) = parse_cursor(c)?;
            push(&mut sql, " AND (priority_rank > $?", Arg::I(rank));
            push(&mut sql, " OR (priority_rank = $?", Arg::I(rank));
            push(&mut sql, " AND (arrival > $?", Arg::I(at));
            push(&mut sql, " OR (arrival = $?", Arg::I(at));
            push(&mut sql, " AND id > $?)))) ", Arg::S(id));
        }
        sql.push_str(&format!(" ORDER BY priority_rank, arrival, id LIMIT {}", limit + 1));
        let mut q = sqlx::query(&sql);
        for a in args {
            q = match a {
                // PostgreSQL text cannot hold NUL; stored values have U+FFFD in its place.
                Arg::S(s) => q.bind(nul_free(&s)),
                Arg::I(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut items: Vec<Item> = rows.iter().map(item).collect::<Result<_, _>>()?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|i| format!("{}.{}.{}", priority_rank(&i.priority), arrival_of(&rows[limit - 1]), i.id))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Apply a reviewer's change if `version` is current; returns the new item.
    pub async fn update(&self, id: &str, version: i64, patch: &Patch, actor: &str) -> Result<Item, StoreError> {
        // No stored id holds NUL (PostgreSQL text cannot): look up its U+FFFD form.
        let id = nul_free(id);
        let id = id.as_str();
        // SQLite: take the write lock up front (a read transaction cannot wait
        // to become a writer); PostgreSQL: the conditional UPDATE below waits
        // for a concurrent writer's row lock, then finds the version changed.
        let mut tx =
            if self.sqlite { self.pool.begin_with("BEGIN IMMEDIATE").await? } else { self.pool.begin().await? };
        let row = sqlx::query("SELECT * FROM items WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
        let cur = row.map(|r| item(&r)).transpose()?.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        if cur.version != version {
            return Err(StoreError::Conflict { id: id.to_string(), current: cur.version, given: version });
        }
        let mut changes = serde_json::Map::new();
        let mut status = cur.status;
        if let Some(s) = patch.status.filter(|s| *s != cur.status) {
            if !cur.status.can_move_to(s) {
                return Err(StoreError::Transition { from: cur.status.as_str(), to: s.as_str() });
            }
            changes.insert("status".into(), serde_json::json!({"from": cur.status, "to": s}));
            status = s;
        }
        let field = |new: &Option<String>, old: &Option<String>| -> Option<Option<String>> {
            let new = new.as_ref().map(|v| if v.is_empty() { None } else { Some(nul_free(v)) })?;
            (new != *old).then_some(new)
        };
        let assignee = field(&patch.assignee, &cur.assignee);
        if let Some(a) = &assignee {
            changes.insert("assignee".into(), serde_json::json!({"from": cur.assignee, "to": a}));
        }
        let note = field(&patch.note, &cur.note);
        if let Some(n) = &note {
            changes.insert("note".into(), serde_json::json!({"from": cur.note, "to": n}));
        }
        if changes.is_empty() {
            tx.rollback().await?;
            return Ok(cur);
        }
        let now = now_ms();
        let done = sqlx::query("UPDATE items SET status = $1, assignee = $2, note = $3, version = version + 1, updated_at = $4 WHERE id = $5 AND version = $6")
            .bind(status.as_str())
            .bind(assignee.unwrap_or(cur.assignee.clone()))
            .bind(note.unwrap_or(cur.note.clone()))
            .bind(now)
            .bind(id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            // another writer got there between our read and write
            tx.rollback().await?;
            let current = self.get(id).await?.version;
            return Err(StoreError::Conflict { id: id.to_string(), current, given: version });
        }
        sqlx::query("INSERT INTO item_history (item_id, version, at, actor, action, changes) VALUES ($1, $2, $3, $4, 'updated', $5)")
            .bind(id)
            .bind(version + 1)
            .bind(now)
            .bind(actor)
            .bind(serde_json::Value::Object(changes).to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                // two writers with the same version: the history key is the tie-breaker
                sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict { id: id.to_string(), current: version + 1, given: version },
                _ => StoreError::Db(e),
            })?;
        tx.commit().await?;
        self.get(id).await
    }

    /// The audit log of one item, oldest first.
    pub async fn history(&self, id: &str) -> Result<Vec<Change>, StoreError> {
        // No stored id holds NUL (PostgreSQL text cannot): look up its U+FFFD form.
        let id = nul_free(id);
        let id = id.as_str();
        let rows = sqlx::query(
            "SELECT version, at, actor, action, changes FROM item_history WHERE item_id = $1 ORDER BY version",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        rows.iter()
            .map(|r| {
                Ok(Change {
                    version: r.try_get("version")?,
                    at: rfc3339_ms(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    changes: serde_json::from_str(&r.try_get::<String, _>("changes")?).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Lexicon terms of the hits in items marked `false_positive`, with how
    /// many such items each appears in, most frequent first: feedback for the
    /// word lists.
    pub async fn false_positive_terms(&self) -> Result<Vec<TermCount>, StoreError> {
        let rows =
            sqlx::query("SELECT result FROM items WHERE status = 'false_positive'").fetch_all(&self.pool).await?;
        let mut counts: std::collections::BTreeMap<(String, String), (usize, usize)> = Default::default();
        for r in rows {
            let v: serde_json::Value = serde_json::from_str(&r.try_get::<String, _>("result")?).unwrap_or_default();
            let mut seen = std::collections::BTreeSet::new();
            for h in v["flags"]["hits"].as_array().into_iter().flatten() {
                let key = (h["term"].as_str().unwrap_or("").to_string(), h["flag"].as_str().unwrap_or("").to_string());
                let negated = h["negated"].as_bool().unwrap_or(false);
                if seen.insert(key.clone()) {
                    let e = counts.entry(key).or_default();
                    e.0 += 1;
                    e.1 += negated as usize;
                }
            }
        }
        let mut out: Vec<TermCount> = counts
            .into_iter()
            .map(|((term, flag), (items, negated))| TermCount { term, flag, items, negated })
            .collect();
        out.sort_by(|a, b| b.items.cmp(&a.items).then_with(|| a.term.cmp(&b.term)));
        Ok(out)
    }
}

/// Append one entry to the store-wide audit log inside `tx`.
async fn audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    actor: &str,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit_log (id, at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        // Sortable id (microseconds, then random): entries of one millisecond keep their order.
        .bind(format!("{:020}-{}", OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000, uuid::Uuid::new_v4()))
        .bind(now_ms())
        .bind(nul_free(actor))
        .bind(action)
        .bind(subject)
        .bind(detail.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A short pause before retrying a migration that lost a race.
async fn tracing_free_retry_pause() {
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}

/// Hex SHA-256 of a text: what an idempotency claim remembers of its item's
/// text (to tell a retry from a reused key), never the text itself.
pub fn text_sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// One idempotency key to claim with [`Store::insert_claimed`].
#[derive(Debug, Clone)]
pub struct KeyClaim {
    pub key: String,
    /// [`text_sha256`] of the item's text as received.
    pub text_sha256: String,
    /// Index into the stored items, when this item was stored.
    pub item: Option<usize>,
}

/// A live idempotency claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub text_sha256: String,
    /// The stored item, when the first request stored it.
    pub item_id: Option<String>,
}

/// What [`Store::delete_customer`] deleted.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Deleted {
    /// The customer's salted hash, as the audit log names it.
    pub customer_hash: String,
    pub items: u64,
    pub history_entries: u64,
}

/// One entry of the store-wide audit log.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// RFC 3339.
    pub at: String,
    /// The API key's name (or `retention` for the retention sweep).
    pub actor: String,
    /// `customer_deleted` or `retention_purge`.
    pub action: String,
    /// `customer:<salted hash>` or `items`.
    pub subject: String,
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

/// A lexicon term's false-positive count.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct TermCount {
    pub term: String,
    pub flag: String,
    /// Items marked false_positive with a hit of this term.
    pub items: usize,
    /// Of those, items where the hit was negated.
    pub negated: usize,
}

enum Arg {
    S(String),
    I(i64),
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

fn parse_cursor(c: &str) -> Result<(i64, i64, String), StoreError> {
    let mut it = c.splitn(3, '.');
    let bad = || StoreError::Cursor(c.to_string());
    let rank = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let at = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let id = it.next().filter(|x| !x.is_empty()).ok_or_else(bad)?.to_string();
    Ok((rank, at, id))
}

fn arrival_of(r: &AnyRow) -> i64 {
    r.try_get("arrival").unwrap_or_default()
}

fn item(r: &AnyRow) -> Result<Item, StoreError> {
    let flags: String = r.try_get("flags")?;
    let status: String = r.try_get("status")?;
    Ok(Item {
        id: r.try_get("id")?,
        caller_id: r.try_get("caller_id")?,
        channel: r.try_get("channel")?,
        customer_ref: r.try_get("customer_ref")?,
        received_at: rfc3339_ms(r.try_get("received_at")?),
        text: r.try_get("text")?,
        result: serde_json::from_str(&r.try_get::<String, _>("result")?).unwrap_or_default(),
        flags: flags.split(',').filter(|f| !f.is_empty()).map(String::from).collect(),
        max_severity: r.try_get::<i64, _>("max_severity")? as u8,
        category: r.try_get("category")?,
        escalation: r.try_get::<i64, _>("escalation")? as u8,
        priority: r.try_get("priority")?,
        route: r.try_get("route")?,
        status: status.parse().map_err(|e: String| StoreError::Db(sqlx::Error::Protocol(e)))?,
        assignee: r.try_get("assignee")?,
        note: r.try_get("note")?,
        version: r.try_get("version")?,
        updated_at: rfc3339_ms(r.try_get("updated_at")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        use Status::*;
        assert!(New.can_move_to(InReview) && InReview.can_move_to(Confirmed) && New.can_move_to(FalsePositive));
        assert!(Confirmed.can_move_to(Resolved) && Resolved.can_move_to(InReview));
        assert!(!Resolved.can_move_to(Confirmed) && !FalsePositive.can_move_to(New) && !Confirmed.can_move_to(New));
        assert!(New.is_open() && InReview.is_open() && !Resolved.is_open());
        assert_eq!("false_positive".parse::<Status>().unwrap(), FalsePositive);
        assert!("done".parse::<Status>().is_err());
    }

    #[test]
    fn times_have_three_fraction_digits_and_sort_as_text() {
        // 09:36:06.310 and .316: with trailing zeros trimmed, ".31Z" would sort after ".316Z".
        let (a, b) = (rfc3339_ms(1_795_426_566_310), rfc3339_ms(1_795_426_566_316));
        assert_eq!(a, "2026-11-23T09:36:06.310Z");
        assert_eq!(b, "2026-11-23T09:36:06.316Z");
        assert!(a < b);
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn cursors_and_urls() {
        assert_eq!(parse_cursor("2.1700000000000.ab-cd").unwrap(), (2, 1_700_000_000_000, "ab-cd".into()));
        assert!(parse_cursor("x.1.a").is_err() && parse_cursor("1.2").is_err());
        assert_eq!(redact("postgres://kesu:secret@db:5432/kesu"), "postgres://kesu:***@db:5432/kesu");
        assert_eq!(redact("sqlite://kesu.db"), "sqlite://kesu.db");
        assert_eq!(with_create("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db?mode=rwc");
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }
}
