//! Differential test: `RowDecoder::decode_str` (fast path, text straight into a row) must
//! give exactly what `decode_str_reference` (text → serde_json::Value → row) gives, for
//! rows and for the error messages of bad lines.
#![allow(clippy::unwrap_used)]

use dsl::ast::DataType;
use dsl::plan::{LatePolicy, StreamDef};
use matcher::value::{RowDecoder, Value};
use proptest::prelude::*;

const COLUMNS: [(&str, DataType); 7] = [
    ("s", DataType::String),
    ("i", DataType::Int),
    ("f", DataType::Float),
    ("b", DataType::Bool),
    ("t", DataType::Timestamp),
    ("j", DataType::Json),
    ("esc\"k", DataType::String),
];

fn stream() -> StreamDef {
    StreamDef {
        name: "s".into(),
        columns: COLUMNS.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
        event_time: Some("t".into()),
        max_delay_ms: 0,
        idle_timeout_ms: dsl::plan::DEFAULT_IDLE_TIMEOUT_MS,
        late: LatePolicy::Drop,
        key: None,
        kafka_topic: None,
        partitions: None,
    }
}

fn cases() -> u32 {
    if std::env::var_os("WEIR_LONG_TESTS").is_some() {
        20_000
    } else {
        1_500
    }
}

/// JSON number spellings, valid and not.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|u| u.to_string()),
        (0i64..100).prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        (-1e6f64..1e6).prop_map(|f| f.to_string()),
        (0u32..40).prop_map(|n| format!("1{}", "0".repeat(n as usize))),
        (1u32..400).prop_map(|e| format!("1e{e}")),
        (1u32..400).prop_map(|e| format!("-2.5E-{e}")),
        Just("-0".to_string()),
        Just("-0.0".to_string()),
        Just("3.0".to_string()),
        Just("9007199254740993".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("9.0e18".to_string()),
        Just("01".to_string()),
        Just("1.".to_string()),
        Just(".5".to_string()),
        Just("+1".to_string()),
        Just("NaN".to_string()),
    ]
}

/// JSON string literals (with quotes), valid and not.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 _-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("\"2026-01-01T00:00:00.250Z\"".to_string()),
        Just("\"2026-01-01 01:00:00+01:00\"".to_string()),
        Just("\"2026-13-01T00:00:00Z\"".to_string()),
        Just("\"noon\"".to_string()),
        Just("\"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"bad \\x escape\"".to_string()),
        Just("\"raw\ttab\"".to_string()),
        Just("\"unterminated".to_string()),
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => number(),
        3 => string(),
        1 => Just("true".to_string()),
        1 => Just("false".to_string()),
        1 => Just("null".to_string()),
        1 => Just("tru".to_string()),
    ]
}

fn json_value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key(), inner), 0..4).prop_map(|v| {
                let body: Vec<String> = v.into_iter().map(|(k, x)| format!("{k}:{x}")).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["s", "i", "f", "b", "t", "j"]).prop_map(|k| format!("\"{k}\"")),
        1 => Just("\"esc\\\"k\"".to_string()),
        1 => Just("\"\\u0073\"".to_string()), // "s" spelled with an escape
        2 => "[a-z]{1,6}".prop_map(|k| format!("\"{k}\"")),
        1 => Just("\"\"".to_string()),
    ]
}

fn whitespace() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "", "", " ", "\t", "  \n "]).prop_map(str::to_string)
}

/// An object whose declared columns mostly hold values of their type (in any order, some
/// missing or null), plus undeclared fields.
fn typed_object() -> impl Strategy<Value = String> {
    let typed = prop_oneof![
        string().prop_map(|v| ("\"s\"".to_string(), v)),
        prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            (-1000i64..1000).prop_map(|i| format!("{i}.0")),
            number()
        ]
        .prop_map(|v| ("\"i\"".to_string(), v)),
        number().prop_map(|v| ("\"f\"".to_string(), v)),
        any::<bool>().prop_map(|b| ("\"b\"".to_string(), b.to_string())),
        prop_oneof![
            (0i64..4_000_000_000_000).prop_map(|ms| ms.to_string()),
            (0i64..4_000_000_000_000)
                .prop_map(|ms| format!("\"{}\"", matcher::value::format_timestamp(ms))),
            string()
        ]
        .prop_map(|v| ("\"t\"".to_string(), v)),
        json_value().prop_map(|v| ("\"j\"".to_string(), v)),
        string().prop_map(|v| ("\"esc\\\"k\"".to_string(), v)),
        (key(), json_value()),
        Just(("\"s\"".to_string(), "null".to_string())),
    ];
    prop::collection::vec(typed, 0..8).prop_map(|fields| {
        let body: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!("{{{}}}", body.join(", "))
    })
}

