//! The state the workers and the request path share: the catalog history (event-sourced
//! from the `statements` topic), worker progress, counters, and the Kafka side.

use super::log::{stream_topic, Checkpoints, ServerLog};
use dsl::ast::ObjectKind;
use dsl::check::{Catalog, Entry};
use matcher::engine::{EngineConfig, Program, Repartition, StreamCounters};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};
use weir_kafka::KafkaConfig;
use weir_log::{Position, OUTPUTS_TOPIC, STATEMENTS_TOPIC};

/// Kafka mode: which workers this instance owns (granted by the consumer group) and the
/// hand-over handshake with the group thread.
pub struct KafkaSide {
    pub config: KafkaConfig,
    /// Worker `p` may run: the group assigned partition `p` of the leases topic here.
    pub owned: Vec<AtomicBool>,
    /// Worker `p` has restored its state and is running it.
    pub active: Vec<AtomicBool>,
    /// Input offsets covered by worker `p`'s latest checkpoint (what may be committed).
    pub covered: Vec<Mutex<Position>>,
    pub rebalances: AtomicU64,
    /// Rebalances weir forced because the broker kept a dead member's assignment.
    pub forced_rejoins: AtomicU64,
    /// Next statements offset the follower will read.
    pub statements_next: AtomicU64,
    /// When the last assignment arrived and when every owned worker was running again.
    pub last_assigned: Mutex<Option<Instant>>,
    pub last_recovery_ms: AtomicU64,
}

impl KafkaSide {
    pub fn new(config: KafkaConfig, workers: u32) -> KafkaSide {
        let n = workers as usize;
        KafkaSide {
            config,
            owned: (0..n).map(|_| AtomicBool::new(false)).collect(),
            active: (0..n).map(|_| AtomicBool::new(false)).collect(),
            covered: (0..n).map(|_| Mutex::new(Position::new())).collect(),
            rebalances: AtomicU64::new(0),
            forced_rejoins: AtomicU64::new(0),
            statements_next: AtomicU64::new(0),
            last_assigned: Mutex::new(None),
            last_recovery_ms: AtomicU64::new(0),
        }
    }

    pub fn owns(&self, p: u32) -> bool {
        self.owned
            .get(p as usize)
            .is_some_and(|o| o.load(Ordering::SeqCst))
    }
}

/// The Kafka topic holding one lease per worker partition: the consumer group assigns
/// its partitions, and owning lease `p` means running worker `p`.
pub const LEASES_TOPIC: &str = "leases";

/// Settings of a running service (after merging flags, environment and the config file).
/// `Default` holds the documented defaults (docs/operations.md).
#[derive(Debug, Clone)]
pub struct Settings {
    pub partitions: u32,
    pub token: Option<String>,
    pub max_body_bytes: usize,
    pub max_statement_bytes: usize,
    pub max_statements: usize,
    /// Ingest answers 429 when a target partition's workers are this many events behind.
    pub max_lag: u64,
    pub checkpoint_interval: Duration,
    /// Live SSE + WebSocket subscriptions at most (503 past it).
    pub max_subscriptions: usize,
    /// Which `Host` and `Origin` headers are accepted ([`super::guard`]).
    pub guard: super::guard::Guard,
    /// The wall clock quiet streams advance by (`idle_timeout`); tests inject their own.
    pub clock: super::clock::Clock,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            partitions: 4,
            token: None,
            max_body_bytes: 16 << 20,
            max_statement_bytes: 1 << 20,
            max_statements: 2_000_000,
            max_lag: 1_000_000,
            checkpoint_interval: Duration::from_secs(10),
            max_subscriptions: 1024,
            guard: super::guard::Guard::new("127.0.0.1:7878", Vec::new(), Vec::new()),
            clock: super::clock::Clock::system(),
        }
    }
}

