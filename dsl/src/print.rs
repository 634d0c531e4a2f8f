//! Canonical text for every AST node (`Display`).
//!
//! Keywords are uppercase, identifiers are double-quoted only when they must be (reserved
//! words, names that are not `[A-Za-z_][A-Za-z0-9_]*`), strings use `''` for a quote,
//! floats print so that they re-parse to the same `f64`, expressions and patterns get the
//! fewest parentheses that keep their meaning, and statements end with `;`. Rules print in
//! the spelling recorded in [`RuleSyntax`]; durations print as `10 MINUTES` in the native
//! spelling and `INTERVAL '10' MINUTE` in the MATCH_RECOGNIZE spelling.
//!
//! Printing then parsing gives back an equal tree: `parse(print(ast)) == ast`.

use std::fmt::{self, Display, Formatter, Write};

use crate::ast::*;
use crate::parse::is_plain_ident;

fn comma_list<T: Display>(f: &mut Formatter<'_>, items: &[T]) -> fmt::Result {
    for (n, x) in items.iter().enumerate() {
        if n > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{x}")?;
    }
    Ok(())
}

impl Display for Ident {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if is_plain_ident(&self.name) {
            f.write_str(&self.name)
        } else {
            f.write_char('"')?;
            f.write_str(&self.name.replace('"', "\"\""))?;
            f.write_char('"')
        }
    }
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)
    }
}

impl Display for StatementKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            StatementKind::CreateStream(s) => write!(f, "{s}"),
            StatementKind::CreateRule(r) => write!(f, "{r}"),
            StatementKind::CreateSearch(s) => write!(f, "{s}"),
            StatementKind::CreateMetric(m) => write!(f, "{m}"),
            StatementKind::Drop(d) => write!(f, "{d}"),
        }
    }
}

impl Display for ObjectKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Stream => "STREAM",
            ObjectKind::Rule => "RULE",
            ObjectKind::Search => "SEARCH",
            ObjectKind::Metric => "METRIC",
        })
    }
}

impl Display for Drop {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "DROP {} ", self.kind)?;
        if self.if_exists {
            f.write_str("IF EXISTS ")?;
        }
        write!(f, "{};", self.name)
    }
}

fn create(f: &mut Formatter<'_>, or_replace: bool, kind: &str, name: &Ident) -> fmt::Result {
    f.write_str("CREATE ")?;
    if or_replace {
        f.write_str("OR REPLACE ")?;
    }
    write!(f, "{kind} {name}")
}

fn with_options(f: &mut Formatter<'_>, options: &[WithOption]) -> fmt::Result {
    if !options.is_empty() {
        f.write_str(" WITH (")?;
        comma_list(f, options)?;
        f.write_char(')')?;
    }
    Ok(())
}

impl Display for CreateStream {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        create(f, self.or_replace, "STREAM", &self.name)?;
        f.write_str(" (")?;
        comma_list(f, &self.columns)?;
        f.write_char(')')?;
        with_options(f, &self.options)?;
        f.write_char(';')
    }
}

impl Display for ColumnDef {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.ty)
    }
}

impl Display for DataType {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataType::String => "STRING",
            DataType::Int => "INT",
            DataType::Float => "FLOAT",
            DataType::Bool => "BOOL",
            DataType::Timestamp => "TIMESTAMP",
            DataType::Json => "JSON",
        })
    }
}

impl Display for WithOption {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.key, self.value)
    }
}

// ───────────────────────────── durations ─────────────────────────────

const UNITS: [(u64, &str); 4] = [
    (86_400_000, "DAY"),
    (3_600_000, "HOUR"),
    (60_000, "MINUTE"),
    (1_000, "SECOND"),
];

/// The largest unit that divides `millis` exactly: `(amount, UNIT)`.
fn split_duration(millis: u64) -> (u64, &'static str) {
    if millis == 0 {
        return (0, "SECOND");
    }
    for (ms, name) in UNITS {
        if millis.is_multiple_of(ms) {
            return (millis / ms, name);
        }
    }
    (millis, "MILLISECOND")
}

/// Native spelling: `10 MINUTES`, `1 DAY`, `500 MILLISECONDS`.
impl Display for Duration {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let (n, unit) = split_duration(self.millis);
        let s = if n == 1 { "" } else { "S" };
        write!(f, "{n} {unit}{s}")
    }
}

