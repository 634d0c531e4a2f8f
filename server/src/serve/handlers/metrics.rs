//! `/v1/metrics/{metric}`: a METRIC's windows (closed from the output log, the open one
//! from the engines) and APPROX_SET membership.
use super::outputs::read_outputs;
use super::{blocking, num, parse_after, parse_ts, wait_after, St};
use crate::serve::app::App;
use crate::serve::error::AppError;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use weir_log::OUTPUTS_TOPIC;

/// Common start of the metric reads: 404 unless `metric` is a METRIC, then wait for
/// `after=` (read-your-writes).
pub async fn metric_read_prelude(
    s: &App,
    catalog: &dsl::check::Catalog,
    metric: &str,
    q: &HashMap<String, String>,
) -> Result<(), AppError> {
    match catalog.get(metric) {
        Some(e) if e.kind == dsl::ast::ObjectKind::Metric => {}
        _ => {
            return Err(AppError::new(
                404,
                "unknown_metric",
                format!("no METRIC named `{metric}`"),
            ))
        }
    }
    let wait_ms: u64 = num(q, "wait_ms")?.unwrap_or(5000).min(60_000);
    wait_after(s, parse_after(q)?, wait_ms).await
}

/// Windows of a METRIC from the output log (closed windows are final records), filtered
/// by `group.<col>=v` and by `from`/`to` (ms or RFC 3339) on the window.
pub async fn get_metric(
    State(s): St,
    Path(metric): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let cur = s.current();
    metric_read_prelude(&s, &cur.catalog, &metric, &q).await?;
    let from = q.get("from").map(|v| parse_ts(v)).transpose()?;
    let to = q.get("to").map(|v| parse_ts(v)).transpose()?;
    let groups: Vec<(String, String)> = q
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("group.").map(|c| (c.to_string(), v.clone())))
        .collect();
    let s2 = s.clone();
    let metric2 = metric.clone();
    let windows = blocking(move || {
        let mut cursor = s2.log.start_offset(OUTPUTS_TOPIC, 0).unwrap_or(0);
        let mut out = Vec::new();
        loop {
            let (recs, next, _) = read_outputs(&s2, std::slice::from_ref(&metric), cursor, 10_000);
            if recs.is_empty() {
                break;
            }
            cursor = next;
            for (_, v) in recs {
                let ok_group = groups.iter().all(|(c, want)| match v["group"].get(c) {
                    Some(Json::String(x)) => x == want,
                    Some(other) => serde_json::from_str::<Json>(want).is_ok_and(|w| w == *other),
                    None => false,
                });
                let start = v["window"]["start"].as_str().and_then(|t| parse_ts(t).ok());
                let end = v["window"]["end"].as_str().and_then(|t| parse_ts(t).ok());
                let in_range = match (start, end) {
                    (Some(a), Some(b)) => from.is_none_or(|f| b > f) && to.is_none_or(|t| a < t),
                    _ => true,
                };
                if ok_group && in_range {
                    out.push(v);
                }
            }
        }
        out
    })
    .await?;
    let mut windows = windows;
    // The open window (final = false) from the engines, when every group column is given.
    if let Some(cands) = group_candidates(&s, &metric2, &q).await? {
        let at = to;
        let s2 = s.clone();
        let m = metric2.clone();
        let open = blocking(move || {
            s2.ask_all(move |e| {
                cands
                    .iter()
                    .find_map(|g| e.metric_open_window(&m, g, at.map(|t| t - 1)))
                    .map(|r| r.to_json())
            })
        })
        .await?;
        for w in open.into_iter().flatten() {
            if !windows
                .iter()
                .any(|x| x["window"] == w["window"] && x["group"] == w["group"])
            {
                windows.push(w);
            }
        }
    }
    Ok(axum::Json(json!({"windows": windows})).into_response())
}

/// Every typing of the `group.<col>` values (string, or the JSON the text parses as) in
/// GROUP BY order; `None` unless every group column is given.
pub async fn group_candidates(
    s: &App,
    metric: &str,
    q: &HashMap<String, String>,
) -> Result<Option<Vec<Vec<Json>>>, AppError> {
    let s2 = s.clone();
    let m = metric.to_string();
    let names = blocking(move || s2.ask_all(move |e| e.metric_groups(&m))).await?;
    let Some(Some(names)) = names.into_iter().next() else {
        return Ok(None);
    };
    let mut cands: Vec<Vec<Json>> = vec![Vec::new()];
    for n in &names {
        let Some(v) = q.get(&format!("group.{n}")) else {
            return Ok(None);
        };
        let mut options = vec![Json::String(v.clone())];
        if let Ok(j) = serde_json::from_str::<Json>(v) {
            if !j.is_string() {
                options.push(j);
            }
        }
        cands = cands
            .into_iter()
            .flat_map(|c| {
                options.iter().map(move |o| {
                    let mut c = c.clone();
                    c.push(o.clone());
                    c
                })
            })
            .collect();
    }
    Ok(Some(cands))
}

/// APPROX_SET membership in the open window of a group (`group.<col>=v`, every group
/// column), holding `at` (default: the newest event).
pub async fn get_contains(
    State(s): St,
    Path(metric): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let cur = s.current();
    metric_read_prelude(&s, &cur.catalog, &metric, &q).await?;
    let column = q.get("column").cloned().ok_or_else(|| {
        AppError::new(
            400,
            "missing_parameter",
            "`column` (the APPROX_SET alias) is required",
        )
    })?;
    let value = q
        .get("value")
        .cloned()
        .ok_or_else(|| AppError::new(400, "missing_parameter", "`value` is required"))?;
    let at = q.get("at").map(|v| parse_ts(v)).transpose()?;
    let cands = group_candidates(&s, &metric, &q)
        .await?
        .unwrap_or_else(|| vec![Vec::new()]);
    let mut values = vec![Json::String(value.clone())];
    if let Ok(j) = serde_json::from_str::<Json>(&value) {
        if !j.is_string() {
            values.push(j);
        }
    }
    let s2 = s.clone();
    let answers = blocking(move || {
        s2.ask_all(move |e| {
            let mut found = None;
            for g in &cands {
                for v in &values {
                    match e.metric_contains(&metric, g, at, &column, v) {
                        Some(true) => return Some(true),
                        Some(false) => found = Some(false),
                        None => {}
                    }
                }
            }
            found
        })
    })
    .await?;
    let window = answers.iter().any(Option::is_some);
    let maybe = answers.contains(&Some(true));
    Ok(axum::Json(json!({"maybe": maybe, "window_found": window})).into_response())
}
