//! `weir serve`: the HTTP service over the embedded log.
//!
//! - Statements are records of the `statements` topic; the catalog is rebuilt by replaying
//!   it at start (event sourcing), then `--rules` files are applied if they change anything.
//! - Each stream is topic `stream.<name>` with N partitions; an event goes to partition
//!   `hash(key column) % N` when the stream declares `key`, else to partition 0 (so every
//!   event of one PARTITION BY key always meets the others in one partition).
//! - One worker thread per partition runs the engine ([`worker`]); outputs go to the
//!   `outputs` topic (one partition; its offsets are the output cursors).

pub mod events;
pub mod http;
pub mod idempotency;
pub mod repartition;
pub mod state;
pub mod worker;

use anyhow::Context as _;
use dsl::check::{Action, Catalog};
use serde_json::{json, Value as Json};
use state::{
    diagnostics_json, parse_statement_record, statement_record, stream_topic, Checkpoints,
    KafkaSide, ServerLog, Settings, Shared, Version, LEASES_TOPIC,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;
use weir_kafka::{KafkaCheckpointStore, KafkaConfig, KafkaLog};
use weir_log::{
    CheckpointStore, Log, LogConfig, Position, Record, OUTPUTS_TOPIC, STATEMENTS_TOPIC,
};

pub mod kafka;

/// An API error: status, code, message and details.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub details: serde_json::Map<String, Json>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: serde_json::Map::new(),
        }
    }
    pub fn with(mut self, key: &str, v: Json) -> ApiError {
        self.details.insert(key.to_string(), v);
        self
    }
    pub fn body(&self) -> Json {
        let mut e = serde_json::Map::new();
        e.insert("code".into(), self.code.into());
        e.insert("message".into(), self.message.clone().into());
        for (k, v) in &self.details {
            e.insert(k.clone(), v.clone());
        }
        json!({ "error": e })
    }
}

/// Opens the log, replays statements, recovers workers. Returns the shared state and the
/// workers (not yet running).
pub fn open(
    data: &Path,
    log_cfg: LogConfig,
    settings: Settings,
) -> anyhow::Result<(Arc<Shared>, Vec<worker::Worker>)> {
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
) -> anyhow::Result<(Arc<Shared>, Vec<worker::Worker>)> {
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

/// Applies one statements record to the catalog history (start-up replay and, in Kafka
/// mode, the follower). Records below `next` were applied already (compaction can return
/// a record twice).
pub(crate) fn replay_statement(
    catalog: &mut Catalog,
    versions: &mut Vec<Arc<Version>>,
    r: &Record,
) {
    let end = r.offset + 1;
    let (text, effect) = match parse_statement_record(&r.payload) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(offset = r.offset, error = %e, "unreadable statements record skipped");
            return;
        }
    };
    let (stmts, perr) = dsl::parse::parse_statements(&text);
    if perr.iter().any(|d| d.is_error()) {
        tracing::error!(
            offset = r.offset,
            "statements record does not parse; skipped"
        );
        return;
    }
    let mut next = catalog.clone();
    match next.apply(&stmts) {
        Ok(_) => {
            *catalog = next;
            versions.push(Arc::new(Version::new(catalog.clone(), end, effect)))
        }
        Err(_) => {
            tracing::error!(
                offset = r.offset,
                "statements record no longer checks; skipped"
            )
        }
    }
}

fn open_with(
    log: ServerLog,
    checkpoints: Checkpoints,
    kafka_cfg: Option<KafkaConfig>,
    settings: Settings,
) -> anyhow::Result<(Arc<Shared>, Vec<worker::Worker>)> {
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
            replay_statement(&mut catalog, &mut versions, &r);
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
        streams: RwLock::new(HashMap::new()),
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
        outputs_tick: tokio::sync::watch::channel(0).0,
        idempotency: Default::default(),
    });
    for v in shared.versions().iter() {
        shared.map_kafka_topics(&v.catalog)?;
    }
    shared.refresh_streams();
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
        return Ok((shared, ws));
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
    Ok((shared, ws))
}

