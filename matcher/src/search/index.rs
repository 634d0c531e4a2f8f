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

use super::analysis::{edit_distance_within, token_regex, wildcard_regex, Analyzed};
use super::{Document, Highlights, SearchError, SearchSpec};
use dsl::query::Query;
use regex_automata::meta::Regex;
use regex_automata::{Input, MatchKind, PatternSet};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;

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

#[derive(Debug, Clone)]
enum Node {
    /// `h`: the term's hash; `cost`: its estimated selectivity (see [`len_cost`]).
    Term {
        f: u16,
        h: u64,
        cost: u32,
    },
    Phrase {
        f: u16,
        ts: Box<[(u64, u32)]>,
        slop: u32,
    },
    Multi {
        f: u16,
        m: u32,
    },
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Anchor {
    /// A (field, term) key, see [`field_key`].
    Term(u64),
    Multi(u32),
    Eq(u16, u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum MultiKind {
    Prefix(Box<str>),
    Wildcard(Box<str>),
    Regex(Box<str>),
    Fuzzy(Box<str>, u8),
}

struct MultiEntry {
    field: u16,
    kind: MultiKind,
    refs: u32,
    /// Slots anchored on this pattern.
    post: Vec<u32>,
}

/// The flat form a query is verified in: pre-order, each compound op followed by its
/// children (`size` = ops in its subtree, itself included), each phrase by its terms.
#[derive(Debug, Clone, Copy)]
enum Op {
    Term { f: u16, h: H2 },
    Multi { f: u16, m: u32 },
    Phrase { f: u16, n: u16, slop: u32 },
    Tid(H2),
    And { size: u32 },
    Or { size: u32 },
    Not { size: u32 },
}

/// A term hash as two 32-bit halves, so an [`Op`] is 12 bytes (4-byte aligned) and a
/// typical query's ops fit in its slot's [`Hot`] record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct H2(u32, u32);

impl H2 {
    fn new(h: u64) -> H2 {
        H2(h as u32, (h >> 32) as u32)
    }
    fn get(self) -> u64 {
        self.0 as u64 | (self.1 as u64) << 32
    }
}

/// Ops kept inline in a slot's [`Hot`] record (larger queries keep theirs on the heap).
const HOT_OPS: usize = 8;

#[derive(Debug)]
enum HotOps {
    Inline(u8, [Op; HOT_OPS]),
    Heap(Box<[Op]>),
}

impl HotOps {
    fn new(ops: Vec<Op>) -> HotOps {
        if ops.len() <= HOT_OPS {
            let mut a = [Op::And { size: 0 }; HOT_OPS];
            a[..ops.len()].copy_from_slice(&ops);
            HotOps::Inline(ops.len() as u8, a)
        } else {
            HotOps::Heap(ops.into_boxed_slice())
        }
    }
    fn get(&self) -> &[Op] {
        match self {
            HotOps::Inline(n, a) => &a[..*n as usize],
            HotOps::Heap(b) => b,
        }
    }
}

/// What verifying a candidate needs, in one 128-byte aligned record per slot (two
/// adjacent cache lines; the name and the first ops share the first): the name, the
/// flattened query and whether the cold [`Stored`] part (equality filters, residual) must
/// be looked at too.
#[repr(align(64))]
struct Hot {
    name: Arc<str>,
    ops: HotOps,
    /// Has equality filters or a residual.
    check: bool,
}

const _: () = assert!(std::mem::size_of::<Op>() == 12);
const _: () = assert!(std::mem::size_of::<Option<Hot>>() == 128);

fn flatten(n: &Node, out: &mut Vec<Op>) {
    match n {
        Node::Term { f, h, .. } => out.push(Op::Term {
            f: *f,
            h: H2::new(*h),
        }),
        Node::Multi { f, m } => out.push(Op::Multi { f: *f, m: *m }),
        Node::Phrase { f, ts, slop } => {
            out.push(Op::Phrase {
                f: *f,
                n: ts.len() as u16,
                slop: *slop,
            });
            out.extend(ts.iter().map(|(h, _)| Op::Tid(H2::new(*h))));
        }
        Node::And(cs) | Node::Or(cs) => {
            let at = out.len();
            out.push(Op::And { size: 0 });
            for c in cs.iter() {
                flatten(c, out);
            }
            let size = (out.len() - at) as u32;
            out[at] = if matches!(n, Node::And(_)) {
                Op::And { size }
            } else {
                Op::Or { size }
            };
        }
        Node::Not(c) => {
            let at = out.len();
            out.push(Op::Not { size: 0 });
            flatten(c, out);
            out[at] = Op::Not {
                size: (out.len() - at) as u32,
            };
        }
    }
}

fn op_size(ops: &[Op], i: usize) -> usize {
    match ops[i] {
        Op::And { size } | Op::Or { size } | Op::Not { size } => size as usize,
        Op::Phrase { n, .. } => 1 + n as usize,
        _ => 1,
    }
}

/// The cold part of a slot (see [`Hot`] for what verification reads).
struct Stored<R> {
    /// Equality filters: field and the hashes of the accepted raw values.
    equals: Box<[(u16, Box<[u64]>)]>,
    residual: Option<R>,
    /// `None`: on the always-check list.
    anchors: Option<Box<[Anchor]>>,
}

struct Shard {
    ids: Vec<u32>,
    live: usize,
    re: Option<Regex>,
    /// A few wildcards only: matched one by one without an automaton (saves the
    /// automaton's memory, which dominates for small groups).
    glob: bool,
    /// Patterns changed since `re` was built; rebuilt before the next document.
    dirty: bool,
}

/// Shards with at most this many wildcards (and no regex) are matched by `glob_match`.
const GLOB_MAX: usize = 8;

/// Whole-token wildcard match: `?` one char, `*` any run (iterative, backtracks to the
/// last `*` only). ASCII pattern and token (the usual case) are matched on bytes, without
/// allocating.
fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        return glob_slice(pattern.as_bytes(), text.as_bytes(), b'?', b'*');
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_slice(&p, &t, '?', '*')
}

fn glob_slice<T: Copy + Eq>(p: &[T], t: &[T], one: T, any: T) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == one || (p[pi] != any && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == any {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == any {
        pi += 1;
    }
    pi == p.len()
}

#[derive(Default)]
struct FieldInfo {
    name: Box<str>,
    text_refs: usize,
    eq_refs: usize,
    prefixes: FxHashMap<Box<str>, u32>,
    /// Bit `n` set: some prefix of `n` bytes (bit 63: 63 or more).
    prefix_lens: u64,
    /// First 4 bytes of every prefix of 4+ bytes, with counts.
    prefix_heads: FxHashMap<u32, u32>,
    /// Wildcard/regex DFAs by (token length in chars, or ANY_LEN) then literal leading
    /// characters: a `?`-only wildcard can only match tokens of its own length.
    groups: FxHashMap<u32, FxHashMap<Box<str>, Vec<Shard>>>,
    /// Patterns per key length (in chars), for any-length [0] and fixed-length [1] groups.
    key_lens: [[usize; WILD_KEY_CHARS + 1]; 2],
    fuzzy: FxHashMap<Box<str>, Vec<u32>>,
    fuzzy_by_distance: [usize; 3],
    /// Which terms can match any pattern at all, by their first bytes.
    lead: LeadFilter,
    /// Patterns changed since `lead` was built (the filter is then not used).
    lead_dirty: bool,
    /// Bumped whenever the field's patterns change: a [`SearchScratch`]'s pattern cache
    /// for the field made at another generation is emptied before use.
    pat_gen: u64,
}

/// A quick test that rules out most document terms before the pattern cache. Every
/// prefix and wildcard has a literal head (the bytes before its first `*`/`?`) and a
/// wildcard also a literal tail (after its last one); a term can only match it if it
/// starts with that head and ends with that tail. Each pattern is filed under the longer
/// of the two, by its first (last) `k` = 8, 4, 3, 2 or 1 bytes (the most it has), in a
/// bit set per (side, `k`); a term
/// goes on to the pattern cache only when one of its own heads or tails is in one. A regex
/// or fuzzy term, or a pattern with no literal head or tail, turns the filter off.
#[derive(Default)]
struct LeadFilter {
    on: bool,
    /// (tail?, k, bit set over the 32-bit hashes of the patterns' first/last k bytes),
    /// for the (side, k) pairs that have patterns.
    sets: Vec<(bool, usize, BitSet)>,
}

#[derive(Default)]
struct BitSet {
    bits: Vec<u64>,
    shift: u32,
}

impl BitSet {
    fn with_items(n: usize) -> BitSet {
        let nbits = (n * 16).next_power_of_two().clamp(64, 1 << 22);
        BitSet {
            bits: vec![0; nbits / 64],
            shift: 32 - nbits.trailing_zeros(),
        }
    }

    #[inline]
    fn index(&self, h: u32) -> (usize, u64) {
        let i = (h >> self.shift) as usize;
        (i / 64, 1u64 << (i % 64))
    }
}

/// Longest literal head or tail used by [`LeadFilter`].
const LIT_MAX: usize = 8;

/// Up to 8 bytes as a little-endian integer (zero-padded).
#[inline]
fn le8(b: &[u8]) -> u64 {
    match *b {
        [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => b
            .iter()
            .take(8)
            .enumerate()
            .fold(0u64, |x, (i, &c)| x | u64::from(c) << (8 * i)),
    }
}

/// The 32-bit hash of `k` bytes given as [`le8`].
#[inline]
fn lit_hash(x: u64) -> u32 {
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// Up to 8 bytes' hash.
fn bytes8(b: &[u8]) -> u32 {
    lit_hash(le8(b))
}

impl LeadFilter {
    fn build(info: &FieldInfo, multis: &[Option<MultiEntry>]) -> LeadFilter {
        let off = LeadFilter::default();
        if !info.fuzzy.is_empty() {
            return off;
        }
        // (head, tail) literal bytes of each pattern.
        let mut lits: Vec<(&[u8], &[u8])> = info
            .prefixes
            .keys()
            .map(|p| (p.as_bytes(), &[][..]))
            .collect();
        for shard in info.groups.values().flat_map(|g| g.values()).flatten() {
            for &m in &shard.ids {
                match multis
                    .get(m as usize)
                    .and_then(|e| e.as_ref())
                    .map(|e| &e.kind)
                {
                    Some(MultiKind::Wildcard(p)) => {
                        let b = p.as_bytes();
                        let h = p.find(['*', '?']).unwrap_or(b.len());
                        let t = p.rfind(['*', '?']).map_or(0, |i| i + 1);
                        lits.push((&b[..h], &b[t.max(h)..]));
                    }
                    None => {}
                    Some(_) => return off,
                }
            }
        }
        // Which set each pattern goes to: (side, k).
        let pick = |(h, t): (&[u8], &[u8])| -> Option<(usize, usize)> {
            let (side, n) = if h.len() >= t.len() {
                (0, h.len())
            } else {
                (1, t.len())
            };
            // Few distinct k (so a term is tested against few sets): 8, 4, or all it has.
            let k = match n {
                8.. => 8,
                4..=7 => 4,
                _ => n,
            };
            (n > 0).then_some((side, k))
        };
        let mut counts = [0usize; 2 * LIT_MAX];
        for &l in &lits {
            match pick(l) {
                Some((side, k)) => counts[side * LIT_MAX + k - 1] += 1,
                None => return off,
            }
        }
        let mut sets: Vec<BitSet> = counts.iter().map(|&n| BitSet::with_items(n)).collect();
        for &(h, t) in &lits {
            if let Some((side, k)) = pick((h, t)) {
                let key = if side == 0 {
                    &h[..k]
                } else {
                    &t[t.len() - k..]
                };
                let set = &mut sets[side * LIT_MAX + k - 1];
                let (w, bit) = set.index(bytes8(key));
                set.bits[w] |= bit;
            }
        }
        LeadFilter {
            on: true,
            sets: sets
                .into_iter()
                .enumerate()
                .filter(|(i, _)| counts[*i] > 0)
                .map(|(i, set)| (i >= LIT_MAX, i % LIT_MAX + 1, set))
                .collect(),
        }
    }

    /// Whether term `t` may match some pattern.
    #[inline]
    fn may_match(&self, t: &[u8]) -> bool {
        if !self.on {
            return true;
        }
        // The first and last (up to) 8 bytes, read once; each set takes its k of them.
        let n = t.len();
        let (first, last) = if n >= 8 {
            (le8(&t[..8]), le8(&t[n - 8..]))
        } else {
            let v = le8(t);
            (v, v)
        };
        for &(tail, k, ref set) in &self.sets {
            if n < k {
                continue;
            }
            let mask = if k >= 8 {
                u64::MAX
            } else {
                (1u64 << (8 * k)) - 1
            };
            let x = if tail {
                last >> (8 * (n.min(8) - k))
            } else {
                first
            } & mask;
            let (w, bit) = set.index(lit_hash(x));
            if set.bits[w] & bit != 0 {
                return true;
            }
        }
        false
    }
}

/// Terms are identified by a 64-bit keyed hash (wyhash-style multiply-mix with per-process
/// random keys, so collisions cannot be crafted): a document term is taken to be a stored
/// term when their hashes are equal, without comparing text (a false match needs a 64-bit
/// collision). Stored searches keep only hashes, never the term text.
fn term_hash(s: &str) -> u64 {
    hash_bytes(s.as_bytes())
}

fn hash_keys() -> &'static [u64; 3] {
    static KEYS: std::sync::OnceLock<[u64; 3]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        use std::hash::BuildHasher;
        let r = std::collections::hash_map::RandomState::new();
        // Odd keys with a fair mix of bits.
        [1u64, 2, 3].map(|i| r.hash_one(i) | 1)
    })
}

#[inline]
fn mum(a: u64, b: u64) -> (u64, u64) {
    let r = u128::from(a) * u128::from(b);
    (r as u64, (r >> 64) as u64)
}

#[inline]
fn mix(a: u64, b: u64) -> u64 {
    let (lo, hi) = mum(a, b);
    lo ^ hi
}

#[inline]
fn read8(b: &[u8], i: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(x)
}

#[inline]
fn read4(b: &[u8], i: usize) -> u64 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[i..i + 4]);
    u64::from(u32::from_le_bytes(x))
}

