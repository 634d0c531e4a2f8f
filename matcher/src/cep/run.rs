//! Run phase: per-partition state, the reorder buffer and the pattern VM.
//!
//! Each (key, rule) holds the rows since its oldest open search and a list of *searches*,
//! one per start row that could begin a match, in start order. A search is a Pike VM over
//! the rule's program: a list of threads in preference order (greedy before reluctant,
//! left alternative first); when a thread reaches `Match`, lower-preference threads are
//! cut and the match is remembered; it is final once no higher-preference thread is left.
//! Threads only merge when their futures are provably identical (same state and, for rules
//! whose DEFINEs read earlier rows, the same mapping of those rows to the variables read).
//! Decided searches are emitted in start order; after a match the AFTER MATCH strategy
//! decides which later searches survive. This gives exactly batch MATCH_RECOGNIZE's result.

use super::compile::{Inst, VarKind};
use super::table::KeyTable;
use super::{CepConfig, CepRule, CepRuleSet, MatchOutput};
use crate::expr::{AggFunc, Context, FieldRef, Nav, VarId};
use crate::value::{Row, Value};
use dsl::ast::AfterMatch;
use dsl::plan::LatePolicy;
use mem_prefetch::prefetch_read_data;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

/// Version of the serialized [`PartitionState`].
pub const STATE_VERSION: u32 = 5;

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRow {
    row: Arc<Row>,
    ts: i64,
    offset: u64,
    late: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct PNode {
    var: VarId,
    parent: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Thread {
    pc: u32,
    node: u32,
    len: u32,
    /// In a trailing-absence state: the path of the match itself (rows after it are only
    /// watched).
    pnode: u32,
    plen: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Best {
    node: u32,
    len: u32,
    absent_deadline: Option<i64>,
}

/// A search's path nodes and threads live inline while they are few (most searches end
/// after a row or two), so starting one allocates nothing.
type Nodes = SmallVec<[PNode; 4]>;
type Threads = SmallVec<[Thread; 2]>;

/// Pushes onto a small vector; when it first leaves its inline storage it gets room for
/// `first_heap` items at once instead of doubling through every size.
fn push_small<A: smallvec::Array>(v: &mut SmallVec<A>, x: A::Item, first_heap: usize) {
    if !v.spilled() && v.len() == v.inline_size() {
        v.reserve_exact(first_heap.saturating_sub(v.len()));
    }
    v.push(x);
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Search {
    /// Key-level index of the start row.
    start: u64,
    t0: i64,
    nodes: Nodes,
    threads: Threads,
    best: Option<Best>,
    done: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RuleKey {
    rule: u32,
    /// Open searches in start order (the front is the oldest).
    searches: SmallVec<[Search; 1]>,
    matches: u64,
}

impl RuleKey {
    fn threads(&self) -> usize {
        self.searches.iter().map(|s| s.threads.len()).sum()
    }
    fn idle(&self, rule: &CepRule) -> bool {
        self.searches.is_empty() && !(rule.uses_match_number && self.matches > 0)
    }
}

/// Everything one key holds for one rule group, in one allocation in the common case:
/// the rows since the oldest open search of any rule (shared by the key's rules; row
/// `i` of the key is `rows[i - base]`) and the per-rule searches.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct KeyState {
    values: SmallVec<[Value; 1]>,
    rows: SmallVec<[StoredRow; 2]>,
    base: u64,
    next: u64,
    rules: SmallVec<[RuleKey; 1]>,
    /// Deadline of this key's pending timer, if one is in the heap.
    timer: Option<i64>,
}

impl KeyState {
    /// The key's rows (read-only) and its rule states (mutable), borrowed together.
    fn split_rows(&mut self) -> (KeyRows<'_>, &mut SmallVec<[RuleKey; 1]>) {
        let kr = KeyRows {
            rows: &self.rows,
            base: self.base,
            next: self.next,
            values: &self.values,
        };
        (kr, &mut self.rules)
    }

    /// Drops the rows no open search needs any more, keeping `lookback` rows before the
    /// oldest open search (or before the next row) for `PREV`.
    fn trim_rows(&mut self, lookback: u64) {
        let keep_from = self
            .rules
            .iter()
            .filter_map(|rk| rk.searches.first().map(|s| s.start))
            .min()
            .unwrap_or(self.next)
            .saturating_sub(lookback);
        if keep_from > self.base {
            let n = ((keep_from - self.base) as usize).min(self.rows.len());
            if n == self.rows.len() {
                self.rows.clear();
            } else {
                self.rows.drain(..n);
            }
            self.base = keep_from;
        }
    }

    /// Earliest WITHIN deadline among open searches.
    fn next_deadline(&self, rules: &CepRuleSet) -> Option<i64> {
        self.rules
            .iter()
            .filter_map(|rk| {
                let d = rules.rules[rk.rule as usize].within_ms?;
                let rule = &rules.rules[rk.rule as usize];
                rk.searches
                    .iter()
                    .filter(|s| !s.done && !s.waits_for_end_only(rule))
                    .map(|s| s.t0.saturating_add(d))
                    .min()
            })
            .min()
    }
}

/// A row waiting in the reorder buffer. Kept small (48 bytes instead of 112): the
/// buffer holds about a second of rows and is read again when they leave it, so its
/// size is cache misses. The undeclared fields, usually none, are boxed apart.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    ts: i64,
    offset: u64,
    values: Vec<Value>,
    extra: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Hash of the row's key in the first rule group, worked out by
    /// [`PartitionState::prefetch_ahead`] shortly before the row leaves the buffer
    /// (0 = not yet; not stored in checkpoints).
    #[serde(skip)]
    key_hash: u64,
}

impl Pending {
    fn new(ts: i64, offset: u64, row: Row) -> Pending {
        let Row { values, extra } = row;
        Pending {
            ts,
            offset,
            values,
            extra: (!extra.is_empty()).then(|| Box::new(extra)),
            key_hash: 0,
        }
    }

    fn row(self) -> Row {
        Row {
            values: self.values,
            extra: self.extra.map(|b| *b).unwrap_or_default(),
        }
    }
}
impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        self.ts == o.ts && self.offset == o.offset
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> Ordering {
        // min-heap on (ts, offset)
        (o.ts, o.offset).cmp(&(self.ts, self.offset))
    }
}

/// Counters of one partition (all cumulative except the `live_*` gauges).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CepCounters {
    /// Rows processed by the matcher.
    pub rows: u64,
    /// Late rows dropped (`late = 'drop'`).
    pub late_dropped: u64,
    /// Late rows processed anyway (`late = 'emit'`).
    pub late_emitted: u64,
    /// Partial matches dropped at `max_partial_matches_per_key` / `max_rows_per_key`.
    pub partial_matches_dropped: u64,
    /// Match starts refused at `max_partial_matches_per_rule`.
    pub starts_refused: u64,
    /// Rows released from the reorder buffer before the watermark, at `max_reorder_rows`.
    pub reorder_forced: u64,
    /// Matches emitted.
    pub matches: u64,
    /// Keys with state (gauge).
    pub live_keys: u64,
    /// Open partial matches (gauge).
    pub live_partial_matches: u64,
}

/// Per-event cache of shared row-only predicate results.
#[derive(Debug, Default, Clone)]
struct PredCache {
    stamp: Vec<u32>,
    val: Vec<bool>,
    gen: u32,
}

impl PredCache {
    fn next_event(&mut self, n: usize) {
        if self.stamp.len() < n {
            self.stamp.resize(n, 0);
            self.val.resize(n, false);
        }
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.gen = 1;
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Scratch {
    stamp: Vec<u32>,
    gen: u32,
    /// (pc, projection hash) → (node, len) of the first thread there this step.
    seen: Seen,
    /// The threads of the step being taken (copied out of the search).
    clist: Vec<Thread>,
    stack: Vec<u32>,
}

impl Scratch {
    fn next_step(&mut self, n: usize) {
        if self.stamp.len() < n {
            self.stamp.resize(n, 0);
        }
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.gen = 1;
        }
        if !self.seen.is_empty() {
            self.seen.clear();
        }
    }
}

/// (pc, projection hash) → (node, len) of the first thread there in a step. Most steps
/// see a handful of entries: a short list is scanned (no hashing, and clearing it costs
/// nothing); past [`Seen::SMALL`] entries they move to a hash map.
#[derive(Debug, Default, Clone)]
struct Seen {
    small: Vec<(u32, u64, (u32, u32))>,
    big: rustc_hash::FxHashMap<(u32, u64), (u32, u32)>,
}

impl Seen {
    const SMALL: usize = 16;

    fn is_empty(&self) -> bool {
        self.small.is_empty() && self.big.is_empty()
    }

    fn clear(&mut self) {
        self.small.clear();
        if !self.big.is_empty() {
            self.big.clear();
        }
    }

    #[inline]
    fn get(&self, pc: u32, h: u64) -> Option<(u32, u32)> {
        if self.big.is_empty() {
            self.small
                .iter()
                .find(|e| e.0 == pc && e.1 == h)
                .map(|e| e.2)
        } else {
            self.big.get(&(pc, h)).copied()
        }
    }

    /// Records the first thread at (pc, h); the caller checked it is not there yet.
    #[inline]
    fn insert(&mut self, pc: u32, h: u64, v: (u32, u32)) {
        if self.big.is_empty() {
            if self.small.len() < Self::SMALL {
                self.small.push((pc, h, v));
                return;
            }
            self.big
                .extend(self.small.drain(..).map(|(pc, h, v)| ((pc, h), v)));
        }
        self.big.insert((pc, h), v);
    }
}

/// Identity hasher for keys that are already hashes.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);
impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // word-at-a-time multiply-rotate mixing (Fx-style): deterministic, no seed
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h ^ w).wrapping_mul(K).rotate_left(26);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            h = (h ^ tail_word(rest)).wrapping_mul(K).rotate_left(26);
        }
        self.0 = (h ^ bytes.len() as u64).wrapping_mul(K);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
