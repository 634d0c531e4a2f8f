//! The engine of one log partition: every statement of a checked catalog, compiled and
//! fed with events in log order.
//!
//! [`Engine::new`] compiles a [`Catalog`] (rules per input stream into one
//! [`CepRuleSet`], searches into one [`SearchIndex`] per stream, metrics into
//! [`MetricPlan`]s); [`Engine::ingest`] decodes one event of a stream, decides whether it
//! is late, and runs it through the rules, searches and metrics reading that stream;
//! outputs that other statements read `FROM` are fed back in as events of the derived
//! stream. [`Engine::finish`] ends the input: the watermark moves to the end so pending
//! absences, greedy tails and open windows are decided.
//!
//! ## Time
//! - Event time = the stream's `event_time` column, or (without one) the ingestion time
//!   the caller passes.
//! - Each stream's watermark = highest event time seen − `max_delay`. An event older than
//!   the watermark is late: `late = 'drop'` counts it (`late_dropped`) and nothing sees it;
//!   `late = 'emit'` processes it and marks rule and search output `"late": true`.
//! - A derived stream (the output of a rule, search or metric) is read with
//!   `late = 'emit'` and the upstream's `max_delay`: outputs of different keys are decided at
//!   different moments, so they can arrive slightly out of order, and none is dropped.

//!
//! ## Layout
//! - [`program`]: [`Program`], every statement of a catalog version compiled, immutable and
//!   shared by every partition; [`Program::apply`] makes the next version from the
//!   previous one, compiling only what changed.
//! - [`state`]: [`State`], one partition's watermarks, partial matches, metric windows
//!   and counters; snapshots for checkpoints; carry-over to the next program.
//! - `process`: one event through a stream's statements, derived streams fed back,
//!   watermarks, end of input.
//! - `search`: a `CREATE SEARCH` compiled, and the searches of one stream.
//! - [`repartition`]: which statements read a re-keyed copy of their stream.
//!
//! [`Engine`] puts a program and a state together.

pub mod program;
pub mod repartition;
pub mod state;

pub(crate) mod process;
mod search;
#[cfg(test)]
mod tests;
mod time;

pub use program::Program;
pub use repartition::{repartitions, Repartition};
pub use state::{EngineSnapshot, RestoreReport, State, StreamSnapshot, SNAPSHOT_VERSION};

use crate::cep::CepConfig;
use crate::output::OutputRecord;
use crate::search::SearchLimits;
use crate::value::{Row, RowDecoder};
use dsl::check::Catalog;
use dsl::plan::LatePolicy;
use dsl::Diagnostic;
use serde_json::Value as Json;
use std::sync::Arc;

/// Residual condition handed to the search index: the compiled search itself.
pub(crate) type Residual = Arc<search::SearchRt>;

/// Limits of every engine.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub cep: CepConfig,
    pub search: SearchLimits,
    /// Statements that read a repartitioned copy of their source stream (see
    /// [`repartitions`]); empty = every statement reads its stream as written.
    pub repartition: Vec<Repartition>,
}

/// Why an event was rejected. Nothing else is affected by a rejected event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestError {
    UnknownStream { stream: String, known: Vec<String> },
    Decode(String),
    MissingEventTime { column: String },
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::UnknownStream { stream, known } => write!(
                f,
                "unknown stream `{stream}` (known streams: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            IngestError::Decode(m) => f.write_str(m),
            IngestError::MissingEventTime { column } => write!(
                f,
                "the event-time column `{column}` is missing or null (the stream is ordered by it)"
            ),
        }
    }
}

impl std::error::Error for IngestError {}

/// Counters of one stream in one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamCounters {
    pub accepted: u64,
    pub rejected: u64,
    pub late_dropped: u64,
    pub late_processed: u64,
    pub metric_late: u64,
    pub metric_group_dropped: u64,
    /// Events whose time windows cannot represent (beyond ±2^60 ms).
    pub metric_rejected: u64,
}

/// A program and the state of one partition: every statement of a catalog running over
/// one log partition.
pub struct Engine {
    program: Arc<Program>,
    state: State,
}

impl Engine {
    /// Compiles every statement of `catalog` for log partition `partition`.
    pub fn new(
        catalog: &Catalog,
        partition: u32,
        config: &EngineConfig,
    ) -> Result<Engine, Vec<Diagnostic>> {
        let program = Arc::new(Program::compile(catalog, config)?);
        Ok(Engine::with_program(program, partition))
    }

