//! Tricky and hostile inputs: every one gives diagnostics (at the expected line:column for
//! the stored files in `tests/corpus/`) and none panics, overflows the stack or hangs.
//! This is also the CI stand-in for the cargo-fuzz target (see docs/fuzzing.md).

#![allow(clippy::unwrap_used)]

use dsl::parse::limits::*;
use dsl::parse::parse_statements;
use dsl::{Diagnostic, Severity};

/// 1-based line and column (in characters) of a byte offset.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap().chars().count() + 1;
    (line, col)
}

fn errors(diags: &[Diagnostic]) -> Vec<&Diagnostic> {
    diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

/// `(line, column, message substring)` of one expected error.
type Expect = (usize, usize, &'static str);

/// `(file, statements that parse, expected errors)`.
const CORPUS: &[(&str, usize, &[Expect])] = &[
    ("empty.weir", 0, &[]),
    ("only_comments.weir", 0, &[]),
    (
        "unterminated_string.weir",
        1,
        &[(2, 37, "unterminated string")],
    ),
    (
        "unterminated_comment.weir",
        1,
        &[(2, 25, "unterminated comment")],
    ),
    (
        "unterminated_comment_between.weir",
        1,
        &[(2, 1, "unterminated comment")],
    ),
    (
        "unterminated_quoted_ident.weir",
        0,
        &[(1, 15, "unterminated quoted identifier")],
    ),
    (
        "missing_semicolon.weir",
        0,
        &[
            (
                2,
                1,
                "expected `WITH` or `;` at the end of the statement, found word `CREATE`",
            ),
            (3, 24, "found end of input"),
        ],
    ),
    (
        "huge_numbers.weir",
        2,
        &[
            (
                1,
                37,
                "integer `99999999999999999999999999` is out of range",
            ),
            (3, 37, "number `1e999` is out of range"),
            (4, 36, "repeat count `99999999999999` is too large"),
            (5, 35, "lower bound exceeds the upper bound"),
            (6, 44, "duration out of range"),
            (7, 53, "INTERVAL value must be a non-negative number"),
            (9, 44, "whole number of milliseconds"),
        ],
    ),
    (
        "unicode.weir",
        2,
        &[
            (3, 15, "non-ASCII letter"),
            (4, 39, "found unexpected character `→`"),
        ],
    ),
    (
        "recovery.weir",
        2,
        &[
            (
                1,
                24,
                "expected `)` or `,` after column definition, found word `b`",
            ),
            (2, 8, "unknown keyword `TABLE`"),
            (4, 41, "expected `)` to close PATTERN"),
            (
                5,
                47,
                "expected a duration like `10 MINUTES` or `INTERVAL '10' MINUTE`",
            ),
            (6, 50, "unknown time unit `FORTNIGHTS`"),
            (7, 21, "unknown type `BLOB`"),
            (8, 40, "expected an expression, found `;`"),
            (9, 58, "unknown keyword `WEEKLY`"),
            (
                10,
                1,
                "unknown keyword `SELECT`: expected a statement: CREATE or DROP",
            ),
        ],
    ),
    ("keywords_case.weir", 4, &[]),
    (
        "unsupported_patterns.weir",
        5,
        &[],
    ),
    (
        "clause_order.weir",
        0,
        &[
            (1, 57, "`WITHIN` is out of place: a rule's clauses are expected in the order FROM, PARTITION BY, PATTERN, WITHIN"),
            (2, 55, "`DEFINE` is out of place"),
            (3, 63, "`MEASURES` is out of place: a rule's clauses are expected in the order PARTITION BY, ORDER BY, MEASURES"),
            (4, 81, "`WITHIN` is out of place"),
            (5, 56, "expected `NEXT ROW`, `FIRST var`, `LAST var` or a pattern variable, found `;`"),
            (6, 49, "expected `AS name` after the measure expression"),
            (7, 15, "expected `AS`, found keyword `FROM`"),
            (8, 33, "expected `(`, found word `A`"),
        ],
    ),
    (
        "flink_ddl.weir",
        0,
        &[
            (1, 42, "WATERMARK FOR is written as stream options"),
            (2, 25, "PRIMARY KEY is not supported"),
            (
                3,
                24,
                "expected a column definition like `amount FLOAT`, found `)`",
            ),
            (4, 18, "expected a column definition"),
        ],
    ),
    (
        "bad_tokens.weir",
        0,
        &[
            (1, 37, "expected an expression, found `@`"),
            (2, 38, "found `)`"),
            (3, 39, "found `#`"),
            (4, 36, "a quantifier cannot follow another quantifier"),
            (5, 36, "cannot apply to an absence"),
            (6, 34, "expected a pattern variable or `(`, found `|`"),
            (7, 36, "expected a repeat count"),
            (8, 37, "`.*` can only follow a pattern variable name"),
            (9, 33, "empty quoted identifier"),
            (
                10,
                37,
                "INTERVAL is only allowed where a duration is expected",
            ),
        ],
    ),
];

#[test]
fn corpus_files_give_the_expected_diagnostics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("weir") {
            seen += 1;
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            assert!(
                CORPUS.iter().any(|(f, _, _)| *f == name),
                "{name} has no expectations in corpus.rs"
            );
        }
    }
    assert_eq!(seen, CORPUS.len());
    for (file, n_ok, want) in CORPUS {
        let src = std::fs::read_to_string(dir.join(file)).unwrap();
        let (stmts, diags) = parse_statements(&src);
        let errs = errors(&diags);
        let got: Vec<(usize, usize, &str)> = errs
            .iter()
            .map(|d| {
                let (l, c) = line_col(&src, d.span.start);
                (l, c, d.message.as_str())
            })
            .collect();
        assert_eq!(got.len(), want.len(), "{file}: {got:#?}");
        for ((gl, gc, gm), (wl, wc, wm)) in got.iter().zip(want.iter()) {
            assert_eq!((gl, gc), (wl, wc), "{file}: {gm}");
            assert!(gm.contains(wm), "{file}:{gl}:{gc}: {gm:?} lacks {wm:?}");
        }
        assert_eq!(stmts.len(), *n_ok, "{file}");
        for d in &diags {
            assert!(d.span.start <= d.span.end && d.span.end <= src.len());
            assert!(src.is_char_boundary(d.span.start) && src.is_char_boundary(d.span.end));
        }
    }
}

