//! APPROX_PERCENTILE: DDSketch (Masson, Rim, Lee, PVLDB 12(12), 2019).
//!
//! Guarantee: for any quantile whose value falls in a bucket that was never collapsed, the
//! returned value `v̂` is within relative error `α` of the true sample value `v` at that
//! rank: `|v̂ - v| ≤ α·|v|`. Buckets are logarithmic with ratio `γ = (1+α)/(1-α)`; bucket
//! `i` holds `(γ^(i-1), γ^i]` and answers with `2γ^i/(γ+1)`. Negative values use a mirror
//! store, zero has its own counter. Memory is bounded by `max_bins` per sign: past it the
//! lowest-magnitude buckets are folded together (so the guarantee then holds for the upper
//! quantiles, which is where latency percentiles live). With α = 1 % and the default 2048
//! bins a sketch covers values spanning a factor of e^41 without collapsing.
//!
//! Merging adds bucket counts: the merged sketch equals the sketch of the union exactly
//! (same buckets), as long as neither side collapsed.

use crate::{Sketch, SketchError};
use serde::{Deserialize, Serialize};

pub const DEFAULT_ALPHA: f64 = 0.01;
pub const DEFAULT_MAX_BINS: u32 = 2048;

/// Most non-empty buckets kept in the sparse list before switching to a dense run.
const SPARSE_MAX: usize = 48;

/// Bucket counters of one sign. Starts sparse (a sorted list of `(bucket, count)`, cheap
/// for panes with few values spread over a wide range) and becomes a dense run
/// (`counts[i]` is bucket `offset + i`) past [`SPARSE_MAX`] non-empty buckets.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Store {
    sparse: Vec<(i32, u64)>,
    offset: i32,
    counts: Vec<u64>,
    /// Whether any lower buckets were folded into the lowest one.
    collapsed: bool,
}

impl Store {
    fn is_dense(&self) -> bool {
        !self.counts.is_empty()
    }

    fn top(&self) -> i32 {
        self.offset + self.counts.len() as i32 - 1
    }