/// SQL spelling of a duration: `INTERVAL '10' MINUTE`.
pub struct Interval(pub Duration);

impl Display for Interval {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let (n, unit) = split_duration(self.0.millis);
        write!(f, "INTERVAL '{n}' {unit}")
    }
}

// ───────────────────────────── literals and expressions ─────────────────────────────

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("NULL"),
            Literal::Bool(true) => f.write_str("TRUE"),
            Literal::Bool(false) => f.write_str("FALSE"),
            Literal::Int(v) => write!(f, "{v}"),
            // `{:?}` is the shortest text that parses back to the same f64, and always has
            // a `.` or an exponent (so it re-parses as a float, not an integer).
            Literal::Float(v) => write!(f, "{v:?}"),
            Literal::String(s) => {
                f.write_char('\'')?;
                f.write_str(&s.replace('\'', "''"))?;
                f.write_char('\'')
            }
        }
    }
}

impl Display for UnaryOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnaryOp::Not => "NOT",
            UnaryOp::Neg => "-",
        })
    }
}

impl Display for BinaryOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BinaryOp::Or => "OR",
            BinaryOp::And => "AND",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::RegexMatch => "~",
            BinaryOp::Matches => "MATCHES",
        })
    }
}

const P_OR: u8 = 1;
const P_AND: u8 = 2;
const P_NOT: u8 = 3;
const P_CMP: u8 = 4;
const P_ADD: u8 = 5;
const P_MUL: u8 = 6;
const P_NEG: u8 = 7;
const P_PRIMARY: u8 = 8;

fn binary_prec(op: BinaryOp) -> u8 {
    match op {
        BinaryOp::Or => P_OR,
        BinaryOp::And => P_AND,
        BinaryOp::Eq
        | BinaryOp::NotEq
        | BinaryOp::Lt
        | BinaryOp::LtEq
        | BinaryOp::Gt
        | BinaryOp::GtEq
        | BinaryOp::RegexMatch
        | BinaryOp::Matches => P_CMP,
        BinaryOp::Add | BinaryOp::Sub => P_ADD,
        BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => P_MUL,
    }
}

fn prec(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Unary {
            op: UnaryOp::Not, ..
        } => P_NOT,
        ExprKind::Unary {
            op: UnaryOp::Neg, ..
        } => P_NEG,
        ExprKind::Binary { op, .. } => binary_prec(*op),
        ExprKind::IsNull { .. }
        | ExprKind::InList { .. }
        | ExprKind::Between { .. }
        | ExprKind::Like { .. } => P_CMP,
        // A negative number literal (never produced by the parser) prints like `-5`.
        ExprKind::Literal(Literal::Int(v)) if *v < 0 => P_NEG,
        ExprKind::Literal(Literal::Float(v)) if v.is_sign_negative() => P_NEG,
        _ => P_PRIMARY,
    }
}

/// `e`, in parentheses when its precedence is below `min`.
struct Operand<'a>(&'a Expr, u8);

