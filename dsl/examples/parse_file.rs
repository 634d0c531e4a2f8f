//! Parse a statement file and print the canonical text or the diagnostics.
//! `cargo run -p dsl --example parse_file -- file.weir`
fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: parse_file FILE");
        std::process::exit(2);
    };
    let src = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let (stmts, diags) = dsl::parse::parse_statements(&src);
    for s in &stmts {
        println!("{s}");
    }
    for d in &diags {
        println!(
            "{}..{}: {:?}: {}",
            d.span.start, d.span.end, d.severity, d.message
        );
    }
}
