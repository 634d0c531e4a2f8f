//! Streaming behaviour of the engine: when matches are emitted, checkpoints, caps,
//! eviction, late rows, many rules.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use dsl::ast::{BinaryOp, DataType};
use dsl::plan::LatePolicy;
use matcher::cep::{CepConfig, CepRule, CepRuleSet, PartitionState};
use matcher::value::{Row, Value};

fn ev_stream(delay: u64, late: LatePolicy) -> dsl::plan::StreamDef {
    stream(
        "ev",
        &[
            ("k", DataType::String),
            ("t", DataType::String),
            ("v", DataType::Int),
            ("ts", DataType::Timestamp),
        ],
        delay,
        late,
    )
}

fn row(k: &str, t: &str, v: i64, ts: i64) -> Row {
    Row {
        values: vec![
            Value::String(k.into()),
            Value::String(t.into()),
            Value::Int(v),
            Value::Timestamp(ts),
        ],
        extra: Default::default(),
    }
}

fn t_is(x: &str) -> dsl::ast::Expr {
    bin(BinaryOp::Eq, col("t"), str(x))
}

#[test]
fn greedy_tail_is_emitted_when_the_next_row_arrives() {
    let s = ev_stream(0, LatePolicy::Drop);
    let r = rule(
        "r",
        "ev",
        &["k"],
        seq(vec![var("a"), rep(var("b"), 1, None, true)]),
        None,
        vec![("a", t_is("a")), ("b", t_is("b"))],
        vec![("n", func("COUNT", vec![star(Some("b"))]))],
        None,
    );
    let set = compile_set(&[r], &s);
    let mut st = PartitionState::new(0, &set);
    let mut out = Vec::new();
    st.process(&set, row("k", "a", 1, 1), 1, 0, &mut out);
    st.process(&set, row("k", "b", 1, 2), 2, 1, &mut out);
    st.process(&set, row("k", "b", 1, 3), 3, 2, &mut out);
    assert!(out.is_empty(), "b+ could still grow");
    st.process(&set, row("k", "x", 1, 4), 4, 3, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ts, 3);
    assert_eq!(out[0].fields[1].1, Value::Int(2));
    assert_eq!(out[0].id, "r@ev/0:0-2");
}

#[test]
fn trailing_absence_is_emitted_when_the_watermark_passes_the_deadline() {
    let s = ev_stream(0, LatePolicy::Drop);
    let r = rule(
        "unpaid",
        "ev",
        &["k"],
        seq(vec![var("c"), absent("p")]),
        Some(100),
        vec![("c", t_is("created")), ("p", t_is("paid"))],
        vec![],
        None,
    );
    let set = compile_set(&[r], &s);
    let mut st = PartitionState::new(3, &set);
    let mut out = Vec::new();
    st.process(&set, row("o1", "created", 0, 1000), 1000, 10, &mut out);
    st.process(&set, row("o2", "created", 0, 1050), 1050, 11, &mut out);
    st.process(&set, row("o2", "paid", 0, 1080), 1080, 12, &mut out);
    st.process(&set, row("zz", "noise", 0, 1100), 1100, 13, &mut out);
    assert!(
        out.is_empty(),
        "deadline 1100 not passed yet (rows at 1100 may still come)"
    );
    st.advance_watermark(&set, 1101, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ts, 1100);
    assert_eq!(out[0].id, "unpaid@ev/3:10-10!");
    assert_eq!(out[0].fields[0].1, Value::String("o1".into()));
    st.finish(&set, &mut out);
    assert_eq!(out.len(), 1, "o2 was paid in time");
    assert_eq!(st.counters().live_keys, 0);
}

