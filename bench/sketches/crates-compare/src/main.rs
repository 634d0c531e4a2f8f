//! Side-by-side measurement of candidate sketch crates. Prints a table; figures are recorded
//! in bench/README.md and the decisions in docs/metrics.md.
use std::alloc::{GlobalAlloc, Layout, System};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;
use sketches::Sketch;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Deterministic value stream (splitmix64).
fn values(seed: u64, n: usize) -> Vec<u64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .collect()
}

#[derive(Clone, Default)]
struct SipBuild;
impl BuildHasher for SipBuild {
    type Hasher = std::collections::hash_map::DefaultHasher;
    fn build_hasher(&self) -> Self::Hasher {
        std::collections::hash_map::DefaultHasher::new()
    }
}

trait Hll: Sized {
    const NAME: &'static str;
    fn new12() -> Self;
    fn add(&mut self, v: u64);
    fn est(&mut self) -> f64;
    fn merge_from(&mut self, o: &Self);
}

struct Hlp(hyperloglogplus::HyperLogLogPlus<u64, SipBuild>);
impl Hll for Hlp {
    const NAME: &'static str = "hyperloglogplus 0.4.1";
    fn new12() -> Self {
        Hlp(hyperloglogplus::HyperLogLogPlus::new(12, SipBuild).unwrap())
    }
    fn add(&mut self, v: u64) {
        use hyperloglogplus::HyperLogLog;
        self.0.insert(&v)
    }
    fn est(&mut self) -> f64 {
        use hyperloglogplus::HyperLogLog;
        self.0.count()
    }
    fn merge_from(&mut self, o: &Self) {
        self.0.merge(&o.0).unwrap()
    }
}

struct Ds(datasketches::hll::HllSketch);
impl Hll for Ds {
    const NAME: &'static str = "datasketches 0.6.0 (Hll8)";
    fn new12() -> Self {
        Ds(datasketches::hll::HllSketch::new(12, datasketches::hll::HllType::Hll8).unwrap())
    }
    fn add(&mut self, v: u64) {
        self.0.update(v)
    }
    fn est(&mut self) -> f64 {
        self.0.estimate()
    }
    fn merge_from(&mut self, o: &Self) {
        let mut u = datasketches::hll::HllUnion::new(12).unwrap();
        u.update(&self.0);
        u.update(&o.0);
        self.0 = u.to_sketch(datasketches::hll::HllType::Hll8);
    }
}

struct Own(sketches::hll::Hll);
impl Hll for Own {
    const NAME: &'static str = "weir sketches::hll";
    fn new12() -> Self {
        Own(sketches::hll::Hll::new(12).unwrap())
    }
    fn add(&mut self, v: u64) {
        self.0.insert(&v)
    }
    fn est(&mut self) -> f64 {
        self.0.estimate()
    }
    fn merge_from(&mut self, o: &Self) {
        self.0.merge(&o.0).unwrap()
    }
}

fn bytes_per<H: Hll>(distinct: usize, copies: usize) -> f64 {
    let vals = values(7, distinct);
    let before = live();
    let mut v: Vec<H> = Vec::with_capacity(copies);
    let after_vec = live();
    for c in 0..copies {
        let mut h = H::new12();
        for x in &vals {
            h.add(x ^ c as u64);
        }
        v.push(h);
    }
    let b = (live() - after_vec) as f64 / copies as f64 + std::mem::size_of::<H>() as f64;
    let _ = before;
    drop(v);
    b
}

