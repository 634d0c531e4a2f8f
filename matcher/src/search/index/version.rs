//! Versions of one shared index: [`SearchSet`].
//!
//! A [`SearchSet`] is a cheap handle (an `Arc`) on one version of the stored searches.
//! [`SearchSet::with_changes`] makes the next version from the newest one; every handle
//! keeps matching its own version, so partition workers can switch at different log
//! positions. All versions share one [`SearchIndex`] behind a read/write lock: a change
//! takes the write lock for the time of that change (work in proportion to it), a
//! document takes the read lock for the time of its match. A search added at version
//! `a` and dropped at version `d` stays in the tables, visible to the versions in
//! `[a, d)`, until no handle older than `d` is left; then its slot is freed (at the
//! next change, or [`SearchSet::reclaim`]).
//!
//! Why one shared index rather than immutable segments (Lucene-style, a small tail
//! segment rebuilt per change and tiered merges): matching cost grows with the number of
//! segments (every document term is looked up in every segment's posting table and
//! pattern set), while the lock costs one uncontended atomic operation per document
//! (see bench/README.md, "search": the same documents matched through a `SearchSet`
//! and through the bare index).

use super::*;
use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

struct Shared<R> {
    /// The index's limits (a copy readable without the lock).
    limits: SearchLimits,
    index: RwLock<SearchIndex<R>>,
    /// Versions some handle holds.
    live: Mutex<BTreeSet<u64>>,
}

impl<R> Shared<R> {
    /// The oldest and newest versions some handle holds.
    fn held(&self) -> (Option<u64>, Option<u64>) {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        (live.first().copied(), live.last().copied())
    }
}

struct Version<R> {
    v: u64,
    /// Searches in this version.
    searches: usize,
    shared: Arc<Shared<R>>,
}

impl<R> Drop for Version<R> {
    /// The last handle of a version let go: if the index is free to write (else at the
    /// next change), newer versions nobody holds are undone and the searches that only
    /// older versions could see are freed, so the slots a batch added stop being checked
    /// per document once every worker has switched.
    fn drop(&mut self) {
        let (oldest, newest) = {
            let mut live = self
                .shared
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            live.remove(&self.v);
            (live.first().copied(), live.last().copied())
        };
        let (Some(min_live), Some(max_live)) = (oldest, newest) else {
            return;
        };
        if let Ok(mut idx) = self.shared.index.try_write() {
            if idx.version > max_live {
                idx.roll_back(max_live, min_live);
            }
            idx.reclaim(min_live);
        }
    }
}

/// One version of a set of stored searches, shared (`Clone` is an `Arc` clone) and
/// matched through `&self` with a caller-owned [`SearchScratch`].
pub struct SearchSet<R = ()> {
    ver: Arc<Version<R>>,
}

impl<R> Clone for SearchSet<R> {
    fn clone(&self) -> Self {
        SearchSet {
            ver: self.ver.clone(),
        }
    }
}

impl<R> Default for SearchSet<R> {
    fn default() -> Self {
        Self::new(SearchLimits::default())
    }
}

const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<SearchSet<usize>>();
};

