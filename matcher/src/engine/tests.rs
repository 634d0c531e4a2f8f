//! Snapshots, restores and program switches.

#![allow(clippy::unwrap_used)]

use super::*;
use dsl::check::Catalog;

const RULES: &str = "
CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '1 second', key = 'card');
CREATE RULE probe AS FROM pay PARTITION BY card
  PATTERN (small{2,} big) WITHIN 1 MINUTE
  DEFINE small AS amount < 5, big AS amount > 500
  MEASURES COUNT(small.*) AS n, big.amount AS amount;
CREATE METRIC per_card AS SELECT card, COUNT(*) AS n, SUM(amount) AS total
  FROM pay GROUP BY card WINDOW TUMBLING (SIZE 10 SECONDS);
";

fn events() -> Vec<Json> {
    (0..400)
        .map(|i| {
            let card = format!("c{}", i % 7);
            let amount = if i % 5 == 4 {
                900.0
            } else {
                1.0 + (i % 3) as f64
            };
            serde_json::json!({"card": card, "amount": amount, "ts": 1_000 * i as i64})
        })
        .collect()
}

fn engine(cat: &Catalog) -> Engine {
    Engine::new(cat, 0, &EngineConfig::default()).unwrap()
}

fn run(e: &mut Engine, evs: &[Json], from: usize, out: &mut Vec<OutputRecord>) {
    for (i, ev) in evs.iter().enumerate().skip(from) {
        e.ingest("pay", i as u64, ev, 0, out).unwrap();
    }
}

#[test]
fn snapshot_restore_continues_exactly() {
    let mut cat = Catalog::new();
    assert!(cat.check_source(RULES).iter().all(|d| !d.is_error()));
    let evs = events();
    let mut whole = Vec::new();
    let mut a = engine(&cat);
    run(&mut a, &evs, 0, &mut whole);
    a.finish(&mut whole);
    assert!(whole.iter().any(|r| r.statement() == "probe"));
    assert!(whole.iter().any(|r| r.statement() == "per_card"));
    for cut in [0, 1, 137, 399] {
        let mut got = Vec::new();
        let mut b = engine(&cat);
        for (i, ev) in evs.iter().enumerate().take(cut) {
            b.ingest("pay", i as u64, ev, 0, &mut got).unwrap();
        }
        let bytes = serde_json::to_vec(&b.snapshot()).unwrap();
        drop(b);
        let snap: EngineSnapshot = serde_json::from_slice(&bytes).unwrap();
        let mut c = engine(&cat);
        let rep = c.restore(snap, &|_| true).unwrap();
        assert_eq!(rep.states_reset, 0);
        run(&mut c, &evs, cut, &mut got);
        c.finish(&mut got);
        assert_eq!(got, whole, "cut at {cut}");
        assert_eq!(c.counters("pay"), a.counters("pay"));
    }
}

#[test]
fn changed_statements_reset_only_their_state() {
    let mut cat = Catalog::new();
    assert!(cat.check_source(RULES).iter().all(|d| !d.is_error()));
    let evs = events();
    let mut out = Vec::new();
    let mut a = engine(&cat);
    run(&mut a, &evs[..100], 0, &mut out);
    let snap = a.snapshot();
    let mut b = engine(&cat);
    let rep = b.restore(snap.clone(), &|n| n != "per_card").unwrap();
    assert_eq!((rep.states_kept, rep.states_reset), (1, 1));
    let mut wrong = snap;
    wrong.version = 99;
    assert!(b.restore(wrong, &|_| true).is_err());
}
