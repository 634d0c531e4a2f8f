//! Differential: statement changes applied incrementally (`Program::apply` + state carried
//! over by `Engine::switch_program`) give the same outputs as compiling every version
//! from scratch (`Program::compile` + the state restored from a snapshot for the
//! statements whose checked entry is the same), for random sequences of adds, drops and
//! replaces at random log positions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dsl::check::Catalog;
use matcher::engine::{Engine, EngineConfig, Program};
use matcher::output::OutputRecord;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::Arc;

const STREAMS: &str = "
CREATE STREAM news (id INT, region STRING, title STRING, body STRING, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '2 seconds', key = 'region');
CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '1 second', key = 'card');
";

const WORDS: &[&str] = &[
    "storm", "flood", "bank", "rates", "election", "vote", "market", "crash", "rally", "river",
];

/// A random statement named `name` (one of a few shapes per kind).
fn statement(rng: &mut StdRng, name: &str, readable: &[String]) -> String {
    let w = |rng: &mut StdRng| WORDS[rng.gen_range(0..WORDS.len())];
    match rng.gen_range(0..9) {
        0 => format!("CREATE OR REPLACE SEARCH {name} AS FROM news WHERE body MATCHES '{}';", w(rng)),
        1 => format!(
            "CREATE OR REPLACE SEARCH {name} AS FROM news WHERE body MATCHES '\"{} {}\"' OR title MATCHES '{}';",
            w(rng),
            w(rng),
            w(rng)
        ),
        2 => format!(
            "CREATE OR REPLACE SEARCH {name} AS FROM news WHERE body MATCHES '{} AND {}*' AND region = 'r{}' EMIT id, region;",
            w(rng),
            &w(rng)[..3],
            rng.gen_range(0..3)
        ),
        3 => format!(
            "CREATE OR REPLACE SEARCH {name} AS FROM news WHERE title MATCHES '{}~1' AND id > {};",
            w(rng),
            rng.gen_range(0..50)
        ),
        4 => format!(
            "CREATE OR REPLACE RULE {name} AS FROM pay PARTITION BY card
               PATTERN (small{{2,}} big) WITHIN 1 MINUTE
               DEFINE small AS amount < {}, big AS amount > 500
               MEASURES COUNT(small.*) AS n, big.amount AS amount;",
            rng.gen_range(2..6)
        ),
        5 => format!(
            "CREATE OR REPLACE METRIC {name} AS SELECT card, COUNT(*) AS n, SUM(amount) AS total
               FROM pay GROUP BY card WINDOW TUMBLING (SIZE {} SECONDS);",
            rng.gen_range(5..20)
        ),
        6 => format!(
            "CREATE OR REPLACE METRIC {name} AS SELECT region, COUNT(*) AS n
               FROM news GROUP BY region WINDOW TUMBLING (SIZE 10 SECONDS);"
        ),
        _ => {
            // Something reading another statement's output, when there is one.
            let searches: Vec<&String> = readable.iter().filter(|n| n.starts_with('s')).collect();
            match searches.first() {
                Some(src) if rng.gen_bool(0.7) => format!(
                    "CREATE OR REPLACE METRIC {name} AS SELECT COUNT(*) AS n
                       FROM {src} WINDOW TUMBLING (SIZE 10 SECONDS);"
                ),
                _ => format!("CREATE OR REPLACE SEARCH {name} AS FROM news WHERE body MATCHES '{}';", w(rng)),
            }
        }
    }
}

fn event(rng: &mut StdRng, i: usize) -> (&'static str, serde_json::Value) {
    let ts = 1_000 * i as i64 + rng.gen_range(0..1_500);
    if rng.gen_bool(0.5) {
        let body: Vec<&str> = (0..8)
            .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
            .collect();
        let title: Vec<&str> = (0..3)
            .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
            .collect();
        (
            "news",
            json!({"id": i, "region": format!("r{}", rng.gen_range(0..3)),
                   "title": title.join(" "), "body": body.join(" "), "ts": ts}),
        )
    } else {
        let amount = if rng.gen_bool(0.2) {
            900.0
        } else {
            rng.gen_range(1.0..8.0)
        };
        (
            "pay",
            json!({"card": format!("c{}", rng.gen_range(0..4)), "amount": amount, "ts": ts}),
        )
    }
}

