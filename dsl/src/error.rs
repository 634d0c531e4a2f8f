//! Diagnostics: `file:line:column: error: message`, the source line, and a caret.
//!
//! ```
//! use dsl::ast::Span;
//! use dsl::error::Diagnostic;
//! let src = "CREATE RULE r AS FROM paymnts PATTERN (a);\n";
//! let d = Diagnostic::error(Span::new(22, 29), "unknown stream `paymnts`");
//! let text = d.render("rules.weir", src);
//! assert!(text.starts_with("rules.weir:1:23: error: unknown stream `paymnts`\n"));
//! assert!(text.contains("^^^^^^^"));
//! ```

use crate::ast::Span;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem found in a statement file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// What was expected / what is wrong, in the user's terms.
    pub message: String,
    /// Where (byte offsets into the file).
    pub span: Span,
    /// Secondary places, e.g. "first defined here".
    pub notes: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            notes: Vec::new(),
        }
    }
    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            message: message.into(),
            span,
            notes: Vec::new(),
        }
    }
    pub fn with_note(mut self, span: Span, note: impl Into<String>) -> Self {
        self.notes.push((span, note.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Human form:
    ///
    /// ```text
    /// rules.weir:3:6: error: unknown stream `paymnts`; known streams: payments
    ///   3 | FROM paymnts
    ///     |      ^^^^^^^
    /// rules.weir:1:15: note: first defined here
    ///   ...
    /// ```
    pub fn render(&self, file: &str, src: &str) -> String {
        let mut out = String::new();
        render_one(
            &mut out,
            file,
            src,
            self.span,
            self.severity.as_str(),
            &self.message,
        );
        for (span, note) in &self.notes {
            render_one(&mut out, file, src, *span, "note", note);
        }
        out
    }

    /// Machine form for editors: `{"file","line","column","end_line","end_column",
    /// "severity","message","snippet","notes":[{"line","column","end_line","end_column",
    /// "message"}]}`; lines and columns 1-based, columns in characters, the end exclusive.
    pub fn to_json(&self, file: &str, src: &str) -> serde_json::Value {
        let loc = Location::of(src, self.span);
        let notes: Vec<serde_json::Value> = self
            .notes
            .iter()
            .map(|(span, msg)| {
                let l = Location::of(src, *span);
                serde_json::json!({
                    "line": l.line, "column": l.column,
                    "end_line": l.end_line, "end_column": l.end_column,
                    "message": msg,
                })
            })
            .collect();
        serde_json::json!({
            "file": file,
            "line": loc.line,
            "column": loc.column,
            "end_line": loc.end_line,
            "end_column": loc.end_column,
            "severity": self.severity,
            "message": self.message,
            "snippet": line_text(src, loc.line),
            "notes": notes,
        })
    }
}

/// A span as 1-based line/column pairs (columns counted in characters; end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

impl Location {
    pub fn of(src: &str, span: Span) -> Location {
        let (line, column) = line_col(src, span.start);
        let (end_line, end_column) = line_col(src, span.end.max(span.start));
        Location {
            line,
            column,
            end_line,
            end_column,
        }
    }
}

/// Map a byte offset to a 1-based (line, column); the column counts characters. Offsets past
/// the end map to the end; an offset inside a multi-byte character maps to that character.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The text of 1-based line `line`, without its line ending ("" past the end).
pub fn line_text(src: &str, line: usize) -> &str {
    src.split('\n')
        .nth(line.saturating_sub(1))
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or("")
}

fn render_one(out: &mut String, file: &str, src: &str, span: Span, label: &str, msg: &str) {
    use std::fmt::Write;
    let loc = Location::of(src, span);
    let _ = writeln!(out, "{file}:{}:{}: {label}: {msg}", loc.line, loc.column);
    let text = line_text(src, loc.line);
    if text.is_empty() && loc.line > src.split('\n').count() {
        return;
    }
    let gutter = loc.line.to_string();
    let pad = " ".repeat(gutter.len());
    let _ = writeln!(out, "  {gutter} | {text}");
    // Keep tabs so the caret lines up under tab-indented text.
    let prefix: String = text
        .chars()
        .take(loc.column - 1)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let line_chars = text.chars().count();
    let width = if loc.end_line == loc.line {
        loc.end_column.saturating_sub(loc.column)
    } else {
        (line_chars + 1).saturating_sub(loc.column)
    }
    .max(1);
    let _ = writeln!(out, "  {pad} | {prefix}{}", "^".repeat(width));
}

/// Render many diagnostics of one file, in order.
pub fn render_all(diags: &[Diagnostic], file: &str, src: &str) -> String {
    diags.iter().map(|d| d.render(file, src)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let src = "ab\nçé x\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 2), (1, 3));
        assert_eq!(line_col(src, 3), (2, 1));
        // "çé " is 5 bytes, 3 characters.
        assert_eq!(line_col(src, 3 + 5), (2, 4));
        assert_eq!(line_col(src, 4), (2, 1), "inside a multi-byte char");
        assert_eq!(line_col(src, 999), (3, 1));
    }

    #[test]
    fn caret_sits_under_the_span() {
        let src = "CREATE STREAM s (a INT);\nCREATE RULE r AS FROM t PATTERN (a);\n";
        let start = src.find("FROM t").unwrap() + 5;
        let d = Diagnostic::error(Span::new(start, start + 1), "unknown stream `t`")
            .with_note(Span::new(14, 15), "streams: s");
        let r = d.render("f.weir", src);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines[0], "f.weir:2:23: error: unknown stream `t`");
        assert_eq!(lines[1], "  2 | CREATE RULE r AS FROM t PATTERN (a);");
        assert_eq!(lines[2], "    |                       ^");
        assert_eq!(lines[3], "f.weir:1:15: note: streams: s");
        assert_eq!(lines[5], "    |               ^");
    }

    #[test]
    fn multi_line_span_underlines_to_end_of_first_line() {
        let src = "abc\ndef";
        let d = Diagnostic::warning(Span::new(1, 6), "w");
        let r = d.render("f", src);
        assert!(r.contains("  1 | abc\n    |  ^^\n"), "{r}");
        assert!(r.starts_with("f:1:2: warning: w"));
    }

    #[test]
    fn json_form_has_editor_fields() {
        let src = "x\n  bad thing\n";
        let d = Diagnostic::error(Span::new(4, 7), "oops").with_note(Span::new(0, 1), "here");
        let j = d.to_json("a.weir", src);
        assert_eq!(j["file"], "a.weir");
        assert_eq!(j["line"], 2);
        assert_eq!(j["column"], 3);
        assert_eq!(j["end_line"], 2);
        assert_eq!(j["end_column"], 6);
        assert_eq!(j["severity"], "error");
        assert_eq!(j["snippet"], "  bad thing");
        assert_eq!(j["notes"][0]["line"], 1);
        assert_eq!(j["notes"][0]["message"], "here");
    }
}
