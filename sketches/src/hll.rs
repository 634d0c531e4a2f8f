//! HyperLogLog++ distinct counting (Heule, Nunkesser, Hall 2013) with Ertl's improved
//! estimator (2017) instead of HLL++'s empirical bias tables.
//!
//! - Sparse mode for small sets: a sorted list of 32-bit entries at precision 25 (index
//!   and rank packed), plus a small unsorted insert buffer; estimated by linear counting at
//!   2^25 buckets, so small counts are practically exact. 4 bytes per distinct entry.
//! - Dense mode once the sparse list (plus its buffer) would reach the registers' size: `2^p` one-byte registers
//!   (4096 bytes at p = 12). Merging dense sketches is a byte-wise max (vectorised).
//!
//! Relative standard error in dense mode: `1.04 / sqrt(2^p)` (1.63 % at p = 12).

use crate::hash::hash_of;
use crate::{Sketch, SketchError};
use serde::{Deserialize, Serialize};
use std::hash::Hash;

/// Precision of the sparse representation.
const PP: u32 = 25;
const MAX_SPARSE_RANK: u32 = 64 - PP + 1; // 40
/// The insert buffer is merged into the sorted list when it reaches
/// `max(BUF_LEN, list.len() / 4)` entries: amortised merge cost stays ~4 moves per insert
/// and the buffer adds at most 25 % to the list's memory.
const BUF_LEN: usize = 64;

#[inline]
fn buf_limit(list_len: usize) -> usize {
    BUF_LEN.max(list_len / 4)
}

pub const MIN_PRECISION: u8 = 4;
pub const MAX_PRECISION: u8 = 18;
pub const DEFAULT_PRECISION: u8 = 12;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Repr {
    /// `list` is sorted by entry and holds at most one entry per sparse index;
    /// `buf` holds recent entries not yet merged in.
    Sparse {
        list: Vec<u32>,
        buf: Vec<u32>,
    },
    Dense(Vec<u8>),
}

/// A HyperLogLog++ sketch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hll {
    p: u8,
    repr: Repr,
}

#[inline(always)]
fn sparse_entry(h: u64) -> u32 {
    let idx = (h >> (64 - PP)) as u32;
    let w = h << PP;
    let rank = (w.leading_zeros() + 1).min(MAX_SPARSE_RANK);
    (idx << 6) | rank
}

#[inline(always)]
fn sparse_idx(e: u32) -> u32 {
    e >> 6
}

impl Hll {
    /// A new, empty sketch with `2^p` registers (`p` in 4..=18).
    pub fn new(p: u8) -> Result<Self, SketchError> {
        if !(MIN_PRECISION..=MAX_PRECISION).contains(&p) {
            return Err(SketchError::InvalidParameter(format!(
                "hll_precision must be between {MIN_PRECISION} and {MAX_PRECISION}, got {p}"
            )));
        }
        Ok(Hll {
            p,
            repr: Repr::Sparse {
                list: Vec::new(),
                buf: Vec::new(),
            },
        })
    }

    pub fn precision(&self) -> u8 {
        self.p
    }

    pub fn is_sparse(&self) -> bool {
        matches!(self.repr, Repr::Sparse { .. })
    }

    /// Relative standard error of the dense estimator, `1.04 / sqrt(2^p)`.
    pub fn relative_standard_error(&self) -> f64 {
        1.04 / ((1u64 << self.p) as f64).sqrt()
    }

    fn m(&self) -> usize {
        1usize << self.p
    }

    /// Add an item (hashed with the crate's stable hasher).
    #[inline]
    pub fn insert<T: Hash + ?Sized>(&mut self, item: &T) {
        self.insert_hash(hash_of(item));
    }

    /// Add an item by its 64-bit hash (must be a well-mixed hash).
    #[inline]
    pub fn insert_hash(&mut self, h: u64) {
        let p = self.p as u32;
        match &mut self.repr {
            Repr::Dense(regs) => {
                let idx = (h >> (64 - p)) as usize;
                let rank = ((h << p).leading_zeros() + 1).min(64 - p + 1) as u8;
                // idx < 2^p == regs.len() by construction.
                if let Some(r) = regs.get_mut(idx) {
                    if rank > *r {
                        *r = rank;
                    }
                }
            }
            Repr::Sparse { buf, list } => {
                buf.push(sparse_entry(h));
                if buf.len() >= buf_limit(list.len()) {
                    self.flush();
                }
            }
        }
    }

