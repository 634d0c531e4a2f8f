//! CEP: rules (`MATCH_RECOGNIZE` row patterns) compiled to automata and run per key.
//!
//! # Compile phase / run phase
//!
//! - [`CepRule::compile`] turns a `CREATE RULE` (AST) and the stream it reads into an
//!   immutable [`CepRule`]: an NFA program over pattern variables (quantifiers expanded,
//!   `a -> b` compiled as `a $any*? b`, `a !v b` as `a $not_v*? b`, a trailing `!v` as a
//!   wait-for-deadline state), compiled DEFINE predicates, MEASURES and PARTITION BY.
//! - [`CepRuleSet`] holds many rules over one stream, shares identical row-only DEFINE
//!   predicates between them (interned by canonical text, evaluated once per event) and
//!   indexes rules by the `col = 'literal'` condition their first variable requires, so an
//!   event only touches the rules that can start on it plus the rules that already hold a
//!   partial match for its key.
//! - [`PartitionState`] is the mutable state of one log partition: a reorder buffer (rows
//!   wait until the watermark passes them, then go to the matcher in `(event time, offset)`
//!   order), per-key partial matches in a `HashMap` sized to the live keys, timers for
//!   WITHIN deadlines, counters. It is serializable (serde, with a version) for checkpoints.
//!
//! ```
//! use dsl::ast::*;
//! use dsl::plan::{LatePolicy, StreamDef};
//! use matcher::cep::{CepConfig, CepRule, CepRuleSet, PartitionState};
//! use matcher::expr::build::*;
//! use matcher::value::RowDecoder;
//! use std::sync::Arc;
//!
//! let stream = StreamDef {
//!     name: "logins".into(),
//!     columns: vec![("user".into(), DataType::String), ("ok".into(), DataType::Bool),
//!                   ("ts".into(), DataType::Timestamp)],
//!     event_time: Some("ts".into()), max_delay_ms: 0, idle_timeout_ms: 5_000, late: LatePolicy::Drop,
//!     key: None, kafka_topic: None, partitions: None,
//! };
//! // PATTERN (f{2,} s)  DEFINE f AS ok = FALSE, s AS ok = TRUE
//! let var = |n: &str| Pattern::Var(Ident::new(n));
//! let rule = CreateRule {
//!     or_replace: false, name: Ident::new("brute_force"), syntax: RuleSyntax::Native,
//!     from: Ident::new("logins"), partition_by: vec![col("user")], order_by: None,
//!     measures: vec![Measure { expr: func("COUNT", vec![star(Some("f"))]),
//!                              alias: Ident::new("fails"), span: Span::default() }],
//!     pattern: Pattern::Seq(vec![
//!         Pattern::Repeat { inner: Box::new(var("f")), min: 2, max: None, greedy: true,
//!                           span: Span::default() },
//!         var("s")]),
//!     within: None,
//!     define: vec![
//!         Define { var: Ident::new("f"), cond: bin(BinaryOp::Eq, col("ok"),
//!                  e(ExprKind::Literal(Literal::Bool(false)))), span: Span::default() },
//!         Define { var: Ident::new("s"), cond: bin(BinaryOp::Eq, col("ok"),
//!                  e(ExprKind::Literal(Literal::Bool(true)))), span: Span::default() }],
//!     after_match: None,
//! };
//! let config = CepConfig::default();
//! let rules = Arc::new(CepRuleSet::new(vec![CepRule::compile(&rule, &stream, &config).unwrap()]).unwrap());
//! let decoder = RowDecoder::new(&stream);
//! let mut state = PartitionState::new(0, &rules);
//! let mut out = Vec::new();
//! for (i, line) in [r#"{"user":"a","ok":false,"ts":1}"#, r#"{"user":"a","ok":false,"ts":2}"#,
//!                   r#"{"user":"a","ok":true,"ts":3}"#].iter().enumerate() {
//!     let row = decoder.decode_str(line).unwrap();
//!     let ts = decoder.event_time(&row).unwrap();
//!     state.process(&rules, row, ts, i as u64, &mut out);
//! }
//! state.finish(&rules, &mut out);
//! assert_eq!(out.len(), 1);
//! assert_eq!(out[0].to_json()["fields"]["fails"], 2);
//! ```
//!
//! # Output and ids
//!
//! A match becomes a [`MatchOutput`]: the rule name, the PARTITION BY columns then the
//! MEASURES, `ts` = event time of the row that completed the match (for a trailing absence:
//! the deadline, first-row time + WITHIN), `late` (some row of the match was late and
//! processed under `late = 'emit'`), and a deterministic id
//! `{rule}@{stream}/{partition}:{first_offset}-{last_offset}` made of the log offsets of the
//! first and last rows of the match (suffix `!` for a trailing-absence match). A replay of
//! the same log gives the same ids. [`CepRule::output_stream`] and [`MatchOutput::to_row`]
//! make the output readable by other rules (`FROM rule_name`).

