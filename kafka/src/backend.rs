//! [`LogBackend`]: the log operations `weir serve` needs, implemented by the embedded
//! log ([`weir_log::Log`]) and by Kafka ([`KafkaLog`]), so the server runs on either
//! behind one `Arc<dyn LogBackend>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use weir_log::{Appended, Position, Record};

use crate::admin::Admin;
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::producer::{OutRecord, Producer};
use crate::reader::{KafkaRecord, PartitionReader, SharedConsumer};

/// The log as the server sees it. Topic names are weir's logical names (`statements`,
/// `outputs`, a stream's name); a backend maps them to its own.
///
/// Offsets: the embedded log's are dense (0, 1, 2, …); Kafka's increase but may skip
/// (transaction markers, compaction), so callers must continue from
/// `last_record.offset + 1`, never count records.
pub trait LogBackend: Send + Sync {
    /// Creates a topic if missing (`statements` is created compacted on Kafka).
    fn create_topic(&self, topic: &str, partitions: u32) -> Result<()>;
    /// Partition count of a topic.
    fn partitions(&self, topic: &str) -> Result<u32>;
    /// Appends records to one partition and returns once they are acknowledged.
    fn append(&self, topic: &str, partition: u32, records: &[&[u8]]) -> Result<Appended>;
    /// Appends `(key, value)` records (Kafka keeps the key — needed for compaction and by
    /// other consumers; the embedded log stores the value only).
    fn append_keyed(
        &self,
        topic: &str,
        partition: u32,
        records: &[(&[u8], &[u8])],
    ) -> Result<Appended> {
        let values: Vec<&[u8]> = records.iter().map(|(_, v)| *v).collect();
        self.append(topic, partition, &values)
    }
    /// Reads from `from_offset` on (at most `max_records`, about `max_bytes`); empty at
    /// the end.
    fn read(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>>;
    /// The next offset to be written.
    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64>;
    /// The earliest retained offset.
    fn start_offset(&self, topic: &str, partition: u32) -> Result<u64>;
    /// Blocks until the record at `offset` is readable or `timeout` passes.
    fn wait_for(&self, topic: &str, partition: u32, offset: u64, timeout: Duration)
        -> Result<bool>;
    /// End offsets of every partition of `topic` (a write's position token).
    fn position(&self, topic: &str) -> Result<Position>;
}

impl LogBackend for weir_log::Log {
    fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        Ok(weir_log::Log::create_topic(self, topic, partitions)?)
    }
    fn partitions(&self, topic: &str) -> Result<u32> {
        Ok(weir_log::Log::partitions(self, topic)?)
    }
    fn append(&self, topic: &str, partition: u32, records: &[&[u8]]) -> Result<Appended> {
        Ok(weir_log::Log::append(self, topic, partition, records)?)
    }
    fn read(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>> {
        Ok(weir_log::Log::read(
            self,
            topic,
            partition,
            from_offset,
            max_records,
            max_bytes,
        )?)
    }
    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        Ok(weir_log::Log::end_offset(self, topic, partition)?)
    }
    fn start_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        Ok(weir_log::Log::start_offset(self, topic, partition)?)
    }
    fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<bool> {
        Ok(weir_log::Log::wait_for(
            self, topic, partition, offset, timeout,
        )?)
    }
    fn position(&self, topic: &str) -> Result<Position> {
        Ok(weir_log::Log::position(self, topic)?)
    }
}

type SharedReader = Arc<Mutex<PartitionReader>>;

/// `(key, value, weir-id)` of one output record ([`KafkaLog::append_with_ids`]).
pub type IdRecord<'a> = (Option<&'a [u8]>, &'a [u8], &'a str);

/// Kafka as weir's log. Logical topic `t` is Kafka topic `<prefix>t` unless mapped with
/// [`KafkaLog::map_topic`] (`CREATE STREAM … WITH (kafka_topic = '…')`).
pub struct KafkaLog {
    config: KafkaConfig,
    admin: Admin,
    producer: Producer,
    names: RwLock<HashMap<String, String>>,
    readers: Mutex<HashMap<(String, u32), SharedReader>>,
    /// Readers of partition `p` of any topic share consumer `p` (a worker's streams: one
    /// connection and one fetch request, not one per topic).
    consumers: Mutex<HashMap<u32, Arc<SharedConsumer>>>,
    /// Client for watermark queries (never assigned).
    meta: PartitionReader,
    /// Ends seen through our own appends and reads (logical topic, partition → end).
    known_end: Mutex<HashMap<(String, u32), u64>>,
}

