//! What a step writes: repartitioned copies (durable before the step's checkpoint can
//! cover their source) and output records (de-duplicated by id after a replay; in Kafka
//! mode with their id header and partition key).

use super::Worker;
use crate::serve::log::{batches, too_large_alone};
use crate::serve::state::{relaxed, Shared};
use matcher::output::OutputRecord;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use weir_log::OUTPUTS_TOPIC;

impl Worker {
    /// Appends repartitioned copies and waits until they are durable (a copy is read only
    /// once durable, and the checkpoint covering its source must not come first). Copies
    /// go in batches that fit the log's limit; a failed append is retried (copies are
    /// never skipped), except a copy too large for any batch, which can never be written:
    /// it is dropped, logged and counted (ingest keeps events small enough that their
    /// copies fit, so only events logged by an older version can be that large).
    pub(super) fn write_copies(&mut self, copies: HashMap<(String, u32), Vec<Vec<u8>>>) {
        let mut copies: Vec<_> = copies.into_iter().collect();
        copies.sort_by(|a, b| a.0.cmp(&b.0));
        let limit = self.shared.log.max_batch_bytes();
        let mut waits = Vec::new();
        for ((topic, q), mut recs) in copies {
            recs.retain(|r| {
                let fits = !too_large_alone(r, limit);
                if !fits {
                    tracing::error!(
                        partition = self.partition,
                        topic,
                        bytes = r.len(),
                        "a repartitioned copy is larger than the log's batch limit; dropped"
                    );
                    self.shared
                        .counters
                        .copies_too_large
                        .fetch_add(1, Ordering::Relaxed);
                }
                fits
            });
            for chunk in batches(&recs, limit) {
                let refs: Vec<&[u8]> = chunk.iter().map(|r| r.as_slice()).collect();
                let Some(end) = self.append_retrying(&topic, q, &refs, "repartitioned copies")
                else {
                    return;
                };
                self.copies_written.insert((topic.clone(), q), end);
                waits.push((topic.clone(), q, end));
            }
        }
        for (topic, q, end) in waits {
            let mut delay = Duration::from_millis(10);
            while let Err(e) = self.shared.log.wait_durable(&topic, q, end) {
                if self.give_up_on_shutdown() {
                    return;
                }
                tracing::error!(partition = self.partition, topic, error = %e, "repartitioned copies not durable; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
        self.shared.wake_workers();
    }

    /// Shutting down while the log refuses writes: stop retrying, and stop the worker
    /// without a checkpoint (what was not written is re-derived by the replay at the
    /// next start), so that SIGTERM finishes even with a failed disk.
    fn give_up_on_shutdown(&mut self) -> bool {
        if self.shared.shutdown.load(Ordering::SeqCst) {
            tracing::warn!(
                partition = self.partition,
                "shutting down while the log refuses writes: stopping without a checkpoint; the next start replays"
            );
            self.abandoned = true;
            true
        } else {
            false
        }
    }

    /// Appends one batch that fits the log's limit, retrying failures (a full disk, a
    /// broker away) until it is written; returns the end offset, or `None` when the
    /// service shuts down meanwhile ([`Self::give_up_on_shutdown`]).
    fn append_retrying(&mut self, topic: &str, q: u32, refs: &[&[u8]], what: &str) -> Option<u64> {
        let mut delay = Duration::from_millis(10);
        loop {
            match self.shared.log.append_nowait(topic, q, refs) {
                Ok(a) => return Some(a.end_offset),
                Err(e) => {
                    if self.give_up_on_shutdown() {
                        return None;
                    }
                    tracing::error!(partition = self.partition, topic, error = %e, "cannot append {what}; retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Appends a step's output records (those not written before a replay), in batches
    /// that fit the log's limit. A record too large for any batch is written truncated
    /// ([`truncated_line`]) and counted. A failed append is retried: outputs are never
    /// skipped silently. Outputs are visible once written and not waited for: they are
    /// re-derived from the (durable) input on replay; a checkpoint waits for them (see
    /// `checkpoint`).
    pub(super) fn write_outputs(&mut self, out: Vec<OutputRecord>) {
        let limit = self.shared.log.max_batch_bytes();
        let mut ids: Vec<String> = Vec::new();
        let mut per_statement: HashMap<&str, u64> = HashMap::new();
        let lines: Vec<String> = {
            let seen = self
                .shared
                .seen_ids
                .read()
                .unwrap_or_else(|e| e.into_inner());
            out.iter()
                .filter(|r| {
                    let dup = seen.contains(r.id());
                    if dup {
                        self.shared
                            .counters
                            .outputs_deduplicated
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    !dup
                })
                .map(|r| {
                    ids.push(r.id().to_string());
                    *per_statement.entry(r.statement()).or_default() += 1;
                    let line = r.to_json().to_string();
                    if too_large_alone(line.as_bytes(), limit) {
                        self.shared
                            .counters
                            .outputs_truncated
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(partition = self.partition, statement = r.statement(), bytes = line.len(), "an output record is larger than the log's batch limit; written truncated");
                        truncated_line(r, line.len())
                    } else {
                        line
                    }
                })
                .collect()
        };
        if lines.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        match shared.log.as_kafka() {
            Some(k) => {
                // Kafka: each output carries its id in the `weir-id` header and its
                // partition key (the PARTITION BY / GROUP BY values) as the Kafka key.
                let keys = self.output_keys(&lines);
                let with_ids: Vec<weir_kafka::IdRecord<'_>> = ids
                    .iter()
                    .zip(&lines)
                    .zip(&keys)
                    .map(|((id, v), k)| {
                        (k.as_deref().map(str::as_bytes), v.as_bytes(), id.as_str())
                    })
                    .collect();
                let mut delay = Duration::from_millis(10);
                loop {
                    match k.append_with_ids(OUTPUTS_TOPIC, 0, &with_ids) {
                        Ok(a) => {
                            self.shared.outputs_tick.send_replace(a.end_offset);
                            break;
                        }
                        Err(e) => {
                            if self.give_up_on_shutdown() {
                                return;
                            }
                            tracing::error!(partition = self.partition, error = %e, "cannot append outputs; retrying");
                            std::thread::sleep(delay);
                            delay = (delay * 2).min(Duration::from_secs(1));
                        }
                    }
                }
            }
            None => {
                for chunk in batches(&lines, limit) {
                    let refs: Vec<&[u8]> = chunk.iter().map(|l| l.as_bytes()).collect();
                    let Some(end) = self.append_retrying(OUTPUTS_TOPIC, 0, &refs, "outputs") else {
                        return;
                    };
                    self.shared.outputs_tick.send_replace(end);
                }
            }
        }
        self.shared
            .counters
            .outputs_written
            .fetch_add(lines.len() as u64, Ordering::Relaxed);
        let mut g = self
            .shared
            .statement_outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (name, n) in per_statement {
            match g.get_mut(name) {
                Some(c) => *c += n,
                None => {
                    g.insert(name.to_string(), n);
                }
            }
        }
    }

    /// The Kafka key of each output line: the values of its statement's PARTITION BY
    /// (rules) or GROUP BY (metrics) columns, joined by `,` (a string as is, other values
    /// as JSON); `None` without such columns.
    fn output_keys(&self, lines: &[String]) -> Vec<Option<String>> {
        use dsl::ast::{ExprKind, StatementKind};
        let v = self.shared.current();
        let mut cols: HashMap<&str, Vec<String>> = HashMap::new();
        for e in v.catalog.entries() {
            let exprs = match &e.statement.kind {
                StatementKind::CreateRule(r) => &r.partition_by,
                StatementKind::CreateMetric(m) => &m.group_by,
                _ => continue,
            };
            let names: Vec<String> = exprs
                .iter()
                .filter_map(|x| match &x.kind {
                    ExprKind::Path(p) => p.last().map(|i| i.name.clone()),
                    _ => None,
                })
                .collect();
            if !names.is_empty() {
                cols.insert(e.name.as_str(), names);
            }
        }
        lines
            .iter()
            .map(|l| {
                let rec: serde_json::Value = serde_json::from_str(l).ok()?;
                let name = ["rule", "metric", "search"]
                    .iter()
                    .find_map(|k| rec.get(*k).and_then(|n| n.as_str()))?;
                let cs = cols.get(name)?;
                let parts: Vec<String> = cs
                    .iter()
                    .map(|c| {
                        let v = rec
                            .get("fields")
                            .and_then(|f| f.get(c))
                            .or_else(|| rec.get("group").and_then(|g| g.get(c)));
                        match v {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => String::new(),
                        }
                    })
                    .collect();
                Some(parts.join(","))
            })
            .collect()
    }
}

/// Reads the output ids written from `from` on (for de-duplication after recovery).
pub fn load_seen_ids(shared: &Shared, from: u64) -> usize {
    if let Some(k) = shared.log.as_kafka() {
        // Kafka: to the end as of now (a fetch's end report, no wait after it); the id
        // is in each record's `weir-id` header (`read_to_end` starts at the earliest
        // retained offset when `from` is below it).
        let mut seen = shared.seen_ids.write().unwrap_or_else(|e| e.into_inner());
        let read = k.read_records_to_end(OUTPUTS_TOPIC, 0, from, |recs| {
            for r in &recs {
                match r.header(weir_kafka::ID_HEADER) {
                    Some(id) => {
                        seen.insert(String::from_utf8_lossy(id).into_owned());
                    }
                    None => {
                        let v = r.value.as_deref().unwrap_or_default();
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(v) {
                            if let Some(id) = v.get("id").and_then(|i| i.as_str()) {
                                seen.insert(id.to_string());
                            }
                        }
                    }
                }
            }
        });
        if let Err(e) = read {
            tracing::warn!(error = %e, "cannot read the output ids to de-duplicate");
        }
        return seen.len();
    }
    let mut seen = shared.seen_ids.write().unwrap_or_else(|e| e.into_inner());
    let mut at = from.max(shared.log.start_offset(OUTPUTS_TOPIC, 0).unwrap_or(0));
    loop {
        let recs = match shared.log.read(OUTPUTS_TOPIC, 0, at, 4096, 8 << 20) {
            Ok(r) => r,
            Err(_) => break,
        };
        if recs.is_empty() {
            break;
        }
        for r in &recs {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.payload) {
                if let Some(id) = v.get("id").and_then(|i| i.as_str()) {
                    seen.insert(id.to_string());
                }
            }
            at = r.offset + 1;
        }
    }
    let _ = relaxed(&shared.counters.outputs_written);
    seen.len()
}

/// The record written in place of an output record too large for the log: the same
/// object without its large members (`fields`, `highlights`, `group`, `values`), with
/// `"truncated": true` and `"original_bytes"`, the size of the full record's JSON text
/// (docs/language.md, "Output records").
pub fn truncated_line(r: &OutputRecord, original_bytes: usize) -> String {
    let mut j = r.to_json();
    if let serde_json::Value::Object(m) = &mut j {
        for k in ["fields", "highlights", "group", "values"] {
            m.remove(k);
        }
        m.insert("truncated".into(), true.into());
        m.insert("original_bytes".into(), original_bytes.into());
    }
    j.to_string()
}
