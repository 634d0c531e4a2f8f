//! Decoding NDJSON events into rows: the fast path (`RowDecoder::decode_str`, text
//! straight into a row) against the reference path (`decode_str_reference`, text →
//! `serde_json::Value` → row), on the event shape of `bench/cep/gen_events.py`.
//!
//!     cargo bench -p matcher --bench decode        (env WEIR_BENCH_EVENTS, default 500k)
//!
//! Figures are per line of thread CPU time (the VM is shared); rows are dropped outside
//! the timed region.

use dsl::ast::DataType;
use dsl::plan::{LatePolicy, StreamDef};
use matcher::value::{format_timestamp, RowDecoder};
use std::hint::black_box;

fn stream() -> StreamDef {
    StreamDef {
        name: "events".into(),
        columns: vec![
            ("user_id".into(), DataType::String),
            ("action".into(), DataType::String),
            ("merchant".into(), DataType::String),
            ("amount".into(), DataType::Float),
            ("country".into(), DataType::String),
            ("ts".into(), DataType::Timestamp),
        ],
        event_time: Some("ts".into()),
        max_delay_ms: 1000,
        idle_timeout_ms: dsl::plan::DEFAULT_IDLE_TIMEOUT_MS,
        late: LatePolicy::Drop,
        key: None,
        kafka_topic: None,
        partitions: None,
    }
}

fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

fn lines(n: usize) -> Vec<String> {
    const ACTIONS: [&str; 8] = [
        "login_fail",
        "login_ok",
        "pay",
        "pay",
        "pay",
        "refund",
        "pw_change",
        "view",
    ];
    const COUNTRIES: [&str; 6] = ["US", "FR", "DE", "BR", "IN", "NG"];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    (0..n)
        .map(|i| {
            format!(
                r#"{{"user_id": "u{}", "action": "{}", "merchant": "m{}", "amount": {}, "country": "{}", "ts": "{}"}}"#,
                next(100_000),
                ACTIONS[next(8) as usize],
                next(200),
                next(100_000) as f64 / 100.0,
                COUNTRIES[next(6) as usize],
                format_timestamp(1_767_225_600_000 + i as i64 / 20)
            )
        })
        .collect()
}

fn main() {
    let n: usize = std::env::var("WEIR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let input = lines(n);
    let d = RowDecoder::new(&stream());
    for round in 0..3 {
        for (label, fast) in [("fast path", true), ("reference path", false)] {
            // Batches of 1,024 lines, dropped outside the timed region (as in `weir run`,
            // where rows are freed on the engine thread), so the allocator stays warm.
            let mut secs = 0.0;
            let mut rows = Vec::with_capacity(1024);
            for chunk in input.chunks(1024) {
                let t = cpu_secs();
                for l in chunk {
                    rows.push(if fast {
                        d.decode_str(black_box(l))
                    } else {
                        d.decode_str_reference(black_box(l))
                    });
                }
                secs += cpu_secs() - t;
                assert!(rows.iter().all(Result::is_ok));
                rows.clear();
            }
            println!(
                "round {round} {label}: {:.0} ns/line ({:.2}M lines/s per core)",
                secs * 1e9 / n as f64,
                n as f64 / secs / 1e6
            );
        }
    }
}
