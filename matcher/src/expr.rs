//! Expression evaluation shared by every engine (rules, searches, metrics).
//!
//! [`compile`] turns a [`dsl::ast::Expr`] into a [`CompiledExpr`] once: names are resolved
//! to column indexes or JSON paths, regexes and LIKE patterns are compiled, literals are
//! converted. Evaluating it ([`CompiledExpr::eval`]) does no name look-ups.
//!
//! Semantics (language contract §3):
//! - SQL three-valued logic: a comparison with NULL (or a missing field) is NULL; `AND`,
//!   `OR`, `NOT` follow the SQL truth tables; a condition holds only when it is TRUE.
//! - Arithmetic: INT op INT is INT (overflow → NULL), anything with FLOAT is FLOAT; `/` and
//!   `%` by zero are NULL; INT `/` INT truncates toward zero.
//! - Comparisons: INT and FLOAT compare numerically, TIMESTAMP with TIMESTAMP, INT (epoch
//!   ms) or an RFC 3339 string; other mixes are NULL.
//! - `LIKE` with `%` and `_`; `col ~ 're'` and `REGEXP_LIKE(col, 're')` are true when the
//!   regex (regex-automata syntax) matches anywhere in the string (anchor with `^…$`).
//! - Functions: `lower upper length abs coalesce regexp_like`.
//!
//! Things only a particular engine can answer — pattern navigation and aggregates of a
//! rule (`v.col`, `FIRST`, `LAST`, `PREV`, `COUNT(v.*)`, `SUM`… , `MATCH_NUMBER()`,
//! `CLASSIFIER()`), and full-text `MATCHES` tests — are compiled into [`Nav`] and
//! `Matches` nodes that the evaluator asks the [`Context`] for.

use crate::value::{json_path, Row, Value};
use dsl::ast::{self, BinaryOp, ExprKind, Literal, Span, UnaryOp};
use dsl::plan::StreamDef;
use regex_automata::meta::Regex;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// A compile error with the place in the statement it refers to.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub message: String,
    pub span: Span,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExprError {}

fn err<T>(span: Span, message: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError {
        message: message.into(),
        span,
    })
}

/// Where a field of a row lives.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldRef {
    /// Declared column `i`, optionally followed by a path into a JSON column.
    Col(usize, Vec<String>),
    /// An undeclared top-level field and a path below it.
    Extra(String, Vec<String>),
}

impl FieldRef {
    /// Reads the field from a row (missing → NULL).
    pub fn get(&self, row: &Row) -> Value {
        match self {
            FieldRef::Col(i, rest) if rest.is_empty() => row.get(*i).clone(),
            FieldRef::Col(i, rest) => match row.get(*i) {
                Value::Json(j) => json_path(j, rest),
                _ => Value::Null,
            },
            FieldRef::Extra(name, rest) => row.extra_path(name, rest),
        }
    }

    fn canon(&self, out: &mut String) {
        match self {
            FieldRef::Col(i, rest) => {
                out.push_str(&format!("c{i}"));
                for r in rest {
                    out.push_str(&format!(".{r:?}"));
                }
            }
            FieldRef::Extra(n, rest) => {
                out.push_str(&format!("x{n:?}"));
                for r in rest {
                    out.push_str(&format!(".{r:?}"));
                }
            }
        }
    }
}

/// Aggregate functions over the rows mapped to a pattern variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggFunc {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

/// Index of a pattern variable in the rule's variable table.
pub type VarId = u16;

/// A reference only the running engine can resolve (see [`Context::nav`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Nav {
    /// `v.col` (n = 0) or `LAST(v.col, n)`: the n-th last row mapped to `v`.
    /// With `var = None`: the n-th last row of the match (a bare column in MEASURES).
    Last {
        var: Option<VarId>,
        field: FieldRef,
        n: u32,
    },
    /// `FIRST(v.col, n)`: the n-th row mapped to `v` (0 = first).
    First {
        var: Option<VarId>,
        field: FieldRef,
        n: u32,
    },
    /// `PREV(col, n)` (var None: n rows before the current row) or `PREV(v.col, n)` (n rows
    /// before the last row mapped to v): physical rows of the partition, which may be
    /// before the match's first row (SQL:2016; NULL before the partition's first row).
    Prev {
        var: Option<VarId>,
        field: FieldRef,
        n: u32,
    },
    /// `PREV(FIRST(v.col, m), n)` / `PREV(LAST(v.col, m), n)`: the partition's row n before
    /// the row `of` (a `First` or `Last`) navigates to; its field is `of`'s.
    PrevOf {
        of: Box<Nav>,
        n: u32,
    },
    /// `COUNT(v.*)` (arg None), `COUNT(v.col)`, `SUM`, `AVG`, `MIN`, `MAX` over the rows
    /// mapped to v so far (var None = all rows of the match).
    Agg {
        func: AggFunc,
        var: Option<VarId>,
        arg: Option<FieldRef>,
    },
    MatchNumber,
    Classifier,
}

/// What an expression may read while it is evaluated.
pub trait Context {
    /// The current row: bare column names read it. `None` reads as NULL.
    fn row(&self) -> Option<&Row>;
    /// Navigation and aggregates (rules only). Default: NULL.
    fn nav(&self, _nav: &Nav) -> Value {
        Value::Null
    }
    /// Result of the `id`-th `MATCHES` test of the expression (searches only). Default: NULL.
    fn matches(&self, _id: usize) -> Value {
        Value::Null
    }
}

impl Context for Row {
    fn row(&self) -> Option<&Row> {
        Some(self)
    }
}

