//! Partition workers: one thread per log partition reads every stream topic's partition
//! in order, runs the [`Engine`], appends outputs to the `outputs` topic, and checkpoints.
//!
//! Catalog versions: a statement change takes effect at the stream positions recorded
//! with it, so events below run with the previous catalog, on first run and on replay
//! alike. On a change the engine is rebuilt and the state of unchanged statements is
//! carried over ([`Engine::restore`]); changed ones start empty (counted in
//! `weir_states_reset_total`).

use super::repartition;
use super::state::{relaxed, stream_topic, Progress, Shared, Version};
use matcher::engine::{Engine, EngineConfig, EngineSnapshot};
use matcher::output::OutputRecord;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_kafka::Error as KError;
use weir_log::{Error as LogError, Position, OUTPUTS_TOPIC, STATEMENTS_TOPIC};

/// What a worker checkpoints (the covered offsets go in the checkpoint's Position).
#[derive(Serialize, Deserialize)]
pub struct WorkerCheckpoint {
    pub engine: EngineSnapshot,
    /// End of the outputs topic when the checkpoint was taken: outputs re-derived on
    /// replay are looked up among the ids written from here on.
    pub outputs_end: u64,
    /// Repartitioned streams read: per hidden topic, per source partition, the next
    /// source offset expected (copies below it are replays, dropped).
    #[serde(default)]
    pub copies_seen: HashMap<String, HashMap<u32, u64>>,
    /// Repartitioned streams read: per hidden topic, the last mark of each source
    /// partition (watermark, idle).
    #[serde(default)]
    pub marks: HashMap<String, HashMap<u32, (i64, bool)>>,
}

pub fn checkpoint_name(partition: u32) -> String {
    format!("worker-{partition}")
}

const BATCH: usize = 2048;
/// Kafka mode: records per read of one (topic, partition) in a step. Reads return what
/// librdkafka has already fetched, so this caps a step rather than waiting for more;
/// larger steps mean fewer output appends waiting for the broker's acknowledgement.
const KAFKA_BATCH: usize = 8192;

pub struct Worker {
    shared: Arc<Shared>,
    partition: u32,
    version_idx: usize,
    engine: Engine,
    next: HashMap<String, u64>,
    events_since_ckpt: u64,
    last_ckpt: Instant,
    state_bytes: usize,
    state_bytes_at: Option<Instant>,
    /// Sequence of the last checkpoint this worker wrote (Kafka mode: a partition given
    /// back to this instance resumes from memory when nobody wrote a newer one).
    written_seq: Option<u64>,
    /// Repartitioned copies read: see [`WorkerCheckpoint::copies_seen`].
    copies_seen: HashMap<String, HashMap<u32, u64>>,
    /// Repartitioned copies written: (hidden topic, partition) → end offset after the
    /// last append.
    copies_written: HashMap<(String, u32), u64>,
    /// Repartitioned streams read: see [`WorkerCheckpoint::marks`].
    marks: HashMap<String, HashMap<u32, (i64, bool)>>,
    /// Marks sent per hidden topic (watermark, idle), to send only changes.
    marks_sent: HashMap<String, (i64, bool)>,
    /// Per source stream with repartitioned copies: since when every read found nothing.
    drained_since: HashMap<String, Instant>,
}

/// A source partition with no new events for this long stops holding back the watermark
/// of the streams repartitioned from it (as Flink's idle sources).
pub const REPARTITION_IDLE: Duration = Duration::from_secs(5);

fn build_engine(v: &Version, partition: u32, default_partitions: u32) -> Engine {
    let config = EngineConfig {
        repartition: v.repartitions(default_partitions).to_vec(),
        ..Default::default()
    };
    match Engine::new(&v.catalog, partition, &config) {
        Ok(e) => e,
        Err(diags) => {
            for d in diags {
                tracing::error!(partition, error = %d.message, "statement cannot run; skipped");
            }
            // The catalog checked fine, so this is unexpected: run without statements.
            #[allow(clippy::expect_used)]
            Engine::new(
                &dsl::check::Catalog::new(),
                partition,
                &EngineConfig::default(),
            )
            .expect("an empty catalog compiles")
        }
    }
}

