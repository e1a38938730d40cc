use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    chronicle::cli::run(chronicle::cli::Cli::parse())
}