fn hll_row<H: Hll>() {
    let n = 2_000_000;
    let vals = values(1, n);
    let mut h = H::new12();
    let t = Instant::now();
    for v in &vals {
        h.add(*v);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    let est = h.est();
    // error over seeds at 100k distinct
    let mut errs = Vec::new();
    for seed in 0..20u64 {
        let mut h = H::new12();
        for v in values(100 + seed, 100_000) {
            h.add(v);
        }
        errs.push((h.est() - 100_000.0) / 100_000.0);
    }
    let rmse = (errs.iter().map(|e| e * e).sum::<f64>() / errs.len() as f64).sqrt();
    // merge cost of two dense sketches
    let mut a = H::new12();
    let mut b = H::new12();
    for v in values(3, 200_000) {
        a.add(v);
    }
    for v in values(4, 200_000) {
        b.add(v);
    }
    let reps = 2000;
    let t = Instant::now();
    for _ in 0..reps {
        a.merge_from(&b);
    }
    let merge_us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    println!(
        "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.2} | {:+.3}% | {:.2}% |",
        H::NAME,
        ns,
        bytes_per::<H>(10, 200),
        bytes_per::<H>(300, 200),
        bytes_per::<H>(100_000, 20),
        merge_us,
        (est - n as f64) / n as f64 * 100.0,
        rmse * 100.0
    );
}

#[path = "../../../../sketches/tests/common/mod.rs"]
mod common;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

fn quantile_rows() {
    use datasketches::common::SearchCriteria;
    use datasketches::kll::{KllFloat, KllSketch};
    use sketches::quantiles::DDSketch;
    println!();
    println!("Quantiles, 1M values: DDSketch α=1% (ours) vs KLL k=200 (datasketches 0.6 Rust). Relative value error at p50/p95/p99/p99.9; rank error in parentheses");
    println!("| data | sketch | ns/update | bytes (serialized) | p50 | p95 | p99 | p99.9 |");
    println!("|---|---|---|---|---|---|---|---|");
    let n = 1_000_000;
    for (name, data) in [
        ("uniform", common::uniform(21, n)),
        ("lognormal", common::lognormal(22, n)),
        ("pareto a=1.2", common::pareto(23, n)),
    ] {
        let mut sorted = data.clone();
        sorted.sort_by(f64::total_cmp);
        let rank_of = |v: f64| sorted.partition_point(|&x| x <= v) as f64 / n as f64;
        let qs = [0.5, 0.95, 0.99, 0.999];
        let mut dd = DDSketch::new(0.01).unwrap();
        let t = Instant::now();
        for &v in &data {
            dd.add(v);
        }
        let dd_ns = t.elapsed().as_nanos() as f64 / n as f64;
        let cells: Vec<String> = qs
            .iter()
            .map(|&q| {
                let got = dd.quantile(q).unwrap();
                let want = common::exact_quantile(&sorted, q);
                format!("{:.3}% ({:.4})", rel(got, want) * 100.0, (rank_of(got) - q).abs())
            })
            .collect();
        println!("| {name} | DDSketch α=1% | {dd_ns:.1} | {} | {} |", dd.to_bytes().len(), cells.join(" | "));
        let mut kll = KllSketch::<KllFloat<f64>>::new(200).unwrap();
        let t = Instant::now();
        for &v in &data {
            kll.update(KllFloat::<f64>::new(v).unwrap());
        }
        let kll_ns = t.elapsed().as_nanos() as f64 / n as f64;
        let cells: Vec<String> = qs
            .iter()
            .map(|&q| {
                let got = kll.quantile(q, SearchCriteria::Inclusive).unwrap().unwrap().into_inner();
                let want = common::exact_quantile(&sorted, q);
                format!("{:.3}% ({:.4})", rel(got, want) * 100.0, (rank_of(got) - q).abs())
            })
            .collect();
        println!("| {name} | KLL k=200 | {kll_ns:.1} | {} | {} |", kll.serialize().len(), cells.join(" | "));
    }
}

fn topk_rows() {
    use datasketches::frequencies::{ErrorType, FrequentItemsSketch};
    use sketches::topk::{Item, TopK};
    use std::collections::HashMap;
    println!();
    println!("Top-10 on Zipf(1.1) over 100k items, 1M draws: recall of the true top 10, max |count − true|");
    println!("| sketch | ns/update | recall@10 | max abs count error in top 10 |");
    println!("|---|---|---|---|");
    let z = common::zipf(31, 100_000, 1.1, 1_000_000);
    let mut truth: HashMap<u64, u64> = HashMap::new();
    for &x in &z {
        *truth.entry(x).or_default() += 1;
    }
    let mut exact: Vec<(u64, u64)> = truth.iter().map(|(&a, &b)| (a, b)).collect();
    exact.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top: Vec<u64> = exact[..10].iter().map(|e| e.0).collect();
    let mut ours = TopK::new(100).unwrap();
    let t = Instant::now();
    for &x in &z {
        ours.insert(Item::Int(x as i64), 1);
    }
    let ns = t.elapsed().as_nanos() as f64 / z.len() as f64;
    let rep: Vec<(u64, u64)> = ours
        .top(10)
        .into_iter()
        .map(|e| match e.item {
            Item::Int(i) => (i as u64, e.count),
            _ => (0, 0),
        })
        .collect();
    let recall = top.iter().filter(|t| rep.iter().any(|r| r.0 == **t)).count();
    let err = rep.iter().map(|(i, c)| c.abs_diff(truth[i])).max().unwrap_or(0);
    println!("| weir SpaceSaving capacity 100 | {ns:.1} | {recall}/10 | {err} |");
    let mut fi = FrequentItemsSketch::<u64>::new(128).unwrap();
    let t = Instant::now();
    for &x in &z {
        fi.update(x);
    }
    let ns = t.elapsed().as_nanos() as f64 / z.len() as f64;
    let rows = fi.frequent_items(ErrorType::NoFalseNegatives);
    let rep: Vec<(u64, u64)> = rows.iter().take(10).map(|r| (*r.item(), r.estimate())).collect();
    let recall = top.iter().filter(|t| rep.iter().any(|r| r.0 == **t)).count();
    let err = rep.iter().map(|(i, c)| c.abs_diff(truth[i])).max().unwrap_or(0);
    println!("| datasketches FrequentItems max_map_size 128 | {ns:.1} | {recall}/10 | {err} |");
}

fn bloom_rows() {
    use sketches::bloom::Bloom;
    println!();
    println!("Bloom, 1M items at 1%: insert ns, false-positive rate on 1M absent items");
    let xs = values(41, 2_000_000);
    let mut ours = Bloom::new(1_000_000, 0.01).unwrap();
    let t = Instant::now();
    for x in &xs[..1_000_000] {
        ours.insert(x);
    }
    let ns = t.elapsed().as_nanos() as f64 / 1e6;
    let fp = xs[1_000_000..].iter().filter(|x| ours.contains(*x)).count();
    println!("| weir Bloom | {ns:.1} ns | FPR {:.4}% | {} B | mergeable |", fp as f64 / 1e4, ours.num_bits() / 8);
    let mut theirs = bloomfilter::Bloom::new_for_fp_rate(1_000_000, 0.01).unwrap();
    let t = Instant::now();
    for x in &xs[..1_000_000] {
        theirs.set(x);
    }
    let ns = t.elapsed().as_nanos() as f64 / 1e6;
    let fp = xs[1_000_000..].iter().filter(|x| theirs.check(*x)).count();
    println!("| bloomfilter 3.0.2 | {ns:.1} ns | FPR {:.4}% | {} B | no merge API |", fp as f64 / 1e4, theirs.len() / 8);
}

/// `--data DIR`: run our sketches on the files written by bench/sketches/compare.py and
/// print JSON (the script prints it next to Apache DataSketches' answers).
fn data_mode(dir: &str) {
    use sketches::hll::Hll;
    use sketches::quantiles::DDSketch;
    use sketches::topk::{Item, TopK};
    let read = |name: &str| std::fs::read(format!("{dir}/{name}")).unwrap();
    let u64s = |b: Vec<u8>| -> Vec<u64> {
        b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
    };
    let f64s = |b: Vec<u8>| -> Vec<f64> {
        b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
    };
    let mut out = serde_json::Map::new();
    let keys = u64s(read("distinct.u64"));
    let mut h = Hll::new(12).unwrap();
    let t = Instant::now();
    for k in &keys {
        h.insert(k);
    }
    let ns = t.elapsed().as_nanos() as f64 / keys.len() as f64;
    out.insert("hll".into(), serde_json::json!({"estimate": h.estimate(), "ns": ns, "bytes": h.to_bytes().len()}));
    for name in ["uniform", "lognormal", "pareto"] {
        let data = f64s(read(&format!("{name}.f64")));
        let mut d = DDSketch::new(0.01).unwrap();
        let t = Instant::now();
        for &v in &data {
            d.add(v);
        }
        let ns = t.elapsed().as_nanos() as f64 / data.len() as f64;
        let qs: Vec<f64> = [0.5, 0.95, 0.99, 0.999].iter().map(|&q| d.quantile(q).unwrap()).collect();
        out.insert(name.into(), serde_json::json!({"quantiles": qs, "ns": ns, "bytes": d.to_bytes().len()}));
    }
    let z = u64s(read("zipf.u64"));
    let mut t1 = TopK::new(100).unwrap();
    let t = Instant::now();
    for &x in &z {
        t1.insert(Item::Int(x as i64), 1);
    }
    let ns = t.elapsed().as_nanos() as f64 / z.len() as f64;
    let top: Vec<serde_json::Value> = t1
        .top(10)
        .into_iter()
        .map(|e| serde_json::json!([e.item.to_json(), e.count, e.error]))
        .collect();
    out.insert("topk".into(), serde_json::json!({"top": top, "ns": ns}));
    println!("{}", serde_json::Value::Object(out));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--data" {
        data_mode(&args[2]);
        return;
    }
    println!("HLL p=12 (lgK=12), u64 items; 2M distinct for ns/update");
    println!("| impl | ns/update | bytes @10 distinct | bytes @300 | bytes @100k | merge µs (dense) | err @2M | RMSE @100k (20 seeds) |");
    println!("|---|---|---|---|---|---|---|---|");
    hll_row::<Hlp>();
    hll_row::<Ds>();
    hll_row::<Own>();
    let _ = SipBuild.build_hasher().finish();
    quantile_rows();
    topk_rows();
    bloom_rows();
}
