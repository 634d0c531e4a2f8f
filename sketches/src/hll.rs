//! HyperLogLog++ distinct counting (Heule, Nunkesser, Hall 2013) with Ertl's improved
//! estimator (2017) instead of HLL++'s empirical bias tables.
//!
//! - Sparse mode for small sets: a sorted list of 32-bit entries at precision 25 (index
//!   and rank packed), plus a small unsorted insert buffer; estimated by linear counting at
//!   2^25 buckets, so small counts are practically exact. 4 bytes per distinct entry.
//! - Dense mode once the sparse list (plus its buffer) would reach the registers' size:
//!   `2^p` registers packed 6 bits each, 4 registers per 3 bytes (3072 bytes at p = 12;
//!   a register never exceeds `64 - p + 1 <= 61`), the 3 bytes of each block stored in
//!   three byte planes (see `load_block`). Merging dense sketches is a register-wise max
//!   over the planes (vectorised).
//!
//! Binary form: version byte [`HLL_FORMAT_VERSION`] (2); version 1 bytes (dense registers
//! one byte each) still decode and are packed on load. The serde form names the packed
//! registers `Dense6`; the old `Dense` (one byte per register) is still read.
//!
//! Relative standard error in dense mode: `1.04 / sqrt(2^p)` (1.63 % at p = 12).

use crate::hash::hash_of;
use crate::{Sketch, SketchError, FORMAT_VERSION};
use serde::{Deserialize, Serialize, Serializer};
use std::hash::Hash;

/// Version byte written by `Hll::to_bytes`: 2 = dense registers packed 6 bits each.
/// Version 1 (the crate-wide [`FORMAT_VERSION`] before packing) is still decoded.
pub const HLL_FORMAT_VERSION: u8 = 2;

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

#[derive(Debug, Clone, PartialEq)]
enum Repr {
    /// `list` is sorted by entry and holds at most one entry per sparse index;
    /// `buf` holds recent entries not yet merged in.
    Sparse { list: Vec<u32>, buf: Vec<u32> },
    /// `3q` bytes, `q = 2^p / 4` blocks of 4 registers in three byte planes: see
    /// `load_block` for where each register's bits are.
    Dense(Vec<u8>),
}

/// A HyperLogLog++ sketch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "HllWire")]
pub struct Hll {
    p: u8,
    repr: Repr,
}

/// Serde form as written (borrowed). Variant order is part of the binary form: `Sparse`
/// = 0, `Dense` (old, one byte per register; never written now) = 1, `Dense6` = 2.
#[derive(Serialize)]
#[serde(rename = "Hll")]
struct HllOut<'a> {
    p: u8,
    repr: ReprOut<'a>,
}

#[derive(Serialize)]
#[serde(rename = "Repr")]
enum ReprOut<'a> {
    Sparse {
        list: &'a [u32],
        buf: &'a [u32],
    },
    #[allow(dead_code)]
    Dense(&'a [u8]),
    Dense6(&'a [u8]),
}

/// Serde form as read: both dense encodings.
#[derive(Deserialize)]
#[serde(rename = "Hll")]
struct HllWire {
    p: u8,
    repr: ReprWire,
}

#[derive(Deserialize)]
#[serde(rename = "Repr")]
enum ReprWire {
    Sparse { list: Vec<u32>, buf: Vec<u32> },
    Dense(Vec<u8>),
    Dense6(Vec<u8>),
}

impl Serialize for Hll {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let repr = match &self.repr {
            Repr::Sparse { list, buf } => ReprOut::Sparse { list, buf },
            Repr::Dense(regs) => ReprOut::Dense6(regs),
        };
        HllOut { p: self.p, repr }.serialize(s)
    }
}

impl TryFrom<HllWire> for Hll {
    type Error = String;

