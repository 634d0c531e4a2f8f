//! Expressions, loosest first: OR < AND < NOT < comparison (`= <> != < <= > >= ~ MATCHES`,
//! `IS [NOT] NULL`, `[NOT] IN`, `[NOT] BETWEEN`, `[NOT] LIKE`) < `+ -` < `* / %` < unary
//! minus < primary. Binary operators are left-associative. Every parse function returns the
//! height of the tree it built so that long operator chains are bounded too (dropping or
//! printing a very deep tree would otherwise overflow the stack).

use nom::Err;

use super::lex::{
    attempt, cut, fail, field_name, hard, ident, is_reserved, kw, kw_q, labelled, number,
    string_lit, sym, sym_q, tok_start, word, Depth, Exp, PResult,
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
    or_expr(i)
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

fn or_expr(i: &str) -> H<'_> {
    let (mut i, mut l) = and_expr(i)?;
    while let Some((r, _)) = attempt(kw_q("OR")(i))? {
        let (r, rhs) = cut(and_expr(r))?;
        l = binary(BinaryOp::Or, l, rhs, i)?;
        i = r;
    }
    Ok((i, l))
}

fn and_expr(i: &str) -> H<'_> {
    let (mut i, mut l) = not_expr(i)?;
    while let Some((r, _)) = attempt(kw_q("AND")(i))? {
        let (r, rhs) = cut(not_expr(r))?;
        l = binary(BinaryOp::And, l, rhs, i)?;
        i = r;
    }
    Ok((i, l))
}

fn not_expr(i: &str) -> H<'_> {
    if let Some((r, sp)) = attempt(kw_q("NOT")(i))? {
        let _d = Depth::enter(r, "expression")?;
        let (r2, (e, h)) = cut(not_expr(r))?;
        let full = sp.to(e.span);
        let n = node(
            ExprKind::Unary {
                op: UnaryOp::Not,
                expr: Box::new(e),
            },
            full,
            h + 1,
            r,
        )?;
        return Ok((r2, n));
    }
    cmp_expr(i)
}

fn cmp_op(i: &str) -> PResult<'_, BinaryOp> {
    for (s, op) in [
        ("<=", BinaryOp::LtEq),
        (">=", BinaryOp::GtEq),
        ("<>", BinaryOp::NotEq),
        ("!=", BinaryOp::NotEq),
        ("=", BinaryOp::Eq),
        ("<", BinaryOp::Lt),
        (">", BinaryOp::Gt),
        ("~", BinaryOp::RegexMatch),
    ] {
        if let Some((r, _)) = attempt(sym_q(s)(i))? {
            return Ok((r, op));
        }
    }
    if let Some((r, _)) = attempt(kw_q("MATCHES")(i))? {
        return Ok((r, BinaryOp::Matches));
    }
    super::lex::miss(i)
}

