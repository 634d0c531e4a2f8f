//! Lexical building blocks shared by every grammar module: whitespace and comments,
//! keywords, symbols, identifiers, literals, and the furthest-failure tracker that turns a
//! failed parse into "expected X or Y, found Z".
//!
//! Positions: every parser receives a suffix of the whole file, so the byte offset of an
//! input is `file length − input length` (the tantivy trick). Token parsers skip leading
//! whitespace and comments; they never consume trailing whitespace, so spans end exactly at
//! the last byte of the last token.

use std::cell::RefCell;

use nom::error::{ErrorKind, ParseError};
use nom::{Err, IResult};

use super::limits::MAX_NESTING_DEPTH;
use crate::ast::{Ident, Literal, Span};
use crate::error::Diagnostic;

/// Parse error. Recoverable errors (`Err::Error`) carry only a position: the message comes
/// from the tracker. Hard errors (usually `Err::Failure`) carry their own message and span.
#[derive(Debug)]
pub(crate) struct PErr {
    /// Remaining input length at the failure.
    pub rem: usize,
    /// `(span length, message)` for errors that say exactly what is wrong.
    pub hard: Option<(usize, String)>,
}

impl<'a> ParseError<&'a str> for PErr {
    fn from_error_kind(input: &'a str, _: ErrorKind) -> Self {
        PErr {
            rem: input.len(),
            hard: None,
        }
    }
    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
    fn or(self, other: Self) -> Self {
        if other.hard.is_some() || other.rem < self.rem {
            other
        } else {
            self
        }
    }
}

pub(crate) type PResult<'a, O> = IResult<&'a str, O, PErr>;

/// Something the parser expected at the furthest failure position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Exp {
    Kw(&'static str),
    Sym(&'static str),
    Label(&'static str),
}

impl std::fmt::Display for Exp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exp::Kw(k) | Exp::Sym(k) => write!(f, "`{k}`"),
            Exp::Label(l) => f.write_str(l),
        }
    }
}

struct State {
    src_len: usize,
    /// Smallest remaining length at which something failed (= furthest position).
    far: usize,
    expected: Vec<Exp>,
    /// While set, failures at this remaining length are not recorded (a label covers them).
    quiet: Option<usize>,
    depth: usize,
    warnings: Vec<Diagnostic>,
}

thread_local! {
    static ST: RefCell<State> = const { RefCell::new(State {
        src_len: 0,
        far: usize::MAX,
        expected: Vec::new(),
        quiet: None,
        depth: 0,
        warnings: Vec::new(),
    }) };
}

/// Start parsing a new statement of a file of `src_len` bytes.
pub(crate) fn reset(src_len: usize) {
    ST.with(|s| {
        let mut s = s.borrow_mut();
        s.src_len = src_len;
        s.far = usize::MAX;
        s.expected.clear();
        s.quiet = None;
        s.depth = 0;
    });
}

pub(crate) fn take_warnings() -> Vec<Diagnostic> {
    ST.with(|s| std::mem::take(&mut s.borrow_mut().warnings))
}

pub(crate) fn warn(d: Diagnostic) {
    ST.with(|s| s.borrow_mut().warnings.push(d));
}

/// Byte offset of `i` in the file.
pub(crate) fn off(i: &str) -> usize {
    ST.with(|s| s.borrow().src_len.saturating_sub(i.len()))
}

/// Span from the start of `from` to the start of `to` (both suffixes of the file).
pub(crate) fn span(from: &str, to: &str) -> Span {
    Span::new(off(from), off(to))
}

/// Record that `what` was expected at `i`.
pub(crate) fn record(i: &str, what: Exp) {
    ST.with(|s| {
        let mut s = s.borrow_mut();
        let rem = i.len();
        if s.quiet == Some(rem) {
            return;
        }
        if rem < s.far {
            s.far = rem;
            s.expected.clear();
        }
        if rem == s.far && !s.expected.contains(&what) {
            s.expected.push(what);
        }
    });
}

