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
    /// Column that orders the stream; `None` = ingestion time.
    pub event_time: Option<String>,
    /// Watermark = highest event time seen − `max_delay_ms`.
    pub max_delay_ms: u64,
    pub late: LatePolicy,
    /// Kafka key column (`WITH (key = 'col')`).
    pub key: Option<String>,
    pub kafka_topic: Option<String>,
    pub partitions: Option<u32>,
}

impl StreamDef {
    pub fn column_type(&self, name: &str) -> Option<DataType> {
        self.columns
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, t)| *t)
    }
}
