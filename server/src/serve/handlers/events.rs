//! `/v1/streams/{stream}/events`: event writes (JSON, arrays, NDJSON; `Idempotency-Key`).
use super::{blocking, check_token, read_body, St};
use crate::serve::error::AppError;
use crate::serve::ingest::{self, idempotency, EventIn};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};

pub fn is_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/x-ndjson") || v.starts_with("application/jsonl")
        })
}

/// Parses a JSON object or array body into events.
pub fn parse_events(body: &[u8]) -> Result<Vec<EventIn>, AppError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        AppError::new(
            400,
            "invalid_utf8",
            format!(
                "the body is not UTF-8 (invalid byte at {})",
                e.valid_up_to()
            ),
        )
    })?;
    let v: Json = serde_json::from_str(text).map_err(|e| {
        // One JSON value per line sent without its content type: say what to send.
        let hint = if e.to_string().starts_with("trailing characters") && e.line() > 1 {
            "; it looks like NDJSON (one event per line): send it with `Content-Type: application/x-ndjson`"
        } else {
            ""
        };
        AppError::new(
            400,
            "invalid_json",
            format!("the body is not valid JSON: {e}{hint}"),
        )
        .with("line", json!(e.line()))
        .with("column", json!(e.column()))
    })?;
    match v {
        Json::Array(a) => Ok(a.into_iter().map(|v| Ok((v, None))).collect()),
        o @ Json::Object(_) => Ok(vec![Ok((o, None))]),
        other => Err(AppError::new(
            400,
            "invalid_event",
            format!(
                "expected a JSON object, an array of objects or NDJSON; got {}",
                kind(&other)
            ),
        )),
    }
}

pub fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

pub async fn post_events(
    State(s): St,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    check_token(&s, &headers)?;
    if s.ingest.stream_info(&stream).is_none() {
        // Same answer as ingest gives, before reading the body.
        let s2 = s.clone();
        let st = stream.clone();
        return Err(blocking(move || {
            ingest::ingest(&s2.shared, &s2.ingest, &st, Vec::new()).err()
        })
        .await?
        .unwrap_or_else(|| AppError::new(404, "unknown_stream", "unknown stream")));
    }
    let bytes = read_body(&s, &headers, body).await?;
    let key = idempotency::key_of(&headers)?;
    let body = if is_ndjson(&headers) {
        // Checked and split on the blocking pool, lines borrowed from the body.
        idempotency::Body::Ndjson(bytes.clone())
    } else {
        idempotency::Body::Parsed(parse_events(&bytes)?)
    };
    // Run on this worker thread (its other tasks move to another): no hand-off to the
    // blocking pool on the way from the request to the log.
    let (answer, replayed) = tokio::task::block_in_place(|| match key {
        None => idempotency::ingest(&s.shared, &s.ingest, &stream, body).map(|a| (a, false)),
        Some(k) => idempotency::ingest_keyed(&s.shared, &s.ingest, &stream, &k, body, &bytes),
    })?;
    let mut r = axum::Json(answer).into_response();
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(r)
}
