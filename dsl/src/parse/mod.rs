//! nom parser for statement files.
//!
//! [`parse_statements`] parses a whole file. Each statement ends with `;`. When a statement
//! does not parse, the error is reported at the furthest position the parser reached, with
//! what it expected there, and parsing goes on after the next `;` (outside strings,
//! quoted identifiers and comments), so one file yields every error at once.
//!
//! Hostile input is bounded by the [`limits`]: each limit gives a clear diagnostic, never a
//! stack overflow or a hang. The grammar never backtracks over more than one token, so
//! parsing is linear in the input.
//!
//! ```
//! let (stmts, diags) = dsl::parse::parse_statements(
//!     "CREATE STREAM s (a INT, ts TIMESTAMP) WITH (event_time = 'ts');",
//! );
//! assert_eq!(stmts.len(), 1);
//! assert!(diags.is_empty());
//! ```

mod expr;
mod lex;
mod pattern;
mod stmt;

pub use lex::{is_plain_ident, is_reserved, RESERVED};

/// Limits against hostile or runaway input.
pub mod limits {
    /// Deepest nesting of parentheses / NOT / unary minus in an expression, and of groups
    /// in a pattern.
    pub const MAX_NESTING_DEPTH: usize = 64;
    /// Tallest expression tree (long operator chains count too).
    pub const MAX_EXPR_HEIGHT: usize = 512;
    /// Longest statement, in bytes (from its first token to its `;`).
    pub const MAX_STATEMENT_BYTES: usize = 256 * 1024;
    /// Most pattern variables (terms) in one PATTERN.
    pub const MAX_PATTERN_TERMS: usize = 256;
    /// Largest bound in `{n}`, `{n,m}`.
    pub const MAX_REPEAT: u32 = 10_000;
    /// Most items in any comma-separated list (columns, arguments, IN, MEASURES, ...).
    pub const MAX_LIST_ITEMS: usize = 1024;
}

use crate::ast::{Expr, Pattern, Span, Statement};
use crate::error::Diagnostic;
use lex::{PErr, PResult};

/// Parse a whole statement file. Returns every statement that parsed and a diagnostic for
/// each that did not (the parser skips to the next `;` and goes on). Warnings (e.g. a
/// forgotten `,` between DEFINE items) come with successfully parsed statements.
pub fn parse_statements(src: &str) -> (Vec<Statement>, Vec<Diagnostic>) {
    let mut stmts = Vec::new();
    let mut diags = Vec::new();
    lex::reset(src.len());
    lex::take_warnings();
    // A byte-order mark at the start of a file (some editors write one) is not content.
    let mut pos = if src.starts_with('\u{feff}') { 3 } else { 0 };
    loop {
        lex::reset(src.len());
        // Skip whitespace, comments and empty statements.
        let rest = match lex::ws(&src[pos..]) {
            Ok((r, ())) => r,
            Err(e) => {
                diags.push(to_diag(src, e));
                break;
            }
        };
        pos = src.len() - rest.len();
        if rest.is_empty() {
            break;
        }
        if rest.starts_with(';') {
            pos += 1;
            continue;
        }
        let scan = scan_statement(src, pos);
        if scan.end - pos > limits::MAX_STATEMENT_BYTES {
            let first = rest.chars().next().map_or(0, char::len_utf8);
            diags.push(Diagnostic::error(
                Span::new(pos, pos + first),
                format!(
                    "statement too long ({} bytes; the limit is {} bytes)",
                    scan.end - pos,
                    limits::MAX_STATEMENT_BYTES
                ),
            ));
            pos = (scan.end + 1).min(src.len());
            continue;
        }
        match statement_with_semicolon(rest) {
            Ok((r, kind)) => {
                let end = src.len() - r.len();
                stmts.push(Statement {
                    kind,
                    span: Span::new(pos, end),
                });
                diags.extend(lex::take_warnings());
                pos = end;
            }
            Err(e) => {
                lex::take_warnings();
                let d = to_diag(src, e);
                let at = d.span.start;
                diags.push(d);
                if let Some((sp, msg)) = scan.unterminated {
                    if sp.start != at {
                        diags.push(Diagnostic::error(sp, msg));
                    }
                }
                pos = (scan.end + 1).min(src.len());
            }
        }
    }
    (stmts, diags)
}

fn statement_with_semicolon(i: &str) -> PResult<'_, crate::ast::StatementKind> {
    let (r, k) = stmt::statement(i)?;
    let (r, _) = lex::labelled(r, "`;` at the end of the statement", lex::sym(";"))?;
    Ok((r, k))
}