/// One catalog version: the catalog after a statements record, its program (compiled
/// once, shared by every worker), and the stream positions from which it takes effect.
/// A version shares with the previous one everything that did not change (the catalog's
/// entries and the compiled statements, by `Arc`).
pub struct Version {
    pub catalog: Arc<Catalog>,
    /// Every statement compiled; workers run it with their own state.
    pub program: Arc<Program>,
    /// End offset of the statements topic after this version's record (0 = empty catalog).
    pub stmt_end: u64,
    /// Stream end offsets when it was applied: events below run with the previous version.
    pub effect: Position,
    /// The repartitioned streams this catalog needs (the default partition count is fixed
    /// for the life of the process).
    repartition: Vec<Repartition>,
    /// Source streams in catalog order with their partition counts (`None` = the
    /// service's default), worked out once: [`Version::streams`] is read on every worker
    /// step and must not scan a catalog of a million searches.
    sources: Vec<(String, Option<u32>)>,
}

impl Version {
    pub fn empty() -> Version {
        Version {
            catalog: Arc::new(Catalog::new()),
            program: Arc::new(Program::empty(&EngineConfig::default())),
            stmt_end: 0,
            effect: Position::new(),
            repartition: Vec::new(),
            sources: Vec::new(),
        }
    }

    /// The version after `prev` with `catalog`: its program is compiled from `prev`'s,
    /// only the changed statements compiled ([`Program::apply`]). A statement the engine
    /// cannot build is an error here, as any check error.
    pub fn new(
        catalog: Catalog,
        stmt_end: u64,
        effect: Position,
        prev: &Version,
        default_partitions: u32,
    ) -> Result<Version, Vec<dsl::Diagnostic>> {
        // Streams and repartitioning depend only on streams, rules and metrics: a change
        // of searches alone (the common case at scale) reuses the previous version's.
        let changes = catalog.changed_since(&prev.catalog);
        let touches = |f: &dyn Fn(&Entry) -> bool| {
            changes
                .iter()
                .any(|c| c.old.as_deref().is_some_and(f) || c.new.as_deref().is_some_and(f))
        };
        let sources = if touches(&|e| e.kind == ObjectKind::Stream) {
            catalog
                .entries()
                .iter()
                .filter(|e| e.kind == ObjectKind::Stream)
                .map(|e| (e.name.clone(), e.output.partitions))
                .collect()
        } else {
            prev.sources.clone()
        };
        let repartition = if touches(&|e| {
            matches!(
                e.kind,
                ObjectKind::Stream | ObjectKind::Rule | ObjectKind::Metric
            )
        }) {
            matcher::engine::repartitions(&catalog, &|def| {
                def.partitions.unwrap_or(default_partitions)
            })
        } else {
            prev.repartition.clone()
        };
        let config = EngineConfig {
            repartition: repartition.clone(),
            ..Default::default()
        };
        let program = prev.program.apply(&catalog, &config)?;
        Ok(Version {
            catalog: Arc::new(catalog),
            program: Arc::new(program),
            stmt_end,
            effect,
            repartition,
            sources,
        })
    }

    /// Source streams and their partition counts, each followed by its repartitioned
    /// (hidden) streams, which have as many partitions as it.
    pub fn streams(&self, default_partitions: u32) -> Vec<(String, u32)> {
        let reparts = self.repartitions(default_partitions);
        let mut out = Vec::new();
        for (name, parts) in &self.sources {
            let parts = parts.unwrap_or(default_partitions);
            out.push((name.clone(), parts));
            for r in reparts.iter().filter(|r| r.source == *name) {
                out.push((r.stream.clone(), parts));
            }
        }
        out
    }

    /// The names of the source streams (declared with CREATE STREAM), in catalog order.
    pub fn source_names(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().map(|(name, _)| name.as_str())
    }

    /// The log topics of [`Version::streams`].
    pub fn topics(&self, default_partitions: u32) -> Vec<String> {
        self.streams(default_partitions)
            .into_iter()
            .map(|(s, _)| stream_topic(&s))
            .collect()
    }

    /// Statements grouped by a column other than their stream's key read a copy of the
    /// stream re-keyed by that column ([`matcher::engine::repartitions`]).
    pub fn repartitions(&self, _default_partitions: u32) -> &[Repartition] {
        &self.repartition
    }

    /// The repartitioned stream named `stream`, if it is one.
    pub fn hidden_stream(&self, default_partitions: u32, stream: &str) -> Option<&Repartition> {
        self.repartitions(default_partitions)
            .iter()
            .find(|r| r.stream == stream)
    }
}

