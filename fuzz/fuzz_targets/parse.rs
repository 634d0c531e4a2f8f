//! Fuzz the statement parser: it must never panic, overflow the stack or hang, its
//! diagnostics must point inside the input, and whatever parses must print and parse back
//! to the same tree. Run: `cargo +nightly fuzz run parse` (see docs/fuzzing.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let (stmts, diags) = dsl::parse::parse_statements(src);
    for d in &diags {
        assert!(d.span.start <= d.span.end && d.span.end <= src.len());
        assert!(src.is_char_boundary(d.span.start) && src.is_char_boundary(d.span.end));
    }
    for s in stmts {
        let text = s.to_string();
        let (again, d2) = dsl::parse::parse_statements(&text);
        assert!(d2.is_empty(), "{text}: {d2:?}");
        assert_eq!(again.len(), 1, "{text}");
        assert_eq!(again[0], s, "{text}");
        assert_eq!(again[0].to_string(), text);
    }
});
