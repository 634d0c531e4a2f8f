#![allow(clippy::unwrap_used)]
//! Torn and corrupt data at the tail is detected and cut on open, never served; earlier
//! records stay intact; a deleted index is rebuilt; corruption in older segments is
//! never served either.
mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use common::{index_files, payload, segment_files, small_config};
use weir_log::{Error, Log, LogConfig, Verify, BATCH_HEADER, RECORD_HEADER};

/// Writes `batches` batches of 3 records each to s/0; returns the byte size of each
/// batch in the tail segment, in order, and the total records.
fn fill(dir: &Path, batches: u64) -> u64 {
    let log = Log::open(dir, small_config()).unwrap();
    log.create_topic("s", 1).unwrap();
    let mut n = 0;
    for _ in 0..batches {
        let recs: Vec<Vec<u8>> = (n..n + 3).map(payload).collect();
        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        n = log.append("s", 0, &refs).unwrap().end_offset;
    }
    n
}

/// Byte positions of the batches in a segment (by walking the headers).
fn batch_starts(seg: &Path) -> Vec<(u64, u64)> {
    let b = std::fs::read(seg).unwrap();
    let mut at = 0usize;
    let mut out = Vec::new();
    while at + BATCH_HEADER <= b.len() {
        let body = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        let base = u64::from_le_bytes(b[at + 8..at + 16].try_into().unwrap());
        out.push((at as u64, base));
        at += BATCH_HEADER + body;
    }
    out
}

fn assert_intact(log: &Log, end: u64) {
    assert_eq!(log.end_offset("s", 0).unwrap(), end);
    let recs = log.read("s", 0, 0, usize::MAX, usize::MAX).unwrap();
    assert_eq!(recs.len() as u64, end);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(&r.payload[..], &payload(i as u64)[..]);
    }
}

fn reopen_and_check_cut(dir: &Path, expect_end: u64, expect_pos: u64) {
    let log = Log::open(dir, small_config()).unwrap();
    let rep = log.recovery_report();
    assert_eq!(rep[0].cuts.len(), 1, "{rep:?}");
    assert_eq!(rep[0].cuts[0].position, expect_pos);
    assert_intact(&log, expect_end);
    // The log continues densely after the cut.
    let a = log.append("s", 0, &[b"next"]).unwrap();
    assert_eq!(a.first_offset, expect_end);
    drop(log);
    let log = Log::open(dir, small_config()).unwrap();
    assert!(log.recovery_report()[0].cuts.is_empty());
    assert_eq!(log.end_offset("s", 0).unwrap(), expect_end + 1);
}

#[test]
fn truncated_mid_record_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let n = fill(dir.path(), 40);
    let segs = segment_files(dir.path(), "s", 0);
    let tail = segs.last().unwrap();
    let starts = batch_starts(tail);
    let (last_pos, last_base) = *starts.last().unwrap();
    assert_eq!(last_base, n - 3);
    let len = std::fs::metadata(tail).unwrap().len();
    // Cut inside the second record of the last batch.
    let cut = last_pos + (BATCH_HEADER + RECORD_HEADER + 10) as u64;
    assert!(cut < len);
    OpenOptions::new()
        .write(true)
        .open(tail)
        .unwrap()
        .set_len(cut)
        .unwrap();
    reopen_and_check_cut(dir.path(), n - 3, last_pos);
}

#[test]
fn truncated_inside_batch_header_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let n = fill(dir.path(), 40);
    let tail = segment_files(dir.path(), "s", 0).pop().unwrap();
    let (last_pos, _) = *batch_starts(&tail).last().unwrap();
    OpenOptions::new()
        .write(true)
        .open(&tail)
        .unwrap()
        .set_len(last_pos + 5)
        .unwrap();
    reopen_and_check_cut(dir.path(), n - 3, last_pos);
}

#[test]
fn flipped_byte_inside_a_record_cuts_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let n = fill(dir.path(), 40);
    let tail = segment_files(dir.path(), "s", 0).pop().unwrap();
    let starts = batch_starts(&tail);
    assert!(starts.len() >= 3);
    // Corrupt the payload of a record in the second-to-last batch.
    let (pos, base) = starts[starts.len() - 2];
    let mut b = std::fs::read(&tail).unwrap();
    b[pos as usize + BATCH_HEADER + RECORD_HEADER + 2] ^= 0x40;
    std::fs::write(&tail, &b).unwrap();
    // Everything from that batch on is cut (the log stays dense).
    reopen_and_check_cut(dir.path(), base, pos);
    let _ = n;
}

#[test]
fn zero_filled_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let n = fill(dir.path(), 40);
    let tail = segment_files(dir.path(), "s", 0).pop().unwrap();
    let len = std::fs::metadata(&tail).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&tail).unwrap();
    f.write_all(&[0u8; 3000]).unwrap();
    drop(f);
    reopen_and_check_cut(dir.path(), n, len);
}

