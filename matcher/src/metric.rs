//! METRIC statements (language §6): SELECT items compiled to accumulators, evaluated per
//! event into event-time windows of mergeable sketches, grouped by key.
//!
//! The window machinery (panes, closing on watermark, retention, `max_groups`) is the
//! `sketches` crate's [`Windowed`]; this module binds a checked `CREATE METRIC` to it:
//! the WHERE filter, the GROUP BY key, one accumulator per aggregate SELECT item, and the
//! rendering of closed windows as metric records (§7).
//!
//! Decisions where the contract is silent:
//! - `values` holds the aggregate items by alias (an item without alias is named by its
//!   canonical text, e.g. `COUNT(*)`); non-aggregate items are GROUP BY columns and appear
//!   in `group`, named by their alias or column name.
//! - A late event (older than the watermark) is counted. Under `late = 'drop'` it is
//!   ignored; under `late = 'emit'` it is added to the windows holding its time that are
//!   still open or still retained, and each retained closed window it changed is emitted
//!   again with `"late": true` and a new id (a correction of the earlier record).
//! - SLIDING windows never close by themselves (they are asked about at a time); at the
//!   end of a `weir run` input one record per group is emitted for the last SIZE up to and
//!   including the pane of the last event.

use crate::expr::{compile, CompiledExpr, Scope};
use crate::output::{make_id, OutputRecord};
use crate::value::{Row, Value};
use dsl::ast::{CreateMetric, Expr, ExprKind, WindowKind as AstWindow};
use dsl::plan::{LatePolicy, MetricOptions, StreamDef};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use sketches::accumulator::{build_state, AccSpec, Accumulator, Value as SkValue};
use sketches::options::SketchOptions;
use sketches::window::{AddOutcome, Closed, WindowConfig, WindowKind, WindowStats, Windowed};
use std::sync::Arc;

/// A compiled METRIC: immutable, share it with `Arc`.
#[derive(Debug)]
pub struct MetricPlan {
    pub name: Arc<str>,
    filter: Option<CompiledExpr>,
    group_by: Vec<CompiledExpr>,
    group_names: Vec<String>,
    /// Per aggregate item: its argument (None for COUNT(*)).
    args: Vec<Option<CompiledExpr>>,
    specs: Vec<AccSpec>,
    aliases: Vec<String>,
    sketch_options: SketchOptions,
    window: WindowConfig,
    /// The input stream's late policy: with `emit`, a late event still updates the windows
    /// that hold its time and are retained, and those are emitted again marked late.
    late: LatePolicy,
}

/// Why a METRIC could not be compiled (check has already validated the statement, so this
/// is rare: bad sketch parameters, an expression the evaluator does not support).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricError {
    pub span: dsl::ast::Span,
    pub message: String,
}

impl std::fmt::Display for MetricError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn agg_name(e: &Expr) -> Option<String> {
    match &e.kind {
        ExprKind::Function { name, .. } => {
            let n = name.name.to_ascii_uppercase();
            matches!(
                n.as_str(),
                "COUNT"
                    | "SUM"
                    | "MIN"
                    | "MAX"
                    | "AVG"
                    | "APPROX_COUNT_DISTINCT"
                    | "APPROX_PERCENTILE"
                    | "APPROX_TOP_K"
                    | "APPROX_SET"
            )
            .then_some(n)
        }
        _ => None,
    }
}

