//! Searches in the engine: a `CREATE SEARCH` compiled ([`SearchRt`]), the searches of one
//! stream ([`StreamSearches`]: the shared index plus the searches it cannot evaluate), and
//! running them over one row.

use super::process::At;
use super::Residual;
use crate::expr::{compile, CompiledExpr, Context, FieldRef, Scope};
use crate::output::{output_id, OutputRecord};
use crate::search::{
    naive, Document, Highlights, SearchError, SearchLimits, SearchScratch, SearchSet, SearchSpec,
};
use crate::value::{Row, Value};
use dsl::ast::{BinaryOp, Expr, ExprKind, Literal, SelectItem};
use dsl::plan::StreamDef;
use dsl::query::{parse_query, Query};
use dsl::Diagnostic;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::sync::Arc;

/// One compiled search (immutable, shared by every partition).
#[derive(Debug)]
pub(crate) struct SearchRt {
    pub name: Arc<str>,
    /// Output order among the searches of a stream: catalog order (later = higher).
    pub ord: u64,
    /// The whole WHERE (its MATCHES tests read the results of `matches`).
    filter: CompiledExpr,
    /// The MATCHES tests: (field name, query with that default field).
    tests: Vec<(String, Query)>,
    /// Evaluated by the index's presearcher (all MATCHES are top-level conjuncts), with
    /// these equality filters; otherwise every event runs the naive evaluator for it.
    indexed: bool,
    equals: Vec<(String, Vec<String>)>,
    emit: Vec<(String, CompiledExpr)>,
    /// The fields the search reads, and where in the row.
    fields: Vec<(String, FieldRef)>,
}

