//! Catalog behaviour: all-or-nothing apply, output streams, plans, ordering.

use super::*;
use crate::ast::DataType;
use crate::parse::parse_statements;

fn parse(src: &str) -> Vec<Statement> {
    let (s, d) = parse_statements(src);
    assert!(d.is_empty(), "{d:?}");
    s
}

const STREAM: &str =
    "CREATE STREAM p (card STRING, amount FLOAT, n INT, country STRING, ts TIMESTAMP) \
                      WITH (event_time = 'ts', max_delay = '2 seconds', late = 'emit');";

#[test]
fn apply_is_all_or_nothing() {
    let mut c = Catalog::new();
    c.apply(&parse(STREAM)).unwrap();
    let before = c.clone();
    let err = c
        .apply(&parse(
            "CREATE RULE ok AS FROM p PATTERN (a) WITHIN 1 MINUTE;
             CREATE RULE bad AS FROM nope PATTERN (a) WITHIN 1 MINUTE;",
        ))
        .unwrap_err();
    assert_eq!(err.iter().filter(|d| d.is_error()).count(), 1);
    assert_eq!(c, before, "nothing applied");
    assert!(c.get("ok").is_none());
}

#[test]
fn apply_reports_actions_and_warnings() {
    let mut c = Catalog::new();
    let a = c
        .apply(&parse(&format!(
            "{STREAM}
             CREATE RULE r AS FROM p PATTERN (a);
             CREATE OR REPLACE RULE r AS FROM p PATTERN (a b) WITHIN 1 MINUTE;
             DROP SEARCH IF EXISTS nothing;"
        )))
        .unwrap();
    let actions: Vec<(&str, Action)> = a
        .applied
        .iter()
        .map(|x| (x.name.as_str(), x.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("p", Action::Created),
            ("r", Action::Created),
            ("r", Action::Replaced),
            ("nothing", Action::Unchanged)
        ]
    );
    assert_eq!(a.warnings.len(), 1, "the first r has no WITHIN");
    let a = c.apply(&parse("DROP RULE r;")).unwrap();
    assert_eq!(a.applied[0].action, Action::Dropped);
}

#[test]
fn stream_def_from_options() {
    let mut c = Catalog::new();
    c.apply(&parse(STREAM)).unwrap();
    let s = c.stream("p").unwrap();
    assert_eq!(s.event_time.as_deref(), Some("ts"));
    assert_eq!(s.max_delay_ms, 2000);
    assert_eq!(s.late, crate::plan::LatePolicy::Emit);
    assert_eq!(s.column_type("amount"), Some(DataType::Float));
    assert!(!c.get("p").unwrap().derived);
    assert_eq!(s.idle_timeout_ms, crate::plan::DEFAULT_IDLE_TIMEOUT_MS);
}

#[test]
fn idle_timeout_option() {
    let idle = |opt: &str| {
        let mut c = Catalog::new();
        let text =
            format!("CREATE STREAM q (a INT, ts TIMESTAMP) WITH (event_time = 'ts', {opt});");
        c.apply(&parse(&text))
            .map(|_| c.stream("q").unwrap().idle_timeout_ms)
            .map_err(|d| d[0].message.clone())
    };
    assert_eq!(idle("idle_timeout = '2 seconds'"), Ok(2000));
    assert_eq!(idle("idle_timeout = '0'"), Ok(0));
    assert_eq!(idle("idle_timeout = 0"), Ok(0));
    assert_eq!(idle("idle_timeout = '250 ms'"), Ok(250));
    let e = idle("idle_timeout = '5'").unwrap_err();
    assert!(e.contains("no unit"), "{e}");
    let e = idle("idle_timeout = 'soon'").unwrap_err();
    assert!(e.contains("idle_timeout"), "{e}");
}

