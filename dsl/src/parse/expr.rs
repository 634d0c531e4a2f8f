//! Expressions, loosest first: OR < AND < NOT < comparison (`= <> != < <= > >= ~ MATCHES`,
//! `IS [NOT] NULL`, `[NOT] IN`, `[NOT] BETWEEN`, `[NOT] LIKE`) < `+ -` < `* / %` < unary
//! minus < primary. Binary operators are left-associative. Every parse function returns the
//! height of the tree it built so that long operator chains are bounded too (dropping or
//! printing a very deep tree would otherwise overflow the stack).

use nom::Err;

use super::lex::{
    attempt, cut, fail, field_name, hard, ident, ident_q, is_reserved, kw, kw_q, labelled, number,
    record, string_lit, sym, sym_q, tok_start, word, Depth, Exp, PErr, PResult, Upper,
};
use super::limits::{MAX_EXPR_HEIGHT, MAX_LIST_ITEMS};
use crate::ast::{BinaryOp, Expr, ExprKind, Ident, Literal, Span, UnaryOp};

type H<'a> = PResult<'a, (Expr, usize)>;

/// A full expression.
pub(crate) fn expr(i: &str) -> PResult<'_, Expr> {
    let (r, (e, _)) = expr_h(i)?;
    Ok((r, e))
}

fn expr_h(i: &str) -> H<'_> {
    let _d = Depth::enter(i, "expression")?;
    climb(i, P_OR)
}

fn node(
    kind: ExprKind,
    span: Span,
    h: usize,
    at: &str,
) -> Result<(Expr, usize), Err<super::lex::PErr>> {
    if h > MAX_EXPR_HEIGHT {
        let t = tok_start(at)?;
        hard::<()>(
            t,
            1,
            format!("expression too deep (more than {MAX_EXPR_HEIGHT} nested operators); split it or use IN (...)"),
        )?;
    }
    Ok((Expr { kind, span }, h))
}

#[inline(never)]
fn binary(
    op: BinaryOp,
    l: (Expr, usize),
    r: (Expr, usize),
    at: &str,
) -> Result<(Expr, usize), Err<super::lex::PErr>> {
    let sp = l.0.span.to(r.0.span);
    let h = l.1.max(r.1) + 1;
    node(
        ExprKind::Binary {
            op,
            left: Box::new(l.0),
            right: Box::new(r.0),
        },
        sp,
        h,
        at,
    )
}

const P_OR: u8 = 1;
const P_AND: u8 = 2;
const P_NOT: u8 = 3;
const P_CMP: u8 = 4;
const P_ADD: u8 = 5;
const P_MUL: u8 = 6;

/// An infix or postfix operator.
#[derive(Clone, Copy)]
enum Op {
    Bin(BinaryOp),
    IsNull,
    In,
    Between,
    Like,
}

/// Precedence climbing: parse operators of precedence `min` and above. One small frame per
/// level keeps deep (but allowed) nesting well inside a 1 MiB stack, even in debug builds.
fn climb(i: &str, min: u8) -> H<'_> {
    let (mut i, mut l) = prefix(i, min)?;
    while let Some((r, op, prec, negated)) = peek_op(i)? {
        if prec < min {
            break;
        }
        let (r, e) = match op {
            Op::Bin(b) => apply_bin(l, i, r, b, prec)?,
            _ => apply(l, i, r, op, negated)?,
        };
        l = e;
        i = r;
    }
    Ok((i, l))
}

/// `(input after the operator, operator, precedence, negated)`.
type OpAt<'a> = (&'a str, Op, u8, bool);

