//! Case files: `tests/cases/*.case`, each with statements, input events and the expected
//! output records. Sections:
//!
//! ```text
//! == statements      weir statements (one CREATE STREAM, rules reading it or each other)
//! == events          NDJSON input events of the stream, in arrival order (offset = line)
//! == expect          NDJSON expected records: {"rule", "ts", "fields"} (+ "late": true)
//! == error           instead of events/expect: a substring of the expected compile error
//! ```
//!
//! Lines starting with `--` outside the statements are comments. Outputs are compared as
//! multisets. Rules reading FROM another rule get that rule's output records as input,
//! ordered by `ts`.

#![allow(clippy::unwrap_used)]

mod common;

use dsl::ast::StatementKind;
use dsl::check::Catalog;
use matcher::cep::{CepConfig, CepRule, CepRuleSet, MatchOutput, PartitionState};
use matcher::value::RowDecoder;
use std::collections::BTreeMap;
use std::path::Path;

struct Case {
    statements: String,
    events: Vec<String>,
    expect: Vec<String>,
    error: Option<String>,
}

fn parse_case(text: &str) -> Case {
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cur = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("== ") {
            cur = h.trim().to_string();
            sections.entry(cur.clone()).or_default();
            continue;
        }
        if cur != "statements" && (line.trim().is_empty() || line.trim_start().starts_with("--")) {
            continue;
        }
        sections
            .entry(cur.clone())
            .or_default()
            .push(line.to_string());
    }
    Case {
        statements: sections
            .get("statements")
            .map(|l| l.join("\n"))
            .unwrap_or_default(),
        events: sections.get("events").cloned().unwrap_or_default(),
        expect: sections.get("expect").cloned().unwrap_or_default(),
        error: sections
            .get("error")
            .map(|l| l.join(" ").trim().to_string()),
    }
}

fn render(m: &MatchOutput) -> serde_json::Value {
    let mut j = m.to_json();
    let o = j.as_object_mut().unwrap();
    o.remove("id");
    j
}

/// Canonical text: object keys sorted, whatever serde_json's map order is.
fn normalize(v: serde_json::Value) -> String {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let b: BTreeMap<String, serde_json::Value> =
                    m.into_iter().map(|(k, v)| (k, sort(v))).collect();
                serde_json::to_value(b).unwrap()
            }
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(sort).collect())
            }
            x => x,
        }
    }
    let b = sort(v);
    match &b {
        serde_json::Value::Object(m) => {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
            format!("{{{}}}", parts.join(","))
        }
        x => x.to_string(),
    }
}

fn run_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case = parse_case(&text);
    let (stmts, diags) = dsl::parse::parse_statements(&case.statements);
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
    if !errors.is_empty() {
        return Err(format!("parse errors: {errors:?}"));
    }
    let mut catalog = Catalog::new();
    let check = catalog.apply(&stmts);
    let cfg = CepConfig::default();
    // compile rules in statement order
    let mut compiled: Vec<(String, CepRule)> = Vec::new();
    let mut outputs_of: BTreeMap<String, dsl::plan::StreamDef> = BTreeMap::new();
    let mut compile_err = None;
    let mut base_stream = None;
    if let Err(d) = &check {
        compile_err = Some(
            d.iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    if compile_err.is_none() {
        for s in &stmts {
            match &s.kind {
                StatementKind::CreateStream(cs) => {
                    base_stream = catalog.stream(&cs.name.name).cloned();
                }
                StatementKind::CreateRule(r) => {
                    let input = outputs_of
                        .get(&r.from.name)
                        .cloned()
                        .or_else(|| catalog.stream(&r.from.name).cloned())
                        .ok_or("unknown input")?;
                    match CepRule::compile(r, &input, &cfg) {
                        Ok(c) => {
                            outputs_of.insert(r.name.name.clone(), c.output_stream());
                            compiled.push((r.from.name.clone(), c));
                        }
                        Err(e) => {
                            compile_err = Some(e.message);
                            break;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(want) = &case.error {
        return match compile_err {
            Some(got) if got.contains(want.as_str()) => Ok(()),
            other => Err(format!("expected error containing {want:?}, got {other:?}")),
        };
    }
    if let Some(e) = compile_err {
        return Err(format!("compile error: {e}"));
    }
    let base = base_stream.ok_or("no CREATE STREAM")?;
    // input of each stream: (row, ts)
    let decoder = RowDecoder::new(&base);
    let mut inputs: BTreeMap<String, Vec<(matcher::value::Row, i64)>> = BTreeMap::new();
    let mut base_rows = Vec::new();
    for (i, line) in case.events.iter().enumerate() {
        let row = decoder
            .decode_str(line)
            .map_err(|e| format!("event {i}: {e}"))?;
        let ts = decoder
            .event_time(&row)
            .ok_or(format!("event {i}: no event time"))?;
        base_rows.push((row, ts));
    }
    inputs.insert(base.name.clone(), base_rows);
    let mut all_out = Vec::new();
    // process streams in dependency order: base first, then each rule's output
    let mut order = vec![base.name.clone()];
    for (_, c) in &compiled {
        order.push(c.name().to_string());
    }
    let mut stream_defs = outputs_of.clone();
    stream_defs.insert(base.name.clone(), base.clone());
    for sname in order {
        let readers: Vec<CepRule> = compiled
            .iter()
            .filter(|(from, _)| *from == sname)
            .map(|(_, c)| c.clone())
            .collect();
        if readers.is_empty() {
            continue;
        }
        let set = CepRuleSet::new(readers).map_err(|e| e.message)?;
        let sdef = &stream_defs[&sname];
        let mut st = PartitionState::new(0, &set);
        let mut out = Vec::new();
        let rows = inputs.remove(&sname).unwrap_or_default();
        for (i, (row, ts)) in rows.into_iter().enumerate() {
            st.process_with(
                &set,
                row,
                ts,
                i as u64,
                sdef.max_delay_ms,
                sdef.late,
                &mut out,
            );
        }
        st.finish(&set, &mut out);
        for m in &out {
            let od = &outputs_of[&*m.rule];
            inputs
                .entry(m.rule.to_string())
                .or_default()
                .push((m.to_row(od), m.ts));
        }
        for v in inputs.values_mut() {
            v.sort_by_key(|(_, ts)| *ts);
        }
        all_out.extend(out);
    }
    let mut got: Vec<String> = all_out.iter().map(|m| normalize(render(m))).collect();
    let mut want: Vec<String> = case
        .expect
        .iter()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad expect line {l}: {e}"));
            normalize(v)
        })
        .collect();
    got.sort();
    want.sort();
    if got != want {
        let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
        let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).collect();
        return Err(format!(
            "output differs\n missing: {missing:#?}\n unexpected: {extra:#?}"
        ));
    }
    Ok(())
}

#[test]
fn case_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "case"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 20, "case files missing in {dir:?}");
    let mut failures = Vec::new();
    for p in &paths {
        if let Err(e) = run_case(p) {
            failures.push(format!("{}: {e}", p.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
}
