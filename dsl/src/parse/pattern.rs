//! Row patterns, loosest first: `|` < `->` < juxtaposition < postfix quantifier / prefix `!`.
//! Parentheses group and leave no node.

use std::cell::Cell;

use super::lex::{
    attempt, cut, fail, hard, ident, ident_q, labelled, span, sym, sym_q, tok_start, Depth, Exp,
    PResult,
};
use super::limits::{MAX_PATTERN_TERMS, MAX_REPEAT};
use crate::ast::{Pattern, Span};

/// A whole pattern (the text between `PATTERN (` and `)`).
pub(crate) fn pattern(i: &str) -> PResult<'_, Pattern> {
    let terms = Cell::new(0usize);
    if let Some(r) = empty_pattern(i)? {
        return Ok((r, Pattern::Seq(Vec::new())));
    }
    alt_p(i, &terms)
}

/// The empty pattern: nothing before the closing `)` (it matches zero rows, SQL:2016 `()`).
/// Returns the input, unconsumed, when it is empty.
fn empty_pattern(i: &str) -> Result<Option<&str>, nom::Err<super::lex::PErr>> {
    empty_pattern_before(i, ")")
}

/// Nothing before `close`: the input, unconsumed, when so.
fn empty_pattern_before<'a>(
    i: &'a str,
    close: &str,
) -> Result<Option<&'a str>, nom::Err<super::lex::PErr>> {
    let t = tok_start(i)?;
    Ok(t.starts_with(close).then_some(i))
}

fn alt_p<'a>(i: &'a str, n: &Cell<usize>) -> PResult<'a, Pattern> {
    let _d = Depth::enter(i, "pattern")?;
    let (mut i, first) = fby_p(i, n)?;
    let mut items = vec![first];
    while let Some((r, _)) = attempt(sym_q("|")(i))? {
        let (r, p) = cut(fby_p(r, n))?;
        items.push(p);
        i = r;
    }
    Ok((i, one_or(items, Pattern::Alt)))
}

fn one_or(mut items: Vec<Pattern>, f: fn(Vec<Pattern>) -> Pattern) -> Pattern {
    if items.len() == 1 {
        items.remove(0)
    } else {
        f(items)
    }
}

fn fby_p<'a>(i: &'a str, n: &Cell<usize>) -> PResult<'a, Pattern> {
    let (mut i, first) = seq_p(i, n)?;
    let mut items = vec![first];
    while let Some((r, _)) = attempt(sym_q("->")(i))? {
        let (r, p) = cut(seq_p(r, n))?;
        items.push(p);
        i = r;
    }
    Ok((i, one_or(items, Pattern::FollowedBy)))
}

fn starts_term(i: &str) -> Result<bool, nom::Err<super::lex::PErr>> {
    let t = tok_start(i)?;
    Ok(t.starts_with('(')
        || t.starts_with('!')
        || t.starts_with(['^', '$'])
        || t.starts_with("{-")
        || t.starts_with('"')
        || attempt(ident_q(t))?.is_some())
}

fn seq_p<'a>(i: &'a str, n: &Cell<usize>) -> PResult<'a, Pattern> {
    let (mut i, first) = term(i, n)?;
    let mut items = vec![first];
    while starts_term(i)? {
        let (r, p) = term(i, n)?;
        items.push(p);
        i = r;
    }
    Ok((i, one_or(items, Pattern::Seq)))
}

fn count_term(t: &str, n: &Cell<usize>) -> Result<(), nom::Err<super::lex::PErr>> {
    n.set(n.get() + 1);
    if n.get() > MAX_PATTERN_TERMS {
        hard::<()>(
            t,
            1,
            format!("pattern too large (the limit is {MAX_PATTERN_TERMS} variables)"),
        )?;
    }
    Ok(())
}

fn term<'a>(i: &'a str, n: &Cell<usize>) -> PResult<'a, Pattern> {
    let t = tok_start(i)?;
    if let Some((r, _)) = attempt(sym_q("!")(t))? {
        count_term(t, n)?;
        let (r, v) = cut(labelled(r, "a pattern variable after `!`", ident))?;
        let q = tok_start(r)?;
        if q.starts_with(['*', '+', '?']) || (q.starts_with('{') && !q.starts_with("{-")) {
            return hard(
                q,
                1,
                "a quantifier cannot apply to an absence `!v`; write `(!v)*` if you mean it",
            );
        }
        return Ok((r, Pattern::Absent(v)));
    }
    if let Some((w, rest)) = super::lex::word(t) {
        if w.eq_ignore_ascii_case("PERMUTE") && rest.trim_start().starts_with('(') {
            return permute(t, rest, n);
        }
    }
    let (r, base) = if let Some(r) = t.strip_prefix(['^', '$']) {
        (
            r,
            Pattern::Anchor {
                end: t.starts_with('$'),
                span: span(t, r),
            },
        )
    } else if let Some(r) = t.strip_prefix("{-") {
        let (r, p) = match empty_pattern_before(r, "-}")? {
            Some(r) => (r, Pattern::Seq(Vec::new())),
            None => cut(alt_p(r, n))?,
        };
        let (r, _) = cut(labelled(r, "`-}` to close the exclusion", sym("-}")))?;
        (r, Pattern::Exclude(Box::new(p)))
    } else if let Some((r, _)) = attempt(sym_q("(")(t))? {
        let (r, p) = match empty_pattern(r)? {
            Some(r) => (r, Pattern::Seq(Vec::new())),
            None => cut(alt_p(r, n))?,
        };
        let (r, _) = cut(labelled(r, "`)` to close the group", sym(")")))?;
        (r, p)
    } else {
        match attempt(ident_q(t))? {
            Some((r, v)) => {
                count_term(t, n)?;
                (r, Pattern::Var(v))
            }
            None => return fail(t, Exp::Label("a pattern variable or `(`")),
        }
    };
    quantifier(t, r, base)
}

