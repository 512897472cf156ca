//! The alert log, webhook deliveries, and the lease that makes one replica
//! the insights worker.
//!
//! Guarantees:
//! * [`Store::take_lease`]: at most one holder per lease name at a time, as
//!   long as the replicas' clocks agree to within the lease's length (the
//!   holder renews it well before it runs out).
//! * [`Store::raise_alert`]: an alert is logged once per de-duplication key
//!   (rule and bucket, or rule and issue) however many workers raise it, and
//!   its deliveries (one per target) are queued in the same transaction.
//! * [`Store::move_alert`]: acknowledge / resolve record who and when, with
//!   an optimistic version check like review items.

use serde::Serialize;
use sqlx::Row;

use crate::{rfc3339_ms, Store, StoreError};

/// An alert in the log.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Alert {
    pub id: String,
    pub rule: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Bucket width of the rule.
    pub grain: String,
    /// Start of the bucket it fired on (RFC 3339, UTC).
    pub bucket: String,
    /// When it fired (RFC 3339, UTC).
    pub fired_at: String,
    /// What was measured (value, expected, z, count, issue...).
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub detail: serde_json::Value,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    pub version: i64,
}

/// A new alert.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// Unique per alert (e.g. `rule@bucket`).
    pub dedupe: String,
    pub rule: String,
    pub severity: String,
    pub grain: String,
    pub bucket_ms: i64,
    pub detail: serde_json::Value,
    /// Webhook targets to deliver to.
    pub targets: Vec<String>,
}

/// A delivery due now.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub alert: Alert,
    pub target: String,
    pub attempts: i64,
}

fn alert_of(r: &sqlx::any::AnyRow) -> Result<Alert, StoreError> {
    let opt = |c: &str| -> Result<Option<String>, StoreError> { Ok(r.try_get::<Option<i64>, _>(c)?.map(rfc3339_ms)) };
    Ok(Alert {
        id: r.try_get("id")?,
        rule: r.try_get("rule")?,
        severity: r.try_get("severity")?,
        grain: r.try_get("grain")?,
        bucket: rfc3339_ms(r.try_get("bucket")?),
        fired_at: rfc3339_ms(r.try_get("fired_ms")?),
        detail: serde_json::from_str(&r.try_get::<String, _>("detail")?).unwrap_or(serde_json::Value::Null),
        status: r.try_get("status")?,
        acknowledged_by: r.try_get("acknowledged_by")?,
        acknowledged_at: opt("acknowledged_ms")?,
        resolved_by: r.try_get("resolved_by")?,
        resolved_at: opt("resolved_ms")?,
        version: r.try_get("version")?,
    })
}

const COLUMNS: &str = "id, rule, severity, grain, bucket, fired_ms, detail, status, acknowledged_by, acknowledged_ms, resolved_by, resolved_ms, version";

