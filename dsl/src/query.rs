//! The full-text query-string language used inside `MATCHES '...'` (language §5).
//!
//! Grammar (Lucene classic syntax, default operator AND, precedence `NOT` > `AND` > `OR`):
//!
//! ```text
//! or      := and ( "OR" and )*
//! and     := unary ( ["AND"] unary )*          juxtaposition = AND
//! unary   := ("NOT" | "-") unary | "+" unary | primary
//! primary := "(" or ")" | FIELD ":" primary | PHRASE ["~" N] | "/" REGEX "/"
//!          | TERM ["~" [N]]
//! ```
//!
//! Query terms go through the same analysis as documents ([`tokenize`], [`normalize`]):
//! Unicode word boundaries, lowercase, accents folded. A plain term that analyzes into
//! several words (`wal-mart`) becomes a phrase. Wildcard, prefix and fuzzy terms are
//! normalized (lowercase, accents folded) but not split; regexes are used as written and
//! must match one whole (lowercased, folded) token.

use serde::{Deserialize, Serialize};
use std::fmt;
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

/// Longest accepted query string, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Deepest accepted nesting of parentheses / NOT.
pub const MAX_DEPTH: usize = 32;
/// Most leaf clauses (terms, phrases, patterns) in one query.
pub const MAX_CLAUSES: usize = 1024;
/// Largest accepted fuzzy edit distance.
pub const MAX_FUZZY: u8 = 2;
/// Largest accepted proximity slop.
pub const MAX_SLOP: u32 = 1000;

/// A parsed query string. `field: None` means "the field the query is applied to" (the
/// left side of `MATCHES`); [`Query::with_default_field`] fills it in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Query {
    /// One analyzed token.
    Term {
        field: Option<String>,
        term: String,
    },
    /// Consecutive tokens (`slop: None`), or tokens in order with at most `slop` other
    /// tokens between them in all (`"a b"~slop`). At least two terms.
    Phrase {
        field: Option<String>,
        terms: Vec<String>,
        slop: Option<u32>,
    },
    /// `recall*`: tokens starting with `prefix` (normalized, non-empty).
    Prefix {
        field: Option<String>,
        prefix: String,
    },
    /// `rec?ll`, `re*ll`: `?` one character, `*` any run (normalized).
    Wildcard {
        field: Option<String>,
        pattern: String,
    },
    /// `/recall(s|ed)?/`: a regex that must match a whole token.
    Regex {
        field: Option<String>,
        pattern: String,
    },
    /// `acme~1`: tokens within `distance` edits (insert, delete, substitute, swap adjacent).
    Fuzzy {
        field: Option<String>,
        term: String,
        distance: u8,
    },
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
}

/// An error inside a query string; `offset` is a byte offset into the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for QueryError {}

// ───────────────────────────── analysis ─────────────────────────────

/// Lowercase and fold accents (NFD, combining marks removed). ASCII takes a fast path.
pub fn normalize(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    let lower = text.to_lowercase();
    lower
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .nfc()
        .collect()
}

/// The analysis shared by queries and documents: Unicode words (UAX #29), each normalized.
/// Yields `(start, end, token)` with byte offsets into `text`.
pub fn tokenize(text: &str) -> impl Iterator<Item = (usize, usize, String)> + '_ {
    text.unicode_word_indices()
        .map(|(start, w)| (start, start + w.len(), normalize(w)))
        .filter(|(_, _, t)| !t.is_empty())
}

// ───────────────────────────── query API ─────────────────────────────

impl Query {
    /// True when the query has no positive clause anywhere that a match could rest on
    /// (`NOT x`, `-x -y`): such a query is rejected at check time.
    pub fn is_negative_only(&self) -> bool {
        match self {
            Query::Not(_) => true,
            Query::And(cs) | Query::Or(cs) => cs.iter().all(Query::is_negative_only),
            _ => false,
        }
    }

    /// A copy where every clause without a field gets `field`.
    pub fn with_default_field(&self, field: &str) -> Query {
        let mut q = self.clone();
        q.set_default_field(field);
        q
    }

    fn set_default_field(&mut self, f: &str) {
        match self {
            Query::Term { field, .. }
            | Query::Phrase { field, .. }
            | Query::Prefix { field, .. }
            | Query::Wildcard { field, .. }
            | Query::Regex { field, .. }
            | Query::Fuzzy { field, .. } => {
                if field.is_none() {
                    *field = Some(f.to_string());
                }
            }
            Query::And(cs) | Query::Or(cs) => cs.iter_mut().for_each(|c| c.set_default_field(f)),
            Query::Not(c) => c.set_default_field(f),
        }
    }