/// How names are resolved while compiling.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub stream: &'a StreamDef,
    /// Pattern variables of the rule (empty outside rules).
    pub vars: &'a [String],
    /// The variable whose DEFINE this is: `v.col` of this variable is the current row.
    pub current_var: Option<VarId>,
    /// Allow navigation / aggregate functions (rules).
    pub allow_nav: bool,
    /// In MEASURES: bare columns read the last row of the match.
    pub in_measures: bool,
}

impl<'a> Scope<'a> {
    /// A scope for plain row expressions (searches, metrics).
    pub fn plain(stream: &'a StreamDef) -> Scope<'a> {
        Scope {
            stream,
            vars: &[],
            current_var: None,
            allow_nav: false,
            in_measures: false,
        }
    }
}

#[derive(Debug, Clone)]
enum LikeTok {
    Lit(char),
    One,
    Any,
}

#[derive(Debug, Clone)]
enum Node {
    Lit(Value),
    Field(FieldRef),
    Nav(Box<Nav>),
    Matches(usize),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cmp(BinaryOp, Box<Node>, Box<Node>),
    /// Fast path: declared column compared with a literal.
    CmpColLit(BinaryOp, usize, Value),
    Arith(BinaryOp, Box<Node>, Box<Node>),
    IsNull(Box<Node>, bool),
    InList(Box<Node>, Vec<Node>, bool),
    Between(Box<Node>, Box<Node>, Box<Node>, bool),
    Like(Box<Node>, Arc<Vec<LikeTok>>, bool),
    LikeDyn(Box<Node>, Box<Node>, bool),
    Regex(Box<Node>, Arc<Regex>),
    Case(Option<Box<Node>>, Vec<(Node, Node)>, Option<Box<Node>>),
    Func(Func, Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Lower,
    Upper,
    Length,
    Abs,
    Coalesce,
}

/// A compiled expression: immutable, cheap to clone (share it behind an `Arc` if needed).
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    node: Node,
    /// The `MATCHES` tests, in order of their ids: (field, query text).
    pub matches: Vec<(FieldRef, String)>,
    /// Variables whose history this expression reads (navigation other than the current
    /// row, aggregates). Empty = depends only on the current row (and PREV rows).
    pub history_vars: Vec<Option<VarId>>,
    uses_match_number: bool,
    row_only: bool,
    /// The largest `n` of the `PREV(…, n)` in the expression (0 = none): how many rows
    /// before a match's first row it can read.
    max_prev: u32,
}

impl CompiledExpr {
    /// How many rows before a match's first row the expression can read (`PREV` reaches
    /// into the partition before the match).
    pub fn lookback(&self) -> u32 {
        self.max_prev
    }

    /// True when the value depends only on the current row (no navigation, aggregates
    /// or MATCHES): such results can be cached per event and shared between rules.
    pub fn reads_only_row(&self) -> bool {
        self.row_only
    }

    /// Evaluates to a value.
    pub fn eval<C: Context + ?Sized>(&self, ctx: &C) -> Value {
        eval(&self.node, ctx)
    }

    /// Evaluates a condition: true only when the value is TRUE (NULL is not true).
    pub fn eval_bool<C: Context + ?Sized>(&self, ctx: &C) -> bool {
        eval_truth(&self.node, ctx) == Some(true)
    }

    /// A canonical text of the compiled form: equal texts evaluate identically on the
    /// same context (used to share predicate evaluation between rules).
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        canon(&self.node, &mut s);
        s
    }

    /// The declared column index when the expression is just a plain column.
    pub fn as_column(&self) -> Option<usize> {
        match &self.node {
            Node::Field(FieldRef::Col(i, rest)) if rest.is_empty() => Some(*i),
            _ => None,
        }
    }

    pub fn uses_match_number(&self) -> bool {
        self.uses_match_number
    }

    /// When the expression is `col = 'literal'` or a conjunction containing one, returns
    /// (column, literal) of the first such conjunct: a row where the column differs from
    /// the literal cannot satisfy the expression. Used to index rules by their start.
    pub fn required_equality(&self) -> Option<(usize, Value)> {
        fn walk(n: &Node) -> Option<(usize, Value)> {
            match n {
                Node::CmpColLit(BinaryOp::Eq, c, v) => Some((*c, v.clone())),
                Node::And(a, b) => walk(a).or_else(|| walk(b)),
                _ => None,
            }
        }
        walk(&self.node)
    }

