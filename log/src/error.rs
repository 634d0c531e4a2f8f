//! Errors of the log and the checkpoint store.

use std::path::PathBuf;

/// Everything that can go wrong in [`crate::Log`] and [`crate::CheckpointStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The topic does not exist.
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    /// The partition does not exist in the topic.
    #[error("topic '{topic}' has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Requested partition.
        partition: u32,
        /// Number of partitions of the topic.
        partitions: u32,
    },
    /// A topic already exists with another partition count.
    #[error("topic '{topic}' already exists with {existing} partitions (asked for {requested})")]
    TopicMismatch {
        /// Topic name.
        topic: String,
        /// Existing partition count.
        existing: u32,
        /// Requested partition count.
        requested: u32,
    },
    /// A topic or checkpoint name is not allowed.
    #[error("invalid name '{name}': {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The requested offset was removed by retention (or never existed below the start).
    #[error("offset {requested} of {topic}/{partition} is no longer retained; the earliest retained offset is {earliest}")]
    OffsetTruncated {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// Requested offset.
        requested: u64,
        /// Earliest offset still in the log.
        earliest: u64,
    },
    /// The requested offset is past the end of the partition.
    #[error(
        "offset {requested} of {topic}/{partition} is past the end of the log (end offset {end})"
    )]
    OffsetBeyondEnd {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// Requested offset.
        requested: u64,
        /// Next offset to be written.
        end: u64,
    },
    /// A record or batch is larger than the configured limit.
    #[error("batch of {bytes} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge {
        /// Encoded size.
        bytes: u64,
        /// Configured limit.
        limit: u64,
    },
    /// Data read back from disk failed its checksum or framing checks.
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte position in the file.
        position: u64,
        /// What check failed.
        reason: String,
    },
    /// A previous write or fsync failed; the partition refuses further appends
    /// until the log is reopened (which re-runs recovery).
    #[error("{topic}/{partition} is failed after an earlier I/O error ({reason}); reopen the log to recover")]
    PartitionFailed {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// The original error, as text.
        reason: String,
    },
    /// Another process (or another `Log` in this process) holds the directory.
    #[error("log directory {0} is locked by another process")]
    Locked(PathBuf),
    /// A position token could not be decoded.
    #[error("invalid position token: {0}")]
    InvalidPosition(&'static str),
    /// The configuration is not usable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
