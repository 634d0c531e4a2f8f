//! Statement changes: applied to a clone of the catalog as a whole, appended to the
//! `statements` topic, then installed as a new catalog version (`apply_statements`);
//! replayed from the topic at start (`replay_statement`) and, in Kafka mode, followed
//! as other instances append to it (`start_statement_follower`).

use super::app::App;
use super::error::AppError;
use super::log::stream_topic;
use super::state::{Shared, Version};
use dsl::check::{Action, Catalog};
use dsl::Diagnostic;
use serde_json::{json, Value as Json};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_log::{Position, Record, STATEMENTS_TOPIC};

/// Applies one statements record to the catalog history (start-up replay and, in Kafka
/// mode, the follower). Records below `next` were applied already (compaction can return
/// a record twice).
pub fn replay_statement(
    catalog: &mut Catalog,
    versions: &mut Vec<Arc<Version>>,
    r: &Record,
    default_partitions: u32,
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
    if next.apply(&stmts).is_err() {
        tracing::error!(
            offset = r.offset,
            "statements record no longer checks; skipped"
        );
        return;
    }
    let empty = Version::empty();
    let prev = versions.last().map_or(&empty, |v| &**v);
    match Version::new(next.clone(), end, effect, prev, default_partitions) {
        Ok(v) => {
            *catalog = next;
            versions.push(Arc::new(v));
        }
        Err(diags) => {
            for d in diags {
                tracing::error!(
                    offset = r.offset,
                    error = %d.message,
                    "statements record cannot be compiled; skipped"
                );
            }
        }
    }
}

/// Applies statement text: validated as a whole against a clone of the catalog, appended
/// to the statements topic, then installed. Blocking (log append).
/// 400 `invalid_statement` with every diagnostic of `text` (nothing was applied).
fn invalid_statements(diags: &[Diagnostic], text: &str) -> AppError {
    AppError::new(
        400,
        "invalid_statement",
        "the statements have errors; nothing was applied",
    )
    .with("errors", diagnostics_json(diags, text))
}

