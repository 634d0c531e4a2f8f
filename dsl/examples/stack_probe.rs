//! How small a stack the parser needs at the nesting limit (debug builds are the worst case).
//! `cargo run -p dsl --example stack_probe -- 512` (stack size in KiB)
fn main() {
    let d = dsl::parse::limits::MAX_NESTING_DEPTH - 1;
    let inputs = [
        (
            "parens",
            format!(
                "CREATE SEARCH s AS FROM x WHERE {}a{};",
                "(".repeat(d),
                ")".repeat(d)
            ),
        ),
        (
            "right operands",
            format!(
                "CREATE SEARCH s AS FROM x WHERE {}a{};",
                "a = (".repeat(d),
                ")".repeat(d)
            ),
        ),
        (
            "calls",
            format!(
                "CREATE SEARCH s AS FROM x WHERE {}a{};",
                "f(".repeat(d),
                ")".repeat(d)
            ),
        ),
        (
            "case",
            format!(
                "CREATE SEARCH s AS FROM x WHERE {}a{};",
                "CASE WHEN ".repeat(d),
                " THEN 1 END".repeat(d)
            ),
        ),
        (
            "between",
            format!(
                "CREATE SEARCH s AS FROM x WHERE {}a{};",
                "a BETWEEN (".repeat(d),
                ") AND 1".repeat(d)
            ),
        ),
        (
            "pattern",
            format!(
                "CREATE RULE r AS FROM s PATTERN ({}A{});",
                "(".repeat(d - 1),
                ")+".repeat(d - 1)
            ),
        ),
    ];
    // A stack overflow aborts the process, so try one stack size per run.
    let kib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    for (name, src) in inputs {
        println!("{name}: trying {kib} KiB");
        let diags = std::thread::Builder::new()
            .stack_size(kib << 10)
            .spawn(move || dsl::parse::parse_statements(&src).1)
            .map(|h| h.join());
        println!(
            "{name}: fits in {kib} KiB ({:?})",
            diags.map(|d| d.map(|d| d.len()))
        );
    }
}