mod compile;
mod run;
mod table;

pub use compile::CepRule;
pub use run::{CepCounters, PartitionState, STATE_VERSION};

use crate::value::{format_timestamp, Row, Value};
use dsl::ast::Span;
use dsl::plan::StreamDef;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Limits that keep state bounded. Every overflow is counted in [`CepCounters`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CepConfig {
    /// Partial matches (NFA threads) per key and rule. Past it, the oldest partial matches
    /// (the earliest-started searches) of that key are dropped and counted.
    pub max_partial_matches_per_key: usize,
    /// Partial matches per rule in one partition. Past it, no new match is started for the
    /// rule until some expire; each refused start is counted.
    pub max_partial_matches_per_rule: usize,
    /// Rows buffered per key and rule for its open partial matches. Past it, the oldest
    /// partial matches are dropped (counted) so their rows can be released.
    pub max_rows_per_key: usize,
    /// Rows waiting in the reorder buffer of a partition. Past it, the oldest row is
    /// released early (counted as `reorder_forced`) as if the watermark had passed it.
    pub max_reorder_rows: usize,
    /// NFA size limit after quantifier expansion (`x{1000}` is 1,000 states).
    pub max_program_size: usize,
}

impl Default for CepConfig {
    fn default() -> Self {
        CepConfig {
            max_partial_matches_per_key: 10_000,
            max_partial_matches_per_rule: 1_000_000,
            max_rows_per_key: 100_000,
            max_reorder_rows: 1_000_000,
            max_program_size: 10_000,
        }
    }
}

/// A rule that cannot be compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    pub message: String,
    pub span: Span,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CompileError {}

impl From<CompileError> for dsl::Diagnostic {
    fn from(e: CompileError) -> Self {
        dsl::Diagnostic::error(e.span, e.message)
    }
}

/// One complex event produced by a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchOutput {
    pub rule: Arc<str>,
    /// Deterministic id (see the module docs).
    pub id: String,
    /// Event time (ms) of the row that completed the match, or the deadline of a
    /// trailing absence.
    pub ts: i64,
    pub late: bool,
    /// PARTITION BY columns, then MEASURES, in order.
    pub fields: Vec<(Arc<str>, Value)>,
    /// Log offsets of the first and last rows of the match.
    pub first_offset: u64,
    pub last_offset: u64,
}

impl MatchOutput {
    /// The output record of the language contract (§7):
    /// `{"rule": …, "id": …, "ts": …, "fields": {…}}` (plus `"late": true` when late).
    pub fn to_json(&self) -> serde_json::Value {
        let mut fields = serde_json::Map::new();
        for (k, v) in &self.fields {
            fields.insert(k.to_string(), v.to_json());
        }
        let mut m = serde_json::Map::new();
        m.insert("rule".into(), self.rule.to_string().into());
        m.insert("id".into(), self.id.clone().into());
        m.insert("ts".into(), format_timestamp(self.ts).into());
        if self.late {
            m.insert("late".into(), true.into());
        }
        m.insert("fields".into(), serde_json::Value::Object(fields));
        serde_json::Value::Object(m)
    }

    /// The output as a row of the rule's [`CepRule::output_stream`], for rules reading
    /// `FROM` this rule. Its event time is `self.ts`.
    pub fn to_row(&self, output_stream: &StreamDef) -> Row {
        let values = output_stream
            .columns
            .iter()
            .map(|(c, _)| {
                self.fields
                    .iter()
                    .find(|(k, _)| &**k == c)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| {
                        if c == "ts" {
                            Value::Timestamp(self.ts)
                        } else {
                            Value::Null
                        }
                    })
            })
            .collect();
        Row {
            values,
            extra: serde_json::Map::new(),
        }
    }
}

/// Rules that read one stream, compiled and indexed together. Immutable; share it with
/// `Arc` between the workers of the stream's partitions.
#[derive(Debug)]
pub struct CepRuleSet {
    pub(crate) rules: Vec<Arc<CepRule>>,
    pub(crate) groups: Vec<Group>,
    /// Per rule, per local predicate: the interned id and whether it reads only the row.
    pub(crate) pred_ids: Vec<Vec<(u32, bool)>>,
    pub(crate) n_preds: usize,
}

/// Rules with the same PARTITION BY share one key map.
#[derive(Debug)]
pub(crate) struct Group {
    pub rules: Vec<u32>,
    /// Rules that might start on any row.
    pub always: Vec<u32>,
    /// Per set of columns: rules whose first variable requires `col = literal` on each of
    /// them, by the hash of those literals (see [`run::eq_hash`]).
    pub index: Vec<ConjIndex>,
    /// The largest [`CepRule::lookback`] of the group's rules: rows every key keeps
    /// before its oldest open partial match (0 = keys without one are dropped).
    pub lookback: u64,
}

