//! Test helpers: a plain backtracking reference of batch MATCH_RECOGNIZE, a driver for the
//! streaming engine, and AST builders.
#![allow(
    dead_code,
    clippy::too_many_arguments,
    clippy::type_complexity,
    clippy::if_same_then_else
)]

use dsl::ast::*;
use dsl::plan::{LatePolicy, StreamDef};
use matcher::cep::{CepConfig, CepRule, CepRuleSet, MatchOutput, PartitionState};
use matcher::expr::{self, AggFunc, CompiledExpr, Context, Nav, Scope, VarId};
use matcher::value::{Row, Value};
use std::cmp::Ordering;
use std::collections::BTreeMap;

pub use matcher::expr::build::*;

pub fn var(n: &str) -> Pattern {
    Pattern::Var(Ident::new(n))
}
pub fn absent(n: &str) -> Pattern {
    Pattern::Absent(Ident::new(n))
}
pub fn seq(xs: Vec<Pattern>) -> Pattern {
    Pattern::Seq(xs)
}
pub fn alt(xs: Vec<Pattern>) -> Pattern {
    Pattern::Alt(xs)
}
pub fn fby(xs: Vec<Pattern>) -> Pattern {
    Pattern::FollowedBy(xs)
}
pub fn rep(p: Pattern, min: u32, max: Option<u32>, greedy: bool) -> Pattern {
    Pattern::Repeat {
        inner: Box::new(p),
        min,
        max,
        greedy,
        span: Span::default(),
    }
}

pub fn rule(
    name: &str,
    from: &str,
    partition: &[&str],
    pattern: Pattern,
    within_ms: Option<u64>,
    defines: Vec<(&str, Expr)>,
    measures: Vec<(&str, Expr)>,
    after: Option<AfterMatch>,
) -> CreateRule {
    CreateRule {
        or_replace: false,
        name: Ident::new(name),
        syntax: RuleSyntax::Native,
        from: Ident::new(from),
        partition_by: partition.iter().map(|p| col(p)).collect(),
        order_by: None,
        measures: measures
            .into_iter()
            .map(|(a, e)| Measure {
                expr: e,
                alias: Ident::new(a),
                span: Span::default(),
            })
            .collect(),
        pattern,
        within: within_ms.map(|millis| Duration {
            millis,
            span: Span::default(),
        }),
        define: defines
            .into_iter()
            .map(|(v, c)| Define {
                var: Ident::new(v),
                cond: c,
                span: Span::default(),
            })
            .collect(),
        after_match: after,
    }
}

pub fn stream(name: &str, cols: &[(&str, DataType)], delay: u64, late: LatePolicy) -> StreamDef {
    StreamDef {
        name: name.into(),
        columns: cols.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
        event_time: Some("ts".into()),
        max_delay_ms: delay,
        idle_timeout_ms: dsl::plan::DEFAULT_IDLE_TIMEOUT_MS,
        late,
        key: None,
        kafka_topic: None,
        partitions: None,
    }
}

/// An input event: decoded row, event time, offset.
#[derive(Debug, Clone)]
pub struct Ev {
    pub row: Row,
    pub ts: i64,
    pub offset: u64,
}

/// Runs the streaming engine over events in arrival order, then `finish`.
pub fn run_engine(rules: &CepRuleSet, stream: &StreamDef, events: &[Ev]) -> Vec<MatchOutput> {
    run_engine_counted(rules, stream, events).0
}

/// Like [`run_engine`], also returning the partition's counters.
pub fn run_engine_counted(
    rules: &CepRuleSet,
    stream: &StreamDef,
    events: &[Ev],
) -> (Vec<MatchOutput>, matcher::cep::CepCounters) {
    let mut st = PartitionState::new(0, rules);
    let mut out = Vec::new();
    for e in events {
        st.process_with(
            rules,
            e.row.clone(),
            e.ts,
            e.offset,
            stream.max_delay_ms,
            stream.late,
            &mut out,
        );
    }
    st.finish(rules, &mut out);
    (out, st.counters())
}