/// Parse on a thread with a small stack, like a test thread or a server worker.
fn parse_small_stack(src: String) -> (usize, Vec<Diagnostic>) {
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let (s, d) = parse_statements(&src);
            (s.len(), d)
        })
        .unwrap()
        .join()
        .unwrap()
}

fn single_error(src: String, needle: &str) {
    let (n, diags) = parse_small_stack(src);
    assert_eq!(n, 0);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(
        diags[0].message.contains(needle),
        "{:?} lacks {needle:?}",
        diags[0].message
    );
}

#[test]
fn deep_parentheses_are_refused_not_overflowed() {
    let n = 100_000;
    let src = format!(
        "CREATE SEARCH s AS FROM x WHERE {}a{};",
        "(".repeat(n),
        ")".repeat(n)
    );
    single_error(src, "nested too deeply");
    let src = format!(
        "CREATE RULE r AS FROM s PATTERN ({}A{});",
        "(".repeat(n),
        ")".repeat(n)
    );
    single_error(src, "nested too deeply");
    // Unbalanced: only opening parentheses.
    single_error(
        format!("CREATE SEARCH s AS FROM x WHERE {}", "(".repeat(n)),
        "nested too deeply",
    );
}

#[test]
fn nesting_just_under_the_limit_parses_on_a_small_stack() {
    let d = MAX_NESTING_DEPTH - 1;
    let src = format!(
        "CREATE SEARCH s AS FROM x WHERE {}a{};\nCREATE SEARCH s AS FROM x WHERE {}a{};\nCREATE RULE r AS FROM s PATTERN ({}A{});",
        "(".repeat(d),
        ")".repeat(d),
        "f(".repeat(d / 2),
        ")".repeat(d / 2),
        "(".repeat(d - 1),
        ")".repeat(d - 1),
    );
    let (n, diags) = parse_small_stack(src);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(n, 3);
}

#[test]
fn prefix_operator_chains_are_bounded() {
    single_error(
        format!(
            "CREATE SEARCH s AS FROM x WHERE {}a;",
            "NOT ".repeat(10_000)
        ),
        "nested too deeply",
    );
    single_error(
        format!("CREATE SEARCH s AS FROM x WHERE {}a;", "- ".repeat(10_000)),
        "nested too deeply",
    );
}

#[test]
fn long_operator_chains_are_bounded() {
    // 50k additions fit in a statement but would build a tree too tall to drop or print
    // recursively.
    single_error(
        format!(
            "CREATE SEARCH s AS FROM x WHERE a{};",
            " + a".repeat(50_000)
        ),
        "expression too deep",
    );
    let ok = format!(
        "CREATE SEARCH s AS FROM x WHERE a{};",
        " + a".repeat(MAX_EXPR_HEIGHT - 1)
    );
    let (n, diags) = parse_small_stack(ok);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(n, 1);
}

