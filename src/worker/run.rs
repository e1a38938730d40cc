//! `chronicle worker run`: what a pod started by the controller runs. It reads
//! its [`WorkerSpec`] and turns it into the same configurations the operator
//! commands (`worker ingest`, `serve`) build from their flags, resolving the
//! Secret-backed variables the spec names.

use std::path::PathBuf;
use std::time::Duration;

use super::ingest::{IngestConfig, LakeConfig};
use super::spec::{
    ChainMetricsSpec, ChainSpec, ExportSpec, FromEnv, IngestModeSpec, IngestSpec, RetentionSpec, RpcEndpointSpec,
    ServeSpec, SourceSpec, SpecError, StoreSpec, duration,
};
use crate::bigquery::BigQueryAccess;
use crate::chain::Adapter;
use crate::export::tokens::TokenizerChoice;
use crate::pipeline::config::{ArchiveLocation, BigQueryDataset, RpcEndpoint, Secret, SourceConfig, StoreOrigin};
use crate::pipeline::sinks::chain_metrics::ChainMetricsConfig;

/// Blocks a replication copies at once: each is a few multi-row reads and writes.
pub const STORE_CONCURRENCY: usize = 16;
/// How often a tailing replication asks its origin for new blocks.
pub const STORE_POLL: Duration = Duration::from_secs(2);
use crate::serve::ServeConfig;
use crate::serve::cache::CacheConfig;
use crate::store::BigtableAccess;

/// The chain adapter a spec names. A spec for a family this binary has no
/// adapter for is refused with its name rather than run as if it were Solana.
pub fn check_family(chain: &ChainSpec) -> Result<Adapter, SpecError> {
    crate::chain::adapter(chain.family).map_err(|reason| SpecError::Invalid { field: "chain.family", reason })
}

pub fn store_access(store: &StoreSpec) -> BigtableAccess {
    BigtableAccess {
        emulator_host: store.emulator_host.clone(),
        credentials_file: store.credentials_file.as_ref().map(PathBuf::from),
    }
}

/// The ingest run an [`IngestSpec`] describes, for shard `shard` (the pod's
/// Job completion index), with Secret-backed values from the environment.
pub fn ingest_config(spec: &IngestSpec, shard: u32) -> Result<IngestConfig, SpecError> {
    ingest_config_in(spec, shard, &|name| std::env::var(name).ok())
}