/// The furthest failure: `(remaining length, expected items)`.
pub(crate) fn furthest() -> Option<(usize, Vec<Exp>)> {
    ST.with(|s| {
        let s = s.borrow();
        (s.far != usize::MAX).then(|| (s.far, s.expected.clone()))
    })
}

/// A recoverable error at `i`, recording `what` as expected there.
pub(crate) fn fail<'a, O>(i: &'a str, what: Exp) -> PResult<'a, O> {
    record(i, what);
    Err(Err::Error(PErr {
        rem: i.len(),
        hard: None,
    }))
}

/// A recoverable error at `i` that records nothing (a quiet look-ahead failed).
pub(crate) fn miss<'a, O>(i: &'a str) -> PResult<'a, O> {
    Err(Err::Error(PErr {
        rem: i.len(),
        hard: None,
    }))
}

/// A hard error at `i` covering `len` bytes: reported as is, never backtracked over.
pub(crate) fn hard<'a, O>(i: &'a str, len: usize, msg: impl Into<String>) -> PResult<'a, O> {
    let mut len = len.min(i.len());
    while !i.is_char_boundary(len) {
        len += 1;
    }
    Err(Err::Failure(PErr {
        rem: i.len(),
        hard: Some((len, msg.into())),
    }))
}

/// Turn a recoverable error into a hard one (keeps its position; the message still comes
/// from the tracker). Used after a keyword that commits to one alternative.
pub(crate) fn cut<O>(r: Result<O, Err<PErr>>) -> Result<O, Err<PErr>> {
    r.map_err(|e| match e {
        Err::Error(e) => Err::Failure(e),
        other => other,
    })
}

/// `Ok(None)` for a recoverable error, the error itself for a hard one.
pub(crate) fn attempt<'a, O>(r: PResult<'a, O>) -> Result<Option<(&'a str, O)>, Err<PErr>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Err::Error(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Run `p` with failures at its starting position replaced by the single expectation
/// `what` (e.g. "a duration like `10 MINUTES`" instead of a list of tokens).
pub(crate) fn labelled<'a, O>(
    i: &'a str,
    what: &'static str,
    p: impl FnOnce(&'a str) -> PResult<'a, O>,
) -> PResult<'a, O> {
    let (t, ()) = ws(i)?;
    let prev = ST.with(|s| s.borrow_mut().quiet.replace(t.len()));
    let r = p(i);
    ST.with(|s| s.borrow_mut().quiet = prev);
    if let Err(Err::Error(_)) = &r {
        record(t, Exp::Label(what));
    }
    r
}

/// Nesting guard: increments the depth, fails hard past [`MAX_NESTING_DEPTH`].
pub(crate) struct Depth;

impl Depth {
    pub(crate) fn enter(i: &str, what: &str) -> Result<Depth, Err<PErr>> {
        let d = ST.with(|s| {
            let mut s = s.borrow_mut();
            s.depth += 1;
            s.depth
        });
        let guard = Depth;
        if d > MAX_NESTING_DEPTH {
            let (t, ()) = ws(i)?;
            hard::<()>(
                t,
                1,
                format!("{what} nested too deeply (the limit is {MAX_NESTING_DEPTH} levels)"),
            )?;
        }
        Ok(guard)
    }
}

impl Drop for Depth {
    fn drop(&mut self) {
        ST.with(|s| s.borrow_mut().depth -= 1);
    }
}

// ───────────────────────────── whitespace ─────────────────────────────

/// Skip whitespace, `-- line` and `/* block */` comments.
pub(crate) fn ws(mut i: &str) -> PResult<'_, ()> {
    loop {
        let t = i.trim_start();
        if let Some(r) = t.strip_prefix("--") {
            i = match r.find('\n') {
                Some(n) => &r[n + 1..],
                None => &r[r.len()..],
            };
        } else if let Some(r) = t.strip_prefix("/*") {
            match r.find("*/") {
                Some(n) => i = &r[n + 2..],
                None => return hard(t, 2, "unterminated comment: `/*` has no closing `*/`"),
            }
        } else {
            return Ok((t, ()));
        }
    }
}

