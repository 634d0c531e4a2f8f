//! Every shipped `rules/*.weir` file parses and checks clean (no errors, no warnings), on
//! its own and all together in name order (as `weir check rules/` does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dsl::check::{Catalog, Plan};
use dsl::error::render_all;
use std::path::PathBuf;

fn rule_files() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "weir"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = format!("rules/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn every_shipped_file_checks_clean_on_its_own() {
    let files = rule_files();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "rules/dashboards.weir",
        "rules/fraud.weir",
        "rules/media.weir",
    ] {
        assert!(names.contains(&want), "{want} is missing: {names:?}");
    }
    for (name, src) in &files {
        let (statements, syntax) = dsl::parse::parse_statements(src);
        assert!(syntax.is_empty(), "{}", render_all(&syntax, name, src));
        assert!(!statements.is_empty(), "{name} has no statements");
        let mut catalog = Catalog::new();
        match catalog.apply(&statements) {
            Ok(applied) => {
                assert!(
                    applied.warnings.is_empty(),
                    "{}",
                    render_all(&applied.warnings, name, src)
                );
                assert_eq!(applied.applied.len(), statements.len());
            }
            Err(diags) => panic!("{}", render_all(&diags, name, src)),
        }
    }
}

#[test]
fn all_shipped_files_check_clean_together() {
    let mut catalog = Catalog::new();
    for (name, src) in rule_files() {
        let diags = catalog.check_source(&src);
        assert!(diags.is_empty(), "{}", render_all(&diags, &name, &src));
    }
}

#[test]
fn shipped_files_cover_what_they_promise() {
    let mut catalog = Catalog::new();
    for (_, src) in rule_files() {
        assert!(catalog.check_source(&src).is_empty());
    }
    let count = |f: &dyn Fn(&Plan) -> bool| catalog.entries().iter().filter(|e| f(&e.plan)).count();
    assert!(
        count(&|p| matches!(p, Plan::Rule(_))) >= 5,
        "at least 5 rules"
    );
    assert!(
        count(&|p| matches!(p, Plan::Search(_))) >= 5,
        "at least 5 searches"
    );
    assert!(
        count(&|p| matches!(p, Plan::Metric(_))) >= 3,
        "at least 3 metrics"
    );
    // The order-not-paid rule uses a trailing absence.
    let Plan::Rule(r) = &catalog.get("order_not_paid").expect("order_not_paid").plan else {
        panic!("order_not_paid is not a rule");
    };
    assert_eq!(r.absent, ["paid"]);
    assert_eq!(r.variables, ["created"]);
    // A rule reading another rule's output sees its measures as columns.
    let Plan::Rule(r) = &catalog.get("repeated_card_testing").unwrap().plan else {
        panic!()
    };
    assert_eq!(r.input.name, "card_testing");
    let cols: Vec<&str> = r.input.columns.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(cols, ["card_id", "probes", "amount", "at", "ts"]);
    // Every window kind and every sketch appears in dashboards.weir.
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rules/dashboards.weir"),
    )
    .unwrap();
    for word in [
        "TUMBLING",
        "HOPPING",
        "SLIDING",
        "SESSION",
        "APPROX_COUNT_DISTINCT(",
        "APPROX_PERCENTILE(",
        "APPROX_TOP_K(",
        "APPROX_SET(",
    ] {
        assert!(text.contains(word), "dashboards.weir lacks {word}");
    }
}

/// Every ```sql example of docs/language.md is a complete file that checks clean
/// (warnings allowed only where the text says so).
#[test]
fn language_doc_examples_check_clean() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/language.md"),
    )
    .unwrap();
    let mut examples = 0;
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```sql\n") {
        let body = &rest[start + 7..];
        let end = body.find("```").unwrap();
        let src = &body[..end];
        rest = &body[end + 3..];
        examples += 1;
        let (statements, syntax) = dsl::parse::parse_statements(src);
        assert!(syntax.is_empty(), "{}", render_all(&syntax, "example", src));
        if let Err(diags) = Catalog::new().apply(&statements) {
            panic!("{}", render_all(&diags, "example", src));
        }
    }
    assert!(examples >= 10, "only {examples} examples");
}