/// Parse a single expression (the whole input).
pub fn parse_expr(src: &str) -> Result<Expr, Diagnostic> {
    whole(src, expr::expr)
}

/// Parse a single row pattern (the text inside `PATTERN ( ... )`).
pub fn parse_pattern(src: &str) -> Result<Pattern, Diagnostic> {
    whole(src, pattern::pattern)
}

/// Parse a duration (`10 MINUTES`, `INTERVAL '10' MINUTE`).
pub fn parse_duration(src: &str) -> Result<crate::ast::Duration, Diagnostic> {
    whole(src, stmt::duration)
}

fn whole<'a, T>(src: &'a str, p: fn(&'a str) -> PResult<'a, T>) -> Result<T, Diagnostic> {
    lex::reset(src.len());
    if src.len() > limits::MAX_STATEMENT_BYTES {
        return Err(Diagnostic::error(
            Span::new(0, 0),
            format!(
                "input too long (the limit is {} bytes)",
                limits::MAX_STATEMENT_BYTES
            ),
        ));
    }
    let r = p(src).and_then(|(r, v)| {
        let (t, ()) = lex::ws(r)?;
        if t.is_empty() {
            Ok(v)
        } else {
            lex::fail(t, lex::Exp::Label("end of input")).map(|(_, ())| v)
        }
    });
    lex::take_warnings();
    r.map_err(|e| to_diag(src, e))
}

/// Turn a parse error into a diagnostic: a hard error as it is, otherwise "expected …,
/// found …" at the furthest position reached.
fn to_diag(src: &str, e: nom::Err<PErr>) -> Diagnostic {
    let e = match e {
        nom::Err::Error(e) | nom::Err::Failure(e) => e,
        nom::Err::Incomplete(_) => PErr {
            rem: 0,
            hard: Some((0, "unexpected end of input".to_string())),
        },
    };
    if let Some((len, msg)) = e.hard {
        let start = src.len() - e.rem;
        return Diagnostic::error(Span::new(start, start + len), msg);
    }
    let (rem, expected) = lex::furthest().unwrap_or((e.rem, Vec::new()));
    let mut start = src.len() - rem;
    let (found, len) = lex::describe_token(&src[start..]);
    if start == src.len() {
        // Point just after the last token rather than at the (invisible) end of the file.
        start = src[..start].trim_end().len();
    }
    let msg = if expected.is_empty() {
        format!("syntax error at {found}")
    } else {
        let items: Vec<String> = expected.iter().map(|x| x.to_string()).collect();
        format!("expected {}, found {found}", join_or(&items))
    };
    Diagnostic::error(Span::new(start, start + len), msg)
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

struct Scan {
    /// Byte offset of the terminating `;`, or the file length.
    end: usize,
    /// An unterminated string / quoted identifier / comment met on the way.
    unterminated: Option<(Span, &'static str)>,
}

/// Find the end of the statement starting at `pos`: the first `;` outside strings,
/// quoted identifiers and comments. Linear; lexes exactly like the grammar does.
fn scan_statement(src: &str, pos: usize) -> Scan {
    let b = src.as_bytes();
    let mut i = pos;
    while i < b.len() {
        match b[i] {
            b';' => {
                return Scan {
                    end: i,
                    unterminated: None,
                }
            }
            q @ (b'\'' | b'"') => {
                let start = i;
                i += 1;
                loop {
                    match b[i..].iter().position(|&c| c == q) {
                        None => {
                            let msg = if q == b'\'' {
                                "unterminated string: `'` has no closing `'` (write '' for a quote inside a string)"
                            } else {
                                "unterminated quoted identifier: `\"` has no closing `\"`"
                            };
                            return Scan {
                                end: b.len(),
                                unterminated: Some((Span::new(start, start + 1), msg)),
                            };
                        }
                        Some(n) => {
                            i += n + 1;
                            if b.get(i) == Some(&q) {
                                i += 1;
                            } else {
                                break;
                            }
                        }
                    }
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = match b[i..].iter().position(|&c| c == b'\n') {
                    Some(n) => i + n + 1,
                    None => b.len(),
                };
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = i;
                match src[i + 2..].find("*/") {
                    Some(n) => i = i + 2 + n + 2,
                    None => {
                        return Scan {
                            end: b.len(),
                            unterminated: Some((
                                Span::new(start, start + 2),
                                "unterminated comment: `/*` has no closing `*/`",
                            )),
                        }
                    }
                }
            }
            _ => i += 1,
        }
    }
    Scan {
        end: b.len(),
        unterminated: None,
    }
}
