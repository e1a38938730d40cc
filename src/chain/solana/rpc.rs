//! A Solana node as a block source, through the production `solana-rpc-client`:
//! which slots have blocks (`getBlocks`), each block (`getBlock`, base64,
//! `maxSupportedTransactionVersion: 0`), the tip (`getSlot`). A client-side
//! rate limit keeps us polite; HTTP 429 is retried by the client itself; node
//! errors are sorted into "the chain skipped this slot" and "not available now"
//! (a gap, retried with backoff and jitter).

use std::sync::Arc;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use governor::DefaultDirectRateLimiter;
use solana_clock::Slot;
use solana_commitment_config::CommitmentConfig;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client_api::client_error::{Error as ClientError, ErrorKind};
use solana_rpc_client_api::config::RpcBlockConfig;
use solana_rpc_client_api::request::RpcError;
use solana_transaction_status::{ConfirmedBlock, TransactionDetails, UiTransactionEncoding};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::SolanaBlock;
use super::decode::block_from_ui;
use crate::crd::chain_source::Commitment;
pub use crate::pipeline::config::{RpcEndpoint, Secret};

/// The node's commitment level for a ChainSource's `commitment`.
pub fn commitment_config(commitment: Commitment) -> CommitmentConfig {
    match commitment {
        Commitment::Finalized => CommitmentConfig::finalized(),
        Commitment::Confirmed => CommitmentConfig::confirmed(),
    }
}

/// JSON-RPC error codes a node answers `getBlock` with (agave `rpc_custom_error`).
pub mod codes {
    pub const BLOCK_NOT_AVAILABLE: i64 = -32004;
    pub const SLOT_SKIPPED: i64 = -32007;
    pub const LONG_TERM_STORAGE_SLOT_SKIPPED: i64 = -32009;
}

/// Why a block did not arrive: skipped by the chain (-32007), or a gap
/// (-32004, -32009, timeouts, a block that does not decode).
pub use crate::pipeline::Missing;

pub struct RpcSource {
    /// Kept to open the same node at `finalized` (see `BlockSource::finalized`).
    config: RpcEndpoint,
    client: RpcClient,
    limiter: Option<DefaultDirectRateLimiter>,
    commitment: CommitmentConfig,
}

impl RpcSource {
    pub fn new(config: RpcEndpoint) -> Self {
        let commitment = commitment_config(config.commitment);
        let limiter = config.limiter();
        let header = config.auth_header().unwrap_or_else(|e| {
            tracing::error!(error = %e, "sending no auth header");
            None
        });
        let client = match header {
            None => RpcClient::new_with_timeout_and_commitment(config.url.clone(), config.timeout, commitment),
            Some((name, value)) => {
                let mut headers = reqwest::header::HeaderMap::new();
                headers.insert(name, value);
                let http = reqwest::Client::builder()
                    .default_headers(headers)
                    .timeout(config.timeout)
                    .build()
                    .expect("an HTTP client");
                RpcClient::new_sender(
                    solana_rpc_client::http_sender::HttpSender::new_with_client(config.url.clone(), http),
                    solana_rpc_client::rpc_client::RpcClientConfig::with_commitment(commitment),
                )
            }
        };
        Self { config, client, limiter, commitment }
    }

    fn backoff(&self) -> ExponentialBuilder {
        self.config.backoff()
    }

    async fn paced(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }

    /// Slots in `start..=end` that have a block at our commitment.
    pub async fn produced_slots(&self, start: Slot, end: Slot) -> Result<Vec<Slot>, String> {
        let call = || async {
            self.paced().await;
            self.client.get_blocks_with_commitment(start, Some(end), self.commitment).await.inspect_err(count_error)
        };
        call.retry(self.backoff())
            .when(is_transient)
            .await
            .map_err(|e| format!("getBlocks {start}..={end}: {}", describe(&e)))
    }

    /// The newest slot at our commitment.
    pub async fn tip(&self) -> Result<Slot, String> {
        let call = || async {
            self.paced().await;
            self.client.get_slot_with_commitment(self.commitment).await.inspect_err(count_error)
        };
        call.retry(self.backoff()).when(is_transient).await.map_err(|e| format!("getSlot: {}", describe(&e)))
    }

    /// One block, decoded into what the store keeps.
    pub async fn block(&self, slot: Slot) -> Result<ConfirmedBlock, Missing> {
        let config = RpcBlockConfig {
            encoding: Some(UiTransactionEncoding::Base64),
            transaction_details: Some(TransactionDetails::Full),
            rewards: Some(true),
            commitment: Some(self.commitment),
            max_supported_transaction_version: Some(0),
        };
        let call = || async {
            self.paced().await;
            self.client.get_block_with_config(slot, config).await.inspect_err(count_error)
        };
        let block =
            call.retry(self.backoff()).when(|e| is_transient(e) && rpc_code(e) != Some(codes::SLOT_SKIPPED)).await;
        match block {
            Ok(block) => block_from_ui(slot, block).map_err(|e| Missing::Gap(format!("undecodable block: {e}"))),
            Err(e) if rpc_code(&e) == Some(codes::SLOT_SKIPPED) => Err(Missing::Skipped),
            Err(e) => Err(Missing::Gap(describe(&e))),
        }
    }
}