pub(crate) type IdBuild = std::hash::BuildHasherDefault<IdHasher>;

/// The last 1–7 bytes of a string as a little-endian word padded with zeros (what
/// `u64::from_le_bytes` of a zero-padded copy gives, without a `memcpy` call).
#[inline]
fn tail_word(rest: &[u8]) -> u64 {
    // two overlapping loads cover 2–7 bytes; the overlap holds the same bytes in both
    let n = rest.len();
    match n {
        0 => 0,
        1 => rest[0] as u64,
        2..=3 => {
            let lo = u16::from_le_bytes([rest[0], rest[1]]) as u64;
            let hi = u16::from_le_bytes([rest[n - 2], rest[n - 1]]) as u64;
            lo | (hi << (8 * (n - 2)))
        }
        4..=7 => {
            let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
            let hi = u32::from_le_bytes([rest[n - 4], rest[n - 3], rest[n - 2], rest[n - 1]]);
            lo | ((hi as u64) << (8 * (n - 4)))
        }
        _ => u64::from_le_bytes([
            rest[0], rest[1], rest[2], rest[3], rest[4], rest[5], rest[6], rest[7],
        ]),
    }
}

/// Hash of the partition-key values: a canonical encoding (type tag, then the value's
/// bytes, strings with their length) mixed a word at a time. Deterministic (no seed) and
/// allocation-free; part of the checkpoint format (keys are stored by this hash).
fn hash_values<'a>(vals: impl Iterator<Item = &'a Value>) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    #[inline(always)]
    fn mix(h: &mut u64, w: u64) {
        *h = (*h ^ w).wrapping_mul(K).rotate_left(26);
    }
    #[inline(always)]
    fn put_bytes(h: &mut u64, tag: u64, bytes: &[u8]) {
        mix(h, tag | ((bytes.len() as u64) << 8));
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            mix(
                h,
                u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            );
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            mix(h, tail_word(rest));
        }
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in vals {
        match v {
            Value::Null => mix(&mut h, 0),
            Value::Bool(b) => mix(&mut h, 1 | ((*b as u64) << 8)),
            Value::Int(i) => {
                mix(&mut h, 2);
                mix(&mut h, *i as u64)
            }
            Value::Float(f) => {
                mix(&mut h, 3);
                mix(&mut h, f.to_bits())
            }
            Value::String(s) => put_bytes(&mut h, 4, s.as_bytes()),
            Value::Timestamp(t) => {
                mix(&mut h, 5);
                mix(&mut h, *t as u64)
            }
            Value::Json(j) => put_bytes(&mut h, 6, j.to_string().as_bytes()),
        }
    }
    h.wrapping_mul(K)
}

/// Seed of [`eq_hash`].
pub(crate) const EQ_HASH_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Integers and integral floats up to this magnitude hash alike (`1 = 1.0`).
const EXACT_F64_INT: f64 = 9_007_199_254_740_992.0; // 2^53

/// Whether a `col = literal` conjunct can go into a start index: SQL equality with it
/// must imply equal [`eq_hash`] inputs. Strings that read as timestamps (a TIMESTAMP
/// column equals them after parsing) and large integers are left out.
pub(crate) fn eq_indexable(lit: &Value) -> bool {
    match lit {
        Value::Bool(_) => true,
        Value::Int(i) => i.unsigned_abs() <= 1 << 53,
        Value::Float(f) => f.fract() != 0.0 || f.abs() < EXACT_F64_INT,
        Value::String(s) => crate::value::parse_timestamp(s).is_none(),
        Value::Null | Value::Timestamp(_) | Value::Json(_) => false,
    }
}

/// Mixes a value into a start-index hash so that SQL-equal values (with an indexable
/// literal) mix alike. `false` when the value can equal no indexable literal (NULL, JSON).
pub(crate) fn eq_hash(h: &mut u64, v: &Value) -> bool {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mut mix = |w: u64| *h = (*h ^ w).wrapping_mul(K).rotate_left(26);
    match v {
        Value::Bool(b) => mix(1 | ((*b as u64) << 8)),
        Value::Int(i) | Value::Timestamp(i) => {
            mix(2);
            mix(*i as u64)
        }
        Value::Float(f) => {
            if f.fract() == 0.0 && f.abs() <= EXACT_F64_INT {
                mix(2);
                mix(*f as i64 as u64)
            } else {
                mix(3);
                mix(f.to_bits())
            }
        }
        Value::String(s) => {
            let bytes = s.as_bytes();
            mix(4 | ((bytes.len() as u64) << 8));
            let mut chunks = bytes.chunks_exact(8);
            for c in &mut chunks {
                mix(u64::from_le_bytes([
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                ]));
            }
            let rest = chunks.remainder();
            if !rest.is_empty() {
                mix(tail_word(rest));
            }
        }
        Value::Null | Value::Json(_) => return false,
    }
    true
}

/// Mutable state of one log partition for one [`CepRuleSet`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionState {
    version: u32,
    partition: u32,
    rule_names: Vec<String>,
    /// Per rule group: the keys with state, by the hash of their partition key.
    groups_state: Vec<KeyTable<KeyState>>,
    /// Reorder buffer: rows that arrived in order (the common case, O(1))…
    reorder_run: VecDeque<Pending>,
    /// …and rows that arrived out of order.
    reorder: BinaryHeap<Pending>,
    max_ts: Option<i64>,
    watermark: i64,
    /// (deadline, group, key hash): wake the key when the watermark passes the deadline.
    timers: BinaryHeap<Reverse<(i64, u32, u64)>>,
    rule_live: Vec<u64>,
    counters: CepCounters,
    #[serde(skip)]
    cache: PredCache,
    #[serde(skip)]
    scratch: Scratch,
    #[serde(skip)]
    cand_stamp: Vec<u32>,
    #[serde(skip)]
    cand_gen: u32,
    #[serde(skip)]
    cand_buf: Vec<u32>,
    /// Emptied key states kept for new keys (at most [`SPARE_KEYS`]): a new key reuses the
    /// box and the room its vectors had grown to instead of allocating them again.
    #[serde(skip)]
    #[allow(clippy::vec_box)]
    // the boxes themselves are what is reused (the table holds boxes)
    spare: Vec<Box<KeyState>>,
}

/// Evaluation context of a DEFINE (current row tentatively mapped to a variable) or of
/// MEASURES (the final match).
struct Ctx<'a> {
    rows: &'a [StoredRow],
    base: u64,
    start: u64,
    nodes: &'a [PNode],
    tail: u32,
    len: u32,
    cur: Option<(&'a Row, VarId)>,
    match_number: u64,
    var_names: &'a [String],
}

