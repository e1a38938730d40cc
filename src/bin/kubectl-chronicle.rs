//! `kubectl chronicle …`: see `chronicle::plugin`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    chronicle::plugin::main(chronicle::plugin::Plugin::parse())
}
