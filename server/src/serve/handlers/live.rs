//! Live output subscriptions: Server-Sent Events (`/v1/outputs/stream`) and WebSocket
//! (`/v1/ws`), bounded in number.
use super::outputs::{read_outputs_scan, OutputsRead};
use super::{num, St};
use crate::serve::app::App;
use crate::serve::error::AppError;
use crate::serve::state::Shared;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use weir_log::OUTPUTS_TOPIC;

/// Live subscriptions (SSE + WebSocket) are bounded: past the limit the answer is 503.
struct Subscription(Arc<Shared>);

impl Subscription {
    fn new(s: &App) -> Result<Subscription, AppError> {
        let n = s.subscriptions.fetch_add(1, Ordering::SeqCst);
        if n >= s.settings.max_subscriptions {
            s.subscriptions.fetch_sub(1, Ordering::SeqCst);
            return Err(AppError::new(
                503,
                "too_many_subscriptions",
                format!(
                    "at most {} live subscriptions",
                    s.settings.max_subscriptions
                ),
            ));
        }
        Ok(Subscription(s.shared.clone()))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.0.subscriptions.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Live subscriptions: the next records from `cursor`, waiting up to `wait` when there
/// are none, woken by the workers' appends (`outputs_tick`) on the async task itself
/// rather than through a blocking thread. Reads run inline: page-cache reads of at most
/// a few thousand records.
pub async fn next_live(
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

pub async fn sse_outputs(
    State(s): St,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
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

pub async fn ws_upgrade(State(s): St, ws: WebSocketUpgrade) -> Result<Response, AppError> {
    let guard = Subscription::new(&s)?;
    Ok(ws.on_upgrade(move |sock| async move {
        let _guard = guard;
        ws_session(s, sock).await
    }))
}

/// WebSocket: the client sends `{"type":"subscribe","names":[..],"cursor":C}` (both
/// optional); the server sends `{"type":"record","cursor":c,"record":{..}}` and
/// `{"type":"missed","from":a,"to":b}`.
pub async fn ws_session(s: App, mut sock: WebSocket) {
    let sub = loop {
        match sock.recv().await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<Json>(t.as_str()) {
                Ok(v) if v.get("type").and_then(Json::as_str) == Some("subscribe") => break v,
                _ => {
                    let e = AppError::new(
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