/// The order in which rows reach the matcher (reorder buffer model) with late flags;
/// late rows dropped under `Drop`.
pub fn release_order(stream: &StreamDef, events: &[Ev]) -> Vec<(Ev, bool)> {
    let mut out = Vec::new();
    let mut buf: Vec<Ev> = Vec::new();
    let mut max: Option<i64> = None;
    let mut wm = i64::MIN;
    for e in events {
        if e.ts < wm {
            if stream.late == LatePolicy::Emit {
                out.push((e.clone(), true));
            }
            continue;
        }
        buf.push(e.clone());
        max = Some(max.map_or(e.ts, |m: i64| m.max(e.ts)));
        wm = wm.max(max.unwrap_or(0) - stream.max_delay_ms as i64);
        buf.sort_by_key(|e| (e.ts, e.offset));
        while !buf.is_empty() && buf[0].ts <= wm {
            out.push((buf.remove(0), false));
        }
    }
    buf.sort_by_key(|e| (e.ts, e.offset));
    out.extend(buf.into_iter().map(|e| (e, false)));
    out
}

// ───────────────────────────── reference ─────────────────────────────

#[derive(Debug, Clone)]
enum RPat {
    Var(VarId),
    Seq(Vec<RPat>),
    Alt(Vec<RPat>),
    Rep(Box<RPat>, u32, Option<u32>, bool),
    /// `^` (false) / `$` (true): position 0 / past the partition's last row.
    Anchor(bool),
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Always,
    Def(usize),
    Not(VarId),
}

pub struct Reference {
    name: String,
    stream: String,
    vars: Vec<String>,
    kinds: Vec<Kind>,
    defs: Vec<CompiledExpr>,
    pat: RPat,
    trailing: Option<VarId>,
    within: Option<i64>,
    after: AfterMatch,
    partition: Vec<(String, CompiledExpr)>,
    measures: Vec<(String, CompiledExpr)>,
    /// Backtracking steps left: some random patterns (nested unbounded quantifiers) make
    /// plain backtracking exponential. When the budget runs out the run is abandoned
    /// ([`Reference::exhausted`]) and the case is skipped, instead of hanging the suite.
    steps_left: std::cell::Cell<u64>,
}

/// Backtracking steps one [`Reference::run`] may take.
const REFERENCE_STEP_BUDGET: u64 = 20_000_000;

struct RCtx<'a> {
    rows: &'a [(Ev, bool)],
    start: usize,
    path: &'a [VarId],
    cur: Option<VarId>,
    vars: &'a [String],
    match_number: i64,
}

impl RCtx<'_> {
    /// (position, var) of every row of the tentative path, in order.
    fn items(&self) -> Vec<(usize, VarId)> {
        let mut v: Vec<(usize, VarId)> = self.path.iter().copied().enumerate().collect();
        if let Some(c) = self.cur {
            v.push((self.path.len(), c));
        }
        v
    }
    fn row(&self, pos: usize) -> &Row {
        &self.rows[self.start + pos].0.row
    }
}