/// Whitespace then the input: the position where the next token starts.
pub(crate) fn tok_start(i: &str) -> Result<&str, Err<PErr>> {
    ws(i).map(|(t, ())| t)
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A bare word `[A-Za-z_][A-Za-z0-9_]*` at the very start of `i` (no whitespace skipping).
pub(crate) fn word(i: &str) -> Option<(&str, &str)> {
    let mut chars = i.char_indices();
    match chars.next() {
        Some((_, c)) if is_word_start(c) => {}
        _ => return None,
    }
    let end = i
        .char_indices()
        .find(|&(_, c)| !is_word_char(c))
        .map_or(i.len(), |(n, _)| n);
    Some((&i[..end], &i[end..]))
}

/// Words that cannot be used as plain identifiers (write them "in double quotes").
pub const RESERVED: &[&str] = &[
    "AND",
    "AS",
    "BETWEEN",
    "CASE",
    "DEFINE",
    "ELSE",
    "END",
    "FALSE",
    "FROM",
    "GROUP",
    "IN",
    "INTERVAL",
    "IS",
    "LIKE",
    "MATCHES",
    "MATCH_RECOGNIZE",
    "MEASURES",
    "NOT",
    "NULL",
    "OR",
    "ORDER",
    "PARTITION",
    "PATTERN",
    "SELECT",
    "THEN",
    "TRUE",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
    "WITHIN",
];

pub fn is_reserved(w: &str) -> bool {
    let up = Upper::of(w);
    !up.as_str().is_empty() && RESERVED.binary_search(&up.as_str()).is_ok()
}

/// A word in capitals without allocating; empty when it is too long to be a keyword or
/// is not ASCII.
pub(crate) struct Upper {
    buf: [u8; 24],
    len: usize,
}

impl Upper {
    pub(crate) fn of(w: &str) -> Upper {
        let mut buf = [0u8; 24];
        if w.len() > buf.len() || !w.is_ascii() {
            return Upper { buf, len: 0 };
        }
        for (b, c) in buf.iter_mut().zip(w.bytes()) {
            *b = c.to_ascii_uppercase();
        }
        Upper { buf, len: w.len() }
    }
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// True when `name` can be written without double quotes.
pub fn is_plain_ident(name: &str) -> bool {
    matches!(word(name), Some((w, "")) if !is_reserved(w))
}

// ───────────────────────────── keywords and symbols ─────────────────────────────

fn kw_inner<'a>(i: &'a str, w: &'static str, quiet: bool) -> PResult<'a, Span> {
    let (t, ()) = ws(i)?;
    match word(t) {
        Some((x, rest)) if x.eq_ignore_ascii_case(w) => Ok((rest, span(t, rest))),
        _ if quiet => miss(t),
        _ => fail(t, Exp::Kw(w)),
    }
}

/// Keyword `w` (case-insensitive), recorded as expected when missing.
pub(crate) fn kw<'a>(w: &'static str) -> impl Fn(&'a str) -> PResult<'a, Span> {
    move |i| kw_inner(i, w, false)
}

/// Keyword look-ahead that records nothing when missing.
pub(crate) fn kw_q<'a>(w: &'static str) -> impl Fn(&'a str) -> PResult<'a, Span> {
    move |i| kw_inner(i, w, true)
}

/// Several keywords in a row (`ORDER BY`); once the first matched the rest are required.
pub(crate) fn kws<'a>(ws_: &'static [&'static str]) -> impl Fn(&'a str) -> PResult<'a, Span> {
    move |i| {
        let (t, ()) = ws(i)?;
        let (mut r, first) = kw_inner(t, ws_[0], false)?;
        let mut sp = first;
        for w in &ws_[1..] {
            let (r2, s) = cut(kw_inner(r, w, false))?;
            sp = sp.to(s);
            r = r2;
        }
        Ok((r, sp))
    }
}

fn sym_inner<'a>(i: &'a str, s: &'static str, quiet: bool) -> PResult<'a, Span> {
    let (t, ()) = ws(i)?;
    match t.strip_prefix(s) {
        Some(rest) => Ok((rest, span(t, rest))),
        None if quiet => miss(t),
        None => fail(t, Exp::Sym(s)),
    }
}

/// Symbol `s`, recorded as expected when missing.
pub(crate) fn sym<'a>(s: &'static str) -> impl Fn(&'a str) -> PResult<'a, Span> {
    move |i| sym_inner(i, s, false)
}

/// Symbol look-ahead that records nothing when missing.
pub(crate) fn sym_q<'a>(s: &'static str) -> impl Fn(&'a str) -> PResult<'a, Span> {
    move |i| sym_inner(i, s, true)
}

// ───────────────────────────── identifiers ─────────────────────────────

/// `"quoted identifier"` with `""` for a quote, at the very start of `t`.
fn quoted_ident(t: &str) -> PResult<'_, Ident> {
    let body = &t[1..];
    let mut name = String::new();
    let mut idx = 0;
    loop {
        match body[idx..].find('"') {
            None => {
                return hard(
                    t,
                    1,
                    "unterminated quoted identifier: `\"` has no closing `\"`",
                )
            }
            Some(n) => {
                name.push_str(&body[idx..idx + n]);
                idx += n + 1;
                if body[idx..].starts_with('"') {
                    name.push('"');
                    idx += 1;
                } else {
                    break;
                }
            }
        }
    }
    let rest = &body[idx..];
    if name.is_empty() {
        return hard(t, 2, "empty quoted identifier `\"\"`");
    }
    Ok((
        rest,
        Ident {
            name,
            span: span(t, rest),
        },
    ))
}