/// [`ingest_config`] with Secret-backed values from `lookup`.
pub fn ingest_config_in(
    spec: &IngestSpec,
    shard: u32,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IngestConfig, SpecError> {
    check_family(&spec.chain)?;
    let (source, concurrency) = match &spec.source {
        SourceSpec::Rpc { endpoint } => {
            let rpc = rpc_endpoint(endpoint, &spec.chain, lookup)?;
            (SourceConfig::Rpc(rpc), endpoint.max_concurrent.max(1) as usize)
        }
        SourceSpec::BigQuery {
            dataset,
            billing_project,
            location,
            credentials_file,
            check,
            repair,
            endpoint,
            poll_interval: _,
            settle_slots,
        } => {
            let dataset = BigQueryDataset {
                access: BigQueryAccess {
                    endpoint: endpoint.clone(),
                    project: billing_project.clone(),
                    location: Some(location.clone()),
                    credentials_file: credentials_file.clone(),
                    attempts: 4,
                },
                dataset: dataset.clone(),
                tables: Default::default(),
                // Repairs go to the lake, which takes final blocks only.
                check: check
                    .as_ref()
                    .map(|e| rpc_endpoint(e, &spec.chain, lookup))
                    .transpose()?
                    .map(|e| RpcEndpoint { commitment: crate::crd::chain_source::Commitment::Finalized, ..e }),
                repair: *repair,
                settle_slots: *settle_slots,
            };
            // A batch's blocks come from its prefetched queries: a few at once suffice.
            (SourceConfig::BigQuery(dataset), 4)
        }
        SourceSpec::Archive { url } => {
            let epoch_slots = match crate::chain::adapter(spec.chain.family) {
                Ok(Adapter::Solana(solana)) => crate::chain::ChainAdapter::epoch_slots(&solana),
                Ok(Adapter::Evm(_)) => {
                    return Err(SpecError::Invalid {
                        field: "source.archive",
                        reason: "there are no epoch archives for evm chains".into(),
                    });
                }
                Err(reason) => return Err(SpecError::Invalid { field: "chain.family", reason }),
            };
            // One reader streams the file; blocks are assembled a core each.
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 16);
            (SourceConfig::Archive(ArchiveLocation { url: url.clone(), epoch_slots }), cores)
        }
        SourceSpec::Store { origin, verify, repair } => {
            let origin =
                StoreOrigin { url: origin.url.clone(), access: store_access(origin), verify: *verify, repair: *repair };
            (SourceConfig::Store(origin), STORE_CONCURRENCY)
        }
    };
    let (from, to, follow, shards) = match spec.mode {
        IngestModeSpec::Backfill { from, to, shards } => (Some(from), Some(to), false, shards.max(1)),
        IngestModeSpec::Follow { from } => (from, None, true, 1),
    };
    Ok(IngestConfig {
        job: spec.job.clone(),
        chain: spec.chain.family,
        store: spec.store.url.clone(),
        store_access: store_access(&spec.store),
        catalog: spec.catalog.resolve_in(lookup)?,
        source,
        from,
        to,
        follow,
        shard,
        shards,
        batch_size: spec.batch_size.max(1) as usize,
        concurrency,
        poll_interval: match &spec.source {
            SourceSpec::BigQuery { poll_interval, .. } => duration("source.pollInterval", poll_interval)?,
            SourceSpec::Rpc { .. } => Duration::from_millis(400),
            SourceSpec::Store { .. } => STORE_POLL,
            SourceSpec::Archive { .. } => STORE_POLL,
        },
        catalog_patience: Duration::from_secs(600),
        targets: spec.targets.clone(),
        lake: spec.lake.as_ref().map(|l| LakeConfig { url: l.url.clone(), network: spec.chain.network.clone() }),
        caches: spec.caches.iter().map(|c| c.resolve_in(lookup)).collect::<Result<_, _>>()?,
        chain_metrics: spec
            .metrics
            .as_ref()
            .map(|m| chain_metrics_config(m, &spec.chain, follow, lookup))
            .transpose()?,
    })
}

