//! Safe retries of event writes: the `Idempotency-Key` request header.
//!
//! A write is appended as one log batch per partition (and, past the log's batch limit,
//! several), so a write that fails midway, or whose answer is lost, may have stored part
//! or all of its events. A client that retries with the same key gets exactly-once:
//!
//! - before appending, a **start** record `{key, body hash, stream, from}` is appended
//!   (durably) to the `requests` topic, `from` being the stream's end offsets then;
//! - after the events are durable, a **done** record with the answer is appended;
//! - a retry of a finished key gets the stored answer (header `Idempotent-Replayed:
//!   true`) and appends nothing; a retry of a started-but-unfinished key (an error, or a
//!   crash, came in between) reads the stream from `from` and appends only the events of
//!   the body that are not there yet (compared byte for byte, as logged); the same key
//!   with a different body is refused (422), and while a request with the key is running
//!   a second one is refused (409).
//!
//! Keys are remembered (in memory, rebuilt from the `requests` topic at the first keyed
//! request after a start) within bounds: [`MAX_KEYS`] keys and the topic's retention.

use super::check::{split_events, split_ndjson, Batches};
use super::{EventIn, Ingest, IngestResult};
use crate::serve::error::AppError;
use crate::serve::log::stream_topic;
use crate::serve::routing::fnv1a;
use crate::serve::state::Shared;
use serde_json::{json, Value as Json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use weir_log::{Position, Retention};

/// The topic of start/done records.
pub const REQUESTS_TOPIC: &str = "requests";
/// Keys remembered at most (oldest forgotten first; counted in `forgotten`).
pub const MAX_KEYS: usize = 200_000;
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// Records scanned per partition when resuming a started request, at most.
const MAX_RESUME_SCAN: u64 = 5_000_000;

#[derive(Clone)]
enum State {
    Running,
    Started { hash: u64, from: Position },
    Done { hash: u64, answer: Json },
}

#[derive(Default)]
struct Inner {
    loaded: bool,
    keys: HashMap<String, State>,
    order: VecDeque<String>,
}

/// The remembered keys.
#[derive(Default)]
pub struct Table {
    inner: Mutex<Inner>,
    /// Keys forgotten because of [`MAX_KEYS`].
    pub forgotten: AtomicU64,
    pub replayed: AtomicU64,
}

impl Inner {
    fn put(&mut self, key: &str, st: State, forgotten: &AtomicU64) {
        if self.keys.insert(key.to_string(), st).is_none() {
            self.order.push_back(key.to_string());
            while self.order.len() > MAX_KEYS {
                if let Some(old) = self.order.pop_front() {
                    if self.keys.remove(&old).is_some() {
                        forgotten.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// The key of a request, if it has one (400 when malformed).
pub fn key_of(headers: &axum::http::HeaderMap) -> Result<Option<String>, AppError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k)
            if !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b > 32 && b < 127) =>
        {
            Ok(Some(k.to_string()))
        }
        _ => Err(AppError::new(
            400,
            "invalid_idempotency_key",
            format!("`Idempotency-Key` must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )),
    }
}

/// A request body: NDJSON text, or events already parsed from a JSON body.
pub enum Body {
    Ndjson(axum::body::Bytes),
    Parsed(Vec<EventIn>),
}

/// The answer of an ingest request.
pub fn answer(r: &IngestResult) -> Json {
    json!({
        "accepted": r.accepted,
        "rejected": r.rejected,
        "position": r.position.encode(),
    })
}

fn log_err(e: weir_kafka::Error) -> AppError {
    AppError::new(503, "log_error", e.to_string())
}

/// Ingests `body` without a key.
pub fn ingest(
    shared: &Shared,
    ingest: &Ingest,
    stream: &str,
    body: Body,
) -> Result<Json, AppError> {
    ingest_skipping(shared, ingest, stream, body, None).map(|r| answer(&r))
}

fn ingest_skipping(
    shared: &Shared,
    ingest: &Ingest,
    stream: &str,
    body: Body,
    present: Option<&mut HashMap<(usize, u64), u32>>,
) -> Result<IngestResult, AppError> {
    let skip = |b: &mut Batches| {
        if let Some(present) = present {
            for part in &mut b.per_part {
                part.retain(|r| take_present(present, r.as_ref()));
            }
        }
    };
    match body {
        Body::Ndjson(bytes) => super::ingest_with(shared, ingest, stream, |info| {
            let mut b = split_ndjson(info, &bytes);
            skip(&mut b);
            b
        }),
        Body::Parsed(events) => super::ingest_with(shared, ingest, stream, |info| {
            let mut b = split_events(info, events);
            skip(&mut b);
            b
        }),
    }
}

/// False (drop it) when the record is among `present` (one occurrence used up).
fn take_present(present: &mut HashMap<(usize, u64), u32>, r: &[u8]) -> bool {
    match present.get_mut(&(r.len(), fnv1a(r))) {
        Some(n) if *n > 0 => {
            *n -= 1;
            false
        }
        _ => true,
    }
}

/// Ingests `body` under an idempotency key. Returns the answer and whether it is a
/// replay of a finished request. Blocking.
pub fn ingest_keyed(
    shared: &Shared,
    ingest: &Ingest,
    stream: &str,
    key: &str,
    body: Body,
    body_bytes: &[u8],
) -> Result<(Json, bool), AppError> {
    let table = &ingest.idempotency;
    let hash = fnv1a(body_bytes) ^ (body_bytes.len() as u64).rotate_left(32);
    let topic = stream_topic(stream);
    let resume_from = {
        let mut g = table.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !g.loaded {
            load(shared, &mut g, &table.forgotten)?;
        }
        let differs = || {
            AppError::new(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different body",
            )
        };
        match g.keys.get(key).cloned() {
            Some(State::Running) => {
                return Err(AppError::new(
                    409,
                    "request_in_progress",
                    "a request with this Idempotency-Key is running; retry later",
                ))
            }
            Some(State::Done { hash: h, answer }) => {
                if h != hash {
                    return Err(differs());
                }
                table.replayed.fetch_add(1, Ordering::Relaxed);
                return Ok((answer, true));
            }
            Some(State::Started { hash: h, from }) => {
                if h != hash {
                    return Err(differs());
                }
                g.put(key, State::Running, &table.forgotten);
                Some(from)
            }
            None => {
                g.put(key, State::Running, &table.forgotten);
                None
            }
        }
    };
    let result = run(
        shared,
        ingest,
        stream,
        &topic,
        key,
        hash,
        body,
        resume_from.clone(),
    )
    .map_err(|b| *b);
    let mut g = table.inner.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok((answer, from)) => {
            g.put(
                key,
                State::Done {
                    hash,
                    answer: answer.clone(),
                },
                &table.forgotten,
            );
            drop(g);
            // Not waited for: if it is lost, a retry resumes and finds every event.
            let rec = json!({"key": key, "hash": hash, "stream": stream, "state": "done",
                "from": from.encode(), "answer": answer});
            if let Err(e) =
                shared
                    .log
                    .append_nowait(REQUESTS_TOPIC, 0, &[rec.to_string().as_bytes()])
            {
                tracing::warn!(error = %e, "cannot record a finished request");
            }
            Ok((answer, false))
        }
        Err((e, Some(_))) if e.status < 500 && resume_from.is_none() => {
            // Refused before anything was appended (429 backpressure, 404): a retry
            // starts afresh instead of scanning the log.
            g.keys.remove(key);
            Err(e)
        }
        Err((e, Some(from))) => {
            // Started: a retry resumes from `from`.
            g.put(key, State::Started { hash, from }, &table.forgotten);
            Err(e)
        }
        Err((e, None)) => {
            // Nothing was appended: forget the key.
            match resume_from {
                Some(from) => g.put(key, State::Started { hash, from }, &table.forgotten),
                None => {
                    g.keys.remove(key);
                }
            }
            Err(e)
        }
    }
}

type RunResult = Result<(Json, Position), Box<(AppError, Option<Position>)>>;

#[allow(clippy::too_many_arguments)]
fn run(
    shared: &Shared,
    ingest: &Ingest,
    stream: &str,
    topic: &str,
    key: &str,
    hash: u64,
    body: Body,
    resume_from: Option<Position>,
) -> RunResult {
    let from = match resume_from {
        Some(from) => {
            let mut present =
                scan(shared, topic, &from).map_err(|e| Box::new((e, Some(from.clone()))))?;
            let r = ingest_skipping(shared, ingest, stream, body, Some(&mut present))
                .map_err(|e| Box::new((e, Some(from.clone()))))?;
            return Ok((answer(&r), from));
        }
        None => shared
            .log
            .position(topic)
            .map_err(|e| Box::new((log_err(e), None)))?,
    };
    // The start record must be durable before any event is.
    let rec = json!({"key": key, "hash": hash, "stream": stream, "state": "start",
        "from": from.encode()});
    shared
        .log
        .create_topic_with_retention(REQUESTS_TOPIC, 1, requests_retention())
        .and_then(|_| {
            shared
                .log
                .append(REQUESTS_TOPIC, 0, &[rec.to_string().as_bytes()])
        })
        .map_err(|e| Box::new((log_err(e), None)))?;
    let r = ingest_skipping(shared, ingest, stream, body, None)
        .map_err(|e| Box::new((e, Some(from.clone()))))?;
    Ok((answer(&r), from))
}

/// The `requests` topic keeps about a day, 64 MiB at most.
fn requests_retention() -> Retention {
    Retention {
        max_bytes: Some(64 << 20),
        max_age: Some(std::time::Duration::from_secs(24 * 3600)),
    }
}

/// Every record of `topic` from `from` on, as (length, hash) → count.
fn scan(
    shared: &Shared,
    topic: &str,
    from: &Position,
) -> Result<HashMap<(usize, u64), u32>, AppError> {
    let mut present = HashMap::new();
    for (t, p, start) in from.iter() {
        if t != topic {
            continue;
        }
        let end = shared.log.end_offset(topic, p).map_err(log_err)?;
        if end.saturating_sub(start) > MAX_RESUME_SCAN {
            return Err(AppError::new(
                409,
                "idempotency_key_expired",
                format!("too much was written since this request started (more than {MAX_RESUME_SCAN} events in partition {p}); it cannot be resumed safely"),
            ));
        }
        let mut at = start;
        while at < end {
            let recs = shared
                .log
                .read(topic, p, at, 4096, 8 << 20)
                .map_err(|e| match e {
                    weir_kafka::Error::Log(weir_log::Error::OffsetTruncated { .. }) => AppError::new(
                        409,
                        "idempotency_key_expired",
                        "the events written since this request started are no longer retained; it cannot be resumed safely",
                    ),
                    e => log_err(e),
                })?;
            if recs.is_empty() {
                break;
            }
            for r in &recs {
                *present
                    .entry((r.payload.len(), fnv1a(&r.payload)))
                    .or_insert(0) += 1;
                at = r.offset + 1;
            }
        }
    }
    Ok(present)
}

/// Rebuilds the table from the `requests` topic.
fn load(shared: &Shared, g: &mut Inner, forgotten: &AtomicU64) -> Result<(), AppError> {
    shared
        .log
        .create_topic_with_retention(REQUESTS_TOPIC, 1, requests_retention())
        .map_err(log_err)?;
    let mut at = shared
        .log
        .start_offset(REQUESTS_TOPIC, 0)
        .map_err(log_err)?;
    loop {
        let recs = shared
            .log
            .read(REQUESTS_TOPIC, 0, at, 4096, 8 << 20)
            .map_err(log_err)?;
        if recs.is_empty() {
            break;
        }
        for r in &recs {
            at = r.offset + 1;
            let Ok(v) = serde_json::from_slice::<Json>(&r.payload) else {
                continue;
            };
            let (Some(key), Some(hash), Some(from)) = (
                v["key"].as_str(),
                v["hash"].as_u64(),
                v["from"].as_str().and_then(|f| Position::decode(f).ok()),
            ) else {
                continue;
            };
            let st = match v["state"].as_str() {
                Some("done") => State::Done {
                    hash,
                    answer: v["answer"].clone(),
                },
                _ => State::Started { hash, from },
            };
            g.put(key, st, forgotten);
        }
    }
    g.loaded = true;
    Ok(())
}
