//! Event-time windows over panes of mergeable state, grouped by key.
//!
//! - **Tumbling** `(SIZE d)` and **hopping** `(SIZE d, ADVANCE a)`: windows `[k·a, k·a + d)`
//!   aligned to the Unix epoch. State lives in *panes* of width `gcd(d, a)`; a window is the
//!   merge of its `d / gcd` panes, so overlapping windows share panes (window slicing, as in
//!   Scotty). A window closes when the watermark reaches its end (`watermark ≥ end`); only
//!   windows that received at least one event are emitted.
//! - **Sliding** `(SIZE d)`: no window closes; the caller asks for "the last `d` up to time
//!   `t`" with [`Windowed::query_sliding`], answered from panes (width chosen by the
//!   caller, default `d / 60`): `[T − d, T)` with `T` the end of the pane holding `t`.
//!   Blocks of 8 aligned panes are pre-merged (when the watermark passes the block's end,
//!   or on first use) and cached, so a query merges at most `d/(8·pane) + 14` partial
//!   states instead of `d/pane`.
//! - **Session** `(GAP g)`: each event opens `[t, t + g)`; overlapping sessions of a group
//!   merge (an out-of-order event can bridge two sessions). A session `[start, last + g)`
//!   closes when the watermark reaches `last + g`.
//!
//! Events older than the watermark (`t < watermark`) are *late*: [`Windowed::add`] reports
//! them and does not apply them (the engine counts or drops them; `late = 'emit'` handling is
//! the engine's). Closed windows are kept, queryable, for `retention` after their end, then
//! evicted. Groups are capped by `max_groups`: an event for a new group past the cap is
//! reported as [`AddOutcome::GroupDropped`] and counted, never merged into another group.
//! Work on watermark advance is proportional to the groups that have something to close
//! (a wake-up index keyed by the next window end of each group).

mod serde_maps;

use crate::accumulator::AggState;
use crate::SketchError;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

/// Event time in milliseconds since the Unix epoch.
pub type Ts = i64;

/// Version of the serialized [`Windowed`] state (checkpoints).
pub const STATE_VERSION: u32 = 1;

/// Largest accepted window SIZE / ADVANCE / GAP / pane: 2^50 ms (about 35 000 years).
pub const MAX_DURATION: i64 = 1 << 50;
/// Accepted event times: ±2^60 ms (about 36 million years around 1970).
pub const MAX_EVENT_TIME: i64 = 1 << 60;

/// Pre-merged block width for sliding queries, in panes.
const BLOCK_PANES: i64 = 8;

/// Which windows a METRIC statement uses. Durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowKind {
    Tumbling {
        size: i64,
    },
    Hopping {
        size: i64,
        advance: i64,
    },
    /// `pane` must divide `size`; [`WindowKind::sliding`] picks `size / 60` when it can.
    Sliding {
        size: i64,
        pane: i64,
    },
    Session {
        gap: i64,
    },
}

impl WindowKind {
    /// SLIDING (SIZE d) with the default pane: `d / 60` if that divides `d` evenly, else
    /// the largest divisor of `d` not above it (at least 1 ms).
    pub fn sliding(size: i64) -> WindowKind {
        let mut pane = (size / 60).max(1);
        while pane > 1 && size % pane != 0 {
            pane -= 1;
        }
        WindowKind::Sliding { size, pane }
    }