impl Ctx<'_> {
    fn last_pos(&self) -> Option<u32> {
        if self.cur.is_some() {
            Some(self.len)
        } else {
            self.len.checked_sub(1)
        }
    }
    fn row_at(&self, pos: u32) -> &Row {
        if let Some((r, _)) = self.cur {
            if pos == self.len {
                return r;
            }
        }
        &self.rows[(self.start + pos as u64 - self.base) as usize].row
    }
    /// Visits (pos, var) from the last row of the (tentative) path backwards.
    fn walk_rev(&self, mut f: impl FnMut(u32, VarId) -> bool) {
        if let Some((_, v)) = self.cur {
            if !f(self.len, v) {
                return;
            }
        }
        let mut node = self.tail;
        let mut pos = self.len;
        while node != NONE {
            pos -= 1;
            let n = self.nodes[node as usize];
            if !f(pos, n.var) {
                return;
            }
            node = n.parent;
        }
    }
    fn nth_last(&self, var: Option<VarId>, n: u32) -> Option<u32> {
        let mut k = 0;
        let mut found = None;
        self.walk_rev(|pos, v| {
            if var.is_none_or(|x| x == v) {
                if k == n {
                    found = Some(pos);
                    return false;
                }
                k += 1;
            }
            true
        });
        found
    }
    /// The (n+1)-th row mapped to `var` from the start, without collecting positions: the
    /// oldest one seen for n = 0, else a count then a second walk.
    fn nth_first(&self, var: Option<VarId>, n: u32) -> Option<u32> {
        let mut k = 0u32;
        let mut oldest = None;
        self.walk_rev(|pos, v| {
            if var.is_none_or(|x| x == v) {
                k += 1;
                oldest = Some(pos);
            }
            true
        });
        if n == 0 {
            oldest
        } else {
            k.checked_sub(n + 1).and_then(|i| self.nth_last(var, i))
        }
    }
    fn field_at(&self, pos: Option<u32>, field: &FieldRef) -> Value {
        match pos {
            Some(p) => field.get(self.row_at(p)),
            None => Value::Null,
        }
    }
    /// A field of the key's row `abs` (key-level index), which may be before the match:
    /// NULL when that row is not kept (before the partition's first row).
    fn field_abs(&self, abs: Option<u64>, field: &FieldRef) -> Value {
        let Some(abs) = abs else {
            return Value::Null;
        };
        if abs >= self.start {
            return self.field_at(u32::try_from(abs - self.start).ok(), field);
        }
        match abs
            .checked_sub(self.base)
            .and_then(|i| self.rows.get(i as usize))
        {
            Some(r) => field.get(&r.row),
            None => Value::Null,
        }
    }
}

fn aggregate(func: AggFunc, vals: &[Value], rows: usize, star: bool) -> Value {
    match func {
        AggFunc::Count => {
            if star {
                Value::Int(rows as i64)
            } else {
                Value::Int(vals.iter().filter(|v| !v.is_null()).count() as i64)
            }
        }
        AggFunc::Sum | AggFunc::Avg => {
            let mut n = 0i64;
            let mut isum: Option<i64> = Some(0);
            let mut fsum = 0f64;
            let mut all_int = true;
            for v in vals {
                match v {
                    Value::Int(i) => {
                        isum = isum.and_then(|s| s.checked_add(*i));
                        fsum += *i as f64;
                    }
                    Value::Float(f) => {
                        all_int = false;
                        fsum += f;
                    }
                    _ => continue,
                }
                n += 1;
            }
            if n == 0 {
                return Value::Null;
            }
            if func == AggFunc::Avg {
                Value::Float(fsum / n as f64)
            } else if all_int {
                isum.map(Value::Int).unwrap_or(Value::Float(fsum))
            } else {
                Value::Float(fsum)
            }
        }
        AggFunc::Min | AggFunc::Max => {
            let mut best: Option<&Value> = None;
            for v in vals {
                if v.is_null() {
                    continue;
                }
                best = match best {
                    None => Some(v),
                    Some(b) => match v.sql_cmp(b) {
                        Some(Ordering::Less) if func == AggFunc::Min => Some(v),
                        Some(Ordering::Greater) if func == AggFunc::Max => Some(v),
                        _ => Some(b),
                    },
                };
            }
            best.cloned().unwrap_or(Value::Null)
        }
    }
}

impl Context for Ctx<'_> {
    fn row(&self) -> Option<&Row> {
        self.last_pos().map(|p| self.row_at(p))
    }
    fn nav(&self, nav: &Nav) -> Value {
        match nav {
            Nav::Last { var, field, n } => self.field_at(self.nth_last(*var, *n), field),
            Nav::First { var, field, n } => self.field_at(self.nth_first(*var, *n), field),
            Nav::PrevOf { of, n } => {
                let (pos, field) = match &**of {
                    Nav::First { var, field, n } => (self.nth_first(*var, *n), field),
                    Nav::Last { var, field, n } => (self.nth_last(*var, *n), field),
                    _ => return Value::Null,
                };
                let abs = pos.and_then(|p| (self.start + p as u64).checked_sub(*n as u64));
                self.field_abs(abs, field)
            }
            Nav::Prev { var, field, n } => {
                let anchor = match var {
                    None => self.last_pos(),
                    Some(_) => self.nth_last(*var, 0),
                };
                let abs = anchor.and_then(|a| (self.start + a as u64).checked_sub(*n as u64));
                self.field_abs(abs, field)
            }
            Nav::Agg { func, var, arg } => {
                let mut vals = Vec::new();
                let mut rows = 0usize;
                self.walk_rev(|pos, v| {
                    if var.is_none_or(|x| x == v) {
                        rows += 1;
                        if let Some(f) = arg {
                            vals.push(f.get(self.row_at(pos)));
                        }
                    }
                    true
                });
                aggregate(*func, &vals, rows, arg.is_none())
            }
            Nav::MatchNumber => Value::Int(self.match_number as i64),
            Nav::Classifier => {
                let mut var = None;
                self.walk_rev(|_, v| {
                    var = Some(v);
                    false
                });
                match var {
                    Some(v) => Value::String(self.var_names[v as usize].clone()),
                    None => Value::Null,
                }
            }
        }
    }
}

/// Shared read-only pieces a step needs.
struct Env<'a> {
    rule: &'a CepRule,
    pred_ids: &'a [(u32, bool)],
}

fn var_holds(env: &Env, cache: &mut PredCache, v: VarId, ctx: &mut Ctx) -> bool {
    match env.rule.vars[v as usize].kind {
        VarKind::Always => true,
        VarKind::Def(p) => {
            let (gid, row_only) = env.pred_ids[p as usize];
            if row_only {
                let g = gid as usize;
                if cache.stamp[g] == cache.gen {
                    return cache.val[g];
                }
                let r = env.rule.preds[p as usize].eval_bool(&*ctx);
                cache.stamp[g] = cache.gen;
                cache.val[g] = r;
                r
            } else {
                env.rule.preds[p as usize].eval_bool(&*ctx)
            }
        }
        VarKind::Not(w) => {
            let saved = ctx.cur;
            if let Some((r, _)) = ctx.cur {
                ctx.cur = Some((r, w));
            }
            let h = var_holds(env, cache, w, ctx);
            ctx.cur = saved;
            !h
        }
    }
}

/// The rows of a path that later DEFINEs can read (positions mapped to a variable in
/// `rule.history`), newest first.
struct Projection<'a> {
    rule: &'a CepRule,
    nodes: &'a [PNode],
    node: u32,
    pos: u32,
}

impl Iterator for Projection<'_> {
    type Item = (u32, VarId);
    fn next(&mut self) -> Option<(u32, VarId)> {
        while self.node != NONE {
            self.pos -= 1;
            let n = self.nodes[self.node as usize];
            self.node = n.parent;
            if self.rule.history[n.var as usize] {
                return Some((self.pos, n.var));
            }
        }
        None
    }
}

fn projection<'a>(rule: &'a CepRule, nodes: &'a [PNode], node: u32, len: u32) -> Projection<'a> {
    Projection {
        rule,
        nodes,
        node,
        pos: len,
    }
}

fn projection_hash(rule: &CepRule, nodes: &[PNode], node: u32, len: u32) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for (pos, var) in projection(rule, nodes, node, len) {
        h = (h ^ (((pos as u64) << 16) | var as u64)).wrapping_mul(0x100000001b3);
    }
    h
}

/// Adds `t` (at `t.pc`) and everything reachable from it without consuming a row.
/// `start`: the key-level index of the search's first row (for `^`).
fn closure(
    rule: &CepRule,
    sc: &mut Scratch,
    nodes: &[PNode],
    out: &mut Threads,
    t: Thread,
    entering: bool,
    start: u64,
) {
    let proj = if rule.path_dependent {
        Some(projection_hash(rule, nodes, t.node, t.len))
    } else {
        None
    };
    sc.stack.clear();
    sc.stack.push(t.pc);
    while let Some(pc) = sc.stack.pop() {
        let fresh = match &proj {
            None => {
                let s = &mut sc.stamp[pc as usize];
                if *s == sc.gen {
                    false
                } else {
                    *s = sc.gen;
                    true
                }
            }
            Some(h) => match sc.seen.get(pc, *h) {
                None => {
                    sc.seen.insert(pc, *h, (t.node, t.len));
                    true
                }
                // same hash: merge only when the projections are really equal
                Some((n2, l2)) => {
                    !projection(rule, nodes, t.node, t.len).eq(projection(rule, nodes, n2, l2))
                }
            },
        };
        if !fresh {
            continue;
        }
        match rule.prog[pc as usize] {
            Inst::Jmp(a) => sc.stack.push(a),
            Inst::Split(a, b) => {
                sc.stack.push(b);
                sc.stack.push(a);
            }
            Inst::AssertStart => {
                if start + t.len as u64 == 0 {
                    sc.stack.push(pc + 1);
                }
            }
            Inst::Classify(_) | Inst::Match | Inst::AssertEnd => out.push(Thread { pc, ..t }),
            Inst::AbsentTail(_) => {
                if entering {
                    out.push(Thread {
                        pc,
                        pnode: t.node,
                        plen: t.len,
                        ..t
                    })
                } else {
                    out.push(Thread { pc, ..t })
                }
            }
        }
    }
}

