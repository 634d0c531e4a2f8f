//! Start-up: open the log (embedded or Kafka), replay the statements topic into the
//! catalog history, create the stream topics, recover the workers from their
//! checkpoints, then run them (`start_workers`).

use super::app::App;
use super::ingest::Ingest;
use super::log::{stream_topic, Checkpoints, ServerLog};
use super::state::{KafkaSide, Settings, Shared, Version, LEASES_TOPIC};
use super::statements::replay_statement;
use super::worker;
use anyhow::Context as _;
use dsl::check::Catalog;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;
use weir_kafka::{KafkaCheckpointStore, KafkaConfig, KafkaLog};
use weir_log::{CheckpointStore, Log, LogConfig, OUTPUTS_TOPIC, STATEMENTS_TOPIC};

/// Opens the log, replays statements, recovers workers. Returns the shared state and the
/// workers (not yet running).
pub fn open(
    data: &Path,
    log_cfg: LogConfig,
    settings: Settings,
) -> anyhow::Result<(App, Vec<worker::Worker>)> {
    let log = Log::open(data.join("log"), log_cfg)
        .with_context(|| format!("cannot open the log in {}", data.display()))?;
    for r in log.recovery_report() {
        tracing::info!(report = ?r, "log partition recovered");
    }
    let checkpoints = Checkpoints::Files(CheckpointStore::open(data.join("checkpoints"), 3)?);
    open_with(ServerLog::embedded(log), checkpoints, None, settings)
}

/// Kafka mode: the log is Kafka (`docs/kafka.md`). Workers start idle; the consumer
/// group ([`kafka::start_group`]) hands them their partitions.
pub fn open_kafka(
    mut cfg: KafkaConfig,
    settings: Settings,
) -> anyhow::Result<(App, Vec<worker::Worker>)> {
    cfg.default_partitions = settings.partitions;
    cfg.validate()?;
    let log = Arc::new(
        KafkaLog::open(&cfg).with_context(|| format!("cannot reach Kafka at {}", cfg.bootstrap))?,
    );
    let outs = weir_kafka::LogBackend::partitions(&*log, OUTPUTS_TOPIC)?;
    if outs != 1 {
        anyhow::bail!(
            "the outputs topic {} has {outs} partitions; weir needs it with exactly 1 (its offsets are the output cursors)",
            log.kafka_topic(OUTPUTS_TOPIC)
        );
    }
    let checkpoints = Checkpoints::Kafka(Box::new(KafkaCheckpointStore::open(&cfg)?));
    open_with(ServerLog::kafka(log), checkpoints, Some(cfg), settings)
}