#[test]
fn within_prunes_state_and_keys_are_evicted() {
    let s = ev_stream(0, LatePolicy::Drop);
    let r = rule(
        "r",
        "ev",
        &["k"],
        fby(vec![var("a"), var("b")]),
        Some(10),
        vec![("a", t_is("a")), ("b", t_is("b"))],
        vec![],
        None,
    );
    let set = compile_set(&[r], &s);
    let mut st = PartitionState::new(0, &set);
    let mut out = Vec::new();
    for i in 0..1000 {
        st.process(
            &set,
            row(&format!("k{i}"), "a", 0, i),
            i,
            i as u64,
            &mut out,
        );
    }
    let c = st.counters();
    assert!(
        c.live_keys > 0 && c.live_keys <= 12,
        "only keys within WITHIN stay: {c:?}"
    );
    assert!(st.approx_state_bytes() > 0);
    st.advance_watermark(&set, 10_000, &mut out);
    let c = st.counters();
    assert_eq!(c.live_keys, 0);
    assert_eq!(c.live_partial_matches, 0);
    assert_eq!(st.approx_state_bytes(), 0);
    assert!(out.is_empty());
}

#[test]
fn late_rows_are_dropped_and_counted() {
    let s = ev_stream(5, LatePolicy::Drop);
    let r = rule(
        "r",
        "ev",
        &["k"],
        seq(vec![var("a"), var("b")]),
        None,
        vec![("a", t_is("a")), ("b", t_is("b"))],
        vec![],
        None,
    );
    let set = compile_set(&[r], &s);
    let evs = vec![
        Ev {
            row: row("k", "a", 0, 100),
            ts: 100,
            offset: 0,
        },
        Ev {
            row: row("k", "x", 0, 200),
            ts: 200,
            offset: 1,
        },
        Ev {
            row: row("k", "b", 0, 101),
            ts: 101,
            offset: 2,
        },
    ];
    let (out, c) = run_engine_counted(&set, &s, &evs);
    assert!(out.is_empty());
    assert_eq!(c.late_dropped, 1);
}

#[test]
fn checkpoint_restore_continues_identically() {
    let s = ev_stream(3, LatePolicy::Drop);
    let r = rule(
        "r",
        "ev",
        &["k"],
        seq(vec![var("a"), rep(var("b"), 1, None, false), var("c")]),
        Some(50),
        vec![
            ("a", t_is("a")),
            (
                "b",
                bin(BinaryOp::Gt, col("v"), func("PREV", vec![col("v")])),
            ),
            (
                "c",
                bin(BinaryOp::Lt, col("v"), func("FIRST", vec![col("b.v")])),
            ),
        ],
        vec![
            ("s", func("SUM", vec![col("b.v")])),
            ("mn", func("MATCH_NUMBER", vec![])),
        ],
        None,
    );
    let set = compile_set(&[r], &s);
    let mut evs = Vec::new();
    let mut x: u64 = 7;
    for i in 0..400u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let t = ["a", "b", "x"][(x >> 33) as usize % 3];
        let ts = i as i64 * 2 - ((x >> 40) % 3) as i64;
        evs.push(Ev {
            row: row(
                &format!("k{}", (x >> 50) % 4),
                t,
                ((x >> 20) % 10) as i64,
                ts,
            ),
            ts,
            offset: i,
        });
    }
    let whole = canon(&run_engine(&set, &s, &evs));
    assert!(whole.len() > 5);
    // run half, checkpoint through JSON, restore, run the rest
    let mut st = PartitionState::new(0, &set);
    let mut out = Vec::new();
    for e in &evs[..200] {
        st.process_with(
            &set,
            e.row.clone(),
            e.ts,
            e.offset,
            3,
            LatePolicy::Drop,
            &mut out,
        );
    }
    let json = serde_json::to_string(&st).unwrap();
    let mut st2: PartitionState = serde_json::from_str(&json).unwrap();
    st2.check_compatible(&set).unwrap();
    for e in &evs[200..] {
        st2.process_with(
            &set,
            e.row.clone(),
            e.ts,
            e.offset,
            3,
            LatePolicy::Drop,
            &mut out,
        );
    }
    st2.finish(&set, &mut out);
    assert_eq!(canon(&out), whole);
    // a checkpoint from another rule set is refused
    let other = compile_set(
        &[rule(
            "other",
            "ev",
            &[],
            var("a"),
            None,
            vec![],
            vec![],
            None,
        )],
        &s,
    );
    assert!(st2.check_compatible(&other).is_err());
}