impl KafkaLog {
    /// Connects and creates weir's own topics (statements, outputs, checkpoints).
    pub fn open(config: &KafkaConfig) -> Result<KafkaLog> {
        let admin = Admin::new(config)?;
        admin.ensure_weir_topics()?;
        Ok(KafkaLog {
            config: config.clone(),
            admin,
            producer: Producer::idempotent(config)?,
            names: RwLock::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            consumers: Mutex::new(HashMap::new()),
            meta: PartitionReader::new(config, &config.statements_topic(), 0)?,
            known_end: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Uses Kafka topic `kafka_topic` for logical topic `topic`.
    pub fn map_topic(&self, topic: &str, kafka_topic: &str) -> Result<()> {
        crate::config::validate_topic(kafka_topic)?;
        let mut n = self.names.write().unwrap_or_else(|p| p.into_inner());
        n.insert(topic.to_string(), kafka_topic.to_string());
        Ok(())
    }

    /// The Kafka topic of logical topic `topic`.
    pub fn kafka_topic(&self, topic: &str) -> String {
        let n = self.names.read().unwrap_or_else(|p| p.into_inner());
        match n.get(topic) {
            Some(t) => t.clone(),
            None => format!("{}{}", self.config.topic_prefix, topic),
        }
    }

    /// Reads with keys and headers (what [`LogBackend::read`] drops).
    pub fn read_records(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
        max_records: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<KafkaRecord>> {
        let reader = self.reader(topic, partition)?;
        let mut r = reader.lock().unwrap_or_else(|p| p.into_inner());
        let got = r.read(from_offset, max_records, max_bytes, wait)?;
        if let Some(last) = got.last() {
            self.note_end(topic, partition, last.offset + 1);
        }
        Ok(got)
    }

    /// Every record (with keys and headers) from `from_offset` to the partition's end as
    /// of now, handed to `each` a batch at a time ([`PartitionReader::read_to_end_each`]:
    /// returns when a fetch reports the end, no extra wait).
    pub fn read_records_to_end(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
        mut each: impl FnMut(Vec<KafkaRecord>),
    ) -> Result<()> {
        let reader = self.reader(topic, partition)?;
        let mut r = reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut end = None;
        r.read_to_end_each(from_offset, |batch| {
            end = batch.last().map(|l| l.offset + 1).or(end);
            each(batch);
        })?;
        if let Some(e) = end {
            self.note_end(topic, partition, e);
        }
        Ok(())
    }

    fn reader(&self, topic: &str, partition: u32) -> Result<Arc<Mutex<PartitionReader>>> {
        let kt = self.kafka_topic(topic);
        let mut m = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = m.get(&(kt.clone(), partition)) {
            return Ok(r.clone());
        }
        let shared = {
            let mut c = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
            match c.get(&partition) {
                Some(s) => s.clone(),
                None => {
                    let s = SharedConsumer::new(&self.config)?;
                    c.insert(partition, s.clone());
                    s
                }
            }
        };
        let r = Arc::new(Mutex::new(shared.reader(&kt, partition)));
        m.insert((kt, partition), r.clone());
        Ok(r)
    }

    /// Stops fetching `topic`/`partition` (e.g. a worker partition that moved to another
    /// instance) until its next read, which positions it afresh. The reader itself stays
    /// (one reader per partition: a second one on the same consumer would take records
    /// from the first one's queue).
    pub fn release(&self, topic: &str, partition: u32) {
        let kt = self.kafka_topic(topic);
        let r = self
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(kt, partition))
            .cloned();
        if let Some(r) = r {
            let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = r.stop() {
                tracing::debug!(error = %e, topic, partition, "stopping a reader");
            }
        }
    }

    /// Partitions being fetched by this log's readers (all shared consumers).
    pub fn fetched_partitions(&self) -> usize {
        let c = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        c.values().map(|s| s.assigned()).sum()
    }

    /// Through a client of its own: a reader's lock is held for its reads (up to their
    /// wait), and `/metrics` or an append must not stall a worker's read or wait for it.
    fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
        let kt = self.kafka_topic(topic);
        self.meta.watermarks_of(&kt, partition)
    }

    fn note_end(&self, topic: &str, partition: u32, end: u64) {
        let mut k = self.known_end.lock().unwrap_or_else(|p| p.into_inner());
        let e = k.entry((topic.to_string(), partition)).or_insert(0);
        *e = (*e).max(end);
    }

    fn check_partition(&self, topic: &str, partition: u32) -> Result<()> {
        let n = self.partitions(topic)?;
        if partition >= n {
            return Err(Error::Unknown(format!(
                "topic {topic} has {n} partitions; partition {partition} does not exist"
            )));
        }
        Ok(())
    }

    fn is_compacted(&self, topic: &str) -> bool {
        topic == weir_log::STATEMENTS_TOPIC
    }
}

fn appended(d: &[crate::producer::Delivered], fallback_end: u64) -> Appended {
    match (
        d.iter().map(|x| x.offset).min(),
        d.iter().map(|x| x.offset).max(),
    ) {
        (Some(lo), Some(hi)) => Appended {
            first_offset: lo,
            end_offset: hi + 1,
            durable: true,
        },
        _ => Appended {
            first_offset: fallback_end,
            end_offset: fallback_end,
            durable: true,
        },
    }
}

/// FNV-1a 64 of a value: the key given to unkeyed records of compacted topics (Kafka
/// refuses keyless records there), so equal statements share a key.
fn content_key(v: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl KafkaLog {
    /// Appends `(key, value, weir-id)` records to one partition of `topic` (the outputs
    /// topic): the id goes in the [`crate::ID_HEADER`] header. Returns once acknowledged.
    pub fn append_with_ids(
        &self,
        topic: &str,
        partition: u32,
        records: &[IdRecord<'_>],
    ) -> Result<Appended> {
        self.check_partition(topic, partition)?;
        let kt = self.kafka_topic(topic);
        let headers: Vec<[(&str, &[u8]); 1]> = records
            .iter()
            .map(|(_, _, id)| [(crate::ID_HEADER, id.as_bytes())])
            .collect();
        let recs: Vec<OutRecord<'_>> = records
            .iter()
            .zip(&headers)
            .map(|((key, value, _), h)| OutRecord {
                partition: Some(partition),
                key: *key,
                value,
                headers: h,
                ..Default::default()
            })
            .collect();
        if recs.is_empty() {
            return Ok(appended(&[], self.end_offset(topic, partition)?));
        }
        let d = self.producer.send(&kt, &recs)?;
        let a = appended(&d, 0);
        self.note_end(topic, partition, a.end_offset);
        Ok(a)
    }

    /// Produces (key, value) records to `partition` and records the new end offset.
    fn send_to<'a>(
        &self,
        topic: &str,
        partition: u32,
        records: impl Iterator<Item = (Option<&'a [u8]>, &'a [u8])>,
    ) -> Result<Appended> {
        self.check_partition(topic, partition)?;
        let kt = self.kafka_topic(topic);
        let recs: Vec<OutRecord<'_>> = records
            .map(|(key, value)| OutRecord {
                partition: Some(partition),
                key,
                value,
                ..Default::default()
            })
            .collect();
        if recs.is_empty() {
            return Ok(appended(&[], self.end_offset(topic, partition)?));
        }
        let d = self.producer.send(&kt, &recs)?;
        let a = appended(&d, 0);
        self.note_end(topic, partition, a.end_offset);
        Ok(a)
    }
}

impl LogBackend for KafkaLog {
    fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        let kt = self.kafka_topic(topic);
        self.admin
            .create_topic(&kt, partitions, self.is_compacted(topic))?;
        Ok(())
    }

    fn partitions(&self, topic: &str) -> Result<u32> {
        self.admin.partitions(&self.kafka_topic(topic))
    }

    fn append(&self, topic: &str, partition: u32, records: &[&[u8]]) -> Result<Appended> {
        if self.is_compacted(topic) {
            let keys: Vec<String> = records.iter().map(|v| content_key(v)).collect();
            let keyed: Vec<(&[u8], &[u8])> = keys
                .iter()
                .zip(records)
                .map(|(k, v)| (k.as_bytes(), *v))
                .collect();
            return self.append_keyed(topic, partition, &keyed);
        }
        self.send_to(topic, partition, records.iter().map(|v| (None, *v)))
    }

    fn append_keyed(
        &self,
        topic: &str,
        partition: u32,
        records: &[(&[u8], &[u8])],
    ) -> Result<Appended> {
        self.send_to(
            topic,
            partition,
            records.iter().map(|(k, v)| (Some(*k), *v)),
        )
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>> {
        let reader = self.reader(topic, partition)?;
        let mut r = reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut recs = r.read_values(
            from_offset,
            max_records,
            max_bytes,
            Duration::from_millis(200),
        )?;
        // Empty at a reported end-of-partition means "at the end" (no broker request).
        // Empty otherwise: if records exist past `from_offset`, the first fetch
        // (connection, assignment) was just slow, so wait for them.
        if recs.is_empty() && !r.at_end() {
            drop(r);
            if self.end_offset(topic, partition)? > from_offset {
                let mut r = reader.lock().unwrap_or_else(|p| p.into_inner());
                recs = r.read_values(
                    from_offset,
                    max_records,
                    max_bytes,
                    self.config.request_timeout,
                )?;
            }
        } else {
            drop(r);
        }
        if let Some(last) = recs.last() {
            self.note_end(topic, partition, last.offset + 1);
        }
        Ok(recs)
    }

    /// The high watermark from ListOffsets, raised to what this instance has appended or
    /// read (tansu's memory engine reports the last batch's base offset + 1 there).
    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        let hw = self.watermarks(topic, partition)?.1;
        let k = self.known_end.lock().unwrap_or_else(|p| p.into_inner());
        Ok(hw.max(k.get(&(topic.to_string(), partition)).copied().unwrap_or(0)))
    }

    fn start_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        Ok(self.watermarks(topic, partition)?.0)
    }

    fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.end_offset(topic, partition)? > offset {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn position(&self, topic: &str) -> Result<Position> {
        let mut pos = Position::new();
        for p in 0..self.partitions(topic)? {
            pos.set(topic, p, self.end_offset(topic, p)?);
        }
        Ok(pos)
    }
}
