//! The per-partition key table: boxed per-key states found by the 64-bit hash of the
//! partition key, in an open-addressing table (linear probing, backward-shift deletion).
//!
//! A hand-written table rather than `HashMap` so that the slot a hash lands in is known
//! before it is read: the reorder buffer knows which rows come next, and the matcher
//! prefetches their slots and key states while it works on the current row (with 100k
//! live keys these are cache misses, and they would otherwise come one after another).
//! Equal hashes of different keys are separate entries; callers check the key itself.

use serde::de::Deserializer;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone)]
struct Slot<V> {
    hash: u64,
    val: Option<Box<V>>,
}

/// Boxed values by 64-bit hash (see the module docs). Slot indexes stay valid until the
/// next `insert` or `remove`.
#[derive(Debug, Clone)]
pub(crate) struct KeyTable<V> {
    slots: Vec<Slot<V>>,
    len: usize,
    /// `64 - log2(slots.len())`: the slot of a hash is its top bits after a multiply.
    shift: u32,
}

impl<V> Default for KeyTable<V> {
    fn default() -> Self {
        KeyTable {
            slots: Vec::new(),
            len: 0,
            shift: 64,
        }
    }
}

const MIN_SLOTS: usize = 16;

impl<V> KeyTable<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated (for memory estimates).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of one slot.
    pub const SLOT_BYTES: usize = std::mem::size_of::<Slot<V>>();

    #[inline]
    fn home(&self, hash: u64) -> usize {
        // Fibonacci hashing: the top bits of hash × 2^64/φ
        (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot of the value with this hash for which `eq` holds.
    #[inline]
    pub fn find(&self, hash: u64, mut eq: impl FnMut(&V) -> bool) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            let s = &self.slots[i];
            match &s.val {
                None => return None,
                Some(v) if s.hash == hash && eq(v) => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// Slots holding a value with this hash (almost always zero or one).
    pub fn slots_with_hash(&self, hash: u64) -> Vec<usize> {
        let mut out = Vec::new();
        if self.len == 0 {
            return out;
        }
        let mask = self.mask();
        let mut i = self.home(hash);
        while let Some(s) = Some(&self.slots[i]).filter(|s| s.val.is_some()) {
            if s.hash == hash {
                out.push(i);
            }
            i = (i + 1) & mask;
        }
        out
    }

    pub fn get(&self, i: usize) -> Option<&V> {
        self.slots.get(i).and_then(|s| s.val.as_deref())
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut V> {
        self.slots.get_mut(i).and_then(|s| s.val.as_deref_mut())
    }

    /// Starts loading the slot where `hash` is looked up (no effect on the contents).
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        if self.len > 0 {
            mem_prefetch::prefetch_read_data::<_, 3>(&self.slots[self.home(hash)]);
        }
    }

    /// The first value stored under `hash` (its key unchecked): for prefetching. Reads
    /// the slots, so call it once they are loaded ([`prefetch_slot`](Self::prefetch_slot)).
    #[inline]
    pub fn first_with_hash(&self, hash: u64) -> Option<&V> {
        self.find(hash, |_| true).and_then(|i| self.get(i))
    }

    /// Adds a value (the caller has checked that its key is not there yet); returns its slot.
    pub fn insert(&mut self, hash: u64, val: Box<V>) -> usize {
        // at most half full: most look-ups are for keys that are not there (a row whose
        // key has no state), and with linear probing their cost grows fast with the load
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.mask();
        let mut i = self.home(hash);
        while self.slots[i].val.is_some() {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot {
            hash,
            val: Some(val),
        };
        self.len += 1;
        i
    }

    fn grow(&mut self) {
        self.rebuild((self.slots.len() * 2).max(MIN_SLOTS));
    }

    /// Moves every entry into `n` slots (a power of two, more than the entries).
    fn rebuild(&mut self, n: usize) {
        let old = std::mem::replace(
            &mut self.slots,
            (0..n).map(|_| Slot { hash: 0, val: None }).collect(),
        );
        self.shift = 64 - n.trailing_zeros();
        self.len = 0;
        for s in old {
            if let Some(v) = s.val {
                self.insert(s.hash, v);
            }
        }
    }

    /// Removes the value in slot `i`; later entries of its probe run move back (and the
    /// table shrinks when mostly empty), so other slot indexes may change.
    pub fn remove(&mut self, i: usize) -> Option<Box<V>> {
        let out = self.slots.get_mut(i)?.val.take()?;
        self.len -= 1;
        if self.len == 0 {
            *self = KeyTable::default();
            return Some(out);
        }
        let mask = self.mask();
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if self.slots[j].val.is_none() {
                break;
            }
            let k = self.home(self.slots[j].hash);
            // the entry at j may fill the hole unless its home lies cyclically in (hole, j]
            let stays = if hole <= j {
                hole < k && k <= j
            } else {
                hole < k || k <= j
            };
            if !stays {
                self.slots.swap(hole, j);
                hole = j;
            }
        }
        if self.slots.len() > 4 * MIN_SLOTS && self.len * 16 < self.slots.len() {
            self.rebuild(self.slots.len() / 4);
        }
        Some(out)
    }

    /// Every (hash, value), in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.slots
            .iter()
            .filter_map(|s| s.val.as_deref().map(|v| (s.hash, v)))
    }

    /// Takes every entry out, by hash (entries with equal hashes in slot order).
    pub fn take_sorted(&mut self) -> Vec<(u64, Box<V>)> {
        let mut out: Vec<(u64, Box<V>)> = std::mem::take(&mut self.slots)
            .into_iter()
            .filter_map(|s| s.val.map(|v| (s.hash, v)))
            .collect();
        out.sort_by_key(|(h, _)| *h);
        self.len = 0;
        self.shift = 64;
        out
    }
}

/// Serialized as a map from hash to the list of values with that hash (the format of the
/// `HashMap<u64, SmallVec<[Box<V>; 1]>>` this table replaced; checkpoints are unchanged).
impl<V: Serialize> Serialize for KeyTable<V> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut by_hash: BTreeMap<u64, Vec<&V>> = BTreeMap::new();
        for (h, v) in self.iter() {
            by_hash.entry(h).or_default().push(v);
        }
        let mut m = ser.serialize_map(Some(by_hash.len()))?;
        for (h, vs) in &by_hash {
            m.serialize_entry(h, vs)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for KeyTable<V> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let m: HashMap<u64, Vec<Box<V>>> = HashMap::deserialize(de)?;
        let mut entries: Vec<(u64, Vec<Box<V>>)> = m.into_iter().collect();
        entries.sort_unstable_by_key(|(h, _)| *h);
        let mut t = KeyTable::default();
        for (h, vs) in entries {
            for v in vs {
                t.insert(h, v);
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// Random inserts, finds and removes against a plain list, with few distinct hashes
    /// (long probe runs, equal hashes, wrap-around at the end of the slots).
    fn run_ops(ops: &[(u8, u8, u8)]) {
        let mut t: KeyTable<(u64, u32)> = KeyTable::default();
        let mut reference: Vec<(u64, u32)> = Vec::new();
        let mut next_id = 0u32;
        for &(op, h, pick) in ops {
            // hashes chosen so that several share a home slot
            let hash = ((h % 24) as u64).wrapping_mul(0x1000_0000_0000_0001);
            match op % 3 {
                0 => {
                    next_id += 1;
                    t.insert(hash, Box::new((hash, next_id)));
                    reference.push((hash, next_id));
                }
                1 => {
                    let with: Vec<u32> = reference
                        .iter()
                        .filter(|(x, _)| *x == hash)
                        .map(|(_, id)| *id)
                        .collect();
                    if let Some(&id) = with.get(pick as usize % with.len().max(1)) {
                        let i = t.find(hash, |v| v.1 == id).unwrap();
                        assert_eq!(t.get(i).unwrap(), &(hash, id));
                        assert_eq!(*t.remove(i).unwrap(), (hash, id));
                        reference.retain(|v| v.1 != id);
                    } else {
                        assert!(t.find(hash, |_| true).is_none());
                    }
                }
                _ => {
                    let mut got: Vec<u32> = t
                        .slots_with_hash(hash)
                        .into_iter()
                        .map(|i| t.get(i).unwrap().1)
                        .collect();
                    got.sort_unstable();
                    let mut want: Vec<u32> = reference
                        .iter()
                        .filter(|(x, _)| *x == hash)
                        .map(|(_, id)| *id)
                        .collect();
                    want.sort_unstable();
                    assert_eq!(got, want);
                }
            }
            assert_eq!(t.len(), reference.len());
            // every entry is still found from its hash
            for (h, id) in &reference {
                assert!(t.find(*h, |v| v.1 == *id).is_some(), "lost {h:x}/{id}");
            }
        }
        let mut all: Vec<(u64, u32)> = t.iter().map(|(_, v)| *v).collect();
        all.sort_unstable();
        reference.sort_unstable();
        assert_eq!(all, reference);
        let json = serde_json::to_string(&t).unwrap();
        let mut back: KeyTable<(u64, u32)> = serde_json::from_str(&json).unwrap();
        let mut again: Vec<(u64, u32)> = back.take_sorted().into_iter().map(|(_, v)| *v).collect();
        again.sort_unstable();
        assert_eq!(again, reference);
        assert_eq!(back.len(), 0);
    }

    proptest! {
        #[test]
        fn table_matches_a_list(ops in proptest::collection::vec((0u8..3, any::<u8>(), any::<u8>()), 0..300)) {
            run_ops(&ops);
        }
    }

    #[test]
    fn serialized_like_the_old_hash_map() {
        // the map this table replaced: hash → list of values
        let mut old: HashMap<u64, Vec<u32>> = HashMap::new();
        old.insert(7, vec![1, 2]);
        old.insert(9, vec![3]);
        let json = serde_json::to_string(&old).unwrap();
        let mut t: KeyTable<u32> = serde_json::from_str(&json).unwrap();
        assert_eq!(t.len(), 3);
        let back: HashMap<u64, Vec<u32>> =
            serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, old);
        let taken: Vec<(u64, u32)> = t.take_sorted().into_iter().map(|(h, v)| (h, *v)).collect();
        assert_eq!(taken, vec![(7, 1), (7, 2), (9, 3)]);
    }
}
