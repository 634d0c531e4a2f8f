//! A mergeable Bloom filter for APPROX_SET.
//!
//! Why our own and not the `bloomfilter` crate: window panes must be merged (the union of
//! same-size filters is the bitwise OR), and `bloomfilter` 3.0 has no union/merge API; it
//! also hashes with a per-filter random SipHash seed by default, so two filters built in
//! different processes (or before and after a checkpoint) would not line up bit for bit.
//!
//! Parameters: expected items `n` and target false-positive rate `p` give
//! `m = ceil(-n ln p / ln²2)` bits and `k = round(m/n · ln 2)` hash functions. Bit positions
//! come from double hashing of the stable 64-bit item hash (Kirsch–Mitzenmacher), mapped to
//! `0..m` by a multiply-shift (no power-of-two rounding, so memory matches the target).
//! The bit array is allocated on the first insert: an empty pane costs a few bytes.

use crate::hash::{fmix64, hash_of};
use crate::{Sketch, SketchError};
use serde::{Deserialize, Serialize};
use std::hash::Hash;

pub const DEFAULT_FPP: f64 = 0.01;
pub const DEFAULT_CAPACITY: u64 = 10_000;
/// Upper bound on one filter's size (bits): 2^33 bits = 1 GiB.
pub const MAX_BITS: u64 = 1 << 33;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bloom {
    m: u64,
    k: u32,
    /// Number of insert calls (an upper bound on distinct items).
    inserts: u64,
    /// Empty until the first insert.
    bits: Vec<u64>,
}

impl Bloom {
    /// A filter sized for `capacity` items at false-positive rate `fpp`.
    pub fn new(capacity: u64, fpp: f64) -> Result<Self, SketchError> {
        if !(fpp > 0.0 && fpp < 1.0) {
            return Err(SketchError::InvalidParameter(format!(
                "bloom_fpp must be between 0 and 1 (exclusive), got {fpp}"
            )));
        }
        if capacity == 0 {
            return Err(SketchError::InvalidParameter(
                "bloom_capacity must be at least 1".into(),
            ));
        }
        let ln2 = std::f64::consts::LN_2;
        let m = (-(capacity as f64) * fpp.ln() / (ln2 * ln2))
            .ceil()
            .max(64.0);
        if m > MAX_BITS as f64 {
            return Err(SketchError::InvalidParameter(format!(
                "bloom filter for {capacity} items at fpp {fpp} needs {m} bits (max {MAX_BITS})"
            )));
        }
        let m = m as u64;
        let k = ((m as f64 / capacity as f64) * ln2)
            .round()
            .clamp(1.0, 30.0) as u32;
        Ok(Bloom {
            m,
            k,
            inserts: 0,
            bits: Vec::new(),
        })
    }

    pub fn num_bits(&self) -> u64 {
        self.m
    }

    pub fn num_hashes(&self) -> u32 {
        self.k
    }

    #[inline(always)]
    fn positions(&self, h: u64) -> impl Iterator<Item = u64> {
        let h1 = h;
        let h2 = fmix64(h ^ 0x5bd1_e995_5bd1_e995) | 1;
        let m = self.m;
        (0..self.k as u64).map(move |i| {
            let x = h1.wrapping_add(i.wrapping_mul(h2));
            ((x as u128 * m as u128) >> 64) as u64
        })
    }

    #[inline]
    pub fn insert<T: Hash + ?Sized>(&mut self, item: &T) {
        self.insert_hash(hash_of(item))
    }

    pub fn insert_hash(&mut self, h: u64) {
        if self.bits.is_empty() {
            self.bits = vec![0u64; self.m.div_ceil(64) as usize];
        }
        self.inserts += 1;
        let positions: [u64; 30] = {
            let mut a = [0u64; 30];
            for (slot, p) in a.iter_mut().zip(self.positions(h)) {
                *slot = p;
            }
            a
        };
        for &p in &positions[..self.k as usize] {
            if let Some(w) = self.bits.get_mut((p / 64) as usize) {
                *w |= 1u64 << (p % 64);
            }
        }
    }

    /// Whether the item may have been inserted (false positives at about the target rate;
    /// never a false negative).
    #[inline]
    pub fn contains<T: Hash + ?Sized>(&self, item: &T) -> bool {
        self.contains_hash(hash_of(item))
    }

    pub fn contains_hash(&self, h: u64) -> bool {
        if self.bits.is_empty() {
            return false;
        }
        self.positions(h).all(|p| {
            self.bits
                .get((p / 64) as usize)
                .is_some_and(|w| w & (1u64 << (p % 64)) != 0)
        })
    }

    /// Estimated number of distinct items inserted (Swamidass & Baldi 2007):
    /// `-m/k · ln(1 - X/m)` with `X` set bits.
    pub fn approx_count(&self) -> f64 {
        let x: u64 = self.bits.iter().map(|w| w.count_ones() as u64).sum();
        if x == 0 {
            return 0.0;
        }
        if x >= self.m {
            return self.inserts as f64;
        }
        let m = self.m as f64;
        let est = -m / self.k as f64 * (1.0 - x as f64 / m).ln();
        est.min(self.inserts as f64)
    }
}

impl Sketch for Bloom {
    const KIND: u8 = 2;

    fn merge(&mut self, other: &Self) -> Result<(), SketchError> {
        if self.m != other.m || self.k != other.k {
            return Err(SketchError::Incompatible(format!(
                "Bloom filters of different shape ({} bits/{} hashes vs {}/{})",
                self.m, self.k, other.m, other.k
            )));
        }
        if other.bits.is_empty() {
            return Ok(());
        }
        if self.bits.is_empty() {
            self.bits = other.bits.clone();
        } else {
            for (a, b) in self.bits.iter_mut().zip(&other.bits) {
                *a |= b;
            }
        }
        self.inserts += other.inserts;
        Ok(())
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.bits.capacity() * 8
    }

    fn validate(&self) -> Result<(), SketchError> {
        if self.m == 0 || self.m > MAX_BITS || self.k == 0 || self.k > 30 {
            return Err(SketchError::Decode("bad Bloom parameters".into()));
        }
        if !self.bits.is_empty() && self.bits.len() as u64 != self.m.div_ceil(64) {
            return Err(SketchError::Decode(
                "Bloom bit array has the wrong size".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_empty_is_small() {
        let mut b = Bloom::new(1000, 0.01).unwrap();
        assert!(b.memory_bytes() < 64);
        assert!(!b.contains("x"));
        for i in 0..1000u64 {
            b.insert(&i);
        }
        assert!((0..1000u64).all(|i| b.contains(&i)));
    }

    #[test]
    fn bad_parameters() {
        assert!(Bloom::new(0, 0.01).is_err());
        assert!(Bloom::new(10, 0.0).is_err());
        assert!(Bloom::new(10, 1.0).is_err());
        assert!(Bloom::new(u64::MAX / 2, 1e-9).is_err());
    }

    #[test]
    fn shape_mismatch_is_error() {
        let mut a = Bloom::new(1000, 0.01).unwrap();
        let b = Bloom::new(2000, 0.01).unwrap();
        assert!(a.merge(&b).is_err());
    }
}
