//! Reading one partition from an offset, outside any consumer group (for statements,
//! checkpoints, `GET /v1/outputs`-style reads and [`crate::KafkaLog::read`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// Client context of readers: reaching a partition's end is how a read knows it is done,
/// not an error worth logging (librdkafka reports it as a "global error" too).
#[doc(hidden)]
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        ) {
            return;
        }
        tracing::error!("librdkafka: {error}: {reason}");
    }
}

impl ConsumerContext for ReaderContext {}

use bytes::BytesMut;
use weir_log::Record;

use crate::config::KafkaConfig;
use crate::error::{Error, Result};

/// A record read from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset (Kafka offsets are increasing but may have gaps: transaction markers,
    /// compaction).
    pub offset: u64,
    /// Record timestamp, ms since the Unix epoch (0 if none).
    pub timestamp_ms: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value (`None` = tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl KafkaRecord {
    pub(crate) fn from_message(m: &BorrowedMessage<'_>) -> KafkaRecord {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        KafkaRecord {
            topic: m.topic().to_string(),
            partition: m.partition() as u32,
            offset: m.offset() as u64,
            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

fn reader_consumer(config: &KafkaConfig) -> Result<BaseConsumer<ReaderContext>> {
    config.validate()?;
    Ok(config
        .base()
        .set("group.id", format!("{}-reader", config.group))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // Short broker-side waits: reads at the end return quickly (the caller's
        // `wait` does the waiting).
        .set("fetch.wait.max.ms", "20")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create_with_context(ReaderContext)?)
}

/// One group-less librdkafka consumer shared by several [`PartitionReader`]s (e.g. a
/// worker's partition of every stream topic): one broker connection and one fetch
/// request for all of them, each partition's records on a queue of its own
/// (librdkafka's partition queues), so each reader still reads its partition in order
/// and positions it without disturbing the others.
pub struct SharedConsumer {
    consumer: Arc<BaseConsumer<ReaderContext>>,
    /// Partitions currently assigned to the consumer.
    assigned: Mutex<HashSet<(String, u32)>>,
    timeout: Duration,
}

impl SharedConsumer {
    /// A consumer with nothing assigned yet.
    pub fn new(config: &KafkaConfig) -> Result<Arc<SharedConsumer>> {
        Ok(Arc::new(SharedConsumer {
            consumer: Arc::new(reader_consumer(config)?),
            assigned: Mutex::new(HashSet::new()),
            timeout: config.request_timeout,
        }))
    }

    /// A reader of `topic`/`partition` through this consumer. One reader per partition
    /// at a time: a second one would take records from the first one's queue.
    pub fn reader(self: &Arc<Self>, topic: &str, partition: u32) -> PartitionReader {
        PartitionReader {
            source: Source::Shared {
                shared: self.clone(),
                queue: None,
            },
            topic: topic.to_string(),
            partition,
            next: None,
            at_eof: false,
            timeout: self.timeout,
            buf: BytesMut::new(),
            buf_hint: 0,
            spans: Vec::new(),
        }
    }

    /// Partitions currently assigned (being fetched).
    pub fn assigned(&self) -> usize {
        self.assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Stops fetching `topic`/`partition` (its reader was dropped or stopped): the other
    /// partitions of the consumer are not touched. Its next positioning starts afresh.
    fn release(&self, topic: &str, partition: u32) -> Result<()> {
        let mut a = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
        if a.remove(&(topic.to_string(), partition)) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition as i32);
            self.consumer.incremental_unassign(&tpl)?;
        }
        Ok(())
    }

    /// Serves the consumer's main queue (errors, callbacks). Every partition has its own
    /// queue from before its assignment, so no record arrives here.
    fn serve(&self) {
        while let Some(r) = self.consumer.poll(Duration::ZERO) {
            match r {
                Ok(m) => tracing::error!(
                    topic = m.topic(),
                    partition = m.partition(),
                    offset = m.offset(),
                    "record on a shared reader's main queue (dropped)"
                ),
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(e) => tracing::debug!(error = %e, "shared reader"),
            }
        }
    }

    /// Positions `topic`/`partition` at `offset`: the first time, its queue is split off
    /// and the partition added to the assignment; later, a seek of that partition alone
    /// (records of the old position still queued are dropped by librdkafka's version
    /// barrier).
    fn position(
        self: &Arc<Self>,
        topic: &str,
        partition: u32,
        offset: u64,
        queue: &mut Option<PartitionQueue<ReaderContext>>,
    ) -> Result<()> {
        let mut a = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
        let key = (topic.to_string(), partition);
        if queue.is_none() || !a.contains(&key) {
            if queue.is_none() {
                *queue = Some(
                    self.consumer
                        .split_partition_queue(topic, partition as i32)
                        .ok_or_else(|| {
                            Error::Config(format!("invalid topic {topic:?} for a reader"))
                        })?,
                );
            }
            if a.contains(&key) {
                // Assigned by an earlier reader of this partition: start over.
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(topic, partition as i32);
                self.consumer.incremental_unassign(&tpl)?;
                a.remove(&key);
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, partition as i32, Offset::Offset(offset as i64))?;
            self.consumer.incremental_assign(&tpl)?;
            a.insert(key);
            return Ok(());
        }
        drop(a);
        // A seek right after the assignment may find the fetcher not started yet.
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.consumer.seek(
                topic,
                partition as i32,
                Offset::Offset(offset as i64),
                self.timeout,
            ) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(Error::Kafka(e)),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}

impl Source {
    fn poll(&self, timeout: Duration) -> Option<KafkaResult<BorrowedMessage<'_>>> {
        match self {
            Source::Own(c) => c.poll(timeout),
            Source::Shared { queue: Some(q), .. } => q.poll(timeout),
            Source::Shared { queue: None, .. } => None,
        }
    }
}

impl Drop for PartitionReader {
    fn drop(&mut self) {
        if let Source::Shared { shared, .. } = &self.source {
            if let Err(e) = shared.release(&self.topic, self.partition) {
                tracing::debug!(error = %e, "releasing a shared reader's partition");
            }
        }
    }
}

enum Source {
    /// A consumer of its own, assigned this partition only.
    Own(BaseConsumer<ReaderContext>),
    /// A partition of a shared consumer (its queue once positioned).
    Shared {
        shared: Arc<SharedConsumer>,
        queue: Option<PartitionQueue<ReaderContext>>,
    },
}

/// A cursor over one partition: a group-less consumer assigned to it, or its partition
/// of a [`SharedConsumer`].
pub struct PartitionReader {
    source: Source,
    topic: String,
    partition: u32,
    next: Option<u64>,
    at_eof: bool,
    timeout: Duration,
    /// [`PartitionReader::read_values`]' value buffer, its usual size, and its spans.
    buf: BytesMut,
    buf_hint: usize,
    spans: Vec<(u64, i64, usize, usize)>,
}

impl PartitionReader {
    /// Opens a reader of `topic`/`partition` with a consumer of its own (read_committed:
    /// records of aborted or open transactions are skipped).
    pub fn new(config: &KafkaConfig, topic: &str, partition: u32) -> Result<PartitionReader> {
        Ok(PartitionReader {
            source: Source::Own(reader_consumer(config)?),
            topic: topic.to_string(),
            partition,
            next: None,
            at_eof: false,
            timeout: config.request_timeout,
            buf: BytesMut::new(),
            buf_hint: 0,
            spans: Vec::new(),
        })
    }

    fn consumer(&self) -> &BaseConsumer<ReaderContext> {
        match &self.source {
            Source::Own(c) => c,
            Source::Shared { shared, .. } => &shared.consumer,
        }
    }

    fn seek_to(&mut self, offset: u64) -> Result<()> {
        if self.next == Some(offset) {
            return Ok(());
        }
        match &mut self.source {
            Source::Own(c) => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(
                    &self.topic,
                    self.partition as i32,
                    Offset::Offset(offset as i64),
                )?;
                c.assign(&tpl)?;
            }
            Source::Shared { shared, queue } => {
                shared.position(&self.topic, self.partition, offset, queue)?;
            }
        }
        self.next = Some(offset);
        self.at_eof = false;
        Ok(())
    }

    /// Low and high watermarks of any `topic`/`partition`, through this reader's client
    /// (no assignment needed).
    pub fn watermarks_of(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
        let (lo, hi) = self
            .consumer()
            .fetch_watermarks(topic, partition as i32, self.timeout)?;
        Ok((lo.max(0) as u64, hi.max(0) as u64))
    }

    /// Low and high watermarks (earliest retained offset, next offset to be written).
    pub fn watermarks(&self) -> Result<(u64, u64)> {
        let (lo, hi) =
            self.consumer()
                .fetch_watermarks(&self.topic, self.partition as i32, self.timeout)?;
        Ok((lo.max(0) as u64, hi.max(0) as u64))
    }

    /// Whether the last read reached the partition's end (a fetch reported
    /// end-of-partition and nothing came after it).
    pub fn at_end(&self) -> bool {
        self.at_eof
    }

    /// Reads records from `from_offset` on: at most `max_records` and about `max_bytes`
    /// of values (at least one record when one is available), waiting up to `wait` for
    /// the first. Stops early at the partition's end.
    pub fn read(
        &mut self,
        from_offset: u64,
        max_records: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<KafkaRecord>> {
        let mut out = Vec::new();
        self.read_with(
            from_offset,
            max_records,
            max_bytes,
            wait,
            false,
            &mut out,
            |m| {
                let r = KafkaRecord::from_message(m);
                let n = r.value.as_ref().map_or(0, Vec::len);
                (Some(r), n)
            },
        )?;
        Ok(out)
    }

    /// [`PartitionReader::read`] of offsets, timestamps and values only (no topic, key or
    /// header copies; tombstones are skipped): the path of `weir serve`'s workers.
    pub fn read_values(
        &mut self,
        from_offset: u64,
        max_records: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<Record>> {
        // Values are copied into one buffer and handed out as slices of it (one
        // allocation per batch instead of one per record). The buffer is reused once the
        // previous read's records are dropped (`BytesMut::reserve` reclaims it), and so
        // is the list of spans: no fresh pages to fault in per read.
        let mut buf = std::mem::take(&mut self.buf);
        buf.reserve(self.buf_hint);
        let mut spans = std::mem::take(&mut self.spans);
        let r = self.read_with(
            from_offset,
            max_records,
            max_bytes,
            wait,
            false,
            &mut spans,
            |m| {
                let Some(v) = m.payload() else {
                    return (None, 0);
                };
                let start = buf.len();
                buf.extend_from_slice(v);
                let ts = m.timestamp().to_millis().unwrap_or(0);
                (Some((m.offset() as u64, ts, start, buf.len())), v.len())
            },
        );
        self.buf_hint = self.buf_hint.max(buf.len()).min(8 << 20);
        let frozen = buf.split().freeze();
        self.buf = buf;
        let recs = spans
            .iter()
            .map(|&(offset, timestamp_ms, a, b)| Record {
                offset,
                timestamp_ms,
                payload: frozen.slice(a..b),
            })
            .collect();
        spans.clear();
        self.spans = spans;
        r?;
        Ok(recs)
    }

    /// The read loop. Records already fetched by librdkafka are taken with zero-timeout
    /// polls (no clock reads of ours per record); only an empty queue starts the `wait`.
    /// `stop_at_eof`: an end-of-partition report ends an empty read at once (instead of
    /// waiting out `wait` for records written after it).
    #[allow(clippy::too_many_arguments)]
    fn read_with<T>(
        &mut self,
        from_offset: u64,
        max_records: usize,
        max_bytes: usize,
        wait: Duration,
        stop_at_eof: bool,
        out: &mut Vec<T>,
        mut take: impl FnMut(&BorrowedMessage<'_>) -> (Option<T>, usize),
    ) -> Result<()> {
        // tansu 0.6 answers a fetch from an offset inside a record batch with the *next*
        // batch, skipping the rest of that one. So a new position (not the continuation
        // of the previous read) is sought a little before the wanted offset and the
        // records below it are dropped; when even the first record seen lies past the
        // wanted offset, the seek goes further back (down to the partition's start),
        // because that record may have come from a later batch. Apache Kafka returns the
        // whole batch, so there this only costs a few dropped records per new position.
        let mut back: u64 = if self.next == Some(from_offset) {
            0
        } else {
            256
        };
        loop {
            let start = from_offset.saturating_sub(back);
            let first_seen = self.read_from(
                start,
                from_offset,
                max_records,
                max_bytes,
                wait,
                stop_at_eof,
                out,
                &mut take,
            )?;
            let skipped = start > 0 && start < from_offset && first_seen > Some(from_offset);
            if !skipped {
                return Ok(());
            }
            back = back.saturating_mul(16);
            self.next = None;
        }
    }

    /// One pass of [`Self::read_with`]: seeks to `start`, drops records below `from`,
    /// fills `out` (emptied first), and returns the offset of the first record the broker
    /// returned.
    #[allow(clippy::too_many_arguments)]
    fn read_from<T>(
        &mut self,
        start: u64,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        wait: Duration,
        stop_at_eof: bool,
        out: &mut Vec<T>,
        take: &mut impl FnMut(&BorrowedMessage<'_>) -> (Option<T>, usize),
    ) -> Result<Option<u64>> {
        self.seek_to(start)?;
        if let Source::Shared { shared, .. } = &self.source {
            shared.serve();
        }
        let mut first_seen: Option<u64> = None;
        let max = max_records.max(1);
        out.clear();
        out.reserve(max.min(1 << 16));
        let mut bytes = 0usize;
        let mut deadline: Option<Instant> = None;
        while out.len() < max && (out.is_empty() || bytes < max_bytes) {
            let timeout = match deadline {
                Some(d) if out.is_empty() => d.saturating_duration_since(Instant::now()),
                _ => Duration::ZERO,
            };
            match self.source.poll(timeout) {
                None => {
                    if out.is_empty() && deadline.is_none() && !wait.is_zero() {
                        deadline = Some(Instant::now() + wait);
                        continue;
                    }
                    break;
                }
                Some(Ok(m)) => {
                    let offset = m.offset() as u64;
                    first_seen.get_or_insert(offset);
                    if offset < from {
                        self.next = Some(offset + 1);
                        continue;
                    }
                    let (r, n) = take(&m);
                    self.next = Some(offset + 1);
                    self.at_eof = false;
                    bytes += n;
                    out.extend(r);
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    self.at_eof = true;
                    if !out.is_empty() || stop_at_eof {
                        break;
                    }
                    match deadline {
                        None if !wait.is_zero() => deadline = Some(Instant::now() + wait),
                        None => break,
                        Some(d) if Instant::now() >= d => break,
                        Some(_) => {}
                    }
                }
                Some(Err(e)) => {
                    self.next = None;
                    return Err(Error::Kafka(e));
                }
            }
        }
        Ok(first_seen)
    }

    /// Reads every record from `from_offset` to the partition's end as of now (e.g. the
    /// statements topic at start-up). The end is where a fetch reports end-of-partition
    /// (not ListOffsets, which tansu's memory engine under-reports for multi-record
    /// batches). Returns as soon as that report arrives (one fetch round trip at the end,
    /// no extra wait).
    pub fn read_to_end(&mut self, from_offset: u64) -> Result<Vec<KafkaRecord>> {
        let mut out = Vec::new();
        self.read_to_end_each(from_offset, |batch| out.extend(batch))?;
        Ok(out)
    }

    /// [`PartitionReader::read_to_end`] handing the records to `each` a batch (at most
    /// 10 000) at a time, so a long partition is not held in memory at once.
    pub fn read_to_end_each(
        &mut self,
        from_offset: u64,
        mut each: impl FnMut(Vec<KafkaRecord>),
    ) -> Result<()> {
        let mut next = from_offset;
        if self.next == Some(from_offset) && self.at_eof {
            // Continuing where an earlier read saw the end: librdkafka reports an end
            // once per position, so ask again (a fresh fetch from exactly here — a
            // record boundary this reader reached) to learn the end as of now.
            self.reassign(from_offset)?;
        } else if self.next != Some(from_offset) {
            let (lo, _) = self.watermarks()?;
            next = from_offset.max(lo);
        }
        let mut deadline = Instant::now() + self.timeout * 3;
        loop {
            let mut batch = Vec::new();
            self.read_with(
                next,
                10_000,
                16 << 20,
                self.timeout,
                true,
                &mut batch,
                |m| {
                    let r = KafkaRecord::from_message(m);
                    let n = r.value.as_ref().map_or(0, Vec::len);
                    (Some(r), n)
                },
            )?;
            match batch.last() {
                // The end was reported right after this batch's last record.
                Some(_) if self.at_eof => {
                    each(batch);
                    return Ok(());
                }
                Some(last) => {
                    next = last.offset + 1;
                    deadline = Instant::now() + self.timeout * 3;
                    each(batch);
                }
                None if self.at_eof => return Ok(()),
                None => {
                    if Instant::now() > deadline {
                        return Err(Error::Timeout(format!(
                            "reading {}/{} to its end: stuck at {next}",
                            self.topic, self.partition
                        )));
                    }
                }
            }
        }
    }

    /// Stops fetching until the next read (which positions the reader afresh): for a
    /// reader used now and then, whose consumer would otherwise ask the broker for new
    /// records every 20 ms in between.
    pub fn stop(&mut self) -> Result<()> {
        match &mut self.source {
            Source::Own(c) => c.unassign()?,
            Source::Shared { shared, queue } => {
                *queue = None;
                shared.release(&self.topic, self.partition)?;
            }
        }
        self.next = None;
        self.at_eof = false;
        Ok(())
    }

    /// Assigns the partition at exactly `offset` (no seek-back: `offset` must be where a
    /// read of this reader ended).
    fn reassign(&mut self, offset: u64) -> Result<()> {
        self.next = None;
        self.seek_to(offset)
    }
}
