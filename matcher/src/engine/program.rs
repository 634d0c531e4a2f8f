//! The program of one catalog version: every statement compiled, immutable, shared
//! (`Arc`) by every partition. [`Program::compile`] builds it from a catalog;
//! [`Program::apply`] builds the next version from the previous one, compiling only the
//! statements that changed and reusing (`Arc`) the compiled form of the others.

use super::search::{SearchRt, StreamSearches};
use super::{EngineConfig, Residual};
use crate::cep::{CepRule, CepRuleSet};
use crate::metric::{MetricPlan, MetricState};
use crate::value::RowDecoder;
use dsl::ast::{DataType, ObjectKind, StatementKind};
use dsl::check::{Catalog, Entry, Plan};
use dsl::plan::{LatePolicy, StreamDef};
use dsl::Diagnostic;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// How a stream gets its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// Declared with CREATE STREAM: events are written to it.
    Source,
    /// A source stream re-keyed for statements grouped by another column (written by the
    /// service; its watermark comes from outside).
    Hidden,
    /// The output of a rule, search or metric that another statement reads FROM.
    Derived,
}

/// A stream's definition as the engine reads it, and its decoder.
#[derive(Debug)]
pub(crate) struct StreamBase {
    pub def: StreamDef,
    pub decoder: RowDecoder,
    pub kind: StreamKind,
}

/// Everything compiled that reads one stream.
#[derive(Debug)]
pub(crate) struct StreamProgram {
    pub base: Arc<StreamBase>,
    pub cep: Option<Arc<CepRuleSet>>,
    pub searches: Option<Arc<StreamSearches>>,
    /// Each metric with an empty state (partition 0) to start from.
    pub metrics: Vec<(Arc<MetricPlan>, Arc<MetricState>)>,
}

impl StreamProgram {
    pub fn external_watermark(&self) -> bool {
        self.base.kind == StreamKind::Hidden
    }

    pub fn has_readers(&self) -> bool {
        self.cep.is_some()
            || self.searches.as_ref().is_some_and(|s| !s.is_empty())
            || !self.metrics.is_empty()
    }
}

/// Every statement of one catalog version, compiled. Immutable and `Send + Sync`: one per
/// version, shared by every partition worker, each with its own [`super::State`].
pub struct Program {
    pub(crate) config: EngineConfig,
    catalog: Catalog,
    pub(crate) streams: HashMap<String, Arc<StreamProgram>>,
    /// Source stream names in catalog order (for error messages).
    pub(crate) source_names: Vec<String>,
    /// How many statements read FROM each name; derived streams with readers are fed back.
    readers: HashMap<String, usize>,
    /// Every stream with a program in catalog order: each after the streams it reads.
    pub(crate) order: Vec<String>,
    /// Repartitioned (hidden) stream name → its source stream.
    pub(crate) hidden: HashMap<String, String>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("streams", &self.order)
            .finish_non_exhaustive()
    }
}

/// What must be rebuilt for one stream.
#[derive(Default)]
struct Dirty {
    /// The stream's own definition (its statement, or its repartitioning).
    def: bool,
    /// The stream's own statement changed: its state starts again even when its
    /// definition reads the same.
    entry: bool,
    rules: bool,
    metrics: bool,
    /// Searches reading the stream that were removed or changed (by name).
    searches_removed: HashSet<String>,
    /// Searches reading the stream that are new or changed, in catalog order.
    searches_added: Vec<Arc<Entry>>,
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

impl Program {
    /// A program without statements.
    pub fn empty(config: &EngineConfig) -> Program {
        Program {
            config: EngineConfig {
                repartition: Vec::new(),
                ..config.clone()
            },
            catalog: Catalog::new(),
            streams: HashMap::new(),
            source_names: Vec::new(),
            readers: HashMap::new(),
            order: Vec::new(),
            hidden: HashMap::new(),
        }
    }

    /// Compiles every statement of `catalog`.
    pub fn compile(catalog: &Catalog, config: &EngineConfig) -> Result<Program, Vec<Diagnostic>> {
        Program::empty(config).apply(catalog, config)
    }