    fn validate(&self) -> Result<(), SketchError> {
        let bad = |m: String| Err(SketchError::InvalidParameter(m));
        let longest = match *self {
            WindowKind::Tumbling { size } => size,
            WindowKind::Hopping { size, advance } => size.max(advance),
            WindowKind::Sliding { size, pane } => size.max(pane),
            WindowKind::Session { gap } => gap,
        };
        if longest > MAX_DURATION {
            return bad(format!(
                "window durations are limited to {MAX_DURATION} ms, got {longest} ms"
            ));
        }
        match *self {
            WindowKind::Tumbling { size } if size <= 0 => {
                bad(format!("window SIZE must be positive, got {size} ms"))
            }
            WindowKind::Hopping { size, advance } if size <= 0 || advance <= 0 => bad(format!(
                "window SIZE and ADVANCE must be positive, got {size} ms / {advance} ms"
            )),
            WindowKind::Hopping { size, advance } if advance > size => bad(format!(
                "ADVANCE ({advance} ms) larger than SIZE ({size} ms) would skip events"
            )),
            WindowKind::Hopping { size, advance } if size / gcd(size, advance) > 100_000 => {
                bad("SIZE / gcd(SIZE, ADVANCE) exceeds 100000 panes per window".into())
            }
            WindowKind::Sliding { size, pane } if size <= 0 || pane <= 0 || size % pane != 0 => {
                bad(format!(
                    "SLIDING pane ({pane} ms) must be positive and divide SIZE ({size} ms)"
                ))
            }
            WindowKind::Sliding { size, pane } if size / pane > 100_000 => {
                bad("SLIDING SIZE / pane exceeds 100000 panes".into())
            }
            WindowKind::Session { gap } if gap <= 0 => {
                bad(format!("SESSION GAP must be positive, got {gap} ms"))
            }
            _ => Ok(()),
        }
    }

    /// (pane width, window size, window advance) for pane-based kinds.
    fn pane_geometry(&self) -> Option<(i64, i64, i64)> {
        match *self {
            WindowKind::Tumbling { size } => Some((size, size, size)),
            WindowKind::Hopping { size, advance } => Some((gcd(size, advance), size, advance)),
            WindowKind::Sliding { size, pane } => Some((pane, size, pane)),
            WindowKind::Session { .. } => None,
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Window configuration: kind plus the `retention` and `max_groups` WITH options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowConfig {
    pub kind: WindowKind,
    /// How long (ms, event time) a closed window stays queryable after its end. For
    /// SLIDING: how far behind the watermark a query may still reach.
    pub retention: i64,
    /// Most groups with open state at once.
    pub max_groups: usize,
}

pub const DEFAULT_MAX_GROUPS: usize = 100_000;

impl WindowConfig {
    pub fn new(kind: WindowKind) -> Self {
        WindowConfig {
            kind,
            retention: 0,
            max_groups: DEFAULT_MAX_GROUPS,
        }
    }
}

/// A window's time range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    pub start: Ts,
    pub end: Ts,
}

/// A window that closed: emitted once, with its final state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closed<K, S> {
    pub group: K,
    pub span: Span,
    pub state: S,
    /// Latest event time that went into the window (the record's `ts`).
    pub last_event: Ts,
}

/// What [`Windowed::add_late`] did with a late event (for `late = 'emit'`).
#[derive(Debug, Clone, PartialEq)]
pub struct LateResult<K, S> {
    /// Added to windows that are still open: their final records will include it.
    pub applied_open: bool,
    /// Retained closed windows that now include the event: emit them again, marked late.
    pub updated: Vec<Closed<K, S>>,
    /// Closed windows holding the event's time that are no longer retained (or a new
    /// group past `max_groups`): the event is lost for them.
    pub missed: u64,
}

/// What happened to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    Applied,
    /// Event time before the watermark: not applied.
    Late {
        watermark: Ts,
    },
    /// A new group past `max_groups`: not applied.
    GroupDropped,
}

/// Counters the engine exports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStats {
    pub applied_events: u64,
    pub late_events: u64,
    /// Events refused because their group would exceed `max_groups`.
    pub dropped_group_events: u64,
    pub windows_closed: u64,
    pub windows_evicted: u64,
    pub groups_evicted: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pane<S> {
    state: S,
    last_event: Ts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session<S> {
    start: Ts,
    last_event: Ts,
    state: S,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: DeserializeOwned"))]
struct GroupState<S> {
    /// Pane kinds: pane start → state.
    panes: BTreeMap<Ts, Pane<S>>,
    /// Session kind, sorted by start, non-overlapping.
    sessions: Vec<Session<S>>,
    /// Windows ending at or before this were closed for this group.
    closed_until: Ts,
    /// Registered wake-up time, if any.
    wakeup: Option<Ts>,
    /// Sliding query cache: block start → merged panes of the block.
    #[serde(skip)]
    blocks: HashMap<Ts, Option<S>>,
}

impl<S> GroupState<S> {
    fn new() -> Self {
        GroupState {
            panes: BTreeMap::new(),
            sessions: Vec::new(),
            closed_until: Ts::MIN,
            wakeup: None,
            blocks: HashMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.panes.is_empty() && self.sessions.is_empty()
    }
}

/// Windows of state `S` per group key `K`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Eq + Hash + Ord, S: Serialize",
    deserialize = "K: DeserializeOwned + Eq + Hash + Ord + Clone, S: DeserializeOwned"
))]
pub struct Windowed<K, S> {
    version: u32,
    config: WindowConfig,
    /// An empty state; new panes/sessions start as a clone.
    prototype: S,
    watermark: Option<Ts>,
    #[serde(with = "serde_maps::hash_map")]
    groups: HashMap<K, GroupState<S>>,
    /// (wake-up time, group): groups with windows to close or state to evict.
    wakeups: BTreeSet<(Ts, K)>,
    /// Retained closed windows: (group, start) → window.
    #[serde(with = "serde_maps::btree_map")]
    closed: BTreeMap<(K, Ts), Closed<K, S>>,
    /// (expiry, group, start) of retained closed windows.
    expiries: BTreeSet<(Ts, K, Ts)>,
    stats: WindowStats,
}

