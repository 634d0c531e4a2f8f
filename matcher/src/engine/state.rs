//! The state of one partition: per stream its watermark, counters, rule state (partial
//! matches) and metric windows. It serializes alone ([`EngineSnapshot`], for
//! checkpoints) and carries over to the next [`Program`] version for the statements that
//! did not change.

use super::program::{Program, StreamProgram};
use super::StreamCounters;
use crate::cep::PartitionState;
use crate::metric::MetricState;
use crate::search::SearchScratch;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The state of one stream in one partition.
pub(crate) struct StreamState {
    pub cep: Option<PartitionState>,
    /// One per metric of the stream's program, in its order.
    pub metrics: Vec<MetricState>,
    pub max_ts: Option<i64>,
    pub watermark: i64,
    /// Offsets for derived streams (the position of a record in the derived stream).
    pub next_derived_offset: u64,
    pub counters: StreamCounters,
    /// The search index's matching buffers (not part of snapshots).
    pub search_scratch: SearchScratch,
}

impl std::fmt::Debug for StreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamState")
            .field("watermark", &self.watermark)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl StreamState {
    fn new(sp: &StreamProgram, partition: u32) -> StreamState {
        StreamState {
            cep: sp
                .cep
                .as_ref()
                .map(|set| PartitionState::new(partition, set)),
            metrics: sp
                .metrics
                .iter()
                .map(|(plan, proto)| plan.state_like(proto, partition))
                .collect(),
            max_ts: None,
            watermark: i64::MIN,
            next_derived_offset: 0,
            counters: StreamCounters::default(),
            search_scratch: SearchScratch::default(),
        }
    }
}

/// Everything one partition holds between events.
#[derive(Debug)]
pub struct State {
    pub(crate) partition: u32,
    pub(crate) streams: HashMap<String, StreamState>,
}

/// Version of [`EngineSnapshot`]; a snapshot of another version is not restored.
pub const SNAPSHOT_VERSION: u32 = 2;

/// The state of one stream in an [`EngineSnapshot`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StreamSnapshot {
    pub max_ts: Option<i64>,
    pub watermark: i64,
    pub next_derived_offset: u64,
    pub counters: StreamCounters,
    pub cep: Option<PartitionState>,
    /// Metric states by metric name.
    pub metrics: Vec<(String, MetricState)>,
}

/// Everything an engine holds between events (watermarks, partial matches, metric
/// windows, counters), for checkpoints (serde) and for keeping state across statement
/// changes. Searches hold no state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EngineSnapshot {
    pub version: u32,
    pub partition: u32,
    pub streams: BTreeMap<String, StreamSnapshot>,
}

/// What a restore or a program switch kept and reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Streams whose watermark and counters were restored.
    pub streams_kept: usize,
    /// Rule sets (per stream) and metrics whose state was restored.
    pub states_kept: usize,
    /// Rule sets and metrics that had state and start empty (changed statements, or
    /// incompatible state). New statements are not counted.
    pub states_reset: usize,
}

impl State {
    /// Empty state of every stream of `program` for log partition `partition`.
    pub fn new(program: &Program, partition: u32) -> State {
        State {
            partition,
            streams: program
                .streams
                .iter()
                .map(|(n, sp)| (n.clone(), StreamState::new(sp, partition)))
                .collect(),
        }
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// This state (of `old`) made the state of `new`: a stream whose definition is the
    /// same object keeps its watermark and counters; its rule state when the rule set is
    /// the same object; a metric's windows when its plan is. Everything else starts
    /// empty.
    pub fn carry_over(mut self, old: &Program, new: &Program) -> (State, RestoreReport) {
        let mut report = RestoreReport::default();
        let partition = self.partition;
        let mut streams = HashMap::with_capacity(new.streams.len());
        for (name, sp) in &new.streams {
            let prev = old.streams.get(name);
            let st = match (prev, self.streams.remove(name)) {
                (Some(p), Some(st)) if Arc::ptr_eq(p, sp) => st,
                (Some(p), Some(mut st)) if Arc::ptr_eq(&p.base, &sp.base) => {
                    report.streams_kept += 1;
                    let same_cep = match (&p.cep, &sp.cep) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        _ => false,
                    };
                    if !same_cep {
                        report.states_reset += usize::from(st.cep.is_some() && sp.cep.is_some());
                        st.cep = sp
                            .cep
                            .as_ref()
                            .map(|set| PartitionState::new(partition, set));
                    } else {
                        report.states_kept += usize::from(st.cep.is_some());
                    }
                    let mut old_metrics: HashMap<*const crate::metric::MetricPlan, MetricState> = p
                        .metrics
                        .iter()
                        .map(|(plan, _)| Arc::as_ptr(plan))
                        .zip(std::mem::take(&mut st.metrics))
                        .collect();
                    let old_names: Vec<Arc<str>> = p
                        .metrics
                        .iter()
                        .map(|(plan, _)| plan.name.clone())
                        .collect();
                    st.metrics = sp
                        .metrics
                        .iter()
                        .map(
                            |(plan, proto)| match old_metrics.remove(&Arc::as_ptr(plan)) {
                                Some(m) => {
                                    report.states_kept += 1;
                                    m
                                }
                                None => {
                                    if old_names.contains(&plan.name) {
                                        report.states_reset += 1;
                                    }
                                    plan.state_like(proto, partition)
                                }
                            },
                        )
                        .collect();
                    st
                }
                (_, old_state) => {
                    if let Some(o) = old_state {
                        report.states_reset +=
                            usize::from(o.cep.is_some() && sp.cep.is_some()) + o.metrics.len();
                    }
                    StreamState::new(sp, partition)
                }
            };
            streams.insert(name.clone(), st);
        }
        self.streams = streams;
        (self, report)
    }