impl SearchRt {
    /// Compiles a `CREATE SEARCH` over its input stream.
    pub fn compile(
        s: &dsl::ast::CreateSearch,
        input: &StreamDef,
        name: &str,
        ord: u64,
    ) -> Result<SearchRt, Diagnostic> {
        let scope = Scope::plain(input);
        let filter =
            compile(&s.filter, &scope).map_err(|e| Diagnostic::error(e.span, e.message.clone()))?;
        let mut tests = Vec::new();
        for (field, text) in &filter.matches {
            let fname = field_name(input, field);
            let q = parse_query(text)
                .map_err(|e| Diagnostic::error(s.filter.span, format!("invalid query: {e}")))?;
            tests.push((fname.clone(), q.with_default_field(&fname)));
        }
        // Indexable when every MATCHES is a top-level conjunct; the other conjuncts are
        // equality filters (used by the presearcher) or the residual (evaluated in full).
        let cs = conjuncts(&s.filter);
        let is_matches = |c: &Expr| {
            matches!(
                c.kind,
                ExprKind::Binary {
                    op: BinaryOp::Matches,
                    ..
                }
            )
        };
        let matches_top = cs.iter().filter(|c| is_matches(c)).count();
        let indexed = matches_top == tests.len()
            && !tests.is_empty()
            && !cs.iter().any(|c| !is_matches(c) && contains_matches(c));
        let equals: Vec<(String, Vec<String>)> = if indexed {
            cs.iter().filter_map(|c| equality_filter(c)).collect()
        } else {
            Vec::new()
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
                    .map_err(|e| Diagnostic::error(e.span, e.message.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut fields: Vec<(String, FieldRef)> = Vec::new();
        let mut names = Vec::new();
        for (_, q) in &tests {
            query_fields(q, &mut names);
        }
        names.extend(equals.iter().map(|(f, _)| f.clone()));
        for f in names {
            if !fields.iter().any(|(n, _)| *n == f) {
                let r = field_ref(input, &f);
                fields.push((f, r));
            }
        }
        Ok(SearchRt {
            name: Arc::from(name),
            ord,
            filter,
            tests,
            indexed,
            equals,
            emit,
            fields,
        })
    }

    /// What the index stores for this search (`None`: not indexable), with the search
    /// itself as the residual the index hands back.
    fn spec(self: &Arc<Self>) -> Option<SearchSpec<Residual>> {
        if !self.indexed {
            return None;
        }
        let query = match self.tests.as_slice() {
            [(_, q)] => q.clone(),
            ts => Query::And(ts.iter().map(|(_, q)| q.clone()).collect()),
        };
        Some(SearchSpec {
            query,
            equals: self.equals.clone(),
            residual: Some(self.clone()),
        })
    }

    /// The whole WHERE with every MATCHES test taken as true (the index decided those).
    fn residual_holds(&self, row: &Row) -> bool {
        const ALL_TRUE: [bool; 64] = [true; 64];
        let n = self.tests.len();
        if n <= ALL_TRUE.len() {
            self.filter.eval_bool(&SearchCtx {
                row,
                results: &ALL_TRUE[..n],
            })
        } else {
            let v = vec![true; n];
            self.filter.eval_bool(&SearchCtx { row, results: &v })
        }
    }

    /// Every MATCHES evaluated by the reference evaluator, then the WHERE.
    fn evaluate_naive(&self, row: &Row, doc: &Document<'_>) -> Option<Highlights> {
        let mut results = Vec::with_capacity(self.tests.len());
        let mut hl = Highlights::new();
        for (_, q) in &self.tests {
            match naive::evaluate(q, doc) {
                Some(h) => {
                    results.push(true);
                    for (f, ranges) in h {
                        hl.entry(f).or_default().extend(ranges);
                    }
                }
                None => results.push(false),
            }
        }
        if !self.filter.eval_bool(&SearchCtx {
            row,
            results: &results,
        }) {
            return None;
        }
        for r in hl.values_mut() {
            r.sort_unstable();
            r.dedup();
        }
        Some(hl)
    }
}

/// Every search reading one stream: a version of the stream's shared index (the
/// searches it can evaluate), the others, and the fields they read. Immutable once
/// built; a statement change makes the next one from the previous, in proportion to the
/// change ([`SearchSet::with_changes`]).
pub(crate) struct StreamSearches {
    set: SearchSet<Residual>,
    /// The searches in the set, by name (to build a set again from, when the set has
    /// moved past this version, e.g. after a change that was refused later).
    indexed: imbl::OrdMap<Arc<str>, Residual>,
    /// Searches the index cannot evaluate (run by the naive evaluator on every event).
    naive: Vec<Residual>,
    /// Field names the searches read, and where.
    fields: Vec<(String, FieldRef)>,
}

impl std::fmt::Debug for StreamSearches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSearches")
            .field("indexed", &self.indexed.len())
            .field("naive", &self.naive.len())
            .finish()
    }
}

impl StreamSearches {
    /// `old` without the searches named in `remove`, with `add` (searches compiled
    /// against this stream; a name present is replaced). `old`'s set must be the newest
    /// version of its index to be changed in place; otherwise a new index is built.
    pub fn with_changes(
        old: Option<&StreamSearches>,
        remove: &[&str],
        add: Vec<Residual>,
        limits: &SearchLimits,
    ) -> Result<StreamSearches, (String, String)> {
        let mut indexed = old.map(|o| o.indexed.clone()).unwrap_or_default();
        let mut naive: Vec<Residual> = old.map(|o| o.naive.clone()).unwrap_or_default();
        let mut gone: Vec<&str> = Vec::new();
        for n in remove.iter().copied().chain(add.iter().map(|s| &*s.name)) {
            if indexed.remove(n).is_some() {
                gone.push(n);
            }
        }
        naive.retain(|s| !remove.contains(&&*s.name) && !add.iter().any(|a| a.name == s.name));
        let mut specs = Vec::new();
        for s in &add {
            match s.spec() {
                Some(spec) => {
                    specs.push((s.name.to_string(), spec));
                    indexed.insert(s.name.clone(), s.clone());
                }
                None => naive.push(s.clone()),
            }
        }
        let err = |(n, e): (String, SearchError)| (n, e.to_string());
        let set = match old.map(|o| o.set.with_changes(&gone, specs)) {
            Some(Ok(set)) => set,
            Some(Err((_, SearchError::NotLatest { .. }))) | None => {
                // Build the stream's index again from every search it holds.
                let all = indexed
                    .values()
                    .filter_map(|s| Some((s.name.to_string(), s.spec()?)))
                    .collect();
                SearchSet::new(limits.clone())
                    .with_changes(&[], all)
                    .map_err(err)?
            }
            Some(Err(e)) => return Err(err(e)),
        };
        let mut fields: Vec<(String, FieldRef)> = old.map(|o| o.fields.clone()).unwrap_or_default();
        for s in &add {
            for (n, r) in &s.fields {
                if !fields.iter().any(|(f, _)| f == n) {
                    fields.push((n.clone(), r.clone()));
                }
            }
        }
        Ok(StreamSearches {
            set,
            indexed,
            naive,
            fields,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.indexed.is_empty() && self.naive.is_empty()
    }

    /// Runs every search over one row; hits go to `out` in catalog order.
    pub fn run(
        &self,
        def: &StreamDef,
        stream: &str,
        row: &Row,
        at: At,
        scratch: &mut SearchScratch,
        out: &mut Vec<OutputRecord>,
    ) {
        // The text of every field the searches read.
        let texts: Vec<(&str, Option<String>)> = self
            .fields
            .iter()
            .map(|(n, f)| {
                let t = match f.get(row) {
                    Value::String(s) => Some(s),
                    Value::Null => None,
                    Value::Json(j) => Some(j.to_string()),
                    other => Some(other.to_json().to_string()),
                };
                (n.as_str(), t)
            })
            .collect();
        let mut doc = Document::new();
        for (n, t) in &texts {
            if let Some(t) = t {
                doc.push(n, t);
            }
        }
        let mut hits: Vec<(Residual, Highlights)> = Vec::new();
        if !self.indexed.is_empty() {
            // Presearcher + verification; the residual is the whole WHERE with every
            // MATCHES known to be true.
            let mut passed: HashMap<Arc<str>, Residual> = HashMap::new();
            let mut residual = |_: &str, s: &Residual| -> bool {
                let ok = s.residual_holds(row);
                if ok {
                    passed.insert(s.name.clone(), s.clone());
                }
                ok
            };
            let found = self.set.match_document(scratch, &doc, &mut residual);
            for h in found {
                if let Some(s) = passed.get(&h.search) {
                    hits.push((s.clone(), h.highlights));
                }
            }
        }
        for s in &self.naive {
            if let Some(hl) = s.evaluate_naive(row, &doc) {
                hits.push((s.clone(), hl));
            }
        }
        hits.sort_by_key(|(s, _)| s.ord);
        for (s, hl) in hits {
            out.push(s.record(def, stream, row, at, hl));
        }
    }
}

impl SearchRt {
    fn record(
        &self,
        def: &StreamDef,
        stream: &str,
        row: &Row,
        at: At,
        hl: Highlights,
    ) -> OutputRecord {
        let mut fields = Map::new();
        if self.emit.is_empty() {
            for (j, (c, _)) in def.columns.iter().enumerate() {
                fields.insert(c.clone(), row.get(j).to_json());
            }
            for (k, v) in &row.extra {
                fields.insert(k.clone(), v.clone());
            }
        } else {
            for (n, e) in &self.emit {
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
        OutputRecord::Search {
            search: self.name.to_string(),
            id: output_id(&self.name, stream, at.partition, at.offset, 0),
            ts_ms: at.ts,
            fields,
            highlights,
            late: at.late,
        }
    }
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

fn field_name(input: &StreamDef, field: &FieldRef) -> String {
    let (mut n, rest) = match field {
        FieldRef::Col(i, rest) => (
            input
                .columns
                .get(*i)
                .map(|c| c.0.clone())
                .unwrap_or_default(),
            rest,
        ),
        FieldRef::Extra(n, rest) => (n.clone(), rest),
    };
    for r in rest {
        n.push('.');
        n.push_str(r);
    }
    n
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