impl<K, S> Windowed<K, S>
where
    K: Clone + Eq + Hash + Ord,
    S: AggState,
{
    /// New windows; `prototype` is the empty state every pane starts from.
    pub fn new(config: WindowConfig, prototype: S) -> Result<Self, SketchError> {
        config.kind.validate()?;
        if config.retention < 0 {
            return Err(SketchError::InvalidParameter(
                "retention must not be negative".into(),
            ));
        }
        if config.max_groups == 0 {
            return Err(SketchError::InvalidParameter(
                "max_groups must be at least 1".into(),
            ));
        }
        Ok(Windowed {
            version: STATE_VERSION,
            config,
            prototype,
            watermark: None,
            groups: HashMap::new(),
            wakeups: BTreeSet::new(),
            closed: BTreeMap::new(),
            expiries: BTreeSet::new(),
            stats: WindowStats::default(),
        })
    }

    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    pub fn watermark(&self) -> Option<Ts> {
        self.watermark
    }

    pub fn stats(&self) -> WindowStats {
        self.stats
    }

    /// Groups holding open state.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Check a decoded checkpoint.
    pub fn check_version(&self) -> Result<(), SketchError> {
        if self.version != STATE_VERSION {
            return Err(SketchError::Version {
                found: self.version.min(255) as u8,
                expected: STATE_VERSION as u8,
            });
        }
        Ok(())
    }

    /// Apply an event at event time `ts` to `group`: `update` is called on the state of
    /// the pane (or session) the event falls in.
    pub fn add(
        &mut self,
        group: &K,
        ts: Ts,
        update: impl FnOnce(&mut S),
    ) -> Result<AddOutcome, SketchError> {
        if !(-MAX_EVENT_TIME..=MAX_EVENT_TIME).contains(&ts) {
            return Err(SketchError::InvalidParameter(format!(
                "event time {ts} ms is outside ±{MAX_EVENT_TIME} ms"
            )));
        }
        if let Some(wm) = self.watermark {
            if ts < wm {
                self.stats.late_events += 1;
                return Ok(AddOutcome::Late { watermark: wm });
            }
        }
        if !self.groups.contains_key(group) {
            if self.groups.len() >= self.config.max_groups {
                self.stats.dropped_group_events += 1;
                return Ok(AddOutcome::GroupDropped);
            }
            self.groups.insert(group.clone(), GroupState::new());
        }
        let Some(g) = self.groups.get_mut(group) else {
            return Err(SketchError::Decode("group vanished".into()));
        };
        let wake = match self.config.kind {
            WindowKind::Session { gap } => {
                add_to_session(g, &self.prototype, ts, gap, update)?;
                g.sessions.iter().map(|s| s.last_event + gap).min()
            }
            kind => {
                let Some((pane_w, size, advance)) = kind.pane_geometry() else {
                    return Err(SketchError::InvalidParameter("no pane geometry".into()));
                };
                let p = ts.div_euclid(pane_w) * pane_w;
                let pane = g.panes.entry(p).or_insert_with(|| Pane {
                    state: self.prototype.clone(),
                    last_event: ts,
                });
                update(&mut pane.state);
                pane.last_event = pane.last_event.max(ts);
                if matches!(kind, WindowKind::Sliding { .. }) {
                    let b = block_start(p, pane_w);
                    g.blocks.remove(&b);
                    Some(b.saturating_add(BLOCK_PANES * pane_w))
                } else {
                    // Earliest window containing this pane.
                    let s_min = (p - size).div_euclid(advance) * advance + advance;
                    Some(s_min.saturating_add(size))
                }
            }
        };
        if let Some(w) = wake {
            register_wakeup(&mut self.wakeups, g, group, w);
        }
        self.stats.applied_events += 1;
        Ok(AddOutcome::Applied)
    }

    /// Apply a *late* event (`ts` < watermark) where that is still possible, for
    /// `late = 'emit'`: to windows still open (e.g. the later windows of a HOPPING pane,
    /// an open session it touches, a SLIDING pane still held) and to retained closed
    /// windows, which are returned updated. An event that is not late is simply added.
    /// Meant to be called after [`Windowed::add`] reported [`AddOutcome::Late`] (which
    /// already counted it); this does not count it again.
    pub fn add_late(
        &mut self,
        group: &K,
        ts: Ts,
        update: impl FnOnce(&mut S),
    ) -> Result<LateResult<K, S>, SketchError> {
        let wm = match self.watermark {
            Some(wm) if ts < wm => wm,
            _ => {
                let outcome = self.add(group, ts, update)?;
                return Ok(LateResult {
                    applied_open: outcome == AddOutcome::Applied,
                    updated: Vec::new(),
                    missed: (outcome == AddOutcome::GroupDropped) as u64,
                });
            }
        };
        if !(-MAX_EVENT_TIME..=MAX_EVENT_TIME).contains(&ts) {
            return Err(SketchError::InvalidParameter(format!(
                "event time {ts} ms is outside ±{MAX_EVENT_TIME} ms"
            )));
        }
        let mut delta = self.prototype.clone();
        update(&mut delta);
        let mut res = LateResult {
            applied_open: false,
            updated: Vec::new(),
            missed: 0,
        };
        // Closed windows (start, end) holding ts, and whether an open one exists.
        let mut closed_spans: Vec<Span> = Vec::new();
        let mut open_wake: Option<Ts> = None;
        match self.config.kind {
            WindowKind::Session { gap } => {
                let open_hit = self.groups.get(group).is_some_and(|g| {
                    g.sessions.iter().any(|s| {
                        s.start < ts.saturating_add(gap) && ts < s.last_event.saturating_add(gap)
                    })
                });
                if open_hit || ts.saturating_add(gap) > wm {
                    open_wake = Some(ts.saturating_add(gap));
                } else {
                    let hits: Vec<Span> = self
                        .closed_windows(group)
                        .map(|c| c.span)
                        .filter(|sp| sp.start < ts.saturating_add(gap) && ts < sp.end)
                        .collect();
                    if hits.is_empty() {
                        res.missed += 1;
                    }
                    closed_spans = hits;
                }
            }
            WindowKind::Sliding { size, pane } => {
                let p = ts.div_euclid(pane) * pane;
                if sliding_expiry(p, pane, size, self.config.retention) > wm {
                    open_wake = Some(block_start(p, pane).saturating_add(BLOCK_PANES * pane));
                } else {
                    res.missed += 1;
                }
            }
            kind => {
                let Some((_, size, advance)) = kind.pane_geometry() else {
                    return Ok(res);
                };
                let mut s = ts.div_euclid(advance) * advance;
                while s.saturating_add(size) > ts {
                    let end = s.saturating_add(size);
                    if end > wm {
                        open_wake = Some(open_wake.map_or(end, |w: Ts| w.min(end)));
                    } else {
                        closed_spans.push(Span { start: s, end });
                    }
                    s -= advance;
                }
            }
        }
        // Retained closed windows.
        for sp in closed_spans {
            match self.closed.get_mut(&(group.clone(), sp.start)) {
                Some(c) => {
                    c.state.merge_from(&delta)?;
                    c.last_event = c.last_event.max(ts);
                    res.updated.push(c.clone());
                }
                None => res.missed += 1,
            }
        }
        // Still-open windows.
        if let Some(wake) = open_wake {
            if !self.groups.contains_key(group) {
                if self.groups.len() >= self.config.max_groups {
                    self.stats.dropped_group_events += 1;
                    res.missed += 1;
                    return Ok(res);
                }
                let mut g = GroupState::new();
                // Windows that ended before now were handled above, never by closing.
                g.closed_until = wm;
                self.groups.insert(group.clone(), g);
            }
            let Some(g) = self.groups.get_mut(group) else {
                return Ok(res);
            };
            match self.config.kind {
                WindowKind::Session { gap } => {
                    add_to_session(g, &self.prototype, ts, gap, |st| {
                        // merge_from cannot fail for states built from one prototype.
                        let _ignored = st.merge_from(&delta);
                    })?;
                }
                kind => {
                    let Some((pane_w, _, _)) = kind.pane_geometry() else {
                        return Ok(res);
                    };
                    g.closed_until = g.closed_until.max(wm);
                    let p = ts.div_euclid(pane_w) * pane_w;
                    match g.panes.get_mut(&p) {
                        Some(pn) => {
                            pn.state.merge_from(&delta)?;
                            pn.last_event = pn.last_event.max(ts);
                        }
                        None => {
                            g.panes.insert(
                                p,
                                Pane {
                                    state: delta,
                                    last_event: ts,
                                },
                            );
                        }
                    }
                    g.blocks.remove(&block_start(p, pane_w));
                }
            }
            register_wakeup(&mut self.wakeups, g, group, wake.max(wm.saturating_add(1)));
            res.applied_open = true;
        }
        Ok(res)
    }

    /// Move the watermark to `wm` (ignored if not ahead) and return the windows that
    /// closed, ordered by (end, start, group). Also evicts closed windows past retention
    /// and groups left empty.
    pub fn advance_watermark(&mut self, wm: Ts) -> Result<Vec<Closed<K, S>>, SketchError> {
        if self.watermark.is_some_and(|cur| wm <= cur) {
            return Ok(Vec::new());
        }
        self.watermark = Some(wm);
        let mut out = Vec::new();
        while let Some((t, _)) = self.wakeups.first() {
            if *t > wm {
                break;
            }
            let Some((_, key)) = self.wakeups.pop_first() else {
                break;
            };
            self.process_group(&key, wm, &mut out)?;
        }
        // Retention of closed windows.
        while let Some((exp, _, _)) = self.expiries.first() {
            if *exp > wm {
                break;
            }
            if let Some((_, k, s)) = self.expiries.pop_first() {
                self.closed.remove(&(k, s));
                self.stats.windows_evicted += 1;
            }
        }
        out.sort_by(|a, b| {
            (a.span.end, a.span.start)
                .cmp(&(b.span.end, b.span.start))
                .then_with(|| a.group.cmp(&b.group))
        });
        self.stats.windows_closed += out.len() as u64;
        if self.config.retention > 0 && !matches!(self.config.kind, WindowKind::Sliding { .. }) {
            for c in &out {
                let exp = c.span.end.saturating_add(self.config.retention);
                if exp > wm {
                    self.expiries.insert((exp, c.group.clone(), c.span.start));
                    self.closed
                        .insert((c.group.clone(), c.span.start), c.clone());
                }
            }
        }
        Ok(out)
    }

    /// Close every open window (end of input): like a watermark at +∞, but later events
    /// are still accepted if the caller keeps going.
    pub fn close_all(&mut self) -> Result<Vec<Closed<K, S>>, SketchError> {
        let keep = self.watermark;
        let out = self.advance_watermark(Ts::MAX)?;
        self.watermark = keep;
        Ok(out)
    }

    fn process_group(
        &mut self,
        key: &K,
        wm: Ts,
        out: &mut Vec<Closed<K, S>>,
    ) -> Result<(), SketchError> {
        let Some(g) = self.groups.get_mut(key) else {
            return Ok(());
        };
        g.wakeup = None;
        let retention = self.config.retention;
        let next = match self.config.kind {
            WindowKind::Session { gap } => {
                let mut keep = Vec::new();
                for s in g.sessions.drain(..) {
                    let end = s.last_event.saturating_add(gap);
                    if end <= wm {
                        out.push(Closed {
                            group: key.clone(),
                            span: Span {
                                start: s.start,
                                end,
                            },
                            state: s.state,
                            last_event: s.last_event,
                        });
                    } else {
                        keep.push(s);
                    }
                }
                g.sessions = keep;
                g.sessions.iter().map(|s| s.last_event + gap).min()
            }
            WindowKind::Sliding { size, pane } => {
                let old: Vec<Ts> = g
                    .panes
                    .keys()
                    .copied()
                    .take_while(|&p| sliding_expiry(p, pane, size, retention) <= wm)
                    .collect();
                for p in old {
                    g.panes.remove(&p);
                    g.blocks.remove(&block_start(p, pane));
                }
                // Pre-merge blocks the watermark has passed (their panes can no longer
                // change) while all their panes are still held, so queries find them ready.
                let bw = BLOCK_PANES * pane;
                let mut next_block_end: Option<Ts> = None;
                let mut last_b: Option<Ts> = None;
                let starts: Vec<Ts> = g.panes.keys().map(|&p| block_start(p, pane)).collect();
                for b in starts {
                    if last_b == Some(b) {
                        continue;
                    }
                    last_b = Some(b);
                    let end = b.saturating_add(bw);
                    if end > wm {
                        next_block_end = Some(next_block_end.map_or(end, |n: Ts| n.min(end)));
                        continue;
                    }
                    if g.blocks.contains_key(&b) || sliding_expiry(b, pane, size, retention) <= wm {
                        continue;
                    }
                    let mut acc: Option<S> = None;
                    for (_, p) in g.panes.range(b..end) {
                        match &mut acc {
                            None => acc = Some(p.state.clone()),
                            Some(a) => a.merge_from(&p.state)?,
                        }
                    }
                    g.blocks.insert(b, acc);
                }
                let expiry = g
                    .panes
                    .keys()
                    .next()
                    .map(|&p| sliding_expiry(p, pane, size, retention));
                match (expiry, next_block_end) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            kind => {
                let Some((pane_w, size, advance)) = kind.pane_geometry() else {
                    return Ok(());
                };
                let _ = pane_w;
                close_pane_windows(g, key, wm, size, advance, out)?;
                g.closed_until = wm;
                // Next: smallest window end > wm containing a remaining pane.
                g.panes
                    .keys()
                    .map(|&p| {
                        let s_min = (p - size).div_euclid(advance) * advance + advance;
                        let mut e = s_min.saturating_add(size);
                        if e <= wm {
                            // First aligned end after wm.
                            let k = wm.saturating_sub(e).div_euclid(advance).saturating_add(1);
                            e = e.saturating_add(k.saturating_mul(advance));
                        }
                        e
                    })
                    .min()
            }
        };
        if g.is_empty() {
            self.groups.remove(key);
            self.stats.groups_evicted += 1;
        } else if let Some(t) = next {
            register_wakeup(&mut self.wakeups, g, key, t);
        }
        Ok(())
    }

    /// SLIDING: the merged state of `group` over `[T − size, T)`, `T` being the end of the
    /// pane that holds `at` (so events at exactly `at` are included). `None` if the group has no data there (or the
    /// windows are not SLIDING).
    pub fn query_sliding(&mut self, group: &K, at: Ts) -> Result<Option<(Span, S)>, SketchError> {
        let WindowKind::Sliding { size, pane } = self.config.kind else {
            return Ok(None);
        };
        let at = at.clamp(-MAX_EVENT_TIME, MAX_EVENT_TIME);
        let end = sliding_end(at, pane);
        let start = end.saturating_sub(size);
        let span = Span { start, end };
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(None);
        };
        let mut acc: Option<S> = None;
        let fold = |acc: &mut Option<S>, s: &S| -> Result<(), SketchError> {
            match acc {
                None => *acc = Some(s.clone()),
                Some(a) => a.merge_from(s)?,
            }
            Ok(())
        };
        let bw = BLOCK_PANES * pane;
        let mut t = start;
        while t < end {
            if t % bw == 0 && t + bw <= end {
                // A whole aligned block: use (or build) its cached merge.
                if !g.blocks.contains_key(&t) {
                    let mut b: Option<S> = None;
                    for (_, p) in g.panes.range(t..t + bw) {
                        fold(&mut b, &p.state)?;
                    }
                    g.blocks.insert(t, b);
                }
                if let Some(Some(b)) = g.blocks.get(&t) {
                    fold(&mut acc, b)?;
                }
                t += bw;
            } else {
                let stop = ceil_to(t + 1, bw).min(end);
                for (_, p) in g.panes.range(t..stop) {
                    fold(&mut acc, &p.state)?;
                }
                t = stop;
            }
        }
        Ok(acc.map(|s| (span, s)))
    }

    /// The current (not yet closed) contents of the latest window of `group` that contains
    /// `at`: for TUMBLING/HOPPING the window starting at the last ADVANCE boundary ≤ `at`,
    /// for SESSION the open session covering `at`, for SLIDING the same as
    /// [`Windowed::query_sliding`]. `None` if nothing is held there.
    pub fn peek_open(&mut self, group: &K, at: Ts) -> Result<Option<(Span, S)>, SketchError> {
        let at = at.clamp(-MAX_EVENT_TIME, MAX_EVENT_TIME);
        match self.config.kind {
            WindowKind::Sliding { .. } => self.query_sliding(group, at),
            WindowKind::Session { gap } => Ok(self.groups.get(group).and_then(|g| {
                g.sessions
                    .iter()
                    .find(|s| s.start <= at && at < s.last_event.saturating_add(gap))
                    .map(|s| {
                        let span = Span {
                            start: s.start,
                            end: s.last_event.saturating_add(gap),
                        };
                        (span, s.state.clone())
                    })
            })),
            kind => {
                let Some((_, size, advance)) = kind.pane_geometry() else {
                    return Ok(None);
                };
                let Some(g) = self.groups.get(group) else {
                    return Ok(None);
                };
                let start = at.div_euclid(advance) * advance;
                let span = Span {
                    start,
                    end: start.saturating_add(size),
                };
                let mut acc: Option<S> = None;
                for (_, p) in g.panes.range(span.start..span.end) {
                    match &mut acc {
                        None => acc = Some(p.state.clone()),
                        Some(a) => a.merge_from(&p.state)?,
                    }
                }
                Ok(acc.map(|s| (span, s)))
            }
        }
    }

    /// SLIDING: [`Windowed::query_sliding`] for every group with data, ordered by group.
    pub fn sliding_snapshot(&mut self, at: Ts) -> Result<Vec<(K, Span, S)>, SketchError> {
        let mut keys: Vec<K> = self.groups.keys().cloned().collect();
        keys.sort();
        let mut out = Vec::new();
        for k in keys {
            if let Some((span, s)) = self.query_sliding(&k, at)? {
                out.push((k, span, s));
            }
        }
        Ok(out)
    }

    /// Retained closed windows of a group, oldest first.
    pub fn closed_windows(&self, group: &K) -> impl Iterator<Item = &Closed<K, S>> + '_ {
        self.closed
            .range((group.clone(), Ts::MIN)..=(group.clone(), Ts::MAX))
            .map(|(_, c)| c)
    }

    /// A retained closed window by group and start.
    pub fn closed_window(&self, group: &K, start: Ts) -> Option<&Closed<K, S>> {
        self.closed.get(&(group.clone(), start))
    }

    /// Approximate bytes held (open panes/sessions and retained windows).
    pub fn memory_bytes(&self) -> usize {
        let open: usize = self
            .groups
            .values()
            .map(|g| {
                g.panes
                    .values()
                    .map(|p| p.state.memory_bytes() + 48)
                    .sum::<usize>()
                    + g.sessions
                        .iter()
                        .map(|s| s.state.memory_bytes() + 24)
                        .sum::<usize>()
                    + 96
            })
            .sum();
        let closed: usize = self
            .closed
            .values()
            .map(|c| c.state.memory_bytes() + 64)
            .sum();
        open + closed
    }
}