/// Applies statement text: validated as a whole against a clone of the catalog, appended
/// to the statements topic, then installed. Blocking (log append).
pub fn apply_statements(shared: &Shared, text: &str) -> Result<Json, ApiError> {
    let s = &shared.settings;
    if text.len() > s.max_statement_bytes {
        return Err(ApiError::new(
            413,
            "statement_too_large",
            format!(
                "statement text is limited to {} bytes",
                s.max_statement_bytes
            ),
        ));
    }
    let (stmts, perr) = dsl::parse::parse_statements(text);
    if perr.iter().any(|d| d.is_error()) {
        return Err(ApiError::new(
            400,
            "invalid_statement",
            "the statements have errors; nothing was applied",
        )
        .with("errors", diagnostics_json(&perr, text)));
    }
    if stmts.is_empty() {
        return Err(ApiError::new(
            400,
            "invalid_statement",
            "no statement in the body",
        ));
    }
    let w = shared
        .ingest_lock
        .write()
        .unwrap_or_else(|e| e.into_inner());
    let cur = shared.current();
    let mut catalog = (*cur.catalog).clone();
    let applied = catalog.apply(&stmts).map_err(|diags| {
        ApiError::new(
            400,
            "invalid_statement",
            "the statements have errors; nothing was applied",
        )
        .with("errors", diagnostics_json(&diags, text))
    })?;
    if catalog.entries().len() > s.max_statements {
        return Err(ApiError::new(
            400,
            "too_many_statements",
            format!("at most {} statements may exist", s.max_statements),
        ));
    }
    let new_streams: Vec<(String, u32)> =
        Version::new(catalog.clone(), 0, Position::new()).streams(s.partitions);
    for (name, parts) in &new_streams {
        if *parts > shared.workers || *parts == 0 {
            return Err(ApiError::new(
                400,
                "invalid_statement",
                format!(
                    "stream `{name}` asks for {parts} partitions; this service runs {} (--partitions)",
                    shared.workers
                ),
            ));
        }
        if let Ok(existing) = shared.log.partitions(&stream_topic(name)) {
            if existing != *parts {
                return Err(ApiError::new(
                    400,
                    "invalid_statement",
                    format!("stream `{name}` already has {existing} partitions in the log; it cannot change to {parts}"),
                ));
            }
        }
    }
    // Effect position: every stream topic's end now (no ingest can interleave here; in
    // Kafka mode, other producers can, so the effect is where this instance saw the ends).
    let mut effect = Position::new();
    match shared.log.as_embedded() {
        Some(log) => {
            for (t, _) in log.topics() {
                if t.starts_with("stream.") {
                    if let Ok(p) = log.position(&t) {
                        effect.merge_max(&p);
                    }
                }
            }
        }
        None => {
            for (name, _) in cur.streams(s.partitions) {
                if let Ok(p) = shared.log.position(&stream_topic(&name)) {
                    effect.merge_max(&p);
                }
            }
        }
    }
    shared
        .map_kafka_topics(&catalog)
        .map_err(|e| ApiError::new(400, "invalid_statement", e.to_string()))?;
    for (name, parts) in &new_streams {
        shared
            .log
            .create_topic(&stream_topic(name), *parts)
            .map_err(|e| ApiError::new(500, "log_error", e.to_string()))?;
    }
    let rec = statement_record(text, &effect);
    let a = shared
        .log
        .append(STATEMENTS_TOPIC, 0, &[&rec])
        .map_err(|e| ApiError::new(500, "log_error", e.to_string()))?;
    if shared.kafka.is_some() {
        // Kafka mode: the statements follower installs every record, this instance's
        // included, in the topic's order; wait for it to reach this one.
        drop(w);
        if !kafka::wait_statement_applied(shared, a.end_offset) {
            return Err(ApiError::new(
                409,
                "conflict",
                "another instance changed the statements at the same time and this change no longer checks; nothing was applied",
            ));
        }
    } else {
        let mut vs = shared.versions.write().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Arc<Version>> = vs.as_ref().clone();
        list.push(Arc::new(Version::new(
            catalog,
            a.end_offset,
            effect.clone(),
        )));
        *vs = Arc::new(list);
        drop(vs);
        drop(w);
        shared.refresh_streams();
        shared.wake_workers();
    }
    let mut pos = effect;
    pos.set(STATEMENTS_TOPIC, 0, a.end_offset);
    let applied_json: Vec<Json> = applied
        .applied
        .iter()
        .map(|x| {
            json!({
                "kind": format!("{:?}", x.kind).to_lowercase(),
                "name": x.name,
                "action": match x.action {
                    Action::Created => "created",
                    Action::Replaced => "replaced",
                    Action::Dropped => "dropped",
                    Action::Unchanged => "unchanged",
                },
            })
        })
        .collect();
    let warnings: Vec<Json> = applied
        .warnings
        .iter()
        .map(|d| d.to_json("<body>", text))
        .collect();
    Ok(json!({"applied": applied_json, "warnings": warnings, "position": pos.encode()}))
}

/// Applies `--rules` files at start when they change anything (same canonical text =
/// nothing to do).
pub fn apply_rule_files(shared: &Shared, texts: &[(String, String)]) -> anyhow::Result<()> {
    for (file, text) in texts {
        let (stmts, perr) = dsl::parse::parse_statements(text);
        if perr.iter().any(|d| d.is_error()) {
            for d in &perr {
                eprint!("{}", d.render(file, text));
            }
            anyhow::bail!("{file}: the statements have errors");
        }
        let cur = shared.current();
        let changes = stmts.iter().any(|st| {
            let canon = st.to_string();
            !cur.texts.values().any(|t| *t == canon)
        });
        if !changes {
            tracing::info!(file, "rules already applied; unchanged");
            continue;
        }
        match apply_statements(shared, text) {
            Ok(r) => tracing::info!(file, result = %r, "rules applied"),
            Err(e) => {
                if let Some(errs) = e.details.get("errors").and_then(Json::as_array) {
                    for x in errs {
                        eprintln!(
                            "{file}:{}:{}: error: {}",
                            x["line"],
                            x["column"],
                            x["message"].as_str().unwrap_or("")
                        );
                    }
                }
                anyhow::bail!("{file}: {}", e.message);
            }
        }
    }
    Ok(())
}