    /// A copy of the state, to serialize.
    pub fn snapshot(&self, program: &Program) -> EngineSnapshot {
        let streams = self
            .streams
            .iter()
            .map(|(name, st)| {
                let metrics = program
                    .streams
                    .get(name)
                    .map(|sp| {
                        sp.metrics
                            .iter()
                            .zip(&st.metrics)
                            .map(|((p, _), s)| (p.name.to_string(), s.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    name.clone(),
                    StreamSnapshot {
                        max_ts: st.max_ts,
                        watermark: st.watermark,
                        next_derived_offset: st.next_derived_offset,
                        counters: st.counters.clone(),
                        cep: st.cep.clone(),
                        metrics,
                    },
                )
            })
            .collect();
        EngineSnapshot {
            version: SNAPSHOT_VERSION,
            partition: self.partition,
            streams,
        }
    }

    /// Loads state from a snapshot. `unchanged(name)` tells whether the statement `name`
    /// is the same as when the snapshot was taken: a stream's watermark and counters are
    /// kept when the stream is unchanged; the rule state of a stream when the stream and
    /// every rule reading it are unchanged (and the rule set is the same); a metric's
    /// windows when the metric and its stream are unchanged. Everything else starts empty.
    pub fn restore(
        &mut self,
        program: &Program,
        snap: EngineSnapshot,
        unchanged: &dyn Fn(&str) -> bool,
    ) -> Result<RestoreReport, String> {
        if snap.version != SNAPSHOT_VERSION {
            return Err(format!(
                "snapshot version {} is not supported (expected {SNAPSHOT_VERSION})",
                snap.version
            ));
        }
        if snap.partition != self.partition {
            return Err(format!(
                "snapshot of partition {} cannot be restored into partition {}",
                snap.partition, self.partition
            ));
        }
        let mut report = RestoreReport::default();
        let mut snaps = snap.streams;
        for (name, st) in self.streams.iter_mut() {
            let Some(old) = snaps.remove(name) else {
                continue;
            };
            let Some(sp) = program.streams.get(name) else {
                continue;
            };
            // A repartitioned copy is unchanged when its source stream is.
            let stream_name = program.hidden.get(name).unwrap_or(name);
            if !unchanged(stream_name) {
                report.states_reset +=
                    usize::from(old.cep.is_some() && st.cep.is_some()) + old.metrics.len();
                continue;
            }
            report.streams_kept += 1;
            st.max_ts = old.max_ts;
            st.watermark = old.watermark;
            st.next_derived_offset = old.next_derived_offset;
            st.counters = old.counters;
            if let (Some(set), Some(state)) = (sp.cep.as_ref(), st.cep.as_mut()) {
                let rules_same = set.rules().iter().all(|r| unchanged(r.name()));
                match old.cep {
                    Some(c) if rules_same && c.check_compatible(set).is_ok() => {
                        *state = c;
                        report.states_kept += 1;
                    }
                    Some(_) => report.states_reset += 1,
                    None => {}
                }
            }
            let mut old_metrics: HashMap<String, MetricState> = old.metrics.into_iter().collect();
            for ((plan, _), state) in sp.metrics.iter().zip(st.metrics.iter_mut()) {
                match old_metrics.remove(&*plan.name) {
                    Some(m) if unchanged(&plan.name) => {
                        *state = m;
                        report.states_kept += 1;
                    }
                    Some(_) => report.states_reset += 1,
                    None => {}
                }
            }
        }
        Ok(report)
    }

    /// Rows and partial matches held, over all streams (approximate bytes).
    pub fn approx_state_bytes(&self) -> usize {
        self.streams
            .values()
            .map(|s| s.cep.as_ref().map_or(0, |st| st.approx_state_bytes()))
            .sum()
    }
}
