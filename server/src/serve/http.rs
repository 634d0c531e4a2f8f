//! HTTP routes (axum). Blocking log work runs on tokio's blocking pool.

use super::state::{relaxed, Shared};
use super::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_log::{Position, OUTPUTS_TOPIC};

type St = State<Arc<Shared>>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, axum::Json(self.body())).into_response();
        if self.status == 429 || self.status == 503 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/statements", post(post_statements).get(list_statements))
        .route("/v1/statements/{name}", get(get_statement))
        .route("/v1/streams/{stream}/events", post(post_events))
        .route("/v1/outputs", get(get_outputs))
        .route("/v1/outputs/stream", get(sse_outputs))
        .route("/v1/ws", get(ws_upgrade))
        .route("/v1/metrics/{metric}", get(get_metric))
        .route("/v1/metrics/{metric}/contains", get(get_contains))
        .route("/metrics", get(prometheus))
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .fallback(|| async {
            ApiError::new(404, "not_found", "no such endpoint; see /openapi.json")
        })
        .with_state(shared)
}

/// Live subscriptions (SSE + WebSocket) are bounded: past the limit the answer is 503.
struct Subscription(Arc<Shared>);

impl Subscription {
    fn new(s: &Arc<Shared>) -> Result<Subscription, ApiError> {
        let n = s.subscriptions.fetch_add(1, Ordering::SeqCst);
        if n >= s.settings.max_subscriptions {
            s.subscriptions.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::new(
                503,
                "too_many_subscriptions",
                format!(
                    "at most {} live subscriptions",
                    s.settings.max_subscriptions
                ),
            ));
        }
        Ok(Subscription(s.clone()))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.0.subscriptions.fetch_sub(1, Ordering::SeqCst);
    }
}