impl Context for RCtx<'_> {
    fn row(&self) -> Option<&Row> {
        let items = self.items();
        items.last().map(|(p, _)| self.row(*p))
    }
    fn nav(&self, nav: &Nav) -> Value {
        let items = self.items();
        let sel = |var: &Option<VarId>| -> Vec<usize> {
            items
                .iter()
                .filter(|(_, v)| var.is_none_or(|x| x == *v))
                .map(|(p, _)| *p)
                .collect()
        };
        match nav {
            Nav::Last { var, field, n } => {
                let ps = sel(var);
                match ps.len().checked_sub(*n as usize + 1) {
                    Some(i) => field.get(self.row(ps[i])),
                    None => Value::Null,
                }
            }
            Nav::First { var, field, n } => match sel(var).get(*n as usize) {
                Some(p) => field.get(self.row(*p)),
                None => Value::Null,
            },
            // SQL:2016: the partition's row n before the anchor, which may be before the
            // match's first row (NULL before the partition's first row)
            Nav::PrevOf { of, n } => {
                let (pos, field) = match &**of {
                    Nav::First { var, field, n } => (sel(var).get(*n as usize).copied(), field),
                    Nav::Last { var, field, n } => {
                        let ps = sel(var);
                        (ps.len().checked_sub(*n as usize + 1).map(|i| ps[i]), field)
                    }
                    _ => return Value::Null,
                };
                match pos.and_then(|p| (self.start + p).checked_sub(*n as usize)) {
                    Some(p) => field.get(&self.rows[p].0.row),
                    None => Value::Null,
                }
            }
            Nav::Prev { var, field, n } => {
                let anchor = sel(var).last().copied();
                match anchor.and_then(|a| (self.start + a).checked_sub(*n as usize)) {
                    Some(p) => field.get(&self.rows[p].0.row),
                    None => Value::Null,
                }
            }
            Nav::Agg { func, var, arg } => {
                let ps = sel(var);
                let vals: Vec<Value> = match arg {
                    Some(f) => ps.iter().map(|p| f.get(self.row(*p))).collect(),
                    None => vec![],
                };
                let nn: Vec<&Value> = vals.iter().filter(|v| !v.is_null()).collect();
                match func {
                    AggFunc::Count => {
                        Value::Int(if arg.is_none() { ps.len() } else { nn.len() } as i64)
                    }
                    AggFunc::Sum | AggFunc::Avg => {
                        if nn.is_empty() {
                            return Value::Null;
                        }
                        let all_int = nn.iter().all(|v| matches!(v, Value::Int(_)));
                        let f: f64 = nn.iter().map(|v| v.as_f64().unwrap_or(0.0)).sum();
                        if *func == AggFunc::Avg {
                            Value::Float(f / nn.len() as f64)
                        } else if all_int {
                            Value::Int(
                                nn.iter()
                                    .map(|v| match v {
                                        Value::Int(i) => *i,
                                        _ => 0,
                                    })
                                    .sum(),
                            )
                        } else {
                            Value::Float(f)
                        }
                    }
                    AggFunc::Min | AggFunc::Max => {
                        let mut best: Option<&Value> = None;
                        for v in nn {
                            best = match best {
                                None => Some(v),
                                Some(b) => {
                                    let o = v.sql_cmp(b);
                                    if (*func == AggFunc::Min && o == Some(Ordering::Less))
                                        || (*func == AggFunc::Max && o == Some(Ordering::Greater))
                                    {
                                        Some(v)
                                    } else {
                                        Some(b)
                                    }
                                }
                            }
                        }
                        best.cloned().unwrap_or(Value::Null)
                    }
                }
            }
            Nav::MatchNumber => Value::Int(self.match_number),
            Nav::Classifier => match items.last() {
                Some((_, v)) => Value::String(self.vars[*v as usize].clone()),
                None => Value::Null,
            },
        }
    }
}

fn collect(p: &Pattern, user: &mut Vec<String>, absent: &mut Vec<String>, any: &mut bool) {
    match p {
        Pattern::Var(v) => {
            if !user.contains(&v.name) {
                user.push(v.name.clone())
            }
        }
        Pattern::Absent(v) => {
            if !user.contains(&v.name) {
                user.push(v.name.clone())
            }
            if !absent.contains(&v.name) {
                absent.push(v.name.clone())
            }
        }
        Pattern::Seq(xs) | Pattern::Alt(xs) => {
            xs.iter().for_each(|x| collect(x, user, absent, any))
        }
        Pattern::FollowedBy(xs) => {
            *any = true;
            xs.iter().for_each(|x| collect(x, user, absent, any))
        }
        Pattern::Repeat { inner, .. } | Pattern::Exclude(inner) => {
            collect(inner, user, absent, any)
        }
        Pattern::Anchor { .. } => {}
    }
}

