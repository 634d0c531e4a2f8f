//! Expression checking: name resolution, types, function forms, aggregates, regexes and
//! full-text queries inside string literals.

use super::names::{did_you_mean, list};
use crate::ast::{BinaryOp, DataType, Expr, ExprKind, Ident, Literal, Span, UnaryOp};
use crate::error::Diagnostic;
use crate::plan::StreamDef;
use std::collections::BTreeSet;

/// A value's type as far as check knows it; `None` = not known statically (JSON values,
/// undeclared fields, NULL).
pub(crate) type Ty = Option<DataType>;

/// Where an expression sits; decides which functions and names are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// WHERE of a search or metric.
    Where,
    /// EMIT of a search.
    Emit,
    /// GROUP BY of a metric.
    GroupBy,
    /// A SELECT item of a metric.
    MetricItem,
    /// PARTITION BY of a rule.
    PartitionBy,
    /// DEFINE of a rule.
    Define,
    /// MEASURES of a rule.
    Measures,
}

impl Place {
    fn clause(self) -> &'static str {
        match self {
            Place::Where => "WHERE",
            Place::Emit => "EMIT",
            Place::GroupBy => "GROUP BY",
            Place::MetricItem => "SELECT",
            Place::PartitionBy => "PARTITION BY",
            Place::Define => "DEFINE",
            Place::Measures => "MEASURES",
        }
    }
    fn in_rule_body(self) -> bool {
        matches!(self, Place::Define | Place::Measures)
    }
}

/// Pattern variables of the rule being checked.
#[derive(Debug, Default)]
pub(crate) struct Vars {
    /// Variables that appear in PATTERN as terms (not only as `!v`).
    pub present: BTreeSet<String>,
    /// Variables that appear in PATTERN only as `!v`.
    pub absent: BTreeSet<String>,
    /// Variables named in DEFINE.
    pub defined: BTreeSet<String>,
}

impl Vars {
    pub(crate) fn in_pattern(&self, name: &str) -> bool {
        self.present.contains(name) || self.absent.contains(name)
    }
    pub(crate) fn known(&self, name: &str) -> bool {
        self.in_pattern(name) || self.defined.contains(name)
    }
}

pub(crate) struct Cx<'a> {
    pub stream: &'a StreamDef,
    /// Events of the stream may carry fields beyond its columns (a `CREATE STREAM`, or a
    /// search over one without EMIT): a dotted path with an unknown root then reads an
    /// undeclared JSON field (a warning), unless the root looks like a typo (an error).
    pub open: bool,
    pub place: Place,
    pub vars: Option<&'a Vars>,
    /// The DEFINE being checked (its own variable may be referenced even when absent).
    pub defining: Option<&'a str>,
    pub diags: &'a mut Vec<Diagnostic>,
}

#[derive(Clone, Copy, Default)]
struct Flags {
    /// Inside an aggregate's argument.
    in_agg: bool,
    /// The expression is a whole SELECT item (APPROX_* allowed).
    top_item: bool,
}

pub(crate) fn type_name(t: Ty) -> &'static str {
    match t {
        Some(DataType::String) => "STRING",
        Some(DataType::Int) => "INT",
        Some(DataType::Float) => "FLOAT",
        Some(DataType::Bool) => "BOOL",
        Some(DataType::Timestamp) => "TIMESTAMP",
        Some(DataType::Json) | None => "JSON",
    }
}

fn known(t: Ty) -> Ty {
    match t {
        Some(DataType::Json) => None,
        t => t,
    }
}

fn numeric(t: Ty) -> bool {
    matches!(t, Some(DataType::Int) | Some(DataType::Float))
}

/// Can values of these two types be compared?
fn comparable(a: Ty, b: Ty) -> bool {
    use DataType::*;
    match (known(a), known(b)) {
        (None, _) | (_, None) => true,
        (Some(x), Some(y)) if x == y => true,
        (Some(Int | Float), Some(Int | Float)) => true,
        // RFC 3339 strings and epoch milliseconds both denote timestamps.
        (Some(Timestamp), Some(String | Int)) | (Some(String | Int), Some(Timestamp)) => true,
        _ => false,
    }
}

/// Does the expression contain an aggregate call (COUNT, SUM, …, APPROX_*)?
pub(crate) fn has_aggregate(e: &Expr) -> bool {
    let mut found = false;
    e.walk(&mut |x| {
        if let ExprKind::Function { name, .. } = &x.kind {
            let n = name.name.to_ascii_lowercase();
            if is_exact_agg(&n) || is_approx(&n) {
                found = true;
            }
        }
    });
    found
}

