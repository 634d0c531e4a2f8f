//! Statements: CREATE STREAM / RULE (both spellings) / SEARCH / METRIC, DROP.

use super::expr::expr;
use super::lex::{
    attempt, cut, fail, hard, ident, ident_q, kw, kw_q, kws, labelled, number, span, string_lit,
    sym, sym_q, tok_start, warn, word, Exp, PResult, Upper,
};
use super::limits::MAX_LIST_ITEMS;
use super::pattern::pattern;
use crate::ast::*;
use crate::error::Diagnostic;

/// One statement without its `;`.
pub(crate) fn statement(i: &str) -> PResult<'_, StatementKind> {
    let t = tok_start(i)?;
    if let Some((r, _)) = attempt(kw("CREATE")(t))? {
        let (r, or_replace) = match attempt(kw("OR")(r))? {
            Some((r, _)) => (cut(kw("REPLACE")(r))?.0, true),
            None => (r, false),
        };
        if let Some((r, _)) = attempt(kw("STREAM")(r))? {
            return cut(create_stream(r, or_replace));
        }
        if let Some((r, _)) = attempt(kw("RULE")(r))? {
            return cut(create_rule(r, or_replace));
        }
        if let Some((r, _)) = attempt(kw("SEARCH")(r))? {
            return cut(create_search(r, or_replace));
        }
        if let Some((r, _)) = attempt(kw("METRIC")(r))? {
            return cut(create_metric(r, or_replace));
        }
        return unknown_word(r, "STREAM, RULE, SEARCH or METRIC after CREATE");
    }
    if let Some((r, _)) = attempt(kw("DROP")(t))? {
        let (r, kind) = cut(object_kind(r))?;
        let (r, if_exists) = match attempt(kw("IF")(r))? {
            Some((r2, _)) => match attempt(kw("EXISTS")(r2))? {
                Some((r3, _)) => (r3, true),
                // `DROP STREAM if;` drops a stream named `if`.
                None => (r, false),
            },
            None => (r, false),
        };
        let (r, name) = cut(ident(r))?;
        return Ok((
            r,
            StatementKind::Drop(Drop {
                kind,
                if_exists,
                name,
            }),
        ));
    }
    unknown_word(t, "a statement: CREATE or DROP")
}

/// Fail at `i`: a word there is an "unknown keyword", anything else the usual message.
fn unknown_word<'a, O>(i: &'a str, expected: &'static str) -> PResult<'a, O> {
    let t = tok_start(i)?;
    if let Some((w, _)) = word(t) {
        return hard(
            t,
            w.len(),
            format!(
                "unknown keyword `{}`: expected {expected}",
                super::lex::abbreviate(w)
            ),
        );
    }
    fail(t, Exp::Label(expected))
}

fn object_kind(i: &str) -> PResult<'_, ObjectKind> {
    for (k, v) in [
        ("STREAM", ObjectKind::Stream),
        ("RULE", ObjectKind::Rule),
        ("SEARCH", ObjectKind::Search),
        ("METRIC", ObjectKind::Metric),
    ] {
        if let Some((r, _)) = attempt(kw(k)(i))? {
            return Ok((r, v));
        }
    }
    unknown_word(i, "STREAM, RULE, SEARCH or METRIC after DROP")
}

/// `item, item, ...` (at least one, at most [`MAX_LIST_ITEMS`]).
fn list<'a, T>(
    i: &'a str,
    what: &'static str,
    mut item: impl FnMut(&'a str) -> PResult<'a, T>,
) -> PResult<'a, Vec<T>> {
    let (mut i, first) = item(i)?;
    let mut out = vec![first];
    while let Some((r, _)) = attempt(sym_q(",")(i))? {
        if out.len() >= MAX_LIST_ITEMS {
            let t = tok_start(r)?;
            return hard(
                t,
                1,
                format!("too many {what} (the limit is {MAX_LIST_ITEMS})"),
            );
        }
        let (r, x) = cut(item(r))?;
        out.push(x);
        i = r;
    }
    Ok((i, out))
}

