//! An EVM node as a block source, through alloy's JSON-RPC client: each
//! block with its full transactions (`eth_getBlockByNumber(n, true)`), its
//! receipts (`eth_getBlockReceipts`, or `eth_getTransactionReceipt` for each
//! transaction where the node lacks it) and, unless `chain.traces` is
//! `disabled`, its traces (`trace_block`, else `debug_traceBlockByHash` with
//! `callTracer`: whichever the node serves, found by asking). The tip is the final block (the
//! `finalized` tag, or `confirmations` below the newest), or with
//! `confirmed` commitment the newest block: such a source links each block
//! to its parent, so the follower sees a reorganization (`worker/reorg.rs`).
//! Answers are kept as the node sent them ([`EvmBlock`]); a client-side rate
//! limit keeps us polite; transport failures, 408, 429 and 5xx answers are retried
//! with backoff and jitter, then the block is a gap.

use alloy::primitives::hex;
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::transports::http::Http;
use alloy::transports::{RpcError, TransportErrorKind};
use backon::{ExponentialBuilder, Retryable};
use governor::DefaultDirectRateLimiter;
use serde_json::Value;

use std::sync::{Arc, Mutex};

use super::block::EvmBlock;
use super::traces::{BlockTraces, CALL_TRACER, DEBUG_TRACE_BLOCK_BY_HASH, TRACE_BLOCK};
use crate::crd::chain_source::{Commitment, Traces};
use crate::pipeline::config::RpcEndpoint;
use crate::pipeline::{BlockNumber, BlockSource, Link, Missing};

type ClientError = RpcError<TransportErrorKind>;

/// JSON-RPC "method not found": the node has no `eth_getBlockReceipts`.
const METHOD_NOT_FOUND: i64 = -32601;

/// The node, read at its final block or at its newest.
pub struct EvmRpcSource {
    node: Arc<Node>,
    /// The tip is the newest block, not the final one (`confirmed`).
    newest: bool,
}

struct Node {
    provider: RootProvider,
    limiter: Option<DefaultDirectRateLimiter>,
    backoff: ExponentialBuilder,
    /// Final means this many blocks below the newest (no `finalized` tag).
    confirmations: Option<u64>,
    traces: Traces,
    /// The trace method the node serves (`None`: neither) and when that was found.
    trace_method: Mutex<Option<(Option<TraceMethod>, std::time::Instant)>>,
}

/// How long a node found serving no trace method is taken at its word.
const ASK_AGAIN: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TraceMethod {
    TraceBlock,
    CallTracer,
}

impl EvmRpcSource {
    pub fn new(config: &RpcEndpoint) -> anyhow::Result<Self> {
        let newest = config.commitment == Commitment::Confirmed;
        Ok(Self { node: Arc::new(Node::new(config)?), newest })
    }

    pub async fn block(&self, number: BlockNumber) -> Result<EvmBlock, Missing> {
        self.node.block(number).await
    }

    /// The newest final block.
    pub async fn finalized(&self) -> Result<BlockNumber, String> {
        self.node.finalized().await
    }
}