/// Counters exported on `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub events_accepted: AtomicU64,
    pub events_rejected: AtomicU64,
    pub requests_throttled: AtomicU64,
    pub outputs_written: AtomicU64,
    pub outputs_deduplicated: AtomicU64,
    pub replay_errors: AtomicU64,
    pub states_reset: AtomicU64,
    pub checkpoints_written: AtomicU64,
    pub checkpoint_failures: AtomicU64,
    /// Events copied into repartitioned streams, and copies dropped as replays.
    pub copies_written: AtomicU64,
    pub copies_deduplicated: AtomicU64,
    /// Repartitioned copies too large for the log's batch limit, dropped.
    pub copies_too_large: AtomicU64,
    /// Output records too large for the log's batch limit, written truncated.
    pub outputs_truncated: AtomicU64,
    /// Input offsets a worker's checkpoint covered but the log no longer held (its tail
    /// was cut), filled with placeholder records at start-up.
    pub lost_offsets_filled: AtomicU64,
}

/// Progress of one partition worker (what it has applied).
#[derive(Default, Clone)]
pub struct Progress {
    /// Next offset per stream topic of this partition, and the statements end offset of
    /// the catalog version it runs.
    pub applied: Position,
    pub last_checkpoint: Option<Instant>,
    pub state_bytes: usize,
    /// The engine's counters of each stream it reads (declared, hidden and derived).
    pub stream_counters: Vec<(String, StreamCounters)>,
    /// Per stream read by rules: (partial matches dropped at the per-key caps, match
    /// starts refused at the per-rule cap).
    pub rule_limits: Vec<(String, u64, u64)>,
    /// Repartitioned copies this worker wrote: (hidden stream topic, partition, end
    /// offset after its last append). Input it has applied is covered (`after=`) once
    /// the workers of those partitions have read that far.
    pub copies: Vec<(String, u32, u64)>,
}

/// A question for a worker's engine, run between batches on the worker thread.
pub type Command = Box<dyn FnOnce(&mut matcher::engine::Engine) + Send>;

