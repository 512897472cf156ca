//! Prometheus metrics (`GET /metrics`).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use kesu_core::flags::FlagReport;
use kesu_core::pipeline::Classified;

/// All of kesu's metrics, in one registry.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub items_classified: IntCounter,
    pub flags_raised: IntCounterVec,
    pub escalation_levels: IntCounterVec,
    pub conversation_messages: IntCounterVec,
    pub conversation_alerts: IntCounterVec,
    pub conversations_live: IntGauge,
    pub triage_priorities: IntCounterVec,
    pub reloads: IntCounterVec,
    pub store_writes: HistogramVec,
    pub rate_limited: IntCounterVec,
    pub idempotent_replays: IntCounter,
    pub store_deleted: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("kesu_http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .unwrap();
        let latency = HistogramVec::new(
            HistogramOpts::new("kesu_http_request_duration_seconds", "HTTP request latency by route")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["route"],
        )
        .unwrap();
        let items_classified = IntCounter::new("kesu_items_classified_total", "Texts classified by the model").unwrap();
        let flags_raised =
            IntCounterVec::new(Opts::new("kesu_flags_raised_total", "Texts raising each legal-risk flag"), &["flag"])
                .unwrap();
        let escalation_levels = IntCounterVec::new(
            Opts::new("kesu_escalation_level_total", "Classified texts by predicted escalation level"),
            &["level"],
        )
        .unwrap();
        let conversation_messages = IntCounterVec::new(
            Opts::new("kesu_conversation_messages_total", "Conversation messages recorded, by role"),
            &["role"],
        )
        .unwrap();
        let conversation_alerts = IntCounterVec::new(
            Opts::new("kesu_conversation_alerts_total", "Conversation alerts fired, by kind"),
            &["kind"],
        )
        .unwrap();
        let triage_priorities = IntCounterVec::new(
            Opts::new("kesu_triage_priority_total", "Classified texts by triage priority and route"),
            &["priority", "route"],
        )
        .unwrap();
        let reloads = IntCounterVec::new(
            Opts::new("kesu_reloads_total", "Word-list and triage-rule reloads, by result (ok, error)"),
            &["result"],
        )
        .unwrap();
        let store_writes = HistogramVec::new(
            HistogramOpts::new(
                "kesu_store_write_duration_seconds",
                "Complaint-store inserts from classify (one transaction per request), by result (ok, error)",
            )
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0]),
            &["result"],
        )
        .unwrap();
        let rate_limited = IntCounterVec::new(
            Opts::new("kesu_rate_limited_total", "Requests refused (429) for the per-key rate limit, by key name"),
            &["key"],
        )
        .unwrap();
        let idempotent_replays = IntCounter::new(
            "kesu_idempotent_replays_total",
            "Classify items whose idempotency key was seen before (answered, nothing stored or counted again)",
        )
        .unwrap();
        let store_deleted = IntCounterVec::new(
            Opts::new("kesu_store_deleted_items_total", "Stored items deleted, by reason (retention, customer)"),
            &["reason"],
        )
        .unwrap();
        registry.register(Box::new(idempotent_replays.clone())).unwrap();
        let conversations_live = IntGauge::new("kesu_conversations_live", "Live conversations held in memory").unwrap();
        registry.register(Box::new(conversations_live.clone())).unwrap();
        for c in [
            &requests,
            &flags_raised,
            &escalation_levels,
            &conversation_messages,
            &conversation_alerts,
            &triage_priorities,
            &reloads,
            &rate_limited,
            &store_deleted,
        ] {
            registry.register(Box::new(c.clone())).unwrap();
        }
        registry.register(Box::new(latency.clone())).unwrap();
        registry.register(Box::new(store_writes.clone())).unwrap();
        registry.register(Box::new(items_classified.clone())).unwrap();
        Metrics {
            registry,
            requests,
            latency,
            items_classified,
            flags_raised,
            escalation_levels,
            conversation_messages,
            conversation_alerts,
            conversations_live,
            triage_priorities,
            reloads,
            store_writes,
            rate_limited,
            idempotent_replays,
            store_deleted,
        }
    }

    /// Count one request.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        self.requests.with_label_values(&[route, &status.to_string()]).inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    /// Count the flags of one text.
    pub fn observe_flags(&self, r: &FlagReport) {
        for f in &r.flags {
            self.flags_raised.with_label_values(&[f.as_str()]).inc();
        }
    }

    /// Count one classified text.
    pub fn observe_classified(&self, c: &Classified) {
        self.items_classified.inc();
        self.escalation_levels.with_label_values(&[&c.emotion.level.to_string()]).inc();
        self.triage_priorities.with_label_values(&[&c.triage.priority.to_string(), &c.triage.route]).inc();
        self.observe_flags(&c.flags);
    }

    /// Time one store insert.
    pub fn observe_store(&self, seconds: f64, ok: bool) {
        self.store_writes.with_label_values(&[if ok { "ok" } else { "error" }]).observe(seconds);
    }

    /// The registry, for a component that adds its own metrics (the Kafka
    /// consumer); [`Metrics::render`] then includes them.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("encoding metrics to a Vec cannot fail");
        String::from_utf8(buf).expect("prometheus text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