fn cmp_expr(i: &str) -> H<'_> {
    let (mut i, mut l) = add_expr(i)?;
    loop {
        if let Some((r, op)) = attempt(cmp_op(i))? {
            let (r, rhs) = cut(add_expr(r))?;
            l = binary(op, l, rhs, i)?;
            i = r;
            continue;
        }
        if let Some((r, _)) = attempt(kw_q("IS")(i))? {
            let (r, neg) = match attempt(kw("NOT")(r))? {
                Some((r, _)) => (r, true),
                None => (r, false),
            };
            let (r, nsp) = cut(kw("NULL")(r))?;
            let sp = l.0.span.to(nsp);
            let h = l.1 + 1;
            l = node(
                ExprKind::IsNull {
                    expr: Box::new(l.0),
                    negated: neg,
                },
                sp,
                h,
                i,
            )?;
            i = r;
            continue;
        }
        let (r, negated) = match attempt(kw_q("NOT")(i))? {
            Some((r, _)) => (r, true),
            None => (i, false),
        };
        if let Some((r, _)) = attempt(if negated { kw("IN")(r) } else { kw_q("IN")(r) })? {
            let (r, _) = cut(sym("(")(r))?;
            let (r, (list, lh)) = cut(expr_list(r))?;
            let (r, csp) = cut(sym(")")(r))?;
            let sp = l.0.span.to(csp);
            let h = l.1.max(lh) + 1;
            l = node(
                ExprKind::InList {
                    expr: Box::new(l.0),
                    list,
                    negated,
                },
                sp,
                h,
                i,
            )?;
            i = r;
            continue;
        }
        if let Some((r, _)) = attempt(if negated {
            kw("BETWEEN")(r)
        } else {
            kw_q("BETWEEN")(r)
        })? {
            let (r, low) = cut(add_expr(r))?;
            let (r, _) = cut(kw("AND")(r))?;
            let (r, high) = cut(add_expr(r))?;
            let sp = l.0.span.to(high.0.span);
            let h = l.1.max(low.1).max(high.1) + 1;
            l = node(
                ExprKind::Between {
                    expr: Box::new(l.0),
                    low: Box::new(low.0),
                    high: Box::new(high.0),
                    negated,
                },
                sp,
                h,
                i,
            )?;
            i = r;
            continue;
        }
        if let Some((r, _)) = attempt(if negated {
            kw("LIKE")(r)
        } else {
            kw_q("LIKE")(r)
        })? {
            let (r, pat) = cut(add_expr(r))?;
            let sp = l.0.span.to(pat.0.span);
            let h = l.1.max(pat.1) + 1;
            l = node(
                ExprKind::Like {
                    expr: Box::new(l.0),
                    pattern: Box::new(pat.0),
                    negated,
                },
                sp,
                h,
                i,
            )?;
            i = r;
            continue;
        }
        break;
    }
    Ok((i, l))
}

fn add_expr(i: &str) -> H<'_> {
    let (mut i, mut l) = mul_expr(i)?;
    loop {
        let op = if let Some((r, _)) = attempt(sym_q("+")(i))? {
            (r, BinaryOp::Add)
        } else if let Some((r, _)) = attempt(sym_q("-")(i))? {
            if r.starts_with('>') {
                break;
            }
            (r, BinaryOp::Sub)
        } else {
            break;
        };
        let (r, rhs) = cut(mul_expr(op.0))?;
        l = binary(op.1, l, rhs, i)?;
        i = r;
    }
    Ok((i, l))
}

fn mul_expr(i: &str) -> H<'_> {
    let (mut i, mut l) = unary_expr(i)?;
    loop {
        let op = if let Some((r, _)) = attempt(sym_q("*")(i))? {
            (r, BinaryOp::Mul)
        } else if let Some((r, _)) = attempt(sym_q("/")(i))? {
            (r, BinaryOp::Div)
        } else if let Some((r, _)) = attempt(sym_q("%")(i))? {
            (r, BinaryOp::Mod)
        } else {
            break;
        };
        let (r, rhs) = cut(unary_expr(op.0))?;
        l = binary(op.1, l, rhs, i)?;
        i = r;
    }
    Ok((i, l))
}

fn unary_expr(i: &str) -> H<'_> {
    if let Some((r, sp)) = attempt(sym_q("-")(i))? {
        let _d = Depth::enter(r, "expression")?;
        let (r2, (e, h)) = cut(unary_expr(r))?;
        let full = sp.to(e.span);
        let n = node(
            ExprKind::Unary {
                op: UnaryOp::Neg,
                expr: Box::new(e),
            },
            full,
            h + 1,
            r,
        )?;
        return Ok((r2, n));
    }
    primary(i)
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
        let (r, _) = sym("(")(t)?;
        let (r, (mut e, h)) = cut(expr_h(r))?;
        let (r, csp) = cut(sym(")")(r))?;
        // Parentheses have no node; widen the span to cover them.
        e.span = super::lex::span(t, r).to(csp);
        return Ok((r, (e, h)));
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
            match w.to_ascii_uppercase().as_str() {
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
    path(t, first, r)
}

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
