//! An EVM node as a block source, through alloy's JSON-RPC client: each
//! block with its full transactions (`eth_getBlockByNumber(n, true)`), its
//! receipts (`eth_getBlockReceipts`, or `eth_getTransactionReceipt` for each
//! transaction where the node lacks it), the tip at the `finalized` tag.
//! Answers are kept as the node sent them ([`EvmBlock`]); a client-side rate
//! limit keeps us polite; transport failures, 429 and 5xx answers are retried
//! with backoff and jitter, then the block is a gap.

use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::transports::http::Http;
use alloy::transports::{RpcError, TransportErrorKind};
use backon::{ExponentialBuilder, Retryable};
use governor::DefaultDirectRateLimiter;
use serde_json::Value;

use super::block::EvmBlock;
use crate::pipeline::config::RpcEndpoint;
use crate::pipeline::{BlockNumber, BlockSource, Missing};

type ClientError = RpcError<TransportErrorKind>;

/// JSON-RPC "method not found": the node has no `eth_getBlockReceipts`.
const METHOD_NOT_FOUND: i64 = -32601;

pub struct EvmRpcSource {
    provider: RootProvider,
    limiter: Option<DefaultDirectRateLimiter>,
    backoff: ExponentialBuilder,
}

impl EvmRpcSource {
    pub fn new(config: &RpcEndpoint) -> anyhow::Result<Self> {
        let url = url::Url::parse(&config.url).map_err(|e| anyhow::anyhow!("node URL: {e}"))?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some((name, value)) = config.auth_header().map_err(anyhow::Error::msg)? {
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder().default_headers(headers).timeout(config.timeout).build()?;
        let is_local = url.host_str().is_some_and(|h| h == "127.0.0.1" || h == "localhost");
        let provider = RootProvider::new(RpcClient::new(Http::with_client(http, url), is_local));
        let limiter = config.limiter();
        Ok(Self { provider, limiter, backoff: config.backoff() })
    }

    /// One call, paced and retried while the failure is transient.
    async fn call<P>(&self, method: &'static str, params: P) -> Result<Value, ClientError>
    where
        P: serde::Serialize + Clone + Send + Sync + Unpin + std::fmt::Debug + 'static,
    {
        let once = || async {
            if let Some(limiter) = &self.limiter {
                limiter.until_ready().await;
            }
            self.provider.raw_request::<P, Value>(method.into(), params.clone()).await.inspect_err(count_error)
        };
        once.retry(self.backoff).when(is_transient).await
    }

    /// The newest block at the `finalized` tag.
    pub async fn finalized(&self) -> Result<BlockNumber, String> {
        let block = self
            .call("eth_getBlockByNumber", ("finalized", false))
            .await
            .map_err(|e| format!("eth_getBlockByNumber(finalized): {}", describe(&e)))?;
        quantity(block.get("number"))
            .ok_or_else(|| "eth_getBlockByNumber(finalized): the node names no finalized block".to_string())
    }

    pub async fn block(&self, number: BlockNumber) -> Result<EvmBlock, Missing> {
        let tag = format!("{number:#x}");
        let block = self
            .call("eth_getBlockByNumber", (tag.clone(), true))
            .await
            .map_err(|e| Missing::Gap(format!("eth_getBlockByNumber: {}", describe(&e))))?;
        if block.is_null() {
            return Err(Missing::Gap("the node has no such block yet".into()));
        }
        let receipts = match self.call("eth_getBlockReceipts", (tag,)).await {
            Ok(receipts) if !receipts.is_null() => receipts,
            Ok(_) => return Err(Missing::Gap("eth_getBlockReceipts: the node has no receipts for it".into())),
            Err(e) if rpc_code(&e) == Some(METHOD_NOT_FOUND) => self.receipts_one_by_one(&block).await?,
            Err(e) => return Err(Missing::Gap(format!("eth_getBlockReceipts: {}", describe(&e)))),
        };
        EvmBlock::from_json(number, block, receipts).map_err(|e| Missing::Gap(e.to_string()))
    }

    /// Each transaction's receipt, for nodes without `eth_getBlockReceipts`.
    async fn receipts_one_by_one(&self, block: &Value) -> Result<Value, Missing> {
        let hashes: Vec<String> = block
            .get("transactions")
            .and_then(Value::as_array)
            .map(|txs| txs.iter().filter_map(|tx| tx.get("hash")?.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let mut receipts = Vec::with_capacity(hashes.len());
        for hash in hashes {
            let receipt = self
                .call("eth_getTransactionReceipt", (hash.clone(),))
                .await
                .map_err(|e| Missing::Gap(format!("eth_getTransactionReceipt {hash}: {}", describe(&e))))?;
            receipts.push(receipt);
        }
        Ok(Value::Array(receipts))
    }
}

/// A `0x…` quantity.
pub fn quantity(value: Option<&Value>) -> Option<u64> {
    u64::from_str_radix(value?.as_str()?.strip_prefix("0x")?, 16).ok()
}

#[async_trait::async_trait]
impl BlockSource<EvmBlock> for EvmRpcSource {
    /// Every number has a block on an EVM chain; past the finalized tip it
    /// is not final yet (the batch waits, within its patience).
    async fn produced(&self, start: BlockNumber, end: BlockNumber) -> Result<Vec<BlockNumber>, String> {
        let tip = self.finalized().await?;
        if end > tip {
            return Err(format!("block {end} is not finalized yet (finalized: {tip})"));
        }
        Ok((start..=end).collect())
    }

    async fn block(&self, number: BlockNumber) -> Result<EvmBlock, Missing> {
        EvmRpcSource::block(self, number).await
    }

    async fn tip(&self) -> Result<BlockNumber, String> {
        self.finalized().await
    }
}

fn rpc_code(error: &ClientError) -> Option<i64> {
    match error {
        RpcError::ErrorResp(payload) => Some(payload.code),
        _ => None,
    }
}

fn http_status(error: &ClientError) -> Option<u16> {
    match error {
        RpcError::Transport(TransportErrorKind::HttpError(e)) => Some(e.status),
        _ => None,
    }
}

/// Worth another try: transport failures, rate limits and server errors.
fn is_transient(error: &ClientError) -> bool {
    match error {
        RpcError::ErrorResp(payload) => (-32099..=-32000).contains(&payload.code) || payload.code == 429,
        RpcError::Transport(TransportErrorKind::HttpError(e)) => e.status == 429 || e.status >= 500,
        RpcError::Transport(kind) => kind.is_retry_err() || matches!(kind, TransportErrorKind::Custom(_)),
        _ => false,
    }
}

/// Counts an error the endpoint gave (every try) by a bounded code.
fn count_error(error: &ClientError) {
    let code = match (rpc_code(error), http_status(error), error) {
        (Some(METHOD_NOT_FOUND), ..) => "method_not_found",
        (Some(-32099..=-32000), ..) => "server_other",
        (Some(-32700..=-32600), ..) => "invalid_request",
        (Some(_), ..) => "rpc_other",
        (_, Some(429), _) => "http_429",
        (_, Some(500..=599), _) => "http_5xx",
        (_, Some(_), _) => "http_other",
        (.., RpcError::DeserError { .. }) => "malformed",
        (.., RpcError::Transport(_)) => "transport",
        _ => "other",
    };
    crate::telemetry::metrics::WORKER.endpoint_error(code);
}

/// A short reason for logs and the catalog. Never a transport error's own
/// text: it may carry the request URL, and URLs may carry API keys.
fn describe(error: &ClientError) -> String {
    match error {
        RpcError::ErrorResp(payload) => format!("{}: {}", payload.code, payload.message),
        RpcError::Transport(TransportErrorKind::HttpError(e)) => format!("HTTP {}", e.status),
        RpcError::Transport(_) => "transport error (timed out or connection failed)".into(),
        RpcError::DeserError { err, .. } => format!("malformed response: {err}"),
        RpcError::NullResp => "the node answered null".into(),
        other => format!("{}", other).chars().take(200).collect(),
    }
}
