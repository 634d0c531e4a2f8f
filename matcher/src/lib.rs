//! weir's engines: expression evaluation, CEP automata, stored-search index, metrics.
pub mod output;
pub mod search;