// ───────────────────────────── streams ─────────────────────────────

fn create_stream(i: &str, or_replace: bool) -> PResult<'_, StatementKind> {
    let (i, name) = ident(i)?;
    let (i, _) = labelled(i, "`(` and the column list", sym("("))?;
    let mut columns = Vec::new();
    let mut i = i;
    loop {
        if columns.len() >= MAX_LIST_ITEMS {
            return hard(
                tok_start(i)?,
                1,
                format!("too many columns (the limit is {MAX_LIST_ITEMS})"),
            );
        }
        let (r, c) = labelled(i, "a column definition like `amount FLOAT`", column_def)?;
        columns.push(c);
        if let Some((r2, _)) = attempt(sym_q(",")(r))? {
            i = r2;
            continue;
        }
        let (r, _) = labelled(r, "`)` or `,` after column definition", sym(")"))?;
        i = r;
        break;
    }
    let (i, options) = with_options(i)?;
    Ok((
        i,
        StatementKind::CreateStream(CreateStream {
            or_replace,
            name,
            columns,
            options,
        }),
    ))
}

fn column_def(i: &str) -> PResult<'_, ColumnDef> {
    let t = tok_start(i)?;
    if let Some((r, _)) = attempt(kw_q("WATERMARK")(t))? {
        if attempt(kw_q("FOR")(r))?.is_some() {
            return hard(
                t,
                9,
                "WATERMARK FOR is written as stream options here: WITH (event_time = 'ts', max_delay = '5 seconds')",
            );
        }
    }
    if let Some((r, _)) = attempt(kw_q("PRIMARY")(t))? {
        if attempt(kw_q("KEY")(r))?.is_some() {
            return hard(
                t,
                7,
                "PRIMARY KEY is not supported; use WITH (key = 'column') for the Kafka key",
            );
        }
    }
    let (r, name) = ident(t)?;
    let (r, ty) = cut(data_type(r))?;
    let sp = span(t, r);
    Ok((r, ColumnDef { name, ty, span: sp }))
}

const TYPES: &str = "a column type: STRING, INT, FLOAT, BOOL, TIMESTAMP or JSON";

fn data_type(i: &str) -> PResult<'_, DataType> {
    let t = tok_start(i)?;
    let Some((w, rest)) = word(t) else {
        return fail(t, Exp::Label(TYPES));
    };
    let ty = match Upper::of(w).as_str() {
        "STRING" | "VARCHAR" | "TEXT" => DataType::String,
        "INT" | "INTEGER" | "BIGINT" | "LONG" => DataType::Int,
        "FLOAT" | "DOUBLE" | "REAL" => DataType::Float,
        "BOOL" | "BOOLEAN" => DataType::Bool,
        "TIMESTAMP" | "TIMESTAMP_LTZ" => DataType::Timestamp,
        "JSON" => DataType::Json,
        _ => {
            return hard(
                t,
                w.len(),
                format!(
                    "unknown type `{}`: expected {TYPES}",
                    super::lex::abbreviate(w)
                ),
            )
        }
    };
    // Flink-style precision, ignored: TIMESTAMP(3), VARCHAR(255).
    if let Some((r, _)) = attempt(sym_q("(")(rest))? {
        let (r, _) = cut(number(r))?;
        let (r, _) = cut(sym(")")(r))?;
        return Ok((r, ty));
    }
    Ok((rest, ty))
}

/// Optional `WITH (key = value, ...)`.
fn with_options(i: &str) -> PResult<'_, Vec<WithOption>> {
    let Some((r, _)) = attempt(kw("WITH")(i))? else {
        return Ok((i, Vec::new()));
    };
    let (r, _) = cut(sym("(")(r))?;
    let (r, opts) = cut(list(r, "options", with_option))?;
    let (r, _) = cut(labelled(r, "`)` or `,` after option", sym(")")))?;
    Ok((r, opts))
}