impl Display for Operand<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if prec(self.0) < self.1 {
            write!(f, "({})", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Literal(l) => write!(f, "{l}"),
            ExprKind::Path(parts) => {
                for (n, p) in parts.iter().enumerate() {
                    if n > 0 {
                        f.write_char('.')?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
            ExprKind::Wildcard(None) => f.write_char('*'),
            ExprKind::Wildcard(Some(v)) => write!(f, "{v}.*"),
            ExprKind::Unary {
                op: UnaryOp::Not,
                expr,
            } => write!(f, "NOT {}", Operand(expr, P_NOT)),
            ExprKind::Unary {
                op: UnaryOp::Neg,
                expr,
            } => {
                let inner = Operand(expr, P_NEG).to_string();
                // `--` would start a comment.
                if inner.starts_with('-') {
                    write!(f, "- {inner}")
                } else {
                    write!(f, "-{inner}")
                }
            }
            ExprKind::Binary { op, left, right } => {
                let p = binary_prec(*op);
                write!(f, "{} {op} {}", Operand(left, p), Operand(right, p + 1))
            }
            ExprKind::IsNull { expr, negated } => {
                let not = if *negated { "NOT " } else { "" };
                write!(f, "{} IS {not}NULL", Operand(expr, P_CMP))
            }
            ExprKind::InList {
                expr,
                list,
                negated,
            } => {
                let not = if *negated { "NOT " } else { "" };
                write!(f, "{} {not}IN (", Operand(expr, P_CMP))?;
                comma_list(f, list)?;
                f.write_char(')')
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let not = if *negated { "NOT " } else { "" };
                write!(
                    f,
                    "{} {not}BETWEEN {} AND {}",
                    Operand(expr, P_CMP),
                    Operand(low, P_ADD),
                    Operand(high, P_ADD)
                )
            }
            ExprKind::Like {
                expr,
                pattern,
                negated,
            } => {
                let not = if *negated { "NOT " } else { "" };
                write!(
                    f,
                    "{} {not}LIKE {}",
                    Operand(expr, P_CMP),
                    Operand(pattern, P_ADD)
                )
            }
            ExprKind::Case {
                operand,
                whens,
                else_,
            } => {
                f.write_str("CASE")?;
                if let Some(o) = operand {
                    write!(f, " {o}")?;
                }
                for (c, v) in whens {
                    write!(f, " WHEN {c} THEN {v}")?;
                }
                if let Some(e) = else_ {
                    write!(f, " ELSE {e}")?;
                }
                f.write_str(" END")
            }
            // `RUNNING LAST(x)`, `FINAL COUNT(*)`
            ExprKind::Function { name, args }
                if (name.name.eq_ignore_ascii_case("running")
                    || name.name.eq_ignore_ascii_case("final"))
                    && matches!(
                        args.as_slice(),
                        [Expr {
                            kind: ExprKind::Function { .. },
                            ..
                        }]
                    ) =>
            {
                write!(f, "{name} {}", args[0])
            }
            ExprKind::Function { name, args } => {
                write!(f, "{name}(")?;
                comma_list(f, args)?;
                f.write_char(')')
            }
        }
    }
}

// ───────────────────────────── patterns ─────────────────────────────

fn pattern_prec(p: &Pattern) -> u8 {
    match p {
        Pattern::Alt(_) => 1,
        Pattern::FollowedBy(_) => 2,
        // the empty pattern `()` prints its own parentheses
        Pattern::Seq(items) if items.is_empty() => 5,
        Pattern::Seq(_) => 3,
        Pattern::Repeat { .. } => 4,
        Pattern::Var(_) | Pattern::Absent(_) | Pattern::Anchor { .. } | Pattern::Exclude(_) => 5,
    }
}

/// A pattern item, in parentheses unless its precedence is above `above`.
struct PItem<'a>(&'a Pattern, u8);

impl Display for PItem<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if pattern_prec(self.0) <= self.1 {
            write!(f, "({})", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

fn pattern_list(f: &mut Formatter<'_>, items: &[Pattern], sep: &str, level: u8) -> fmt::Result {
    for (n, p) in items.iter().enumerate() {
        if n > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{}", PItem(p, level))?;
    }
    Ok(())
}

impl Display for Pattern {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Var(v) => write!(f, "{v}"),
            Pattern::Absent(v) => write!(f, "!{v}"),
            Pattern::Anchor { end, .. } => f.write_str(if *end { "$" } else { "^" }),
            Pattern::Exclude(p) => write!(f, "{{- {p} -}}"),
            Pattern::Seq(items) if items.is_empty() => f.write_str("()"),
            Pattern::Seq(items) => pattern_list(f, items, " ", 3),
            Pattern::FollowedBy(items) => pattern_list(f, items, " -> ", 2),
            Pattern::Alt(items) => pattern_list(f, items, " | ", 1),
            Pattern::Repeat {
                inner,
                min,
                max,
                greedy,
                ..
            } => {
                // A quantifier cannot follow a quantifier or apply to `!v` directly.
                let level = match **inner {
                    Pattern::Absent(_) => 5,
                    _ => 4,
                };
                write!(f, "{}", PItem(inner, level))?;
                match (*min, *max) {
                    (0, None) => f.write_char('*')?,
                    (1, None) => f.write_char('+')?,
                    (0, Some(1)) => f.write_char('?')?,
                    (n, None) => write!(f, "{{{n},}}")?,
                    (n, Some(m)) if n == m => write!(f, "{{{n}}}")?,
                    (0, Some(m)) => write!(f, "{{,{m}}}")?,
                    (n, Some(m)) => write!(f, "{{{n},{m}}}")?,
                }
                if !greedy {
                    f.write_char('?')?;
                }
                Ok(())
            }
        }
    }
}

// ───────────────────────────── rules ─────────────────────────────

impl Display for AfterMatch {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            AfterMatch::SkipPastLastRow => f.write_str("AFTER MATCH SKIP PAST LAST ROW"),
            AfterMatch::SkipToNextRow => f.write_str("AFTER MATCH SKIP TO NEXT ROW"),
            AfterMatch::SkipToFirst(v) => write!(f, "AFTER MATCH SKIP TO FIRST {v}"),
            AfterMatch::SkipToLast(v) => write!(f, "AFTER MATCH SKIP TO LAST {v}"),
        }
    }
}

