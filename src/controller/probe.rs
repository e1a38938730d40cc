//! What the `ChainSource` reconciler observes: each endpoint's head slot and
//! latency, and whether the canonical store answers — with a timeout each, so
//! a dead endpoint makes the source `Degraded`, never a stuck reconcile.

use std::time::{Duration, Instant};

use crate::chain::{Adapter, ChainAdapter};
use crate::crd::chain_source::{ChainSource, EndpointStatus};
use crate::pipeline::config::{RpcEndpoint, Secret, SourceConfig};

/// The outcome of probing a ChainSource's endpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointProbe {
    pub endpoints: Vec<EndpointStatus>,
    /// Highest head any endpoint reported.
    pub head: Option<u64>,
}

/// Asks every endpoint for its tip through the chain's own source (Solana:
/// `getSlot` at the source's commitment).
/// `tokens` holds the auth tokens the controller read from the endpoints'
/// Secrets, by endpoint name; they are sent, never logged or reported.
pub async fn probe_endpoints(
    adapter: Adapter,
    source: &ChainSource,
    timeout: Duration,
    tokens: &std::collections::HashMap<String, Secret>,
) -> EndpointProbe {
    let commitment = source.spec.commitment;
    let probes = source.spec.endpoints.iter().map(|endpoint| async move {
        let config = SourceConfig::Rpc(RpcEndpoint {
            auth: endpoint
                .auth
                .as_ref()
                .and_then(|a| tokens.get(&endpoint.name).map(|t| (a.header.clone(), t.clone()))),
            timeout,
            attempts: 1,
            confirmations: source.spec.chain.confirmations.map(u64::from),
            ..RpcEndpoint::new(endpoint.url.clone(), commitment)
        });
        let started = Instant::now();
        let answer = crate::with_adapter!(adapter, |chain| match chain.source(&config, None) {
            Ok(rpc) => tokio::time::timeout(timeout, rpc.tip()).await,
            Err(e) => Ok(Err(format!("{e:#}"))),
        });
        let latency_ms = Some(started.elapsed().as_millis() as u64);
        match answer {
            Ok(Ok(head)) => EndpointStatus {
                name: endpoint.name.clone(),
                healthy: true,
                head: Some(head),
                latency_ms,
                last_error: None,
            },
            Ok(Err(e)) => EndpointStatus {
                name: endpoint.name.clone(),
                healthy: false,
                head: None,
                latency_ms,
                last_error: Some(e),
            },
            Err(_) => EndpointStatus {
                name: endpoint.name.clone(),
                healthy: false,
                head: None,
                latency_ms,
                last_error: Some(format!("no answer within {timeout:?}")),
            },
        }
    });
    let endpoints: Vec<EndpointStatus> = futures::future::join_all(probes).await;
    let head = endpoints.iter().filter_map(|e| e.head).max();
    EndpointProbe { endpoints, head }
}

/// The Bigtable endpoint the source's workers reach: its `emulatorHost`, or
/// Google's data endpoint. Read from the spec, as the workers' spec has it,
/// never from the controller's own environment.
pub fn bigtable_endpoint(bigtable: &crate::crd::common::BigtableInstance) -> String {
    bigtable.emulator_host.clone().unwrap_or_else(|| "bigtable.googleapis.com:443".into())
}

/// Whether a store endpoint (`host:port`) accepts a connection within
/// `timeout`. It shows the network path is open; credentials are the
/// workers' to prove (the controller never holds the store's key).
pub async fn probe_store(address: &str, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_)) => Ok(format!("store endpoint {address} reachable")),
        Ok(Err(e)) => Err(format!("store endpoint {address}: {e}")),
        Err(_) => Err(format!("store endpoint {address}: no connection within {timeout:?}")),
    }
}
