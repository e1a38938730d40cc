//! The `chronicle` command line: one binary, one subcommand per mode. A mode
//! is listed here only once it works.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::crd::{
    self,
    validate::{Validator, Verdict},
};
use crate::telemetry::{self, LogFormat};
use crate::worker::import;

#[derive(Debug, Parser)]
#[command(
    name = "chronicle",
    version,
    about = "Blockchain history platform operator: ingest, store, serve and export chain data declared as Kubernetes resources"
)]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, env = "CHRONICLE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions as YAML (or write one file per kind).
    Crd {
        /// Write `<plural>.<group>.yaml` files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Load recorded `getBlock` responses (JSON, optionally gzipped; encodings json,
    /// base64 or base58) into a block store.
    Import {
        /// `bigtable://PROJECT/INSTANCE[?appProfile=ID]` or `embedded:///PATH`.
        #[arg(long, env = "CHRONICLE_STORE", value_name = "URL")]
        store: String,
        /// Slot of the block (only with one file); otherwise taken from each file
        /// name, which must start with it (`<slot>.json`, `<slot>_x.json.gz`).
        #[arg(long)]
        slot: Option<u64>,
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print one stored block as a Solana RPC node answers `getBlock`.
    GetBlock {
        #[arg(long, env = "CHRONICLE_STORE", value_name = "URL")]
        store: String,
        slot: u64,
        #[arg(long, value_enum, default_value = "json")]
        encoding: BlockEncoding,
        #[arg(long, value_enum, default_value = "full")]
        transaction_details: Details,
        /// Leave out block and transaction rewards.
        #[arg(long)]
        no_rewards: bool,
        /// Highest transaction version to return (versioned transactions need 0).
        #[arg(long)]
        max_supported_transaction_version: Option<u8>,
    },
    /// Check Chronicle manifests against the CRDs' schemas and CEL rules, as the
    /// API server would, without a cluster. Directories are searched for *.yaml/*.yml.
    Validate {
        /// Files or directories.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BlockEncoding {
    Json,
    #[value(name = "jsonParsed")]
    JsonParsed,
    Base64,
    Base58,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Details {
    Full,
    Signatures,
    Accounts,
    None,
}

/// Runs a parsed command line; the exit code says whether it succeeded.
pub fn run(cli: Cli) -> ExitCode {
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Crd { out_dir } => print_crds(out_dir.as_deref()),
        Command::Validate { paths } => validate(&paths),
        Command::Import { store, slot, files } => block_on(import::run(&store, slot, &files)),
        Command::GetBlock {
            store,
            slot,
            encoding,
            transaction_details,
            no_rewards,
            max_supported_transaction_version,
        } => block_on(import::get_block(
            &store,
            slot,
            encoding.into(),
            transaction_details.into(),
            !no_rewards,
            max_supported_transaction_version,
        )),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(future: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(future)
}

impl From<BlockEncoding> for solana_transaction_status::UiTransactionEncoding {
    fn from(encoding: BlockEncoding) -> Self {
        match encoding {
            BlockEncoding::Json => Self::Json,
            BlockEncoding::JsonParsed => Self::JsonParsed,
            BlockEncoding::Base64 => Self::Base64,
            BlockEncoding::Base58 => Self::Base58,
        }
    }
}

impl From<Details> for solana_transaction_status::TransactionDetails {
    fn from(details: Details) -> Self {
        match details {
            Details::Full => Self::Full,
            Details::Signatures => Self::Signatures,
            Details::Accounts => Self::Accounts,
            Details::None => Self::None,
        }
    }
}

fn print_crds(out_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    match out_dir {
        None => std::io::stdout().write_all(crd::all_yaml().as_bytes())?,
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            for crd in crd::all() {
                let path = dir.join(crd::file_name(&crd));
                std::fs::write(&path, crd::to_yaml(&crd))
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "wrote CRD");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let validator = Validator::for_chronicle();
    let mut files = Vec::new();
    for path in paths {
        collect_yaml_files(path, &mut files)?;
    }
    let mut invalid = 0usize;
    let mut out = std::io::stdout().lock();
    for file in &files {
        for report in validator.validate_file(file)? {
            let place = format!("{}#{} {}/{}", file.display(), report.index, report.kind, report.name);
            match report.verdict {
                Verdict::Valid => writeln!(out, "ok       {place}")?,
                Verdict::NotOurs => writeln!(out, "skipped  {place} (not a chronicle.dev kind)")?,
                Verdict::Invalid(problems) => {
                    invalid += 1;
                    writeln!(out, "invalid  {place}")?;
                    for problem in problems {
                        writeln!(out, "         {problem}")?;
                    }
                }
            }
        }
    }
    Ok(if invalid == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A file as given, or the YAML files below a directory, in a stable order.
fn collect_yaml_files(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !path.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        let is_yaml = matches!(entry.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
        if entry.is_dir() {
            collect_yaml_files(&entry, files)?;
        } else if is_yaml {
            files.push(entry);
        }
    }
    Ok(())
}