/// The operator at `i`, if any.
#[inline(never)]
fn peek_op(i: &str) -> Result<Option<OpAt<'_>>, Err<PErr>> {
    let t = tok_start(i)?;
    for (s, op, p) in [
        ("<=", BinaryOp::LtEq, P_CMP),
        (">=", BinaryOp::GtEq, P_CMP),
        ("<>", BinaryOp::NotEq, P_CMP),
        ("!=", BinaryOp::NotEq, P_CMP),
        ("=", BinaryOp::Eq, P_CMP),
        ("<", BinaryOp::Lt, P_CMP),
        (">", BinaryOp::Gt, P_CMP),
        ("~", BinaryOp::RegexMatch, P_CMP),
        ("+", BinaryOp::Add, P_ADD),
        ("-", BinaryOp::Sub, P_ADD),
        ("*", BinaryOp::Mul, P_MUL),
        ("/", BinaryOp::Div, P_MUL),
        ("%", BinaryOp::Mod, P_MUL),
    ] {
        if let Some(r) = t.strip_prefix(s) {
            if s == "-" && r.starts_with('>') {
                return Ok(None);
            }
            return Ok(Some((r, Op::Bin(op), p, false)));
        }
    }
    let Some((w, r)) = word(t) else {
        return Ok(None);
    };
    let up = Upper::of(w);
    Ok(match up.as_str() {
        "OR" => Some((r, Op::Bin(BinaryOp::Or), P_OR, false)),
        "AND" => Some((r, Op::Bin(BinaryOp::And), P_AND, false)),
        "MATCHES" => Some((r, Op::Bin(BinaryOp::Matches), P_CMP, false)),
        "IS" => Some((r, Op::IsNull, P_CMP, false)),
        "IN" => Some((r, Op::In, P_CMP, false)),
        "BETWEEN" => Some((r, Op::Between, P_CMP, false)),
        "LIKE" => Some((r, Op::Like, P_CMP, false)),
        "NOT" => {
            // `x NOT IN / BETWEEN / LIKE`; any other NOT ends the expression.
            let t2 = tok_start(r)?;
            let next = word(t2).map(|(w2, r2)| (Upper::of(w2), r2));
            match next {
                Some((w2, r2)) if w2.as_str() == "IN" => Some((r2, Op::In, P_CMP, true)),
                Some((w2, r2)) if w2.as_str() == "BETWEEN" => Some((r2, Op::Between, P_CMP, true)),
                Some((w2, r2)) if w2.as_str() == "LIKE" => Some((r2, Op::Like, P_CMP, true)),
                _ => {
                    record(t2, Exp::Kw("IN"));
                    record(t2, Exp::Kw("BETWEEN"));
                    record(t2, Exp::Kw("LIKE"));
                    None
                }
            }
        }
        _ => None,
    })
}

/// Build the node for postfix operator `op` whose left operand is `l`; `at` is where the
/// operator starts, `r` the input after it.
fn apply<'a>(l: (Expr, usize), at: &'a str, r: &'a str, op: Op, negated: bool) -> H<'a> {
    match op {
        Op::Bin(_) => Ok((r, l)),
        Op::IsNull => apply_is_null(l, at, r),
        Op::In => apply_in(l, at, r, negated),
        Op::Between => apply_between(l, at, r, negated),
        Op::Like => apply_like(l, at, r, negated),
    }
}

#[inline(never)]
fn apply_is_null<'a>(l: (Expr, usize), at: &'a str, r: &'a str) -> H<'a> {
    let (r, neg) = match attempt(kw("NOT")(r))? {
        Some((r, _)) => (r, true),
        None => (r, false),
    };
    let (r, nsp) = cut(kw("NULL")(r))?;
    let sp = l.0.span.to(nsp);
    let h = l.1 + 1;
    let kind = ExprKind::IsNull {
        expr: Box::new(l.0),
        negated: neg,
    };
    Ok((r, node(kind, sp, h, at)?))
}

#[inline(never)]
fn apply_in<'a>(l: (Expr, usize), at: &'a str, r: &'a str, negated: bool) -> H<'a> {
    let (r, _) = cut(sym("(")(r))?;
    let (r, (list, lh)) = cut(expr_list(r))?;
    let (r, csp) = cut(labelled(r, "`,` or `)` in the IN list", sym(")")))?;
    let sp = l.0.span.to(csp);
    let h = l.1.max(lh) + 1;
    let kind = ExprKind::InList {
        expr: Box::new(l.0),
        list,
        negated,
    };
    Ok((r, node(kind, sp, h, at)?))
}

#[inline(never)]
fn apply_between<'a>(l: (Expr, usize), at: &'a str, r: &'a str, negated: bool) -> H<'a> {
    let (r, low) = cut(climb(r, P_ADD))?;
    let (r, _) = cut(kw("AND")(r))?;
    let (r, high) = cut(climb(r, P_ADD))?;
    let sp = l.0.span.to(high.0.span);
    let h = l.1.max(low.1).max(high.1) + 1;
    let kind = ExprKind::Between {
        expr: Box::new(l.0),
        low: Box::new(low.0),
        high: Box::new(high.0),
        negated,
    };
    Ok((r, node(kind, sp, h, at)?))
}

#[inline(never)]
fn apply_like<'a>(l: (Expr, usize), at: &'a str, r: &'a str, negated: bool) -> H<'a> {
    let (r, pat) = cut(climb(r, P_ADD))?;
    let sp = l.0.span.to(pat.0.span);
    let h = l.1.max(pat.1) + 1;
    let kind = ExprKind::Like {
        expr: Box::new(l.0),
        pattern: Box::new(pat.0),
        negated,
    };
    Ok((r, node(kind, sp, h, at)?))
}

/// `l op rhs` for a binary operator of precedence `prec` (left-associative).
#[inline(never)]
fn apply_bin<'a>(l: (Expr, usize), at: &'a str, r: &'a str, op: BinaryOp, prec: u8) -> H<'a> {
    let (r, rhs) = cut(climb(r, prec + 1))?;
    Ok((r, binary(op, l, rhs, at)?))
}