#[test]
fn rule_output_is_partition_columns_then_measures_with_types() {
    let mut c = Catalog::new();
    c.apply(&parse(&format!(
        "{STREAM}
         CREATE RULE r AS FROM p PARTITION BY card PATTERN (small{{2,}} !stop big) WITHIN 1 MINUTE
         DEFINE small AS amount < 5, stop AS n = 0, big AS amount > 100
         MEASURES COUNT(small.*) AS probes, big.amount AS amount, AVG(small.n) AS avg_n,
                  big.ts AS at, CLASSIFIER() AS v, big.country AS country;"
    )))
    .unwrap();
    let e = c.get("r").unwrap();
    assert!(e.derived);
    assert_eq!(e.output.event_time.as_deref(), Some("ts"));
    assert_eq!(
        e.output.columns,
        [
            ("card".to_string(), DataType::String),
            ("probes".to_string(), DataType::Int),
            ("amount".to_string(), DataType::Float),
            ("avg_n".to_string(), DataType::Float),
            ("at".to_string(), DataType::Timestamp),
            ("v".to_string(), DataType::String),
            ("country".to_string(), DataType::String),
            ("ts".to_string(), DataType::Timestamp),
        ]
    );
    let Plan::Rule(plan) = &e.plan else { panic!() };
    assert_eq!(plan.variables, ["small", "big"]);
    assert_eq!(plan.absent, ["stop"]);
    assert_eq!(plan.input.name, "p");
    assert_eq!(e.from(), Some("p"));
}

#[test]
fn metric_output_and_options() {
    let mut c = Catalog::new();
    c.apply(&parse(&format!(
        "{STREAM}
         CREATE METRIC m AS SELECT country, COUNT(*) AS n, SUM(n) AS total, SUM(amount) AS sum_amount,
           APPROX_COUNT_DISTINCT(card) AS cards, APPROX_PERCENTILE(amount, 0.5) AS median,
           APPROX_PERCENTILE(amount, 0.5, 0.9) AS pcts, APPROX_TOP_K(card, 3) AS top, APPROX_SET(card) AS seen
         FROM p GROUP BY country WINDOW TUMBLING (SIZE 1 MINUTE)
         WITH (hll_precision = 10, bloom_fpp = 0.02, percentile_error = 0.05, retention = '1 hour', max_groups = 7);"
    )))
    .unwrap();
    let e = c.get("m").unwrap();
    let types: Vec<(&str, DataType)> = e
        .output
        .columns
        .iter()
        .map(|(n, t)| (n.as_str(), *t))
        .collect();
    assert_eq!(
        types,
        [
            ("country", DataType::String),
            ("n", DataType::Int),
            ("total", DataType::Int),
            ("sum_amount", DataType::Float),
            ("cards", DataType::Int),
            ("median", DataType::Float),
            ("pcts", DataType::Json),
            ("top", DataType::Json),
            ("seen", DataType::Json),
            ("ts", DataType::Timestamp),
        ]
    );
    let Plan::Metric(plan) = &e.plan else {
        panic!()
    };
    assert_eq!(
        plan.options,
        MetricOptions {
            hll_precision: Some(10),
            bloom_fpp: Some(0.02),
            percentile_error: Some(0.05),
            retention_ms: Some(3_600_000),
            max_groups: Some(7),
            ..MetricOptions::default()
        }
    );
}

#[test]
fn entries_stay_in_dependency_order_after_replace() {
    let mut c = Catalog::new();
    c.apply(&parse(
        "CREATE STREAM a (x INT);
         CREATE STREAM b (x INT);
         CREATE RULE r AS FROM a PATTERN (v) WITHIN 1 MINUTE;",
    ))
    .unwrap();
    // Replace `a`'s reader chain: r now reads b; then replace b with a newer definition.
    c.apply(&parse(
        "CREATE OR REPLACE STREAM b (x INT, y INT);
         CREATE OR REPLACE RULE r AS FROM b PATTERN (v) WITHIN 1 MINUTE DEFINE v AS y > 1;",
    ))
    .unwrap();
    let names: Vec<&str> = c.entries().iter().map(|e| e.name.as_str()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("b") < pos("r"), "{names:?}");
    // Replacing b again re-checks r against the new columns.
    let err = c
        .apply(&parse("CREATE OR REPLACE STREAM b (x INT);"))
        .unwrap_err();
    assert!(
        err[0]
            .message
            .contains("replacing `b` breaks rule `r`: unknown column or pattern variable `y`"),
        "{err:?}"
    );
    let err = c
        .apply(&parse("CREATE OR REPLACE STREAM b (x INT, y STRING);"))
        .unwrap_err();
    assert!(
        err[0]
            .message
            .contains("breaks rule `r`: cannot compare STRING with INT"),
        "{err:?}"
    );
    // A reader that reads a path into an undeclared field only gets a warning.
    c.apply(&parse(
        "CREATE OR REPLACE STREAM b (x INT, y INT, extra JSON);
         CREATE METRIC m2 AS SELECT COUNT(*) AS c FROM b WHERE extra.k > 1 WINDOW TUMBLING (SIZE 1 MINUTE);",
    ))
    .unwrap();
    let applied = c
        .apply(&parse("CREATE OR REPLACE STREAM b (x INT, y INT);"))
        .unwrap();
    assert!(
        applied.warnings[0]
            .message
            .contains("replacing `b` changes metric `m2`"),
        "{:?}",
        applied.warnings
    );
}

