//! The consumer loop: read a batch, classify and store it through the HTTP
//! service's intake path, produce its results and dead letters, then commit.
//!
//! Guarantees:
//! - **At least once.** A batch's offsets are committed only after every one
//!   of its results and dead letters was acknowledged by the brokers and its
//!   items were stored. A consumer that dies, or loses its partitions in a
//!   rebalance, leaves at most its uncommitted batch to be read again.
//! - **Stored and counted once.** Each record carries an idempotency key (its
//!   own `idempotency_key`, else `topic:partition:offset`), claimed in the
//!   store with the item, so a record read again within the idempotency
//!   window is a replay: classified again and produced again
//!   (`replayed: true`), never stored again and never counted again as a
//!   repeat contact. The results topic may therefore hold a record's result
//!   more than once. A batch whose store step fails is stored again without
//!   being classified again, and each record's repeat contact is named by its
//!   key, so a record classified twice (its consumer died between classifying
//!   and storing) is still one contact.
//! - **Nothing dropped.** A record that cannot be processed (not JSON, empty
//!   or oversized text, a bad field, a key reused with another text) goes to
//!   the dead-letter topic with its error and value. Failures that may pass
//!   (store down, overload, a broker not acknowledging) are retried with
//!   backoff and never dead-lettered; the batch waits, and so does reading.
//!   An internal error of one record is retried 3 times, then dead-lettered
//!   (`internal`). A produce error the brokers will repeat (a record too
//!   large, no permission, no such topic) stops the consumer without a commit.
//! - **Graceful stop.** On shutdown the batch in hand is finished and
//!   committed, then the consumer leaves the group.
//!
//! The loop needs a multi-threaded Tokio runtime (commits wait off the async workers).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use kesu_server::api::texts::{classify_intake, Intaken};
use kesu_server::api::AppState;

use crate::record::{self, Complaint, DeadLetter, Rejection, ResultRecord, Source};
use crate::settings::KafkaOptions;

/// The consumer's metrics (in the service's registry, on `/metrics`).
#[derive(Clone)]
pub struct KafkaMetrics {
    /// Records done, by outcome: `result` or `dead_letter`.
    pub records: IntCounterVec,
    /// Results of records read before (re-delivered after a restart or rebalance).
    pub replayed: IntCounter,
    pub batches: IntCounter,
    pub batch_seconds: Histogram,
    /// Retries after a failure that may pass, by stage: `classify` or `produce`.
    pub retries: IntCounterVec,
    /// Offset commits, by result: `ok` or `failed`.
    pub commits: IntCounterVec,
    /// Records behind the partition's end (`hi_offset - committed`), per
    /// partition fetched; refreshed from librdkafka's statistics (every 5 s,
    /// while the consumer reads: frozen during a retry stall).
    pub lag: IntGaugeVec,
    pub assigned: IntGauge,
}

impl KafkaMetrics {
    /// Create and register in `registry`.
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<KafkaMetrics> {
        let m = KafkaMetrics {
            records: IntCounterVec::new(
                Opts::new("kesu_kafka_records_total", "Kafka records done, by outcome (result, dead_letter)"),
                &["outcome"],
            )?,
            replayed: IntCounter::new(
                "kesu_kafka_replayed_total",
                "Records read again (after a restart or rebalance): produced again, stored once",
            )?,
            batches: IntCounter::new("kesu_kafka_batches_total", "Batches processed and committed")?,
            batch_seconds: Histogram::with_opts(
                HistogramOpts::new("kesu_kafka_batch_seconds", "Seconds from a batch's first record to its commit")
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            )?,
            retries: IntCounterVec::new(
                Opts::new("kesu_kafka_retries_total", "Retries after failures that may pass, by stage"),
                &["stage"],
            )?,
            commits: IntCounterVec::new(
                Opts::new("kesu_kafka_commits_total", "Offset commits by result"),
                &["result"],
            )?,
            lag: IntGaugeVec::new(
                Opts::new("kesu_kafka_consumer_lag", "Records not yet committed, per input partition held"),
                &["topic", "partition"],
            )?,
            assigned: IntGauge::new("kesu_kafka_assigned_partitions", "Input partitions this consumer holds")?,
        };
        registry.register(Box::new(m.records.clone()))?;
        registry.register(Box::new(m.replayed.clone()))?;
        registry.register(Box::new(m.batches.clone()))?;
        registry.register(Box::new(m.batch_seconds.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.commits.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.assigned.clone()))?;
        Ok(m)
    }
}