/// Prefix `NOT` (when the level allows it), then unary minus, then a primary.
fn prefix(i: &str, min: u8) -> H<'_> {
    if min <= P_NOT {
        if let Some((r, sp)) = attempt(kw_q("NOT")(i))? {
            return not_rest(r, sp);
        }
    }
    unary_expr(i)
}

#[inline(never)]
fn not_rest(r: &str, sp: Span) -> H<'_> {
    let _d = Depth::enter(r, "expression")?;
    let (r2, (e, h)) = cut(climb(r, P_NOT))?;
    let full = sp.to(e.span);
    let kind = ExprKind::Unary {
        op: UnaryOp::Not,
        expr: Box::new(e),
    };
    Ok((r2, node(kind, full, h + 1, r)?))
}

fn unary_expr(i: &str) -> H<'_> {
    if let Some((r, sp)) = attempt(sym_q("-")(i))? {
        return neg_rest(r, sp);
    }
    primary(i)
}

#[inline(never)]
fn neg_rest(r: &str, sp: Span) -> H<'_> {
    let _d = Depth::enter(r, "expression")?;
    let (r2, (e, h)) = cut(unary_expr(r))?;
    let full = sp.to(e.span);
    let kind = ExprKind::Unary {
        op: UnaryOp::Neg,
        expr: Box::new(e),
    };
    Ok((r2, node(kind, full, h + 1, r)?))
}

/// `e, e, ...` (at least one, at most [`MAX_LIST_ITEMS`]); returns the max height.
fn expr_list(i: &str) -> PResult<'_, (Vec<Expr>, usize)> {
    let mut items = Vec::new();
    let mut h = 0;
    let (mut i, (e, eh)) = expr_h(i)?;
    items.push(e);
    h = h.max(eh);
    while let Some((r, _)) = attempt(sym_q(",")(i))? {
        if items.len() >= MAX_LIST_ITEMS {
            let t = tok_start(r)?;
            return hard(
                t,
                1,
                format!("list too long (the limit is {MAX_LIST_ITEMS} items)"),
            );
        }
        let (r, (e, eh)) = cut(expr_h(r))?;
        items.push(e);
        h = h.max(eh);
        i = r;
    }
    Ok((i, (items, h)))
}

fn lit(l: Literal, sp: Span) -> (Expr, usize) {
    (
        Expr {
            kind: ExprKind::Literal(l),
            span: sp,
        },
        1,
    )
}

fn primary(i: &str) -> H<'_> {
    let t = tok_start(i)?;
    let Some(c) = t.chars().next() else {
        return fail(t, Exp::Label("an expression"));
    };
    if c == '(' {
        return paren(t);
    }
    if c == '\'' {
        let (r, (s, sp)) = string_lit(t)?;
        return Ok((r, lit(Literal::String(s), sp)));
    }
    if super::lex::starts_number(t) {
        let (r, (l, sp)) = number(t)?;
        return Ok((r, lit(l, sp)));
    }
    if let Some((w, rest)) = word(t) {
        if is_reserved(w) {
            let sp = super::lex::span(t, rest);
            match Upper::of(w).as_str() {
                "TRUE" => return Ok((rest, lit(Literal::Bool(true), sp))),
                "FALSE" => return Ok((rest, lit(Literal::Bool(false), sp))),
                "NULL" => return Ok((rest, lit(Literal::Null, sp))),
                "CASE" => return case_expr(t),
                "INTERVAL" => {
                    return hard(
                        t,
                        w.len(),
                        "INTERVAL is only allowed where a duration is expected (WITHIN, WINDOW)",
                    )
                }
                _ => return fail(t, Exp::Label("an expression")),
            }
        }
    } else if c != '"' {
        return fail(t, Exp::Label("an expression"));
    }
    let (r, first) = ident(t)?;
    // Function call?
    if let Some((r2, _)) = attempt(sym_q("(")(r))? {
        return call(t, first, r2);
    }
    // `RUNNING f(…)` / `FINAL f(…)` (row pattern navigation and aggregates): kept as a
    // call of RUNNING / FINAL on the call it qualifies
    if first.name.eq_ignore_ascii_case("RUNNING") || first.name.eq_ignore_ascii_case("FINAL") {
        let t2 = tok_start(r)?;
        if let Some((r3, fname)) = attempt(ident_q(t2))? {
            if let Some((r4, _)) = attempt(sym_q("(")(r3))? {
                let (r5, (inner, h)) = call(t2, fname, r4)?;
                let sp = first.span.to(inner.span);
                let kind = ExprKind::Function {
                    name: first,
                    args: vec![inner],
                };
                return node(kind, sp, h + 1, t).map(|n| (r5, n));
            }
        }
    }
    path(t, first, r)
}

