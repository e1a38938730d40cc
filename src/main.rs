use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Several dependencies enable rustls with both ring and aws-lc; pick one
    // process-wide so TLS clients (https RPC endpoints, rediss://) can start.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    chronicle::cli::run(chronicle::cli::Cli::parse())
}