/// librdkafka callbacks: statistics (lag) and rebalances, into the metrics and the log.
struct Context {
    metrics: KafkaMetrics,
    input_topic: String,
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        self.metrics.lag.reset();
        for (name, topic) in &stats.topics {
            if name != &self.input_topic {
                continue;
            }
            for (p, part) in &topic.partitions {
                // -1 is librdkafka's internal "unassigned" partition; lag -1: not known yet;
                // a partition this consumer no longer fetches (revoked) keeps stale figures.
                let fetching = !matches!(part.fetch_state.as_str(), "none" | "stopping" | "stopped");
                if *p >= 0 && part.consumer_lag >= 0 && fetching {
                    self.metrics.lag.with_label_values(&[name.as_str(), &p.to_string()]).set(part.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _c: &rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(tpl) => {
                self.metrics.assigned.set(tpl.count() as i64);
                tracing::info!(partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                self.metrics.assigned.set(0);
                tracing::info!(partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub batches: u64,
    pub results: u64,
    pub dead_letters: u64,
    pub replayed: u64,
}

/// Why the loop stopped early: a batch was abandoned uncommitted.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the brokers refuse records for {topic}: {error}")]
    Produce { topic: String, error: KafkaError },
}

/// Produce errors that sending again will not cure.
fn permanent(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::UnknownTopic
        )
    )
}

/// One outcome per record of a batch, in order.
enum Outcome {
    Result(Box<(Complaint, Intaken)>),
    Dead(DeadLetter, Option<Vec<u8>>),
}

/// The consumer: one per process; partitions are shared through the group.
pub struct KafkaIntake {
    state: Arc<AppState>,
    opts: KafkaOptions,
    metrics: KafkaMetrics,
    consumer: StreamConsumer<Context>,
    producer: FutureProducer,
    scope: String,
}

/// First wait after a failure that may pass; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl KafkaIntake {
    /// Connect (nothing is read before [`KafkaIntake::run`]). The metrics go
    /// into `state`'s registry.
    pub fn new(state: Arc<AppState>, opts: KafkaOptions) -> Result<KafkaIntake, ConsumeError> {
        let metrics = KafkaMetrics::new(state.metrics.registry())?;
        let ctx = Context { metrics: metrics.clone(), input_topic: opts.input_topic.clone() };
        let consumer: StreamConsumer<Context> = opts.consumer_config().create_with_context(ctx)?;
        let producer: FutureProducer = opts.producer_config("kesu-consume").create()?;
        // Keys are unique per consumer group: two groups reading one topic
        // (e.g. staging and production) each store their own items.
        let scope = format!("kafka:{}", opts.group_id);
        Ok(KafkaIntake { state, opts, metrics, consumer, producer, scope })
    }

    pub fn metrics(&self) -> &KafkaMetrics {
        &self.metrics
    }

    /// Consume until `shutdown` turns true (or its sender is dropped), then
    /// finish the batch in hand, commit it and leave the group.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<Summary, ConsumeError> {
        self.consumer.subscribe(&[&self.opts.input_topic])?;
        tracing::info!(
            brokers = %self.opts.brokers, group = %self.opts.group_id, input = %self.opts.input_topic,
            results = %self.opts.results_topic, dead_letter = %self.opts.dead_letter_topic, "consuming"
        );
        let mut summary = Summary::default();
        let stopping = |rx: &watch::Receiver<bool>| *rx.borrow();
        while !stopping(&shutdown) {
            let first = tokio::select! {
                _ = shutdown.changed() => break,
                m = self.consumer.recv() => m,
            };
            let first = match first {
                Ok(m) => m.detach(),
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let t0 = Instant::now();
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + self.opts.batch_wait;
            while batch.len() < self.opts.batch_size.max(1) {
                tokio::select! {
                    m = self.consumer.recv() => match m {
                        Ok(m) => batch.push(m.detach()),
                        Err(e) => { tracing::warn!(error = %e, "Kafka consumer error"); break }
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            // From here on the batch is finished even when a shutdown comes
            // (it is abandoned uncommitted only when a retry is still pending then).
            let Some(outcomes) = self.process(&batch, &shutdown).await else { break };
            if !self.deliver(&outcomes, &shutdown).await? {
                break;
            }
            self.commit(&batch);
            for o in &outcomes {
                match o {
                    Outcome::Result(r) => {
                        let done = &r.1;
                        summary.results += 1;
                        self.metrics.records.with_label_values(&["result"]).inc();
                        if done.replayed {
                            summary.replayed += 1;
                            self.metrics.replayed.inc();
                        }
                    }
                    Outcome::Dead(..) => {
                        summary.dead_letters += 1;
                        self.metrics.records.with_label_values(&["dead_letter"]).inc();
                    }
                }
            }
            summary.batches += 1;
            self.metrics.batches.inc();
            self.metrics.batch_seconds.observe(t0.elapsed().as_secs_f64());
            tracing::debug!(records = batch.len(), took_ms = t0.elapsed().as_secs_f64() * 1e3, "batch committed");
        }
        tracing::info!(?summary, "stopping: leaving the consumer group");
        self.consumer.unsubscribe();
        if let Err(e) = rdkafka::producer::Producer::flush(&self.producer, Duration::from_secs(10)) {
            tracing::warn!(error = %e, "producer flush on shutdown");
        }
        Ok(summary)
    }

    /// Parse, classify and store one batch. `None`: a shutdown came while a
    /// failure that may pass was being retried (nothing to commit).
    async fn process(&self, batch: &[OwnedMessage], shutdown: &watch::Receiver<bool>) -> Option<Vec<Outcome>> {
        let settings = &self.state.settings;
        let mut slots: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
        let mut good = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            let source = Source { topic: m.topic().to_string(), partition: m.partition(), offset: m.offset() };
            match record::parse(source.clone(), m.key(), m.payload(), settings) {
                Ok(c) => {
                    good.push((i, c));
                    slots.push(None);
                }
                Err(r) => slots.push(Some(Outcome::Dead(DeadLetter::new(r, source, m.payload()), key(m)))),
            }
        }
        // Rounds with unique keys: a key twice in one batch (a record
        // produced twice) is a replay in the next round.
        while !good.is_empty() {
            let mut seen = HashSet::new();
            let (round, rest): (Vec<_>, Vec<_>) =
                good.into_iter().partition(|(_, c)| seen.insert(c.item.idempotency_key.clone()));
            good = rest;
            for (i, outcome) in self.classify_round(round, shutdown).await? {
                slots[i] = Some(outcome);
            }
        }
        Some(slots.into_iter().map(|o| o.expect("every record has an outcome")).collect())
    }

    /// Classify and store `round` (unique keys). Classification runs once
    /// (it records the repeat contacts); a failure that may pass is retried
    /// with backoff, the store step alone when it was the store that failed.
    /// A record fault in a batch is retried one record at a time, so that
    /// only the record at fault is dead-lettered; an internal error of one
    /// record is retried [`INTERNAL_ATTEMPTS`] times before it is.
    async fn classify_round(
        &self,
        round: Vec<(usize, Complaint)>,
        shutdown: &watch::Receiver<bool>,
    ) -> Option<Vec<(usize, Outcome)>> {
        let mut backoff = FIRST_BACKOFF;
        let mut internal_failures = 0;
        let mut classified = None;
        let failed = loop {
            let step = match classified.as_mut() {
                None => {
                    let items = round.iter().map(|(_, c)| c.item.clone()).collect();
                    match classify_intake(&self.state, self.scope.clone(), items, false).await {
                        Ok(c) => {
                            classified = Some(c);
                            continue;
                        }
                        Err(e) => e,
                    }
                }
                Some(c) => match c.store(&self.state).await {
                    Ok(()) => {
                        let done = classified.take().expect("classified").outcomes(&self.state);
                        let out = round.into_iter().zip(done).map(|((i, c), d)| (i, Outcome::Result(Box::new((c, d)))));
                        return Some(out.collect());
                    }
                    Err(e) => e,
                },
            };
            match Fault::of(&step) {
                Fault::MayPass => {}
                Fault::Internal if round.len() == 1 && internal_failures + 1 < INTERNAL_ATTEMPTS => {
                    internal_failures += 1;
                    classified = None;
                }
                _ => break step,
            }
            tracing::warn!(code = step.code.as_str(), error = %step.message, records = round.len(), retry_in_ms = backoff.as_millis() as u64, "classify or store failed; retrying");
            self.metrics.retries.with_label_values(&["classify"]).inc();
            if !pause(backoff, shutdown).await {
                return None;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        if round.len() > 1 {
            let mut out = Vec::new();
            for one in round {
                out.extend(Box::pin(self.classify_round(vec![one], shutdown)).await?);
            }
            return Some(out);
        }
        let (i, c) = round.into_iter().next().expect("one record");
        tracing::warn!(code = failed.code.as_str(), topic = %c.source.topic, partition = c.source.partition, offset = c.source.offset, "record dead-lettered");
        let dead = DeadLetter::new(
            Rejection { code: failed.code.as_str().to_string(), message: failed.message },
            c.source.clone(),
            Some(&c.value),
        );
        Some(vec![(i, Outcome::Dead(dead, c.key))])
    }

    /// Produce every outcome and wait for the brokers' acknowledgements;
    /// what fails is sent again with backoff. `Ok(false)`: a shutdown came
    /// first. An error the brokers will give again (a record too large, no
    /// permission, no such topic) ends the consumer without a commit
    /// ([`ConsumeError::Produce`]) rather than retrying forever.
    async fn deliver(&self, outcomes: &[Outcome], shutdown: &watch::Receiver<bool>) -> Result<bool, ConsumeError> {
        let model_version =
            self.state.pipeline.model().map(|m| m.info().version.clone()).unwrap_or_else(|| "none".into());
        let values: Vec<(String, Option<&[u8]>, &str)> = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Result(r) => {
                    let (c, d) = &**r;
                    let v = ResultRecord {
                        id: &c.id,
                        source: &c.source,
                        result: &d.result,
                        review_id: &d.review_id,
                        replayed: d.replayed,
                        model_version: &model_version,
                        tags: &c.tags,
                        timestamp: &c.timestamp,
                    };
                    let json = serde_json::to_string(&v).expect("a result serialises");
                    (json, c.key.as_deref(), self.opts.results_topic.as_str())
                }
                Outcome::Dead(d, k) => {
                    let json = serde_json::to_string(d).expect("a dead letter serialises");
                    (json, k.as_deref(), self.opts.dead_letter_topic.as_str())
                }
            })
            .collect();
        let mut pending: Vec<usize> = (0..values.len()).collect();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let sends = pending.iter().map(|&i| {
                let (value, key, topic) = &values[i];
                let mut rec = FutureRecord::to(topic).payload(value.as_str());
                if let Some(k) = key {
                    rec = rec.key(*k);
                }
                self.producer.send(rec, Duration::from_secs(30))
            });
            let results = join_all(sends).await;
            let mut failed = Vec::new();
            for (&i, r) in pending.iter().zip(results) {
                if let Err((e, _)) = r {
                    if permanent(&e) {
                        tracing::error!(error = %e, topic = values[i].2, bytes = values[i].0.len(), "produce refused; stopping without a commit");
                        return Err(ConsumeError::Produce { topic: values[i].2.to_string(), error: e });
                    }
                    tracing::warn!(error = %e, topic = values[i].2, "produce failed; retrying");
                    failed.push(i);
                }
            }
            if failed.is_empty() {
                return Ok(true);
            }
            self.metrics.retries.with_label_values(&["produce"]).inc_by(failed.len() as u64);
            pending = failed;
            if !pause(backoff, shutdown).await {
                return Ok(false);
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Commit the next offset of each partition of `batch`. A failed commit
    /// (partitions lost in a rebalance) is logged: the new owner reads those
    /// records again, and idempotency keeps them stored once.
    fn commit(&self, batch: &[OwnedMessage]) {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for m in batch {
            let e = next.entry((m.topic(), m.partition())).or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        // Only partitions still held: a partition revoked while the batch ran
        // belongs to another consumer now, which reads those records again.
        let held = self.consumer.assignment().ok();
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in next {
            if held.as_ref().is_some_and(|h| h.find_partition(t, p).is_none()) {
                tracing::info!(topic = t, partition = p, "partition revoked during the batch: not committed here");
                continue;
            }
            if let Err(e) = tpl.add_partition_offset(t, p, Offset::Offset(o)) {
                tracing::warn!(error = %e, "offset list");
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // A synchronous commit waits for the group coordinator: off the async workers.
        match tokio::task::block_in_place(|| self.consumer.commit(&tpl, CommitMode::Sync)) {
            Ok(()) => self.metrics.commits.with_label_values(&["ok"]).inc(),
            Err(e) => {
                self.metrics.commits.with_label_values(&["failed"]).inc();
                tracing::warn!(error = %e, "offset commit failed (the records will be read again, and stored once)");
            }
        }
    }
}

fn key(m: &OwnedMessage) -> Option<Vec<u8>> {
    m.key().map(<[u8]>::to_vec)
}

/// Attempts at one record that fails with an internal error before it is dead-lettered.
const INTERNAL_ATTEMPTS: u32 = 3;

/// What a failure of the intake path says about the records.
enum Fault {
    /// The record itself (its fields, its key reused with another text): dead-letter it.
    Record,
    /// The store or the model is busy or away (503), or a concurrent claim (409): retry.
    MayPass,
    /// Anything else (a worker failed): retried a few times, then dead-lettered.
    Internal,
}

impl Fault {
    fn of(e: &kesu_server::api::error::ApiError) -> Fault {
        use kesu_server::api::error::ErrorCode as C;
        match e.code {
            C::InvalidJson
            | C::InvalidUtf8
            | C::TextTooLong
            | C::FieldTooLong
            | C::EmptyText
            | C::InvalidRequest
            | C::InvalidCustomerRef
            | C::InvalidChannel
            | C::InvalidIdempotencyKey
            | C::IdempotencyKeyReused
            | C::InvalidTimestamp => Fault::Record,
            C::IdempotencyConflict => Fault::MayPass,
            c if c.status().as_u16() == 503 => Fault::MayPass,
            _ => Fault::Internal,
        }
    }
}

/// Sleep `d`; `false` if a shutdown came first.
async fn pause(d: Duration, shutdown: &watch::Receiver<bool>) -> bool {
    let mut rx = shutdown.clone();
    if *rx.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = rx.changed() => false,
    }
}

/// Create the three topics with `partitions` partitions each where missing
/// (for a demo or a test cluster; production clusters create topics their own way).
pub async fn create_topics(opts: &KafkaOptions, partitions: i32) -> Result<(), KafkaError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = opts.admin_config().create()?;
    let names = [&opts.input_topic, &opts.results_topic, &opts.dead_letter_topic];
    let topics: Vec<NewTopic> =
        names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
    let out =
        admin.create_topics(&topics, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))).await?;
    for r in out {
        match r {
            Ok(t) => tracing::info!(topic = %t, partitions, "topic created"),
            Err((t, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::info!(topic = %t, "topic exists")
            }
            Err((t, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| tracing::error!(topic = %t, "topic"))
            }
        }
    }
    Ok(())
}