/// Does the expression contain a `MATCHES` test?
pub(crate) fn has_matches(e: &Expr) -> bool {
    let mut found = false;
    e.walk(&mut |x| {
        if let ExprKind::Binary {
            op: BinaryOp::Matches,
            ..
        } = &x.kind
        {
            found = true;
        }
    });
    found
}

pub(crate) fn is_exact_agg(n: &str) -> bool {
    matches!(n, "count" | "sum" | "avg" | "min" | "max")
}
fn is_approx(n: &str) -> bool {
    matches!(
        n,
        "approx_count_distinct" | "approx_percentile" | "approx_top_k" | "approx_set"
    )
}

const FUNCTIONS: &[&str] = &[
    "lower",
    "upper",
    "length",
    "abs",
    "coalesce",
    "regexp_like",
    "first",
    "last",
    "prev",
    "running",
    "final",
    "match_number",
    "classifier",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "approx_count_distinct",
    "approx_percentile",
    "approx_top_k",
    "approx_set",
];

/// Byte offset in the source of byte `i` of a string literal's value, given the literal's
/// span (which starts at its opening quote). Each `'` in the value was written `''`.
pub(crate) fn literal_offset(lit_span: Span, value: &str, i: usize) -> usize {
    let i = i.min(value.len());
    let quotes = value.as_bytes()[..i]
        .iter()
        .filter(|&&b| b == b'\'')
        .count();
    lit_span.start + 1 + i + quotes
}

fn literal_span(lit_span: Span, value: &str, start: usize, end: usize) -> Span {
    let s = literal_offset(lit_span, value, start);
    let e = literal_offset(lit_span, value, end.max(start));
    Span::new(s, e.max(s + 1).min(lit_span.end.max(s + 1)))
}

/// Compile a regex as the engines will, reporting a syntax error at its place in the
/// literal.
pub(crate) fn check_regex(value: &str, lit_span: Span, diags: &mut Vec<Diagnostic>) {
    if let Err(e) = regex_automata::meta::Regex::new(value) {
        match e.syntax_error() {
            Some(se) => {
                let (span, msg) = match se {
                    regex_syntax::Error::Parse(pe) => (*pe.span(), pe.kind().to_string()),
                    regex_syntax::Error::Translate(te) => (*te.span(), te.kind().to_string()),
                    other => (
                        regex_syntax::ast::Span::splat(regex_syntax::ast::Position::new(0, 1, 1)),
                        other.to_string(),
                    ),
                };
                diags.push(Diagnostic::error(
                    literal_span(lit_span, value, span.start.offset, span.end.offset),
                    format!("invalid regex: {msg}"),
                ));
            }
            None => diags.push(Diagnostic::error(
                lit_span,
                format!("regex is too large to compile: {e}"),
            )),
        }
    }
}

fn query_fields(q: &crate::query::Query, out: &mut Vec<String>) {
    use crate::query::Query;
    match q {
        Query::And(cs) | Query::Or(cs) => cs.iter().for_each(|c| query_fields(c, out)),
        Query::Not(c) => query_fields(c, out),
        leaf => {
            if let Some(f) = leaf.field() {
                if !out.iter().any(|x| x == f) {
                    out.push(f.to_string());
                }
            }
        }
    }
}

/// Parse a MATCHES query, reporting errors at their place in the literal; `field:` names
/// must be columns of `stream` when it declares columns.
pub(crate) fn check_query(
    value: &str,
    lit_span: Span,
    stream: &StreamDef,
    diags: &mut Vec<Diagnostic>,
) {
    match crate::query::parse_query(value) {
        Err(e) => diags.push(Diagnostic::error(
            literal_span(lit_span, value, e.offset, e.offset + 1),
            format!("invalid search query: {}", e.message),
        )),
        Ok(q) => {
            if q.is_negative_only() {
                diags.push(Diagnostic::error(
                    lit_span,
                    "search query has only negative clauses (NOT / -x); add a term that must match",
                ));
            }
            if stream.columns.is_empty() {
                return;
            }
            let mut fields = Vec::new();
            query_fields(&q, &mut fields);
            for f in fields {
                if stream.column_type(&f).is_some() {
                    continue;
                }
                let at = value.find(&format!("{f}:")).unwrap_or(0);
                let names: Vec<&str> = stream.columns.iter().map(|(c, _)| c.as_str()).collect();
                let span = literal_span(lit_span, value, at, at + f.len());
                let suggestion = did_you_mean(&f, names.iter().copied());
                let mut msg = format!(
                    "query field `{f}` is not a column of stream `{}`",
                    stream.name
                );
                if let Some(m) = suggestion {
                    msg.push_str(&format!("; did you mean `{m}`?"));
                }
                diags.push(Diagnostic::error(span, msg));
            }
        }
    }
}

