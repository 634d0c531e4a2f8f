//! Errors of the Kafka side.

use rdkafka::error::KafkaError;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client library or the broker reported an error.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A setting or argument is invalid (bad topic name, zero partitions, …).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The broker did not answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A topic or partition does not exist.
    #[error("unknown topic or partition: {0}")]
    Unknown(String),
    /// Data read back from a weir-owned topic (checkpoints) is not what weir wrote.
    #[error("corrupt data in {0}")]
    Corrupt(String),
    /// An error of the embedded log (when [`crate::LogBackend`] is the embedded log).
    #[error(transparent)]
    Log(#[from] weir_log::Error),
}