#[test]
fn long_statements_and_lists_are_bounded() {
    single_error(
        format!(
            "CREATE SEARCH s AS FROM x WHERE a = '{}';",
            "x".repeat(MAX_STATEMENT_BYTES)
        ),
        "statement too long",
    );
    single_error(
        format!(
            "CREATE SEARCH s AS FROM x WHERE a IN ({});",
            vec!["1"; MAX_LIST_ITEMS + 1].join(",")
        ),
        "list too long",
    );
    single_error(
        format!(
            "CREATE RULE r AS FROM s PATTERN ({});",
            "A ".repeat(MAX_PATTERN_TERMS + 1)
        ),
        "pattern too large",
    );
    single_error(
        format!("CREATE RULE r AS FROM s PATTERN (A{{{}}});", MAX_REPEAT + 1),
        "too large",
    );
    // A long file of short statements is fine.
    let src = "CREATE STREAM s (a INT);\n".repeat(20_000);
    let (n, diags) = parse_small_stack(src);
    assert!(diags.is_empty());
    assert_eq!(n, 20_000);
}

#[test]
fn every_error_in_a_long_file_is_reported() {
    let src = "CREATE STREAM s (a INT b INT);\n".repeat(1000);
    let (n, diags) = parse_small_stack(src);
    assert_eq!(n, 0);
    assert_eq!(diags.len(), 1000);
}

#[test]
fn a_byte_order_mark_at_the_start_is_ignored() {
    let (stmts, diags) = parse_statements("\u{feff}CREATE STREAM s (a INT);");
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(stmts.len(), 1);
    assert_eq!(stmts[0].span.start, 3);
    // Anywhere else it is an unexpected character.
    let (stmts, diags) = parse_statements("CREATE STREAM s (a INT);\u{feff}");
    assert_eq!(stmts.len(), 1);
    assert_eq!(diags.len(), 1);
}

#[test]
fn error_spans_stay_on_character_boundaries() {
    let deep = format!(
        "CREATE SEARCH s AS FROM x WHERE {}é;",
        "(".repeat(MAX_NESTING_DEPTH + 5)
    );
    let cases = [
        deep,
        "é;".to_string(),
        "CREATE STREAM é (a INT);".to_string(),
        "CREATE RULE r AS FROM s PATTERN (A {é});".to_string(),
        format!("{};", "é".repeat(MAX_STATEMENT_BYTES)),
    ];
    for src in cases {
        let (_, diags) = parse_small_stack(src.clone());
        assert!(!diags.is_empty());
        for d in diags {
            assert!(src.is_char_boundary(d.span.start) && src.is_char_boundary(d.span.end));
            assert!(d.span.end > d.span.start, "{d:?}");
        }
    }
}

#[test]
fn garbage_never_panics() {
    // Deterministic pseudo-random bytes (xorshift), decoded lossily, plus nasty fragments.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let fragments = [
        "CREATE ",
        "RULE ",
        "r AS ",
        "FROM ",
        "s ",
        "PATTERN ",
        "(",
        ")",
        "A",
        "+",
        "?",
        "{",
        "}",
        ",",
        "'",
        "''",
        "\"",
        "--",
        "/*",
        "*/",
        ";",
        "WITHIN ",
        "10 ",
        "MINUTES ",
        "INTERVAL ",
        "DEFINE ",
        "A AS ",
        "x",
        ".",
        "*",
        "=",
        "<>",
        "NOT ",
        "IN ",
        "BETWEEN ",
        "AND ",
        "CASE ",
        "WHEN ",
        "THEN ",
        "END ",
        "SELECT ",
        "MATCH_RECOGNIZE ",
        "->",
        "|",
        "!",
        "é",
        "\0",
        "\u{feff}",
        "9999999999999999999999",
        "1e999",
        ".5",
        "-",
        "WITH ",
        "WINDOW ",
        "TUMBLING ",
        "SIZE ",
    ];
    for round in 0..3000 {
        let src = if round % 3 == 0 {
            let bytes: Vec<u8> = (0..(next() % 200)).map(|_| next() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            (0..(next() % 60))
                .map(|_| fragments[(next() % fragments.len() as u64) as usize])
                .collect()
        };
        let (stmts, diags) = parse_statements(&src);
        for d in &diags {
            assert!(
                d.span.start <= d.span.end && d.span.end <= src.len(),
                "{src:?}"
            );
            assert!(src.is_char_boundary(d.span.start), "{src:?}");
            assert!(src.is_char_boundary(d.span.end), "{src:?}");
            assert!(!d.message.is_empty());
        }
        // Whatever parsed prints and parses back to the same thing.
        for s in stmts {
            let text = s.to_string();
            let (again, d2) = parse_statements(&text);
            assert!(d2.is_empty(), "{src:?} → {text}: {d2:?}");
            assert_eq!(again.len(), 1);
            assert_eq!(again[0], s, "{text}");
        }
    }
}