impl Store {
    /// Take or renew lease `name` for `holder` until `now_ms + ttl_ms`;
    /// true when `holder` holds it now.
    pub async fn take_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool, StoreError> {
        sqlx::query(
            "INSERT INTO kesu_leases (name, holder, until_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
             WHERE kesu_leases.until_ms < $4 OR kesu_leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        let h: String = sqlx::query("SELECT holder FROM kesu_leases WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?
            .try_get("holder")?;
        Ok(h == holder)
    }

    /// Give lease `name` up if `holder` has it (a clean shutdown).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM kesu_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Log `a` unless an alert with its de-duplication key exists; returns
    /// the new alert, or `None` for a duplicate.
    pub async fn raise_alert(&self, a: &NewAlert) -> Result<Option<Alert>, StoreError> {
        let now = crate::now_ms();
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "INSERT INTO alerts (id, dedupe, rule, severity, grain, bucket, fired_ms, detail, status, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', 1) ON CONFLICT (dedupe) DO NOTHING",
        )
        .bind(&id)
        .bind(&a.dedupe)
        .bind(&a.rule)
        .bind(&a.severity)
        .bind(&a.grain)
        .bind(a.bucket_ms)
        .bind(now)
        .bind(a.detail.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        for t in &a.targets {
            sqlx::query("INSERT INTO alert_deliveries (alert_id, target, attempts, next_ms) VALUES ($1, $2, 0, $3)")
                .bind(&id)
                .bind(t)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.alert(&id).await.map(Some)
    }

    /// The newest bucket start at which `rule` fired, at or before `bucket_ms`.
    pub async fn last_fired(&self, rule: &str, bucket_ms: i64) -> Result<Option<i64>, StoreError> {
        let r = sqlx::query("SELECT MAX(bucket) AS b FROM alerts WHERE rule = $1 AND bucket <= $2")
            .bind(rule)
            .bind(bucket_ms)
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get::<Option<i64>, _>("b").ok().flatten())
    }

    /// One alert.
    pub async fn alert(&self, id: &str) -> Result<Alert, StoreError> {
        let r = sqlx::query(&format!("SELECT {COLUMNS} FROM alerts WHERE id = $1"))
            .bind(crate::nul_free(id))
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        alert_of(&r)
    }

    /// The newest `limit` alerts, optionally of one status, with buckets in `[from_ms, to_ms)`.
    pub async fn alerts(
        &self,
        status: Option<&str>,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<Alert>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts WHERE bucket >= $1 AND bucket < $2{} ORDER BY bucket DESC, fired_ms DESC, id LIMIT $3",
            if status.is_some() { " AND status = $4" } else { "" }
        );
        let mut q = sqlx::query(&sql).bind(from_ms).bind(to_ms).bind(limit);
        if let Some(s) = status {
            q = q.bind(s);
        }
        q.fetch_all(&self.pool).await?.iter().map(alert_of).collect()
    }

    /// Acknowledge (`to = "acknowledged"`) or resolve an alert as `actor`,
    /// if it is at `version`. Acknowledging a resolved alert is refused.
    pub async fn move_alert(&self, id: &str, version: i64, to: &str, actor: &str) -> Result<Alert, StoreError> {
        let cur = self.alert(id).await?;
        if cur.version != version {
            return Err(StoreError::Conflict { id: id.into(), current: cur.version, given: version });
        }
        let ok =
            matches!((cur.status.as_str(), to), ("open", "acknowledged" | "resolved") | ("acknowledged", "resolved"));
        if !ok {
            let st = |s: &str| -> &'static str {
                match s {
                    "open" => "open",
                    "acknowledged" => "acknowledged",
                    _ => "resolved",
                }
            };
            return Err(StoreError::Transition { from: st(&cur.status), to: st(to) });
        }
        let now = crate::now_ms();
        let (by, at) =
            if to == "acknowledged" { ("acknowledged_by", "acknowledged_ms") } else { ("resolved_by", "resolved_ms") };
        let n = sqlx::query(&format!(
            "UPDATE alerts SET status = $1, {by} = $2, {at} = $3, version = version + 1 WHERE id = $4 AND version = $5"
        ))
        .bind(to)
        .bind(crate::nul_free(actor))
        .bind(now)
        .bind(id)
        .bind(version)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            let cur = self.alert(id).await?;
            return Err(StoreError::Conflict { id: id.into(), current: cur.version, given: version });
        }
        self.alert(id).await
    }

    /// Deliveries due at `now_ms` (not delivered, fewer than `max_attempts`), oldest first.
    pub async fn due_deliveries(
        &self,
        now_ms: i64,
        max_attempts: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT alert_id, target, attempts FROM alert_deliveries WHERE delivered_ms IS NULL AND attempts < $1 AND next_ms <= $2 ORDER BY next_ms LIMIT $3",
        )
        .bind(max_attempts)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let id: String = r.try_get("alert_id")?;
            out.push(Delivery {
                alert: self.alert(&id).await?,
                target: r.try_get("target")?,
                attempts: r.try_get("attempts")?,
            });
        }
        Ok(out)
    }

    /// Record a delivery attempt: delivered, or failed with `error` and the next try at `next_ms`.
    pub async fn delivery_attempted(
        &self,
        alert_id: &str,
        target: &str,
        delivered: bool,
        error: Option<&str>,
        next_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_deliveries SET attempts = attempts + 1, delivered_ms = $1, last_error = $2, next_ms = $3 WHERE alert_id = $4 AND target = $5",
        )
        .bind(delivered.then(crate::now_ms))
        .bind(error.map(crate::nul_free))
        .bind(next_ms)
        .bind(alert_id)
        .bind(target)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deliveries of one alert: (target, attempts, delivered, last error).
    pub async fn deliveries(&self, alert_id: &str) -> Result<Vec<(String, i64, bool, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT target, attempts, delivered_ms, last_error FROM alert_deliveries WHERE alert_id = $1 ORDER BY target",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("target")?,
                    r.try_get("attempts")?,
                    r.try_get::<Option<i64>, _>("delivered_ms")?.is_some(),
                    r.try_get("last_error")?,
                ))
            })
            .collect()
    }
}

pub(crate) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kesu_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY,
        dedupe TEXT NOT NULL UNIQUE,
        rule TEXT NOT NULL,
        severity TEXT NOT NULL,
        grain TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        fired_ms BIGINT NOT NULL,
        detail TEXT NOT NULL,
        status TEXT NOT NULL,
        acknowledged_by TEXT, acknowledged_ms BIGINT,
        resolved_by TEXT, resolved_ms BIGINT,
        version BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS alerts_bucket ON alerts (bucket)",
    "CREATE TABLE IF NOT EXISTS alert_deliveries (
        alert_id TEXT NOT NULL,
        target TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        next_ms BIGINT NOT NULL,
        delivered_ms BIGINT,
        last_error TEXT,
        PRIMARY KEY (alert_id, target))",
];
