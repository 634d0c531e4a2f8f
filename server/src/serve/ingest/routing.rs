//! Where an event goes: the partition of its key column's value.

use serde_json::Value as Json;

/// The text of an event's key column (a string as is, other values as JSON).
pub fn key_text(event: &Json, key: &str) -> String {
    match event.get(key) {
        Some(Json::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// Stable partition of an event: FNV-1a of the key column's JSON text.
pub fn partition_of(event: &Json, key: Option<&str>, partitions: u32) -> u32 {
    let Some(k) = key else { return 0 };
    let text = key_text(event, k);
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % partitions.max(1) as u64) as u32
}

pub const FNV_EMPTY: u64 = 0xcbf29ce484222325;

/// FNV-1a, as [`partition_of`] computes it.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = FNV_EMPTY;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Partition of a key hash (as [`partition_of`]).
pub fn partition_of_hash(h: u64, partitions: u32) -> u32 {
    (h % partitions.max(1) as u64) as u32
}