pub fn apply_statements(app: &App, text: &str) -> Result<Json, AppError> {
    let shared: &Shared = &app.shared;
    let s = &shared.settings;
    if text.len() > s.max_statement_bytes {
        return Err(AppError::new(
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
        return Err(invalid_statements(&perr, text));
    }
    if stmts.is_empty() {
        return Err(AppError::new(
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
    let applied = catalog
        .apply(&stmts)
        .map_err(|diags| invalid_statements(&diags, text))?;
    if catalog.entries().len() > s.max_statements {
        return Err(AppError::new(
            400,
            "too_many_statements",
            format!("at most {} statements may exist", s.max_statements),
        ));
    }
    // Compiled now (only what changed), so a statement the engine cannot build is refused
    // like any check error; workers then share this program.
    let mut pending = Version::new(catalog.clone(), 0, Position::new(), &cur, s.partitions)
        .map_err(|diags| invalid_statements(&diags, text))?;
    let new_streams: Vec<(String, u32)> = pending.streams(s.partitions);
    for (name, parts) in &new_streams {
        // The stream's log topic is named after it (issue 19: "../x" answered 500).
        if let Err(e) = weir_log::validate_name(&stream_topic(name)) {
            return Err(AppError::new(
                400,
                "invalid_name",
                format!("stream name `{name}` cannot be stored: {e}"),
            ));
        }
        if *parts > shared.workers || *parts == 0 {
            return Err(AppError::new(
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
                return Err(AppError::new(
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
        .map_err(|e| AppError::new(400, "invalid_statement", e.to_string()))?;
    for (name, parts) in &new_streams {
        shared
            .log
            .create_topic(&stream_topic(name), *parts)
            .map_err(|e| AppError::new(500, "log_error", e.to_string()))?;
    }
    let rec = statement_record(text, &effect);
    let a = shared
        .log
        .append(STATEMENTS_TOPIC, 0, &[&rec])
        .map_err(|e| AppError::new(500, "log_error", e.to_string()))?;
    if shared.kafka.is_some() {
        // Kafka mode: the statements follower installs every record, this instance's
        // included, in the topic's order; wait for it to reach this one.
        drop(w);
        if !wait_statement_applied(shared, a.end_offset) {
            return Err(AppError::new(
                409,
                "conflict",
                "another instance changed the statements at the same time and this change no longer checks; nothing was applied",
            ));
        }
    } else {
        let mut vs = shared.versions.write().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Arc<Version>> = vs.as_ref().clone();
        pending.stmt_end = a.end_offset;
        pending.effect = effect.clone();
        list.push(Arc::new(pending));
        *vs = Arc::new(list);
        drop(vs);
        drop(w);
        app.refresh_streams();
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
pub fn apply_rule_files(app: &App, texts: &[(String, String)]) -> anyhow::Result<()> {
    for (file, text) in texts {
        let (stmts, perr) = dsl::parse::parse_statements(text);
        if perr.iter().any(|d| d.is_error()) {
            for d in &perr {
                eprint!("{}", d.render(file, text));
            }
            anyhow::bail!("{file}: the statements have errors");
        }
        let cur = app.current();
        let changes = stmts.iter().any(|st| statement_changes(&cur.catalog, st));
        if !changes {
            tracing::info!(file, "rules already applied; unchanged");
            continue;
        }
        match apply_statements(app, text) {
            // Counts, not the whole answer: a file of 10,000 searches would log 10,000 names.
            Ok(r) => tracing::info!(
                file,
                applied = r["applied"].as_array().map_or(0, Vec::len),
                warnings = r["warnings"].as_array().map_or(0, Vec::len),
                position = %r["position"],
                "rules applied"
            ),
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

/// Whether applying `st` would change `catalog` (same statement, spans aside = no).
fn statement_changes(catalog: &Catalog, st: &dsl::ast::Statement) -> bool {
    use dsl::ast::StatementKind as K;
    let name = match &st.kind {
        K::Drop(d) => return catalog.get(&d.name.name).is_some(),
        K::CreateStream(c) => &c.name,
        K::CreateRule(c) => &c.name,
        K::CreateSearch(c) => &c.name,
        K::CreateMetric(c) => &c.name,
    };
    catalog
        .get(&name.name)
        .is_none_or(|e| e.statement.to_string() != st.to_string())
}

/// Waits until the statements follower has read the topic up to `end` (exclusive), then
/// tells whether the record ending there was installed (false: it no longer checked after
/// a concurrent change from another instance, or the follower is too slow).
pub fn wait_statement_applied(shared: &Shared, end: u64) -> bool {
    let Some(k) = &shared.kafka else {
        return true;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut g = shared
        .progress_seq
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    while k.statements_next.load(Ordering::SeqCst) < end {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        g = shared
            .progress_cv
            .wait_timeout(g, (deadline - now).min(Duration::from_millis(50)))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(g);
    shared.versions().iter().any(|v| v.stmt_end == end)
}

/// Follows the statements topic: every record (this instance's too) is installed in the
/// topic's order, so every instance has the same catalog history.
pub fn start_statement_follower(app: App) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let shared = &app.shared;
        let Some(k) = &shared.kafka else { return };
        while !shared.shutdown.load(Ordering::SeqCst) {
            let at = k.statements_next.load(Ordering::SeqCst);
            let recs = match shared.log.read(STATEMENTS_TOPIC, 0, at, 1024, 16 << 20) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the statements topic");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            if recs.is_empty() {
                continue;
            }
            let w = shared
                .ingest_lock
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let mut versions: Vec<_> = shared.versions().as_ref().clone();
            let mut catalog = versions
                .last()
                .map(|v| (*v.catalog).clone())
                .unwrap_or_default();
            let mut next = at;
            for r in &recs {
                if r.offset < next {
                    continue;
                }
                next = r.offset + 1;
                replay_statement(&mut catalog, &mut versions, r, shared.settings.partitions);
            }
            if let Err(e) = shared.map_kafka_topics(&catalog) {
                tracing::error!(error = %e, "a stream names an invalid Kafka topic");
            }
            // Topics of new streams exist (the instance that took the statement created
            // them; this is for a crash in between).
            if let Some(v) = versions.last() {
                for (s, p) in v.streams(shared.settings.partitions) {
                    if let Err(e) = shared.log.create_topic(&stream_topic(&s), p) {
                        tracing::warn!(stream = s, error = %e, "cannot create the stream's topic");
                    }
                }
            }
            *shared.versions.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(versions);
            k.statements_next.store(next, Ordering::SeqCst);
            drop(w);
            app.refresh_streams();
            shared.wake_workers();
            shared.notify_progress();
        }
    })
}

/// A statements-topic record.
pub fn statement_record(text: &str, effect: &Position) -> Vec<u8> {
    json!({"text": text, "effect": effect.encode()})
        .to_string()
        .into_bytes()
}

pub fn parse_statement_record(payload: &[u8]) -> Result<(String, Position), String> {
    let v: Json = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let text = v
        .get("text")
        .and_then(Json::as_str)
        .ok_or("missing text")?
        .to_string();
    let effect = v
        .get("effect")
        .and_then(Json::as_str)
        .map(Position::decode)
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    Ok((text, effect))
}

/// Diagnostics as the API's error details (line, column, snippet per error).
pub fn diagnostics_json(diags: &[Diagnostic], src: &str) -> Json {
    Json::Array(
        diags
            .iter()
            .filter(|d| d.is_error())
            .map(|d| {
                let mut j = d.to_json("<body>", src);
                if let Some(o) = j.as_object_mut() {
                    o.remove("file");
                }
                j
            })
            .collect(),
    )
}