fn with_option(i: &str) -> PResult<'_, WithOption> {
    let t = tok_start(i)?;
    let (r, key) = if t.starts_with('\'') {
        let (r, (s, sp)) = string_lit(t)?;
        if s.is_empty() {
            return hard(t, 2, "empty option name");
        }
        (r, Ident { name: s, span: sp })
    } else {
        labelled(t, "an option name", ident)?
    };
    let (r, _) = cut(sym("=")(r))?;
    let (r, value) = cut(labelled(
        r,
        "an option value: a 'string' or a number",
        option_value,
    ))?;
    let sp = span(t, r);
    Ok((
        r,
        WithOption {
            key,
            value,
            span: sp,
        },
    ))
}

fn option_value(i: &str) -> PResult<'_, Literal> {
    let t = tok_start(i)?;
    if t.starts_with('\'') {
        let (r, (s, _)) = string_lit(t)?;
        return Ok((r, Literal::String(s)));
    }
    if let Some((r, _)) = attempt(kw_q("TRUE")(t))? {
        return Ok((r, Literal::Bool(true)));
    }
    if let Some((r, _)) = attempt(kw_q("FALSE")(t))? {
        return Ok((r, Literal::Bool(false)));
    }
    let (r, neg) = match attempt(sym_q("-")(t))? {
        Some((r, _)) => (r, true),
        None => (t, false),
    };
    let (r, (l, _)) = number(r)?;
    let l = match (neg, l) {
        (false, l) => l,
        (true, Literal::Int(v)) => Literal::Int(-v),
        (true, Literal::Float(v)) => Literal::Float(-v),
        (true, l) => l,
    };
    Ok((r, l))
}

// ───────────────────────────── durations ─────────────────────────────

const DURATION: &str = "a duration like `10 MINUTES` or `INTERVAL '10' MINUTE`";

fn unit_millis(w: &str) -> Option<u64> {
    let u = Upper::of(w);
    let u = u.as_str();
    let u = u.strip_suffix('S').unwrap_or(u);
    Some(match u {
        "MILLISECOND" => 1,
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return None,
    })
}

/// A duration: `INTERVAL '10' MINUTE` or `10 MINUTES` (any unit, singular or plural).
pub(crate) fn duration(i: &str) -> PResult<'_, Duration> {
    labelled(i, DURATION, duration_inner)
}

fn duration_inner(i: &str) -> PResult<'_, Duration> {
    let t = tok_start(i)?;
    let (r, amount) = if let Some((r, _)) = attempt(kw("INTERVAL")(t))? {
        let q = tok_start(r)?;
        let (r, (s, _)) = cut(string_lit(q))?;
        let Some(v) = parse_decimal(s.trim()) else {
            return hard(
                q,
                q.len() - r.len(),
                format!(
                    "INTERVAL value must be a non-negative number, like INTERVAL '10' MINUTE (found '{}')",
                    super::lex::abbreviate(&s)
                ),
            );
        };
        (r, v)
    } else {
        let (r, (l, _)) = number(t)?;
        let v = match l {
            Literal::Int(v) => v as f64,
            Literal::Float(f) => f,
            _ => 0.0,
        };
        (r, v)
    };
    let u = tok_start(r)?;
    let Some((w, rest)) = word(u) else {
        return cut(fail(
            u,
            Exp::Label("a time unit: MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS"),
        ));
    };
    let Some(factor) = unit_millis(w) else {
        return hard(
            u,
            w.len(),
            format!(
                "unknown time unit `{}`: expected MILLISECOND, SECOND, MINUTE, HOUR or DAY (singular or plural)",
                super::lex::abbreviate(w)
            ),
        );
    };
    let millis = amount * factor as f64;
    if !(millis.is_finite() && (0.0..=1e15).contains(&millis) && millis.fract() == 0.0) {
        return hard(
            t,
            t.len() - rest.len(),
            "duration out of range: it must be a whole number of milliseconds up to 10^15",
        );
    }
    Ok((
        rest,
        Duration {
            millis: millis as u64,
            span: span(t, rest),
        },
    ))
}

