//! Many works in one process over stores opened once: what `chronicle dev`
//! runs, and what the node pod of an embedded ChainSource runs in a cluster
//! (an embedded store admits one process, so its ingest and serve work share
//! one). Each ingest shard is a [`run_pipeline`](super::ingest::run_pipeline)
//! task over the shared store; each serve work is a listener on it; each
//! reads the store's cells through its own chain's layout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ingest::{IngestConfig, Progress, Summary, run_pipeline, shard_range};
use super::run::{check_family, ingest_config_in, serve_config_in};
use super::spec::{IngestModeSpec, IngestSpec, ServeSpec};
use crate::catalog::Catalog;
use crate::chain::ChainAdapter;
use crate::crd::chain_source::ChainFamily;
use crate::pipeline::config::{Secret, SourceConfig};
use crate::pipeline::sinks::Targets;
use crate::store::BigtableAccess;
use crate::store::cells::CellStore;
use futures::future::BoxFuture;

/// Runs a node spec's works until shutdown: each distinct store and catalog
/// opened once, Secret-backed values from the pod's environment.
pub async fn run_node(node: &super::spec::NodeSpec, shutdown: CancellationToken) -> anyhow::Result<bool> {
    use super::spec::Work;
    use std::collections::BTreeMap;
    let env = |name: &str| std::env::var(name).ok();
    let mut stores: BTreeMap<String, Arc<dyn CellStore>> = BTreeMap::new();
    let mut catalogs: BTreeMap<Secret, Arc<dyn Catalog>> = BTreeMap::new();
    let mut host = Host::new(shutdown, |line| tracing::info!("{line}"));
    for named in &node.works {
        let (store_spec, family) = match &named.work {
            Work::Ingest(spec) => (&spec.store, spec.chain.family),
            Work::Serve(spec) => (&spec.store, spec.chain.family),
            Work::Node(_) => anyhow::bail!("{}: a node spec does not nest", named.name),
            Work::Export(_) | Work::ExportCleanup(_) => {
                anyhow::bail!("{}: an export does not run on a node in this build", named.name)
            }
            Work::Retention(_) => anyhow::bail!("{}: retention does not run on a node in this build", named.name),
        };
        let cells = match stores.get(&store_spec.url) {
            Some(cells) => cells.clone(),
            None => {
                let access = super::run::store_access(store_spec);
                let opened = open_cells_for(family, &store_spec.url, &access)
                    .await
                    .with_context(|| format!("{}: opening the store", named.name))?;
                stores.insert(store_spec.url.clone(), opened.clone());
                opened
            }
        };
        match &named.work {
            Work::Ingest(spec) => {
                let url = spec.catalog.resolve()?;
                let catalog = match catalogs.get(&url) {
                    Some(catalog) => catalog.clone(),
                    None => {
                        let opened = crate::catalog::open(url.expose())
                            .await
                            .with_context(|| format!("{}: opening the catalog", named.name))?;
                        catalogs.insert(url, opened.clone());
                        opened
                    }
                };
                host.ingest(&named.name, spec, &Opened { cells, catalog }, &env)?;
            }
            Work::Serve(spec) => {
                host.serve(&named.name, spec, cells, [0, 0, 0, 0].into(), &env)?;
            }
            Work::Node(_) | Work::Export(_) | Work::ExportCleanup(_) | Work::Retention(_) => {
                unreachable!("refused above")
            }
        }
    }
    let ok = host.wait(false).await;
    for cells in stores.values() {
        cells.sync().await?;
    }
    Ok(ok)
}

/// A source's store and catalog, opened once for all its works: the cell
/// engine, which each work reads and writes through its chain's layout.
#[derive(Clone)]
pub struct Opened {
    pub cells: Arc<dyn CellStore>,
    pub catalog: Arc<dyn Catalog>,
}

/// Opens the cell engine a store URL names, with the tables of `family`'s layout.
pub async fn open_cells_for(
    family: ChainFamily,
    url: &str,
    access: &BigtableAccess,
) -> anyhow::Result<Arc<dyn CellStore>> {
    let adapter = crate::chain::adapter(family).map_err(anyhow::Error::msg)?;
    let cells = crate::store::open_cells(url, access).await?;
    cells.ensure_tables(crate::with_adapter!(adapter, |chain| chain.tables())).await?;
    Ok(cells)
}

