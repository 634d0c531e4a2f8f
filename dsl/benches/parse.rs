//! Parser throughput: a generated file of 10,000 realistic statements (streams, rules in
//! both spellings, searches, metrics, drops), parsed repeatedly.
//! `cargo bench -p dsl --bench parse`

use std::fmt::Write;
use std::time::{Duration, Instant};

fn statements(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let _ = match i % 6 {
            0 => writeln!(
                s,
                "CREATE STREAM payments_{i} (card_id STRING, amount FLOAT, country STRING, \
                 merchant STRING, ts TIMESTAMP)\n  WITH (event_time = 'ts', max_delay = '5 seconds', late = 'drop');"
            ),
            1 => writeln!(
                s,
                "CREATE RULE card_testing_{i} AS\nFROM payments_{}\nPARTITION BY card_id\n\
                 PATTERN (small{{3,}} big) WITHIN 10 MINUTES\n\
                 DEFINE small AS amount < 5,\n       big AS amount > 500 AND country <> FIRST(small.country)\n\
                 MEASURES COUNT(small.*) AS probes, big.amount AS amount, big.ts AS at\n\
                 AFTER MATCH SKIP PAST LAST ROW;",
                i - 1
            ),
            2 => writeln!(
                s,
                "-- Flink spelling\nCREATE OR REPLACE RULE rising_{i} AS SELECT * FROM act MATCH_RECOGNIZE (\n  \
                 PARTITION BY uid ORDER BY ts\n  MEASURES FIRST(U.amount) AS lo, LAST(U.amount) AS hi, COUNT(U.amount) AS n\n  \
                 ONE ROW PER MATCH AFTER MATCH SKIP TO LAST D\n  PATTERN (S U{{3,}}? D) WITHIN INTERVAL '30' SECOND\n  \
                 DEFINE U AS LAST(U.amount, 1) IS NULL OR U.amount > LAST(U.amount, 1),\n         \
                 D AS D.amount <= LAST(U.amount) AND D.action IN ('buy', 'sell', 'hold')\n) AS T;"
            ),
            3 => writeln!(
                s,
                "CREATE SEARCH recall_{i} AS FROM news\nWHERE lang = 'en' AND body MATCHES '\"acme corp\" OR (acme AND (recall* OR lawsuit))'\n  \
                 AND (score BETWEEN 0.5 AND 1.0 OR source LIKE '%wire%') AND url ~ '^https://'\nEMIT headline, url AS link, lower(author) AS author;"
            ),
            4 => writeln!(
                s,
                "CREATE METRIC checkout_{i} AS\nSELECT country, COUNT(*) AS requests,\n       \
                 APPROX_COUNT_DISTINCT(user_id) AS users,\n       APPROX_PERCENTILE(latency_ms, 0.5, 0.95, 0.99) AS latency\n\
                 FROM requests WHERE status >= 500 AND NOT (path LIKE '/health%')\nGROUP BY country\n\
                 WINDOW HOPPING (SIZE 5 MINUTES, ADVANCE 1 MINUTE) WITH (max_groups = 10000, hll_precision = 14);"
            ),
            _ => writeln!(s, "DROP RULE IF EXISTS card_testing_{};", i - 4),
        };
    }
    s
}

fn main() {
    let n = 10_000;
    let src = statements(n);
    let (stmts, diags) = dsl::parse::parse_statements(&src);
    assert!(diags.is_empty(), "{:?}", &diags[..diags.len().min(3)]);
    assert_eq!(stmts.len(), n);
    drop(stmts);

    let mut best = Duration::MAX;
    let mut runs = 0;
    let start = Instant::now();
    while runs < 5 || (start.elapsed() < Duration::from_secs(3) && runs < 50) {
        let t = Instant::now();
        let (stmts, _) = dsl::parse::parse_statements(&src);
        let e = t.elapsed();
        std::hint::black_box(stmts);
        best = best.min(e);
        runs += 1;
    }
    let secs = best.as_secs_f64();
    println!(
        "parse: {n} statements, {:.2} MB in {:.1} ms (best of {runs}) = {:.0} statements/s, {:.1} MB/s",
        src.len() as f64 / 1e6,
        secs * 1e3,
        n as f64 / secs,
        src.len() as f64 / 1e6 / secs
    );

    // Printing (canonical text) of the same statements.
    let (stmts, _) = dsl::parse::parse_statements(&src);
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..5 {
        let t = Instant::now();
        out = 0;
        for s in &stmts {
            out += s.to_string().len();
        }
        best = best.min(t.elapsed());
    }
    let e = best.as_secs_f64();
    println!(
        "print: {n} statements in {:.1} ms (best of 5) = {:.0} statements/s ({out} bytes)",
        e * 1e3,
        n as f64 / e
    );
}
