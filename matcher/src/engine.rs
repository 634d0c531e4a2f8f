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

use crate::cep::{CepConfig, CepRule, CepRuleSet, MatchOutput, PartitionState};
use crate::expr::{compile, CompiledExpr, Context, FieldRef, Scope};
use crate::metric::{MetricPlan, MetricState, Outcome};
use crate::output::{output_id, OutputRecord};
use crate::search::{
    naive, Document, Highlights, SearchIndex, SearchLimits, SearchScratch, SearchSpec,
};
use crate::value::{DecodeError, Row, RowDecoder, Value};
use dsl::ast::{BinaryOp, DataType, Expr, ExprKind, Literal, SelectItem, StatementKind};
use dsl::check::{Catalog, Plan};
use dsl::plan::{LatePolicy, StreamDef};
use dsl::query::{parse_query, Query};
use dsl::Diagnostic;
use serde_json::{Map, Value as Json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// Limits of every engine.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub cep: CepConfig,
    pub search: SearchLimits,
    /// Statements that read a repartitioned copy of their source stream (see
    /// [`repartitions`]); empty = every statement reads its stream as written.
    pub repartition: Vec<Repartition>,
}

/// A source stream re-keyed for statements whose PARTITION BY (rules) or GROUP BY
/// (metrics) does not include the stream's `key`: with more than one partition, one
/// group's events would otherwise be split across partitions. The service copies each
/// event of `source` into the hidden stream `stream`, placed by the value of `by` (all
/// in partition 0 when `by` is `None`), and `statements` read that stream instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repartition {
    pub source: String,
    /// The column the copies are placed by; `None` = one partition (a rule without
    /// PARTITION BY, a metric without GROUP BY, or groups by a nested field).
    pub by: Option<String>,
    /// The hidden stream's name: `<source>.by.<column>`, or `<source>.single`. Not a valid
    /// identifier, so it cannot clash with a statement.
    pub stream: String,
    pub statements: Vec<String>,
}

/// The repartitioned streams a catalog needs when stream `s` has `partitions(s)`
/// partitions: one per (source stream, column) that some rule or metric groups by
/// without the stream's key. Streams without a `key`, with one partition, and derived
/// streams (outputs of other statements) are read as they are. Deterministic (catalog
/// order), so every worker and every instance agrees.
pub fn repartitions(catalog: &Catalog, partitions: &dyn Fn(&StreamDef) -> u32) -> Vec<Repartition> {
    let mut out: Vec<Repartition> = Vec::new();
    for entry in catalog.entries() {
        let by = match &entry.statement.kind {
            StatementKind::CreateRule(r) => &r.partition_by,
            StatementKind::CreateMetric(m) => &m.group_by,
            _ => continue,
        };
        let Some(src) = entry.from().and_then(|f| catalog.get(f)) else {
            continue;
        };
        if src.derived || src.kind != dsl::ast::ObjectKind::Stream {
            continue;
        }
        let Some(key) = &src.output.key else { continue };
        if partitions(&src.output) <= 1 {
            continue;
        }
        let cols: Vec<&str> = by
            .iter()
            .filter_map(|e| match &e.kind {
                ExprKind::Path(p) if p.len() == 1 => Some(p[0].name.as_str()),
                _ => None,
            })
            .collect();
        if cols.iter().any(|c| c == key) {
            continue;
        }
        // Placed by the first column (its groups never span two values of it); a nested
        // field first, or no column: one partition. `dsl`'s key warning names the same.
        let col = match by.first().map(|e| &e.kind) {
            Some(ExprKind::Path(p)) if p.len() == 1 => Some(p[0].name.clone()),
            _ => None,
        };
        let stream = match &col {
            Some(c) => format!("{}.by.{c}", src.name),
            None => format!("{}.single", src.name),
        };
        match out.iter_mut().find(|r| r.stream == stream) {
            Some(r) => r.statements.push(entry.name.clone()),
            None => out.push(Repartition {
                source: src.name.clone(),
                by: col,
                stream,
                statements: vec![entry.name.clone()],
            }),
        }
    }
    out
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

/// One search of a stream.
#[derive(Debug)]
struct SearchRt {
    name: Arc<str>,
    /// The whole WHERE (its MATCHES tests read the results of `matches`).
    filter: CompiledExpr,
    /// The MATCHES tests: (field name, query with that default field).
    tests: Vec<(String, Query)>,
    /// Evaluated by the index's presearcher (all MATCHES are top-level conjuncts);
    /// otherwise every event runs the naive evaluator for this search.
    indexed: bool,
    emit: Vec<(String, CompiledExpr)>,
}

/// Residual condition handed to the search index: the index of the search.
type Residual = usize;

struct StreamRt {
    def: StreamDef,
    decoder: RowDecoder,
    /// Statements that read this stream, by kind.
    cep: Option<(Arc<CepRuleSet>, PartitionState)>,
    searches: Vec<SearchRt>,
    /// Position in `searches` of each search, by name (index hits carry the name).
    search_by_name: HashMap<String, usize>,
    /// Searches the index cannot evaluate (run by the naive evaluator on every event).
    naive_searches: Vec<usize>,
    index: SearchIndex<Residual>,
    search_scratch: SearchScratch,
    /// Field names the searches read, and where.
    search_fields: Vec<(String, FieldRef)>,
    metrics: Vec<(Arc<MetricPlan>, MetricState)>,
    max_ts: Option<i64>,
    watermark: i64,
    /// The watermark comes from outside ([`Engine::advance_watermark`]), not from the
    /// rows: a repartitioned stream, whose rows merge several source partitions.
    external_watermark: bool,
    /// Offsets for derived streams (the position of a record in the derived stream).
    next_derived_offset: u64,
    counters: StreamCounters,
}

impl StreamRt {
    fn new(def: StreamDef) -> StreamRt {
        StreamRt {
            decoder: RowDecoder::new(&def),
            def,
            cep: None,
            searches: Vec::new(),
            search_by_name: HashMap::new(),
            naive_searches: Vec::new(),
            index: SearchIndex::new(SearchLimits::default()),
            search_scratch: SearchScratch::default(),
            search_fields: Vec::new(),
            metrics: Vec::new(),
            max_ts: None,
            watermark: i64::MIN,
            external_watermark: false,
            next_derived_offset: 0,
            counters: StreamCounters::default(),
        }
    }
}

/// Every statement of a catalog, running over one log partition.
pub struct Engine {
    partition: u32,
    streams: HashMap<String, StreamRt>,
    /// Source stream names in catalog order (for error messages).
    source_names: Vec<String>,
    /// Names of derived streams (outputs of rules, searches, metrics).
    derived: HashSet<String>,
    /// Derived streams that some statement reads `FROM`: only their records are fed back.
    read: HashSet<String>,
    /// Every stream in catalog order: each after the streams it reads.
    order: Vec<String>,
    /// Repartitioned (hidden) stream name → its source stream.
    hidden: HashMap<String, String>,
}

fn compile_err(span: dsl::ast::Span, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::error(span, msg)
}

/// The top-level conjuncts of an expression.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match &e.kind {
        ExprKind::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => {
            let mut v = conjuncts(left);
            v.extend(conjuncts(right));
            v
        }
        _ => vec![e],
    }
}