    fn try_from(w: HllWire) -> Result<Self, String> {
        let repr = match w.repr {
            ReprWire::Sparse { list, buf } => Repr::Sparse { list, buf },
            ReprWire::Dense6(regs) => Repr::Dense(regs),
            ReprWire::Dense(bytes) => {
                // Old form: one byte per register. Sizes and values are checked here
                // (the packed form cannot hold values above 63); `validate` checks the rest.
                if bytes.len() % 4 != 0 || bytes.iter().any(|&r| r > 63) {
                    return Err("bad HLL registers (8-bit form)".into());
                }
                Repr::Dense(pack(&bytes))
            }
        };
        Ok(Hll { p: w.p, repr })
    }
}

/// Pack one-byte registers (each <= 63, `len % 4 == 0`) 6 bits each (`load_block`).
fn pack(regs8: &[u8]) -> Vec<u8> {
    let q = regs8.len() / 4;
    let mut out = vec![0u8; 3 * q];
    for (j, r) in regs8.chunks_exact(4).enumerate() {
        let w = (r[0] as u32 & 63)
            | (r[1] as u32 & 63) << 6
            | (r[2] as u32 & 63) << 12
            | (r[3] as u32 & 63) << 18;
        store_block(&mut out, q, j, w);
    }
    out
}

/// Packed bytes for `m` registers.
#[inline]
fn packed_len(m: usize) -> usize {
    m / 4 * 3
}

/// Block `j` (registers `4j..4j+4`) of packed registers with `q` blocks, as a 24-bit
/// word with register `4j + k` in bits `6k..6k+6`. Its three bytes live at `j`, `q + j`
/// and `2q + j` (three byte planes): byte `k` holds register `4j + k` in its low 6 bits
/// and bits `2k..2k+2` of register `4j + 3` in its top 2 bits.
#[inline(always)]
fn load_block(regs: &[u8], q: usize, j: usize) -> Option<u32> {
    let b0 = *regs.get(j)? as u32;
    let b1 = *regs.get(q + j)? as u32;
    let b2 = *regs.get(2 * q + j)? as u32;
    let r3 = (b0 >> 6) | (b1 >> 6) << 2 | (b2 >> 6) << 4;
    Some((b0 & 63) | (b1 & 63) << 6 | (b2 & 63) << 12 | r3 << 18)
}

#[inline(always)]
fn store_block(regs: &mut [u8], q: usize, j: usize, w: u32) {
    let r3 = (w >> 18) & 63;
    for k in 0..3 {
        let v = ((w >> (6 * k)) & 63) | ((r3 >> (2 * k)) & 3) << 6;
        if let Some(b) = regs.get_mut(k as usize * q + j) {
            *b = v as u8;
        }
    }
}

/// Value of register `i` in packed registers (0 if out of range).
#[inline(always)]
fn get_reg(regs: &[u8], i: usize) -> u8 {
    let q = regs.len() / 3;
    match load_block(regs, q, i >> 2) {
        Some(w) if i >> 2 < q => ((w >> (6 * (i & 3))) & 63) as u8,
        _ => 0,
    }
}

/// Set register `i` to `v` (`v <= 63`); out of range is ignored.
#[cfg(test)]
fn set_reg(regs: &mut [u8], i: usize, v: u8) {
    let q = regs.len() / 3;
    let j = i >> 2;
    if let Some(w) = load_block(regs, q, j).filter(|_| j < q) {
        let sh = 6 * (i & 3) as u32;
        store_block(regs, q, j, (w & !(63 << sh)) | ((v as u32 & 63) << sh));
    }
}

/// Raise register `i` to `v` if `v` is larger (`v <= 63`); out of range is ignored.
/// Reads the whole block (no branch on the register's slot: that branch would be
/// mispredicted a quarter of the time on random hashes).
#[inline(always)]
fn max_reg(regs: &mut [u8], i: usize, v: u8) {
    let q = regs.len() / 3;
    let j = i >> 2;
    if j >= q {
        return;
    }
    if let Some(w) = load_block(regs, q, j) {
        let sh = 6 * (i & 3) as u32;
        if (v as u32 & 63) > (w >> sh) & 63 {
            store_block(regs, q, j, (w & !(63 << sh)) | ((v as u32 & 63) << sh));
        }
    }
}