    /// Every `col = literal` conjunct of the top-level AND chain: a row satisfies the
    /// expression only if it satisfies each of them. Empty when there is none.
    pub fn required_equalities(&self) -> Vec<(usize, Value)> {
        fn walk(n: &Node, out: &mut Vec<(usize, Value)>) {
            match n {
                Node::CmpColLit(BinaryOp::Eq, c, v) => out.push((*c, v.clone())),
                Node::And(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.node, &mut out);
        out
    }
}

struct Compiler<'a, 'b> {
    scope: &'b Scope<'a>,
    matches: Vec<(FieldRef, String)>,
    history: Vec<Option<VarId>>,
    uses_match_number: bool,
    row_only: bool,
    max_prev: u32,
}

/// Compiles an expression in a scope.
pub fn compile(expr: &ast::Expr, scope: &Scope) -> Result<CompiledExpr, ExprError> {
    let mut c = Compiler {
        scope,
        matches: Vec::new(),
        history: Vec::new(),
        uses_match_number: false,
        row_only: true,
        max_prev: 0,
    };
    let node = c.expr(expr)?;
    c.row_only = !has_context_nodes(&node);
    Ok(CompiledExpr {
        node,
        matches: c.matches,
        history_vars: c.history,
        uses_match_number: c.uses_match_number,
        row_only: c.row_only,
        max_prev: c.max_prev,
    })
}

fn lit_value(l: &Literal) -> Value {
    match l {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Int(i) => Value::Int(*i),
        Literal::Float(f) => Value::Float(*f),
        Literal::String(s) => Value::String(s.clone()),
    }
}

impl Compiler<'_, '_> {
    fn var_of(&self, name: &str) -> Option<VarId> {
        self.scope
            .vars
            .iter()
            .position(|v| v == name)
            .map(|i| i as VarId)
    }

    fn field(&self, parts: &[ast::Ident]) -> FieldRef {
        let first = &parts[0].name;
        let rest: Vec<String> = parts[1..].iter().map(|p| p.name.clone()).collect();
        match self
            .scope
            .stream
            .columns
            .iter()
            .position(|(c, _)| c == first)
        {
            Some(i) => FieldRef::Col(i, rest),
            None => FieldRef::Extra(first.clone(), rest),
        }
    }

    /// A path that may start with a pattern variable: (var, field).
    fn var_field(&self, parts: &[ast::Ident]) -> (Option<VarId>, FieldRef) {
        if parts.len() >= 2 && self.scope.allow_nav {
            if let Some(v) = self.var_of(&parts[0].name) {
                return (Some(v), self.field(&parts[1..]));
            }
        }
        (None, self.field(parts))
    }

    fn note_history(&mut self, var: Option<VarId>) {
        if !self.history.contains(&var) {
            self.history.push(var);
        }
    }

    fn expr(&mut self, e: &ast::Expr) -> Result<Node, ExprError> {
        Ok(match &e.kind {
            ExprKind::Literal(l) => Node::Lit(lit_value(l)),
            ExprKind::Path(parts) => {
                if parts.is_empty() {
                    return err(e.span, "empty name");
                }
                let (var, field) = self.var_field(parts);
                match var {
                    // `v.col` inside v's own DEFINE is the row being classified.
                    Some(v) if Some(v) == self.scope.current_var => Node::Field(field),
                    Some(v) => {
                        self.note_history(Some(v));
                        Node::Nav(Box::new(Nav::Last {
                            var: Some(v),
                            field,
                            n: 0,
                        }))
                    }
                    None if self.scope.in_measures => Node::Nav(Box::new(Nav::Last {
                        var: None,
                        field,
                        n: 0,
                    })),
                    None => Node::Field(field),
                }
            }
            ExprKind::Wildcard(_) => {
                return err(e.span, "`*` is only allowed as the argument of COUNT")
            }
            ExprKind::Unary { op, expr } => {
                let inner = Box::new(self.expr(expr)?);
                match op {
                    UnaryOp::Not => Node::Not(inner),
                    UnaryOp::Neg => Node::Neg(inner),
                }
            }
            ExprKind::Binary { op, left, right } => self.binary(*op, left, right, e.span)?,
            ExprKind::IsNull { expr, negated } => {
                Node::IsNull(Box::new(self.expr(expr)?), *negated)
            }
            ExprKind::InList {
                expr,
                list,
                negated,
            } => {
                let x = self.expr(expr)?;
                let items = list
                    .iter()
                    .map(|i| self.expr(i))
                    .collect::<Result<Vec<_>, _>>()?;
                Node::InList(Box::new(x), items, *negated)
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => Node::Between(
                Box::new(self.expr(expr)?),
                Box::new(self.expr(low)?),
                Box::new(self.expr(high)?),
                *negated,
            ),
            ExprKind::Like {
                expr,
                pattern,
                negated,
            } => {
                let x = Box::new(self.expr(expr)?);
                match &pattern.kind {
                    ExprKind::Literal(Literal::String(p)) => {
                        Node::Like(x, Arc::new(like_tokens(p)), *negated)
                    }
                    _ => Node::LikeDyn(x, Box::new(self.expr(pattern)?), *negated),
                }
            }
            ExprKind::Case {
                operand,
                whens,
                else_,
            } => {
                let op = match operand {
                    Some(o) => Some(Box::new(self.expr(o)?)),
                    None => None,
                };
                let mut ws = Vec::new();
                for (w, t) in whens {
                    ws.push((self.expr(w)?, self.expr(t)?));
                }
                let el = match else_ {
                    Some(x) => Some(Box::new(self.expr(x)?)),
                    None => None,
                };
                Node::Case(op, ws, el)
            }
            ExprKind::Function { name, args } => self.function(name, args, e.span)?,
        })
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        left: &ast::Expr,
        right: &ast::Expr,
        span: Span,
    ) -> Result<Node, ExprError> {
        Ok(match op {
            BinaryOp::And => Node::And(Box::new(self.expr(left)?), Box::new(self.expr(right)?)),
            BinaryOp::Or => Node::Or(Box::new(self.expr(left)?), Box::new(self.expr(right)?)),
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq => {
                let l = self.expr(left)?;
                let r = self.expr(right)?;
                match (l, r) {
                    (Node::Field(FieldRef::Col(c, rest)), Node::Lit(v))
                        if rest.is_empty() && !v.is_null() =>
                    {
                        Node::CmpColLit(op, c, v)
                    }
                    (Node::Lit(v), Node::Field(FieldRef::Col(c, rest)))
                        if rest.is_empty() && !v.is_null() =>
                    {
                        Node::CmpColLit(flip(op), c, v)
                    }
                    (l, r) => Node::Cmp(op, Box::new(l), Box::new(r)),
                }
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => {
                Node::Arith(op, Box::new(self.expr(left)?), Box::new(self.expr(right)?))
            }
            BinaryOp::RegexMatch => {
                let re = regex_literal(right)?;
                Node::Regex(Box::new(self.expr(left)?), re)
            }
            BinaryOp::Matches => {
                let q = match &right.kind {
                    ExprKind::Literal(Literal::String(s)) => s.clone(),
                    _ => return err(right.span, "MATCHES needs a string literal query"),
                };
                let field = match &left.kind {
                    ExprKind::Path(p) if !p.is_empty() => self.field(p),
                    _ => return err(left.span, "MATCHES needs a field name on its left"),
                };
                let _ = span;
                self.matches.push((field, q));
                Node::Matches(self.matches.len() - 1)
            }
        })
    }

    fn function(
        &mut self,
        name: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
    ) -> Result<Node, ExprError> {
        let lname = name.name.to_ascii_lowercase();
        let argc = |n: usize| -> Result<(), ExprError> {
            if args.len() == n {
                Ok(())
            } else {
                err(
                    span,
                    format!("{} takes {n} argument(s), got {}", name.name, args.len()),
                )
            }
        };
        let simple = |f: Func| (f, 1usize);
        let plain = match lname.as_str() {
            "lower" => Some(simple(Func::Lower)),
            "upper" => Some(simple(Func::Upper)),
            "length" | "char_length" => Some(simple(Func::Length)),
            "abs" => Some(simple(Func::Abs)),
            "coalesce" => Some((Func::Coalesce, 0)),
            _ => None,
        };
        if let Some((f, n)) = plain {
            if n > 0 {
                argc(n)?;
            } else if args.is_empty() {
                return err(span, "COALESCE needs at least one argument");
            }
            let a = args
                .iter()
                .map(|x| self.expr(x))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Node::Func(f, a));
        }
        if lname == "running" || lname == "final" {
            argc(1)?;
            if lname == "final" && !self.scope.in_measures {
                return err(name.span, "FINAL is only allowed in MEASURES");
            }
            // ONE ROW PER MATCH evaluates MEASURES at the match's last row, where RUNNING and
            // FINAL agree; a DEFINE is always RUNNING
            return self.expr(&args[0]);
        }
        if lname == "regexp_like" || lname == "regexp" {
            argc(2)?;
            let re = regex_literal(&args[1])?;
            return Ok(Node::Regex(Box::new(self.expr(&args[0])?), re));
        }
        let nav_fn = matches!(
            lname.as_str(),
            "first"
                | "last"
                | "prev"
                | "count"
                | "sum"
                | "avg"
                | "min"
                | "max"
                | "match_number"
                | "classifier"
        );
        if !nav_fn {
            return err(name.span, format!("unknown function `{}`", name.name));
        }
        if !self.scope.allow_nav {
            return err(
                name.span,
                format!(
                    "{} is only allowed in a rule's DEFINE or MEASURES",
                    name.name
                ),
            );
        }
        match lname.as_str() {
            "match_number" => {
                argc(0)?;
                self.uses_match_number = true;
                Ok(Node::Nav(Box::new(Nav::MatchNumber)))
            }
            "classifier" => {
                argc(0)?;
                Ok(Node::Nav(Box::new(Nav::Classifier)))
            }
            "first" | "last" | "prev" => {
                if args.is_empty() || args.len() > 2 {
                    return err(span, format!("{} takes 1 or 2 arguments", name.name));
                }
                let n = match args.get(1) {
                    None => 0,
                    Some(a) => match &a.kind {
                        ExprKind::Literal(Literal::Int(i)) if *i >= 0 && *i < 1 << 20 => *i as u32,
                        _ => {
                            return err(a.span, "the offset must be a non-negative integer literal")
                        }
                    },
                };
                let n = if lname == "prev" && args.len() == 1 {
                    1
                } else {
                    n
                };
                // nested: PREV over FIRST / LAST (the row they reach, then n rows back)
                if let ExprKind::Function { name: inner, .. } = &args[0].kind {
                    let il = inner.name.to_ascii_lowercase();
                    if lname == "prev" && (il == "first" || il == "last") {
                        self.max_prev = self.max_prev.max(n);
                        return match self.expr(&args[0])? {
                            Node::Nav(of) => Ok(Node::Nav(Box::new(Nav::PrevOf { of, n }))),
                            // LAST(v.col) in v's own DEFINE: the current row
                            Node::Field(field) => Ok(Node::Nav(Box::new(Nav::Prev {
                                var: None,
                                field,
                                n,
                            }))),
                            _ => err(args[0].span, "PREV navigates from FIRST(…) or LAST(…)"),
                        };
                    }
                }
                let parts = match &args[0].kind {
                    ExprKind::Path(p) if !p.is_empty() => p,
                    _ => {
                        return err(
                            args[0].span,
                            format!("{} needs a column or `var.column`", name.name),
                        )
                    }
                };
                let (var, field) = self.var_field(parts);
                let nav = match lname.as_str() {
                    "first" => Nav::First { var, field, n },
                    "last" => Nav::Last { var, field, n },
                    _ => Nav::Prev { var, field, n },
                };
                // LAST(v.col) in v's own DEFINE is the current row.
                if let Nav::Last {
                    var: Some(v),
                    field,
                    n: 0,
                } = &nav
                {
                    if Some(*v) == self.scope.current_var {
                        return Ok(Node::Field(field.clone()));
                    }
                }
                if let Nav::Prev { n, .. } = &nav {
                    self.max_prev = self.max_prev.max(*n);
                }
                match &nav {
                    Nav::Prev { var: None, .. } => {}
                    Nav::First { var, .. } | Nav::Last { var, .. } | Nav::Prev { var, .. } => {
                        self.note_history(*var)
                    }
                    _ => {}
                }
                Ok(Node::Nav(Box::new(nav)))
            }
            _ => {
                argc(1)?;
                let func = match lname.as_str() {
                    "count" => AggFunc::Count,
                    "sum" => AggFunc::Sum,
                    "avg" => AggFunc::Avg,
                    "min" => AggFunc::Min,
                    _ => AggFunc::Max,
                };
                let (var, arg) = match &args[0].kind {
                    ExprKind::Wildcard(v) => {
                        if func != AggFunc::Count {
                            return err(args[0].span, "`*` is only allowed in COUNT");
                        }
                        let var = match v {
                            None => None,
                            Some(id) => match self.var_of(&id.name) {
                                Some(v) => Some(v),
                                None => {
                                    return err(
                                        id.span,
                                        format!("`{}` is not a pattern variable", id.name),
                                    )
                                }
                            },
                        };
                        (var, None)
                    }
                    ExprKind::Path(p) if !p.is_empty() => {
                        let (var, field) = self.var_field(p);
                        (var, Some(field))
                    }
                    _ => {
                        return err(
                            args[0].span,
                            format!("{} needs `var.column`, a column or `var.*`", name.name),
                        )
                    }
                };
                self.note_history(var);
                Ok(Node::Nav(Box::new(Nav::Agg { func, var, arg })))
            }
        }
    }
}

fn has_context_nodes(n: &Node) -> bool {
    match n {
        Node::Nav(_) | Node::Matches(_) => true,
        Node::Lit(_) | Node::Field(_) | Node::CmpColLit(..) => false,
        Node::Not(x)
        | Node::Neg(x)
        | Node::IsNull(x, _)
        | Node::Like(x, _, _)
        | Node::Regex(x, _) => has_context_nodes(x),
        Node::And(a, b)
        | Node::Or(a, b)
        | Node::Cmp(_, a, b)
        | Node::Arith(_, a, b)
        | Node::LikeDyn(a, b, _) => has_context_nodes(a) || has_context_nodes(b),
        Node::InList(x, items, _) => has_context_nodes(x) || items.iter().any(has_context_nodes),
        Node::Between(x, a, b, _) => {
            has_context_nodes(x) || has_context_nodes(a) || has_context_nodes(b)
        }
        Node::Case(op, whens, el) => {
            op.as_deref().is_some_and(has_context_nodes)
                || whens
                    .iter()
                    .any(|(w, t)| has_context_nodes(w) || has_context_nodes(t))
                || el.as_deref().is_some_and(has_context_nodes)
        }
        Node::Func(_, args) => args.iter().any(has_context_nodes),
    }
}

fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::LtEq => BinaryOp::GtEq,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::GtEq => BinaryOp::LtEq,
        o => o,
    }
}

fn regex_literal(e: &ast::Expr) -> Result<Arc<Regex>, ExprError> {
    match &e.kind {
        ExprKind::Literal(Literal::String(p)) => {
            Regex::new(p).map(Arc::new).map_err(|x| ExprError {
                message: format!("invalid regex: {x}"),
                span: e.span,
            })
        }
        _ => err(e.span, "the regex must be a string literal"),
    }
}

fn like_tokens(p: &str) -> Vec<LikeTok> {
    p.chars()
        .map(|c| match c {
            '%' => LikeTok::Any,
            '_' => LikeTok::One,
            c => LikeTok::Lit(c),
        })
        .collect()
}

fn like_match(toks: &[LikeTok], s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let (mut ti, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < chars.len() {
        match toks.get(ti) {
            Some(LikeTok::Any) => {
                star = Some((ti, si));
                ti += 1;
            }
            Some(LikeTok::One) => {
                ti += 1;
                si += 1;
            }
            Some(LikeTok::Lit(c)) if *c == chars[si] => {
                ti += 1;
                si += 1;
            }
            _ => match star {
                Some((st, ss)) => {
                    ti = st + 1;
                    si = ss + 1;
                    star = Some((st, ss + 1));
                }
                None => return false,
            },
        }
    }
    toks[ti..].iter().all(|t| matches!(t, LikeTok::Any))
}

fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn from_truth(b: Option<bool>) -> Value {
    match b {
        Some(b) => Value::Bool(b),
        None => Value::Null,
    }
}

fn cmp_op(op: BinaryOp, a: &Value, b: &Value) -> Value {
    from_truth(cmp_truth(op, a, b))
}

/// A comparison's truth value (`None` = NULL).
fn cmp_truth(op: BinaryOp, a: &Value, b: &Value) -> Option<bool> {
    match op {
        BinaryOp::Eq | BinaryOp::NotEq => {
            let eq = match (a, b) {
                // the common case: no ordering needed, lengths compared first
                (Value::String(x), Value::String(y)) => Some(x == y),
                _ => a.sql_eq(b),
            };
            eq.map(|e| e == (op == BinaryOp::Eq))
        }
        _ => a.sql_cmp(b).map(|o| match op {
            BinaryOp::Lt => o == Ordering::Less,
            BinaryOp::LtEq => o != Ordering::Greater,
            BinaryOp::Gt => o == Ordering::Greater,
            _ => o != Ordering::Less,
        }),
    }
}

/// Arithmetic on two values (NULL on NULL, type mismatch, overflow, division by zero).
pub fn arith(op: BinaryOp, a: &Value, b: &Value) -> Value {
    use Value::*;
    match (a, b) {
        (Int(x), Int(y)) => {
            let r = match op {
                BinaryOp::Add => x.checked_add(*y),
                BinaryOp::Sub => x.checked_sub(*y),
                BinaryOp::Mul => x.checked_mul(*y),
                BinaryOp::Div => x.checked_div(*y),
                _ => x.checked_rem(*y),
            };
            r.map(Int).unwrap_or(Null)
        }
        (Timestamp(t), Int(d)) if matches!(op, BinaryOp::Add | BinaryOp::Sub) => {
            let r = if op == BinaryOp::Add {
                t.checked_add(*d)
            } else {
                t.checked_sub(*d)
            };
            r.map(Timestamp).unwrap_or(Null)
        }
        (Timestamp(x), Timestamp(y)) if op == BinaryOp::Sub => {
            x.checked_sub(*y).map(Int).unwrap_or(Null)
        }
        (Int(_) | Float(_), Int(_) | Float(_)) => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            match op {
                BinaryOp::Add => Float(x + y),
                BinaryOp::Sub => Float(x - y),
                BinaryOp::Mul => Float(x * y),
                BinaryOp::Div if y == 0.0 => Null,
                BinaryOp::Div => Float(x / y),
                _ if y == 0.0 => Null,
                _ => Float(x % y),
            }
        }
        _ => Null,
    }
}

/// A condition's truth value (`None` = NULL) without building a [`Value`] for the
/// boolean nodes.
fn eval_truth<C: Context + ?Sized>(n: &Node, ctx: &C) -> Option<bool> {
    match n {
        Node::And(a, b) => {
            let x = eval_truth(a, ctx);
            if x == Some(false) {
                return Some(false);
            }
            match (x, eval_truth(b, ctx)) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }
        }
        Node::Or(a, b) => {
            let x = eval_truth(a, ctx);
            if x == Some(true) {
                return Some(true);
            }
            match (x, eval_truth(b, ctx)) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }
        }
        Node::Not(x) => eval_truth(x, ctx).map(|b| !b),
        Node::CmpColLit(op, c, lit) => match ctx.row() {
            Some(r) => cmp_truth(*op, r.get(*c), lit),
            None => None,
        },
        Node::Cmp(op, a, b) => cmp_truth(*op, &eval_ref(a, ctx), &eval_ref(b, ctx)),
        Node::Lit(v) => truth(v),
        _ => truth(&eval(n, ctx)),
    }
}