impl Search {
    fn normalize(&mut self, rule: &CepRule) {
        if let Some(i) = self
            .threads
            .iter()
            .position(|t| rule.prog[t.pc as usize] == Inst::Match)
        {
            let t = self.threads[i];
            self.best = Some(Best {
                node: t.node,
                len: t.len,
                absent_deadline: None,
            });
            self.threads.truncate(i);
        }
        if self.threads.is_empty() {
            self.done = true;
        }
    }

    /// No more rows can extend this search (WITHIN passed, or `at_end`: the end of the
    /// input): waiting absences succeed; threads waiting at `$` succeed at the end and
    /// otherwise keep waiting (the next row of the key ends them); the rest die.
    fn expire(&mut self, rule: &CepRule, at_end: bool) {
        if self.done {
            return;
        }
        for t in &self.threads {
            match rule.prog[t.pc as usize] {
                Inst::AbsentTail(_) => {
                    self.best = Some(Best {
                        node: t.pnode,
                        len: t.plen,
                        absent_deadline: Some(self.t0.saturating_add(rule.within_ms.unwrap_or(0))),
                    });
                    break;
                }
                Inst::AssertEnd if at_end && matches_at_end(rule, t.pc) => {
                    self.best = Some(Best {
                        node: t.node,
                        len: t.len,
                        absent_deadline: None,
                    });
                    break;
                }
                _ => {}
            }
        }
        if at_end || self.best.is_some() {
            self.threads.clear();
        } else {
            self.threads
                .retain(|t| rule.prog[t.pc as usize] == Inst::AssertEnd);
        }
        self.done = self.threads.is_empty();
    }

    /// Only threads waiting at `$` are left: no deadline applies to them.
    fn waits_for_end_only(&self, rule: &CepRule) -> bool {
        self.threads
            .iter()
            .all(|t| rule.prog[t.pc as usize] == Inst::AssertEnd)
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        env: &Env,
        cache: &mut PredCache,
        sc: &mut Scratch,
        rows: &[StoredRow],
        base: u64,
        row: &Row,
        ts: i64,
        match_number: u64,
    ) {
        if self.done {
            return;
        }
        let rule = env.rule;
        if let Some(d) = rule.within_ms {
            if ts.saturating_sub(self.t0) > d {
                self.expire(rule, false);
                if self.done {
                    return;
                }
            }
        }
        sc.next_step(rule.prog.len());
        let mut clist = std::mem::take(&mut sc.clist);
        clist.clear();
        clist.extend_from_slice(&self.threads);
        self.threads.clear();
        for &t in &clist {
            // (a thread waiting at `$` dies: this row shows the input goes on)
            let (v, absent) = match rule.prog[t.pc as usize] {
                Inst::Classify(v) => (v, false),
                Inst::AbsentTail(v) => (v, true),
                _ => continue,
            };
            let ok = {
                let mut ctx = Ctx {
                    rows,
                    base,
                    start: self.start,
                    nodes: &self.nodes,
                    tail: t.node,
                    len: t.len,
                    cur: Some((row, v)),
                    match_number,
                    var_names: &rule.var_names,
                };
                var_holds(env, cache, v, &mut ctx)
            };
            if !ok {
                continue;
            }
            push_small(
                &mut self.nodes,
                PNode {
                    var: v,
                    parent: t.node,
                },
                16,
            );
            let node = (self.nodes.len() - 1) as u32;
            // an absence stays at its state; a classified row moves on
            let nt = Thread {
                pc: if absent { t.pc } else { t.pc + 1 },
                node,
                len: t.len + 1,
                ..t
            };
            closure(
                rule,
                sc,
                &self.nodes,
                &mut self.threads,
                nt,
                !absent,
                self.start,
            );
        }
        sc.clist = clist;
        self.normalize(rule);
    }
}

/// Whether a thread at `$` (pc) reaches `Match` once the input has ended: through jumps,
/// splits and further `$`, without a row.
fn matches_at_end(rule: &CepRule, pc: u32) -> bool {
    let mut seen = vec![false; rule.prog.len()];
    let mut stack = vec![pc + 1];
    while let Some(pc) = stack.pop() {
        let Some(s) = seen.get_mut(pc as usize) else {
            continue;
        };
        if *s {
            continue;
        }
        *s = true;
        match rule.prog[pc as usize] {
            Inst::Match => return true,
            Inst::Jmp(a) => stack.push(a),
            Inst::Split(a, b) => {
                stack.push(b);
                stack.push(a);
            }
            Inst::AssertEnd => stack.push(pc + 1),
            // a search's threads have taken its first row by now, so `^` cannot hold
            Inst::AssertStart | Inst::Classify(_) | Inst::AbsentTail(_) => {}
        }
    }
    false
}

fn skip_target(rule: &CepRule, s: &Search, best: &Best) -> u64 {
    let next = s.start + 1;
    let positions = |v: VarId| {
        let mut ps = Vec::new();
        let mut node = best.node;
        let mut pos = best.len;
        while node != NONE {
            pos -= 1;
            let n = s.nodes[node as usize];
            if n.var == v {
                ps.push(pos);
            }
            node = n.parent;
        }
        ps
    };
    let t = match (&rule.after, rule.skip_var) {
        (AfterMatch::SkipPastLastRow, _) => s.start + best.len as u64,
        (AfterMatch::SkipToNextRow, _) => next,
        (AfterMatch::SkipToFirst(_), Some(v)) => match positions(v).last() {
            Some(p) => s.start + *p as u64,
            None => next,
        },
        (AfterMatch::SkipToLast(_), Some(v)) => match positions(v).first() {
            Some(p) => s.start + *p as u64,
            None => next,
        },
        _ => next,
    };
    if t <= s.start {
        next
    } else {
        t
    }
}

struct Emit<'a> {
    rules: &'a CepRuleSet,
    partition: u32,
    counters: &'a mut CepCounters,
}

/// The rows and key values of one key, read while its rule states are resolved.
#[derive(Clone, Copy)]
struct KeyRows<'a> {
    rows: &'a [StoredRow],
    base: u64,
    next: u64,
    values: &'a [Value],
}

fn emit_match(
    em: &mut Emit,
    rule: &CepRule,
    match_number: u64,
    kr: KeyRows,
    s: &Search,
    best: &Best,
    out: &mut Vec<MatchOutput>,
) {
    let ctx = Ctx {
        rows: kr.rows,
        base: kr.base,
        start: s.start,
        nodes: &s.nodes,
        tail: best.node,
        len: best.len,
        cur: None,
        match_number,
        var_names: &rule.var_names,
    };
    let at = |i: u64| &kr.rows[(s.start + i - kr.base) as usize];
    let first = at(0);
    // an empty match takes no row: it is reported at the row where it was found
    let empty = best.len == 0;
    let last = at((best.len as u64).saturating_sub(1));
    let late = (0..(best.len as u64).max(1)).any(|i| at(i).late);
    let mut fields = Vec::with_capacity(rule.partition_names.len() + rule.measures.len());
    for (n, v) in rule.partition_names.iter().zip(kr.values) {
        fields.push((n.clone(), v.clone()));
    }
    for (n, m) in &rule.measures {
        fields.push((n.clone(), m.eval(&ctx)));
    }
    let absent = best.absent_deadline.is_some();
    // `{rule}@{stream}/{partition}:{first}-{last}` (+ `!`), without the formatting machinery
    let mut id = String::with_capacity(rule.name.len() + rule.stream.len() + 32);
    id.push_str(&rule.name);
    id.push('@');
    id.push_str(&rule.stream);
    id.push('/');
    push_decimal(&mut id, em.partition as u64);
    id.push(':');
    push_decimal(&mut id, first.offset);
    id.push('-');
    if !empty {
        push_decimal(&mut id, last.offset);
    }
    if absent {
        id.push('!');
    }
    em.counters.matches += 1;
    let _ = em.rules;
    out.push(MatchOutput {
        rule: rule.name.clone(),
        id,
        ts: best.absent_deadline.unwrap_or(last.ts),
        late,
        fields,
        first_offset: first.offset,
        last_offset: last.offset,
    });
}