#[test]
fn garbage_after_a_valid_batch_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let n = fill(dir.path(), 10);
    let tail = segment_files(dir.path(), "s", 0).pop().unwrap();
    let len = std::fs::metadata(&tail).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&tail).unwrap();
    // A plausible header (right magic, right offset) whose body never arrived.
    let mut h = Vec::new();
    h.extend_from_slice(b"WLB1");
    h.extend_from_slice(&1000u32.to_le_bytes());
    h.extend_from_slice(&n.to_le_bytes());
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&[0u8; 12]);
    h.extend_from_slice(&[0xabu8; 200]);
    f.write_all(&h).unwrap();
    drop(f);
    reopen_and_check_cut(dir.path(), n, len);
}

#[test]
fn deleted_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let n = fill(dir.path(), 200);
    let idx = index_files(dir.path(), "s", 0);
    assert!(idx.len() > 2);
    let sizes: Vec<u64> = idx
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    assert!(sizes.iter().any(|&s| s > 0), "index should have entries");
    for p in &idx {
        std::fs::remove_file(p).unwrap();
    }
    // A garbage index for one segment is also rejected and rebuilt.
    std::fs::write(&idx[0], b"garbage!garbage!").unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert!(log.recovery_report()[0].cuts.is_empty());
    assert_intact(&log, n);
    for from in (0..n).step_by(17) {
        assert_eq!(log.read("s", 0, from, 1, 1 << 20).unwrap()[0].offset, from);
    }
    let rebuilt: Vec<u64> = idx
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    assert_eq!(rebuilt, sizes);
}

#[test]
fn corruption_in_an_older_segment_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let n = fill(dir.path(), 200);
    let segs = segment_files(dir.path(), "s", 0);
    assert!(segs.len() > 3);
    let victim = &segs[1];
    let starts = batch_starts(victim);
    let (pos, base) = starts[1];
    let mut b = std::fs::read(victim).unwrap();
    b[pos as usize + BATCH_HEADER + RECORD_HEADER + 1] ^= 0x01;
    std::fs::write(victim, &b).unwrap();
    {
        // Default (tail) verification does not scan it at open, but a read does.
        let log = Log::open(dir.path(), small_config()).unwrap();
        assert_eq!(log.end_offset("s", 0).unwrap(), n);
        let err = log.read("s", 0, base, 10, 1 << 20).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        // Records before the corrupt batch are still served.
        assert_eq!(
            log.read("s", 0, 0, base as usize, usize::MAX)
                .unwrap()
                .len() as u64,
            base
        );
    }
    // Full verification cuts there and drops the segments after it (the log stays dense).
    let cfg = LogConfig {
        verify: Verify::All,
        ..small_config()
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    let rep = &log.recovery_report()[0];
    assert_eq!(rep.cuts.len(), 1);
    assert_eq!(rep.cuts[0].position, pos);
    assert_eq!(rep.cuts[0].deleted_segments.len(), segs.len() - 2);
    assert_intact(&log, base);
    assert_eq!(segment_files(dir.path(), "s", 0).len(), 2);
}

#[test]
fn missing_middle_segment_keeps_log_dense() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 200);
    let segs = segment_files(dir.path(), "s", 0);
    assert!(segs.len() > 3);
    let third_base: u64 = segs[2]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    std::fs::remove_file(&segs[2]).unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let rep = &log.recovery_report()[0];
    assert_eq!(rep.cuts.len(), 1);
    assert_intact(&log, third_base);
}

#[test]
fn empty_tail_segment_file_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let n = fill(dir.path(), 10);
    // A crash right after a roll leaves an empty next segment.
    let d = dir.path().join("topics/s/0");
    std::fs::write(d.join(format!("{n:020}.log")), b"").unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert!(log.recovery_report()[0].cuts.is_empty());
    assert_intact(&log, n);
    assert_eq!(log.append("s", 0, &[b"x"]).unwrap().first_offset, n);
}

#[test]
fn stale_index_pointing_inside_a_batch_does_not_cut_good_data() {
    let dir = tempfile::tempdir().unwrap();
    let n = fill(dir.path(), 200);
    let idx = index_files(dir.path(), "s", 0);
    // Point the last entry of the first segment's index into the middle of a batch.
    let mut b = std::fs::read(&idx[0]).unwrap();
    assert!(b.len() >= 16);
    let k = b.len() - 8;
    let pos = u32::from_le_bytes(b[k + 4..k + 8].try_into().unwrap()) + 3;
    b[k + 4..k + 8].copy_from_slice(&pos.to_le_bytes());
    std::fs::write(&idx[0], &b).unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert!(log.recovery_report()[0].cuts.is_empty());
    assert_intact(&log, n);
}

#[test]
fn lowering_max_batch_bytes_keeps_existing_big_batches() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![5u8; 100_000];
    {
        let log = Log::open(dir.path(), small_config()).unwrap();
        log.create_topic("s", 1).unwrap();
        log.append("s", 0, &[&big, &big]).unwrap();
    }
    let cfg = LogConfig {
        max_batch_bytes: 4096,
        verify: Verify::All,
        ..small_config()
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    assert!(log.recovery_report()[0].cuts.is_empty());
    assert_eq!(
        log.read("s", 0, 1, 10, usize::MAX).unwrap()[0]
            .payload
            .len(),
        100_000
    );
    assert!(matches!(
        log.append("s", 0, &[&big]),
        Err(Error::BatchTooLarge { .. })
    ));
}

