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

/// The `*.case` files of a folder, sorted.
fn case_paths(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "case"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn case_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let paths = case_paths(&dir);
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

/// What happened to one rule of a Trino case file.
struct RuleOutcome {
    name: String,
    /// `weir check` (parse + check) accepted the rule.
    checked: bool,
    /// Ok = the output (or the expected error) is Trino's.
    result: Result<(), String>,
    /// Accepted by check but refused by the engine's compiler (must never happen).
    check_not_run: Option<String>,
}

/// Runs each rule of a Trino case file on its own: the stream statement plus that rule
/// (one `CREATE` per line; `--` comment lines before a rule belong to it), compared with
/// the expected records of that rule (`{"rule", "error"}` = an expected error).
fn run_trino_file(path: &Path) -> Vec<RuleOutcome> {
    let text = std::fs::read_to_string(path).unwrap();
    let case = parse_case(&text);
    let creates: Vec<&str> = case
        .statements
        .lines()
        .filter(|l| l.starts_with("CREATE "))
        .collect();
    let stream_text = creates[0];
    let mut out = Vec::new();
    for rule_text in &creates[1..] {
        let name = rule_text
            .trim_start_matches("CREATE RULE ")
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let want: Vec<serde_json::Value> = case
            .expect
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["rule"] == name.as_str())
            .collect();
        let want_error = want
            .iter()
            .find_map(|v| v["error"].as_str().map(str::to_string));
        let src = format!("{stream_text}\n{rule_text}");
        let diags = Catalog::new().check_source(&src);
        let errors: Vec<String> = diags
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.message.clone())
            .collect();
        let checked = errors.is_empty();
        let mut outcome = RuleOutcome {
            name: name.clone(),
            checked,
            result: Ok(()),
            check_not_run: None,
        };
        // compile (only what check accepted can reach the engine)
        let compiled = if checked {
            let (stmts, _) = dsl::parse::parse_statements(&src);
            let mut catalog = Catalog::new();
            let _ = catalog.apply(&stmts[..1]);
            let base = catalog.stream("t").cloned().unwrap();
            let rule = stmts.iter().find_map(|s| match &s.kind {
                StatementKind::CreateRule(r) => Some(r.clone()),
                _ => None,
            });
            match rule.map(|r| CepRule::compile(&r, &base, &CepConfig::default())) {
                Some(Ok(c)) => Ok((c, base)),
                Some(Err(e)) => {
                    outcome.check_not_run = Some(e.message.clone());
                    Err(e.message)
                }
                None => Err("no rule".to_string()),
            }
        } else {
            Err(errors.join("; "))
        };
        outcome.result = match (compiled, want_error) {
            (Err(e), Some(w)) if e.contains(&w) => Ok(()),
            (Err(e), _) => Err(format!("refused: {e}")),
            (Ok(_), Some(w)) => Err(format!("accepted; Trino fails with {w:?}")),
            (Ok((c, base)), None) => {
                let set = CepRuleSet::new(vec![c]).unwrap();
                let decoder = RowDecoder::new(&base);
                let mut st = PartitionState::new(0, &set);
                let mut got_out = Vec::new();
                for (i, line) in case.events.iter().enumerate() {
                    let row = decoder.decode_str(line).unwrap();
                    let ts = decoder.event_time(&row).unwrap();
                    st.process_with(
                        &set,
                        row,
                        ts,
                        i as u64,
                        base.max_delay_ms,
                        base.late,
                        &mut got_out,
                    );
                }
                st.finish(&set, &mut got_out);
                let mut got: Vec<String> = got_out.iter().map(|m| normalize(render(m))).collect();
                let mut want: Vec<String> = want.into_iter().map(normalize).collect();
                got.sort();
                want.sort();
                if got == want {
                    Ok(())
                } else {
                    Err(format!("got {got:?}, want {want:?}"))
                }
            }
        };
        out.push(outcome);
    }
    out
}

/// Trino's row-pattern tests as weir rules (`tests/trino/`, see its README): every rule
/// either gives Trino's rows or is listed in `tests/trino/known_differences.txt` with the
/// reason. A listed rule that passes fails this test, so the count only goes up. Also
/// check ≡ run: no rule that `weir check` accepts may be refused by the engine.
#[test]
fn trino_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/trino");
    let known_text = std::fs::read_to_string(dir.join("known_differences.txt")).unwrap();
    let known: BTreeMap<String, String> = known_text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, why) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_string(), why.trim().to_string())
        })
        .collect();
    let paths = case_paths(&dir);
    let (mut total, mut passed) = (0, 0);
    let mut problems = Vec::new();
    let mut listed_seen = Vec::new();
    let mut report = String::new();
    for p in &paths {
        let file = p.file_stem().unwrap().to_string_lossy().to_string();
        for o in run_trino_file(p) {
            total += 1;
            let key = format!("{file}/{}", o.name);
            let listed = known.contains_key(&key);
            if listed {
                listed_seen.push(key.clone());
            }
            if let Some(e) = &o.check_not_run {
                problems.push(format!(
                    "{key}: `weir check` accepts it, the engine refuses: {e}"
                ));
            }
            match (&o.result, listed) {
                (Ok(()), false) => passed += 1,
                (Ok(()), true) => {
                    passed += 1;
                    problems.push(format!(
                        "{key} passes now: remove it from known_differences.txt"
                    ))
                }
                (Err(_), true) => {}
                (Err(e), false) => problems.push(format!("{key} fails: {e}")),
            }
            report.push_str(&format!(
                "{key}: {} (check {})\n",
                match &o.result {
                    Ok(()) => "pass".to_string(),
                    Err(e) => format!("FAIL: {}", e.chars().take(200).collect::<String>()),
                },
                if o.checked { "accepts" } else { "refuses" }
            ));
        }
    }
    for k in known.keys() {
        if !listed_seen.contains(k) {
            problems.push(format!(
                "{k} is listed in known_differences.txt but is no case"
            ));
        }
    }
    eprintln!("{report}Trino cases: {passed} of {total} pass");
    assert!(total >= 100, "Trino case files missing in {dir:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
