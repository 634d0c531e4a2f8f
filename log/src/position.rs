//! Position tokens: the opaque, monotonically increasing `position` the API returns
//! for a write, usable later in `after=`.
//!
//! A [`Position`] maps `(topic, partition)` to an *end offset*: "every record of that
//! partition below this offset". The server builds one after an acknowledged write with
//! [`crate::Log::position`] (the end offsets of every partition of the written topic at
//! that moment, which include the write itself), and a reader's `after=P` is satisfied
//! once the engine has applied, for each entry, every offset below it
//! ([`Position::covers`]).
//!
//! Token text: `w1`, then 16 lowercase hex digits of the sum of all end offsets, then
//! the hex of the entries (varints) and of a CRC32C of that binary form. End offsets never
//! decrease, so of two tokens for the same topic the later one is component-wise ≥ the
//! earlier one, and — because the fixed-width sum comes first — also greater or equal as
//! a plain string and as [`Position::sequence`]. A client must treat the token as
//! opaque; a mangled token fails its checksum and is rejected with a clear error.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// A vector of per-partition end offsets. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    entries: BTreeMap<(String, u32), u64>,
}

const TOKEN_PREFIX: &str = "w1";

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], at: &mut usize) -> Result<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at).ok_or(Error::InvalidPosition("truncated"))?;
        *at += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Error::InvalidPosition("varint too long"))
}

impl Position {
    /// An empty position (covered by everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the end offset of one partition.
    pub fn set(&mut self, topic: &str, partition: u32, end_offset: u64) {
        self.entries
            .insert((topic.to_string(), partition), end_offset);
    }

    /// The end offset of one partition, if present.
    pub fn get(&self, topic: &str, partition: u32) -> Option<u64> {
        self.entries.get(&(topic.to_string(), partition)).copied()
    }

    /// All entries in (topic, partition) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32, u64)> {
        self.entries.iter().map(|((t, p), o)| (t.as_str(), *p, *o))
    }

    /// True when no entry is present.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of all end offsets: grows with every write; orders tokens of one topic.
    pub fn sequence(&self) -> u64 {
        self.entries
            .values()
            .fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// True if every entry of `other` is ≤ the same entry here (missing here = 0).
    pub fn covers(&self, other: &Position) -> bool {
        other
            .entries
            .iter()
            .all(|(k, &o)| self.entries.get(k).copied().unwrap_or(0) >= o)
    }

    /// Component-wise maximum.
    pub fn merge_max(&mut self, other: &Position) {
        for (k, &o) in &other.entries {
            let e = self.entries.entry(k.clone()).or_insert(0);
            *e = (*e).max(o);
        }
    }

    /// Binary form (used inside checkpoints): entries as varints + CRC32C.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut by_topic: BTreeMap<&str, Vec<(u32, u64)>> = BTreeMap::new();
        for ((t, p), o) in &self.entries {
            by_topic.entry(t.as_str()).or_default().push((*p, *o));
        }
        put_varint(&mut out, by_topic.len() as u64);
        for (t, parts) in by_topic {
            put_varint(&mut out, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
            put_varint(&mut out, parts.len() as u64);
            for (p, o) in parts {
                put_varint(&mut out, p as u64);
                put_varint(&mut out, o);
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses [`Position::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Position> {
        if b.len() < 4 {
            return Err(Error::InvalidPosition("too short"));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(Error::InvalidPosition("checksum mismatch"));
        }
        let mut at = 0;
        let mut pos = Position::new();
        let topics = get_varint(body, &mut at)?;
        for _ in 0..topics {
            let len = get_varint(body, &mut at)? as usize;
            let end = at
                .checked_add(len)
                .filter(|&e| e <= body.len())
                .ok_or(Error::InvalidPosition("truncated topic name"))?;
            let topic = std::str::from_utf8(&body[at..end])
                .map_err(|_| Error::InvalidPosition("topic name is not UTF-8"))?
                .to_string();
            at = end;
            let n = get_varint(body, &mut at)?;
            for _ in 0..n {
                let p = get_varint(body, &mut at)?;
                let p =
                    u32::try_from(p).map_err(|_| Error::InvalidPosition("partition too large"))?;
                let o = get_varint(body, &mut at)?;
                pos.entries.insert((topic.clone(), p), o);
            }
        }
        if at != body.len() {
            return Err(Error::InvalidPosition("trailing bytes"));
        }
        Ok(pos)
    }

    /// The opaque token text.
    pub fn encode(&self) -> String {
        let bytes = self.to_bytes();
        let mut s = String::with_capacity(2 + 16 + bytes.len() * 2);
        s.push_str(TOKEN_PREFIX);
        s.push_str(&format!("{:016x}", self.sequence()));
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Parses a token made by [`Position::encode`].
    pub fn decode(token: &str) -> Result<Position> {
        let rest = token
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(Error::InvalidPosition("not a weir position token"))?;
        if rest.len() < 16 || rest.len() % 2 != 0 || !rest.is_ascii() {
            return Err(Error::InvalidPosition("bad length"));
        }
        let seq =
            u64::from_str_radix(&rest[..16], 16).map_err(|_| Error::InvalidPosition("bad hex"))?;
        let hex = &rest[16..];
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        for i in (0..hex.len()).step_by(2) {
            bytes.push(
                u8::from_str_radix(&hex[i..i + 2], 16)
                    .map_err(|_| Error::InvalidPosition("bad hex"))?,
            );
        }
        let pos = Position::from_bytes(&bytes)?;
        if pos.sequence() != seq {
            return Err(Error::InvalidPosition("sequence does not match entries"));
        }
        Ok(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn token_roundtrip_and_order() {
        let mut a = Position::new();
        a.set("clicks", 0, 10);
        a.set("clicks", 1, 3);
        let mut b = a.clone();
        b.set("clicks", 1, 4);
        let (ta, tb) = (a.encode(), b.encode());
        assert_eq!(Position::decode(&ta).unwrap(), a);
        assert!(ta < tb);
        assert!(b.covers(&a) && !a.covers(&b));
        assert!(Position::decode("w1zz").is_err());
        let mut bad = tb.clone().into_bytes();
        let last = bad.len() - 6;
        bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
        assert!(Position::decode(std::str::from_utf8(&bad).unwrap()).is_err());
    }

    proptest! {
        #[test]
        fn later_tokens_sort_later(start in proptest::collection::vec(0u64..1_000_000, 1..6),
                                   steps in proptest::collection::vec((0usize..6, 1u64..1000), 1..20)) {
            let mut pos = Position::new();
            for (i, o) in start.iter().enumerate() { pos.set("s", i as u32, *o); }
            let mut prev = pos.encode();
            for (i, d) in steps {
                let i = (i % start.len()) as u32;
                let cur = pos.get("s", i).unwrap();
                pos.set("s", i, cur + d);
                let tok = pos.encode();
                prop_assert!(tok > prev);
                prop_assert_eq!(Position::decode(&tok).unwrap(), pos.clone());
                prev = tok;
            }
        }
    }
}
