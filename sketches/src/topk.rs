//! APPROX_TOP_K: SpaceSaving (Metwally, Agrawal, El Abbadi 2005) with the mergeable-summary
//! merge of Agarwal et al. (2012).
//!
//! The summary monitors at most `capacity` items. Each has an estimated `count` and an
//! `error`: the true count lies in `[count - error, count]`. Any item whose true frequency
//! exceeds `total / capacity` is guaranteed to be monitored. Output is the `k` largest
//! counts; `capacity` defaults to `max(10·k, 64)` so the reported top `k` are reliable on
//! skewed data.

use crate::hash::StableHasher;
use crate::{Sketch, SketchError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The index keys are already well-mixed 64-bit hashes: use them as they are.
#[derive(Default, Clone, Copy, Debug)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Index = HashMap<u64, u32, BuildHasherDefault<IdHasher>>;

/// An item of a top-k list: a scalar value (floats stored by bit pattern).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Item {
    Null,
    Bool(bool),
    Int(i64),
    /// `f64::to_bits` of a float that is not an exact integer.
    Float(u64),
    Str(String),
}

impl Item {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Item::Null => serde_json::Value::Null,
            Item::Bool(b) => (*b).into(),
            Item::Int(i) => (*i).into(),
            Item::Float(bits) => serde_json::Number::from_f64(f64::from_bits(*bits))
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Item::Str(s) => s.clone().into(),
        }
    }
}

/// A borrowed [`Item`], so counting an item already monitored allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemRef<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(&'a str),
}

impl ItemRef<'_> {
    pub fn to_owned_item(self) -> Item {
        match self {
            ItemRef::Null => Item::Null,
            ItemRef::Bool(b) => Item::Bool(b),
            ItemRef::Int(i) => Item::Int(i),
            ItemRef::Float(f) => Item::Float(f),
            ItemRef::Str(s) => Item::Str(s.to_string()),
        }
    }

    /// Stable hash (the index key).
    fn stable_hash(self) -> u64 {
        use std::hash::Hasher as _;
        let mut h = StableHasher::default();
        match self {
            ItemRef::Null => h.write_u8(0),
            ItemRef::Bool(b) => h.write_u32(0x100 | b as u32),
            ItemRef::Int(i) => {
                h.write_u8(2);
                h.write_i64(i)
            }
            ItemRef::Float(f) => {
                h.write_u8(3);
                h.write_u64(f)
            }
            ItemRef::Str(s) => {
                h.write_u8(4);
                h.write(s.as_bytes());
                h.write_usize(s.len())
            }
        }
        h.finish()
    }
}

impl Item {
    pub fn as_item_ref(&self) -> ItemRef<'_> {
        match self {
            Item::Null => ItemRef::Null,
            Item::Bool(b) => ItemRef::Bool(*b),
            Item::Int(i) => ItemRef::Int(*i),
            Item::Float(f) => ItemRef::Float(*f),
            Item::Str(s) => ItemRef::Str(s),
        }
    }
}

