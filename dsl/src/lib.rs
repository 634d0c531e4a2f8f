//! The weir rule language front end: text → AST (with spans) → validated plan.
//!
//! - [`parse::parse_statements`]: text → statements + syntax diagnostics (recovers at `;`).
//! - [`check`]: statements → validated catalog + semantic diagnostics.
//! - `Display` on AST nodes prints canonical text (`print.rs`).

pub mod ast;
pub mod check;
pub mod error;
pub mod parse;
pub mod plan;
pub mod print;
pub mod query;

pub use error::{Diagnostic, Severity};
