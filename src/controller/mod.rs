//! `chronicle controller`: one process, a kube-runtime `Controller` per kind
//! sharing one client, active only while it holds the leader Lease; health
//! and readiness endpoints; graceful shutdown that releases the lease.

pub mod cache_tier;
pub mod chain_source;
pub mod children;
pub mod context;
pub mod export_cleanup;
pub mod fields;
pub mod ingest_job;
pub mod leader;
pub mod node;
pub mod pipeline;
pub mod probe;
pub mod progress;
pub mod retention_policy;
#[cfg(test)]
mod scenarios;
pub mod served;
pub mod status;
pub mod training_export;
pub mod workload;

/// The first document of `examples/FILE`, with the uid the API server would
/// give it, after `edit` — for the controller's tests.
#[cfg(test)]
pub(crate) fn example<T: serde::de::DeserializeOwned>(file: &str, edit: impl FnOnce(&mut serde_json::Value)) -> T {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(file);
    let mut value: serde_json::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    value["metadata"]["uid"] = serde_json::json!("0b9c6a14-5b0e-4c1e-9b7a-2a3d4c5e6f70");
    edit(&mut value);
    serde_json::from_value(value).unwrap()
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use tokio_util::sync::CancellationToken;

use self::context::Context;
use self::leader::{Elector, LeaseConfig};

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Image the workers and serve replicas run.
    pub image: String,
    pub lease: LeaseConfig,
    /// Address of `/healthz`, `/readyz`, `/leader` and `/metrics`.
    pub health: SocketAddr,
    /// How often children whose owner is gone are looked for.
    pub orphan_sweep: Duration,
}

/// Runs until `shutdown` (then exits cleanly) or until the lease is lost
/// (then returns an error so the process restarts as a candidate).
pub async fn run(config: ControllerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let ctx = Arc::new(Context::new(client.clone(), config.image.clone(), Some(config.lease.identity.clone())));
    let health = {
        let (leader, metrics) = (ctx.clone(), ctx.clone());
        axum::Router::new()
            .route("/healthz", get(|| async { "ok" }))
            // Ready as leader or as a standby that can take over.
            .route("/readyz", get(|| async { "ok" }))
            .route(
                "/leader",
                get(move || async move { if leader.metrics.leader.get() == 1 { "true" } else { "false" } }),
            )
            .route(
                "/metrics",
                get(move || async move {
                    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                    ([(axum::http::header::CONTENT_TYPE, content_type)], metrics.metrics.encode())
                }),
            )
    };
    let listener = tokio::net::TcpListener::bind(config.health).await?;
    let stop_health = shutdown.clone();
    tokio::spawn(
        async move { axum::serve(listener, health).with_graceful_shutdown(stop_health.cancelled_owned()).await },
    );

    let elector = Elector::new(client, config.lease.clone());
    tokio::select! {
        acquired = elector.acquire() => acquired?,
        _ = shutdown.cancelled() => return Ok(()),
    }
    ctx.metrics.leader.set(1);
    let controllers = CancellationToken::new();
    let stopper = |token: &CancellationToken| {
        let token = token.clone();
        async move { token.cancelled().await }
    };
    let running = {
        let (ctx, controllers, sweep) = (ctx.clone(), controllers.clone(), config.orphan_sweep);
        tokio::spawn(async move {
            tokio::join!(
                ingest_job::run(ctx.clone(), stopper(&controllers)),
                cache_tier::run(ctx.clone(), stopper(&controllers)),
                chain_source::run(ctx.clone(), stopper(&controllers)),
                retention_policy::run(ctx.clone(), stopper(&controllers)),
                training_export::run(ctx.clone(), stopper(&controllers)),
                sweep_orphans(ctx.clone(), sweep, controllers.clone()),
            )
        })
    };
    let lost = tokio::select! {
        _ = elector.keep() => true,
        _ = shutdown.cancelled() => false,
    };
    ctx.metrics.leader.set(0);
    controllers.cancel();
    let _ = running.await;
    if lost {
        anyhow::bail!("lost the leader lease; restarting as a candidate");
    }
    elector.release().await;
    tracing::info!("stopped and released the lease");
    Ok(())
}

/// Deletes children whose owner is gone, every `every`, while leading.
async fn sweep_orphans(ctx: Arc<Context>, every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => return,
        }
        match children::sweep_orphans(&ctx).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "children of deleted owners removed"),
            Err(error) => tracing::warn!(%error, "orphan sweep failed; retrying at the next tick"),
        }
    }
}
