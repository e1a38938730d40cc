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
    /// Stores written (repeatable; default: canonical from RPC, the lake from BigQuery).
    #[arg(long = "target", value_enum)]
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

/// The longest IngestJob name whose backfill Job (`NAME-ingest`) can be
/// created: a Job's name is also its pods' `job-name` label (63 characters).
const MAX_NAME: usize = 63 - "-ingest".len();

/// `SOURCE-backfill-FROM-TO`, with the source's name cut to fit.
fn default_name(source: &str, from: u64, to: u64) -> String {
    let suffix = format!("-backfill-{from}-{to}");
    let keep = MAX_NAME.saturating_sub(suffix.len());
    let prefix: String = source.chars().take(keep).collect();
    format!("{}{suffix}", prefix.trim_end_matches(['-', '.']))
}

/// The IngestJob the arguments describe.
pub fn job(args: &BackfillArgs) -> Result<IngestJob, PluginError> {
    if args.from > args.to {
        return Err(PluginError::Invalid(format!("--from {} is after --to {}", args.from, args.to)));
    }
    let name = args.name.clone().unwrap_or_else(|| default_name(&args.source, args.from, args.to));
    if name.len() > MAX_NAME {
        return Err(PluginError::Invalid(format!(
            "--name {name} is {} characters; its Job's name (NAME-ingest) must fit in 63, so at most {MAX_NAME}",
            name.len()
        )));
    }
    let targets = match (args.targets.is_empty(), args.via) {
        (false, _) => args.targets.iter().map(|&t| t.into()).collect(),
        (true, Via::Rpc) => vec![IngestTarget::Canonical],
        (true, Via::BigQuery) => vec![IngestTarget::Lake],
    };
    let source = match args.via {
        Via::Rpc => IngestSource { rpc: Some(RpcSource::default()), big_query: None, store: None, archive: None },
        // The defaults a manifest's empty `bigQuery: {}` gets.
        Via::BigQuery => {
            let defaults: BigQueryIngest = serde_json::from_str("{}").expect("every field has a default");
            IngestSource { rpc: None, big_query: Some(defaults), store: None, archive: None }
        }
    };
    let spec = IngestJobSpec {
        source_ref: LocalObjectRef { name: args.source.clone() },
        source,
        mode: IngestMode::Backfill,
        range: Some(SlotRange { start_slot: args.from, end_slot: Some(args.to) }),
        parallelism: args.parallelism,
        batch_size: args.batch_size,
        targets,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_name_leaves_room_for_the_job_name() {
        assert_eq!(
            default_name("solana-mainnet", 302_832_000, 302_832_063),
            "solana-mainnet-backfill-302832000-302832063"
        );
        let long = default_name("solana-mainnet-beta-archive-primary-us-east", 302_832_000, 302_832_063);
        assert_eq!(long.len(), MAX_NAME);
        assert!(long.ends_with("-backfill-302832000-302832063") && !long.contains("--"), "{long}");
    }
}
