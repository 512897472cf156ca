//! Hot-spot state shared by replicas: the queue of classified items waiting
//! to be clustered, the live issues (centroids), their hourly counts (items,
//! keywords, categories, flags, escalation) and example items.
//!
//! Guarantees:
//! * An item is queued in the transaction that counts it
//!   ([`crate::Store::insert_claimed`]), so what is counted is clustered,
//!   once.
//! * [`crate::Store::apply_clustering`] writes one batch's centroids,
//!   counts and examples and removes exactly that batch from the queue in one
//!   transaction; if another worker took any of the batch first, nothing is
//!   written (the caller reloads and tries again).
//! * Embeddings are queued as int8 with a per-vector scale (cosine to the
//!   original above 0.999, tested); centroids are kept as f32.
//! * Keywords are stored only as the PII-masked candidates the caller gives.

use std::collections::HashMap;

use base64::Engine;
use sqlx::Row;

use crate::insights::Counted;
use crate::{Store, StoreError};

/// Most example items kept per issue (the newest).
pub const EXAMPLES_PER_ISSUE: i64 = 5;

/// One queued item.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: String,
    pub at_ms: i64,
    pub embedding: Vec<f32>,
    pub words: Vec<String>,
    pub category: String,
    pub flags: Vec<String>,
    pub escalation: u8,
    /// Its stored item, when kept.
    pub item_id: Option<String>,
}

/// A live (or closed) issue's centroid.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub id: String,
    pub vector: Vec<f32>,
    pub n: i64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// One batch's clustering outcome, written by [`Store::apply_clustering`].
#[derive(Debug, Default)]
pub struct Clustered {
    /// The queue ids processed.
    pub done: Vec<String>,
    /// Issues created or moved.
    pub issues: Vec<Issue>,
    /// Issues closed.
    pub closed: Vec<String>,
    /// (issue, hour bucket, dim, n): dim `""` items, `esc` escalation sum,
    /// `w:TERM`, `c:CATEGORY`, `f:FLAG`.
    pub counts: Vec<(String, i64, String, i64)>,
    /// (issue, item id, at_ms).
    pub examples: Vec<(String, String, i64)>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// int8 with one f32 scale per vector (the largest magnitude maps to 127).
fn encode_i8(v: &[f32]) -> String {
    let scale = v.iter().fold(0f32, |m, x| m.max(x.abs())).max(f32::MIN_POSITIVE) / 127.0;
    let mut out = scale.to_le_bytes().to_vec();
    out.extend(v.iter().map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8 as u8));
    b64().encode(out)
}

fn decode_i8(s: &str) -> Vec<f32> {
    let raw = b64().decode(s).unwrap_or_default();
    if raw.len() < 4 {
        return Vec::new();
    }
    let scale = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    raw[4..].iter().map(|b| *b as i8 as f32 * scale).collect()
}

