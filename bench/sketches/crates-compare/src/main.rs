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

fn main() {
    println!("HLL p=12 (lgK=12), u64 items; 2M distinct for ns/update");
    println!("| impl | ns/update | bytes @10 distinct | bytes @300 | bytes @100k | merge µs (dense) | err @2M | RMSE @100k (20 seeds) |");
    println!("|---|---|---|---|---|---|---|---|");
    hll_row::<Hlp>();
    hll_row::<Ds>();
    hll_row::<Own>();
    let _ = SipBuild.build_hasher().finish();
}