    /// The field of a leaf clause (`None` for AND/OR/NOT or the default field).
    pub fn field(&self) -> Option<&str> {
        match self {
            Query::Term { field, .. }
            | Query::Phrase { field, .. }
            | Query::Prefix { field, .. }
            | Query::Wildcard { field, .. }
            | Query::Regex { field, .. }
            | Query::Fuzzy { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// Number of leaf clauses.
    pub fn clause_count(&self) -> usize {
        match self {
            Query::And(cs) | Query::Or(cs) => cs.iter().map(Query::clause_count).sum(),
            Query::Not(c) => c.clause_count(),
            _ => 1,
        }
    }
}

// ───────────────────────────── printing ─────────────────────────────

fn is_special(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '(' | ')'
                | '"'
                | ':'
                | '^'
                | '~'
                | '/'
                | '\\'
                | '*'
                | '?'
                | '+'
                | '-'
                | '!'
                | '['
                | ']'
                | '{'
                | '}'
                | '&'
                | '|'
        )
}

fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str, keep_wild: bool) -> fmt::Result {
    for c in s.chars() {
        if is_special(c) && !(keep_wild && (c == '*' || c == '?')) {
            write!(f, "\\{c}")?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

fn write_field(f: &mut fmt::Formatter<'_>, field: &Option<String>) -> fmt::Result {
    match field {
        Some(name) => write!(f, "{name}:"),
        None => Ok(()),
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let child = |f: &mut fmt::Formatter<'_>, q: &Query| -> fmt::Result {
            match q {
                Query::And(_) | Query::Or(_) => write!(f, "({q})"),
                _ => write!(f, "{q}"),
            }
        };
        match self {
            Query::Term { field, term } => {
                write_field(f, field)?;
                write_escaped(f, term, false)
            }
            Query::Phrase { field, terms, slop } => {
                write_field(f, field)?;
                f.write_str("\"")?;
                for (i, t) in terms.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    for c in t.chars() {
                        if c == '"' || c == '\\' {
                            write!(f, "\\{c}")?;
                        } else {
                            write!(f, "{c}")?;
                        }
                    }
                }
                f.write_str("\"")?;
                if let Some(n) = slop {
                    write!(f, "~{n}")?;
                }
                Ok(())
            }
            Query::Prefix { field, prefix } => {
                write_field(f, field)?;
                write_escaped(f, prefix, false)?;
                f.write_str("*")
            }
            Query::Wildcard { field, pattern } => {
                write_field(f, field)?;
                write_escaped(f, pattern, true)
            }
            Query::Regex { field, pattern } => {
                write_field(f, field)?;
                f.write_str("/")?;
                for c in pattern.chars() {
                    if c == '/' {
                        f.write_str("\\/")?;
                    } else {
                        write!(f, "{c}")?;
                    }
                }
                f.write_str("/")
            }
            Query::Fuzzy {
                field,
                term,
                distance,
            } => {
                write_field(f, field)?;
                write_escaped(f, term, false)?;
                write!(f, "~{distance}")
            }
            Query::And(cs) | Query::Or(cs) => {
                let op = if matches!(self, Query::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                for (i, c) in cs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(op)?;
                    }
                    child(f, c)?;
                }
                Ok(())
            }
            Query::Not(c) => {
                f.write_str("NOT ")?;
                child(f, c)
            }
        }
    }
}

// ───────────────────────────── lexing ─────────────────────────────

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Plus,
    Minus,
    Colon,
    And,
    Or,
    Not,
    /// Raw word text (escapes resolved), plus a parallel "escaped" flag per char.
    Word(Vec<(char, bool)>),
    Phrase(String),
    Regex(String),
    /// `~` with an optional number.
    Tilde(Option<String>),
}

struct Lexed {
    tok: Tok,
    start: usize,
    end: usize,
}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError {
        offset,
        message: message.into(),
    })
}