fn encode_f32(v: &[f32]) -> String {
    b64().encode(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
}

fn decode_f32(s: &str) -> Vec<f32> {
    b64().decode(s).unwrap_or_default().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

const SEP: char = '\u{1f}';

/// Queue the items of `counted` that carry an embedding (inside the counting transaction).
pub(crate) async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    counted: &[Counted],
    ids: &[String],
) -> Result<(), StoreError> {
    for c in counted.iter().filter(|c| !c.embedding.is_empty()) {
        let words: Vec<String> = c.words.iter().map(|w| w.replace(SEP, "")).collect();
        sqlx::query(
            "INSERT INTO hotspot_queue (id, at_ms, embedding, words, category, flags, escalation, item_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(c.at_ms)
        .bind(encode_i8(&c.embedding))
        .bind(crate::nul_free(&words.join(&SEP.to_string())))
        .bind(&c.category)
        .bind(c.flags.join(","))
        .bind(c.escalation as i64)
        .bind(c.stored.and_then(|i| ids.get(i).cloned()))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    /// The oldest `limit` queued items (event time, then id).
    pub async fn queued(&self, limit: i64) -> Result<Vec<Queued>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, embedding, words, category, flags, escalation, item_id FROM hotspot_queue ORDER BY at_ms, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let words: String = r.try_get("words")?;
                let flags: String = r.try_get("flags")?;
                Ok(Queued {
                    id: r.try_get("id")?,
                    at_ms: r.try_get("at_ms")?,
                    embedding: decode_i8(&r.try_get::<String, _>("embedding")?),
                    words: words.split(SEP).filter(|w| !w.is_empty()).map(str::to_string).collect(),
                    category: r.try_get("category")?,
                    flags: flags.split(',').filter(|f| !f.is_empty()).map(str::to_string).collect(),
                    escalation: r.try_get::<i64, _>("escalation")? as u8,
                    item_id: r.try_get("item_id")?,
                })
            })
            .collect()
    }

    /// How many items wait to be clustered.
    pub async fn queue_len(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM hotspot_queue").fetch_one(&self.pool).await?.try_get("n")?)
    }

    /// The open issues.
    pub async fn open_issues(&self) -> Result<Vec<Issue>, StoreError> {
        let rows = sqlx::query("SELECT id, centroid, n, first_ms, last_ms FROM hotspots WHERE open = 1")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Issue {
                    id: r.try_get("id")?,
                    vector: decode_f32(&r.try_get::<String, _>("centroid")?),
                    n: r.try_get("n")?,
                    first_ms: r.try_get("first_ms")?,
                    last_ms: r.try_get("last_ms")?,
                })
            })
            .collect()
    }

    /// Write one batch's clustering (see the module guarantees). Returns
    /// `false`, having written nothing, when part of the batch was already
    /// taken off the queue.
    pub async fn apply_clustering(&self, c: &Clustered) -> Result<bool, StoreError> {
        let mut tx =
            if self.sqlite { self.pool.begin_with("BEGIN IMMEDIATE").await? } else { self.pool.begin().await? };
        let mut removed = 0;
        for chunk in c.done.chunks(200) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("DELETE FROM hotspot_queue WHERE id IN ({})", marks.join(", "));
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            removed += q.execute(&mut *tx).await?.rows_affected();
        }
        if removed != c.done.len() as u64 {
            tx.rollback().await?;
            return Ok(false);
        }
        for i in &c.issues {
            sqlx::query(
                "INSERT INTO hotspots (id, centroid, n, first_ms, last_ms, open) VALUES ($1, $2, $3, $4, $5, 1)
                 ON CONFLICT (id) DO UPDATE SET centroid = excluded.centroid, n = excluded.n, last_ms = excluded.last_ms",
            )
            .bind(&i.id)
            .bind(encode_f32(&i.vector))
            .bind(i.n)
            .bind(i.first_ms)
            .bind(i.last_ms)
            .execute(&mut *tx)
            .await?;
        }
        for id in &c.closed {
            sqlx::query("UPDATE hotspots SET open = 0 WHERE id = $1").bind(id).execute(&mut *tx).await?;
        }
        let mut merged: HashMap<(&str, i64, &str), i64> = HashMap::new();
        for (h, b, d, n) in &c.counts {
            *merged.entry((h.as_str(), *b, d.as_str())).or_default() += n;
        }
        let mut rows: Vec<_> = merged.into_iter().collect();
        rows.sort();
        for chunk in rows.chunks(100) {
            let mut sql = String::from("INSERT INTO hotspot_counts (hotspot, bucket, dim, n) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("(${}, ${}, ${}, ${})", i * 4 + 1, i * 4 + 2, i * 4 + 3, i * 4 + 4));
            }
            sql.push_str(" ON CONFLICT (hotspot, bucket, dim) DO UPDATE SET n = hotspot_counts.n + excluded.n");
            let mut q = sqlx::query(&sql);
            for ((h, b, d), n) in chunk {
                q = q.bind(*h).bind(*b).bind(crate::nul_free(d)).bind(*n);
            }
            q.execute(&mut *tx).await?;
        }
        for (h, item, at) in &c.examples {
            sqlx::query(
                "INSERT INTO hotspot_examples (hotspot, item_id, at_ms) VALUES ($1, $2, $3) ON CONFLICT (hotspot, item_id) DO NOTHING",
            )
            .bind(h)
            .bind(item)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM hotspot_examples WHERE hotspot = $1 AND item_id NOT IN
                 (SELECT item_id FROM hotspot_examples WHERE hotspot = $1 ORDER BY at_ms DESC, item_id LIMIT $2)",
            )
            .bind(h)
            .bind(EXAMPLES_PER_ISSUE)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Every issue's counts per dim over the hour buckets in `[from_ms, to_ms)`:
    /// issue -> dim -> n (dims as in [`Clustered::counts`]).
    pub async fn issue_counts(
        &self,
        from_ms: i64,
        to_ms: i64,
        issue: Option<&str>,
    ) -> Result<HashMap<String, HashMap<String, i64>>, StoreError> {
        let sql = format!(
            "SELECT hotspot, dim, CAST(SUM(n) AS BIGINT) AS n FROM hotspot_counts WHERE bucket >= $1 AND bucket < $2{} GROUP BY hotspot, dim",
            if issue.is_some() { " AND hotspot = $3" } else { "" }
        );
        let mut q = sqlx::query(&sql).bind(from_ms).bind(to_ms);
        if let Some(i) = issue {
            q = q.bind(crate::nul_free(i));
        }
        let mut out: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for r in q.fetch_all(&self.pool).await? {
            out.entry(r.try_get("hotspot")?).or_default().insert(r.try_get("dim")?, r.try_get("n")?);
        }
        Ok(out)
    }

    /// One issue's item count per hour bucket in `[from_ms, to_ms)`.
    pub async fn issue_trend(&self, issue: &str, from_ms: i64, to_ms: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT bucket, n FROM hotspot_counts WHERE hotspot = $1 AND dim = '' AND bucket >= $2 AND bucket < $3 ORDER BY bucket",
        )
        .bind(crate::nul_free(issue))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("bucket")?, r.try_get("n")?))).collect()
    }

    /// An issue's first and last time seen, if it exists.
    pub async fn issue_span(&self, issue: &str) -> Result<Option<(i64, i64, bool)>, StoreError> {
        let r = sqlx::query("SELECT first_ms, last_ms, open FROM hotspots WHERE id = $1")
            .bind(crate::nul_free(issue))
            .fetch_optional(&self.pool)
            .await?;
        r.map(|r| Ok((r.try_get("first_ms")?, r.try_get("last_ms")?, r.try_get::<i64, _>("open")? == 1))).transpose()
    }

    /// An issue's newest stored example items (gone ones, e.g. erased, are skipped).
    pub async fn issue_examples(&self, issue: &str, limit: i64) -> Result<Vec<crate::Item>, StoreError> {
        let rows = sqlx::query(
            "SELECT item_id FROM hotspot_examples WHERE hotspot = $1 ORDER BY at_ms DESC, item_id LIMIT $2",
        )
        .bind(crate::nul_free(issue))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let id: String = r.try_get("item_id")?;
            match self.get(&id).await {
                Ok(item) => out.push(item),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Forget hot-spot counts older than `before_ms` and closed issues last seen before it.
    pub async fn purge_hotspots(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut n = sqlx::query("DELETE FROM hotspot_counts WHERE bucket < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        n += sqlx::query(
            "DELETE FROM hotspot_examples WHERE hotspot IN (SELECT id FROM hotspots WHERE open = 0 AND last_ms < $1)",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        n += sqlx::query("DELETE FROM hotspots WHERE open = 0 AND last_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n)
    }
}

pub(crate) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS hotspot_queue (
        id TEXT PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        embedding TEXT NOT NULL,
        words TEXT NOT NULL,
        category TEXT NOT NULL,
        flags TEXT NOT NULL,
        escalation BIGINT NOT NULL,
        item_id TEXT)",
    "CREATE INDEX IF NOT EXISTS hotspot_queue_at ON hotspot_queue (at_ms, id)",
    "CREATE TABLE IF NOT EXISTS hotspots (
        id TEXT PRIMARY KEY,
        centroid TEXT NOT NULL,
        n BIGINT NOT NULL,
        first_ms BIGINT NOT NULL,
        last_ms BIGINT NOT NULL,
        open BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS hotspot_counts (
        hotspot TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        dim TEXT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (hotspot, bucket, dim))",
    "CREATE INDEX IF NOT EXISTS hotspot_counts_bucket ON hotspot_counts (bucket)",
    "CREATE TABLE IF NOT EXISTS hotspot_examples (
        hotspot TEXT NOT NULL,
        item_id TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        PRIMARY KEY (hotspot, item_id))",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_embeddings_keep_their_direction() {
        let v: Vec<f32> = (0..384).map(|i| ((i as f32) * 0.37).sin()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let v: Vec<f32> = v.iter().map(|x| x / n).collect();
        let back = decode_i8(&encode_i8(&v));
        let dot: f32 = v.iter().zip(&back).map(|(a, b)| a * b).sum();
        let nb = back.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(dot / nb > 0.999, "cosine {}", dot / nb);
        assert_eq!(decode_f32(&encode_f32(&v)), v);
        assert!(decode_i8("not base64!").is_empty());
    }
}
