//! The insights worker: one replica at a time (a lease in the store) clusters
//! queued items into hot spots, evaluates the alert rules over the
//! aggregates, and delivers alerts to webhooks. It runs beside the HTTP
//! service (and the Kafka consumer) and never blocks classify: intake only
//! writes counts and queue rows; everything here happens on its own task.
//!
//! Evaluation: a rule judges every complete bucket (ended at least
//! `lateness` ago) whose counts changed since the previous pass, oldest
//! first, so history loaded with `received_at` is judged as it lands; a
//! bucket judged on part of its items is judged again when the rest arrive,
//! and the alert log's de-duplication key (rule, bucket) keeps one alert per
//! bucket.

pub mod issues;
pub mod report;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use kesu_core::insights::alerts::{self, Kind, Rule};
use kesu_core::insights::hotspots::{Centroid, Clusterer, Params};
use kesu_store::hotspots::{Clustered, Issue};
use kesu_store::insights::{Grain, Selection};
use kesu_store::Store;
use prometheus::{IntCounterVec, IntGauge, Opts};

use crate::api::AppState;

/// The lease the worker holds.
pub const LEASE: &str = "insights-worker";

/// How the worker runs.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Time between passes.
    pub every: Duration,
    /// How long the lease lasts without renewal.
    pub lease: Duration,
    /// A bucket is judged once it ended this long ago.
    pub lateness: Duration,
    /// How far back a pass looks for changed buckets.
    pub lookback: Duration,
    /// Most delivery attempts per alert and target.
    pub max_attempts: i64,
    pub hotspots: Params,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            every: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            lateness: Duration::from_secs(60),
            lookback: Duration::from_secs(14 * 86_400),
            max_attempts: 8,
            hotspots: Params::default(),
        }
    }
}

/// The worker's Prometheus metrics.
#[derive(Clone)]
pub struct WorkerMetrics {
    pub leader: IntGauge,
    pub alerts: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub queue: IntGauge,
    pub open_issues: IntGauge,
}

