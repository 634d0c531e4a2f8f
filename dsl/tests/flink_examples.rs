//! Flink's documented MATCH_RECOGNIZE queries and the conformance rules parse unchanged.

use dsl::ast::{RuleSyntax, StatementKind};
use dsl::parse::parse_statements;

fn parse_ok(src: &str) -> Vec<dsl::ast::Statement> {
    let (stmts, diags) = parse_statements(src);
    let errors: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == dsl::Severity::Error)
        .collect();
    assert!(
        errors.is_empty(),
        "unexpected errors: {errors:#?}\n---\n{src}"
    );
    stmts
}

#[test]
fn language_doc_statements_parse() {
    let src = include_str!("data/language_doc.weir");
    let stmts = parse_ok(src);
    assert_eq!(stmts.len(), 10);
}

#[test]
fn cep_basic_conformance_rules_parse() {
    let src = include_str!("data/cep_basic_rules.weir");
    let stmts = parse_ok(src);
    assert_eq!(stmts.len(), 6);
    let rules = stmts
        .iter()
        .filter(|s| matches!(&s.kind, StatementKind::CreateRule(r) if r.syntax == RuleSyntax::MatchRecognize))
        .count();
    assert_eq!(rules, 5);
}
