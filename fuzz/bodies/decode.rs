//! Fuzz body: the event decoder. `RowDecoder::decode_bytes` (the fast path over the raw
//! line) must never panic, and must agree with the reference path (`serde_json` then
//! `RowDecoder::decode`): same row when both accept, both refuse otherwise.
//! Shared by `fuzz/fuzz_targets/decode.rs` and the stable corpus test in `matcher/tests/`.

use matcher::value::RowDecoder;

const STREAM: &str = "CREATE STREAM s (id STRING, n INT, f FLOAT, b BOOL, ts TIMESTAMP, j JSON)
  WITH (event_time = 'ts', key = 'id');";

pub fn decoder() -> RowDecoder {
    let (stmts, diags) = dsl::parse::parse_statements(STREAM);
    assert!(diags.is_empty(), "{diags:?}");
    let mut cat = dsl::check::Catalog::new();
    if cat.apply(&stmts).is_err() {
        panic!("the fuzz stream checks");
    }
    let Some(e) = cat.get("s") else {
        panic!("stream s");
    };
    RowDecoder::new(&e.output)
}

pub fn run(dec: &RowDecoder, data: &[u8]) {
    let fast = dec.decode_bytes(data);
    let slow = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .map(|v| dec.decode(&v));
    match (&fast, &slow) {
        (Ok(a), Some(Ok(b))) => assert_eq!(a, b, "fast and reference rows differ"),
        (Ok(a), _) => panic!("fast path accepted what the reference refuses: {a:?}"),
        // The fast path may refuse what the reference accepts: the worker then takes the
        // reference path (`server/src/serve/worker/step.rs`).
        (Err(_), _) => {}
    }
}