fn check_token(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(want) = &shared.settings.token else {
        return Ok(());
    };
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare in time independent of where the first difference is.
    let same = got.len() == want.len()
        && got
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            401,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <token>`",
        ))
    }
}

async fn read_body(shared: &Shared, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = shared.settings.max_body_bytes;
    let too_big = || {
        ApiError::new(
            413,
            "body_too_large",
            format!("request bodies are limited to {limit} bytes"),
        )
        .with("limit", json!(limit))
    };
    if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if n > limit {
            return Err(too_big());
        }
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_big())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(500, "internal", e.to_string()))
}

async fn post_statements(
    State(s): St,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_token(&s, &headers)?;
    let bytes = read_body(&s, &headers, body).await?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|e| ApiError::new(400, "invalid_utf8", format!("the body is not UTF-8: {e}")))?;
    let s2 = s.clone();
    let r = blocking(move || super::apply_statements(&s2, &text)).await??;
    Ok(axum::Json(r).into_response())
}

fn statement_json(e: &dsl::check::Entry) -> Json {
    json!({
        "name": e.name,
        "kind": format!("{:?}", e.kind).to_lowercase(),
        "text": e.statement.to_string(),
        "from": e.from(),
        "output": serde_json::to_value(&e.output).unwrap_or(Json::Null),
        "statement": serde_json::to_value(&e.statement).unwrap_or(Json::Null),
    })
}

async fn list_statements(State(s): St) -> Response {
    let cur = s.current();
    let list: Vec<Json> = cur.catalog.entries().iter().map(statement_json).collect();
    axum::Json(json!({"statements": list})).into_response()
}

async fn get_statement(State(s): St, Path(name): Path<String>) -> Result<Response, ApiError> {
    let cur = s.current();
    match cur.catalog.get(&name) {
        Some(e) => Ok(axum::Json(statement_json(e)).into_response()),
        None => Err(ApiError::new(
            404,
            "unknown_statement",
            format!("no statement named `{name}`"),
        )),
    }
}

fn is_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/x-ndjson") || v.starts_with("application/jsonl")
        })
}

/// Parses a JSON object or array body into events.
fn parse_events(body: &[u8]) -> Result<Vec<super::EventIn>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            400,
            "invalid_utf8",
            format!(
                "the body is not UTF-8 (invalid byte at {})",
                e.valid_up_to()
            ),
        )
    })?;
    let v: Json = serde_json::from_str(text).map_err(|e| {
        ApiError::new(
            400,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
        .with("line", json!(e.line()))
        .with("column", json!(e.column()))
    })?;
    match v {
        Json::Array(a) => Ok(a.into_iter().map(|v| Ok((v, None))).collect()),
        o @ Json::Object(_) => Ok(vec![Ok((o, None))]),
        other => Err(ApiError::new(
            400,
            "invalid_event",
            format!(
                "expected a JSON object, an array of objects or NDJSON; got {}",
                kind(&other)
            ),
        )),
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

async fn post_events(
    State(s): St,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_token(&s, &headers)?;
    if s.stream_info(&stream).is_none() {
        // Same answer as ingest gives, before reading the body.
        let s2 = s.clone();
        let st = stream.clone();
        return Err(blocking(move || super::ingest(&s2, &st, Vec::new()).err())
            .await?
            .unwrap_or_else(|| ApiError::new(404, "unknown_stream", "unknown stream")));
    }
    let bytes = read_body(&s, &headers, body).await?;
    let key = super::idempotency::key_of(&headers)?;
    let body = if is_ndjson(&headers) {
        // Checked and split on the blocking pool, lines borrowed from the body.
        super::idempotency::Body::Ndjson(bytes.clone())
    } else {
        super::idempotency::Body::Parsed(parse_events(&bytes)?)
    };
    // Run on this worker thread (its other tasks move to another): no hand-off to the
    // blocking pool on the way from the request to the log.
    let (answer, replayed) = tokio::task::block_in_place(|| match key {
        None => super::idempotency::ingest(&s, &stream, body).map(|a| (a, false)),
        Some(k) => super::idempotency::ingest_keyed(&s, &stream, &k, body, &bytes),
    })?;
    let mut r = axum::Json(answer).into_response();
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(r)
}

fn parse_after(q: &HashMap<String, String>) -> Result<Option<Position>, ApiError> {
    match q.get("after") {
        None => Ok(None),
        Some(t) if t.is_empty() => Ok(None),
        Some(t) => Position::decode(t).map(Some).map_err(|e| {
            ApiError::new(
                400,
                "invalid_position",
                format!("`after` is not a position token: {e}"),
            )
        }),
    }
}

fn num<T: std::str::FromStr>(q: &HashMap<String, String>, k: &str) -> Result<Option<T>, ApiError> {
    match q.get(k) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::new(
                400,
                "invalid_parameter",
                format!("`{k}` must be a number, got `{v}`"),
            )
        }),
    }
}

/// Waits for `after=` (read-your-writes); 504 after `wait_ms`.
async fn wait_after(
    s: &Arc<Shared>,
    after: Option<Position>,
    wait_ms: u64,
) -> Result<(), ApiError> {
    let Some(p) = after else { return Ok(()) };
    let s2 = s.clone();
    let ok = blocking(move || s2.wait_covered(&p, Duration::from_millis(wait_ms.max(1)))).await?;
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            504,
            "not_yet_applied",
            format!("the engine has not applied input up to `after` within {wait_ms} ms"),
        ))
    }
}

/// (records with their offsets, next cursor, missed range).
type OutputsRead = (Vec<(u64, Json)>, u64, Option<(u64, u64)>);

/// Records from `cursor` on (matching `names`), at most `limit`. Returns (records, next
/// cursor, missed range).
fn read_outputs(s: &Shared, names: &[String], cursor: u64, limit: usize) -> OutputsRead {
    read_outputs_scan(s, names, cursor, limit, 100_000)
}

/// Live subscriptions: the next records from `cursor`, waiting up to `wait` when there
/// are none, woken by the workers' appends (`outputs_tick`) on the async task itself
/// rather than through a blocking thread. Reads run inline: page-cache reads of at most
/// a few thousand records.
async fn next_live(
    s: &Shared,
    names: &[String],
    cursor: u64,
    tick: &mut tokio::sync::watch::Receiver<u64>,
    wait: Duration,
) -> OutputsRead {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tick.borrow_and_update();
        let r = read_outputs_scan(s, names, cursor, 1000, 4096);
        if !r.0.is_empty() || r.2.is_some() || r.1 != cursor {
            return r;
        }
        match tokio::time::timeout_at(deadline, tick.changed()).await {
            Ok(Ok(())) => continue,
            _ => return r,
        }
    }
}

/// [`read_outputs`], looking at no more than `max_scan` records.
fn read_outputs_scan(
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

async fn get_outputs(
    State(s): St,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
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

async fn sse_outputs(
    State(s): St,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|c| c + 1);
    let cursor: u64 = match (num(&q, "cursor")?, last_id) {
        (_, Some(c)) => c,
        (Some(c), None) => c,
        (None, None) => s.log.start_offset(OUTPUTS_TOPIC, 0).unwrap_or(0),
    };
    let names: Vec<String> = q
        .get("name")
        .map(|n| n.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let guard = Subscription::new(&s)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(256);
    tokio::spawn(async move {
        let _guard = guard;
        let mut cursor = cursor;
        let mut tick = s.outputs_tick.subscribe();
        loop {
            let (recs, next, missed) =
                next_live(&s, &names, cursor, &mut tick, Duration::from_secs(1)).await;
            if let Some((from, to)) = missed {
                let ev = Event::default()
                    .event("missed")
                    .data(json!({"from": from, "to": to}).to_string());
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            for (off, v) in recs {
                let ev = Event::default()
                    .id(off.to_string())
                    .event("record")
                    .data(v.to_string());
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            cursor = next;
            if tx.is_closed() || s.shutdown.load(Ordering::SeqCst) {
                return;
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn ws_upgrade(State(s): St, ws: WebSocketUpgrade) -> Result<Response, ApiError> {
    let guard = Subscription::new(&s)?;
    Ok(ws.on_upgrade(move |sock| async move {
        let _guard = guard;
        ws_session(s, sock).await
    }))
}

/// WebSocket: the client sends `{"type":"subscribe","names":[..],"cursor":C}` (both
/// optional); the server sends `{"type":"record","cursor":c,"record":{..}}` and
/// `{"type":"missed","from":a,"to":b}`.
async fn ws_session(s: Arc<Shared>, mut sock: WebSocket) {
    let sub = loop {
        match sock.recv().await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<Json>(t.as_str()) {
                Ok(v) if v.get("type").and_then(Json::as_str) == Some("subscribe") => break v,
                _ => {
                    let e = ApiError::new(
                        400,
                        "invalid_message",
                        "expected {\"type\":\"subscribe\",\"names\":[...],\"cursor\":C}",
                    );
                    let _ = sock.send(Message::Text(e.body().to_string().into())).await;
                }
            },
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            _ => {}
        }
    };
    let names: Vec<String> = match sub.get("names").or_else(|| sub.get("outputs")) {
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(Json::String(n)) => vec![n.clone()],
        _ => Vec::new(),
    };
    let mut cursor = sub
        .get("cursor")
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|x| x.parse().ok()))
        })
        .unwrap_or_else(|| s.log.start_offset(OUTPUTS_TOPIC, 0).unwrap_or(0));
    let mut tick = s.outputs_tick.subscribe();
    loop {
        let (recs, next, missed) = tokio::select! {
            m = sock.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => continue,
            },
            r = next_live(&s, &names, cursor, &mut tick, Duration::from_millis(500)) => r,
        };
        if let Some((from, to)) = missed {
            if sock
                .send(Message::Text(
                    json!({"type": "missed", "from": from, "to": to})
                        .to_string()
                        .into(),
                ))
                .await
                .is_err()
            {
                return;
            }
        }
        for (off, v) in recs {
            let m = json!({"type": "record", "cursor": off + 1, "record": v});
            if sock
                .send(Message::Text(m.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
        cursor = next;
        if s.shutdown.load(Ordering::SeqCst) {
            let _ = sock.send(Message::Close(None)).await;
            return;
        }
    }
}

/// Common start of the metric reads: 404 unless `metric` is a METRIC, then wait for
/// `after=` (read-your-writes).
async fn metric_read_prelude(
    s: &Arc<Shared>,
    catalog: &dsl::check::Catalog,
    metric: &str,
    q: &HashMap<String, String>,
) -> Result<(), ApiError> {
    match catalog.get(metric) {
        Some(e) if e.kind == dsl::ast::ObjectKind::Metric => {}
        _ => {
            return Err(ApiError::new(
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
async fn get_metric(
    State(s): St,
    Path(metric): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
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
async fn group_candidates(
    s: &Arc<Shared>,
    metric: &str,
    q: &HashMap<String, String>,
) -> Result<Option<Vec<Vec<Json>>>, ApiError> {
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
async fn get_contains(
    State(s): St,
    Path(metric): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let cur = s.current();
    metric_read_prelude(&s, &cur.catalog, &metric, &q).await?;
    let column = q.get("column").cloned().ok_or_else(|| {
        ApiError::new(
            400,
            "missing_parameter",
            "`column` (the APPROX_SET alias) is required",
        )
    })?;
    let value = q
        .get("value")
        .cloned()
        .ok_or_else(|| ApiError::new(400, "missing_parameter", "`value` is required"))?;
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

fn parse_ts(v: &str) -> Result<i64, ApiError> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(n);
    }
    matcher::value::parse_timestamp(v).ok_or_else(|| {
        ApiError::new(
            400,
            "invalid_parameter",
            format!("`{v}` is neither milliseconds nor an RFC 3339 time"),
        )
    })
}

async fn readyz(State(s): St) -> Response {
    if s.ready.load(Ordering::SeqCst) {
        axum::Json(json!({"status": "ready"})).into_response()
    } else {
        ApiError::new(503, "recovering", "recovery is not finished").into_response()
    }
}

async fn prometheus(State(s): St) -> Response {
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
        relaxed(&s.idempotency.replayed),
    );
    metric(
        "weir_idempotency_keys_forgotten_total",
        "counter",
        "Idempotency keys forgotten because of the key bound.",
        relaxed(&s.idempotency.forgotten),
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
    let names = [
        "accepted",
        "rejected",
        "late_dropped",
        "late_processed",
        "metric_late",
        "metric_group_dropped",
    ];
    let mut per_stream: HashMap<String, [u64; 6]> = HashMap::new();
    let _ = writeln!(t, "# HELP weir_partition_lag_events Events written but not yet applied.\n# TYPE weir_partition_lag_events gauge");
    let streams: Vec<(String, u32)> = s.current().streams(s.settings.partitions);
    for (st, parts) in &streams {
        let topic = super::state::stream_topic(st);
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
    let mut ages = Vec::new();
    for (i, p) in s.progress.iter().enumerate() {
        let g = p.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(t, "weir_state_bytes{{partition=\"{i}\"}} {}", g.state_bytes);
        ages.push((i, g.last_checkpoint.map(|x| x.elapsed().as_secs_f64())));
        for (name, v) in &g.stream_counters {
            let e = per_stream.entry(name.clone()).or_default();
            for k in 0..6 {
                e[k] += v[k];
            }
        }
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
    let mut keys: Vec<_> = per_stream.keys().cloned().collect();
    keys.sort();
    for k in keys {
        for (i, n) in names.iter().enumerate() {
            let _ = writeln!(
                t,
                "weir_engine_events_total{{stream=\"{k}\",outcome=\"{n}\"}} {}",
                per_stream[&k][i]
            );
        }
    }
    t.push_str(&super::kafka::metrics(&s));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], t).into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../../docs/openapi.json"),
    )
        .into_response()
}