/// Like [`eval`], but literals and plain columns are borrowed instead of cloned.
fn eval_ref<'a, C: Context + ?Sized>(n: &'a Node, ctx: &'a C) -> std::borrow::Cow<'a, Value> {
    use std::borrow::Cow;
    match n {
        Node::Lit(v) => Cow::Borrowed(v),
        Node::Field(FieldRef::Col(i, rest)) if rest.is_empty() => match ctx.row() {
            Some(r) => Cow::Borrowed(r.get(*i)),
            None => Cow::Owned(Value::Null),
        },
        _ => Cow::Owned(eval(n, ctx)),
    }
}

fn eval<C: Context + ?Sized>(n: &Node, ctx: &C) -> Value {
    match n {
        Node::Lit(v) => v.clone(),
        Node::Field(f) => match ctx.row() {
            Some(r) => f.get(r),
            None => Value::Null,
        },
        Node::Nav(nav) => ctx.nav(nav),
        Node::Matches(i) => ctx.matches(*i),
        Node::Neg(x) => match eval(x, ctx) {
            Value::Int(i) => i.checked_neg().map(Value::Int).unwrap_or(Value::Null),
            Value::Float(f) => Value::Float(-f),
            _ => Value::Null,
        },
        Node::And(..) | Node::Or(..) | Node::Not(_) | Node::CmpColLit(..) => {
            from_truth(eval_truth(n, ctx))
        }
        Node::Cmp(op, a, b) => cmp_op(*op, &eval_ref(a, ctx), &eval_ref(b, ctx)),
        Node::Arith(op, a, b) => arith(*op, &eval(a, ctx), &eval(b, ctx)),
        Node::IsNull(x, neg) => Value::Bool(eval(x, ctx).is_null() != *neg),
        Node::InList(x, items, neg) => {
            let v = eval(x, ctx);
            if v.is_null() {
                return Value::Null;
            }
            let mut saw_null = false;
            for i in items {
                match v.sql_eq(&eval(i, ctx)) {
                    Some(true) => return Value::Bool(!neg),
                    Some(false) => {}
                    None => saw_null = true,
                }
            }
            if saw_null {
                Value::Null
            } else {
                Value::Bool(*neg)
            }
        }
        Node::Between(x, lo, hi, neg) => {
            let v = eval(x, ctx);
            let a = truth(&cmp_op(BinaryOp::GtEq, &v, &eval(lo, ctx)));
            let b = truth(&cmp_op(BinaryOp::LtEq, &v, &eval(hi, ctx)));
            let r = match (a, b) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            from_truth(r.map(|b| b != *neg))
        }
        Node::Like(x, toks, neg) => match eval(x, ctx) {
            Value::String(s) => Value::Bool(like_match(toks, &s) != *neg),
            _ => Value::Null,
        },
        Node::LikeDyn(x, p, neg) => match (eval(x, ctx), eval(p, ctx)) {
            (Value::String(s), Value::String(p)) => {
                Value::Bool(like_match(&like_tokens(&p), &s) != *neg)
            }
            _ => Value::Null,
        },
        Node::Regex(x, re) => match eval(x, ctx) {
            Value::String(s) => Value::Bool(re.is_match(s.as_str())),
            _ => Value::Null,
        },
        Node::Case(op, whens, el) => {
            let opv = op.as_ref().map(|o| eval(o, ctx));
            for (w, t) in whens {
                let hit = match &opv {
                    Some(v) => v.sql_eq(&eval(w, ctx)) == Some(true),
                    None => truth(&eval(w, ctx)) == Some(true),
                };
                if hit {
                    return eval(t, ctx);
                }
            }
            match el {
                Some(e) => eval(e, ctx),
                None => Value::Null,
            }
        }
        Node::Func(f, args) => match f {
            Func::Coalesce => {
                for a in args {
                    let v = eval(a, ctx);
                    if !v.is_null() {
                        return v;
                    }
                }
                Value::Null
            }
            Func::Lower => match eval(&args[0], ctx) {
                Value::String(s) => Value::String(s.to_lowercase()),
                _ => Value::Null,
            },
            Func::Upper => match eval(&args[0], ctx) {
                Value::String(s) => Value::String(s.to_uppercase()),
                _ => Value::Null,
            },
            Func::Length => match eval(&args[0], ctx) {
                Value::String(s) => Value::Int(s.chars().count() as i64),
                Value::Json(j) => match &*j {
                    serde_json::Value::Array(a) => Value::Int(a.len() as i64),
                    _ => Value::Null,
                },
                _ => Value::Null,
            },
            Func::Abs => match eval(&args[0], ctx) {
                Value::Int(i) => i.checked_abs().map(Value::Int).unwrap_or(Value::Null),
                Value::Float(f) => Value::Float(f.abs()),
                _ => Value::Null,
            },
        },
    }
}