fn push_decimal(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(b as char);
    }
}

/// Emits decided searches in start order, applies AFTER MATCH, enforces caps. The key's
/// rows are trimmed afterwards ([`KeyState::trim_rows`]).
fn resolve(
    em: &mut Emit,
    rule: &CepRule,
    rk: &mut RuleKey,
    kr: KeyRows,
    out: &mut Vec<MatchOutput>,
) {
    rk.searches.retain(|s| !(s.done && s.best.is_none()));
    let n = rk.searches.len();
    let mut k = 0;
    while k < n && rk.searches[k].done {
        let s = &rk.searches[k];
        k += 1;
        let Some(best) = s.best else { continue };
        emit_match(em, rule, rk.matches + 1, kr, s, &best, out);
        rk.matches += 1;
        let target = skip_target(rule, s, &best);
        while k < n && rk.searches[k].start < target {
            k += 1;
        }
    }
    // caps
    let cfg: &CepConfig = &rule.config;
    let mut threads: usize = rk.searches[k..].iter().map(|s| s.threads.len()).sum();
    while threads > cfg.max_partial_matches_per_key && n - k > 1 {
        threads -= rk.searches[k].threads.len();
        em.counters.partial_matches_dropped += rk.searches[k].threads.len() as u64;
        k += 1;
    }
    while k < n && kr.next - rk.searches[k].start > cfg.max_rows_per_key as u64 {
        em.counters.partial_matches_dropped += rk.searches[k].threads.len().max(1) as u64;
        k += 1;
    }
    if k == n {
        rk.searches.clear();
    } else if k > 0 {
        rk.searches.drain(..k);
    }
}

/// Emptied key states kept for reuse per partition (each keeps the room its vectors grew
/// to, at most 32 rows and 8 rules: about 3 KiB each, under 1 MiB per partition).
const SPARE_KEYS: usize = 256;

/// Empties a removed key state and keeps it for the next new key (when there is room).
#[allow(clippy::vec_box)] // see `PartitionState::spare`
fn recycle(spare: &mut Vec<Box<KeyState>>, mut ks: Box<KeyState>) {
    // a key that had grown large is freed rather than kept: the spare boxes stay small
    if spare.len() >= SPARE_KEYS || ks.rows.capacity() > 32 || ks.rules.capacity() > 8 {
        return;
    }
    ks.values.clear();
    ks.rows.clear();
    ks.rules.clear();
    ks.base = 0;
    ks.next = 0;
    ks.timer = None;
    spare.push(ks);
}

/// Starts loading the bytes of the strings among `values`.
#[inline]
fn prefetch_strings(values: &[Value]) {
    for v in values {
        if let Value::String(s) = v {
            if let Some(b) = s.as_bytes().first() {
                prefetch_read_data::<_, 3>(b);
            }
        }
    }
}

/// Declared column `i` of a buffered row (NULL when out of range), as [`Row::get`].
fn pending_get(p: &Pending, i: usize) -> &Value {
    static NULL: Value = Value::Null;
    p.values.get(i).unwrap_or(&NULL)
}

/// The partition key of a row for one rule group: hash, plus owned values when the
/// PARTITION BY items are expressions rather than plain columns.
struct RowKey {
    hash: u64,
    computed: Option<Vec<Value>>,
}

fn row_key(rule: &CepRule, row: &Row, known_hash: Option<u64>) -> RowKey {
    match &rule.partition_cols {
        Some(cols) => RowKey {
            hash: known_hash.unwrap_or_else(|| hash_values(cols.iter().map(|c| row.get(*c)))),
            computed: None,
        },
        None => {
            let vals: Vec<Value> = rule.partition.iter().map(|p| p.eval(row)).collect();
            RowKey {
                hash: hash_values(vals.iter()),
                computed: Some(vals),
            }
        }
    }
}

fn key_matches(rule: &CepRule, row: &Row, k: &RowKey, values: &[Value]) -> bool {
    match (&k.computed, &rule.partition_cols) {
        (Some(v), _) => v.as_slice() == values,
        (None, Some(cols)) => cols.iter().zip(values).all(|(c, v)| row.get(*c) == v),
        (None, None) => false,
    }
}

fn key_values(rule: &CepRule, row: &Row, k: &RowKey) -> SmallVec<[Value; 1]> {
    match (&k.computed, &rule.partition_cols) {
        (Some(v), _) => v.iter().cloned().collect(),
        (None, Some(cols)) => cols.iter().map(|c| row.get(*c).clone()).collect(),
        (None, None) => SmallVec::new(),
    }
}

impl PartitionState {
    fn buffered(&self) -> usize {
        self.reorder_run.len() + self.reorder.len()
    }

    fn buffer_push(&mut self, p: Pending) {
        if self
            .reorder_run
            .back()
            .is_none_or(|b| (b.ts, b.offset) <= (p.ts, p.offset))
        {
            self.reorder_run.push_back(p);
        } else {
            self.reorder.push(p);
        }
    }

    fn buffer_min_ts(&self) -> Option<i64> {
        match (self.reorder_run.front(), self.reorder.peek()) {
            (Some(a), Some(b)) => Some(a.ts.min(b.ts)),
            (Some(a), None) => Some(a.ts),
            (None, Some(b)) => Some(b.ts),
            (None, None) => None,
        }
    }

