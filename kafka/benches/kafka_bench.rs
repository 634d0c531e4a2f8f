//! Throughput through a local tansu broker on loopback: produce (idempotent producer,
//! acknowledged batches) and consume (a group member) events/s.
//!
//! `cargo bench -p weir-kafka` (needs scripts/install-tansu; prints a skip otherwise).
//! WEIR_KAFKA_BENCH_EVENTS sets the event count (default 100000). The broker runs with
//! the memory engine unless WEIR_KAFKA_BENCH_PERSISTENT=1.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_kafka::{Admin, GroupMember, KafkaConfig, NoHooks, OutRecord, Producer};

fn main() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-broker");
    let dir = tempfile::tempdir().unwrap();
    let persistent = std::env::var("WEIR_KAFKA_BENCH_PERSISTENT").is_ok_and(|v| v == "1");
    let mut start = Command::new(&script);
    start.arg("start").arg(dir.path());
    if persistent {
        start.arg("--persistent");
    }
    let out = start.output().unwrap();
    if !out.status.success() {
        eprintln!(
            "kafka_bench skipped: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let bootstrap = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let n: usize = std::env::var("WEIR_KAFKA_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let parts = 4u32;
    let mut cfg = KafkaConfig::new(&bootstrap);
    cfg.replication = 1;
    cfg.request_timeout = Duration::from_secs(30);
    Admin::new(&cfg)
        .unwrap()
        .create_topic("bench", parts, false)
        .unwrap();
    let events: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"ts":"2026-01-01T00:00:00Z","card_id":"c{}","amount":{},"merchant":"m{}"}}"#,
                i % 1000,
                i % 500,
                i % 37
            )
        })
        .collect();
    let keys: Vec<String> = (0..n).map(|i| format!("c{}", i % 1000)).collect();
    let bytes: usize = events.iter().map(String::len).sum();

    let p = Producer::idempotent(&cfg).unwrap();
    for batch in [1000usize, 100] {
        let t = Instant::now();
        for (ev, ks) in events.chunks(batch).zip(keys.chunks(batch)) {
            let recs: Vec<OutRecord<'_>> = ev
                .iter()
                .zip(ks)
                .map(|(e, k)| OutRecord {
                    key: Some(k.as_bytes()),
                    value: e.as_bytes(),
                    ..Default::default()
                })
                .collect();
            p.send("bench", &recs).unwrap();
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "produce  batch {batch:>5}: {n} events ({:.1} MB) in {s:.2} s = {:.0} events/s (acknowledged)",
            bytes as f64 / 1e6,
            n as f64 / s
        );
    }

    let total = 2 * n;
    let m = GroupMember::join(&cfg, &["bench"], NoHooks).unwrap();
    let t = Instant::now();
    let mut got = 0usize;
    while got < total {
        got += m
            .poll_batch(10_000, Duration::from_millis(500))
            .unwrap()
            .len();
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "consumer stalled at {got}"
        );
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "consume (group member, incl. join): {total} events in {s:.2} s = {:.0} events/s",
        total as f64 / s
    );
    drop(m);
    let _ = Command::new(&script).arg("stop").arg(dir.path()).status();
}