/// End of the pane holding `at`: a SLIDING query at `at` covers `[end − size, end)`, so
/// it always includes events at exactly `at`.
fn sliding_end(at: Ts, pane: i64) -> Ts {
    at.div_euclid(pane) * pane + pane
}

fn ceil_to(t: Ts, w: i64) -> Ts {
    let f = t.div_euclid(w) * w;
    if f == t {
        t
    } else {
        f.saturating_add(w)
    }
}

fn block_start(p: Ts, pane: i64) -> Ts {
    p.div_euclid(BLOCK_PANES * pane) * BLOCK_PANES * pane
}

/// When a sliding pane starting at `p` can no longer be queried.
fn sliding_expiry(p: Ts, pane: i64, size: i64, retention: i64) -> Ts {
    p.saturating_add(pane)
        .saturating_add(size)
        .saturating_add(retention)
}

fn register_wakeup<K: Clone + Ord, S>(
    wakeups: &mut BTreeSet<(Ts, K)>,
    g: &mut GroupState<S>,
    key: &K,
    t: Ts,
) {
    match g.wakeup {
        Some(cur) if cur <= t => {}
        cur => {
            if let Some(c) = cur {
                wakeups.remove(&(c, key.clone()));
            }
            wakeups.insert((t, key.clone()));
            g.wakeup = Some(t);
        }
    }
}

