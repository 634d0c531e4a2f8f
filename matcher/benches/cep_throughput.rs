//! Matcher-only CEP throughput (no JSON decoding, no I/O): rows are generated in memory
//! by the same generator as `bench/cep/gen_events.py` (payments and logins over N users).
//!
//!     cargo bench -p matcher --bench cep_throughput            # full run
//!     WEIR_BENCH_EVENTS=200000 cargo bench -p matcher --bench cep_throughput
//!
//! Scenarios: 1 rule over 100k keys; 1,000 rules over 100k keys. Prints events/s on one
//! core and the state held per partial match.

use dsl::ast::*;
use dsl::plan::{LatePolicy, StreamDef};
use matcher::cep::{CepConfig, CepRule, CepRuleSet, PartitionState};
use matcher::expr::build::*;
use matcher::value::{Row, Value};
use std::time::Instant;

/// The allocator the `weir` binary ships with (server/src/main.rs): measure with it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
const MERCHANTS: usize = 200;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

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

/// Events over `keys` users, ~`rate` events per second of event time, 1% up to 500 ms out
/// of order; generated chunk by chunk from one random sequence (the stream does not
/// depend on the chunk size).
struct Gen {
    r: Rng,
    t: i64,
    keys: u64,
    rate: u64,
}

impl Gen {
    fn new(keys: u64, rate: u64, seed: u64) -> Gen {
        Gen {
            r: Rng(seed),
            t: 1_767_225_600_000,
            keys,
            rate: rate.max(1),
        }
    }

    fn events(&mut self, n: usize) -> Vec<(Row, i64)> {
        let step = (1000 / self.rate).max(1) as i64;
        let r = &mut self.r;
        (0..n)
            .map(|_| {
                self.t += if r.below(self.rate.max(1000) / 1000) == 0 {
                    step
                } else {
                    0
                };
                let t = self.t;
                let jitter = if r.below(100) == 0 {
                    r.below(500) as i64
                } else {
                    0
                };
                let action = ACTIONS[r.below(ACTIONS.len() as u64) as usize];
                let row = Row {
                    values: vec![
                        Value::String(format!("u{}", r.below(self.keys))),
                        Value::String(action.into()),
                        Value::String(format!("m{}", r.below(MERCHANTS as u64))),
                        Value::Float((r.below(100_000) as f64) / 100.0),
                        Value::String(COUNTRIES[r.below(COUNTRIES.len() as u64) as usize].into()),
                        Value::Timestamp(t - jitter),
                    ],
                    extra: Default::default(),
                };
                (row, t - jitter)
            })
            .collect()
    }
}

fn var(n: &str) -> Pattern {
    Pattern::Var(Ident::new(n))
}
fn rep(p: Pattern, min: u32, max: Option<u32>, greedy: bool) -> Pattern {
    Pattern::Repeat {
        inner: Box::new(p),
        min,
        max,
        greedy,
        span: Span::default(),
    }
}
fn eq(c: &str, v: &str) -> Expr {
    bin(BinaryOp::Eq, col(c), str(v))
}
fn rule(
    name: &str,
    pattern: Pattern,
    within_s: u64,
    defines: Vec<(&str, Expr)>,
    measures: Vec<(&str, Expr)>,
) -> CreateRule {
    CreateRule {
        or_replace: false,
        name: Ident::new(name),
        syntax: RuleSyntax::Native,
        from: Ident::new("events"),
        partition_by: vec![col("user_id")],
        order_by: None,
        measures: measures
            .into_iter()
            .map(|(a, e)| Measure {
                expr: e,
                alias: Ident::new(a),
                span: Span::default(),
            })
            .collect(),
        pattern,
        within: Some(Duration {
            millis: within_s * 1000,
            span: Span::default(),
        }),
        define: defines
            .into_iter()
            .map(|(v, c)| Define {
                var: Ident::new(v),
                cond: c,
                span: Span::default(),
            })
            .collect(),
        after_match: None,
    }
}

/// The single-rule scenario: brute force then success.
fn brute_force() -> CreateRule {
    rule(
        "brute_force",
        Pattern::Seq(vec![rep(var("f"), 3, None, true), var("s")]),
        60,
        vec![
            ("f", eq("action", "login_fail")),
            ("s", eq("action", "login_ok")),
        ],
        vec![("fails", func("COUNT", vec![star(Some("f"))]))],
    )
}

