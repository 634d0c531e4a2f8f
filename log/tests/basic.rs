#![allow(clippy::unwrap_used)]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{payload, small_config};
use weir_log::{Error, FsyncPolicy, Log, LogConfig, Position, Visibility};

fn read_all(log: &Log, topic: &str, p: u32) -> Vec<weir_log::Record> {
    let mut out = Vec::new();
    let mut from = log.start_offset(topic, p).unwrap();
    loop {
        let recs = log.read(topic, p, from, 37, 1 << 20).unwrap();
        if recs.is_empty() {
            return out;
        }
        from = recs.last().unwrap().offset + 1;
        out.extend(recs);
    }
}

#[test]
fn append_read_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), small_config()).unwrap();
        log.create_topic("s", 3).unwrap();
        let mut next = 0u64;
        for batch in 0..60u64 {
            let recs: Vec<Vec<u8>> = (0..(batch % 5 + 1)).map(|k| payload(next + k)).collect();
            let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
            let a = log.append("s", 1, &refs).unwrap();
            assert_eq!(a.first_offset, next);
            assert_eq!(a.end_offset, next + refs.len() as u64);
            assert!(a.durable);
            next = a.end_offset;
        }
        assert!(
            log.segment_count("s", 1).unwrap() > 3,
            "segments should roll"
        );
        assert_eq!(log.end_offset("s", 1).unwrap(), next);
        assert_eq!(log.end_offset("s", 0).unwrap(), 0);
        let all = read_all(&log, "s", 1);
        assert_eq!(all.len() as u64, next);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.offset, i as u64);
            assert_eq!(&r.payload[..], &payload(i as u64)[..]);
        }
        // Reads from the middle of a batch and of a segment.
        for from in [0u64, 1, 13, 77, next - 1] {
            let r = log.read("s", 1, from, 3, 1 << 20).unwrap();
            assert_eq!(r[0].offset, from);
            assert!(r.len() <= 3);
        }
        assert!(log.read("s", 1, next, 10, 1 << 20).unwrap().is_empty());
        assert!(matches!(
            log.read("s", 1, next + 1, 10, 1 << 20),
            Err(Error::OffsetBeyondEnd { end, .. }) if end == next
        ));
    }
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.topics(), vec![("s".to_string(), 3)]);
    let report = log.recovery_report();
    assert_eq!(report.len(), 3);
    assert!(report.iter().all(|r| r.cuts.is_empty()));
    let all = read_all(&log, "s", 1);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(&r.payload[..], &payload(i as u64)[..]);
    }
    let a = log.append("s", 1, &[b"after"]).unwrap();
    assert_eq!(a.first_offset, all.len() as u64);
}

#[test]
fn byte_limit_returns_at_least_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    log.create_topic("s", 1).unwrap();
    let big = vec![7u8; 3000];
    log.append("s", 0, &[&big, b"x", b"y"]).unwrap();
    let r = log.read("s", 0, 0, 100, 10).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].payload.len(), 3000);
    let r = log.read("s", 0, 1, 100, 1).unwrap();
    assert_eq!(r.len(), 1);
    let r = log.read("s", 0, 1, 100, 1000).unwrap();
    assert_eq!(r.len(), 2);
}

#[test]
fn topics_errors_and_lock() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    log.create_topic("s", 2).unwrap();
    log.create_topic("s", 2).unwrap();
    assert!(matches!(
        log.create_topic("s", 3),
        Err(Error::TopicMismatch { .. })
    ));
    assert!(matches!(
        log.create_topic("../x", 1),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        log.append("nope", 0, &[b"a"]),
        Err(Error::UnknownTopic(_))
    ));
    assert!(matches!(
        log.append("s", 2, &[b"a"]),
        Err(Error::UnknownPartition { .. })
    ));
    let big = vec![0u8; 20 << 20];
    assert!(matches!(
        log.append("s", 0, &[&big]),
        Err(Error::BatchTooLarge { .. })
    ));
    assert!(matches!(
        Log::open(dir.path(), small_config()),
        Err(Error::Locked(_))
    ));
    let e = log.append("s", 0, &[]).unwrap();
    assert_eq!((e.first_offset, e.end_offset), (0, 0));
    drop(log);
    Log::open(dir.path(), small_config()).unwrap();
}

