//! nom parser for statement files. (Being written by the parser work.)

use crate::ast::Statement;
use crate::error::Diagnostic;

/// Parse a whole statement file. Returns every statement that parsed and a diagnostic for
/// each that did not (the parser skips to the next `;` and goes on).
pub fn parse_statements(src: &str) -> (Vec<Statement>, Vec<Diagnostic>) {
    let _ = src;
    (Vec::new(), Vec::new())
}
