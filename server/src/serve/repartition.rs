//! Repartitioning: a rule or metric grouped by a column other than its stream's `key`
//! reads a copy of the stream re-keyed by that column ([`matcher::engine::Repartition`]).
//!
//! The worker of source partition `p` appends each event of the stream, as it applies it,
//! to the hidden stream's topic (`stream.<source>.by.<column>`, as many partitions as the
//! source), in the partition the column's value hashes to. A copy is the event's bytes
//! behind a small header: the source partition and offset, and the source record's
//! timestamp (the event time of streams without `event_time`).
//!
//! After a crash, the source worker replays from its checkpoint and appends some copies
//! again. The reader of a hidden partition keeps, per source partition, the next source
//! offset it expects (in its checkpoint) and drops copies below it, so each event is
//! applied once; and since the log orders the copies, replays see the same input.
//! A source checkpoint is written only after its copies are durable.

use super::routing;
use matcher::value::{Row, RowDecoder, Value};

const MAGIC: &[u8; 3] = b"WR\x01";
const HEADER: usize = 3 + 4 + 8 + 8;

/// A copy of source record (`partition`, `offset`) with timestamp `ts_ms`.
pub fn encode(partition: u32, offset: u64, ts_ms: i64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&partition.to_le_bytes());
    v.extend_from_slice(&offset.to_le_bytes());
    v.extend_from_slice(&ts_ms.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// A watermark mark from source partition `partition`: its watermark of the source
/// stream, and whether it has read all its input (idle: it does not hold the repartitioned
/// stream's watermark back until it sends a copy again).
pub fn encode_mark(partition: u32, watermark: i64, idle: bool) -> Vec<u8> {
    encode(partition, MARK, watermark, &[u8::from(idle)])
}

/// The offset field of a mark.
const MARK: u64 = u64::MAX;

/// A copy's source record: (partition, offset, timestamp, event bytes).
pub struct Copy<'a> {
    pub partition: u32,
    pub offset: u64,
    pub ts_ms: i64,
    pub payload: &'a [u8],
}

impl Copy<'_> {
    /// A mark ([`encode_mark`]): `Some((watermark, idle))`.
    pub fn mark(&self) -> Option<(i64, bool)> {
        (self.offset == MARK).then(|| (self.ts_ms, self.payload.first() == Some(&1)))
    }
}

/// The watermark of a repartitioned stream in one partition, from the marks of its
/// `sources` source partitions: the lowest watermark of the active ones (a source not
/// heard from yet is active, at the lowest watermark: it may still send anything); when
/// every one is idle, the highest (all input so far has arrived, as in one partition).
pub fn merged_watermark(marks: &std::collections::HashMap<u32, (i64, bool)>, sources: u32) -> i64 {
    let state = |p: u32| marks.get(&p).copied().unwrap_or((i64::MIN, false));
    let active = (0..sources)
        .map(state)
        .filter(|(_, idle)| !idle)
        .map(|(w, _)| w)
        .min();
    active.unwrap_or_else(|| (0..sources).map(|p| state(p).0).max().unwrap_or(i64::MIN))
}

pub fn decode(rec: &[u8]) -> Option<Copy<'_>> {
    if rec.len() < HEADER || &rec[..3] != MAGIC {
        return None;
    }
    let partition = u32::from_le_bytes(rec[3..7].try_into().ok()?);
    let offset = u64::from_le_bytes(rec[7..15].try_into().ok()?);
    let ts_ms = i64::from_le_bytes(rec[15..23].try_into().ok()?);
    Some(Copy {
        partition,
        offset,
        ts_ms,
        payload: &rec[HEADER..],
    })
}

/// Where a row's copy goes: the partition of column `by`'s value (declared or not), by
/// the function ingest places events with ([`routing::partition_of`]); partition 0
/// without a column.
pub fn place(row: &Row, decoder: &RowDecoder, by: Option<&str>, parts: u32) -> u32 {
    let Some(col) = by else { return 0 };
    if parts <= 1 {
        return 0;
    }
    match decoder.column_index(col) {
        Some(i) => routing::partition_of(row.get(i), parts),
        None => match row.extra.get(col) {
            Some(j) => routing::partition_of(&Value::from_json(j), parts),
            None => routing::partition_of(&Value::Null, parts),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn copies_round_trip() {
        let c = encode(3, 1 << 40, -5, b"{\"a\":1}");
        let d = decode(&c).unwrap();
        assert_eq!(
            (d.partition, d.offset, d.ts_ms, d.payload),
            (3, 1 << 40, -5, &b"{\"a\":1}"[..])
        );
        assert!(decode(b"{\"a\":1}").is_none());
        assert!(decode(&c[..10]).is_none());
        assert!(decode(&c).unwrap().mark().is_none());
        let m = encode_mark(2, 12_345, true);
        let d = decode(&m).unwrap();
        assert_eq!((d.partition, d.mark()), (2, Some((12_345, true))));
    }

    #[test]
    fn merged_watermark_is_the_slowest_active_source() {
        use std::collections::HashMap;
        let mut m: HashMap<u32, (i64, bool)> = HashMap::new();
        assert_eq!(merged_watermark(&m, 3), i64::MIN);
        m.insert(0, (100, false));
        m.insert(2, (500, true));
        // Source 1 has not been heard from: it holds the watermark back.
        assert_eq!(merged_watermark(&m, 3), i64::MIN);
        m.insert(1, (50, false));
        assert_eq!(merged_watermark(&m, 3), 50);
        m.insert(1, (50, true));
        assert_eq!(merged_watermark(&m, 3), 100);
        m.insert(0, (100, true));
        assert_eq!(merged_watermark(&m, 3), 500);
    }

    #[test]
    fn equal_groups_are_placed_alike() {
        let d = {
            let (stmts, _) = dsl::parse::parse_statements("CREATE STREAM s (a INT, b FLOAT);");
            let mut cat = dsl::check::Catalog::new();
            cat.apply(&stmts).unwrap();
            RowDecoder::new(&cat.get("s").unwrap().output)
        };
        let row = |j: &str| d.decode(&serde_json::from_str(j).unwrap()).unwrap();
        for k in 0..50 {
            let (a, b) = (
                row(&format!(r#"{{"a":{k}}}"#)),
                row(&format!(r#"{{"a":{k}.0}}"#)),
            );
            assert_eq!(place(&a, &d, Some("a"), 8), place(&b, &d, Some("a"), 8));
            // An INT and a FLOAT column with the same value; an undeclared field.
            let c = row(&format!(r#"{{"b":{k}.0, "x":{k}}}"#));
            assert_eq!(place(&a, &d, Some("a"), 8), place(&c, &d, Some("b"), 8));
            assert_eq!(place(&a, &d, Some("a"), 8), place(&c, &d, Some("x"), 8));
        }
        // Stable across builds and processes (copies placed before a restart and after
        // it must meet): a fixed value.
        assert_eq!(
            routing::key_hash(&Value::String("m1".into())),
            0x08a9_8b07_b550_9b6b
        );
    }
}