/// The bytes' keyed hash (the wyhash construction: overlapping 4/8-byte reads for short
/// inputs, 16 bytes per round for longer ones, length folded in).
#[inline]
fn hash_bytes(b: &[u8]) -> u64 {
    hash_bytes_with(b, hash_keys())
}

#[inline]
fn hash_bytes_with(b: &[u8], k: &[u64; 3]) -> u64 {
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
fn field_key(f: u16, h: u64) -> u64 {
    h ^ (u64::from(f) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// 0 marks an empty table entry; a key that happens to be 0 is stored as 1.
#[inline]
fn nonzero(k: u64) -> u64 {
    k.max(1)
}

/// Where the slots anchored on one key are: one inline, or a list.
#[derive(Debug, Clone, Copy, Default)]
struct PostEnt {
    key: u64,
    /// The slot (`list == false`) or the index in `PostTable::lists`.
    a: u32,
    list: bool,
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
struct PostTable {
    ents: Vec<PostEnt>,
    len: usize,
    lists: Vec<Vec<u32>>,
    free_lists: Vec<u32>,
    bloom: Vec<u64>,
    removed: usize,
}

#[inline]
fn bloom_bits(key: u64) -> u64 {
    (1u64 << (key & 63)) | (1u64 << ((key >> 6) & 63)) | (1u64 << ((key >> 12) & 63))
}

impl PostTable {
    fn mask(&self) -> usize {
        self.ents.len().wrapping_sub(1)
    }

    /// The entry index holding `key`, or the empty entry where it would go.
    fn find(&self, key: u64) -> usize {
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
    fn may_contain(&self, key: u64) -> bool {
        let Some(mask) = self.bloom.len().checked_sub(1) else {
            return false;
        };
        let m = bloom_bits(key);
        self.bloom[(key >> 40) as usize & mask] & m == m
    }

    fn bloom_add(&mut self, key: u64) {
        let mask = self.bloom.len() - 1;
        self.bloom[(key >> 40) as usize & mask] |= bloom_bits(key);
    }

    fn rebuild_bloom(&mut self) {
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
    fn first_key(&self, key: u64) -> u64 {
        match self.ents.get(key as usize & self.mask()) {
            Some(e) => e.key,
            None => 0,
        }
    }

    fn get(&self, key: u64) -> &[u32] {
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

    fn insert(&mut self, key: u64, slot: u32) {
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

    fn remove(&mut self, key: u64, slot: u32) {
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
    fn delete_at(&mut self, mut i: usize) {
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

    fn grow(&mut self) {
        let cap = (self.ents.len() * 2).max(16);
        let old = std::mem::replace(&mut self.ents, vec![PostEnt::default(); cap]);
        for e in old.into_iter().filter(|e| e.key != 0) {
            let i = self.find(e.key);
            self.ents[i] = e;
        }
        self.rebuild_bloom();
    }
}

/// Largest [`PatternCache`] per field: buckets of 4 entries, 64 bytes each (1 MiB).
const PCACHE_MAX_BUCKETS: usize = 1 << 14;
/// First size of a [`PatternCache`], in buckets.
const PCACHE_MIN_BUCKETS: usize = 64;
/// Most pattern ids held by one [`PatternCache`] for terms that match two or more.
const PCACHE_MAX_LISTS: usize = 1 << 16;

/// One cache line of [`PatternCache`]: 4 term hashes (0: empty) and what they fire: one
/// pattern inline (`(m, u32::MAX)`) or a range of `PatternCache::lists` (empty: none).
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct PBucket {
    keys: [u64; 4],
    vals: [(u32, u32); 4],
}

/// Per field: which patterns (prefix, wildcard, regex, fuzzy) each recently seen document
/// term matches, by term hash, so a frequent word is tested against the patterns once, not
/// in every document. Set-associative (4 ways per 64-byte bucket, round-robin
/// replacement), grows from 4 KiB to 1 MiB while it keeps evicting, and is emptied
/// whenever the field's patterns change.
#[derive(Default)]
struct PatternCache {
    /// The field's `pat_gen` the entries were made at.
    gen: u64,
    buckets: Vec<PBucket>,
    lists: Vec<u32>,
    /// Insertions (round-robin victim choice).
    inserts: usize,
    /// Entries evicted since the last growth.
    evictions: usize,
}

impl PatternCache {
    fn clear(&mut self, gen: u64) {
        *self = PatternCache {
            gen,
            ..PatternCache::default()
        };
    }

    #[inline]
    fn bucket(&self, h: u64) -> Option<&PBucket> {
        let mask = self.buckets.len().checked_sub(1)?;
        Some(&self.buckets[h as usize & mask])
    }

    /// The first key of `h`'s bucket (loaded ahead of the look-up to overlap misses).
    #[inline]
    fn touch(&self, h: u64) -> u64 {
        self.bucket(h).map_or(0, |b| b.keys[0])
    }

    fn get(&self, h: u64) -> Option<&[u32]> {
        let h = nonzero(h);
        let b = self.bucket(h)?;
        let w = b.keys.iter().position(|&k| k == h)?;
        let (a, e) = b.vals[w];
        Some(if e == u32::MAX {
            std::slice::from_ref(&b.vals[w].0)
        } else {
            &self.lists[a as usize..e as usize]
        })
    }

    /// Remember `fired` for `h` (not present). Returns whether the cache was emptied to
    /// stay within its bounds.
    fn insert(&mut self, h: u64, fired: &[u32]) -> bool {
        let h = nonzero(h);
        let mut reset = false;
        if self.lists.len() + fired.len() > PCACHE_MAX_LISTS {
            self.buckets
                .iter_mut()
                .for_each(|b| *b = PBucket::default());
            self.lists.clear();
            reset = true;
        }
        let n = self.buckets.len();
        if n == 0 || (self.evictions > n && n < PCACHE_MAX_BUCKETS) {
            // Evicting a lot at this size: grow, keeping the entries.
            let n = (n * 2).max(PCACHE_MIN_BUCKETS);
            let old = std::mem::replace(&mut self.buckets, vec![PBucket::default(); n]);
            for b in old {
                for w in 0..4 {
                    if b.keys[w] != 0 {
                        let nb = &mut self.buckets[b.keys[w] as usize & (n - 1)];
                        if let Some(x) = nb.keys.iter().position(|&k| k == 0) {
                            nb.keys[x] = b.keys[w];
                            nb.vals[x] = b.vals[w];
                        }
                    }
                }
            }
            self.evictions = 0;
        }
        self.inserts += 1;
        let val = match fired {
            [] => (0, 0),
            [m] => (*m, u32::MAX),
            _ => {
                let a = self.lists.len() as u32;
                self.lists.extend_from_slice(fired);
                (a, self.lists.len() as u32)
            }
        };
        let mask = self.buckets.len() - 1;
        let victim = self.inserts & 3;
        let b = &mut self.buckets[h as usize & mask];
        let w = match b.keys.iter().position(|&k| k == 0) {
            Some(w) => w,
            None => {
                self.evictions += 1;
                victim
            }
        };
        b.keys[w] = h;
        b.vals[w] = val;
        reset
    }
}

/// One distinct term of one field of the document being matched.
#[derive(Debug, Clone, Copy)]
struct Group {
    h: u64,
    f: u16,
    /// Index in `Scratch::analyzed`.
    ai: u16,
    /// First and last position (chained through `Scratch::next`).
    first: u32,
    last: u32,
    /// Positions, in order, in `Scratch::pos_buf`.
    start: u32,
    end: u32,
}

#[derive(Default)]
struct Scratch {
    analyzed: Vec<(u16, Analyzed)>,
    /// Offset of each analyzed field's positions in `next`.
    bases: Vec<u32>,
    /// Per token position: the next position of the same term (`u32::MAX`: none).
    next: Vec<u32>,
    /// The document's distinct (field, term)s.
    groups: Vec<Group>,
    /// Open-addressing table over `groups` by `field_key` (index + 1; 0 = empty).
    gtab: Vec<u32>,
    pos_buf: Vec<u32>,
    multi_pairs: Vec<(u32, u32, u32)>,
    multi_ranges: FxHashMap<u32, (u32, u32)>,
    fired: Vec<u32>,
    candidates: Vec<u32>,
    marks: Vec<(u16, u32)>,
    /// The current hit's highlight ranges: (field id, start, end), sorted.
    ranges: Vec<(u16, u32, u32)>,
    patset: Option<PatternSet>,
    variants: FxHashSet<String>,
    /// Per field id: whether it has patterns.
    field_patterns: Vec<bool>,
    /// Posting keys to look up (past the Bloom filter).
    probe: Vec<u64>,
    /// Groups to look up in the pattern caches (past the head/tail filter).
    pass: Vec<u32>,
}

/// Everything matching a document writes to, owned by the caller (one per partition
/// worker), so a [`SearchIndex`] is matched through `&self` and shared between threads.
/// Holds the document's analysis buffers and, per field, which patterns recently seen
/// terms fire (emptied when the field's patterns change, or when the scratch is used with
/// another index).
#[derive(Default)]
pub struct SearchScratch {
    s: Scratch,
    /// Per field id of `owner`.
    pcaches: Vec<PatternCache>,
    /// The [`SearchIndex::uid`] the caches belong to (0: none yet).
    owner: u64,
    stats: MatchStats,
}

impl SearchScratch {
    pub fn new() -> Self {
        Self::default()
    }
    /// What was matched with this scratch.
    pub fn stats(&self) -> &MatchStats {
        &self.stats
    }
}

/// Distinct ids of index instances (a scratch notices being used with another one).
fn next_uid() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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
    multi_free: Vec<u32>,
    multi_ids: FxHashMap<(u16, MultiKind), u32>,
    always: Vec<u32>,
    dirty_shards: bool,
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

/// Estimated selectivity of a term from its length alone (longer words are rarer; each
/// two more characters halve it). Costs add up over OR branches; AND takes the cheapest.
fn len_cost(chars: usize) -> u32 {
    (1u32 << 13) >> (chars.min(24) / 2)
}

fn term_cost(s: &str) -> u32 {
    len_cost(s.chars().count())
}

fn head4(s: &str) -> u32 {
    let b = s.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

const ANY_LEN: u32 = u32::MAX;

/// Group key of a wildcard or regex: (fixed token length or ANY_LEN, literal leading chars).
fn group_key(kind: &MultiKind) -> (u32, Box<str>) {
    match kind {
        MultiKind::Wildcard(p) => {
            let len = if p.contains('*') {
                ANY_LEN
            } else {
                p.chars().count() as u32
            };
            let key: String = p
                .chars()
                .take_while(|c| *c != '*' && *c != '?')
                .take(WILD_KEY_CHARS)
                .collect();
            (len, key.into())
        }
        _ => (ANY_LEN, "".into()),
    }
}

fn deletions(s: &str, k: usize, out: &mut FxHashSet<String>) {
    out.clear();
    out.insert(s.to_string());
    let mut frontier = vec![s.to_string()];
    for _ in 0..k {
        let mut next = Vec::new();
        for w in &frontier {
            for (i, c) in w.char_indices() {
                let mut v = String::with_capacity(w.len());
                v.push_str(&w[..i]);
                v.push_str(&w[i + c.len_utf8()..]);
                if out.insert(v.clone()) {
                    next.push(v);
                }
            }
        }
        frontier = next;
    }
}

fn build_regex(patterns: &[String]) -> Result<Regex, String> {
    Regex::builder()
        .configure(
            Regex::config()
                .match_kind(MatchKind::All)
                .dfa(false)
                .onepass(false)
                .backtrack(false),
        )
        .build_many(patterns)
        .map_err(|e| e.to_string())
}

fn multi_regex(kind: &MultiKind) -> Option<String> {
    match kind {
        MultiKind::Wildcard(p) => Some(wildcard_regex(p)),
        MultiKind::Regex(p) => Some(token_regex(p)),
        _ => None,
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
            dirty_shards: false,
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
        }
    }

    // ───────────────────────── registration ─────────────────────────

    /// Add a search, or replace the one with the same name. Takes effect for the next
    /// document. On error nothing changes (an existing search of that name stays).
    pub fn add(&mut self, name: &str, spec: SearchSpec<R>) -> Result<(), SearchError> {
        let r = self.validate(name, &spec);
        if let Err(e) = r {
            self.rejected += 1;
            return Err(e);
        }
        self.remove(name);
        let node = self.compile(&spec.query);
        let mut equals = Vec::new();
        for (f, vals) in &spec.equals {
            let fid = self.field_id(f);
            self.fields[fid as usize].eq_refs += 1;
            let hs: Box<[u64]> = vals.iter().map(|v| term_hash(v)).collect();
            equals.push((fid, hs));
        }
        let anchors = self.pick_anchors(&node, &equals);
        let mut ops = Vec::new();
        flatten(&node, &mut ops);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.hot.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        match &anchors {
            None => self.always.push(slot),
            Some(list) => {
                for a in list.iter() {
                    match *a {
                        Anchor::Term(key) => self.posts.insert(key, slot),
                        Anchor::Eq(f, v) => self.eq_post.entry((f, v)).or_default().push(slot),
                        Anchor::Multi(m) => {
                            if let Some(e) = self.multis[m as usize].as_mut() {
                                e.post.push(slot)
                            }
                        }
                    }
                }
            }
        }
        let name: Arc<str> = name.into();
        self.by_name.insert(name.clone(), slot);
        self.hot[slot as usize] = Some(Hot {
            name,
            ops: HotOps::new(ops),
            check: !equals.is_empty() || spec.residual.is_some(),
        });
        self.slots[slot as usize] = Some(Stored {
            equals: equals.into_boxed_slice(),
            residual: spec.residual,
            anchors,
        });
        Ok(())
    }

    /// Drop a search; returns whether it existed. Takes effect for the next document.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some(slot) = self.by_name.remove(name) else {
            return false;
        };
        let Some(st) = self.slots[slot as usize].take() else {
            return false;
        };
        let hot = self.hot[slot as usize].take();
        fn unlist(v: &mut Vec<u32>, slot: u32) {
            if let Some(i) = v.iter().position(|&s| s == slot) {
                v.swap_remove(i);
            }
        }
        match &st.anchors {
            None => unlist(&mut self.always, slot),
            Some(list) => {
                for a in list.iter() {
                    match *a {
                        Anchor::Term(key) => self.posts.remove(key, slot),
                        Anchor::Eq(f, t) => {
                            if let Some(v) = self.eq_post.get_mut(&(f, t)) {
                                unlist(v, slot);
                                if v.is_empty() {
                                    self.eq_post.remove(&(f, t));
                                }
                            }
                        }
                        Anchor::Multi(m) => {
                            if let Some(e) = self.multis[m as usize].as_mut() {
                                unlist(&mut e.post, slot)
                            }
                        }
                    }
                }
            }
        }
        if let Some(hot) = hot {
            self.release_ops(hot.ops.get());
        }
        for (f, _) in st.equals.iter() {
            self.fields[*f as usize].eq_refs -= 1;
        }
        self.free.push(slot);
        true
    }

    fn validate(&self, name: &str, spec: &SearchSpec<R>) -> Result<(), SearchError> {
        let q = &spec.query;
        if q.is_negative_only() {
            return Err(SearchError::NegativeOnly);
        }
        let clauses = q.clause_count();
        if clauses > self.limits.max_clauses {
            return Err(SearchError::QueryTooLarge {
                what: "clauses",
                size: clauses,
                limit: self.limits.max_clauses,
            });
        }
        let bytes = q.to_string().len();
        if bytes > self.limits.max_query_bytes {
            return Err(SearchError::QueryTooLarge {
                what: "bytes",
                size: bytes,
                limit: self.limits.max_query_bytes,
            });
        }
        if !self.by_name.contains_key(name) && self.by_name.len() >= self.limits.max_searches {
            return Err(SearchError::TooManySearches {
                limit: self.limits.max_searches,
            });
        }
        if spec.equals.len() > u16::MAX as usize / 2 {
            return Err(SearchError::Empty("too many equality filters".into()));
        }
        if self.fields.len() > u16::MAX as usize - 64 {
            return Err(SearchError::Empty("too many distinct field names".into()));
        }
        self.validate_node(q)
    }

    fn validate_node(&self, q: &Query) -> Result<(), SearchError> {
        match q {
            Query::And(cs) | Query::Or(cs) => {
                if cs.is_empty() {
                    return Err(SearchError::Empty("empty AND/OR".into()));
                }
                cs.iter().try_for_each(|c| self.validate_node(c))
            }
            Query::Not(c) => self.validate_node(c),
            leaf => {
                if leaf.field().is_none() {
                    return Err(SearchError::MissingField(leaf.to_string()));
                }
                let re = match leaf {
                    Query::Phrase { terms, .. } if terms.is_empty() => {
                        return Err(SearchError::Empty("empty phrase".into()))
                    }
                    Query::Phrase { terms, .. }
                        if terms.len() > self.limits.max_clauses.min(u16::MAX as usize) =>
                    {
                        return Err(SearchError::QueryTooLarge {
                            what: "words in one phrase",
                            size: terms.len(),
                            limit: self.limits.max_clauses.min(u16::MAX as usize),
                        })
                    }
                    Query::Term { term, .. } if term.is_empty() => {
                        return Err(SearchError::Empty("empty term".into()))
                    }
                    Query::Prefix { prefix, .. } if prefix.is_empty() => {
                        return Err(SearchError::Empty("empty prefix".into()))
                    }
                    Query::Wildcard { pattern, .. } => wildcard_regex(pattern),
                    Query::Regex { pattern, .. } => token_regex(pattern),
                    _ => return Ok(()),
                };
                build_regex(&[re])
                    .map(|_| ())
                    .map_err(|message| SearchError::BadPattern {
                        pattern: leaf.to_string(),
                        message,
                    })
            }
        }
    }

    fn field_id(&mut self, name: &str) -> u16 {
        if let Some(&id) = self.field_ids.get(name) {
            return id;
        }
        let id = self.fields.len() as u16;
        self.fields.push(FieldInfo {
            name: name.into(),
            ..FieldInfo::default()
        });
        self.field_ids.insert(name.into(), id);
        id
    }

    fn compile(&mut self, q: &Query) -> Node {
        match q {
            Query::And(cs) => Node::And(cs.iter().map(|c| self.compile(c)).collect()),
            Query::Or(cs) => Node::Or(cs.iter().map(|c| self.compile(c)).collect()),
            Query::Not(c) => Node::Not(Box::new(self.compile(c))),
            leaf => {
                let f = self.field_id(leaf.field().unwrap_or(""));
                self.fields[f as usize].text_refs += 1;
                match leaf {
                    Query::Term { term, .. } => Node::Term {
                        f,
                        h: term_hash(term),
                        cost: term_cost(term),
                    },
                    Query::Phrase { terms, slop, .. } => Node::Phrase {
                        f,
                        ts: terms.iter().map(|t| (term_hash(t), term_cost(t))).collect(),
                        slop: slop.unwrap_or(0),
                    },
                    Query::Prefix { prefix, .. } => {
                        self.multi(f, MultiKind::Prefix(prefix.as_str().into()))
                    }
                    Query::Wildcard { pattern, .. } => {
                        self.multi(f, MultiKind::Wildcard(pattern.as_str().into()))
                    }
                    Query::Regex { pattern, .. } => {
                        self.multi(f, MultiKind::Regex(pattern.as_str().into()))
                    }
                    Query::Fuzzy { term, distance, .. } => self.multi(
                        f,
                        MultiKind::Fuzzy(term.as_str().into(), (*distance).min(2)),
                    ),
                    _ => Node::Or(Box::new([])),
                }
            }
        }
    }

    fn multi(&mut self, f: u16, kind: MultiKind) -> Node {
        let key = (f, kind);
        if let Some(&m) = self.multi_ids.get(&key) {
            if let Some(e) = self.multis[m as usize].as_mut() {
                e.refs += 1;
            }
            return Node::Multi { f, m };
        }
        let (f, kind) = key;
        let m = match self.multi_free.pop() {
            Some(m) => m,
            None => {
                self.multis.push(None);
                (self.multis.len() - 1) as u32
            }
        };
        let info = &mut self.fields[f as usize];
        info.pat_gen += 1;
        info.lead_dirty = true;
        self.dirty_shards = true;
        match &kind {
            MultiKind::Prefix(p) => {
                info.prefixes.insert(p.clone(), m);
                info.prefix_lens |= 1u64 << p.len().min(63);
                if p.len() >= 4 {
                    *info.prefix_heads.entry(head4(p)).or_default() += 1;
                }
            }
            MultiKind::Fuzzy(t, d) => {
                let mut vs = FxHashSet::default();
                deletions(t, *d as usize, &mut vs);
                for v in vs {
                    info.fuzzy.entry(v.into()).or_default().push(m);
                }
                info.fuzzy_by_distance[*d as usize] += 1;
            }
            MultiKind::Wildcard(_) | MultiKind::Regex(_) => {
                let (lk, gkey) = group_key(&kind);
                info.key_lens[usize::from(lk != ANY_LEN)][gkey.chars().count()] += 1;
                let group = info.groups.entry(lk).or_default().entry(gkey).or_default();
                let need_new = match group.last() {
                    Some(s) => s.ids.len() >= SHARD_CAP,
                    None => true,
                };
                if need_new {
                    group.push(Shard {
                        ids: Vec::new(),
                        live: 0,
                        re: None,
                        glob: false,
                        dirty: true,
                    });
                }
                if let Some(shard) = group.last_mut() {
                    shard.ids.push(m);
                    shard.live += 1;
                    shard.dirty = true;
                }
                self.dirty_shards = true;
                // Rebuilt below once the entry exists.
            }
        }
        self.multis[m as usize] = Some(MultiEntry {
            field: f,
            kind: kind.clone(),
            refs: 1,
            post: Vec::new(),
        });
        self.multi_ids.insert((f, kind), m);
        Node::Multi { f, m }
    }

    /// Build the pattern automata and filters changed by `add` / `remove`. Call it after
    /// a batch of changes: until then the changed pattern groups are matched one pattern
    /// at a time (correct, but slow for regexes).
    pub fn prepare(&mut self) {
        if self.dirty_shards {
            self.rebuild_dirty();
        }
    }

    /// Rebuild the DFAs of the shards whose patterns changed (compacting dropped ones).
    fn rebuild_dirty(&mut self) {
        let multis = &self.multis;
        for info in &mut self.fields {
            if info.lead_dirty {
                info.lead = LeadFilter::build(info, multis);
                info.lead_dirty = false;
            }
        }
        for info in &mut self.fields {
            for group in info.groups.values_mut().flat_map(|g| g.values_mut()) {
                for shard in group.iter_mut().filter(|s| s.dirty) {
                    shard.ids.retain(|&m| m != u32::MAX);
                    shard.live = shard.ids.len();
                    shard.dirty = false;
                    shard.glob = shard.ids.len() <= GLOB_MAX
                        && shard.ids.iter().all(|&m| {
                            matches!(
                                multis[m as usize].as_ref().map(|e| &e.kind),
                                Some(MultiKind::Wildcard(_))
                            )
                        });
                    if shard.glob {
                        shard.re = None;
                        continue;
                    }
                    let pats: Vec<String> = shard
                        .ids
                        .iter()
                        .filter_map(|&m| {
                            multis[m as usize]
                                .as_ref()
                                .and_then(|e| multi_regex(&e.kind))
                        })
                        .collect();
                    // Each pattern compiled alone at validation; together they compile too.
                    shard.re = build_regex(&pats).ok();
                    shard.live = shard.ids.len();
                    shard.dirty = false;
                }
            }
        }
        self.dirty_shards = false;
    }

    fn release_ops(&mut self, ops: &[Op]) {
        for op in ops {
            match *op {
                Op::Term { f, .. } | Op::Phrase { f, .. } => self.fields[f as usize].text_refs -= 1,
                Op::Tid(_) => {}
                Op::Multi { f, m } => {
                    self.fields[f as usize].text_refs -= 1;
                    self.release_multi(m);
                }
                Op::And { .. } | Op::Or { .. } | Op::Not { .. } => {}
            }
        }
    }

    fn release_multi(&mut self, m: u32) {
        let Some(e) = self.multis[m as usize].as_mut() else {
            return;
        };
        e.refs -= 1;
        if e.refs > 0 {
            return;
        }
        let Some(e) = self.multis[m as usize].take() else {
            return;
        };
        self.multi_free.push(m);
        let f = e.field;
        let info = &mut self.fields[f as usize];
        info.pat_gen += 1;
        info.lead_dirty = true;
        self.dirty_shards = true;
        match &e.kind {
            MultiKind::Prefix(p) => {
                info.prefixes.remove(p);
                if p.len() >= 4 {
                    if let Some(c) = info.prefix_heads.get_mut(&head4(p)) {
                        *c -= 1;
                        if *c == 0 {
                            info.prefix_heads.remove(&head4(p));
                        }
                    }
                }
                info.prefix_lens = info
                    .prefixes
                    .keys()
                    .fold(0, |acc, p| acc | 1u64 << p.len().min(63));
            }
            MultiKind::Fuzzy(t, d) => {
                let mut vs = FxHashSet::default();
                deletions(t, *d as usize, &mut vs);
                for v in vs {
                    if let Some(list) = info.fuzzy.get_mut(v.as_str()) {
                        list.retain(|&x| x != m);
                        if list.is_empty() {
                            info.fuzzy.remove(v.as_str());
                        }
                    }
                }
                info.fuzzy_by_distance[*d as usize] -= 1;
            }
            MultiKind::Wildcard(_) | MultiKind::Regex(_) => {
                let (lk, gkey) = group_key(&e.kind);
                let mut rebuild = false;
                info.key_lens[usize::from(lk != ANY_LEN)][gkey.chars().count()] -= 1;
                let by_len = info.groups.entry(lk).or_default();
                if let Some(group) = by_len.get_mut(&gkey) {
                    for shard in group.iter_mut() {
                        if let Some(j) = shard.ids.iter().position(|&x| x == m) {
                            shard.ids[j] = u32::MAX;
                            shard.live -= 1;
                            if shard.live > 0 && shard.live * 2 < shard.ids.len() {
                                rebuild = true;
                                shard.dirty = true;
                            }
                            break;
                        }
                    }
                    group.retain(|s| s.live > 0);
                    if group.is_empty() {
                        by_len.remove(&gkey);
                    }
                }
                if by_len.is_empty() {
                    info.groups.remove(&lk);
                }
                if rebuild {
                    self.dirty_shards = true;
                }
            }
        }
        self.multi_ids.remove(&(f, e.kind));
    }

    fn anchors_of(&self, n: &Node) -> Option<(u32, Vec<Anchor>)> {
        match n {
            Node::Term { f, h, cost } => Some((*cost, vec![Anchor::Term(field_key(*f, *h))])),
            Node::Phrase { f, ts, .. } => ts
                .iter()
                .map(|&(h, c)| (c, h))
                .min()
                .map(|(c, h)| (c, vec![Anchor::Term(field_key(*f, h))])),
            Node::Multi { m, .. } => {
                let e = self.multis[*m as usize].as_ref()?;
                let cost = match &e.kind {
                    MultiKind::Prefix(p) => term_cost(p).saturating_mul(2),
                    MultiKind::Wildcard(p) => {
                        len_cost(p.chars().filter(|c| *c != '*' && *c != '?').count())
                            .saturating_mul(4)
                    }
                    MultiKind::Regex(_) => len_cost(0),
                    MultiKind::Fuzzy(t, d) => len_cost(t.chars().count()).saturating_mul(2 << *d),
                };
                Some((cost, vec![Anchor::Multi(*m)]))
            }
            Node::And(cs) => cs
                .iter()
                .filter_map(|c| self.anchors_of(c))
                .min_by_key(|(c, _)| *c),
            Node::Or(cs) => {
                let mut cost = 0u32;
                let mut all = Vec::new();
                for c in cs.iter() {
                    let (k, mut a) = self.anchors_of(c)?;
                    cost = cost.saturating_add(k);
                    all.append(&mut a);
                }
                if all.is_empty() {
                    return None;
                }
                Some((cost, all))
            }
            Node::Not(_) => None,
        }
    }

    fn pick_anchors(&self, node: &Node, equals: &[(u16, Box<[u64]>)]) -> Option<Box<[Anchor]>> {
        let mut best = self.anchors_of(node);
        for (f, vals) in equals {
            if vals.is_empty() {
                continue;
            }
            let cost = len_cost(2).saturating_mul(vals.len() as u32);
            if !matches!(&best, Some((c, _)) if *c <= cost) {
                best = Some((cost, vals.iter().map(|v| Anchor::Eq(*f, *v)).collect()));
            }
        }
        best.map(|(_, mut a)| {
            a.sort_unstable();
            a.dedup();
            a.into_boxed_slice()
        })
    }

    // ───────────────────────── matching ─────────────────────────

    /// Match one document against every stored search. `residual` is called for the
    /// searches that have a residual condition, after everything else of theirs matched.
    /// Hits come in registration-slot order. `scratch` holds the matching buffers (one
    /// per thread matching this index).
    pub fn match_document(
        &self,
        scratch: &mut SearchScratch,
        doc: &Document<'_>,
        residual: &mut dyn FnMut(&str, &R) -> bool,
    ) -> Vec<Hit> {
        let mut hits = Vec::new();
        self.match_document_with(scratch, doc, residual, &mut |h| {
            hits.push(Hit {
                search: h.search().clone(),
                highlights: h.highlights(),
            })
        });
        hits
    }

    /// [`match_document`](Self::match_document) without allocating per hit: `on_hit` is
    /// called once per matching search, in slot order, with a view whose highlight
    /// ranges borrow the scratch's buffers (valid for the call only).
    pub fn match_document_with(
        &self,
        scratch: &mut SearchScratch,
        doc: &Document<'_>,
        residual: &mut dyn FnMut(&str, &R) -> bool,
        on_hit: &mut dyn FnMut(HitRef<'_>),
    ) {
        let Self {
            fields,
            posts,
            eq_post,
            multis,
            always,
            slots,
            hot,
            ..
        } = self;
        let SearchScratch {
            s,
            pcaches,
            owner,
            stats,
        } = scratch;
        stats.docs += 1;
        if *owner != self.uid {
            pcaches.clear();
            *owner = self.uid;
        }
        if pcaches.len() < fields.len() {
            pcaches.resize_with(fields.len(), PatternCache::default);
        }
        for (c, info) in pcaches.iter_mut().zip(fields.iter()) {
            if c.gen != info.pat_gen {
                c.clear(info.pat_gen);
            }
        }
        s.candidates.clear();
        s.pos_buf.clear();
        s.multi_pairs.clear();
        s.multi_ranges.clear();
        // Candidates are collected with repeats, then sorted and deduplicated.
        let add = |list: &[u32], cands: &mut Vec<u32>| cands.extend_from_slice(list);

        // Analyze the text fields anyone looks at.
        let mut used = 0;
        s.bases.clear();
        let mut ntok = 0usize;
        for (fid, info) in fields.iter().enumerate() {
            if info.text_refs == 0 {
                continue;
            }
            let Some(text) = doc.get(&info.name) else {
                continue;
            };
            if used == s.analyzed.len() {
                s.analyzed.push((0, Analyzed::default()));
            }
            s.analyzed[used].0 = fid as u16;
            s.analyzed[used].1.reset(text);
            s.bases.push(ntok as u32);
            ntok += s.analyzed[used].1.len();
            used += 1;
        }
        // Group equal (field, term)s without sorting: an open-addressing table keyed by
        // the term's field key gives each distinct one a group (in order of first
        // occurrence); its positions are chained in increasing order through `next`.
        // Every inserted key is a distinct token, so the table never fills.
        let cap = (ntok * 2).next_power_of_two().max(16);
        s.gtab.clear();
        s.gtab.resize(cap, 0);
        let mask = cap - 1;
        s.next.clear();
        s.next.resize(ntok, u32::MAX);
        s.groups.clear();
        s.field_patterns.clear();
        s.field_patterns.extend(fields.iter().map(|info| {
            !info.prefixes.is_empty() || !info.groups.is_empty() || !info.fuzzy.is_empty()
        }));
        // A new distinct term is checked against the posting table's Bloom filter and the
        // field's pattern pre-check right away; the table entries the survivors need are
        // then loaded in one tight pass (many cache misses in flight at once) before the
        // look-ups.
        s.probe.clear();
        s.pass.clear();
        let keys = hash_keys();
        for ai in 0..used {
            let (fid, a) = &s.analyzed[ai];
            let fid = *fid;
            let base = s.bases[ai] as usize;
            let patterns = s.field_patterns[fid as usize];
            let info = &fields[fid as usize];
            for p in 0..a.len() {
                let bytes = a.term_bytes(p);
                let h = hash_bytes_with(bytes, keys);
                let fk = field_key(fid, h);
                let mut b = fk as usize & mask;
                loop {
                    let g = s.gtab[b];
                    if g == 0 {
                        let key = nonzero(fk);
                        if posts.may_contain(key) {
                            s.probe.push(key);
                        }
                        if patterns && (info.lead_dirty || info.lead.may_match(bytes)) {
                            s.pass.push(s.groups.len() as u32);
                        }
                        s.groups.push(Group {
                            h,
                            f: fid,
                            ai: ai as u16,
                            first: p as u32,
                            last: p as u32,
                            start: 0,
                            end: 0,
                        });
                        s.gtab[b] = s.groups.len() as u32;
                        break;
                    }
                    let gr = &mut s.groups[g as usize - 1];
                    if gr.h == h && gr.f == fid {
                        s.next[base + gr.last as usize] = p as u32;
                        gr.last = p as u32;
                        break;
                    }
                    b = (b + 1) & mask;
                }
            }
        }
        for g in s.groups.iter_mut() {
            let base = s.bases[g.ai as usize] as usize;
            g.start = s.pos_buf.len() as u32;
            let mut p = g.first;
            while p != u32::MAX {
                s.pos_buf.push(p);
                p = s.next[base + p as usize];
            }
            g.end = s.pos_buf.len() as u32;
        }
        let mut touched = 0u64;
        for &key in &s.probe {
            touched ^= posts.first_key(key);
        }
        for &gi in &s.pass {
            let g = &s.groups[gi as usize];
            touched ^= pcaches[g.f as usize].touch(g.h);
        }
        std::hint::black_box(touched);
        for &key in &s.probe {
            add(posts.get(key), &mut s.candidates);
        }
        // Patterns (prefix, wildcard, regex, fuzzy) against each distinct term that passed
        // the pre-check, through the per-field cache.
        for pi in 0..s.pass.len() {
            let g = s.groups[s.pass[pi] as usize];
            let info = &fields[g.f as usize];
            let cache = &mut pcaches[g.f as usize];
            let fired = match cache.get(g.h) {
                Some(f) => f,
                None => {
                    let t = s.analyzed[g.ai as usize].1.term(g.first as usize);
                    s.fired.clear();
                    fire_patterns(
                        info,
                        t,
                        multis,
                        &mut s.patset,
                        &mut s.variants,
                        &mut s.fired,
                    );
                    if cache.insert(g.h, &s.fired) {
                        stats.pattern_cache_resets += 1;
                    }
                    &s.fired[..]
                }
            };
            for &m in fired {
                s.multi_pairs.push((m, g.start, g.end));
            }
        }
        // Pattern positions: concatenate each pattern's term ranges, sorted.
        s.multi_pairs.sort_unstable();
        let mut i = 0;
        while i < s.multi_pairs.len() {
            let m = s.multi_pairs[i].0;
            let start = s.pos_buf.len();
            while i < s.multi_pairs.len() && s.multi_pairs[i].0 == m {
                let (_, a, b) = s.multi_pairs[i];
                s.pos_buf.extend_from_within(a as usize..b as usize);
                i += 1;
            }
            s.pos_buf[start..].sort_unstable();
            s.multi_ranges
                .insert(m, (start as u32, s.pos_buf.len() as u32));
            if let Some(e) = multis[m as usize].as_ref() {
                add(&e.post, &mut s.candidates);
            }
        }
        // Equality filters.
        for (fid, info) in fields.iter().enumerate() {
            if info.eq_refs == 0 {
                continue;
            }
            if let Some(v) = doc.get(&info.name) {
                if let Some(list) = eq_post.get(&(fid as u16, term_hash(v))) {
                    add(list, &mut s.candidates);
                }
            }
        }
        add(always, &mut s.candidates);

        // Verify.
        s.candidates.sort_unstable();
        s.candidates.dedup();
        stats.verified += s.candidates.len() as u64;
        // Load every candidate's hot record ahead of verification (the cache misses
        // overlap instead of coming one after another).
        let mut touched = 0usize;
        for &slot in &s.candidates {
            if let Some(Some(h)) = hot.get(slot as usize) {
                touched ^= h.ops.get().len();
            }
        }
        std::hint::black_box(touched);
        let ctx = Ctx {
            pos_buf: &s.pos_buf,
            gtab: &s.gtab,
            groups: &s.groups,
            multi_ranges: &s.multi_ranges,
        };
        for &slot in &s.candidates {
            let Some(h) = hot.get(slot as usize).and_then(|h| h.as_ref()) else {
                continue;
            };
            let cold = if h.check {
                let Some(st) = slots.get(slot as usize).and_then(|s| s.as_ref()) else {
                    continue;
                };
                let eq_ok = st.equals.iter().all(|(f, vals)| {
                    doc.get(&fields[*f as usize].name)
                        .is_some_and(|v| vals.contains(&term_hash(v)))
                });
                if !eq_ok {
                    continue;
                }
                Some(st)
            } else {
                None
            };
            s.marks.clear();
            if !ctx.eval(h.ops.get(), 0, &mut s.marks) {
                continue;
            }
            if let Some(r) = cold.and_then(|st| st.residual.as_ref()) {
                if !residual(&h.name, r) {
                    continue;
                }
            }
            s.marks.sort_unstable();
            s.marks.dedup();
            s.ranges.clear();
            for &(f, p) in &s.marks {
                let Some((_, a)) = s.analyzed[..used].iter().find(|(x, _)| *x == f) else {
                    continue;
                };
                let tok = a.tokens[p as usize];
                s.ranges.push((f, tok.start, tok.end));
            }
            on_hit(HitRef {
                search: &h.name,
                ranges: &s.ranges,
                fields,
            });
        }
    }
}

/// The patterns of field `info` that term `t` matches, pushed to `fired` (sorted, once
/// each).
fn fire_patterns(
    info: &FieldInfo,
    t: &str,
    multis: &[Option<MultiEntry>],
    patset: &mut Option<PatternSet>,
    variants: &mut FxHashSet<String>,
    fired: &mut Vec<u32>,
) {
    // Prefixes.
    if info.prefix_lens != 0 {
        // Prefixes of 4+ bytes only when the term's first 4 bytes begin one.
        let long_ok = t.len() >= 4 && info.prefix_heads.contains_key(&head4(t));
        for (bi, _) in t
            .char_indices()
            .skip(1)
            .chain(std::iter::once((t.len(), ' ')))
        {
            if bi >= 4 && !long_ok {
                break;
            }
            let bit = 1u64 << bi.min(63);
            if info.prefix_lens & bit != 0 || bi >= 63 {
                if let Some(&m) = info.prefixes.get(&t[..bi]) {
                    fired.push(m);
                }
            }
        }
    }
    // Wildcards / regexes, by literal first characters.
    if !info.groups.is_empty() {
        let tl = if t.is_ascii() {
            t.len()
        } else {
            t.chars().count()
        } as u32;
        let ends = std::iter::once(0)
            .chain(t.char_indices().map(|(i, c)| i + c.len_utf8()))
            .take(WILD_KEY_CHARS + 1);
        for (k, end) in ends.enumerate() {
            for (which, lk) in [(0, ANY_LEN), (1, tl)] {
                if info.key_lens[which][k] == 0 {
                    continue;
                }
                let Some(group) = info.groups.get(&lk).and_then(|g| g.get(&t[..end])) else {
                    continue;
                };
                run_group(group, t, multis, patset, fired);
            }
        }
    }
    // Fuzzy.
    if !info.fuzzy.is_empty() {
        let k = if info.fuzzy_by_distance[2] > 0 { 2 } else { 1 };
        deletions(t, k, variants);
        for v in variants.iter() {
            if let Some(list) = info.fuzzy.get(v.as_str()) {
                for &m in list {
                    if let Some(MultiEntry {
                        kind: MultiKind::Fuzzy(w, d),
                        ..
                    }) = multis[m as usize].as_ref()
                    {
                        if edit_distance_within(t, w, *d as usize).is_some() {
                            fired.push(m);
                        }
                    }
                }
            }
        }
    }
    fired.sort_unstable();
    fired.dedup();
}

/// Run one group's DFAs on a token; push the pattern ids that match whole.
fn run_group(
    group: &[Shard],
    t: &str,
    multis: &[Option<MultiEntry>],
    patset: &mut Option<PatternSet>,
    fired: &mut Vec<u32>,
) {
    for shard in group {
        if shard.dirty {
            // Changed since the last `prepare`: one pattern at a time.
            for &m in &shard.ids {
                let hit = match multis.get(m as usize).and_then(|e| e.as_ref()) {
                    Some(MultiEntry {
                        kind: MultiKind::Wildcard(p),
                        ..
                    }) => glob_match(p, t),
                    Some(MultiEntry {
                        kind: MultiKind::Regex(p),
                        ..
                    }) => build_regex(&[token_regex(p)]).is_ok_and(|re| re.is_match(t)),
                    _ => false,
                };
                if hit {
                    fired.push(m);
                }
            }
            continue;
        }
        if shard.glob {
            for &m in &shard.ids {
                if let Some(MultiEntry {
                    kind: MultiKind::Wildcard(p),
                    ..
                }) = multis.get(m as usize).and_then(|e| e.as_ref())
                {
                    if glob_match(p, t) {
                        fired.push(m);
                    }
                }
            }
            continue;
        }
        let Some(re) = &shard.re else { continue };
        let ps = patset.get_or_insert_with(|| PatternSet::new(SHARD_CAP));
        ps.clear();
        re.which_overlapping_matches(&Input::new(t), ps);
        if ps.is_empty() {
            continue;
        }
        for pid in ps.iter() {
            if let Some(&m) = shard.ids.get(pid.as_usize()) {
                if m != u32::MAX {
                    fired.push(m);
                }
            }
        }
    }
}

struct Ctx<'a> {
    pos_buf: &'a [u32],
    gtab: &'a [u32],
    groups: &'a [Group],
    multi_ranges: &'a FxHashMap<u32, (u32, u32)>,
}

impl Ctx<'_> {
    /// The positions of term `h` in field `f` of the document.
    fn term(&self, f: u16, h: u64) -> &[u32] {
        let mask = self.gtab.len() - 1;
        let mut i = field_key(f, h) as usize & mask;
        loop {
            let g = self.gtab[i];
            if g == 0 {
                return &[];
            }
            let gr = &self.groups[g as usize - 1];
            if gr.h == h && gr.f == f {
                return &self.pos_buf[gr.start as usize..gr.end as usize];
            }
            i = (i + 1) & mask;
        }
    }

    fn eval(&self, ops: &[Op], i: usize, marks: &mut Vec<(u16, u32)>) -> bool {
        match ops[i] {
            Op::Term { f, h } => {
                let ps = self.term(f, h.get());
                marks.extend(ps.iter().map(|&p| (f, p)));
                !ps.is_empty()
            }
            Op::Multi { f, m } => {
                let ps = match self.multi_ranges.get(&m) {
                    Some(&(a, b)) => &self.pos_buf[a as usize..b as usize],
                    None => &[],
                };
                marks.extend(ps.iter().map(|&p| (f, p)));
                !ps.is_empty()
            }
            Op::Phrase { f, n, slop } => {
                let ts = &ops[i + 1..i + 1 + n as usize];
                let tid = |k: usize| match ts[k] {
                    Op::Tid(h) => h.get(),
                    _ => 0,
                };
                if (0..ts.len()).any(|k| self.term(f, tid(k)).is_empty()) {
                    return false;
                }
                let n = n as u32;
                let mut any = false;
                'start: for &p1 in self.term(f, tid(0)) {
                    let chain_mark = marks.len();
                    marks.push((f, p1));
                    let mut prev = p1;
                    for k in 1..ts.len() {
                        let l = self.term(f, tid(k));
                        let j = l.partition_point(|&p| p <= prev);
                        match l.get(j) {
                            // Too far already: a later start can still work.
                            Some(&p) if p - p1 + 1 > n + slop => {
                                marks.truncate(chain_mark);
                                continue 'start;
                            }
                            Some(&p) => {
                                marks.push((f, p));
                                prev = p;
                            }
                            None => {
                                marks.truncate(chain_mark);
                                break 'start;
                            }
                        }
                    }
                    any = true;
                }
                any
            }
            Op::Tid(_) => false,
            Op::And { size } => {
                let mark = marks.len();
                let end = i + size as usize;
                let mut c = i + 1;
                while c < end {
                    if !self.eval(ops, c, marks) {
                        marks.truncate(mark);
                        return false;
                    }
                    c += op_size(ops, c);
                }
                true
            }
            Op::Or { size } => {
                let mut any = false;
                let end = i + size as usize;
                let mut c = i + 1;
                while c < end {
                    let mark = marks.len();
                    if self.eval(ops, c, marks) {
                        any = true;
                    } else {
                        marks.truncate(mark);
                    }
                    c += op_size(ops, c);
                }
                any
            }
            Op::Not { .. } => {
                let mark = marks.len();
                let r = self.eval(ops, i + 1, marks);
                marks.truncate(mark);
                !r
            }
        }
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
        #[test]
        fn glob_ascii_equals_wildcard_regex(p in "[ab?*]{0,7}", t in "[ab]{0,9}") {
            let re = Regex::new(&wildcard_regex(&p)).unwrap_or_else(|e| panic!("{p}: {e}"));
            proptest::prop_assert_eq!(glob_match(&p, &t), re.is_match(&t), "{} {}", p, t);
        }

        #[test]
        fn glob_equals_wildcard_regex(p in "[ab?*é]{0,6}", t in "[abé]{0,8}") {
            let re = Regex::new(&wildcard_regex(&p)).unwrap_or_else(|e| panic!("{p}: {e}"));
            proptest::prop_assert_eq!(glob_match(&p, &t), re.is_match(&t), "{} {}", p, t);
        }
    }
}