fn add_to_session<S: AggState>(
    g: &mut GroupState<S>,
    prototype: &S,
    ts: Ts,
    gap: i64,
    update: impl FnOnce(&mut S),
) -> Result<(), SketchError> {
    // Sessions overlapping [ts, ts + gap): s.start < ts + gap && ts < s.last + gap.
    let overlaps =
        |s: &Session<S>| s.start < ts.saturating_add(gap) && ts < s.last_event.saturating_add(gap);
    let hits: Vec<usize> = (0..g.sessions.len())
        .filter(|&i| overlaps(&g.sessions[i]))
        .collect();
    match hits.as_slice() {
        [] => {
            // A new session.
            let mut state = prototype.clone();
            update(&mut state);
            let pos = g.sessions.partition_point(|s| s.start < ts);
            g.sessions.insert(
                pos,
                Session {
                    start: ts,
                    last_event: ts,
                    state,
                },
            );
        }
        &[i] => {
            // The common case: extend one session in place.
            let s = &mut g.sessions[i];
            update(&mut s.state);
            s.last_event = s.last_event.max(ts);
            if ts < s.start {
                // Out of order but not late: starts stay sorted since sessions are
                // disjoint and this one did not reach its neighbour.
                s.start = ts;
            }
        }
        &[first, ..] => {
            // The event bridges several sessions: merge them into the first.
            let mut merged = g.sessions.remove(first);
            for &i in hits[1..].iter().rev() {
                let s = g.sessions.remove(i - 1);
                merged.state.merge_from(&s.state)?;
                merged.start = merged.start.min(s.start);
                merged.last_event = merged.last_event.max(s.last_event);
            }
            update(&mut merged.state);
            merged.start = merged.start.min(ts);
            merged.last_event = merged.last_event.max(ts);
            let pos = g.sessions.partition_point(|s| s.start < merged.start);
            g.sessions.insert(pos, merged);
        }
    }
    Ok(())
}

