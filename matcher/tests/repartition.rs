//! Repartitioning: which statements read a re-keyed copy of their stream, and that the
//! engine feeds them only from it.

#![allow(clippy::unwrap_used)]

use dsl::check::Catalog;
use matcher::engine::{repartitions, Engine, EngineConfig};
use serde_json::json;

const TEXT: &str = "
CREATE STREAM pay (card STRING, merchant STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', key = 'card');
CREATE STREAM plain (card STRING, merchant STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts');
CREATE RULE per_card AS FROM pay PARTITION BY card
  PATTERN (a) WITHIN 1 MINUTE DEFINE a AS amount > 100 MEASURES a.merchant AS merchant;
CREATE RULE per_merchant AS FROM pay PARTITION BY merchant
  PATTERN (a b) WITHIN 1 MINUTE DEFINE a AS amount < 5, b AS amount > 100;
CREATE METRIC merchant_sales AS SELECT merchant, COUNT(*) AS n FROM pay
  GROUP BY merchant WINDOW TUMBLING (SIZE 1 MINUTE);
CREATE METRIC all_sales AS SELECT COUNT(*) AS n FROM pay WINDOW TUMBLING (SIZE 1 MINUTE);
CREATE RULE plain_merchant AS FROM plain PARTITION BY merchant
  PATTERN (a) WITHIN 1 MINUTE DEFINE a AS amount > 100;
CREATE RULE chained AS FROM per_card PARTITION BY merchant
  PATTERN (a) WITHIN 1 MINUTE DEFINE a AS TRUE;
";

fn catalog() -> Catalog {
    let (stmts, diags) = dsl::parse::parse_statements(TEXT);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let mut c = Catalog::new();
    let applied = c.apply(&stmts).unwrap();
    // The check points out the extra cost of each repartitioned statement.
    let warned: Vec<&str> = applied
        .warnings
        .iter()
        .filter(|d| d.message.contains("re-keyed"))
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(warned.len(), 3, "{:?}", applied.warnings);
    c
}

#[test]
fn only_statements_split_by_another_column_are_repartitioned() {
    let c = catalog();
    let r = repartitions(&c, &|_| 4);
    let got: Vec<(&str, Option<&str>, &str, Vec<&str>)> = r
        .iter()
        .map(|r| {
            (
                r.source.as_str(),
                r.by.as_deref(),
                r.stream.as_str(),
                r.statements.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "pay",
                Some("merchant"),
                "pay.by.merchant",
                vec!["per_merchant", "merchant_sales"]
            ),
            ("pay", None, "pay.single", vec!["all_sales"]),
        ]
    );
    // One partition: nothing to repartition.
    assert!(repartitions(&c, &|_| 1).is_empty());
}

#[test]
fn repartitioned_statements_read_only_the_hidden_stream() {
    let c = catalog();
    let config = EngineConfig {
        repartition: repartitions(&c, &|_| 4),
        ..Default::default()
    };
    let mut e = Engine::new(&c, 0, &config).unwrap();
    assert_eq!(
        e.source_streams(),
        &["pay".to_string(), "plain".to_string()]
    );
    let evs = [
        json!({"card": "c1", "merchant": "m", "amount": 1.0, "ts": 1000}),
        json!({"card": "c2", "merchant": "m", "amount": 500.0, "ts": 2000}),
    ];
    // Through the source stream: the per-card rule matches, the per-merchant rule
    // (whose two rows come from two cards) does not see them.
    let mut out = Vec::new();
    for (i, ev) in evs.iter().enumerate() {
        e.ingest("pay", i as u64, ev, 0, &mut out).unwrap();
    }
    let names: Vec<&str> = out.iter().map(|r| r.statement()).collect();
    assert_eq!(names, vec!["per_card"], "{out:?}");
    // Through the hidden stream: the per-merchant rule matches; the per-card one is not
    // fed twice.
    let mut out = Vec::new();
    for (i, ev) in evs.iter().enumerate() {
        e.ingest("pay.by.merchant", i as u64, ev, 0, &mut out)
            .unwrap();
    }
    // Its watermark comes from outside (the merged source partitions): nothing is
    // released before it moves.
    assert!(out.is_empty(), "{out:?}");
    e.advance_watermark("pay.by.merchant", 1_500, &mut out);
    assert!(
        out.is_empty(),
        "the second row (at 2000) is still buffered: {out:?}"
    );
    e.advance_watermark("pay.by.merchant", 2_000, &mut out);
    let names: Vec<&str> = out.iter().map(|r| r.statement()).collect();
    assert_eq!(names, vec!["per_merchant"], "{out:?}");
    // A row older than that watermark is late (and dropped) in the hidden stream.
    let mut out = Vec::new();
    let old = json!({"card": "c3", "merchant": "m", "amount": 1.0, "ts": 1500});
    e.ingest("pay.by.merchant", 9, &old, 0, &mut out).unwrap();
    assert_eq!(e.counters("pay.by.merchant").unwrap().late_dropped, 1);
    // Moving the watermark of a source stream from outside does nothing.
    e.advance_watermark("pay", 1_000_000, &mut out);
    assert_eq!(e.watermark("pay"), Some(2000));
    // The hidden stream's state is checkpointed and restored with the rest.
    let snap = e.snapshot();
    assert!(snap.streams.contains_key("pay.by.merchant"));
    let mut e2 = Engine::new(&c, 0, &config).unwrap();
    let rep = e2.restore(snap, &|n| n != "nothing").unwrap();
    assert_eq!(rep.states_reset, 0);
    // Without the configuration every statement reads its stream as written.
    let mut e3 = Engine::new(&c, 0, &EngineConfig::default()).unwrap();
    let mut out = Vec::new();
    for (i, ev) in evs.iter().enumerate() {
        e3.ingest("pay", i as u64, ev, 0, &mut out).unwrap();
    }
    let mut names: Vec<&str> = out.iter().map(|r| r.statement()).collect();
    names.sort();
    assert_eq!(names, vec!["per_card", "per_merchant"], "{out:?}");
    assert!(e3
        .ingest("pay.by.merchant", 9, &evs[0], 0, &mut out)
        .is_err());
}
