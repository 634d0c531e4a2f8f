//! One step of a worker: read what is available of each stream topic of its
//! partition (up to the next catalog version's effect position), apply it to the
//! engine, and collect the repartitioned copies and the outputs to append.

use super::{Worker, BATCH, KAFKA_BATCH};
use crate::serve::log::stream_topic;
use crate::serve::repartition;
use crate::serve::state::Version;
use matcher::output::OutputRecord;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use weir_kafka::Error as KError;
use weir_log::Error as LogError;

impl Worker {
    /// Processes what is available; returns the number of events read.
    pub(super) fn step(&mut self, versions: &[Arc<Version>]) -> usize {
        while self.version_idx + 1 < versions.len()
            && self.reached(
                &versions[self.version_idx],
                &versions[self.version_idx + 1].effect,
            )
        {
            self.switch_version(versions);
        }
        let Some(v) = versions.get(self.version_idx).cloned() else {
            return 0;
        };
        let mut read = 0;
        let mut out: Vec<OutputRecord> = Vec::new();
        let default_parts = self.shared.settings.partitions;
        // Copies for repartitioned streams (and watermark marks), per (hidden topic,
        // partition); `copied` counts the copies alone.
        let mut copies: HashMap<(String, u32), Vec<Vec<u8>>> = HashMap::new();
        let mut copied = 0u64;
        for (stream, parts) in v.streams(default_parts) {
            if self.partition >= parts {
                continue;
            }
            let topic = stream_topic(&stream);
            let hidden = v.hidden_stream(default_parts, &stream).is_some();
            // Repartitioned streams fed from this one: (hidden topic, column).
            let targets: Vec<(String, Option<String>)> = v
                .repartitions(default_parts)
                .iter()
                .filter(|r| r.source == stream)
                .map(|r| (stream_topic(&r.stream), r.by.clone()))
                .collect();
            let limit = self.limit(versions, &topic);
            let from = self.next.get(&topic).copied().unwrap_or(0);
            if from >= limit {
                continue;
            }
            let batch = if self.shared.kafka.is_some() {
                KAFKA_BATCH
            } else {
                BATCH
            };
            let max = ((limit - from).min(batch as u64)) as usize;
            let recs = match self
                .shared
                .log
                .read(&topic, self.partition, from, max, 4 << 20)
            {
                Ok(r) => r,
                Err(KError::Log(LogError::OffsetTruncated { .. })) => {
                    let start = self
                        .shared
                        .log
                        .start_offset(&topic, self.partition)
                        .unwrap_or(from);
                    tracing::warn!(
                        partition = self.partition,
                        topic,
                        from,
                        start,
                        "input below retention skipped"
                    );
                    self.next.insert(topic.clone(), start.max(from));
                    continue;
                }
                Err(KError::Log(LogError::UnknownTopic(_))) | Err(KError::Unknown(_)) => continue,
                Err(e) => {
                    tracing::error!(partition = self.partition, topic, error = %e, "read failed");
                    continue;
                }
            };
            let drained = recs.is_empty();
            // A read may wait for records (Kafka: up to 200 ms): a statement installed
            // meanwhile takes effect at its recorded position, so records from there on
            // wait for the next step (which switches versions first).
            let latest = self.shared.versions();
            let limit = if latest.len() > versions.len() {
                limit.min(self.limit(&latest, &topic))
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
                let (payload, ingest_ms) = if hidden {
                    let Some(c) = repartition::decode(&r.payload) else {
                        self.shared
                            .counters
                            .replay_errors
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if let Some((wm, idle)) = c.mark() {
                        // A source partition's watermark: the merged one may move.
                        let marks = self.marks.entry(topic.clone()).or_default();
                        let e = marks.entry(c.partition).or_insert((wm, idle));
                        *e = (e.0.max(wm), idle);
                        let w = repartition::merged_watermark(marks, parts);
                        self.engine.advance_watermark(&stream, w, &mut out);
                        continue;
                    }
                    let seen = self
                        .copies_seen
                        .entry(topic.clone())
                        .or_default()
                        .entry(c.partition)
                        .or_insert(0);
                    if c.offset < *seen {
                        // Appended again by a source worker replaying after a crash.
                        self.shared
                            .counters
                            .copies_deduplicated
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    *seen = c.offset + 1;
                    (c.payload, c.ts_ms)
                } else {
                    if r.payload.first() == Some(&b'W') {
                        if let Some(a) = last_event.take() {
                            self.note_event(&stream, a);
                        }
                        if self.apply_tick(&stream, &r.payload, r.timestamp_ms, &mut out) {
                            continue;
                        }
                    }
                    last_event = Some(r.timestamp_ms);
                    (&r.payload[..], r.timestamp_ms)
                };
                // Decoded straight into a row (no `serde_json::Value`); a payload the
                // decoder refuses takes the reference path, which reports and counts it.
                let mut json = None;
                let row = match self.engine.decoder(&stream) {
                    Some(d) => match d.decode_bytes(payload) {
                        Ok(row) => Some(row),
                        Err(_) => {
                            json = serde_json::from_slice::<serde_json::Value>(payload).ok();
                            None
                        }
                    },
                    None => None,
                };
                if !targets.is_empty() {
                    // Placed by the row (the reference decoding when the fast one refused).
                    // An event late here (and dropped) is not copied: it would be late in
                    // one partition too.
                    let decoder = self.engine.decoder(&stream);
                    let fallback = match (&row, &json, decoder) {
                        (None, Some(j), Some(d)) => d.decode(j).ok(),
                        _ => None,
                    };
                    let placed = row.as_ref().or(fallback.as_ref());
                    let late = match (placed, decoder) {
                        (Some(pr), Some(d)) => {
                            let ts = if d.has_event_time() {
                                d.event_time(pr)
                            } else {
                                Some(ingest_ms)
                            };
                            ts.is_some_and(|t| self.engine.drops_late(&stream, t))
                        }
                        _ => false,
                    };
                    if let (Some(placed), Some(d), false) = (placed, decoder, late) {
                        for (ht, by) in &targets {
                            let q = repartition::place(placed, d, by.as_deref(), parts);
                            copied += 1;
                            copies
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
                }
                if let Some(row) = row {
                    if let Err(e) = self
                        .engine
                        .ingest_row(&stream, r.offset, row, None, ingest_ms, &mut out)
                    {
                        self.shared
                            .counters
                            .replay_errors
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(partition = self.partition, stream, offset = r.offset, error = %e, "event not applied");
                    }
                    read += 1;
                    continue;
                }
                match json {
                    Some(ev) => {
                        if let Err(e) = self
                            .engine
                            .ingest(&stream, r.offset, &ev, ingest_ms, &mut out)
                        {
                            self.shared
                                .counters
                                .replay_errors
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(partition = self.partition, stream, offset = r.offset, error = %e, "event not applied");
                        }
                    }
                    None => {
                        self.shared
                            .counters
                            .replay_errors
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                read += 1;
            }
            if let Some(n) = next_off {
                self.next.insert(topic.clone(), n);
            }
            if let Some(a) = last_event {
                self.note_event(&stream, a);
            }
            if !hidden && drained {
                self.tick_if_quiet(&stream, &topic, &mut out);
            }
            // Tell the readers of this stream's repartitioned copies how far its
            // watermark got here, and when this partition has read all its input.
            if !targets.is_empty() {
                let wm = self.engine.watermark(&stream).unwrap_or(i64::MIN);
                let idle_after = self.idle_after(&stream);
                let idle = if drained {
                    let since = self
                        .drained_since
                        .entry(stream.clone())
                        .or_insert_with(Instant::now);
                    idle_after.is_some_and(|d| since.elapsed() >= d)
                } else {
                    self.drained_since.remove(&stream);
                    false
                };
                let mark = (wm, idle);
                for (ht, _) in &targets {
                    if self.marks_sent.get(ht) == Some(&mark) {
                        continue;
                    }
                    self.marks_sent.insert(ht.clone(), mark);
                    for q in 0..parts {
                        copies
                            .entry((ht.clone(), q))
                            .or_default()
                            .push(repartition::encode_mark(self.partition, wm, idle));
                    }
                }
            }
        }
        if !copies.is_empty() {
            self.write_copies(copies);
            self.shared
                .counters
                .copies_written
                .fetch_add(copied, Ordering::Relaxed);
        }
        if !out.is_empty() {
            self.write_outputs(out);
        }
        self.events_since_ckpt += read as u64;
        read
    }
}