#[test]
fn notes_only_point_into_the_same_text() {
    let mut c = Catalog::new();
    c.apply(&parse("CREATE STREAM s (x INT);")).unwrap();
    let err = c.apply(&parse("CREATE STREAM s (x INT);")).unwrap_err();
    assert!(
        err[0].notes.is_empty(),
        "the first definition is in another text"
    );
    let err = c
        .apply(&parse("CREATE STREAM t (x INT); CREATE STREAM t (y INT);"))
        .unwrap_err();
    assert_eq!(err[0].notes.len(), 1);
    assert_eq!(err[0].notes[0].1, "first defined here");
}

#[test]
fn check_source_is_lenient_and_sorted() {
    let mut c = Catalog::new();
    let d = c.check_source(
        "CREATE STREAM s (x INT) WITH (late = 'never');
         CREATE RULE r AS FROM s PATTERN (a) WITHIN 1 MINUTE DEFINE a AS y > 1;",
    );
    // The stream is recorded despite its bad option, so the rule is checked against it.
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d[0].message.contains("late"));
    assert!(d[1].message.contains("`y`"));
    assert!(d[0].span.start < d[1].span.start);
}

#[test]
fn durations_in_with_are_parsed() {
    assert_eq!(parse_duration("5 seconds"), Ok(5000));
}

#[test]
fn derived_streams_get_the_record_time_unless_named() {
    let mut c = Catalog::new();
    c.apply(&parse(&format!(
        "{STREAM}
         CREATE RULE own_ts AS FROM p PATTERN (a) WITHIN 1 MINUTE MEASURES a.ts AS ts;
         CREATE RULE int_ts AS FROM p PATTERN (a) WITHIN 1 MINUTE MEASURES a.n AS ts;
         CREATE SEARCH q AS FROM p WHERE country MATCHES 'fr';
         CREATE RULE later AS FROM own_ts PATTERN (x y) WITHIN 1 HOUR DEFINE y AS ts > x.ts;"
    )))
    .unwrap();
    let own = &c.get("own_ts").unwrap().output;
    assert_eq!(own.columns, [("ts".to_string(), DataType::Timestamp)]);
    assert_eq!(own.event_time.as_deref(), Some("ts"));
    let int = &c.get("int_ts").unwrap().output;
    assert_eq!(int.columns, [("ts".to_string(), DataType::Int)]);
    assert_eq!(int.event_time, None);
    // A search without EMIT outputs the source columns, whose `ts` is the event time.
    let q = &c.get("q").unwrap().output;
    assert_eq!(q.columns.len(), 5);
    assert_eq!(q.event_time.as_deref(), Some("ts"));
}

#[test]
fn drop_knows_its_readers_after_replaces_and_drops() {
    let mut c = Catalog::new();
    c.apply(&parse(&format!(
        "{STREAM}
         CREATE RULE r1 AS FROM p PATTERN (a) WITHIN 1 MINUTE;
         CREATE RULE r2 AS FROM p PATTERN (a b) WITHIN 1 MINUTE;"
    )))
    .unwrap();
    let refused = |c: &mut Catalog, text: &str| {
        let err = c.apply(&parse(text)).unwrap_err();
        assert!(
            err.iter().any(|d| d.message.starts_with("cannot drop")),
            "{err:?}"
        );
    };
    refused(&mut c, "DROP STREAM p;");
    c.apply(&parse(
        "CREATE OR REPLACE RULE r1 AS FROM p PATTERN (a a) WITHIN 1 MINUTE;",
    ))
    .unwrap();
    c.apply(&parse("DROP RULE r2;")).unwrap();
    refused(&mut c, "DROP STREAM p;");
    c.apply(&parse("DROP RULE r1;")).unwrap();
    c.apply(&parse("DROP STREAM p;")).unwrap();
    assert!(c.readers.is_empty(), "{:?}", c.readers);
}
