//! cargo-fuzz target; the body (and what it checks) is in `fuzz/bodies/ndjson.rs`, which a
//! stable test also runs over `fuzz/corpus/ndjson/` (docs/fuzzing.md).

#![no_main]

#[path = "../bodies/ndjson.rs"]
mod body;

use libfuzzer_sys::fuzz_target;

thread_local! {
    static INFO: server::serve::ingest::StreamInfo = body::info();
}

fuzz_target!(|data: &[u8]| {
    INFO.with(|i| body::run(i, data));
});
