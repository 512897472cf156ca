//! Kafka intake for kesu: `kesu consume` reads complaint records from a topic
//! as a consumer group, classifies them in batches through the same intake
//! path as `POST /v1/classify` (admission, triage, the store rule, per-item
//! idempotency), and produces one result per record to a results topic, keyed
//! like the input, or a dead letter with the error. See [`consume`] for the
//! delivery guarantees and [`record`] for the record formats.
//!
//! The client is librdkafka (built from the `rdkafka` crate's bundled source)
//! with plain Kafka settings ([`settings::KafkaOptions`]): nothing here is
//! specific to one broker.

pub mod consume;
pub mod produce;
pub mod record;
pub mod settings;

pub use consume::{create_topics, KafkaIntake, KafkaMetrics, Summary};
pub use settings::KafkaOptions;
