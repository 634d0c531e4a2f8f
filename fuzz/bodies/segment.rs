//! Fuzz body: the segment reader. Any bytes as the tail segment of a partition: opening
//! the log (recovery) and reading it must never panic; what it serves has dense offsets
//! and survives a second open unchanged; the bytes recovery cut are kept in quarantine.
//! Shared by `fuzz/fuzz_targets/segment.rs` and the stable corpus test in `log/tests/`.

use weir_log::{FsyncPolicy, Log, LogConfig};

fn cfg() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    }
}

/// `data[0]` chooses a prefix of valid batches (0–3) written before the fuzzed bytes.
pub fn run(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let good = {
        let Ok(log) = Log::open(dir.path(), cfg()) else {
            panic!("open an empty log");
        };
        if log.create_topic("s", 1).is_err() {
            panic!("create a topic");
        }
        for i in 0..(n % 4) {
            let rec = format!("record {i}");
            if log.append("s", 0, &[rec.as_bytes()]).is_err() {
                panic!("append");
            }
        }
        log.end_offset("s", 0).unwrap_or(0)
    };
    let seg = dir.path().join("topics/s/0/00000000000000000000.log");
    let Ok(mut bytes) = std::fs::read(&seg) else {
        panic!("segment file");
    };
    let kept = bytes.len();
    bytes.extend_from_slice(rest);
    if std::fs::write(&seg, &bytes).is_err() {
        return;
    }
    let _ = std::fs::remove_file(dir.path().join("topics/s/0/00000000000000000000.idx"));
    let first = read_all(dir.path());
    // The valid prefix always survives (the fuzzed bytes may add more valid batches).
    assert!(first.len() as u64 >= good, "{} < {good}", first.len());
    for (i, (off, _)) in first.iter().enumerate() {
        assert_eq!(*off, i as u64, "offsets are dense");
    }
    assert_eq!(read_all(dir.path()), first, "a second open serves the same");
    let len = std::fs::metadata(&seg).map(|m| m.len()).unwrap_or(0) as usize;
    let quarantined: usize = std::fs::read_dir(dir.path().join("topics/s/0/quarantine"))
        .map(|d| {
            d.flatten()
                .map(|e| e.metadata().map(|m| m.len() as usize).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    assert!(len >= kept.min(len));
    assert_eq!(
        len + quarantined,
        bytes.len(),
        "every byte kept or quarantined"
    );
}

fn read_all(dir: &std::path::Path) -> Vec<(u64, Vec<u8>)> {
    let log = match Log::open(dir, cfg()) {
        Ok(l) => l,
        Err(e) => panic!("recovery refused to open: {e}"),
    };
    match log.read("s", 0, 0, usize::MAX, usize::MAX) {
        Ok(recs) => recs
            .into_iter()
            .map(|r| (r.offset, r.payload.to_vec()))
            .collect(),
        Err(e) => panic!("read after recovery: {e}"),
    }
}