    /// Non-empty buckets in ascending order.
    fn bins(&self) -> Vec<(i32, u64)> {
        if self.is_dense() {
            self.counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c != 0)
                .map(|(i, &c)| (self.offset + i as i32, c))
                .collect()
        } else {
            self.sparse.clone()
        }
    }

    fn total(&self) -> Option<u64> {
        self.counts
            .iter()
            .chain(self.sparse.iter().map(|(_, c)| c))
            .try_fold(0u64, |a, &c| a.checked_add(c))
    }

    fn densify(&mut self, max_bins: usize) {
        if self.is_dense() || self.sparse.is_empty() {
            return;
        }
        let sparse = std::mem::take(&mut self.sparse);
        let lo = sparse[0].0;
        let hi = sparse[sparse.len() - 1].0;
        let lo = self.extend_range(lo, hi, max_bins);
        for (idx, c) in sparse {
            if idx < lo {
                self.collapsed = true;
            }
            self.counts[(idx.max(lo) - lo) as usize] += c;
        }
    }

    /// Dense mode: make room for buckets `lo..=hi`, folding the lowest ones if the range
    /// would exceed `max_bins`. Returns the lowest bucket index now held.
    fn extend_range(&mut self, lo: i32, hi: i32, max_bins: usize) -> i32 {
        if self.counts.is_empty() {
            let lo = lo.max(hi - max_bins as i32 + 1);
            self.offset = lo;
            self.counts = vec![0; (hi - lo + 1) as usize];
            return lo;
        }
        let cur_lo = self.offset;
        let cur_hi = self.top();
        if lo >= cur_lo && hi <= cur_hi {
            return cur_lo;
        }
        let new_hi = hi.max(cur_hi);
        let mut new_lo = lo.min(cur_lo);
        if (new_hi - new_lo + 1) as usize > max_bins {
            new_lo = new_hi - max_bins as i32 + 1;
        }
        let mut counts = vec![0u64; (new_hi - new_lo + 1) as usize];
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let idx = self.offset + i as i32;
            if idx < new_lo {
                self.collapsed = true;
            }
            counts[(idx.max(new_lo) - new_lo) as usize] += c;
        }
        self.offset = new_lo;
        self.counts = counts;
        new_lo
    }

    #[inline]
    fn add(&mut self, idx: i32, n: u64, max_bins: usize) {
        if !self.is_dense() {
            match self.sparse.binary_search_by_key(&idx, |&(i, _)| i) {
                Ok(pos) => self.sparse[pos].1 += n,
                Err(pos) => {
                    self.sparse.insert(pos, (idx, n));
                    if self.sparse.len() > SPARSE_MAX.min(max_bins) {
                        self.densify(max_bins);
                    }
                }
            }
            return;
        }
        let rel = idx.wrapping_sub(self.offset);
        if rel >= 0 && (rel as usize) < self.counts.len() {
            self.counts[rel as usize] += n;
            return;
        }
        let lo = self.extend_range(idx, idx, max_bins);
        if idx < lo {
            self.collapsed = true;
        }
        let i = (idx.max(lo) - lo) as usize;
        if let Some(c) = self.counts.get_mut(i) {
            *c += n;
        }
    }

    fn merge(&mut self, other: &Store, max_bins: usize) {
        self.collapsed |= other.collapsed;
        if !other.is_dense() && !self.is_dense() {
            // Both sparse: merge the sorted lists.
            let (a, b) = (&self.sparse, &other.sparse);
            let mut out = Vec::with_capacity(a.len() + b.len());
            let (mut i, mut j) = (0, 0);
            while i < a.len() || j < b.len() {
                if j >= b.len() || (i < a.len() && a[i].0 < b[j].0) {
                    out.push(a[i]);
                    i += 1;
                } else if i >= a.len() || b[j].0 < a[i].0 {
                    out.push(b[j]);
                    j += 1;
                } else {
                    out.push((a[i].0, a[i].1 + b[j].1));
                    i += 1;
                    j += 1;
                }
            }
            self.sparse = out;
            if self.sparse.len() > SPARSE_MAX.min(max_bins) {
                self.densify(max_bins);
            }
            return;
        }
        self.densify(max_bins);
        if other.is_dense() {
            let lo = self.extend_range(other.offset, other.top(), max_bins);
            for (i, &c) in other.counts.iter().enumerate() {
                if c != 0 {
                    let idx = other.offset + i as i32;
                    if idx < lo {
                        self.collapsed = true;
                    }
                    self.counts[(idx.max(lo) - lo) as usize] += c;
                }
            }
        } else if let (Some(&(lo_i, _)), Some(&(hi_i, _))) =
            (other.sparse.first(), other.sparse.last())
        {
            let lo = self.extend_range(lo_i, hi_i, max_bins);
            for &(idx, c) in &other.sparse {
                if idx < lo {
                    self.collapsed = true;
                }
                self.counts[(idx.max(lo) - lo) as usize] += c;
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.counts.capacity() * 8 + self.sparse.capacity() * 16
    }

    fn valid(&self, max_bins: usize) -> bool {
        self.counts.len() <= max_bins
            && self.sparse.len() <= SPARSE_MAX.max(max_bins)
            && self.sparse.windows(2).all(|w| w[0].0 < w[1].0)
            && (self.counts.is_empty() || self.sparse.is_empty())
    }
}

/// A DDSketch with relative accuracy `alpha`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DDSketch {
    alpha: f64,
    max_bins: u32,
    pos: Store,
    neg: Store,
    zero: u64,
    count: u64,
    #[serde(with = "crate::serde_f64")]
    min: f64,
    #[serde(with = "crate::serde_f64")]
    max: f64,
    #[serde(with = "crate::serde_f64")]
    sum: f64,
    /// `1 / ln γ`, cached (checked against `alpha` on decode).
    inv_ln_gamma: f64,
}

impl DDSketch {
    /// `alpha` is the relative accuracy (`percentile_error`, 0.0001 ≤ α < 1).
    pub fn new(alpha: f64) -> Result<Self, SketchError> {
        Self::with_max_bins(alpha, DEFAULT_MAX_BINS)
    }

