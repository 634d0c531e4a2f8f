#![allow(clippy::unwrap_used)]
//! Issue 19, item 2: a write or fsync error leaves a partition failed; once the disk
//! works again the partition reopens by itself (no restart), nothing acknowledged is
//! lost, offsets stay dense. Failures are injected with the log's test hook, and made
//! real with `chattr +i` where the machine allows it.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{payload, segment_files};
use weir_log::{Error, FsyncPolicy, Log, LogConfig};

fn cfg() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Always,
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn append_n(log: &Log, from: u64, n: u64) -> weir_log::Result<u64> {
    let recs: Vec<Vec<u8>> = (from..from + n).map(payload).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    log.append("s", 0, &refs).map(|a| a.end_offset)
}

/// Appends until one works (the partition reopened), within `limit`.
fn append_when_back(log: &Log, from: u64, n: u64, limit: Duration) -> u64 {
    let t0 = Instant::now();
    loop {
        match append_n(log, from, n) {
            Ok(end) => return end,
            Err(e) => {
                assert!(t0.elapsed() < limit, "partition never came back: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn assert_dense(log: &Log, end: u64) {
    let recs = log.read("s", 0, 0, usize::MAX, usize::MAX).unwrap();
    assert_eq!(recs.len() as u64, end);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(&r.payload[..], &payload(i as u64)[..]);
    }
}

#[test]
fn failed_fsync_partition_reopens_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), cfg()).unwrap();
    log.create_topic("s", 1).unwrap();
    let end = append_n(&log, 0, 30).unwrap();
    log.inject_failures("s", 0, 0, 1).unwrap();
    // The fsync fails: an error, and the partition stops.
    assert!(append_n(&log, end, 3).is_err());
    let failed = log.failed_partitions();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].2.contains("injected"), "{failed:?}");
    // The batch whose fsync failed reached the file: it is kept (an error is not a "no").
    let end = end + 3;
    let end = append_when_back(&log, end, 3, Duration::from_secs(5));
    assert!(log.failed_partitions().is_empty());
    assert_dense(&log, end);
    drop(log);
    let log = Log::open(dir.path(), cfg()).unwrap();
    assert!(log.recovery_report()[0].cuts.is_empty());
    assert_dense(&log, end);
}

#[test]
fn failed_partition_recovers_in_the_background_once_the_disk_does() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), cfg()).unwrap();
    log.create_topic("s", 1).unwrap();
    let end = append_n(&log, 0, 10).unwrap();
    // The fsync fails, then the disk stays bad for a while: the reopen's own writes fail
    // three more times.
    log.inject_failures("s", 0, 0, 1).unwrap();
    assert!(append_n(&log, end, 2).is_err());
    log.inject_failures("s", 0, 3, 0).unwrap();
    let err = append_n(&log, end + 2, 1).unwrap_err();
    assert!(matches!(err, Error::PartitionFailed { .. }), "{err}");
    // Nobody writes: the background thread reopens it (backoff 50 ms doubling).
    let t0 = Instant::now();
    while !log.failed_partitions().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10), "not reopened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let end = append_n(&log, end + 2, 5).unwrap();
    assert_dense(&log, end);
}

/// A real immutable file (`chattr +i`, needs root and a file system with the flag):
/// writes fail for real, and the partition comes back after `chattr -i`.
#[test]
fn immutable_segment_file_fails_writes_until_it_is_writable_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), cfg()).unwrap();
    log.create_topic("s", 1).unwrap();
    let end = append_n(&log, 0, 5).unwrap();
    let seg = segment_files(dir.path(), "s", 0).pop().unwrap();
    if !chattr(&seg, "+i") {
        eprintln!("chattr +i not available here; skipped");
        return;
    }
    let r = append_n(&log, end, 3);
    let failed = log.failed_partitions();
    assert!(chattr(&seg, "-i"));
    assert!(r.is_err());
    assert_eq!(failed.len(), 1, "{failed:?}");
    let end = append_when_back(&log, end, 3, Duration::from_secs(10));
    assert_dense(&log, end);
}

fn chattr(p: &Path, flag: &str) -> bool {
    std::process::Command::new("chattr")
        .arg(flag)
        .arg(p)
        .status()
        .is_ok_and(|s| s.success())
}
