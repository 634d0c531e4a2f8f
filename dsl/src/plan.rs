//! Validated, engine-facing descriptions produced by `check` from the AST.

use crate::ast::DataType;
use serde::{Deserialize, Serialize};

/// What to do with a row older than the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum LatePolicy {
    /// Count and drop it (default).
    #[default]
    Drop,
    /// Process it anyway and mark derived output `"late": true`.
    Emit,
}

/// A stream as the engines see it: a validated `CREATE STREAM`, or the output of a rule,
/// search or metric (which other statements may read `FROM`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamDef {
    pub name: String,
    /// Declared columns in order; undeclared JSON fields remain readable as JSON.
    pub columns: Vec<(String, DataType)>,
    /// Column that orders the stream; `None` = ingestion time (the time the event was
    /// appended). The output stream of a rule, search or metric (see
    /// [`crate::check::Entry::derived`]) has a `ts` TIMESTAMP column holding the output
    /// record's `ts` and `event_time: Some("ts")` (or `None` when a user column named `ts`
    /// is not a TIMESTAMP; then it is ordered by the records' time all the same).
    pub event_time: Option<String>,
    /// Watermark = highest event time seen − `max_delay_ms`.
    pub max_delay_ms: u64,
    /// `WITH (idle_timeout = …)`: after this long without an event, a partition of the
    /// stream stops holding back combined watermarks and the stream's watermark follows
    /// the wall clock from its last event (`weir serve`); 0 = off.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    pub late: LatePolicy,
    /// Kafka key column (`WITH (key = 'col')`).
    pub key: Option<String>,
    pub kafka_topic: Option<String>,
    pub partitions: Option<u32>,
}

/// The default `idle_timeout`: 5 seconds.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 5_000;

fn default_idle_timeout_ms() -> u64 {
    DEFAULT_IDLE_TIMEOUT_MS
}

impl StreamDef {
    pub fn column_type(&self, name: &str) -> Option<DataType> {
        self.columns
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, t)| *t)
    }
}

/// Accuracy and bounds of a metric (`WITH (...)` after WINDOW); `None` = engine default.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricOptions {
    /// HyperLogLog++ precision, 4..=18.
    pub hll_precision: Option<u8>,
    /// Bloom filter false-positive probability, in (0, 1).
    pub bloom_fpp: Option<f64>,
    /// Relative error of the quantile sketch, in (0, 1).
    pub percentile_error: Option<f64>,
    /// How long closed windows stay queryable.
    pub retention_ms: Option<u64>,
    /// Cardinality guard: most groups per window.
    pub max_groups: Option<u64>,
    /// APPROX_SET: items per window the Bloom filter is sized for.
    pub bloom_capacity: Option<u64>,
    /// APPROX_PERCENTILE: most buckets per sign of the quantile sketch.
    pub percentile_max_bins: Option<u64>,
    /// APPROX_TOP_K: items monitored (default max(10·k, 64)).
    pub topk_capacity: Option<u64>,
}
