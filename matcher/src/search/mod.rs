//! Stored full-text searches (language §5): many `MATCHES` queries matched against every
//! event, with highlights.
//!
//! - [`analysis`]: the shared analysis (Unicode words, lowercase, accents folded).
//! - [`SearchIndex`]: the presearcher + verifier. Each stored search is indexed under the
//!   terms it cannot match without; a document is analyzed once, its terms select the few
//!   candidate searches, and only those are verified.
//! - [`SearchSet`]: versions of one shared index (a change makes the next version;
//!   handles of older versions keep matching theirs).
//! - [`naive`]: the reference evaluator (every query on every document) used by the tests.
//!
//! The engine hands each search over as a [`SearchSpec`]: the `MATCHES` query (fields
//! resolved), the equality filters it found in the rest of the WHERE (`lang = 'en'`,
//! `source IN (...)`), which the index uses like terms, and an opaque residual `R` for the
//! rest of the WHERE, which the index passes back to a callback on candidates only.

pub mod analysis;
mod index;
pub mod naive;

pub use index::{
    Hit, HitRef, MatchStats, SearchIndex, SearchLimits, SearchScratch, SearchSet, SearchStats,
};

use dsl::query::{parse_query, Query, QueryError};
use std::collections::BTreeMap;
use std::fmt;

/// Per field, sorted byte ranges `[start, end)` of the tokens that satisfied the query.
pub type Highlights = BTreeMap<String, Vec<(usize, usize)>>;

/// An event as the search index sees it: named text fields (raw strings).
#[derive(Debug, Clone, Default)]
pub struct Document<'a> {
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Document<'a> {
    pub fn new() -> Self {
        Document { fields: Vec::new() }
    }
    /// Builder-style: add a field.
    pub fn with(mut self, name: &'a str, text: &'a str) -> Self {
        self.fields.push((name, text));
        self
    }
    pub fn push(&mut self, name: &'a str, text: &'a str) {
        self.fields.push((name, text));
    }
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
    }
}

/// What the engine registers for one `CREATE SEARCH`.
#[derive(Debug, Clone)]
pub struct SearchSpec<R = ()> {
    /// The full-text part; every clause must name its field (see
    /// [`Query::with_default_field`]). Several `MATCHES` tests of a WHERE combine with
    /// `Query::And` / `Query::Or`.
    pub query: Query,
    /// Conjunctive equality filters `field IN (values)` on the raw field value.
    pub equals: Vec<(String, Vec<String>)>,
    /// The rest of the WHERE, evaluated by the caller on candidates that passed the rest.
    pub residual: Option<R>,
}

impl<R> SearchSpec<R> {
    pub fn new(query: Query) -> Self {
        SearchSpec {
            query,
            equals: Vec::new(),
            residual: None,
        }
    }
    /// `field MATCHES 'text'`.
    pub fn matches(field: &str, text: &str) -> Result<Self, SearchError> {
        let q = parse_query(text).map_err(SearchError::Parse)?;
        Ok(Self::new(q.with_default_field(field)))
    }
    /// Add an equality filter `field IN (values)`.
    pub fn with_equals(mut self, field: &str, values: &[&str]) -> Self {
        self.equals.push((
            field.to_string(),
            values.iter().map(|v| v.to_string()).collect(),
        ));
        self
    }
    pub fn with_residual(mut self, r: R) -> Self {
        self.residual = Some(r);
        self
    }
}

/// Why a search could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchError {
    Parse(QueryError),
    /// The query has no positive clause (`NOT x`, `-x`).
    NegativeOnly,
    /// A clause without a field (use `with_default_field`).
    MissingField(String),
    /// A wildcard or regex that does not compile.
    BadPattern {
        pattern: String,
        message: String,
    },
    TooManySearches {
        limit: usize,
    },
    QueryTooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    Empty(String),
    /// Changes were asked of a [`SearchSet`] version that is not the newest.
    NotLatest {
        version: u64,
        latest: u64,
    },
}

impl fmt::Display for SearchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SearchError::Parse(e) => write!(f, "invalid query: {e}"),
            SearchError::NegativeOnly => write!(
                f,
                "the query only excludes (NOT / -); it needs at least one term to look for"
            ),
            SearchError::MissingField(c) => write!(f, "clause '{c}' has no field"),
            SearchError::BadPattern { pattern, message } => {
                write!(f, "pattern '{pattern}' cannot be used: {message}")
            }
            SearchError::TooManySearches { limit } => write!(
                f,
                "too many stored searches (the limit is {limit}); drop some or raise max_searches"
            ),
            SearchError::QueryTooLarge { what, size, limit } => {
                write!(f, "query is too large: {size} {what} (at most {limit})")
            }
            SearchError::Empty(m) => write!(f, "{m}"),
            SearchError::NotLatest { version, latest } => write!(
                f,
                "the stored searches changed since version {version} (now {latest}); \
                 apply changes to the newest version"
            ),
        }
    }
}

impl std::error::Error for SearchError {}