/// A whole line: mostly objects (sometimes with duplicate keys), sometimes other JSON, and
/// sometimes damaged text.
fn line() -> impl Strategy<Value = String> {
    let object = (
        prop::collection::vec((key(), json_value(), whitespace()), 0..9),
        whitespace(),
    )
        .prop_map(|(fields, ws)| {
            let body: Vec<String> = fields
                .into_iter()
                .map(|(k, v, w)| format!("{w}{k}{w}:{w}{v}{w}"))
                .collect();
            format!("{ws}{{{}}}{ws}", body.join(","))
        })
        .boxed();
    prop_oneof![
        6 => typed_object(),
        4 => object.clone(),
        1 => json_value(),
        1 => (object.clone(), any::<prop::sample::Index>()).prop_map(|(s, i)| {
            let cut = i.index(s.len() + 1);
            let mut cut = cut.min(s.len());
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s[..cut].to_string()
        }),
        1 => (object, prop::sample::select(vec!["x", ",", "}", "{}", " 1", "]"]))
            .prop_map(|(s, tail)| format!("{s}{tail}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn fast_path_equals_reference(line in line()) {
        let d = RowDecoder::new(&stream());
        // The fast path alone: whenever it answers, the reference agrees.
        if let Some(row) = d.decode_str_fast(&line) {
            prop_assert_eq!(Ok(row), d.decode_str_reference(&line), "line: {}", line);
        }
        let fast = d.decode_str(&line);
        let reference = d.decode_str_reference(&line);
        prop_assert_eq!(&fast, &reference, "line: {}", line);
        if let (Err(a), Err(b)) = (&fast, &reference) {
            prop_assert_eq!(a.to_string(), b.to_string());
        }
        if let (Ok(a), Ok(b)) = (&fast, &reference) {
            // Same undeclared fields in the same order.
            let ka: Vec<&String> = a.extra.keys().collect();
            let kb: Vec<&String> = b.extra.keys().collect();
            prop_assert_eq!(ka, kb);
            prop_assert_eq!(d.event_time(a), d.event_time(b));
        }
    }
}

#[test]
fn typical_events_take_the_fast_path_and_match() {
    let d = RowDecoder::new(&stream());
    for line in [
        r#"{"s": "a", "i": 3, "f": 2.5, "b": true, "t": "2026-01-01T00:00:00.250Z", "j": 7, "more": "x"}"#,
        r#"{"t": 1000, "i": 3.0, "f": -2e3, "s": null, "x": -0, "y": 0.001}"#,
        r#" { } "#,
        r#"{"s": "a", "i": 3, "f": 2.5, "b": true, "t": "2026-01-01T00:00:00.250Z", "j": {"k": [1, 2]}, "more": {"x": null}}"#,
        r#"{"t": 1000, "i": 3.0, "f": 2, "s": "a\"b"}"#,
        r#"{}"#,
    ] {
        assert_eq!(
            d.decode_str_fast(line).map(Ok),
            Some(d.decode_str_reference(line)),
            "{line}"
        );
    }
}

/// The generator must exercise the fast path, not only the fallback.
#[test]
fn generated_lines_often_take_the_fast_path() {
    use proptest::strategy::ValueTree;
    let d = RowDecoder::new(&stream());
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = line();
    let (mut fast, mut ok) = (0, 0);
    for _ in 0..2_000 {
        let l = strategy.new_tree(&mut runner).unwrap().current();
        fast += d.decode_str_fast(&l).is_some() as u32;
        ok += d.decode_str_reference(&l).is_ok() as u32;
    }
    assert!(fast >= 300, "only {fast} of 2000 lines took the fast path");
    assert!(ok >= fast);
    assert!(ok < 2_000, "no bad lines generated");
}

#[test]
fn bad_lines_keep_their_messages() {
    let d = RowDecoder::new(&stream());
    let msg = |l: &str| d.decode_str(l).unwrap_err().to_string();
    assert_eq!(
        msg(r#"{"i": "three"}"#),
        "column `i`: expected INT, got a string \"three\""
    );
    assert_eq!(
        msg(r#"{"i": 2.5}"#),
        "column `i`: expected INT, got a number 2.5"
    );
    assert_eq!(
        msg(r#"{"i": 18446744073709551615}"#),
        "column `i`: expected INT, got a number 18446744073709551615"
    );
    assert_eq!(msg("[1]"), "an event must be a JSON object, got an array");
    assert!(msg("{").starts_with("not valid JSON: EOF while parsing"));
    assert!(msg(r#"{"s": "a"} x"#).starts_with("not valid JSON: trailing characters"));
    // Duplicate keys: the last one wins, as in the reference.
    let r = d.decode_str(r#"{"i": "bad", "i": 7}"#).unwrap();
    assert_eq!(r.values[1], matcher::value::Value::Int(7));
    // Deep nesting: serde_json's recursion limit, the same message either way.
    let deep = format!("{{\"j\": {}{}}}", "[".repeat(200), "]".repeat(200));
    assert_eq!(d.decode_str(&deep), d.decode_str_reference(&deep));
    assert!(msg(&deep).contains("recursion limit"));
    // Invalid UTF-8 on the byte entry point.
    assert_eq!(
        d.decode_bytes(b"{\"s\": \"\xff\"}")
            .unwrap_err()
            .to_string(),
        "not UTF-8 (invalid byte at column 8)"
    );
}

/// Number spellings through the fast path: the same `f64` bits, the same INT and
/// TIMESTAMP coercions and the same undeclared JSON numbers as the reference.
fn short_number() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        0u64..10_000_000,
        prop::option::of("[0-9]{1,10}"),
        prop::option::of((
            prop::sample::select(vec!["e", "E"]),
            prop::sample::select(vec!["", "+", "-"]),
            0u32..40,
        )),
    )
        .prop_map(|(neg, int, frac, exp)| {
            let mut s = String::new();
            if neg {
                s.push('-');
            }
            s.push_str(&int.to_string());
            if let Some(f) = frac {
                s.push('.');
                s.push_str(&f);
            }
            if let Some((e, sign, x)) = exp {
                s.push_str(&format!("{e}{sign}{x}"));
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn fast_path_numbers_equal_reference(n in short_number()) {
        let d = RowDecoder::new(&stream());
        for line in [
            format!(r#"{{"f": {n}}}"#),
            format!(r#"{{"i": {n}}}"#),
            format!(r#"{{"j": {n}, "other": {n}}}"#),
            format!(r#"{{"t": {n}}}"#),
        ] {
            let reference = d.decode_str_reference(&line);
            if let Some(row) = d.decode_str_fast(&line) {
                let want = reference.clone().unwrap();
                // Bit-exact floats (PartialEq would let -0.0 == 0.0 pass).
                for (a, b) in row.values.iter().zip(&want.values) {
                    if let (Value::Float(x), Value::Float(y)) = (a, b) {
                        prop_assert_eq!(x.to_bits(), y.to_bits(), "{}", line);
                    }
                }
                prop_assert_eq!(Ok(row), reference, "{}", line);
            }
            prop_assert_eq!(d.decode_str(&line), d.decode_str_reference(&line));
        }
    }
}

/// `Engine::ingest_bytes` (text straight into rows) gives the same outputs and the same
/// errors as parsing the text and calling `Engine::ingest`.
#[test]
fn engine_ingest_bytes_equals_ingest() {
    use matcher::engine::{Engine, EngineConfig};
    let src = "CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP, meta JSON)
  WITH (event_time = 'ts', max_delay = '1 second');
CREATE RULE two_big AS FROM pay PARTITION BY card PATTERN (b b) WITHIN 1 MINUTE
  DEFINE b AS amount > 100 AND meta.kind = 'web' MEASURES SUM(b.amount) AS total, LAST(b.meta.kind) AS kind;";
    let mut catalog = dsl::check::Catalog::new();
    let diags = catalog.check_source(src);
    assert!(!diags.iter().any(|d| d.is_error()), "{diags:?}");
    let lines = [
        r#"{"card":"c1","amount":200,"ts":1000,"meta":{"kind":"web"},"note":"a"}"#,
        r#"{"card":"c1","amount":"lots","ts":1100}"#,
        r#"{"card":"c2","amount":500,"ts":1200,"meta":{"kind":"web"}}"#,
        r#"{"card":"c1","amount":300,"ts":1300,"meta":{"kind":"web"},"note":"b\u00e9"}"#,
        r#"{"card":"c1","amount":300}"#,
        r#"{"card":"c2","amount":1e2,"amount":700,"ts":1400,"meta":{"kind":"web"}}"#,
        r#"[1]"#,
        r#"{"card":"c3","amount":101,"ts":"2026-01-01T00:00:00Z","meta":{"kind":"app"}}"#,
    ];
    let mut a = Engine::new(&catalog, 0, &EngineConfig::default()).unwrap();
    let mut b = Engine::new(&catalog, 0, &EngineConfig::default()).unwrap();
    let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
    for (i, l) in lines.iter().enumerate() {
        let json: serde_json::Value = serde_json::from_str(l).unwrap();
        let ra = a.ingest("pay", i as u64, &json, 0, &mut out_a);
        let rb = b.ingest_bytes("pay", i as u64, l.as_bytes(), 0, &mut out_b);
        assert_eq!(
            ra.map_err(|e| e.to_string()),
            rb.map_err(|e| e.to_string()),
            "{l}"
        );
    }
    a.finish(&mut out_a);
    b.finish(&mut out_b);
    assert!(!out_a.is_empty());
    assert_eq!(out_a, out_b);
    assert_eq!(a.counters("pay"), b.counters("pay"));
    let e = b
        .ingest_bytes("pay", 99, b"{not json", 0, &mut out_b)
        .unwrap_err();
    assert!(e.to_string().starts_with("not valid JSON: "), "{e}");
}