    /// An engine with empty state running `program` over log partition `partition`.
    pub fn with_program(program: Arc<Program>, partition: u32) -> Engine {
        let state = State::new(&program, partition);
        Engine { program, state }
    }

    /// The program this engine runs.
    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// The state of this engine.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Runs `program` from now on (the next version of this engine's program): the state
    /// of unchanged statements carries over ([`State::carry_over`]).
    pub fn switch_program(&mut self, program: Arc<Program>) -> RestoreReport {
        let partition = self.state.partition;
        let state = std::mem::replace(
            &mut self.state,
            State {
                partition,
                streams: Default::default(),
            },
        );
        let (state, report) = state.carry_over(&self.program, &program);
        self.state = state;
        self.program = program;
        report
    }

    /// The streams events can be written to (declared with CREATE STREAM).
    pub fn source_streams(&self) -> &[String] {
        self.program.source_streams()
    }

    /// Counters of a stream.
    pub fn counters(&self, stream: &str) -> Option<&StreamCounters> {
        self.state.streams.get(stream).map(|s| &s.counters)
    }

    /// The rule matcher's counters of a stream (None when no rule reads it): partial
    /// matches dropped at the per-key caps, match starts refused at the per-rule cap, …
    pub fn cep_counters(&self, stream: &str) -> Option<crate::cep::CepCounters> {
        self.state
            .streams
            .get(stream)
            .and_then(|s| s.cep.as_ref())
            .map(|c| c.counters())
    }

    /// Rows and partial matches held, over all streams (approximate bytes).
    pub fn approx_state_bytes(&self) -> usize {
        self.state.approx_state_bytes()
    }

    /// Feeds one event of `stream` at log `offset`. `ingest_time_ms` is the event time for
    /// streams without an `event_time` column. Outputs are appended to `out` in a
    /// deterministic order.
    pub fn ingest(
        &mut self,
        stream: &str,
        offset: u64,
        event: &Json,
        ingest_time_ms: i64,
        out: &mut Vec<OutputRecord>,
    ) -> Result<(), IngestError> {
        let row =
            process::decode_with(&self.program, &mut self.state, stream, |d| d.decode(event))?;
        self.ingest_row(stream, offset, row, None, ingest_time_ms, out)
    }

    /// [`Engine::ingest`] for an event still in its JSON text (one NDJSON line, no
    /// newline needed): decoded straight into a row by [`RowDecoder::decode_bytes`] (no
    /// `serde_json::Value`), with the same results, errors and counters as parsing the
    /// text and calling [`Engine::ingest`], except that text that is not JSON (or not
    /// UTF-8) is also an [`IngestError::Decode`] ("not valid JSON: …") and is counted as
    /// rejected.
    pub fn ingest_bytes(
        &mut self,
        stream: &str,
        offset: u64,
        event: &[u8],
        ingest_time_ms: i64,
        out: &mut Vec<OutputRecord>,
    ) -> Result<(), IngestError> {
        let row = process::decode_with(&self.program, &mut self.state, stream, |d| {
            d.decode_bytes(event)
        })?;
        self.ingest_row(stream, offset, row, None, ingest_time_ms, out)
    }

    /// The decoder of a source stream (what [`Engine::ingest`] uses), for callers that
    /// decode events themselves, e.g. on another thread, and then call
    /// [`Engine::ingest_row`].
    pub fn decoder(&self, stream: &str) -> Option<&RowDecoder> {
        match self.program.streams.get(stream) {
            Some(sp) if sp.base.kind != program::StreamKind::Derived => Some(&sp.base.decoder),
            _ => None,
        }
    }

    /// [`Engine::ingest`] for an event already decoded with [`Engine::decoder`].
    /// `event_time` is `decoder.event_time(&row)` when the caller has read it already (it
    /// saves touching the row again on this thread); `None` = read it here.
    pub fn ingest_row(
        &mut self,
        stream: &str,
        offset: u64,
        row: Row,
        event_time: Option<i64>,
        ingest_time_ms: i64,
        out: &mut Vec<OutputRecord>,
    ) -> Result<(), IngestError> {
        let ev = process::Event {
            stream,
            offset,
            row,
            event_time,
            ingest_time_ms,
        };
        process::ingest_row(&self.program, &mut self.state, ev, out)
    }

