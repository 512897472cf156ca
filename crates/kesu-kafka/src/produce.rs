//! `kesu produce`: push a file of complaint records (JSON lines) into the
//! input topic, each keyed by its `customer_ref` so that one customer's
//! complaints stay in one partition, in order (repeat-contact triage sees
//! them one after another). Lines are sent as they are: a line that is not a
//! complaint record reaches the dead-letter topic through the consumer.

use std::io::BufRead;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::settings::KafkaOptions;

/// At most this many records wait for acknowledgement at once.
const IN_FLIGHT: usize = 10_000;

/// What [`produce_lines`] sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Produced {
    pub records: u64,
    /// Records without a `customer_ref` (sent without a key: spread over partitions).
    pub unkeyed: u64,
}

/// The partition key of one line: its `customer_ref`, if it is a JSON
/// object with a string `customer_ref`.
pub fn key_of(line: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct K {
        customer_ref: Option<serde_json::Value>,
    }
    match serde_json::from_str::<K>(line).ok()?.customer_ref? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

/// Send every non-blank line of `input` to the input topic and wait until
/// all are acknowledged. Fails on the first record the brokers refuse.
pub async fn produce_lines(opts: &KafkaOptions, input: impl BufRead) -> anyhow::Result<Produced> {
    let producer: FutureProducer = opts.producer_config("kesu-produce").create()?;
    let mut out = Produced::default();
    let mut in_flight = FuturesUnordered::new();
    for line in input.lines() {
        let line = line.map_err(|e| anyhow::anyhow!("reading line {}: {e}", out.records + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let key = key_of(&line);
        if key.is_none() {
            out.unkeyed += 1;
        }
        let producer = producer.clone();
        let topic = opts.input_topic.clone();
        in_flight.push(async move {
            let mut rec = FutureRecord::to(&topic).payload(&line);
            if let Some(k) = &key {
                rec = rec.key(k.as_str());
            }
            producer.send(rec, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| e)
        });
        out.records += 1;
        while in_flight.len() >= IN_FLIGHT {
            if let Some(r) = in_flight.next().await {
                r?;
            }
        }
    }
    while let Some(r) = in_flight.next().await {
        r?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::key_of;

    #[test]
    fn keys() {
        assert_eq!(key_of(r#"{"text": "x", "customer_ref": "C-9"}"#).as_deref(), Some("C-9"));
        assert_eq!(key_of(r#"{"text": "x", "customer_ref": 9}"#), None);
        assert_eq!(key_of(r#"{"text": "x"}"#), None);
        assert_eq!(key_of("not json"), None);
        assert_eq!(key_of("[1]"), None);
    }
}

/// One record read back by [`read_topic`].
#[derive(Debug, Clone)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Read every record of `topic` from the start to its end (no consumer
/// group, nothing committed): `kesu peek`, and the tests. The end is where
/// every partition has reported its end and nothing more came for `settle`.
pub async fn read_topic(opts: &KafkaOptions, topic: &str, settle: Duration) -> anyhow::Result<Vec<Read>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let (opts, topic) = (opts.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let mut cfg = opts.common("kesu-peek");
        cfg.set("group.id", "kesu-peek").set("enable.auto.commit", "false").set("enable.partition.eof", "true");
        for (k, v) in &opts.extra {
            cfg.set(k, v);
        }
        let c: BaseConsumer = cfg.create()?;
        let md = c.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        anyhow::ensure!(!parts.is_empty(), "{topic}: no such topic (or no partitions)");
        let mut tpl = TopicPartitionList::new();
        for p in &parts {
            tpl.add_partition_offset(&topic, *p, Offset::Beginning)?;
        }
        c.assign(&tpl)?;
        let mut out = Vec::new();
        let mut at_end = std::collections::HashSet::new();
        let mut last = std::time::Instant::now();
        let started = std::time::Instant::now();
        let mut errors = 0;
        loop {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last = std::time::Instant::now();
                    at_end.remove(&m.partition());
                    out.push(Read {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                    });
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                // A transient client error (a broker connection reset) is retried by librdkafka.
                Some(Err(e)) => {
                    errors += 1;
                    anyhow::ensure!(errors <= 50, "{topic}: too many errors while reading, the last: {e}");
                    tracing::warn!(error = %e, "reading {topic}");
                }
                None => {}
            }
            if at_end.len() == parts.len() && last.elapsed() >= settle {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120) || at_end.len() == parts.len(),
                "{topic}: {} of {} partitions not read to their end in 120 s",
                parts.len() - at_end.len(),
                parts.len()
            );
        }
        out.sort_by_key(|r| (r.partition, r.offset));
        Ok(out)
    })
    .await?
}
