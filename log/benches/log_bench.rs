//! Log benchmarks: append throughput of 100-byte events under each fsync policy, read
//! throughput, and recovery time per GB. Run: `cargo bench -p weir-log`.
//! Env: WEIR_BENCH_EVENTS (default 2,000,000), WEIR_BENCH_RECOVERY_MB (default 1024).

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_log::{FsyncPolicy, Log, LogConfig, Verify};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn event(i: u64) -> [u8; 100] {
    let mut e = [b'x'; 100];
    let s = format!(
        "{{\"id\":{i},\"user\":\"u{}\",\"amount\":{}}}",
        i % 1000,
        i % 97
    );
    e[..s.len()].copy_from_slice(s.as_bytes());
    e
}

fn bench_dir() -> tempfile::TempDir {
    // Next to the target directory (same disk as real data), not tmpfs.
    let base =
        std::env::var("WEIR_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").into());
    std::fs::create_dir_all(&base).expect("bench dir");
    tempfile::tempdir_in(base).expect("tempdir")
}

/// Appends `events` 100-byte events in batches of `batch` from `threads` threads, all to
/// partition 0 of one topic; returns events/s.
fn append(policy: FsyncPolicy, batch: usize, threads: usize, events: u64) -> f64 {
    append_parts(policy, batch, threads, 1, events)
}

/// Like `append`, thread `t` writing to partition `t % partitions`.
fn append_parts(
    policy: FsyncPolicy,
    batch: usize,
    threads: usize,
    partitions: u32,
    events: u64,
) -> f64 {
    let dir = bench_dir();
    let cfg = LogConfig {
        fsync: policy,
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open(dir.path(), cfg).expect("open"));
    log.create_topic("bench", partitions).expect("topic");
    let per_thread = events / threads as u64;
    let start = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let evs: Vec<[u8; 100]> = (0..batch as u64).map(|i| event(i + t as u64)).collect();
                let refs: Vec<&[u8]> = evs.iter().map(|e| &e[..]).collect();
                let mut done = 0;
                while done < per_thread {
                    log.append("bench", t as u32 % partitions, &refs)
                        .expect("append");
                    done += batch as u64;
                }
                done
            })
        })
        .collect();
    let total: u64 = hs.into_iter().map(|h| h.join().expect("thread")).sum();
    let el = start.elapsed();
    total as f64 / el.as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events = env_u64("WEIR_BENCH_EVENTS", 2_000_000);
    println!("weir-log benchmarks ({events} events of 100 bytes)");
    println!("| case | events/s | MB/s of payload |");
    println!("|---|---:|---:|");
    let row = |name: &str, eps: f64| {
        println!("| {name} | {:.0} | {:.1} |", eps, eps * 100.0 / 1e6);
    };
    row(
        "never, batch 1000, 1 thread",
        append(FsyncPolicy::Never, 1000, 1, events),
    );
    row(
        "never, batch 100, 1 thread",
        append(FsyncPolicy::Never, 100, 1, events),
    );
    row(
        "interval 5 ms, batch 1000, 1 thread",
        append(
            FsyncPolicy::Interval(Duration::from_millis(5)),
            1000,
            1,
            events,
        ),
    );
    row(
        "always, batch 1000, 1 thread",
        append(FsyncPolicy::Always, 1000, 1, events / 2),
    );
    row(
        "always, batch 1000, 4 threads (group commit)",
        append(FsyncPolicy::Always, 1000, 4, events / 2),
    );
    row(
        "always, batch 100, 1 thread",
        append(FsyncPolicy::Always, 100, 1, events / 20),
    );
    row(
        "always, batch 100, 8 threads (group commit)",
        append(FsyncPolicy::Always, 100, 8, events / 10),
    );
    row(
        "always, batch 100, 8 threads over 4 partitions",
        append_parts(FsyncPolicy::Always, 100, 8, 4, events / 10),
    );
    row(
        "always, batch 1, 1 thread",
        append(FsyncPolicy::Always, 1, 1, 2_000),
    );
    row(
        "always, batch 1, 16 threads (group commit)",
        append(FsyncPolicy::Always, 1, 16, 16_000),
    );

    // Read throughput.
    {
        let dir = bench_dir();
        let cfg = LogConfig {
            fsync: FsyncPolicy::Never,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), cfg).expect("open");
        log.create_topic("bench", 1).expect("topic");
        let evs: Vec<[u8; 100]> = (0..1000).map(event).collect();
        let refs: Vec<&[u8]> = evs.iter().map(|e| &e[..]).collect();
        for _ in 0..events / 1000 {
            log.append("bench", 0, &refs).expect("append");
        }
        let start = Instant::now();
        let mut from = 0;
        let mut n = 0u64;
        loop {
            let recs = log.read("bench", 0, from, 10_000, 4 << 20).expect("read");
            let Some(last) = recs.last() else { break };
            from = last.offset + 1;
            n += recs.len() as u64;
        }
        assert_eq!(n, events / 1000 * 1000);
        row(
            "read, 10k records per call",
            n as f64 / start.elapsed().as_secs_f64(),
        );
    }

    // Recovery time per GB.
    let mb = env_u64("WEIR_BENCH_RECOVERY_MB", 1024);
    let dir = bench_dir();
    let bytes = {
        let cfg = LogConfig {
            fsync: FsyncPolicy::Never,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), cfg).expect("open");
        log.create_topic("bench", 1).expect("topic");
        let evs: Vec<[u8; 100]> = (0..1000).map(event).collect();
        let refs: Vec<&[u8]> = evs.iter().map(|e| &e[..]).collect();
        let per_batch =
            weir_log::BATCH_HEADER as u64 + 1000 * (weir_log::RECORD_HEADER as u64 + 100);
        let batches = (mb << 20) / per_batch;
        for _ in 0..batches {
            log.append("bench", 0, &refs).expect("append");
        }
        log.sync().expect("sync");
        batches * per_batch
    };
    let gb = bytes as f64 / (1u64 << 30) as f64;
    let cold = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    for (name, verify) in [
        ("all segments", Verify::All),
        ("tail only (default)", Verify::Tail),
    ] {
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
        let cfg = LogConfig {
            verify,
            ..LogConfig::default()
        };
        let start = Instant::now();
        let log = Log::open(dir.path(), cfg).expect("reopen");
        let el = start.elapsed();
        drop(log);
        println!(
            "recovery, verify {name}: {:.3} s for {:.2} GB = {:.3} s/GB ({} page cache)",
            el.as_secs_f64(),
            gb,
            el.as_secs_f64() / gb,
            if cold { "cold" } else { "warm" }
        );
    }
}