impl Node {
    fn new(config: &RpcEndpoint) -> anyhow::Result<Self> {
        let url = url::Url::parse(&config.url).map_err(|e| anyhow::anyhow!("node URL: {e}"))?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some((name, value)) = config.auth_header().map_err(anyhow::Error::msg)? {
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder().default_headers(headers).timeout(config.timeout).build()?;
        let is_local = url.host_str().is_some_and(|h| h == "127.0.0.1" || h == "localhost");
        let provider = RootProvider::new(RpcClient::new(Http::with_client(http, url), is_local));
        let limiter = config.limiter();
        Ok(Self {
            provider,
            limiter,
            backoff: config.backoff(),
            confirmations: config.confirmations,
            traces: config.traces,
            trace_method: Mutex::new(None),
        })
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

    /// The newest final block: at the `finalized` tag, or `confirmations` below the newest.
    async fn finalized(&self) -> Result<BlockNumber, String> {
        if let Some(depth) = self.confirmations {
            return Ok(self.newest().await?.saturating_sub(depth));
        }
        let block = self
            .call("eth_getBlockByNumber", ("finalized", false))
            .await
            .map_err(|e| format!("eth_getBlockByNumber(finalized): {}", describe(&e)))?;
        quantity(block.get("number"))
            .ok_or_else(|| "eth_getBlockByNumber(finalized): the node names no finalized block".to_string())
    }

    async fn newest(&self) -> Result<BlockNumber, String> {
        let number =
            self.call("eth_blockNumber", ()).await.map_err(|e| format!("eth_blockNumber: {}", describe(&e)))?;
        quantity(Some(&number)).ok_or_else(|| format!("eth_blockNumber: not a quantity: {number}"))
    }

    /// The hash and parent hash of the node's block `number` now (its header only).
    async fn link_at(&self, number: BlockNumber) -> Result<Option<Link>, String> {
        let header = self
            .call("eth_getBlockByNumber", (format!("{number:#x}"), false))
            .await
            .map_err(|e| format!("eth_getBlockByNumber({number}, false): {}", describe(&e)))?;
        let field = |name: &str| header.get(name).and_then(Value::as_str).map(str::to_ascii_lowercase);
        Ok(field("hash").zip(field("parentHash")).map(|(hash, parent)| Link { hash, parent }))
    }

    async fn block(&self, number: BlockNumber) -> Result<EvmBlock, Missing> {
        let tag = format!("{number:#x}");
        let block = self
            .call("eth_getBlockByNumber", (tag.clone(), true))
            .await
            .map_err(|e| Missing::Gap(format!("eth_getBlockByNumber: {}", describe(&e))))?;
        if block.is_null() {
            return Err(Missing::Gap("the node has no such block yet".into()));
        }
        let receipts = match self.call("eth_getBlockReceipts", (tag.clone(),)).await {
            Ok(receipts) if !receipts.is_null() => receipts,
            Ok(_) => return Err(Missing::Gap("eth_getBlockReceipts: the node has no receipts for it".into())),
            Err(e) if rpc_code(&e) == Some(METHOD_NOT_FOUND) => self.receipts_one_by_one(&block).await?,
            Err(e) => return Err(Missing::Gap(format!("eth_getBlockReceipts: {}", describe(&e)))),
        };
        let block = EvmBlock::from_json(number, block, receipts).map_err(|e| Missing::Gap(e.to_string()))?;
        let traces = self.traces(&block).await?;
        block.with_traces(traces).map_err(|e| Missing::Gap(e.to_string()))
    }

    /// The block's traces by the method the node serves, found by asking:
    /// `trace_block`, else geth's `callTracer` (by the block's hash, so a
    /// fork's block of the same number cannot answer). A call the node
    /// refuses for this block alone (pruned state, an untraceable genesis)
    /// leaves it without traces at `auto`, a gap at `required`; a failure
    /// that may pass (timeouts, 5xx, 429, after the retries) is a gap.
    async fn traces(&self, block: &EvmBlock) -> Result<Option<BlockTraces>, Missing> {
        if self.traces == Traces::Disabled {
            return Ok(None);
        }
        let (number, known) = (block.index.number, self.trace_method());
        let methods = match known {
            Some(Some(method)) => vec![method],
            Some(None) => Vec::new(),
            None => vec![TraceMethod::TraceBlock, TraceMethod::CallTracer],
        };
        for method in methods {
            let answer = match method {
                TraceMethod::TraceBlock => self.call(TRACE_BLOCK, (format!("{number:#x}"),)).await,
                // Nothing to trace: geth answers an empty list.
                TraceMethod::CallTracer if block.index.transactions.is_empty() && known.is_some() => {
                    Ok(Value::Array(Vec::new()))
                }
                TraceMethod::CallTracer => {
                    let options = serde_json::json!({ "tracer": CALL_TRACER });
                    self.call(DEBUG_TRACE_BLOCK_BY_HASH, (format!("{:#x}", block.index.hash), options)).await
                }
            };
            let traces = match answer {
                Ok(traces) if !traces.is_null() => traces,
                Ok(_) => return Err(Missing::Gap(format!("{}: the node has no traces for it", method.name()))),
                Err(e) if known.is_none() && not_served(&e, method.name()) => continue,
                // A method served until now and refused now (disabled, out of credits): ask again next block.
                Err(e) if not_served(&e, method.name()) => {
                    self.forget();
                    return Err(Missing::Gap(format!("{}: no longer served: {}", method.name(), describe(&e))));
                }
                // What fails the same way every time leaves the block without traces at auto.
                Err(e)
                    if is_transient(&e)
                        || self.traces == Traces::Required
                        || !(refused_for_block(&e) || too_deep(&e)) =>
                {
                    return Err(Missing::Gap(format!("{}: {}", method.name(), describe(&e))));
                }
                Err(e) => {
                    let error = describe(&e);
                    tracing::warn!(block = number, method = method.name(), %error, "stored without traces: the node could not trace it");
                    return Ok(None);
                }
            };
            self.remember(Some(method));
            return Ok(Some(match method {
                TraceMethod::TraceBlock => BlockTraces::Parity(traces),
                TraceMethod::CallTracer => BlockTraces::CallTracer(traces),
            }));
        }
        self.remember(None);
        match self.traces {
            Traces::Required => Err(Missing::Gap(format!(
                "the node serves neither {TRACE_BLOCK} nor {DEBUG_TRACE_BLOCK_BY_HASH} (chain.traces: required)"
            ))),
            _ => Ok(None),
        }
    }

    /// The trace method found (`Some(None)`: neither is served), `None` when
    /// not known yet; a node found serving neither is asked again after a while
    /// (its operator may enable them).
    fn trace_method(&self) -> Option<Option<TraceMethod>> {
        match *self.trace_method.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((None, asked)) if asked.elapsed() > ASK_AGAIN => None,
            Some((found, _)) => Some(found),
            None => None,
        }
    }

    fn remember(&self, method: Option<TraceMethod>) {
        let mut known = self.trace_method.lock().unwrap_or_else(|e| e.into_inner());
        // A method another block just found outranks this block's "neither".
        if method.is_none() && matches!(*known, Some((Some(_), _))) {
            return;
        }
        if known.is_none_or(|(before, _)| before != method) {
            match method {
                Some(method) => tracing::info!(method = method.name(), "the node traces blocks"),
                None => tracing::warn!(
                    "the node serves neither {TRACE_BLOCK} nor {DEBUG_TRACE_BLOCK_BY_HASH}: blocks are stored without traces"
                ),
            }
        }
        *known = Some((method, std::time::Instant::now()));
    }

    fn forget(&self) {
        *self.trace_method.lock().unwrap_or_else(|e| e.into_inner()) = None;
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

impl TraceMethod {
    fn name(self) -> &'static str {
        match self {
            TraceMethod::TraceBlock => TRACE_BLOCK,
            TraceMethod::CallTracer => DEBUG_TRACE_BLOCK_BY_HASH,
        }
    }
}

/// The node has no such method or does not enable it: "method not found",
/// an error naming the method with the words nodes use, or a provider's
/// HTTP refusal (4xx but 429). Not "state not available" for one block.
fn not_served(error: &ClientError, method: &str) -> bool {
    match error {
        RpcError::ErrorResp(payload) => {
            let message = payload.message.to_ascii_lowercase();
            payload.code == METHOD_NOT_FOUND
                || (message.contains(&method.to_ascii_lowercase())
                    && ["does not exist", "not supported", "not available", "unsupported", "not enabled", "not found"]
                        .iter()
                        .any(|words| message.contains(words)))
        }
        RpcError::Transport(TransportErrorKind::HttpError(e)) => {
            (400..500).contains(&e.status) && !matches!(e.status, 408 | 429)
        }
        _ => false,
    }
}

/// A `0x…` quantity.
pub fn quantity(value: Option<&Value>) -> Option<u64> {
    u64::from_str_radix(value?.as_str()?.strip_prefix("0x")?, 16).ok()
}

#[async_trait::async_trait]
impl BlockSource<EvmBlock> for EvmRpcSource {
    /// Every number has a block on an EVM chain; past the tip it is not
    /// there (or not final) yet: the batch waits, within its patience.
    async fn produced(&self, start: BlockNumber, end: BlockNumber) -> Result<Vec<BlockNumber>, String> {
        let tip = self.tip().await?;
        if end > tip {
            let which = if self.newest { "the newest block" } else { "finalized" };
            return Err(format!("block {end} is not there yet ({which}: {tip})"));
        }
        Ok((start..=end).collect())
    }

    async fn block(&self, number: BlockNumber) -> Result<EvmBlock, Missing> {
        self.node.block(number).await
    }

    async fn tip(&self) -> Result<BlockNumber, String> {
        match self.newest {
            true => self.node.newest().await,
            false => self.node.finalized().await,
        }
    }

    fn finalized(&self) -> Option<Arc<dyn BlockSource<EvmBlock>>> {
        self.newest.then(|| Arc::new(EvmRpcSource { node: self.node.clone(), newest: false }) as Arc<_>)
    }

    fn link(&self, block: &EvmBlock) -> Option<Link> {
        Some(Link {
            hash: hex::encode_prefixed(block.index.hash),
            parent: hex::encode_prefixed(block.index.parent_hash),
        })
    }

    fn reorganizes(&self) -> bool {
        self.newest
    }

    async fn link_at(&self, number: BlockNumber) -> Result<Option<Link>, String> {
        self.node.link_at(number).await
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
        RpcError::ErrorResp(_) if refused_for_block(error) => false,
        RpcError::ErrorResp(payload) => (-32099..=-32000).contains(&payload.code) || payload.code == 429,
        RpcError::Transport(TransportErrorKind::HttpError(e)) => matches!(e.status, 408 | 429) || e.status >= 500,
        RpcError::Transport(kind) => kind.is_retry_err() || matches!(kind, TransportErrorKind::Custom(_)),
        _ => false,
    }
}

/// The node cannot trace (or serve the state of) this one block, and will
/// not on a retry: pruned history on a full node, geth's genesis. Geth,
/// Erigon and Nethermind send these as -32000-range server errors.
fn refused_for_block(error: &ClientError) -> bool {
    let RpcError::ErrorResp(payload) = error else { return false };
    let message = payload.message.to_ascii_lowercase();
    ["historical state", "missing trie node", "not traceable", "pruned", "state unavailable", "state not available"]
        .iter()
        .any(|words| message.contains(words))
}

/// An answer nested deeper than serde_json reads (a call tree of 2016's
/// call-depth attacks): the same on every try. Other unparsable answers (a
/// proxy's error page) may pass.
fn too_deep(error: &ClientError) -> bool {
    matches!(error, RpcError::DeserError { err, .. } if err.to_string().contains("recursion limit"))
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
