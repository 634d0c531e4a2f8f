//! The bodies of the cargo-fuzz targets (`fuzz/bodies/`) run as ordinary tests on stable:
//! over the stored corpus (`fuzz/corpus/<target>/`) and pseudo-random mutations of it
//! (bit flips, truncations, splices, inserted bytes). `WEIR_LONG_TESTS=1` runs 25×
//! more mutations. See docs/fuzzing.md.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../fuzz/bodies/decode.rs"]
mod decode;
#[path = "../fuzz/bodies/ndjson.rs"]
mod ndjson;
#[path = "../fuzz/bodies/query.rs"]
mod query;
#[path = "../fuzz/bodies/segment.rs"]
mod segment;

use std::path::Path;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no corpus in {}", dir.display());
    seeds
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A mutation of one seed (sometimes spliced with another).
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let n = rng.below(v.len());
                v.truncate(n);
            }
            2 => {
                let other = &seeds[rng.below(seeds.len())];
                let at = rng.below(v.len() + 1);
                let from = rng.below(other.len() + 1);
                v.splice(at..at, other[from..].iter().copied());
            }
            3 => {
                let at = rng.below(v.len() + 1);
                let b = *b"{}[]\":,\\\n\r 0e-.tnfu"
                    .get(rng.below(20))
                    .unwrap_or(&b'x');
                v.insert(at, b);
            }
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            _ => {
                let at = rng.below(v.len() + 1);
                v.insert(at, rng.next() as u8);
            }
        }
    }
    v
}

fn rounds(n: usize) -> usize {
    if std::env::var("WEIR_LONG_TESTS").is_ok() {
        n * 25
    } else {
        n
    }
}

fn drive(target: &str, n: usize, mut f: impl FnMut(&[u8])) {
    let seeds = corpus(target);
    for s in &seeds {
        f(s);
    }
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..rounds(n) {
        let input = mutate(&mut rng, &seeds);
        f(&input);
    }
}

#[test]
fn fuzz_body_event_decoder_over_corpus() {
    let dec = decode::decoder();
    drive("decode", 20_000, |d| decode::run(&dec, d));
}

#[test]
fn fuzz_body_ndjson_splitter_over_corpus() {
    let info = ndjson::info();
    drive("ndjson", 10_000, |d| ndjson::run(&info, d));
}

#[test]
fn fuzz_body_query_string_parser_over_corpus() {
    drive("query", 20_000, query::run);
}

#[test]
fn fuzz_body_segment_reader_over_corpus() {
    drive("segment", 300, segment::run);
}
