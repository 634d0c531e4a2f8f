//! Flink's documented MATCH_RECOGNIZE queries and the conformance rules parse unchanged
//! (data/flink_examples.weir holds the documentation's queries wrapped as
//! `CREATE RULE name AS <query>;`).

#![allow(clippy::unwrap_used)]

use dsl::ast::{AfterMatch, CreateRule, Pattern, RuleSyntax, Statement, StatementKind};
use dsl::parse::parse_statements;
use dsl::Severity;

fn parse_ok(src: &str) -> (Vec<Statement>, Vec<dsl::Diagnostic>) {
    let (stmts, diags) = parse_statements(src);
    let errors: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:#?}");
    (stmts, diags)
}

fn rules(stmts: &[Statement]) -> Vec<&CreateRule> {
    stmts
        .iter()
        .filter_map(|s| match &s.kind {
            StatementKind::CreateRule(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn rule<'a>(stmts: &'a [Statement], name: &str) -> &'a CreateRule {
    rules(stmts)
        .into_iter()
        .find(|r| r.name.name == name)
        .unwrap_or_else(|| panic!("no rule {name}"))
}

#[test]
fn language_doc_statements_parse() {
    let (stmts, diags) = parse_ok(include_str!("data/language_doc.weir"));
    assert!(diags.is_empty());
    assert_eq!(stmts.len(), 10);
    let r = rules(&stmts);
    assert_eq!(r[0].syntax, RuleSyntax::Native);
    assert_eq!(r[1].syntax, RuleSyntax::MatchRecognize);
    // The two spellings say the same thing except for how DEFINE names columns.
    assert_eq!(r[0].pattern, r[1].pattern);
    assert_eq!(r[0].within, r[1].within);
    assert_eq!(r[0].within.map(|d| d.millis), Some(600_000));
    assert_eq!(r[0].measures, r[1].measures);
    assert_eq!(r[0].partition_by, r[1].partition_by);
    assert_eq!(r[0].after_match, r[1].after_match);
    assert_eq!(r[1].order_by.as_ref().map(|o| o.name.as_str()), Some("ts"));
}

#[test]
fn cep_basic_conformance_rules_parse() {
    let (stmts, diags) = parse_ok(include_str!("data/cep_basic_rules.weir"));
    assert!(diags.is_empty());
    assert_eq!(stmts.len(), 6);
    let r = rules(&stmts);
    assert_eq!(r.len(), 5);
    assert!(r.iter().all(|r| r.syntax == RuleSyntax::MatchRecognize));
    assert_eq!(
        rule(&stmts, "login_buy").within.map(|d| d.millis),
        Some(30_000)
    );
    assert_eq!(
        rule(&stmts, "opt_logout").after_match,
        Some(AfterMatch::SkipToLast(dsl::ast::Ident::new("M")))
    );
    assert_eq!(rule(&stmts, "opt_logout").pattern.to_string(), "L O? M");
    assert_eq!(rule(&stmts, "login_buy").pattern.to_string(), "L X*? B");
}

#[test]
fn flink_documentation_examples_parse() {
    let (stmts, diags) = parse_ok(include_str!("data/flink_examples.weir"));
    assert_eq!(stmts.len(), 18);

    let v = rule(&stmts, "ticker_v");
    assert_eq!(v.pattern.to_string(), "START_ROW PRICE_DOWN+ PRICE_UP");
    assert_eq!(
        v.after_match,
        Some(AfterMatch::SkipToLast(dsl::ast::Ident::new("PRICE_UP")))
    );
    assert_eq!(v.define.len(), 2);
    assert_eq!(v.measures.len(), 3);

    assert_eq!(
        rule(&stmts, "avg_price").define[0].cond.to_string(),
        "AVG(A.price) < 15"
    );
    assert_eq!(rule(&stmts, "greedy").pattern.to_string(), "A B* C");
    match &rule(&stmts, "reluctant").pattern {
        Pattern::Seq(items) => assert!(matches!(
            &items[1],
            Pattern::Repeat {
                min: 0,
                max: None,
                greedy: false,
                ..
            }
        )),
        p => panic!("{p:?}"),
    }

    let drop = rule(&stmts, "price_drop");
    assert_eq!(drop.within.map(|d| d.millis), Some(3_600_000));
    assert_eq!(drop.define.len(), 2, "the forgotten comma is tolerated");
    let warnings: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].message.contains("missing `,`"));

    assert_eq!(
        rule(&stmts, "skip_to_next").after_match,
        Some(AfterMatch::SkipToNextRow)
    );
    assert_eq!(
        rule(&stmts, "skip_to_first").after_match,
        Some(AfterMatch::SkipToFirst(dsl::ast::Ident::new("A")))
    );
    assert_eq!(
        rule(&stmts, "skip_past_last").after_match,
        Some(AfterMatch::SkipPastLastRow)
    );
    assert_eq!(rule(&stmts, "output_mode").after_match, None);
    assert_eq!(
        rule(&stmts, "frag_memory_reluctant").pattern.to_string(),
        "A B+? C"
    );
}

#[test]
fn flink_projection_gets_a_clear_error() {
    // Flink's introductory example selects columns; a weir rule takes them from MEASURES.
    let src = "CREATE RULE r AS SELECT T.aid, T.bid, T.cid
FROM MyTable
    MATCH_RECOGNIZE (
      PARTITION BY userid
      ORDER BY proctime
      MEASURES
        A.id AS aid,
        B.id AS bid,
        C.id AS cid
      PATTERN (A B C)
      DEFINE
        A AS name = 'a',
        B AS name = 'b',
        C AS name = 'c'
    ) AS T;";
    let (stmts, diags) = parse_statements(src);
    assert!(stmts.is_empty());
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].message.contains("SELECT *"),
        "{}",
        diags[0].message
    );
    assert_eq!(&src[diags[0].span.start..diags[0].span.end], "T");
}

#[test]
fn unsupported_flink_features_are_named() {
    let cases = [
        ("ALL ROWS PER MATCH", "CREATE RULE r AS SELECT * FROM t MATCH_RECOGNIZE (ORDER BY ts ALL ROWS PER MATCH PATTERN (A));"),
        ("SUBSET", "CREATE RULE r AS SELECT * FROM t MATCH_RECOGNIZE (PATTERN (A B) SUBSET U = (A, B) DEFINE A AS x > 1);"),
        ("DESC", "CREATE RULE r AS SELECT * FROM t MATCH_RECOGNIZE (ORDER BY ts DESC PATTERN (A));"),
        ("one ORDER BY column", "CREATE RULE r AS SELECT * FROM t MATCH_RECOGNIZE (ORDER BY rowtime ASC, price DESC PATTERN (A));"),
    ];
    for (needle, src) in cases {
        let (stmts, diags) = parse_statements(src);
        assert!(stmts.is_empty(), "{src}");
        assert_eq!(diags.len(), 1, "{src}: {diags:?}");
        assert!(
            diags[0].message.contains(needle),
            "{src}: {}",
            diags[0].message
        );
    }
}
