//! `/v1/statements`: apply statement text, list and read statements, and their figures.

use super::health::{add_counters, outcomes};
use super::{blocking, check_token, read_body, St};
use crate::serve::error::AppError;
use crate::serve::statements::apply_statements;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use matcher::engine::StreamCounters;
use serde_json::{json, Value as Json};

pub async fn post_statements(
    State(s): St,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    check_token(&s, &headers)?;
    let bytes = read_body(&s, &headers, body).await?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|e| AppError::new(400, "invalid_utf8", format!("the body is not UTF-8: {e}")))?;
    let s2 = s.clone();
    let r = blocking(move || apply_statements(&s2, &text)).await??;
    Ok(axum::Json(r).into_response())
}

pub fn statement_json(e: &dsl::check::Entry) -> Json {
    json!({
        "name": e.name,
        "kind": format!("{:?}", e.kind).to_lowercase(),
        "text": e.statement.to_string(),
        "from": e.from(),
        "output": serde_json::to_value(&e.output).unwrap_or(Json::Null),
        "statement": serde_json::to_value(&e.statement).unwrap_or(Json::Null),
    })
}

pub async fn list_statements(State(s): St) -> Response {
    let cur = s.current();
    let list: Vec<Json> = cur
        .catalog
        .entries()
        .iter()
        .map(|e| statement_json(e))
        .collect();
    axum::Json(json!({"statements": list})).into_response()
}

pub async fn get_statement(State(s): St, Path(name): Path<String>) -> Result<Response, AppError> {
    let cur = s.current();
    match cur.catalog.get(&name) {
        Some(e) => Ok(axum::Json(statement_json(e)).into_response()),
        None => Err(unknown_statement(&cur.catalog, &name)),
    }
}

/// Names shown with a 404: at most this many.
const KNOWN_SHOWN: usize = 50;

/// 404 for an unknown statement, with (some of) the names that exist: those sharing the
/// longest prefix with `name` first, at most [`KNOWN_SHOWN`], and how many exist.
fn unknown_statement(catalog: &dsl::check::Catalog, name: &str) -> AppError {
    let common = |n: &str| {
        n.chars()
            .zip(name.chars())
            .take_while(|(a, b)| a == b)
            .count()
    };
    let mut names: Vec<(usize, &str)> = catalog
        .entries()
        .iter()
        .map(|e| (common(&e.name), e.name.as_str()))
        .collect();
    let total = names.len();
    names.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let shown: Vec<&str> = names.iter().take(KNOWN_SHOWN).map(|(_, n)| *n).collect();
    AppError::new(
        404,
        "unknown_statement",
        format!("no statement named `{name}`"),
    )
    .with("known_statements", json!(shown))
    .with("statements_total", json!(total))
}

/// `GET /v1/statements/{name}/stats`: a statement's figures summed over the partitions
/// of this instance (docs/api.md). `events_in` and the late/dropped counts are those of
/// the stream the statement reads (for a stream: its own); `outputs` counts the records
/// it appended since the process started.
pub async fn get_statement_stats(
    State(s): St,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    let cur = s.current();
    let Some(e) = cur.catalog.get(&name) else {
        return Err(unknown_statement(&cur.catalog, &name));
    };
    // The stream the statement reads as the engine sees it (a repartitioned copy when
    // it reads one).
    let read = cur
        .repartitions(s.settings.partitions)
        .iter()
        .find(|r| r.statements.contains(&name))
        .map(|r| r.stream.clone())
        .or_else(|| e.from().map(str::to_string))
        .unwrap_or_else(|| name.clone());
    let mut c = StreamCounters::default();
    for p in &s.progress {
        let g = p.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, pc)) = g.stream_counters.iter().find(|(n, _)| *n == read) {
            add_counters(&mut c, pc);
        }
    }
    let outputs = s
        .statement_outputs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name)
        .copied()
        .unwrap_or(0);
    let is_metric = e.kind == dsl::ast::ObjectKind::Metric;
    let late = c.late_dropped + c.late_processed + if is_metric { c.metric_late } else { 0 };
    let dropped = c.rejected
        + c.late_dropped
        + if is_metric {
            c.metric_group_dropped + c.metric_rejected
        } else {
            0
        };
    let detail: serde_json::Map<String, Json> = outcomes(&c)
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    Ok(axum::Json(json!({
        "name": name,
        "kind": format!("{:?}", e.kind).to_lowercase(),
        "stream": read,
        "events_in": c.accepted,
        "outputs": outputs,
        "late": late,
        "dropped": dropped,
        // Not yet broken down per statement by the engine (see docs/api.md).
        "state_bytes": Json::Null,
        "partial_matches": Json::Null,
        "stream_counters": detail,
    }))
    .into_response())
}