/// 1,000 dense rules in five shapes: most start on any event of their merchant, so a key
/// holds many partial matches (a stress case: ~1 match per 4 events).
fn many_rules(n: usize) -> Vec<CreateRule> {
    (0..n)
        .map(|i| {
            let m = format!("m{}", i % MERCHANTS);
            let name = format!("r{i}");
            let th = (i % 50 * 20) as f64;
            match i % 5 {
                0 => rule(
                    &name,
                    Pattern::Seq(vec![var("a"), var("b")]),
                    30,
                    vec![
                        (
                            "a",
                            bin(BinaryOp::And, eq("merchant", &m), eq("action", "pay")),
                        ),
                        ("b", eq("action", "refund")),
                    ],
                    vec![],
                ),
                1 => rule(
                    &name,
                    Pattern::FollowedBy(vec![var("a"), var("b")]),
                    60,
                    vec![
                        (
                            "a",
                            bin(
                                BinaryOp::And,
                                eq("merchant", &m),
                                bin(BinaryOp::Gt, col("amount"), float(th)),
                            ),
                        ),
                        (
                            "b",
                            bin(
                                BinaryOp::And,
                                eq("action", "pay"),
                                bin(
                                    BinaryOp::Gt,
                                    col("amount"),
                                    func("FIRST", vec![col("a.amount")]),
                                ),
                            ),
                        ),
                    ],
                    vec![("first", col("a.amount")), ("second", col("b.amount"))],
                ),
                2 => rule(
                    &name,
                    Pattern::Seq(vec![var("a"), rep(var("x"), 0, None, false), var("b")]),
                    120,
                    vec![
                        (
                            "a",
                            bin(BinaryOp::And, eq("merchant", &m), eq("action", "pw_change")),
                        ),
                        ("b", eq("action", "pay")),
                    ],
                    vec![],
                ),
                3 => rule(
                    &name,
                    Pattern::Seq(vec![var("a"), rep(var("b"), 2, None, true), var("c")]),
                    60,
                    vec![
                        ("a", eq("merchant", &m)),
                        ("b", eq("action", "login_fail")),
                        ("c", eq("action", "login_ok")),
                    ],
                    vec![("n", func("COUNT", vec![star(Some("b"))]))],
                ),
                _ => rule(
                    &name,
                    Pattern::Seq(vec![var("a"), var("b")]),
                    10,
                    vec![
                        (
                            "a",
                            bin(
                                BinaryOp::And,
                                eq("merchant", &m),
                                eq("country", COUNTRIES[i % 6]),
                            ),
                        ),
                        (
                            "b",
                            bin(
                                BinaryOp::NotEq,
                                col("country"),
                                func("FIRST", vec![col("a.country")]),
                            ),
                        ),
                    ],
                    vec![("from", col("a.country")), ("to", col("b.country"))],
                ),
            }
        })
        .collect()
}

/// CPU time of this thread in seconds, so a loaded machine does not skew figures.
/// (`CLOCK_THREAD_CPUTIME_ID` is exact; `/proc/thread-self/schedstat`, used before
/// 2026-11-22 19:40, is only updated at scheduler ticks, which biases short chunks.)
fn cpu_secs() -> Option<f64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(t.tv_sec as f64 + t.tv_nsec as f64 / 1e9)
}

/// 1,000 rules whose first step is selective, as production rules tend to be: a merchant
/// and an action (and often an amount or country) before any state is created.
fn selective_rules(n: usize) -> Vec<CreateRule> {
    let and = |a: Expr, b: Expr| bin(BinaryOp::And, a, b);
    (0..n)
        .map(|i| {
            let m = format!("m{}", i % MERCHANTS);
            let name = format!("s{i}");
            match i % 5 {
                0 => rule(
                    &name,
                    Pattern::Seq(vec![var("a"), var("b")]),
                    30,
                    vec![
                        ("a", and(eq("merchant", &m), eq("action", "refund"))),
                        ("b", eq("action", "refund")),
                    ],
                    vec![],
                ),
                1 => rule(
                    &name,
                    Pattern::FollowedBy(vec![var("a"), var("b")]),
                    60,
                    vec![
                        (
                            "a",
                            and(
                                eq("merchant", &m),
                                and(
                                    eq("action", "pay"),
                                    bin(BinaryOp::Gt, col("amount"), float(900.0)),
                                ),
                            ),
                        ),
                        (
                            "b",
                            and(
                                eq("action", "pay"),
                                bin(
                                    BinaryOp::Gt,
                                    col("amount"),
                                    func("FIRST", vec![col("a.amount")]),
                                ),
                            ),
                        ),
                    ],
                    vec![("first", col("a.amount")), ("second", col("b.amount"))],
                ),
                2 => rule(
                    &name,
                    Pattern::Seq(vec![var("a"), rep(var("x"), 0, None, false), var("b")]),
                    120,
                    vec![
                        ("a", and(eq("merchant", &m), eq("action", "pw_change"))),
                        (
                            "b",
                            and(
                                eq("action", "pay"),
                                bin(BinaryOp::Gt, col("amount"), float(500.0)),
                            ),
                        ),
                    ],
                    vec![],
                ),
                3 => rule(
                    &name,
                    Pattern::Seq(vec![var("a"), rep(var("b"), 2, None, true), var("c")]),
                    60,
                    vec![
                        ("a", and(eq("merchant", &m), eq("action", "login_fail"))),
                        ("b", eq("action", "login_fail")),
                        ("c", eq("action", "login_ok")),
                    ],
                    vec![("n", func("COUNT", vec![star(Some("b"))]))],
                ),
                _ => rule(
                    &name,
                    Pattern::Seq(vec![var("a"), var("b")]),
                    10,
                    vec![
                        (
                            "a",
                            and(
                                eq("merchant", &m),
                                and(eq("country", "NG"), eq("action", "pay")),
                            ),
                        ),
                        (
                            "b",
                            and(
                                eq("action", "pay"),
                                bin(
                                    BinaryOp::NotEq,
                                    col("country"),
                                    func("FIRST", vec![col("a.country")]),
                                ),
                            ),
                        ),
                    ],
                    vec![("from", col("a.country")), ("to", col("b.country"))],
                ),
            }
        })
        .collect()
}