/// One event of a request: the parsed JSON and, when available, its text as sent (or
/// why it could not be parsed).
pub type EventIn = Result<(Json, Option<Vec<u8>>), String>;

/// One decoded ingest request, ready to append.
pub struct IngestResult {
    pub accepted: usize,
    pub rejected: Vec<Json>,
    pub position: Position,
}

/// Validates and appends events of one stream. Blocking.
pub fn ingest(
    shared: &Shared,
    stream: &str,
    events: Vec<EventIn>,
) -> Result<IngestResult, ApiError> {
    ingest_with(shared, stream, |info| events::split_events(info, events))
}

/// Appends the events `split` validates and routes for one stream. Blocking.
pub fn ingest_with<'a>(
    shared: &Shared,
    stream: &str,
    split: impl FnOnce(&state::StreamInfo) -> events::Batches<'a>,
) -> Result<IngestResult, ApiError> {
    let _r = shared.ingest_lock.read().unwrap_or_else(|e| e.into_inner());
    let Some(info) = shared.stream_info(stream) else {
        let mut known: Vec<String> = shared
            .streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        known.sort();
        return Err(
            ApiError::new(404, "unknown_stream", format!("unknown stream `{stream}`"))
                .with("known_streams", json!(known)),
        );
    };
    let topic = stream_topic(stream);
    // Backpressure: refuse when the workers of any partition are too far behind, on the
    // stream or on its repartitioned copies.
    let mut topics = vec![topic.clone()];
    topics.extend(
        shared
            .current()
            .repartitions(shared.settings.partitions)
            .iter()
            .filter(|r| r.source == stream)
            .map(|r| stream_topic(&r.stream)),
    );
    for (topic, p) in topics
        .iter()
        .flat_map(|t| (0..info.partitions).map(move |p| (t, p)))
    {
        if shared.runs_partition(p) && shared.lag(topic, p) > shared.settings.max_lag {
            shared
                .counters
                .requests_throttled
                .fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(
                429,
                "backpressure",
                format!(
                    "the workers of partition {p} are more than {} events behind; retry later",
                    shared.settings.max_lag
                ),
            ));
        }
    }
    let events::Batches {
        per_part,
        rejected,
        accepted,
    } = split(info.in_order.as_deref().unwrap_or(&info));
    if let Some(k) = shared.log.as_kafka() {
        kafka::append_batches(k, &topic, info.key.as_deref(), info.partitions, &per_part)?;
        return Ok(finish_ingest(
            shared, &topic, &per_part, accepted, rejected, _r,
        ));
    }
    let Some(log) = shared.log.as_embedded() else {
        return Err(ApiError::new(500, "log_error", "no log"));
    };
    // Write every partition's batch, then wait for durability (group commit).
    let mut pending = Vec::new();
    for (p, recs) in per_part.iter().enumerate() {
        if recs.is_empty() {
            continue;
        }
        // Batches stay well under the log's batch limit (16 MiB by default).
        let max_batch = (log.config().max_batch_bytes / 2).max(1024) as usize;
        let mut end = 0;
        let mut chunk: Vec<&[u8]> = Vec::new();
        let mut size = 0;
        for (i, r) in recs.iter().enumerate() {
            chunk.push(r.as_ref());
            size += r.len() + 32;
            if size >= max_batch || i + 1 == recs.len() {
                let a = log
                    .append_nowait(&topic, p as u32, &chunk)
                    .map_err(|e| ApiError::new(503, "log_error", e.to_string()))?;
                end = a.end_offset;
                chunk.clear();
                size = 0;
            }
        }
        pending.push((p as u32, end));
    }
    let targets: Vec<(&str, u32, u64)> = pending
        .iter()
        .map(|&(p, end)| (topic.as_str(), p, end))
        .collect();
    log.wait_durable_all(&targets)
        .map_err(|e| ApiError::new(503, "log_error", e.to_string()))?;
    Ok(finish_ingest(
        shared, &topic, &per_part, accepted, rejected, _r,
    ))
}

fn finish_ingest(
    shared: &Shared,
    topic: &str,
    per_part: &[Vec<std::borrow::Cow<'_, [u8]>>],
    accepted: usize,
    rejected: Vec<Json>,
    lock: std::sync::RwLockReadGuard<'_, ()>,
) -> IngestResult {
    let position = shared.log.position(topic).unwrap_or_default();
    // Counted as appended (a resumed idempotent retry skips events already stored).
    let appended: usize = per_part.iter().map(Vec::len).sum();
    shared
        .counters
        .events_accepted
        .fetch_add(appended as u64, Ordering::Relaxed);
    shared
        .counters
        .events_rejected
        .fetch_add(rejected.len() as u64, Ordering::Relaxed);
    drop(lock);
    if appended > 0 {
        shared.wake_workers();
    }
    IngestResult {
        accepted,
        rejected,
        position,
    }
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