fn ident_inner(i: &str, allow_reserved: bool, quiet: bool) -> PResult<'_, Ident> {
    let (t, ()) = ws(i)?;
    if t.starts_with('"') {
        return quoted_ident(t);
    }
    match word(t) {
        Some((_, rest)) if rest.starts_with(|c: char| !c.is_ascii() && c.is_alphanumeric()) => {
            let len = t
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(t.len());
            hard(
                t,
                len,
                format!(
                    "identifier `{}` has a non-ASCII letter: write it in double quotes, \"{}\"",
                    abbreviate(&t[..len]),
                    abbreviate(&t[..len])
                ),
            )
        }
        Some((w, rest)) if allow_reserved || !is_reserved(w) => Ok((
            rest,
            Ident {
                name: w.to_string(),
                span: span(t, rest),
            },
        )),
        _ if quiet => miss(t),
        _ => fail(t, Exp::Label("an identifier")),
    }
}

/// An identifier: a plain non-reserved word or a "double quoted" name.
pub(crate) fn ident(i: &str) -> PResult<'_, Ident> {
    ident_inner(i, false, false)
}

/// Identifier look-ahead that records nothing when missing.
pub(crate) fn ident_q(i: &str) -> PResult<'_, Ident> {
    ident_inner(i, false, true)
}

/// A name after a `.`: reserved words are fine there (`payload.end`).
pub(crate) fn field_name(i: &str) -> PResult<'_, Ident> {
    ident_inner(i, true, false)
}

// ───────────────────────────── literals ─────────────────────────────

/// `'text'` with `''` for a quote. Returns the unescaped text and its span.
pub(crate) fn string_lit(i: &str) -> PResult<'_, (String, Span)> {
    let (t, ()) = ws(i)?;
    if !t.starts_with('\'') {
        return fail(t, Exp::Label("a string like 'text'"));
    }
    let body = &t[1..];
    let mut out = String::new();
    let mut idx = 0;
    loop {
        match body[idx..].find('\'') {
            None => {
                return hard(
                    t,
                    1,
                    "unterminated string: `'` has no closing `'` (write '' for a quote inside a string)",
                )
            }
            Some(n) => {
                out.push_str(&body[idx..idx + n]);
                idx += n + 1;
                if body[idx..].starts_with('\'') {
                    out.push('\'');
                    idx += 1;
                } else {
                    break;
                }
            }
        }
    }
    let rest = &body[idx..];
    Ok((rest, (out, span(t, rest))))
}

