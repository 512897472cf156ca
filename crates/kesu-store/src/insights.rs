//! Insights aggregates: every classified item counted into time buckets
//! (minute, hour, day) by category, escalation level, priority, route and
//! channel, with one more row per flag and per counted tag.
//!
//! Guarantees:
//! * Counting happens in the transaction that stores the item and claims its
//!   idempotency key ([`crate::Store::insert_claimed`]): what is acknowledged
//!   is counted, a failed request counts nothing, and an item with a key is
//!   counted once however often it is retried or replayed (any replica).
//! * Counts are additive (`n = n + excluded.n`), so replicas on one database
//!   add to the same rows; batches write their rows in one sorted order, so
//!   two PostgreSQL writers do not deadlock on them.
//! * No text is kept: a row holds the labels, the channel and tag values
//!   (PII-masked by the caller) and a count.
//! * Bounded: a bucket holds at most `3 categories x 4 levels x 4 priorities x
//!   routes x (channels + 1)` combinations times `(1 + flags + tag values)`
//!   dimension rows. Channels and each tag's values are capped
//!   ([`InsightsConfig::max_values`], shared by replicas through the
//!   `insight_values` table; two replicas registering at the same moment may
//!   pass the cap by one each); a value past the cap counts as [`OTHER`].
//! * Buckets start at the configured time zone's minute, hour and day
//!   boundaries (unix ms of the start). A grain's rows older than its
//!   retention are deleted by [`crate::Store::purge_insights`]; each grain is
//!   written directly, so an hour or day keeps its counts after its minutes go.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// The value counted for a channel or tag value past the cap.
pub const OTHER: &str = "(other)";

/// The channel counted for an item without one.
pub const NO_CHANNEL: &str = "";

/// Bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Grain {
    Minute,
    Hour,
    Day,
}

impl Grain {
    pub const ALL: [Grain; 3] = [Grain::Minute, Grain::Hour, Grain::Day];

    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Minute => "minute",
            Grain::Hour => "hour",
            Grain::Day => "day",
        }
    }
}

impl FromStr for Grain {
    type Err = String;
    fn from_str(s: &str) -> Result<Grain, String> {
        Grain::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| format!("unknown grain {s:?}; one of minute, hour, day"))
    }
}

/// What and how the store counts.
#[derive(Debug, Clone)]
pub struct InsightsConfig {
    /// Count classified items at all (`false`: no rows are written).
    pub enabled: bool,
    /// IANA name of the buckets' time zone.
    pub time_zone: String,
    tz: jiff::tz::TimeZone,
    /// Tag names counted (others an item carries are ignored here).
    pub tags: Vec<String>,
    /// Most distinct values of the channel and of each tag.
    pub max_values: usize,
    /// How long each grain's buckets are kept, in seconds (minute, hour, day; 0 = forever).
    pub retention_secs: [u64; 3],
    /// Queue items with an embedding for hot-spot clustering.
    pub hotspots: bool,
}

impl Default for InsightsConfig {
    fn default() -> Self {
        InsightsConfig::new("Asia/Shanghai", Vec::new()).expect("a known zone")
    }
}

impl InsightsConfig {
    /// Counting on, in time zone `tz` (an IANA name such as `Asia/Shanghai`
    /// or `UTC`), counting the tags named `tags`; defaults otherwise: 64
    /// values, minutes kept 2 days, hours 90 days, days 3 years.
    pub fn new(tz: &str, tags: Vec<String>) -> Result<InsightsConfig, String> {
        let zone = jiff::tz::TimeZone::get(tz).map_err(|e| format!("unknown time zone {tz:?}: {e}"))?;
        Ok(InsightsConfig {
            enabled: true,
            time_zone: tz.to_string(),
            tz: zone,
            tags,
            max_values: 64,
            retention_secs: [2 * 86_400, 90 * 86_400, 3 * 366 * 86_400],
            hotspots: true,
        })
    }

