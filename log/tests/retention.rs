#![allow(clippy::unwrap_used)]
mod common;

use std::time::Duration;

use common::{payload, segment_files, small_config};
use weir_log::{Error, Log, LogConfig, Retention};

fn fill(log: &Log, batches: u64) -> u64 {
    let mut n = 0;
    for _ in 0..batches {
        let recs: Vec<Vec<u8>> = (n..n + 4).map(payload).collect();
        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        n = log.append("s", 0, &refs).unwrap().end_offset;
    }
    n
}

#[test]
fn size_retention_deletes_oldest_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention: Retention {
            max_bytes: Some(12_000),
            max_age: None,
        },
        retention_check_interval: Duration::from_secs(3600),
        ..small_config()
    };
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    log.create_topic("s", 1).unwrap();
    let n = fill(&log, 300);
    let before = log.segment_count("s", 0).unwrap();
    assert!(before > 6);
    let deleted = log.apply_retention().unwrap();
    assert!(deleted > 0);
    assert_eq!(log.segment_count("s", 0).unwrap(), before - deleted);
    let files = segment_files(dir.path(), "s", 0);
    assert_eq!(files.len(), before - deleted);
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(total >= 12_000, "keeps at least max_bytes: {total}");
    assert!(
        total < 12_000 + 4096 + 1024,
        "deletes down to about max_bytes: {total}"
    );
    let start = log.start_offset("s", 0).unwrap();
    assert!(start > 0);
    // Below the start: a clear error naming the earliest retained offset.
    match log.read("s", 0, 0, 10, 1 << 20) {
        Err(e @ Error::OffsetTruncated { earliest, .. }) => {
            assert_eq!(earliest, start);
            assert!(e
                .to_string()
                .contains(&format!("earliest retained offset is {start}")));
        }
        other => panic!("expected OffsetTruncated, got {other:?}"),
    }
    // From the start on, everything is intact.
    let recs = log.read("s", 0, start, usize::MAX, usize::MAX).unwrap();
    assert_eq!(recs.len() as u64, n - start);
    for r in &recs {
        assert_eq!(&r.payload[..], &payload(r.offset)[..]);
    }
    drop(log);
    // Survives reopen: start offset comes from the first file name.
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(log.start_offset("s", 0).unwrap(), start);
    assert_eq!(log.end_offset("s", 0).unwrap(), n);
}

#[test]
fn time_retention_uses_newest_record_and_spares_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention: Retention {
            max_bytes: None,
            max_age: Some(Duration::from_secs(60)),
        },
        retention_check_interval: Duration::from_secs(3600),
        ..small_config()
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    log.create_topic("s", 1).unwrap();
    let n = fill(&log, 100);
    let segs = log.segment_count("s", 0).unwrap();
    assert!(segs > 2);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Nothing is old yet.
    assert_eq!(log.apply_retention_at(now).unwrap(), 0);
    // Two minutes later every sealed segment is expired; the active one stays.
    assert_eq!(log.apply_retention_at(now + 120_000).unwrap(), segs - 1);
    assert_eq!(log.segment_count("s", 0).unwrap(), 1);
    let start = log.start_offset("s", 0).unwrap();
    assert_eq!(
        log.read("s", 0, start, usize::MAX, usize::MAX)
            .unwrap()
            .len() as u64,
        n - start
    );
    assert_eq!(log.append("s", 0, &[b"x"]).unwrap().first_offset, n);
}

#[test]
fn background_thread_applies_retention() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention: Retention {
            max_bytes: Some(5000),
            max_age: None,
        },
        retention_check_interval: Duration::from_millis(20),
        ..small_config()
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    log.create_topic("s", 1).unwrap();
    fill(&log, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.start_offset("s", 0).unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "retention never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        segment_max_age: Some(Duration::from_millis(1)),
        ..small_config()
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    log.create_topic("s", 1).unwrap();
    log.append("s", 0, &[b"a"]).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    log.append("s", 0, &[b"b"]).unwrap();
    assert_eq!(log.segment_count("s", 0).unwrap(), 2);
}

#[test]
fn per_topic_retention_keeps_statements_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention: Retention {
            max_bytes: Some(5000),
            max_age: Some(Duration::from_secs(60)),
        },
        retention_check_interval: Duration::from_secs(3600),
        ..small_config()
    };
    let big = vec![1u8; 900];
    {
        let log = Log::open(dir.path(), cfg.clone()).unwrap();
        log.create_topic("s", 1).unwrap();
        log.create_topic_with_retention(weir_log::STATEMENTS_TOPIC, 1, Retention::default())
            .unwrap();
        log.create_topic_with_retention(
            "short",
            1,
            Retention {
                max_bytes: Some(2000),
                max_age: None,
            },
        )
        .unwrap();
        for _ in 0..60 {
            for t in ["s", weir_log::STATEMENTS_TOPIC, "short"] {
                log.append(t, 0, &[&big]).unwrap();
            }
        }
    }
    // Reopen: the per-topic retention comes back from topic.meta.
    let log = Log::open(dir.path(), cfg).unwrap();
    log.apply_retention_at(i64::MAX / 2).unwrap();
    assert_eq!(log.start_offset(weir_log::STATEMENTS_TOPIC, 0).unwrap(), 0);
    assert_eq!(
        log.iter(weir_log::STATEMENTS_TOPIC, 0, 0).unwrap().count(),
        60
    );
    // The default topic lost everything but its active segment (age), "short" too.
    assert!(log.start_offset("s", 0).unwrap() > 0);
    assert_eq!(log.segment_count("s", 0).unwrap(), 1);
    let short_bytes: u64 = segment_files(dir.path(), "short", 0)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        (2000..2000 + 4096 + 1024).contains(&short_bytes),
        "{short_bytes}"
    );
}

#[test]
fn the_statements_topic_is_never_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention: Retention {
            max_bytes: Some(2_000),
            max_age: Some(Duration::from_millis(1)),
        },
        retention_check_interval: Duration::from_secs(3600),
        ..small_config()
    };
    for reopen in [false, true] {
        let log = Log::open(dir.path(), cfg.clone()).unwrap();
        log.create_topic(weir_log::STATEMENTS_TOPIC, 1).unwrap();
        log.create_topic("s", 1).unwrap();
        for i in 0..200u64 {
            let p = payload(i);
            log.append(weir_log::STATEMENTS_TOPIC, 0, &[&p]).unwrap();
            log.append("s", 0, &[&p]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(log.apply_retention().unwrap() > 0, "reopen {reopen}");
        assert!(log.start_offset("s", 0).unwrap() > 0);
        assert_eq!(log.start_offset(weir_log::STATEMENTS_TOPIC, 0).unwrap(), 0);
        assert!(log.segment_count(weir_log::STATEMENTS_TOPIC, 0).unwrap() > 1);
    }
}