/// True when `t` starts a number literal.
pub(crate) fn starts_number(t: &str) -> bool {
    let b = t.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_digit() => true,
        Some(b'.') => b.get(1).is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// An unsigned number: `12`, `1.5`, `.5`, `1e9`, `2.5E-3`. Integers are `Int` (i64), the
/// rest `Float`. Out-of-range values are hard errors.
pub(crate) fn number(i: &str) -> PResult<'_, (Literal, Span)> {
    let (t, ()) = ws(i)?;
    if !starts_number(t) {
        return fail(t, Exp::Label("a number"));
    }
    let b = t.as_bytes();
    let mut n = 0;
    while n < b.len() && b[n].is_ascii_digit() {
        n += 1;
    }
    let mut is_float = false;
    if n < b.len() && b[n] == b'.' && b.get(n + 1).is_some_and(|c| c.is_ascii_digit()) {
        is_float = true;
        n += 1;
        while n < b.len() && b[n].is_ascii_digit() {
            n += 1;
        }
    }
    if n < b.len() && (b[n] == b'e' || b[n] == b'E') {
        let mut m = n + 1;
        if m < b.len() && (b[m] == b'+' || b[m] == b'-') {
            m += 1;
        }
        if m < b.len() && b[m].is_ascii_digit() {
            while m < b.len() && b[m].is_ascii_digit() {
                m += 1;
            }
            is_float = true;
            n = m;
        }
    }
    let text = &t[..n];
    let rest = &t[n..];
    if rest.chars().next().is_some_and(is_word_char) {
        let bad = rest.chars().next().map_or(1, char::len_utf8);
        return hard(
            rest,
            bad,
            format!("unexpected character after the number `{text}`"),
        );
    }
    let sp = span(t, rest);
    if is_float {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok((rest, (Literal::Float(f), sp))),
            _ => hard(t, n, format!("number `{text}` is out of range")),
        }
    } else {
        match text.parse::<i64>() {
            Ok(v) => Ok((rest, (Literal::Int(v), sp))),
            Err(_) => hard(
                t,
                n,
                format!(
                    "integer `{}` is out of range (the largest is {})",
                    abbreviate(text),
                    i64::MAX
                ),
            ),
        }
    }
}

/// Shorten long text for messages.
pub(crate) fn abbreviate(s: &str) -> String {
    const MAX: usize = 32;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

/// Describe the token at the start of `t` for "found …" and its byte length.
pub(crate) fn describe_token(t: &str) -> (String, usize) {
    let Some(c) = t.chars().next() else {
        return ("end of input".to_string(), 0);
    };
    if let Some((w, _)) = word(t) {
        let what = if is_reserved(w) { "keyword" } else { "word" };
        return (format!("{what} `{}`", abbreviate(w)), w.len());
    }
    if starts_number(t) {
        let n = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .unwrap_or(t.len());
        return (format!("number `{}`", abbreviate(&t[..n])), n);
    }
    match c {
        '\'' => ("a string".to_string(), 1),
        '"' => ("a quoted identifier".to_string(), 1),
        ';' => ("`;`".to_string(), 1),
        c if c.is_control() => (
            format!("control character U+{:04X}", c as u32),
            c.len_utf8(),
        ),
        c if c.is_ascii_punctuation() => (format!("`{c}`"), 1),
        c => (format!("unexpected character `{c}`"), c.len_utf8()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_words_are_sorted_for_binary_search() {
        assert!(super::RESERVED.windows(2).all(|w| w[0] < w[1]));
        assert!(super::is_reserved("match_recognize"));
        assert!(super::is_reserved("Within"));
        assert!(!super::is_reserved("within_"));
        assert!(!super::is_reserved("first"));
    }
}