fn open_with(
    log: ServerLog,
    checkpoints: Checkpoints,
    kafka_cfg: Option<KafkaConfig>,
    settings: Settings,
) -> anyhow::Result<(App, Vec<worker::Worker>)> {
    log.create_topic(STATEMENTS_TOPIC, 1)?;
    log.create_topic(OUTPUTS_TOPIC, 1)?;
    // Outputs are re-derivable from the input log: subscribers see them on write.
    log.set_visibility(OUTPUTS_TOPIC, weir_log::Visibility::Written)?;
    // Replay statements.
    let mut versions = vec![Arc::new(Version::empty())];
    let mut catalog = Catalog::new();
    let mut at = log.start_offset(STATEMENTS_TOPIC, 0)?;
    loop {
        let recs = log.read(STATEMENTS_TOPIC, 0, at, 1024, 16 << 20)?;
        if recs.is_empty() {
            break;
        }
        for r in recs {
            if r.offset < at {
                continue;
            }
            at = r.offset + 1;
            replay_statement(&mut catalog, &mut versions, &r, settings.partitions);
        }
    }
    let max_stream_parts = versions
        .iter()
        .flat_map(|v| v.streams(settings.partitions))
        .map(|(_, p)| p)
        .max()
        .unwrap_or(1);
    let workers = settings.partitions.max(max_stream_parts);
    if let (Some(k), Some(cfg)) = (log.as_kafka(), &kafka_cfg) {
        // One lease per worker; every instance of the group must agree on the count.
        weir_kafka::LogBackend::create_topic(k, LEASES_TOPIC, workers)?;
        let n = weir_kafka::LogBackend::partitions(k, LEASES_TOPIC)?;
        if n != workers {
            anyhow::bail!(
                "the leases topic {} has {n} partitions but this instance runs {workers} workers: start every instance of group `{}` with the same --partitions",
                k.kafka_topic(LEASES_TOPIC),
                cfg.group
            );
        }
    }
    let kafka = kafka_cfg.map(|c| KafkaSide::new(c, workers));
    if let Some(k) = &kafka {
        k.statements_next.store(at, Ordering::SeqCst);
    }
    let shared = Arc::new(Shared {
        log: Arc::new(log),
        checkpoints,
        kafka,
        settings,
        workers,
        versions: RwLock::new(Arc::new(versions)),
        ingest_lock: RwLock::new(()),
        commands: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
        progress: (0..workers)
            .map(|_| Mutex::new(Default::default()))
            .collect(),
        progress_seq: Mutex::new(0),
        progress_cv: Condvar::new(),
        wake_seq: Mutex::new(0),
        wake_cv: Condvar::new(),
        ready: AtomicBool::new(false),
        shutdown: AtomicBool::new(false),
        counters: Default::default(),
        seen_ids: RwLock::new(Default::default()),
        recovery_ms: AtomicU64::new(0),
        subscriptions: Default::default(),
        statement_outputs: Default::default(),
        outputs_tick: tokio::sync::watch::channel(0).0,
    });
    for v in shared.versions().iter() {
        shared.map_kafka_topics(&v.catalog)?;
    }
    let app = App {
        shared: shared.clone(),
        ingest: Arc::new(Ingest::default()),
    };
    app.refresh_streams();
    // Topics of every stream exist (a crash may have come between record and topic).
    for v in shared.versions().iter() {
        for (s, p) in v.streams(shared.settings.partitions) {
            shared.log.create_topic(&stream_topic(&s), p)?;
        }
    }
    if shared.kafka.is_some() {
        // Kafka mode: workers start idle and restore state when the group assigns them.
        let ws = (0..workers)
            .map(|p| worker::Worker::idle(shared.clone(), p))
            .collect();
        return Ok((app, ws));
    }
    let mut ws = Vec::new();
    let mut dedup_from = u64::MAX;
    for p in 0..workers {
        let (w, from) = worker::Worker::recover(shared.clone(), p);
        dedup_from = dedup_from.min(from);
        ws.push(w);
    }
    let n = worker::load_seen_ids(&shared, dedup_from);
    tracing::info!(
        ids = n,
        from = dedup_from,
        "output ids loaded for de-duplication"
    );
    Ok((app, ws))
}

/// Runs the workers' recovery (catch-up) and then their loops on threads.
pub fn start_workers(
    shared: &Arc<Shared>,
    workers: Vec<worker::Worker>,
) -> Vec<std::thread::JoinHandle<()>> {
    let t0 = Instant::now();
    let mut hs = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel();
    for mut w in workers {
        let tx = tx.clone();
        let h = std::thread::Builder::new()
            .name("weir-worker".into())
            .spawn(move || {
                w.catch_up();
                let _ = tx.send(());
                w.run();
            });
        match h {
            Ok(h) => hs.push(h),
            Err(e) => tracing::error!(error = %e, "cannot start a worker thread"),
        }
    }
    drop(tx);
    let shared2 = shared.clone();
    let n = hs.len();
    std::thread::spawn(move || {
        for _ in 0..n {
            let _ = rx.recv();
        }
        shared2
            .recovery_ms
            .store(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
        shared2.ready.store(true, Ordering::SeqCst);
        tracing::info!(
            ms = t0.elapsed().as_millis() as u64,
            "recovery finished; ready"
        );
    });
    hs
}
