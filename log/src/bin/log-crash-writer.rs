//! Test helper for the crash test (`tests/crash.rs`): appends to the log in `<dir>`
//! continuously with `fsync = always` from several threads and prints one line per
//! acknowledged append:
//!
//! `ack <partition> <first offset> <count> <run> <thread> <seq>`
//!
//! The payload of record `i` of that append is [`payload`]`(run, thread, seq, i)`, so
//! the test can check every acknowledged record after SIGKILLing this process.
//! A fifth thread writes checkpoints named `writer` to `<dir>/checkpoints` (data =
//! `checkpoint_data(seq)`) and prints `ckpt <seq>` after each.
//! Usage: `log-crash-writer <dir> <run> [seconds] [always|interval]`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_log::{CheckpointStore, FsyncPolicy, Log, LogConfig};

/// Checkpoint data the crash test expects for checkpoint `seq`.
fn checkpoint_data(seq: u64) -> Vec<u8> {
    (0..65_536u64).map(|k| (k * 31 + seq) as u8).collect()
}

/// The payload the crash test expects (kept in sync with `tests/crash.rs`).
fn payload(run: u64, thread: u64, seq: u64, i: u64) -> Vec<u8> {
    let mut v = format!("r{run}-t{thread}-s{seq}-i{i}-").into_bytes();
    // Every 50th append is a big batch (~800 KB), so kills can land mid-write.
    let fill = if seq % 50 == 49 {
        4000
    } else {
        ((seq * 7 + i * 3) % 120) as usize
    };
    v.extend((0..fill).map(|k| b'a' + ((k as u64 + seq + i) % 26) as u8));
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: log-crash-writer <dir> <run> [seconds] [always|interval]");
        std::process::exit(2);
    }
    let run: u64 = args[2].parse().unwrap_or(0);
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(60);
    let fsync = match args.get(4).map(String::as_str) {
        Some("interval") => FsyncPolicy::Interval(Duration::from_millis(50)),
        _ => FsyncPolicy::Always,
    };
    let cfg = LogConfig {
        fsync,
        segment_bytes: 256 << 10,
        ..LogConfig::default()
    };
    let log = match Log::open(&args[1], cfg) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = log.create_topic("events", 2) {
        eprintln!("create_topic failed: {e}");
        std::process::exit(1);
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let p = (t % 2) as u32;
                let mut seq = 0u64;
                while Instant::now() < deadline {
                    let count = if seq % 50 == 49 { 200 } else { 1 + seq % 16 };
                    let recs: Vec<Vec<u8>> = (0..count).map(|i| payload(run, t, seq, i)).collect();
                    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
                    match log.append("events", p, &refs) {
                        Ok(a) => {
                            let mut out = std::io::stdout().lock();
                            let line =
                                format!("ack {p} {} {count} {run} {t} {seq}\n", a.first_offset);
                            if out
                                .write_all(line.as_bytes())
                                .and_then(|_| out.flush())
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            eprintln!("append failed: {e}");
                            std::process::exit(1);
                        }
                    }
                    seq += 1;
                }
            })
        })
        .collect();
    let ckpt = {
        let log = log.clone();
        std::thread::spawn(move || {
            let store = match CheckpointStore::open(
                std::path::Path::new(&args[1]).join("checkpoints"),
                3,
            ) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("checkpoint store: {e}");
                    std::process::exit(1);
                }
            };
            let mut next = match store.list("writer") {
                Ok(l) => l.last().map_or(1, |s| s + 1),
                Err(e) => {
                    eprintln!("checkpoint list: {e}");
                    std::process::exit(1);
                }
            };
            while Instant::now() < deadline {
                let covered = match log.position("events") {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("position: {e}");
                        std::process::exit(1);
                    }
                };
                match store.write_checkpoint("writer", &covered, &checkpoint_data(next)) {
                    Ok(seq) if seq == next => {
                        let mut out = std::io::stdout().lock();
                        let line = format!("ckpt {seq}\n");
                        if out
                            .write_all(line.as_bytes())
                            .and_then(|_| out.flush())
                            .is_err()
                        {
                            return;
                        }
                        next += 1;
                    }
                    Ok(seq) => {
                        eprintln!("checkpoint got seq {seq}, expected {next}");
                        std::process::exit(1);
                    }
                    Err(e) => {
                        eprintln!("checkpoint failed: {e}");
                        std::process::exit(1);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let _ = ckpt.join();
    for t in threads {
        let _ = t.join();
    }
}