fn run(label: &str, rules: Vec<CreateRule>, n: usize, keys: u64) {
    if let Ok(only) = std::env::var("WEIR_BENCH_ONLY") {
        if !label.contains(only.as_str()) {
            return;
        }
    }
    let s = stream();
    let cfg = CepConfig::default();
    let t0 = Instant::now();
    let compiled: Vec<CepRule> = rules
        .iter()
        .map(|r| CepRule::compile(r, &s, &cfg).expect("compile"))
        .collect();
    let set = CepRuleSet::new(compiled).expect("set");
    let compile_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let mut st = PartitionState::new(0, &set);
    let mut out = Vec::new();
    let mut matches = 0usize;
    let mut peak_pm = 0u64;
    let mut peak_bytes = 0usize;
    let (mut cpu, mut wall) = (0.0f64, 0.0f64);
    // Rows are generated in chunks outside the timed region (like a decoder feeding the
    // matcher), then moved into the matcher. A decoder hands over each row right after
    // decoding it, so the chunk is kept small enough for fresh rows to be in cache
    // (`WEIR_BENCH_CHUNK`, default 1,000; the 2026-11-22 17:00–18:10 figures used 20,000).
    let chunk: usize = std::env::var("WEIR_BENCH_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let mut offset = 0u64;
    let mut gen = Gen::new(keys, 20_000, 42);
    let mut next_peak_check = 0u64;
    while (offset as usize) < n {
        let m = chunk.min(n - offset as usize);
        let evs = gen.events(m);
        let t = Instant::now();
        let c0 = cpu_secs();
        for (row, ts) in evs {
            st.process_with(&set, row, ts, offset, s.max_delay_ms, s.late, &mut out);
            offset += 1;
            matches += out.len();
            out.clear();
        }
        let w = t.elapsed().as_secs_f64();
        wall += w;
        cpu += match (c0, cpu_secs()) {
            (Some(a), Some(b)) if b > a => b - a,
            _ => w,
        };
        if offset >= next_peak_check {
            next_peak_check = offset + 20_000;
            let c = st.counters();
            if c.live_partial_matches > peak_pm {
                peak_pm = c.live_partial_matches;
                peak_bytes = st.approx_state_bytes();
            }
        }
    }
    let c = st.counters();
    st.finish(&set, &mut out);
    matches += out.len();
    let per_pm = if peak_pm > 0 {
        peak_bytes as f64 / peak_pm as f64
    } else {
        0.0
    };
    println!(
        "{label}: {n} events in {cpu:.2} s CPU ({wall:.2} s wall) = {:.0} events/s per core; {} matches; compile {:.0} ms ({} distinct predicates); \
         peak {} partial matches, {} live keys at end, ~{:.0} bytes per partial match (excl. shared row data); dropped {}",
        n as f64 / cpu, matches, compile_ms, set.distinct_predicates(),
        peak_pm, c.live_keys, per_pm, c.partial_matches_dropped
    );
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("WEIR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 20_000 } else { 2_000_000 });
    let keys = 100_000;
    run("1 rule, 100k keys", vec![brute_force()], n, keys);
    run(
        "1,000 selective rules, 100k keys",
        selective_rules(1000),
        n,
        keys,
    );
    run("1,000 dense rules, 100k keys", many_rules(1000), n, keys);
}