/// `12`, `1.5` → f64; anything else → None.
fn parse_decimal(s: &str) -> Option<f64> {
    let ok = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.bytes().filter(|&b| b == b'.').count() <= 1
        && s.bytes().any(|b| b.is_ascii_digit());
    if !ok {
        return None;
    }
    s.parse::<f64>().ok()
}

// ───────────────────────────── rules ─────────────────────────────

fn create_rule(i: &str, or_replace: bool) -> PResult<'_, StatementKind> {
    let (i, name) = ident(i)?;
    let (i, _) = kw("AS")(i)?;
    let t = tok_start(i)?;
    if let Some((r, _)) = attempt(kw("SELECT")(t))? {
        return cut(match_recognize(r, or_replace, name));
    }
    if let Some((r, _)) = attempt(kw("FROM")(t))? {
        return cut(native_rule(r, or_replace, name));
    }
    fail(
        t,
        Exp::Label("`FROM` (native rule) or `SELECT * FROM` (MATCH_RECOGNIZE)"),
    )
}

fn empty_rule(or_replace: bool, name: Ident, syntax: RuleSyntax, from: Ident) -> CreateRule {
    CreateRule {
        or_replace,
        name,
        syntax,
        from,
        partition_by: Vec::new(),
        order_by: None,
        measures: Vec::new(),
        pattern: Pattern::Seq(Vec::new()),
        within: None,
        define: Vec::new(),
        after_match: None,
    }
}

fn match_recognize(i: &str, or_replace: bool, name: Ident) -> PResult<'_, StatementKind> {
    let t = tok_start(i)?;
    let Some((i, _)) = attempt(sym("*")(t))? else {
        if word(t).is_some() || t.starts_with('"') {
            return hard(
                t,
                word(t).map_or(1, |(w, _)| w.len()),
                "a rule is written `SELECT * FROM stream MATCH_RECOGNIZE (...)`; choose the output columns with MEASURES",
            );
        }
        return fail(t, Exp::Sym("*"));
    };
    let (i, _) = kw("FROM")(i)?;
    let (i, from) = ident(i)?;
    let (i, _) = kw("MATCH_RECOGNIZE")(i)?;
    let (i, _) = sym("(")(i)?;
    let mut rule = empty_rule(or_replace, name, RuleSyntax::MatchRecognize, from);
    let (i, p) = partition_by(i)?;
    rule.partition_by = p;
    let mut i = i;
    if let Some((r, _)) = attempt(kws(&["ORDER", "BY"])(i))? {
        let (r, col) = ident(r)?;
        let r = match attempt(kw("ASC")(r))? {
            Some((r, _)) => r,
            None => r,
        };
        let q = tok_start(r)?;
        if let Some((r2, _)) = attempt(kw_q("DESC")(q))? {
            return hard(
                q,
                q.len() - r2.len(),
                "ORDER BY must be ascending event time; DESC is not supported",
            );
        }
        if q.starts_with(',') {
            return hard(
                q,
                1,
                "only one ORDER BY column is supported: the event-time column (ties keep arrival order)",
            );
        }
        rule.order_by = Some(col);
        i = r;
    }
    let (i, m) = measures(i)?;
    rule.measures = m;
    let mut i = i;
    if let Some((r, _)) = attempt(kw("ONE")(i))? {
        let (r, _) = kw("ROW")(r)?;
        let (r, _) = kw("PER")(r)?;
        let (r, _) = kw("MATCH")(r)?;
        i = r;
    } else if let Some((_, sp)) = attempt(kw_q("ALL")(i))? {
        return hard(
            tok_start(i)?,
            sp.end - sp.start,
            "ALL ROWS PER MATCH is not supported; use ONE ROW PER MATCH",
        );
    }
    let (i, a) = after_match(i)?;
    rule.after_match = a;
    let (i, p) = pattern_clause(i)?;
    rule.pattern = p;
    let (i, w) = within(i)?;
    rule.within = w;
    let t = tok_start(i)?;
    if let Some((r, _)) = attempt(kw_q("SUBSET")(t))? {
        return hard(t, t.len() - r.len(), "SUBSET is not supported");
    }
    let (i, d) = define(i)?;
    rule.define = d;
    out_of_order(i, MR_ORDER)?;
    let (i, _) = labelled(i, "`)` to close MATCH_RECOGNIZE", sym(")"))?;
    // Optional alias, ignored: `) AS T` or `) T`.
    let i = match attempt(kw("AS")(i))? {
        Some((r, _)) => ident(r)?.0,
        None => match attempt(ident_q(i))? {
            Some((r, _)) => r,
            None => i,
        },
    };
    Ok((i, StatementKind::CreateRule(rule)))
}

