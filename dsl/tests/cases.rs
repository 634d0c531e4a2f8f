//! The case-file suite: every `tests/cases/*.case` file holds small cases of statement text
//! with the expected canonical text or the expected diagnostics. Format: tests/cases/README.md.
//! Run one case with `WEIR_CASE=<substring of its name> cargo test -p dsl --test cases`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dsl::ast::Statement;
use dsl::check::Catalog;
use dsl::error::{line_col, Diagnostic, Severity};
use std::path::Path;

#[derive(Debug)]
enum Expect {
    /// Parses and checks without errors.
    Ok,
    /// Parses and checks without errors, and prints back as this text.
    Canonical(String),
}

#[derive(Debug)]
struct Expected {
    severity: Severity,
    line: usize,
    col: usize,
    text: String,
}

#[derive(Debug)]
struct Case {
    file: String,
    name: String,
    /// 1-based line of the `===` header in its file.
    at: usize,
    input: String,
    expect: Option<Expect>,
    diags: Vec<Expected>,
}

fn parse_case_file(file: &str, text: &str) -> Result<Vec<Case>, String> {
    let mut cases: Vec<Case> = Vec::new();
    // 0 = input, 1 = canonical text, 2 = other expectations
    let mut mode = 0;
    for (n, line) in text.lines().enumerate() {
        let lineno = n + 1;
        if let Some(name) = line.strip_prefix("===") {
            cases.push(Case {
                file: file.to_string(),
                name: name.trim().to_string(),
                at: lineno,
                input: String::new(),
                expect: None,
                diags: Vec::new(),
            });
            mode = 0;
            continue;
        }
        let Some(case) = cases.last_mut() else {
            if line.trim().is_empty() || line.starts_with("#") {
                continue;
            }
            return Err(format!(
                "{file}:{lineno}: text before the first `=== name` line"
            ));
        };
        if let Some(rest) = line.strip_prefix("-- expect") {
            let (kind, arg) = rest
                .split_once(':')
                .ok_or_else(|| format!("{file}:{lineno}: expected `-- expect…: …`"))?;
            let arg = arg.trim();
            match kind {
                "" if arg == "ok" => {
                    case.expect = Some(Expect::Ok);
                    mode = 2;
                }
                "" if arg == "canonical" => {
                    case.expect = Some(Expect::Canonical(String::new()));
                    mode = 1;
                }
                "-error" | "-warning" => {
                    let (pos, msg) = arg.split_once(' ').unwrap_or((arg, ""));
                    let (l, c) = pos
                        .split_once(':')
                        .and_then(|(l, c)| Some((l.parse().ok()?, c.parse().ok()?)))
                        .ok_or_else(|| {
                            format!("{file}:{lineno}: expected LINE:COL, found `{pos}`")
                        })?;
                    case.diags.push(Expected {
                        severity: if kind == "-error" {
                            Severity::Error
                        } else {
                            Severity::Warning
                        },
                        line: l,
                        col: c,
                        text: msg.trim().to_string(),
                    });
                    mode = 2;
                }
                _ => return Err(format!("{file}:{lineno}: unknown expectation `{line}`")),
            }
            continue;
        }
        match mode {
            0 => {
                case.input.push_str(line);
                case.input.push('\n');
            }
            1 => {
                if let Some(Expect::Canonical(c)) = &mut case.expect {
                    c.push_str(line);
                    c.push('\n');
                }
            }
            _ => {
                if !line.trim().is_empty() {
                    return Err(format!(
                        "{file}:{lineno}: unexpected text after the expectations of `{}`",
                        case.name
                    ));
                }
            }
        }
    }
    for c in &cases {
        if c.expect.is_none() && c.diags.is_empty() {
            return Err(format!(
                "{file}:{}: case `{}` expects nothing",
                c.at, c.name
            ));
        }
    }
    Ok(cases)
}

/// Canonical text of statements: each printed by `Display`, one per line, ending in `;`.
fn print(statements: &[Statement]) -> String {
    let mut out = String::new();
    for s in statements {
        let t = s.to_string();
        let t = t.trim_end();
        out.push_str(t);
        if !t.ends_with(';') {
            out.push(';');
        }
        out.push('\n');
    }
    out
}

fn describe(d: &Diagnostic, src: &str) -> String {
    let (l, c) = line_col(src, d.span.start);
    let sev = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    format!("{sev} {l}:{c} {}", d.message)
}

