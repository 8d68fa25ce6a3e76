//! The `handoff` binary: a thin shell over the library crates. Each subcommand lives in
//! `cmd/`; this file only parses the command line (each flag defined once, in `cli.rs`).

mod cli;
mod cmd;
mod demo;
mod files;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
