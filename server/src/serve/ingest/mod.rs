//! Ingest: a request's events checked against their stream ([`check`]), routed to
//! partitions by their key's typed value ([`crate::serve::routing`]), appended to the log in batches under its limit and waited
//! for (group commit); retries made safe by idempotency keys ([`idempotency`]).
//! Backpressure (429) when the workers of a target partition are too far behind.

pub mod check;
pub mod idempotency;

use super::error::AppError;
use super::log::{batches, stream_topic};
use super::routing;
use super::state::Shared;
use dsl::ast::ObjectKind;
use matcher::value::RowDecoder;
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use weir_kafka::{KafkaLog, LogBackend};
use weir_log::Position;

/// A stream's ingest-side view: how to validate and route its events.
pub struct StreamInfo {
    pub decoder: RowDecoder,
    /// The streaming ingest check ([`check`]).
    pub schema: check::Schema,
    pub event_time: Option<String>,
    pub key: Option<String>,
    pub partitions: u32,
    /// Kafka mode: the same stream seen as one partition, so a request's events are
    /// checked in their order; Kafka's partitioner then places them
    /// ([`append_batches`]).
    pub in_order: Option<Arc<StreamInfo>>,
}

/// The ingest side of the service: the stream table (how to check and route each
/// stream's events) and the idempotency keys of event writes.
#[derive(Default)]
pub struct Ingest {
    pub streams: RwLock<HashMap<String, Arc<StreamInfo>>>,
    /// Idempotency keys of event writes ([`idempotency`]).
    pub idempotency: idempotency::Table,
}

impl Ingest {
    pub fn stream_info(&self, name: &str) -> Option<Arc<StreamInfo>> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Rebuilds the stream table from the current catalog.
    pub fn refresh(&self, shared: &Shared) {
        let cur = shared.current();
        let mut map = HashMap::new();
        // The version's source streams, looked up by name: a scan of every entry would
        // cost each statement change time in proportion to the catalog (1M searches).
        for e in cur.source_names().filter_map(|name| cur.catalog.get(name)) {
            if e.kind == ObjectKind::Stream {
                map.insert(
                    e.name.clone(),
                    Arc::new(StreamInfo {
                        decoder: RowDecoder::new(&e.output),
                        schema: check::Schema::new(&e.output),
                        event_time: e.output.event_time.clone(),
                        key: e.output.key.clone(),
                        partitions: e.output.partitions.unwrap_or(shared.settings.partitions),
                        in_order: shared.kafka.as_ref().map(|_| {
                            Arc::new(StreamInfo {
                                decoder: RowDecoder::new(&e.output),
                                schema: check::Schema::new(&e.output),
                                event_time: e.output.event_time.clone(),
                                key: e.output.key.clone(),
                                partitions: 1,
                                in_order: None,
                            })
                        }),
                    }),
                );
            }
        }
        *self.streams.write().unwrap_or_else(|e| e.into_inner()) = map;
    }
}

/// One event of a request: the parsed JSON and, when available, its text as sent (or
/// why it could not be parsed).
pub type EventIn = Result<(Json, Option<Vec<u8>>), String>;

/// One decoded ingest request, ready to append.
pub struct IngestResult {
    pub accepted: usize,
    pub rejected: Vec<Json>,
    pub position: Position,
}

/// Validates and appends events of one stream. Blocking.
pub fn ingest(
    shared: &Shared,
    ingest: &Ingest,
    stream: &str,
    events: Vec<EventIn>,
) -> Result<IngestResult, AppError> {
    ingest_with(shared, ingest, stream, |info| {
        check::split_events(info, events)
    })
}

