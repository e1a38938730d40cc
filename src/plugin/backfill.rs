//! `backfill SOURCE --from --to`: a new IngestJob for a slot range, created
//! as a manifest would be (the API server's rules judge it; its refusal is
//! printed as it gives it).

use kube::api::PostParams;
use kube::{Api, Client};

use super::{FIELD_MANAGER, PluginError, get};
use crate::crd::ChainSource;
use crate::crd::common::{LocalObjectRef, SlotRange};
use crate::crd::ingest_job::{
    BigQueryIngest, IngestJob, IngestJobSpec, IngestMode, IngestSource, IngestTarget, RpcSource,
};

#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The ChainSource whose stores are filled.
    pub source: String,
    /// First slot.
    #[arg(long)]
    pub from: u64,
    /// Last slot (inclusive).
    #[arg(long)]
    pub to: u64,
    /// Name of the IngestJob (default: `SOURCE-backfill-FROM-TO`).
    #[arg(long)]
    pub name: Option<String>,
    /// Where blocks come from.
    #[arg(long, value_enum, default_value = "rpc")]
    pub via: Via,
    /// Stores written (repeatable).
    #[arg(long = "target", value_enum, default_values = ["canonical"])]
    pub targets: Vec<Target>,
    /// Workers: the range is split into this many resumable shards.
    #[arg(long, default_value_t = 1)]
    pub parallelism: u32,
    /// Blocks fetched and written per batch.
    #[arg(long, default_value_t = 50)]
    pub batch_size: u32,
    /// Ask the API server to judge the job without creating it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Via {
    /// The ChainSource's RPC endpoints.
    Rpc,
    /// The ChainSource's BigQuery dataset.
    BigQuery,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Target {
    Canonical,
    Lake,
    Metrics,
}

impl From<Target> for IngestTarget {
    fn from(target: Target) -> Self {
        match target {
            Target::Canonical => Self::Canonical,
            Target::Lake => Self::Lake,
            Target::Metrics => Self::Metrics,
        }
    }
}

/// The IngestJob the arguments describe.
pub fn job(args: &BackfillArgs) -> Result<IngestJob, PluginError> {
    if args.from > args.to {
        return Err(PluginError::Invalid(format!("--from {} is after --to {}", args.from, args.to)));
    }
    let name = args.name.clone().unwrap_or_else(|| format!("{}-backfill-{}-{}", args.source, args.from, args.to));
    let source = match args.via {
        Via::Rpc => IngestSource { rpc: Some(RpcSource::default()), big_query: None, store: None },
        // The defaults a manifest's empty `bigQuery: {}` gets.
        Via::BigQuery => {
            let defaults: BigQueryIngest = serde_json::from_str("{}").expect("every field has a default");
            IngestSource { rpc: None, big_query: Some(defaults), store: None }
        }
    };
    let spec = IngestJobSpec {
        source_ref: LocalObjectRef { name: args.source.clone() },
        source,
        mode: IngestMode::Backfill,
        range: Some(SlotRange { start_slot: args.from, end_slot: Some(args.to) }),
        parallelism: args.parallelism,
        batch_size: args.batch_size,
        targets: args.targets.iter().map(|&t| t.into()).collect(),
        suspend: false,
        resources: None,
    };
    Ok(IngestJob::new(&name, spec))
}

pub async fn create(client: &Client, namespace: &str, args: &BackfillArgs) -> Result<String, PluginError> {
    let job = job(args)?;
    // A job naming a source that does not exist would only say so in its status later.
    get(&Api::<ChainSource>::namespaced(client.clone(), namespace), "ChainSource", namespace, &args.source).await?;
    let api: Api<IngestJob> = Api::namespaced(client.clone(), namespace);
    let params = PostParams { dry_run: args.dry_run, field_manager: Some(FIELD_MANAGER.into()) };
    let created = api.create(&params, &job).await.map_err(PluginError::from_api)?;
    let name = kube::ResourceExt::name_any(&created);
    let targets: Vec<String> = created
        .spec
        .targets
        .iter()
        .map(|t| serde_json::to_value(t).map(|v| v.as_str().unwrap_or_default().to_string()).unwrap_or_default())
        .collect();
    let verb = if args.dry_run { "judged valid (dry run, not created)" } else { "created" };
    Ok(format!(
        "ingestjob.chronicle.dev/{name} {verb}: slots {}..={} of ChainSource {} into {}, {} worker(s)\n\
         follow it with: kubectl chronicle status {} -n {namespace}\n",
        args.from,
        args.to,
        args.source,
        targets.join(", "),
        created.spec.parallelism,
        args.source,
    ))
}