fn hash_of(item: &Item) -> u64 {
    item.as_item_ref().stable_hash()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub item: Item,
    pub count: u64,
    pub error: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TopKRepr {
    capacity: u32,
    total: u64,
    entries: Vec<Entry>,
}

/// A SpaceSaving heavy-hitters summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "TopKRepr", into = "TopKRepr")]
pub struct TopK {
    capacity: u32,
    total: u64,
    entries: Vec<Entry>,
    /// stable hash of item → position in `entries`.
    index: Index,
    /// `hashes[i]` is the stable hash of `entries[i].item`.
    hashes: Vec<u64>,
    /// A lower bound on the smallest count (exact after `recompute_min`).
    min_count: u64,
    min_hint: usize,
}

impl PartialEq for TopK {
    fn eq(&self, o: &Self) -> bool {
        self.capacity == o.capacity && self.total == o.total && self.entries == o.entries
    }
}

impl From<TopKRepr> for TopK {
    fn from(r: TopKRepr) -> Self {
        let mut t = TopK {
            capacity: r.capacity,
            total: r.total,
            entries: r.entries,
            index: Index::default(),
            hashes: Vec::new(),
            min_count: 0,
            min_hint: 0,
        };
        t.reindex();
        t
    }
}

impl From<TopK> for TopKRepr {
    fn from(t: TopK) -> Self {
        TopKRepr {
            capacity: t.capacity,
            total: t.total,
            entries: t.entries,
        }
    }
}

pub const MAX_CAPACITY: u32 = 1 << 20;

impl TopK {
    pub fn new(capacity: u32) -> Result<Self, SketchError> {
        if !(1..=MAX_CAPACITY).contains(&capacity) {
            return Err(SketchError::InvalidParameter(format!(
                "top-k capacity must be between 1 and {MAX_CAPACITY}, got {capacity}"
            )));
        }
        Ok(TopK {
            capacity,
            total: 0,
            entries: Vec::new(),
            index: Index::default(),
            hashes: Vec::new(),
            min_count: 0,
            min_hint: 0,
        })
    }

    /// Default capacity for reporting `k` items.
    pub fn default_capacity(k: u32) -> u32 {
        k.saturating_mul(10).clamp(64, MAX_CAPACITY)
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Total weight added.
    pub fn total(&self) -> u64 {
        self.total
    }

    fn reindex(&mut self) {
        self.hashes = self.entries.iter().map(|e| hash_of(&e.item)).collect();
        self.index = self
            .hashes
            .iter()
            .enumerate()
            .map(|(i, &h)| (h, i as u32))
            .collect();
        self.recompute_min();
    }

    fn recompute_min(&mut self) {
        self.min_count = self.entries.iter().map(|e| e.count).min().unwrap_or(0);
        self.min_hint = 0;
    }

    fn full(&self) -> bool {
        self.entries.len() >= self.capacity as usize
    }

    fn position(&self, h: u64, item: ItemRef<'_>) -> Option<usize> {
        match self.index.get(&h) {
            Some(&i)
                if self
                    .entries
                    .get(i as usize)
                    .is_some_and(|e| e.item.as_item_ref() == item) =>
            {
                Some(i as usize)
            }
            // A 64-bit hash collision between different items: fall back to a scan.
            Some(_) => self
                .entries
                .iter()
                .position(|e| e.item.as_item_ref() == item),
            None => None,
        }
    }

    /// Add `weight` occurrences of `item`.
    pub fn insert(&mut self, item: Item, weight: u64) {
        if weight == 0 {
            return;
        }
        let h = hash_of(&item);
        if let Some(i) = self.position(h, item.as_item_ref()) {
            self.total += weight;
            self.entries[i].count += weight;
            return;
        }
        self.insert_new(h, item, weight);
    }

    /// Add `weight` occurrences of a borrowed item; allocates only if it is not monitored.
    pub fn insert_ref(&mut self, item: ItemRef<'_>, weight: u64) {
        if weight == 0 {
            return;
        }
        let h = item.stable_hash();
        if let Some(i) = self.position(h, item) {
            self.total += weight;
            self.entries[i].count += weight;
            return;
        }
        self.insert_new(h, item.to_owned_item(), weight);
    }

    fn insert_new(&mut self, h: u64, item: Item, weight: u64) {
        self.total += weight;
        if !self.full() {
            self.index.insert(h, self.entries.len() as u32);
            self.hashes.push(h);
            self.entries.push(Entry {
                item,
                count: weight,
                error: 0,
            });
            self.min_count = self.min_count.min(weight);
            if self.entries.len() == 1 {
                self.min_count = weight;
            }
            return;
        }
        // Replace an item with the minimum count.
        let victim = self.find_min();
        let e = &mut self.entries[victim];
        let old_h = self.hashes[victim];
        self.hashes[victim] = h;
        if self.index.get(&old_h) == Some(&(victim as u32)) {
            self.index.remove(&old_h);
        }
        let min = e.count;
        *e = Entry {
            item,
            count: min + weight,
            error: min,
        };
        self.index.insert(h, victim as u32);
        self.min_hint = victim + 1;
    }

    /// Position of an entry holding the minimum count.
    fn find_min(&mut self) -> usize {
        loop {
            let n = self.entries.len();
            for off in 0..n {
                let i = (self.min_hint + off) % n;
                if self.entries[i].count <= self.min_count {
                    self.min_hint = i;
                    return i;
                }
            }
            self.recompute_min();
        }
    }

    /// The `k` items with the largest counts, most frequent first (ties by item).
    pub fn top(&self, k: usize) -> Vec<Entry> {
        let mut v: Vec<&Entry> = self.entries.iter().collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.item.cmp(&b.item)));
        v.into_iter().take(k).cloned().collect()
    }

    /// Estimated count and error of one item (`None` if not monitored: its true count is
    /// then at most the smallest monitored count, or 0 if the summary is not full).
    pub fn get(&self, item: &Item) -> Option<(u64, u64)> {
        self.position(hash_of(item), item.as_item_ref())
            .map(|i| (self.entries[i].count, self.entries[i].error))
    }

    /// Upper bound on the count of any item that is not monitored.
    pub fn unmonitored_bound(&self) -> u64 {
        if self.full() {
            self.entries.iter().map(|e| e.count).min().unwrap_or(0)
        } else {
            0
        }
    }
}

