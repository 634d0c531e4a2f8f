//! The full-text query-string language used inside `MATCHES '...'` (language §5).
//! (Being written by the search work; this is the interface the rest relies on.)

use serde::{Deserialize, Serialize};

/// A parsed query string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Query {
    /// Placeholder until the query grammar lands.
    Todo(String),
}

impl Query {
    /// True when the query has no positive clause (only `NOT x` / `-x`), which can never
    /// select anything on its own; `check` rejects such queries.
    /// (Stub until the query grammar lands: always false.)
    pub fn is_negative_only(&self) -> bool {
        false
    }
}

/// An error inside a query string; `offset` is a byte offset into the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub offset: usize,
    pub message: String,
}

/// Parse a query string (the text between the quotes, with `''` already unescaped).
pub fn parse_query(text: &str) -> Result<Query, QueryError> {
    Ok(Query::Todo(text.to_string()))
}
