//! weir's engines: expression evaluation, CEP automata, stored-search index, metrics.
//!
//! - [`value`]: values, rows, decoding JSON events against a stream definition.
//! - [`expr`]: compiled expressions with SQL three-valued logic (shared by every engine).
//! - [`cep`]: rules (MATCH_RECOGNIZE patterns) compiled to automata and run per key.

pub mod cep;
pub mod expr;
pub mod value;