    /// The start (unix ms) of the `grain` bucket holding `at_ms`.
    pub fn bucket_start(&self, grain: Grain, at_ms: i64) -> i64 {
        let Ok(ts) = jiff::Timestamp::from_millisecond(at_ms) else { return at_ms };
        let z = ts.to_zoned(self.tz.clone());
        let start = match grain {
            Grain::Minute => z.with().second(0).subsec_nanosecond(0).build(),
            Grain::Hour => z.with().minute(0).second(0).subsec_nanosecond(0).build(),
            Grain::Day => z.start_of_day(),
        };
        start.map(|s| s.timestamp().as_millisecond()).unwrap_or(at_ms)
    }

    /// The start of the bucket after the one starting at `start`.
    pub fn next_bucket(&self, grain: Grain, start: i64) -> i64 {
        let Ok(ts) = jiff::Timestamp::from_millisecond(start) else { return start + 60_000 };
        let z = ts.to_zoned(self.tz.clone());
        let next = match grain {
            Grain::Minute => z.checked_add(jiff::Span::new().minutes(1)),
            Grain::Hour => z.checked_add(jiff::Span::new().hours(1)),
            Grain::Day => z.tomorrow().and_then(|t| t.start_of_day()),
        };
        next.map(|n| n.timestamp().as_millisecond()).unwrap_or(start + 60_000)
    }

    /// Bucket starts covering `[from_ms, to_ms)` (the first one holds
    /// `from_ms`), at most `max`; `None` when there would be more.
    pub fn buckets(&self, grain: Grain, from_ms: i64, to_ms: i64, max: usize) -> Option<Vec<i64>> {
        let mut out = Vec::new();
        let mut b = self.bucket_start(grain, from_ms);
        while b < to_ms {
            if out.len() == max {
                return None;
            }
            out.push(b);
            let n = self.next_bucket(grain, b);
            if n <= b {
                break;
            }
            b = n;
        }
        Some(out)
    }

    /// `at_ms` as RFC 3339 in the configured zone (`2026-12-04T08:00:00+08:00`).
    pub fn format(&self, at_ms: i64) -> String {
        match jiff::Timestamp::from_millisecond(at_ms) {
            Ok(ts) => ts.to_zoned(self.tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            Err(_) => at_ms.to_string(),
        }
    }

    /// The oldest bucket start of `grain` still kept at `now_ms`.
    pub fn kept_since(&self, grain: Grain, now_ms: i64) -> i64 {
        match self.retention_secs[grain as usize] {
            0 => i64::MIN,
            s => now_ms.saturating_sub((s as i64).saturating_mul(1000)),
        }
    }
}

/// One classified item to count.
#[derive(Debug, Clone)]
pub struct Counted {
    /// Its event time (unix ms): the caller's `received_at`, else arrival.
    pub at_ms: i64,
    pub category: String,
    pub escalation: u8,
    pub priority: String,
    pub route: String,
    /// PII-masked.
    pub channel: Option<String>,
    pub flags: Vec<String>,
    /// Tag name -> value (PII-masked); only configured names are counted.
    pub tags: BTreeMap<String, String>,
    /// The sentence embedding, for hot spots (empty: not clustered).
    pub embedding: Vec<f32>,
    /// Keyword candidates of the PII-masked text (`kesu_core::insights::hotspots::keyword_candidates`).
    pub words: Vec<String>,
    /// Index of this item in the same insert's stored items, when it is stored (hot-spot examples).
    pub stored: Option<usize>,
}

/// One aggregate row's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    grain: Grain,
    bucket: i64,
    category: String,
    escalation: u8,
    priority: String,
    route: String,
    channel: String,
    /// `""`: the item itself; `flag:NAME`; `tag:NAME=VALUE`.
    dim: String,
}

/// A label column a series can be broken down by or filtered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Column {
    Category,
    Escalation,
    Priority,
    Route,
    Channel,
}

impl Column {
    pub const ALL: [Column; 5] =
        [Column::Category, Column::Escalation, Column::Priority, Column::Route, Column::Channel];