fn string_literal(e: &Expr) -> Option<&str> {
    match &e.kind {
        ExprKind::Literal(Literal::String(s)) => Some(s),
        _ => None,
    }
}

fn int_literal(e: &Expr) -> Option<i64> {
    match &e.kind {
        ExprKind::Literal(Literal::Int(i)) => Some(*i),
        ExprKind::Unary {
            op: UnaryOp::Neg,
            expr,
        } => int_literal(expr).map(|i| -i),
        _ => None,
    }
}

fn number_literal(e: &Expr) -> Option<f64> {
    match &e.kind {
        ExprKind::Literal(Literal::Int(i)) => Some(*i as f64),
        ExprKind::Literal(Literal::Float(f)) => Some(*f),
        ExprKind::Unary {
            op: UnaryOp::Neg,
            expr,
        } => number_literal(expr).map(|f| -f),
        _ => None,
    }
}

impl Cx<'_> {
    fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(span, msg));
    }

    /// Check an expression and return its type.
    pub fn check(&mut self, e: &Expr) -> Ty {
        self.expr(e, Flags::default())
    }

    /// Check a whole SELECT item of a metric (APPROX_* allowed at the top).
    pub fn check_item(&mut self, e: &Expr) -> Ty {
        self.expr(
            e,
            Flags {
                in_agg: false,
                top_item: true,
            },
        )
    }

    /// Check a condition (must be BOOL when its type is known).
    pub fn check_cond(&mut self, e: &Expr, what: &str) {
        let t = self.check(e);
        if let Some(t) = known(t) {
            if t != DataType::Bool {
                self.err(
                    e.span,
                    format!(
                        "{what} must be a condition (BOOL), found {}",
                        type_name(Some(t))
                    ),
                );
            }
        }
    }

    fn expr(&mut self, e: &Expr, fl: Flags) -> Ty {
        let inner = Flags {
            top_item: false,
            ..fl
        };
        match &e.kind {
            ExprKind::Literal(l) => match l {
                Literal::Null => None,
                Literal::Bool(_) => Some(DataType::Bool),
                Literal::Int(_) => Some(DataType::Int),
                Literal::Float(_) => Some(DataType::Float),
                Literal::String(_) => Some(DataType::String),
            },
            ExprKind::Path(parts) => self.path(parts, e.span),
            ExprKind::Wildcard(_) => {
                self.err(e.span, "`*` is only allowed as COUNT(*) or COUNT(v.*)");
                None
            }
            ExprKind::Unary { op, expr } => {
                let t = known(self.expr(expr, inner));
                match op {
                    UnaryOp::Not => {
                        if let Some(t) = t.filter(|t| *t != DataType::Bool) {
                            self.err(
                                expr.span,
                                format!("NOT needs a BOOL operand, found {}", type_name(Some(t))),
                            );
                        }
                        Some(DataType::Bool)
                    }
                    UnaryOp::Neg => {
                        if t.is_some() && !numeric(t) {
                            self.err(expr.span, format!("cannot negate a {} value", type_name(t)));
                            return None;
                        }
                        t
                    }
                }
            }
            ExprKind::Binary { op, left, right } => self.binary(*op, left, right, inner),
            ExprKind::IsNull { expr, .. } => {
                self.expr(expr, inner);
                Some(DataType::Bool)
            }
            ExprKind::InList { expr, list, .. } => {
                let t = self.expr(expr, inner);
                for x in list {
                    let u = self.expr(x, inner);
                    if !comparable(t, u) {
                        self.err(
                            x.span,
                            format!(
                                "IN list item is {}, but the tested value is {}",
                                type_name(u),
                                type_name(t)
                            ),
                        );
                    }
                }
                Some(DataType::Bool)
            }
            ExprKind::Between {
                expr, low, high, ..
            } => {
                let t = self.expr(expr, inner);
                for x in [low, high] {
                    let u = self.expr(x, inner);
                    if !comparable(t, u) {
                        self.err(
                            x.span,
                            format!(
                                "BETWEEN bound is {}, but the tested value is {}",
                                type_name(u),
                                type_name(t)
                            ),
                        );
                    }
                }
                Some(DataType::Bool)
            }
            ExprKind::Like { expr, pattern, .. } => {
                let t = known(self.expr(expr, inner));
                if let Some(t) = t.filter(|t| *t != DataType::String) {
                    self.err(
                        expr.span,
                        format!("LIKE needs a STRING value, found {}", type_name(Some(t))),
                    );
                }
                let p = known(self.expr(pattern, inner));
                if let Some(p) = p.filter(|p| *p != DataType::String) {
                    self.err(
                        pattern.span,
                        format!(
                            "LIKE pattern must be a STRING, found {}",
                            type_name(Some(p))
                        ),
                    );
                }
                Some(DataType::Bool)
            }
            ExprKind::Case {
                operand,
                whens,
                else_,
            } => {
                let op_t = operand.as_ref().map(|o| self.expr(o, inner));
                let mut result: Ty = None;
                let mut results: Vec<(Ty, Span)> = Vec::new();
                for (w, t) in whens {
                    match op_t {
                        Some(ot) => {
                            let wt = self.expr(w, inner);
                            if !comparable(ot, wt) {
                                self.err(
                                    w.span,
                                    format!(
                                        "WHEN value is {}, but the CASE operand is {}",
                                        type_name(wt),
                                        type_name(ot)
                                    ),
                                );
                            }
                        }
                        None => {
                            let wt = known(self.expr(w, inner));
                            if let Some(wt) = wt.filter(|t| *t != DataType::Bool) {
                                self.err(
                                    w.span,
                                    format!(
                                        "WHEN must be a condition (BOOL), found {}",
                                        type_name(Some(wt))
                                    ),
                                );
                            }
                        }
                    }
                    results.push((self.expr(t, inner), t.span));
                }
                if let Some(x) = else_ {
                    results.push((self.expr(x, inner), x.span));
                }
                for (t, span) in results {
                    match (known(result), known(t)) {
                        (None, t) => result = t,
                        (Some(r), Some(u)) if !comparable(Some(r), Some(u)) => self.err(
                            span,
                            format!(
                                "CASE results must have one type: {} and {}",
                                type_name(Some(r)),
                                type_name(Some(u))
                            ),
                        ),
                        (Some(DataType::Int), Some(DataType::Float)) => {
                            result = Some(DataType::Float)
                        }
                        _ => {}
                    }
                }
                result
            }
            ExprKind::Function { name, args } => self.function(name, args, e.span, fl),
        }
    }

    fn binary(&mut self, op: BinaryOp, left: &Expr, right: &Expr, fl: Flags) -> Ty {
        use BinaryOp::*;
        match op {
            And | Or => {
                let word = if op == And { "AND" } else { "OR" };
                for x in [left, right] {
                    let t = known(self.expr(x, fl));
                    if let Some(t) = t.filter(|t| *t != DataType::Bool) {
                        self.err(
                            x.span,
                            format!("{word} needs BOOL operands, found {}", type_name(Some(t))),
                        );
                    }
                }
                Some(DataType::Bool)
            }
            Eq | NotEq | Lt | LtEq | Gt | GtEq => {
                let a = self.expr(left, fl);
                let b = self.expr(right, fl);
                if !comparable(a, b) {
                    self.err(
                        left.span.to(right.span),
                        format!("cannot compare {} with {}", type_name(a), type_name(b)),
                    );
                }
                Some(DataType::Bool)
            }
            Add | Sub | Mul | Div | Mod => {
                let a = known(self.expr(left, fl));
                let b = known(self.expr(right, fl));
                let sym = match op {
                    Add => "+",
                    Sub => "-",
                    Mul => "*",
                    Div => "/",
                    _ => "%",
                };
                let mut bad = false;
                for (t, x) in [(a, left), (b, right)] {
                    let ok = t.is_none()
                        || numeric(t)
                        || (t == Some(DataType::Timestamp) && matches!(op, Add | Sub));
                    if !ok {
                        self.err(
                            x.span,
                            format!("`{sym}` needs numbers, found {}", type_name(t)),
                        );
                        bad = true;
                    }
                }
                if bad {
                    return None;
                }
                match (a, b) {
                    (Some(DataType::Timestamp), Some(DataType::Timestamp)) => Some(DataType::Int),
                    (Some(DataType::Timestamp), _) | (_, Some(DataType::Timestamp)) => {
                        Some(DataType::Timestamp)
                    }
                    (Some(DataType::Int), Some(DataType::Int)) if op != Div => Some(DataType::Int),
                    (Some(DataType::Int), Some(DataType::Int)) => Some(DataType::Int),
                    (Some(_), Some(_)) => Some(DataType::Float),
                    _ => None,
                }
            }
            RegexMatch | Matches => {
                let what = if op == RegexMatch { "`~`" } else { "MATCHES" };
                let t = known(self.expr(left, fl));
                if let Some(t) = t.filter(|t| *t != DataType::String) {
                    self.err(
                        left.span,
                        format!("{what} needs a STRING value, found {}", type_name(Some(t))),
                    );
                }
                match string_literal(right) {
                    Some(s) if op == RegexMatch => check_regex(s, right.span, self.diags),
                    Some(s) => check_query(s, right.span, self.stream, self.diags),
                    None => {
                        let kind = if op == RegexMatch { "regex" } else { "query" };
                        self.err(
                            right.span,
                            format!("the right side of {what} must be a '{kind}' string literal"),
                        );
                    }
                }
                Some(DataType::Bool)
            }
        }
    }

    /// Resolve a dotted path: a pattern variable's column (`v.col`), or a column path.
    fn path(&mut self, parts: &[Ident], span: Span) -> Ty {
        let first = parts.first()?;
        if let Some(vars) = self.vars {
            if self.place.in_rule_body() && vars.known(&first.name) {
                if !vars.in_pattern(&first.name) {
                    self.err(
                        first.span,
                        format!("pattern variable `{}` is not in PATTERN", first.name),
                    );
                    return None;
                }
                if vars.absent.contains(&first.name) && self.defining != Some(first.name.as_str()) {
                    self.err(
                        first.span,
                        format!(
                            "`{}` is an absence (!{}) in the pattern and maps no rows; it can only be used in its own DEFINE",
                            first.name, first.name
                        ),
                    );
                    return None;
                }
                if parts.len() == 1 {
                    // A variable alone is not a value — unless it is also a column name.
                    if self.stream.column_type(&first.name).is_none() {
                        self.err(
                            span,
                            format!(
                                "pattern variable `{}` is not a value; write `{}.column`",
                                first.name, first.name
                            ),
                        );
                        return None;
                    }
                } else {
                    return self.column_path(&parts[1..], span, true);
                }
            }
        }
        self.column_path(parts, span, false)
    }

    fn column_path(&mut self, parts: &[Ident], span: Span, after_var: bool) -> Ty {
        let s = self.stream;
        let first = &parts[0];
        if s.columns.is_empty() {
            // A stream without declared columns: every field is a JSON value.
            return None;
        }
        match s.column_type(&first.name) {
            None => {
                let names: Vec<&str> = s.columns.iter().map(|(c, _)| c.as_str()).collect();
                let in_body = !after_var && self.vars.is_some() && self.place.in_rule_body();
                let mut candidates = names.clone();
                if in_body {
                    if let Some(v) = self.vars {
                        candidates.extend(v.present.iter().map(String::as_str));
                    }
                }
                let suggestion = did_you_mean(&first.name, candidates.iter().copied());
                // A bare undeclared name is an error (it is most often a typo); a dotted
                // path whose root is undeclared reads an undeclared JSON field (a warning),
                // unless the root looks like a typo of a column or pattern variable.
                // In a rule the same holds: `x.col` with an unknown `x` that resembles no
                // pattern variable or column reads the undeclared field `x` (language §1).
                let dotted = parts.len() > 1;
                if self.open && dotted && suggestion.is_none() {
                    let what = if in_body {
                        "neither a pattern variable nor a declared column"
                    } else {
                        "not a declared column"
                    };
                    self.diags.push(Diagnostic::warning(
                        first.span,
                        format!(
                            "`{}` is {what} of stream `{}`; `{}` is read as a path into an undeclared JSON field (NULL when absent). Declare `{} JSON` to make it explicit",
                            first.name,
                            s.name,
                            parts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join("."),
                            first.name
                        ),
                    ));
                    return None;
                }
                let mut msg = format!("unknown column `{}` in stream `{}`", first.name, s.name);
                if in_body {
                    msg = format!(
                        "unknown column or pattern variable `{}` (stream `{}`)",
                        first.name, s.name
                    );
                }
                if let Some(m) = suggestion {
                    msg.push_str(&format!("; did you mean `{m}`?"));
                } else if in_body && dotted {
                    let pv: Vec<&str> = self
                        .vars
                        .map(|v| v.present.iter().map(String::as_str).collect())
                        .unwrap_or_default();
                    msg.push_str(&format!("; PATTERN has {}", list(&pv)));
                } else {
                    msg.push_str(&format!("; its columns are {}", list(&names)));
                }
                self.err(first.span, msg);
                None
            }
            Some(DataType::Json) => None,
            Some(t) if parts.len() > 1 => {
                self.err(
                    parts[1].span.to(span),
                    format!(
                        "column `{}` is {} and has no fields; only JSON columns can be read with `.`",
                        first.name,
                        type_name(Some(t))
                    ),
                );
                None
            }
            Some(t) => Some(t),
        }
    }

    fn arity(&mut self, name: &Ident, args: &[Expr], span: Span, min: usize, max: usize) -> bool {
        if args.len() < min || args.len() > max {
            let n = name.name.to_ascii_uppercase();
            let want = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            let s = if want.ends_with(" 1") || want == "1" {
                ""
            } else {
                "s"
            };
            self.err(
                span,
                format!("{n} takes {want} argument{s}, found {}", args.len()),
            );
            return false;
        }
        true
    }

    fn function(&mut self, name: &Ident, args: &[Expr], span: Span, fl: Flags) -> Ty {
        let n = name.name.to_ascii_lowercase();
        let upper = name.name.to_ascii_uppercase();
        let inner = Flags {
            top_item: false,
            ..fl
        };
        match n.as_str() {
            "lower" | "upper" | "length" => {
                if !self.arity(name, args, span, 1, 1) {
                    return None;
                }
                let t = known(self.expr(&args[0], inner));
                if let Some(t) = t.filter(|t| *t != DataType::String) {
                    self.err(
                        args[0].span,
                        format!("{upper} needs a STRING, found {}", type_name(Some(t))),
                    );
                }
                Some(if n == "length" {
                    DataType::Int
                } else {
                    DataType::String
                })
            }
            "abs" => {
                if !self.arity(name, args, span, 1, 1) {
                    return None;
                }
                let t = known(self.expr(&args[0], inner));
                if t.is_some() && !numeric(t) {
                    self.err(
                        args[0].span,
                        format!("ABS needs a number, found {}", type_name(t)),
                    );
                    return None;
                }
                t
            }
            "coalesce" => {
                if !self.arity(name, args, span, 1, usize::MAX) {
                    return None;
                }
                let mut result: Ty = None;
                for a in args {
                    let t = known(self.expr(a, inner));
                    match (result, t) {
                        (None, t) => result = t,
                        (Some(r), Some(u)) if !comparable(Some(r), Some(u)) => self.err(
                            a.span,
                            format!(
                                "COALESCE arguments must have one type: {} and {}",
                                type_name(Some(r)),
                                type_name(Some(u))
                            ),
                        ),
                        _ => {}
                    }
                }
                result
            }
            "regexp_like" => {
                if !self.arity(name, args, span, 2, 2) {
                    return None;
                }
                let t = known(self.expr(&args[0], inner));
                if let Some(t) = t.filter(|t| *t != DataType::String) {
                    self.err(
                        args[0].span,
                        format!("REGEXP_LIKE needs a STRING, found {}", type_name(Some(t))),
                    );
                }
                match string_literal(&args[1]) {
                    Some(s) => check_regex(s, args[1].span, self.diags),
                    None => self.err(
                        args[1].span,
                        "the second argument of REGEXP_LIKE must be a 'regex' string literal",
                    ),
                }
                Some(DataType::Bool)
            }
            "first" | "last" | "prev" => self.navigation(name, &n, args, span, inner),
            "running" | "final" => {
                if !self.place.in_rule_body() {
                    self.err(
                        span,
                        format!("{upper} is only allowed in DEFINE or MEASURES of a rule"),
                    );
                    return None;
                }
                if n == "final" && self.place == Place::Define {
                    self.err(
                        name.span,
                        "FINAL is only allowed in MEASURES: a DEFINE sees the rows so far (RUNNING)",
                    );
                }
                if !self.arity(name, args, span, 1, 1) {
                    return None;
                }
                let qualifies = match &args[0].kind {
                    ExprKind::Function { name: f, .. } => {
                        let f = f.name.to_ascii_lowercase();
                        matches!(f.as_str(), "first" | "last") || is_exact_agg(&f)
                    }
                    _ => false,
                };
                if !qualifies {
                    self.err(
                        args[0].span,
                        format!(
                            "{upper} qualifies FIRST, LAST or an aggregate, like {upper} LAST(v.x)"
                        ),
                    );
                }
                self.expr(&args[0], inner)
            }
            "match_number" | "classifier" => {
                if !self.place.in_rule_body() {
                    self.err(
                        span,
                        format!("{upper}() is only allowed in DEFINE or MEASURES of a rule"),
                    );
                    return None;
                }
                if !self.arity(name, args, span, 0, 0) {
                    return None;
                }
                Some(if n == "classifier" {
                    DataType::String
                } else {
                    DataType::Int
                })
            }
            "count" | "sum" | "avg" | "min" | "max" => self.aggregate(name, &n, args, span, fl),
            "approx_count_distinct" | "approx_percentile" | "approx_top_k" | "approx_set" => {
                self.approx(name, &n, args, span, fl)
            }
            _ => {
                let mut msg = format!("unknown function `{}`", name.name);
                if let Some(m) = did_you_mean(&n, FUNCTIONS.iter().copied()) {
                    msg.push_str(&format!("; did you mean `{}`?", m.to_ascii_uppercase()));
                }
                self.err(name.span, msg);
                for a in args {
                    self.expr(a, inner);
                }
                None
            }
        }
    }

    fn navigation(&mut self, name: &Ident, n: &str, args: &[Expr], span: Span, fl: Flags) -> Ty {
        let upper = n.to_ascii_uppercase();
        if !self.place.in_rule_body() {
            self.err(
                span,
                format!("{upper} is only allowed in DEFINE or MEASURES of a rule"),
            );
            return None;
        }
        if !self.arity(name, args, span, 1, 2) {
            return None;
        }
        if let Some(off) = args.get(1) {
            match int_literal(off) {
                Some(i) if i >= 0 => {}
                _ => self.err(
                    off.span,
                    format!("the offset of {upper} must be a whole number ≥ 0, like {upper}(x, 1)"),
                ),
            }
        }
        let arg = &args[0];
        // nested navigation: PREV(FIRST(v.x, m), n), PREV(LAST(v.x, m), n)
        if let ExprKind::Function { name: inner, .. } = &arg.kind {
            let il = inner.name.to_ascii_lowercase();
            if n == "prev" && (il == "first" || il == "last") {
                return self.expr(arg, fl);
            }
        }
        let ExprKind::Path(_) = &arg.kind else {
            let example = if n == "prev" {
                "PREV(amount) or PREV(LAST(v.amount), 2)"
            } else {
                "FIRST(v.amount)"
            };
            self.err(
                arg.span,
                format!("{upper} takes a column reference, like {example}"),
            );
            return None;
        };
        self.expr(arg, fl)
    }

    fn aggregate(&mut self, name: &Ident, n: &str, args: &[Expr], span: Span, fl: Flags) -> Ty {
        let upper = n.to_ascii_uppercase();
        let inner = Flags {
            in_agg: true,
            top_item: false,
        };
        match self.place {
            Place::Define | Place::Measures | Place::MetricItem => {}
            p => {
                self.err(
                    span,
                    format!(
                        "aggregate {upper} is not allowed in {}; aggregates belong in a rule's DEFINE/MEASURES or a metric's SELECT",
                        p.clause()
                    ),
                );
                return None;
            }
        }
        if fl.in_agg {
            self.err(
                span,
                format!("aggregates cannot be nested ({upper} inside an aggregate)"),
            );
            return None;
        }
        if !self.arity(name, args, span, 1, 1) {
            return None;
        }
        let arg = &args[0];
        if let ExprKind::Wildcard(var) = &arg.kind {
            if n != "count" {
                self.err(
                    arg.span,
                    format!("{upper}(*) is not allowed; only COUNT takes `*`"),
                );
                return None;
            }
            if let Some(v) = var {
                match self.vars {
                    None => {
                        self.err(
                            arg.span,
                            format!(
                                "COUNT({}.*) counts rows of a pattern variable and is only allowed in rules; use COUNT(*)",
                                v.name
                            ),
                        );
                        return None;
                    }
                    Some(vars) => {
                        if !vars.known(&v.name) {
                            let pv: Vec<&str> = vars
                                .present
                                .iter()
                                .chain(vars.absent.iter())
                                .map(String::as_str)
                                .collect();
                            let mut msg = format!("unknown pattern variable `{}`", v.name);
                            if let Some(m) = did_you_mean(&v.name, pv.iter().copied()) {
                                msg.push_str(&format!("; did you mean `{m}`?"));
                            } else {
                                msg.push_str(&format!("; the pattern has {}", list(&pv)));
                            }
                            self.err(v.span, msg);
                        } else if !vars.in_pattern(&v.name) {
                            self.err(
                                v.span,
                                format!("pattern variable `{}` is not in PATTERN", v.name),
                            );
                        } else if vars.absent.contains(&v.name) {
                            self.err(
                                v.span,
                                format!(
                                    "`{}` is an absence (!{}) and maps no rows",
                                    v.name, v.name
                                ),
                            );
                        }
                    }
                }
            }
            return Some(DataType::Int);
        }
        // In a rule, an aggregate reads the rows of one pattern variable.
        if let Some(vars) = self.vars {
            let mut roots = BTreeSet::new();
            arg.walk(&mut |x| {
                if let ExprKind::Path(p) = &x.kind {
                    if p.len() > 1 && vars.known(&p[0].name) {
                        roots.insert(p[0].name.clone());
                    }
                }
            });
            if roots.len() > 1 {
                self.err(
                    arg.span,
                    format!(
                        "{upper} may read only one pattern variable, found {}",
                        roots
                            .iter()
                            .map(|r| format!("`{r}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        let t = known(self.expr(arg, inner));
        match n {
            "count" => Some(DataType::Int),
            "sum" | "avg" => {
                if t.is_some() && !numeric(t) {
                    self.err(
                        arg.span,
                        format!("{upper} needs numbers, found {}", type_name(t)),
                    );
                    return None;
                }
                if n == "avg" {
                    Some(DataType::Float)
                } else {
                    t
                }
            }
            _ => {
                if t == Some(DataType::Bool) {
                    self.err(arg.span, format!("{upper} of BOOL values is not defined"));
                }
                t
            }
        }
    }

    fn approx(&mut self, name: &Ident, n: &str, args: &[Expr], span: Span, fl: Flags) -> Ty {
        let upper = n.to_ascii_uppercase();
        if self.place != Place::MetricItem || !fl.top_item {
            self.err(
                span,
                format!("{upper} is only allowed as a whole SELECT item of a METRIC"),
            );
            return None;
        }
        let inner = Flags {
            in_agg: true,
            top_item: false,
        };
        match n {
            "approx_count_distinct" | "approx_set" => {
                if !self.arity(name, args, span, 1, 1) {
                    return None;
                }
                self.agg_arg(&upper, &args[0], inner);
                Some(if n == "approx_set" {
                    DataType::Json
                } else {
                    DataType::Int
                })
            }
            "approx_percentile" => {
                if !self.arity(name, args, span, 2, usize::MAX) {
                    return None;
                }
                let t = known(self.agg_arg(&upper, &args[0], inner));
                if t.is_some() && !numeric(t) {
                    self.err(
                        args[0].span,
                        format!("APPROX_PERCENTILE needs numbers, found {}", type_name(t)),
                    );
                }
                for p in &args[1..] {
                    match number_literal(p) {
                        Some(f) if (0.0..=1.0).contains(&f) => {}
                        Some(f) => self.err(
                            p.span,
                            format!("percentile {f} is outside [0, 1]; write 0.99 for the 99th"),
                        ),
                        None => self.err(
                            p.span,
                            "percentiles must be number literals in [0, 1], like 0.5",
                        ),
                    }
                }
                Some(if args.len() == 2 {
                    DataType::Float
                } else {
                    DataType::Json
                })
            }
            _ => {
                // approx_top_k
                if !self.arity(name, args, span, 2, 2) {
                    return None;
                }
                self.agg_arg(&upper, &args[0], inner);
                match int_literal(&args[1]) {
                    Some(k) if k >= 1 => {}
                    _ => self.err(
                        args[1].span,
                        "APPROX_TOP_K needs k ≥ 1 as a whole number literal, like APPROX_TOP_K(path, 10)",
                    ),
                }
                Some(DataType::Json)
            }
        }
    }

    fn agg_arg(&mut self, upper: &str, arg: &Expr, fl: Flags) -> Ty {
        if let ExprKind::Wildcard(_) = arg.kind {
            self.err(
                arg.span,
                format!("{upper}(*) is not allowed; name a column"),
            );
            return None;
        }
        self.expr(arg, fl)
    }
}
