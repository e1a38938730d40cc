//! `chronicle dev -f DIR_OR_FILE...`: the platform on one machine from the
//! manifests the operator takes. The same validation, the same
//! [`WorkerSpec`]s the controller builds (`controller/workload.rs`), run in
//! this one process: a pod's embedded-store mount becomes the source's
//! directory under `--state`, a Secret the manifests do not give means the
//! embedded catalog (or an in-process cache), and one process owns each embedded store,
//! however many jobs and serve replicas use it.
//!
//! A ChainSource annotated `chronicle.dev/dev-demo-blocks: DIR` gets a local
//! node at its first endpoint's (loopback) address serving the recorded
//! `getBlock` files in `DIR` — real mainnet blocks, through the real RPC
//! client path — so the demo works offline.

pub mod manifests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use self::manifests::{Manifests, Placed};
use crate::catalog;
use crate::controller::workload::{EMBEDDED_MOUNT, ingest_spec, serve_spec, store_spec};
use crate::crd::chain_source::ChainFamily;
use crate::crd::{CacheTier, ChainSource};
use crate::store::BlockStore;
use crate::worker::host::{Host, Opened};
use crate::worker::spec::{Work, WorkerSpec};

/// The annotation that gives a ChainSource a local node of recorded blocks.
pub const DEMO_BLOCKS: &str = "chronicle.dev/dev-demo-blocks";

#[derive(Clone, Debug)]
pub struct DevOptions {
    pub files: Vec<PathBuf>,
    /// Where embedded stores and catalogs live when a manifest names none.
    pub state: PathBuf,
    /// Exit when every backfill has finished.
    pub once: bool,
}

/// `$XDG_DATA_HOME/chronicle/dev`, else `~/.local/share/chronicle/dev`.
pub fn default_state_dir() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")));
    data.unwrap_or_else(std::env::temp_dir).join("chronicle/dev")
}

/// The worker spec of every IngestJob and CacheTier, exactly as the
/// controller builds it (or why it cannot be built), by `kind/namespace/name`.
pub fn worker_specs(manifests: &Manifests) -> BTreeMap<String, Result<WorkerSpec, String>> {
    let mut specs = BTreeMap::new();
    let tiers: Vec<CacheTier> = manifests.tiers.iter().map(|p| p.object.clone()).collect();
    for Placed { object: job, .. } in &manifests.jobs {
        let key = format!("IngestJob/{}/{}", job.namespace().unwrap_or_default(), job.name_any());
        let spec = match manifests.source(&job.namespace().unwrap_or_default(), &job.spec.source_ref.name) {
            None => Err(format!("ChainSource {} does not exist", job.spec.source_ref.name)),
            Some(source) => ingest_spec(job, &source.object, &tiers).map_err(|e| e.to_string()),
        };
        specs.insert(key, spec);
    }
    for Placed { object: tier, .. } in &manifests.tiers {
        let key = format!("CacheTier/{}/{}", tier.namespace().unwrap_or_default(), tier.name_any());
        let spec = match manifests.source(&tier.namespace().unwrap_or_default(), &tier.spec.source_ref.name) {
            None => Err(format!("ChainSource {} does not exist", tier.spec.source_ref.name)),
            Some(source) => serve_spec(tier, &source.object).map_err(|e| e.to_string()),
        };
        specs.insert(key, spec);
    }
    specs
}

