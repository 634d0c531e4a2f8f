//! Patterns (prefix, wildcard, regex, fuzzy): the per-field registry, the DFA shards, the
//! head/tail pre-filter and the per-scratch cache of what a document term fires.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum MultiKind {
    Prefix(Box<str>),
    Wildcard(Box<str>),
    Regex(Box<str>),
    Fuzzy(Box<str>, u8),
}

pub(super) struct MultiEntry {
    pub(super) field: u16,
    pub(super) kind: MultiKind,
    pub(super) refs: u32,
    /// Slots anchored on this pattern.
    pub(super) post: Vec<u32>,
}

pub(super) struct Shard {
    pub(super) ids: Vec<u32>,
    pub(super) live: usize,
    pub(super) re: Option<Regex>,
    /// A few wildcards only: matched one by one without an automaton (saves the
    /// automaton's memory, which dominates for small groups).
    pub(super) glob: bool,
    /// Patterns changed since `re` was built; rebuilt before the next document.
    pub(super) dirty: bool,
}

/// Shards with at most this many wildcards (and no regex) are matched by `glob_match`.
pub(super) const GLOB_MAX: usize = 8;

/// Whole-token wildcard match: `?` one char, `*` any run (iterative, backtracks to the
/// last `*` only). ASCII pattern and token (the usual case) are matched on bytes, without
/// allocating.
pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        return glob_slice(pattern.as_bytes(), text.as_bytes(), b'?', b'*');
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_slice(&p, &t, '?', '*')
}