impl WorkerMetrics {
    fn new(registry: &prometheus::Registry) -> WorkerMetrics {
        let m = WorkerMetrics {
            leader: IntGauge::new("kesu_insights_leader", "1 while this process is the insights worker").unwrap(),
            alerts: IntCounterVec::new(
                Opts::new("kesu_alerts_fired_total", "Alerts raised by rule and severity"),
                &["rule", "severity"],
            )
            .unwrap(),
            deliveries: IntCounterVec::new(
                Opts::new("kesu_alert_deliveries_total", "Webhook delivery attempts by target and outcome"),
                &["target", "outcome"],
            )
            .unwrap(),
            queue: IntGauge::new("kesu_hotspot_queue", "Items waiting to be clustered into hot spots").unwrap(),
            open_issues: IntGauge::new("kesu_hotspots_open", "Open hot-spot issues").unwrap(),
        };
        let _ = registry.register(Box::new(m.leader.clone()));
        let _ = registry.register(Box::new(m.alerts.clone()));
        let _ = registry.register(Box::new(m.deliveries.clone()));
        let _ = registry.register(Box::new(m.queue.clone()));
        let _ = registry.register(Box::new(m.open_issues.clone()));
        m
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

fn grain_of(rule: &Rule) -> Grain {
    rule.grain.parse().unwrap_or(Grain::Hour)
}

/// One worker (per process; only the lease holder works).
pub struct Worker {
    holder: String,
    settings: WorkerSettings,
    metrics: WorkerMetrics,
    /// Wall time of the previous evaluation pass (0: none yet).
    last_pass_ms: i64,
}

impl Worker {
    pub fn new(settings: WorkerSettings, registry: &prometheus::Registry) -> Worker {
        Worker {
            holder: hex::encode(rand::random::<[u8; 12]>()),
            settings,
            metrics: WorkerMetrics::new(registry),
            last_pass_ms: 0,
        }
    }

    /// One pass: take the lease; if held, cluster, evaluate and deliver.
    /// Returns whether this worker led the pass.
    pub async fn pass(&mut self, st: &AppState) -> bool {
        let Some(store) = &st.store else { return false };
        if !store.insights().enabled {
            return false;
        }
        let now = now_ms();
        let led = match store.take_lease(LEASE, &self.holder, now, self.settings.lease.as_millis() as i64).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "insights lease not renewed; the next pass tries again");
                false
            }
        };
        self.metrics.leader.set(led as i64);
        if !led {
            self.last_pass_ms = 0;
            return false;
        }
        if let Err(e) = self.cluster(store).await {
            tracing::warn!(error = %e, "hot-spot clustering failed; the queue is kept for the next pass");
        }
        let started = now_ms();
        match self.evaluate(st, store, now).await {
            Ok(()) => self.last_pass_ms = started,
            Err(e) => tracing::warn!(error = %e, "alert evaluation failed; the next pass tries again"),
        }
        if let Err(e) = webhook::deliver(st, store, &self.metrics, self.settings.max_attempts).await {
            tracing::warn!(error = %e, "alert delivery failed; retried at the next pass");
        }
        if let Ok(n) = store.queue_len().await {
            self.metrics.queue.set(n);
        }
        true
    }

    /// Give the lease up (shutdown).
    pub async fn release(&self, store: &Store) {
        let _ = store.release_lease(LEASE, &self.holder).await;
        self.metrics.leader.set(0);
    }

    /// Cluster queued items, 500 at a time, until the queue is empty (or 20 batches).
    async fn cluster(&self, store: &Store) -> Result<(), kesu_store::StoreError> {
        let cfg = store.insights().clone();
        for _ in 0..20 {
            let queued = store.queued(500).await?;
            if queued.is_empty() {
                break;
            }
            let open = store.open_issues().await?;
            let centroids = open
                .into_iter()
                .map(|i| Centroid {
                    id: i.id,
                    vector: i.vector,
                    n: i.n as u64,
                    first_ms: i.first_ms,
                    last_ms: i.last_ms,
                })
                .collect();
            let mut c = Clusterer::new(self.settings.hotspots, centroids);
            let mut out = Clustered::default();
            let mut new_id = || format!("h{}", hex::encode(rand::random::<[u8; 6]>()));
            for q in &queued {
                let id = c.assign(&q.embedding, q.at_ms, &mut new_id);
                let b = cfg.bucket_start(Grain::Hour, q.at_ms);
                let mut add = |dim: String, n: i64| out.counts.push((id.clone(), b, dim, n));
                add(String::new(), 1);
                add("esc".into(), q.escalation as i64);
                add(format!("c:{}", q.category), 1);
                for f in &q.flags {
                    add(format!("f:{f}"), 1);
                }
                for w in &q.words {
                    add(format!("w:{w}"), 1);
                }
                if let Some(item) = &q.item_id {
                    out.examples.push((id.clone(), item.clone(), q.at_ms));
                }
                out.done.push(q.id.clone());
            }
            self.metrics.open_issues.set(c.centroids().len() as i64);
            let (changed, closed) = c.into_changes();
            out.issues = changed
                .into_iter()
                .map(|c| Issue { id: c.id, vector: c.vector, n: c.n as i64, first_ms: c.first_ms, last_ms: c.last_ms })
                .collect();
            out.closed = closed;
            if !store.apply_clustering(&out).await? {
                tracing::info!("another worker clustered part of this batch; reloading");
            }
        }
        Ok(())
    }

    /// Judge every rule on the complete buckets changed since the last pass.
    async fn evaluate(&self, st: &AppState, store: &Store, now: i64) -> Result<(), kesu_store::StoreError> {
        let lists = st.pipeline.lists();
        let cfg = store.insights().clone();
        let lateness = self.settings.lateness.as_millis() as i64;
        // Changes made during the previous pass count again (a write may
        // commit with an older `touched` stamp than the pass that missed it).
        let since = if self.last_pass_ms == 0 { 0 } else { self.last_pass_ms - 60_000 };
        for rule in &lists.alerts.rules {
            let g = grain_of(rule);
            let lookback_from = cfg.bucket_start(g, now - self.settings.lookback.as_millis() as i64);
            // Buckets that ended `lateness` ago.
            let end = cfg.bucket_start(g, now - lateness);
            let end = if cfg.next_bucket(g, end) <= now - lateness { cfg.next_bucket(g, end) } else { end };
            let touched = store.touched_buckets(g, lookback_from, end, since).await?;
            if touched.is_empty() {
                continue;
            }
            if rule.kind == Kind::EmergingIssue {
                // Growth needs a full window before: none is judged until the data covers two windows.
                let Some(first) = store.first_bucket(Grain::Hour).await? else { continue };
                for b in touched
                    .into_iter()
                    .filter(|b| cfg.next_bucket(g, *b) - 2 * self.settings.hotspots.window_ms >= first)
                {
                    self.judge_issues(st, store, rule, b, cfg.next_bucket(g, b)).await?;
                }
                continue;
            }
            let span = match rule.baseline {
                alerts::Baseline::Ewma => rule.history as i64 * (cfg.next_bucket(g, end) - end).max(60_000),
                alerts::Baseline::Seasonal => rule.history as i64 * 86_400_000,
            };
            let from = cfg.bucket_start(g, touched[0] - span);
            let series = self.series(store, rule, g, from, end).await?;
            // History starts where the data does (all items, not only this rule's series).
            let first_data = store.first_bucket(g).await?;
            for b in touched {
                let Some(&(count, value)) = series.get(&b) else { continue };
                let history: Vec<f64> = match rule.baseline {
                    alerts::Baseline::Ewma => series
                        .range(from..b)
                        .filter(|(k, _)| first_data.is_some_and(|f| **k >= f))
                        .map(|(_, v)| v.1)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .take(rule.history)
                        .rev()
                        .collect(),
                    alerts::Baseline::Seasonal => (1..=rule.history as i64)
                        .rev()
                        .map(|d| b - d * 86_400_000)
                        .filter(|k| first_data.is_some_and(|f| *k >= f))
                        .map(|k| series.get(&k).map(|v| v.1).unwrap_or(0.0))
                        .collect(),
                };
                let d = alerts::detect(rule, value, count, &history);
                if !d.fired {
                    continue;
                }
                if let Some(last) = store.last_fired(&rule.name, b).await? {
                    if last != b && b - last < rule.cooldown_minutes as i64 * 60_000 {
                        continue;
                    }
                }
                let detail = serde_json::json!({
                    "kind": rule.kind, "value": (d.value * 1000.0).round() / 1000.0, "expected": d.expected.map(|e| (e * 1000.0).round() / 1000.0),
                    "z": d.z, "count": count, "flag": rule.flag, "rules_version": lists.alerts.version,
                    "bucket_local": cfg.format(b),
                });
                self.raise(store, rule, g, b, format!("{}@{}@{b}", rule.name, g.as_str()), detail).await?;
            }
        }
        Ok(())
    }

    /// Per bucket start: (items of the rule's series, the rule's value), every
    /// bucket from `from` to `end` present (zero when empty).
    async fn series(
        &self,
        store: &Store,
        rule: &Rule,
        g: Grain,
        from: i64,
        end: i64,
    ) -> Result<BTreeMap<i64, (u64, f64)>, kesu_store::StoreError> {
        let cfg = store.insights();
        let sel = Selection { flag: rule.flag.clone(), ..Default::default() };
        let cells = store.insight_cells(g, from, end, &sel, None).await?;
        let mut out: BTreeMap<i64, (u64, f64)> = BTreeMap::new();
        for b in cfg.buckets(g, from, end, 100_000).unwrap_or_default() {
            out.insert(b, (0, 0.0));
        }
        for c in cells {
            let value = match rule.kind {
                Kind::NegativeIndex if c.count > 0 => c.escalation_sum as f64 / c.count as f64,
                Kind::NegativeIndex => 0.0,
                _ => c.count as f64,
            };
            out.insert(c.bucket, (c.count as u64, value));
        }
        Ok(out)
    }

    async fn judge_issues(
        &self,
        st: &AppState,
        store: &Store,
        rule: &Rule,
        bucket: i64,
        at: i64,
    ) -> Result<(), kesu_store::StoreError> {
        let views = issues::top(store, &self.settings.hotspots, at, 50).await?;
        for v in views.into_iter().filter(|v| v.emerging && v.size >= rule.min_count as i64) {
            // One alert per issue (the de-duplication key names it).
            let dedupe = format!("{}@issue@{}", rule.name, v.id);
            let detail = serde_json::json!({
                "kind": rule.kind, "issue": v.id, "size": v.size, "previous": v.previous, "growth": v.growth,
                "keywords": v.keywords, "category": v.category, "rules_version": st.pipeline.lists().alerts.version,
                "bucket_local": store.insights().format(bucket),
            });
            self.raise(store, rule, grain_of(rule), bucket, dedupe, detail).await?;
        }
        Ok(())
    }

    async fn raise(
        &self,
        store: &Store,
        rule: &Rule,
        g: Grain,
        bucket: i64,
        dedupe: String,
        detail: serde_json::Value,
    ) -> Result<(), kesu_store::StoreError> {
        let a = kesu_store::alerts::NewAlert {
            dedupe,
            rule: rule.name.clone(),
            severity: rule.severity.as_str().into(),
            grain: g.as_str().into(),
            bucket_ms: bucket,
            detail,
            targets: rule.targets.clone(),
        };
        if let Some(a) = store.raise_alert(&a).await? {
            self.metrics.alerts.with_label_values(&[a.rule.as_str(), a.severity.as_str()]).inc();
            tracing::warn!(rule = %a.rule, severity = %a.severity, bucket = %a.bucket, alert = %a.id, "alert raised");
        }
        Ok(())
    }
}

/// Run the worker on its own task while the state lives (every replica runs
/// one; the lease picks who works).
pub fn spawn(state: Weak<AppState>, settings: WorkerSettings) {
    let Some(st) = state.upgrade() else { return };
    if st.store.as_ref().is_none_or(|s| !s.insights().enabled) {
        return;
    }
    let mut worker = Worker::new(settings, st.metrics.registry());
    drop(st);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(st) = state.upgrade() else { break };
            worker.pass(&st).await;
        }
    });
}
