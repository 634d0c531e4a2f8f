//! Rows that wait in the reorder buffer go through a different path than rows released at
//! once: their key hash is worked out ahead (and kept in the buffer entry) while the
//! matcher prefetches the next rows' key states. Differential test: random events over
//! many keys, two rule groups (different PARTITION BY), a large `max_delay` so the buffer
//! holds many rows, and a checkpoint at a random point (the kept hashes are not stored) —
//! the output must equal feeding the same rows already in event-time order with no delay.
//! `WEIR_LONG_TESTS=1` runs more cases.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use dsl::ast::{BinaryOp, DataType};
use dsl::plan::{LatePolicy, StreamDef};
use matcher::cep::{CepRuleSet, MatchOutput, PartitionState};
use matcher::value::{Row, Value};
use proptest::prelude::*;

fn ev_stream(delay: u64) -> StreamDef {
    stream(
        "ev",
        &[
            ("user", DataType::String),
            ("shop", DataType::String),
            ("t", DataType::String),
            ("v", DataType::Int),
            ("ts", DataType::Timestamp),
        ],
        delay,
        LatePolicy::Drop,
    )
}

fn t_is(x: &str) -> dsl::ast::Expr {
    bin(BinaryOp::Eq, col("t"), str(x))
}

fn rules(s: &StreamDef) -> CepRuleSet {
    let by_user = rule(
        "by_user",
        "ev",
        &["user"],
        seq(vec![var("a"), rep(var("b"), 1, None, true), var("c")]),
        Some(40),
        vec![("a", t_is("a")), ("b", t_is("b")), ("c", t_is("c"))],
        vec![("n", func("COUNT", vec![star(Some("b"))]))],
        None,
    );
    let by_user_sum = rule(
        "by_user_sum",
        "ev",
        &["user"],
        fby(vec![var("a"), var("b")]),
        Some(25),
        vec![
            ("a", t_is("b")),
            (
                "b",
                bin(BinaryOp::Gt, col("v"), func("FIRST", vec![col("a.v")])),
            ),
        ],
        vec![("first", col("a.v")), ("second", col("b.v"))],
        None,
    );
    let by_shop = rule(
        "by_shop",
        "ev",
        &["shop"],
        seq(vec![var("x"), var("y")]),
        Some(30),
        vec![("x", t_is("c")), ("y", t_is("a"))],
        vec![],
        None,
    );
    compile_set(&[by_user, by_user_sum, by_shop], s)
}

/// (user, shop, t, v, ts) in arrival order: event time mostly rising, some rows up to
/// `jitter` ms early (never late for a delay of at least `jitter`).
fn gen_events(seed: u64, n: usize, users: u64, jitter: i64) -> Vec<(Row, i64)> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut t = 1_000i64;
    (0..n)
        .map(|_| {
            t += (next() % 3) as i64;
            let ts = if next() % 5 == 0 {
                t - (next() % (jitter as u64 + 1)) as i64
            } else {
                t
            };
            let row = Row {
                values: vec![
                    Value::String(format!("u{}", next() % users)),
                    Value::String(format!("s{}", next() % 3)),
                    Value::String(["a", "b", "c", "d"][(next() % 4) as usize].into()),
                    Value::Int((next() % 10) as i64),
                    Value::Timestamp(ts),
                ],
                extra: Default::default(),
            };
            (row, ts)
        })
        .collect()
}

fn canon(mut out: Vec<MatchOutput>) -> Vec<String> {
    let mut v: Vec<String> = out.drain(..).map(|m| m.to_json().to_string()).collect();
    v.sort();
    v
}

/// Through the reorder buffer, with a JSON checkpoint and restore after `cut` rows.
fn run_buffered(set: &CepRuleSet, evs: &[(Row, i64)], delay: u64, cut: usize) -> Vec<String> {
    let s = ev_stream(delay);
    let mut st = PartitionState::new(0, set);
    let mut out = Vec::new();
    for (i, (row, ts)) in evs.iter().enumerate() {
        if i == cut {
            let json = serde_json::to_string(&st).unwrap();
            st = serde_json::from_str(&json).unwrap();
            st.check_compatible(set).unwrap();
        }
        st.process_with(
            set,
            row.clone(),
            *ts,
            i as u64,
            s.max_delay_ms,
            s.late,
            &mut out,
        );
    }
    assert_eq!(
        st.counters().late_dropped,
        0,
        "the generator makes no late rows"
    );
    st.finish(set, &mut out);
    canon(out)
}

/// The same rows already in (event time, offset) order, each released at once.
fn run_in_order(set: &CepRuleSet, evs: &[(Row, i64)]) -> Vec<String> {
    let mut order: Vec<(i64, u64, &Row)> = evs
        .iter()
        .enumerate()
        .map(|(i, (r, ts))| (*ts, i as u64, r))
        .collect();
    order.sort_by_key(|(ts, off, _)| (*ts, *off));
    let mut st = PartitionState::new(0, set);
    let mut out = Vec::new();
    for (ts, off, row) in order {
        st.process(set, row.clone(), ts, off, &mut out);
    }
    st.finish(set, &mut out);
    canon(out)
}

fn cases() -> u32 {
    if std::env::var("WEIR_LONG_TESTS").is_ok() {
        400
    } else {
        40
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]
    #[test]
    fn buffered_rows_match_in_order_rows(
        seed in any::<u64>(),
        n in 50usize..600,
        users in 1u64..60,
        delay in 5u64..200,
        cut_frac in 0.0f64..1.0,
    ) {
        let jitter = (delay as i64).min(20);
        let evs = gen_events(seed, n, users, jitter);
        let set = rules(&ev_stream(delay));
        let cut = (cut_frac * n as f64) as usize;
        let got = run_buffered(&set, &evs, delay, cut);
        let want = run_in_order(&set, &evs);
        prop_assert_eq!(got, want);
    }
}

#[test]
fn buffered_case_is_not_vacuous() {
    let evs = gen_events(7, 2000, 20, 20);
    let set = rules(&ev_stream(100));
    let got = run_buffered(&set, &evs, 100, 1000);
    for name in ["by_user", "by_user_sum", "by_shop"] {
        let n = got
            .iter()
            .filter(|m| m.contains(&format!("\"{name}\"")))
            .count();
        assert!(n > 5, "{name}: only {n} matches");
    }
    assert_eq!(got, run_in_order(&set, &evs));
}
