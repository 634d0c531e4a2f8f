//! Semantic check: statements → a validated [`Catalog`] of streams, rules, searches and
//! metrics, or diagnostics saying what is wrong and where.
//!
//! ```
//! use dsl::check::Catalog;
//! let mut catalog = Catalog::new();
//! let (statements, syntax) = dsl::parse::parse_statements(
//!     "CREATE STREAM payments (card_id STRING, amount FLOAT, ts TIMESTAMP) \
//!      WITH (event_time = 'ts');",
//! );
//! assert!(syntax.is_empty());
//! // `apply` is all-or-nothing: on any error nothing is applied.
//! let applied = catalog.apply(&statements).expect("valid");
//! assert!(applied.warnings.is_empty());
//! # let _ = applied;
//! ```
//!
//! What the engines use:
//! - [`Catalog::entries`]: every statement in application order (a statement always comes
//!   after the stream it reads FROM), each an [`Entry`] with its AST, its output
//!   [`StreamDef`], and a [`Plan`] (for a rule: the input stream and pattern variables).
//! - [`Catalog::stream`]: the `StreamDef` of any readable name (streams and the outputs of
//!   rules, searches and metrics).
//!
//! Decisions where the language contract is silent (documented for users in
//! docs/language.md):
//! - All statements share one namespace (a rule's output is a stream named after it).
//!   Names are case-sensitive; keywords and function names are not.
//! - In a stream that declares columns, a bare name that is not a declared column is an
//!   error; a dotted path whose root is undeclared reads an undeclared JSON field with a
//!   warning (outside rules; in a rule `x.col` must start at a variable or column), unless
//!   the root looks like a typo. The outputs of rules, metrics and searches with EMIT have
//!   exactly their columns ([`Entry::undeclared_fields`]).
//! - A dotted path on a declared column needs a JSON column.
//! - Types are checked where they are known (declared columns, literals); JSON values are
//!   checked at run time.

mod deadline;
mod expr;
mod names;
mod options;

pub use options::parse_duration;

use crate::ast::{
    AfterMatch, CreateMetric, CreateRule, CreateSearch, CreateStream, DataType, Expr, ExprKind,
    Ident, ObjectKind, Pattern, Span, Statement, StatementKind, WindowKind,
};
use crate::error::Diagnostic;
use crate::plan::{MetricOptions, StreamDef};
use expr::{has_aggregate, has_matches, Cx, Place, Ty, Vars};
use names::{did_you_mean, list};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A checked statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub kind: ObjectKind,
    /// The statement as written. Its spans point into the text it was applied from.
    pub statement: Statement,
    /// The stream this statement defines: the stream itself, or the output of a rule,
    /// search or metric (readable `FROM` by later statements).
    pub output: StreamDef,
    /// True for the output of a rule, search or metric. Its columns end with `ts`
    /// (TIMESTAMP, the output record's time; for a metric, the window's end) unless an
    /// output column already has that name, and `ts` is its event time.
    pub derived: bool,
    /// Events of this stream may carry fields beyond `output.columns`, readable as JSON:
    /// true for a `CREATE STREAM`, and for a search without EMIT over such a stream.
    pub undeclared_fields: bool,
    pub plan: Plan,
    /// When the statement was created or last replaced (catalog-wide, increasing): the
    /// order of the statements reading one stream is the order of their `seq`.
    pub seq: u64,
    batch: u64,
}

impl Entry {
    /// The name this statement reads FROM (none for a stream).
    pub fn from(&self) -> Option<&str> {
        from_of(&self.statement)
    }
}

/// Engine-facing facts that check worked out, per statement kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Stream,
    Rule(RulePlan),
    Search(SearchPlan),
    Metric(MetricPlan),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RulePlan {
    /// The stream the rule reads (a snapshot taken when the rule was checked).
    pub input: StreamDef,
    /// Pattern variables that match rows, in order of first appearance in PATTERN.
    pub variables: Vec<String>,
    /// Variables used only as absences (`!v`), in order of appearance.
    pub absent: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchPlan {
    pub input: StreamDef,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricPlan {
    pub input: StreamDef,
    pub options: MetricOptions,
}

/// What a statement did when applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Replaced,
    Dropped,
    /// `DROP ... IF EXISTS` of a missing name.
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedStatement {
    pub kind: ObjectKind,
    pub name: String,
    pub action: Action,
}

/// The result of a successful [`Catalog::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub applied: Vec<AppliedStatement>,
    /// Warnings (e.g. a rule without WITHIN); they do not stop the statements.
    pub warnings: Vec<Diagnostic>,
}

/// All checked statements, by name, in application order.
///
/// Cheap to clone and to change by one statement at a million entries: entries are
/// shared (`Arc`) and held in persistent structures ([`imbl`]): a clone shares
/// everything, a change copies a path of the trees, and [`Catalog::changed_since`] skips
/// the parts two versions share.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    entries: imbl::Vector<Arc<Entry>>,
    by_name: imbl::OrdMap<String, Arc<Entry>>,
    /// How many entries read `FROM` each name: a DROP asks this instead of scanning every
    /// entry (a million searches).
    readers: imbl::OrdMap<String, u32>,
    batch: u64,
    /// The next [`Entry::seq`].
    seq: u64,
}

/// A statement that differs between two catalog versions ([`Catalog::changed_since`]).
#[derive(Debug, Clone)]
pub struct Change {
    pub name: String,
    /// The entry in the older version (`None`: created since).
    pub old: Option<Arc<Entry>>,
    /// The entry in the newer version (`None`: dropped since).
    pub new: Option<Arc<Entry>>,
}