#[test]
fn per_key_cap_drops_oldest_partial_matches_and_counts_them() {
    let s = ev_stream(0, LatePolicy::Drop);
    // every `a` row starts a partial match that waits for a `b` forever
    let r = rule(
        "r",
        "ev",
        &["k"],
        fby(vec![var("a"), var("b")]),
        None,
        vec![("a", t_is("a")), ("b", t_is("b"))],
        vec![("av", col("a.v"))],
        Some(dsl::ast::AfterMatch::SkipToNextRow),
    );
    let cfg = CepConfig {
        max_partial_matches_per_key: 50,
        ..CepConfig::default()
    };
    let set = CepRuleSet::new(vec![CepRule::compile(&r, &s, &cfg).unwrap()]).unwrap();
    let mut st = PartitionState::new(0, &set);
    let mut out = Vec::new();
    for i in 0..200 {
        st.process(&set, row("k", "a", i, i), i, i as u64, &mut out);
    }
    let c = st.counters();
    assert!(c.live_partial_matches <= 50, "{c:?}");
    assert!(c.partial_matches_dropped >= 150, "{c:?}");
    st.process(&set, row("k", "b", 0, 1000), 1000, 1000, &mut out);
    // a partial match is an NFA thread; each open start holds two here (`b` next, or one
    // more skipped row), so the newest 25 starts survived and each gives a match
    assert_eq!(out.len(), 25);
    assert_eq!(out[0].fields[1].1, Value::Int(175));
}

#[test]
fn rows_per_key_cap_drops_the_oldest_search_of_the_rule_only() {
    let s = ev_stream(0, LatePolicy::Drop);
    // `long` holds rows forever (an `a` then any number of `x` rows, never an `end`);
    // `pair` shares the key's rows and must keep matching `a b` while `long` is capped
    let long = rule(
        "long",
        "ev",
        &["k"],
        seq(vec![var("a"), rep(var("x"), 0, None, true), var("e")]),
        None,
        vec![("a", t_is("a")), ("e", t_is("end"))],
        vec![],
        None,
    );
    let pair = rule(
        "pair",
        "ev",
        &["k"],
        seq(vec![var("a"), var("b")]),
        None,
        vec![("a", t_is("a")), ("b", t_is("b"))],
        vec![("av", col("a.v")), ("bv", col("b.v"))],
        None,
    );
    let cfg = CepConfig {
        max_rows_per_key: 8,
        ..CepConfig::default()
    };
    let set = CepRuleSet::new(vec![
        CepRule::compile(&long, &s, &cfg).unwrap(),
        CepRule::compile(&pair, &s, &cfg).unwrap(),
    ])
    .unwrap();
    let mut st = PartitionState::new(0, &set);
    let mut out = Vec::new();
    let mut ts = 0;
    for i in 0..40 {
        for t in ["a", "b", "z"] {
            ts += 1;
            st.process(&set, row("k", t, i, ts), ts, ts as u64, &mut out);
        }
        // bounded: `long`'s search over more than 8 rows was dropped
        assert!(
            st.approx_state_bytes() < 4096,
            "{}",
            st.approx_state_bytes()
        );
    }
    let c = st.counters();
    assert!(c.partial_matches_dropped > 0, "{c:?}");
    // every `a b` pair matched, with its own row values
    assert_eq!(out.len(), 40);
    for (i, m) in out.iter().enumerate() {
        assert_eq!(&*m.rule, "pair");
        assert_eq!(m.fields[1].1, Value::Int(i as i64));
        assert_eq!(m.fields[2].1, Value::Int(i as i64));
    }
}

