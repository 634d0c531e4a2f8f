//! weir's embedded log: the durable, partitioned, append-only source of truth that every
//! write (events and statements alike) goes to before the engine applies it.
//!
//! - [`Log`]: topics of partitions; each partition is a sequence of segment files of
//!   CRC32C-checked batches with dense offsets, a sparse offset index, an fsync policy
//!   ([`FsyncPolicy`]) with group commit, recovery that cuts torn tails, and retention.
//! - [`Position`]: the opaque, monotonically increasing position token of a write.
//! - [`CheckpointStore`]: atomic, checksummed, versioned snapshots of worker state with
//!   the input offsets they cover.
//!
//! Why a small segment log rather than an embedded store (redb, fjall, …): the data is
//! an append-only sequence read in order, which is exactly what segment files are; an
//! LSM or B-tree store would add write amplification, compaction and a second recovery
//! mechanism while still needing our own offsets, batching and group commit on top. The
//! format here is small enough to verify completely (every batch and record carries a
//! CRC32C, recovery cuts at the first bad frame), and it is the shape Kafka uses, so the
//! Kafka mode maps onto the same concepts (topics, partitions, dense offsets).
//!
//! Modules, in the order data flows through them: `config` (policies) → `log` (topics,
//! the background thread) → `partition` (single writer, group commit, recovery,
//! retention) → `segment` (one file + its sparse index, scans and reads) → `format`
//! (batch and record frames, CRC32C). `position` and `checkpoint` sit beside them.
//!
//! Operators' documentation: `docs/durability.md`.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod checkpoint;
mod config;
mod error;
mod format;
mod log;
mod partition;
mod position;
mod segment;

pub use checkpoint::{Checkpoint, CheckpointStore};
pub use config::{FsyncPolicy, LogConfig, Retention, Verify, Visibility};
pub use error::{Error, Result};
pub use format::{Record, BATCH_HEADER, RECORD_HEADER};
pub use log::{validate_name, Appended, Log, LogIter};
pub use partition::{Cut, PartitionRecovery, PartitionStats, QUARANTINE_DIR};
pub use position::Position;

/// Topic holding statements (CREATE/DROP): the catalog is rebuilt by replaying it.
pub const STATEMENTS_TOPIC: &str = "statements";
/// Topic holding output records.
pub const OUTPUTS_TOPIC: &str = "outputs";
