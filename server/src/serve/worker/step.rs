//! One step of a worker: read what is available of each stream topic of its
//! partition (up to the next catalog version's effect position), apply it to the
//! engine, and collect the repartitioned copies and the outputs to append.
//!
//! The phases, each a function: [`Worker::switch_versions`] (catalog versions whose
//! effect position this partition has reached), per topic [`Worker::step_topic`]
//! ([`Worker::read_topic`]; idle ticks of quiet streams, see `idle.rs`; then per record
//! [`Worker::apply_record`]: a hidden stream's
//! copy header ([`Worker::open_copy`]), decoding, copies for repartitioned streams
//! ([`Worker::copy_record`]), the engine ([`Worker::apply_event`]); then the watermark
//! marks for the copies' readers, [`Worker::send_marks`]), and finally the appends
//! ([`Worker::finish_step`]).

use super::{Worker, BATCH, KAFKA_BATCH};
use crate::serve::log::stream_topic;
use crate::serve::repartition;
use crate::serve::state::Version;
use matcher::output::OutputRecord;
use matcher::value::Row;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use weir_kafka::Error as KError;
use weir_log::{Error as LogError, Record};

/// What a step collects before it appends.
#[derive(Default)]
struct StepOut {
    /// Output records, in the engine's order.
    out: Vec<OutputRecord>,
    /// Copies for repartitioned streams (and watermark marks), per (hidden topic,
    /// partition).
    copies: HashMap<(String, u32), Vec<Vec<u8>>>,
    /// The copies alone (marks not counted).
    copied: u64,
    /// Events read.
    read: usize,
}

/// One stream topic of this partition, as a step reads it.
struct TopicRead {
    stream: String,
    topic: String,
    /// The stream's partition count.
    parts: u32,
    /// A hidden (repartitioned) stream: its records are copies.
    hidden: bool,
    /// Repartitioned streams fed from this one: (hidden topic, column).
    targets: Vec<(String, Option<String>)>,
}

impl TopicRead {
    fn new(v: &Version, stream: String, parts: u32, default_parts: u32) -> TopicRead {
        TopicRead {
            topic: stream_topic(&stream),
            hidden: v.hidden_stream(default_parts, &stream).is_some(),
            targets: v
                .repartitions(default_parts)
                .iter()
                .filter(|r| r.source == stream)
                .map(|r| (stream_topic(&r.stream), r.by.clone()))
                .collect(),
            stream,
            parts,
        }
    }
}

impl Worker {
    /// Processes what is available; returns the number of events read.
    pub(super) fn step(&mut self, versions: &[Arc<Version>]) -> usize {
        self.switch_versions(versions);
        let Some(v) = versions.get(self.version_idx).cloned() else {
            return 0;
        };
        let default_parts = self.shared.settings.partitions;
        let mut so = StepOut::default();
        for (stream, parts) in v.streams(default_parts) {
            if self.partition >= parts {
                continue;
            }
            let t = TopicRead::new(&v, stream, parts, default_parts);
            self.step_topic(versions, &t, &mut so);
        }
        self.finish_step(so)
    }

    /// Moves to every later catalog version whose effect position this partition has
    /// reached.
    fn switch_versions(&mut self, versions: &[Arc<Version>]) {
        while self.version_idx + 1 < versions.len()
            && self.reached(
                &versions[self.version_idx],
                &versions[self.version_idx + 1].effect,
            )
        {
            self.switch_version(versions);
        }
    }

