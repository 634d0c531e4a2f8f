//! Configuration of the log.

use std::time::Duration;

use crate::error::{Error, Result};

/// When appended data is forced to stable storage, and therefore when an append is
/// acknowledged. See `docs/durability.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` before an append returns. Concurrent appenders to one partition share
    /// one fsync (group commit). Nothing acknowledged is lost on a crash or power loss.
    Always,
    /// An append returns once written to the OS (page cache); a background thread fsyncs
    /// every partition with unsynced data at this period. A process crash loses nothing;
    /// a power loss or kernel crash loses at most the last period of acknowledged data.
    Interval(Duration),
    /// Never fsync (the OS writes back on its own schedule). Tests and benchmarks only:
    /// a power loss can lose any amount of recent data.
    Never,
}

/// Which records readers may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Only records the fsync policy has made durable (the default): nothing a reader
    /// sees can vanish in a crash the policy protects against.
    Durable,
    /// Every record written to the OS, durable or not (lower latency under `Always`/`Interval`).
    Written,
}

/// How much of the log recovery verifies when the log is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Scan and checksum the last (active) segment of each partition fully; for older
    /// segments load the sparse index and checksum only the part after its last entry
    /// (older segments were fsynced when they were rolled). The default.
    Tail,
    /// Scan and checksum every segment.
    All,
}

/// Retention: whole segments are deleted when they fall outside these bounds. The active
/// (last) segment of a partition is never deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Keep at most about this many bytes per partition (deleting oldest segments first).
    pub max_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this.
    pub max_age: Option<Duration>,
}

/// Configuration of a [`crate::Log`].
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// fsync policy (default `Always`).
    pub fsync: FsyncPolicy,
    /// Roll to a new segment file when the active one would exceed this size
    /// (default 64 MiB; at most 1 GiB).
    pub segment_bytes: u64,
    /// Also roll when the active segment's first record is older than this, so time
    /// retention can delete quiet partitions' data (default 1 hour).
    pub segment_max_age: Option<Duration>,
    /// Add a sparse index entry every this many bytes of segment data (default 4 KiB).
    pub index_interval_bytes: u64,
    /// Largest accepted batch (encoded), default 16 MiB. Also bounds recovery's buffers.
    pub max_batch_bytes: u64,
    /// Retention bounds (default: keep everything).
    pub retention: Retention,
    /// How often the background thread applies retention (default 30 s).
    pub retention_check_interval: Duration,
    /// What readers see (default `Durable`).
    pub visibility: Visibility,
    /// Recovery verification depth (default `Tail`).
    pub verify: Verify,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            fsync: FsyncPolicy::Always,
            segment_bytes: 64 << 20,
            segment_max_age: Some(Duration::from_secs(3600)),
            index_interval_bytes: 4096,
            max_batch_bytes: 16 << 20,
            retention: Retention::default(),
            retention_check_interval: Duration::from_secs(30),
            visibility: Visibility::Durable,
            verify: Verify::Tail,
        }
    }
}

impl LogConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.segment_bytes < 1024 || self.segment_bytes > (1 << 30) {
            return Err(Error::InvalidConfig(format!(
                "segment_bytes must be between 1 KiB and 1 GiB, got {}",
                self.segment_bytes
            )));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::InvalidConfig(
                "index_interval_bytes must be positive".into(),
            ));
        }
        if self.max_batch_bytes < 64 || self.max_batch_bytes > (1 << 30) {
            return Err(Error::InvalidConfig(format!(
                "max_batch_bytes must be between 64 B and 1 GiB, got {}",
                self.max_batch_bytes
            )));
        }
        if let FsyncPolicy::Interval(d) = self.fsync {
            if d.is_zero() {
                return Err(Error::InvalidConfig(
                    "fsync interval must be positive (use Always)".into(),
                ));
            }
        }
        Ok(())
    }
}
