//! Fuzz body: the full-text query-string parser (`MATCHES '…'`). It must never panic or
//! hang; what it accepts it accepts again with a default field set, and the clause
//! count stays within the input's size.
//! Shared by `fuzz/fuzz_targets/query.rs` and the stable corpus test in `dsl/tests/`.

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = dsl::query::parse_query(text) {
        assert!(q.clause_count() <= text.len() + 1, "{text}");
        let again = q.with_default_field("body");
        let _ = again.field();
        let _ = q.is_negative_only();
    }
}
