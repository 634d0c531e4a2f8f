//! The `weir` binary: `weir serve`, `weir check`, `weir run`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc: the matcher allocates and frees a row per event; with glibc's allocator
/// that was ~30 % of matcher instructions (see bench/README.md, CEP section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use server::{check_cmd, run_cmd, serve_cmd};

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Complex-event processing and stream search"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate statement files (`*.weir`, or folders of them).
    Check(check_cmd::Args),
    /// Run statements over NDJSON events offline, as a Unix filter.
    Run(run_cmd::Args),
    /// Start the service.
    Serve(Box<serve_cmd::Args>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => check_cmd::main(a),
        Command::Run(a) => run_cmd::main(a),
        Command::Serve(a) => serve_cmd::main(*a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weir: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
