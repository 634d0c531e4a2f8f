//! End-to-end tests of `weir run`: the real binary, real files, real rules.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn weir(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    {
        let mut i = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            // weir may exit before reading everything (e.g. on statement errors).
            let _ = i.write_all(s.as_bytes());
        }
    }
    child.wait_with_output().expect("weir ends")
}

fn records(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every output line is JSON"))
        .collect()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

/// A field map with sorted keys, as text (Flink's rows and ours order keys differently).
fn norm(v: &Value) -> String {
    let m: BTreeMap<String, Value> = serde_json::from_value(v.clone()).expect("object");
    serde_json::to_string(&m).expect("json")
}

/// `weir run` over the Flink reference case gives exactly Flink's rows.
#[test]
fn flink_reference_case_through_the_binary() {
    let case = root().join("matcher/tests/data/conformance/cep-basic");
    let rules = case.join("rules.weir").display().to_string();
    let input = format!("act={}", case.join("events.ndjson").display());
    let out = weir(&["run", "--rules", &rules, "--input", &input], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for r in records(&out) {
        assert_eq!(r["id"].as_str().map(str::is_empty), Some(false));
        *got.entry(format!("{} {}", r["rule"], norm(&r["fields"])))
            .or_default() += 1;
    }
    let expected = std::fs::read_to_string(case.join("expected.ndjson")).expect("expected.ndjson");
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for l in expected.lines() {
        let r: Value = serde_json::from_str(l).expect("json");
        *want
            .entry(format!("{} {}", r["rule"], norm(&r["fields"])))
            .or_default() += 1;
    }
    assert!(!want.is_empty());
    assert_eq!(got, want);
}

/// Same inputs and statements → byte-identical output, ids included.
#[test]
fn output_is_deterministic() {
    let case = root().join("matcher/tests/data/conformance/cep-basic");
    let rules = case.join("rules.weir").display().to_string();
    let input = format!("act={}", case.join("events.ndjson").display());
    let a = weir(&["run", "--rules", &rules, "--input", &input], None);
    let b = weir(&["run", "--rules", &rules, "--input", &input], None);
    assert!(a.status.success());
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout);
}

const PAY: &str =
    "CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP) WITH (event_time = 'ts');
CREATE RULE two_big AS FROM pay PARTITION BY card PATTERN (b b) WITHIN 1 MINUTE
  DEFINE b AS amount > 100 MEASURES SUM(b.amount) AS total;";

/// Bad lines are reported with their line numbers and skipped; good ones still count.
#[test]
fn bad_lines_are_reported_and_skipped() {
    let d = tmpdir("bad");
    let rules = write(&d, "r.weir", PAY);
    let events = [
        r#"{"card":"c1","amount":200,"ts":1000}"#,
        r#"{"card":"c1","amount":"lots","ts":1500}"#,
        r#"not json"#,
        r#"{"card":"c1","amount":300}"#,
        r#"[1,2]"#,
        r#"{"card":"c1","amount":300,"ts":2000}"#,
    ]
    .join("\n");
    let out = weir(&["run", "--rules", &rules], Some(&events));
    assert_eq!(
        out.status.code(),
        Some(1),
        "rejected lines make exit code 1"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    for n in [2, 3, 4, 5] {
        assert!(
            err.contains(&format!("<stdin>:{n}: error")),
            "line {n}: {err}"
        );
    }
    assert!(
        !err.contains("<stdin>:1:") && !err.contains("<stdin>:6:"),
        "{err}"
    );
    assert!(err.contains("amount"), "names the column: {err}");
    let recs = records(&out);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["rule"], "two_big");
    assert_eq!(recs[0]["fields"]["total"], 500.0);
    assert_eq!(recs[0]["ts"], "1970-01-01T00:00:02.000Z");
}

/// Every kind of bad line gets the same report as before the fast decoder (the text
/// below is what the original `serde_json::Value` path printed), in line order, and the
/// good lines around them (duplicate keys, nested undeclared fields, CRLF, escapes,
/// numbers beyond u64) still count.
#[test]
fn bad_line_reports_are_exact() {
    let d = tmpdir("exact");
    let rules = write(&d, "r.weir", PAY);
    let mut input: Vec<u8> = [
        r#"{"card":"c1","amount":200,"ts":1000,"note":{"a":[1,{"b":null}]}}"#,
        "",
        "   ",
        r#"{"card":"c1","amount":1e999,"ts":1100}"#,
        r#"{"card":"c1","amount":"lots","ts":1200}"#,
        r#"{"card":"c1","amount":1,"amount":300,"ts":1300}"#,
        r#"{"card":"c1","amount":300} x"#,
        r#"{"card":"c1","ts":"2026-13-01T00:00:00Z"}"#,
        r#"{"card":"c1","amount":18446744073709551616,"ts":1400}"#,
        r#"{"card":"c1","amount":300}"#,
        r#""just a string""#,
    ]
    .join("\n")
    .into_bytes();
    input.extend_from_slice(b"\n\xff{\"card\":\"c1\"}\n");
    input.extend_from_slice(b"{\"card\":\"c\\u00e9\",\"amount\":500,\"ts\":1500}\r\n");
    input.extend_from_slice(b"{\"card\":\"c1\",\"amount\":300,\"ts\":2000}");
    let events = write(&d, "e.ndjson", "");
    std::fs::write(&events, &input).expect("write");
    let out = weir(
        &[
            "run",
            "--rules",
            &rules,
            "--input",
            &format!("pay={events}"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).replace(&events, "E");
    assert_eq!(
        err,
        "E:4: error: not valid JSON: number out of range at line 1 column 27; skipped
E:5: error: column `amount`: expected FLOAT, got a string \"lots\"; skipped
E:7: error: not valid JSON: trailing characters at line 1 column 28; skipped
E:8: error: column `ts`: expected TIMESTAMP (RFC 3339 like 2026-01-01T00:00:00Z, or epoch milliseconds), got \"2026-13-01T00:00:00Z\"; skipped
E:10: error: the event-time column `ts` is missing or null (the stream is ordered by it); skipped
E:11: error: an event must be a JSON object, got a string; skipped
E:12: error: not UTF-8 (invalid byte at column 1); skipped
weir run: 7 input line(s) rejected
"
    );
    let recs = records(&out);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0]["ts"], "1970-01-01T00:00:01.300Z");
    assert_eq!(
        recs[0]["fields"]["total"], 500.0,
        "duplicate key: the last wins"
    );
    assert_eq!(recs[1]["ts"], "1970-01-01T00:00:02.000Z");
    assert_eq!(recs[1]["fields"]["total"], 18446744073709551616.0 + 300.0);
}

/// Statements with errors: nothing runs, diagnostics point at the spot, exit code 1.
#[test]
fn statement_errors_stop_the_run() {
    let d = tmpdir("stmt");
    let rules = write(
        &d,
        "r.weir",
        "CREATE STREAM s (a INT);\nCREATE RULE r AS FROM s PATTERN (x y) DEFINE x AS b > 1;",
    );
    let out = weir(&["run", "--rules", &rules], Some("{\"a\":1}\n"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("r.weir:2:"), "{err}");
    assert!(out.stdout.is_empty());
}

/// A trailing absence is emitted at the end of input when the watermark moves to the end;
/// a rule can read another rule's output.
#[test]
fn absence_and_chained_rules() {
    let d = tmpdir("absence");
    let rules = write(
        &d,
        "r.weir",
        "CREATE STREAM orders (id STRING, kind STRING, ts TIMESTAMP) WITH (event_time = 'ts');
         CREATE RULE unpaid AS FROM orders PARTITION BY id PATTERN (c !p) WITHIN 30 MINUTES
           DEFINE c AS kind = 'created', p AS kind = 'paid'
           MEASURES c.ts AS created_at;
         CREATE RULE unpaid_twice AS FROM unpaid PATTERN (u u) WITHIN 1 DAY
           MEASURES FIRST(u.id) AS first_id, LAST(u.id) AS second_id;",
    );
    let events = [
        r#"{"id":"o1","kind":"created","ts":"2026-01-01T00:00:00Z"}"#,
        r#"{"id":"o2","kind":"created","ts":"2026-01-01T00:01:00Z"}"#,
        r#"{"id":"o2","kind":"paid","ts":"2026-01-01T00:05:00Z"}"#,
        r#"{"id":"o3","kind":"created","ts":"2026-01-01T00:10:00Z"}"#,
    ]
    .join("\n");
    let out = weir(&["run", "--rules", &rules], Some(&events));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out);
    let unpaid: Vec<_> = recs.iter().filter(|r| r["rule"] == "unpaid").collect();
    assert_eq!(unpaid.len(), 2, "{recs:?}");
    assert_eq!(unpaid[0]["fields"]["id"], "o1");
    assert_eq!(unpaid[0]["ts"], "2026-01-01T00:30:00.000Z");
    assert_eq!(unpaid[1]["fields"]["id"], "o3");
    let twice: Vec<_> = recs
        .iter()
        .filter(|r| r["rule"] == "unpaid_twice")
        .collect();
    assert_eq!(twice.len(), 1, "{recs:?}");
    assert_eq!(twice[0]["fields"]["first_id"], "o1");
    assert_eq!(twice[0]["fields"]["second_id"], "o3");
}

/// Searches: hits with highlights (byte ranges) and EMIT columns; equality filters.
#[test]
fn searches_with_highlights() {
    let d = tmpdir("search");
    let rules = write(
        &d,
        "r.weir",
        "CREATE STREAM news (lang STRING, body STRING, url STRING);
         CREATE SEARCH acme AS FROM news
           WHERE lang = 'en' AND body MATCHES '\"acme corp\" OR (acme AND recall*) -tiles'
           EMIT url;",
    );
    let events = [
        r#"{"lang":"en","body":"Acme Corp issues a recall","url":"u1"}"#,
        r#"{"lang":"de","body":"Acme Corp issues a recall","url":"u2"}"#,
        r#"{"lang":"en","body":"acme tiles recalled","url":"u3"}"#,
        r#"{"lang":"en","body":"Recalls hit ACME today","url":"u4"}"#,
        r#"{"lang":"en","body":"nothing here","url":"u5"}"#,
    ]
    .join("\n");
    let out = weir(&["run", "--rules", &rules], Some(&events));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out);
    let urls: Vec<_> = recs.iter().map(|r| r["fields"]["url"].clone()).collect();
    assert_eq!(urls, vec![Value::from("u1"), Value::from("u4")], "{recs:?}");
    assert_eq!(recs[0]["search"], "acme");
    assert_eq!(recs[0]["fields"].as_object().map(|m| m.len()), Some(1));
    // "Acme Corp" = bytes 0..4 and 5..9.
    let hl = &recs[0]["highlights"]["body"];
    assert!(
        hl.as_array().is_some_and(|a| a.contains(&json!([0, 4]))),
        "{hl}"
    );
    assert!(
        hl.as_array().is_some_and(|a| a.contains(&json!([5, 9]))),
        "{hl}"
    );
    // "Recalls hit ACME": recall* = 0..7, acme = 12..16.
    assert_eq!(recs[1]["highlights"]["body"], json!([[0, 7], [12, 16]]));
}