impl Reference {
    pub fn new(r: &CreateRule, stream: &StreamDef) -> Reference {
        let (mut user, mut absent, mut any) = (Vec::new(), Vec::new(), false);
        collect(&r.pattern, &mut user, &mut absent, &mut any);
        let mut vars = user.clone();
        let mut kinds = vec![Kind::Always; user.len()];
        if any {
            vars.push("$any".into());
            kinds.push(Kind::Always);
        }
        for a in &absent {
            let w = user.iter().position(|u| u == a).unwrap() as VarId;
            vars.push(format!("$not_{a}"));
            kinds.push(Kind::Not(w));
        }
        let mut defs = Vec::new();
        for d in &r.define {
            let v = vars.iter().position(|n| n == &d.var.name).unwrap();
            let scope = Scope {
                stream,
                vars: &vars,
                current_var: Some(v as VarId),
                allow_nav: true,
                in_measures: false,
            };
            kinds[v] = Kind::Def(defs.len());
            defs.push(expr::compile(&d.cond, &scope).unwrap());
        }
        let id = |n: &str| vars.iter().position(|x| x == n).unwrap() as VarId;
        fn conv(p: &Pattern, id: &dyn Fn(&str) -> VarId) -> RPat {
            match p {
                Pattern::Var(v) => RPat::Var(id(&v.name)),
                Pattern::Anchor { end, .. } => RPat::Anchor(*end),
                Pattern::Exclude(inner) => conv(inner, id),
                Pattern::Absent(v) => RPat::Rep(
                    Box::new(RPat::Var(id(&format!("$not_{}", v.name)))),
                    0,
                    None,
                    false,
                ),
                Pattern::Seq(xs) => RPat::Seq(xs.iter().map(|x| conv(x, id)).collect()),
                Pattern::Alt(xs) => RPat::Alt(xs.iter().map(|x| conv(x, id)).collect()),
                Pattern::FollowedBy(xs) => {
                    let mut out = Vec::new();
                    for (i, x) in xs.iter().enumerate() {
                        if i > 0 {
                            out.push(RPat::Rep(Box::new(RPat::Var(id("$any"))), 0, None, false));
                        }
                        out.push(conv(x, id));
                    }
                    RPat::Seq(out)
                }
                Pattern::Repeat {
                    inner,
                    min,
                    max,
                    greedy,
                    ..
                } => RPat::Rep(Box::new(conv(inner, id)), *min, *max, *greedy),
            }
        }
        let (body, trailing) = match &r.pattern {
            Pattern::Seq(xs) if matches!(xs.last(), Some(Pattern::Absent(_))) => {
                let Some(Pattern::Absent(v)) = xs.last() else {
                    unreachable!()
                };
                (
                    Pattern::Seq(xs[..xs.len() - 1].to_vec()),
                    Some(id(&format!("$not_{}", v.name))),
                )
            }
            p => (p.clone(), None),
        };
        let pat = conv(&body, &id);
        let mscope = Scope {
            stream,
            vars: &vars,
            current_var: None,
            allow_nav: true,
            in_measures: true,
        };
        let measures = r
            .measures
            .iter()
            .map(|m| {
                (
                    m.alias.name.clone(),
                    expr::compile(&m.expr, &mscope).unwrap(),
                )
            })
            .collect();
        let partition = r
            .partition_by
            .iter()
            .map(|p| {
                let ExprKind::Path(parts) = &p.kind else {
                    panic!()
                };
                (
                    parts
                        .iter()
                        .map(|x| x.name.clone())
                        .collect::<Vec<_>>()
                        .join("."),
                    expr::compile(p, &Scope::plain(stream)).unwrap(),
                )
            })
            .collect();
        Reference {
            name: r.name.name.clone(),
            stream: stream.name.clone(),
            vars,
            kinds,
            defs,
            pat,
            trailing,
            within: r.within.map(|d| d.millis as i64),
            after: r.after_match.clone().unwrap_or(AfterMatch::SkipPastLastRow),
            partition,
            measures,
            steps_left: std::cell::Cell::new(REFERENCE_STEP_BUDGET),
        }
    }

    /// True when the last run ran out of backtracking steps (its result is incomplete).
    pub fn exhausted(&self) -> bool {
        self.steps_left.get() == 0
    }