fn path_name(e: &Expr) -> Option<String> {
    match &e.kind {
        ExprKind::Path(parts) => Some(
            parts
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join("."),
        ),
        _ => None,
    }
}

fn contains_matches(e: &Expr) -> bool {
    let mut found = false;
    e.walk(&mut |x| {
        if let ExprKind::Binary {
            op: BinaryOp::Matches,
            ..
        } = x.kind
        {
            found = true;
        }
    });
    found
}

fn string_literal(e: &Expr) -> Option<&str> {
    match &e.kind {
        ExprKind::Literal(Literal::String(s)) => Some(s),
        _ => None,
    }
}

/// `col = 'x'` or `col IN ('x', 'y')` on a string path: (path, values).
fn equality_filter(e: &Expr) -> Option<(String, Vec<String>)> {
    match &e.kind {
        ExprKind::Binary {
            op: BinaryOp::Eq,
            left,
            right,
        } => {
            let (p, l) = match (path_name(left), path_name(right)) {
                (Some(p), _) => (p, right),
                (None, Some(p)) => (p, left),
                _ => return None,
            };
            Some((p, vec![string_literal(l)?.to_string()]))
        }
        ExprKind::InList {
            expr,
            list,
            negated: false,
        } => {
            let p = path_name(expr)?;
            let vals = list
                .iter()
                .map(|x| string_literal(x).map(str::to_string))
                .collect::<Option<Vec<_>>>()?;
            Some((p, vals))
        }
        _ => None,
    }
}

fn query_fields(q: &Query, out: &mut Vec<String>) {
    match q {
        Query::And(xs) | Query::Or(xs) => xs.iter().for_each(|x| query_fields(x, out)),
        Query::Not(x) => query_fields(x, out),
        leaf => {
            if let Some(f) = leaf.field() {
                if !out.iter().any(|o| o == f) {
                    out.push(f.to_string());
                }
            }
        }
    }
}

fn field_ref(def: &StreamDef, path: &str) -> FieldRef {
    let mut parts = path.split('.').map(str::to_string);
    let first = parts.next().unwrap_or_default();
    let rest: Vec<String> = parts.collect();
    match def.columns.iter().position(|(c, _)| *c == first) {
        Some(i) => FieldRef::Col(i, rest),
        None => FieldRef::Extra(first, rest),
    }
}