    pub fn as_str(self) -> &'static str {
        match self {
            Column::Category => "category",
            Column::Escalation => "escalation",
            Column::Priority => "priority",
            Column::Route => "route",
            Column::Channel => "channel",
        }
    }
}

/// What a query breaks counts down by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum By {
    Column(Column),
    /// Each flag (an item with two flags counts under both).
    Flag,
    /// Each value of one tag.
    Tag(String),
}

impl FromStr for By {
    type Err = String;
    fn from_str(s: &str) -> Result<By, String> {
        if s == "flag" {
            return Ok(By::Flag);
        }
        if let Some(t) = s.strip_prefix("tag:") {
            return Ok(By::Tag(t.to_string()));
        }
        Column::ALL.into_iter().find(|c| c.as_str() == s).map(By::Column).ok_or_else(|| {
            format!("unknown breakdown {s:?}; one of category, escalation, priority, route, channel, flag, tag:NAME")
        })
    }
}

/// Which counted items a query reads.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Column equals value (escalation as `"0"`..`"3"`; channel `""` = none).
    pub equal: Vec<(Column, String)>,
    /// Only items with this flag.
    pub flag: Option<String>,
    /// Only items with this tag value.
    pub tag: Option<(String, String)>,
}

/// One bucket x breakdown key of a query's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub bucket: i64,
    /// The breakdown value (`""` without a breakdown).
    pub key: String,
    pub count: i64,
    /// Sum of the escalation levels (mean = `escalation_sum / count`).
    pub escalation_sum: i64,
}

/// Per-process memory of which channel and tag values are registered
/// (values are never unregistered, so a known one stays known).
#[derive(Default)]
pub(crate) struct ValueCache {
    known: HashMap<String, HashSet<String>>,
    full: HashSet<String>,
}

/// Rows per multi-row upsert statement (9 binds each; `touched` is inlined).
const UPSERT_CHUNK: usize = 100;