/// Register-wise max of packed registers of the same size, block by block (4 registers,
/// 3 bytes): registers 0–2 of a block are the low 6 bits of its three bytes (a masked
/// byte max), register 3 is gathered from the top 2 bits of the three bytes. The byte
/// planes are contiguous streams, so the loop vectorises (16 blocks per step with SSE2).
fn merge_packed(dst: &mut [u8], src: &[u8]) {
    if dst.len() != src.len() {
        return;
    }
    let q = dst.len() / 3;
    let (d0, rest) = dst.split_at_mut(q);
    let (d1, d2) = rest.split_at_mut(q);
    let (s0, rest) = src.split_at(q);
    let (s1, s2) = rest.split_at(q);
    let (d1, d2, s0, s1, s2) = (&mut d1[..q], &mut d2[..q], &s0[..q], &s1[..q], &s2[..q]);
    for j in 0..q {
        let (a0, a1, a2) = (d0[j], d1[j], d2[j]);
        let (b0, b1, b2) = (s0[j], s1[j], s2[j]);
        let a3 = (a0 >> 6) | (a1 >> 6) << 2 | (a2 >> 6) << 4;
        let b3 = (b0 >> 6) | (b1 >> 6) << 2 | (b2 >> 6) << 4;
        let r3 = a3.max(b3);
        d0[j] = (a0 & 63).max(b0 & 63) | (r3 & 3) << 6;
        d1[j] = (a1 & 63).max(b1 & 63) | ((r3 >> 2) & 3) << 6;
        d2[j] = (a2 & 63).max(b2 & 63) | (r3 >> 4) << 6;
    }
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
                // idx < 2^p registers by construction.
                max_reg(regs, idx, rank);
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
            let mut regs = vec![0u8; packed_len(m)];
            for &e in list.iter().chain(buf.iter()) {
                let (idx, rank) = dense_from_sparse(e, p);
                max_reg(&mut regs, idx, rank);
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
            Repr::Dense(regs) => ertl_estimate(regs, self.m(), self.p as u32),
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
/// `regs` are `m` packed registers.
fn ertl_estimate(regs: &[u8], m: usize, p: u32) -> f64 {
    let q = 64 - p as usize;
    let mut c = vec![0u32; 64.max(q + 2)];
    let blocks = regs.len() / 3;
    let (p0, rest) = regs.split_at(blocks);
    let (p1, p2) = rest.split_at(blocks);
    for ((&b0, &b1), &b2) in p0.iter().zip(p1).zip(p2) {
        c[(b0 & 63) as usize] += 1;
        c[(b1 & 63) as usize] += 1;
        c[(b2 & 63) as usize] += 1;
        c[((b0 >> 6) | (b1 >> 6) << 2 | (b2 >> 6) << 4) as usize] += 1;
    }
    // Registers never exceed q + 1 (checked on decode); fold any above into q + 1.
    let over: u32 = c[q + 2..].iter().sum();
    c[q + 1] += over;
    let m = m as f64;
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

    const VERSION: u8 = HLL_FORMAT_VERSION;
    /// Version 1 stored one byte per dense register; it is converted on load.
    const READS: &'static [u8] = &[HLL_FORMAT_VERSION, FORMAT_VERSION];

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
                    merge_packed(regs, o);
                }
            }
            Repr::Sparse { list, buf } => match &mut self.repr {
                Repr::Dense(regs) => {
                    for &e in list.iter().chain(buf.iter()) {
                        let (idx, rank) = dense_from_sparse(e, p);
                        max_reg(regs, idx, rank);
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
                if r.len() != packed_len(self.m())
                    || (0..self.m()).any(|i| get_reg(r, i) as u32 > 64 - p + 1)
                {
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
    fn packed_get_set_round_trip_every_value_and_alignment() {
        let m = 64usize;
        let mut regs = vec![0u8; packed_len(m)];
        for i in 0..m {
            for v in 0..=63u8 {
                // Fill the neighbours with a pattern that must survive the write.
                let before: Vec<u8> = (0..m).map(|j| get_reg(&regs, j)).collect();
                set_reg(&mut regs, i, v);
                assert_eq!(get_reg(&regs, i), v, "register {i} (slot {})", i % 4);
                for j in (0..m).filter(|&j| j != i) {
                    assert_eq!(get_reg(&regs, j), before[j], "write to {i} changed {j}");
                }
            }
            // Leave a distinct value behind so neighbours are non-trivial.
            set_reg(&mut regs, i, ((i * 37 + 11) % 64) as u8);
        }
        // max_reg only raises, at every alignment.
        for i in 0..m {
            let cur = get_reg(&regs, i);
            max_reg(&mut regs, i, cur.saturating_sub(1));
            assert_eq!(get_reg(&regs, i), cur);
            max_reg(&mut regs, i, 63);
            assert_eq!(get_reg(&regs, i), 63);
        }
        // Out of range is ignored, not a panic.
        assert_eq!(get_reg(&regs, m), 0);
        max_reg(&mut regs, m, 5);
    }

    #[test]
    fn packed_merge_is_register_wise_max() {
        // Every pair of values in every slot of a block, against a byte-wise reference:
        // for each slot s, the 4096 blocks take all 64 × 64 pairs (shifted per slot so
        // neighbouring registers differ).
        let m = 4 * 64 * 64;
        let (mut a, mut b) = (vec![0u8; packed_len(m)], vec![0u8; packed_len(m)]);
        let mut want = vec![0u8; m];
        for (i, w) in want.iter_mut().enumerate() {
            let (s, rest) = (i % 4, i / 4);
            let x = ((rest + 17 * s) % 64) as u8;
            let y = ((rest / 64 + 29 * s) % 64) as u8;
            set_reg(&mut a, i, x);
            set_reg(&mut b, i, y);
            *w = x.max(y);
        }
        merge_packed(&mut a, &b);
        let got: Vec<u8> = (0..m).map(|i| get_reg(&a, i)).collect();
        assert_eq!(got, want);
        // A 3-byte remainder block (m / 4 odd) goes through the scalar path.
        let (mut a, mut b) = (vec![0u8; 9], vec![0u8; 9]);
        for i in 0..12 {
            set_reg(&mut a, i, (i * 5) as u8);
            set_reg(&mut b, i, 60 - (i * 5) as u8);
        }
        merge_packed(&mut a, &b);
        for i in 0..12 {
            assert_eq!(get_reg(&a, i), ((i * 5) as u8).max(60 - (i * 5) as u8));
        }
    }

    /// The sketch layout before packing (version 1): one byte per dense register.
    #[derive(Serialize)]
    #[serde(rename = "Hll")]
    struct OldHll {
        p: u8,
        repr: OldRepr,
    }

    #[derive(Serialize)]
    #[serde(rename = "Repr")]
    #[allow(dead_code)]
    enum OldRepr {
        Sparse { list: Vec<u32>, buf: Vec<u32> },
        Dense(Vec<u8>),
    }

    fn old_form(h: &Hll) -> OldHll {
        let repr = match &h.repr {
            Repr::Sparse { list, buf } => OldRepr::Sparse {
                list: list.clone(),
                buf: buf.clone(),
            },
            Repr::Dense(r) => OldRepr::Dense((0..h.m()).map(|i| get_reg(r, i)).collect()),
        };
        OldHll { p: h.p, repr }
    }

    fn old_bytes(h: &Hll) -> Vec<u8> {
        let mut out = vec![1u8, Hll::KIND];
        out.extend_from_slice(&postcard::to_allocvec(&old_form(h)).unwrap());
        out
    }

    #[test]
    fn old_format_bytes_decode_to_identical_sketch() {
        for (p, n) in [(4u8, 1000u64), (12, 50_000), (12, 100), (14, 200_000)] {
            let mut h = Hll::new(p).unwrap();
            for i in 0..n {
                h.insert(&i);
            }
            let old = old_bytes(&h);
            assert_eq!(old[0], 1);
            let back = Hll::from_bytes(&old).unwrap();
            assert_eq!(back, h, "p={p} n={n}");
            assert_eq!(back.estimate(), h.estimate());
            // Re-encoded in the new form, versioned 2, and smaller when dense.
            let new = back.to_bytes();
            assert_eq!(new[0], HLL_FORMAT_VERSION);
            assert_eq!(Hll::from_bytes(&new).unwrap(), h);
            if !h.is_sparse() {
                assert!(new.len() < old.len());
            }
            // The old JSON form reads too.
            let j = serde_json::to_string(&old_form(&h)).unwrap();
            let back: Hll = serde_json::from_str(&j).unwrap();
            assert_eq!(back, h);
        }
    }

    #[test]
    fn old_format_with_out_of_range_register_is_an_error() {
        let mut h = Hll::new(4).unwrap();
        h.make_dense();
        let mut old = old_form(&h);
        if let OldRepr::Dense(r) = &mut old.repr {
            r[3] = 200; // cannot be packed in 6 bits
        }
        let mut b = vec![1u8, Hll::KIND];
        b.extend_from_slice(&postcard::to_allocvec(&old).unwrap());
        assert!(matches!(Hll::from_bytes(&b), Err(SketchError::Decode(_))));
        if let OldRepr::Dense(r) = &mut old.repr {
            r[3] = 62; // fits in 6 bits but above 64 - p + 1 = 61
        }
        let mut b = vec![1u8, Hll::KIND];
        b.extend_from_slice(&postcard::to_allocvec(&old).unwrap());
        assert!(matches!(Hll::from_bytes(&b), Err(SketchError::Decode(_))));
    }

    #[test]
    fn dense_p12_fits_in_4_kb() {
        let mut h = Hll::new(12).unwrap();
        for i in 0..100_000u64 {
            h.insert(&i);
        }
        assert!(!h.is_sparse());
        assert!(h.memory_bytes() <= 4096, "{} B", h.memory_bytes());
        assert_eq!(h.memory_bytes(), std::mem::size_of::<Hll>() + 3072);
    }

    /// Estimates printed by the one-byte-register implementation (commit fa12a82) for the
    /// same inputs: packing must not change any of them, bit for bit.
    #[test]
    fn estimates_identical_to_unpacked_implementation() {
        #[rustfmt::skip]
        let golden: [(u8, u64, f64, f64); 20] = [
        (4, 100, 120.90596189219835, 211.99206771232983),
        (4, 3000, 2192.42810897853, 4816.797278233427),
        (4, 50000, 47834.79510498611, 62705.715863012876),
        (4, 1000000, 958590.3494306128, 2274716.6001172834),
        (10, 100, 100.00014901101981, 186.000515524213),
        (10, 3000, 3112.0790469814797, 5749.727765879338),
        (10, 50000, 45711.87876015661, 89006.82046306189),
        (10, 1000000, 1001548.1502759091, 1836172.1885092366),
        (12, 100, 100.00014901101981, 186.000515524213),
        (12, 3000, 3039.17561629235, 5654.773363040161),
        (12, 50000, 49536.892621936095, 91460.74637797178),
        (12, 1000000, 1001844.2448969173, 1831839.264020618),
        (14, 100, 100.00014901101981, 186.000515524213),
        (14, 3000, 3000.1341184453436, 5555.872222571139),
        (14, 50000, 50098.34196245663, 93432.08740748352),
        (14, 1000000, 994381.7753156796, 1852309.4153394254),
        (18, 100, 100.00014901101981, 186.000515524213),
        (18, 3000, 3000.1341184453436, 5571.462524245931),
        (18, 50000, 49971.891228094195, 93027.95879081351),
        (18, 1000000, 998947.3119705942, 1857869.684592567),
        ];
        for (p, n, est, union) in golden {
            let mut h = Hll::new(p).unwrap();
            let mut g = Hll::new(p).unwrap();
            for i in 0..n {
                h.insert(&i);
                g.insert(&(i * 7 + 3));
            }
            assert_eq!(h.estimate(), est, "p={p} n={n}");
            let mut u = h.clone();
            u.merge(&g).unwrap();
            assert_eq!(u.estimate(), union, "p={p} n={n} union");
        }
    }

    #[test]
    fn merge_precision_mismatch_is_error() {
        let mut a = Hll::new(10).unwrap();
        let b = Hll::new(11).unwrap();
        assert!(matches!(a.merge(&b), Err(SketchError::Incompatible(_))));
    }
}