/// The chain-metrics server of a spec, its token from the environment.
/// Only a confirmed follower learns when its blocks turn final, so only it
/// holds their points until then (a backfill releases every point at once).
fn chain_metrics_config(
    spec: &ChainMetricsSpec,
    chain: &ChainSpec,
    follow: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ChainMetricsConfig, SpecError> {
    Ok(ChainMetricsConfig {
        url: spec.url.clone(),
        org: spec.org.clone(),
        bucket: spec.bucket.clone(),
        token: spec.token.resolve_in(lookup)?,
        chain: chain.family.as_str().into(),
        network: chain.network.clone(),
        hold_until_final: follow && chain.commitment == crate::crd::chain_source::Commitment::Confirmed,
        buffer_points: crate::pipeline::sinks::chain_metrics::BUFFER_POINTS,
    })
}

/// The export an [`ExportSpec`] describes.
pub fn export_config(spec: &ExportSpec) -> Result<crate::export::ExportConfig, SpecError> {
    check_family(&spec.chain)?;
    Ok(crate::export::ExportConfig {
        chain: spec.chain.family,
        store: spec.store.url.clone(),
        store_access: store_access(&spec.store),
        from: spec.from,
        to: spec.to,
        window: spec.window,
        selection: crate::export::document::Selection {
            programs: spec.programs.clone(),
            success_only: spec.success_only,
            include_votes: spec.include_votes,
            instruction_types: spec.instruction_types.clone(),
            min_bytes: spec.min_bytes,
            max_bytes: spec.max_bytes,
            sample: spec.sample,
        },
        template: crate::export::document::Rendering::of(&spec.template)
            .map_err(|reason| SpecError::Invalid { field: "template", reason })?,
        tokenizer: match (&spec.hugging_face_tokenizer, spec.tokenizer) {
            (Some(file), _) => Some(TokenizerChoice::HuggingFace(file.clone())),
            (None, encoding) => encoding.map(TokenizerChoice::Encoding),
        },
        sequence_length: spec.sequence_length as usize,
        output: spec.output.clone(),
        formats: spec.formats.clone(),
        shard_bytes: spec.shard_bytes,
        validation_fraction: spec.validation_fraction,
        seed: spec.seed,
        exact_dedup: spec.exact_dedup,
        near_duplicate: spec.near_duplicate,
        concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
    })
}

/// The retention run a [`RetentionSpec`] describes.
pub fn retention_config(spec: &RetentionSpec) -> Result<crate::retention::RetentionConfig, SpecError> {
    check_family(&spec.chain)?;
    Ok(crate::retention::RetentionConfig {
        policy: spec.policy.clone(),
        chain: spec.chain.family,
        network: spec.chain.network.clone(),
        store: spec.store.url.clone(),
        store_access: store_access(&spec.store),
        catalog: spec.catalog.resolve()?,
        lake: spec.lake.as_ref().map(|l| l.url.clone()),
        rules: spec.rules.clone(),
        dry_run: spec.dry_run,
        guard: spec.guard.clone(),
        caches: spec.caches.iter().map(FromEnv::resolve).collect::<Result<_, _>>()?,
    })
}

/// Runs an export and records what it did in the catalog, for the
/// TrainingExport's status: `Running` at start, then `Succeeded` with the
/// counts, manifest and digest, or `Failed` with the reason.
pub async fn run_export(spec: &ExportSpec) -> anyhow::Result<crate::export::ExportSummary> {
    use crate::catalog::ExportRecord;
    let config = export_config(spec)?;
    let catalog = crate::catalog::open(spec.catalog.resolve()?.expose()).await?;
    let running = ExportRecord { phase: "Running".into(), ..ExportRecord::default() };
    catalog.record_export(&spec.job, &running).await?;
    let record = match crate::export::run(config).await {
        Ok(summary) => {
            let record = ExportRecord {
                phase: "Succeeded".into(),
                documents: summary.documents,
                tokens: summary.tokens,
                shards: summary.shards,
                bytes: summary.bytes,
                manifest: Some(summary.manifest.clone()),
                digest: Some(summary.digest.clone()),
                message: None,
            };
            catalog.record_export(&spec.job, &record).await?;
            return Ok(summary);
        }
        Err(e) => ExportRecord { phase: "Failed".into(), message: Some(e.to_string()), ..ExportRecord::default() },
    };
    catalog.record_export(&spec.job, &record).await?;
    anyhow::bail!("{}", record.message.unwrap_or_default())
}

/// A node endpoint of a spec, its token read from `lookup`.
fn rpc_endpoint(
    endpoint: &RpcEndpointSpec,
    chain: &super::spec::ChainSpec,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<RpcEndpoint, SpecError> {
    let auth = match &endpoint.auth {
        Some(auth) => Some((auth.header.clone(), auth.token.resolve_in(lookup)?)),
        None => None,
    };
    Ok(RpcEndpoint {
        websocket: endpoint.websocket_url.clone(),
        auth,
        requests_per_second: endpoint.requests_per_second,
        burst: endpoint.burst,
        confirmations: chain.confirmations,
        traces: chain.traces.unwrap_or_default(),
        ..RpcEndpoint::new(endpoint.url.clone(), chain.commitment)
    })
}

/// The serve replica a [`ServeSpec`] describes: its store access and config
/// (API keys are read from `apiKeysDir` by the caller).
pub fn serve_config(spec: &ServeSpec) -> Result<(BigtableAccess, ServeConfig), SpecError> {
    serve_config_in(spec, &|name| std::env::var(name).ok())
}

/// [`serve_config`] with Secret-backed values from `lookup`.
pub fn serve_config_in(
    spec: &ServeSpec,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(BigtableAccess, ServeConfig), SpecError> {
    check_family(&spec.chain)?;
    let cache = match &spec.cache {
        Some(cache) => Some(CacheConfig {
            url: cache.url.resolve_in(lookup)?,
            ttl: duration("cache.ttl", &cache.ttl)?,
            immutable_ttl: duration("cache.immutableTtl", &cache.immutable_ttl)?,
            timeout: Duration::from_millis(250),
            max_memory: cache.max_memory_bytes.map(|b| b.to_string()),
            eviction: Some(cache.eviction.clone()),
            methods: cache
                .methods
                .iter()
                .map(|m| {
                    let method = crate::serve::methods::METHODS
                        .iter()
                        .find(|(name, _)| *name == m.name)
                        .map(|(_, method)| *method)
                        .ok_or_else(|| SpecError::Invalid {
                            field: "cache.methods",
                            reason: format!("{} is not a method serve answers", m.name),
                        })?;
                    let ttl = m.ttl.as_deref().map(|t| duration("cache.methods[].ttl", t)).transpose()?;
                    Ok((method, ttl))
                })
                .collect::<Result<_, SpecError>>()?,
            pool_size: cache.pool_size.unwrap_or(1) as usize,
        }),
        None => None,
    };
    let port = u16::try_from(spec.port)
        .map_err(|_| SpecError::Invalid { field: "port", reason: format!("{} is not a port", spec.port) })?;
    let api_keys = match &spec.api_keys_dir {
        Some(dir) => read_api_keys(None, Some(dir.as_ref()))
            .map_err(|e| SpecError::Invalid { field: "apiKeysDir", reason: format!("{e:#}") })?,
        None => Vec::new(),
    };
    let network = crate::serve::network::Network::new(&spec.chain.network, spec.genesis_hash.as_deref())
        .map_err(|e| SpecError::Invalid { field: "genesisHash", reason: e.to_string() })?;
    let upstream = match &spec.upstream {
        Some(upstream) => {
            let endpoint = rpc_endpoint(&upstream.endpoint, &spec.chain, lookup)?;
            Some(crate::serve::upstream::UpstreamConfig {
                auth: endpoint.auth,
                forward_misses: upstream.forward_misses,
                requests_per_second: upstream.requests_per_second,
                ..crate::serve::upstream::UpstreamConfig::new(endpoint.url)
            })
        }
        None => None,
    };
    let defaults = ServeConfig::default();
    let config = ServeConfig {
        listen: std::net::SocketAddr::from(([0, 0, 0, 0], port)),
        cache,
        api_keys,
        rate_limit: spec.requests_per_second,
        rate_burst: spec.burst,
        network,
        health_max_lag: spec.upstream.as_ref().map_or(defaults.health_max_lag, |u| u.max_slots_behind),
        upstream,
        chain_id: spec.chain.chain_id,
        ..defaults
    };
    Ok((store_access(&spec.store), config))
}

/// Accepted API keys: a file with one per line, and/or a directory with one
/// per file (a Secret mounted as a volume).
pub fn read_api_keys(file: Option<&std::path::Path>, dir: Option<&std::path::Path>) -> anyhow::Result<Vec<Secret>> {
    let mut api_keys: Vec<Secret> = Vec::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading API keys from {}: {e}", path.display()))?;
        api_keys.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(Secret::new));
    }
    if let Some(dir) = dir {
        for entry in
            std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("reading API keys from {}: {e}", dir.display()))?
        {
            let path = entry?.path();
            // Kubernetes mounts Secret keys as files next to `..data` links.
            if path.is_file() && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("..")) {
                let key = std::fs::read_to_string(&path)?;
                if !key.trim().is_empty() {
                    api_keys.push(Secret::new(key.trim()));
                }
            }
        }
    }
    Ok(api_keys)
}