    /// Merge the buffer into the sorted list; switch to dense when it gets too large.
    fn flush(&mut self) {
        let m = self.m();
        if let Repr::Sparse { list, buf } = &mut self.repr {
            if buf.is_empty() {
                return;
            }
            buf.sort_unstable();
            merge_into(list, buf);
            buf.clear();
            if list.len() > sparse_limit(m) {
                self.make_dense();
            }
        }
    }

    fn make_dense(&mut self) {
        let p = self.p as u32;
        let m = self.m();
        if let Repr::Sparse { list, buf } = &self.repr {
            let mut regs = vec![0u8; m];
            for &e in list.iter().chain(buf.iter()) {
                let (idx, rank) = dense_from_sparse(e, p);
                if let Some(r) = regs.get_mut(idx) {
                    *r = (*r).max(rank);
                }
            }
            self.repr = Repr::Dense(regs);
        }
    }

    /// Estimated number of distinct items.
    pub fn estimate(&self) -> f64 {
        match &self.repr {
            Repr::Sparse { list, buf } => {
                let mut extra: Vec<u32> = buf.iter().map(|&e| sparse_idx(e)).collect();
                extra.sort_unstable();
                extra.dedup();
                let new = extra
                    .iter()
                    .filter(|&&i| list.binary_search_by_key(&i, |&e| sparse_idx(e)).is_err())
                    .count();
                let n = list.len() + new;
                if n > sparse_limit(self.m()) {
                    // Past the conversion point (the buffer has not been flushed yet):
                    // answer as the dense sketch would, so the estimate depends only on
                    // the set of items, not on when buffers were flushed.
                    let mut d = self.clone();
                    d.make_dense();
                    return d.estimate();
                }
                let n = n as f64;
                let mp = (1u64 << PP) as f64;
                mp * (mp / (mp - n)).ln()
            }
            Repr::Dense(regs) => ertl_estimate(regs, self.p as u32),
        }
    }
}

/// Most sparse entries before switching to registers: with the insert buffer (≤ 1/4 of
/// the list) the sparse form then stays below the `m` bytes of the dense form.
fn sparse_limit(m: usize) -> usize {
    m * 3 / 16
}

fn self_m(p: u32) -> usize {
    1usize << p
}

/// Merge the sorted `other` into the sorted `list` in place (back to front, no new
/// allocation beyond growing `list`), keeping one entry — the highest rank — per index.
fn merge_into(list: &mut Vec<u32>, other: &[u32]) {
    if other.is_empty() {
        return;
    }
    let n = list.len();
    // Exact growth: the sparse form must not hold twice the memory it uses.
    list.reserve_exact(other.len());
    list.resize(n + other.len(), 0);
    let (mut i, mut j, mut k) = (n, other.len(), n + other.len());
    while j > 0 {
        if i > 0 && list[i - 1] > other[j - 1] {
            list[k - 1] = list[i - 1];
            i -= 1;
        } else {
            list[k - 1] = other[j - 1];
            j -= 1;
        }
        k -= 1;
    }
    // Entries sort by (index, rank): of equal indexes the last is the highest rank.
    list.dedup_by(|later, kept| {
        if sparse_idx(*later) == sparse_idx(*kept) {
            *kept = (*kept).max(*later);
            true
        } else {
            false
        }
    });
}

#[inline]
fn dense_from_sparse(e: u32, p: u32) -> (usize, u8) {
    let idx25 = e >> 6;
    let rank25 = e & 63;
    let extra = PP - p;
    let idx = (idx25 >> extra) as usize;
    let low = idx25 & ((1u32 << extra) - 1);
    let rank = if low != 0 {
        low.leading_zeros() - (32 - extra) + 1
    } else {
        extra + rank25
    };
    (idx, rank.min(64 - p + 1) as u8)
}

/// Ertl, "New cardinality estimation algorithms for HyperLogLog sketches" (2017), §4.
fn ertl_estimate(regs: &[u8], p: u32) -> f64 {
    let q = 64 - p as usize;
    let m = regs.len() as f64;
    let mut c = vec![0u32; q + 2];
    for &r in regs {
        let r = (r as usize).min(q + 1);
        c[r] += 1;
    }
    let mut z = m * tau(1.0 - c[q + 1] as f64 / m);
    for k in (1..=q).rev() {
        z = 0.5 * (z + c[k] as f64);
    }
    z += m * sigma(c[0] as f64 / m);
    let alpha_inf = 1.0 / (2.0 * std::f64::consts::LN_2);
    alpha_inf * m * m / z
}

fn sigma(mut x: f64) -> f64 {
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let z_old = z;
        z += x * y;
        y += y;
        if z_old == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let z_old = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z_old == z {
            return z / 3.0;
        }
    }
}

