#![allow(clippy::unwrap_used)]
//! Random append / read / reopen / torn-tail sequences against an in-memory model.
mod common;

use std::fs::OpenOptions;

use common::segment_files;
use proptest::prelude::*;
use weir_log::{Error, FsyncPolicy, Log, LogConfig, Retention, BATCH_HEADER, RECORD_HEADER};

#[derive(Debug, Clone)]
enum Op {
    Append(u32, Vec<Vec<u8>>),
    Read(u32, u64, usize, usize),
    Reopen,
    /// Cut this fraction (1..=255 of 256) of the last batch off the tail, then reopen.
    TearTail(u32, u8),
    /// Apply size retention (3000 bytes per partition).
    Retain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..2, proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8))
            .prop_map(|(p, r)| Op::Append(p, r)),
        4 => (0u32..2, any::<u64>(), 1usize..50, 1usize..3000).prop_map(|(p, f, n, b)| Op::Read(p, f, n, b)),
        1 => Just(Op::Reopen),
        1 => (0u32..2, 1u8..=255).prop_map(|(p, f)| Op::TearTail(p, f)),
        1 => Just(Op::Retain),
    ]
}

fn cfg() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Never,
        segment_bytes: 1024,
        index_interval_bytes: 128,
        retention: Retention {
            max_bytes: Some(3000),
            max_age: None,
        },
        retention_check_interval: std::time::Duration::from_secs(3600),
        ..LogConfig::default()
    }
}

fn cases() -> u32 {
    if std::env::var("WEIR_LONG_TESTS").is_ok() {
        1000
    } else {
        48
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Some(Log::open(dir.path(), cfg()).unwrap());
        log.as_ref().unwrap().create_topic("t", 2).unwrap();
        // Per partition: records, and batch boundaries (record counts).
        let mut model: Vec<Vec<Vec<u8>>> = vec![Vec::new(), Vec::new()];
        let mut batches: Vec<Vec<usize>> = vec![Vec::new(), Vec::new()];
        for op in ops {
            match op {
                Op::Append(p, recs) => {
                    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
                    let a = log.as_ref().unwrap().append("t", p, &refs).unwrap();
                    prop_assert_eq!(a.first_offset, model[p as usize].len() as u64);
                    if !recs.is_empty() {
                        batches[p as usize].push(recs.len());
                    }
                    model[p as usize].extend(recs);
                    prop_assert_eq!(a.end_offset, model[p as usize].len() as u64);
                }
                Op::Read(p, from, n, bytes) => {
                    let m = &model[p as usize];
                    let l = log.as_ref().unwrap();
                    let start = l.start_offset("t", p).unwrap();
                    let from = from % (m.len() as u64 + 1);
                    if from < start {
                        match l.read("t", p, from, n, bytes) {
                            Err(Error::OffsetTruncated { earliest, .. }) => prop_assert_eq!(earliest, start),
                            other => prop_assert!(false, "expected OffsetTruncated, got {:?}", other),
                        }
                        continue;
                    }
                    let got = l.read("t", p, from, n, bytes).unwrap();
                    let avail = m.len() as u64 - from;
                    if avail > 0 {
                        prop_assert!(!got.is_empty());
                    }
                    prop_assert!(got.len() <= n);
                    let payload: usize = got.iter().map(|r| r.payload.len()).sum();
                    if got.len() > 1 {
                        let last = got.last().unwrap().payload.len();
                        prop_assert!(payload - last < bytes, "read past max_bytes");
                    }
                    for (i, r) in got.iter().enumerate() {
                        prop_assert_eq!(r.offset, from + i as u64);
                        prop_assert_eq!(&r.payload[..], &m[r.offset as usize][..]);
                    }
                }
                Op::Reopen => {
                    drop(log.take());
                    log = Some(Log::open(dir.path(), cfg()).unwrap());
                    let l = log.as_ref().unwrap();
                    for p in 0..2u32 {
                        prop_assert_eq!(l.end_offset("t", p).unwrap(), model[p as usize].len() as u64);
                        prop_assert!(l.recovery_report().iter().all(|r| r.cuts.is_empty()));
                    }
                }
                Op::Retain => {
                    let l = log.as_ref().unwrap();
                    let before: Vec<u64> = (0..2).map(|p| l.start_offset("t", p).unwrap()).collect();
                    l.apply_retention().unwrap();
                    for p in 0..2u32 {
                        let start = l.start_offset("t", p).unwrap();
                        prop_assert!(start >= before[p as usize]);
                        prop_assert!(start <= model[p as usize].len() as u64);
                        let kept: u64 = segment_files(dir.path(), "t", p)
                            .iter()
                            .map(|f| std::fs::metadata(f).unwrap().len())
                            .sum();
                        prop_assert!(kept >= 3000 || start == before[p as usize],
                            "retention deleted below the bound: {} bytes kept", kept);
                    }
                }
                Op::TearTail(p, frac) => {
                    let pi = p as usize;
                    let Some(&count) = batches[pi].last() else { continue };
                    let tail = segment_files(dir.path(), "t", p).pop().unwrap();
                    let len = std::fs::metadata(&tail).unwrap().len();
                    if len == 0 {
                        continue;
                    }
                    let m = &model[pi];
                    let first = m.len() - count;
                    let batch_len = BATCH_HEADER as u64
                        + m[first..].iter().map(|r| (RECORD_HEADER + r.len()) as u64).sum::<u64>();
                    let cut = (batch_len * frac as u64 / 256).max(1);
                    drop(log.take());
                    OpenOptions::new().write(true).open(&tail).unwrap().set_len(len - cut).unwrap();
                    log = Some(Log::open(dir.path(), cfg()).unwrap());
                    model[pi].truncate(first);
                    batches[pi].pop();
                    let l = log.as_ref().unwrap();
                    let rep = l.recovery_report();
                    let r = rep.iter().find(|r| r.partition == p).unwrap();
                    prop_assert_eq!(r.cuts.len(), 1);
                    prop_assert_eq!(r.cuts[0].position, len - batch_len);
                    prop_assert_eq!(l.end_offset("t", p).unwrap(), first as u64);
                }
            }
        }
        // Finally everything matches.
        let l = log.as_ref().unwrap();
        for p in 0..2u32 {
            let start = l.start_offset("t", p).unwrap();
            let all = l.read("t", p, start, usize::MAX, usize::MAX).unwrap();
            prop_assert_eq!(all.len() as u64, model[p as usize].len() as u64 - start);
            for r in &all {
                prop_assert_eq!(&r.payload[..], &model[p as usize][r.offset as usize][..]);
            }
        }
    }
}
