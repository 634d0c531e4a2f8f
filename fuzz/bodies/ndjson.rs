//! Fuzz body: the NDJSON splitter of `POST /v1/streams/{s}/events`. It must never panic;
//! every non-blank line is either accepted or rejected (with its index); a line the
//! streaming check accepts is accepted by the full decoder too, into the same partition.
//! Shared by `fuzz/fuzz_targets/ndjson.rs` and the stable corpus test in `server/`.

use server::serve::ingest::check::{ndjson_lines, split_ndjson, Schema};
use server::serve::ingest::StreamInfo;

const STREAM: &str = "CREATE STREAM s (id STRING, n INT, f FLOAT, b BOOL, ts TIMESTAMP, j JSON)
  WITH (event_time = 'ts', key = 'id');";

pub fn info() -> StreamInfo {
    let (stmts, diags) = dsl::parse::parse_statements(STREAM);
    assert!(diags.is_empty(), "{diags:?}");
    let mut cat = dsl::check::Catalog::new();
    if cat.apply(&stmts).is_err() {
        panic!("the fuzz stream checks");
    }
    let Some(e) = cat.get("s") else {
        panic!("stream s");
    };
    StreamInfo {
        decoder: matcher::value::RowDecoder::new(&e.output),
        schema: Schema::new(&e.output),
        event_time: e.output.event_time.clone(),
        key: e.output.key.clone(),
        partitions: 4,
        in_order: None,
    }
}

pub fn run(info: &StreamInfo, data: &[u8]) {
    let b = split_ndjson(info, data);
    let lines: Vec<&[u8]> = ndjson_lines(data).collect();
    assert_eq!(b.accepted + b.rejected.len(), lines.len());
    let accepted = b
        .per_part
        .iter()
        .enumerate()
        .flat_map(|(p, recs)| recs.iter().map(move |r| (p as u32, r.as_ref())));
    for (p, line) in accepted {
        let ev: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => panic!("accepted a line that is not JSON ({e})"),
        };
        match server::serve::ingest::check::decode_event(info, &ev) {
            Ok(q) => assert_eq!(p, q, "streaming check and decoder place it differently"),
            Err(e) => panic!("accepted a line the decoder refuses: {e}"),
        }
    }
}