    fn buffer_pop(&mut self) -> Option<Pending> {
        let take_run = match (self.reorder_run.front(), self.reorder.peek()) {
            (Some(a), Some(b)) => (a.ts, a.offset) <= (b.ts, b.offset),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if take_run {
            self.reorder_run.pop_front()
        } else {
            self.reorder.pop()
        }
    }

    /// Software-pipelined prefetch for the rows about to leave the reorder buffer. They
    /// waited there about a second, so their data and their keys' state are out of the
    /// near caches, and each is reached through the one before (row → values → strings →
    /// key hash → table slot → key state → key string): loaded one after another when the
    /// row is processed, these misses add up. Each release moves every in-order row
    /// nearer by one step, and this issues the next load of its chain, so the misses of
    /// several upcoming rows are in flight while the current row is processed. Only a
    /// hint: nothing here changes state or results.
    fn prefetch_ahead(&mut self, rules: &CepRuleSet) {
        const VALUES: usize = 5;
        const STRINGS: usize = 4;
        const SLOT: usize = 3;
        const STATE: usize = 2;
        const INNER: usize = 1;
        if self.reorder_run.len() <= INNER {
            return;
        }
        let Some(g0) = rules.groups.first() else {
            return;
        };
        let cols0 = rules.rules[g0.rules[0] as usize].partition_cols.as_deref();
        let (front, back) = self.reorder_run.as_mut_slices();
        // the key hash of the first group, once per row (kept for the matcher)
        let slot_row = match front.len() {
            n if SLOT < n => front.get_mut(SLOT),
            n => back.get_mut(SLOT - n),
        };
        if let (Some(cols), Some(p)) = (cols0, slot_row) {
            if p.key_hash == 0 {
                p.key_hash = hash_values(cols.iter().map(|c| pending_get(p, *c)));
            }
        }
        let (front, back) = (&*front, &*back);
        let at = |k: usize| match front.len() {
            n if k < n => front.get(k),
            n => back.get(k - n),
        };
        if let Some(p) = at(VALUES) {
            // a value is 32 bytes: one prefetch per 64-byte line
            for v in p.values.iter().step_by(2) {
                prefetch_read_data::<_, 3>(v);
            }
            if let Some(v) = p.values.last() {
                prefetch_read_data::<_, 3>(v);
            }
        }
        if let Some(p) = at(STRINGS) {
            prefetch_strings(&p.values);
        }
        for (gi, (g, table)) in rules.groups.iter().zip(&self.groups_state).enumerate() {
            let cols = if gi == 0 {
                cols0
            } else {
                rules.rules[g.rules[0] as usize].partition_cols.as_deref()
            };
            let Some(cols) = cols else {
                continue;
            };
            let key_hash = |p: &Pending| {
                if gi == 0 && p.key_hash != 0 {
                    p.key_hash
                } else {
                    hash_values(cols.iter().map(|c| pending_get(p, *c)))
                }
            };
            if gi > 0 {
                if let Some(p) = at(SLOT) {
                    table.prefetch_slot(key_hash(p));
                }
            } else if let Some(p) = at(SLOT) {
                table.prefetch_slot(p.key_hash);
            }
            if let Some(ks) = at(STATE).and_then(|p| table.first_with_hash(key_hash(p))) {
                prefetch_read_data::<_, 3>(&ks.values);
                prefetch_read_data::<_, 3>(&ks.rows);
                prefetch_read_data::<_, 3>(&ks.rules);
                prefetch_read_data::<_, 3>(&ks.timer);
            }
            if let Some(ks) = at(INNER).and_then(|p| table.first_with_hash(key_hash(p))) {
                prefetch_strings(&ks.values);
                // the oldest row the key keeps (navigation such as FIRST(a.x) reads it)
                if let Some(r) = ks.rows.first() {
                    prefetch_read_data::<_, 3>(&*r.row);
                    if ks.rows.spilled() {
                        prefetch_read_data::<_, 3>(r);
                    }
                }
                if ks.rules.spilled() {
                    if let Some(r) = ks.rules.first() {
                        prefetch_read_data::<_, 3>(r);
                    }
                }
            }
        }
    }

    /// Rows waiting in the reorder buffer.
    pub fn buffered_rows(&self) -> usize {
        self.buffered()
    }

    /// Fresh state for log partition `partition`.
    pub fn new(partition: u32, rules: &CepRuleSet) -> PartitionState {
        PartitionState {
            version: STATE_VERSION,
            partition,
            rule_names: rules.rules.iter().map(|r| r.name.to_string()).collect(),
            groups_state: rules.groups.iter().map(|_| KeyTable::default()).collect(),
            reorder_run: VecDeque::new(),
            reorder: BinaryHeap::new(),
            max_ts: None,
            watermark: i64::MIN,
            timers: BinaryHeap::new(),
            rule_live: vec![0; rules.rules.len()],
            counters: CepCounters::default(),
            cache: PredCache::default(),
            scratch: Scratch::default(),
            cand_stamp: Vec::new(),
            cand_gen: 0,
            cand_buf: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Checks a restored checkpoint against the rule set it will run with.
    pub fn check_compatible(&self, rules: &CepRuleSet) -> Result<(), String> {
        if self.version != STATE_VERSION {
            return Err(format!(
                "checkpoint version {} is not supported (expected {STATE_VERSION})",
                self.version
            ));
        }
        let names: Vec<String> = rules.rules.iter().map(|r| r.name.to_string()).collect();
        if names != self.rule_names {
            return Err("the checkpoint was taken with a different rule set".into());
        }
        Ok(())
    }

    /// Current watermark (ms; `i64::MIN` before the first row).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Counters, with the gauges refreshed.
    pub fn counters(&self) -> CepCounters {
        let mut c = self.counters.clone();
        c.live_keys = self.groups_state.iter().map(|g| g.len() as u64).sum();
        c.live_partial_matches = self.rule_live.iter().sum();
        c
    }

    /// Approximate bytes held by keys, partial matches and their row references (row
    /// contents are shared between rules and not counted; the key's own values are).
    pub fn approx_state_bytes(&self) -> usize {
        use std::mem::size_of;
        fn heap<A: smallvec::Array>(v: &SmallVec<A>) -> usize {
            if v.spilled() {
                v.capacity() * size_of::<A::Item>()
            } else {
                0
            }
        }
        let mut total = 0;
        for g in &self.groups_state {
            // the table's slots, used or not
            total += g.capacity() * KeyTable::<KeyState>::SLOT_BYTES;
            for (_, ks) in g.iter() {
                total += size_of::<KeyState>() + heap(&ks.values) + heap(&ks.rows);
                total += heap(&ks.rules);
                if ks.rules.is_empty() {
                    // kept only for PREV (see `Group::lookback`): the rows are this key's
                    for r in &ks.rows {
                        total += size_of::<Row>() + r.row.values.len() * size_of::<Value>();
                    }
                }
                for v in &ks.values {
                    if let Value::String(s) = v {
                        total += s.capacity();
                    }
                }
                for rk in &ks.rules {
                    total += heap(&rk.searches);
                    for s in &rk.searches {
                        total += heap(&s.nodes) + heap(&s.threads);
                    }
                }
            }
        }
        total
    }

    /// Feeds one row (already decoded) with its event time and log offset, with no
    /// reordering delay and late rows dropped. Final matches are appended to `out`.
    pub fn process(
        &mut self,
        rules: &CepRuleSet,
        row: Row,
        event_time: i64,
        offset: u64,
        out: &mut Vec<MatchOutput>,
    ) {
        self.process_with(rules, row, event_time, offset, 0, LatePolicy::Drop, out)
    }

    /// Like [`process`](Self::process) with the stream's reorder settings:
    /// watermark = highest event time − `max_delay_ms`; rows older than the watermark are
    /// late and handled by `late`.
    #[allow(clippy::too_many_arguments)]
    pub fn process_with(
        &mut self,
        rules: &CepRuleSet,
        row: Row,
        event_time: i64,
        offset: u64,
        max_delay_ms: u64,
        late: LatePolicy,
        out: &mut Vec<MatchOutput>,
    ) {
        if event_time < self.watermark {
            match late {
                LatePolicy::Drop => {
                    self.counters.late_dropped += 1;
                }
                LatePolicy::Emit => {
                    self.counters.late_emitted += 1;
                    self.engine_row(rules, row, event_time, offset, true, out);
                }
            }
            return;
        }
        let max = self.max_ts.map_or(event_time, |m| m.max(event_time));
        self.max_ts = Some(max);
        let wm = max.saturating_sub(max_delay_ms.min(i64::MAX as u64) as i64);
        if self.buffered() == 0 && event_time <= wm {
            // in order and already releasable: skip the buffer
            self.engine_row(rules, row, event_time, offset, false, out);
        } else {
            self.buffer_push(Pending::new(event_time, offset, row));
        }
        self.advance_watermark(rules, wm, out);
        let cap = rules
            .rules
            .first()
            .map_or(usize::MAX, |r| r.config.max_reorder_rows);
        while self.buffered() > cap {
            if let Some(p) = self.buffer_pop() {
                self.counters.reorder_forced += 1;
                let (ts, offset) = (p.ts, p.offset);
                self.engine_row(rules, p.row(), ts, offset, false, out);
            }
        }
    }

    /// Moves the watermark forward (it never goes back): releases buffered rows at or below
    /// it in `(event time, offset)` order and decides partial matches whose WITHIN deadline
    /// it passed (trailing absences are emitted then).
    pub fn advance_watermark(&mut self, rules: &CepRuleSet, wm: i64, out: &mut Vec<MatchOutput>) {
        if wm > self.watermark {
            self.watermark = wm;
        }
        while self.buffer_min_ts().is_some_and(|ts| ts <= self.watermark) {
            self.prefetch_ahead(rules);
            if let Some(p) = self.buffer_pop() {
                let (ts, offset, h) = (p.ts, p.offset, p.key_hash);
                self.engine_row_hashed(rules, p.row(), ts, offset, false, h, out);
            }
        }
        self.fire_timers(rules, out);
    }

    /// End of input: releases every buffered row and decides everything still open.
    pub fn finish(&mut self, rules: &CepRuleSet, out: &mut Vec<MatchOutput>) {
        while let Some(p) = self.buffer_pop() {
            let (ts, offset) = (p.ts, p.offset);
            self.engine_row(rules, p.row(), ts, offset, false, out);
        }
        let mut em = Emit {
            rules,
            partition: self.partition,
            counters: &mut self.counters,
        };
        for g in self.groups_state.iter_mut() {
            // deterministic order: by key hash
            for (_, mut ks) in g.take_sorted() {
                let (kr, rks) = ks.split_rows();
                for rk in rks.iter_mut() {
                    let rule = &rules.rules[rk.rule as usize];
                    for s in rk.searches.iter_mut() {
                        s.expire(rule, true);
                    }
                    resolve(&mut em, rule, rk, kr, out);
                }
            }
        }
        self.timers.clear();
        self.rule_live.iter_mut().for_each(|x| *x = 0);
    }

    fn fire_timers(&mut self, rules: &CepRuleSet, out: &mut Vec<MatchOutput>) {
        while let Some(Reverse((deadline, _, _))) = self.timers.peek() {
            if *deadline >= self.watermark {
                break;
            }
            let Some(Reverse((deadline, g, h))) = self.timers.pop() else {
                break;
            };
            let wm = self.watermark;
            let lookback = rules.groups.get(g as usize).map_or(0, |x| x.lookback);
            let gs = &mut self.groups_state[g as usize];
            let slots = gs.slots_with_hash(h);
            if slots.is_empty() {
                continue;
            }
            let mut em = Emit {
                rules,
                partition: self.partition,
                counters: &mut self.counters,
            };
            let mut rearm = Vec::new();
            for &i in &slots {
                let Some(ks) = gs.get_mut(i) else { continue };
                if ks.timer != Some(deadline) {
                    continue;
                }
                ks.timer = None;
                let (kr, rks) = ks.split_rows();
                for rk in rks.iter_mut() {
                    let rule = &rules.rules[rk.rule as usize];
                    let Some(d) = rule.within_ms else { continue };
                    let before = rk.threads();
                    let mut any = false;
                    for s in rk.searches.iter_mut() {
                        if !s.done && s.t0.saturating_add(d) < wm {
                            s.expire(rule, false);
                            any = true;
                        }
                    }
                    if any {
                        resolve(&mut em, rule, rk, kr, out);
                    }
                    let after = rk.threads();
                    let live = &mut self.rule_live[rk.rule as usize];
                    *live = (*live + after as u64).saturating_sub(before as u64);
                }
                ks.rules
                    .retain(|rk| !rk.idle(&rules.rules[rk.rule as usize]));
                ks.trim_rows(lookback);
                if let Some(next) = ks.next_deadline(rules) {
                    ks.timer = Some(next);
                    rearm.push(next);
                }
            }
            // drop the keys left without state (each removal may move the others); keys
            // of a group whose rules read rows before the match keep their last rows
            while let Some(i) = gs
                .find(h, |ks| ks.rules.is_empty())
                .filter(|_| lookback == 0)
            {
                if let Some(ks) = gs.remove(i) {
                    recycle(&mut self.spare, ks);
                }
            }
            for d in rearm {
                self.timers.push(Reverse((d, g, h)));
            }
        }
    }

    /// One row in event-time order (or a late row under `late = 'emit'`).
    fn engine_row(
        &mut self,
        rules: &CepRuleSet,
        row: Row,
        ts: i64,
        offset: u64,
        late: bool,
        out: &mut Vec<MatchOutput>,
    ) {
        self.engine_row_hashed(rules, row, ts, offset, late, 0, out)
    }

    /// [`engine_row`](Self::engine_row) with the hash of the row's key in the first rule
    /// group when it is already known (0 = work it out).
    #[allow(clippy::too_many_arguments)]
    fn engine_row_hashed(
        &mut self,
        rules: &CepRuleSet,
        row: Row,
        ts: i64,
        offset: u64,
        late: bool,
        key_hash0: u64,
        out: &mut Vec<MatchOutput>,
    ) {
        let PartitionState {
            partition,
            groups_state,
            timers,
            rule_live,
            counters,
            cache,
            scratch,
            cand_stamp,
            cand_gen,
            cand_buf,
            spare,
            ..
        } = self;
        counters.rows += 1;
        cache.next_event(rules.n_preds);
        if cand_stamp.len() < rules.rules.len() {
            cand_stamp.resize(rules.rules.len(), 0);
        }
        // The row goes behind an `Arc` only when some key keeps it (most rows start
        // nothing and meet no open partial match).
        let mut owned = Some(row);
        let mut shared: Option<Arc<Row>> = None;
        for (gi, group) in rules.groups.iter().enumerate() {
            let rep = &rules.rules[group.rules[0] as usize];
            *cand_gen = cand_gen.wrapping_add(1);
            if *cand_gen == 0 {
                cand_stamp.iter_mut().for_each(|s| *s = 0);
                *cand_gen = 1;
            }
            let gen = *cand_gen;
            let mut cands = std::mem::take(cand_buf);
            cands.clear();
            let table = &mut groups_state[gi];
            let (key, slot) = {
                let Some(row) = owned.as_ref().or(shared.as_deref()) else {
                    return;
                };
                // candidate rules that may start on this row: the index, then the first
                // DEFINE when it reads only the row (evaluated once, cached)
                for &r in &group.always {
                    cand_stamp[r as usize] = gen;
                    cands.push(r);
                }
                for ix in &group.index {
                    let mut h = EQ_HASH_SEED;
                    if !ix.cols.iter().all(|c| eq_hash(&mut h, row.get(*c))) {
                        continue;
                    }
                    for &r in ix.map.get(&h).into_iter().flatten() {
                        if cand_stamp[r as usize] != gen {
                            cand_stamp[r as usize] = gen;
                            cands.push(r);
                        }
                    }
                }
                cands.retain(|r| {
                    let env = Env {
                        rule: &rules.rules[*r as usize],
                        pred_ids: &rules.pred_ids[*r as usize],
                    };
                    let keep = may_start(&env, cache, row);
                    if !keep {
                        cand_stamp[*r as usize] = 0;
                    }
                    keep
                });
                let known = if gi == 0 && key_hash0 != 0 {
                    Some(key_hash0)
                } else {
                    None
                };
                let key = row_key(rep, row, known);
                let slot = table.find(key.hash, |ks| key_matches(rep, row, &key, &ks.values));
                (key, slot)
            };
            if slot.is_none() && cands.is_empty() && group.lookback == 0 {
                *cand_buf = cands;
                continue;
            }
            if let Some(r) = owned.take() {
                shared = Some(Arc::new(r));
            }
            let Some(arc) = shared.as_ref() else {
                return;
            };
            let row: &Row = arc;
            let stored = || StoredRow {
                row: arc.clone(),
                ts,
                offset,
                late,
            };
            let mut em = Emit {
                rules,
                partition: *partition,
                counters,
            };
            let mut timer_needed: Option<i64> = None;
            let mut note_timer = |d: Option<i64>| {
                if let Some(d) = d {
                    timer_needed = Some(timer_needed.map_or(d, |x: i64| x.min(d)));
                }
            };
            // a key met for the first time is built here and put in the table at the end
            let mut fresh: Option<Box<KeyState>> = None;
            let mut ks: Option<&mut KeyState> = match slot {
                Some(i) => table.get_mut(i),
                None => None,
            };
            // existing rule states of this key
            if let Some(ks) = ks.as_deref_mut() {
                push_small(&mut ks.rows, stored(), 8);
                ks.next += 1;
                let idx = ks.next - 1;
                let (kr, rks) = ks.split_rows();
                for rk in rks.iter_mut() {
                    let rule = &rules.rules[rk.rule as usize];
                    let env = Env {
                        rule,
                        pred_ids: &rules.pred_ids[rk.rule as usize],
                    };
                    let before = rk.threads();
                    let mn = rk.matches + 1;
                    for s in rk.searches.iter_mut() {
                        s.step(&env, cache, scratch, kr.rows, kr.base, row, ts, mn);
                    }
                    if cand_stamp[rk.rule as usize] == gen {
                        let live = rule_live[rk.rule as usize] as usize;
                        if live >= rule.config.max_partial_matches_per_rule {
                            em.counters.starts_refused += 1;
                        } else if let Some(s) =
                            start_search(&env, cache, scratch, kr.rows, kr.base, row, idx, ts, mn)
                        {
                            note_timer(rule.within_ms);
                            push_small(&mut rk.searches, s, 4);
                        }
                    }
                    resolve(&mut em, rule, rk, kr, out);
                    let after = rk.threads();
                    let l = &mut rule_live[rk.rule as usize];
                    *l = (*l + after as u64).saturating_sub(before as u64);
                }
            }
            // a new key of a group whose rules read rows before the match: kept from its
            // first row on
            if ks.is_none() && group.lookback > 0 {
                let mut b = spare.pop().unwrap_or_default();
                b.values.extend(key_values(rep, row, &key));
                b.rows.push(stored());
                b.next = 1;
                fresh = Some(b);
                ks = fresh.as_deref_mut();
            }
            // rules without state for this key
            for &r in &cands {
                if ks
                    .as_deref()
                    .is_some_and(|ks| ks.rules.iter().any(|rk| rk.rule == r))
                {
                    continue;
                }
                let rule = &rules.rules[r as usize];
                let env = Env {
                    rule,
                    pred_ids: &rules.pred_ids[r as usize],
                };
                // the row's index in the key: its last row when the key exists
                let (rows, base, idx): (&[StoredRow], u64, u64) = match ks.as_deref() {
                    Some(ks) => (&ks.rows, ks.base, ks.next - 1),
                    None => (&[], 0, 0),
                };
                let Some(s) = start_search(&env, cache, scratch, rows, base, row, idx, ts, 1)
                else {
                    continue;
                };
                if rule_live[r as usize] as usize >= rule.config.max_partial_matches_per_rule {
                    em.counters.starts_refused += 1;
                    continue;
                }
                note_timer(rule.within_ms);
                if ks.is_none() {
                    let b = match spare.pop() {
                        Some(mut b) => {
                            // emptied by `recycle`: same state as a new one
                            b.values.extend(key_values(rep, row, &key));
                            b.rows.push(stored());
                            b.next = 1;
                            b
                        }
                        None => {
                            let mut rows = SmallVec::new();
                            rows.push(stored());
                            Box::new(KeyState {
                                values: key_values(rep, row, &key),
                                rows,
                                base: 0,
                                next: 1,
                                rules: SmallVec::new(),
                                timer: None,
                            })
                        }
                    };
                    fresh = Some(b);
                    ks = fresh.as_deref_mut();
                }
                let Some(ks) = ks.as_deref_mut() else {
                    continue;
                };
                let mut searches = SmallVec::new();
                searches.push(s);
                let mut rk = RuleKey {
                    rule: r,
                    searches,
                    matches: 0,
                };
                let kr = KeyRows {
                    rows: &ks.rows,
                    base: ks.base,
                    next: ks.next,
                    values: &ks.values,
                };
                resolve(&mut em, rule, &mut rk, kr, out);
                rule_live[r as usize] += rk.threads() as u64;
                if !rk.idle(rule) {
                    push_small(&mut ks.rules, rk, 4);
                }
            }
            *cand_buf = cands;
            let mut keep = false;
            if let Some(ks) = ks {
                ks.rules
                    .retain(|rk| !rk.idle(&rules.rules[rk.rule as usize]));
                if !ks.rules.is_empty() || group.lookback > 0 {
                    keep = true;
                    ks.trim_rows(group.lookback);
                    // one pending timer per key: the earliest deadline (re-armed on firing)
                    if let Some(d) = timer_needed {
                        let at = ts.saturating_add(d);
                        if ks.timer.is_none_or(|t| at < t) {
                            ks.timer = Some(at);
                            timers.push(Reverse((at, gi as u32, key.hash)));
                        }
                    }
                }
            }
            match (slot, fresh) {
                (Some(i), _) if !keep => {
                    if let Some(ks) = table.remove(i) {
                        recycle(spare, ks);
                    }
                }
                (None, Some(b)) => {
                    if keep {
                        table.insert(key.hash, b);
                    } else {
                        recycle(spare, b);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Whether a rule can start on this row, judged by the first DEFINEs that read only the
/// row (cached per event; the others are left to [`start_search`]).
fn may_start(env: &Env, cache: &mut PredCache, row: &Row) -> bool {
    let rule = env.rule;
    let Some(first) = &rule.first_vars else {
        return true;
    };
    first.iter().any(|&v| match rule.vars[v as usize].kind {
        VarKind::Def(p) if env.pred_ids[p as usize].1 => {
            let mut ctx = Ctx {
                rows: &[],
                base: 0,
                start: 0,
                nodes: &[],
                tail: NONE,
                len: 0,
                cur: Some((row, v)),
                match_number: 1,
                var_names: &rule.var_names,
            };
            var_holds(env, cache, v, &mut ctx)
        }
        _ => true,
    })
}

/// A new search starting at row `idx`; `None` when no thread survives the first row.
#[allow(clippy::too_many_arguments)]
fn start_search(
    env: &Env,
    cache: &mut PredCache,
    sc: &mut Scratch,
    rows: &[StoredRow],
    base: u64,
    row: &Row,
    idx: u64,
    ts: i64,
    match_number: u64,
) -> Option<Search> {
    let rule = env.rule;
    // cheap pre-check on the first variables
    if let Some(first) = &rule.first_vars {
        let mut ctx = Ctx {
            rows,
            base,
            start: idx,
            nodes: &[],
            tail: NONE,
            len: 0,
            cur: Some((row, 0)),
            match_number,
            var_names: &rule.var_names,
        };
        let any = first.iter().any(|v| {
            ctx.cur = Some((row, *v));
            var_holds(env, cache, *v, &mut ctx)
        });
        if !any {
            return None;
        }
    }
    let mut s = Search {
        start: idx,
        t0: ts,
        nodes: SmallVec::new(),
        threads: SmallVec::new(),
        best: None,
        done: false,
    };
    sc.next_step(rule.prog.len());
    let mut threads = SmallVec::new();
    closure(
        rule,
        sc,
        &s.nodes,
        &mut threads,
        Thread {
            pc: 0,
            node: NONE,
            len: 0,
            pnode: NONE,
            plen: 0,
        },
        true,
        idx,
    );
    s.threads = threads;
    // a pattern that can match zero rows: the empty match is a candidate before the row
    s.normalize(rule);
    if !s.done {
        s.step(env, cache, sc, rows, base, row, ts, match_number);
    }
    if s.done && s.best.is_none() {
        None
    } else {
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `hash_values` as it was written before (a `dyn` closure per string): checkpoints
    /// store keys by this hash, so the faster code must give the same values.
    fn hash_values_v4<'a>(vals: impl Iterator<Item = &'a Value>) -> u64 {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |w: u64| h = (h ^ w).wrapping_mul(K).rotate_left(26);
        let put_bytes = |tag: u64, bytes: &[u8], mix: &mut dyn FnMut(u64)| {
            mix(tag | ((bytes.len() as u64) << 8));
            let mut chunks = bytes.chunks_exact(8);
            for c in &mut chunks {
                mix(u64::from_le_bytes([
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                ]));
            }
            let rest = chunks.remainder();
            if !rest.is_empty() {
                let mut buf = [0u8; 8];
                buf[..rest.len()].copy_from_slice(rest);
                mix(u64::from_le_bytes(buf));
            }
        };
        for v in vals {
            match v {
                Value::Null => mix(0),
                Value::Bool(b) => mix(1 | ((*b as u64) << 8)),
                Value::Int(i) => {
                    mix(2);
                    mix(*i as u64)
                }
                Value::Float(f) => {
                    mix(3);
                    mix(f.to_bits())
                }
                Value::String(s) => put_bytes(4, s.as_bytes(), &mut mix),
                Value::Timestamp(t) => {
                    mix(5);
                    mix(*t as u64)
                }
                Value::Json(j) => put_bytes(6, j.to_string().as_bytes(), &mut mix),
            }
        }
        h.wrapping_mul(K)
    }

    #[test]
    fn seen_list_acts_like_a_map() {
        // past Seen::SMALL entries the list moves to a map; clearing goes back
        let mut seen = Seen::default();
        let mut reference = std::collections::HashMap::new();
        let mut x = 12345u64;
        for step in 0..200u32 {
            if step % 50 == 0 {
                seen.clear();
                reference.clear();
                assert!(seen.is_empty());
            }
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (pc, h) = ((x >> 60) as u32, (x >> 40) % 3);
            assert_eq!(seen.get(pc, h), reference.get(&(pc, h)).copied());
            if seen.get(pc, h).is_none() {
                seen.insert(pc, h, (step, step + 1));
                reference.insert((pc, h), (step, step + 1));
            }
        }
        assert!(reference.len() > Seen::SMALL, "the map mode was reached");
    }

    #[test]
    fn key_hash_is_unchanged() {
        let samples: Vec<Vec<Value>> = vec![
            vec![],
            vec![Value::Null],
            vec![Value::String(String::new())],
            vec![Value::String("u1".into())],
            vec![Value::String("user-12345678".into()), Value::Int(-7)],
            vec![Value::String("exactly8".into()), Value::Bool(true)],
            vec![Value::Float(1.5), Value::Timestamp(1_767_225_600_000)],
            vec![Value::Json(Box::new(serde_json::json!({"a": [1, "x"]})))],
            vec![
                Value::String("ünïcödé key with some length".into()),
                Value::Bool(false),
            ],
        ];
        for vals in &samples {
            assert_eq!(
                hash_values(vals.iter()),
                hash_values_v4(vals.iter()),
                "{vals:?}"
            );
        }
    }

    #[test]
    fn tail_word_is_the_zero_padded_little_endian_word() {
        for n in 0..=7usize {
            let bytes: Vec<u8> = (0..n as u8).map(|i| 0xa0 + i).collect();
            let mut buf = [0u8; 8];
            buf[..n].copy_from_slice(&bytes);
            assert_eq!(tail_word(&bytes), u64::from_le_bytes(buf), "{n} bytes");
        }
    }

    #[test]
    fn pending_keeps_values_and_undeclared_fields() {
        let mut extra = serde_json::Map::new();
        extra.insert("z".into(), serde_json::json!(1));
        extra.insert("a".into(), serde_json::json!({"x": [1, 2]}));
        let row = Row {
            values: vec![Value::String("k".into()), Value::Int(3)],
            extra,
        };
        let p = Pending::new(5, 7, row.clone());
        assert!(p.extra.is_some());
        // through a checkpoint too
        let p: Pending = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!((p.ts, p.offset), (5, 7));
        let back = p.row();
        assert_eq!(back, row);
        assert_eq!(
            back.extra.keys().collect::<Vec<_>>(),
            vec!["z", "a"],
            "field order kept"
        );
        let plain = Row {
            values: vec![Value::Null],
            extra: serde_json::Map::new(),
        };
        let p = Pending::new(1, 2, plain.clone());
        assert!(p.extra.is_none());
        assert_eq!(p.row(), plain);
        assert_eq!(std::mem::size_of::<Pending>(), 56);
    }
}