#[test]
fn sealed_segments_have_complete_indexes_and_stray_temp_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: weir_log::FsyncPolicy::Always,
        ..small_config()
    };
    {
        let log = Log::open(dir.path(), cfg.clone()).unwrap();
        log.create_topic("s", 1).unwrap();
        for i in 0..300u64 {
            log.append("s", 0, &[&payload(i)]).unwrap();
        }
    }
    let idx = index_files(dir.path(), "s", 0);
    let segs = segment_files(dir.path(), "s", 0);
    assert_eq!(idx.len(), segs.len());
    // Every sealed segment's index matches what a rebuild produces.
    let sealed: Vec<Vec<u8>> = idx[..idx.len() - 1]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(sealed.iter().all(|b| !b.is_empty()));
    let stray = dir.path().join("topics/s/0/00000000000000000000.idx.tmp");
    std::fs::write(&stray, b"junk").unwrap();
    for p in &idx {
        std::fs::remove_file(p).unwrap();
    }
    let log = Log::open(
        dir.path(),
        LogConfig {
            verify: Verify::All,
            ..cfg
        },
    )
    .unwrap();
    assert!(!stray.exists());
    let rebuilt: Vec<Vec<u8>> = idx[..idx.len() - 1]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(rebuilt, sealed);
    assert_eq!(log.end_offset("s", 0).unwrap(), 300);
}

/// Issue 19, item 7: one flipped byte mid-segment cut the whole tail after it, and the
/// bytes were gone. They are kept in `quarantine/` (byte for byte) and reported.
#[test]
fn flipped_byte_mid_segment_keeps_the_cut_tail_in_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 40);
    let tail = segment_files(dir.path(), "s", 0).pop().unwrap();
    let starts = batch_starts(&tail);
    assert!(starts.len() >= 4);
    let (pos, base) = starts[starts.len() / 2];
    let mut b = std::fs::read(&tail).unwrap();
    b[pos as usize + BATCH_HEADER + RECORD_HEADER + 2] ^= 0x40;
    std::fs::write(&tail, &b).unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let rep = &log.recovery_report()[0];
    assert_eq!(rep.cuts.len(), 1, "{rep:?}");
    let cut = &rep.cuts[0];
    assert_eq!(cut.position, pos);
    assert_eq!(cut.quarantined.len(), 1, "{cut:?}");
    assert_eq!(rep.quarantined_bytes, cut.bytes_removed);
    let kept = std::fs::read(&cut.quarantined[0]).unwrap();
    assert_eq!(kept, b[pos as usize..], "the cut bytes, as they were");
    assert!(cut.quarantined[0]
        .parent()
        .unwrap()
        .ends_with(weir_log::QUARANTINE_DIR));
    assert_intact(&log, base);
    drop(log);
    // A second cut at the same place does not overwrite the first quarantine file.
    let mut b = std::fs::read(&tail).unwrap();
    let n = b.len();
    b.extend_from_slice(&[0xAB; 40]);
    std::fs::write(&tail, &b).unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let rep = &log.recovery_report()[0];
    assert_eq!(rep.cuts[0].position, n as u64);
    assert_ne!(rep.cuts[0].quarantined[0], cut.quarantined[0]);
    assert_eq!(std::fs::read(&cut.quarantined[0]).unwrap(), kept);
    assert_eq!(
        std::fs::read(&rep.cuts[0].quarantined[0]).unwrap(),
        [0xAB; 40]
    );
}

/// Segments dropped after a cut in an older segment are moved to quarantine whole.
#[test]
fn segments_after_a_cut_are_kept_in_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 200);
    let segs = segment_files(dir.path(), "s", 0);
    assert!(segs.len() > 3);
    let originals: Vec<Vec<u8>> = segs[2..]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let victim = &segs[1];
    let (pos, _) = batch_starts(victim)[1];
    let mut b = std::fs::read(victim).unwrap();
    b[pos as usize + BATCH_HEADER + RECORD_HEADER + 1] ^= 0x01;
    std::fs::write(victim, &b).unwrap();
    let cfg = LogConfig {
        verify: Verify::All,
        ..small_config()
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    let rep = &log.recovery_report()[0];
    let cut = &rep.cuts[0];
    // The cut tail of the damaged segment, then every later segment.
    assert_eq!(cut.quarantined.len(), 1 + originals.len(), "{cut:?}");
    assert_eq!(
        std::fs::read(&cut.quarantined[0]).unwrap(),
        b[pos as usize..]
    );
    for (q, orig) in cut.quarantined[1..].iter().zip(&originals) {
        assert_eq!(&std::fs::read(q).unwrap(), orig);
    }
    let total: u64 = originals.iter().map(|o| o.len() as u64).sum::<u64>() + cut.bytes_removed;
    assert_eq!(rep.quarantined_bytes, total);
}