fn literal_text(e: &Expr) -> Option<String> {
    use dsl::ast::Literal;
    match &e.kind {
        ExprKind::Literal(Literal::Float(f)) => Some(format!("{f}")),
        ExprKind::Literal(Literal::Int(i)) => Some(i.to_string()),
        ExprKind::Literal(Literal::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn item_name(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Path(parts) => parts.last().map(|p| p.name.clone()).unwrap_or_default(),
        _ => e.to_string(),
    }
}

impl MetricPlan {
    /// The open (not final) window of a group holding `at` (default: the newest event
    /// time seen), as a record with `"final": false`. `group` = the GROUP BY values.
    pub fn peek(
        &self,
        state: &mut MetricState,
        group: &[Json],
        at: Option<i64>,
    ) -> Option<OutputRecord> {
        let partition = state.partition;
        let key = Json::Array(group.to_vec()).to_string();
        let at = at.or(state.max_ts)?;
        let (span, accs) = state.windows.peek_open(&key, at).ok()??;
        Some(self.record(partition, &key, span.start, span.end, &accs, false))
    }

    /// APPROX_SET membership: `Some(maybe)` for the aggregate named `alias` in the window
    /// of `group` holding `at`; `None` when there is no such window or aggregate.
    pub fn might_contain(
        &self,
        state: &mut MetricState,
        group: &[Json],
        at: Option<i64>,
        alias: &str,
        value: &Json,
    ) -> Option<bool> {
        let i = self.aliases.iter().position(|a| a == alias)?;
        let key = Json::Array(group.to_vec()).to_string();
        let at = at.or(state.max_ts)?;
        let (_, accs) = state.windows.peek_open(&key, at).ok()??;
        let v = match value {
            Json::String(x) => Value::String(x.clone()),
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            Json::Null => Value::Null,
            other => Value::String(other.to_string()),
        };
        with_sk_value(&v, |sv| accs.get(i)?.might_contain(sv))
    }

    /// Names of the GROUP BY columns, in order.
    pub fn group_names(&self) -> &[String] {
        &self.group_names
    }

    /// Compiles a checked `CREATE METRIC` reading `input`.
    pub fn compile(
        m: &CreateMetric,
        input: &StreamDef,
        options: &MetricOptions,
    ) -> Result<MetricPlan, MetricError> {
        let scope = Scope::plain(input);
        let err = |span, message: String| MetricError { span, message };
        let cx = |e: &Expr| compile(e, &scope).map_err(|x| err(x.span, x.message));
        let filter = m.filter.as_ref().map(cx).transpose()?;
        let group_by = m.group_by.iter().map(cx).collect::<Result<Vec<_>, _>>()?;
        let group_names = m
            .group_by
            .iter()
            .map(|g| {
                m.items
                    .iter()
                    .find(|i| agg_name(&i.expr).is_none() && i.expr == *g)
                    .and_then(|i| i.alias.as_ref().map(|a| a.name.clone()))
                    .unwrap_or_else(|| item_name(g))
            })
            .collect();
        let mut args = Vec::new();
        let mut specs = Vec::new();
        let mut aliases = Vec::new();
        for item in &m.items {
            let Some(fname) = agg_name(&item.expr) else {
                continue;
            };
            let ExprKind::Function { args: fargs, .. } = &item.expr.kind else {
                continue;
            };
            let first = fargs.first();
            let star = matches!(first.map(|a| &a.kind), Some(ExprKind::Wildcard(_)) | None);
            let spec = match fname.as_str() {
                "COUNT" if star => AccSpec::CountStar,
                "COUNT" => AccSpec::Count,
                "SUM" => AccSpec::Sum,
                "MIN" => AccSpec::Min,
                "MAX" => AccSpec::Max,
                "AVG" => AccSpec::Avg,
                "APPROX_COUNT_DISTINCT" => AccSpec::CountDistinct,
                "APPROX_SET" => AccSpec::Set,
                "APPROX_PERCENTILE" => AccSpec::Percentile {
                    fractions: fargs[1..]
                        .iter()
                        .map(|a| {
                            literal_text(a).ok_or_else(|| {
                                err(a.span, "a percentile must be a number literal".into())
                            })
                        })
                        .collect::<Result<_, _>>()?,
                },
                "APPROX_TOP_K" => {
                    let k = fargs
                        .get(1)
                        .and_then(literal_text)
                        .and_then(|t| t.parse::<u32>().ok())
                        .ok_or_else(|| {
                            err(item.expr.span, "APPROX_TOP_K needs a count k ≥ 1".into())
                        })?;
                    AccSpec::TopK { k }
                }
                _ => continue,
            };
            let arg = if star || first.is_none() {
                None
            } else {
                first.map(cx).transpose()?
            };
            args.push(arg);
            specs.push(spec);
            aliases.push(
                item.alias
                    .as_ref()
                    .map(|a| a.name.clone())
                    .unwrap_or_else(|| item.expr.to_string()),
            );
        }
        let mut sketch_options = SketchOptions::default();
        if let Some(p) = options.hll_precision {
            sketch_options.hll_precision = p;
        }
        if let Some(f) = options.bloom_fpp {
            sketch_options.bloom_fpp = f;
        }
        if let Some(e) = options.percentile_error {
            sketch_options.percentile_error = e;
        }
        if let Some(c) = options.bloom_capacity {
            sketch_options.bloom_capacity = c;
        }
        if let Some(b) = options.percentile_max_bins {
            sketch_options.percentile_max_bins = b.min(u32::MAX as u64) as u32;
        }
        if let Some(c) = options.topk_capacity {
            sketch_options.topk_capacity = Some(c.min(u32::MAX as u64) as u32);
        }
        let ms = |d: &dsl::ast::Duration| d.millis.min(i64::MAX as u64) as i64;
        let kind = match &m.window.kind {
            AstWindow::Tumbling { size } => WindowKind::Tumbling { size: ms(size) },
            AstWindow::Hopping { size, advance } => WindowKind::Hopping {
                size: ms(size),
                advance: ms(advance),
            },
            AstWindow::Sliding { size } => WindowKind::sliding(ms(size)),
            AstWindow::Session { gap } => WindowKind::Session { gap: ms(gap) },
        };
        let mut window = WindowConfig::new(kind);
        if let Some(r) = options.retention_ms {
            window.retention = r.min(i64::MAX as u64) as i64;
        }
        if let Some(g) = options.max_groups {
            window.max_groups = g.min(usize::MAX as u64) as usize;
        }
        let plan = MetricPlan {
            name: Arc::from(m.name.name.as_str()),
            filter,
            group_by,
            group_names,
            args,
            specs,
            aliases,
            sketch_options,
            window,
            late: input.late,
        };
        // Fail now, not on the first event, if a sketch parameter is out of range.
        plan.new_state()?;
        Ok(plan)
    }

    /// Empty state of this metric for log partition 0 (see [`MetricPlan::new_state_for`]).
    pub fn new_state(&self) -> Result<MetricState, MetricError> {
        self.new_state_for(0)
    }

    /// Empty state of this metric for one log partition. The partition is part of the
    /// record ids: when a metric's GROUP BY is not the stream's key, each partition emits
    /// its own partial window for a group, and those must not share an id.
    pub fn new_state_for(&self, partition: u32) -> Result<MetricState, MetricError> {
        let bad = |e: sketches::SketchError| MetricError {
            span: dsl::ast::Span::default(),
            message: e.to_string(),
        };
        let proto = build_state(&self.specs, &self.sketch_options).map_err(bad)?;
        Ok(MetricState {
            windows: Windowed::new(self.window, proto).map_err(bad)?,
            max_ts: None,
            late_updates: Vec::new(),
            late_revision: 0,
            late_missed: 0,
            partition,
        })
    }

    /// A fresh state like `proto` (from [`MetricPlan::new_state`]) for one log partition.
    pub fn state_like(&self, proto: &MetricState, partition: u32) -> MetricState {
        let mut s = proto.clone();
        s.partition = partition;
        s
    }

    pub fn is_sliding(&self) -> bool {
        matches!(self.window.kind, WindowKind::Sliding { .. })
    }

    /// The group key (JSON text of the GROUP BY values) of a row.
    fn group_key(&self, row: &Row) -> String {
        let vals: Vec<Json> = self
            .group_by
            .iter()
            .map(|g| g.eval(row).to_json())
            .collect();
        Json::Array(vals).to_string()
    }

    /// Applies one event. Returns what happened (late / group dropped / applied / filtered).
    pub fn add(&self, state: &mut MetricState, row: &Row, ts: i64) -> Outcome {
        if let Some(f) = &self.filter {
            if !f.eval_bool(row) {
                return Outcome::Filtered;
            }
        }
        let key = self.group_key(row);
        let vals: Vec<Value> = self
            .args
            .iter()
            .map(|a| a.as_ref().map(|e| e.eval(row)).unwrap_or(Value::Null))
            .collect();
        let update = |accs: &mut Vec<Accumulator>| {
            for (acc, v) in accs.iter_mut().zip(&vals) {
                with_sk_value(v, |sv| {
                    acc.update(sv);
                });
            }
        };
        let outcome = state.windows.add(&key, ts, update);
        match outcome {
            Ok(AddOutcome::Applied) => {
                state.max_ts = Some(state.max_ts.map_or(ts, |m| m.max(ts)));
                Outcome::Applied
            }
            Ok(AddOutcome::Late { .. }) => {
                if self.late == LatePolicy::Emit {
                    if let Ok(r) = state.windows.add_late(&key, ts, update) {
                        state.late_missed += r.missed;
                        state.late_updates.extend(r.updated);
                    }
                }
                Outcome::Late
            }
            Ok(AddOutcome::GroupDropped) => Outcome::GroupDropped,
            // Event time outside what windows can represent (beyond ±2^60 ms).
            Err(_) => Outcome::Rejected,
        }
    }

    /// Moves the watermark; closed windows become final records.
    pub fn advance_watermark(&self, state: &mut MetricState, wm: i64, out: &mut Vec<OutputRecord>) {
        let partition = state.partition;
        // Retained windows updated by late events (`late = 'emit'`), emitted again.
        for c in std::mem::take(&mut state.late_updates) {
            state.late_revision += 1;
            let mut r = self.record(
                partition,
                &c.group,
                c.span.start,
                c.span.end,
                &c.state,
                true,
            );
            if let OutputRecord::Metric { id, late, .. } = &mut r {
                *late = true;
                *id = make_id(&[id.as_bytes(), &state.late_revision.to_le_bytes()]);
            }
            out.push(r);
        }
        if let Ok(closed) = state.windows.advance_watermark(wm) {
            for c in closed {
                out.push(self.record(
                    partition,
                    &c.group,
                    c.span.start,
                    c.span.end,
                    &c.state,
                    true,
                ));
            }
        }
    }

    /// End of input: closes every window (SLIDING: the last SIZE up to the last event).
    pub fn finish(&self, state: &mut MetricState, out: &mut Vec<OutputRecord>) {
        let partition = state.partition;
        if self.is_sliding() {
            let Some(max) = state.max_ts else { return };
            if let Ok(snap) = state.windows.sliding_snapshot(max) {
                for (group, span, st) in snap {
                    out.push(self.record(partition, &group, span.start, span.end, &st, true));
                }
            }
            return;
        }
        if let Ok(closed) = state.windows.close_all() {
            for Closed {
                group, span, state, ..
            } in closed
            {
                out.push(self.record(partition, &group, span.start, span.end, &state, true));
            }
        }
    }

    fn record(
        &self,
        partition: u32,
        group_key: &str,
        start: i64,
        end: i64,
        accs: &[Accumulator],
        final_: bool,
    ) -> OutputRecord {
        let mut group = Map::new();
        if let Ok(Json::Array(vals)) = serde_json::from_str::<Json>(group_key) {
            for (n, v) in self.group_names.iter().zip(vals) {
                group.insert(n.clone(), v);
            }
        }
        let mut values = Map::new();
        for (alias, acc) in self.aliases.iter().zip(accs) {
            values.insert(alias.clone(), acc.result_json());
        }
        OutputRecord::Metric {
            metric: self.name.to_string(),
            id: make_id(&[
                self.name.as_bytes(),
                &partition.to_le_bytes(),
                group_key.as_bytes(),
                &start.to_le_bytes(),
                &end.to_le_bytes(),
            ]),
            start_ms: start,
            end_ms: end,
            group,
            values,
            final_,
            late: false,
        }
    }
}

/// Per-partition state of one metric (serializable for checkpoints).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricState {
    windows: Windowed<String, Vec<Accumulator>>,
    max_ts: Option<i64>,
    /// Closed windows updated by late events, waiting to be emitted again.
    #[serde(default)]
    late_updates: Vec<Closed<String, Vec<Accumulator>>>,
    /// How many late re-emissions so far (makes their ids distinct and deterministic).
    #[serde(default)]
    late_revision: u64,
    /// Late events whose windows were no longer retained (`late = 'emit'`).
    #[serde(default)]
    late_missed: u64,
    /// The log partition this state belongs to (part of record ids).
    #[serde(default)]
    partition: u32,
}

impl MetricState {
    pub fn stats(&self) -> WindowStats {
        self.windows.stats()
    }
    pub fn groups(&self) -> usize {
        self.windows.group_count()
    }
    /// Late events whose windows were gone (evicted past retention) under `late = 'emit'`.
    pub fn late_missed(&self) -> u64 {
        self.late_missed
    }
}

/// What [`MetricPlan::add`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Filtered,
    Late,
    GroupDropped,
    /// Event time outside what windows can represent.
    Rejected,
}

fn with_sk_value<R>(v: &Value, f: impl FnOnce(SkValue<'_>) -> R) -> R {
    match v {
        Value::Null => f(SkValue::Null),
        Value::Bool(b) => f(SkValue::Bool(*b)),
        Value::Int(i) => f(SkValue::Int(*i)),
        Value::Float(x) => f(SkValue::Float(*x)),
        Value::String(s) => f(SkValue::Str(s)),
        Value::Timestamp(t) => f(SkValue::Int(*t)),
        Value::Json(j) => {
            let s = j.to_string();
            f(SkValue::Str(&s))
        }
    }
}
