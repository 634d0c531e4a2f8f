//! Registration: a query compiled to a [`Node`] tree, its anchors picked, flattened into
//! the [`Op`]s verification reads; `add` / `remove` keep the posting table, the pattern
//! registry and the per-field counts in step.

use super::*;

#[derive(Debug, Clone)]
pub(super) enum Node {
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
pub(super) enum Anchor {
    /// A (field, term) key, see [`field_key`].
    Term(u64),
    Multi(u32),
    Eq(u16, u64),
}

/// The flat form a query is verified in: pre-order, each compound op followed by its
/// children (`size` = ops in its subtree, itself included), each phrase by its terms.
#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
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
pub(super) struct H2(pub(super) u32, pub(super) u32);

impl H2 {
    pub(super) fn new(h: u64) -> H2 {
        H2(h as u32, (h >> 32) as u32)
    }
    pub(super) fn get(self) -> u64 {
        self.0 as u64 | (self.1 as u64) << 32
    }
}

/// Ops kept inline in a slot's [`Hot`] record (larger queries keep theirs on the heap).
pub(super) const HOT_OPS: usize = 8;

#[derive(Debug)]
pub(super) enum HotOps {
    Inline(u8, [Op; HOT_OPS]),
    Heap(Box<[Op]>),
}

impl HotOps {
    pub(super) fn new(ops: Vec<Op>) -> HotOps {
        if ops.len() <= HOT_OPS {
            let mut a = [Op::And { size: 0 }; HOT_OPS];
            a[..ops.len()].copy_from_slice(&ops);
            HotOps::Inline(ops.len() as u8, a)
        } else {
            HotOps::Heap(ops.into_boxed_slice())
        }
    }
    pub(super) fn get(&self) -> &[Op] {
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
pub(super) struct Hot {
    pub(super) name: Arc<str>,
    pub(super) ops: HotOps,
    /// Has equality filters or a residual.
    pub(super) check: bool,
}

const _: () = assert!(std::mem::size_of::<Op>() == 12);

const _: () = assert!(std::mem::size_of::<Option<Hot>>() == 128);

pub(super) fn flatten(n: &Node, out: &mut Vec<Op>) {
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

pub(super) fn op_size(ops: &[Op], i: usize) -> usize {
    match ops[i] {
        Op::And { size } | Op::Or { size } | Op::Not { size } => size as usize,
        Op::Phrase { n, .. } => 1 + n as usize,
        _ => 1,
    }
}

/// The cold part of a slot (see [`Hot`] for what verification reads).
pub(super) struct Stored<R> {
    /// Equality filters: field and the hashes of the accepted raw values.
    pub(super) equals: Box<[(u16, Box<[u64]>)]>,
    pub(super) residual: Option<R>,
    /// `None`: on the always-check list.
    pub(super) anchors: Option<Box<[Anchor]>>,
}

/// Estimated selectivity of a term from its length alone (longer words are rarer; each
/// two more characters halve it). Costs add up over OR branches; AND takes the cheapest.
pub(super) fn len_cost(chars: usize) -> u32 {
    (1u32 << 13) >> (chars.min(24) / 2)
}

pub(super) fn term_cost(s: &str) -> u32 {
    len_cost(s.chars().count())
}

impl<R> SearchIndex<R> {
    /// Add a search, or replace the one with the same name. Takes effect for the next
    /// document. On error nothing changes (an existing search of that name stays).
    pub fn add(&mut self, name: &str, spec: SearchSpec<R>) -> Result<(), SearchError> {
        let r = self.validate(name, &spec);
        if let Err(e) = r {
            self.rejected += 1;
            return Err(e);
        }
        self.remove(name);
        self.insert(name, spec);
        Ok(())
    }

    /// Register a validated search under a free slot (the name must not be live).
    pub(super) fn insert(&mut self, name: &str, spec: SearchSpec<R>) -> u32 {
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
        slot
    }

    /// Drop a search; returns whether it existed. Takes effect for the next document.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some(slot) = self.by_name.remove(name) else {
            return false;
        };
        self.pending.remove(&slot);
        self.free_slot(slot)
    }

    /// Take a slot's search out of every table and free the slot.
    pub(super) fn free_slot(&mut self, slot: u32) -> bool {
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

    pub(super) fn validate(&self, name: &str, spec: &SearchSpec<R>) -> Result<(), SearchError> {
        if !self.by_name.contains_key(name) && self.by_name.len() >= self.limits.max_searches {
            return Err(SearchError::TooManySearches {
                limit: self.limits.max_searches,
            });
        }
        self.validate_spec(spec)
    }

    /// What can be checked of one search alone (not the count).
    pub(super) fn validate_spec(&self, spec: &SearchSpec<R>) -> Result<(), SearchError> {
        self.check_fields()?;
        validate_query(&self.limits, spec)
    }

    /// Room for the fields a new search may bring.
    pub(super) fn check_fields(&self) -> Result<(), SearchError> {
        if self.fields.len() > u16::MAX as usize - 64 {
            return Err(SearchError::Empty("too many distinct field names".into()));
        }
        Ok(())
    }

    pub(super) fn field_id(&mut self, name: &str) -> u16 {
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

    pub(super) fn compile(&mut self, q: &Query) -> Node {
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

    pub(super) fn multi(&mut self, f: u16, kind: MultiKind) -> Node {
        let key = (f, kind);
        if let Some(&m) = self.multi_ids.get(&key) {
            if let Some(e) = self.multis[m as usize].as_mut() {
                e.refs += 1;
            }
            return Node::Multi { f, m };
        }
        let (f, kind) = key;
        let m = match self.multi_free.pop() {
            Some((m, old_field)) => {
                // Pattern caches of the field it was freed from may still list it (a
                // freed pattern fires nothing); reused, it means something else.
                if let Some(info) = self.fields.get_mut(old_field as usize) {
                    info.renew_caches();
                }
                self.fields[f as usize].renew_caches();
                m
            }
            None => {
                self.multis.push(None);
                (self.multis.len() - 1) as u32
            }
        };
        let info = &mut self.fields[f as usize];
        // Cached words are tested against a few new patterns on the way out of the
        // cache; a regex (no cheap test alone) or too many new ones: caches start over.
        if matches!(kind, MultiKind::Regex(_)) || info.delta.len() >= DELTA_MAX {
            info.renew_caches();
        } else if !info.delta.contains(&m) {
            info.delta.push(m);
        }
        if !info.lead_dirty && !info.lead.try_add(&kind) {
            info.lead_dirty = true;
            self.dirty_leads.push(f);
        }
        match &kind {
            MultiKind::Prefix(p) => {
                info.prefixes.insert(p.clone(), m);
                info.prefix_lens |= 1u64 << p.len().min(63);
                if info.prefix_len_counts.is_empty() {
                    info.prefix_len_counts = vec![0; 64];
                }
                info.prefix_len_counts[p.len().min(63)] += 1;
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
                self.dirty_groups.push((f, lk, gkey.clone()));
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
        self.rebuild_dirty();
    }

    /// Rebuild the head/tail filters and the DFA shards that changed (compacting dropped
    /// patterns): only those named in the dirty lists, so the cost follows the change.
    pub(super) fn rebuild_dirty(&mut self) {
        let multis = &self.multis;
        for f in std::mem::take(&mut self.dirty_leads) {
            let Some(info) = self.fields.get_mut(f as usize) else {
                continue;
            };
            if info.lead_dirty {
                info.lead = LeadFilter::build(info, multis);
                info.lead_dirty = false;
            }
        }
        for (f, lk, gkey) in std::mem::take(&mut self.dirty_groups) {
            let Some(group) = self
                .fields
                .get_mut(f as usize)
                .and_then(|info| info.groups.get_mut(&lk))
                .and_then(|g| g.get_mut(&gkey))
            else {
                continue;
            };
            {
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
    }

    pub(super) fn release_ops(&mut self, ops: &[Op]) {
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

    pub(super) fn release_multi(&mut self, m: u32) {
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
        self.multi_free.push((m, e.field));
        let f = e.field;
        let info = &mut self.fields[f as usize];
        // Caches keep listing it: a freed pattern fires no candidate, and no search's ops
        // name it any more (it is freed once the last one that did is).
        info.delta.retain(|&x| x != m);
        if !info.lead_dirty && info.lead.note_remove() {
            info.lead_dirty = true;
            self.dirty_leads.push(f);
        }
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
                let l = p.len().min(63);
                if let Some(c) = info.prefix_len_counts.get_mut(l) {
                    *c = c.saturating_sub(1);
                    if *c == 0 {
                        info.prefix_lens &= !(1u64 << l);
                    }
                }
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
                    self.dirty_groups.push((f, lk, gkey));
                }
            }
        }
        self.multi_ids.remove(&(f, e.kind));
    }

    pub(super) fn anchors_of(&self, n: &Node) -> Option<(u32, Vec<Anchor>)> {
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

    pub(super) fn pick_anchors(
        &self,
        node: &Node,
        equals: &[(u16, Box<[u64]>)],
    ) -> Option<Box<[Anchor]>> {
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
}

/// What can be checked of one search from its text alone (no index state): the work
/// (pattern automata built once each) can run outside the index's lock.
pub(super) fn validate_query<R>(
    limits: &SearchLimits,
    spec: &SearchSpec<R>,
) -> Result<(), SearchError> {
    let q = &spec.query;
    if q.is_negative_only() {
        return Err(SearchError::NegativeOnly);
    }
    let clauses = q.clause_count();
    if clauses > limits.max_clauses {
        return Err(SearchError::QueryTooLarge {
            what: "clauses",
            size: clauses,
            limit: limits.max_clauses,
        });
    }
    let bytes = q.to_string().len();
    if bytes > limits.max_query_bytes {
        return Err(SearchError::QueryTooLarge {
            what: "bytes",
            size: bytes,
            limit: limits.max_query_bytes,
        });
    }
    if spec.equals.len() > u16::MAX as usize / 2 {
        return Err(SearchError::Empty("too many equality filters".into()));
    }
    validate_node(limits, q)
}

pub(super) fn validate_node(limits: &SearchLimits, q: &Query) -> Result<(), SearchError> {
    match q {
        Query::And(cs) | Query::Or(cs) => {
            if cs.is_empty() {
                return Err(SearchError::Empty("empty AND/OR".into()));
            }
            cs.iter().try_for_each(|c| validate_node(limits, c))
        }
        Query::Not(c) => validate_node(limits, c),
        leaf => {
            if leaf.field().is_none() {
                return Err(SearchError::MissingField(leaf.to_string()));
            }
            let re = match leaf {
                Query::Phrase { terms, .. } if terms.is_empty() => {
                    return Err(SearchError::Empty("empty phrase".into()))
                }
                Query::Phrase { terms, .. }
                    if terms.len() > limits.max_clauses.min(u16::MAX as usize) =>
                {
                    return Err(SearchError::QueryTooLarge {
                        what: "words in one phrase",
                        size: terms.len(),
                        limit: limits.max_clauses.min(u16::MAX as usize),
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
