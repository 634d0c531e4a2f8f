//! Repartition planning: which statements read a re-keyed copy of their stream.

use dsl::ast::{ExprKind, StatementKind};
use dsl::check::Catalog;
use dsl::plan::StreamDef;

/// A source stream re-keyed for statements whose PARTITION BY (rules) or GROUP BY
/// (metrics) does not include the stream's `key`: with more than one partition, one
/// group's events would otherwise be split across partitions. The service copies each
/// event of `source` into the hidden stream `stream`, placed by the value of `by` (all
/// in partition 0 when `by` is `None`), and `statements` read that stream instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repartition {
    pub source: String,
    /// The column the copies are placed by; `None` = one partition (a rule without
    /// PARTITION BY, a metric without GROUP BY, or groups by a nested field).
    pub by: Option<String>,
    /// The hidden stream's name: `<source>.by.<column>`, or `<source>.single`. Not a valid
    /// identifier, so it cannot clash with a statement.
    pub stream: String,
    pub statements: Vec<String>,
}

/// The repartitioned streams a catalog needs when stream `s` has `partitions(s)`
/// partitions: one per (source stream, column) that some rule or metric groups by
/// without the stream's key. Streams without a `key`, with one partition, and derived
/// streams (outputs of other statements) are read as they are. Deterministic (catalog
/// order), so every worker and every instance agrees.
pub fn repartitions(catalog: &Catalog, partitions: &dyn Fn(&StreamDef) -> u32) -> Vec<Repartition> {
    let mut out: Vec<Repartition> = Vec::new();
    for entry in catalog.entries() {
        let by = match &entry.statement.kind {
            StatementKind::CreateRule(r) => &r.partition_by,
            StatementKind::CreateMetric(m) => &m.group_by,
            _ => continue,
        };
        let Some(src) = entry.from().and_then(|f| catalog.get(f)) else {
            continue;
        };
        if src.derived || src.kind != dsl::ast::ObjectKind::Stream {
            continue;
        }
        let Some(key) = &src.output.key else { continue };
        if partitions(&src.output) <= 1 {
            continue;
        }
        let cols: Vec<&str> = by
            .iter()
            .filter_map(|e| match &e.kind {
                ExprKind::Path(p) if p.len() == 1 => Some(p[0].name.as_str()),
                _ => None,
            })
            .collect();
        if cols.iter().any(|c| c == key) {
            continue;
        }
        // Placed by the first column (its groups never span two values of it); a nested
        // field first, or no column: one partition. `dsl`'s key warning names the same.
        let col = match by.first().map(|e| &e.kind) {
            Some(ExprKind::Path(p)) if p.len() == 1 => Some(p[0].name.clone()),
            _ => None,
        };
        let stream = match &col {
            Some(c) => format!("{}.by.{c}", src.name),
            None => format!("{}.single", src.name),
        };
        match out.iter_mut().find(|r| r.stream == stream) {
            Some(r) => r.statements.push(entry.name.clone()),
            None => out.push(Repartition {
                source: src.name.clone(),
                by: col,
                stream,
                statements: vec![entry.name.clone()],
            }),
        }
    }
    out
}