impl<R> SearchSet<R> {
    /// An empty set (version 0).
    pub fn new(limits: SearchLimits) -> Self {
        let shared = Arc::new(Shared {
            limits: limits.clone(),
            index: RwLock::new(SearchIndex::new(limits)),
            live: Mutex::new(BTreeSet::from([0])),
        });
        SearchSet {
            ver: Arc::new(Version {
                v: 0,
                searches: 0,
                shared,
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, SearchIndex<R>> {
        self.ver
            .shared
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, SearchIndex<R>> {
        self.ver
            .shared
            .index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// This handle's version (0 for a new set, one more per change).
    pub fn version(&self) -> u64 {
        self.ver.v
    }

    /// Searches in this version.
    pub fn len(&self) -> usize {
        self.ver.searches
    }

    pub fn is_empty(&self) -> bool {
        self.ver.searches == 0
    }

    /// Whether this version takes changes: it is the newest, or every newer one was let
    /// go.
    pub fn is_latest(&self) -> bool {
        self.read().version == self.ver.v || self.ver.shared.held().1 == Some(self.ver.v)
    }

    /// What the shared index holds (the newest version).
    pub fn stats(&self) -> SearchStats {
        self.read().stats()
    }

    /// The next version: this one without `remove` (names not present are ignored), with
    /// `add` (a name already present is replaced; in `add` twice, the last one counts).
    /// All or nothing: on error (the name of the search refused, why) nothing changes.
    /// Only the newest version takes changes ([`SearchError::NotLatest`] otherwise); the
    /// newer versions no handle holds any more do not count: they are undone first (at a
    /// cost in proportion to what they changed). The cost follows the change, not the
    /// number of stored searches.
    pub fn with_changes(
        &self,
        remove: &[&str],
        add: Vec<(String, SearchSpec<R>)>,
    ) -> Result<SearchSet<R>, (String, SearchError)> {
        // Checked before taking the lock (the regex of every wildcard / regex is built
        // here), so matching is held up only by the change itself.
        for (name, spec) in &add {
            if let Err(e) = validate_query(&self.ver.shared.limits, spec) {
                self.write().rejected += 1;
                return Err((name.clone(), e));
            }
        }
        let mut idx = self.write();
        if idx.version != self.ver.v {
            // Newer versions that nobody holds any more (made, then abandoned: e.g. a
            // later statement of the same change was refused) are undone, so this one
            // is the newest again.
            let (oldest_held, newest_held) = self.ver.shared.held();
            if let (Some(min_live), Some(max_live)) = (oldest_held, newest_held) {
                if max_live == self.ver.v {
                    idx.roll_back(self.ver.v, min_live);
                }
            }
        }
        if idx.version != self.ver.v {
            return Err((
                String::new(),
                SearchError::NotLatest {
                    version: self.ver.v,
                    latest: idx.version,
                },
            ));
        }
        if let (Some((name, _)), Err(e)) = (add.first(), idx.check_fields()) {
            idx.rejected += 1;
            return Err((name.clone(), e));
        }
        // The count after the change.
        let gone: FxHashSet<&str> = remove
            .iter()
            .copied()
            .filter(|n| idx.by_name.contains_key(*n))
            .collect();
        let mut seen: FxHashSet<&str> = FxHashSet::default();
        let mut count = idx.by_name.len() - gone.len();
        let limit = idx.limits.max_searches;
        for (name, _) in &add {
            if seen.insert(name)
                && (gone.contains(name.as_str()) || !idx.by_name.contains_key(name.as_str()))
            {
                count += 1;
                if count > limit {
                    idx.rejected += 1;
                    return Err((name.clone(), SearchError::TooManySearches { limit }));
                }
            }
        }
        let v = idx.version + 1;
        idx.version = v;
        for name in remove {
            idx.retire(name, v);
        }
        for (name, spec) in add {
            idx.retire(&name, v);
            idx.insert_at(&name, spec, v);
        }
        idx.prepare();
        let shared = self.ver.shared.clone();
        let min_live = {
            let mut live = shared.live.lock().unwrap_or_else(PoisonError::into_inner);
            live.insert(v);
            live.first().copied().unwrap_or(v)
        };
        idx.reclaim(min_live);
        let searches = idx.by_name.len();
        drop(idx);
        Ok(SearchSet {
            ver: Arc::new(Version {
                v,
                searches,
                shared,
            }),
        })
    }

    /// Free the searches no live handle can see any more (done by every change too).
    pub fn reclaim(&self) {
        let mut idx = self.write();
        let min_live = self.ver.shared.held().0.unwrap_or(self.ver.v);
        idx.reclaim(min_live);
    }

    /// [`SearchIndex::match_document`] with the searches of this version.
    pub fn match_document(
        &self,
        scratch: &mut SearchScratch,
        doc: &Document<'_>,
        residual: &mut dyn FnMut(&str, &R) -> bool,
    ) -> Vec<Hit> {
        owned_hits(|on_hit| self.match_document_with(scratch, doc, residual, on_hit))
    }

    /// [`SearchIndex::match_document_with`] with the searches of this version (the read
    /// lock is held for the call).
    pub fn match_document_with(
        &self,
        scratch: &mut SearchScratch,
        doc: &Document<'_>,
        residual: &mut dyn FnMut(&str, &R) -> bool,
        on_hit: &mut dyn FnMut(HitRef<'_>),
    ) {
        self.read()
            .match_at(self.ver.v, scratch, doc, residual, on_hit)
    }
}

impl<R> SearchIndex<R> {
    /// Drop `name` from version `v` on (kept for older versions until reclaimed).
    fn retire(&mut self, name: &str, v: u64) -> bool {
        let Some(slot) = self.by_name.remove(name) else {
            return false;
        };
        self.pending.entry(slot).or_insert((0, u64::MAX)).1 = v;
        self.retired.push_back((v, slot));
        true
    }

    /// Register a validated search visible from version `v` on.
    fn insert_at(&mut self, name: &str, spec: SearchSpec<R>, v: u64) {
        let slot = self.insert(name, spec);
        self.pending.insert(slot, (v, u64::MAX));
        self.added.push_back((v, slot));
    }

    /// Undo the versions after `to` (no handle holds them): their searches freed, the
    /// ones they dropped live again. `min_live`: the oldest version a handle holds.
    fn roll_back(&mut self, to: u64, min_live: u64) {
        while let Some(&(a, slot)) = self.added.back() {
            if a <= to {
                break;
            }
            self.added.pop_back();
            if self.pending.get(&slot).map(|p| p.0) != Some(a) {
                continue;
            }
            self.pending.remove(&slot);
            if let Some(h) = self.hot.get(slot as usize).and_then(|h| h.as_ref()) {
                if self.by_name.get(&h.name) == Some(&slot) {
                    let name = h.name.clone();
                    self.by_name.remove(&name);
                }
            }
            self.free_slot(slot);
        }
        while let Some(&(d, slot)) = self.retired.back() {
            if d <= to {
                break;
            }
            self.retired.pop_back();
            let Some(&(a, dropped)) = self.pending.get(&slot) else {
                continue;
            };
            if dropped != d {
                continue;
            }
            // Seen by every handle again: no longer pending (its entry in `added`, if
            // any, is still there when `a` is newer than `min_live`).
            if a <= min_live {
                self.pending.remove(&slot);
            } else {
                self.pending.insert(slot, (a, u64::MAX));
            }
            if let Some(h) = self.hot.get(slot as usize).and_then(|h| h.as_ref()) {
                self.by_name.insert(h.name.clone(), slot);
            }
        }
        self.version = to;
        self.prepare();
    }

    /// Free the slots dropped at or before `min_live` (no handle can see them) and stop
    /// tracking the slots every live handle sees.
    fn reclaim(&mut self, min_live: u64) {
        while let Some(&(d, slot)) = self.retired.front() {
            if d > min_live {
                break;
            }
            self.retired.pop_front();
            self.pending.remove(&slot);
            self.free_slot(slot);
        }
        while let Some(&(a, slot)) = self.added.front() {
            if a > min_live {
                break;
            }
            self.added.pop_front();
            if self.pending.get(&slot) == Some(&(a, u64::MAX)) {
                self.pending.remove(&slot);
            }
        }
    }
}
