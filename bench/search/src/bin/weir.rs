//! weir DIR [MAX_QUERIES] [all|terms] [MAX_DOCS]: registers DIR/queries.tsv in one SearchIndex, matches every
//! document of DIR/docs.tsv on one thread; prints registration time, bytes per stored
//! query (live heap growth), docs/s, p50/p99 per-document latency and hits. Matching uses
//! `match_document_with` (no allocation per hit); OWNED=1 uses `match_document`.
//! SET=1: the same through a `SearchSet` (registered by `with_changes` in batches of
//! 10,000, matched through the handle), then 100 single additions and 100 single drops
//! timed (p50/p99 ms), each making the next version.
use matcher::search::{
    Document, Hit, HitRef, SearchIndex, SearchScratch, SearchSet, SearchSpec, SearchStats,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;
use weir_search_bench::read_tsv;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}
#[global_allocator]
static A: Counting = Counting;

/// The bare index or a versioned set over it.
enum Idx {
    Index(SearchIndex),
    Set(SearchSet),
}

impl Idx {
    fn match_document(&self, sc: &mut SearchScratch, d: &Document<'_>) -> Vec<Hit> {
        match self {
            Idx::Index(i) => i.match_document(sc, d, &mut |_, _| true),
            Idx::Set(s) => s.match_document(sc, d, &mut |_, _| true),
        }
    }
    fn match_document_with(
        &self,
        sc: &mut SearchScratch,
        d: &Document<'_>,
        on_hit: &mut dyn FnMut(HitRef<'_>),
    ) {
        match self {
            Idx::Index(i) => i.match_document_with(sc, d, &mut |_, _| true, on_hit),
            Idx::Set(s) => s.match_document_with(sc, d, &mut |_, _| true, on_hit),
        }
    }
    fn stats(&self) -> SearchStats {
        match self {
            Idx::Index(i) => i.stats(),
            Idx::Set(s) => s.stats(),
        }
    }
}

fn spec(q: &str) -> SearchSpec {
    SearchSpec::matches("body", q).unwrap_or_else(|e| panic!("{q}: {e}"))
}

/// p50 and p99 of durations in ms.
fn p50_p99(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    (at(0.5), at(0.99))
}

/// CPU time of this thread, seconds.
fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let dir = &a[1];
    let maxq: usize = a.get(2).map_or(usize::MAX, |s| s.parse().unwrap());
    let term_only = a.get(3).is_some_and(|s| s == "terms");
    let queries: Vec<Vec<String>> = read_tsv(&format!("{dir}/queries.tsv"))
        .into_iter()
        .filter(|r| !term_only || r[2] == "1")
        .take(maxq)
        .collect();
    let maxd: usize = a.get(4).map_or(usize::MAX, |s| s.parse().unwrap());
    let mut docs = read_tsv(&format!("{dir}/docs.tsv"));
    docs.truncate(maxd);
    let before = LIVE.load(Ordering::Relaxed);
    let t = Instant::now();
    let use_set = std::env::var("SET").is_ok_and(|v| v == "1");
    let reg_c0 = cpu_now();
    let mut sc = SearchScratch::default();
    let mut idx = if use_set {
        let mut set: SearchSet = SearchSet::default();
        for batch in queries.chunks(10_000) {
            let add = batch.iter().map(|r| (r[0].clone(), spec(&r[1]))).collect();
            set = set
                .with_changes(&[], add)
                .unwrap_or_else(|(n, e)| panic!("{n}: {e}"));
        }
        Idx::Set(set)
    } else {
        let mut idx: SearchIndex = SearchIndex::default();
        for r in &queries {
            idx.add(&r[0], spec(&r[1]))
                .unwrap_or_else(|e| panic!("{}: {e}", r[1]));
        }
        idx.prepare();
        Idx::Index(idx)
    };
    let reg = t.elapsed();
    let reg_cpu = cpu_now() - reg_c0;
    let bytes = (LIVE.load(Ordering::Relaxed) - before) as f64 / queries.len() as f64;
    // Warm up on the first docs, then measure all.
    for r in docs.iter().take(200) {
        let d = Document::new().with("title", &r[1]).with("body", &r[2]);
        idx.match_document(&mut sc, &d);
    }
    let mut lat = Vec::with_capacity(docs.len());
    let mut hits = 0usize;
    let mut hl_bytes = 0usize;
    // OWNED=1: the allocating `match_document` (one `Hit` with a highlight map per hit).
    let owned = std::env::var("OWNED").is_ok_and(|v| v == "1");
    // CHURN=K (with SET=1): every K documents, one search with a prefix or wildcard is
    // added (a new version, the old handle let go), so every field cache of patterns
    // starts over as it does in a worker after such a change.
    let churn: usize = std::env::var("CHURN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let pattern_queries: Vec<&String> = queries
        .iter()
        .map(|r| &r[1])
        .filter(|q| q.contains('*') || q.contains('?'))
        .collect();
    let t = Instant::now();
    let c0 = cpu_now();
    for (i, r) in docs.iter().enumerate() {
        if let (Idx::Set(set), true) = (&mut idx, churn > 0 && i % churn.max(1) == 0) {
            let q = pattern_queries[i % pattern_queries.len().max(1)];
            *set = set
                .with_changes(&[], vec![(format!("churn{i}"), spec(q))])
                .unwrap_or_else(|(n, e)| panic!("{n}: {e}"));
        }
        let t0 = Instant::now();
        let d = Document::new().with("title", &r[1]).with("body", &r[2]);
        if owned {
            hits += idx.match_document(&mut sc, &d).len();
        } else {
            // The borrowing API; the highlight ranges are read so they are not skipped.
            idx.match_document_with(&mut sc, &d, &mut |h| {
                hits += 1;
                hl_bytes += h.ranges().map(|(_, a, b)| b - a).sum::<usize>();
            });
        }
        lat.push(t0.elapsed().as_nanos() as u64);
    }
    let el = t.elapsed().as_secs_f64();
    let cpu = cpu_now() - c0;
    // PROFILE_PASSES=N: match the documents N more times after the measurement (for
    // `perf record`, so the profile is the matching, not the registration).
    let passes: usize = std::env::var("PROFILE_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for _ in 0..passes {
        for r in &docs {
            let d = Document::new().with("title", &r[1]).with("body", &r[2]);
            if owned {
                idx.match_document(&mut sc, &d);
            } else {
                idx.match_document_with(&mut sc, &d, &mut |h| {
                    hl_bytes += h.ranges().count();
                });
            }
        }
    }
    let bytes_after = (LIVE.load(Ordering::Relaxed) - before) as f64 / queries.len() as f64;
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    let st = idx.stats();
    let ms = sc.stats();
    println!(
        "weir{} queries={} docs={} register_s={:.2} register_cpu_s={:.2} bytes_per_query={:.0} bytes_per_query_after_docs={:.0} docs_per_s={:.0} docs_per_cpu_s={:.0} p50_us={:.1} p99_us={:.1} hits={} candidates_per_doc={:.1} always={} patterns={} pattern_cache_resets={}",
        if use_set { "-set" } else { "" },
        queries.len(),
        docs.len(),
        reg.as_secs_f64(),
        reg_cpu,
        bytes,
        bytes_after,
        docs.len() as f64 / el,
        docs.len() as f64 / cpu,
        pct(0.5),
        pct(0.99),
        hits,
        ms.verified as f64 / ms.docs as f64,
        st.always_checked,
        st.patterns,
        ms.pattern_cache_resets
    );
    std::hint::black_box(hl_bytes);
    if let Idx::Set(set) = &idx {
        // One search added, then one dropped, 100 times each: the time of `with_changes`
        // (the next version built; the previous handle let go as a worker switching
        // would), with the queries of the mix under new names.
        let mut set = set.clone();
        let (mut add_ms, mut drop_ms) = (Vec::new(), Vec::new());
        let names: Vec<String> = (0..100).map(|i| format!("chg{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            let q = &queries[(i * 7919) % queries.len()][1];
            let sp = spec(q);
            let t0 = Instant::now();
            set = set
                .with_changes(&[], vec![(n.clone(), sp)])
                .unwrap_or_else(|(n, e)| panic!("{n}: {e}"));
            add_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        for n in &names {
            let t0 = Instant::now();
            set = set
                .with_changes(&[n.as_str()], vec![])
                .unwrap_or_else(|(n, e)| panic!("{n}: {e}"));
            drop_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let (a50, a99) = p50_p99(add_ms);
        let (d50, d99) = p50_p99(drop_ms);
        println!(
            "weir-set changes at {}: add one p50_ms={a50:.4} p99_ms={a99:.4}; drop one p50_ms={d50:.4} p99_ms={d99:.4}",
            queries.len()
        );
        std::mem::forget(set);
    }
    // Exit without freeing the index (not part of any figure; saves seconds at 1M).
    std::mem::forget(idx);
    std::mem::forget(queries);
}