pub struct Shared {
    /// Pending commands per worker.
    pub commands: Vec<Mutex<Vec<Command>>>,
    pub log: Arc<ServerLog>,
    pub checkpoints: Checkpoints,
    /// Set in Kafka mode.
    pub kafka: Option<KafkaSide>,
    pub settings: Settings,
    pub workers: u32,
    pub versions: RwLock<Arc<Vec<Arc<Version>>>>,
    /// Held shared by ingest appends, exclusively by statement changes, so a statement's
    /// effect position is exact.
    pub ingest_lock: RwLock<()>,
    pub progress: Vec<Mutex<Progress>>,
    /// Bumped (and notified) whenever any worker makes progress.
    pub progress_seq: Mutex<u64>,
    pub progress_cv: Condvar,
    /// Bumped (and notified) on every ingest / statement change (wakes idle workers).
    pub wake_seq: Mutex<u64>,
    pub wake_cv: Condvar,
    pub ready: AtomicBool,
    pub shutdown: AtomicBool,
    pub counters: Counters,
    /// Output ids written after the oldest checkpoint (skipped when replay re-derives them).
    pub seen_ids: RwLock<std::collections::HashSet<String>>,
    pub recovery_ms: AtomicU64,
    pub subscriptions: std::sync::atomic::AtomicUsize,
    /// Output records appended per statement since the process started
    /// (`GET /v1/statements/{name}/stats`; not on `/metrics`, which stays bounded).
    pub statement_outputs: Mutex<HashMap<String, u64>>,
    /// Bumped after every outputs append: live subscribers wait on it (no thread hop).
    pub outputs_tick: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    pub fn versions(&self) -> Arc<Vec<Arc<Version>>> {
        self.versions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn current(&self) -> Arc<Version> {
        let v = self.versions();
        v.last()
            .cloned()
            .unwrap_or_else(|| Arc::new(Version::empty()))
    }

    /// Runs `f` on every worker's engine and collects the answers (5 s timeout each).
    pub fn ask_all<T: Send + 'static>(
        &self,
        f: impl Fn(&mut matcher::engine::Engine) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        let f = Arc::new(f);
        let (tx, rx) = std::sync::mpsc::channel();
        for q in &self.commands {
            let tx = tx.clone();
            let f = f.clone();
            q.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Box::new(move |e| {
                    let _ = tx.send(f(e));
                }));
        }
        drop(tx);
        self.wake_workers();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut out = Vec::new();
        while out.len() < self.commands.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(v) => out.push(v),
                Err(_) => break,
            }
        }
        out
    }

    pub fn wake_workers(&self) {
        let mut g = self.wake_seq.lock().unwrap_or_else(|e| e.into_inner());
        *g += 1;
        self.wake_cv.notify_all();
    }

    pub fn notify_progress(&self) {
        let mut g = self.progress_seq.lock().unwrap_or_else(|e| e.into_inner());
        *g += 1;
        self.progress_cv.notify_all();
    }

    /// True when the workers have applied every input below `pos`.
    pub fn covers(&self, pos: &Position) -> bool {
        for (topic, part, end) in pos.iter() {
            if topic == STATEMENTS_TOPIC {
                for (i, p) in self.progress.iter().enumerate() {
                    if !self.runs_partition(i as u32) {
                        continue;
                    }
                    let g = p.lock().unwrap_or_else(|e| e.into_inner());
                    if g.applied.get(topic, 0).unwrap_or(0) < end {
                        return false;
                    }
                }
                continue;
            }
            if !self.runs_partition(part) {
                continue;
            }
            let Some(p) = self.progress.get(part as usize) else {
                return false;
            };
            let g = p.lock().unwrap_or_else(|e| e.into_inner());
            if g.applied.get(topic, part).unwrap_or(0) < end {
                return false;
            }
            // The copies of these events for repartitioned statements must be applied
            // too (by whichever worker reads them).
            let copies = g.copies.clone();
            drop(g);
            for (ht, q, e) in copies {
                if !self.runs_partition(q) {
                    continue;
                }
                let Some(pq) = self.progress.get(q as usize) else {
                    return false;
                };
                let gq = pq.lock().unwrap_or_else(|e| e.into_inner());
                if gq.applied.get(&ht, q).unwrap_or(0) < e {
                    return false;
                }
            }
        }
        true
    }

    /// Blocks until `covers(pos)` or the timeout; returns whether covered.
    pub fn wait_covered(&self, pos: &Position, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.progress_seq.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.covers(pos) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .progress_cv
                .wait_timeout(g, (deadline - now).min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// True when this instance processes worker partition `p` (always, except in Kafka
    /// mode where the consumer group decides). Reads with `after=` wait only for these.
    pub fn runs_partition(&self, p: u32) -> bool {
        match &self.kafka {
            None => true,
            Some(k) => k.owns(p),
        }
    }

    /// Events written but not yet applied, for one partition of a stream topic.
    pub fn lag(&self, topic: &str, part: u32) -> u64 {
        let end = self.log.end_offset(topic, part).unwrap_or(0);
        let applied = self
            .progress
            .get(part as usize)
            .map(|p| {
                p.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .applied
                    .get(topic, part)
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        end.saturating_sub(applied)
    }

    /// Kafka mode: points each stream's log topic at its Kafka topic (`kafka_topic`, or
    /// the prefix and the stream's name). Nothing to do on the embedded log.
    pub fn map_kafka_topics(&self, catalog: &Catalog) -> Result<(), weir_kafka::Error> {
        let Some(k) = self.log.as_kafka() else {
            return Ok(());
        };
        for e in catalog.entries() {
            if e.kind == ObjectKind::Stream {
                let kt = e
                    .output
                    .kafka_topic
                    .clone()
                    .unwrap_or_else(|| k.config().stream_topic(&e.name));
                k.map_topic(&stream_topic(&e.name), &kt)?;
            }
        }
        // Repartitioned copies: `<prefix><stream>.by.<column>` (internal topics).
        let reparts = matcher::engine::repartitions(catalog, &|d| {
            d.partitions.unwrap_or(self.settings.partitions)
        });
        for r in reparts {
            k.map_topic(
                &stream_topic(&r.stream),
                &k.config().stream_topic(&r.stream),
            )?;
        }
        Ok(())
    }

    pub fn outputs_end(&self) -> u64 {
        self.log.end_offset(OUTPUTS_TOPIC, 0).unwrap_or(0)
    }
}

pub fn relaxed(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}