    /// Reads and applies what is available of one topic, below the next version's
    /// effect position.
    fn step_topic(&mut self, versions: &[Arc<Version>], t: &TopicRead, so: &mut StepOut) {
        let limit = self.limit(versions, &t.topic);
        let from = self.next.get(&t.topic).copied().unwrap_or(0);
        if from >= limit {
            return;
        }
        let Some(recs) = self.read_topic(&t.topic, from, limit) else {
            return;
        };
        let drained = recs.is_empty();
        // A read may wait for records (Kafka: up to 200 ms): a statement installed
        // meanwhile takes effect at its recorded position, so records from there on
        // wait for the next step (which switches versions first).
        let latest = self.shared.versions();
        let limit = if latest.len() > versions.len() {
            limit.min(self.limit(&latest, &t.topic))
        } else {
            limit
        };
        let mut next_off = None;
        // When the last event read was appended (idle.rs counts quiet time from it).
        let mut last_event = None;
        for r in recs {
            if r.offset >= limit {
                break;
            }
            next_off = Some(r.offset + 1);
            if r.payload.is_empty() {
                // A placeholder for offsets lost from a cut log (`fill_cut_inputs`).
                continue;
            }
            if !t.hidden {
                if r.payload.first() == Some(&b'W') {
                    if let Some(a) = last_event.take() {
                        self.note_event(&t.stream, a);
                    }
                    if self.apply_tick(&t.stream, &r.payload, r.timestamp_ms, &mut so.out) {
                        continue;
                    }
                }
                last_event = Some(r.timestamp_ms);
            }
            self.apply_record(t, &r, so);
        }
        if let Some(n) = next_off {
            self.next.insert(t.topic.clone(), n);
        }
        if let Some(a) = last_event {
            self.note_event(&t.stream, a);
        }
        if !t.hidden && drained {
            self.tick_if_quiet(&t.stream, &t.topic, &mut so.out);
        }
        if !t.targets.is_empty() {
            self.send_marks(t, drained, so);
        }
    }

    /// Up to a batch of records of `topic` from `from`; `None` when there is nothing to
    /// read now (unknown topic, read error; input below retention moves `next` on).
    fn read_topic(&mut self, topic: &str, from: u64, limit: u64) -> Option<Vec<Record>> {
        let batch = if self.shared.kafka.is_some() {
            KAFKA_BATCH
        } else {
            BATCH
        };
        let max = ((limit - from).min(batch as u64)) as usize;
        match self
            .shared
            .log
            .read(topic, self.partition, from, max, 4 << 20)
        {
            Ok(r) => Some(r),
            Err(KError::Log(LogError::OffsetTruncated { .. })) => {
                let start = self
                    .shared
                    .log
                    .start_offset(topic, self.partition)
                    .unwrap_or(from);
                tracing::warn!(
                    partition = self.partition,
                    topic,
                    from,
                    start,
                    "input below retention skipped"
                );
                self.next.insert(topic.to_string(), start.max(from));
                None
            }
            Err(KError::Log(LogError::UnknownTopic(_))) | Err(KError::Unknown(_)) => None,
            Err(e) => {
                tracing::error!(partition = self.partition, topic, error = %e, "read failed");
                None
            }
        }
    }

    /// One record: the event (unwrapped from its copy header on a hidden stream),
    /// decoded, copied for repartitioned streams, applied to the engine.
    fn apply_record(&mut self, t: &TopicRead, r: &Record, so: &mut StepOut) {
        let (payload, ingest_ms) = if t.hidden {
            match self.open_copy(t, r, so) {
                Some(x) => x,
                None => return,
            }
        } else {
            (&r.payload[..], r.timestamp_ms)
        };
        // Decoded straight into a row (no `serde_json::Value`); a payload the decoder
        // refuses takes the reference path, which reports and counts it.
        let mut json = None;
        let row = match self.engine.decoder(&t.stream) {
            Some(d) => match d.decode_bytes(payload) {
                Ok(row) => Some(row),
                Err(_) => {
                    json = serde_json::from_slice::<Json>(payload).ok();
                    None
                }
            },
            None => None,
        };
        if !t.targets.is_empty() {
            self.copy_record(t, r, row.as_ref(), json.as_ref(), ingest_ms, so);
        }
        self.apply_event(t, r.offset, row, json, ingest_ms, so);
    }