impl Store {
    /// Use `cfg` for counting. The first store to count fixes the database's
    /// time zone (`kesu_meta.insights_time_zone`); a replica configured with
    /// another zone is refused here, as its day buckets would not line up.
    pub async fn with_insights(mut self, cfg: InsightsConfig) -> Result<Store, StoreError> {
        if cfg.enabled {
            sqlx::query(
                "INSERT INTO kesu_meta (name, value) VALUES ('insights_time_zone', $1) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&cfg.time_zone)
            .execute(&self.pool)
            .await?;
            let tz: String = sqlx::query("SELECT value FROM kesu_meta WHERE name = 'insights_time_zone'")
                .fetch_one(&self.pool)
                .await?
                .try_get("value")?;
            if tz != cfg.time_zone {
                return Err(StoreError::Db(sqlx::Error::Protocol(format!(
                    "this database counts insights in time zone {tz}, not {}: set KESU_INSIGHTS_TIME_ZONE={tz}",
                    cfg.time_zone
                ))));
            }
        }
        self.insights = std::sync::Arc::new(cfg);
        Ok(self)
    }

    /// The counting configuration.
    pub fn insights(&self) -> &InsightsConfig {
        &self.insights
    }

    /// `value` of `dim` as counted: itself when registered (registering it
    /// while `dim` has fewer than the cap), else [`OTHER`].
    async fn counted_value(&self, dim: &str, value: &str) -> Result<String, StoreError> {
        {
            let cache = self.values.lock().unwrap_or_else(|p| p.into_inner());
            if cache.known.get(dim).is_some_and(|k| k.contains(value)) {
                return Ok(value.to_string());
            }
        }
        let full = self.values.lock().unwrap_or_else(|p| p.into_inner()).full.contains(dim);
        if !full {
            sqlx::query(
                "INSERT INTO insight_values (dim, value) SELECT $1, $2 WHERE (SELECT COUNT(*) FROM insight_values WHERE dim = $1) < $3 ON CONFLICT (dim, value) DO NOTHING",
            )
            .bind(dim)
            .bind(value)
            .bind(self.insights.max_values as i64)
            .execute(&self.pool)
            .await?;
        }
        let there = sqlx::query("SELECT 1 AS one FROM insight_values WHERE dim = $1 AND value = $2")
            .bind(dim)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        let mut cache = self.values.lock().unwrap_or_else(|p| p.into_inner());
        if there {
            cache.known.entry(dim.to_string()).or_default().insert(value.to_string());
            Ok(value.to_string())
        } else {
            cache.full.insert(dim.to_string());
            Ok(OTHER.to_string())
        }
    }

    /// The aggregate rows `items` add (values past their caps as [`OTHER`]),
    /// read before the counting transaction opens.
    pub(crate) async fn count_rows(&self, items: &[Counted], now_ms: i64) -> Result<Vec<(Key, i64)>, StoreError> {
        let cfg = &self.insights;
        let mut rows: HashMap<Key, i64> = HashMap::new();
        if !cfg.enabled {
            return Ok(Vec::new());
        }
        for it in items {
            let channel = match it.channel.as_deref() {
                None => NO_CHANNEL.to_string(),
                Some(c) => self.counted_value("channel", c).await?,
            };
            let mut dims = vec![String::new()];
            dims.extend(it.flags.iter().map(|f| format!("flag:{f}")));
            for name in &cfg.tags {
                if let Some(v) = it.tags.get(name) {
                    let v = self.counted_value(&format!("tag:{name}"), v).await?;
                    dims.push(format!("tag:{name}={v}"));
                }
            }
            for grain in Grain::ALL {
                let bucket = cfg.bucket_start(grain, it.at_ms);
                if bucket < cfg.kept_since(grain, now_ms) {
                    continue;
                }
                for dim in &dims {
                    let key = Key {
                        grain,
                        bucket,
                        category: it.category.clone(),
                        escalation: it.escalation,
                        priority: it.priority.clone(),
                        route: it.route.clone(),
                        channel: channel.clone(),
                        dim: dim.clone(),
                    };
                    *rows.entry(key).or_default() += 1;
                }
            }
        }
        let mut rows: Vec<(Key, i64)> = rows.into_iter().collect();
        rows.sort();
        Ok(rows)
    }

    /// Delete each grain's buckets older than its retention; returns the rows deleted.
    pub async fn purge_insights(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut n = 0;
        for g in Grain::ALL {
            let since = self.insights.kept_since(g, now_ms);
            if since == i64::MIN {
                continue;
            }
            n += sqlx::query("DELETE FROM insight_counts WHERE grain = $1 AND bucket < $2")
                .bind(g.as_str())
                .bind(since)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    /// Counts of the `grain` buckets starting in `[from_ms, to_ms)`, of the
    /// items `sel` picks, per bucket and (with `by`) per breakdown value.
    /// Buckets without items are absent. `by` flag or tag cannot be combined
    /// with a flag or tag selection (one dimension row per query).
    pub async fn insight_cells(
        &self,
        grain: Grain,
        from_ms: i64,
        to_ms: i64,
        sel: &Selection,
        by: Option<&By>,
    ) -> Result<Vec<Cell>, StoreError> {
        let mut sql = String::from("SELECT bucket, ");
        let mut binds: Vec<String> = vec![grain.as_str().to_string()];
        let key = match by {
            None => "''".to_string(),
            Some(By::Column(Column::Escalation)) => "CAST(escalation AS TEXT)".to_string(),
            Some(By::Column(c)) => c.as_str().to_string(),
            Some(By::Flag | By::Tag(_)) => "dim".to_string(),
        };
        sql.push_str(&format!(
            "{key} AS k, CAST(SUM(n) AS BIGINT) AS c, CAST(SUM(n * escalation) AS BIGINT) AS e FROM insight_counts WHERE grain = $1 AND bucket >= {} AND bucket < {}",
            from_ms, to_ms
        ));
        let dim_filter = match (by, &sel.flag, &sel.tag) {
            (Some(By::Flag), None, None) => Some(("LIKE", "flag:%".to_string())),
            (Some(By::Tag(t)), None, None) => Some(("LIKE", format!("tag:{}=%", like_escape(t)))),
            (Some(By::Flag | By::Tag(_)), _, _) => {
                return Err(StoreError::Query(
                    "a flag or tag breakdown cannot be combined with a flag or tag filter".into(),
                ))
            }
            (_, Some(_), Some(_)) => return Err(StoreError::Query("filter by a flag or by a tag, not both".into())),
            (_, Some(f), None) => Some(("=", format!("flag:{f}"))),
            (_, None, Some((t, v))) => Some(("=", format!("tag:{t}={v}"))),
            (_, None, None) => Some(("=", String::new())),
        };
        if let Some((op, v)) = dim_filter {
            binds.push(v);
            sql.push_str(&format!(" AND dim {op} ${}", binds.len()));
            if op == "LIKE" {
                sql.push_str(" ESCAPE '\\'");
            }
        }
        for (c, v) in &sel.equal {
            if *c == Column::Escalation {
                let level: i64 = v.parse().map_err(|_| StoreError::Query(format!("escalation {v:?} is not 0-3")))?;
                sql.push_str(&format!(" AND escalation = {level}"));
            } else {
                binds.push(v.clone());
                sql.push_str(&format!(" AND {} = ${}", c.as_str(), binds.len()));
            }
        }
        sql.push_str(" GROUP BY bucket, k ORDER BY bucket, k");
        let mut q = sqlx::query(&sql);
        for b in &binds {
            // PostgreSQL refuses NUL in text: a filter with one matches what was stored for it.
            q = q.bind(crate::nul_free(b));
        }
        let strip = match by {
            Some(By::Flag) => "flag:".len(),
            Some(By::Tag(t)) => "tag:".len() + t.len() + 1,
            _ => 0,
        };
        let mut out = Vec::new();
        for r in q.fetch_all(&self.pool).await? {
            let k: String = r.try_get("k")?;
            out.push(Cell {
                bucket: r.try_get("bucket")?,
                key: k.get(strip..).unwrap_or_default().to_string(),
                count: r.try_get("c")?,
                escalation_sum: r.try_get("e")?,
            });
        }
        Ok(out)
    }
}

impl Store {
    /// Buckets of `grain` starting in `[from_ms, to_ms)` whose counts changed
    /// at or after `since_ms` (wall clock), oldest first.
    pub async fn touched_buckets(
        &self,
        grain: Grain,
        from_ms: i64,
        to_ms: i64,
        since_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT bucket FROM insight_counts WHERE grain = $1 AND bucket >= $2 AND bucket < $3 AND touched >= $4 ORDER BY bucket",
        )
        .bind(grain.as_str())
        .bind(from_ms)
        .bind(to_ms)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| r.try_get("bucket").map_err(StoreError::from)).collect()
    }

    /// The oldest bucket of `grain` with counts (where the data begins), if any.
    pub async fn first_bucket(&self, grain: Grain) -> Result<Option<i64>, StoreError> {
        let r = sqlx::query("SELECT MIN(bucket) AS b FROM insight_counts WHERE grain = $1")
            .bind(grain.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get::<Option<i64>, _>("b").ok().flatten())
    }

    /// The newest minute bucket with counts (the event-time watermark), if any.
    pub async fn newest_minute(&self) -> Result<Option<i64>, StoreError> {
        let r = sqlx::query("SELECT MAX(bucket) AS b FROM insight_counts WHERE grain = 'minute'")
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get::<Option<i64>, _>("b").ok().flatten())
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Write `rows` inside `tx` (adding to existing counts).
pub(crate) async fn upsert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[(Key, i64)],
    now_ms: i64,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(UPSERT_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO insight_counts (grain, bucket, category, escalation, priority, route, channel, dim, n, touched) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 9;
            if i > 0 {
                sql.push_str(", ");
            }
            let marks: Vec<String> = (1..=9).map(|k| format!("${}", b + k)).collect();
            sql.push_str(&format!("({}, {now_ms})", marks.join(", ")));
        }
        sql.push_str(
            " ON CONFLICT (grain, bucket, category, escalation, priority, route, channel, dim) DO UPDATE SET n = insight_counts.n + excluded.n, touched = excluded.touched",
        );
        let mut q = sqlx::query(&sql);
        for (k, n) in chunk {
            q = q
                .bind(k.grain.as_str())
                .bind(k.bucket)
                .bind(crate::nul_free(&k.category))
                .bind(k.escalation as i64)
                .bind(crate::nul_free(&k.priority))
                .bind(crate::nul_free(&k.route))
                .bind(crate::nul_free(&k.channel))
                .bind(crate::nul_free(&k.dim))
                .bind(*n);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The tables (created by every start, see `MIGRATIONS_V2`).
pub(crate) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS insight_counts (
        grain TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        category TEXT NOT NULL,
        escalation BIGINT NOT NULL,
        priority TEXT NOT NULL,
        route TEXT NOT NULL,
        channel TEXT NOT NULL,
        dim TEXT NOT NULL,
        n BIGINT NOT NULL,
        touched BIGINT NOT NULL,
        PRIMARY KEY (grain, bucket, category, escalation, priority, route, channel, dim))",
    "CREATE TABLE IF NOT EXISTS insight_values (dim TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (dim, value))",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn buckets_start_at_the_zones_boundaries() {
        let sh = InsightsConfig::new("Asia/Shanghai", vec![]).unwrap();
        let kolkata = InsightsConfig::new("Asia/Kolkata", vec![]).unwrap();
        let utc = InsightsConfig::new("UTC", vec![]).unwrap();
        let at = ms("2026-12-03T17:45:30.250Z"); // 01:45:30 on the 4th in Shanghai, 23:15:30 in Kolkata
        let cases: &[(&InsightsConfig, Grain, &str)] = &[
            (&sh, Grain::Minute, "2026-12-03T17:45:00Z"),
            (&sh, Grain::Hour, "2026-12-03T17:00:00Z"),
            (&sh, Grain::Day, "2026-12-03T16:00:00Z"),
            (&kolkata, Grain::Hour, "2026-12-03T17:30:00Z"),
            (&kolkata, Grain::Day, "2026-12-02T18:30:00Z"),
            (&utc, Grain::Day, "2026-12-03T00:00:00Z"),
        ];
        for (cfg, g, want) in cases {
            assert_eq!(cfg.bucket_start(*g, at), ms(want), "{} {:?}", cfg.time_zone, g);
        }
        assert_eq!(sh.format(ms("2026-12-03T16:00:00Z")), "2026-12-04T00:00:00+08:00");
    }

    #[test]
    fn days_follow_daylight_saving() {
        let ny = InsightsConfig::new("America/New_York", vec![]).unwrap();
        // 2026-03-08 has 23 hours in New York.
        let d = ny.bucket_start(Grain::Day, ms("2026-03-08T12:00:00Z"));
        assert_eq!(ny.next_bucket(Grain::Day, d) - d, 23 * 3_600_000);
        let b = ny.buckets(Grain::Hour, d, ny.next_bucket(Grain::Day, d), 100).unwrap();
        assert_eq!(b.len(), 23);
        assert!(ny.buckets(Grain::Minute, d, d + 3_600_000, 59).is_none());
        assert_eq!(ny.buckets(Grain::Minute, d, d + 3_600_000, 60).unwrap().len(), 60);
    }

    #[test]
    fn breakdowns_parse() {
        assert_eq!("flag".parse::<By>(), Ok(By::Flag));
        assert_eq!("tag:region".parse::<By>(), Ok(By::Tag("region".into())));
        assert_eq!("escalation".parse::<By>(), Ok(By::Column(Column::Escalation)));
        assert!("text".parse::<By>().is_err());
        assert!("week".parse::<Grain>().is_err());
        assert!(InsightsConfig::new("Mars/Olympus", vec![]).is_err());
    }
}