#[test]
fn group_commit_concurrent_appenders_dense_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncPolicy::Always,
        segment_bytes: 64 << 10,
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open(dir.path(), cfg).unwrap());
    log.create_topic("s", 1).unwrap();
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut acks = Vec::new();
                for i in 0..60u64 {
                    let rec = format!("t{t}-{i}");
                    let a = log.append("s", 0, &[rec.as_bytes(), b"pad"]).unwrap();
                    // Acknowledged means durable.
                    assert!(log.durable_offset("s", 0).unwrap() >= a.end_offset);
                    acks.push((a.first_offset, rec));
                }
                acks
            })
        })
        .collect();
    let mut acks: Vec<(u64, String)> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    acks.sort();
    assert_eq!(acks.len(), 360);
    let recs = log.read("s", 0, 0, 10_000, usize::MAX).unwrap();
    assert_eq!(recs.len(), 720);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
    }
    for (first, rec) in acks {
        assert_eq!(&recs[first as usize].payload[..], rec.as_bytes());
        assert_eq!(&recs[first as usize + 1].payload[..], b"pad");
    }
}

#[test]
fn interval_policy_syncs_in_background_and_durable_visibility() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncPolicy::Interval(Duration::from_millis(20)),
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    log.create_topic("s", 1).unwrap();
    let a = log.append("s", 0, &[b"a", b"b"]).unwrap();
    assert_eq!(log.end_offset("s", 0).unwrap(), 2);
    // The background fsync makes it durable and therefore readable.
    assert!(log
        .wait_for("s", 0, a.end_offset - 1, Duration::from_secs(5))
        .unwrap());
    assert!(log.durable_offset("s", 0).unwrap() >= 2);
    assert_eq!(log.read("s", 0, 0, 10, 100).unwrap().len(), 2);
}

#[test]
fn durable_visibility_hides_unsynced_records() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncPolicy::Always,
        visibility: Visibility::Durable,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    log.create_topic("s", 1).unwrap();
    let a = log.append_nowait("s", 0, &[b"a"]).unwrap();
    assert!(!a.durable);
    // Readers never see past the durable watermark (a background safety fsync may
    // advance it at any time, so measure it after the read).
    let seen = log.read("s", 0, 0, 10, 100).unwrap().len() as u64;
    assert!(seen <= log.durable_offset("s", 0).unwrap());
    log.wait_durable("s", 0, a.end_offset).unwrap();
    assert_eq!(log.read("s", 0, 0, 10, 100).unwrap().len(), 1);
}

#[test]
fn wait_for_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), small_config()).unwrap());
    log.create_topic("s", 1).unwrap();
    assert!(!log.wait_for("s", 0, 0, Duration::from_millis(10)).unwrap());
    let l2 = log.clone();
    let h = std::thread::spawn(move || l2.wait_for("s", 0, 0, Duration::from_secs(10)).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    log.append("s", 0, &[b"x"]).unwrap();
    assert!(h.join().unwrap());
}

#[test]
fn position_tokens_from_the_log_grow() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    log.create_topic("s", 2).unwrap();
    log.append("s", 0, &[b"a"]).unwrap();
    let p1 = log.position("s").unwrap();
    log.append("s", 1, &[b"b"]).unwrap();
    let p2 = log.position("s").unwrap();
    assert!(p2.encode() > p1.encode());
    assert!(p2.covers(&p1));
    let d = Position::decode(&p2.encode()).unwrap();
    assert_eq!((d.get("s", 0), d.get("s", 1)), (Some(1), Some(1)));
}

