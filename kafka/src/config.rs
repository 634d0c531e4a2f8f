//! Connection settings and weir's topic names.

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::error::{Error, Result};

/// How records are delivered to output topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Transactions if the broker supports them (detected with `InitProducerId`),
    /// otherwise idempotent at-least-once.
    Auto,
    /// Idempotent producer, at-least-once; duplicates after a crash carry the same
    /// deterministic `weir-id` and can be dropped downstream.
    AtLeastOnce,
    /// Transactions required (read-process-write); fails if the broker cannot.
    ExactlyOnce,
}

/// Settings shared by every Kafka client weir creates.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `HOST:PORT[,…]`.
    pub bootstrap: String,
    /// Consumer group of the `weir serve` instances (`--group`, default `weir`).
    pub group: String,
    /// Prefix of weir's default topic names (`--topic-prefix`, default `weir.`).
    pub topic_prefix: String,
    /// Partitions of a topic weir creates when a `CREATE STREAM` does not say (4).
    pub default_partitions: u32,
    /// `client.id` of the clients (helps reading broker logs).
    pub client_id: String,
    /// Timeout of one blocking request (metadata, admin, delivery wait, commit).
    pub request_timeout: Duration,
    /// Consumer-group session timeout: how soon a killed member's partitions move.
    pub session_timeout: Duration,
    /// Delivery guarantee of output writes.
    pub delivery: Delivery,
    /// Replication factor of topics weir creates; -1 = the broker's default.
    pub replication: i32,
    /// Extra librdkafka properties applied to every client (after weir's own).
    pub extra: Vec<(String, String)>,
}

impl KafkaConfig {
    /// Defaults for `bootstrap` (group `weir`, prefix `weir.`, 4 partitions).
    pub fn new(bootstrap: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap: bootstrap.into(),
            group: "weir".into(),
            topic_prefix: "weir.".into(),
            default_partitions: 4,
            client_id: "weir".into(),
            request_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(10),
            delivery: Delivery::Auto,
            replication: -1,
            extra: Vec::new(),
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap.trim().is_empty() {
            return Err(Error::Config(
                "empty bootstrap address (--kafka HOST:PORT)".into(),
            ));
        }
        if self.group.trim().is_empty() {
            return Err(Error::Config("empty consumer group (--group)".into()));
        }
        if self.default_partitions == 0 {
            return Err(Error::Config(
                "default partitions must be at least 1".into(),
            ));
        }
        validate_topic(&self.statements_topic())?;
        Ok(())
    }

    /// Topic of stream `stream` unless the stream names one (`kafka_topic`).
    pub fn stream_topic(&self, stream: &str) -> String {
        format!("{}{}", self.topic_prefix, stream)
    }

    /// The compacted statements topic, read from the start by every instance.
    pub fn statements_topic(&self) -> String {
        format!("{}{}", self.topic_prefix, weir_log::STATEMENTS_TOPIC)
    }

    /// The outputs topic.
    pub fn outputs_topic(&self) -> String {
        format!("{}{}", self.topic_prefix, weir_log::OUTPUTS_TOPIC)
    }

    /// The compacted topic holding partition-state checkpoints.
    pub fn checkpoints_topic(&self) -> String {
        format!("{}checkpoints", self.topic_prefix)
    }

    pub(crate) fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("client.id", &self.client_id)
            .set("log_level", "3");
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// Kafka topic names: 1–249 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_topic(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid Kafka topic name {name:?}: use 1-249 of A-Z a-z 0-9 . _ -"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_validation() {
        let c = KafkaConfig::new("127.0.0.1:9092");
        assert_eq!(c.stream_topic("clicks"), "weir.clicks");
        assert_eq!(c.statements_topic(), "weir.statements");
        assert_eq!(c.outputs_topic(), "weir.outputs");
        assert!(c.validate().is_ok());
        assert!(validate_topic("a b").is_err());
        assert!(validate_topic("..").is_err());
        assert!(validate_topic(&"x".repeat(250)).is_err());
        let mut bad = c.clone();
        bad.default_partitions = 0;
        assert!(bad.validate().is_err());
        bad = c;
        bad.bootstrap = " ".into();
        assert!(bad.validate().is_err());
    }
}
