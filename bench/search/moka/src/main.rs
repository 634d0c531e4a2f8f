//! moka DIR [MAX_QUERIES] [MAX_DOCS]: the term-only queries of DIR/queries.tsv (terms, AND,
//! OR, NOT; column 3 = 1) in mokaccino 0.9, matched against DIR/docs.tsv. mokaccino has no
//! analysis, so each document's body is turned into its distinct weir tokens beforehand
//! (not timed); weir's own figures include its analysis.
use dsl::query::{parse_query, tokenize, Query};
use mokaccino::prelude::*;
use std::time::Instant;

fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn convert(q: &Query) -> mokaccino::prelude::Query {
    match q {
        Query::Term { term, .. } => "body".has_value(term.clone()),
        Query::And(cs) => cs
            .iter()
            .map(convert)
            .reduce(|a, b| a & b)
            .expect("non-empty"),
        Query::Or(cs) => cs
            .iter()
            .map(convert)
            .reduce(|a, b| a | b)
            .expect("non-empty"),
        Query::Not(c) => !convert(c),
        other => panic!("not term-only: {other}"),
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let dir = &a[1];
    let maxq: usize = a.get(2).map_or(usize::MAX, |s| s.parse().expect("n"));
    let maxd: usize = a.get(3).map_or(usize::MAX, |s| s.parse().expect("n"));
    let qtext = std::fs::read_to_string(format!("{dir}/queries.tsv")).expect("queries");
    let queries: Vec<mokaccino::prelude::Query> = qtext
        .lines()
        .filter(|l| l.ends_with("\t1"))
        .take(maxq)
        .map(|l| convert(&parse_query(l.split('\t').nth(1).expect("q")).expect("parse")))
        .collect();
    let dtext = std::fs::read_to_string(format!("{dir}/docs.tsv")).expect("docs");
    let docs: Vec<Vec<String>> = dtext
        .lines()
        .take(maxd)
        .map(|l| {
            let body = l.splitn(3, '\t').nth(2).expect("body");
            let mut ts: Vec<String> = tokenize(body).map(|(_, _, t)| t).collect();
            ts.sort();
            ts.dedup();
            ts
        })
        .collect();
    let t = Instant::now();
    let mut p = Percolator::default();
    let n = queries.len();
    for q in queries {
        p.add_query(q);
    }
    let reg = t.elapsed().as_secs_f64();
    let c0 = cpu_now();
    let t = Instant::now();
    let mut hits = 0usize;
    for d in &docs {
        let mut doc = Document::new();
        for tok in d {
            doc = doc.with_value("body", tok.clone());
        }
        hits += p.percolate(&doc).count();
    }
    let el = t.elapsed().as_secs_f64();
    let cpu = cpu_now() - c0;
    println!(
        "mokaccino queries={n} docs={} register_s={reg:.2} docs_per_s={:.0} docs_per_cpu_s={:.0} hits={hits}",
        docs.len(),
        docs.len() as f64 / el,
        docs.len() as f64 / cpu
    );
}
