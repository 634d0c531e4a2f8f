//! CEP