pub(crate) fn kind_word(k: ObjectKind) -> &'static str {
    match k {
        ObjectKind::Stream => "stream",
        ObjectKind::Rule => "rule",
        ObjectKind::Search => "search",
        ObjectKind::Metric => "metric",
    }
}

fn kind_keyword(k: ObjectKind) -> &'static str {
    match k {
        ObjectKind::Stream => "STREAM",
        ObjectKind::Rule => "RULE",
        ObjectKind::Search => "SEARCH",
        ObjectKind::Metric => "METRIC",
    }
}

fn from_of(s: &Statement) -> Option<&str> {
    match &s.kind {
        StatementKind::CreateRule(r) => Some(&r.from.name),
        StatementKind::CreateSearch(x) => Some(&x.from.name),
        StatementKind::CreateMetric(m) => Some(&m.from.name),
        _ => None,
    }
}

fn from_ident(s: &Statement) -> Option<&Ident> {
    match &s.kind {
        StatementKind::CreateRule(r) => Some(&r.from),
        StatementKind::CreateSearch(x) => Some(&x.from),
        StatementKind::CreateMetric(m) => Some(&m.from),
        _ => None,
    }
}

impl Catalog {
    pub fn new() -> Self {
        Catalog::default()
    }

    /// Every checked statement in application order: each comes after what it reads FROM.
    pub fn entries(&self) -> &imbl::Vector<Arc<Entry>> {
        &self.entries
    }