    pub fn with_max_bins(alpha: f64, max_bins: u32) -> Result<Self, SketchError> {
        if !valid_alpha(alpha) {
            return Err(SketchError::InvalidParameter(format!(
                "percentile_error must be at least {MIN_ALPHA} and below 1, got {alpha}"
            )));
        }
        if !(16..=1 << 16).contains(&max_bins) {
            return Err(SketchError::InvalidParameter(format!(
                "percentile max bins must be between 16 and 65536, got {max_bins}"
            )));
        }
        Ok(DDSketch {
            alpha,
            max_bins,
            pos: Store::default(),
            neg: Store::default(),
            zero: 0,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            inv_ln_gamma: inv_ln_gamma(alpha),
        })
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Whether lowest-magnitude buckets were folded (the α guarantee then holds only for
    /// quantiles above the folded range).
    pub fn collapsed(&self) -> bool {
        self.pos.collapsed || self.neg.collapsed
    }

    fn gamma(&self) -> f64 {
        (1.0 + self.alpha) / (1.0 - self.alpha)
    }

    #[inline]
    fn key(&self, abs: f64) -> i32 {
        (abs.ln() * self.inv_ln_gamma).ceil() as i32
    }

    /// Add a value. NaN and infinities are ignored (returns false).
    #[inline]
    pub fn add(&mut self, v: f64) -> bool {
        if !v.is_finite() {
            return false;
        }
        let mb = self.max_bins as usize;
        if v > MIN_INDEXABLE {
            let k = self.key(v);
            self.pos.add(k, 1, mb);
        } else if v < -MIN_INDEXABLE {
            let k = self.key(-v);
            self.neg.add(k, 1, mb);
        } else {
            self.zero += 1;
        }
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        true
    }

    /// The value at quantile `q` (0 ≤ q ≤ 1), or None if empty or q out of range.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        if q == 0.0 {
            return Some(self.min);
        }
        if q == 1.0 {
            return Some(self.max);
        }
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        let gamma = self.gamma();
        let value = |i: i32| 2.0 * gamma.powi(i) / (gamma + 1.0);
        let mut seen = 0u64;
        // Negative values: largest magnitude first.
        for (i, c) in self.neg.bins().into_iter().rev() {
            seen += c;
            if seen > rank {
                return Some((-value(i)).clamp(self.min, self.max));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0f64.clamp(self.min, self.max));
        }
        for (i, c) in self.pos.bins() {
            seen += c;
            if seen > rank {
                return Some(value(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }
}

/// Values with smaller magnitude count as zero.
const MIN_INDEXABLE: f64 = 1e-300;

/// Smallest accepted α: keeps bucket indexes of every finite double within i32.
pub const MIN_ALPHA: f64 = 1e-4;

/// MIN_ALPHA ≤ α < 1 (false for NaN).
fn valid_alpha(a: f64) -> bool {
    (MIN_ALPHA..1.0).contains(&a)
}

/// Equal up to float text round-trip noise (checkpoints may go through JSON).
fn same_f64(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

fn inv_ln_gamma(alpha: f64) -> f64 {
    1.0 / ((1.0 + alpha) / (1.0 - alpha)).ln()
}

impl Sketch for DDSketch {
    const KIND: u8 = 3;

    fn merge(&mut self, other: &Self) -> Result<(), SketchError> {
        if !same_f64(self.alpha, other.alpha) || self.max_bins != other.max_bins {
            return Err(SketchError::Incompatible(format!(
                "DDSketch accuracy {}/{} bins vs {}/{}",
                self.alpha, self.max_bins, other.alpha, other.max_bins
            )));
        }
        if other.count == 0 {
            return Ok(());
        }
        let mb = self.max_bins as usize;
        self.pos.merge(&other.pos, mb);
        self.neg.merge(&other.neg, mb);
        self.zero += other.zero;
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        Ok(())
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.pos.heap_bytes() + self.neg.heap_bytes()
    }

    fn validate(&self) -> Result<(), SketchError> {
        if !valid_alpha(self.alpha)
            || !(16..=1 << 16).contains(&self.max_bins)
            || !same_f64(self.inv_ln_gamma, inv_ln_gamma(self.alpha))
        {
            return Err(SketchError::Decode("bad DDSketch parameters".into()));
        }
        let n = self
            .pos
            .total()
            .zip(self.neg.total())
            .and_then(|(a, b)| a.checked_add(b)?.checked_add(self.zero))
            .ok_or_else(|| SketchError::Decode("DDSketch count overflow".into()))?;
        let mb = self.max_bins as usize;
        if n != self.count || !self.pos.valid(mb) || !self.neg.valid(mb) {
            return Err(SketchError::Decode("inconsistent DDSketch counts".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_on_small_input() {
        let mut s = DDSketch::new(0.01).unwrap();
        for v in [1.0, 2.0, 3.0, 4.0, 100.0] {
            s.add(v);
        }
        assert_eq!(s.quantile(0.0), Some(1.0));
        assert_eq!(s.quantile(1.0), Some(100.0));
        let m = s.quantile(0.5).unwrap();
        assert!((m - 3.0).abs() <= 0.03, "{m}");
    }

    #[test]
    fn negatives_and_zero() {
        let mut s = DDSketch::new(0.01).unwrap();
        for v in [-10.0, -5.0, 0.0, 5.0, 10.0] {
            s.add(v);
        }
        assert!((s.quantile(0.25).unwrap() + 5.0).abs() <= 0.05);
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert!(!s.add(f64::NAN));
        assert_eq!(s.count(), 5);
    }

    #[test]
    fn bins_are_bounded() {
        let mut s = DDSketch::with_max_bins(0.01, 64).unwrap();
        for i in 0..10_000 {
            s.add(1.001f64.powi(i) * 1e-6 * (1.0 + i as f64));
        }
        assert!(s.pos.counts.len() <= 64 && s.pos.is_dense());
        assert!(s.collapsed());
        let p99 = s.quantile(0.99).unwrap();
        assert!(p99 > 0.0);
    }

    #[test]
    fn bad_parameters() {
        assert!(DDSketch::new(0.0).is_err());
        assert!(DDSketch::new(1.0).is_err());
        assert!(DDSketch::new(1e-9).is_err());
        let mut s = DDSketch::new(MIN_ALPHA).unwrap();
        for v in [f64::MAX, f64::MIN_POSITIVE, 1e-300, -f64::MAX, 1.0] {
            s.add(v);
        }
        assert_eq!(s.quantile(1.0), Some(f64::MAX));
        assert!(DDSketch::with_max_bins(0.01, 1).is_err());
    }
}