fn native_rule(i: &str, or_replace: bool, name: Ident) -> PResult<'_, StatementKind> {
    let (i, from) = ident(i)?;
    let mut rule = empty_rule(or_replace, name, RuleSyntax::Native, from);
    let (i, p) = partition_by(i)?;
    rule.partition_by = p;
    let (i, p) = pattern_clause(i)?;
    rule.pattern = p;
    let (i, w) = within(i)?;
    rule.within = w;
    let (i, d) = define(i)?;
    rule.define = d;
    let (i, m) = measures(i)?;
    rule.measures = m;
    let (i, a) = after_match(i)?;
    rule.after_match = a;
    out_of_order(i, NATIVE_ORDER)?;
    Ok((i, StatementKind::CreateRule(rule)))
}

const NATIVE_ORDER: &str = "FROM, PARTITION BY, PATTERN, WITHIN, DEFINE, MEASURES, AFTER MATCH";
const MR_ORDER: &str =
    "PARTITION BY, ORDER BY, MEASURES, ONE ROW PER MATCH, AFTER MATCH, PATTERN, WITHIN, DEFINE";

/// After the last clause: a clause keyword here was written in the wrong place. Say so
/// instead of "expected `;`".
fn out_of_order(i: &str, order: &'static str) -> Result<(), nom::Err<super::lex::PErr>> {
    let t = tok_start(i)?;
    let Some((w, _)) = word(t) else {
        return Ok(());
    };
    let up = w.to_ascii_uppercase();
    if [
        "PARTITION",
        "ORDER",
        "PATTERN",
        "WITHIN",
        "DEFINE",
        "MEASURES",
        "AFTER",
        "ONE",
    ]
    .contains(&up.as_str())
    {
        let (_, ()) = hard(
            t,
            w.len(),
            format!("`{up}` is out of place: a rule's clauses are expected in the order {order}"),
        )?;
    }
    Ok(())
}

fn partition_by(i: &str) -> PResult<'_, Vec<Expr>> {
    match attempt(kws(&["PARTITION", "BY"])(i))? {
        Some((r, _)) => cut(list(r, "PARTITION BY columns", expr)),
        None => Ok((i, Vec::new())),
    }
}

fn pattern_clause(i: &str) -> PResult<'_, Pattern> {
    let (r, _) = kw("PATTERN")(i)?;
    let (r, _) = cut(sym("(")(r))?;
    let (r, p) = cut(pattern(r))?;
    let (r, _) = cut(labelled(
        r,
        "`)` to close PATTERN, or more pattern",
        sym(")"),
    ))?;
    Ok((r, p))
}

fn within(i: &str) -> PResult<'_, Option<Duration>> {
    match attempt(kw("WITHIN")(i))? {
        Some((r, _)) => {
            let (r, d) = cut(duration(r))?;
            Ok((r, Some(d)))
        }
        None => Ok((i, None)),
    }
}

