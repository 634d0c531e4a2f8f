//! Worker checkpoints: the engine's snapshot with the input offsets it covers, written
//! once the outputs below it are durable.

use super::Worker;
use crate::serve::state::Version;
use matcher::engine::EngineSnapshot;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use weir_log::{Position, OUTPUTS_TOPIC, STATEMENTS_TOPIC};

/// What a worker checkpoints (the covered offsets go in the checkpoint's Position).
#[derive(Serialize, Deserialize)]
pub struct WorkerCheckpoint {
    pub engine: EngineSnapshot,
    /// End of the outputs topic when the checkpoint was taken: outputs re-derived on
    /// replay are looked up among the ids written from here on.
    pub outputs_end: u64,
    /// Repartitioned streams read: per hidden topic, per source partition, the next
    /// source offset expected (copies below it are replays, dropped).
    #[serde(default)]
    pub copies_seen: HashMap<String, HashMap<u32, u64>>,
    /// Repartitioned streams read: per hidden topic, the last mark of each source
    /// partition (watermark, idle).
    #[serde(default)]
    pub marks: HashMap<String, HashMap<u32, (i64, bool)>>,
}

pub fn checkpoint_name(partition: u32) -> String {
    format!("worker-{partition}")
}

impl Worker {
    pub fn checkpoint(&mut self, versions: &[Arc<Version>]) {
        let mut covered = Position::new();
        for (t, o) in &self.next {
            covered.set(t, self.partition, *o);
        }
        covered.set(
            STATEMENTS_TOPIC,
            0,
            versions.get(self.version_idx).map_or(0, |v| v.stmt_end),
        );
        let outputs_end = self.shared.outputs_end();
        // The checkpoint says "outputs below `outputs_end` exist": they must be durable
        // first, or a power loss could lose outputs that replay would not re-derive.
        if let Err(e) = self.shared.log.wait_durable(OUTPUTS_TOPIC, 0, outputs_end) {
            tracing::error!(partition = self.partition, error = %e, "outputs not durable; checkpoint skipped");
            self.shared
                .counters
                .checkpoint_failures
                .fetch_add(1, Ordering::Relaxed);
            self.last_ckpt = Instant::now();
            return;
        }
        let ck = WorkerCheckpoint {
            engine: self.engine.snapshot(),
            outputs_end,
            copies_seen: self.copies_seen.clone(),
            marks: self.marks.clone(),
        };
        let data = match serde_json::to_vec(&ck) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(partition = self.partition, error = %e, "cannot serialize state");
                self.shared
                    .counters
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match self.shared.checkpoints.write_checkpoint(
            &checkpoint_name(self.partition),
            &covered,
            &data,
        ) {
            Ok(seq) => {
                self.written_seq = Some(seq);
                self.shared
                    .counters
                    .checkpoints_written
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(k) = &self.shared.kafka {
                    if let Some(c) = k.covered.get(self.partition as usize) {
                        *c.lock().unwrap_or_else(|e| e.into_inner()) = covered.clone();
                    }
                }
                if let Some(p) = self.shared.progress.get(self.partition as usize) {
                    p.lock().unwrap_or_else(|e| e.into_inner()).last_checkpoint =
                        Some(Instant::now());
                }
            }
            Err(e) => {
                self.shared
                    .counters
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(partition = self.partition, error = %e, "checkpoint failed");
            }
        }
        self.events_since_ckpt = 0;
        self.last_ckpt = Instant::now();
    }
}