    fn holds(&self, rows: &[(Ev, bool)], start: usize, path: &[VarId], v: VarId, mn: i64) -> bool {
        match self.kinds[v as usize] {
            Kind::Always => true,
            Kind::Def(d) => self.defs[d].eval_bool(&RCtx {
                rows,
                start,
                path,
                cur: Some(v),
                vars: &self.vars,
                match_number: mn,
            }),
            Kind::Not(w) => !self.holds(rows, start, path, w, mn),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn m(
        &self,
        p: &RPat,
        rows: &[(Ev, bool)],
        s: usize,
        i: usize,
        path: &mut Vec<VarId>,
        mn: i64,
        k: &mut dyn FnMut(usize, &mut Vec<VarId>) -> bool,
    ) -> bool {
        let left = self.steps_left.get();
        if left == 0 {
            return false;
        }
        self.steps_left.set(left - 1);
        match p {
            RPat::Var(v) => {
                if i >= rows.len() {
                    return false;
                }
                if let Some(d) = self.within {
                    if rows[i].0.ts - rows[s].0.ts > d {
                        return false;
                    }
                }
                if !self.holds(rows, s, path, *v, mn) {
                    return false;
                }
                path.push(*v);
                let r = k(i + 1, path);
                path.pop();
                r
            }
            RPat::Anchor(end) => {
                let holds = if *end { i == rows.len() } else { i == 0 };
                holds && k(i, path)
            }
            RPat::Seq(xs) => self.seq(xs, rows, s, i, path, mn, k),
            RPat::Alt(xs) => xs.iter().any(|x| self.m(x, rows, s, i, path, mn, k)),
            RPat::Rep(inner, min, max, greedy) => {
                self.rep(inner, *min, *max, *greedy, 0, rows, s, i, path, mn, k)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn seq(
        &self,
        xs: &[RPat],
        rows: &[(Ev, bool)],
        s: usize,
        i: usize,
        path: &mut Vec<VarId>,
        mn: i64,
        k: &mut dyn FnMut(usize, &mut Vec<VarId>) -> bool,
    ) -> bool {
        match xs.split_first() {
            None => k(i, path),
            Some((first, rest)) => self.m(first, rows, s, i, path, mn, &mut |j, p| {
                self.seq(rest, rows, s, j, p, mn, k)
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rep(
        &self,
        inner: &RPat,
        min: u32,
        max: Option<u32>,
        greedy: bool,
        count: u32,
        rows: &[(Ev, bool)],
        s: usize,
        i: usize,
        path: &mut Vec<VarId>,
        mn: i64,
        k: &mut dyn FnMut(usize, &mut Vec<VarId>) -> bool,
    ) -> bool {
        let can_stop = count >= min;
        let can_more = max.is_none_or(|m| count < m);
        let more = |path: &mut Vec<VarId>, k: &mut dyn FnMut(usize, &mut Vec<VarId>) -> bool| {
            can_more
                && self.m(inner, rows, s, i, path, mn, &mut |j, p| {
                    if j == i && count >= min {
                        return false;
                    }
                    self.rep(inner, min, max, greedy, count + 1, rows, s, j, p, mn, k)
                })
        };
        if greedy {
            more(path, k) || (can_stop && k(i, path))
        } else {
            (can_stop && k(i, path)) || more(path, k)
        }
    }

    /// Batch MATCH_RECOGNIZE over rows already in matcher order.
    pub fn run(&self, released: &[(Ev, bool)]) -> Vec<MatchOutput> {
        // partition, keeping order
        let mut parts: BTreeMap<String, (Vec<Value>, Vec<(Ev, bool)>)> = BTreeMap::new();
        for r in released {
            let vals: Vec<Value> = self
                .partition
                .iter()
                .map(|(_, p)| p.eval(&r.0.row))
                .collect();
            let key = serde_json::to_string(&vals.iter().map(|v| v.to_json()).collect::<Vec<_>>())
                .unwrap();
            parts
                .entry(key)
                .or_insert_with(|| (vals, Vec::new()))
                .1
                .push(r.clone());
        }
        let mut out = Vec::new();
        for (_, (vals, rows)) in parts {
            let mut s = 0;
            let mut mn = 1i64;
            while s < rows.len() {
                let mut found: Option<(Vec<VarId>, Option<i64>)> = None;
                let mut path = Vec::new();
                self.m(
                    &self.pat,
                    &rows,
                    s,
                    s,
                    &mut path,
                    mn,
                    &mut |i, p| match self.trailing {
                        None => {
                            found = Some((p.clone(), None));
                            true
                        }
                        Some(nv) => {
                            let deadline = rows[s].0.ts + self.within.unwrap();
                            let mut q = p.clone();
                            let w = match self.kinds[nv as usize] {
                                Kind::Not(w) => w,
                                _ => unreachable!(),
                            };
                            let mut j = i;
                            while j < rows.len() && rows[j].0.ts <= deadline {
                                if self.holds(&rows, s, &q, w, mn) {
                                    return false;
                                }
                                q.push(nv);
                                j += 1;
                            }
                            found = Some((p.clone(), Some(deadline)));
                            true
                        }
                    },
                );
                match found {
                    None => s += 1,
                    Some((path, absent)) => {
                        let len = path.len();
                        let ctx = RCtx {
                            rows: &rows,
                            start: s,
                            path: &path,
                            cur: None,
                            vars: &self.vars,
                            match_number: mn,
                        };
                        let mut fields: Vec<(std::sync::Arc<str>, Value)> = self
                            .partition
                            .iter()
                            .zip(&vals)
                            .map(|((n, _), v)| (n.as_str().into(), v.clone()))
                            .collect();
                        for (n, m) in &self.measures {
                            fields.push((n.as_str().into(), m.eval(&ctx)));
                        }
                        // an empty match is reported at the row where it was found
                        let first = &rows[s].0;
                        let last = &rows[s + len.max(1) - 1].0;
                        out.push(MatchOutput {
                            rule: self.name.as_str().into(),
                            id: format!(
                                "{}@{}/0:{}-{}{}",
                                self.name,
                                self.stream,
                                first.offset,
                                if len == 0 {
                                    String::new()
                                } else {
                                    last.offset.to_string()
                                },
                                if absent.is_some() { "!" } else { "" }
                            ),
                            ts: absent.unwrap_or(last.ts),
                            late: rows[s..s + len.max(1)].iter().any(|r| r.1),
                            fields,
                            first_offset: first.offset,
                            last_offset: last.offset,
                        });
                        mn += 1;
                        let pos = |v: &str| -> Vec<usize> {
                            path.iter()
                                .enumerate()
                                .filter(|(_, x)| self.vars[**x as usize] == v)
                                .map(|(i, _)| i)
                                .collect()
                        };
                        let target = match &self.after {
                            AfterMatch::SkipPastLastRow => s + len,
                            AfterMatch::SkipToNextRow => s + 1,
                            AfterMatch::SkipToFirst(v) => {
                                pos(&v.name).first().map_or(s + 1, |p| s + p)
                            }
                            AfterMatch::SkipToLast(v) => {
                                pos(&v.name).last().map_or(s + 1, |p| s + p)
                            }
                        };
                        s = if target <= s { s + 1 } else { target };
                    }
                }
            }
        }
        out
    }
}

/// Sorted, comparable rendering of outputs.
pub fn canon(out: &[MatchOutput]) -> Vec<String> {
    let mut v: Vec<String> = out
        .iter()
        .map(|m| {
            let mut j = m.to_json();
            j["late"] = m.late.into();
            j.to_string()
        })
        .collect();
    v.sort();
    v
}

pub fn compile_set(rules: &[CreateRule], stream: &StreamDef) -> CepRuleSet {
    let cfg = CepConfig::default();
    CepRuleSet::new(
        rules
            .iter()
            .map(|r| CepRule::compile(r, stream, &cfg).unwrap())
            .collect(),
    )
    .unwrap()
}