impl Sketch for Hll {
    const KIND: u8 = 1;

    fn merge(&mut self, other: &Self) -> Result<(), SketchError> {
        if self.p != other.p {
            return Err(SketchError::Incompatible(format!(
                "HLL precision {} vs {}",
                self.p, other.p
            )));
        }
        let p = self.p as u32;
        match &other.repr {
            Repr::Dense(o) => {
                if self.is_sparse() {
                    self.make_dense();
                }
                if let Repr::Dense(regs) = &mut self.repr {
                    for (r, &x) in regs.iter_mut().zip(o.iter()) {
                        *r = (*r).max(x);
                    }
                }
            }
            Repr::Sparse { list, buf } => match &mut self.repr {
                Repr::Dense(regs) => {
                    for &e in list.iter().chain(buf.iter()) {
                        let (idx, rank) = dense_from_sparse(e, p);
                        if let Some(r) = regs.get_mut(idx) {
                            *r = (*r).max(rank);
                        }
                    }
                }
                Repr::Sparse {
                    list: my_list,
                    buf: my_buf,
                } => {
                    // Linear merge of the two sorted lists; buffers go through a flush.
                    merge_into(my_list, list);
                    my_buf.extend_from_slice(buf);
                    let force = my_buf.len() >= buf_limit(my_list.len())
                        || my_list.len() > sparse_limit(self_m(p));
                    if force {
                        self.flush();
                    }
                    if let Repr::Sparse { list, .. } = &self.repr {
                        if list.len() > sparse_limit(self_m(p)) {
                            self.make_dense();
                        }
                    }
                }
            },
        }
        Ok(())
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + match &self.repr {
                Repr::Sparse { list, buf } => (list.capacity() + buf.capacity()) * 4,
                Repr::Dense(r) => r.capacity(),
            }
    }

    fn validate(&self) -> Result<(), SketchError> {
        if !(MIN_PRECISION..=MAX_PRECISION).contains(&self.p) {
            return Err(SketchError::Decode(format!("bad HLL precision {}", self.p)));
        }
        let p = self.p as u32;
        match &self.repr {
            Repr::Dense(r) => {
                if r.len() != self.m() || r.iter().any(|&x| x as u32 > 64 - p + 1) {
                    return Err(SketchError::Decode("bad HLL registers".into()));
                }
            }
            Repr::Sparse { list, buf } => {
                let ok = |e: &u32| (e & 63) >= 1 && (e & 63) <= MAX_SPARSE_RANK && e >> 31 == 0;
                if !list.iter().all(ok)
                    || !buf.iter().all(ok)
                    || buf.len() > buf_limit(list.len()).max(self.m())
                {
                    return Err(SketchError::Decode("bad HLL sparse entry".into()));
                }
                if list
                    .windows(2)
                    .any(|w| sparse_idx(w[0]) >= sparse_idx(w[1]))
                {
                    return Err(SketchError::Decode("unsorted HLL sparse list".into()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_precision() {
        assert!(Hll::new(3).is_err());
        assert!(Hll::new(19).is_err());
        assert!(Hll::new(12).is_ok());
    }

    #[test]
    fn sparse_never_outgrows_dense() {
        for p in [8u8, 12] {
            let m = 1usize << p;
            let mut h = Hll::new(p).unwrap();
            let mut max = 0;
            for i in 0..(4 * m as u64) {
                h.insert(&i);
                max = max.max(h.memory_bytes());
            }
            assert!(!h.is_sparse());
            assert!(max <= m + 128, "p={p}: sparse form peaked at {max} bytes");
        }
    }

    #[test]
    fn small_counts_are_exact_in_sparse_mode() {
        let mut h = Hll::new(12).unwrap();
        for i in 0..500u64 {
            h.insert(&i);
            h.insert(&i); // duplicates do not count
        }
        assert!(h.is_sparse());
        assert_eq!(h.estimate().round(), 500.0);
    }

    #[test]
    fn sparse_and_dense_agree() {
        // The same items inserted into a sketch forced dense must give the same registers
        // as the sparse→dense conversion.
        let mut a = Hll::new(10).unwrap();
        let mut b = Hll::new(10).unwrap();
        b.make_dense();
        for i in 0..5000u64 {
            a.insert(&i);
            b.insert(&i);
        }
        a.flush();
        a.make_dense();
        assert_eq!(a, b);
    }

    #[test]
    fn merge_precision_mismatch_is_error() {
        let mut a = Hll::new(10).unwrap();
        let b = Hll::new(11).unwrap();
        assert!(matches!(a.merge(&b), Err(SketchError::Incompatible(_))));
    }
}
