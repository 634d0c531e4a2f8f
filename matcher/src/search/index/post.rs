//! The posting table: (field, term) key → the searches anchored on it, with a Bloom filter
//! in front.

use super::*;

/// Where the slots anchored on one key are: one inline, or a list.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PostEnt {
    pub(super) key: u64,
    /// The slot (`list == false`) or the index in `PostTable::lists`.
    pub(super) a: u32,
    pub(super) list: bool,
}

/// Open-addressing table (linear probing, 16-byte entries, at most half full) from a
/// (field, term) key to the searches anchored on it. A key with one search (the common
/// case) holds it inline, so a document term costs one cache line.
///
/// In front of it, a small Bloom filter (one 64-bit word per key, 3 bits; ~8–16 bits per
/// key, so it stays in the CPU cache) rules out most document terms, which are anchors of
/// no search, without touching the large table. Removals leave their bits (a filter only
/// errs towards "maybe"); it is rebuilt once as many keys were removed as are live.
#[derive(Default)]
pub(super) struct PostTable {
    pub(super) ents: Vec<PostEnt>,
    pub(super) len: usize,
    pub(super) lists: Vec<Vec<u32>>,
    pub(super) free_lists: Vec<u32>,
    pub(super) bloom: Vec<u64>,
    pub(super) removed: usize,
}

#[inline]
pub(super) fn bloom_bits(key: u64) -> u64 {
    (1u64 << (key & 63)) | (1u64 << ((key >> 6) & 63)) | (1u64 << ((key >> 12) & 63))
}

impl PostTable {
    pub(super) fn mask(&self) -> usize {
        self.ents.len().wrapping_sub(1)
    }

    /// The entry index holding `key`, or the empty entry where it would go.
    pub(super) fn find(&self, key: u64) -> usize {
        let mask = self.mask();
        let mut i = key as usize & mask;
        loop {
            let k = self.ents[i].key;
            if k == key || k == 0 {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Whether `key` (made [`nonzero`]) may be in the table.
    #[inline]
    pub(super) fn may_contain(&self, key: u64) -> bool {
        let Some(mask) = self.bloom.len().checked_sub(1) else {
            return false;
        };
        let m = bloom_bits(key);
        self.bloom[(key >> 40) as usize & mask] & m == m
    }

    pub(super) fn bloom_add(&mut self, key: u64) {
        let mask = self.bloom.len() - 1;
        self.bloom[(key >> 40) as usize & mask] |= bloom_bits(key);
    }

    pub(super) fn rebuild_bloom(&mut self) {
        let words = (self.ents.len() / 16).max(1);
        self.bloom = vec![0; words];
        for i in 0..self.ents.len() {
            let k = self.ents[i].key;
            if k != 0 {
                self.bloom_add(k);
            }
        }
        self.removed = 0;
    }

    /// The first entry probed for `key` (loaded ahead of the look-up to overlap misses).
    #[inline]
    pub(super) fn first_key(&self, key: u64) -> u64 {
        match self.ents.get(key as usize & self.mask()) {
            Some(e) => e.key,
            None => 0,
        }
    }

    pub(super) fn get(&self, key: u64) -> &[u32] {
        let key = nonzero(key);
        if self.ents.is_empty() {
            return &[];
        }
        let e = &self.ents[self.find(key)];
        if e.key == 0 {
            &[]
        } else if e.list {
            &self.lists[e.a as usize]
        } else {
            std::slice::from_ref(&e.a)
        }
    }

    pub(super) fn insert(&mut self, key: u64, slot: u32) {
        let key = nonzero(key);
        if (self.len + 1) * 2 > self.ents.len() {
            self.grow();
        }
        let i = self.find(key);
        let e = self.ents[i];
        if e.key == 0 {
            self.ents[i] = PostEnt {
                key,
                a: slot,
                list: false,
            };
            self.len += 1;
            self.bloom_add(key);
        } else if e.list {
            self.lists[e.a as usize].push(slot);
        } else {
            let l = match self.free_lists.pop() {
                Some(l) => l,
                None => {
                    self.lists.push(Vec::new());
                    (self.lists.len() - 1) as u32
                }
            };
            self.lists[l as usize] = vec![e.a, slot];
            self.ents[i] = PostEnt {
                key,
                a: l,
                list: true,
            };
        }
    }

    pub(super) fn remove(&mut self, key: u64, slot: u32) {
        let key = nonzero(key);
        if self.ents.is_empty() {
            return;
        }
        let i = self.find(key);
        let e = self.ents[i];
        if e.key == 0 {
            return;
        }
        if e.list {
            let v = &mut self.lists[e.a as usize];
            if let Some(j) = v.iter().position(|&s| s == slot) {
                v.swap_remove(j);
            }
            if v.len() == 1 {
                let only = v[0];
                self.lists[e.a as usize] = Vec::new();
                self.free_lists.push(e.a);
                self.ents[i] = PostEnt {
                    key,
                    a: only,
                    list: false,
                };
            }
        } else if e.a == slot {
            self.delete_at(i);
            self.removed += 1;
            if self.removed > self.len {
                self.rebuild_bloom();
            }
        }
    }

    /// Backward-shift deletion (keeps every probe chain unbroken without tombstones).
    pub(super) fn delete_at(&mut self, mut i: usize) {
        let mask = self.mask();
        self.len -= 1;
        loop {
            self.ents[i] = PostEnt::default();
            let mut j = i;
            loop {
                j = (j + 1) & mask;
                let k = self.ents[j].key;
                if k == 0 {
                    return;
                }
                let home = k as usize & mask;
                // Entry j may move to i when its home is not cyclically in (i, j].
                let stays = if i <= j {
                    i < home && home <= j
                } else {
                    i < home || home <= j
                };
                if !stays {
                    self.ents[i] = self.ents[j];
                    i = j;
                    break;
                }
            }
        }
    }

    pub(super) fn grow(&mut self) {
        let cap = (self.ents.len() * 2).max(16);
        let old = std::mem::replace(&mut self.ents, vec![PostEnt::default(); cap]);
        for e in old.into_iter().filter(|e| e.key != 0) {
            let i = self.find(e.key);
            self.ents[i] = e;
        }
        self.rebuild_bloom();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The posting table (open addressing, backward-shift deletion, Bloom filter in
        /// front) answers like a map of sets, through any sequence of inserts and removes.
        #[test]
        fn post_table_equals_model(
            ops in proptest::collection::vec((proptest::bool::ANY, 0u64..40, 0u32..6), 0..400),
        ) {
            let mut t = PostTable::default();
            let mut model: std::collections::BTreeMap<u64, Vec<u32>> = Default::default();
            // Keys that collide in their low bits (same home entry) and in the filter word.
            let key = |k: u64| nonzero(k.wrapping_mul(1 << 20) ^ (k % 3));
            for (ins, k, slot) in ops {
                let kk = key(k);
                let v = model.entry(kk).or_default();
                if ins {
                    if !v.contains(&slot) {
                        v.push(slot);
                        t.insert(kk, slot);
                    }
                } else if let Some(j) = v.iter().position(|&x| x == slot) {
                    v.remove(j);
                    t.remove(kk, slot);
                }
                for (&mk, mv) in &model {
                    let mut got = t.get(mk).to_vec();
                    got.sort_unstable();
                    let mut want = mv.clone();
                    want.sort_unstable();
                    proptest::prop_assert_eq!(&got, &want);
                    if !want.is_empty() {
                        proptest::prop_assert!(t.may_contain(mk));
                    }
                }
            }
        }
    }
}
