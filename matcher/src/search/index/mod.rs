//! The presearcher index and the verifier.
//!
//! Registration compiles a query into a compact [`Node`] tree over interned term ids and
//! picks its *anchors*: a set of terms (or patterns, or equality values) at least one of
//! which every matching document must contain. AND → the cheapest child's anchors (longer
//! terms are taken as rarer); OR → the union of all branches; NOT → nothing; a query with no
//! anchor goes to the always-check list. Patterns (prefix, wildcard, regex, fuzzy) are
//! registered once per distinct pattern and tested against the document's own distinct
//! terms: prefixes by hash look-up of the term's prefixes, wildcards and regexes by small
//! multi-pattern DFAs grouped by their literal first characters, fuzzy terms by a
//! deletion-neighbourhood index then an exact edit-distance check.
//!
//! Where things are:
//! - this file: [`SearchIndex`] (its tables), limits, stats, hits;
//! - `compile.rs`: registration (`add` / `remove`, query → ops, anchors, `prepare`);
//! - `post.rs`: the posting table (term key → searches) and its Bloom filter;
//! - `patterns.rs`: the pattern registry per field, DFA shards, the head/tail
//!   pre-filter, the pattern cache;
//! - `hash.rs`: term hashing;
//! - `matching.rs`: [`SearchScratch`] and matching a document (candidates, verification);
//! - `version.rs`: [`SearchSet`], versions of one shared index.

use super::analysis::{edit_distance_within, token_regex, wildcard_regex, Analyzed};
use super::{Document, Highlights, SearchError, SearchSpec};
use dsl::query::Query;
use regex_automata::meta::Regex;
use regex_automata::{Input, MatchKind, PatternSet};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;

mod compile;
mod hash;
mod matching;
mod patterns;
mod post;
mod version;

use compile::*;
use hash::*;
pub use matching::SearchScratch;
use matching::*;
use patterns::*;
use post::*;
pub use version::SearchSet;

/// Wildcard/regex patterns per compiled DFA.
const SHARD_CAP: usize = 256;

/// Wildcards are grouped by up to this many literal leading characters.
const WILD_KEY_CHARS: usize = 4;

/// Bounds on what can be registered.
#[derive(Debug, Clone)]
pub struct SearchLimits {
    /// Most stored searches at once.
    pub max_searches: usize,
    /// Longest query (canonical text, bytes).
    pub max_query_bytes: usize,
    /// Most leaf clauses in one query.
    pub max_clauses: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits {
            max_searches: 2_000_000,
            max_query_bytes: dsl::query::MAX_QUERY_BYTES,
            max_clauses: dsl::query::MAX_CLAUSES,
        }
    }
}

/// What the index holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchStats {
    pub searches: usize,
    /// Registrations refused (limits, bad queries).
    pub rejected: u64,
    /// Searches on the always-check list (no anchor).
    pub always_checked: usize,
    /// Distinct patterns (prefix / wildcard / regex / fuzzy).
    pub patterns: usize,
    /// Searches held in the tables: `searches` plus those dropped or replaced but still
    /// visible to an older [`SearchSet`] handle.
    pub held: usize,
}

/// What one [`SearchScratch`] (one partition worker) matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchStats {
    pub docs: u64,
    /// Candidate searches verified, over all documents.
    pub verified: u64,
    /// Times a field's pattern cache was full and started over.
    pub pattern_cache_resets: u64,
}

/// One search that matched a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub search: Arc<str>,
    pub highlights: Highlights,
}

/// One search that matched a document, borrowed from the index for the duration of a
/// [`SearchIndex::match_document_with`] callback (nothing is allocated for it).
pub struct HitRef<'a> {
    search: &'a Arc<str>,
    /// (field id, start, end), sorted by field id then start.
    ranges: &'a [(u16, u32, u32)],
    fields: &'a [FieldInfo],
}