/// The stream a derived statement's output is read as.
fn derived_def(base: &StreamDef, upstream_delay: u64) -> StreamDef {
    let mut def = base.clone();
    if !def.columns.iter().any(|(c, _)| c == "ts") {
        def.columns.push(("ts".into(), DataType::Timestamp));
    }
    def.event_time = Some("ts".into());
    def.max_delay_ms = upstream_delay;
    def.late = LatePolicy::Emit;
    def
}

struct SearchCtx<'a> {
    row: &'a Row,
    results: &'a [bool],
}

impl Context for SearchCtx<'_> {
    fn row(&self) -> Option<&Row> {
        Some(self.row)
    }
    fn matches(&self, id: usize) -> Value {
        Value::Bool(self.results.get(id).copied().unwrap_or(false))
    }
}

impl Engine {
    /// Compiles every statement of `catalog` for log partition `partition`.
    pub fn new(
        catalog: &Catalog,
        partition: u32,
        config: &EngineConfig,
    ) -> Result<Engine, Vec<Diagnostic>> {
        let mut streams: HashMap<String, StreamRt> = HashMap::new();
        let mut source_names = Vec::new();
        let mut rules: HashMap<String, Vec<CepRule>> = HashMap::new();
        let mut diags = Vec::new();
        let mut derived = HashSet::new();
        let mut order = Vec::new();
        let mut read = HashSet::new();
        let mut hidden = HashMap::new();
        let mut reads_hidden: HashMap<&str, &str> = HashMap::new();
        for r in &config.repartition {
            for st in &r.statements {
                reads_hidden.insert(st.as_str(), r.stream.as_str());
            }
        }
        for entry in catalog.entries() {
            order.push(entry.name.clone());
            if let Some(from) = entry.from() {
                read.insert(from.to_string());
            }
            let input_name = match reads_hidden.get(entry.name.as_str()) {
                Some(h) => Some(h.to_string()),
                None => entry.from().map(str::to_string),
            };
            // The stream this statement reads, as the engine sees it.
            let input_def = input_name
                .as_ref()
                .and_then(|n| streams.get(n))
                .map(|s| s.def.clone());
            match (&entry.statement.kind, &entry.plan) {
                (StatementKind::CreateStream(_), _) => {
                    source_names.push(entry.name.clone());
                    streams.insert(entry.name.clone(), StreamRt::new(entry.output.clone()));
                    for r in config.repartition.iter().filter(|r| r.source == entry.name) {
                        let mut def = entry.output.clone();
                        def.name = r.stream.clone();
                        def.key = r.by.clone();
                        let mut rt = StreamRt::new(def);
                        rt.external_watermark = true;
                        streams.insert(r.stream.clone(), rt);
                        order.push(r.stream.clone());
                        hidden.insert(r.stream.clone(), entry.name.clone());
                    }
                }
                (StatementKind::CreateRule(r), Plan::Rule(_)) => {
                    let Some(input) = input_def else { continue };
                    match CepRule::compile(r, &input, &config.cep) {
                        Ok(rule) => {
                            let out = derived_def(
                                &rule.output_stream(),
                                input.max_delay_ms + r.within.map_or(0, |w| w.millis),
                            );
                            streams.insert(entry.name.clone(), StreamRt::new(out));
                            derived.insert(entry.name.clone());
                            rules.entry(input.name.clone()).or_default().push(rule);
                        }
                        Err(e) => diags.push(e.into()),
                    }
                }
                (StatementKind::CreateSearch(s), Plan::Search(_)) => {
                    let Some(input) = input_def else { continue };
                    match Self::compile_search(s, &input, &entry.name) {
                        Ok((rt, spec)) => {
                            let out = derived_def(&entry.output, input.max_delay_ms);
                            streams.insert(entry.name.clone(), StreamRt::new(out));
                            derived.insert(entry.name.clone());
                            if let Some(st) = streams.get_mut(&input.name) {
                                let idx = st.searches.len();
                                for f in rt.tests.iter().flat_map(|(_, q)| {
                                    let mut v = Vec::new();
                                    query_fields(q, &mut v);
                                    v
                                }) {
                                    if !st.search_fields.iter().any(|(n, _)| *n == f) {
                                        st.search_fields.push((f.clone(), field_ref(&input, &f)));
                                    }
                                }
                                if let Some(spec) = spec {
                                    for (f, _) in &spec.equals {
                                        if !st.search_fields.iter().any(|(n, _)| n == f) {
                                            st.search_fields
                                                .push((f.clone(), field_ref(&input, f)));
                                        }
                                    }
                                    if let Err(e) =
                                        st.index.add(&entry.name, spec.with_residual(idx))
                                    {
                                        diags.push(compile_err(s.filter.span, e.to_string()));
                                        continue;
                                    }
                                }
                                st.search_by_name
                                    .insert(entry.name.to_string(), st.searches.len());
                                if !rt.indexed {
                                    st.naive_searches.push(st.searches.len());
                                }
                                st.searches.push(rt);
                            }
                        }
                        Err(d) => diags.push(d),
                    }
                }
                (StatementKind::CreateMetric(m), Plan::Metric(mp)) => {
                    let Some(input) = input_def else { continue };
                    match MetricPlan::compile(m, &input, &mp.options) {
                        Ok(plan) => match plan.new_state_for(partition) {
                            Ok(state) => {
                                let out = derived_def(&entry.output, input.max_delay_ms);
                                streams.insert(entry.name.clone(), StreamRt::new(out));
                                derived.insert(entry.name.clone());
                                if let Some(st) = streams.get_mut(&input.name) {
                                    st.metrics.push((Arc::new(plan), state));
                                }
                            }
                            Err(e) => diags.push(compile_err(e.span, e.message)),
                        },
                        Err(e) => diags.push(compile_err(e.span, e.message)),
                    }
                }
                _ => {}
            }
        }
        for (stream, rs) in rules {
            match CepRuleSet::new(rs) {
                Ok(set) => {
                    let set = Arc::new(set);
                    if let Some(st) = streams.get_mut(&stream) {
                        let state = PartitionState::new(partition, &set);
                        st.cep = Some((set, state));
                    }
                }
                Err(e) => diags.push(e.into()),
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        for st in streams.values_mut() {
            st.index.prepare();
        }
        Ok(Engine {
            partition,
            streams,
            source_names,
            derived,
            read,
            order,
            hidden,
        })
    }

    fn compile_search(
        s: &dsl::ast::CreateSearch,
        input: &StreamDef,
        name: &str,
    ) -> Result<(SearchRt, Option<SearchSpec<Residual>>), Diagnostic> {
        let scope = Scope::plain(input);
        let filter =
            compile(&s.filter, &scope).map_err(|e| compile_err(e.span, e.message.clone()))?;
        let mut tests = Vec::new();
        for (field, text) in &filter.matches {
            let fname = match field {
                FieldRef::Col(i, rest) => {
                    let mut n = input
                        .columns
                        .get(*i)
                        .map(|c| c.0.clone())
                        .unwrap_or_default();
                    for r in rest {
                        n.push('.');
                        n.push_str(r);
                    }
                    n
                }
                FieldRef::Extra(n, rest) => {
                    let mut n = n.clone();
                    for r in rest {
                        n.push('.');
                        n.push_str(r);
                    }
                    n
                }
            };
            let q = parse_query(text)
                .map_err(|e| compile_err(s.filter.span, format!("invalid query: {e}")))?;
            tests.push((fname.clone(), q.with_default_field(&fname)));
        }
        // Indexable when every MATCHES is a top-level conjunct; the other conjuncts are
        // equality filters (used by the presearcher) or the residual (evaluated in full).
        let cs = conjuncts(&s.filter);
        let matches_top = cs
            .iter()
            .filter(|c| {
                matches!(
                    c.kind,
                    ExprKind::Binary {
                        op: BinaryOp::Matches,
                        ..
                    }
                )
            })
            .count();
        let indexed = matches_top == tests.len()
            && !tests.is_empty()
            && !cs.iter().any(|c| {
                !matches!(
                    c.kind,
                    ExprKind::Binary {
                        op: BinaryOp::Matches,
                        ..
                    }
                ) && contains_matches(c)
            });
        let spec = if indexed {
            let query = if tests.len() == 1 {
                tests[0].1.clone()
            } else {
                Query::And(tests.iter().map(|(_, q)| q.clone()).collect())
            };
            let mut spec = SearchSpec::new(query);
            for c in &cs {
                if let Some((p, vals)) = equality_filter(c) {
                    spec.equals.push((p, vals));
                }
            }
            Some(spec)
        } else {
            None
        };
        let emit = s
            .emit
            .iter()
            .map(|SelectItem { expr, alias, .. }| {
                let name = alias
                    .as_ref()
                    .map(|a| a.name.clone())
                    .or_else(|| match &expr.kind {
                        ExprKind::Path(p) => p.last().map(|i| i.name.clone()),
                        _ => None,
                    })
                    .unwrap_or_else(|| expr.to_string());
                compile(expr, &scope)
                    .map(|c| (name, c))
                    .map_err(|e| compile_err(e.span, e.message.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            SearchRt {
                name: Arc::from(name),
                filter,
                tests,
                indexed,
                emit,
            },
            spec,
        ))
    }

    /// The streams events can be written to (declared with CREATE STREAM).
    pub fn source_streams(&self) -> &[String] {
        &self.source_names
    }

    /// Counters of a stream.
    pub fn counters(&self, stream: &str) -> Option<&StreamCounters> {
        self.streams.get(stream).map(|s| &s.counters)
    }

    /// Rows and partial matches held, over all streams (approximate bytes).
    pub fn approx_state_bytes(&self) -> usize {
        self.streams
            .values()
            .map(|s| s.cep.as_ref().map_or(0, |(_, st)| st.approx_state_bytes()))
            .sum()
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
        let row = self.decode_with(stream, |d| d.decode(event))?;
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
        let row = self.decode_with(stream, |d| d.decode_bytes(event))?;
        self.ingest_row(stream, offset, row, None, ingest_time_ms, out)
    }

    /// Decodes an event of source stream `stream` with `decode`, counting a rejection.
    fn decode_with(
        &mut self,
        stream: &str,
        decode: impl FnOnce(&RowDecoder) -> Result<Row, DecodeError>,
    ) -> Result<Row, IngestError> {
        match self.streams.get_mut(stream) {
            Some(st) if !self.derived.contains(stream) => decode(&st.decoder).map_err(|e| {
                st.counters.rejected += 1;
                IngestError::Decode(e.to_string())
            }),
            _ => Err(IngestError::UnknownStream {
                stream: stream.to_string(),
                known: self.source_names.clone(),
            }),
        }
    }

    /// The decoder of a source stream (what [`Engine::ingest`] uses), for callers that
    /// decode events themselves, e.g. on another thread, and then call
    /// [`Engine::ingest_row`].
    pub fn decoder(&self, stream: &str) -> Option<&RowDecoder> {
        match self.streams.get(stream) {
            Some(st) if !self.derived.contains(stream) => Some(&st.decoder),
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
        let st = match self.streams.get_mut(stream) {
            Some(st) if !self.derived.contains(stream) => st,
            _ => {
                return Err(IngestError::UnknownStream {
                    stream: stream.to_string(),
                    known: self.source_names.clone(),
                })
            }
        };
        let mut queue = Vec::new();
        let ts = match &st.def.event_time {
            Some(col) => match event_time.or_else(|| st.decoder.event_time(&row)) {
                Some(t) => t,
                None => {
                    st.counters.rejected += 1;
                    return Err(IngestError::MissingEventTime {
                        column: col.clone(),
                    });
                }
            },
            None => ingest_time_ms,
        };
        let partition = self.partition;
        Self::process(
            st, stream, partition, row, ts, offset, out, &self.read, &mut queue,
        );
        self.drain(queue, out);
        Ok(())
    }

    /// Feeds the records produced for derived streams to their readers (breadth first).
    fn drain(&mut self, queue: Vec<OutputRecord>, out: &mut Vec<OutputRecord>) {
        let partition = self.partition;
        let mut queue = VecDeque::from(queue);
        while let Some(rec) = queue.pop_front() {
            let name = rec.statement().to_string();
            let Some(st) = self.streams.get_mut(&name) else {
                continue;
            };
            if st.cep.is_none() && st.searches.is_empty() && st.metrics.is_empty() {
                continue;
            }
            let (fields, ts) = match &rec {
                OutputRecord::Rule { fields, ts_ms, .. }
                | OutputRecord::Search { fields, ts_ms, .. } => (fields.clone(), *ts_ms),
                OutputRecord::Metric {
                    group,
                    values,
                    end_ms,
                    ..
                } => {
                    let mut f = group.clone();
                    f.extend(values.clone());
                    (f, *end_ms)
                }
            };
            let mut obj = fields;
            obj.insert("ts".into(), Json::from(ts));
            let Ok(row) = st.decoder.decode(&Json::Object(obj)) else {
                st.counters.rejected += 1;
                continue;
            };
            let offset = st.next_derived_offset;
            st.next_derived_offset += 1;
            let mut more = Vec::new();
            Self::process(
                st, &name, partition, row, ts, offset, out, &self.read, &mut more,
            );
            queue.extend(more);
        }
    }

    /// Runs one decoded row through everything reading `stream`.
    #[allow(clippy::too_many_arguments)]
    fn process(
        st: &mut StreamRt,
        stream: &str,
        partition: u32,
        row: Row,
        ts: i64,
        offset: u64,
        out: &mut Vec<OutputRecord>,
        read: &HashSet<String>,
        derived: &mut Vec<OutputRecord>,
    ) {
        let late = ts < st.watermark;
        if late {
            match st.def.late {
                LatePolicy::Drop => {
                    st.counters.late_dropped += 1;
                    return;
                }
                LatePolicy::Emit => st.counters.late_processed += 1,
            }
        }
        st.counters.accepted += 1;
        st.max_ts = Some(st.max_ts.map_or(ts, |m| m.max(ts)));
        if !st.external_watermark {
            let wm = st
                .max_ts
                .unwrap_or(i64::MIN)
                .saturating_sub(st.def.max_delay_ms.min(i64::MAX as u64) as i64);
            st.watermark = st.watermark.max(wm);
        }
        // With an outside watermark the rule state never moves its own.
        let cep_delay = if st.external_watermark {
            u64::MAX
        } else {
            st.def.max_delay_ms
        };

        let mut produced = Vec::new();
        // Searches first: they answer on arrival.
        if !st.searches.is_empty() {
            Self::run_searches(st, stream, partition, &row, ts, offset, late, &mut produced);
        }
        // Metrics.
        for (plan, state) in st.metrics.iter_mut() {
            match plan.add(state, &row, ts) {
                Outcome::Late => st.counters.metric_late += 1,
                Outcome::GroupDropped => st.counters.metric_group_dropped += 1,
                Outcome::Rejected => st.counters.metric_rejected += 1,
                Outcome::Applied | Outcome::Filtered => {}
            }
        }
        // Rules.
        if let Some((set, state)) = st.cep.as_mut() {
            let mut matches = Vec::new();
            state.process_with(set, row, ts, offset, cep_delay, st.def.late, &mut matches);
            produced.extend(matches.into_iter().map(rule_record));
        }
        let wm = st.watermark;
        for (plan, state) in st.metrics.iter_mut() {
            plan.advance_watermark(state, wm, &mut produced);
        }
        derived.extend(
            produced
                .iter()
                .filter(|r| read.contains(r.statement()))
                .cloned(),
        );
        out.extend(produced);
    }

    #[allow(clippy::too_many_arguments)]
    fn run_searches(
        st: &mut StreamRt,
        stream: &str,
        partition: u32,
        row: &Row,
        ts: i64,
        offset: u64,
        late: bool,
        out: &mut Vec<OutputRecord>,
    ) {
        // The text of every field the searches read.
        let texts: Vec<(String, Option<String>)> = st
            .search_fields
            .iter()
            .map(|(n, f)| {
                let t = match f.get(row) {
                    Value::String(s) => Some(s),
                    Value::Null => None,
                    Value::Json(j) => Some(j.to_string()),
                    other => Some(other.to_json().to_string()),
                };
                (n.clone(), t)
            })
            .collect();
        let mut doc = Document::new();
        for (n, t) in &texts {
            if let Some(t) = t {
                doc.push(n, t);
            }
        }
        let mut hits: Vec<(usize, Highlights)> = Vec::new();
        // Indexed searches: presearcher + verification; the residual is the whole WHERE
        // with every MATCHES known to be true.
        let searches = &st.searches;
        let all_true = [true; 64];
        let mut residual = |_: &str, idx: &Residual| -> bool {
            let s = &searches[*idx];
            let n = s.tests.len();
            if n <= all_true.len() {
                s.filter.eval_bool(&SearchCtx {
                    row,
                    results: &all_true[..n],
                })
            } else {
                let v = vec![true; n];
                s.filter.eval_bool(&SearchCtx { row, results: &v })
            }
        };
        let index_hits = st
            .index
            .match_document(&mut st.search_scratch, &doc, &mut residual);
        for h in index_hits {
            if let Some(&i) = st.search_by_name.get(&*h.search) {
                hits.push((i, h.highlights));
            }
        }
        // The others: every MATCHES evaluated, then the WHERE.
        for &i in &st.naive_searches {
            let s = &st.searches[i];
            let mut results = Vec::with_capacity(s.tests.len());
            let mut hl = Highlights::new();
            for (_, q) in &s.tests {
                match naive::evaluate(q, &doc) {
                    Some(h) => {
                        results.push(true);
                        for (f, ranges) in h {
                            hl.entry(f).or_default().extend(ranges);
                        }
                    }
                    None => results.push(false),
                }
            }
            if s.filter.eval_bool(&SearchCtx {
                row,
                results: &results,
            }) {
                for r in hl.values_mut() {
                    r.sort_unstable();
                    r.dedup();
                }
                hits.push((i, hl));
            }
        }
        hits.sort_by_key(|(i, _)| *i);
        for (i, hl) in hits {
            let s = &st.searches[i];
            let mut fields = Map::new();
            if s.emit.is_empty() {
                for (j, (c, _)) in st.def.columns.iter().enumerate() {
                    fields.insert(c.clone(), row.get(j).to_json());
                }
                for (k, v) in &row.extra {
                    fields.insert(k.clone(), v.clone());
                }
            } else {
                for (n, e) in &s.emit {
                    fields.insert(n.clone(), e.eval(row).to_json());
                }
            }
            let mut highlights = Map::new();
            for (f, ranges) in hl {
                highlights.insert(
                    f,
                    Json::Array(
                        ranges
                            .into_iter()
                            .map(|(a, b)| Json::Array(vec![a.into(), b.into()]))
                            .collect(),
                    ),
                );
            }
            out.push(OutputRecord::Search {
                search: s.name.to_string(),
                id: output_id(&s.name, stream, partition, offset, 0),
                ts_ms: ts,
                fields,
                highlights,
                late,
            });
        }
    }

    /// End of input: every stream's watermark moves to the end; pending matches, absences
    /// and open windows are decided and emitted.
    pub fn finish(&mut self, out: &mut Vec<OutputRecord>) {
        // Catalog order: a derived stream comes after everything it reads, so its input
        // is complete (upstream finished and drained into it) when its turn comes.
        for name in self.order.clone() {
            let Some(st) = self.streams.get_mut(&name) else {
                continue;
            };
            let mut produced = Vec::new();
            if let Some((set, state)) = st.cep.as_mut() {
                let mut m: Vec<MatchOutput> = Vec::new();
                state.finish(set, &mut m);
                // Pending matches are decided together at the end; emit them in event-time
                // order (then log order), independent of how per-key state is hashed.
                m.sort_by_key(|o| (o.ts, o.first_offset, o.last_offset));
                produced.extend(m.into_iter().map(rule_record));
            }
            for (plan, state) in st.metrics.iter_mut() {
                plan.finish(state, &mut produced);
            }
            let feed: Vec<OutputRecord> = produced
                .iter()
                .filter(|r| self.read.contains(r.statement()))
                .cloned()
                .collect();
            out.extend(produced);
            self.drain(feed, out);
        }
    }
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

/// Everything an [`Engine`] holds between events (watermarks, partial matches, metric
/// windows, counters), for checkpoints (serde) and for keeping state across statement
/// changes. Searches hold no state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EngineSnapshot {
    pub version: u32,
    pub partition: u32,
    pub streams: std::collections::BTreeMap<String, StreamSnapshot>,
}

/// What [`Engine::restore`] kept and reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Streams whose watermark and counters were restored.
    pub streams_kept: usize,
    /// Rule sets (per stream) and metrics whose state was restored.
    pub states_kept: usize,
    /// Rule sets and metrics that had state in the snapshot and start empty (changed
    /// statements, or incompatible state). New statements are not counted.
    pub states_reset: usize,
}

impl Engine {
    /// A copy of the engine's state.
    pub fn snapshot(&self) -> EngineSnapshot {
        let streams = self
            .streams
            .iter()
            .map(|(name, st)| {
                (
                    name.clone(),
                    StreamSnapshot {
                        max_ts: st.max_ts,
                        watermark: st.watermark,
                        next_derived_offset: st.next_derived_offset,
                        counters: st.counters.clone(),
                        cep: st.cep.as_ref().map(|(_, s)| s.clone()),
                        metrics: st
                            .metrics
                            .iter()
                            .map(|(p, s)| (p.name.to_string(), s.clone()))
                            .collect(),
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
            // A repartitioned copy is unchanged when its source stream is.
            let stream_name = self.hidden.get(name).unwrap_or(name);
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
            if let Some((set, state)) = st.cep.as_mut() {
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
            for (plan, state) in st.metrics.iter_mut() {
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

    fn metric_mut(&mut self, metric: &str) -> Option<(Arc<MetricPlan>, &mut MetricState)> {
        self.streams.values_mut().find_map(|st| {
            st.metrics
                .iter_mut()
                .find(|(p, _)| &*p.name == metric)
                .map(|(p, s)| (p.clone(), s))
        })
    }

    /// The GROUP BY column names of a metric.
    pub fn metric_groups(&self, metric: &str) -> Option<Vec<String>> {
        self.streams.values().find_map(|st| {
            st.metrics
                .iter()
                .find(|(p, _)| &*p.name == metric)
                .map(|(p, _)| p.group_names().to_vec())
        })
    }

    /// The open window of a metric's group holding `at` (`"final": false`); see
    /// [`MetricPlan::peek`].
    pub fn metric_open_window(
        &mut self,
        metric: &str,
        group: &[Json],
        at: Option<i64>,
    ) -> Option<OutputRecord> {
        let (plan, state) = self.metric_mut(metric)?;
        plan.peek(state, group, at)
    }

    /// APPROX_SET membership in a metric's open window; see [`MetricPlan::might_contain`].
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
        self.streams.get(stream).map(|s| s.watermark)
    }

    /// True when an event of `stream` at event time `ts` would be late and dropped.
    pub fn drops_late(&self, stream: &str, ts: i64) -> bool {
        self.streams
            .get(stream)
            .is_some_and(|s| s.def.late == LatePolicy::Drop && ts < s.watermark)
    }

    /// Moves the watermark of a stream whose watermark comes from outside (a
    /// repartitioned stream: the minimum over its source partitions) forward; it never
    /// goes back. Buffered rows at or below it are released, WITHIN deadlines and
    /// windows it passed are decided; outputs go to `out`.
    pub fn advance_watermark(&mut self, stream: &str, wm: i64, out: &mut Vec<OutputRecord>) {
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        if !st.external_watermark || wm <= st.watermark {
            return;
        }
        st.watermark = wm;
        let mut produced = Vec::new();
        if let Some((set, state)) = st.cep.as_mut() {
            let mut matches = Vec::new();
            state.advance_watermark(set, wm, &mut matches);
            produced.extend(matches.into_iter().map(rule_record));
        }
        for (plan, state) in st.metrics.iter_mut() {
            plan.advance_watermark(state, wm, &mut produced);
        }
        let feed: Vec<OutputRecord> = produced
            .iter()
            .filter(|r| self.read.contains(r.statement()))
            .cloned()
            .collect();
        out.extend(produced);
        self.drain(feed, out);
    }

    /// Every stream (source and derived) in catalog order.
    pub fn stream_names(&self) -> &[String] {
        &self.order
    }
}

fn rule_record(m: MatchOutput) -> OutputRecord {
    let mut fields = Map::new();
    for (k, v) in &m.fields {
        fields.insert(k.to_string(), v.to_json());
    }
    OutputRecord::Rule {
        rule: m.rule.to_string(),
        id: m.id,
        ts_ms: m.ts,
        fields,
        late: m.late,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod snapshot_tests {
    use super::*;

    const RULES: &str = "
CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '1 second', key = 'card');
CREATE RULE probe AS FROM pay PARTITION BY card
  PATTERN (small{2,} big) WITHIN 1 MINUTE
  DEFINE small AS amount < 5, big AS amount > 500
  MEASURES COUNT(small.*) AS n, big.amount AS amount;
CREATE METRIC per_card AS SELECT card, COUNT(*) AS n, SUM(amount) AS total
  FROM pay GROUP BY card WINDOW TUMBLING (SIZE 10 SECONDS);
";

    fn events() -> Vec<Json> {
        (0..400)
            .map(|i| {
                let card = format!("c{}", i % 7);
                let amount = if i % 5 == 4 {
                    900.0
                } else {
                    1.0 + (i % 3) as f64
                };
                serde_json::json!({"card": card, "amount": amount, "ts": 1_000 * i as i64})
            })
            .collect()
    }

    fn engine(cat: &Catalog) -> Engine {
        Engine::new(cat, 0, &EngineConfig::default()).unwrap()
    }

    fn run(e: &mut Engine, evs: &[Json], from: usize, out: &mut Vec<OutputRecord>) {
        for (i, ev) in evs.iter().enumerate().skip(from) {
            e.ingest("pay", i as u64, ev, 0, out).unwrap();
        }
    }

    #[test]
    fn snapshot_restore_continues_exactly() {
        let mut cat = Catalog::new();
        assert!(cat.check_source(RULES).iter().all(|d| !d.is_error()));
        let evs = events();
        let mut whole = Vec::new();
        let mut a = engine(&cat);
        run(&mut a, &evs, 0, &mut whole);
        a.finish(&mut whole);
        assert!(whole.iter().any(|r| r.statement() == "probe"));
        assert!(whole.iter().any(|r| r.statement() == "per_card"));
        for cut in [0, 1, 137, 399] {
            let mut got = Vec::new();
            let mut b = engine(&cat);
            for (i, ev) in evs.iter().enumerate().take(cut) {
                b.ingest("pay", i as u64, ev, 0, &mut got).unwrap();
            }
            let bytes = serde_json::to_vec(&b.snapshot()).unwrap();
            drop(b);
            let snap: EngineSnapshot = serde_json::from_slice(&bytes).unwrap();
            let mut c = engine(&cat);
            let rep = c.restore(snap, &|_| true).unwrap();
            assert_eq!(rep.states_reset, 0);
            run(&mut c, &evs, cut, &mut got);
            c.finish(&mut got);
            assert_eq!(got, whole, "cut at {cut}");
            assert_eq!(c.counters("pay"), a.counters("pay"));
        }
    }

    #[test]
    fn changed_statements_reset_only_their_state() {
        let mut cat = Catalog::new();
        assert!(cat.check_source(RULES).iter().all(|d| !d.is_error()));
        let evs = events();
        let mut out = Vec::new();
        let mut a = engine(&cat);
        run(&mut a, &evs[..100], 0, &mut out);
        let snap = a.snapshot();
        let mut b = engine(&cat);
        let rep = b.restore(snap.clone(), &|n| n != "per_card").unwrap();
        assert_eq!((rep.states_kept, rep.states_reset), (1, 1));
        let mut wrong = snap;
        wrong.version = 99;
        assert!(b.restore(wrong, &|_| true).is_err());
    }
}
