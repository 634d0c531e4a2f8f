//! Where an event goes: one function of its key's decoded, typed value, used by ingest,
//! by repartitioned copies and (as the Kafka message key) by Kafka appends.
//!
//! The key's canonical bytes ([`key_bytes`]) are the same for values the engine groups
//! together: an INT column's `4` and `4.0` are both `Int(4)`, and an INT and a FLOAT with
//! the same integral value write alike. A string is its UTF-8 bytes, an integral number its
//! decimal digits, so string keys and keys sent as JSON integers map to the partitions
//! they had before routing used the typed value (docs/operations.md, "Partitions").
//! The embedded log places a key by FNV-1a of these bytes; Kafka by its own partitioner
//! (murmur2) of the same bytes, so other producers that key by the same text agree.

use matcher::value::Value;
use std::borrow::Cow;

/// FNV-1a's offset basis: the hash of no bytes.
pub const FNV_EMPTY: u64 = 0xcbf29ce484222325;

/// FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = FNV_EMPTY;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The canonical bytes of a key value: `Null` (absent or null) is empty; a string is its
/// bytes; an INT, a TIMESTAMP (milliseconds) and an integral FLOAT are decimal digits;
/// another FLOAT is its JSON text; a BOOL `true`/`false`; a JSON array or object its
/// JSON text.
pub fn key_bytes(v: &Value) -> Cow<'_, [u8]> {
    match v {
        Value::Null => Cow::Borrowed(&[]),
        Value::Bool(true) => Cow::Borrowed(b"true"),
        Value::Bool(false) => Cow::Borrowed(b"false"),
        Value::Int(i) | Value::Timestamp(i) => Cow::Owned(i.to_string().into_bytes()),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
            Cow::Owned((*f as i64).to_string().into_bytes())
        }
        Value::Float(f) => Cow::Owned(
            serde_json::Number::from_f64(*f)
                .map_or_else(|| f.to_string(), |n| n.to_string())
                .into_bytes(),
        ),
        Value::String(s) => Cow::Borrowed(s.as_bytes()),
        Value::Json(j) => Cow::Owned(j.to_string().into_bytes()),
    }
}

/// The hash of a key value (FNV-1a of [`key_bytes`]); strings and integers without
/// building the bytes.
pub fn key_hash(v: &Value) -> u64 {
    match v {
        Value::String(s) => fnv1a(s.as_bytes()),
        Value::Int(i) | Value::Timestamp(i) => int_hash(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => int_hash(*f as i64),
        other => fnv1a(&key_bytes(other)),
    }
}

/// FNV-1a of an integer's decimal digits (as [`key_bytes`] writes them).
pub fn int_hash(i: i64) -> u64 {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = i.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut h = FNV_EMPTY;
    if i < 0 {
        h = (h ^ u64::from(b'-')).wrapping_mul(0x100000001b3);
    }
    for b in &buf[at..] {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    h
}

/// The partition of a key hash among `partitions` (≥ 1).
pub fn partition_of_hash(h: u64, partitions: u32) -> u32 {
    (h % partitions.max(1) as u64) as u32
}

/// The partition of a key value among `partitions` on the embedded log.
pub fn partition_of(v: &Value, partitions: u32) -> u32 {
    partition_of_hash(key_hash(v), partitions)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn values_that_group_together_share_their_bytes() {
        assert_eq!(key_bytes(&Value::Int(4)), key_bytes(&Value::Float(4.0)));
        assert_eq!(&*key_bytes(&Value::Int(-12)), b"-12");
        assert_eq!(&*key_bytes(&Value::Float(1.5)), b"1.5");
        assert_eq!(&*key_bytes(&Value::String("abc".into())), b"abc");
        assert_eq!(&*key_bytes(&Value::Null), b"");
        assert_eq!(&*key_bytes(&Value::Timestamp(1000)), b"1000");
        assert_eq!(&*key_bytes(&Value::Bool(true)), b"true");
    }

    #[test]
    fn integer_hash_is_that_of_the_digits() {
        for i in [
            0,
            1,
            -1,
            9,
            10,
            4096,
            -4096,
            i64::MAX,
            i64::MIN,
            1234567890123,
        ] {
            assert_eq!(int_hash(i), fnv1a(i.to_string().as_bytes()), "{i}");
        }
    }

    /// String keys and keys sent as JSON integers hash as the JSON-text routing did
    /// (FNV-1a of a string's text, of other values' JSON text).
    #[test]
    fn string_and_integer_keys_keep_their_partitions() {
        let old = |j: &serde_json::Value| match j {
            serde_json::Value::String(s) => fnv1a(s.as_bytes()),
            v => fnv1a(v.to_string().as_bytes()),
        };
        for j in [
            serde_json::json!("card-1"),
            serde_json::json!("ünïcode"),
            serde_json::json!(""),
            serde_json::json!(42),
            serde_json::json!(-7),
            serde_json::json!(1.5),
            serde_json::json!(true),
        ] {
            assert_eq!(key_hash(&Value::from_json(&j)), old(&j), "{j}");
        }
    }
}
