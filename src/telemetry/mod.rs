//! Structured logs (JSON in clusters, human-readable at a terminal) and the
//! workers' metrics (`metrics.rs`).

pub mod metrics;

use tracing_subscriber::{EnvFilter, fmt};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides the default filter.
/// Logs go to stderr so that commands like `chronicle crd` keep stdout clean.
pub fn init(format: LogFormat) {
    init_with(format, "info,fjall=warn,lsm_tree=warn")
}

/// [`init`] with another default filter (`chronicle dev` logs only warnings:
/// its terminal shows progress instead).
pub fn init_with(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // alloy's HTTP transport puts the node URL (which may carry an API key)
    // in its debug spans: never below info, whatever RUST_LOG asks.
    let filter = filter.add_directive("alloy_transport_http=info".parse().expect("a valid directive"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (e.g. in tests) keeps the first subscriber.
    let _ = result;
}