/// One ingest shard's work, before its chain is known.
struct Run {
    config: IngestConfig,
    targets: Targets,
    opened: Opened,
    stop: CancellationToken,
    progress: Progress,
}

impl Run {
    /// The shard's pipeline for `chain`: from a BigQuery dataset to the lake,
    /// from another store into this one, or from a node or archive into the
    /// targets, over the host's store under the chain's layout.
    fn task<A: ChainAdapter + Copy>(self, chain: A) -> anyhow::Result<BoxFuture<'static, anyhow::Result<Summary>>> {
        let Run { config, targets, opened, stop, progress } = self;
        let store = Arc::new(chain.layout(opened.cells.clone()));
        let catalog = opened.catalog;
        Ok(match &config.source {
            // A dataset's rows go to the lake only, through the same loop.
            SourceConfig::BigQuery(dataset) => {
                let sinks = chain.rows_sinks(&targets)?;
                let connect = chain.rows_source(dataset);
                Box::pin(async move {
                    let source = connect.await.context("connecting to BigQuery")?;
                    run_pipeline(config, source, sinks, catalog, stop, progress).await
                })
            }
            // A replication into the host's store, from another store.
            SourceConfig::Store(origin) => {
                let sink = crate::replication::target_sink(&chain, store, origin);
                let origin = origin.clone();
                Box::pin(async move {
                    let source = crate::replication::open_origin(&chain, &origin).await?;
                    run_pipeline(config, source, vec![sink], catalog, stop, progress).await
                })
            }
            SourceConfig::Rpc(_) | SourceConfig::Archive(_) => {
                let source = chain.source(&config.source, Some(&store))?;
                let sinks = chain.sinks(&store, &targets)?;
                Box::pin(run_pipeline(config, source, sinks, catalog, stop, progress))
            }
        })
    }
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub struct Host {
    backfills: JoinSet<(String, anyhow::Result<Summary>)>,
    followers: JoinSet<(String, anyhow::Result<Summary>)>,
    services: JoinSet<anyhow::Result<()>>,
    shutdown: CancellationToken,
    /// Where progress lines go: the terminal for `dev`, the log for a pod.
    say: fn(&str),
    /// Progress bars, on a terminal.
    bars: Option<indicatif::MultiProgress>,
}

impl Host {
    pub fn new(shutdown: CancellationToken, say: fn(&str)) -> Self {
        Self {
            backfills: JoinSet::new(),
            followers: JoinSet::new(),
            services: JoinSet::new(),
            shutdown,
            say,
            bars: None,
        }
    }

