//! weir's Kafka side: Kafka as the log of `weir serve --kafka` (see `docs/kafka.md`).
//!
//! - [`LogBackend`]: the log operations the server needs, implemented by the embedded
//!   [`weir_log::Log`] and by [`KafkaLog`].
//! - [`Admin`]: topic creation (stream topics, the compacted statements and checkpoints
//!   topics, outputs).
//! - [`Producer`]: idempotent, or transactional where the broker supports it.
//! - [`GroupMember`] + [`RebalanceHooks`]: an instance's share of the input partitions,
//!   with drain/checkpoint on revocation and restore/resume on assignment; lag metrics.
//! - [`StatementLog`], [`OutputWriter`] (key, header `weir-id`), [`KafkaCheckpointStore`].
//! - [`WatermarkTracker`]: min over partitions with an idle timeout.
//! - [`partition_for_key`]: Kafka's murmur2 partitioner.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod admin;
mod backend;
mod checkpoint;
mod config;
mod error;
mod group;
mod outputs;
mod partitioner;
mod producer;
mod reader;
mod statements;
mod watermark;

pub use admin::Admin;
pub use backend::{IdRecord, KafkaLog, LogBackend};
pub use checkpoint::KafkaCheckpointStore;
pub use config::{validate_topic, Delivery, KafkaConfig};
pub use error::{Error, Result};
pub use group::{GroupMember, NoHooks, PartitionLag, RebalanceHooks};
pub use outputs::{Output, OutputWriter, ID_HEADER};
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{Delivered, OutRecord, Producer};
pub use rdkafka::consumer::ConsumerGroupMetadata;
pub use reader::{KafkaRecord, PartitionReader, SharedConsumer};
pub use statements::StatementLog;
pub use watermark::WatermarkTracker;
