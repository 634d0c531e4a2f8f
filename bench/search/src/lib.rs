//! Shared bits of the search benchmarks: a deterministic news-like corpus and
//! media-monitoring queries, and TSV reading.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

const STOP: &[&str] = &[
    "the", "of", "and", "to", "a", "in", "that", "is", "was", "for", "on", "it", "with", "as",
    "he", "she", "at", "by", "this", "from", "they", "we", "be", "or", "an", "are", "not", "but",
    "said", "his", "her", "have", "has", "had", "its", "were", "which", "will", "their", "been",
    "would", "after", "new", "more", "year", "also", "than", "who", "over", "into",
];
const SYL: &[&str] = &[
    "ka", "lo", "mi", "ten", "ra", "vo", "sel", "un", "dor", "pa", "ri", "gon", "be", "tas", "mer",
    "li", "no", "ver", "sto", "ca", "dex", "fi", "la", "mon", "tre", "qui", "zen", "por", "al",
    "es",
];

pub struct Vocab {
    pub words: Vec<String>,
    /// Brand names (one or two words).
    pub brands: Vec<String>,
}

fn pseudo(mut i: usize, min_syl: usize) -> String {
    let mut s = String::new();
    let mut n = 0;
    loop {
        s.push_str(SYL[i % SYL.len()]);
        i /= SYL.len();
        n += 1;
        if i == 0 && n >= min_syl {
            break;
        }
    }
    s
}

impl Vocab {
    pub fn new(nwords: usize, nbrands: usize) -> Self {
        let mut words: Vec<String> = STOP.iter().map(|s| s.to_string()).collect();
        let mut i = 0;
        while words.len() < nwords {
            words.push(pseudo(i, 2));
            i += 1;
        }
        let mut rng = StdRng::seed_from_u64(99);
        let mut brands = Vec::new();
        for b in 0..nbrands {
            let mut name = pseudo(b * 7919 + 13, 3);
            // Capital-free distinct marker so brands do not collide with common words.
            name.push_str(["x", "on", "ia", "co", "ex"][b % 5]);
            if rng.gen_bool(0.3) {
                name.push(' ');
                name.push_str(["corp", "group", "motors", "labs", "bank", "foods"][b % 6]);
            }
            brands.push(name);
        }
        Vocab { words, brands }
    }
}

pub struct Gen {
    rng: StdRng,
    word_z: Zipf<f64>,
    brand_z: Zipf<f64>,
}

impl Gen {
    pub fn new(v: &Vocab, seed: u64) -> Self {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            word_z: Zipf::new(v.words.len() as u64, 1.05).expect("zipf"),
            brand_z: Zipf::new(v.brands.len() as u64, 0.9).expect("zipf"),
        }
    }

    fn word<'v>(&mut self, v: &'v Vocab) -> &'v str {
        &v.words[self.word_z.sample(&mut self.rng) as usize - 1]
    }

    fn brand<'v>(&mut self, v: &'v Vocab) -> &'v str {
        &v.brands[self.brand_z.sample(&mut self.rng) as usize - 1]
    }

    /// A mid-frequency context word (ranks 100..5000).
    fn context<'v>(&mut self, v: &'v Vocab) -> &'v str {
        let hi = v.words.len().min(5000);
        &v.words[self.rng.gen_range(100..hi)]
    }

    /// A ~1 KB news-like document: (title, body).
    pub fn doc(&mut self, v: &Vocab) -> (String, String) {
        let mut title = String::new();
        for i in 0..self.rng.gen_range(4..9) {
            if i > 0 {
                title.push(' ');
            }
            let w = if self.rng.gen_bool(0.15) {
                self.brand(v).to_string()
            } else {
                self.word(v).to_string()
            };
            title.push_str(&capitalize(&w));
        }
        let mut body = String::new();
        let mut sent = 0;
        while body.len() < 1000 {
            let w = if self.rng.gen_bool(0.012) {
                let b = self.brand(v);
                if self.rng.gen_bool(0.2) {
                    format!("{b}'s")
                } else {
                    b.to_string()
                }
            } else {
                self.word(v).to_string()
            };
            if sent == 0 {
                body.push_str(&capitalize(&w));
            } else {
                body.push_str(&w);
            }
            sent += 1;
            if sent > 8 && self.rng.gen_bool(0.12) {
                body.push_str(". ");
                sent = 0;
            } else if self.rng.gen_bool(0.05) {
                body.push_str(", ");
            } else {
                body.push(' ');
            }
        }
        body.push('.');
        (title, body)
    }

    /// Queries pick brands uniformly (many customers, many brands); documents mention
    /// them with a Zipf skew.
    fn qbrand<'v>(&mut self, v: &'v Vocab) -> &'v str {
        &v.brands[self.rng.gen_range(0..v.brands.len())]
    }

    fn brand_q(&mut self, v: &Vocab) -> String {
        let b = self.qbrand(v);
        if b.contains(' ') {
            format!("\"{b}\"")
        } else {
            b.to_string()
        }
    }

    /// A media-monitoring query, and whether it is term-only (terms, AND, OR, NOT).
    pub fn query(&mut self, v: &Vocab) -> (String, bool) {
        let r: f64 = self.rng.gen();
        if r < 0.25 {
            let b = self.brand_q(v);
            (b.clone(), !b.contains('"'))
        } else if r < 0.50 {
            let b = self.brand_q(v);
            let (x, y, z) = (self.context(v), self.context(v), self.context(v));
            (format!("{b} AND ({x} OR {y} OR {z})"), !b.contains('"'))
        } else if r < 0.62 {
            let b = self.brand_q(v);
            let (x, y) = (self.context(v), self.context(v));
            (format!("{b} -{x} -{y}"), !b.contains('"'))
        } else if r < 0.72 {
            let (a, b) = (self.brand_q(v), self.brand_q(v));
            let x = self.context(v);
            (
                format!("({a} OR {b}) AND {x}"),
                !a.contains('"') && !b.contains('"'),
            )
        } else if r < 0.80 {
            let b = self.qbrand(v);
            let first = b.split(' ').next().unwrap_or(b);
            let cut = first.len().saturating_sub(2).max(6).min(first.len());
            let x = self.context(v);
            (format!("{}* AND {x}", &first[..cut]), false)
        } else if r < 0.84 {
            let b = self.qbrand(v);
            let first = b.split(' ').next().unwrap_or(b);
            let mut w: Vec<char> = first.chars().collect();
            let i = self.rng.gen_range(1..w.len());
            w[i] = '?';
            (w.into_iter().collect(), false)
        } else if r < 0.92 {
            let b = self.qbrand(v);
            let first = b.split(' ').next().unwrap_or(b);
            let x = self.context(v);
            (format!("\"{first} {x}\"~5"), false)
        } else {
            let b = self.brand_q(v);
            let x = self.context(v);
            (format!("title:{b} AND {x}"), false)
        }
    }
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Read a TSV file into rows of columns.
pub fn read_tsv(path: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}
