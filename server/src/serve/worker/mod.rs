//! Partition workers: one thread per log partition reads every stream topic's partition
//! in order, runs the [`Engine`], appends outputs to the `outputs` topic, and checkpoints.
//!
//! Catalog versions: a statement change takes effect at the stream positions recorded
//! with it, so events below run with the previous catalog, on first run and on replay
//! alike. Each version's program is compiled once, when the statements are applied
//! ([`Version::new`]), and shared by every worker; on a change a worker switches to the
//! new program and the state of unchanged statements carries over
//! ([`Engine::switch_program`]); changed ones start empty (counted in
//! `weir_states_reset_total`). A statement the engine cannot build is refused when it is
//! applied, so no worker ever runs without its statements.

use super::state::{Progress, Shared, Version};
use matcher::engine::Engine;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_log::{Position, STATEMENTS_TOPIC};

mod checkpoint;
mod idle;
mod outputs;
mod step;

pub use checkpoint::{checkpoint_name, WorkerCheckpoint};
pub use outputs::load_seen_ids;

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
    /// Per source stream: how long it has been quiet here (`idle.rs`).
    quiet: HashMap<String, idle::Quiet>,
    /// Shutdown came while the log refused writes: the worker stops without a checkpoint.
    abandoned: bool,
    /// The rule matcher's limit counters per stream (refreshed with `state_bytes`).
    rule_limits: Vec<(String, u64, u64)>,
}

/// An engine running version `v`'s program (compiled once, shared by every worker) with
/// empty state.
fn build_engine(v: &Version, partition: u32) -> Engine {
    Engine::with_program(v.program.clone(), partition)
}

impl Worker {
    /// A worker that holds no partition yet (Kafka mode, before the group assigns it).
    pub fn idle(shared: Arc<Shared>, partition: u32) -> Worker {
        Worker {
            engine: build_engine(&Version::empty(), partition),
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
            quiet: HashMap::new(),
            abandoned: false,
            rule_limits: Vec::new(),
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
                        let mut engine = build_engine(&versions[idx], partition);
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
                    build_engine(&v0, partition),
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
            quiet: HashMap::new(),
            abandoned: false,
            rule_limits: Vec::new(),
        };
        w.fill_cut_inputs();
        w.publish(&versions);
        (w, outputs_from)
    }

    /// A checkpoint ahead of its log (issue 19, item 1): under `fsync = interval` a crash
    /// can cut the tail of a partition after a checkpoint covered it. The checkpoint's
    /// state and the outputs already written include those events; new appends would get
    /// the same offsets, and so be skipped as covered, or have their outputs dropped as
    /// duplicates of the lost events' (same ids). So the lost offsets are filled with
    /// empty placeholder records (which every reader skips) before anything is served:
    /// new events get fresh offsets, and lag, `after=` and `/readyz` stay truthful.
    /// If the placeholders cannot be written, the worker reads from the log's end instead.
    fn fill_cut_inputs(&mut self) {
        let Some(log) = self.shared.log.as_embedded() else {
            return;
        };
        let mut topics: Vec<(String, u64)> =
            self.next.iter().map(|(t, o)| (t.clone(), *o)).collect();
        topics.sort();
        for (topic, covered) in topics {
            let Ok(end) = log.end_offset(&topic, self.partition) else {
                continue;
            };
            if covered <= end {
                continue;
            }
            let missing = covered - end;
            tracing::warn!(
                partition = self.partition,
                topic,
                checkpoint_covers = covered,
                log_end = end,
                missing,
                "the checkpoint covers offsets the log no longer holds (its tail was cut); filling them with placeholders so new events get fresh offsets"
            );
            let mut left = missing;
            while left > 0 {
                let n = left.min(4096);
                let recs: Vec<&[u8]> = vec![&[][..]; n as usize];
                match log.append(&topic, self.partition, &recs) {
                    Ok(_) => left -= n,
                    Err(e) => {
                        let now = log.end_offset(&topic, self.partition).unwrap_or(end);
                        tracing::error!(partition = self.partition, topic, error = %e,
                            "cannot fill the lost offsets; reading from the log's end instead");
                        self.next.insert(topic.clone(), now);
                        break;
                    }
                }
            }
            self.shared
                .counters
                .lost_offsets_filled
                .fetch_add(missing - left, Ordering::Relaxed);
        }
    }

    fn publish(&mut self, versions: &[Arc<Version>]) {
        let mut applied = Position::new();
        for (t, o) in &self.next {
            applied.set(t, self.partition, *o);
        }
        let stmt_end = versions.get(self.version_idx).map_or(0, |v| v.stmt_end);
        applied.set(STATEMENTS_TOPIC, 0, stmt_end);
        let counters = self
            .engine
            .stream_names()
            .iter()
            .filter_map(|s| self.engine.counters(s).map(|c| (s.clone(), c.clone())))
            .collect();
        // Walking the state is O(state): refresh its size at most once a second.
        let refresh = self
            .state_bytes_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if refresh {
            self.state_bytes = self.engine.approx_state_bytes();
            self.state_bytes_at = Some(Instant::now());
            self.rule_limits = self
                .engine
                .stream_names()
                .iter()
                .filter_map(|s| {
                    self.engine
                        .cep_counters(s)
                        .map(|c| (s.clone(), c.partial_matches_dropped, c.starts_refused))
                })
                .collect();
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
                rule_limits: self.rule_limits.clone(),
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
        // The new program shares the compiled form of unchanged statements, and their
        // state carries over.
        let rep = self.engine.switch_program(new.program.clone());
        self.shared
            .counters
            .states_reset
            .fetch_add(rep.states_reset as u64, Ordering::Relaxed);
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
        self.version_idx += 1;
    }

    /// Processes what is available; returns the number of events read.
    /// Runs until every input written so far is applied (recovery replay).
    pub fn catch_up(&mut self) {
        if self.shared.kafka.is_some() {
            // Kafka mode: nothing is owned before the group assigns partitions.
            return;
        }
        loop {
            let versions = self.shared.versions();
            let n = self.step(&versions);
            if self.abandoned {
                return;
            }
            self.publish(&versions);
            if n == 0 || self.shared.shutdown.load(Ordering::SeqCst) {
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
            if self.abandoned {
                return;
            }
            self.publish(&versions);
            // Shutdown does not wait for a backlog to drain (issue 19, item 6: 159 s for
            // 900k events): the worker checkpoints what it has applied and stops; the
            // rest is replayed at the next start.
            if self.shared.shutdown.load(Ordering::SeqCst) {
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