#[test]
fn group_commit_shares_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncPolicy::Always,
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open(dir.path(), cfg).unwrap());
    log.create_topic("s", 1).unwrap();
    let hs: Vec<_> = (0..16)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    log.append("s", 0, &[b"e"]).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let st = &log.stats()[0];
    assert_eq!(st.appended_batches, 800);
    assert_eq!(st.appended_records, 800);
    assert_eq!((st.end_offset, st.durable_offset), (800, 800));
    // Every append waited for an fsync, but concurrent ones shared them.
    assert!(st.fsyncs >= 1 && st.fsyncs < 800, "fsyncs = {}", st.fsyncs);
}

#[test]
fn reads_run_concurrently_with_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), small_config()).unwrap());
    log.create_topic("s", 1).unwrap();
    const N: u64 = 6000;
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                let recs: Vec<Vec<u8>> = (i..(i + 3).min(N)).map(payload).collect();
                let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
                i = log.append("s", 0, &refs).unwrap().end_offset;
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut next = 0u64;
                while next < N {
                    if !log.wait_for("s", 0, next, Duration::from_secs(10)).unwrap() {
                        panic!("no progress at {next}");
                    }
                    for r in log.read("s", 0, next, 50, 4096).unwrap() {
                        assert_eq!(r.offset, next);
                        assert_eq!(&r.payload[..], &payload(next)[..]);
                        next += 1;
                    }
                }
                next
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        assert_eq!(r.join().unwrap(), N);
    }
    assert!(log.segment_count("s", 0).unwrap() > 10);
}

#[test]
fn append_nowait_becomes_visible_via_safety_sync() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    log.create_topic("s", 1).unwrap();
    log.append_nowait("s", 0, &[b"a"]).unwrap();
    assert!(log.wait_for("s", 0, 0, Duration::from_secs(5)).unwrap());
}

#[test]
fn statements_topic_replays_in_order_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let stmts = [
        "CREATE STREAM clicks (user STRING)",
        "CREATE RULE r AS SELECT * FROM clicks",
        "DROP RULE r",
    ];
    {
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.create_topic(weir_log::STATEMENTS_TOPIC, 1).unwrap();
        for s in stmts {
            log.append(weir_log::STATEMENTS_TOPIC, 0, &[s.as_bytes()])
                .unwrap();
        }
    }
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let replayed: Vec<String> = log
        .iter(weir_log::STATEMENTS_TOPIC, 0, 0)
        .unwrap()
        .map(|r| String::from_utf8(r.unwrap().payload.to_vec()).unwrap())
        .collect();
    assert_eq!(replayed, stmts);
    let tail: Vec<u64> = log
        .iter(weir_log::STATEMENTS_TOPIC, 0, 1)
        .unwrap()
        .map(|r| r.unwrap().offset)
        .collect();
    assert_eq!(tail, vec![1, 2]);
}

#[test]
fn iter_spans_many_chunks_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    log.create_topic("s", 1).unwrap();
    for i in 0..2500u64 {
        log.append("s", 0, &[&payload(i)]).unwrap();
    }
    let offs: Vec<u64> = log
        .iter("s", 0, 0)
        .unwrap()
        .map(|r| r.unwrap().offset)
        .collect();
    assert_eq!(offs, (0..2500).collect::<Vec<_>>());
}

#[test]
fn append_multi_spreads_one_request_over_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    log.create_topic("s", 3).unwrap();
    let a: &[&[u8]] = &[b"a1", b"a2"];
    let b: &[&[u8]] = &[b"b1"];
    let res = log.append_multi("s", &[(2, a), (0, b)]).unwrap();
    assert_eq!(res.len(), 2);
    assert_eq!((res[0].first_offset, res[0].end_offset), (0, 2));
    assert_eq!((res[1].first_offset, res[1].end_offset), (0, 1));
    assert!(log.durable_offset("s", 2).unwrap() >= 2 && log.durable_offset("s", 0).unwrap() >= 1);
    assert_eq!(&log.read("s", 2, 1, 10, 100).unwrap()[0].payload[..], b"a2");
    let pos = log.position("s").unwrap();
    assert_eq!(
        (pos.get("s", 0), pos.get("s", 1), pos.get("s", 2)),
        (Some(1), Some(0), Some(2))
    );
}