    /// End of input: every stream's watermark moves to the end; pending matches, absences
    /// and open windows are decided and emitted.
    pub fn finish(&mut self, out: &mut Vec<OutputRecord>) {
        process::finish(&self.program, &mut self.state, out)
    }

    /// A copy of the engine's state.
    pub fn snapshot(&self) -> EngineSnapshot {
        self.state.snapshot(&self.program)
    }

    /// Loads state from a snapshot; see [`State::restore`].
    pub fn restore(
        &mut self,
        snap: EngineSnapshot,
        unchanged: &dyn Fn(&str) -> bool,
    ) -> Result<RestoreReport, String> {
        self.state.restore(&self.program, snap, unchanged)
    }

    fn metric_mut(
        &mut self,
        metric: &str,
    ) -> Option<(&crate::metric::MetricPlan, &mut crate::metric::MetricState)> {
        let program = &self.program;
        let state = &mut self.state;
        for (name, sp) in &program.streams {
            if let Some(i) = sp.metrics.iter().position(|(p, _)| &*p.name == metric) {
                let st = state.streams.get_mut(name)?;
                return Some((&sp.metrics[i].0, st.metrics.get_mut(i)?));
            }
        }
        None
    }

    /// The GROUP BY column names of a metric.
    pub fn metric_groups(&self, metric: &str) -> Option<Vec<String>> {
        self.program.streams.values().find_map(|sp| {
            sp.metrics
                .iter()
                .find(|(p, _)| &*p.name == metric)
                .map(|(p, _)| p.group_names().to_vec())
        })
    }

    /// The open window of a metric's group holding `at` (`"final": false`); see
    /// [`crate::metric::MetricPlan::peek`].
    pub fn metric_open_window(
        &mut self,
        metric: &str,
        group: &[Json],
        at: Option<i64>,
    ) -> Option<OutputRecord> {
        let (plan, state) = self.metric_mut(metric)?;
        plan.peek(state, group, at)
    }

    /// APPROX_SET membership in a metric's open window; see
    /// [`crate::metric::MetricPlan::might_contain`].
    pub fn metric_contains(
        &mut self,
        metric: &str,
        group: &[Json],
        at: Option<i64>,
        alias: &str,
        value: &Json,
    ) -> Option<bool> {
        let (plan, state) = self.metric_mut(metric)?;
        plan.might_contain(state, group, at, alias, value)
    }

    /// The current watermark of a stream.
    pub fn watermark(&self, stream: &str) -> Option<i64> {
        self.state.streams.get(stream).map(|s| s.watermark)
    }

    /// True when an event of `stream` at event time `ts` would be late and dropped.
    pub fn drops_late(&self, stream: &str, ts: i64) -> bool {
        match (
            self.program.streams.get(stream),
            self.state.streams.get(stream),
        ) {
            (Some(sp), Some(st)) => sp.base.def.late == LatePolicy::Drop && ts < st.watermark,
            _ => false,
        }
    }

    /// Moves the watermark of a stream whose watermark comes from outside (a
    /// repartitioned stream: the minimum over its source partitions) forward; it never
    /// goes back. Buffered rows at or below it are released, WITHIN deadlines and
    /// windows it passed are decided; outputs go to `out`.
    pub fn advance_watermark(&mut self, stream: &str, wm: i64, out: &mut Vec<OutputRecord>) {
        process::advance_watermark(&self.program, &mut self.state, stream, wm, out)
    }

    /// Time passes on a quiet source stream: its watermark moves forward to `wm` (never
    /// back), deciding WITHIN deadlines, trailing absences, greedy tails and windows it
    /// passed; outputs go to `out`. A deterministic input: `weir serve` logs `wm` first
    /// and applies it when reading it back. Returns whether the watermark moved (not for
    /// derived or repartitioned streams, nor when `wm` is not ahead).
    pub fn advance_idle(&mut self, stream: &str, wm: i64, out: &mut Vec<OutputRecord>) -> bool {
        time::advance_idle(&self.program, &mut self.state, stream, wm, out)
    }

    /// The `idle_timeout` of a stream in ms (0 = off); `None` for an unknown stream.
    pub fn idle_timeout_ms(&self, stream: &str) -> Option<u64> {
        self.program
            .streams
            .get(stream)
            .map(|sp| sp.base.def.idle_timeout_ms)
    }

    /// Every stream with a program (sources, repartitioned copies, derived streams that
    /// statements read), in catalog order.
    pub fn stream_names(&self) -> &[String] {
        self.program.stream_names()
    }
}