    /// The number of statements.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|e| &**e)
    }

    /// The entry of `name`, shared.
    pub fn get_arc(&self, name: &str) -> Option<Arc<Entry>> {
        self.by_name.get(name).cloned()
    }

    /// The statements that differ from `old` (created, replaced, dropped, or checked
    /// again because what they read changed), by name. Parts both versions share are
    /// skipped, so between a version and the next this costs in proportion to the change.
    pub fn changed_since(&self, old: &Catalog) -> Vec<Change> {
        use imbl::ordmap::DiffItem;
        old.by_name
            .diff(&self.by_name)
            .filter_map(|d| match d {
                DiffItem::Add(k, v) => Some(Change {
                    name: k.clone(),
                    old: None,
                    new: Some(v.clone()),
                }),
                DiffItem::Update {
                    old: (k, a),
                    new: (_, b),
                } => (!Arc::ptr_eq(a, b)).then(|| Change {
                    name: k.clone(),
                    old: Some(a.clone()),
                    new: Some(b.clone()),
                }),
                DiffItem::Remove(k, v) => Some(Change {
                    name: k.clone(),
                    old: Some(v.clone()),
                    new: None,
                }),
            })
            .collect()
    }

    fn push_entry(&mut self, e: Entry) {
        let e = Arc::new(e);
        self.by_name.insert(e.name.clone(), e.clone());
        if let Some(f) = e.from() {
            *self.readers.entry(f.to_string()).or_insert(0) += 1;
        }
        self.entries.push_back(e);
    }

    fn remove_entry(&mut self, i: usize) {
        let e = self.entries.remove(i);
        self.by_name.remove(&e.name);
        if let Some(f) = e.from() {
            match self.readers.get(f).copied() {
                Some(n) if n > 1 => {
                    self.readers.insert(f.to_string(), n - 1);
                }
                _ => {
                    self.readers.remove(f);
                }
            }
        }
    }

    /// The stream readable under `name`: a declared stream or a statement's output.
    pub fn stream(&self, name: &str) -> Option<&StreamDef> {
        self.get(name).map(|e| &e.output)
    }

    /// Check and apply statements, all or nothing: if any statement has an error, the
    /// catalog is unchanged and every diagnostic (errors and warnings) is returned.
    /// Statements see the ones before them in the same call.
    pub fn apply(&mut self, statements: &[Statement]) -> Result<Applied, Vec<Diagnostic>> {
        let mut work = self.clone();
        let (applied, diags) = work.check_batch(statements);
        if diags.iter().any(Diagnostic::is_error) {
            return Err(diags);
        }
        *self = work;
        Ok(Applied {
            applied,
            warnings: diags,
        })
    }

    /// Parse and check a statement file into this catalog, leniently: statements with
    /// errors are still recorded (so later statements are checked against them) and every
    /// diagnostic is returned. Used by `weir check`; a service should use [`Catalog::apply`].
    pub fn check_source(&mut self, src: &str) -> Vec<Diagnostic> {
        let (statements, mut diags) = crate::parse::parse_statements(src);
        let (_, more) = self.check_batch(&statements);
        diags.extend(more);
        diags.sort_by_key(|d| (d.span.start, d.span.end));
        diags
    }

    /// Check statements one by one, recording each (even with errors).
    pub fn check_batch(
        &mut self,
        statements: &[Statement],
    ) -> (Vec<AppliedStatement>, Vec<Diagnostic>) {
        self.batch += 1;
        let mut diags = Vec::new();
        let mut applied = Vec::new();
        for s in statements {
            if let Some(a) = self.check_one(s, &mut diags) {
                applied.push(a);
            }
        }
        (applied, diags)
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        let e = self.by_name.get(name)?;
        self.entries.iter().position(|x| Arc::ptr_eq(x, e))
    }

    fn note_if_here(&self, d: Diagnostic, e: &Entry, span: Span, note: &str) -> Diagnostic {
        if e.batch == self.batch {
            d.with_note(span, note)
        } else {
            d
        }
    }

    fn unknown_name(&self, name: &Ident, what: &str) -> Diagnostic {
        let names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        let mut msg = format!("unknown {what} `{}`", name.name);
        if let Some(m) = did_you_mean(&name.name, names.iter().copied()) {
            msg.push_str(&format!("; did you mean `{m}`?"));
        } else if names.is_empty() {
            msg.push_str("; no streams exist yet (CREATE STREAM first)");
        } else {
            msg.push_str(&format!("; known streams: {}", list(&names)));
        }
        Diagnostic::error(name.span, msg)
    }

    fn check_one(
        &mut self,
        s: &Statement,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<AppliedStatement> {
        let (kind, name, or_replace) = match &s.kind {
            StatementKind::Drop(d) => return self.drop(d, diags),
            StatementKind::CreateStream(c) => (ObjectKind::Stream, &c.name, c.or_replace),
            StatementKind::CreateRule(c) => (ObjectKind::Rule, &c.name, c.or_replace),
            StatementKind::CreateSearch(c) => (ObjectKind::Search, &c.name, c.or_replace),
            StatementKind::CreateMetric(c) => (ObjectKind::Metric, &c.name, c.or_replace),
        };
        let existing = self.get_arc(&name.name);
        if let Some(e) = &existing {
            if !or_replace {
                let d = Diagnostic::error(
                    name.span,
                    format!(
                        "{} `{}` already exists; write CREATE OR REPLACE {} to change it",
                        kind_word(e.kind),
                        name.name,
                        kind_keyword(kind)
                    ),
                );
                let span = statement_name(&e.statement).map_or(e.statement.span, |n| n.span);
                diags.push(self.note_if_here(d, e, span, "first defined here"));
                return None;
            }
            if e.kind != kind {
                diags.push(Diagnostic::error(
                    name.span,
                    format!(
                        "`{}` is a {}; DROP {} {} first to reuse the name for a {}",
                        name.name,
                        kind_word(e.kind),
                        kind_keyword(e.kind),
                        name.name,
                        kind_word(kind)
                    ),
                ));
                return None;
            }
        }
        // The input stream.
        let mut input = None;
        if let Some(from) = from_ident(s) {
            if from.name == name.name {
                diags.push(Diagnostic::error(
                    from.span,
                    format!("`{}` cannot read FROM its own output", name.name),
                ));
            } else if let Some(i) = self.get_arc(&from.name) {
                if existing.is_some() && self.depends_on(&from.name, &name.name) {
                    diags.push(Diagnostic::error(
                        from.span,
                        format!(
                            "`{}` reads (through other statements) from `{}`; this would be a cycle",
                            from.name, name.name
                        ),
                    ));
                } else {
                    input = Some(i);
                }
            } else {
                diags.push(self.unknown_name(from, "stream"));
            }
        }
        let (input_def, input_derived, input_open) = match input {
            Some(e) => (e.output.clone(), Some(e.derived), e.undeclared_fields),
            // Unknown input: check the rest against a schemaless stand-in.
            None => (stand_in(from_of(s).unwrap_or("")), None, true),
        };
        let first_new = diags.len();
        let (output, plan) = check_statement(s, &input_def, input_derived, input_open, diags);
        dedup_warnings(diags, first_new);
        let entry = Entry {
            name: name.name.clone(),
            kind,
            statement: s.clone(),
            output,
            derived: kind != ObjectKind::Stream,
            undeclared_fields: undeclared_fields(s, input_open),
            plan,
            seq: self.seq,
            batch: self.batch,
        };
        self.seq += 1;
        let action = match existing.and_then(|_| self.index_of(&name.name)) {
            Some(i) => {
                self.remove_entry(i);
                self.push_entry(entry);
                if self
                    .entries
                    .iter()
                    .any(|e| e.from() == Some(name.name.as_str()))
                {
                    self.recheck_dependents(&name.name, name.span, diags);
                    self.sort();
                }
                Action::Replaced
            }
            None => {
                self.push_entry(entry);
                Action::Created
            }
        };
        Some(AppliedStatement {
            kind,
            name: name.name.clone(),
            action,
        })
    }

    /// Does `name` read (directly or through others) from `target`?
    fn depends_on(&self, name: &str, target: &str) -> bool {
        let mut cur = name.to_string();
        for _ in 0..=self.entries.len() {
            if cur == target {
                return true;
            }
            match self.get(&cur).and_then(Entry::from) {
                Some(f) => cur = f.to_string(),
                None => return false,
            }
        }
        true
    }

    /// After `name` was replaced, check again everything that reads from it (transitively).
    fn recheck_dependents(&mut self, name: &str, at: Span, diags: &mut Vec<Diagnostic>) {
        let mut changed: BTreeSet<String> = BTreeSet::from([name.to_string()]);
        for _ in 0..self.entries.len() {
            let mut progressed = false;
            for i in 0..self.entries.len() {
                let e = &self.entries[i];
                let Some(from) = e.from() else { continue };
                if !changed.contains(from) || changed.contains(&e.name) {
                    continue;
                }
                let Some(src) = self.get(from) else { continue };
                let (input, derived, open) =
                    (src.output.clone(), Some(src.derived), src.undeclared_fields);
                let mut scratch = Vec::new();
                let (output, plan) =
                    check_statement(&e.statement, &input, derived, open, &mut scratch);
                if let Some(err) = scratch.iter().find(|d| d.is_error()) {
                    diags.push(Diagnostic::error(
                        at,
                        format!(
                            "replacing `{name}` breaks {} `{}`: {}",
                            kind_word(e.kind),
                            e.name,
                            err.message
                        ),
                    ));
                } else if let Some(w) = scratch.iter().find(|d| {
                    // Warnings the reader did not have before (e.g. a column it reads was
                    // removed and is now an undeclared field).
                    !d.is_error()
                        && !d.message.contains("has no WITHIN")
                        && !d.message.contains("is partitioned by its key")
                }) {
                    diags.push(Diagnostic::warning(
                        at,
                        format!(
                            "replacing `{name}` changes {} `{}`: {}",
                            kind_word(e.kind),
                            e.name,
                            w.message
                        ),
                    ));
                }
                let dep = e.name.clone();
                let mut e = Entry::clone(e);
                e.output = output;
                e.plan = plan;
                e.undeclared_fields = undeclared_fields(&e.statement, open);
                let e = Arc::new(e);
                self.by_name.insert(dep.clone(), e.clone());
                self.entries.set(i, e);
                changed.insert(dep);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    /// Stable topological order: each entry after the one it reads FROM.
    fn sort(&mut self) {
        let mut placed: BTreeSet<String> = BTreeSet::new();
        let mut rest: Vec<Arc<Entry>> = std::mem::take(&mut self.entries).into_iter().collect();
        let names: BTreeSet<String> = rest.iter().map(|e| e.name.clone()).collect();
        while !rest.is_empty() {
            let before = rest.len();
            let mut keep = Vec::new();
            for e in rest {
                let ready = e
                    .from()
                    .is_none_or(|f| placed.contains(f) || !names.contains(f));
                if ready {
                    placed.insert(e.name.clone());
                    self.entries.push_back(e);
                } else {
                    keep.push(e);
                }
            }
            rest = keep;
            if rest.len() == before {
                // A cycle (prevented by check); keep the remaining order.
                self.entries.extend(rest.drain(..));
            }
        }
    }

    fn drop(
        &mut self,
        d: &crate::ast::Drop,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<AppliedStatement> {
        let Some(i) = self.index_of(&d.name.name) else {
            if d.if_exists {
                return Some(AppliedStatement {
                    kind: d.kind,
                    name: d.name.name.clone(),
                    action: Action::Unchanged,
                });
            }
            let mut diag = self.unknown_name(&d.name, kind_word(d.kind));
            diag.message
                .push_str(" (write DROP ... IF EXISTS to ignore a missing name)");
            diags.push(diag);
            return None;
        };
        let e = &self.entries[i];
        if e.kind != d.kind {
            diags.push(Diagnostic::error(
                d.name.span,
                format!(
                    "`{}` is a {}, not a {}; write DROP {} {}",
                    e.name,
                    kind_word(e.kind),
                    kind_word(d.kind),
                    kind_keyword(e.kind),
                    e.name
                ),
            ));
            return None;
        }
        let readers: Vec<&Arc<Entry>> = if self.readers.contains_key(d.name.name.as_str()) {
            self.entries
                .iter()
                .filter(|r| r.from() == Some(d.name.name.as_str()))
                .collect()
        } else {
            Vec::new()
        };
        if let Some(r) = readers.first() {
            let who: Vec<String> = readers
                .iter()
                .map(|r| format!("{} `{}`", kind_word(r.kind), r.name))
                .collect();
            let diag = Diagnostic::error(
                d.name.span,
                format!(
                    "cannot drop `{}`: {} read{} FROM it; drop {} first",
                    d.name.name,
                    who.join(", "),
                    if readers.len() == 1 { "s" } else { "" },
                    if readers.len() == 1 { "it" } else { "them" }
                ),
            );
            let span = from_ident(&r.statement).map_or(r.statement.span, |f| f.span);
            diags.push(self.note_if_here(diag, r, span, "read here"));
            return None;
        }
        self.remove_entry(i);
        Some(AppliedStatement {
            kind: d.kind,
            name: d.name.name.clone(),
            action: Action::Dropped,
        })
    }
}

/// Keep only the first of identical warnings from one statement (a name used many times).
fn dedup_warnings(diags: &mut Vec<Diagnostic>, from: usize) {
    let mut seen: Vec<String> = Vec::new();
    let mut i = from;
    while i < diags.len() {
        if !diags[i].is_error() {
            if seen.contains(&diags[i].message) {
                diags.remove(i);
                continue;
            }
            seen.push(diags[i].message.clone());
        }
        i += 1;
    }
}

/// The first column of a metric SELECT item that is outside every aggregate and not a
/// GROUP BY expression.
fn is_aggregate_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    expr::is_exact_agg(&n) || n.starts_with("approx_")
}

fn ungrouped_column(e: &Expr, group_by: &[Expr]) -> Option<Span> {
    if group_by.contains(e) {
        return None;
    }
    match &e.kind {
        ExprKind::Path(_) => Some(e.span),
        ExprKind::Function { name, .. } if is_aggregate_name(&name.name) => None,
        _ => e
            .children()
            .into_iter()
            .find_map(|c| ungrouped_column(c, group_by)),
    }
}

fn undeclared_fields(s: &Statement, input_open: bool) -> bool {
    match &s.kind {
        StatementKind::CreateStream(_) => true,
        StatementKind::CreateSearch(x) => x.emit.is_empty() && input_open,
        _ => false,
    }
}

fn statement_name(s: &Statement) -> Option<&Ident> {
    match &s.kind {
        StatementKind::CreateStream(c) => Some(&c.name),
        StatementKind::CreateRule(c) => Some(&c.name),
        StatementKind::CreateSearch(c) => Some(&c.name),
        StatementKind::CreateMetric(c) => Some(&c.name),
        StatementKind::Drop(d) => Some(&d.name),
    }
}

fn stand_in(name: &str) -> StreamDef {
    StreamDef {
        name: name.to_string(),
        columns: Vec::new(),
        event_time: None,
        max_delay_ms: 0,
        idle_timeout_ms: crate::plan::DEFAULT_IDLE_TIMEOUT_MS,
        late: Default::default(),
        key: None,
        kafka_topic: None,
        partitions: None,
    }
}

fn out_type(t: Ty) -> DataType {
    t.unwrap_or(DataType::Json)
}

/// Check one CREATE against its input stream; returns its output stream and plan.
/// `input_derived`: whether the input is another statement's output; `None` when the
/// input is unknown (already reported; checks that depend on it are skipped).
fn check_statement(
    s: &Statement,
    input: &StreamDef,
    input_derived: Option<bool>,
    input_open: bool,
    diags: &mut Vec<Diagnostic>,
) -> (StreamDef, Plan) {
    match &s.kind {
        StatementKind::CreateStream(c) => (check_stream(c, diags), Plan::Stream),
        StatementKind::CreateRule(r) => {
            let (out, plan) = check_rule(r, input, input_derived, input_open, diags);
            (with_record_time(out), Plan::Rule(plan))
        }
        StatementKind::CreateSearch(x) => (
            with_record_time(check_search(x, input, input_open, diags)),
            Plan::Search(SearchPlan {
                input: input.clone(),
            }),
        ),
        StatementKind::CreateMetric(m) => {
            let (out, options) = check_metric(m, input, input_open, diags);
            (
                with_record_time(out),
                Plan::Metric(MetricPlan {
                    input: input.clone(),
                    options,
                }),
            )
        }
        StatementKind::Drop(_) => (stand_in(""), Plan::Stream),
    }
}

/// Give a derived stream (a rule's, search's or metric's output) its time column: `ts`, the
/// output record's time, appended unless an output column is already called `ts`; it is the
/// stream's event time when it is a TIMESTAMP. Late rows are processed (`late = 'emit'`).
/// The same shape as `matcher::cep::CepRule::output_stream`.
fn with_record_time(mut out: StreamDef) -> StreamDef {
    match out.column_type("ts") {
        None => {
            out.columns.push(("ts".to_string(), DataType::Timestamp));
            out.event_time = Some("ts".to_string());
        }
        Some(DataType::Timestamp) => out.event_time = Some("ts".to_string()),
        Some(_) => out.event_time = None,
    }
    out.late = crate::plan::LatePolicy::Emit;
    out
}

/// Names must be unique; reports the second with a note at the first.
struct Unique<'a> {
    seen: HashMap<String, Span>,
    what: &'a str,
}

impl<'a> Unique<'a> {
    fn new(what: &'a str) -> Self {
        Unique {
            seen: HashMap::new(),
            what,
        }
    }
    fn add(&mut self, name: &str, span: Span, diags: &mut Vec<Diagnostic>) -> bool {
        if let Some(first) = self.seen.get(name) {
            diags.push(
                Diagnostic::error(span, format!("duplicate {} `{name}`", self.what))
                    .with_note(*first, "first defined here"),
            );
            return false;
        }
        self.seen.insert(name.to_string(), span);
        true
    }
}

fn check_stream(c: &CreateStream, diags: &mut Vec<Diagnostic>) -> StreamDef {
    let mut def = stand_in(&c.name.name);
    let mut unique = Unique::new("column");
    for col in &c.columns {
        if unique.add(&col.name.name, col.name.span, diags) {
            def.columns.push((col.name.name.clone(), col.ty));
        }
    }
    options::stream_options(&mut def, &c.options, diags);
    def
}

// ───────────────────────────── rules ─────────────────────────────

fn collect_vars(p: &Pattern, present: &mut Vec<Ident>, absent: &mut Vec<Ident>) {
    match p {
        Pattern::Var(v) => {
            if !present.iter().any(|x| x.name == v.name) {
                present.push(v.clone());
            }
        }
        Pattern::Absent(v) => {
            if !absent.iter().any(|x| x.name == v.name) {
                absent.push(v.clone());
            }
        }
        Pattern::Seq(items) | Pattern::FollowedBy(items) | Pattern::Alt(items) => {
            for i in items {
                collect_vars(i, present, absent);
            }
        }
        Pattern::Repeat { inner, .. } | Pattern::Exclude(inner) => {
            collect_vars(inner, present, absent)
        }
        Pattern::Anchor { .. } => {}
    }
}

/// Where `!v` may stand, quantifier bounds. `tail`: this node ends the whole pattern.
fn check_pattern(p: &Pattern, tail: bool, within: bool, diags: &mut Vec<Diagnostic>) {
    match p {
        Pattern::Var(_) | Pattern::Anchor { .. } => {}
        Pattern::Exclude(inner) => check_pattern(inner, false, within, diags),
        Pattern::Absent(v) => diags.push(Diagnostic::error(
            v.span,
            format!(
                "`!{}` must follow a term in a sequence, as in `a !{} b` (no {} between a and b) or `a !{}` (with WITHIN)",
                v.name, v.name, v.name, v.name
            ),
        )),
        Pattern::Seq(items) => {
            let last = items.len().saturating_sub(1);
            for (i, item) in items.iter().enumerate() {
                if let Pattern::Absent(v) = item {
                    if i == 0 {
                        diags.push(Diagnostic::error(
                            v.span,
                            format!("a sequence cannot start with `!{}`; absence is checked after a term, as in `a !{} b`", v.name, v.name),
                        ));
                    } else if matches!(items[i - 1], Pattern::Absent(_)) {
                        diags.push(Diagnostic::error(
                            v.span,
                            format!("two absences in a row; write one variable whose DEFINE covers both, then `!{}`", v.name),
                        ));
                    } else if i == last && !tail {
                        diags.push(Diagnostic::error(
                            v.span,
                            format!("`!{}` ends a group but not the pattern; a trailing absence must be the last term of the whole pattern", v.name),
                        ));
                    } else if i == last && tail && items[..i].iter().all(Pattern::can_be_empty) {
                        diags.push(Diagnostic::error(
                            v.span,
                            format!("the rows before a trailing `!{}` can be none; the wait needs a first row", v.name),
                        ));
                    } else if i == last && !within {
                        diags.push(Diagnostic::error(
                            v.span,
                            format!("a trailing `!{}` needs WITHIN: it means \"no {} within d of the first row\", e.g. PATTERN (a !{}) WITHIN 30 MINUTES", v.name, v.name, v.name),
                        ));
                    }
                } else {
                    check_pattern(item, tail && i == last, within, diags);
                }
            }
        }
        Pattern::FollowedBy(items) => {
            let last = items.len().saturating_sub(1);
            for (i, item) in items.iter().enumerate() {
                if let Pattern::Absent(v) = item {
                    diags.push(Diagnostic::error(
                        v.span,
                        format!("`!{}` cannot be an operand of `->`; write `a !{} b`", v.name, v.name),
                    ));
                } else {
                    check_pattern(item, tail && i == last, within, diags);
                }
            }
        }
        Pattern::Alt(items) => {
            for item in items {
                check_pattern(item, false, within, diags);
            }
        }
        Pattern::Repeat {
            inner,
            min,
            max,
            span,
            ..
        } => {
            if let Pattern::Absent(v) = inner.as_ref() {
                diags.push(Diagnostic::error(
                    v.span,
                    format!("`!{}` cannot be quantified", v.name),
                ));
            } else {
                check_pattern(inner, false, within, diags);
            }
            match max {
                Some(0) => diags.push(Diagnostic::error(
                    *span,
                    "this quantifier allows zero rows only; the term would never match",
                )),
                Some(m) if m < min => diags.push(Diagnostic::error(
                    *span,
                    format!("quantifier minimum {min} is larger than its maximum {m}"),
                )),
                _ => {}
            }
        }
    }
}

fn var_error(v: &Ident, vars: &Vars, diags: &mut Vec<Diagnostic>) -> bool {
    if vars.present.contains(&v.name) {
        return false;
    }
    if vars.absent.contains(&v.name) {
        diags.push(Diagnostic::error(
            v.span,
            format!("`{}` is an absence (!{}) and maps no rows", v.name, v.name),
        ));
        return true;
    }
    let pv: Vec<&str> = vars.present.iter().map(String::as_str).collect();
    let mut msg = format!("unknown pattern variable `{}`", v.name);
    if let Some(m) = did_you_mean(&v.name, pv.iter().copied()) {
        msg.push_str(&format!("; did you mean `{m}`?"));
    } else {
        msg.push_str(&format!("; PATTERN has {}", list(&pv)));
    }
    diags.push(Diagnostic::error(v.span, msg));
    true
}

/// When the input stream declares a `key`, events are spread over log partitions by it:
/// a rule or metric whose PARTITION BY / GROUP BY does not include that column needs one
/// group's events brought together. The service does that by copying the stream's events
/// into a hidden stream re-keyed by the first PARTITION BY / GROUP BY column (or into one
/// partition without one): correct, but one more log write per event. Warn about the cost.
fn key_alignment_warning(
    what: &str,
    name: &Ident,
    input: &StreamDef,
    by: &[Expr],
    diags: &mut Vec<Diagnostic>,
) {
    let Some(key) = &input.key else { return };
    let aligned = by
        .iter()
        .any(|e| matches!(&e.kind, ExprKind::Path(p) if p.len() == 1 && p[0].name == *key));
    if !aligned {
        diags.push(Diagnostic::warning(
            name.span,
            format!(
                "stream `{}` is partitioned by its key `{key}`, but {what} `{}` does not {} `{key}`: with more than one partition its events are copied into a stream re-keyed by {} (one more log write per event). To avoid that, {} `{key}`, or declare the stream's key as the column you group by",
                input.name,
                name.name,
                if what == "rule" { "PARTITION BY" } else { "GROUP BY" },
                match by.first().map(|e| &e.kind) {
                    Some(ExprKind::Path(p)) if p.len() == 1 => format!("`{}`", p[0].name),
                    _ => "nothing (one partition)".to_string(),
                },
                if what == "rule" { "add to PARTITION BY" } else { "add to GROUP BY" },
            ),
        ));
    }
}

/// PARTITION BY / GROUP BY: each item must be a column; each becomes an output column
/// named after its last path part.
#[allow(clippy::too_many_arguments)]
fn key_columns(
    exprs: &[Expr],
    input: &StreamDef,
    input_open: bool,
    place: Place,
    not_a_column: &str,
    unique: &mut Unique,
    columns: &mut Vec<(String, DataType)>,
    diags: &mut Vec<Diagnostic>,
) {
    for e in exprs {
        let mut cx = Cx {
            stream: input,
            open: input_open,
            place,
            vars: None,
            defining: None,
            diags,
        };
        let t = cx.check(e);
        match &e.kind {
            ExprKind::Path(parts) => {
                let Some(last) = parts.last() else { continue };
                if unique.add(&last.name, e.span, diags) {
                    columns.push((last.name.clone(), out_type(t)));
                }
            }
            _ => diags.push(Diagnostic::error(e.span, not_a_column)),
        }
    }
}

fn check_rule(
    r: &CreateRule,
    input: &StreamDef,
    input_derived: Option<bool>,
    input_open: bool,
    diags: &mut Vec<Diagnostic>,
) -> (StreamDef, RulePlan) {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    collect_vars(&r.pattern, &mut present, &mut absent);
    for a in &absent {
        if present.iter().any(|p| p.name == a.name) {
            diags.push(Diagnostic::error(
                a.span,
                format!("`{}` is used both as a term and as an absence (!{}); give the absence its own variable", a.name, a.name),
            ));
        }
    }
    absent.retain(|a| !present.iter().any(|p| p.name == a.name));
    if let Pattern::Absent(v) = &r.pattern {
        diags.push(Diagnostic::error(
            v.span,
            format!(
                "a pattern cannot be only `!{}`; absence is checked after a term, as in `a !{}`",
                v.name, v.name
            ),
        ));
    } else {
        check_pattern(&r.pattern, true, r.within.is_some(), diags);
    }
    let mut vars = Vars {
        present: present.iter().map(|v| v.name.clone()).collect(),
        absent: absent.iter().map(|v| v.name.clone()).collect(),
        defined: BTreeSet::new(),
    };

    // DEFINE
    let mut unique = Unique::new("DEFINE of");
    for d in &r.define {
        if unique.add(&d.var.name, d.var.span, diags) {
            vars.defined.insert(d.var.name.clone());
        }
        if !vars.in_pattern(&d.var.name) {
            let pv: Vec<&str> = vars.present.iter().map(String::as_str).collect();
            let mut msg = format!("`{}` is defined but not used in PATTERN", d.var.name);
            if let Some(m) = did_you_mean(&d.var.name, pv.iter().copied()) {
                msg.push_str(&format!("; did you mean `{m}`?"));
            }
            diags.push(Diagnostic::error(d.var.span, msg));
        }
    }
    for a in &absent {
        if !vars.defined.contains(&a.name) {
            diags.push(Diagnostic::error(
                a.span,
                format!("`!{}` needs a DEFINE: without one every row is a `{}`, so the absence could never hold", a.name, a.name),
            ));
        }
    }
    for d in &r.define {
        let mut cx = Cx {
            stream: input,
            open: input_open,
            place: Place::Define,
            vars: Some(&vars),
            defining: Some(&d.var.name),
            diags,
        };
        cx.check_cond(&d.cond, "DEFINE");
    }

    // PARTITION BY
    let mut columns: Vec<(String, DataType)> = Vec::new();
    let mut out_names = Unique::new("output column");
    key_columns(
        &r.partition_by,
        input,
        input_open,
        Place::PartitionBy,
        "PARTITION BY takes columns, like PARTITION BY card_id",
        &mut out_names,
        &mut columns,
        diags,
    );

    // ORDER BY
    if let (Some(o), Some(input_derived)) = (&r.order_by, input_derived) {
        match &input.event_time {
            Some(et) if *et == o.name => {}
            Some(et) => diags.push(Diagnostic::error(
                o.span,
                format!(
                    "ORDER BY must name the event-time column of `{}`, which is `{et}`",
                    input.name
                ),
            )),
            None if input_derived => {
                if o.name != "ts" {
                    diags.push(Diagnostic::error(
                        o.span,
                        format!(
                            "`{}` is the output of another statement, ordered by its records' time; write ORDER BY ts",
                            input.name
                        ),
                    ));
                }
            }
            None => diags.push(Diagnostic::error(
                o.span,
                format!(
                    "stream `{}` has no event_time, so its rows are in arrival order; remove ORDER BY or declare WITH (event_time = '...')",
                    input.name
                ),
            )),
        }
    }

    key_alignment_warning("rule", &r.name, input, &r.partition_by, diags);
    deadline::deadline_warnings(r, diags);

    // WITHIN
    match &r.within {
        None => diags.push(Diagnostic::warning(
            r.name.span,
            format!(
                "rule `{}` has no WITHIN: state is bounded only by caps (partial matches live until the engine's limits drop them); add WITHIN <duration>",
                r.name.name
            ),
        )),
        Some(d) if d.millis == 0 => diags.push(Diagnostic::error(d.span, "WITHIN must be longer than 0")),
        Some(_) => {}
    }

    // MEASURES
    for m in &r.measures {
        let mut cx = Cx {
            stream: input,
            open: input_open,
            place: Place::Measures,
            vars: Some(&vars),
            defining: None,
            diags,
        };
        let t = cx.check(&m.expr);
        if out_names.add(&m.alias.name, m.alias.span, diags) {
            columns.push((m.alias.name.clone(), out_type(t)));
        }
    }

    // AFTER MATCH
    if let Some(AfterMatch::SkipToFirst(v) | AfterMatch::SkipToLast(v)) = &r.after_match {
        var_error(v, &vars, diags);
    }

    let mut out = stand_in(&r.name.name);
    out.columns = columns;
    (
        out,
        RulePlan {
            input: input.clone(),
            variables: present.iter().map(|v| v.name.clone()).collect(),
            absent: absent.iter().map(|v| v.name.clone()).collect(),
        },
    )
}

// ───────────────────────────── searches ─────────────────────────────

fn item_name(e: &Expr, alias: Option<&Ident>) -> Option<(String, Span)> {
    if let Some(a) = alias {
        return Some((a.name.clone(), a.span));
    }
    match &e.kind {
        ExprKind::Path(parts) => parts.last().map(|p| (p.name.clone(), e.span)),
        _ => None,
    }
}

fn check_search(
    x: &CreateSearch,
    input: &StreamDef,
    input_open: bool,
    diags: &mut Vec<Diagnostic>,
) -> StreamDef {
    let mut cx = Cx {
        stream: input,
        open: input_open,
        place: Place::Where,
        vars: None,
        defining: None,
        diags,
    };
    cx.check_cond(&x.filter, "WHERE");
    if !has_matches(&x.filter) {
        diags.push(Diagnostic::error(
            x.filter.span,
            "a SEARCH's WHERE needs at least one full-text test `column MATCHES 'query'` (use a RULE or METRIC to filter without one)",
        ));
    }
    let mut out = stand_in(&x.name.name);
    let mut unique = Unique::new("EMIT column");
    for item in &x.emit {
        let mut cx = Cx {
            stream: input,
            open: input_open,
            place: Place::Emit,
            vars: None,
            defining: None,
            diags,
        };
        let t = cx.check(&item.expr);
        match item_name(&item.expr, item.alias.as_ref()) {
            Some((n, span)) => {
                if unique.add(&n, span, diags) {
                    out.columns.push((n, out_type(t)));
                }
            }
            None => diags.push(Diagnostic::error(
                item.span,
                "this EMIT expression needs a name: add AS <name>",
            )),
        }
    }
    if x.emit.is_empty() {
        out.columns = input.columns.clone();
    }
    options::search_options(&x.options, diags);
    out
}

// ───────────────────────────── metrics ─────────────────────────────

fn check_metric(
    m: &CreateMetric,
    input: &StreamDef,
    input_open: bool,
    diags: &mut Vec<Diagnostic>,
) -> (StreamDef, MetricOptions) {
    if let Some(f) = &m.filter {
        let mut cx = Cx {
            stream: input,
            open: input_open,
            place: Place::Where,
            vars: None,
            defining: None,
            diags,
        };
        cx.check_cond(f, "WHERE");
    }
    key_alignment_warning("metric", &m.name, input, &m.group_by, diags);
    let mut out = stand_in(&m.name.name);
    let mut unique = Unique::new("output column");
    key_columns(
        &m.group_by,
        input,
        input_open,
        Place::GroupBy,
        "GROUP BY takes columns, like GROUP BY country",
        &mut unique,
        &mut out.columns,
        diags,
    );
    let mut any_aggregate = false;
    for item in &m.items {
        let errors_before = diags.iter().filter(|d| d.is_error()).count();
        let mut cx = Cx {
            stream: input,
            open: input_open,
            place: Place::MetricItem,
            vars: None,
            defining: None,
            diags,
        };
        let t = cx.check_item(&item.expr);
        let item_ok = diags.iter().filter(|d| d.is_error()).count() == errors_before;
        let top_aggregate = matches!(&item.expr.kind, ExprKind::Function { name, .. }
            if is_aggregate_name(&name.name));
        if has_aggregate(&item.expr) {
            any_aggregate = true;
        }
        if let Some(span) = ungrouped_column(&item.expr, &m.group_by) {
            diags.push(Diagnostic::error(
                span,
                "this column is neither in GROUP BY nor inside an aggregate",
            ));
        } else if item_ok && !top_aggregate && !m.group_by.contains(&item.expr) {
            // Each item is one window value or one group key (language decision, matching
            // the metric engine): no arithmetic over aggregates or group columns.
            let what = if has_aggregate(&item.expr) {
                "arithmetic over aggregates"
            } else {
                "an expression of GROUP BY columns"
            };
            diags.push(Diagnostic::error(
                item.expr.span,
                format!(
                    "a METRIC SELECT item is one aggregate (like SUM(x), whose argument may be an expression) or a GROUP BY column; {what} is not supported"
                ),
            ));
        }
        match item_name(&item.expr, item.alias.as_ref()) {
            Some((n, span)) => {
                // A grouped column repeated in SELECT is the same output column.
                let is_group = m.group_by.contains(&item.expr) && item.alias.is_none();
                if !is_group && unique.add(&n, span, diags) {
                    out.columns.push((n, out_type(t)));
                }
            }
            None => diags.push(Diagnostic::error(
                item.span,
                "this SELECT item needs a name: add AS <name>",
            )),
        }
    }
    if !any_aggregate {
        let span = m.items.first().map_or(m.name.span, |i| i.span);
        diags.push(Diagnostic::error(
            span,
            "a METRIC needs at least one aggregate in SELECT, like COUNT(*)",
        ));
    }
    let positive = |d: &crate::ast::Duration, what: &str, diags: &mut Vec<Diagnostic>| {
        if d.millis == 0 {
            diags.push(Diagnostic::error(
                d.span,
                format!("{what} must be longer than 0"),
            ));
        }
    };
    match &m.window.kind {
        WindowKind::Tumbling { size } | WindowKind::Sliding { size } => {
            positive(size, "window SIZE", diags)
        }
        WindowKind::Session { gap } => positive(gap, "session GAP", diags),
        WindowKind::Hopping { size, advance } => {
            positive(size, "window SIZE", diags);
            positive(advance, "window ADVANCE", diags);
            if advance.millis > size.millis {
                diags.push(Diagnostic::error(
                    advance.span,
                    "ADVANCE is longer than SIZE, so events between windows would be missed; use ADVANCE ≤ SIZE",
                ));
            }
        }
    }
    let opts = options::metric_options(&m.options, diags);
    (out, opts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