fn define(i: &str) -> PResult<'_, Vec<Define>> {
    let Some((mut i, _)) = attempt(kw("DEFINE")(i))? else {
        return Ok((i, Vec::new()));
    };
    let mut out = Vec::new();
    loop {
        if out.len() >= MAX_LIST_ITEMS {
            return hard(
                tok_start(i)?,
                1,
                format!("too many DEFINE items (the limit is {MAX_LIST_ITEMS})"),
            );
        }
        let t = tok_start(i)?;
        let (r, var) = cut(labelled(t, "a pattern variable to define", ident))?;
        let (r, _) = cut(kw("AS")(r))?;
        let (r, cond) = cut(expr(r))?;
        let sp = span(t, r);
        out.push(Define {
            var,
            cond,
            span: sp,
        });
        i = r;
        if let Some((r, _)) = attempt(sym_q(",")(i))? {
            i = r;
            continue;
        }
        // Lenient: `A AS ... B AS ...` with the comma forgotten (one of Flink's own
        // documentation examples does this) parses, with a warning.
        let q = tok_start(i)?;
        if let Some((r1, _)) = attempt(ident_q(q))? {
            if attempt(kw_q("AS")(r1))?.is_some() {
                warn(Diagnostic::warning(
                    Span::new(super::lex::off(i), super::lex::off(i)),
                    format!(
                        "missing `,` between DEFINE items (before `{}`)",
                        super::lex::abbreviate(&(ident_q(q)?.1).name)
                    ),
                ));
                continue;
            }
        }
        return Ok((i, out));
    }
}

fn measures(i: &str) -> PResult<'_, Vec<Measure>> {
    let Some((r, _)) = attempt(kw("MEASURES")(i))? else {
        return Ok((i, Vec::new()));
    };
    cut(list(r, "MEASURES", measure))
}

fn measure(i: &str) -> PResult<'_, Measure> {
    let t = tok_start(i)?;
    let (r, e) = expr(t)?;
    let (r, _) = cut(labelled(
        r,
        "`AS name` after the measure expression",
        kw("AS"),
    ))?;
    let (r, alias) = cut(ident(r))?;
    let sp = span(t, r);
    Ok((
        r,
        Measure {
            expr: e,
            alias,
            span: sp,
        },
    ))
}

fn after_match(i: &str) -> PResult<'_, Option<AfterMatch>> {
    let Some((r, _)) = attempt(kws(&["AFTER", "MATCH", "SKIP"])(i))? else {
        return Ok((i, None));
    };
    if let Some((r, _)) = attempt(kws(&["PAST", "LAST", "ROW"])(r))? {
        return Ok((r, Some(AfterMatch::SkipPastLastRow)));
    }
    let (r, _) = cut(kw("TO")(r))?;
    if let Some((r2, _)) = attempt(kw_q("NEXT")(r))? {
        if let Some((r3, _)) = attempt(kw_q("ROW")(r2))? {
            return Ok((r3, Some(AfterMatch::SkipToNextRow)));
        }
    }
    for (k, first) in [("FIRST", true), ("LAST", false)] {
        if let Some((r2, _)) = attempt(kw_q(k)(r))? {
            if let Some((r3, v)) = attempt(ident(r2))? {
                let a = if first {
                    AfterMatch::SkipToFirst(v)
                } else {
                    AfterMatch::SkipToLast(v)
                };
                return Ok((r3, Some(a)));
            }
        }
    }
    // `SKIP TO v` means `SKIP TO LAST v`.
    let (r, v) = cut(labelled(
        r,
        "`NEXT ROW`, `FIRST var`, `LAST var` or a pattern variable",
        ident,
    ))?;
    Ok((r, Some(AfterMatch::SkipToLast(v))))
}

// ───────────────────────────── searches ─────────────────────────────

