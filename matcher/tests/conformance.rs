//! Flink conformance: every case directory under `tests/data/conformance/` (made by
//! `flink_reference.py`: Flink 2.3 batch MATCH_RECOGNIZE) is run through weir's streaming
//! engine; per rule, weir's output rows must equal Flink's as multisets.
//!
//! A case may list rules in `known_differences.json` (`{"rule": "why"}`) where Flink 2.3
//! departs from SQL row-pattern semantics (it emits the match that completes first, across
//! overlapping start rows). Those rules are checked against the project's backtracking
//! reference of batch MATCH_RECOGNIZE (`tests/common`) instead: for them the reference
//! decides.

#![allow(clippy::unwrap_used)]

mod common;

use dsl::ast::StatementKind;
use dsl::check::Catalog;
use matcher::cep::{CepConfig, CepRule, CepRuleSet, PartitionState};
use matcher::value::RowDecoder;
use std::collections::BTreeMap;
use std::path::Path;

/// Flink renders numbers as Python would: ints as ints, DECIMAL/DOUBLE as floats. Render
/// every number as f64 text so 3 and 3.0 compare equal.
fn canon(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            let b: BTreeMap<&String, String> = m.iter().map(|(k, v)| (k, canon(v))).collect();
            format!("{b:?}")
        }
        serde_json::Value::Number(n) => format!("{}", n.as_f64().unwrap_or(f64::NAN)),
        // Flink prints TIMESTAMP(3) as `2026-03-01 00:03:10.393000`, weir as RFC 3339.
        serde_json::Value::String(s) => match matcher::value::parse_timestamp(s) {
            Some(ms) => format!("ts:{ms}"),
            None => format!("{s:?}"),
        },
        x => x.to_string(),
    }
}

fn run_dir(dir: &Path) -> Result<usize, String> {
    let src = std::fs::read_to_string(dir.join("rules.weir")).map_err(|e| e.to_string())?;
    let (stmts, diags) = dsl::parse::parse_statements(&src);
    if diags.iter().any(|d| d.is_error()) {
        return Err(format!("parse: {diags:?}"));
    }
    let mut catalog = Catalog::new();
    catalog.apply(&stmts).map_err(|d| format!("check: {d:?}"))?;
    let cfg = CepConfig::default();
    let mut stream = None;
    let mut rules = Vec::new();
    for s in &stmts {
        match &s.kind {
            StatementKind::CreateStream(cs) => stream = catalog.stream(&cs.name.name).cloned(),
            StatementKind::CreateRule(r) => {
                let input = catalog.stream(&r.from.name).ok_or("unknown stream")?;
                rules.push(
                    CepRule::compile(r, input, &cfg)
                        .map_err(|e| format!("{}: {e}", r.name.name))?,
                );
            }
            _ => {}
        }
    }
    let stream = stream.ok_or("no stream")?;
    let known: BTreeMap<String, String> =
        std::fs::read_to_string(dir.join("known_differences.json"))
            .ok()
            .map(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .transpose()?
            .unwrap_or_default();
    let asts: Vec<dsl::ast::CreateRule> = stmts
        .iter()
        .filter_map(|s| match &s.kind {
            StatementKind::CreateRule(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    let set = CepRuleSet::new(rules).map_err(|e| e.message)?;
    let decoder = RowDecoder::new(&stream);
    let mut st = PartitionState::new(0, &set);
    let mut out = Vec::new();
    let events = std::fs::read_to_string(dir.join("events.ndjson")).map_err(|e| e.to_string())?;
    let mut evs = Vec::new();
    for (i, line) in events.lines().enumerate() {
        let row = decoder
            .decode_str(line)
            .map_err(|e| format!("event {i}: {e}"))?;
        let ts = decoder.event_time(&row).ok_or("no event time")?;
        evs.push(common::Ev {
            row: row.clone(),
            ts,
            offset: i as u64,
        });
        st.process_with(
            &set,
            row,
            ts,
            i as u64,
            stream.max_delay_ms,
            stream.late,
            &mut out,
        );
    }
    st.finish(&set, &mut out);
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &out {
        let j = m.to_json();
        got.entry(m.rule.to_string())
            .or_default()
            .push(canon(&j["fields"]));
    }
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let expected =
        std::fs::read_to_string(dir.join("expected.ndjson")).map_err(|e| e.to_string())?;
    for line in expected.lines() {
        let j: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        want.entry(j["rule"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(canon(&j["fields"]));
    }
    let mut problems = Vec::new();
    let released = common::release_order(&stream, &evs);
    for r in set.rules() {
        let mut g = got.remove(r.name()).unwrap_or_default();
        let mut w = want.remove(r.name()).unwrap_or_default();
        if known.contains_key(r.name()) {
            // Flink departs from SQL here: compare with the reference implementation.
            let ast = asts
                .iter()
                .find(|a| a.name.name == r.name())
                .ok_or("rule AST")?;
            w = common::Reference::new(ast, &stream)
                .run(&released)
                .iter()
                .map(|m| canon(&m.to_json()["fields"]))
                .collect();
        }
        g.sort();
        w.sort();
        if g != w {
            let missing: Vec<_> = w.iter().filter(|x| !g.contains(x)).take(5).collect();
            let extra: Vec<_> = g.iter().filter(|x| !w.contains(x)).take(5).collect();
            problems.push(format!(
                "rule {}: weir {} rows, Flink {} rows\n  missing {missing:?}\n  extra {extra:?}",
                r.name(),
                g.len(),
                w.len()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    Ok(out.len())
}

#[test]
fn flink_conformance_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/conformance");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && p.join("rules.weir").exists()
                && p.join("expected.ndjson").exists()
        })
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    let mut failures = Vec::new();
    for d in &dirs {
        match run_dir(d) {
            Ok(n) => assert!(n > 0, "{d:?}: no output at all"),
            Err(e) => failures.push(format!("{}: {e}", d.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