/// A search whose MATCHES sits under OR is evaluated in full (no presearcher shortcut).
#[test]
fn search_with_matches_under_or() {
    let d = tmpdir("search-or");
    let rules = write(
        &d,
        "r.weir",
        "CREATE STREAM news (lang STRING, title STRING, body STRING);
         CREATE SEARCH s AS FROM news
           WHERE title MATCHES 'storm' OR (lang = 'fr' AND body MATCHES 'orage');",
    );
    let events = [
        r#"{"lang":"en","title":"Storm warning","body":"x"}"#,
        r#"{"lang":"fr","title":"Alerte","body":"un orage arrive"}"#,
        r#"{"lang":"de","title":"Alerte","body":"un orage arrive"}"#,
    ]
    .join("\n");
    let out = weir(&["run", "--rules", &rules], Some(&events));
    assert!(out.status.success());
    let recs = records(&out);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0]["highlights"]["title"], json!([[0, 5]]));
    assert_eq!(recs[1]["highlights"]["body"], json!([[3, 8]]));
    // Without EMIT the whole event is output.
    assert_eq!(recs[1]["fields"]["lang"], "fr");
}

/// Metrics: tumbling windows close on the watermark; exact counts and sketches render as
/// the contract says; open windows close at the end of input.
#[test]
fn metric_windows() {
    let d = tmpdir("metric");
    let rules = write(
        &d,
        "r.weir",
        "CREATE STREAM req (path STRING, user_id STRING, ms FLOAT, ts TIMESTAMP)
           WITH (event_time = 'ts');
         CREATE METRIC per_min AS
           SELECT path, COUNT(*) AS n, APPROX_COUNT_DISTINCT(user_id) AS users,
                  APPROX_PERCENTILE(ms, 0.5) AS p50, APPROX_PERCENTILE(ms, 0.5, 0.99) AS lat,
                  APPROX_TOP_K(user_id, 2) AS top, APPROX_SET(user_id) AS seen
           FROM req GROUP BY path WINDOW TUMBLING (SIZE 1 MINUTE);",
    );
    let mut lines = Vec::new();
    for i in 0..120 {
        lines.push(format!(
            r#"{{"path":"/a","user_id":"u{}","ms":{},"ts":{}}}"#,
            i % 3,
            i + 1,
            i * 1000
        ));
    }
    let out = weir(&["run", "--rules", &rules], Some(&lines.join("\n")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out);
    assert_eq!(recs.len(), 2, "{recs:?}");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["metric"], "per_min");
        assert_eq!(r["final"], true);
        assert_eq!(r["group"]["path"], "/a");
        assert_eq!(r["values"]["n"], 60);
        assert_eq!(r["values"]["users"], 3);
        assert!(r["values"]["p50"].is_number());
        assert!(r["values"]["lat"]["0.99"].is_number());
        assert_eq!(r["values"]["top"].as_array().map(Vec::len), Some(2));
        assert_eq!(r["values"]["seen"]["approx_count"], 3);
        let start = format!("1970-01-01T00:0{i}:00.000Z");
        assert_eq!(r["window"]["start"], start.as_str());
    }
    let p50 = recs[0]["values"]["p50"].as_f64().unwrap_or(0.0);
    assert!((p50 - 30.0).abs() <= 1.0, "p50 of 1..60 within 1%: {p50}");
}