#[inline(never)]
fn paren(t: &str) -> H<'_> {
    let (r, _) = sym("(")(t)?;
    let (r, (mut e, h)) = cut(expr_h(r))?;
    let (r, csp) = cut(labelled(r, "`)`", sym(")")))?;
    // Parentheses have no node; widen the span to cover them.
    e.span = super::lex::span(t, r).to(csp);
    Ok((r, (e, h)))
}

#[inline(never)]
fn call<'a>(start: &'a str, name: Ident, i: &'a str) -> H<'a> {
    let mut args = Vec::new();
    let mut h = 0;
    if let Some((r, csp)) = attempt(sym_q(")")(i))? {
        let sp = name.span.to(csp);
        return node(ExprKind::Function { name, args }, sp, 1, start).map(|n| (r, n));
    }
    let mut i = i;
    loop {
        if args.len() >= MAX_LIST_ITEMS {
            let t = tok_start(i)?;
            return hard(
                t,
                1,
                format!("too many arguments (the limit is {MAX_LIST_ITEMS})"),
            );
        }
        // A bare `*` argument: COUNT(*).
        let t = tok_start(i)?;
        let (r, (e, eh)) = if let Some((r, sp)) = attempt(sym_q("*")(t))? {
            (
                r,
                (
                    Expr {
                        kind: ExprKind::Wildcard(None),
                        span: sp,
                    },
                    1,
                ),
            )
        } else {
            cut(expr_h(t))?
        };
        args.push(e);
        h = h.max(eh);
        i = r;
        if let Some((r, _)) = attempt(sym_q(",")(i))? {
            i = r;
            continue;
        }
        let (r, csp) = cut(labelled(i, "`,` or `)` in the argument list", sym(")")))?;
        let sp = name.span.to(csp);
        return node(ExprKind::Function { name, args }, sp, h + 1, start).map(|n| (r, n));
    }
}

#[inline(never)]
fn path<'a>(start: &'a str, first: Ident, i: &'a str) -> H<'a> {
    let mut parts = vec![first];
    let mut i = i;
    while let Some((r, _)) = attempt(sym_q(".")(i))? {
        if let Some((r2, ssp)) = attempt(sym_q("*")(r))? {
            if parts.len() > 1 {
                let t = tok_start(r)?;
                return hard(
                    t,
                    1,
                    "`.*` can only follow a pattern variable name, as in `COUNT(v.*)`",
                );
            }
            let v = parts.pop();
            let sp = super::lex::span(start, r2).to(ssp);
            return node(ExprKind::Wildcard(v), sp, 1, start).map(|n| (r2, n));
        }
        if parts.len() >= MAX_LIST_ITEMS {
            let t = tok_start(r)?;
            return hard(t, 1, "field path too long");
        }
        let (r, id) = cut(field_name(r))?;
        parts.push(id);
        i = r;
    }
    let sp = super::lex::span(start, i);
    node(ExprKind::Path(parts), sp, 1, start).map(|n| (i, n))
}

#[inline(never)]
fn case_expr(t: &str) -> H<'_> {
    let (r, _) = kw("CASE")(t)?;
    let mut h = 0;
    let (r, operand) = if attempt(kw("WHEN")(r))?.is_some() {
        (r, None)
    } else {
        let (r, (e, eh)) = cut(expr_h(r))?;
        h = h.max(eh);
        (r, Some(Box::new(e)))
    };
    let mut whens = Vec::new();
    let mut i = r;
    while let Some((r, _)) = attempt(kw("WHEN")(i))? {
        if whens.len() >= MAX_LIST_ITEMS {
            return hard(
                tok_start(i)?,
                4,
                format!("too many WHEN branches (the limit is {MAX_LIST_ITEMS})"),
            );
        }
        let (r, (c, ch)) = cut(expr_h(r))?;
        let (r, _) = cut(kw("THEN")(r))?;
        let (r, (v, vh)) = cut(expr_h(r))?;
        h = h.max(ch).max(vh);
        whens.push((c, v));
        i = r;
    }
    if whens.is_empty() {
        return cut(fail(tok_start(i)?, Exp::Kw("WHEN")));
    }
    let (i, else_) = match attempt(kw("ELSE")(i))? {
        Some((r, _)) => {
            let (r, (e, eh)) = cut(expr_h(r))?;
            h = h.max(eh);
            (r, Some(Box::new(e)))
        }
        None => (i, None),
    };
    let (r, esp) = cut(kw("END")(i))?;
    let sp = super::lex::span(t, r).to(esp);
    node(
        ExprKind::Case {
            operand,
            whens,
            else_,
        },
        sp,
        h + 1,
        t,
    )
    .map(|n| (r, n))
}