    /// A hidden stream's record: a watermark mark (applied here; `None`), a copy
    /// appended again by a source worker's replay (dropped; `None`), or the copied
    /// event with its source timestamp.
    fn open_copy<'r>(
        &mut self,
        t: &TopicRead,
        r: &'r Record,
        so: &mut StepOut,
    ) -> Option<(&'r [u8], i64)> {
        let Some(c) = repartition::decode(&r.payload) else {
            self.shared
                .counters
                .replay_errors
                .fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if let Some((wm, idle)) = c.mark() {
            // A source partition's watermark: the merged one may move.
            let marks = self.marks.entry(t.topic.clone()).or_default();
            let e = marks.entry(c.partition).or_insert((wm, idle));
            *e = (e.0.max(wm), idle);
            let w = repartition::merged_watermark(marks, t.parts);
            self.engine.advance_watermark(&t.stream, w, &mut so.out);
            return None;
        }
        let seen = self
            .copies_seen
            .entry(t.topic.clone())
            .or_default()
            .entry(c.partition)
            .or_insert(0);
        if c.offset < *seen {
            // Appended again by a source worker replaying after a crash.
            self.shared
                .counters
                .copies_deduplicated
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *seen = c.offset + 1;
        Some((c.payload, c.ts_ms))
    }

    /// Copies the record to the partition of each repartitioned stream fed from this
    /// one, placed by the row (the reference decoding when the fast one refused). An
    /// event late here (and dropped) is not copied: it would be late in one partition
    /// too.
    fn copy_record(
        &self,
        t: &TopicRead,
        r: &Record,
        row: Option<&Row>,
        json: Option<&Json>,
        ingest_ms: i64,
        so: &mut StepOut,
    ) {
        let Some(d) = self.engine.decoder(&t.stream) else {
            return;
        };
        let fallback = match (row, json) {
            (None, Some(j)) => d.decode(j).ok(),
            _ => None,
        };
        let Some(placed) = row.or(fallback.as_ref()) else {
            return;
        };
        let ts = if d.has_event_time() {
            d.event_time(placed)
        } else {
            Some(ingest_ms)
        };
        if ts.is_some_and(|ts| self.engine.drops_late(&t.stream, ts)) {
            return;
        }
        for (ht, by) in &t.targets {
            let q = repartition::place(placed, d, by.as_deref(), t.parts);
            so.copied += 1;
            so.copies
                .entry((ht.clone(), q))
                .or_default()
                .push(repartition::encode(
                    self.partition,
                    r.offset,
                    r.timestamp_ms,
                    &r.payload,
                ));
        }
    }

    /// Applies one event to the engine (the decoded row, else the reference path over
    /// its JSON); an event it cannot apply is counted in `weir_replay_errors_total`.
    fn apply_event(
        &mut self,
        t: &TopicRead,
        offset: u64,
        row: Option<Row>,
        json: Option<Json>,
        ingest_ms: i64,
        so: &mut StepOut,
    ) {
        so.read += 1;
        let result = match (row, json) {
            (Some(row), _) => {
                self.engine
                    .ingest_row(&t.stream, offset, row, None, ingest_ms, &mut so.out)
            }
            (None, Some(ev)) => self
                .engine
                .ingest(&t.stream, offset, &ev, ingest_ms, &mut so.out),
            (None, None) => {
                self.shared
                    .counters
                    .replay_errors
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if let Err(e) = result {
            self.shared
                .counters
                .replay_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(partition = self.partition, stream = t.stream, offset, error = %e, "event not applied");
        }
    }

    /// Tells the readers of this stream's repartitioned copies how far its watermark
    /// got here, and whether this partition has read all its input (idle), when that
    /// changed.
    fn send_marks(&mut self, t: &TopicRead, drained: bool, so: &mut StepOut) {
        let wm = self.engine.watermark(&t.stream).unwrap_or(i64::MIN);
        let idle_after = self.idle_after(&t.stream);
        let idle = if drained {
            let since = self
                .drained_since
                .entry(t.stream.clone())
                .or_insert_with(Instant::now);
            idle_after.is_some_and(|d| since.elapsed() >= d)
        } else {
            self.drained_since.remove(&t.stream);
            false
        };
        let mark = (wm, idle);
        for (ht, _) in &t.targets {
            if self.marks_sent.get(ht) == Some(&mark) {
                continue;
            }
            self.marks_sent.insert(ht.clone(), mark);
            for q in 0..t.parts {
                so.copies
                    .entry((ht.clone(), q))
                    .or_default()
                    .push(repartition::encode_mark(self.partition, wm, idle));
            }
        }
    }

    /// Appends the step's copies (durable first) and outputs; returns the events read.
    fn finish_step(&mut self, so: StepOut) -> usize {
        if !so.copies.is_empty() {
            self.write_copies(so.copies);
            self.shared
                .counters
                .copies_written
                .fetch_add(so.copied, Ordering::Relaxed);
        }
        if !so.out.is_empty() {
            self.write_outputs(so.out);
        }
        self.events_since_ckpt += so.read as u64;
        so.read
    }
}
