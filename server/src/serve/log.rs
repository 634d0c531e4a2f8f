//! The service's log and checkpoint store: the embedded [`Log`] or Kafka, behind one
//! interface, and the topic names of streams.

use std::sync::Arc;
use weir_kafka::{KafkaCheckpointStore, KafkaLog, LogBackend};
use weir_log::{Checkpoint, CheckpointStore, Log, Position, BATCH_HEADER, RECORD_HEADER};

/// Room an event leaves below the log's batch limit (a repartitioned copy adds a header
/// of a few bytes to the event).
pub const EVENT_MARGIN: u64 = 64 << 10;

/// Splits `records` into consecutive runs that each fit one append of at most `limit`
/// bytes (the log's framing counted); a record that does not fit even alone is a run of
/// its own (the caller truncates or drops it). No limit: one run.
pub fn batches<T: AsRef<[u8]>>(records: &[T], limit: Option<u64>) -> Vec<&[T]> {
    let Some(limit) = limit else {
        return if records.is_empty() {
            Vec::new()
        } else {
            vec![records]
        };
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = BATCH_HEADER as u64;
    for (i, r) in records.iter().enumerate() {
        let n = (RECORD_HEADER + r.as_ref().len()) as u64;
        if i > start && size + n > limit {
            out.push(&records[start..i]);
            start = i;
            size = BATCH_HEADER as u64;
        }
        size += n;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

/// True when one record alone is over the batch `limit`.
pub fn too_large_alone(record: &[u8], limit: Option<u64>) -> bool {
    limit.is_some_and(|l| (BATCH_HEADER + RECORD_HEADER + record.len()) as u64 > l)
}

/// The service's log: the embedded [`Log`] or Kafka ([`KafkaLog`]). Shared operations go
/// through [`LogBackend`] (this derefs to it); the few embedded-only ones (group commit,
/// sync) are matched where used.
pub struct ServerLog {
    backend: Arc<dyn LogBackend>,
    kind: LogKind,
}

pub enum LogKind {
    Embedded(Arc<Log>),
    Kafka(Arc<KafkaLog>),
}

impl ServerLog {
    pub fn embedded(log: Log) -> ServerLog {
        let log = Arc::new(log);
        ServerLog {
            backend: log.clone(),
            kind: LogKind::Embedded(log),
        }
    }

    pub fn kafka(log: Arc<KafkaLog>) -> ServerLog {
        ServerLog {
            backend: log.clone(),
            kind: LogKind::Kafka(log),
        }
    }

    /// The embedded log, when this service runs on it.
    pub fn as_embedded(&self) -> Option<&Log> {
        match &self.kind {
            LogKind::Embedded(l) => Some(l),
            LogKind::Kafka(_) => None,
        }
    }

    /// Kafka, when this service runs on it.
    pub fn as_kafka(&self) -> Option<&KafkaLog> {
        match &self.kind {
            LogKind::Kafka(l) => Some(l),
            LogKind::Embedded(_) => None,
        }
    }

    /// Appends without waiting for durability (embedded log; Kafka appends are
    /// acknowledged by the broker before they return).
    pub fn append_nowait(
        &self,
        topic: &str,
        partition: u32,
        records: &[&[u8]],
    ) -> Result<weir_log::Appended, weir_kafka::Error> {
        match &self.kind {
            LogKind::Embedded(l) => Ok(l.append_nowait(topic, partition, records)?),
            LogKind::Kafka(k) => k.append(topic, partition, records),
        }
    }

    /// Waits until records below `end` are durable (embedded log; a no-op on Kafka, whose
    /// appends are acknowledged already).
    pub fn wait_durable(
        &self,
        topic: &str,
        partition: u32,
        end: u64,
    ) -> Result<(), weir_kafka::Error> {
        match &self.kind {
            LogKind::Embedded(l) => Ok(l.wait_durable(topic, partition, end)?),
            LogKind::Kafka(_) => Ok(()),
        }
    }

    /// Creates a topic with its own retention (embedded log; on Kafka, retention is the
    /// topic's configuration on the broker).
    pub fn create_topic_with_retention(
        &self,
        topic: &str,
        partitions: u32,
        retention: weir_log::Retention,
    ) -> Result<(), weir_kafka::Error> {
        match &self.kind {
            LogKind::Embedded(l) => {
                Ok(l.create_topic_with_retention(topic, partitions, retention)?)
            }
            LogKind::Kafka(k) => k.create_topic(topic, partitions),
        }
    }

    /// Sets when a topic's records become readable (embedded log only).
    pub fn set_visibility(
        &self,
        topic: &str,
        visibility: weir_log::Visibility,
    ) -> Result<(), weir_kafka::Error> {
        match &self.kind {
            LogKind::Embedded(l) => Ok(l.set_visibility(topic, visibility)?),
            LogKind::Kafka(_) => Ok(()),
        }
    }

    /// The most bytes one append may take (the embedded log's `max_batch_bytes`, framing
    /// included); `None` on Kafka, where each record is a message of its own.
    pub fn max_batch_bytes(&self) -> Option<u64> {
        match &self.kind {
            LogKind::Embedded(l) => Some(l.config().max_batch_bytes),
            LogKind::Kafka(_) => None,
        }
    }

    /// The largest event ingest accepts: what fits alone in one append, less
    /// [`EVENT_MARGIN`] so that its repartitioned copy (the event behind a small header)
    /// fits too. `None` on Kafka.
    pub fn max_event_bytes(&self) -> Option<usize> {
        self.max_batch_bytes().map(|b| {
            b.saturating_sub(EVENT_MARGIN + (BATCH_HEADER + RECORD_HEADER) as u64) as usize
        })
    }

    /// Flushes the embedded log (Kafka acknowledges every append already).
    pub fn sync(&self) -> Result<(), String> {
        match &self.kind {
            LogKind::Embedded(l) => l.sync().map_err(|e| e.to_string()),
            LogKind::Kafka(_) => Ok(()),
        }
    }
}

impl std::ops::Deref for ServerLog {
    type Target = dyn LogBackend;
    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

/// Where worker checkpoints are kept: files next to the embedded log, or Kafka's
/// compacted checkpoints topic.
pub enum Checkpoints {
    Files(CheckpointStore),
    Kafka(Box<KafkaCheckpointStore>),
}

impl Checkpoints {
    pub fn write_checkpoint(
        &self,
        name: &str,
        covered: &Position,
        data: &[u8],
    ) -> Result<u64, String> {
        match self {
            Checkpoints::Files(c) => c
                .write_checkpoint(name, covered, data)
                .map_err(|e| e.to_string()),
            Checkpoints::Kafka(c) => c
                .write_checkpoint(name, covered, data)
                .map_err(|e| e.to_string()),
        }
    }

    pub fn latest_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, String> {
        match self {
            Checkpoints::Files(c) => c.latest_checkpoint(name).map_err(|e| e.to_string()),
            Checkpoints::Kafka(c) => c.latest_checkpoint(name).map_err(|e| e.to_string()),
        }
    }
}

/// The log topic of a stream's events.
pub fn stream_topic(stream: &str) -> String {
    format!("stream.{stream}")
}
