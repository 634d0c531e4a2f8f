//! cargo-fuzz target; the body (and what it checks) is in `fuzz/bodies/segment.rs`, which a
//! stable test also runs over `fuzz/corpus/segment/` (docs/fuzzing.md).

#![no_main]

#[path = "../bodies/segment.rs"]
mod body;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    body::run(data);
});