fn check(src: &str) -> Vec<dsl::ast::Statement> {
    let (st, diags) = dsl::parse::parse_statements(src);
    assert!(diags.is_empty(), "{src}: {diags:?}");
    st
}

/// Equal, or a panic naming the first difference.
fn same_outputs(a: &[OutputRecord], b: &[OutputRecord], at: &str) {
    if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
        panic!(
            "{at}: outputs differ at {i} (incremental {}, from scratch {}):\n  {:?}\n  {:?}",
            a.len(),
            b.len(),
            a.get(i),
            b.get(i)
        );
    }
}

fn run_seed(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let config = EngineConfig::default();
    let mut catalog = Catalog::new();
    catalog.apply(&check(STREAMS)).unwrap();
    let mut program = Arc::new(Program::compile(&catalog, &config).unwrap());
    let mut inc = Engine::with_program(program.clone(), 0);
    let mut scratch = Engine::new(&catalog, 0, &config).unwrap();
    let mut names: Vec<String> = Vec::new();
    let (mut out_inc, mut out_ref) = (Vec::<OutputRecord>::new(), Vec::<OutputRecord>::new());
    let mut offsets = std::collections::HashMap::new();
    for i in 0..400 {
        if rng.gen_bool(0.15) {
            // A batch of 1–3 changes.
            let mut src = String::new();
            for _ in 0..rng.gen_range(1..4) {
                let r = rng.gen_range(0..10);
                if r < 3 && !names.is_empty() {
                    let n = names[rng.gen_range(0..names.len())].clone();
                    let kind = match catalog.get(&n).map(|e| e.kind) {
                        Some(dsl::ast::ObjectKind::Rule) => "RULE",
                        Some(dsl::ast::ObjectKind::Metric) => "METRIC",
                        _ => "SEARCH",
                    };
                    src.push_str(&format!("DROP {kind} IF EXISTS {n};"));
                } else {
                    let prefix = ["s", "r", "m"][rng.gen_range(0..3)];
                    let n = if r < 6 && !names.is_empty() {
                        names[rng.gen_range(0..names.len())].clone()
                    } else {
                        format!("{prefix}{}", rng.gen_range(0..40))
                    };
                    src.push_str(&statement(&mut rng, &n, &names));
                }
            }
            if std::env::var("TRACE").is_ok() {
                eprintln!("event {i}: {src}");
            }
            let mut next = catalog.clone();
            if next.apply(&check(&src)).is_err() {
                continue; // e.g. a kind change or a drop of something read: refused
            }
            names = next
                .entries()
                .iter()
                .filter(|e| e.derived)
                .map(|e| e.name.clone())
                .collect();
            // Incremental.
            let p2 = Arc::new(program.apply(&next, &config).unwrap());
            inc.switch_program(p2.clone());
            // From scratch: compile, then restore the state of unchanged statements.
            let snap = scratch.snapshot();
            let mut fresh = Engine::new(&next, 0, &config).unwrap();
            let same = |n: &str| match (catalog.get_arc(n), next.get_arc(n)) {
                (Some(a), Some(b)) => Arc::ptr_eq(&a, &b),
                _ => false,
            };
            fresh.restore(snap, &same).unwrap();
            scratch = fresh;
            catalog = next;
            program = p2;
        }
        let (stream, ev) = event(&mut rng, i);
        let off = offsets.entry(stream).or_insert(0u64);
        let a = inc.ingest(stream, *off, &ev, 0, &mut out_inc);
        let b = scratch.ingest(stream, *off, &ev, 0, &mut out_ref);
        *off += 1;
        assert_eq!(a, b, "seed {seed} event {i}");
        same_outputs(&out_inc, &out_ref, &format!("seed {seed} after event {i}"));
    }
    inc.finish(&mut out_inc);
    scratch.finish(&mut out_ref);
    same_outputs(&out_inc, &out_ref, &format!("seed {seed} at the end"));
    assert!(!out_ref.is_empty());
}

#[test]
fn incremental_apply_equals_compiling_each_version() {
    for seed in 0..12 {
        run_seed(seed);
    }
}
