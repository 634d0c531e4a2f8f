#![allow(clippy::unwrap_used)]
//! Crash test: a child process appends with fsync=always and prints every acknowledged
//! append; we SIGKILL it at random moments, reopen, and check that every acknowledged
//! record is present and intact and that offsets are dense. A few rounds by default,
//! 25 with WEIR_LONG_TESTS=1.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weir_log::{CheckpointStore, Log, LogConfig};

fn checkpoint_data(seq: u64) -> Vec<u8> {
    (0..65_536u64).map(|k| (k * 31 + seq) as u8).collect()
}

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

struct Ack {
    partition: u32,
    first: u64,
    count: u64,
    run: u64,
    thread: u64,
    seq: u64,
}

fn parse_ack(line: &str) -> Ack {
    let f: Vec<u64> = line
        .trim_end()
        .strip_prefix("ack ")
        .unwrap()
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    Ack {
        partition: f[0] as u32,
        first: f[1],
        count: f[2],
        run: f[3],
        thread: f[4],
        seq: f[5],
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_loses_no_acknowledged_record() {
    let rounds = if std::env::var("WEIR_LONG_TESTS").is_ok() {
        25
    } else {
        4
    };
    crash_rounds("always", rounds);
}

/// Under `interval` a process crash (as opposed to a power loss) loses nothing either:
/// acknowledged writes are in the page cache, which survives the process.
#[test]
fn sigkill_with_interval_policy_loses_no_acknowledged_record() {
    let rounds = if std::env::var("WEIR_LONG_TESTS").is_ok() {
        10
    } else {
        2
    };
    crash_rounds("interval", rounds);
}

fn crash_rounds(policy: &str, rounds: u64) {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let mut all_acks: Vec<Ack> = Vec::new();
    let mut total_cuts = 0;
    let mut last_ckpt_all_rounds: Option<u64> = None;
    for run in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_log-crash-writer"))
            .arg(dir.path())
            .arg(run.to_string())
            .arg("60")
            .arg(policy)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        // Usually wait for the first acknowledgement and then kill at a random moment;
        // every fourth round kill within the first milliseconds instead, which can land
        // in the middle of the writer's own recovery.
        let early = run % 4 == 3;
        let mut lines = Vec::new();
        if !early {
            let first = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("writer never acknowledged");
            lines.push(first);
        }
        let delay = Duration::from_millis(xorshift(&mut seed) % if early { 15 } else { 400 });
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if let Ok(l) = rx.recv_timeout(until - Instant::now()) {
                lines.push(l);
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        // Only complete lines are acknowledgements that reached us.
        let complete: Vec<&str> = lines
            .iter()
            .filter(|l| l.ends_with(b"\n"))
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        let acks: Vec<Ack> = complete
            .iter()
            .filter(|l| l.starts_with("ack "))
            .map(|l| parse_ack(l))
            .collect();
        let last_ckpt = complete
            .iter()
            .filter_map(|l| l.strip_prefix("ckpt "))
            .map(|s| s.trim_end().parse::<u64>().unwrap())
            .max()
            .max(last_ckpt_all_rounds);
        last_ckpt_all_rounds = last_ckpt;
        // The newest checkpoint is intact and at least as new as the last one reported.
        let store = CheckpointStore::open(dir.path().join("checkpoints"), 3).unwrap();
        if let Some(seq) = last_ckpt {
            let c = store
                .latest_checkpoint("writer")
                .unwrap()
                .expect("checkpoint lost");
            assert!(
                c.seq >= seq,
                "checkpoint {} older than acknowledged {seq}",
                c.seq
            );
            assert_eq!(c.data, checkpoint_data(c.seq));
            assert!(!c.covered.is_empty());
            assert!(store.list("writer").unwrap().len() <= 4);
        }
        assert!(early || !acks.is_empty());
        all_acks.extend(acks);

        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        total_cuts += log
            .recovery_report()
            .iter()
            .map(|r| r.cuts.len())
            .sum::<usize>();
        let mut parts = Vec::new();
        for p in 0..2u32 {
            let recs = log.read("events", p, 0, usize::MAX, usize::MAX).unwrap();
            // Dense offsets, and every record is one the writer produced.
            for (i, r) in recs.iter().enumerate() {
                assert_eq!(r.offset, i as u64, "offsets must be dense");
                assert!(r.payload.starts_with(b"r"), "garbage record at {p}/{i}");
            }
            parts.push(recs);
        }
        for a in &all_acks {
            let recs = &parts[a.partition as usize];
            for i in 0..a.count {
                let off = (a.first + i) as usize;
                assert!(
                    off < recs.len(),
                    "acknowledged record {}/{} is missing (end {})",
                    a.partition,
                    off,
                    recs.len()
                );
                assert_eq!(
                    &recs[off].payload[..],
                    &payload(a.run, a.thread, a.seq, i)[..],
                    "acknowledged record {}/{off} differs",
                    a.partition
                );
            }
        }
        eprintln!(
            "round {run} ({policy}): killed after {delay:?}, {} acks so far, last checkpoint {last_ckpt:?}, ends {}/{}",
            all_acks.len(),
            parts[0].len(),
            parts[1].len()
        );
    }
    eprintln!("recovery cuts over all rounds: {total_cuts}");
}