fn create_search(i: &str, or_replace: bool) -> PResult<'_, StatementKind> {
    let (i, name) = ident(i)?;
    let (i, _) = kw("AS")(i)?;
    let (i, _) = kw("FROM")(i)?;
    let (i, from) = ident(i)?;
    let (i, _) = kw("WHERE")(i)?;
    let (i, filter) = expr(i)?;
    let (i, emit) = match attempt(kw("EMIT")(i))? {
        Some((r, _)) => cut(list(r, "EMIT items", select_item))?,
        None => (i, Vec::new()),
    };
    let (i, options) = with_options(i)?;
    Ok((
        i,
        StatementKind::CreateSearch(CreateSearch {
            or_replace,
            name,
            from,
            filter,
            emit,
            options,
        }),
    ))
}

fn select_item(i: &str) -> PResult<'_, SelectItem> {
    let t = tok_start(i)?;
    let (r, e) = expr(t)?;
    let (r, alias) = if let Some((r2, _)) = attempt(kw("AS")(r))? {
        let (r3, a) = cut(ident(r2))?;
        (r3, Some(a))
    } else if let Some((r2, a)) = attempt(ident_q(r))? {
        (r2, Some(a))
    } else {
        (r, None)
    };
    let sp = span(t, r);
    Ok((
        r,
        SelectItem {
            expr: e,
            alias,
            span: sp,
        },
    ))
}

// ───────────────────────────── metrics ─────────────────────────────

fn create_metric(i: &str, or_replace: bool) -> PResult<'_, StatementKind> {
    let (i, name) = ident(i)?;
    let (i, _) = kw("AS")(i)?;
    let (i, _) = kw("SELECT")(i)?;
    let (i, items) = list(i, "SELECT items", select_item)?;
    let (i, _) = kw("FROM")(i)?;
    let (i, from) = ident(i)?;
    let (i, filter) = match attempt(kw("WHERE")(i))? {
        Some((r, _)) => {
            let (r, e) = cut(expr(r))?;
            (r, Some(e))
        }
        None => (i, None),
    };
    let (i, group_by) = match attempt(kws(&["GROUP", "BY"])(i))? {
        Some((r, _)) => cut(list(r, "GROUP BY items", expr))?,
        None => (i, Vec::new()),
    };
    let (i, _) = kw("WINDOW")(i)?;
    let (i, window) = cut(window(i))?;
    let (i, options) = with_options(i)?;
    Ok((
        i,
        StatementKind::CreateMetric(CreateMetric {
            or_replace,
            name,
            items,
            from,
            filter,
            group_by,
            window,
            options,
        }),
    ))
}

fn window(i: &str) -> PResult<'_, Window> {
    let t = tok_start(i)?;
    let one = |r, k: &'static str| -> PResult<'_, Duration> {
        let (r, _) = cut(sym("(")(r))?;
        let (r, _) = cut(kw(k)(r))?;
        let (r, d) = cut(duration(r))?;
        let (r, _) = cut(sym(")")(r))?;
        Ok((r, d))
    };
    let (r, kind) = if let Some((r, _)) = attempt(kw("TUMBLING")(t))? {
        let (r, size) = one(r, "SIZE")?;
        (r, WindowKind::Tumbling { size })
    } else if let Some((r, _)) = attempt(kw("HOPPING")(t))? {
        let (r, _) = cut(sym("(")(r))?;
        let (r, _) = cut(kw("SIZE")(r))?;
        let (r, size) = cut(duration(r))?;
        let (r, _) = cut(sym(",")(r))?;
        let (r, _) = cut(kw("ADVANCE")(r))?;
        let (r, advance) = cut(duration(r))?;
        let (r, _) = cut(sym(")")(r))?;
        (r, WindowKind::Hopping { size, advance })
    } else if let Some((r, _)) = attempt(kw("SLIDING")(t))? {
        let (r, size) = one(r, "SIZE")?;
        (r, WindowKind::Sliding { size })
    } else if let Some((r, _)) = attempt(kw("SESSION")(t))? {
        let (r, gap) = one(r, "GAP")?;
        (r, WindowKind::Session { gap })
    } else {
        return unknown_word(t, "a window: TUMBLING, HOPPING, SLIDING or SESSION");
    };
    Ok((
        r,
        Window {
            kind,
            span: span(t, r),
        },
    ))
}
