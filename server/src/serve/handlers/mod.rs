//! HTTP handlers, one file per resource. Blocking log work runs on tokio's blocking
//! pool ([`blocking`]); the helpers here are shared by the handlers.

pub mod events;
pub mod health;
pub mod live;
pub mod metrics;
pub mod outputs;
pub mod statements;

use super::app::App;
use super::error::AppError;
use super::state::Shared;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use weir_log::Position;

pub type St = State<App>;

pub fn check_token(shared: &Shared, headers: &HeaderMap) -> Result<(), AppError> {
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
        Err(AppError::new(
            401,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <token>`",
        ))
    }
}

pub async fn read_body(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, AppError> {
    let limit = shared.settings.max_body_bytes;
    let too_big = || {
        AppError::new(
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

pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::new(500, "internal", e.to_string()))
}

pub fn parse_after(q: &HashMap<String, String>) -> Result<Option<Position>, AppError> {
    match q.get("after") {
        None => Ok(None),
        Some(t) if t.is_empty() => Ok(None),
        Some(t) => Position::decode(t).map(Some).map_err(|e| {
            AppError::new(
                400,
                "invalid_position",
                format!("`after` is not a position token: {e}"),
            )
        }),
    }
}

pub fn num<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    k: &str,
) -> Result<Option<T>, AppError> {
    match q.get(k) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            AppError::new(
                400,
                "invalid_parameter",
                format!("`{k}` must be a number, got `{v}`"),
            )
        }),
    }
}

/// Waits for `after=` (read-your-writes); 504 after `wait_ms`.
pub async fn wait_after(s: &App, after: Option<Position>, wait_ms: u64) -> Result<(), AppError> {
    let Some(p) = after else { return Ok(()) };
    let s2 = s.clone();
    let ok = blocking(move || s2.wait_covered(&p, Duration::from_millis(wait_ms.max(1)))).await?;
    if ok {
        Ok(())
    } else {
        Err(AppError::new(
            504,
            "not_yet_applied",
            format!("the engine has not applied input up to `after` within {wait_ms} ms"),
        ))
    }
}

pub fn parse_ts(v: &str) -> Result<i64, AppError> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(n);
    }
    matcher::value::parse_timestamp(v).ok_or_else(|| {
        AppError::new(
            400,
            "invalid_parameter",
            format!("`{v}` is neither milliseconds nor an RFC 3339 time"),
        )
    })
}
