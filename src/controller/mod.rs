//! `chronicle controller`: one process, a kube-runtime `Controller` per kind
//! sharing one client, active only while it holds the leader Lease; health
//! and readiness endpoints; graceful shutdown that releases the lease.

pub mod cache_tier;
pub mod chain_source;
pub mod ingest_job;
pub mod leader;
pub mod probe;
pub mod status;
pub mod workload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::routing::get;
use tokio_util::sync::CancellationToken;

use self::ingest_job::Context;
use self::leader::{Elector, LeaseConfig};

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Image the workers and serve replicas run.
    pub image: String,
    pub lease: LeaseConfig,
    /// Address of `/healthz` and `/readyz`.
    pub health: SocketAddr,
}

/// Runs until `shutdown` (then exits cleanly) or until the lease is lost
/// (then returns an error so the process restarts as a candidate).
pub async fn run(config: ControllerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let leading = Arc::new(AtomicBool::new(false));
    let health = {
        let leading = leading.clone();
        axum::Router::new()
            .route("/healthz", get(|| async { "ok" }))
            // Ready as leader or as a standby that can take over.
            .route("/readyz", get(|| async { "ok" }))
            .route(
                "/leader",
                get(move || async move { if leading.load(Ordering::Relaxed) { "true" } else { "false" } }),
            )
    };
    let listener = tokio::net::TcpListener::bind(config.health).await?;
    let stop_health = shutdown.clone();
    tokio::spawn(
        async move { axum::serve(listener, health).with_graceful_shutdown(stop_health.cancelled_owned()).await },
    );

    let elector = Elector::new(client.clone(), config.lease.clone());
    tokio::select! {
        acquired = elector.acquire() => acquired?,
        _ = shutdown.cancelled() => return Ok(()),
    }
    leading.store(true, Ordering::Relaxed);
    let controllers = CancellationToken::new();
    let ctx = Arc::new(Context::new(client, config.image.clone()));
    let stopper = |token: &CancellationToken| {
        let token = token.clone();
        async move { token.cancelled().await }
    };
    let running = tokio::spawn(futures::future::join3(
        ingest_job::run(ctx.clone(), stopper(&controllers)),
        cache_tier::run(ctx.clone(), stopper(&controllers)),
        chain_source::run(ctx, stopper(&controllers)),
    ));
    let lost = tokio::select! {
        _ = elector.keep() => true,
        _ = shutdown.cancelled() => false,
    };
    leading.store(false, Ordering::Relaxed);
    controllers.cancel();
    let _ = running.await;
    if lost {
        anyhow::bail!("lost the leader lease; restarting as a candidate");
    }
    elector.release().await;
    tracing::info!("stopped and released the lease");
    Ok(())
}