fn quantifier<'a>(start: &'a str, i: &'a str, base: Pattern) -> PResult<'a, Pattern> {
    let q = tok_start(i)?;
    let (r, min, max) = match q.chars().next() {
        Some('*') => (&q[1..], 0, None),
        Some('+') => (&q[1..], 1, None),
        Some('?') => (&q[1..], 0, Some(1)),
        Some('{') if !q.starts_with("{-") => bounds(q)?,
        _ => return Ok((i, base)),
    };
    let (r, greedy) = match r.strip_prefix('?') {
        Some(r2) => (r2, false),
        None => (r, true),
    };
    let after = tok_start(r)?;
    if after.starts_with(['*', '+', '?']) || (after.starts_with('{') && !after.starts_with("{-")) {
        return hard(
            after,
            1,
            "a quantifier cannot follow another quantifier; wrap the pattern in parentheses",
        );
    }
    let sp: Span = span(start, r);
    Ok((
        r,
        Pattern::Repeat {
            inner: Box::new(base),
            min,
            max,
            greedy,
            span: sp,
        },
    ))
}

/// Most terms of a `PERMUTE` (5 terms are 120 orders).
const MAX_PERMUTE: usize = 5;

/// `PERMUTE(p1, p2, …)` (from `rest`, after the word): every order of the terms, as
/// alternatives in lexicographic order of their positions (SQL:2016: the first order that
/// matches is preferred), then an optional quantifier.
fn permute<'a>(t: &'a str, rest: &'a str, n: &Cell<usize>) -> PResult<'a, Pattern> {
    let (r, _) = sym("(")(rest)?;
    let mut items = Vec::new();
    let (mut r, p) = cut(alt_p(r, n))?;
    items.push(p);
    while let Some((r2, _)) = attempt(sym_q(",")(r))? {
        let (r3, p) = cut(alt_p(r2, n))?;
        items.push(p);
        r = r3;
    }
    let (r, _) = cut(labelled(r, "`,` or `)` in PERMUTE", sym(")")))?;
    if items.len() > MAX_PERMUTE {
        return hard(
            t,
            t.len() - r.len(),
            format!("PERMUTE of more than {MAX_PERMUTE} terms is not supported (that is over 120 orders)"),
        );
    }
    fn orders(left: &[usize], prefix: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if left.is_empty() {
            out.push(prefix.clone());
        }
        for (k, &x) in left.iter().enumerate() {
            let mut rest = left.to_vec();
            rest.remove(k);
            prefix.push(x);
            orders(&rest, prefix, out);
            prefix.pop();
        }
    }
    let mut all = Vec::new();
    let idx: Vec<usize> = (0..items.len()).collect();
    orders(&idx, &mut Vec::new(), &mut all);
    n.set(n.get() + items.len() * (all.len().saturating_sub(1)));
    let alts: Vec<Pattern> = all
        .into_iter()
        .map(|o| {
            one_or(
                o.into_iter().map(|k| items[k].clone()).collect(),
                Pattern::Seq,
            )
        })
        .collect();
    quantifier(t, r, one_or(alts, Pattern::Alt))
}

/// `{n}`, `{n,}`, `{n,m}`, `{,m}` at the start of `q`.
fn bounds(q: &str) -> Result<(&str, u32, Option<u32>), nom::Err<super::lex::PErr>> {
    let (r, _) = sym("{")(q)?;
    let (r, lo) = count(r)?;
    let (r, comma) = match attempt(sym_q(",")(r))? {
        Some((r, _)) => (r, true),
        None => (r, false),
    };
    let (r, hi) = if comma { count(r)? } else { (r, lo) };
    let (r, _) = cut(labelled(r, "`}` to close the repeat count", sym("}")))?;
    let (min, max) = match (lo, comma, hi) {
        (Some(n), false, _) => (n, Some(n)),
        (Some(n), true, None) => (n, None),
        (None, true, Some(m)) => (0, Some(m)),
        (None, true, None) => (0, None),
        (Some(n), true, Some(m)) => {
            if n > m {
                let (_, ()) = hard(
                    q,
                    q.len() - r.len(),
                    format!("repeat count `{{{n},{m}}}`: the lower bound exceeds the upper bound"),
                )?;
            }
            (n, Some(m))
        }
        _ => {
            let t = tok_start(&q[1..])?;
            return cut(fail::<()>(
                t,
                Exp::Label("a repeat count like `{2}`, `{2,}`, `{2,5}` or `{,5}`"),
            ))
            .map(|_| (r, 0, None));
        }
    };
    Ok((r, min, max))
}

/// An optional repeat bound.
fn count(i: &str) -> PResult<'_, Option<u32>> {
    let t = tok_start(i)?;
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Ok((i, None));
    }
    let text = &t[..digits];
    match text.parse::<u32>() {
        Ok(v) if v <= MAX_REPEAT => Ok((&t[digits..], Some(v))),
        _ => hard(
            t,
            digits,
            format!(
                "repeat count `{}` is too large (the limit is {MAX_REPEAT})",
                super::lex::abbreviate(text)
            ),
        ),
    }
}
