//! Data generators shared by the accuracy tests and benchmarks.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn uniform(seed: u64, n: usize) -> Vec<f64> {
    let mut r = rng(seed);
    (0..n).map(|_| r.gen_range(0.0..1000.0)).collect()
}

/// exp(N(μ=3, σ=1.5)): latency-like.
pub fn lognormal(seed: u64, n: usize) -> Vec<f64> {
    let mut r = rng(seed);
    (0..n)
        .map(|_| {
            let u1: f64 = r.gen_range(f64::EPSILON..1.0);
            let u2: f64 = r.gen();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            (3.0 + 1.5 * z).exp()
        })
        .collect()
}

/// Pareto(x_m = 1, a = 1.2): heavy-tailed.
pub fn pareto(seed: u64, n: usize) -> Vec<f64> {
    let mut r = rng(seed);
    (0..n)
        .map(|_| {
            let u: f64 = r.gen_range(f64::EPSILON..1.0);
            u.powf(-1.0 / 1.2)
        })
        .collect()
}

/// Zipf(s) over 1..=n_items, `draws` samples.
pub fn zipf(seed: u64, n_items: usize, s: f64, draws: usize) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(n_items);
    let mut acc = 0.0;
    for k in 1..=n_items {
        acc += 1.0 / (k as f64).powf(s);
        cdf.push(acc);
    }
    let mut r = rng(seed);
    (0..draws)
        .map(|_| {
            let u = r.gen::<f64>() * acc;
            cdf.partition_point(|&c| c < u) as u64 + 1
        })
        .collect()
}

/// The exact sample value at the rank the sketches use: sorted[floor(q·(n−1))].
pub fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
}