fn close_pane_windows<K: Clone, S: AggState>(
    g: &mut GroupState<S>,
    key: &K,
    wm: Ts,
    size: i64,
    advance: i64,
    out: &mut Vec<Closed<K, S>>,
) -> Result<(), SketchError> {
    let closed_until = g.closed_until;
    // Window starts with closed_until < end <= wm that contain a pane.
    let mut starts: BTreeSet<Ts> = BTreeSet::new();
    for &p in g.panes.range(..wm).map(|(p, _)| p) {
        let s_min = (p - size).div_euclid(advance) * advance + advance;
        let mut s = s_min;
        while s <= p {
            let e = s.saturating_add(size);
            if e > wm {
                break;
            }
            if e > closed_until {
                starts.insert(s);
            }
            s += advance;
        }
    }
    for s in starts {
        let e = s + size;
        let mut acc: Option<(S, Ts)> = None;
        for (_, pane) in g.panes.range(s..e) {
            match &mut acc {
                None => acc = Some((pane.state.clone(), pane.last_event)),
                Some((a, last)) => {
                    a.merge_from(&pane.state)?;
                    *last = (*last).max(pane.last_event);
                }
            }
        }
        if let Some((state, last_event)) = acc {
            out.push(Closed {
                group: key.clone(),
                span: Span { start: s, end: e },
                state,
                last_event,
            });
        }
    }
    // Evict panes whose last window has closed.
    let done: Vec<Ts> = g
        .panes
        .keys()
        .copied()
        .take_while(|&p| p.div_euclid(advance) * advance + size <= wm)
        .collect();
    for p in done {
        g.panes.remove(&p);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
