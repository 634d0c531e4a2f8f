//! The syntax tree of the weir rule language.
//!
//! Every node that a diagnostic can point at carries a [`Span`] (byte offsets into the
//! statement file). Spans never take part in equality: two trees are equal when they say
//! the same thing, wherever it was written, so `parse(print(ast)) == ast` is a meaningful
//! test. `Display` (in `print.rs`) prints canonical text.

use serde::{Deserialize, Serialize};

/// Byte range `start..end` in the source text. Equality and hashing ignore spans.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    /// Smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}
impl Eq for Span {}
impl std::hash::Hash for Span {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// An identifier. Unquoted identifiers are case-sensitive, as in Flink SQL
/// (keywords are not); `quoted` records whether it was written "in double quotes".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

impl Ident {
    pub fn new(name: impl Into<String>) -> Self {
        Ident {
            name: name.into(),
            span: Span::default(),
        }
    }
}

/// A file is a list of statements, each ended by `;`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub kind: StatementKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StatementKind {
    CreateStream(CreateStream),
    CreateRule(CreateRule),
    CreateSearch(CreateSearch),
    CreateMetric(CreateMetric),
    Drop(Drop),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    Stream,
    Rule,
    Search,
    Metric,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drop {
    pub kind: ObjectKind,
    pub if_exists: bool,
    pub name: Ident,
}

// ───────────────────────────── streams ─────────────────────────────

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateStream {
    pub or_replace: bool,
    pub name: Ident,
    pub columns: Vec<ColumnDef>,
    /// `WITH (key = 'value', ...)`, unvalidated; `check` interprets them.
    pub options: Vec<WithOption>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: Ident,
    pub ty: DataType,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    String,
    Int,
    Float,
    Bool,
    Timestamp,
    Json,
}

/// `key = value` inside `WITH ( ... )`. Values are string or number literals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithOption {
    pub key: Ident,
    pub value: Literal,
    pub span: Span,
}

// ───────────────────────────── durations ─────────────────────────────

/// A length of time: `INTERVAL '10' MINUTE`, `10 MINUTES`, or `'5 seconds'` in WITH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Duration {
    pub millis: u64,
    pub span: Span,
}

// ───────────────────────────── expressions ─────────────────────────────

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

impl Expr {
    /// The direct sub-expressions, in source order.
    pub fn children(&self) -> Vec<&Expr> {
        let mut out: Vec<&Expr> = Vec::new();
        match &self.kind {
            ExprKind::Literal(_) | ExprKind::Path(_) | ExprKind::Wildcard(_) => {}
            ExprKind::Unary { expr, .. } | ExprKind::IsNull { expr, .. } => out.push(expr),
            ExprKind::Binary { left, right, .. } => out.extend([&**left, &**right]),
            ExprKind::InList { expr, list, .. } => {
                out.push(expr);
                out.extend(list.iter());
            }
            ExprKind::Between {
                expr, low, high, ..
            } => out.extend([&**expr, &**low, &**high]),
            ExprKind::Like { expr, pattern, .. } => out.extend([&**expr, &**pattern]),
            ExprKind::Case {
                operand,
                whens,
                else_,
            } => {
                out.extend(operand.as_deref());
                for (w, t) in whens {
                    out.extend([w, t]);
                }
                out.extend(else_.as_deref());
            }
            ExprKind::Function { args, .. } => out.extend(args.iter()),
        }
        out
    }

    /// Pre-order walk over this expression and every sub-expression.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        for c in self.children() {
            c.walk(f);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnaryOp {
    Not,
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    /// `<>` and `!=` (printed as `<>`).
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    /// `col ~ 'regex'` (right side must be a string literal; checked).
    RegexMatch,
    /// `col MATCHES 'query'` full-text test (§5; right side a string literal).
    Matches,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ExprKind {
    Literal(Literal),
    /// A dotted path: `amount`, `small.amount`, `payload.user.id`. Whether the first part
    /// is a pattern variable or a column is decided by `check`, not the parser.
    Path(Vec<Ident>),
    /// `*` or `v.*` — only valid as the argument of COUNT.
    Wildcard(Option<Ident>),
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
    },
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        else_: Option<Box<Expr>>,
    },
    /// Any call: `lower(x)`, `FIRST(v.col)`, `PREV(col, 2)`, `COUNT(v.*)`, `REGEXP_LIKE(c, 're')`,
    /// `MATCH_NUMBER()`, `APPROX_TOP_K(path, 10)`. `name` is kept as written; functions are
    /// looked up case-insensitively by `check`.
    Function {
        name: Ident,
        args: Vec<Expr>,
    },
}

