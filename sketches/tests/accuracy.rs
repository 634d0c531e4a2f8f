//! Accuracy of every sketch against exact answers, and merge(a, b) vs sketch(a ∪ b).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sketches::bloom::Bloom;
use sketches::hll::Hll;
use sketches::quantiles::DDSketch;
use sketches::topk::{Item, TopK};
use sketches::Sketch;
use std::collections::HashMap;

#[test]
fn hll_error_within_three_standard_errors() {
    for p in [10u8, 12, 14] {
        let se = 1.04 / ((1u64 << p) as f64).sqrt();
        for n in [50u64, 2_000, 20_000, 200_000] {
            let mut sq = 0.0;
            let seeds = 8;
            for seed in 0..seeds {
                let mut h = Hll::new(p).unwrap();
                let base = seed * 1_000_000_007;
                for i in 0..n {
                    h.insert(&(base + i));
                }
                let err = (h.estimate() - n as f64) / n as f64;
                assert!(
                    err.abs() <= 3.0 * se,
                    "p={p} n={n} seed={seed}: error {err:.4} > 3·SE {:.4}",
                    3.0 * se
                );
                sq += err * err;
            }
            let rmse = (sq / seeds as f64).sqrt();
            assert!(
                rmse <= 1.5 * se,
                "p={p} n={n}: RMSE {rmse:.4} vs SE {se:.4}"
            );
        }
    }
}

#[test]
fn hll_merge_equals_union() {
    for (na, nb) in [(100u64, 300u64), (5_000, 50), (40_000, 40_000)] {
        let mut a = Hll::new(12).unwrap();
        let mut b = Hll::new(12).unwrap();
        let mut u = Hll::new(12).unwrap();
        for i in 0..na {
            a.insert(&i);
            u.insert(&i);
        }
        // half of b overlaps a
        for i in na / 2..na / 2 + nb {
            b.insert(&i);
            u.insert(&i);
        }
        let mut m = a.clone();
        m.merge(&b).unwrap();
        assert_eq!(m.estimate(), u.estimate(), "na={na} nb={nb}");
        let mut m2 = b.clone();
        m2.merge(&a).unwrap();
        assert_eq!(m2.estimate(), u.estimate(), "commutes");
    }
}

fn check_quantiles(name: &str, data: &[f64], alpha: f64) {
    let mut s = DDSketch::new(alpha).unwrap();
    for &v in data {
        s.add(v);
    }
    let mut sorted = data.to_vec();
    sorted.sort_by(f64::total_cmp);
    for q in [0.5, 0.95, 0.99, 0.999] {
        let want = exact_quantile(&sorted, q);
        let got = s.quantile(q).unwrap();
        let rel = (got - want).abs() / want.abs();
        assert!(
            rel <= alpha * (1.0 + 1e-9),
            "{name} q={q}: got {got}, exact {want}, rel err {rel} > α {alpha}"
        );
    }
    assert!(!s.collapsed());
}

#[test]
fn quantile_error_within_bound() {
    let n = 60_000;
    for alpha in [0.01, 0.02] {
        check_quantiles("uniform", &uniform(1, n), alpha);
        check_quantiles("lognormal", &lognormal(2, n), alpha);
        check_quantiles("pareto", &pareto(3, n), alpha);
    }
}

#[test]
fn quantile_merge_equals_union() {
    let a = lognormal(10, 30_000);
    let b = pareto(11, 20_000);
    let mut sa = DDSketch::new(0.01).unwrap();
    let mut sb = DDSketch::new(0.01).unwrap();
    let mut su = DDSketch::new(0.01).unwrap();
    for &v in &a {
        sa.add(v);
        su.add(v);
    }
    for &v in &b {
        sb.add(v);
        su.add(v);
    }
    sa.merge(&sb).unwrap();
    for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
        assert_eq!(sa.quantile(q), su.quantile(q), "q={q}");
    }
    assert_eq!(sa.count(), su.count());
    // And the merged sketch still meets the bound against the exact union.
    let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
    all.sort_by(f64::total_cmp);
    for q in [0.5, 0.95, 0.99, 0.999] {
        let want = exact_quantile(&all, q);
        let rel = (sa.quantile(q).unwrap() - want).abs() / want;
        assert!(rel <= 0.01 * (1.0 + 1e-9));
    }
}

