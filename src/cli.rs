//! The `chronicle` command line: one binary, one subcommand per mode. A mode
//! is listed here only once it works.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::crd::chain_source::{ChainFamily, Traces};
use crate::crd::{
    self,
    validate::{Validator, Verdict},
};
use crate::telemetry::{self, LogFormat};
use crate::worker::{self, import};

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
    /// Write a store's blocks out as an Old Faithful-compatible epoch archive
    /// (CAR): a whole epoch (`--epoch`) or a slot range.
    Archive {
        #[arg(long, env = "CHRONICLE_STORE", value_name = "URL")]
        store: String,
        /// The whole epoch (its root is the Epoch node).
        #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present_any = ["from"])]
        epoch: Option<u64>,
        #[arg(long, requires = "to")]
        from: Option<u64>,
        #[arg(long, requires = "from")]
        to: Option<u64>,
        /// Largest section written, in bytes (larger payloads split into frames).
        #[arg(long, default_value_t = 1 << 20)]
        max_section: usize,
        /// The CAR file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
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
    /// Reconcile the chronicle.dev resources (one active replica, elected on a Lease).
    Controller(ControllerArgs),
    /// Run the platform on this machine from the manifests the operator takes:
    /// backfills, followers and serve replicas in one process, embedded defaults.
    Dev {
        /// Manifest files or directories (searched for *.yaml/*.yml).
        #[arg(short = 'f', long = "filename", required = true, value_name = "DIR_OR_FILE")]
        files: Vec<PathBuf>,
        /// Where embedded stores and catalogs live when a manifest names none
        /// (default: the user's data directory).
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Exit when every backfill has finished (for scripts and CI).
        #[arg(long)]
        once: bool,
    },
    /// Serve the Solana JSON-RPC history methods from a block store, with an optional Redis cache.
    Serve(ServeArgs),
    /// Run a worker mode (what the controller starts in pods; also works by hand).
    Worker(WorkerArgs),
    /// Check Chronicle manifests against the CRDs' schemas and CEL rules, as the
    /// API server would, without a cluster. Directories are searched for *.yaml/*.yml.
    Validate {
        /// Files or directories.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// Image the workers and serve replicas run (the controller's own).
    #[arg(long, env = "CHRONICLE_IMAGE")]
    pub image: String,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    #[arg(long, default_value = "chronicle-controller")]
    pub lease_name: String,
    /// This replica's identity in the Lease (its pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: String,
    /// Seconds a lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
    /// Address of /healthz, /readyz, /leader and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub health_listen: std::net::SocketAddr,
    /// Seconds between sweeps for children whose owner is gone.
    #[arg(long, default_value_t = 60)]
    pub orphan_sweep_seconds: u64,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Block store: `bigtable://PROJECT/INSTANCE` or `embedded:///PATH`.
    #[arg(long, env = "CHRONICLE_STORE")]
    pub store: String,
    /// Address to listen on.
    #[arg(long, env = "CHRONICLE_LISTEN", default_value = "127.0.0.1:8899")]
    pub listen: std::net::SocketAddr,
    /// Redis cache: `redis://…` or `rediss://…` (TLS).
    #[arg(long, env = "CHRONICLE_CACHE_URL", hide_env_values = true)]
    pub cache: Option<String>,
    /// TTL of cached answers that can change (e.g. `2s`).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub cache_ttl: std::time::Duration,
    /// TTL of cached answers that cannot change (finalized blocks and transactions).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub immutable_ttl: std::time::Duration,
    /// Redis `maxmemory` for the cache (e.g. `2gb`).
    #[arg(long)]
    pub cache_max_memory: Option<String>,
    /// Redis `maxmemory-policy` (e.g. `allkeys-lru`).
    #[arg(long)]
    pub cache_eviction: Option<String>,
    /// File with accepted API keys, one per line (e.g. a mounted Secret). Absent: no auth.
    #[arg(long, env = "CHRONICLE_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Directory of accepted API keys, one file each (a Secret mounted as a volume).
    #[arg(long, env = "CHRONICLE_API_KEYS_DIR")]
    pub api_keys_dir: Option<PathBuf>,
    /// Requests per second per API key (per client address without keys).
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Requests a key may send at once above the rate (default: the rate).
    #[arg(long, requires = "rate_limit")]
    pub rate_burst: Option<u32>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Most calls in one batch request.
    #[arg(long, default_value_t = 100)]
    pub max_batch: usize,
    /// Longest a request may take.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: std::time::Duration,
    /// The cluster served (`mainnet-beta`, `devnet`, `testnet`, or any name with --genesis-hash).
    #[arg(long, env = "CHRONICLE_NETWORK", default_value = "mainnet-beta")]
    pub network: String,
    /// Genesis hash of a network Chronicle does not know (checked against a known one's).
    #[arg(long)]
    pub genesis_hash: Option<String>,
    /// The chain family the store holds: `solana` (agave's layout) or `evm`.
    #[arg(long, default_value = "solana", value_parser = parse_family)]
    pub chain: ChainFamily,
    /// EIP-155 chain id an evm chain's `eth_chainId` answers.
    #[arg(long)]
    pub chain_id: Option<u64>,
    /// Upstream node for methods `serve` does not answer; may carry a provider key, never logged.
    #[arg(long, env = "CHRONICLE_UPSTREAM_URL", hide_env_values = true)]
    pub upstream: Option<String>,
    /// Also pass history misses (outside the stored span, unknown transactions) to the upstream.
    #[arg(long, requires = "upstream")]
    pub upstream_misses: bool,
    /// Calls per second the upstream is sent at most.
    #[arg(long, requires = "upstream")]
    pub upstream_rate_limit: Option<u32>,
    /// `getHealth` fails when the stored tip is more slots than this behind the upstream's.
    #[arg(long, default_value_t = crate::serve::ServeConfig::default().health_max_lag)]
    pub health_max_lag: u64,
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Serve the worker's Prometheus metrics on http://ADDR/metrics while it works.
    #[arg(long, global = true, env = "CHRONICLE_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// When work that runs to completion (a backfill, an export, a
    /// replication or retention run) ends, keep serving /metrics this long,
    /// or until SIGTERM, so a last scrape sees the final figures (which the
    /// catalog and the resource's status hold either way).
    #[arg(long, global = true, env = "CHRONICLE_METRICS_LINGER", default_value = "0s", value_parser = humantime::parse_duration)]
    pub metrics_linger: std::time::Duration,
    #[command(subcommand)]
    pub command: WorkerCommand,
}

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Ingest blocks from a Solana node: a backfill of --from..=--to, or --follow the tip.
    Ingest(IngestArgs),
    /// Export a training dataset (JSONL, Parquet, token files, manifest) from a store's blocks.
    Export(ExportArgs),
    /// Run the work a worker spec describes (what controller-started pods run):
    /// from --spec FILE, else from the CHRONICLE_WORKER_SPEC variable.
    Run {
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// This pod's shard of a parallel backfill (an Indexed Job sets it).
        #[arg(long, env = "JOB_COMPLETION_INDEX", default_value_t = 0)]
        shard_index: u32,
    },
}

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Job name in the catalog (checkpoints and gaps are kept per job and shard).
    #[arg(long, env = "CHRONICLE_JOB", default_value = "manual")]
    pub job: String,
    /// JSON-RPC URL of the node.
    #[arg(
        long,
        env = "CHRONICLE_RPC_URL",
        hide_env_values = true,
        required_unless_present_any = ["bigquery_dataset", "archive"]
    )]
    pub rpc: Option<String>,
    /// Read blocks from epoch archives (Old Faithful CARs) instead: a URL with
    /// `{epoch}` for each epoch's file (`file:///archives/epoch-{epoch}.car`).
    #[arg(long, conflicts_with_all = ["rpc", "bigquery_dataset"], requires = "to")]
    pub archive: Option<String>,
    /// Read the chain's rows from this BigQuery dataset instead (`project.dataset`;
    /// lake only), e.g. `bigquery-public-data.crypto_solana_mainnet_us`.
    #[arg(long, conflicts_with = "rpc", requires = "lake")]
    pub bigquery_dataset: Option<String>,
    /// BigQuery REST base (`…/bigquery/v2`): an emulator; default Google's.
    #[arg(long)]
    pub bigquery_endpoint: Option<String>,
    /// The project BigQuery jobs run (and are billed) in.
    #[arg(long, default_value = "chronicle")]
    pub bigquery_project: String,
    /// A service-account key file for BigQuery (none: no credentials, for an emulator).
    #[arg(long, env = "GOOGLE_APPLICATION_CREDENTIALS")]
    pub bigquery_credentials: Option<String>,
    /// A dataset table named otherwise than the public dataset's: `OURS=THEIRS`
    /// (`blocks`, `block_rewards`, `transactions`, `instructions`, `token_transfers`,
    /// `accounts`, `tokens`; `accounts=` for a dataset without that table).
    #[arg(long = "bigquery-table", value_parser = parse_table)]
    pub bigquery_tables: Vec<(String, String)>,
    /// Check the dataset against this node: blocks it lacks or holds incompletely are gaps.
    #[arg(long, requires = "bigquery_dataset")]
    pub bigquery_check_rpc: Option<String>,
    /// Take such blocks from the checking node instead.
    #[arg(long, requires = "bigquery_check_rpc")]
    pub bigquery_repair: bool,
    /// Following a dataset, stay this many slots behind its newest block
    /// (a block's rows land in its tables at different moments).
    #[arg(long, default_value_t = 150, requires = "bigquery_dataset")]
    pub bigquery_settle_slots: u64,
    /// How often a follower without a WebSocket asks for the tip
    /// (default 400ms from a node, 60s from a dataset: each ask is a query).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub poll_interval: Option<std::time::Duration>,
    /// Header that carries the node's token, taken from CHRONICLE_RPC_TOKEN (never a flag,
    /// so it stays out of process listings); `Authorization` sends `Bearer <token>`.
    #[arg(long)]
    pub rpc_auth_header: Option<String>,
    /// WebSocket URL for slot notifications when following (else the tip is polled).
    #[arg(long, env = "CHRONICLE_WS_URL")]
    pub ws: Option<String>,
    /// Block store: `bigtable://PROJECT/INSTANCE` or `embedded:///PATH` (not
    /// used when reading a BigQuery dataset into the lake).
    #[arg(long, env = "CHRONICLE_STORE", required_unless_present = "bigquery_dataset")]
    pub store: Option<String>,
    /// Catalog: `postgres://…` or `embedded:///PATH`.
    #[arg(long, env = "CHRONICLE_CATALOG", hide_env_values = true)]
    pub catalog: String,
    /// First slot (a follow without it starts at the tip).
    #[arg(long)]
    pub from: Option<u64>,
    /// Last slot of a backfill.
    #[arg(long, required_unless_present = "follow", conflicts_with = "follow")]
    pub to: Option<u64>,
    /// Follow the tip until stopped.
    #[arg(long)]
    pub follow: bool,
    /// This worker's shard (an Indexed Job sets JOB_COMPLETION_INDEX).
    #[arg(long, env = "JOB_COMPLETION_INDEX", default_value_t = 0)]
    pub shard_index: u32,
    /// Number of shards the range is split into.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub shard_count: u32,
    /// Slots per batch (one checkpoint per batch).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,
    /// Blocks fetched at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: u64,
    /// Requests per second to the node (default: unlimited, the node's 429s pace us).
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Requests allowed at once above --rate-limit (default: the rate).
    #[arg(long, requires = "rate_limit")]
    pub rate_burst: Option<u32>,
    /// The chain family: `solana` or `evm`.
    #[arg(long, default_value = "solana", value_parser = parse_family)]
    pub chain: ChainFamily,
    /// `confirmed` stores blocks before they are final and repairs what the
    /// final chain drops or replaces (an evm chain: from its newest block).
    #[arg(long, value_enum, default_value = "finalized")]
    pub commitment: CommitmentArg,
    /// An evm chain without the `finalized` tag: a block is final this many blocks below the newest.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub confirmations: Option<u64>,
    /// An evm chain: store each block's traces where the node serves them
    /// (`auto`), always (`required`: a node without them leaves gaps) or never (`disabled`).
    #[arg(long, default_value = "auto", value_parser = parse_traces)]
    pub traces: Traces,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Tries per block before it is recorded as a gap.
    #[arg(long, default_value_t = 4)]
    pub attempts: usize,
    /// Redis cache tier to update as blocks land (`redis://…`).
    #[arg(long, env = "CHRONICLE_CACHE_URL", hide_env_values = true)]
    pub cache: Option<String>,
    /// Also write the normalized rows as Parquet to this lake (`file://`, `s3://`, `gs://`).
    #[arg(long)]
    pub lake: Option<String>,
    /// The network the lake files its partitions under.
    #[arg(long, default_value = "mainnet-beta")]
    pub network: String,
    /// Do not write the canonical store (with --lake: rows only).
    #[arg(long, requires = "lake")]
    pub no_canonical: bool,
    /// Also write per-block chain metrics to this InfluxDB v2 write API
    /// (the token, if any, from CHRONICLE_METRICS_TOKEN).
    #[arg(long, requires_all = ["metrics_org", "metrics_bucket"])]
    pub metrics_url: Option<String>,
    #[arg(long)]
    pub metrics_org: Option<String>,
    #[arg(long)]
    pub metrics_bucket: Option<String>,
    /// Chain-metrics points held while the server is slow or gone; further ones are dropped and counted.
    #[arg(long, default_value_t = crate::pipeline::sinks::chain_metrics::BUFFER_POINTS)]
    pub metrics_buffer_points: usize,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Block store to read: `bigtable://PROJECT/INSTANCE` or `embedded:///PATH`.
    #[arg(long, env = "CHRONICLE_STORE")]
    pub store: String,
    /// The chain family of the store: `solana` or `evm`.
    #[arg(long, default_value = "solana", value_parser = parse_family)]
    pub chain: ChainFamily,
    /// First slot.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Last slot (inclusive); without it, a time window must be given.
    #[arg(long, required_unless_present = "start_time")]
    pub to: Option<u64>,
    /// Only blocks produced at or after this time (RFC 3339, e.g. `2021-10-06T07:00:00Z`).
    #[arg(long, requires = "end_time", value_parser = unix_seconds)]
    pub start_time: Option<i64>,
    /// Only blocks produced before this time (RFC 3339).
    #[arg(long, requires = "start_time", value_parser = unix_seconds)]
    pub end_time: Option<i64>,
    /// Where the dataset goes: `file:///DIR`, `s3://…` or `gs://…`.
    #[arg(long)]
    pub out: String,
    /// `transaction-summary`, `transaction-json`, `program-logs`,
    /// `transaction-chat` or `transaction-instruct`.
    #[arg(long, default_value = "transaction-summary")]
    pub template: String,
    /// A template of your own instead (minijinja over each transaction's
    /// normalized data, as `transaction-json` writes it).
    #[arg(long, value_name = "FILE", conflicts_with = "template")]
    pub template_file: Option<PathBuf>,
    /// `cl100k_base`, `o200k_base`, `p50k_base` or `r50k_base` (needed for tokens).
    #[arg(long, conflicts_with = "tokenizer_json")]
    pub tokenizer: Option<String>,
    /// A Hugging Face `tokenizer.json` to tokenize with instead: a path or an `http(s)://` URL.
    #[arg(long, value_name = "FILE_OR_URL")]
    pub tokenizer_json: Option<String>,
    /// The tokenizer.json's sha256 (hex): a file that differs is refused.
    #[arg(long, requires = "tokenizer_json")]
    pub tokenizer_sha256: Option<String>,
    /// The tokenizer.json's token put before each document (default: the first
    /// of `<|endoftext|>`, `</s>`, `<eos>`, `[SEP]` it has).
    #[arg(long, requires = "tokenizer_json")]
    pub end_of_text: Option<String>,
    /// Output formats.
    #[arg(long, value_delimiter = ',', default_value = "jsonl", value_parser = ["jsonl", "parquet", "tokens"])]
    pub formats: Vec<String>,
    #[arg(long, default_value_t = 2048)]
    pub sequence_length: usize,
    /// Shards close (both splits at once) once the documents' text since the
    /// last ones reaches this many bytes.
    #[arg(long, default_value_t = 256 << 20)]
    pub shard_bytes: u64,
    #[arg(long, default_value_t = 0.01)]
    pub validation_fraction: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Only transactions invoking this program (repeatable).
    #[arg(long = "program")]
    pub programs: Vec<String>,
    #[arg(long)]
    pub success_only: bool,
    #[arg(long)]
    pub include_votes: bool,
    /// Only transactions with an instruction of one of these parsed types
    /// (`transfer,transferChecked,…`, as jsonParsed names them).
    #[arg(long, value_delimiter = ',')]
    pub instruction_types: Vec<String>,
    /// Only documents whose text has at least this many bytes.
    #[arg(long)]
    pub min_bytes: Option<u64>,
    /// Only documents whose text has at most this many bytes.
    #[arg(long)]
    pub max_bytes: Option<u64>,
    /// Keep this fraction of the documents (0–1], drawn by content hash and --seed.
    #[arg(long)]
    pub sample: Option<f64>,
    /// Keep documents with the same text.
    #[arg(long)]
    pub no_dedup: bool,
    /// Drop documents at least this similar to a kept one (0.5–1, MinHash of word 3-grams).
    #[arg(long)]
    pub near_duplicate: Option<f64>,
    /// Blocks read and rendered at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CommitmentArg {
    Finalized,
    Confirmed,
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
    match cli.command {
        Command::Dev { .. } => telemetry::init_with(cli.log_format, "warn"),
        _ => telemetry::init(cli.log_format),
    }
    let result = match cli.command {
        Command::Crd { out_dir } => print_crds(out_dir.as_deref()),
        Command::Validate { paths } => validate(&paths),
        Command::Worker(WorkerArgs { metrics_addr, metrics_linger, command }) => block_on(async move {
            let stop_metrics = telemetry::metrics::spawn_metrics(metrics_addr);
            // Listening from the start: a stop asked during the work ends the linger too.
            let mut stop_asked =
                (metrics_addr.is_some() && !metrics_linger.is_zero()).then(StopSignals::listen).flatten();
            let one_shot = command.is_one_shot();
            let work = async move {
                match command {
                    WorkerCommand::Ingest(args) => ingest(args).await,
                    WorkerCommand::Export(args) => export(args).await,
                    WorkerCommand::Run { spec, shard_index } => worker_run(spec, shard_index).await,
                }
            };
            // Listening replaced the default handler, so a one-shot run (which
            // has no stop of its own) must still end at a stop, unfinished: an
            // export resumes from its checkpoint, a retention run is redone.
            let (done, stopped) = match stop_asked.as_mut() {
                Some(signals) if one_shot => tokio::select! {
                    done = work => (done, false),
                    () = signals.next() => {
                        tracing::warn!("stop requested: the run ends unfinished");
                        (Ok(ExitCode::from(143)), true)
                    }
                },
                _ => (work.await, false),
            };
            // Only finished work lingers: not a failure (its restart is not held up), not a stop.
            if let (Some(signals), Ok(_), false) = (stop_asked, &done, stopped) {
                signals.linger(metrics_linger).await;
            }
            stop_metrics.cancel();
            done
        }),
        Command::Serve(args) => block_on(serve(args)),
        Command::Controller(args) => block_on(controller(args)),
        Command::Dev { files, state, once } => block_on(async move {
            let state = state.unwrap_or_else(crate::dev::default_state_dir);
            let shutdown = tokio_util::sync::CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            crate::dev::run(crate::dev::DevOptions { files, state, once }, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Import { store, slot, files } => block_on(import::run(&store, slot, &files)),
        Command::Archive { store, epoch, from, to, max_section, out } => block_on(async move {
            let limits = crate::chain::solana::archive::block::Limits { max_section: max_section.max(4096) };
            let range = match epoch {
                Some(epoch) => {
                    let (first, last) =
                        crate::chain::solana::archive::epoch_bounds(epoch, solana_clock::DEFAULT_SLOTS_PER_EPOCH);
                    crate::chain::solana::archive::ArchiveRange { first, last, epoch: Some(epoch), limits }
                }
                None => crate::chain::solana::archive::ArchiveRange {
                    first: from.unwrap_or_default(),
                    last: to.unwrap_or_default(),
                    epoch: None,
                    limits,
                },
            };
            let store = crate::store::open_existing(&store).await?;
            let written = crate::chain::solana::archive::write_archive(&store, &range, &out).await?;
            println!("{}", serde_json::to_string(&written)?);
            Ok(ExitCode::SUCCESS)
        }),
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

fn parse_table(text: &str) -> Result<(String, String), String> {
    let (ours, theirs) = text.split_once('=').ok_or_else(|| format!("{text:?} is not OURS=THEIRS"))?;
    Ok((ours.to_string(), theirs.to_string()))
}

async fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    use crate::crd::chain_source::Commitment;
    use crate::crd::ingest_job::IngestTarget;
    use crate::pipeline::config::{RpcEndpoint, Secret, SourceConfig};
    use std::time::Duration;
    let commitment = match args.commitment {
        CommitmentArg::Finalized => Commitment::Finalized,
        CommitmentArg::Confirmed => Commitment::Confirmed,
    };
    // The node's endpoint, as the flags describe it (the source's, or the dataset's check).
    let auth = match &args.rpc_auth_header {
        Some(header) => {
            let token = std::env::var("CHRONICLE_RPC_TOKEN")
                .map_err(|_| anyhow::anyhow!("--rpc-auth-header needs the token in CHRONICLE_RPC_TOKEN"))?;
            Some((header.clone(), Secret::new(token)))
        }
        None => None,
    };
    let (websocket, confirmations, traces) = (args.ws.clone(), args.confirmations, args.traces);
    let (timeout, requests_per_second, burst, attempts) =
        (Duration::from_secs(args.timeout), args.rate_limit, args.rate_burst, args.attempts);
    let endpoint = move |url: String| RpcEndpoint {
        url,
        websocket: websocket.clone(),
        auth: auth.clone(),
        commitment,
        confirmations,
        traces,
        timeout,
        requests_per_second,
        burst,
        attempts,
    };
    // Rows from BigQuery go to the lake only.
    let dataset = args.bigquery_dataset.is_some();
    let canonical = !args.no_canonical && !dataset;
    let config = worker::ingest::IngestConfig {
        job: args.job,
        chain: args.chain,
        store: args.store.unwrap_or_default(),
        store_access: crate::store::BigtableAccess::from_env(),
        catalog: Secret::new(args.catalog),
        source: match (args.rpc, args.bigquery_dataset, args.archive) {
            (None, None, Some(url)) => SourceConfig::Archive(crate::pipeline::config::ArchiveLocation {
                url,
                epoch_slots: solana_clock::DEFAULT_SLOTS_PER_EPOCH,
            }),
            (_, Some(dataset), _) => SourceConfig::BigQuery(crate::pipeline::config::BigQueryDataset {
                access: crate::bigquery::BigQueryAccess {
                    endpoint: args.bigquery_endpoint,
                    project: args.bigquery_project,
                    location: None,
                    credentials_file: args.bigquery_credentials,
                    attempts: args.attempts,
                },
                dataset,
                tables: args.bigquery_tables.into_iter().collect(),
                // Repairs go to the lake, which takes final blocks only.
                check: args.bigquery_check_rpc.map(|url| RpcEndpoint {
                    commitment: Commitment::Finalized,
                    websocket: None,
                    ..endpoint(url)
                }),
                repair: args.bigquery_repair,
                settle_slots: args.bigquery_settle_slots,
            }),
            (rpc, None, _) => SourceConfig::Rpc(endpoint(rpc.unwrap_or_default())),
        },
        from: args.from,
        to: args.to,
        follow: args.follow,
        shard: args.shard_index,
        shards: args.shard_count,
        batch_size: args.batch_size as usize,
        concurrency: args.concurrency as usize,
        poll_interval: args.poll_interval.unwrap_or(Duration::from_millis(if dataset { 60_000 } else { 400 })),
        catalog_patience: Duration::from_secs(600),
        targets: [
            canonical.then_some(IngestTarget::Canonical),
            args.lake.as_ref().map(|_| IngestTarget::Lake),
            args.metrics_url.as_ref().map(|_| IngestTarget::Metrics),
        ]
        .into_iter()
        .flatten()
        .collect(),
        chain_metrics: args.metrics_url.map(|url| crate::pipeline::sinks::chain_metrics::ChainMetricsConfig {
            url,
            org: args.metrics_org.unwrap_or_default(),
            bucket: args.metrics_bucket.unwrap_or_default(),
            token: Secret::new(std::env::var("CHRONICLE_METRICS_TOKEN").unwrap_or_default()),
            chain: args.chain.as_str().into(),
            network: args.network.clone(),
            hold_until_final: args.follow && commitment == Commitment::Confirmed,
            buffer_points: args.metrics_buffer_points,
        }),
        lake: args.lake.map(|url| worker::ingest::LakeConfig { url, network: args.network }),
        caches: args.cache.into_iter().map(Secret::new).collect(),
    };
    run_ingest(config).await
}

/// `chronicle worker run`: the spec's work, configured as the flags would.
async fn worker_run(file: Option<PathBuf>, shard: u32) -> anyhow::Result<ExitCode> {
    use crate::worker::spec::{Work, WorkerSpec};
    let spec = WorkerSpec::load(file.as_deref())?;
    match &spec.work {
        Work::Ingest(ingest) => run_ingest(worker::run::ingest_config(ingest, shard)?).await,
        Work::Serve(serve) => {
            let (access, config) = worker::run::serve_config(serve)?;
            run_serve(serve.chain.family, &serve.store.url, &access, config).await
        }
        Work::Export(export) => {
            let summary = worker::run::run_export(export).await?;
            tracing::info!(documents = summary.documents, digest = %summary.digest, manifest = %summary.manifest, "export published");
            Ok(ExitCode::SUCCESS)
        }
        Work::ExportCleanup(cleanup) => {
            let removed = crate::export::unpublished::remove(&cleanup.output).await?;
            tracing::info!(export = %cleanup.job, objects = removed.objects, bytes = removed.bytes,
                kept = removed.kept, "unpublished export output removed");
            Ok(ExitCode::SUCCESS)
        }
        Work::Retention(retention) => {
            let record = crate::retention::run(worker::run::retention_config(retention)?).await?;
            tracing::info!(
                dry_run = record.dry_run,
                oldest_kept = ?record.oldest_kept,
                held_at = ?record.held_at,
                blocks = record.blocks_removed,
                rows = record.rows_removed,
                bytes = record.bytes_removed,
                lake_objects = record.lake_objects_removed,
                "retention run done"
            );
            Ok(ExitCode::SUCCESS)
        }
        Work::Node(node) => {
            let shutdown = tokio_util::sync::CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            let ok = worker::host::run_node(node, shutdown).await?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
    }
}

async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    use crate::crd::training_export::ExportFormat;
    use crate::export::document::{Rendering, Selection, Template};
    use crate::export::inline_template::InlineTemplate;
    use crate::export::tokens::{HuggingFaceFile, TokenizerChoice, encoding_named};
    let tokenizer = match (args.tokenizer_json, args.tokenizer.as_deref()) {
        (Some(path), _) => Some(TokenizerChoice::HuggingFace(HuggingFaceFile {
            path,
            sha256: args.tokenizer_sha256,
            end_of_text: args.end_of_text,
        })),
        (None, Some(name)) => Some(TokenizerChoice::Encoding(encoding_named(name).map_err(anyhow::Error::msg)?)),
        (None, None) => None,
    };
    let formats = args
        .formats
        .iter()
        .map(|f| match f.as_str() {
            "parquet" => ExportFormat::Parquet,
            "tokens" => ExportFormat::Tokens,
            _ => ExportFormat::Jsonl,
        })
        .collect();
    let config = crate::export::ExportConfig {
        chain: args.chain,
        store: args.store,
        store_access: crate::store::BigtableAccess::from_env(),
        from: args.from,
        to: args.to.unwrap_or(crate::export::window::NO_END),
        window: args.start_time.zip(args.end_time).map(|(start, end)| crate::export::window::TimeWindow { start, end }),
        selection: Selection {
            programs: args.programs,
            success_only: args.success_only,
            include_votes: args.include_votes,
            instruction_types: args.instruction_types,
            min_bytes: args.min_bytes,
            max_bytes: args.max_bytes,
            sample: args.sample,
        },
        template: match &args.template_file {
            Some(file) => {
                let source =
                    std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
                Rendering::Inline(std::sync::Arc::new(InlineTemplate::compile(&source).map_err(anyhow::Error::msg)?))
            }
            None => Rendering::Builtin(Template::named(&args.template).map_err(anyhow::Error::msg)?),
        },
        tokenizer,
        sequence_length: args.sequence_length,
        output: args.out,
        formats,
        shard_bytes: args.shard_bytes,
        validation_fraction: args.validation_fraction,
        seed: args.seed,
        exact_dedup: !args.no_dedup,
        near_duplicate: args.near_duplicate,
        concurrency: args.concurrency,
    };
    let summary = crate::export::run(config).await?;
    tracing::info!(
        documents = summary.documents, duplicates = summary.duplicates,
        near_duplicates = summary.near_duplicates, tokens = summary.tokens,
        shards = summary.shards, bytes = summary.bytes, digest = %summary.digest, manifest = %summary.manifest,
        "export published"
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_ingest(config: worker::ingest::IngestConfig) -> anyhow::Result<ExitCode> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let summary = worker::ingest::run(config, shutdown).await?;
    tracing::info!(
        checkpoint = ?summary.checkpoint, written = summary.written, skipped = summary.skipped,
        repaired = summary.repaired, open_gaps = summary.open_gaps.len(), "ingest finished"
    );
    if summary.interrupted {
        tracing::info!("stopped on request after committing the last batch");
        return Ok(ExitCode::SUCCESS);
    }
    if !summary.open_gaps.is_empty() {
        let shown: Vec<String> = summary.open_gaps.iter().take(20).map(ToString::to_string).collect();
        tracing::error!(
            "the range is not complete: {} slots could not be fetched and are listed as gaps in the catalog ({}{}); run again to repair them",
            summary.open_gaps.len(),
            shown.join(", "),
            if summary.open_gaps.len() > 20 { ", …" } else { "" }
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

async fn controller(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let config = crate::controller::ControllerConfig {
        image: args.image,
        lease: crate::controller::leader::LeaseConfig {
            namespace: args.lease_namespace,
            name: args.lease_name,
            identity: args.identity,
            duration: std::time::Duration::from_secs(args.lease_seconds),
            renew: std::time::Duration::from_secs((args.lease_seconds / 3).max(1)),
        },
        health: args.health_listen,
        orphan_sweep: std::time::Duration::from_secs(args.orphan_sweep_seconds.max(1)),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    crate::controller::run(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = crate::serve::ServeConfig {
        listen: args.listen,
        cache: args.cache.map(|url| crate::serve::cache::CacheConfig {
            url: crate::pipeline::config::Secret::new(url),
            ttl: args.cache_ttl,
            immutable_ttl: args.immutable_ttl,
            timeout: std::time::Duration::from_millis(250),
            max_memory: args.cache_max_memory,
            eviction: args.cache_eviction,
            methods: Vec::new(),
            pool_size: 1,
        }),
        api_keys: worker::run::read_api_keys(args.api_keys_file.as_deref(), args.api_keys_dir.as_deref())?,
        rate_limit: args.rate_limit,
        rate_burst: args.rate_burst,
        max_body_bytes: args.max_body_bytes,
        max_batch: args.max_batch,
        request_timeout: args.request_timeout,
        network: crate::serve::network::Network::new(&args.network, args.genesis_hash.as_deref())?,
        upstream: args.upstream.map(|url| crate::serve::upstream::UpstreamConfig {
            forward_misses: args.upstream_misses,
            requests_per_second: args.upstream_rate_limit,
            ..crate::serve::upstream::UpstreamConfig::new(url)
        }),
        health_max_lag: args.health_max_lag,
        chain_id: args.chain_id,
    };
    run_serve(args.chain, &args.store, &crate::store::BigtableAccess::from_env(), config).await
}

fn parse_family(text: &str) -> Result<ChainFamily, String> {
    [ChainFamily::Solana, ChainFamily::Evm]
        .into_iter()
        .find(|family| family.as_str() == text)
        .ok_or_else(|| format!("unknown chain family {text:?} (known: solana, evm)"))
}

fn parse_traces(text: &str) -> Result<Traces, String> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|_| format!("unknown traces mode {text:?} (known: auto, required, disabled)"))
}

/// Serves the chain's history API from the store, read-only (no admin calls).
async fn run_serve(
    family: ChainFamily,
    store: &str,
    access: &crate::store::BigtableAccess,
    config: crate::serve::ServeConfig,
) -> anyhow::Result<ExitCode> {
    use crate::chain::ChainAdapter;
    let cells = crate::store::open_cells(store, access).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let adapter = crate::chain::adapter(family).map_err(anyhow::Error::msg)?;
    crate::with_adapter!(adapter, |chain| chain.serve(Arc::new(chain.layout(cells)), config, shutdown).await)?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM (Kubernetes) or Ctrl-C asks the worker to finish its batch and stop.
async fn stop_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stop requested: finishing the batch in flight");
    shutdown.cancel();
}

/// An RFC 3339 time as Unix seconds.
fn unix_seconds(text: &str) -> Result<i64, String> {
    let time = humantime::parse_rfc3339_weak(text).map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))?;
    let since = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{text:?} is before 1970"))?;
    Ok(since.as_secs() as i64)
}

impl WorkerCommand {
    /// Work that runs to its end with no stop of its own (an export, an
    /// export's cleanup, a retention run), as opposed to ingest, serve and
    /// a node, which stop gracefully at a signal.
    fn is_one_shot(&self) -> bool {
        use crate::worker::spec::{Work, WorkerSpec};
        match self {
            Self::Ingest(_) => false,
            Self::Export(_) => true,
            Self::Run { spec, .. } => WorkerSpec::load(spec.as_deref())
                .is_ok_and(|s| matches!(s.work, Work::Export(_) | Work::ExportCleanup(_) | Work::Retention(_))),
        }
    }
}

/// SIGTERM and SIGINT, listened to from the start of the work.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn listen() -> Option<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Some(Self { term: signal(SignalKind::terminate()).ok()?, int: signal(SignalKind::interrupt()).ok()? })
    }

    /// The next SIGTERM or SIGINT.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    /// Waits out the metrics linger, unless a stop was asked during the work or comes now.
    async fn linger(mut self, time: std::time::Duration) {
        use futures::FutureExt;
        let asked = |s: &mut tokio::signal::unix::Signal| s.recv().now_or_never().is_some();
        if asked(&mut self.term) || asked(&mut self.int) {
            return;
        }
        tracing::info!(
            seconds = time.as_secs(),
            "work done: serving the final metrics until the linger ends or a stop"
        );
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
            _ = tokio::time::sleep(time) => {}
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
pub fn collect_yaml_files(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
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