/// Appends the events `split` validates and routes for one stream. Blocking.
pub fn ingest_with<'a>(
    shared: &Shared,
    ingest: &Ingest,
    stream: &str,
    split: impl FnOnce(&StreamInfo) -> check::Batches<'a>,
) -> Result<IngestResult, AppError> {
    let _r = shared.ingest_lock.read().unwrap_or_else(|e| e.into_inner());
    let Some(info) = ingest.stream_info(stream) else {
        let mut known: Vec<String> = ingest
            .streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        known.sort();
        return Err(
            AppError::new(404, "unknown_stream", format!("unknown stream `{stream}`"))
                .with("known_streams", json!(known)),
        );
    };
    let topic = stream_topic(stream);
    // Backpressure: refuse when the workers of any partition are too far behind, on the
    // stream or on its repartitioned copies.
    let mut topics = vec![topic.clone()];
    topics.extend(
        shared
            .current()
            .repartitions(shared.settings.partitions)
            .iter()
            .filter(|r| r.source == stream)
            .map(|r| stream_topic(&r.stream)),
    );
    for (topic, p) in topics
        .iter()
        .flat_map(|t| (0..info.partitions).map(move |p| (t, p)))
    {
        if shared.runs_partition(p) && shared.lag(topic, p) > shared.settings.max_lag {
            shared
                .counters
                .requests_throttled
                .fetch_add(1, Ordering::Relaxed);
            return Err(AppError::new(
                429,
                "backpressure",
                format!(
                    "the workers of partition {p} are more than {} events behind; retry later",
                    shared.settings.max_lag
                ),
            ));
        }
    }
    let check::Batches {
        per_part,
        rejected,
        accepted,
    } = split(info.in_order.as_deref().unwrap_or(&info));
    if let Some(max) = shared.log.max_event_bytes() {
        if let Some(r) = per_part.iter().flatten().find(|r| r.len() > max) {
            return Err(AppError::new(
                413,
                "event_too_large",
                format!(
                    "an event of {} bytes is over the limit of {max} bytes per event (the log's batch limit less room for framing); nothing was appended",
                    r.len()
                ),
            )
            .with("limit", json!(max)));
        }
    }
    if let Some(k) = shared.log.as_kafka() {
        append_batches(k, &topic, &info, &per_part)?;
        return Ok(finish_ingest(
            shared, &topic, &per_part, accepted, rejected, _r,
        ));
    }
    let Some(log) = shared.log.as_embedded() else {
        return Err(AppError::new(500, "log_error", "no log"));
    };
    // Write every partition's batch, then wait for durability (group commit).
    let mut pending = Vec::new();
    for (p, recs) in per_part.iter().enumerate() {
        if recs.is_empty() {
            continue;
        }
        // Batches fit the log's batch limit (16 MiB by default); every event fits alone.
        let mut end = 0;
        for chunk in batches(recs, shared.log.max_batch_bytes()) {
            let refs: Vec<&[u8]> = chunk.iter().map(|r| r.as_ref()).collect();
            let a = log
                .append_nowait(&topic, p as u32, &refs)
                .map_err(|e| AppError::new(503, "log_error", e.to_string()))?;
            end = a.end_offset;
        }
        pending.push((p as u32, end));
    }
    let targets: Vec<(&str, u32, u64)> = pending
        .iter()
        .map(|&(p, end)| (topic.as_str(), p, end))
        .collect();
    log.wait_durable_all(&targets)
        .map_err(|e| AppError::new(503, "log_error", e.to_string()))?;
    Ok(finish_ingest(
        shared, &topic, &per_part, accepted, rejected, _r,
    ))
}

fn finish_ingest(
    shared: &Shared,
    topic: &str,
    per_part: &[Vec<std::borrow::Cow<'_, [u8]>>],
    accepted: usize,
    rejected: Vec<Json>,
    lock: std::sync::RwLockReadGuard<'_, ()>,
) -> IngestResult {
    let position = shared.log.position(topic).unwrap_or_default();
    // Counted as appended (a resumed idempotent retry skips events already stored).
    let appended: usize = per_part.iter().map(Vec::len).sum();
    shared
        .counters
        .events_accepted
        .fetch_add(appended as u64, Ordering::Relaxed);
    shared
        .counters
        .events_rejected
        .fetch_add(rejected.len() as u64, Ordering::Relaxed);
    drop(lock);
    if appended > 0 {
        shared.wake_workers();
    }
    IngestResult {
        accepted,
        rejected,
        position,
    }
}

/// Appends a request's checked events, in the order of the request (checked as one
/// partition, see `StreamInfo::in_order`): Kafka's partitioner on the canonical bytes of
/// the key's typed value ([`routing::key_bytes`], the message key) places each, so weir and
/// other producers keying by the same text agree per key. Each partition's append waits
/// for the broker's acknowledgement.
pub fn append_batches(
    k: &KafkaLog,
    topic: &str,
    info: &StreamInfo,
    per_part: &[Vec<std::borrow::Cow<'_, [u8]>>],
) -> Result<(), AppError> {
    let n = info.partitions.max(1) as usize;
    let mut parts: Vec<Vec<(Vec<u8>, &[u8])>> = vec![Vec::new(); n];
    for r in per_part.iter().flatten() {
        let r: &[u8] = r.as_ref();
        if info.key.is_none() {
            parts[0].push((Vec::new(), r));
            continue;
        }
        // Checked already: the decoder accepts it.
        let key = serde_json::from_slice::<Json>(r)
            .ok()
            .and_then(|ev| info.decoder.decode(&ev).ok())
            .map(|row| routing::key_bytes(check::key_value(info, &row)).into_owned())
            .unwrap_or_default();
        let p = weir_kafka::partition_for_key(&key, info.partitions) as usize;
        parts[p.min(n - 1)].push((key, r));
    }
    for (p, recs) in parts.iter().enumerate() {
        if recs.is_empty() {
            continue;
        }
        let r = if info.key.is_some() {
            let pairs: Vec<(&[u8], &[u8])> = recs.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
            k.append_keyed(topic, p as u32, &pairs)
        } else {
            let refs: Vec<&[u8]> = recs.iter().map(|(_, v)| *v).collect();
            k.append(topic, p as u32, &refs)
        };
        r.map_err(|e| AppError::new(503, "log_error", e.to_string()))?;
    }
    Ok(())
}