#[async_trait::async_trait]
impl crate::pipeline::BlockSource<SolanaBlock> for RpcSource {
    async fn produced(&self, start: Slot, end: Slot) -> Result<Vec<Slot>, String> {
        self.produced_slots(start, end).await
    }

    /// A node's `getBlock` has no entries.
    async fn block(&self, slot: Slot) -> Result<SolanaBlock, Missing> {
        RpcSource::block(self, slot).await.map(SolanaBlock::from)
    }

    async fn tip(&self) -> Result<Slot, String> {
        RpcSource::tip(self).await
    }

    /// `slotSubscribe` on the endpoint's WebSocket, when it has one.
    async fn watch_tip(&self, wake: Arc<Notify>, shutdown: CancellationToken) {
        if let Some(url) = &self.config.websocket {
            subscribe_slots(url, wake, shutdown).await;
        }
    }

    /// Below `finalized` the cluster may still skip a stored block.
    fn finalized(&self) -> Option<Arc<dyn crate::pipeline::BlockSource<SolanaBlock>>> {
        (self.commitment != CommitmentConfig::finalized()).then(|| {
            let config = RpcEndpoint { commitment: Commitment::Finalized, ..self.config.clone() };
            Arc::new(RpcSource::new(config)) as Arc<dyn crate::pipeline::BlockSource<_>>
        })
    }
}

/// Wakes the follower on every slot notification; on failure the follower
/// falls back to polling.
async fn subscribe_slots(url: &str, wake: Arc<tokio::sync::Notify>, shutdown: CancellationToken) {
    use solana_pubsub_client::nonblocking::pubsub_client::PubsubClient;
    let client = match PubsubClient::new(url).await {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, "WebSocket unavailable; polling the tip instead");
            return;
        }
    };
    let (mut slots, unsubscribe) = match client.slot_subscribe().await {
        Ok(subscription) => subscription,
        Err(e) => {
            tracing::warn!(error = %e, "slotSubscribe failed; polling the tip instead");
            return;
        }
    };
    loop {
        tokio::select! {
            next = slots.next() => match next {
                Some(_) => wake.notify_one(),
                None => {
                    tracing::warn!("slot subscription ended; polling the tip instead");
                    break;
                }
            },
            _ = shutdown.cancelled() => break,
        }
    }
    unsubscribe().await;
}

fn rpc_code(error: &ClientError) -> Option<i64> {
    match error.kind.as_ref() {
        ErrorKind::RpcError(RpcError::RpcResponseError { code, .. }) => Some(*code),
        _ => None,
    }
}

/// Counts an error the endpoint gave (every try) by a bounded code: the
/// JSON-RPC codes agave answers with, HTTP classes, transport kinds.
fn count_error(error: &ClientError) {
    let code = match error.kind.as_ref() {
        ErrorKind::RpcError(RpcError::RpcResponseError { code, .. }) => match *code {
            codes::BLOCK_NOT_AVAILABLE => "-32004",
            codes::SLOT_SKIPPED => "-32007",
            codes::LONG_TERM_STORAGE_SLOT_SKIPPED => "-32009",
            -32099..=-32000 => "server_other",
            -32700..=-32600 => "invalid_request",
            _ => "rpc_other",
        },
        ErrorKind::Reqwest(e) if e.is_timeout() => "timeout",
        ErrorKind::Reqwest(e) if e.is_connect() => "connect",
        ErrorKind::Reqwest(e) => match e.status().map(|s| s.as_u16()) {
            Some(429) => "http_429",
            Some(500..=599) => "http_5xx",
            Some(_) => "http_other",
            None => "transport",
        },
        ErrorKind::SerdeJson(_) => "malformed",
        _ => "other",
    };
    crate::telemetry::metrics::WORKER.endpoint_error(code);
}

/// Worth another try: unavailable blocks, transport failures, server errors.
fn is_transient(error: &ClientError) -> bool {
    match error.kind.as_ref() {
        ErrorKind::RpcError(RpcError::RpcResponseError { code, .. }) => {
            matches!(*code, codes::BLOCK_NOT_AVAILABLE | codes::LONG_TERM_STORAGE_SLOT_SKIPPED)
                || (-32099..=-32000).contains(code)
        }
        ErrorKind::Reqwest(e) => {
            e.is_timeout() || e.is_connect() || e.is_request() || e.status().is_some_and(|s| s.is_server_error())
        }
        ErrorKind::Io(_) | ErrorKind::RpcError(RpcError::RpcRequestError(_)) => true,
        _ => false,
    }
}

/// A short reason for logs and the catalog. Never the error's own text: it
/// carries the request URL, and URLs may carry API keys.
fn describe(error: &ClientError) -> String {
    match error.kind.as_ref() {
        ErrorKind::RpcError(RpcError::RpcResponseError { code, message, .. }) => format!("{code}: {message}"),
        ErrorKind::Reqwest(e) if e.is_timeout() => "timed out".into(),
        ErrorKind::Reqwest(e) if e.is_connect() => "connection failed".into(),
        ErrorKind::Reqwest(e) => match e.status() {
            Some(status) => format!("HTTP {status}"),
            None => "transport error".into(),
        },
        ErrorKind::SerdeJson(e) => format!("malformed response: {e}"),
        other => other.to_string(),
    }
}