#[test]
fn bloom_false_positive_rate() {
    for (cap, fpp) in [(10_000u64, 0.01), (20_000, 0.001), (5_000, 0.05)] {
        let mut b = Bloom::new(cap, fpp).unwrap();
        for i in 0..cap {
            b.insert(&format!("member-{i}"));
        }
        assert!((0..cap).all(|i| b.contains(&format!("member-{i}"))));
        let probes = 200_000u64;
        let fp = (0..probes)
            .filter(|i| b.contains(&format!("other-{i}")))
            .count();
        let rate = fp as f64 / probes as f64;
        assert!(rate <= 1.1 * fpp, "cap={cap} fpp={fpp}: measured {rate}");
        let est = b.approx_count();
        assert!(
            (est - cap as f64).abs() / (cap as f64) < 0.03,
            "approx_count {est}"
        );
    }
}

#[test]
fn bloom_merge_equals_union() {
    let mut a = Bloom::new(1000, 0.01).unwrap();
    let mut b = Bloom::new(1000, 0.01).unwrap();
    let mut u = Bloom::new(1000, 0.01).unwrap();
    for i in 0..400u64 {
        a.insert(&i);
        u.insert(&i);
    }
    for i in 300..800u64 {
        b.insert(&i);
        u.insert(&i);
    }
    a.merge(&b).unwrap();
    assert_eq!(
        a.to_bytes()[..],
        u.to_bytes()[..],
        "same bits and insert count"
    );
}

fn true_counts(data: &[u64]) -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    for &x in data {
        *m.entry(x).or_insert(0) += 1;
    }
    m
}

fn check_topk(t: &TopK, truth: &HashMap<u64, u64>, k: usize) {
    let mut exact: Vec<(u64, u64)> = truth.iter().map(|(&i, &c)| (i, c)).collect();
    exact.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let reported = t.top(k);
    let hits = exact[..k]
        .iter()
        .filter(|(i, _)| reported.iter().any(|e| e.item == Item::Int(*i as i64)))
        .count();
    assert!(hits as f64 / k as f64 >= 0.9, "recall {hits}/{k}");
    for e in &reported {
        let Item::Int(i) = e.item else { panic!() };
        let tc = truth.get(&(i as u64)).copied().unwrap_or(0);
        assert!(e.count >= tc, "count never underestimates");
        assert!(e.count - e.error <= tc, "count − error ≤ true count");
    }
}

#[test]
fn topk_recall_on_zipf() {
    let k = 10;
    for (s, seed) in [(1.1, 1u64), (0.9, 2), (1.5, 3)] {
        let data = zipf(seed, 20_000, s, 100_000);
        let mut t = TopK::new(TopK::default_capacity(k as u32)).unwrap();
        for &x in &data {
            t.insert(Item::Int(x as i64), 1);
        }
        check_topk(&t, &true_counts(&data), k);
    }
}

#[test]
fn topk_merge_within_bounds() {
    let k = 10;
    let a = zipf(5, 20_000, 1.1, 100_000);
    let b = zipf(6, 20_000, 1.1, 150_000);
    let cap = TopK::default_capacity(k as u32);
    let mut ta = TopK::new(cap).unwrap();
    let mut tb = TopK::new(cap).unwrap();
    for &x in &a {
        ta.insert(Item::Int(x as i64), 1);
    }
    // b's items shifted so the two streams' heavy hitters interleave
    for &x in &b {
        tb.insert(Item::Int((x * 3) as i64), 1);
    }
    ta.merge(&tb).unwrap();
    let all: Vec<u64> = a.iter().copied().chain(b.iter().map(|x| x * 3)).collect();
    assert_eq!(ta.total(), all.len() as u64);
    check_topk(&ta, &true_counts(&all), k);
}