    /// Shows a progress bar per backfill shard (a spinner per follower) when
    /// standard output is a terminal; plain lines otherwise.
    pub fn with_progress_bars(mut self) -> Self {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() {
            self.bars = Some(indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stdout()));
        }
        self
    }

    /// A bar that follows the checkpoint of one shard.
    fn progress(&self, label: &str, mode: &IngestModeSpec, shard: u32) -> Progress {
        use indicatif::{ProgressBar, ProgressStyle};
        let Some(bars) = &self.bars else { return Progress::default() };
        match *mode {
            IngestModeSpec::Backfill { from, to, shards } => {
                let Some(range) = shard_range(from, to, shard, shards.max(1)) else { return Progress::default() };
                let bar = bars.add(ProgressBar::new(range.end - range.start + 1));
                let style = ProgressStyle::with_template("{prefix:40} [{bar:30}] {pos}/{len} slots, {per_sec}")
                    .expect("a valid template");
                bar.set_style(style.progress_chars("=> "));
                bar.set_prefix(label.to_string());
                Progress::new(move |checkpoint| bar.set_position(checkpoint.saturating_sub(range.start) + 1))
            }
            IngestModeSpec::Follow { .. } => {
                let spinner = bars.add(ProgressBar::new_spinner());
                spinner.set_prefix(label.to_string());
                spinner
                    .set_style(ProgressStyle::with_template("{prefix:40} {spinner} {msg}").expect("a valid template"));
                spinner.enable_steady_tick(std::time::Duration::from_millis(200));
                Progress::new(move |checkpoint| spinner.set_message(format!("following, checkpoint {checkpoint}")))
            }
        }
    }

    /// The token that stops every work.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn say(&self, line: &str) {
        match &self.bars {
            // Above the bars, so they are not torn.
            Some(bars) => {
                let _ = bars.println(line);
            }
            None => (self.say)(line),
        }
    }

    /// Starts every shard of an ingest work.
    pub fn ingest(&mut self, name: &str, spec: &IngestSpec, opened: &Opened, lookup: Lookup) -> anyhow::Result<()> {
        let (shards, backfill) = match spec.mode {
            IngestModeSpec::Backfill { shards, .. } => (shards.max(1), true),
            IngestModeSpec::Follow { .. } => (1, false),
        };
        for shard in 0..shards {
            let config = ingest_config_in(spec, shard, lookup).with_context(|| name.to_string())?;
            let targets = super::ingest::targets(&config).with_context(|| name.to_string())?;
            let label = format!("{name} shard {shard}");
            let run = Run {
                config,
                targets,
                opened: opened.clone(),
                stop: self.shutdown.clone(),
                progress: self.progress(&label, &spec.mode, shard),
            };
            let adapter = check_family(&spec.chain)?;
            let work = crate::with_adapter!(adapter, |chain| run.task(chain)).with_context(|| name.to_string())?;
            let task: BoxFuture<'static, (String, anyhow::Result<Summary>)> =
                Box::pin(async move { (label, work.await) });
            if backfill {
                self.backfills.spawn(task);
            } else {
                self.followers.spawn(task);
            }
        }
        Ok(())
    }

    /// Starts a serve work over `cells` (under its chain's layout) on `ip`
    /// and its spec's port; returns the address.
    pub fn serve(
        &mut self,
        name: &str,
        spec: &ServeSpec,
        cells: Arc<dyn CellStore>,
        ip: IpAddr,
        lookup: Lookup,
    ) -> anyhow::Result<SocketAddr> {
        let (_, mut config) = serve_config_in(spec, lookup).with_context(|| name.to_string())?;
        config.listen = SocketAddr::new(ip, config.listen.port());
        let listen = config.listen;
        let adapter = check_family(&spec.chain)?;
        let stop = self.shutdown.clone();
        let served = crate::with_adapter!(adapter, |chain| chain.serve(Arc::new(chain.layout(cells)), config, stop));
        let name = name.to_string();
        self.services.spawn(async move { served.await.with_context(|| name) });
        Ok(listen)
    }

    /// Runs a service beside the works until shutdown (e.g. `dev`'s demo node).
    pub fn service(&mut self, service: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.services.spawn(service);
    }

    /// Waits for the backfills; then stops (`once`) or keeps following and
    /// serving until shutdown. True when every work ended well.
    pub async fn wait(mut self, once: bool) -> bool {
        let mut ok = true;
        while let Some(done) = self.backfills.join_next().await {
            ok &= self.report(done);
        }
        if once {
            self.shutdown.cancel();
        } else {
            self.say("backfills done; following and serving until stopped");
            self.shutdown.cancelled().await;
        }
        while let Some(done) = self.followers.join_next().await {
            ok &= self.report(done);
        }
        self.shutdown.cancel();
        while let Some(done) = self.services.join_next().await {
            if let Ok(Err(e)) = done {
                self.say(&format!("{e:#}"));
                ok = false;
            }
        }
        ok
    }

    /// Says how a shard ended; false when it failed or left gaps.
    fn report(&self, done: Result<(String, anyhow::Result<Summary>), tokio::task::JoinError>) -> bool {
        match done {
            Ok((name, Ok(summary))) => {
                let state = if summary.interrupted { "stopped" } else { "done" };
                self.say(&format!(
                    "{name}: {state}: checkpoint {}, {} blocks written, {} slots skipped, {} gaps open",
                    summary.checkpoint.map_or("none".into(), |c| c.to_string()),
                    summary.written,
                    summary.skipped,
                    summary.open_gaps.len()
                ));
                summary.open_gaps.is_empty()
            }
            Ok((name, Err(e))) => {
                self.say(&format!("{name}: failed: {e:#}"));
                false
            }
            Err(e) => {
                self.say(&format!("a work panicked: {e}"));
                false
            }
        }
    }
}
