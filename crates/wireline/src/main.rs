//! `wireline`: the binary. Parses the command line, wires the crates together, and is the only
//! place that prints to the terminal or decides exit codes.
//!
//! Exit codes: 0 success, 1 failure (one line on stderr saying why and what to do), 2 usage
//! error (from clap).

mod cli;
mod commands;
mod server;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: the proxy path allocates per request (headers,
/// bodies, audit events), and glibc malloc showed as a sixth of its CPU in a profile
/// (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: the chain of causes joined, never a backtrace.
            let reason = format!("{error:#}").replace('\n', "; ");
            eprintln!("error: {reason}");
            ExitCode::from(1)
        }
    }
}
