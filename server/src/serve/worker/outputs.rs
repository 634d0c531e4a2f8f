//! What a step writes: repartitioned copies (durable before the step's checkpoint can
//! cover their source) and output records (de-duplicated by id after a replay; in Kafka
//! mode with their id header and partition key).

use super::Worker;
use crate::serve::state::{relaxed, Shared};
use matcher::output::OutputRecord;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use weir_log::OUTPUTS_TOPIC;

impl Worker {
    /// Appends repartitioned copies and waits until they are durable (a copy is read only
    /// once durable, and the checkpoint covering its source must not come first). A
    /// failed append is retried: copies are never skipped.
    pub(super) fn write_copies(&mut self, copies: HashMap<(String, u32), Vec<Vec<u8>>>) {
        let mut copies: Vec<_> = copies.into_iter().collect();
        copies.sort_by(|a, b| a.0.cmp(&b.0));
        let mut waits = Vec::new();
        for ((topic, q), recs) in copies {
            let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
            let mut delay = Duration::from_millis(10);
            loop {
                match self.shared.log.append_nowait(&topic, q, &refs) {
                    Ok(a) => {
                        self.copies_written.insert((topic.clone(), q), a.end_offset);
                        waits.push((topic, q, a.end_offset));
                        break;
                    }
                    Err(e) => {
                        if self.give_up_on_shutdown() {
                            return;
                        }
                        tracing::error!(partition = self.partition, topic, error = %e, "cannot append repartitioned copies; retrying");
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(1));
                    }
                }
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

    pub(super) fn write_outputs(&mut self, out: Vec<OutputRecord>) {
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
                    r.to_json().to_string()
                })
                .collect()
        };
        if lines.is_empty() {
            return;
        }
        let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        // Kafka: each output carries its id in the `weir-id` header and its partition
        // key (the PARTITION BY / GROUP BY values) as the Kafka key.
        let keys: Vec<Option<String>> = match self.shared.log.as_kafka() {
            Some(_) => self.output_keys(&lines),
            None => Vec::new(),
        };
        let with_ids: Vec<weir_kafka::IdRecord<'_>> = match self.shared.log.as_kafka() {
            Some(_) => ids
                .iter()
                .zip(&refs)
                .zip(&keys)
                .map(|((id, v), k)| (k.as_deref().map(str::as_bytes), *v, id.as_str()))
                .collect(),
            None => Vec::new(),
        };
        // A failed output append is retried: outputs are never skipped silently.
        // Outputs are visible once written and not waited for: they are re-derived from
        // the (durable) input on replay; a checkpoint waits for them (see `checkpoint`).
        let mut delay = Duration::from_millis(10);
        loop {
            let r = match self.shared.log.as_kafka() {
                Some(k) => k.append_with_ids(OUTPUTS_TOPIC, 0, &with_ids),
                None => self.shared.log.append_nowait(OUTPUTS_TOPIC, 0, &refs),
            };
            match r {
                Ok(a) => {
                    self.shared.outputs_tick.send_replace(a.end_offset);
                    self.shared
                        .counters
                        .outputs_written
                        .fetch_add(refs.len() as u64, Ordering::Relaxed);
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
                    return;
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