#[test]
fn delete_topic_removes_data_and_name_can_be_reused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), small_config()).unwrap();
        log.create_topic("gone", 2).unwrap();
        log.create_topic("kept", 1).unwrap();
        log.append("gone", 1, &[b"x"]).unwrap();
        log.append("kept", 0, &[b"y"]).unwrap();
        assert!(log.delete_topic("gone").unwrap());
        assert!(!log.delete_topic("gone").unwrap());
        assert!(matches!(
            log.append("gone", 0, &[b"x"]),
            Err(Error::UnknownTopic(_))
        ));
        assert!(!dir.path().join("topics/gone").exists());
        // A leftover from a crash in the middle of a delete is cleaned at open.
        std::fs::create_dir_all(dir.path().join("topics/.deleted-old-1/0")).unwrap();
    }
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.topics(), vec![("kept".to_string(), 1)]);
    assert!(!dir.path().join("topics/.deleted-old-1").exists());
    log.create_topic("gone", 1).unwrap();
    assert_eq!(log.end_offset("gone", 0).unwrap(), 0);
}

#[test]
fn a_topic_can_show_written_records_before_they_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncPolicy::Always,
        visibility: Visibility::Durable,
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open(dir.path(), cfg).unwrap());
    log.create_topic("s", 1).unwrap();
    log.create_topic("o", 1).unwrap();
    log.set_visibility("o", Visibility::Written).unwrap();
    assert!(log.set_visibility("nope", Visibility::Written).is_err());
    // A reader waiting on `o` is woken by the write itself, not by an fsync.
    let l2 = log.clone();
    let h = std::thread::spawn(move || l2.wait_for("o", 0, 0, Duration::from_secs(10)).unwrap());
    std::thread::sleep(Duration::from_millis(20));
    let a = log.append_nowait("o", 0, &[b"a", b"b"]).unwrap();
    assert_eq!(log.visible_offset("o", 0).unwrap(), a.end_offset);
    assert_eq!(log.read("o", 0, 0, 10, 100).unwrap().len(), 2);
    assert!(h.join().unwrap());
    // The other topic keeps the log's visibility.
    let b = log.append_nowait("s", 0, &[b"x"]).unwrap();
    let seen = log.read("s", 0, 0, 10, 100).unwrap().len() as u64;
    assert!(seen <= log.durable_offset("s", 0).unwrap());
    log.wait_durable("s", 0, b.end_offset).unwrap();
    // Durability of `o` still works as usual.
    log.wait_durable("o", 0, a.end_offset).unwrap();
    assert!(log.durable_offset("o", 0).unwrap() >= a.end_offset);
}

#[test]
fn wait_durable_all_covers_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncPolicy::Always,
        visibility: Visibility::Durable,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    log.create_topic("s", 3).unwrap();
    let ends: Vec<u64> = (0..3)
        .map(|p| log.append_nowait("s", p, &[b"a", b"b"]).unwrap().end_offset)
        .collect();
    log.wait_durable_all(&[("s", 0, ends[0]), ("s", 1, ends[1]), ("s", 2, ends[2])])
        .unwrap();
    for (p, end) in ends.iter().enumerate() {
        assert!(log.durable_offset("s", p as u32).unwrap() >= *end);
        assert_eq!(log.read("s", p as u32, 0, 10, 100).unwrap().len(), 2);
    }
    assert!(log.wait_durable_all(&[]).is_ok());
    assert!(log.wait_durable_all(&[("nope", 0, 1)]).is_err());
}