/// Start index on a conjunction of equalities: a row is looked up by the hash of its
/// values in `cols`. A hash collision only adds a candidate (its first DEFINE is still
/// evaluated); a rule is never missed.
#[derive(Debug)]
pub(crate) struct ConjIndex {
    pub cols: Vec<usize>,
    pub map: HashMap<u64, Vec<u32>, run::IdBuild>,
}

impl CepRuleSet {
    /// Builds a set; all rules must read the same stream and have distinct names.
    pub fn new(rules: Vec<CepRule>) -> Result<CepRuleSet, CompileError> {
        Self::from_arcs(rules.into_iter().map(Arc::new).collect())
    }

    pub fn from_arcs(rules: Vec<Arc<CepRule>>) -> Result<CepRuleSet, CompileError> {
        let mut groups: Vec<Group> = Vec::new();
        let mut group_canon: Vec<String> = Vec::new();
        let mut rule_group = Vec::new();
        let mut interned: HashMap<String, u32> = HashMap::new();
        let mut pred_ids = Vec::new();
        let mut max_prog = 0;
        for (ri, r) in rules.iter().enumerate() {
            if let Some(first) = rules.first() {
                if first.stream != r.stream {
                    return Err(CompileError {
                        message: format!(
                            "rule `{}` reads `{}`, but this rule set is for `{}`",
                            r.name, r.stream, first.stream
                        ),
                        span: Span::default(),
                    });
                }
            }
            if rules[..ri].iter().any(|x| x.name == r.name) {
                return Err(CompileError {
                    message: format!("two rules are named `{}`", r.name),
                    span: Span::default(),
                });
            }
            max_prog = max_prog.max(r.prog.len());
            let g = match group_canon.iter().position(|c| c == &r.partition_canon) {
                Some(g) => g,
                None => {
                    group_canon.push(r.partition_canon.clone());
                    groups.push(Group {
                        rules: Vec::new(),
                        always: Vec::new(),
                        index: Vec::new(),
                        lookback: 0,
                    });
                    groups.len() - 1
                }
            };
            rule_group.push(g as u32);
            let group = &mut groups[g];
            group.rules.push(ri as u32);
            group.lookback = group.lookback.max(r.lookback as u64);
            let mut ids = Vec::new();
            for p in &r.preds {
                let row_only = p.reads_only_row();
                let canon = p.canonical();
                let n = interned.len() as u32;
                let id = if row_only {
                    *interned.entry(canon).or_insert(n)
                } else {
                    // not shareable: give it its own id
                    let key = format!("#{ri}:{canon}");
                    *interned.entry(key).or_insert(n)
                };
                ids.push((id, row_only));
            }
            pred_ids.push(ids);
            // start index: per first variable, the `col = literal` conjuncts its DEFINE
            // requires; the rule is a candidate when the row satisfies all of them for
            // some first variable
            let mut keys: Option<Vec<Vec<(usize, Value)>>> = Some(Vec::new());
            match &r.first_vars {
                None => keys = None,
                Some(vs) => {
                    for v in vs {
                        let mut eqs = match r.vars[*v as usize].kind {
                            compile::VarKind::Def(p) => r.preds[p as usize].required_equalities(),
                            _ => Vec::new(),
                        };
                        eqs.retain(|(_, lit)| run::eq_indexable(lit));
                        eqs.sort_by(|a, b| {
                            a.0.cmp(&b.0)
                                .then_with(|| format!("{:?}", a.1).cmp(&format!("{:?}", b.1)))
                        });
                        eqs.dedup();
                        match (eqs.is_empty(), keys.as_mut()) {
                            (false, Some(k)) => k.push(eqs),
                            _ => keys = None,
                        }
                    }
                }
            }
            match keys {
                Some(keys) if !keys.is_empty() => {
                    for eqs in keys {
                        let cols: Vec<usize> = eqs.iter().map(|(c, _)| *c).collect();
                        let slot = match group.index.iter().position(|ix| ix.cols == cols) {
                            Some(i) => i,
                            None => {
                                group.index.push(ConjIndex {
                                    cols,
                                    map: HashMap::default(),
                                });
                                group.index.len() - 1
                            }
                        };
                        let mut h = run::EQ_HASH_SEED;
                        for (_, lit) in &eqs {
                            run::eq_hash(&mut h, lit);
                        }
                        let list = group.index[slot].map.entry(h).or_default();
                        if !list.contains(&(ri as u32)) {
                            list.push(ri as u32);
                        }
                    }
                }
                _ => group.always.push(ri as u32),
            }
        }
        Ok(CepRuleSet {
            n_preds: interned.len(),
            rules,
            groups,
            pred_ids,
        })
    }

    pub fn rules(&self) -> &[Arc<CepRule>] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of distinct predicates after interning (shared row-only predicates count once).
    pub fn distinct_predicates(&self) -> usize {
        self.n_preds
    }
}