fn canon(n: &Node, out: &mut String) {
    use std::fmt::Write;
    let sub = |tag: &str, xs: &[&Node], out: &mut String| {
        out.push_str(tag);
        out.push('(');
        for (i, x) in xs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            canon(x, out);
        }
        out.push(')');
    };
    match n {
        Node::Lit(v) => {
            let _ = write!(out, "{v:?}");
        }
        Node::Field(f) => f.canon(out),
        Node::Nav(nv) => {
            let _ = write!(out, "{nv:?}");
        }
        Node::Matches(i) => {
            let _ = write!(out, "M{i}");
        }
        Node::Not(x) => sub("not", &[x], out),
        Node::Neg(x) => sub("neg", &[x], out),
        Node::And(a, b) => sub("and", &[a, b], out),
        Node::Or(a, b) => sub("or", &[a, b], out),
        Node::Cmp(op, a, b) => sub(&format!("{op:?}"), &[a, b], out),
        Node::CmpColLit(op, c, v) => {
            let _ = write!(out, "{op:?}(c{c},{v:?})");
        }
        Node::Arith(op, a, b) => sub(&format!("{op:?}"), &[a, b], out),
        Node::IsNull(x, neg) => sub(&format!("isnull{neg}"), &[x], out),
        Node::InList(x, items, neg) => {
            let mut v: Vec<&Node> = vec![x];
            v.extend(items.iter());
            sub(&format!("in{neg}"), &v, out)
        }
        Node::Between(x, a, b, neg) => sub(&format!("between{neg}"), &[x, a, b], out),
        Node::Like(x, toks, neg) => sub(&format!("like{neg}{toks:?}"), &[x], out),
        Node::LikeDyn(x, p, neg) => sub(&format!("likedyn{neg}"), &[x, p], out),
        Node::Regex(x, re) => sub(&format!("re{:p}", Arc::as_ptr(re)), &[x], out),
        Node::Case(op, whens, el) => {
            out.push_str("case(");
            if let Some(o) = op {
                canon(o, out);
            }
            for (w, t) in whens {
                out.push_str(";when ");
                canon(w, out);
                out.push_str(" then ");
                canon(t, out);
            }
            if let Some(e) = el {
                out.push_str(";else ");
                canon(e, out);
            }
            out.push(')');
        }
        Node::Func(f, args) => {
            let v: Vec<&Node> = args.iter().collect();
            sub(&format!("{f:?}"), &v, out)
        }
    }
}