pub async fn run(options: DevOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let manifests = Manifests::load(&options.files)?;
    std::fs::create_dir_all(&options.state)
        .with_context(|| format!("creating the state directory {}", options.state.display()))?;
    let specs = worker_specs(&manifests);
    let mut host = Host::new(shutdown.clone(), |line| println!("{line}")).with_progress_bars();
    let mut sources = BTreeMap::new();
    for placed in &manifests.sources {
        let source = &placed.object;
        let key = (source.namespace().unwrap_or_default(), source.name_any());
        if let Err(why) = crate::chain::adapter(source.spec.chain.family) {
            host.say(&format!("ChainSource {}/{}: not run: {why}", key.0, key.1));
            continue;
        }
        if let Some(blocks) = source.annotations().get(DEMO_BLOCKS) {
            let dir = placed.file.parent().unwrap_or(Path::new(".")).join(blocks);
            start_demo_node(source, &dir, &options.state, &mut host).await?;
        }
        sources.insert(key, open_source(&manifests, source, &options.state).await?);
    }

    for Placed { object: job, .. } in &manifests.jobs {
        let namespace = job.namespace().unwrap_or_default();
        let key = format!("IngestJob/{namespace}/{}", job.name_any());
        let (Some(Ok(WorkerSpec { work: Work::Ingest(spec), .. })), Some(opened)) =
            (specs.get(&key), sources.get(&(namespace.clone(), job.spec.source_ref.name.clone())))
        else {
            let why = match specs.get(&key) {
                Some(Err(why)) => why.clone(),
                _ => format!("ChainSource {} is not running", job.spec.source_ref.name),
            };
            host.say(&format!("{key}: not run: {why}"));
            continue;
        };
        let source = manifests.source(&namespace, &job.spec.source_ref.name).expect("opened above");
        host.ingest(&key, spec, opened, &secrets_lookup(&manifests, &source.object))?;
    }
    for Placed { object: tier, .. } in &manifests.tiers {
        let namespace = tier.namespace().unwrap_or_default();
        let key = format!("CacheTier/{namespace}/{}", tier.name_any());
        let (Some(Ok(WorkerSpec { work: Work::Serve(spec), .. })), Some(opened)) =
            (specs.get(&key), sources.get(&(namespace.clone(), tier.spec.source_ref.name.clone())))
        else {
            host.say(&format!(
                "{key}: not served: {}",
                specs.get(&key).and_then(|s| s.clone().err()).unwrap_or_default()
            ));
            continue;
        };
        if manifests.secret(&namespace, &tier.spec.redis.url_secret_ref).is_none() {
            host.say(&format!(
                "{key}: no Redis Secret {} given: an in-process cache, invalidated by this process's ingests",
                tier.spec.redis.url_secret_ref.name
            ));
        }
        let url = cache_url(&manifests, tier);
        let listen =
            host.serve(&key, spec, opened.cells.clone(), [127, 0, 0, 1].into(), &move |_| Some(url.clone()))?;
        let (api, example) = match spec.chain.family {
            ChainFamily::Solana => {
                ("Solana", r#"{"jsonrpc":"2.0","id":1,"method":"getBlocksWithLimit","params":[0,10]}"#)
            }
            ChainFamily::Evm => {
                ("EVM", r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["latest",false]}"#)
            }
        };
        host.say(&format!("{key}: {api} JSON-RPC on http://{listen} — for example:"));
        host.say(&format!("  curl -s http://{listen} -H 'content-type: application/json' -d '{example}'"));
        if spec.chain.family == ChainFamily::Solana {
            host.say(&format!("  solana --url http://{listen} block SLOT"));
        }
    }
    for Placed { object, .. } in &manifests.policies {
        host.say(&format!(
            "RetentionPolicy/{}: not run: {}",
            object.name_any(),
            crate::controller::retention_policy::NOT_IN_DEV
        ));
    }
    for Placed { object, .. } in &manifests.exports {
        host.say(&format!(
            "TrainingExport/{}: not run: {}",
            object.name_any(),
            crate::controller::training_export::NOT_IN_DEV
        ));
    }
    host.say("ready");
    let ok = host.wait(options.once).await;
    for opened in sources.values() {
        opened.cells.sync().await?;
    }
    println!("stopped; running again resumes from the checkpoints in {}", options.state.display());
    anyhow::ensure!(ok, "some jobs did not finish; run again to resume from their checkpoints");
    Ok(())
}

/// What a pod of `source` reads from Secrets, from the Secrets given to `dev`:
/// the catalog (embedded under the state directory when not given) and
/// endpoint tokens.
/// A tier's Redis URL from its Secret, else the process's own cache for it.
fn cache_url(manifests: &Manifests, tier: &CacheTier) -> String {
    let namespace = tier.namespace().unwrap_or_default();
    manifests
        .secret(&namespace, &tier.spec.redis.url_secret_ref)
        .unwrap_or_else(|| format!("memory://CacheTier/{namespace}/{}", tier.name_any()))
}

fn secrets_lookup(manifests: &Manifests, source: &ChainSource) -> impl Fn(&str) -> Option<String> + use<> {
    let namespace = source.namespace().unwrap_or_default();
    let mut values = BTreeMap::new();
    // The catalog is opened once per source by `dev`; the worker's own URL is unused.
    values.insert("CHRONICLE_CATALOG".to_string(), "shared".to_string());
    for endpoint in &source.spec.endpoints {
        if let Some(auth) = &endpoint.auth
            && let Some(token) = manifests.secret(&namespace, &auth.secret_ref)
        {
            values.insert(crate::controller::workload::rpc_token_env(&endpoint.name), token);
        }
    }
    let tiers: Vec<CacheTier> = manifests.tiers.iter().map(|p| p.object.clone()).collect();
    for tier in crate::controller::workload::invalidating_tiers(source, &tiers) {
        values.insert(crate::controller::workload::cache_url_env(&tier.name_any()), cache_url(manifests, tier));
    }
    move |name: &str| values.get(name).cloned()
}

/// Opens a ChainSource's store and catalog once for every job and replica.
async fn open_source(manifests: &Manifests, source: &ChainSource, state: &Path) -> anyhow::Result<Opened> {
    let namespace = source.namespace().unwrap_or_default();
    let dir = state.join(&namespace).join(source.name_any());
    let spec = store_spec(source);
    let url = match spec.url.strip_prefix(&format!("embedded://{EMBEDDED_MOUNT}")) {
        Some(rest) => format!("embedded://{}{rest}", dir.display()),
        None => spec.url.clone(),
    };
    let access = crate::worker::run::store_access(&spec);
    let cells = crate::worker::host::open_cells_for(source.spec.chain.family, &url, &access)
        .await
        .with_context(|| format!("ChainSource {namespace}/{}: opening its store", source.name_any()))?;
    let catalog_url = match manifests.secret(&namespace, &source.spec.catalog.connection_secret_ref) {
        Some(url) => url,
        None => {
            println!(
                "ChainSource {namespace}/{}: no catalog Secret {} given: embedded catalog in {}",
                source.name_any(),
                source.spec.catalog.connection_secret_ref.name,
                dir.join("catalog").display()
            );
            format!("embedded://{}", dir.join("catalog").display())
        }
    };
    let catalog = catalog::open(&catalog_url)
        .await
        .with_context(|| format!("ChainSource {namespace}/{}: opening its catalog", source.name_any()))?;
    Ok(Opened { cells, catalog })
}

/// Serves the recorded blocks in `dir` at the source's first endpoint, which
/// must be a loopback address.
async fn start_demo_node(source: &ChainSource, dir: &Path, state: &Path, host: &mut Host) -> anyhow::Result<()> {
    let name = source.name_any();
    anyhow::ensure!(
        source.spec.chain.family == ChainFamily::Solana,
        "ChainSource {name}: {DEMO_BLOCKS} serves recorded Solana getBlock files; point an {} ChainSource at a node (e.g. anvil)",
        source.spec.chain.family.as_str()
    );
    let endpoint = source.spec.endpoints.first().context("a ChainSource has an endpoint")?;
    let url = url::Url::parse(&endpoint.url).with_context(|| format!("ChainSource {name}: endpoint URL"))?;
    let address = url
        .socket_addrs(|| Some(80))
        .ok()
        .and_then(|a| a.into_iter().next())
        .filter(std::net::SocketAddr::is_ipv4)
        .filter(|a| a.ip().is_loopback())
        .with_context(|| format!("ChainSource {name}: {DEMO_BLOCKS} needs a loopback endpoint URL"))?;
    let store_dir = state.join("demo-node").join(&name);
    let store = crate::store::open(&format!("embedded://{}", store_dir.display())).await?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("ChainSource {name}: demo blocks {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "gz"))
        .collect();
    files.sort();
    let refused = crate::worker::import::import_files(&store, None, &files).await?;
    anyhow::ensure!(refused == 0, "ChainSource {name}: {refused} demo block files in {} do not load", dir.display());
    let namespace = source.namespace().unwrap_or_default();
    let stop = host.shutdown();
    host.say(&format!(
        "ChainSource {namespace}/{name}: demo node on {} serving {} recorded mainnet blocks from {}",
        endpoint.url,
        files.len(),
        dir.display()
    ));
    let config = crate::serve::ServeConfig { listen: address, ..crate::serve::ServeConfig::default() };
    let store: Arc<dyn BlockStore> = store;
    host.service(async move { crate::serve::run(store, config, stop).await.context("the demo node") });
    // Listening before any worker asks it.
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!("ChainSource {name}: the demo node did not start on {address}")
}