    /// The catalog this program was compiled from.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The configuration this program was compiled with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The program of `catalog` (a later version of this program's catalog), compiled
    /// from this one: statements whose checked entry is the same (`Arc`) keep their
    /// compiled form; only the changed ones, and the rule set or metric list of a stream
    /// one of them reads, are compiled. The state of unchanged statements carries over
    /// ([`super::State::carry_over`]). Errors name every changed statement that cannot be
    /// compiled; this program is unaffected.
    pub fn apply(
        &self,
        catalog: &Catalog,
        config: &EngineConfig,
    ) -> Result<Program, Vec<Diagnostic>> {
        // (`SearchLimits` has no `PartialEq`; its Debug form says the same.)
        let limits_differ = format!("{:?}", config.search) != format!("{:?}", self.config.search);
        if config.cep != self.config.cep || limits_differ {
            return Program::empty(config).apply(catalog, config);
        }
        let changed = catalog.changed_since(&self.catalog);
        let mut next = Program {
            config: config.clone(),
            catalog: catalog.clone(),
            streams: self.streams.clone(),
            source_names: Vec::new(),
            readers: self.readers.clone(),
            order: Vec::new(),
            hidden: HashMap::new(),
        };
        let mut dirty: BTreeMap<String, Dirty> = BTreeMap::new();
        // Repartitioning changed: the hidden streams and their readers are rebuilt.
        let old_reads = reads_hidden(&self.config);
        let new_reads = reads_hidden(config);
        if self.config.repartition != config.repartition {
            for r in self.config.repartition.iter().chain(&config.repartition) {
                dirty.entry(r.stream.clone()).or_default().def = true;
                let d = dirty.entry(r.source.clone()).or_default();
                d.rules = true;
                d.metrics = true;
            }
        }
        let input_of = |e: &Entry, reads: &HashMap<String, String>| -> Option<String> {
            match reads.get(&e.name) {
                Some(h) => Some(h.clone()),
                None => e.from().map(str::to_string),
            }
        };
        let mut set_changed = false;
        for c in &changed {
            for (e, reads, sign) in [(&c.old, &old_reads, -1i64), (&c.new, &new_reads, 1)] {
                let Some(e) = e else { continue };
                if let Some(from) = e.from() {
                    let n = next.readers.entry(from.to_string()).or_insert(0);
                    let before = *n;
                    *n = (*n as i64 + sign).max(0) as usize;
                    if (before == 0) != (*n == 0) {
                        // A derived stream gains its first or loses its last reader.
                        dirty.entry(from.to_string()).or_default().def = true;
                        set_changed = true;
                    }
                }
                let d = dirty.entry(e.name.clone()).or_default();
                d.def = true;
                d.entry = true;
                if e.kind == ObjectKind::Stream {
                    set_changed = true;
                    for r in config.repartition.iter().filter(|r| r.source == e.name) {
                        dirty.entry(r.stream.clone()).or_default().def = true;
                    }
                }
                let Some(input) = input_of(e, reads) else {
                    continue;
                };
                let d = dirty.entry(input).or_default();
                match e.kind {
                    ObjectKind::Rule => d.rules = true,
                    ObjectKind::Metric => d.metrics = true,
                    ObjectKind::Search if sign < 0 => {
                        d.searches_removed.insert(e.name.clone());
                    }
                    ObjectKind::Search => d.searches_added.push(e.clone()),
                    ObjectKind::Stream => {}
                }
            }
        }
        next.readers.retain(|_, n| *n > 0);
        // Rebuild in catalog order: a stream's inputs before it.
        let mut todo: Vec<(usize, String)> = dirty
            .keys()
            .map(|n| (depth(catalog, config, n), n.clone()))
            .collect();
        todo.sort();
        let mut diags = Vec::new();
        for (_, name) in todo {
            let Some(d) = dirty.remove(&name) else {
                continue;
            };
            match next.rebuild_stream(&name, d, self, &new_reads, &mut diags) {
                Some(sp) => {
                    next.streams.insert(name, Arc::new(sp));
                }
                None => {
                    if next.streams.remove(&name).is_some() {
                        set_changed = true;
                    }
                }
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        if set_changed || self.config.repartition != config.repartition {
            next.index_streams();
        } else {
            next.source_names = self.source_names.clone();
            next.order = self.order.clone();
            next.hidden = self.hidden.clone();
        }
        Ok(next)
    }

    /// `source_names`, `order` and `hidden`, from the catalog (catalog order).
    fn index_streams(&mut self) {
        self.source_names.clear();
        self.order.clear();
        self.hidden.clear();
        for e in self.catalog.entries() {
            if e.kind == ObjectKind::Stream {
                self.source_names.push(e.name.clone());
            }
            if self.streams.contains_key(&e.name) {
                self.order.push(e.name.clone());
            }
            for r in self
                .config
                .repartition
                .iter()
                .filter(|r| r.source == e.name)
            {
                if self.streams.contains_key(&r.stream) {
                    self.order.push(r.stream.clone());
                    self.hidden.insert(r.stream.clone(), e.name.clone());
                }
            }
        }
    }

    /// The definition of stream `name` in this (new) program: `None` when no stream of
    /// that name needs a program (dropped, or a derived stream nobody reads).
    fn stream_def(
        &self,
        name: &str,
        old: &Program,
        reads: &HashMap<String, String>,
    ) -> Option<(StreamDef, StreamKind)> {
        if let Some(r) = self.config.repartition.iter().find(|r| r.stream == name) {
            let src = self.catalog.get(&r.source)?;
            let mut def = src.output.clone();
            def.name = r.stream.clone();
            def.key = r.by.clone();
            return Some((def, StreamKind::Hidden));
        }
        let e = self.catalog.get(name)?;
        match (&e.statement.kind, &e.plan) {
            (StatementKind::CreateStream(_), _) => Some((e.output.clone(), StreamKind::Source)),
            _ if !self.readers.contains_key(name) => None,
            (StatementKind::CreateRule(r), Plan::Rule(_)) => {
                let input = reads.get(name).cloned().or(e.from().map(str::to_string))?;
                let sp = self.streams.get(&input)?;
                let rule = sp.cep.as_ref()?.rules().iter().find(|x| x.name() == name)?;
                let _ = old;
                Some((
                    derived_def(
                        &rule.output_stream(),
                        sp.base.def.max_delay_ms + r.within.map_or(0, |w| w.millis),
                    ),
                    StreamKind::Derived,
                ))
            }
            (StatementKind::CreateSearch(_), _) | (StatementKind::CreateMetric(_), _) => {
                let input = reads.get(name).cloned().or(e.from().map(str::to_string))?;
                let sp = self.streams.get(&input)?;
                Some((
                    derived_def(&e.output, sp.base.def.max_delay_ms),
                    StreamKind::Derived,
                ))
            }
            _ => None,
        }
    }

    /// The program of stream `name` after the changes `d`; `None` when the stream needs
    /// none.
    fn rebuild_stream(
        &mut self,
        name: &str,
        mut d: Dirty,
        old: &Program,
        reads: &HashMap<String, String>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<StreamProgram> {
        let prev = self.streams.get(name).cloned();
        let (base, def_changed) = match (&prev, d.def) {
            (Some(p), false) => (p.base.clone(), false),
            _ => {
                let (def, kind) = self.stream_def(name, old, reads)?;
                match &prev {
                    Some(p) if !d.entry && p.base.def == def && p.base.kind == kind => {
                        (p.base.clone(), false)
                    }
                    _ => (
                        Arc::new(StreamBase {
                            decoder: RowDecoder::new(&def),
                            def,
                            kind,
                        }),
                        true,
                    ),
                }
            }
        };
        if def_changed {
            // Everything reading the stream is compiled again against the new definition.
            d.rules = true;
            d.metrics = true;
        }
        let readers = |kind: ObjectKind| -> Vec<Arc<Entry>> {
            self.catalog
                .entries()
                .iter()
                .filter(|e| e.kind == kind)
                .filter(|e| match reads.get(&e.name) {
                    Some(h) => h == name,
                    None => e.from() == Some(name),
                })
                .cloned()
                .collect()
        };
        let unchanged_old = |e: &Arc<Entry>| {
            !def_changed
                && old
                    .catalog
                    .get_arc(&e.name)
                    .is_some_and(|o| Arc::ptr_eq(&o, e))
                && old.config.repartition == self.config.repartition
        };
        // Rules: the set is built again from the compiled rules of unchanged statements
        // and the new compilations of the changed ones.
        let cep = if d.rules {
            let mut rules: Vec<Arc<CepRule>> = Vec::new();
            let old_rules: HashMap<&str, &Arc<CepRule>> = prev
                .as_ref()
                .and_then(|p| p.cep.as_ref())
                .map(|s| s.rules().iter().map(|r| (r.name(), r)).collect())
                .unwrap_or_default();
            for e in readers(ObjectKind::Rule) {
                if let (true, Some(r)) = (unchanged_old(&e), old_rules.get(e.name.as_str())) {
                    rules.push((*r).clone());
                    continue;
                }
                let StatementKind::CreateRule(r) = &e.statement.kind else {
                    continue;
                };
                match CepRule::compile(r, &base.def, &self.config.cep) {
                    Ok(rule) => rules.push(Arc::new(rule)),
                    Err(mut err) => {
                        // An error of the whole pattern (its size) points at the rule.
                        if err.span == dsl::ast::Span::default() {
                            err.span = r.name.span;
                        }
                        diags.push(err.into())
                    }
                }
            }
            if rules.is_empty() {
                None
            } else {
                match CepRuleSet::from_arcs(rules) {
                    Ok(set) => Some(Arc::new(set)),
                    Err(err) => {
                        diags.push(err.into());
                        None
                    }
                }
            }
        } else {
            prev.as_ref().and_then(|p| p.cep.clone())
        };
        let metrics = if d.metrics {
            let mut out = Vec::new();
            for e in readers(ObjectKind::Metric) {
                let reuse = unchanged_old(&e)
                    .then(|| {
                        prev.as_ref()?
                            .metrics
                            .iter()
                            .find(|(p, _)| *p.name == e.name)
                            .cloned()
                    })
                    .flatten();
                if let Some(m) = reuse {
                    out.push(m);
                    continue;
                }
                let (StatementKind::CreateMetric(m), Plan::Metric(mp)) =
                    (&e.statement.kind, &e.plan)
                else {
                    continue;
                };
                let compiled = MetricPlan::compile(m, &base.def, &mp.options)
                    .and_then(|plan| plan.new_state().map(|s| (plan, s)));
                match compiled {
                    Ok((plan, state)) => out.push((Arc::new(plan), Arc::new(state))),
                    Err(err) => diags.push(Diagnostic::error(err.span, err.message)),
                }
            }
            out
        } else {
            prev.as_ref().map(|p| p.metrics.clone()).unwrap_or_default()
        };
        let searches = if def_changed {
            // Every search of the stream: compiled again (the checker changed their
            // entries too, so they are all in `searches_added`, or new).
            let all = readers(ObjectKind::Search);
            self.searches(None, &[], all, &base.def, diags)
        } else if d.searches_removed.is_empty() && d.searches_added.is_empty() {
            prev.as_ref().and_then(|p| p.searches.clone())
        } else {
            let removed: Vec<&str> = d.searches_removed.iter().map(String::as_str).collect();
            let old_s = prev.as_ref().and_then(|p| p.searches.clone());
            self.searches(
                old_s.as_deref(),
                &removed,
                std::mem::take(&mut d.searches_added),
                &base.def,
                diags,
            )
        };
        Some(StreamProgram {
            base,
            cep,
            searches,
            metrics,
        })
    }

    /// The searches of a stream: `old` minus `remove`, plus `add` compiled.
    fn searches(
        &self,
        old: Option<&StreamSearches>,
        remove: &[&str],
        add: Vec<Arc<Entry>>,
        input: &StreamDef,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Arc<StreamSearches>> {
        let mut compiled: Vec<Residual> = Vec::new();
        let mut spans = HashMap::new();
        for e in add {
            let StatementKind::CreateSearch(s) = &e.statement.kind else {
                continue;
            };
            match SearchRt::compile(s, input, &e.name, e.seq) {
                Ok(rt) => {
                    spans.insert(e.name.clone(), s.filter.span);
                    compiled.push(Arc::new(rt));
                }
                Err(d) => diags.push(d),
            }
        }
        match StreamSearches::with_changes(old, remove, compiled, &self.config.search) {
            Ok(s) if s.is_empty() => None,
            Ok(s) => Some(Arc::new(s)),
            Err((name, msg)) => {
                let span = spans.get(&name).copied().unwrap_or_default();
                diags.push(Diagnostic::error(span, msg));
                None
            }
        }
    }

    /// The streams events can be written to (declared with CREATE STREAM).
    pub fn source_streams(&self) -> &[String] {
        &self.source_names
    }

    /// Every stream with a program (sources, repartitioned copies, derived streams that
    /// statements read), in catalog order.
    pub fn stream_names(&self) -> &[String] {
        &self.order
    }

    /// True when records of statement `name` are read back as a derived stream.
    pub(crate) fn is_read(&self, name: &str) -> bool {
        self.readers.contains_key(name)
    }
}

/// Statement name → the hidden stream it reads.
fn reads_hidden(config: &EngineConfig) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for r in &config.repartition {
        for st in &r.statements {
            m.insert(st.clone(), r.stream.clone());
        }
    }
    m
}

/// How many streams lie upstream of `name` (a hidden stream is one below its source).
fn depth(catalog: &Catalog, config: &EngineConfig, name: &str) -> usize {
    if let Some(r) = config.repartition.iter().find(|r| r.stream == name) {
        return 1 + depth(catalog, config, &r.source);
    }
    let mut n = 0;
    let mut cur = catalog.get(name);
    while let Some(e) = cur {
        match e.from() {
            Some(f) if n <= catalog.len() => {
                n += 1;
                cur = catalog.get(f);
            }
            _ => break,
        }
    }
    n * 2
}
