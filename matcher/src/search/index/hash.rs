//! Term hashes: a keyed 64-bit hash per term (the index keeps no term text) and the key of a
//! term in one field.

/// Terms are identified by a 64-bit keyed hash (wyhash-style multiply-mix with per-process
/// random keys, so collisions cannot be crafted): a document term is taken to be a stored
/// term when their hashes are equal, without comparing text (a false match needs a 64-bit
/// collision). Stored searches keep only hashes, never the term text.
pub(super) fn term_hash(s: &str) -> u64 {
    hash_bytes(s.as_bytes())
}

pub(super) fn hash_keys() -> &'static [u64; 3] {
    static KEYS: std::sync::OnceLock<[u64; 3]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        use std::hash::BuildHasher;
        let r = std::collections::hash_map::RandomState::new();
        // Odd keys with a fair mix of bits.
        [1u64, 2, 3].map(|i| r.hash_one(i) | 1)
    })
}

#[inline]
pub(super) fn mum(a: u64, b: u64) -> (u64, u64) {
    let r = u128::from(a) * u128::from(b);
    (r as u64, (r >> 64) as u64)
}

#[inline]
pub(super) fn mix(a: u64, b: u64) -> u64 {
    let (lo, hi) = mum(a, b);
    lo ^ hi
}

#[inline]
pub(super) fn read8(b: &[u8], i: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(x)
}

#[inline]
pub(super) fn read4(b: &[u8], i: usize) -> u64 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[i..i + 4]);
    u64::from(u32::from_le_bytes(x))
}

/// The bytes' keyed hash (the wyhash construction: overlapping 4/8-byte reads for short
/// inputs, 16 bytes per round for longer ones, length folded in).
#[inline]
pub(super) fn hash_bytes(b: &[u8]) -> u64 {
    hash_bytes_with(b, hash_keys())
}

#[inline]
pub(super) fn hash_bytes_with(b: &[u8], k: &[u64; 3]) -> u64 {
    let n = b.len();
    let mut seed = k[0];
    let (a, c) = if n <= 16 {
        if n >= 4 {
            let q = (n >> 3) << 2;
            (
                (read4(b, 0) << 32) | read4(b, q),
                (read4(b, n - 4) << 32) | read4(b, n - 4 - q),
            )
        } else if n > 0 {
            let x = (u64::from(b[0]) << 16) | (u64::from(b[n >> 1]) << 8) | u64::from(b[n - 1]);
            (x, 0)
        } else {
            (0, 0)
        }
    } else {
        let mut i = 0;
        while n - i > 16 {
            seed = mix(read8(b, i) ^ k[1], read8(b, i + 8) ^ seed);
            i += 16;
        }
        (read8(b, n - 16), read8(b, n - 8))
    };
    let (x, y) = mum(a ^ k[1], c ^ seed);
    mix(x ^ k[0] ^ n as u64, y ^ k[1])
}

/// The key of a term in one field: postings and the document's own terms are looked up by
/// it.
#[inline]
pub(super) fn field_key(f: u16, h: u64) -> u64 {
    h ^ (u64::from(f) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// 0 marks an empty table entry; a key that happens to be 0 is stored as 1.
#[inline]
pub(super) fn nonzero(k: u64) -> u64 {
    k.max(1)
}