/// Small helpers to build ASTs in code (tests, engines building derived predicates).
pub mod build {
    use dsl::ast::*;

    pub fn e(kind: ExprKind) -> Expr {
        Expr {
            kind,
            span: Span::default(),
        }
    }
    pub fn col(path: &str) -> Expr {
        e(ExprKind::Path(path.split('.').map(Ident::new).collect()))
    }
    pub fn int(i: i64) -> Expr {
        e(ExprKind::Literal(Literal::Int(i)))
    }
    pub fn float(f: f64) -> Expr {
        e(ExprKind::Literal(Literal::Float(f)))
    }
    pub fn str(s: &str) -> Expr {
        e(ExprKind::Literal(Literal::String(s.into())))
    }
    pub fn null() -> Expr {
        e(ExprKind::Literal(Literal::Null))
    }
    pub fn bin(op: BinaryOp, l: Expr, r: Expr) -> Expr {
        e(ExprKind::Binary {
            op,
            left: Box::new(l),
            right: Box::new(r),
        })
    }
    pub fn not(x: Expr) -> Expr {
        e(ExprKind::Unary {
            op: UnaryOp::Not,
            expr: Box::new(x),
        })
    }
    pub fn func(name: &str, args: Vec<Expr>) -> Expr {
        e(ExprKind::Function {
            name: Ident::new(name),
            args,
        })
    }
    pub fn star(var: Option<&str>) -> Expr {
        e(ExprKind::Wildcard(var.map(Ident::new)))
    }
    pub fn is_null(x: Expr, negated: bool) -> Expr {
        e(ExprKind::IsNull {
            expr: Box::new(x),
            negated,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::build::*;
    use super::*;
    use dsl::ast::DataType;
    use dsl::plan::LatePolicy;
    use serde_json::json;

    fn stream() -> StreamDef {
        StreamDef {
            name: "s".into(),
            columns: vec![
                ("name".into(), DataType::String),
                ("n".into(), DataType::Int),
                ("x".into(), DataType::Float),
                ("payload".into(), DataType::Json),
            ],
            event_time: None,
            max_delay_ms: 0,
            idle_timeout_ms: dsl::plan::DEFAULT_IDLE_TIMEOUT_MS,
            late: LatePolicy::Drop,
            key: None,
            kafka_topic: None,
            partitions: None,
        }
    }

    fn ev(e: &ast::Expr, row: serde_json::Value) -> Value {
        let s = stream();
        let c = compile(e, &Scope::plain(&s)).unwrap();
        let r = crate::value::RowDecoder::new(&s).decode(&row).unwrap();
        c.eval(&r)
    }

    #[test]
    fn three_valued_logic() {
        use BinaryOp::*;
        let r = json!({"n": 1});
        let null_cmp = bin(Eq, col("x"), float(1.0));
        assert_eq!(ev(&null_cmp, r.clone()), Value::Null);
        assert_eq!(ev(&not(null_cmp.clone()), r.clone()), Value::Null);
        let t = bin(Eq, col("n"), int(1));
        let f = bin(Eq, col("n"), int(2));
        assert_eq!(
            ev(&bin(And, null_cmp.clone(), f.clone()), r.clone()),
            Value::Bool(false)
        );
        assert_eq!(
            ev(&bin(And, null_cmp.clone(), t.clone()), r.clone()),
            Value::Null
        );
        assert_eq!(
            ev(&bin(Or, null_cmp.clone(), t.clone()), r.clone()),
            Value::Bool(true)
        );
        assert_eq!(ev(&bin(Or, null_cmp, f), r.clone()), Value::Null);
        assert_eq!(ev(&is_null(col("x"), false), r.clone()), Value::Bool(true));
        assert_eq!(
            ev(&is_null(col("missing.deep"), true), r),
            Value::Bool(false)
        );
    }

    #[test]
    fn arithmetic_and_division_by_zero() {
        use BinaryOp::*;
        let r = json!({"n": 7, "x": 2.0});
        assert_eq!(ev(&bin(Div, col("n"), int(2)), r.clone()), Value::Int(3));
        assert_eq!(ev(&bin(Div, col("n"), int(0)), r.clone()), Value::Null);
        assert_eq!(ev(&bin(Mod, col("n"), int(0)), r.clone()), Value::Null);
        assert_eq!(
            ev(&bin(Div, col("n"), col("x")), r.clone()),
            Value::Float(3.5)
        );
        assert_eq!(ev(&bin(Add, col("n"), str("a")), r.clone()), Value::Null);
        assert_eq!(
            ev(&bin(Mul, int(i64::MAX), int(2)), r),
            Value::Null,
            "overflow is NULL"
        );
    }

    #[test]
    fn in_between_like_case() {
        use BinaryOp::*;
        let r = json!({"name": "Alice", "n": 5});
        let inl = e(ExprKind::InList {
            expr: Box::new(col("n")),
            list: vec![int(1), int(5)],
            negated: false,
        });
        assert_eq!(ev(&inl, r.clone()), Value::Bool(true));
        let in_null = e(ExprKind::InList {
            expr: Box::new(col("n")),
            list: vec![int(1), null()],
            negated: false,
        });
        assert_eq!(ev(&in_null, r.clone()), Value::Null);
        let btw = e(ExprKind::Between {
            expr: Box::new(col("n")),
            low: Box::new(int(5)),
            high: Box::new(int(9)),
            negated: true,
        });
        assert_eq!(ev(&btw, r.clone()), Value::Bool(false));
        for (pat, want) in [
            ("A%", true),
            ("%ic%", true),
            ("A_ice", true),
            ("a%", false),
            ("%e", true),
            ("A%x", false),
        ] {
            let l = e(ExprKind::Like {
                expr: Box::new(col("name")),
                pattern: Box::new(str(pat)),
                negated: false,
            });
            assert_eq!(ev(&l, r.clone()), Value::Bool(want), "{pat}");
        }
        let case = e(ExprKind::Case {
            operand: None,
            whens: vec![
                (bin(Gt, col("n"), int(10)), str("big")),
                (bin(Gt, col("n"), int(3)), str("mid")),
            ],
            else_: Some(Box::new(str("small"))),
        });
        assert_eq!(ev(&case, r), Value::String("mid".into()));
    }

    #[test]
    fn functions_regex_and_nested_fields() {
        use BinaryOp::*;
        let r =
            json!({"name": "Ünïcode", "payload": {"user": {"id": 42}}, "other": {"a": [1, "z"]}});
        assert_eq!(
            ev(&func("lower", vec![col("name")]), r.clone()),
            Value::String("ünïcode".into())
        );
        assert_eq!(
            ev(&func("LENGTH", vec![col("name")]), r.clone()),
            Value::Int(7)
        );
        assert_eq!(ev(&func("abs", vec![int(-3)]), r.clone()), Value::Int(3));
        assert_eq!(
            ev(&func("coalesce", vec![col("x"), int(9)]), r.clone()),
            Value::Int(9)
        );
        assert_eq!(ev(&col("payload.user.id"), r.clone()), Value::Int(42));
        assert_eq!(ev(&col("other.a.1"), r.clone()), Value::String("z".into()));
        assert_eq!(
            ev(&bin(RegexMatch, col("name"), str("^Ü.*e$")), r.clone()),
            Value::Bool(true)
        );
        assert_eq!(
            ev(
                &func("regexp_like", vec![col("name"), str("xyz")]),
                r.clone()
            ),
            Value::Bool(false)
        );
        assert_eq!(
            ev(&bin(RegexMatch, col("missing"), str("a")), r),
            Value::Null
        );
        let s = stream();
        assert!(compile(&bin(RegexMatch, col("name"), str("(")), &Scope::plain(&s)).is_err());
        assert!(compile(&func("nope", vec![]), &Scope::plain(&s)).is_err());
        assert!(compile(&func("FIRST", vec![col("n")]), &Scope::plain(&s)).is_err());
    }

    #[test]
    fn canonical_text_and_required_equality() {
        use BinaryOp::*;
        let s = stream();
        let a = compile(
            &bin(
                And,
                bin(Eq, col("name"), str("x")),
                bin(Gt, col("n"), int(1)),
            ),
            &Scope::plain(&s),
        )
        .unwrap();
        let b = compile(
            &bin(
                And,
                bin(Eq, str("x"), col("name")),
                bin(Gt, col("n"), int(1)),
            ),
            &Scope::plain(&s),
        )
        .unwrap();
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.required_equality(), Some((0, Value::String("x".into()))));
        let c = compile(
            &bin(
                Or,
                bin(Eq, col("name"), str("x")),
                bin(Gt, col("n"), int(1)),
            ),
            &Scope::plain(&s),
        )
        .unwrap();
        assert_eq!(c.required_equality(), None);
    }
}