impl Sketch for TopK {
    const KIND: u8 = 4;

    fn merge(&mut self, other: &Self) -> Result<(), SketchError> {
        if self.capacity != other.capacity {
            return Err(SketchError::Incompatible(format!(
                "top-k capacity {} vs {}",
                self.capacity, other.capacity
            )));
        }
        if other.total == 0 {
            return Ok(());
        }
        let min_a = self.unmonitored_bound();
        let min_b = other.unmonitored_bound();
        let mut merged: Vec<Entry> = Vec::with_capacity(self.entries.len() + other.entries.len());
        for e in &self.entries {
            let (c, err) = other.get(&e.item).unwrap_or((min_b, min_b));
            merged.push(Entry {
                item: e.item.clone(),
                count: e.count + c,
                error: e.error + err,
            });
        }
        for e in &other.entries {
            if self.get(&e.item).is_none() {
                merged.push(Entry {
                    item: e.item.clone(),
                    count: e.count + min_a,
                    error: e.error + min_a,
                });
            }
        }
        merged.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.item.cmp(&b.item)));
        merged.truncate(self.capacity as usize);
        self.entries = merged;
        self.total += other.total;
        self.reindex();
        Ok(())
    }

    fn memory_bytes(&self) -> usize {
        let strings: usize = self
            .entries
            .iter()
            .map(|e| match &e.item {
                Item::Str(s) => s.capacity(),
                _ => 0,
            })
            .sum();
        std::mem::size_of::<Self>()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + strings
            + self.index.capacity() * (std::mem::size_of::<(u64, u32)>() + 1)
            + self.hashes.capacity() * 8
    }

    fn validate(&self) -> Result<(), SketchError> {
        if !(1..=MAX_CAPACITY).contains(&self.capacity)
            || self.entries.len() > self.capacity as usize
            || self.entries.iter().any(|e| e.error > e.count)
        {
            return Err(SketchError::Decode("bad top-k summary".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Item {
        Item::Str(x.into())
    }

    #[test]
    fn exact_while_not_full() {
        let mut t = TopK::new(10).unwrap();
        for (w, n) in [("a", 5), ("b", 3), ("c", 1)] {
            for _ in 0..n {
                t.insert(s(w), 1);
            }
        }
        let top = t.top(2);
        assert_eq!(top[0].item, s("a"));
        assert_eq!((top[0].count, top[0].error), (5, 0));
        assert_eq!(top[1].item, s("b"));
    }

    #[test]
    fn replacement_keeps_bounds() {
        let mut t = TopK::new(2).unwrap();
        for w in ["a", "a", "a", "b", "c", "d"] {
            t.insert(s(w), 1);
        }
        let (c, e) = t.get(&s("a")).unwrap();
        assert!(c >= 3 && c - e <= 3);
        assert_eq!(t.total(), 6);
        for e in t.top(2) {
            assert!(e.count >= e.error);
        }
    }
}