impl Worker {
    /// A worker that holds no partition yet (Kafka mode, before the group assigns it).
    pub fn idle(shared: Arc<Shared>, partition: u32) -> Worker {
        Worker {
            engine: build_engine(&Version::empty(), partition, shared.settings.partitions),
            shared,
            partition,
            version_idx: 0,
            next: HashMap::new(),
            events_since_ckpt: 0,
            last_ckpt: Instant::now(),
            state_bytes: 0,
            state_bytes_at: None,
            written_seq: None,
            copies_seen: HashMap::new(),
            copies_written: HashMap::new(),
            marks: HashMap::new(),
            marks_sent: HashMap::new(),
            drained_since: HashMap::new(),
        }
    }

    /// Builds the worker from its latest checkpoint (or from the start of the log).
    /// Returns the worker and the outputs offset from which re-derived ids must be
    /// de-duplicated.
    pub fn recover(shared: Arc<Shared>, partition: u32) -> (Worker, u64) {
        let versions = shared.versions();
        let mut start = None;
        let mut latest = shared
            .checkpoints
            .latest_checkpoint(&checkpoint_name(partition));
        // Kafka: a broker that is restarting answers errors for a while; replaying the
        // whole input instead would be correct but slow, so retry first (up to ~30 s).
        let mut tries = 0;
        while latest.is_err() && shared.kafka.is_some() && tries < 30 {
            if shared.shutdown.load(Ordering::SeqCst) {
                break;
            }
            tries += 1;
            std::thread::sleep(Duration::from_secs(1));
            latest = shared
                .checkpoints
                .latest_checkpoint(&checkpoint_name(partition));
        }
        match latest {
            Ok(Some(c)) => {
                let stmt_end = c.covered.get(STATEMENTS_TOPIC, 0).unwrap_or(0);
                let idx = versions.iter().position(|v| v.stmt_end == stmt_end);
                match (idx, serde_json::from_slice::<WorkerCheckpoint>(&c.data)) {
                    (Some(idx), Ok(ck)) => {
                        let mut engine =
                            build_engine(&versions[idx], partition, shared.settings.partitions);
                        match engine.restore(ck.engine, &|_| true) {
                            Ok(_) => {
                                let next = c
                                    .covered
                                    .iter()
                                    .filter(|(t, p, _)| *t != STATEMENTS_TOPIC && *p == partition)
                                    .map(|(t, _, o)| (t.to_string(), o))
                                    .collect();
                                start = Some((
                                    idx,
                                    engine,
                                    next,
                                    ck.outputs_end,
                                    (ck.copies_seen, ck.marks),
                                ));
                            }
                            Err(e) => {
                                tracing::warn!(partition, error = %e, "checkpoint not usable; replaying the whole log")
                            }
                        }
                    }
                    (None, _) => tracing::warn!(
                        partition,
                        "checkpoint refers to an unknown catalog version; replaying the whole log"
                    ),
                    (_, Err(e)) => tracing::warn!(
                        partition, error = %e,
                        "checkpoint cannot be decoded; replaying the whole log"
                    ),
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(partition, error = %e, "cannot read checkpoints; replaying the whole log")
            }
        }
        let (version_idx, engine, next, outputs_from, (copies_seen, marks)) = match start {
            Some(s) => s,
            None => {
                let v0 = versions
                    .first()
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Version::empty()));
                (
                    0,
                    build_engine(&v0, partition, shared.settings.partitions),
                    HashMap::new(),
                    0,
                    (HashMap::new(), HashMap::new()),
                )
            }
        };
        let mut w = Worker {
            shared,
            partition,
            version_idx,
            engine,
            next,
            events_since_ckpt: 0,
            last_ckpt: Instant::now(),
            state_bytes: 0,
            state_bytes_at: None,
            written_seq: None,
            copies_seen,
            copies_written: HashMap::new(),
            marks,
            marks_sent: HashMap::new(),
            drained_since: HashMap::new(),
        };
        w.publish(&versions);
        (w, outputs_from)
    }

    fn publish(&mut self, versions: &[Arc<Version>]) {
        let mut applied = Position::new();
        for (t, o) in &self.next {
            applied.set(t, self.partition, *o);
        }
        let stmt_end = versions.get(self.version_idx).map_or(0, |v| v.stmt_end);
        applied.set(STATEMENTS_TOPIC, 0, stmt_end);
        let mut counters = Vec::new();
        for s in self.engine.stream_names() {
            if let Some(c) = self.engine.counters(s) {
                counters.push((
                    s.clone(),
                    [
                        c.accepted,
                        c.rejected,
                        c.late_dropped,
                        c.late_processed,
                        c.metric_late,
                        c.metric_group_dropped,
                    ],
                ));
            }
        }
        // Walking the state is O(state): refresh its size at most once a second.
        let refresh = self
            .state_bytes_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if refresh {
            self.state_bytes = self.engine.approx_state_bytes();
            self.state_bytes_at = Some(Instant::now());
        }
        let state_bytes = self.state_bytes;
        if let Some(p) = self.shared.progress.get(self.partition as usize) {
            let mut g = p.lock().unwrap_or_else(|e| e.into_inner());
            let last = g.last_checkpoint;
            *g = Progress {
                applied,
                last_checkpoint: last,
                state_bytes,
                stream_counters: counters,
                copies: self
                    .copies_written
                    .iter()
                    .map(|((t, q), e)| (t.clone(), *q, *e))
                    .collect(),
            };
        }
        self.shared.notify_progress();
    }

    /// True when this partition has reached every offset of `effect`.
    /// Only the topics the current version reads count: a topic it does not read (e.g. the
    /// copies of a dropped repartitioned rule, which lagging source workers may still
    /// append to) has nothing this partition must apply first.
    fn reached(&self, current: &Version, effect: &Position) -> bool {
        let read = current.topics(self.shared.settings.partitions);
        effect
            .iter()
            .filter(|(t, p, _)| *p == self.partition && read.iter().any(|r| r == t))
            .all(|(t, _, o)| self.next.get(t).copied().unwrap_or(0) >= o)
    }

    fn limit(&self, versions: &[Arc<Version>], topic: &str) -> u64 {
        match versions.get(self.version_idx + 1) {
            Some(v) => v.effect.get(topic, self.partition).unwrap_or(0),
            None => u64::MAX,
        }
    }

    fn switch_version(&mut self, versions: &[Arc<Version>]) {
        let old = &versions[self.version_idx];
        let new = &versions[self.version_idx + 1];
        let snap = self.engine.snapshot();
        let mut engine = build_engine(new, self.partition, self.shared.settings.partitions);
        let unchanged =
            |name: &str| old.texts.contains_key(name) && old.texts.get(name) == new.texts.get(name);
        match engine.restore(snap, &unchanged) {
            Ok(rep) => {
                self.shared
                    .counters
                    .states_reset
                    .fetch_add(rep.states_reset as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(partition = self.partition, error = %e, "state reset"),
        }
        // A topic the old version did not read: what lies below the new version's effect
        // position belongs to versions that do not read it (a re-created stream's old
        // events, copies for a dropped repartitioned rule), so nobody applies it.
        let read = old.topics(self.shared.settings.partitions);
        for (t, p, o) in new.effect.iter() {
            if p == self.partition && !read.iter().any(|r| r == t) {
                let n = self.next.entry(t.to_string()).or_insert(0);
                *n = (*n).max(o);
            }
        }
        self.engine = engine;
        self.version_idx += 1;
    }

    /// Processes what is available; returns the number of events read.
    fn step(&mut self, versions: &[Arc<Version>]) -> usize {
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
            for r in recs {
                if r.offset >= limit {
                    break;
                }
                next_off = Some(r.offset + 1);
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
            // Tell the readers of this stream's repartitioned copies how far its
            // watermark got here, and when this partition has read all its input.
            if !targets.is_empty() {
                let wm = self.engine.watermark(&stream).unwrap_or(i64::MIN);
                let idle = if drained {
                    self.drained_since
                        .entry(stream.clone())
                        .or_insert_with(Instant::now)
                        .elapsed()
                        >= REPARTITION_IDLE
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

    /// Appends repartitioned copies and waits until they are durable (a copy is read only
    /// once durable, and the checkpoint covering its source must not come first). A
    /// failed append is retried: copies are never skipped.
    fn write_copies(&mut self, copies: HashMap<(String, u32), Vec<Vec<u8>>>) {
        let mut copies: Vec<_> = copies.into_iter().collect();
        copies.sort_by(|a, b| a.0.cmp(&b.0));
        let mut waits = Vec::new();
        for ((topic, q), recs) in copies {
            let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
            let mut delay = Duration::from_millis(10);
            loop {
                match self.shared.log.append_nowait(&topic, q, &refs) {
                    Ok(a) => {
                        self.copies_written.insert((topic.clone(), q), a.end_offset);
                        waits.push((topic, q, a.end_offset));
                        break;
                    }
                    Err(e) => {
                        tracing::error!(partition = self.partition, topic, error = %e, "cannot append repartitioned copies; retrying");
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
        for (topic, q, end) in waits {
            let mut delay = Duration::from_millis(10);
            while let Err(e) = self.shared.log.wait_durable(&topic, q, end) {
                tracing::error!(partition = self.partition, topic, error = %e, "repartitioned copies not durable; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
        self.shared.wake_workers();
    }

    fn write_outputs(&self, out: Vec<OutputRecord>) {
        let mut ids: Vec<String> = Vec::new();
        let lines: Vec<String> = {
            let seen = self
                .shared
                .seen_ids
                .read()
                .unwrap_or_else(|e| e.into_inner());
            out.iter()
                .filter(|r| {
                    let dup = seen.contains(r.id());
                    if dup {
                        self.shared
                            .counters
                            .outputs_deduplicated
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    !dup
                })
                .map(|r| {
                    ids.push(r.id().to_string());
                    r.to_json().to_string()
                })
                .collect()
        };
        if lines.is_empty() {
            return;
        }
        let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        // Kafka: each output carries its id in the `weir-id` header and its partition
        // key (the PARTITION BY / GROUP BY values) as the Kafka key.
        let keys: Vec<Option<String>> = match self.shared.log.as_kafka() {
            Some(_) => self.output_keys(&lines),
            None => Vec::new(),
        };
        let with_ids: Vec<weir_kafka::IdRecord<'_>> = match self.shared.log.as_kafka() {
            Some(_) => ids
                .iter()
                .zip(&refs)
                .zip(&keys)
                .map(|((id, v), k)| (k.as_deref().map(str::as_bytes), *v, id.as_str()))
                .collect(),
            None => Vec::new(),
        };
        // A failed output append is retried: outputs are never skipped silently.
        // Outputs are visible once written and not waited for: they are re-derived from
        // the (durable) input on replay; a checkpoint waits for them (see `checkpoint`).
        let mut delay = Duration::from_millis(10);
        loop {
            let r = match self.shared.log.as_kafka() {
                Some(k) => k.append_with_ids(OUTPUTS_TOPIC, 0, &with_ids),
                None => self.shared.log.append_nowait(OUTPUTS_TOPIC, 0, &refs),
            };
            match r {
                Ok(a) => {
                    self.shared.outputs_tick.send_replace(a.end_offset);
                    self.shared
                        .counters
                        .outputs_written
                        .fetch_add(refs.len() as u64, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    tracing::error!(partition = self.partition, error = %e, "cannot append outputs; retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// The Kafka key of each output line: the values of its statement's PARTITION BY
    /// (rules) or GROUP BY (metrics) columns, joined by `,` (a string as is, other values
    /// as JSON); `None` without such columns.
    fn output_keys(&self, lines: &[String]) -> Vec<Option<String>> {
        use dsl::ast::{ExprKind, StatementKind};
        let v = self.shared.current();
        let mut cols: HashMap<&str, Vec<String>> = HashMap::new();
        for e in v.catalog.entries() {
            let exprs = match &e.statement.kind {
                StatementKind::CreateRule(r) => &r.partition_by,
                StatementKind::CreateMetric(m) => &m.group_by,
                _ => continue,
            };
            let names: Vec<String> = exprs
                .iter()
                .filter_map(|x| match &x.kind {
                    ExprKind::Path(p) => p.last().map(|i| i.name.clone()),
                    _ => None,
                })
                .collect();
            if !names.is_empty() {
                cols.insert(e.name.as_str(), names);
            }
        }
        lines
            .iter()
            .map(|l| {
                let rec: serde_json::Value = serde_json::from_str(l).ok()?;
                let name = ["rule", "metric", "search"]
                    .iter()
                    .find_map(|k| rec.get(*k).and_then(|n| n.as_str()))?;
                let cs = cols.get(name)?;
                let parts: Vec<String> = cs
                    .iter()
                    .map(|c| {
                        let v = rec
                            .get("fields")
                            .and_then(|f| f.get(c))
                            .or_else(|| rec.get("group").and_then(|g| g.get(c)));
                        match v {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => String::new(),
                        }
                    })
                    .collect();
                Some(parts.join(","))
            })
            .collect()
    }

    pub fn checkpoint(&mut self, versions: &[Arc<Version>]) {
        let mut covered = Position::new();
        for (t, o) in &self.next {
            covered.set(t, self.partition, *o);
        }
        covered.set(
            STATEMENTS_TOPIC,
            0,
            versions.get(self.version_idx).map_or(0, |v| v.stmt_end),
        );
        let outputs_end = self.shared.outputs_end();
        // The checkpoint says "outputs below `outputs_end` exist": they must be durable
        // first, or a power loss could lose outputs that replay would not re-derive.
        if let Err(e) = self.shared.log.wait_durable(OUTPUTS_TOPIC, 0, outputs_end) {
            tracing::error!(partition = self.partition, error = %e, "outputs not durable; checkpoint skipped");
            self.shared
                .counters
                .checkpoint_failures
                .fetch_add(1, Ordering::Relaxed);
            self.last_ckpt = Instant::now();
            return;
        }
        let ck = WorkerCheckpoint {
            engine: self.engine.snapshot(),
            outputs_end,
            copies_seen: self.copies_seen.clone(),
            marks: self.marks.clone(),
        };
        let data = match serde_json::to_vec(&ck) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(partition = self.partition, error = %e, "cannot serialize state");
                self.shared
                    .counters
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match self.shared.checkpoints.write_checkpoint(
            &checkpoint_name(self.partition),
            &covered,
            &data,
        ) {
            Ok(seq) => {
                self.written_seq = Some(seq);
                self.shared
                    .counters
                    .checkpoints_written
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(k) = &self.shared.kafka {
                    if let Some(c) = k.covered.get(self.partition as usize) {
                        *c.lock().unwrap_or_else(|e| e.into_inner()) = covered.clone();
                    }
                }
                if let Some(p) = self.shared.progress.get(self.partition as usize) {
                    p.lock().unwrap_or_else(|e| e.into_inner()).last_checkpoint =
                        Some(Instant::now());
                }
            }
            Err(e) => {
                self.shared
                    .counters
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(partition = self.partition, error = %e, "checkpoint failed");
            }
        }
        self.events_since_ckpt = 0;
        self.last_ckpt = Instant::now();
    }

    /// Runs until every input written so far is applied (recovery replay).
    pub fn catch_up(&mut self) {
        if self.shared.kafka.is_some() {
            // Kafka mode: nothing is owned before the group assigns partitions.
            return;
        }
        loop {
            let versions = self.shared.versions();
            let n = self.step(&versions);
            self.publish(&versions);
            if n == 0 {
                return;
            }
        }
    }

    /// The worker loop; returns after shutdown with a final checkpoint.
    pub fn run(mut self) {
        let every = self.shared.settings.checkpoint_interval;
        loop {
            let seq = *self
                .shared
                .wake_seq
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let cmds: Vec<_> = self
                .shared
                .commands
                .get(self.partition as usize)
                .map(|q| std::mem::take(&mut *q.lock().unwrap_or_else(|e| e.into_inner())))
                .unwrap_or_default();
            for c in cmds {
                c(&mut self.engine);
            }
            if self.shared.kafka.is_some() && !self.kafka_gate() {
                if self.shared.shutdown.load(Ordering::SeqCst) {
                    return;
                }
                self.idle_wait(seq);
                continue;
            }
            let versions = self.shared.versions();
            let t_step = Instant::now();
            let n = self.step(&versions);
            self.publish(&versions);
            if self.shared.shutdown.load(Ordering::SeqCst) && n == 0 {
                self.checkpoint(&versions);
                if let Some(k) = &self.shared.kafka {
                    k.active[self.partition as usize].store(false, Ordering::SeqCst);
                    self.shared.notify_progress();
                }
                return;
            }
            if self.events_since_ckpt > 0 && self.last_ckpt.elapsed() >= every {
                self.checkpoint(&versions);
            }
            // Kafka reads wait for records themselves; an empty step that returned at
            // once (no stream yet, broker unreachable) waits here instead of spinning.
            if n == 0
                && (self.shared.kafka.is_none() || t_step.elapsed() < Duration::from_millis(50))
            {
                self.idle_wait(seq);
            }
        }
    }

    fn idle_wait(&self, seq: u64) {
        let g = self
            .shared
            .wake_seq
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *g == seq {
            let _ = self
                .shared
                .wake_cv
                .wait_timeout(g, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Kafka mode: follows the group's decisions. Owned and not running: restore from the
    /// partition's latest checkpoint (and the ids written since, for de-duplication).
    /// Running and no longer owned: checkpoint and stop. Returns whether to process.
    fn kafka_gate(&mut self) -> bool {
        let Some(k) = &self.shared.kafka else {
            return true;
        };
        let p = self.partition as usize;
        let owned = k.owns(self.partition);
        let active = k.active[p].load(Ordering::SeqCst);
        match (owned, active) {
            (true, true) => true,
            (false, false) => false,
            (false, true) => {
                let versions = self.shared.versions();
                self.checkpoint(&versions);
                // Stop fetching the partition's stream topics (the readers share one
                // consumer per worker partition; the others are not disturbed).
                if let Some(klog) = self.shared.log.as_kafka() {
                    for t in self.next.keys() {
                        klog.release(t, self.partition);
                    }
                }
                let k = self.shared.kafka.as_ref().map(|k| &k.active[p]);
                if let Some(a) = k {
                    a.store(false, Ordering::SeqCst);
                }
                self.shared.notify_progress();
                tracing::info!(partition = p, "partition released");
                false
            }
            (true, false) => {
                let t0 = Instant::now();
                let latest = self
                    .shared
                    .checkpoints
                    .latest_checkpoint(&checkpoint_name(self.partition));
                let warm = matches!(&latest, Ok(Some(c)) if Some(c.seq) == self.written_seq);
                let t_ckpt = t0.elapsed();
                let (n, t_state) = if warm {
                    (0, Duration::ZERO)
                } else {
                    let (w, from) = Worker::recover(self.shared.clone(), self.partition);
                    *self = w;
                    let t_state = t0.elapsed();
                    (load_seen_ids(&self.shared, from), t_state)
                };
                if let Some(k) = &self.shared.kafka {
                    k.active[p].store(true, Ordering::SeqCst);
                    let all = (0..k.owned.len()).all(|i| {
                        !k.owned[i].load(Ordering::SeqCst) || k.active[i].load(Ordering::SeqCst)
                    });
                    if all {
                        if let Some(at) = *k.last_assigned.lock().unwrap_or_else(|e| e.into_inner())
                        {
                            k.last_recovery_ms
                                .store(at.elapsed().as_millis() as u64, Ordering::Relaxed);
                        }
                    }
                }
                self.shared.notify_progress();
                tracing::info!(
                    partition = p,
                    ms = t0.elapsed().as_millis() as u64,
                    latest_ms = t_ckpt.as_millis() as u64,
                    state_ms = t_state.as_millis() as u64,
                    ids = n,
                    warm,
                    "partition restored"
                );
                true
            }
        }
    }
}

/// Reads the output ids written from `from` on (for de-duplication after recovery).
pub fn load_seen_ids(shared: &Shared, from: u64) -> usize {
    if let Some(k) = shared.log.as_kafka() {
        // Kafka: to the end as of now (a fetch's end report, no wait after it); the id
        // is in each record's `weir-id` header (`read_to_end` starts at the earliest
        // retained offset when `from` is below it).
        let mut seen = shared.seen_ids.write().unwrap_or_else(|e| e.into_inner());
        let read = k.read_records_to_end(OUTPUTS_TOPIC, 0, from, |recs| {
            for r in &recs {
                match r.header(weir_kafka::ID_HEADER) {
                    Some(id) => {
                        seen.insert(String::from_utf8_lossy(id).into_owned());
                    }
                    None => {
                        let v = r.value.as_deref().unwrap_or_default();
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(v) {
                            if let Some(id) = v.get("id").and_then(|i| i.as_str()) {
                                seen.insert(id.to_string());
                            }
                        }
                    }
                }
            }
        });
        if let Err(e) = read {
            tracing::warn!(error = %e, "cannot read the output ids to de-duplicate");
        }
        return seen.len();
    }
    let mut seen = shared.seen_ids.write().unwrap_or_else(|e| e.into_inner());
    let mut at = from.max(shared.log.start_offset(OUTPUTS_TOPIC, 0).unwrap_or(0));
    loop {
        let recs = match shared.log.read(OUTPUTS_TOPIC, 0, at, 4096, 8 << 20) {
            Ok(r) => r,
            Err(_) => break,
        };
        if recs.is_empty() {
            break;
        }
        for r in &recs {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.payload) {
                if let Some(id) = v.get("id").and_then(|i| i.as_str()) {
                    seen.insert(id.to_string());
                }
            }
            at = r.offset + 1;
        }
    }
    let _ = relaxed(&shared.counters.outputs_written);
    seen.len()
}