/// Every shipped example file compiles into the engine.
#[test]
fn shipped_rules_compile_into_the_engine() {
    for f in [
        "rules/fraud.weir",
        "rules/media.weir",
        "rules/dashboards.weir",
    ] {
        let out = weir(&["run", "--rules", f, "--input", "x=/dev/null"], None);
        // The unknown stream `x` is reported after the statements compiled (exit 2); a
        // statement or compile error would exit 1.
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{f}: {err}");
        assert!(err.contains("unknown stream `x`"), "{f}: {err}");
    }
}

/// `late = 'emit'`: a late event updates the retained window it belongs to, which is
/// emitted again marked late with a new id; `late = 'drop'` ignores it.
#[test]
fn late_events_correct_retained_metric_windows() {
    let d = tmpdir("late-metric");
    let stmts = |policy: &str| {
        format!(
            "CREATE STREAM s (v INT, ts TIMESTAMP) WITH (event_time = 'ts', late = '{policy}');
             CREATE METRIC m AS SELECT COUNT(*) AS n, SUM(v) AS total FROM s
               WINDOW TUMBLING (SIZE 1 MINUTE) WITH (retention = '1 hour');"
        )
    };
    let events = [
        r#"{"v":1,"ts":0}"#,
        r#"{"v":2,"ts":30000}"#,
        r#"{"v":4,"ts":61000}"#,
        r#"{"v":8,"ts":10000}"#,
    ]
    .join("\n");
    let emit = write(&d, "emit.weir", &stmts("emit"));
    let out = weir(&["run", "--rules", &emit], Some(&events));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out);
    assert_eq!(recs.len(), 3, "{recs:?}");
    assert_eq!(recs[0]["values"]["n"], 2);
    assert!(recs[0].get("late").is_none());
    assert_eq!(recs[1]["values"]["n"], 3, "corrected window: {recs:?}");
    assert_eq!(recs[1]["values"]["total"], 11);
    assert_eq!(recs[1]["late"], true);
    assert_eq!(recs[1]["window"], recs[0]["window"]);
    assert_ne!(recs[1]["id"], recs[0]["id"]);
    assert_eq!(recs[2]["values"]["n"], 1);

    let drop = write(&d, "drop.weir", &stmts("drop"));
    let out = weir(&["run", "--rules", &drop], Some(&events));
    let recs = records(&out);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0]["values"]["total"], 3);
}
