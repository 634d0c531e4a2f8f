//! `/v1/outputs`: output records from a cursor, filtered by statement, with `after=`
//! (read-your-writes) and long polling.
use super::{blocking, num, parse_after, wait_after, St};
use crate::serve::error::AppError;
use crate::serve::state::Shared;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use weir_log::OUTPUTS_TOPIC;

/// (records with their offsets, next cursor, missed range).
pub type OutputsRead = (Vec<(u64, Json)>, u64, Option<(u64, u64)>);

/// Records from `cursor` on (matching `names`), at most `limit`. Returns (records, next
/// cursor, missed range).
pub fn read_outputs(s: &Shared, names: &[String], cursor: u64, limit: usize) -> OutputsRead {
    read_outputs_scan(s, names, cursor, limit, 100_000)
}

/// [`read_outputs`], looking at no more than `max_scan` records.
pub fn read_outputs_scan(
    s: &Shared,
    names: &[String],
    cursor: u64,
    limit: usize,
    max_scan: usize,
) -> OutputsRead {
    let start = s.log.start_offset(OUTPUTS_TOPIC, 0).unwrap_or(0);
    let mut missed = None;
    let mut at = cursor;
    if at < start {
        missed = Some((at, start));
        at = start;
    }
    let mut out = Vec::new();
    let mut scanned = 0;
    while out.len() < limit && scanned < max_scan {
        let recs = match s.log.read(OUTPUTS_TOPIC, 0, at, 1024, 4 << 20) {
            Ok(r) => r,
            Err(_) => break,
        };
        if recs.is_empty() {
            break;
        }
        for r in recs {
            scanned += 1;
            at = r.offset + 1;
            let Ok(v) = serde_json::from_slice::<Json>(&r.payload) else {
                continue;
            };
            if !names.is_empty() {
                let stmt = v
                    .get("rule")
                    .or_else(|| v.get("search"))
                    .or_else(|| v.get("metric"))
                    .and_then(Json::as_str)
                    .unwrap_or("");
                if !names.iter().any(|n| n == stmt) {
                    continue;
                }
            }
            out.push((r.offset, v));
            if out.len() >= limit {
                break;
            }
        }
    }
    (out, at, missed)
}

pub async fn get_outputs(
    State(s): St,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let wait_ms: u64 = num(&q, "wait_ms")?.unwrap_or(0).min(60_000);
    let limit: usize = num::<usize>(&q, "limit")?.unwrap_or(100).clamp(1, 10_000);
    let mut cursor: u64 = match q.get("cursor") {
        None => s.log.start_offset(OUTPUTS_TOPIC, 0).unwrap_or(0),
        Some(_) => num(&q, "cursor")?.unwrap_or(0),
    };
    let names: Vec<String> = q
        .get("name")
        .map(|n| n.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    // `after` waits up to `wait_ms` (5 s when absent); the long poll's wait includes it.
    let after_ms = if q.contains_key("wait_ms") {
        wait_ms
    } else {
        5000
    };
    let t0 = Instant::now();
    wait_after(&s, parse_after(&q)?, after_ms).await?;
    let deadline = t0 + Duration::from_millis(wait_ms);
    let mut missed_all = None;
    loop {
        let s2 = s.clone();
        let n2 = names.clone();
        let (recs, next, missed) = blocking(move || read_outputs(&s2, &n2, cursor, limit)).await?;
        if missed_all.is_none() {
            missed_all = missed;
        }
        cursor = next;
        let now = Instant::now();
        if !recs.is_empty() || now >= deadline {
            let mut body = json!({
                "records": recs.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
                "cursor": cursor,
            });
            if let Some((from, to)) = missed_all {
                body["missed"] = json!({"from": from, "to": to});
            }
            return Ok(axum::Json(body).into_response());
        }
        let s2 = s.clone();
        let left = deadline - now;
        blocking(move || s2.log.wait_for(OUTPUTS_TOPIC, 0, cursor, left))
            .await?
            .ok();
    }
}