impl Display for Define {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} AS {}", self.var, self.cond)
    }
}

impl Display for Measure {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} AS {}", self.expr, self.alias)
    }
}

fn clause<T: Display>(f: &mut Formatter<'_>, kw: &str, items: &[T]) -> fmt::Result {
    if !items.is_empty() {
        write!(f, " {kw} ")?;
        comma_list(f, items)?;
    }
    Ok(())
}

impl Display for CreateRule {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        create(f, self.or_replace, "RULE", &self.name)?;
        match self.syntax {
            RuleSyntax::Native => {
                write!(f, " AS FROM {}", self.from)?;
                clause(f, "PARTITION BY", &self.partition_by)?;
                write!(f, " PATTERN ({})", self.pattern)?;
                if let Some(d) = &self.within {
                    write!(f, " WITHIN {d}")?;
                }
                clause(f, "DEFINE", &self.define)?;
                clause(f, "MEASURES", &self.measures)?;
                if let Some(a) = &self.after_match {
                    write!(f, " {a}")?;
                }
            }
            RuleSyntax::MatchRecognize => {
                write!(f, " AS SELECT * FROM {} MATCH_RECOGNIZE (", self.from)?;
                let mut parts: Vec<String> = Vec::new();
                if !self.partition_by.is_empty() {
                    parts.push(format!("PARTITION BY {}", Joined(&self.partition_by)));
                }
                if let Some(o) = &self.order_by {
                    parts.push(format!("ORDER BY {o}"));
                }
                if !self.measures.is_empty() {
                    parts.push(format!("MEASURES {}", Joined(&self.measures)));
                }
                parts.push("ONE ROW PER MATCH".to_string());
                if let Some(a) = &self.after_match {
                    parts.push(a.to_string());
                }
                parts.push(format!("PATTERN ({})", self.pattern));
                if let Some(d) = &self.within {
                    parts.push(format!("WITHIN {}", Interval(*d)));
                }
                if !self.define.is_empty() {
                    parts.push(format!("DEFINE {}", Joined(&self.define)));
                }
                f.write_str(&parts.join(" "))?;
                f.write_char(')')?;
            }
        }
        f.write_char(';')
    }
}

struct Joined<'a, T>(&'a [T]);

impl<T: Display> Display for Joined<'_, T> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        comma_list(f, self.0)
    }
}

// ───────────────────────────── searches and metrics ─────────────────────────────

impl Display for SelectItem {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        if let Some(a) = &self.alias {
            write!(f, " AS {a}")?;
        }
        Ok(())
    }
}

impl Display for CreateSearch {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        create(f, self.or_replace, "SEARCH", &self.name)?;
        write!(f, " AS FROM {} WHERE {}", self.from, self.filter)?;
        clause(f, "EMIT", &self.emit)?;
        with_options(f, &self.options)?;
        f.write_char(';')
    }
}

impl Display for Window {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)
    }
}

impl Display for WindowKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            WindowKind::Tumbling { size } => write!(f, "TUMBLING (SIZE {size})"),
            WindowKind::Hopping { size, advance } => {
                write!(f, "HOPPING (SIZE {size}, ADVANCE {advance})")
            }
            WindowKind::Sliding { size } => write!(f, "SLIDING (SIZE {size})"),
            WindowKind::Session { gap } => write!(f, "SESSION (GAP {gap})"),
        }
    }
}

impl Display for CreateMetric {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        create(f, self.or_replace, "METRIC", &self.name)?;
        f.write_str(" AS SELECT ")?;
        comma_list(f, &self.items)?;
        write!(f, " FROM {}", self.from)?;
        if let Some(w) = &self.filter {
            write!(f, " WHERE {w}")?;
        }
        clause(f, "GROUP BY", &self.group_by)?;
        write!(f, " WINDOW {}", self.window)?;
        with_options(f, &self.options)?;
        f.write_char(';')
    }
}
