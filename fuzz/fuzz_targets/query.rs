//! cargo-fuzz target; the body (and what it checks) is in `fuzz/bodies/query.rs`, which a
//! stable test also runs over `fuzz/corpus/query/` (docs/fuzzing.md).

#![no_main]

#[path = "../bodies/query.rs"]
mod body;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    body::run(data);
});
