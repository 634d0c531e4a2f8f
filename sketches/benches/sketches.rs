//! Speed and size of every sketch, and SLIDING query latency over panes.
//! `cargo bench -p sketches --bench sketches` (figures go to bench/README.md).
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use sketches::accumulator::{build_state, AccSpec, Accumulator, AggState, Value};
use sketches::bloom::Bloom;
use sketches::hll::Hll;
use sketches::options::SketchOptions;
use sketches::quantiles::DDSketch;
use sketches::topk::{Item, ItemRef, TopK};
use sketches::window::{WindowConfig, WindowKind, Windowed};
use sketches::Sketch;
use std::hint::black_box;
use std::time::Instant;

fn ns_per<F: FnMut()>(n: usize, mut f: F) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn splitmix(n: usize, seed: u64) -> Vec<u64> {
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

fn updates() {
    println!("## updates (ns/update, release, one core)");
    let n = 2_000_000;
    let xs = splitmix(n, 1);

    // Best of 3 rounds (a fresh sketch each): the shared VM's load swings single runs.
    let t = (0..3)
        .map(|_| {
            let mut h = Hll::new(12).unwrap();
            let mut i = 0;
            ns_per(n, || {
                h.insert(&xs[i]);
                i += 1;
            })
        })
        .fold(f64::INFINITY, f64::min);
    println!("HLL p=12 insert(u64), 2M distinct: {t:.1} ns (best of 3)");
    let mut h = Hll::new(12).unwrap();
    let few = splitmix(300, 9);
    let mut i = 0;
    let t = ns_per(n, || {
        h.insert(&few[i % 300]);
        i += 1;
    });
    println!("HLL p=12 insert(u64), 300 distinct (sparse): {t:.1} ns");

    let mut b = Bloom::new(1_000_000, 0.01).unwrap();
    let mut i = 0;
    let t = ns_per(1_000_000, || {
        b.insert(&xs[i]);
        i += 1;
    });
    println!("Bloom 1M items @1% insert(u64): {t:.1} ns");
    let mut i = 0;
    let mut hits = 0;
    let t = ns_per(1_000_000, || {
        hits += b.contains(&xs[i + 1_000_000]) as u32;
        i += 1;
    });
    black_box(hits);
    println!("Bloom contains (absent): {t:.1} ns");

    let data = common::lognormal(3, n);
    let mut d = DDSketch::new(0.01).unwrap();
    let mut i = 0;
    let t = ns_per(n, || {
        d.add(data[i]);
        i += 1;
    });
    println!("DDSketch α=1% add(lognormal): {t:.1} ns");

    let z = common::zipf(4, 100_000, 1.1, n);
    let mut tk = TopK::new(TopK::default_capacity(10)).unwrap();
    let mut i = 0;
    let t = ns_per(n, || {
        tk.insert(Item::Int(z[i] as i64), 1);
        i += 1;
    });
    println!("TopK cap=100 insert(Zipf 1.1 over 100k): {t:.1} ns");
    let words: Vec<String> = z
        .iter()
        .take(500_000)
        .map(|v| format!("/path/{v}"))
        .collect();
    let mut tk = TopK::new(TopK::default_capacity(10)).unwrap();
    let mut i = 0;
    let t = ns_per(words.len(), || {
        tk.insert_ref(ItemRef::Str(&words[i]), 1);
        i += 1;
    });
    println!("TopK cap=100 insert_ref(string Zipf; allocates only for new items): {t:.1} ns");

    let specs = metric_specs();
    let mut st = build_state(&specs, &SketchOptions::default()).unwrap();
    let mut i = 0;
    let t = ns_per(1_000_000, || {
        st[0].update(Value::Null);
        st[1].update(Value::Int(xs[i] as i64 & 0xffff));
        st[2].update(Value::Float(data[i]));
        i += 1;
    });
    println!("accumulators COUNT(*)+APPROX_COUNT_DISTINCT+APPROX_PERCENTILE per row: {t:.1} ns");
}

/// Exact SUM/AVG (issue 19): the cost of order-independent sums against the plain float
/// addition they replaced.
fn exact_sums() {
    println!("## exact sums (ns, release, one core)");
    let n = 2_000_000;
    let data = common::lognormal(5, n);
    let mut plain = 0.0f64;
    let mut i = 0;
    let t0 = ns_per(n, || {
        plain += black_box(data[i]);
        i += 1;
    });
    black_box(plain);
    println!("plain f64 +=, lognormal: {t0:.1} ns");
    let mut s = AccSpec::Sum.build(&SketchOptions::default()).unwrap();
    let mut i = 0;
    let t = ns_per(n, || {
        s.update(Value::Float(data[i]));
        i += 1;
    });
    println!("SUM(float) update, lognormal: {t:.1} ns");
    let mut s = AccSpec::Sum.build(&SketchOptions::default()).unwrap();
    let mut i = 0;
    let t = ns_per(n, || {
        s.update(Value::Int(i as i64));
        i += 1;
    });
    println!("SUM(int) update: {t:.1} ns");
    let mut a = AccSpec::Avg.build(&SketchOptions::default()).unwrap();
    for x in &data[..1000] {
        a.update(Value::Float(*x));
    }
    let t = ns_per(100_000, || {
        black_box(a.result_json());
    });
    println!("AVG(float) result (rounding the exact sum): {t:.1} ns");
    let mut panes: Vec<Accumulator> = (0..64)
        .map(|k| {
            let mut p = AccSpec::Sum.build(&SketchOptions::default()).unwrap();
            for x in &data[k * 100..k * 100 + 100] {
                p.update(Value::Float(*x));
            }
            p
        })
        .collect();
    let mut total = AccSpec::Sum.build(&SketchOptions::default()).unwrap();
    let t = ns_per(64 * 1000, || {
        let p = panes
            .pop()
            .unwrap_or_else(|| AccSpec::Sum.build(&SketchOptions::default()).unwrap());
        total.merge(&p).unwrap();
        panes.insert(0, p);
    });
    println!("SUM pane merge: {t:.1} ns");
    println!(
        "SUM state: {} bytes (lognormal floats)",
        total.memory_bytes()
    );
}

fn metric_specs() -> Vec<AccSpec> {
    vec![
        AccSpec::CountStar,
        AccSpec::CountDistinct,
        AccSpec::Percentile {
            fractions: vec!["0.5".into(), "0.99".into()],
        },
    ]
}

fn sizes_and_merges() {
    println!("\n## sizes (memory_bytes) and merge cost");
    for n in [10u64, 300, 100_000] {
        let mut h = Hll::new(12).unwrap();
        for i in 0..n {
            h.insert(&i);
        }
        println!(
            "HLL p=12 with {n} distinct: {} B in memory, {} B serialized",
            h.memory_bytes(),
            h.to_bytes().len()
        );
    }
    let mut a = Hll::new(12).unwrap();
    let mut b = Hll::new(12).unwrap();
    for i in 0..100_000u64 {
        a.insert(&i);
        b.insert(&(i + 1_000_000));
    }
    // Best of 5 rounds: the shared VM's load swings single runs by 2x.
    let t = (0..5)
        .map(|_| ns_per(20_000, || a.merge(black_box(&b)).unwrap()))
        .fold(f64::INFINITY, f64::min);
    println!("HLL p=12 dense merge: {:.0} ns (best of 5 rounds)", t);

    let mut bl = Bloom::new(10_000, 0.01).unwrap();
    for i in 0..10_000u64 {
        bl.insert(&i);
    }
    let bl2 = bl.clone();
    println!(
        "Bloom 10k @1%: {} B ({} bits, {} hashes)",
        bl.memory_bytes(),
        bl.num_bits(),
        bl.num_hashes()
    );
    let t = ns_per(20_000, || bl.merge(black_box(&bl2)).unwrap());
    println!("Bloom 10k @1% merge: {t:.0} ns");

    for (name, data) in [
        ("uniform", common::uniform(5, 100_000)),
        ("lognormal", common::lognormal(6, 100_000)),
        ("pareto", common::pareto(7, 100_000)),
    ] {
        let mut d = DDSketch::new(0.01).unwrap();
        for &v in &data {
            d.add(v);
        }
        let d2 = d.clone();
        let t = ns_per(20_000, || d.merge(black_box(&d2)).unwrap());
        println!(
            "DDSketch α=1% {name} 100k values: {} B; merge {t:.0} ns",
            d.memory_bytes()
        );
    }
    let z = common::zipf(8, 100_000, 1.1, 500_000);
    let mut t1 = TopK::new(100).unwrap();
    let mut t2 = TopK::new(100).unwrap();
    for (i, &v) in z.iter().enumerate() {
        if i % 2 == 0 {
            t1.insert(Item::Int(v as i64), 1)
        } else {
            t2.insert(Item::Int(v as i64), 1)
        }
    }
    println!("TopK cap=100 (k=10): {} B", t1.memory_bytes());
    let mut m = t1.clone();
    let t = ns_per(2_000, || m.merge(black_box(&t2)).unwrap());
    println!("TopK cap=100 merge: {t:.0} ns");
}

fn sliding() {
    println!("\n## SLIDING 1 hour over 1-minute panes, 10k groups");
    let minute = 60_000i64;
    let groups = 10_000u64;
    let per_pane = 8;
    let proto = build_state(&metric_specs(), &SketchOptions::default()).unwrap();
    let mut cfg = WindowConfig::new(WindowKind::sliding(60 * minute));
    cfg.max_groups = 20_000;
    let mut w: Windowed<u64, Vec<Accumulator>> = Windowed::new(cfg, proto).unwrap();
    let lat = common::lognormal(9, 4096);
    let users = splitmix(4096, 10);
    let t0 = Instant::now();
    let mut n = 0usize;
    for pane in 0..60i64 {
        for g in 0..groups {
            for e in 0..per_pane {
                let ts = pane * minute + (e as i64 * 7_000);
                let k = (n * 31 + e) % 4096;
                w.add(&g, ts, |s| {
                    s[0].update(Value::Null);
                    s[1].update(Value::Int((users[k] % 5000) as i64));
                    s[2].update(Value::Float(lat[k]));
                })
                .unwrap();
                n += 1;
            }
        }
    }
    // One heavy group: 5000 distinct users per minute (dense HLLs).
    let heavy = u64::MAX;
    for pane in 0..60i64 {
        for e in 0..5000u64 {
            let ts = pane * minute + (e as i64 % minute);
            w.add(&heavy, ts, |s| {
                s[0].update(Value::Null);
                s[1].update(Value::Int((pane as u64 * 5000 + e) as i64));
                s[2].update(Value::Float(lat[e as usize % 4096]));
            })
            .unwrap();
        }
    }
    let load = t0.elapsed();
    println!(
        "loaded {n} events into {groups} groups × 60 panes in {:.2} s ({:.0} ns/event incl. window lookup); state ≈ {} MB",
        load.as_secs_f64(),
        load.as_nanos() as f64 / n as f64,
        w.memory_bytes() / 1_000_000
    );
    // The engine advances the watermark as events arrive: blocks the watermark has passed
    // get pre-merged then (once per 8 panes per group).
    let t = Instant::now();
    w.advance_watermark(60 * minute - 2_000).unwrap();
    println!(
        "advance_watermark to 59:58 (pre-merges 7 blocks × {} groups): {:.0} ms",
        groups + 1,
        t.elapsed().as_secs_f64() * 1000.0
    );
    let at = 60 * minute - 1;
    let sample: Vec<u64> = (0..1000u64).map(|i| (i * 7919) % groups).collect();
    let t = Instant::now();
    for g in &sample {
        black_box(w.query_sliding(g, at).unwrap());
    }
    let cold = t.elapsed().as_nanos() as f64 / sample.len() as f64 / 1000.0;
    let reps: usize = std::env::var("WEIR_BENCH_QUERY_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let t = Instant::now();
    for _ in 0..reps {
        for g in &sample {
            black_box(w.query_sliding(g, at).unwrap());
        }
    }
    let warm = t.elapsed().as_nanos() as f64 / (reps * sample.len()) as f64 / 1000.0;
    // Unaligned query time: partial blocks on both edges.
    let at2 = 60 * minute + 30 * minute / 2 + 1;
    let t = Instant::now();
    for g in &sample {
        black_box(w.query_sliding(g, at2).unwrap());
    }
    let unaligned = t.elapsed().as_nanos() as f64 / sample.len() as f64 / 1000.0;
    println!(
        "query one group (sparse HLLs, 8 events/pane): first {cold:.1} µs, again {warm:.1} µs, unaligned time {unaligned:.1} µs"
    );
    let reps = 200;
    let t = Instant::now();
    for _ in 0..reps {
        black_box(w.query_sliding(&heavy, at).unwrap());
    }
    let hw = t.elapsed().as_nanos() as f64 / reps as f64 / 1000.0;
    println!("query the heavy group (dense HLLs, 5000 distinct/pane): {hw:.1} µs (cached blocks)");
    let one = w.query_sliding(&heavy, at).unwrap().unwrap().1;
    println!(
        "  heavy group's 1-hour result: count {}, distinct ≈ {}, p99 {}",
        one[0].result_json(),
        one[1].result_json(),
        one[2].result_json()["0.99"]
    );
}

fn naive_sliding() {
    // The same 60-pane merge without pre-merged blocks, for comparison.
    let proto = build_state(&metric_specs(), &SketchOptions::default()).unwrap();
    let mut panes = Vec::new();
    for pane in 0..60u64 {
        let mut s = proto.clone();
        for e in 0..5000u64 {
            s[0].update(Value::Null);
            s[1].update(Value::Int((pane * 5000 + e) as i64));
            s[2].update(Value::Float((e % 977) as f64 + 0.5));
        }
        panes.push(s);
    }
    let reps = 200;
    let t = Instant::now();
    for _ in 0..reps {
        let mut acc = panes[0].clone();
        for p in &panes[1..] {
            acc.merge_from(p).unwrap();
        }
        black_box(acc);
    }
    println!(
        "  naive merge of 60 dense panes (no block cache): {:.1} µs",
        t.elapsed().as_nanos() as f64 / reps as f64 / 1000.0
    );
}

fn hopping() {
    println!(
        "\n## HOPPING (SIZE 5 min, ADVANCE 1 min), 10k groups, watermark advanced every second"
    );
    let minute = 60_000i64;
    let groups = 10_000u64;
    let proto = build_state(&metric_specs(), &SketchOptions::default()).unwrap();
    let mut cfg = WindowConfig::new(WindowKind::Hopping {
        size: 5 * minute,
        advance: minute,
    });
    cfg.max_groups = 20_000;
    let mut w: Windowed<u64, Vec<Accumulator>> = Windowed::new(cfg, proto).unwrap();
    let n = 2_000_000usize;
    let xs = splitmix(n, 12);
    let lat = common::lognormal(13, 4096);
    let span = 20 * minute;
    let mut closed = 0usize;
    let mut close_time = std::time::Duration::ZERO;
    let t0 = Instant::now();
    for (i, x) in xs.iter().enumerate() {
        let ts = i as i64 * span / n as i64;
        let g = x % groups;
        w.add(&g, ts, |s| {
            s[0].update(Value::Null);
            s[1].update(Value::Int((x >> 20) as i64 & 0xfff));
            s[2].update(Value::Float(lat[i % 4096]));
        })
        .unwrap();
        if i % 100 == 0 {
            let t = Instant::now();
            let c = w.advance_watermark(ts - 1000).unwrap();
            closed += c.len();
            for c in &c {
                black_box(c.state[2].result_json());
            }
            close_time += t.elapsed();
        }
    }
    let t = Instant::now();
    closed += w.close_all().unwrap().len();
    close_time += t.elapsed();
    let total = t0.elapsed();
    println!(
        "{n} events: {:.0} ns/event overall; {closed} windows closed (incl. rendering p50/p99), {:.2} µs per closed window",
        total.as_nanos() as f64 / n as f64,
        close_time.as_nanos() as f64 / closed as f64 / 1000.0
    );
}

fn session() {
    println!(
        "\n## SESSION (GAP 30 s), 10k groups, events in time order, watermark every 100 events"
    );
    let groups = 10_000u64;
    let proto = build_state(&metric_specs(), &SketchOptions::default()).unwrap();
    let mut cfg = WindowConfig::new(WindowKind::Session { gap: 30_000 });
    cfg.max_groups = 20_000;
    let mut w: Windowed<u64, Vec<Accumulator>> = Windowed::new(cfg, proto).unwrap();
    let n = 2_000_000usize;
    let xs = splitmix(n, 14);
    let lat = common::lognormal(15, 4096);
    // 20 minutes; each group is active in bursts (group = hash of time bucket and slot).
    let span = 20 * 60_000i64;
    let mut closed = 0usize;
    let t0 = Instant::now();
    for (i, x) in xs.iter().enumerate() {
        let ts = i as i64 * span / n as i64;
        let g = (x % 1000) + 1000 * ((ts / 120_000) as u64 % 10);
        w.add(&g, ts, |s| {
            s[0].update(Value::Null);
            s[1].update(Value::Int((x >> 20) as i64 & 0xfff));
            s[2].update(Value::Float(lat[i % 4096]));
        })
        .unwrap();
        if i % 100 == 0 {
            closed += w.advance_watermark(ts - 1000).unwrap().len();
        }
    }
    closed += w.close_all().unwrap().len();
    println!(
        "{n} events into {groups} groups: {:.0} ns/event overall, {closed} sessions closed",
        t0.elapsed().as_nanos() as f64 / n as f64
    );
}

fn main() {
    println!("sketches bench — {} (release)", env!("CARGO_PKG_VERSION"));
    // `cargo bench -p sketches --bench sketches -- sliding hopping` runs only those parts.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    if run("updates") {
        updates();
    }
    if run("exact") {
        exact_sums();
    }
    if run("sizes") {
        sizes_and_merges();
    }
    if run("sliding") {
        sliding();
        naive_sliding();
    }
    if run("hopping") {
        hopping();
    }
    if run("session") {
        session();
    }
}