/// The hits `run` reports, owned.
fn owned_hits(run: impl FnOnce(&mut dyn FnMut(HitRef<'_>))) -> Vec<Hit> {
    let mut hits = Vec::new();
    run(&mut |h| {
        hits.push(Hit {
            search: h.search().clone(),
            highlights: h.highlights(),
        })
    });
    hits
}

impl<'a> HitRef<'a> {
    /// The search's name.
    pub fn search(&self) -> &'a Arc<str> {
        self.search
    }
    /// Highlight byte ranges `(field, start, end)`, grouped by field (fields in
    /// registration order), each field's ranges sorted.
    pub fn ranges(&self) -> impl Iterator<Item = (&'a str, usize, usize)> + 'a {
        let fields = self.fields;
        self.ranges
            .iter()
            .map(move |&(f, a, b)| (&*fields[f as usize].name, a as usize, b as usize))
    }
    /// The highlights as an owned map (allocates).
    pub fn highlights(&self) -> Highlights {
        let mut hl = Highlights::new();
        let mut i = 0;
        while i < self.ranges.len() {
            let f = self.ranges[i].0;
            let mut v = Vec::new();
            while i < self.ranges.len() && self.ranges[i].0 == f {
                v.push((self.ranges[i].1 as usize, self.ranges[i].2 as usize));
                i += 1;
            }
            hl.insert(self.fields[f as usize].name.to_string(), v);
        }
        hl
    }
}

/// Many stored searches, matched against one document at a time.
pub struct SearchIndex<R = ()> {
    limits: SearchLimits,
    by_name: FxHashMap<Arc<str>, u32>,
    slots: Vec<Option<Stored<R>>>,
    /// Per slot, what verification reads (same index as `slots`).
    hot: Vec<Option<Hot>>,
    free: Vec<u32>,
    fields: Vec<FieldInfo>,
    field_ids: FxHashMap<Box<str>, u16>,
    /// Per (field, term) key: the slots anchored on it.
    posts: PostTable,
    /// Per (field, value hash): slots anchored on that equality value.
    eq_post: FxHashMap<(u16, u64), Vec<u32>>,
    multis: Vec<Option<MultiEntry>>,
    /// Freed pattern ids and the field they were in.
    multi_free: Vec<(u32, u16)>,
    multi_ids: FxHashMap<(u16, MultiKind), u32>,
    always: Vec<u32>,
    /// The newest version (see [`SearchSet`]); plain `add` / `remove` do not change it.
    version: u64,
    /// Slots not visible to every version a [`SearchSet`] handle may hold: (added at,
    /// dropped at) — visible to version `v` when `added <= v < dropped`. Empty when the
    /// index is used directly.
    pending: FxHashMap<u32, (u64, u64)>,
    /// (version, slot) in version order: slots dropped at that version, freed once no
    /// handle of an older version is left; slots added at it, in `pending` until then.
    retired: std::collections::VecDeque<(u64, u32)>,
    added: std::collections::VecDeque<(u64, u32)>,
    /// Fields whose head/tail filter must be rebuilt by `prepare`.
    dirty_leads: Vec<u16>,
    /// Pattern groups (field, length key, literal key) with shards to rebuild.
    dirty_groups: Vec<(u16, u32, Box<str>)>,
    rejected: u64,
    /// Distinct per instance (see [`SearchScratch`]).
    uid: u64,
}

const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<SearchIndex<usize>>();
};

impl<R> Default for SearchIndex<R> {
    fn default() -> Self {
        Self::new(SearchLimits::default())
    }
}

impl<R> SearchIndex<R> {
    pub fn new(limits: SearchLimits) -> Self {
        SearchIndex {
            limits,
            by_name: FxHashMap::default(),
            slots: Vec::new(),
            hot: Vec::new(),
            free: Vec::new(),
            fields: Vec::new(),
            field_ids: FxHashMap::default(),
            posts: PostTable::default(),
            eq_post: FxHashMap::default(),
            multis: Vec::new(),
            multi_free: Vec::new(),
            multi_ids: FxHashMap::default(),
            always: Vec::new(),
            version: 0,
            pending: FxHashMap::default(),
            retired: Default::default(),
            added: Default::default(),
            dirty_leads: Vec::new(),
            dirty_groups: Vec::new(),
            rejected: 0,
            uid: next_uid(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn stats(&self) -> SearchStats {
        SearchStats {
            searches: self.by_name.len(),
            rejected: self.rejected,
            always_checked: self.always.len(),
            patterns: self.multi_ids.len(),
            held: self.slots.len() - self.free.len(),
        }
    }
}
