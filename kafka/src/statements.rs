//! The statements topic (`<prefix>statements`, compacted, one partition): every
//! instance reads it from the beginning at start-up and then follows it, so a statement
//! posted to any instance reaches all of them in the same order.

use std::time::Duration;

use crate::admin::Admin;
use crate::config::KafkaConfig;
use crate::error::Result;
use crate::producer::{OutRecord, Producer};
use crate::reader::{KafkaRecord, PartitionReader};

/// Writer and follower of the statements topic.
pub struct StatementLog {
    topic: String,
    producer: Producer,
    reader: PartitionReader,
    next: u64,
}

impl StatementLog {
    /// Opens the topic (created compacted with one partition if missing), positioned at
    /// its beginning.
    pub fn open(config: &KafkaConfig) -> Result<StatementLog> {
        let topic = config.statements_topic();
        Admin::new(config)?.create_topic(&topic, 1, true)?;
        Ok(StatementLog {
            producer: Producer::idempotent(config)?,
            reader: PartitionReader::new(config, &topic, 0)?,
            topic,
            next: 0,
        })
    }

    /// Appends a statement keyed by its name (compaction keeps the latest per name: a
    /// `DROP` written under the name of its `CREATE` replaces it). Returns its offset.
    pub fn append(&self, name: &str, text: &[u8]) -> Result<u64> {
        let d = self.producer.send(
            &self.topic,
            &[OutRecord {
                partition: Some(0),
                key: Some(name.as_bytes()),
                value: text,
                ..Default::default()
            }],
        )?;
        Ok(d.first().map_or(0, |d| d.offset))
    }

    /// Every statement from the beginning to the current end (start-up), after which
    /// [`StatementLog::follow`] returns only newer ones.
    pub fn read_all(&mut self) -> Result<Vec<KafkaRecord>> {
        let all = self.reader.read_to_end(0)?;
        self.next = all
            .last()
            .map_or(self.next, |r| r.offset + 1)
            .max(self.reader.watermarks()?.0);
        Ok(all)
    }

    /// Statements appended since the last call (waits up to `wait` for one).
    pub fn follow(&mut self, wait: Duration) -> Result<Vec<KafkaRecord>> {
        let got = self.reader.read(self.next, 1000, 1 << 20, wait)?;
        if let Some(last) = got.last() {
            self.next = last.offset + 1;
        }
        Ok(got)
    }
}
