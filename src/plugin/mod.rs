//! `kubectl chronicle`: the kubectl plugin for day-2 operations (the
//! `kubectl-chronicle` binary of this crate; kubectl finds it on `PATH`).
//! It talks to whatever cluster the kubeconfig names, as kubectl does, and
//! reads only what the controller publishes in `status`: no catalog or store
//! access is needed from an operator's machine.

mod backfill;
mod logs;
mod status;
mod suspend;
pub mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube::Client;
use kube::config::{Config, KubeConfigOptions};

pub use backfill::BackfillArgs;
pub use logs::{LogsArgs, OwnerKind};

/// The field manager of every change the plugin makes.
pub const FIELD_MANAGER: &str = "kubectl-chronicle";

#[derive(Debug, Parser)]
#[command(
    name = "kubectl chronicle",
    bin_name = "kubectl chronicle",
    version,
    about = "Day-2 operations on Chronicle resources: status, gaps, pause/resume, backfills, logs"
)]
pub struct Plugin {
    /// Namespace (default: the kubeconfig context's, else `default`).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Kubeconfig context (default: the current context; `KUBECONFIG` is honoured).
    #[arg(long, global = true)]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Every resource of a ChainSource: phase, checkpoint, lag, gaps, cache hit ratio.
    Status {
        /// The ChainSource.
        source: String,
    },
    /// An IngestJob's gaps: counts, and the lowest open gaps with why each is open.
    Gaps {
        /// The IngestJob.
        job: String,
    },
    /// Suspend an IngestJob: its workers stop after their current batch; progress is kept.
    Pause {
        job: String,
        /// Change `spec.suspend` even where a GitOps tool's manifest declares it.
        #[arg(long)]
        force: bool,
    },
    /// Resume a suspended IngestJob from its checkpoints.
    Resume {
        job: String,
        /// Change `spec.suspend` even where a GitOps tool's manifest declares it.
        #[arg(long)]
        force: bool,
    },
    /// Create an IngestJob that backfills a slot range of a ChainSource.
    Backfill(BackfillArgs),
    /// Logs of the pods working for a resource (an IngestJob by default).
    Logs(LogsArgs),
}

/// Why a command failed; printed as `error: …`.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot reach the cluster: {0}")]
    Connect(String),
    #[error("{kind} {namespace}/{name} not found")]
    NotFound { kind: String, namespace: String, name: String },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "spec.suspend is declared by {managers} (a GitOps tool's manifest?): its next sync would undo the change; change it there, or pass --force"
    )]
    Conflict { managers: String },
    #[error("cannot read the logs of {0}")]
    Logs(String),
    #[error("the API server refused: {0}")]
    Refused(String),
    #[error("{}", describe(.0))]
    Kube(#[from] kube::Error),
}

/// The API server's message for its errors (not the whole response), else the client's.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({} {})", status.message, status.code, status.reason),
        other => other.to_string(),
    }
}

impl PluginError {
    /// The API server's own message for a refusal (a CEL rule's, say), else the error.
    fn from_api(error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) if [400, 409, 422].contains(&status.code) => Self::Refused(status.message),
            other => Self::Kube(other),
        }
    }
}

/// A client for the kubeconfig's cluster (or the pod's, in a cluster), and the namespace to use.
async fn connect(plugin: &Plugin) -> Result<(Client, String), PluginError> {
    let connect = |e: &dyn std::fmt::Display| PluginError::Connect(e.to_string());
    let config = match &plugin.context {
        Some(context) => {
            let options = KubeConfigOptions { context: Some(context.clone()), ..Default::default() };
            Config::from_kubeconfig(&options).await.map_err(|e| connect(&e))?
        }
        None => Config::infer().await.map_err(|e| connect(&e))?,
    };
    let namespace = plugin.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config).map_err(|e| connect(&e))?, namespace))
}

/// Runs one plugin command, printing what it found or did.
pub async fn run(plugin: Plugin) -> Result<(), PluginError> {
    let (client, namespace) = connect(&plugin).await?;
    let output = match &plugin.command {
        PluginCommand::Status { source } => status::status(&client, &namespace, source).await?,
        PluginCommand::Gaps { job } => status::gaps(&client, &namespace, job).await?,
        PluginCommand::Pause { job, force } => suspend::set(&client, &namespace, job, true, *force).await?,
        PluginCommand::Resume { job, force } => suspend::set(&client, &namespace, job, false, *force).await?,
        PluginCommand::Backfill(args) => backfill::create(&client, &namespace, args).await?,
        PluginCommand::Logs(args) => return logs::print(&client, &namespace, args).await,
    };
    print!("{output}");
    Ok(())
}

/// The binary's entry point.
pub fn main(plugin: Plugin) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(run(plugin)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Reads one object, or says it does not exist.
async fn get<K>(api: &kube::Api<K>, kind: &str, namespace: &str, name: &str) -> Result<K, PluginError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await?.ok_or_else(|| PluginError::NotFound {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}
