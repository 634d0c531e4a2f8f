//! weir's engines: expression evaluation, CEP automata, stored-search index, metrics.
//!
//! - [`value`]: values, rows, decoding JSON events against a stream definition.
//! - [`expr`]: compiled expressions with SQL three-valued logic (shared by every engine).
//! - [`cep`]: rules (MATCH_RECOGNIZE patterns) compiled to automata and run per key.
//! - [`search`]: stored full-text searches: analysis, presearcher index, verification.
//! - [`output`]: output records (language §7) and their deterministic ids.

pub mod cep;
pub mod engine;
pub mod expr;
pub mod metric;
pub mod output;
pub mod search;
pub mod value;