fn run(case: &Case) -> Result<(), String> {
    let src = &case.input;
    let (statements, mut diags) = dsl::parse::parse_statements(src);
    let parsed_ok = diags.iter().all(|d| !d.is_error());
    let mut catalog = Catalog::new();
    if parsed_ok {
        match catalog.apply(&statements) {
            Ok(applied) => diags.extend(applied.warnings),
            Err(d) => diags.extend(d),
        }
    } else {
        // As `weir check` does: check what parsed, leniently.
        diags.extend(catalog.check_batch(&statements).1);
    }
    let all: Vec<String> = diags.iter().map(|d| describe(d, src)).collect();
    // Every expected diagnostic is found…
    for e in &case.diags {
        let found = diags.iter().any(|d| {
            let (l, c) = line_col(src, d.span.start);
            d.severity == e.severity && l == e.line && c == e.col && d.message.contains(&e.text)
        });
        if !found {
            return Err(format!(
                "expected {} {}:{} containing `{}`; got: {:#?}",
                if e.severity == Severity::Error {
                    "error"
                } else {
                    "warning"
                },
                e.line,
                e.col,
                e.text,
                all
            ));
        }
    }
    // …and every error is expected.
    for d in diags.iter().filter(|d| d.is_error()) {
        let (l, c) = line_col(src, d.span.start);
        let expected = case.diags.iter().any(|e| {
            e.severity == Severity::Error
                && e.line == l
                && e.col == c
                && d.message.contains(&e.text)
        });
        if !expected {
            return Err(format!("unexpected {}", describe(d, src)));
        }
    }
    if let Some(Expect::Canonical(want)) = &case.expect {
        let got = print(&statements);
        if got.trim_end() != want.trim_end() {
            return Err(format!(
                "canonical text differs:\n--- want\n{want}--- got\n{got}"
            ));
        }
        // The canonical text means the same thing.
        let (again, d2) = dsl::parse::parse_statements(&got);
        if d2.iter().any(Diagnostic::is_error) {
            return Err(format!("canonical text does not parse: {d2:?}"));
        }
        if again != statements {
            return Err("canonical text parses to a different tree".to_string());
        }
    }
    Ok(())
}

#[test]
fn case_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no case files in {}", dir.display());
    let filter = std::env::var("WEIR_CASE").ok();
    let mut failures = Vec::new();
    let mut count = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        let cases = match parse_case_file(&name, &text) {
            Ok(c) => c,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        for c in cases {
            if filter
                .as_ref()
                .is_some_and(|f| !c.name.contains(f.as_str()))
            {
                continue;
            }
            count += 1;
            if let Err(why) = run(&c) {
                failures.push(format!("{}:{} `{}`: {why}", c.file, c.at, c.name));
            }
        }
    }
    eprintln!("{count} cases run");
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    if filter.is_none() {
        assert!(count >= 100, "only {count} cases");
    }
}

#[test]
fn the_runner_catches_a_wrong_expectation() {
    let cases = parse_case_file(
        "t.case",
        "=== wrong position\nDROP STREAM nope;\n-- expect-error: 1:2 unknown\n",
    )
    .unwrap();
    assert_eq!(cases.len(), 1);
    assert!(run(&cases[0]).is_err());
    let cases = parse_case_file(
        "t.case",
        "=== right position\nDROP STREAM nope;\n-- expect-error: 1:13 unknown stream\n",
    )
    .unwrap();
    run(&cases[0]).unwrap();
}

/// Mangled inputs (every case cut short, or with a piece removed) never make parse or check
/// panic, and every diagnostic points inside the text and renders.
#[test]
fn mangled_cases_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let long = std::env::var("WEIR_LONG_TESTS").is_ok();
    let mut runs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "case") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for case in parse_case_file(&name, &text).unwrap() {
            let src = &case.input;
            let step = if long { 1 } else { (src.len() / 12).max(1) };
            let cuts: Vec<usize> = (0..src.len())
                .step_by(step)
                .filter(|&i| src.is_char_boundary(i))
                .collect();
            for (k, &i) in cuts.iter().enumerate() {
                let j = cuts.get(k + 1).copied().unwrap_or(src.len());
                for mangled in [src[..i].to_string(), format!("{}{}", &src[..i], &src[j..])] {
                    runs += 1;
                    let diags = Catalog::new().check_source(&mangled);
                    for d in &diags {
                        assert!(
                            d.span.start <= d.span.end && d.span.end <= mangled.len(),
                            "{}: span {:?} outside {} bytes for {mangled:?}: {}",
                            case.name,
                            d.span,
                            mangled.len(),
                            d.message
                        );
                        let _ = d.render("m.weir", &mangled);
                    }
                }
            }
        }
    }
    assert!(runs > 1000, "{runs}");
}
