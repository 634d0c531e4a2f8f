//! gen OUT_DIR NQUERIES NDOCS: writes OUT_DIR/queries.tsv (name, query, term_only) and
//! OUT_DIR/docs.tsv (id, title, body). `NBRANDS` (default 20000) sets how many distinct
//! brands exist: with 20k brands, 1M queries put ~50 queries on every brand and the most
//! mentioned brands match dozens of queries per document; `NBRANDS=200000` is the
//! lower-hit-rate variant.
use std::io::Write;
use weir_search_bench::{Gen, Vocab};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (out, nq, nd) = (
        &a[1],
        a[2].parse::<usize>().unwrap(),
        a[3].parse::<usize>().unwrap(),
    );
    std::fs::create_dir_all(out).unwrap();
    let nbrands = std::env::var("NBRANDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let v = Vocab::new(30_000, nbrands);
    let mut g = Gen::new(&v, 1);
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(format!("{out}/queries.tsv")).unwrap());
    for i in 0..nq {
        let (q, term_only) = g.query(&v);
        writeln!(f, "q{i}\t{q}\t{}", u8::from(term_only)).unwrap();
    }
    let mut g = Gen::new(&v, 2);
    let mut f = std::io::BufWriter::new(std::fs::File::create(format!("{out}/docs.tsv")).unwrap());
    for i in 0..nd {
        let (t, b) = g.doc(&v);
        writeln!(f, "{i}\t{t}\t{b}").unwrap();
    }
}
