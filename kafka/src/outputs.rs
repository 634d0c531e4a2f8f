//! The outputs topic (`<prefix>outputs`): value = the output record (language §7), key =
//! the partition key, header `weir-id` = the record's deterministic id.

use rdkafka::consumer::ConsumerGroupMetadata;

use crate::admin::Admin;
use crate::config::KafkaConfig;
use crate::error::Result;
use crate::producer::{Delivered, OutRecord, Producer};

/// Header carrying the output record's id.
pub const ID_HEADER: &str = "weir-id";

/// One output to write.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    /// The partition key (`None` for outputs without one).
    pub key: Option<&'a [u8]>,
    /// The record's id ([`matcher`'s `OutputRecord::id`]).
    pub id: &'a str,
    /// The JSON of the record.
    pub value: &'a [u8],
}

/// Writes outputs, transactionally when the producer is transactional.
pub struct OutputWriter {
    topic: String,
    producer: Producer,
}

impl OutputWriter {
    /// Opens the writer with the delivery the config asks for ([`Producer::for_delivery`]);
    /// `transactional_id` must be stable per instance (e.g. `weir-<group>-<instance>`).
    pub fn open(config: &KafkaConfig, transactional_id: &str) -> Result<OutputWriter> {
        let topic = config.outputs_topic();
        Admin::new(config)?.create_topic(&topic, config.default_partitions, false)?;
        Ok(OutputWriter {
            topic,
            producer: Producer::for_delivery(config, transactional_id)?,
        })
    }

    /// True when writes are exactly-once (transactions).
    pub fn is_transactional(&self) -> bool {
        self.producer.is_transactional()
    }

    /// The output topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes outputs (partitioned by key) and waits for the acknowledgements (in a
    /// transaction of their own when the producer is transactional).
    pub fn write(&self, outputs: &[Output<'_>]) -> Result<Vec<Delivered>> {
        if !self.producer.is_transactional() {
            return self.send(outputs);
        }
        self.producer.begin()?;
        let r = self
            .send(outputs)
            .and_then(|d| self.producer.commit().map(|_| d));
        if r.is_err() {
            let _ = self.producer.abort();
        }
        r
    }

    fn send(&self, outputs: &[Output<'_>]) -> Result<Vec<Delivered>> {
        let headers: Vec<[(&str, &[u8]); 1]> = outputs
            .iter()
            .map(|o| [(ID_HEADER, o.id.as_bytes())])
            .collect();
        let recs: Vec<OutRecord<'_>> = outputs
            .iter()
            .zip(&headers)
            .map(|(o, h)| OutRecord {
                key: o.key,
                value: o.value,
                headers: h,
                ..Default::default()
            })
            .collect();
        self.producer.send(&self.topic, &recs)
    }

    /// Exactly-once step: in one transaction, writes `outputs` and commits the consumed
    /// input `offsets` (`(topic, partition, next offset)`) for the group. On an error the
    /// transaction is aborted and the error returned (the inputs are then re-read).
    /// Without transactions: writes, and the caller commits offsets itself.
    pub fn write_with_offsets(
        &self,
        outputs: &[Output<'_>],
        offsets: &[(&str, u32, u64)],
        group: &ConsumerGroupMetadata,
    ) -> Result<Vec<Delivered>> {
        if !self.producer.is_transactional() {
            return self.write(outputs);
        }
        self.producer.begin()?;
        let r = self
            .send(outputs)
            .and_then(|d| self.producer.send_offsets(offsets, group).map(|_| d))
            .and_then(|d| self.producer.commit().map(|_| d));
        if r.is_err() {
            let _ = self.producer.abort();
        }
        r
    }
}
