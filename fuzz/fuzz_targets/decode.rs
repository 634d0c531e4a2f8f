//! cargo-fuzz target; the body (and what it checks) is in `fuzz/bodies/decode.rs`, which a
//! stable test also runs over `fuzz/corpus/decode/` (docs/fuzzing.md).

#![no_main]

#[path = "../bodies/decode.rs"]
mod body;

use libfuzzer_sys::fuzz_target;

thread_local! {
    static DEC: matcher::value::RowDecoder = body::decoder();
}

fuzz_target!(|data: &[u8]| {
    DEC.with(|d| body::run(d, data));
});