#[test]
fn per_rule_cap_refuses_new_starts() {
    let s = ev_stream(0, LatePolicy::Drop);
    let r = rule(
        "r",
        "ev",
        &["k"],
        fby(vec![var("a"), var("b")]),
        None,
        vec![("a", t_is("a")), ("b", t_is("b"))],
        vec![],
        None,
    );
    let cfg = CepConfig {
        max_partial_matches_per_rule: 100,
        ..CepConfig::default()
    };
    let set = CepRuleSet::new(vec![CepRule::compile(&r, &s, &cfg).unwrap()]).unwrap();
    let mut st = PartitionState::new(0, &set);
    let mut out = Vec::new();
    for i in 0..300 {
        st.process(
            &set,
            row(&format!("k{i}"), "a", 0, i),
            i,
            i as u64,
            &mut out,
        );
    }
    let c = st.counters();
    assert!(c.live_partial_matches <= 101, "{c:?}");
    assert!(c.starts_refused >= 190, "{c:?}");
}

#[test]
fn many_rules_share_predicates_and_only_touch_candidates() {
    let s = ev_stream(0, LatePolicy::Drop);
    let mut rules = Vec::new();
    for i in 0..200 {
        rules.push(rule(
            &format!("r{i}"),
            "ev",
            &["k"],
            seq(vec![var("a"), var("b")]),
            Some(10),
            vec![("a", t_is(&format!("start{i}"))), ("b", t_is("end"))],
            vec![],
            None,
        ));
    }
    let set = compile_set(&rules, &s);
    // 200 distinct start predicates + one shared `t = 'end'`
    assert_eq!(set.distinct_predicates(), 201);
    let mut st = PartitionState::new(0, &set);
    let mut out = Vec::new();
    st.process(&set, row("k", "start7", 0, 1), 1, 0, &mut out);
    st.process(&set, row("k", "start9", 0, 2), 2, 1, &mut out);
    st.process(&set, row("k", "end", 0, 3), 3, 2, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(&*out[0].rule, "r9");
    st.process(&set, row("k", "nothing", 0, 100), 100, 3, &mut out);
    assert_eq!(st.counters().live_keys, 0);
}

#[test]
fn output_is_reenterable_as_input() {
    let s = ev_stream(0, LatePolicy::Drop);
    let r = rule(
        "pair",
        "ev",
        &["k"],
        seq(vec![var("a"), var("b")]),
        None,
        vec![("a", t_is("a")), ("b", t_is("b"))],
        vec![("bv", col("b.v"))],
        None,
    );
    let c = CepRule::compile(&r, &s, &CepConfig::default()).unwrap();
    let os = c.output_stream();
    assert_eq!(
        os.columns,
        vec![
            ("k".to_string(), DataType::String),
            ("bv".to_string(), DataType::Int),
            ("ts".to_string(), DataType::Timestamp)
        ]
    );
    let set = CepRuleSet::new(vec![c]).unwrap();
    let mut st = PartitionState::new(0, &set);
    let mut out = Vec::new();
    st.process(&set, row("k", "a", 1, 1), 1, 0, &mut out);
    st.process(&set, row("k", "b", 2, 2), 2, 1, &mut out);
    st.finish(&set, &mut out);
    let r2 = out[0].to_row(&os);
    assert_eq!(
        r2.values,
        vec![
            Value::String("k".into()),
            Value::Int(2),
            Value::Timestamp(2)
        ]
    );
    let j = out[0].to_json();
    assert_eq!(j["rule"], "pair");
    assert_eq!(j["ts"], "1970-01-01T00:00:00.002Z");
    assert_eq!(j["fields"]["bv"], 2);
    assert!(j.get("late").is_none());
}

#[test]
fn compiled_rules_are_shareable_and_state_is_movable() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<CepRuleSet>();
    send_sync::<std::sync::Arc<CepRuleSet>>();
    send::<PartitionState>();
}