fn lex(text: &str) -> Result<Vec<Lexed>, QueryError> {
    let mut out = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some(&(start, c)) = it.peek() {
        if c.is_whitespace() {
            it.next();
            continue;
        }
        let single = |t: Tok| Lexed {
            tok: t,
            start,
            end: start + c.len_utf8(),
        };
        match c {
            '(' => {
                it.next();
                out.push(single(Tok::LParen));
            }
            ')' => {
                it.next();
                out.push(single(Tok::RParen));
            }
            '+' => {
                it.next();
                out.push(single(Tok::Plus));
            }
            '-' | '!' => {
                it.next();
                out.push(single(Tok::Minus));
            }
            ':' => {
                it.next();
                out.push(single(Tok::Colon));
            }
            '^' | '[' | ']' | '{' | '}' => {
                return err(
                    start,
                    format!("'{c}' is not supported here (boosts and ranges are not part of weir queries; escape it with \\)"),
                );
            }
            '"' => {
                it.next();
                let mut s = String::new();
                let mut closed = None;
                while let Some((i, c)) = it.next() {
                    match c {
                        '"' => {
                            closed = Some(i + 1);
                            break;
                        }
                        '\\' => match it.next() {
                            Some((_, e)) => s.push(e),
                            None => return err(i, "dangling escape '\\' at end of query"),
                        },
                        _ => s.push(c),
                    }
                }
                let Some(end) = closed else {
                    return err(start, "unterminated phrase: missing closing '\"'");
                };
                out.push(Lexed {
                    tok: Tok::Phrase(s),
                    start,
                    end,
                });
            }
            '/' => {
                it.next();
                let mut s = String::new();
                let mut closed = None;
                while let Some((i, c)) = it.next() {
                    match c {
                        '/' => {
                            closed = Some(i + 1);
                            break;
                        }
                        '\\' => match it.next() {
                            Some((_, '/')) => s.push('/'),
                            Some((_, e)) => {
                                s.push('\\');
                                s.push(e);
                            }
                            None => return err(i, "dangling escape '\\' at end of query"),
                        },
                        _ => s.push(c),
                    }
                }
                let Some(end) = closed else {
                    return err(start, "unterminated regex: missing closing '/'");
                };
                out.push(Lexed {
                    tok: Tok::Regex(s),
                    start,
                    end,
                });
            }
            '~' => {
                it.next();
                let mut n = String::new();
                let mut end = start + 1;
                while let Some(&(i, d)) = it.peek() {
                    if d.is_ascii_digit() || d == '.' {
                        n.push(d);
                        end = i + 1;
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Lexed {
                    tok: Tok::Tilde(if n.is_empty() { None } else { Some(n) }),
                    start,
                    end,
                });
            }
            _ => {
                let mut w: Vec<(char, bool)> = Vec::new();
                let mut end = start;
                while let Some(&(i, c)) = it.peek() {
                    if c == '\\' {
                        it.next();
                        match it.next() {
                            Some((j, e)) => {
                                w.push((e, true));
                                end = j + e.len_utf8();
                            }
                            None => return err(i, "dangling escape '\\' at end of query"),
                        }
                        continue;
                    }
                    let stop = c.is_whitespace()
                        || matches!(
                            c,
                            '(' | ')' | '"' | ':' | '^' | '~' | '/' | '[' | ']' | '{' | '}'
                        );
                    if stop {
                        break;
                    }
                    w.push((c, false));
                    end = i + c.len_utf8();
                    it.next();
                }
                let plain: String = w.iter().map(|(c, _)| *c).collect();
                let all_plain = w.iter().all(|(_, e)| !e);
                let tok = match plain.as_str() {
                    "AND" | "&&" if all_plain => Tok::And,
                    "OR" | "||" if all_plain => Tok::Or,
                    "NOT" if all_plain => Tok::Not,
                    _ => Tok::Word(w),
                };
                out.push(Lexed { tok, start, end });
            }
        }
    }
    Ok(out)
}

// ───────────────────────────── parsing ─────────────────────────────

struct Parser<'a> {
    toks: Vec<Lexed>,
    pos: usize,
    len: usize,
    clauses: usize,
    _text: &'a str,
}

/// Parse a query string (the text between the quotes, with `''` already unescaped).
pub fn parse_query(text: &str) -> Result<Query, QueryError> {
    if text.len() > MAX_QUERY_BYTES {
        return err(
            MAX_QUERY_BYTES,
            format!(
                "query is too long ({} bytes; at most {MAX_QUERY_BYTES})",
                text.len()
            ),
        );
    }
    let toks = lex(text)?;
    if toks.is_empty() {
        return err(0, "empty query: expected a term, phrase or pattern");
    }
    let mut p = Parser {
        toks,
        pos: 0,
        len: text.len(),
        clauses: 0,
        _text: text,
    };
    let q = p.or(0)?;
    if let Some(t) = p.toks.get(p.pos) {
        return match t.tok {
            Tok::RParen => err(t.start, "unbalanced ')': no matching '('"),
            _ => err(t.start, "unexpected text after the query"),
        };
    }
    Ok(q)
}

