//! Rule compilation: `CREATE RULE` AST + input stream → [`CepRule`] (an NFA program over
//! pattern variables, compiled DEFINE predicates and MEASURES).

use super::{CepConfig, CompileError};
use crate::expr::{self, CompiledExpr, Scope, VarId};
use dsl::ast::{AfterMatch, CreateRule, DataType, ExprKind, Pattern, Span};
use dsl::plan::StreamDef;
use std::sync::Arc;

/// One NFA instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inst {
    /// Consume one row if it can be classified as the variable.
    Classify(VarId),
    /// Try the first target, then (lower preference) the second.
    Split(u32, u32),
    Jmp(u32),
    /// Trailing `!v`: no row satisfying v until the WITHIN deadline, then match.
    AbsentTail(VarId),
    /// `^`: passes only before the key's first row.
    AssertStart,
    /// `$`: passes only at the end of the input; a thread waits here until the next row
    /// of its key (which kills it) or the end.
    AssertEnd,
    Match,
}

/// How a variable classifies a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarKind {
    /// No DEFINE: every row.
    Always,
    /// The DEFINE predicate (index into `CepRule::preds`).
    Def(u32),
    /// Hidden variable of `!v`: rows that do NOT satisfy v's DEFINE.
    Not(VarId),
}

#[derive(Debug, Clone)]
pub(crate) struct VarInfo {
    #[allow(dead_code)]
    pub name: String,
    pub kind: VarKind,
}

/// A compiled rule: immutable; share it with `Arc` across threads.
#[derive(Debug, Clone)]
pub struct CepRule {
    pub(crate) name: Arc<str>,
    pub(crate) stream: String,
    pub(crate) vars: Vec<VarInfo>,
    pub(crate) var_names: Vec<String>,
    pub(crate) preds: Vec<CompiledExpr>,
    pub(crate) prog: Vec<Inst>,
    pub(crate) within_ms: Option<i64>,
    pub(crate) after: AfterMatch,
    pub(crate) skip_var: Option<VarId>,
    pub(crate) partition: Vec<CompiledExpr>,
    /// PARTITION BY as plain column indexes, when it is only plain columns.
    pub(crate) partition_cols: Option<Vec<usize>>,
    pub(crate) partition_canon: String,
    pub(crate) partition_names: Vec<Arc<str>>,
    pub(crate) measures: Vec<(Arc<str>, CompiledExpr)>,
    /// Variables whose history DEFINE predicates read (dedup key); `all_history` = all.
    pub(crate) history: Vec<bool>,
    pub(crate) path_dependent: bool,
    pub(crate) uses_match_number: bool,
    /// Variables that can classify the first row of a match (`None` = some always does).
    pub(crate) first_vars: Option<Vec<VarId>>,
    pub(crate) output_columns: Vec<(String, DataType)>,
    pub(crate) config: CepConfig,
    /// Rows before a match's first row that `PREV` can read: the key keeps its last
    /// `lookback` rows even while it has no open partial match.
    pub(crate) lookback: u32,
}

fn cerr<T>(span: Span, message: impl Into<String>) -> Result<T, CompileError> {
    Err(CompileError {
        message: message.into(),
        span,
    })
}

impl From<expr::ExprError> for CompileError {
    fn from(e: expr::ExprError) -> Self {
        CompileError {
            message: e.message,
            span: e.span,
        }
    }
}

fn collect_vars(p: &Pattern, user: &mut Vec<(String, Span)>, absent: &mut Vec<String>) {
    match p {
        Pattern::Var(v) => {
            if !user.iter().any(|(n, _)| n == &v.name) {
                user.push((v.name.clone(), v.span));
            }
        }
        Pattern::Absent(v) => {
            if !user.iter().any(|(n, _)| n == &v.name) {
                user.push((v.name.clone(), v.span));
            }
            if !absent.contains(&v.name) {
                absent.push(v.name.clone());
            }
        }
        Pattern::Seq(xs) | Pattern::FollowedBy(xs) | Pattern::Alt(xs) => {
            for x in xs {
                collect_vars(x, user, absent)
            }
        }
        Pattern::Repeat { inner, .. } | Pattern::Exclude(inner) => {
            collect_vars(inner, user, absent)
        }
        Pattern::Anchor { .. } => {}
    }
}

