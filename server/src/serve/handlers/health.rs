//! Health, readiness, the Prometheus exposition (`/metrics`) and the OpenAPI document.
use super::St;
use crate::serve::error::AppError;
use crate::serve::log::stream_topic;
use crate::serve::state::relaxed;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use matcher::engine::StreamCounters;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

pub async fn readyz(State(s): St) -> Response {
    if !s.ready.load(Ordering::SeqCst) {
        return AppError::new(503, "recovering", "recovery is not finished").into_response();
    }
    // A log partition that refuses writes after an I/O error: not ready until it is
    // reopened (by itself, once the disk works again).
    let failed = s
        .log
        .as_embedded()
        .map(|l| l.failed_partitions())
        .unwrap_or_default();
    if let Some((topic, partition, reason)) = failed.first() {
        return AppError::new(
            503,
            "log_failed",
            format!(
                "{} log partition(s) refuse writes, e.g. {topic}/{partition}: {reason}; retried until the disk works again",
                failed.len()
            ),
        )
        .into_response();
    }
    axum::Json(json!({"status": "ready"})).into_response()
}

pub async fn prometheus(State(s): St) -> Response {
    let c = &s.counters;
    let mut t = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(t, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    metric(
        "weir_events_accepted_total",
        "counter",
        "Events appended to the log.",
        relaxed(&c.events_accepted),
    );
    metric(
        "weir_events_rejected_total",
        "counter",
        "Events rejected at ingest.",
        relaxed(&c.events_rejected),
    );
    metric(
        "weir_requests_throttled_total",
        "counter",
        "Ingest requests refused under backpressure.",
        relaxed(&c.requests_throttled),
    );
    metric(
        "weir_outputs_written_total",
        "counter",
        "Output records appended.",
        relaxed(&c.outputs_written),
    );
    metric(
        "weir_outputs_truncated_total",
        "counter",
        "Output records larger than the log's batch limit, written truncated (\"truncated\": true).",
        relaxed(&c.outputs_truncated),
    );
    metric(
        "weir_repartition_copies_too_large_total",
        "counter",
        "Repartitioned copies larger than the log's batch limit, dropped.",
        relaxed(&c.copies_too_large),
    );
    metric(
        "weir_outputs_deduplicated_total",
        "counter",
        "Re-derived outputs skipped after recovery.",
        relaxed(&c.outputs_deduplicated),
    );
    metric(
        "weir_repartition_copies_total",
        "counter",
        "Events copied into repartitioned streams (statements grouped by a column other than the stream's key).",
        relaxed(&c.copies_written),
    );
    metric(
        "weir_repartition_copies_deduplicated_total",
        "counter",
        "Repartitioned copies written again by a replay after a crash, and dropped.",
        relaxed(&c.copies_deduplicated),
    );
    metric(
        "weir_idempotent_replays_total",
        "counter",
        "Event writes answered from a finished request with the same Idempotency-Key.",
        relaxed(&s.ingest.idempotency.replayed),
    );
    metric(
        "weir_idempotency_keys_forgotten_total",
        "counter",
        "Idempotency keys forgotten because of the key bound.",
        relaxed(&s.ingest.idempotency.forgotten),
    );
    metric(
        "weir_replay_errors_total",
        "counter",
        "Logged events the engine could not apply.",
        relaxed(&c.replay_errors),
    );
    metric(
        "weir_states_reset_total",
        "counter",
        "Rule sets / metrics whose state restarted empty after a statement change.",
        relaxed(&c.states_reset),
    );
    metric(
        "weir_checkpoints_total",
        "counter",
        "Checkpoints written.",
        relaxed(&c.checkpoints_written),
    );
    metric(
        "weir_checkpoint_failures_total",
        "counter",
        "Checkpoints that failed.",
        relaxed(&c.checkpoint_failures),
    );
    metric(
        "weir_recovery_milliseconds",
        "gauge",
        "Time the last recovery took.",
        relaxed(&s.recovery_ms),
    );
    let quarantined = s.log.as_embedded().map_or(0, |l| {
        l.recovery_report()
            .iter()
            .map(|r| r.quarantined_bytes)
            .sum::<u64>()
    });
    metric(
        "weir_log_quarantined_bytes",
        "gauge",
        "Bytes that log recovery cut (torn or corrupt data, and segments after it) and kept in the partitions' quarantine/ folders since start (docs/durability.md).",
        quarantined,
    );
    metric(
        "weir_log_failed_partitions",
        "gauge",
        "Log partitions refusing writes after an I/O error (reopened once the disk works again).",
        s.log
            .as_embedded()
            .map_or(0, |l| l.failed_partitions().len() as u64),
    );
    metric(
        "weir_log_lost_offsets_filled_total",
        "counter",
        "Input offsets a checkpoint covered but a cut log no longer held, filled with placeholder records at start (docs/durability.md).",
        relaxed(&c.lost_offsets_filled),
    );
    metric(
        "weir_ready",
        "gauge",
        "1 once recovery finished.",
        u64::from(s.ready.load(Ordering::SeqCst)),
    );
    metric(
        "weir_subscriptions",
        "gauge",
        "Live SSE and WebSocket subscriptions.",
        s.subscriptions.load(Ordering::SeqCst) as u64,
    );
    // Series per stream and per partition only: the number of statements does not
    // change the size of this page (per-statement figures:
    // `GET /v1/statements/{name}/stats`).
    let _ = writeln!(t, "# HELP weir_partition_lag_events Events written but not yet applied.\n# TYPE weir_partition_lag_events gauge");
    let streams: Vec<(String, u32)> = s.current().streams(s.settings.partitions);
    for (st, parts) in &streams {
        let topic = stream_topic(st);
        for p in 0..*parts {
            let _ = writeln!(
                t,
                "weir_partition_lag_events{{stream=\"{st}\",partition=\"{p}\"}} {}",
                s.lag(&topic, p)
            );
        }
    }
    let _ = writeln!(
        t,
        "# HELP weir_state_bytes Approximate engine state held.\n# TYPE weir_state_bytes gauge"
    );
    let mut per_stream: BTreeMap<&str, StreamCounters> = streams
        .iter()
        .map(|(n, _)| (n.as_str(), StreamCounters::default()))
        .collect();
    let mut ages = Vec::new();
    for (i, p) in s.progress.iter().enumerate() {
        let g = p.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(t, "weir_state_bytes{{partition=\"{i}\"}} {}", g.state_bytes);
        ages.push((i, g.last_checkpoint.map(|x| x.elapsed().as_secs_f64())));
        for (name, c) in &g.stream_counters {
            if let Some(e) = per_stream.get_mut(name.as_str()) {
                add_counters(e, c);
            }
        }
    }
    // Rule limits (issue 19: starts refused at the cap were not exported), per stream.
    let mut limits: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for p in s.progress.iter() {
        let g = p.lock().unwrap_or_else(|e| e.into_inner());
        for (name, dropped, refused) in &g.rule_limits {
            let e = limits.entry(name.clone()).or_default();
            e.0 += dropped;
            e.1 += refused;
        }
    }
    let _ = writeln!(t, "# HELP weir_rule_partial_matches_dropped_total Partial matches dropped at max_partial_matches_per_key / max_rows_per_key, per stream read by rules.\n# TYPE weir_rule_partial_matches_dropped_total counter");
    for (name, (dropped, _)) in &limits {
        let _ = writeln!(
            t,
            "weir_rule_partial_matches_dropped_total{{stream=\"{name}\"}} {dropped}"
        );
    }
    let _ = writeln!(t, "# HELP weir_rule_starts_refused_total Match starts refused at max_partial_matches_per_rule, per stream read by rules.\n# TYPE weir_rule_starts_refused_total counter");
    for (name, (_, refused)) in &limits {
        let _ = writeln!(
            t,
            "weir_rule_starts_refused_total{{stream=\"{name}\"}} {refused}"
        );
    }
    let _ = writeln!(t, "# HELP weir_checkpoint_age_seconds Seconds since the partition's last checkpoint (-1: none yet).\n# TYPE weir_checkpoint_age_seconds gauge");
    for (i, a) in ages {
        let _ = writeln!(
            t,
            "weir_checkpoint_age_seconds{{partition=\"{i}\"}} {:.3}",
            a.unwrap_or(-1.0)
        );
    }
    let _ = writeln!(t, "# HELP weir_engine_events_total Events seen by the engine per stream, by outcome.\n# TYPE weir_engine_events_total counter");
    for (k, c) in &per_stream {
        for (outcome, n) in outcomes(c) {
            let _ = writeln!(
                t,
                "weir_engine_events_total{{stream=\"{k}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    t.push_str(&crate::serve::kafka::metrics(&s));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], t).into_response()
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../../../docs/openapi.json"),
    )
        .into_response()
}

/// Adds one partition's counters of a stream to a sum.
pub fn add_counters(sum: &mut StreamCounters, c: &StreamCounters) {
    let StreamCounters {
        accepted,
        rejected,
        late_dropped,
        late_processed,
        metric_late,
        metric_group_dropped,
        metric_rejected,
    } = c;
    sum.accepted += accepted;
    sum.rejected += rejected;
    sum.late_dropped += late_dropped;
    sum.late_processed += late_processed;
    sum.metric_late += metric_late;
    sum.metric_group_dropped += metric_group_dropped;
    sum.metric_rejected += metric_rejected;
}

/// The outcomes of `weir_engine_events_total`, by name.
pub fn outcomes(c: &StreamCounters) -> [(&'static str, u64); 7] {
    [
        ("accepted", c.accepted),
        ("rejected", c.rejected),
        ("late_dropped", c.late_dropped),
        ("late_processed", c.late_processed),
        ("metric_late", c.metric_late),
        ("metric_group_dropped", c.metric_group_dropped),
        ("metric_rejected", c.metric_rejected),
    ]
}