pub(super) fn glob_slice<T: Copy + Eq>(p: &[T], t: &[T], one: T, any: T) -> bool {
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
pub(super) struct FieldInfo {
    pub(super) name: Box<str>,
    pub(super) text_refs: usize,
    pub(super) eq_refs: usize,
    pub(super) prefixes: FxHashMap<Box<str>, u32>,
    /// Bit `n` set: some prefix of `n` bytes (bit 63: 63 or more).
    pub(super) prefix_lens: u64,
    /// Prefixes per length (index 63: 63 or more), so `prefix_lens` is kept without a
    /// pass over every prefix.
    pub(super) prefix_len_counts: Vec<u32>,
    /// First 4 bytes of every prefix of 4+ bytes, with counts.
    pub(super) prefix_heads: FxHashMap<u32, u32>,
    /// Wildcard/regex DFAs by (token length in chars, or ANY_LEN) then literal leading
    /// characters: a `?`-only wildcard can only match tokens of its own length.
    pub(super) groups: FxHashMap<u32, FxHashMap<Box<str>, Vec<Shard>>>,
    /// Patterns per key length (in chars), for any-length [0] and fixed-length [1] groups.
    pub(super) key_lens: [[usize; WILD_KEY_CHARS + 1]; 2],
    pub(super) fuzzy: FxHashMap<Box<str>, Vec<u32>>,
    pub(super) fuzzy_by_distance: [usize; 3],
    /// Which terms can match any pattern at all, by their first bytes.
    pub(super) lead: LeadFilter,
    /// Patterns changed since `lead` was built (the filter is then not used).
    pub(super) lead_dirty: bool,
    /// Bumped when the field's pattern caches must start over: a [`SearchScratch`]'s
    /// pattern cache for the field made at another generation is emptied before use.
    pub(super) pat_gen: u64,
    /// Patterns added since `pat_gen` was bumped (prefix, wildcard, fuzzy; at most
    /// [`DELTA_MAX`]): a cached word's result is completed by testing it against these.
    pub(super) delta: Vec<u32>,
}

/// Most patterns added to a field before its pattern caches start over.
pub(super) const DELTA_MAX: usize = 8;

impl FieldInfo {
    /// Every pattern cache of this field starts over at its next use.
    pub(super) fn renew_caches(&mut self) {
        self.pat_gen += 1;
        self.delta.clear();
    }
}

/// Whether pattern `m` (prefix, wildcard or fuzzy) matches word `t`, tested alone.
pub(super) fn pattern_matches(multis: &[Option<MultiEntry>], m: u32, t: &str) -> bool {
    match multis
        .get(m as usize)
        .and_then(|e| e.as_ref())
        .map(|e| &e.kind)
    {
        Some(MultiKind::Prefix(p)) => t.starts_with(&**p),
        Some(MultiKind::Wildcard(p)) => glob_match(p, t),
        Some(MultiKind::Fuzzy(w, d)) => edit_distance_within(t, w, *d as usize).is_some(),
        Some(MultiKind::Regex(_)) | None => false,
    }
}

/// A quick test that rules out most document terms before the pattern cache. Every
/// prefix and wildcard has a literal head (the bytes before its first `*`/`?`) and a
/// wildcard also a literal tail (after its last one); a term can only match it if it
/// starts with that head and ends with that tail. Each pattern is filed under the longer
/// of the two, by its first (last) `k` = 8, 4, 3, 2 or 1 bytes (the most it has), in a
/// bit set per (side, `k`); a term
/// goes on to the pattern cache only when one of its own heads or tails is in one. A regex
/// or fuzzy term, or a pattern with no literal head or tail, turns the filter off.
///
/// Changes are incremental: a new pattern sets its bit when its set exists and is not
/// over-full ([`try_add`](Self::try_add)); a dropped one leaves its bit (the filter only
/// errs towards "maybe"). The filter is rebuilt over the field's patterns only when a set
/// has doubled, a new (side, `k`) appears, or half the patterns filed were dropped, so
/// its cost per change is amortized O(1).
#[derive(Default)]
pub(super) struct LeadFilter {
    /// Built over the field's patterns (else not usable until `build`).
    pub(super) built: bool,
    pub(super) on: bool,
    /// Patterns filed (at the build and since), and dropped since the build.
    pub(super) items: usize,
    pub(super) removed: usize,
    /// (tail?, k, bit set over the 32-bit hashes of the patterns' first/last k bytes),
    /// for the (side, k) pairs that have patterns.
    pub(super) sets: Vec<(bool, usize, BitSet)>,
}

#[derive(Default)]
pub(super) struct BitSet {
    pub(super) bits: Vec<u64>,
    pub(super) shift: u32,
    /// Items set (the set was sized for `bits / 16`).
    pub(super) n: usize,
}

/// Largest [`BitSet`] of a [`LeadFilter`], in bits.
const BITSET_MAX_BITS: usize = 1 << 22;

impl BitSet {
    pub(super) fn with_items(n: usize) -> BitSet {
        let nbits = (n * 16).next_power_of_two().clamp(64, BITSET_MAX_BITS);
        BitSet {
            bits: vec![0; nbits / 64],
            shift: 32 - nbits.trailing_zeros(),
            n,
        }
    }

    #[inline]
    pub(super) fn index(&self, h: u32) -> (usize, u64) {
        let i = (h >> self.shift) as usize;
        (i / 64, 1u64 << (i % 64))
    }
}

/// Longest literal head or tail used by [`LeadFilter`].
pub(super) const LIT_MAX: usize = 8;

/// Up to 8 bytes as a little-endian integer (zero-padded).
#[inline]
pub(super) fn le8(b: &[u8]) -> u64 {
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
pub(super) fn lit_hash(x: u64) -> u32 {
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// Up to 8 bytes' hash.
pub(super) fn bytes8(b: &[u8]) -> u32 {
    lit_hash(le8(b))
}

/// The literal head and tail bytes of a prefix or wildcard (`None` for other patterns).
pub(super) fn lead_lits(kind: &MultiKind) -> Option<(&[u8], &[u8])> {
    match kind {
        MultiKind::Prefix(p) => Some((p.as_bytes(), &[][..])),
        MultiKind::Wildcard(p) => {
            let b = p.as_bytes();
            let h = p.find(['*', '?']).unwrap_or(b.len());
            let t = p.rfind(['*', '?']).map_or(0, |i| i + 1);
            Some((&b[..h], &b[t.max(h)..]))
        }
        MultiKind::Regex(_) | MultiKind::Fuzzy(..) => None,
    }
}

/// Which set of the [`LeadFilter`] a pattern with these literals goes to: (side, k).
fn lead_pick((h, t): (&[u8], &[u8])) -> Option<(usize, usize)> {
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
}

impl LeadFilter {
    /// File one more pattern of the field; `false`: the filter must be rebuilt first.
    pub(super) fn try_add(&mut self, kind: &MultiKind) -> bool {
        if !self.built {
            return false;
        }
        self.items += 1;
        if !self.on {
            return true;
        }
        let Some((h, t)) = lead_lits(kind) else {
            self.on = false;
            return true;
        };
        let Some((side, k)) = lead_pick((h, t)) else {
            self.on = false;
            return true;
        };
        let Some((_, _, set)) = self
            .sets
            .iter_mut()
            .find(|(tail, kk, _)| *tail == (side == 1) && *kk == k)
        else {
            return false;
        };
        // Fewer than 8 bits per item: rebuild at a size for twice as many (unless the set
        // is at its largest already).
        if (set.n + 1) * 8 > set.bits.len() * 64 && set.bits.len() * 64 < BITSET_MAX_BITS {
            return false;
        }
        let key = if side == 0 {
            &h[..k]
        } else {
            &t[t.len() - k..]
        };
        let (w, bit) = set.index(bytes8(key));
        set.bits[w] |= bit;
        set.n += 1;
        true
    }

    /// One pattern of the field dropped; `true`: time to rebuild.
    pub(super) fn note_remove(&mut self) -> bool {
        self.removed += 1;
        self.removed * 2 > self.items
    }

    pub(super) fn build(info: &FieldInfo, multis: &[Option<MultiEntry>]) -> LeadFilter {
        let items = info.prefixes.len()
            + info.fuzzy_by_distance.iter().sum::<usize>()
            + info
                .groups
                .values()
                .flat_map(|g| g.values())
                .flatten()
                .map(|s| s.live)
                .sum::<usize>();
        let off = LeadFilter {
            built: true,
            items,
            ..LeadFilter::default()
        };
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
        let pick = lead_pick;
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
            built: true,
            on: true,
            items,
            removed: 0,
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
    pub(super) fn may_match(&self, t: &[u8]) -> bool {
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

/// Largest [`PatternCache`] per field: buckets of 4 entries, 64 bytes each (1 MiB).
pub(super) const PCACHE_MAX_BUCKETS: usize = 1 << 14;

/// First size of a [`PatternCache`], in buckets.
pub(super) const PCACHE_MIN_BUCKETS: usize = 64;

/// Most pattern ids held by one [`PatternCache`] for terms that match two or more.
pub(super) const PCACHE_MAX_LISTS: usize = 1 << 16;

/// One cache line of [`PatternCache`]: 4 term hashes (0: empty) and what they fire: one
/// pattern inline (`(m, u32::MAX)`) or a range of `PatternCache::lists` (empty: none).
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
pub(super) struct PBucket {
    pub(super) keys: [u64; 4],
    pub(super) vals: [(u32, u32); 4],
}

/// Per field: which patterns (prefix, wildcard, regex, fuzzy) each recently seen document
/// term matches, by term hash, so a frequent word is tested against the patterns once, not
/// in every document. Set-associative (4 ways per 64-byte bucket, round-robin
/// replacement), grows from 4 KiB to 1 MiB while it keeps evicting, and is emptied
/// whenever the field's patterns change.
#[derive(Default)]
pub(super) struct PatternCache {
    /// The field's `pat_gen` the entries were made at.
    pub(super) gen: u64,
    pub(super) buckets: Vec<PBucket>,
    pub(super) lists: Vec<u32>,
    /// Insertions (round-robin victim choice).
    pub(super) inserts: usize,
    /// Entries evicted since the last growth.
    pub(super) evictions: usize,
}

impl PatternCache {
    pub(super) fn clear(&mut self, gen: u64) {
        *self = PatternCache {
            gen,
            ..PatternCache::default()
        };
    }

    #[inline]
    pub(super) fn bucket(&self, h: u64) -> Option<&PBucket> {
        let mask = self.buckets.len().checked_sub(1)?;
        Some(&self.buckets[h as usize & mask])
    }

    /// The first key of `h`'s bucket (loaded ahead of the look-up to overlap misses).
    #[inline]
    pub(super) fn touch(&self, h: u64) -> u64 {
        self.bucket(h).map_or(0, |b| b.keys[0])
    }

    pub(super) fn get(&self, h: u64) -> Option<&[u32]> {
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
    pub(super) fn insert(&mut self, h: u64, fired: &[u32]) -> bool {
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

pub(super) fn head4(s: &str) -> u32 {
    let b = s.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(super) const ANY_LEN: u32 = u32::MAX;

/// Group key of a wildcard or regex: (fixed token length or ANY_LEN, literal leading chars).
pub(super) fn group_key(kind: &MultiKind) -> (u32, Box<str>) {
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

pub(super) fn deletions(s: &str, k: usize, out: &mut FxHashSet<String>) {
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

pub(super) fn build_regex(patterns: &[String]) -> Result<Regex, String> {
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

pub(super) fn multi_regex(kind: &MultiKind) -> Option<String> {
    match kind {
        MultiKind::Wildcard(p) => Some(wildcard_regex(p)),
        MultiKind::Regex(p) => Some(token_regex(p)),
        _ => None,
    }
}

/// The patterns of field `info` that term `t` matches, pushed to `fired` (sorted, once
/// each).
pub(super) fn fire_patterns(
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
pub(super) fn run_group(
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

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
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