/// Whether the pattern uses `^` (its keys then keep their row count from the first row).
fn has_start_anchor(p: &Pattern) -> bool {
    match p {
        Pattern::Anchor { end, .. } => !end,
        Pattern::Seq(xs) | Pattern::FollowedBy(xs) | Pattern::Alt(xs) => {
            xs.iter().any(has_start_anchor)
        }
        Pattern::Repeat { inner, .. } | Pattern::Exclude(inner) => has_start_anchor(inner),
        Pattern::Var(_) | Pattern::Absent(_) => false,
    }
}

struct ProgBuilder<'a> {
    prog: Vec<Inst>,
    var_of: &'a dyn Fn(&str) -> VarId,
    any_var: Option<VarId>,
    not_var: &'a dyn Fn(&str) -> VarId,
    max: usize,
}

impl ProgBuilder<'_> {
    fn push(&mut self, i: Inst) -> Result<u32, CompileError> {
        if self.prog.len() >= self.max {
            return cerr(
                Span::default(),
                format!(
                    "the pattern is too large once its quantifiers are expanded (more than {} states)",
                    self.max
                ),
            );
        }
        self.prog.push(i);
        Ok((self.prog.len() - 1) as u32)
    }

    fn patch_split_second(&mut self, at: u32, target: u32) {
        if let Inst::Split(a, _) = self.prog[at as usize] {
            self.prog[at as usize] = Inst::Split(a, target);
        }
    }
    fn patch_split_first(&mut self, at: u32, target: u32) {
        if let Inst::Split(_, b) = self.prog[at as usize] {
            self.prog[at as usize] = Inst::Split(target, b);
        }
    }

    /// `x*?` / `x*` over a single classify instruction.
    fn star_var(&mut self, v: VarId, greedy: bool) -> Result<(), CompileError> {
        let l = self.push(Inst::Split(0, 0))?;
        self.push(Inst::Classify(v))?;
        self.push(Inst::Jmp(l))?;
        let end = self.prog.len() as u32;
        if greedy {
            self.prog[l as usize] = Inst::Split(l + 1, end);
        } else {
            self.prog[l as usize] = Inst::Split(end, l + 1);
        }
        Ok(())
    }

    fn emit(&mut self, p: &Pattern) -> Result<(), CompileError> {
        match p {
            Pattern::Var(v) => {
                let id = (self.var_of)(&v.name);
                self.push(Inst::Classify(id))?;
            }
            Pattern::Absent(v) => {
                let n = (self.not_var)(&v.name);
                self.star_var(n, false)?;
            }
            Pattern::Anchor { end, .. } => {
                self.push(if *end {
                    Inst::AssertEnd
                } else {
                    Inst::AssertStart
                })?;
            }
            // the rows are matched as without it; only ALL ROWS PER MATCH output differs
            Pattern::Exclude(inner) => self.emit(inner)?,
            Pattern::Seq(xs) => {
                for x in xs {
                    self.emit(x)?;
                }
            }
            Pattern::FollowedBy(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        let any = self.any_var.unwrap_or(0);
                        self.star_var(any, false)?;
                    }
                    self.emit(x)?;
                }
            }
            Pattern::Alt(xs) => {
                let mut jumps = Vec::new();
                for (i, x) in xs.iter().enumerate() {
                    if i + 1 < xs.len() {
                        let s = self.push(Inst::Split(0, 0))?;
                        self.patch_split_first(s, s + 1);
                        self.emit(x)?;
                        jumps.push(self.push(Inst::Jmp(0))?);
                        let next = self.prog.len() as u32;
                        self.patch_split_second(s, next);
                    } else {
                        self.emit(x)?;
                    }
                }
                let end = self.prog.len() as u32;
                for j in jumps {
                    self.prog[j as usize] = Inst::Jmp(end);
                }
            }
            Pattern::Repeat {
                inner,
                min,
                max,
                greedy,
                span,
            } => {
                if let Some(m) = max {
                    if m < min {
                        return cerr(
                            *span,
                            format!("quantifier {{{min},{m}}}: the maximum is below the minimum"),
                        );
                    }
                }
                for _ in 0..*min {
                    self.emit(inner)?;
                }
                match max {
                    None => {
                        let l = self.push(Inst::Split(0, 0))?;
                        self.emit(inner)?;
                        self.push(Inst::Jmp(l))?;
                        let end = self.prog.len() as u32;
                        self.prog[l as usize] = if *greedy {
                            Inst::Split(l + 1, end)
                        } else {
                            Inst::Split(end, l + 1)
                        };
                    }
                    Some(m) => {
                        let mut splits = Vec::new();
                        for _ in *min..*m {
                            let s = self.push(Inst::Split(0, 0))?;
                            splits.push(s);
                            self.emit(inner)?;
                        }
                        let end = self.prog.len() as u32;
                        for s in splits {
                            self.prog[s as usize] = if *greedy {
                                Inst::Split(s + 1, end)
                            } else {
                                Inst::Split(end, s + 1)
                            };
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl CepRule {
    /// Compiles a rule against the stream it reads.
    pub fn compile(
        rule: &CreateRule,
        stream: &StreamDef,
        config: &CepConfig,
    ) -> Result<CepRule, CompileError> {
        // ── variables ──
        let mut user = Vec::new();
        let mut absent = Vec::new();
        collect_vars(&rule.pattern, &mut user, &mut absent);
        for (i, d) in rule.define.iter().enumerate() {
            if !user.iter().any(|(n, _)| n == &d.var.name) {
                return cerr(
                    d.var.span,
                    format!("DEFINE names `{}`, which is not in PATTERN", d.var.name),
                );
            }
            if rule.define[..i].iter().any(|x| x.var.name == d.var.name) {
                return cerr(d.var.span, format!("`{}` is defined twice", d.var.name));
            }
        }
        let mut var_names: Vec<String> = user.iter().map(|(n, _)| n.clone()).collect();
        let mut vars: Vec<VarInfo> = var_names
            .iter()
            .map(|n| VarInfo {
                name: n.clone(),
                kind: VarKind::Always,
            })
            .collect();
        let mut uses_followed = false;
        fn has_followed(p: &Pattern) -> bool {
            match p {
                Pattern::FollowedBy(_) => true,
                Pattern::Seq(xs) | Pattern::Alt(xs) => xs.iter().any(has_followed),
                Pattern::Repeat { inner, .. } | Pattern::Exclude(inner) => has_followed(inner),
                _ => false,
            }
        }
        if has_followed(&rule.pattern) {
            uses_followed = true;
        }
        let any_var = if uses_followed {
            var_names.push("$any".into());
            vars.push(VarInfo {
                name: "$any".into(),
                kind: VarKind::Always,
            });
            Some((vars.len() - 1) as VarId)
        } else {
            None
        };
        for a in &absent {
            let target = var_names.iter().position(|n| n == a).unwrap_or(0) as VarId;
            let name = format!("$not_{a}");
            var_names.push(name.clone());
            vars.push(VarInfo {
                name,
                kind: VarKind::Not(target),
            });
        }
        if vars.len() > u16::MAX as usize / 2 {
            return cerr(rule.pattern_span(), "too many pattern variables");
        }

        // ── DEFINE ──
        let mut preds = Vec::new();
        for d in &rule.define {
            let v = var_names.iter().position(|n| n == &d.var.name).unwrap_or(0);
            let scope = Scope {
                stream,
                vars: &var_names,
                current_var: Some(v as VarId),
                allow_nav: true,
                in_measures: false,
            };
            let c = expr::compile(&d.cond, &scope)?;
            vars[v].kind = VarKind::Def(preds.len() as u32);
            preds.push(c);
        }

        // ── pattern → program ──
        let top_items: Vec<Pattern> = match &rule.pattern {
            Pattern::Seq(xs) => xs.clone(),
            p => vec![p.clone()],
        };
        let (body, trailing) = match top_items.last() {
            Some(Pattern::Absent(v)) if top_items.len() >= 2 => (
                Pattern::Seq(top_items[..top_items.len() - 1].to_vec()),
                Some(v.clone()),
            ),
            Some(Pattern::Absent(v)) => {
                return cerr(v.span, format!("`!{}` needs a term before it", v.name))
            }
            _ => (rule.pattern.clone(), None),
        };
        if let Some(Pattern::Absent(v)) = top_items.first() {
            return cerr(v.span, format!("`!{}` needs a term before it", v.name));
        }
        if let Pattern::FollowedBy(xs) = &rule.pattern {
            if let Some(Pattern::Absent(v)) = xs.first().or(xs.last()) {
                return cerr(
                    v.span,
                    format!(
                        "`!{}` cannot start or end a `->` chain; write `a !{}` with WITHIN",
                        v.name, v.name
                    ),
                );
            }
        }
        // A pattern that can match zero rows gives empty matches (SQL:2016): found at a
        // row, they take none. A trailing absence waits from the match's first row, so its
        // body needs one.
        if trailing.is_some() && body.can_be_empty() {
            return cerr(
                rule.pattern_span(),
                "the rows before a trailing `!v` can be none; the wait needs a first row",
            );
        }
        let within_ms = rule.within.map(|d| d.millis.min(i64::MAX as u64) as i64);
        if trailing.is_some() && within_ms.is_none() {
            return cerr(
                rule.pattern_span(),
                "a pattern that ends with `!v` (absence) needs WITHIN: how long to wait",
            );
        }
        let names = var_names.clone();
        let var_of = move |n: &str| names.iter().position(|x| x == n).unwrap_or(0) as VarId;
        let names2 = var_names.clone();
        let not_var = move |n: &str| {
            let want = format!("$not_{n}");
            names2.iter().position(|x| x == &want).unwrap_or(0) as VarId
        };
        let mut b = ProgBuilder {
            prog: Vec::new(),
            var_of: &var_of,
            any_var,
            not_var: &not_var,
            max: config.max_program_size,
        };
        b.emit(&body)?;
        if let Some(v) = &trailing {
            let n = not_var(&v.name);
            b.push(Inst::AbsentTail(n))?;
        }
        b.push(Inst::Match)?;
        let prog = b.prog;

        // ── history (dedup) ──
        let mut history = vec![false; vars.len()];
        let mut all = false;
        for p in &preds {
            for h in &p.history_vars {
                match h {
                    Some(v) => history[*v as usize] = true,
                    None => all = true,
                }
            }
        }
        if all {
            history.iter_mut().for_each(|h| *h = true);
        }
        let path_dependent = history.iter().any(|h| *h);

        // ── AFTER MATCH ──
        let after = rule
            .after_match
            .clone()
            .unwrap_or(AfterMatch::SkipPastLastRow);
        let skip_var = match &after {
            AfterMatch::SkipToFirst(v) | AfterMatch::SkipToLast(v) => {
                match var_names.iter().position(|n| n == &v.name) {
                    Some(i) => Some(i as VarId),
                    None => return cerr(v.span, format!("`{}` is not a pattern variable", v.name)),
                }
            }
            _ => None,
        };

        // ── PARTITION BY / MEASURES ──
        let plain = Scope::plain(stream);
        let mut partition = Vec::new();
        let mut partition_names = Vec::new();
        let mut partition_canon = String::new();
        let mut output_columns = Vec::new();
        for p in &rule.partition_by {
            let name = match &p.kind {
                ExprKind::Path(parts) if !parts.is_empty() => parts
                    .iter()
                    .map(|x| x.name.as_str())
                    .collect::<Vec<_>>()
                    .join("."),
                _ => return cerr(p.span, "PARTITION BY takes column names"),
            };
            let c = expr::compile(p, &plain)?;
            partition_canon.push_str(&c.canonical());
            partition_canon.push('|');
            let ty = stream.column_type(&name).unwrap_or(DataType::Json);
            output_columns.push((name.clone(), ty));
            partition_names.push(Arc::from(name.as_str()));
            partition.push(c);
        }
        let mscope = Scope {
            stream,
            vars: &var_names,
            current_var: None,
            allow_nav: true,
            in_measures: true,
        };
        let mut measures = Vec::new();
        let mut uses_match_number = preds.iter().any(|p| p.uses_match_number());
        for m in &rule.measures {
            let c = expr::compile(&m.expr, &mscope)?;
            uses_match_number |= c.uses_match_number();
            output_columns.push((m.alias.name.clone(), infer_type(&c, &m.expr, stream)));
            measures.push((Arc::from(m.alias.name.as_str()), c));
        }

        // ── first variables (start filter) ──
        let first_vars = first_classify_vars(&prog, &vars);

        let partition_cols: Option<Vec<usize>> = partition.iter().map(|p| p.as_column()).collect();
        // `^` needs to know whether a row is its key's first: its keys are kept (one row)
        let lookback = preds
            .iter()
            .chain(measures.iter().map(|(_, m)| m))
            .map(|e| e.lookback())
            .max()
            .unwrap_or(0)
            .max(u32::from(has_start_anchor(&rule.pattern)));
        Ok(CepRule {
            name: Arc::from(rule.name.name.as_str()),
            stream: stream.name.clone(),
            vars,
            var_names,
            preds,
            prog,
            within_ms,
            after,
            skip_var,
            partition,
            partition_cols,
            partition_canon,
            partition_names,
            measures,
            history,
            path_dependent,
            uses_match_number,
            first_vars,
            output_columns,
            config: config.clone(),
            lookback,
        })
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream the rule reads.
    pub fn input_stream(&self) -> &str {
        &self.stream
    }

    /// Number of NFA instructions (after quantifier expansion).
    pub fn program_len(&self) -> usize {
        self.prog.len()
    }

    /// The rule's output as a stream other statements can read `FROM`: the partition
    /// columns, the MEASURES, and `ts` (event time of the match) unless a measure is
    /// already called `ts`. Feed [`super::MatchOutput::to_row`] rows to rules compiled
    /// against it.
    pub fn output_stream(&self) -> StreamDef {
        let mut columns = self.output_columns.clone();
        if !columns.iter().any(|(c, _)| c == "ts") {
            columns.push(("ts".into(), DataType::Timestamp));
        }
        StreamDef {
            name: self.name.to_string(),
            columns,
            event_time: Some("ts".into()),
            max_delay_ms: 0,
            idle_timeout_ms: dsl::plan::DEFAULT_IDLE_TIMEOUT_MS,
            late: dsl::plan::LatePolicy::Emit,
            key: None,
            kafka_topic: None,
            partitions: None,
        }
    }
}

trait PatternSpan {
    fn pattern_span(&self) -> Span;
}
impl PatternSpan for CreateRule {
    fn pattern_span(&self) -> Span {
        fn span(p: &Pattern) -> Span {
            match p {
                Pattern::Var(v) | Pattern::Absent(v) => v.span,
                Pattern::Repeat { span, .. } | Pattern::Anchor { span, .. } => *span,
                Pattern::Exclude(inner) => span(inner),
                Pattern::Seq(xs) | Pattern::FollowedBy(xs) | Pattern::Alt(xs) => xs
                    .iter()
                    .map(span)
                    .reduce(|a, b| a.to(b))
                    .unwrap_or_default(),
            }
        }
        span(&self.pattern)
    }
}

fn infer_type(c: &CompiledExpr, e: &dsl::ast::Expr, stream: &StreamDef) -> DataType {
    let _ = c;
    match &e.kind {
        ExprKind::Function { name, args } => match name.name.to_ascii_lowercase().as_str() {
            "count" | "match_number" | "length" => DataType::Int,
            "avg" => DataType::Float,
            "classifier" | "lower" | "upper" => DataType::String,
            "first" | "last" | "prev" | "sum" | "min" | "max" | "abs" | "running" | "final" => {
                match args.first() {
                    Some(a) => infer_type(c, a, stream),
                    None => DataType::Json,
                }
            }
            _ => DataType::Json,
        },
        ExprKind::Path(parts) => {
            let col = parts.last().map(|p| p.name.as_str()).unwrap_or("");
            let first = parts.first().map(|p| p.name.as_str()).unwrap_or("");
            stream
                .column_type(col)
                .filter(|_| parts.len() <= 2)
                .or_else(|| stream.column_type(first).filter(|_| parts.len() == 1))
                .unwrap_or(DataType::Json)
        }
        ExprKind::Literal(dsl::ast::Literal::Int(_)) => DataType::Int,
        ExprKind::Literal(dsl::ast::Literal::Float(_)) => DataType::Float,
        ExprKind::Literal(dsl::ast::Literal::String(_)) => DataType::String,
        ExprKind::Literal(dsl::ast::Literal::Bool(_))
        | ExprKind::Binary {
            op:
                dsl::ast::BinaryOp::Eq
                | dsl::ast::BinaryOp::NotEq
                | dsl::ast::BinaryOp::Lt
                | dsl::ast::BinaryOp::LtEq
                | dsl::ast::BinaryOp::Gt
                | dsl::ast::BinaryOp::GtEq
                | dsl::ast::BinaryOp::And
                | dsl::ast::BinaryOp::Or,
            ..
        } => DataType::Bool,
        _ => DataType::Json,
    }
}

/// Variables reachable as the first classification from pc 0; `None` when one of them
/// accepts every row.
fn first_classify_vars(prog: &[Inst], vars: &[VarInfo]) -> Option<Vec<VarId>> {
    let mut seen = vec![false; prog.len()];
    let mut stack = vec![0u32];
    let mut out = Vec::new();
    while let Some(pc) = stack.pop() {
        if seen[pc as usize] {
            continue;
        }
        seen[pc as usize] = true;
        match prog[pc as usize] {
            Inst::Classify(v) => {
                match vars[v as usize].kind {
                    VarKind::Def(_) => {}
                    _ => return None,
                }
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Inst::Split(a, b) => {
                stack.push(a);
                stack.push(b);
            }
            Inst::Jmp(a) => stack.push(a),
            // conservative: as if `^` held
            Inst::AssertStart => stack.push(pc + 1),
            Inst::AbsentTail(_) | Inst::AssertEnd | Inst::Match => return None,
        }
    }
    Some(out)
}