// ───────────────────────────── rules (CEP) ─────────────────────────────

/// Which of the two equivalent spellings a rule was written in; kept so that the canonical
/// text printed back uses the user's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleSyntax {
    /// `CREATE RULE r AS FROM s PARTITION BY ... PATTERN (...) ...`
    Native,
    /// `CREATE RULE r AS SELECT * FROM s MATCH_RECOGNIZE ( ... )`
    MatchRecognize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRule {
    pub or_replace: bool,
    pub name: Ident,
    pub syntax: RuleSyntax,
    pub from: Ident,
    /// Column paths; Flink allows plain columns only.
    pub partition_by: Vec<Expr>,
    /// `ORDER BY col` of the MATCH_RECOGNIZE spelling (must name the event-time column).
    pub order_by: Option<Ident>,
    pub measures: Vec<Measure>,
    pub pattern: Pattern,
    pub within: Option<Duration>,
    pub define: Vec<Define>,
    /// `None` = not written (default SKIP PAST LAST ROW).
    pub after_match: Option<AfterMatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Define {
    pub var: Ident,
    pub cond: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    pub expr: Expr,
    pub alias: Ident,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AfterMatch {
    SkipPastLastRow,
    SkipToNextRow,
    SkipToFirst(Ident),
    SkipToLast(Ident),
}

/// Row pattern. Precedence, loosest first: `|`, `->`, juxtaposition, quantifier / `!`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Pattern {
    /// A pattern variable.
    Var(Ident),
    /// `!v`: absence of a row satisfying v's DEFINE (between terms, or last with WITHIN).
    Absent(Ident),
    /// Juxtaposition (≥ 2 items); with no item, the empty pattern `()`.
    Seq(Vec<Pattern>),
    /// `a -> b -> c` (≥ 2 items): each item followed by the next with any rows between.
    FollowedBy(Vec<Pattern>),
    /// `a | b` (≥ 2 items), left alternative preferred.
    Alt(Vec<Pattern>),
    /// `^` (the start of the partition: no row of the key before) or `$` (the end of the
    /// input): zero-width, they take no row.
    Anchor { end: bool, span: Span },
    /// `{- p -}`: p's rows are part of the match but left out of ALL ROWS PER MATCH output.
    Exclude(Box<Pattern>),
    /// `p*`, `p+`, `p?`, `p{n}`, `p{n,}`, `p{n,m}`, `p{,m}`; reluctant with a trailing `?`.
    Repeat {
        inner: Box<Pattern>,
        min: u32,
        /// `None` = unbounded.
        max: Option<u32>,
        greedy: bool,
        span: Span,
    },
}

impl Pattern {
    /// Whether the pattern can match zero rows (then it gives empty matches); `!v` takes
    /// no row of the match.
    pub fn can_be_empty(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Absent(_) | Pattern::Anchor { .. } => true,
            Pattern::Exclude(p) => p.can_be_empty(),
            Pattern::Seq(xs) | Pattern::FollowedBy(xs) => xs.iter().all(Pattern::can_be_empty),
            Pattern::Alt(xs) => xs.iter().any(Pattern::can_be_empty),
            Pattern::Repeat { inner, min, .. } => *min == 0 || inner.can_be_empty(),
        }
    }
}

// ───────────────────────────── searches ─────────────────────────────

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateSearch {
    pub or_replace: bool,
    pub name: Ident,
    pub from: Ident,
    /// The WHERE condition; contains one or more `MATCHES` tests.
    pub filter: Expr,
    /// `EMIT a, b.c AS d`; empty = the whole event.
    pub emit: Vec<SelectItem>,
    pub options: Vec<WithOption>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectItem {
    pub expr: Expr,
    pub alias: Option<Ident>,
    pub span: Span,
}

// ───────────────────────────── metrics ─────────────────────────────

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateMetric {
    pub or_replace: bool,
    pub name: Ident,
    pub items: Vec<SelectItem>,
    pub from: Ident,
    pub filter: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub window: Window,
    pub options: Vec<WithOption>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub kind: WindowKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WindowKind {
    Tumbling { size: Duration },
    Hopping { size: Duration, advance: Duration },
    Sliding { size: Duration },
    Session { gap: Duration },
}
