//! Kafka client settings: plain Kafka (librdkafka) options, nothing
//! broker-specific, so the same settings run against Apache Kafka, Redpanda
//! or a managed cluster.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;

/// Everything `kesu consume` and `kesu produce` need to reach a cluster.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `host:port,...` (`bootstrap.servers`).
    pub brokers: String,
    /// The consumer group: consumers of one group share the input's partitions.
    pub group_id: String,
    pub input_topic: String,
    pub results_topic: String,
    pub dead_letter_topic: String,
    /// Most records classified together.
    pub batch_size: usize,
    /// How long a batch waits for more records after its first.
    pub batch_wait: Duration,
    /// `session.timeout.ms`: how soon the group notices a consumer gone.
    pub session_timeout_ms: u32,
    /// `max.poll.interval.ms`: longest a batch (with its retries) may take
    /// before the group hands its partitions to another consumer.
    pub max_poll_interval_ms: u32,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    /// Never logged or printed.
    pub sasl_password: Option<String>,
    /// CA bundle (PEM) to check the brokers' certificates.
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub ssl_certificate_location: Option<PathBuf>,
    pub ssl_key_location: Option<PathBuf>,
    /// Any other librdkafka setting, `name=value` (applied last).
    pub extra: Vec<(String, String)>,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            brokers: "127.0.0.1:9092".into(),
            group_id: "kesu".into(),
            input_topic: "complaints".into(),
            results_topic: "complaints.results".into(),
            dead_letter_topic: "complaints.dead-letter".into(),
            batch_size: 64,
            batch_wait: Duration::from_millis(50),
            session_timeout_ms: 45_000,
            max_poll_interval_ms: 300_000,
            security_protocol: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            extra: Vec::new(),
        }
    }
}

/// Parse one `name=value` librdkafka setting.
pub fn parse_extra(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?}: give name=value (a librdkafka setting)")),
    }
}

impl KafkaOptions {
    /// Settings every client shares: brokers, TLS, SASL, the extras.
    pub fn common(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers).set("client.id", client_id);
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let opt = [
            ("security.protocol", self.security_protocol.clone()),
            ("sasl.mechanism", self.sasl_mechanism.clone()),
            ("sasl.username", self.sasl_username.clone()),
            ("sasl.password", self.sasl_password.clone()),
            ("ssl.ca.location", self.ssl_ca_location.as_ref().map(path)),
            ("ssl.certificate.location", self.ssl_certificate_location.as_ref().map(path)),
            ("ssl.key.location", self.ssl_key_location.as_ref().map(path)),
        ];
        for (k, v) in opt {
            if let Some(v) = v {
                c.set(k, v);
            }
        }
        c
    }

    fn with_extra(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// The consumer: manual offsets (committed only after a batch's results
    /// are delivered and its items stored), reading from the earliest offset
    /// when the group has none, statistics every 5 s for the lag metrics.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = self.common("kesu-consume");
        c.set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (self.session_timeout_ms / 3).max(1).to_string())
            .set("max.poll.interval.ms", self.max_poll_interval_ms.to_string())
            .set("statistics.interval.ms", "5000")
            // Bounded prefetch: backpressure when classification falls behind.
            .set("queued.max.messages.kbytes", "16384");
        self.with_extra(c)
    }

    /// The producer of results and dead letters: every in-sync replica
    /// acknowledges; keys hash like the Java client (murmur2), so results
    /// land in the partition a Java consumer expects for the key.
    pub fn producer_config(&self, client_id: &str) -> ClientConfig {
        let mut c = self.common(client_id);
        c.set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        self.with_extra(c)
    }

    /// An admin client (topic creation).
    pub fn admin_config(&self) -> ClientConfig {
        self.with_extra(self.common("kesu-admin"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_parse_and_override() {
        assert_eq!(parse_extra("fetch.min.bytes=1").unwrap(), ("fetch.min.bytes".into(), "1".into()));
        assert_eq!(parse_extra("a==b").unwrap(), ("a".into(), "=b".into()));
        assert!(parse_extra("novalue").is_err());
        assert!(parse_extra("=x").is_err());
        let o = KafkaOptions {
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            extra: vec![("auto.offset.reset".into(), "latest".into())],
            ..Default::default()
        };
        let c = o.consumer_config();
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("latest"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.password"), None);
        assert_eq!(o.producer_config("p").get("acks"), Some("all"));
    }
}
