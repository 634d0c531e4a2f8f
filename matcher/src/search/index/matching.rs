//! Matching a document: analysis into distinct terms, candidates from postings, patterns
//! and equality values, then verification of each candidate's ops (with highlights). All
//! buffers live in the caller's [`SearchScratch`].

use super::*;

/// One distinct term of one field of the document being matched.
#[derive(Debug, Clone, Copy)]
pub(super) struct Group {
    pub(super) h: u64,
    pub(super) f: u16,
    /// Index in `Scratch::analyzed`.
    pub(super) ai: u16,
    /// First and last position (chained through `Scratch::next`).
    pub(super) first: u32,
    pub(super) last: u32,
    /// Positions, in order, in `Scratch::pos_buf`.
    pub(super) start: u32,
    pub(super) end: u32,
}

#[derive(Default)]
pub(super) struct Scratch {
    pub(super) analyzed: Vec<(u16, Analyzed)>,
    /// Offset of each analyzed field's positions in `next`.
    pub(super) bases: Vec<u32>,
    /// Per token position: the next position of the same term (`u32::MAX`: none).
    pub(super) next: Vec<u32>,
    /// The document's distinct (field, term)s.
    pub(super) groups: Vec<Group>,
    /// Open-addressing table over `groups` by `field_key` (index + 1; 0 = empty).
    pub(super) gtab: Vec<u32>,
    pub(super) pos_buf: Vec<u32>,
    pub(super) multi_pairs: Vec<(u32, u32, u32)>,
    pub(super) multi_ranges: FxHashMap<u32, (u32, u32)>,
    pub(super) fired: Vec<u32>,
    pub(super) candidates: Vec<u32>,
    pub(super) marks: Vec<(u16, u32)>,
    /// The current hit's highlight ranges: (field id, start, end), sorted.
    pub(super) ranges: Vec<(u16, u32, u32)>,
    pub(super) patset: Option<PatternSet>,
    pub(super) variants: FxHashSet<String>,
    /// Per field id: whether it has patterns.
    pub(super) field_patterns: Vec<bool>,
    /// Posting keys to look up (past the Bloom filter).
    pub(super) probe: Vec<u64>,
    /// Groups to look up in the pattern caches (past the head/tail filter).
    pub(super) pass: Vec<u32>,
}

/// Everything matching a document writes to, owned by the caller (one per partition
/// worker), so a [`SearchIndex`] is matched through `&self` and shared between threads.
/// Holds the document's analysis buffers and, per field, which patterns recently seen
/// terms fire (emptied when the field's patterns change, or when the scratch is used with
/// another index).
#[derive(Default)]
pub struct SearchScratch {
    pub(super) s: Scratch,
    /// Per field id of `owner`.
    pub(super) pcaches: Vec<PatternCache>,
    /// The [`SearchIndex::uid`] the caches belong to (0: none yet).
    pub(super) owner: u64,
    pub(super) stats: MatchStats,
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
pub(super) fn next_uid() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub(super) struct Ctx<'a> {
    pub(super) pos_buf: &'a [u32],
    pub(super) gtab: &'a [u32],
    pub(super) groups: &'a [Group],
    pub(super) multi_ranges: &'a FxHashMap<u32, (u32, u32)>,
}

impl Ctx<'_> {
    /// The positions of term `h` in field `f` of the document.
    pub(super) fn term(&self, f: u16, h: u64) -> &[u32] {
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

    pub(super) fn eval(&self, ops: &[Op], i: usize, marks: &mut Vec<(u16, u32)>) -> bool {
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

impl<R> SearchIndex<R> {
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
        owned_hits(|on_hit| self.match_document_with(scratch, doc, residual, on_hit))
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
        self.match_at(self.version, scratch, doc, residual, on_hit)
    }

    /// Match with the searches visible at version `at` (see [`SearchSet`]).
    pub(super) fn match_at(
        &self,
        at: u64,
        scratch: &mut SearchScratch,
        doc: &Document<'_>,
        residual: &mut dyn FnMut(&str, &R) -> bool,
        on_hit: &mut dyn FnMut(HitRef<'_>),
    ) {
        let Self {
            pending,
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
                Some(f) if info.delta.is_empty() => f,
                Some(f) => {
                    // Made before the field's newest patterns: completed with them.
                    let t = s.analyzed[g.ai as usize].1.term(g.first as usize);
                    s.fired.clear();
                    s.fired.extend_from_slice(f);
                    for &m in &info.delta {
                        if pattern_matches(multis, m, t) {
                            s.fired.push(m);
                        }
                    }
                    s.fired.sort_unstable();
                    s.fired.dedup();
                    &s.fired[..]
                }
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
        // Only the searches of version `at` (slots added later or dropped by then are
        // still in the tables while an older handle may match with them).
        if !pending.is_empty() {
            s.candidates.retain(|slot| {
                pending
                    .get(slot)
                    .is_none_or(|&(added, dropped)| added <= at && at < dropped)
            });
        }
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