fn is_field_name(w: &[(char, bool)]) -> bool {
    let mut cs = w.iter();
    match cs.next() {
        Some((c, false)) if c.is_ascii_alphabetic() || *c == '_' => {}
        _ => return false,
    }
    cs.all(|(c, e)| !e && (c.is_ascii_alphanumeric() || *c == '_' || *c == '.'))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|l| &l.tok)
    }
    fn here(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len, |l| l.start)
    }

    fn or(&mut self, depth: usize) -> Result<Query, QueryError> {
        let mut items = vec![self.and(depth)?];
        while self.peek() == Some(&Tok::Or) {
            let at = self.toks[self.pos].end;
            self.pos += 1;
            if self.starts_clause().is_none() {
                return err(self.here().max(at), "expected a clause after OR");
            }
            items.push(self.and(depth)?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Query::And(Vec::new()))
        } else {
            Query::Or(items)
        })
    }

    /// Some(()) when the next token can begin a clause.
    fn starts_clause(&self) -> Option<()> {
        match self.peek()? {
            Tok::Or | Tok::And | Tok::RParen | Tok::Colon | Tok::Tilde(_) => None,
            _ => Some(()),
        }
    }

    fn and(&mut self, depth: usize) -> Result<Query, QueryError> {
        let mut items = vec![self.unary(depth)?];
        loop {
            match self.peek() {
                Some(Tok::And) => {
                    let at = self.toks[self.pos].end;
                    self.pos += 1;
                    if self.starts_clause().is_none() {
                        return err(self.here().max(at), "expected a clause after AND");
                    }
                    items.push(self.unary(depth)?);
                }
                Some(Tok::Or) | Some(Tok::RParen) | None => break,
                Some(_) => items.push(self.unary(depth)?),
            }
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Query::And(Vec::new()))
        } else {
            Query::And(items)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Query, QueryError> {
        if depth >= MAX_DEPTH {
            return err(
                self.here(),
                format!("query nests too deeply (at most {MAX_DEPTH} levels)"),
            );
        }
        match self.peek() {
            Some(Tok::Not) | Some(Tok::Minus) => {
                let what = if self.peek() == Some(&Tok::Not) {
                    "NOT"
                } else {
                    "'-'"
                };
                let at = self.toks[self.pos].end;
                self.pos += 1;
                if self.starts_clause().is_none() {
                    return err(self.here().max(at), format!("expected term after {what}"));
                }
                Ok(Query::Not(Box::new(self.unary(depth + 1)?)))
            }
            Some(Tok::Plus) => {
                let at = self.toks[self.pos].end;
                self.pos += 1;
                if self.starts_clause().is_none() {
                    return err(self.here().max(at), "expected term after '+'");
                }
                self.unary(depth + 1)
            }
            _ => self.primary(depth, None),
        }
    }

    fn primary(&mut self, depth: usize, field: Option<String>) -> Result<Query, QueryError> {
        let Some(l) = self.toks.get(self.pos) else {
            return err(
                self.len,
                "expected a term, phrase or '(' but the query ended",
            );
        };
        let (start, end) = (l.start, l.end);
        match l.tok.clone() {
            Tok::LParen => {
                self.pos += 1;
                if self.peek() == Some(&Tok::RParen) {
                    return err(start, "empty parentheses");
                }
                let mut q = self.or(depth + 1)?;
                if self.peek() != Some(&Tok::RParen) {
                    return err(start, "unbalanced '(': missing ')'");
                }
                self.pos += 1;
                if let Some(f) = field {
                    q.set_default_field(&f);
                }
                Ok(q)
            }
            Tok::Word(w) => {
                self.pos += 1;
                if self.peek() == Some(&Tok::Colon) {
                    if field.is_some() || !is_field_name(&w) {
                        return err(
                            start,
                            "invalid field name before ':' (escape ':' with \\ to search it)",
                        );
                    }
                    self.pos += 1;
                    let name: String = w.iter().map(|(c, _)| *c).collect();
                    return match self.peek() {
                        Some(Tok::LParen) | Some(Tok::Word(_)) | Some(Tok::Phrase(_))
                        | Some(Tok::Regex(_)) => self.primary(depth, Some(name)),
                        _ => err(
                            self.here(),
                            format!("expected a term, phrase or '(' after '{name}:'"),
                        ),
                    };
                }
                let fuzzy = self.tilde(false)?;
                self.word(w, start, end, field, fuzzy)
            }
            Tok::Phrase(s) => {
                self.pos += 1;
                let slop = self.tilde(true)?;
                self.count(start)?;
                let terms: Vec<String> = tokenize(&s).map(|(_, _, t)| t).collect();
                match terms.len() {
                    0 => err(start, "phrase has no searchable words"),
                    1 => Ok(Query::Term {
                        field,
                        term: terms.into_iter().next().unwrap_or_default(),
                    }),
                    _ => Ok(Query::Phrase {
                        field,
                        terms,
                        slop: slop.map(|n| n as u32),
                    }),
                }
            }
            Tok::Regex(pattern) => {
                self.pos += 1;
                self.count(start)?;
                if pattern.is_empty() {
                    return err(start, "empty regex");
                }
                if let Err(e) = regex_automata::util::syntax::parse(&pattern) {
                    return err(start, format!("invalid regex: {e}"));
                }
                Ok(Query::Regex { field, pattern })
            }
            Tok::RParen => err(start, "expected a term, phrase or '(' but found ')'"),
            Tok::Or | Tok::And => err(start, "expected a term before the operator"),
            Tok::Colon => err(start, "':' must follow a field name"),
            Tok::Tilde(_) => err(start, "'~' must follow a term or phrase"),
            Tok::Not | Tok::Minus | Tok::Plus => err(start, "unexpected operator"),
        }
    }

    /// An optional `~N` after a term (fuzzy) or phrase (proximity). Returns the number, with
    /// a bare `~` meaning 2 for a term; a phrase needs the number.
    fn tilde(&mut self, phrase: bool) -> Result<Option<u64>, QueryError> {
        let Some(Lexed {
            tok: Tok::Tilde(n),
            start,
            ..
        }) = self.toks.get(self.pos)
        else {
            return Ok(None);
        };
        let start = *start;
        let n = n.clone();
        self.pos += 1;
        match n {
            None if phrase => err(start, "expected a number after '~' (e.g. \"a b\"~5)"),
            None => Ok(Some(2)),
            Some(s) => match s.parse::<u64>() {
                Ok(v) if phrase && v > MAX_SLOP as u64 => {
                    err(start, format!("proximity too large (at most {MAX_SLOP})"))
                }
                Ok(v) if !phrase && v > MAX_FUZZY as u64 => err(
                    start,
                    format!("fuzzy edit distance {v} is too large (at most {MAX_FUZZY})"),
                ),
                Ok(v) => Ok(Some(v)),
                Err(_) => err(
                    start,
                    format!("expected a whole number after '~', found '{s}'"),
                ),
            },
        }
    }

    fn count(&mut self, at: usize) -> Result<(), QueryError> {
        self.clauses += 1;
        if self.clauses > MAX_CLAUSES {
            return err(at, format!("too many clauses (at most {MAX_CLAUSES})"));
        }
        Ok(())
    }

    fn word(
        &mut self,
        w: Vec<(char, bool)>,
        start: usize,
        _end: usize,
        field: Option<String>,
        fuzzy: Option<u64>,
    ) -> Result<Query, QueryError> {
        self.count(start)?;
        let wild = w.iter().any(|(c, e)| !e && (*c == '*' || *c == '?'));
        if wild {
            if fuzzy.is_some() {
                return err(start, "a wildcard term cannot also be fuzzy");
            }
            let stars = w.iter().filter(|(c, e)| !e && *c == '*').count();
            let qs = w.iter().filter(|(c, e)| !e && *c == '?').count();
            let last_is_star = matches!(w.last(), Some(('*', false)));
            if stars == 1 && qs == 0 && last_is_star {
                let prefix: String = w[..w.len() - 1].iter().map(|(c, _)| *c).collect();
                let prefix = normalize(&prefix);
                if prefix.is_empty() {
                    return err(
                        start,
                        "'*' alone matches everything; give at least one character",
                    );
                }
                return Ok(Query::Prefix { field, prefix });
            }
            // Normalize the literal runs, keep wildcards.
            let mut pattern = String::new();
            let mut run = String::new();
            let mut literal = false;
            for (c, e) in &w {
                if !e && (*c == '*' || *c == '?') {
                    pattern.push_str(&normalize(&run));
                    run.clear();
                    pattern.push(*c);
                } else {
                    literal = true;
                    run.push(*c);
                }
            }
            pattern.push_str(&normalize(&run));
            if !literal && qs == 0 {
                return err(
                    start,
                    "'*' alone matches everything; give at least one character",
                );
            }
            // Escaped '*' / '?' in a wildcard cannot be expressed after normalization.
            if w.iter().any(|(c, e)| *e && (*c == '*' || *c == '?')) {
                return err(
                    start,
                    "an escaped '*' or '?' cannot be mixed with wildcards",
                );
            }
            return Ok(Query::Wildcard { field, pattern });
        }
        let plain: String = w.iter().map(|(c, _)| *c).collect();
        let terms: Vec<String> = tokenize(&plain).map(|(_, _, t)| t).collect();
        if let Some(d) = fuzzy {
            if terms.len() != 1 {
                return err(start, "a fuzzy term must be a single word");
            }
            let term = terms.into_iter().next().unwrap_or_default();
            if d == 0 {
                return Ok(Query::Term { field, term });
            }
            return Ok(Query::Fuzzy {
                field,
                term,
                distance: d as u8,
            });
        }
        match terms.len() {
            0 => err(start, format!("'{plain}' has no searchable words")),
            1 => Ok(Query::Term {
                field,
                term: terms.into_iter().next().unwrap_or_default(),
            }),
            _ => Ok(Query::Phrase {
                field,
                terms,
                slop: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Query {
        parse_query(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn t(s: &str) -> Query {
        Query::Term {
            field: None,
            term: s.into(),
        }
    }
    fn e(s: &str) -> QueryError {
        parse_query(s).expect_err(s)
    }

    #[test]
    fn basic_forms() {
        assert_eq!(p("acme"), t("acme"));
        assert_eq!(p("Café"), t("cafe"));
        assert_eq!(p("acme corp"), Query::And(vec![t("acme"), t("corp")]));
        assert_eq!(
            p("\"Acme Corp\""),
            Query::Phrase {
                field: None,
                terms: vec!["acme".into(), "corp".into()],
                slop: None
            }
        );
        assert_eq!(
            p("\"acme recall\"~5"),
            Query::Phrase {
                field: None,
                terms: vec!["acme".into(), "recall".into()],
                slop: Some(5)
            }
        );
        assert_eq!(
            p("Recall*"),
            Query::Prefix {
                field: None,
                prefix: "recall".into()
            }
        );
        assert_eq!(
            p("rec?ll"),
            Query::Wildcard {
                field: None,
                pattern: "rec?ll".into()
            }
        );
        assert_eq!(
            p("re*ll"),
            Query::Wildcard {
                field: None,
                pattern: "re*ll".into()
            }
        );
        assert_eq!(
            p("/recall(s|ed)?/"),
            Query::Regex {
                field: None,
                pattern: "recall(s|ed)?".into()
            }
        );
        assert_eq!(
            p("acme~1"),
            Query::Fuzzy {
                field: None,
                term: "acme".into(),
                distance: 1
            }
        );
        assert_eq!(
            p("acme~"),
            Query::Fuzzy {
                field: None,
                term: "acme".into(),
                distance: 2
            }
        );
        assert_eq!(
            p("title:acme"),
            Query::Term {
                field: Some("title".into()),
                term: "acme".into()
            }
        );
        assert_eq!(
            p("title:(a OR b)"),
            Query::Or(vec![
                Query::Term {
                    field: Some("title".into()),
                    term: "a".into()
                },
                Query::Term {
                    field: Some("title".into()),
                    term: "b".into()
                }
            ])
        );
        assert_eq!(
            p("wal-mart"),
            Query::Phrase {
                field: None,
                terms: vec!["wal".into(), "mart".into()],
                slop: None
            }
        );
    }

    #[test]
    fn precedence_not_and_or() {
        // a OR b c  ==  a OR (b AND c);  NOT binds tightest.
        assert_eq!(
            p("a OR b c"),
            Query::Or(vec![t("a"), Query::And(vec![t("b"), t("c")])])
        );
        assert_eq!(
            p("a AND NOT b OR c"),
            Query::Or(vec![
                Query::And(vec![t("a"), Query::Not(Box::new(t("b")))]),
                t("c")
            ])
        );
        assert_eq!(
            p("+storm -flood"),
            Query::And(vec![t("storm"), Query::Not(Box::new(t("flood")))])
        );
        assert!(p("-a -b").is_negative_only());
        assert!(p("NOT a").is_negative_only());
        assert!(!p("a -b").is_negative_only());
    }

    #[test]
    fn errors_have_offsets() {
        let x = e("acme \"corp");
        assert_eq!(x.offset, 5);
        assert!(x.message.contains("unterminated phrase"), "{x}");
        let x = e("acme AND NOT");
        assert!(x.message.contains("expected term after NOT"), "{x}");
        assert_eq!(x.offset, 12);
        assert!(e("(acme").message.contains("missing ')'"));
        assert!(e("acme)").message.contains("unbalanced ')'"));
        assert!(e("acme~3").message.contains("too large"));
        assert!(e("").message.contains("empty"));
        assert!(e("/a(/").message.contains("invalid regex"));
        assert!(e("*").message.contains("matches everything"));
        assert!(e("a OR").message.contains("after OR"));
        assert!(e("acme^2").message.contains("not supported"));
        let deep = "(".repeat(40) + "a" + &")".repeat(40);
        assert!(e(&deep).message.contains("nests too deeply"));
        let many = vec!["a"; MAX_CLAUSES + 1].join(" ");
        assert!(e(&many).message.contains("too many clauses"));
        assert!(e(&"a".repeat(MAX_QUERY_BYTES + 1))
            .message
            .contains("too long"));
    }

    #[test]
    fn display_is_canonical() {
        for (src, want) in [
            ("a b OR c", "(a AND b) OR c"),
            ("(a OR b) c", "(a OR b) AND c"),
            ("title:\"A b\"~3 -x", "title:\"a b\"~3 AND NOT x"),
            ("re*l? /a\\/b/ foo~", "re*l? AND /a\\/b/ AND foo~2"),
            ("a\\:b", "a\\:b"),
        ] {
            assert_eq!(p(src).to_string(), want, "{src}");
            assert_eq!(p(want), p(src));
        }
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn leaf() -> impl Strategy<Value = Query> {
            let word = "[a-zé]{1,6}".prop_map(|s| normalize(&s));
            let field = prop::option::of(prop::sample::select(vec!["title", "body", "x_1"]))
                .prop_map(|f| f.map(String::from));
            prop_oneof![
                (field.clone(), word.clone()).prop_map(|(field, term)| Query::Term { field, term }),
                (
                    field.clone(),
                    prop::collection::vec(word.clone(), 2..4),
                    prop::option::of(0u32..10)
                )
                    .prop_map(|(field, terms, slop)| Query::Phrase {
                        field,
                        terms,
                        slop
                    }),
                (field.clone(), word.clone())
                    .prop_map(|(field, prefix)| Query::Prefix { field, prefix }),
                (field.clone(), "[a-c]{1,3}([*?][a-c]{1,2}|\\?)")
                    .prop_map(|(field, pattern)| Query::Wildcard { field, pattern }),
                (field.clone(), "[a-c]{1,3}(\\(x\\|y\\))?/?")
                    .prop_map(|(field, pattern)| Query::Regex { field, pattern }),
                (field, word, 1u8..=2).prop_map(|(field, term, distance)| Query::Fuzzy {
                    field,
                    term,
                    distance
                }),
            ]
        }

        fn query() -> impl Strategy<Value = Query> {
            leaf().prop_recursive(4, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 2..4).prop_map(Query::And),
                    prop::collection::vec(inner.clone(), 2..4).prop_map(Query::Or),
                    inner.prop_map(|q| Query::Not(Box::new(q))),
                ]
            })
        }

        proptest! {
            #[test]
            fn print_parse_round_trips(q in query()) {
                let text = q.to_string();
                let back = parse_query(&text);
                prop_assert_eq!(back, Ok(q), "printed: {}", text);
            }

            #[test]
            fn arbitrary_text_never_panics(s in "[a-c \"()*?~:/\\\\+!-]{0,24}|(AND|OR|NOT| |a|\\(|\\)|\"|-)*") {
                if let Ok(q) = parse_query(&s) {
                    let again = parse_query(&q.to_string());
                    prop_assert_eq!(again, Ok(q));
                }
            }
        }
    }
}
