//! The EVM history API a history node serves, from the store, behind the
//! same HTTP front as Solana's (API keys, rate limits, size limits,
//! `/metrics`): `eth_blockNumber`, `eth_chainId`, `eth_getBlockByNumber`,
//! `eth_getBlockByHash`, `eth_getTransactionByHash`,
//! `eth_getTransactionReceipt`, `eth_getLogs` over a bounded range, and a
//! block's traces in the format they were stored in (`trace_block`, or
//! `debug_traceBlockByNumber` with `callTracer`). Answers
//! are the node's own JSON as stored; what the store does not hold is `null`,
//! as a node answers. With a cache tier, answers go through `cache.rs`; with
//! an upstream node, what is not served goes there (`serve/upstream.rs`),
//! and with `forwardMisses` a lookup the store cannot answer: a block outside
//! the stored span, an unknown hash — never a number inside the span (a gap
//! must not be hidden).

use std::sync::Arc;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::B256;
use alloy::rpc::types::{Filter, FilterBlockOption, Log};
use jsonrpc_core::{Error, ErrorCode, MetaIoHandler, Params, Value};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::block::EvmBlock;
use super::layout::EvmStore;
use super::traces::{BlockTraces, CALL_TRACER, DEBUG_TRACE_BLOCK, TRACE_BLOCK};
use crate::serve::cache::Cache;
use crate::serve::upstream::{Passthrough, Upstream};
use crate::serve::{Metrics, ServeConfig, front};

/// Blocks one `eth_getLogs` may cover (providers bound it likewise).
pub const MAX_LOG_RANGE: u64 = 2_000;
/// Logs one `eth_getLogs` may return.
pub const MAX_LOGS: usize = 10_000;

pub(super) struct Methods {
    store: Arc<EvmStore>,
    /// EIP-155 chain id (`eth_chainId`; ChainSource `chain.chainId`).
    chain_id: Option<u64>,
    /// Where what is not served goes (`serve/upstream.rs`).
    upstream: Option<Arc<Upstream>>,
}

/// The methods served from the store (any other goes to the upstream, if any).
const METHODS: [&str; 9] = [
    "eth_blockNumber",
    "eth_chainId",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getTransactionByHash",
    "eth_getTransactionReceipt",
    "eth_getLogs",
    "trace_block",
    "debug_traceBlockByNumber",
];

/// The router of an EVM serve replica.
pub fn router(store: Arc<EvmStore>, config: ServeConfig) -> anyhow::Result<axum::Router> {
    if config.cache.as_ref().is_some_and(|c| !c.methods.is_empty()) {
        anyhow::bail!("an evm cache tier caches every eth_ method: cache.methods names Solana methods; leave it empty");
    }
    let cache = config.cache.clone().map(Cache::new).transpose()?;
    if let Some(cache) = cache.clone() {
        tokio::spawn(async move { cache.configure().await });
    }
    let upstream = config.upstream.clone().map(|u| Arc::new(Upstream::new(u)));
    let methods = Arc::new(Methods { store, chain_id: config.chain_id, upstream: upstream.clone() });
    let metrics = Arc::new(Metrics::new());
    let served = |method: &str| METHODS.contains(&method);
    let mut rpc = MetaIoHandler::with_middleware(Passthrough { upstream, metrics: metrics.clone(), served });
    macro_rules! method {
        ($name:literal, $call:ident) => {{
            let (methods, metrics, cache) = (methods.clone(), metrics.clone(), cache.clone());
            rpc.add_method($name, move |params: Params| {
                let (methods, metrics, cache) = (methods.clone(), metrics.clone(), cache.clone());
                async move {
                    let asked = params.clone();
                    let call = |params| methods.$call(params);
                    let answer = super::cache::through(cache.as_deref(), &methods, &metrics, $name, params, call).await;
                    methods.or_upstream($name, &asked, answer, &metrics).await
                }
            });
        }};
    }
    method!("eth_blockNumber", block_number);
    method!("eth_chainId", chain_id);
    method!("eth_getBlockByNumber", block_by_number);
    method!("eth_getBlockByHash", block_by_hash);
    method!("eth_getTransactionByHash", transaction_by_hash);
    method!("eth_getTransactionReceipt", transaction_receipt);
    method!("eth_getLogs", logs);
    method!("trace_block", trace_block);
    method!("debug_traceBlockByNumber", debug_trace_block);
    Ok(front::router(rpc, metrics, config))
}

/// Serves until `shutdown`, then drains open requests.
pub async fn run(store: Arc<EvmStore>, config: ServeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listen = config.listen;
    front::listen(router(store, config)?, listen, shutdown).await
}

fn invalid(message: impl Into<String>) -> Error {
    Error { code: ErrorCode::InvalidParams, message: message.into(), data: None }
}

fn store_error(e: crate::store::StoreError) -> Error {
    tracing::error!(error = %e, "store read failed");
    Error { code: ErrorCode::InternalError, message: format!("store: {e}"), data: None }
}

fn hex(n: u64) -> Value {
    Value::String(format!("{n:#x}"))
}

/// The positional parameters, typed: `arity` of them (a tuple when more
/// than one), `required` of them at least; optional trailing ones may be left out.
fn positional<T: DeserializeOwned>(params: Params, arity: usize, required: usize) -> Result<T, Error> {
    let mut list = match params {
        Params::Array(list) => list,
        Params::None => Vec::new(),
        Params::Map(_) => return Err(invalid("parameters are positional: pass an array")),
    };
    if list.len() < required {
        return Err(invalid(format!("missing value for required argument {}", list.len())));
    }
    if list.len() > arity {
        return Err(invalid(format!("expected at most {arity} parameters, got {}", list.len())));
    }
    while list.len() < arity {
        list.push(Value::Null);
    }
    let value = if arity == 1 { list.remove(0) } else { Value::Array(list) };
    serde_json::from_value(value).map_err(|e| invalid(format!("invalid parameters: {e}")))
}

fn server_error(message: impl Into<String>) -> Error {
    Error { code: ErrorCode::ServerError(-32000), message: message.into(), data: None }
}

/// Blocks read at once by `eth_getLogs` (a mainnet block with its receipts is megabytes).
const LOG_SCAN_BLOCKS: usize = 32;

impl Methods {
    /// A `null` the store gave for a lookup it cannot answer, asked of the
    /// upstream when it takes misses; the store's answer stands when the
    /// upstream cannot be asked.
    async fn or_upstream(
        &self,
        method: &str,
        params: &Params,
        answer: Result<Value, Error>,
        metrics: &Metrics,
    ) -> Result<Value, Error> {
        let Some(upstream) = self.upstream.as_ref().filter(|u| u.forwards_misses()) else { return answer };
        if !matches!(answer, Ok(Value::Null)) || !self.is_miss(method, params).await {
            return answer;
        }
        match crate::serve::upstream::forward(upstream, metrics, method, params, "miss").await {
            Ok(forwarded) => forwarded,
            Err(_) => answer,
        }
    }

    /// A `null` lookup the upstream may answer: a block number outside the
    /// stored span (or `pending`), an unknown block hash or transaction —
    /// never a number inside the span, whose `null` is a gap.
    async fn is_miss(&self, method: &str, params: &Params) -> bool {
        let first = match params {
            Params::Array(list) => list.first().cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        };
        let hash = || serde_json::from_value::<B256>(first.clone()).ok();
        // Only what the index does not know: a known hash whose rows are missing is a gap.
        match method {
            "eth_getBlockByHash" => match hash() {
                Some(hash) => matches!(self.store.block_number_by_hash(&hash).await, Ok(None)),
                None => false,
            },
            "eth_getTransactionByHash" | "eth_getTransactionReceipt" => match hash() {
                Some(hash) => matches!(self.store.transaction_location(&hash).await, Ok(None)),
                None => false,
            },
            "eth_getBlockByNumber" | "trace_block" | "debug_traceBlockByNumber" => {
                let Ok(tag) = serde_json::from_value::<BlockNumberOrTag>(first) else { return false };
                // A tag resolves first (`pending`, or `latest` on an empty store, to nothing).
                let Ok(number) = self.resolve(tag).await else { return false };
                let Some(n) = number else { return true };
                match (self.store.oldest().await, self.store.newest().await) {
                    (Ok(Some(oldest)), Ok(Some(newest))) => n < oldest || n > newest,
                    (Ok(None), Ok(None)) => true,
                    _ => false,
                }
            }
            _ => false,
        }
    }

    async fn newest(&self) -> Result<Option<u64>, Error> {
        self.store.newest().await.map_err(store_error)
    }

    /// The newest final stored block: the final watermark a follower ahead
    /// of finality records, or the newest stored block when there is none
    /// (only final blocks were stored).
    pub(super) async fn final_through(&self) -> Result<Option<u64>, Error> {
        let newest = self.newest().await?;
        let watermark = self.store.finalized().await.map_err(store_error)?;
        Ok(match watermark {
            Some(watermark) => newest.map(|n| n.min(watermark)),
            None => newest,
        })
    }

    /// How many blocks of `from..=to` are stored (`None`: the store could not say).
    pub(super) async fn stored_count(&self, from: u64, to: u64) -> Option<u64> {
        let limit = usize::try_from(to - from + 1).ok()?;
        self.store.numbers(from, to, limit).await.ok().map(|n| n.len() as u64)
    }

    /// A block number or tag, resolved against the store: `latest` is the
    /// newest stored block; `finalized` and `safe` the newest final one (we
    /// do not know what is safe short of final); `earliest` is block 0, as on a node.
    async fn resolve(&self, tag: BlockNumberOrTag) -> Result<Option<u64>, Error> {
        Ok(match tag {
            BlockNumberOrTag::Number(n) => Some(n),
            BlockNumberOrTag::Earliest => Some(0),
            BlockNumberOrTag::Latest => self.newest().await?,
            BlockNumberOrTag::Safe | BlockNumberOrTag::Finalized => self.final_through().await?,
            BlockNumberOrTag::Pending => None,
        })
    }

    async fn block(&self, number: u64) -> Result<Option<Value>, Error> {
        self.store.block(number).await.map_err(store_error)
    }

    async fn block_number(&self, _params: Params) -> Result<Value, Error> {
        let newest = self.newest().await?.ok_or_else(|| server_error("the store holds no block yet"))?;
        Ok(hex(newest))
    }

    async fn chain_id(&self, _params: Params) -> Result<Value, Error> {
        let id = self.chain_id.ok_or_else(|| server_error("this serve was started without chain.chainId"))?;
        Ok(hex(id))
    }

    fn block_answer(block: Option<Value>, full: bool) -> Value {
        match block {
            Some(block) if full => block,
            Some(block) => EvmBlock::with_hashes(&block),
            None => Value::Null,
        }
    }

    async fn block_by_number(&self, params: Params) -> Result<Value, Error> {
        let (tag, full): (BlockNumberOrTag, Option<bool>) = positional(params, 2, 1)?;
        let Some(number) = self.resolve(tag).await? else { return Ok(Value::Null) };
        Ok(Self::block_answer(self.block(number).await?, full.unwrap_or(false)))
    }

    async fn block_by_hash(&self, params: Params) -> Result<Value, Error> {
        let (hash, full): (B256, Option<bool>) = positional(params, 2, 1)?;
        let Some(number) = self.store.block_number_by_hash(&hash).await.map_err(store_error)? else {
            return Ok(Value::Null);
        };
        Ok(Self::block_answer(self.block(number).await?, full.unwrap_or(false)))
    }

    async fn location(&self, params: Params) -> Result<Option<(u64, usize)>, Error> {
        let hash: B256 = positional(params, 1, 1)?;
        let found = self.store.transaction_location(&hash).await.map_err(store_error)?;
        Ok(found.map(|(number, index)| (number, index as usize)))
    }

    async fn transaction_by_hash(&self, params: Params) -> Result<Value, Error> {
        let Some((number, index)) = self.location(params).await? else { return Ok(Value::Null) };
        let block = self.block(number).await?;
        Ok(block.and_then(|b| b.get("transactions")?.get(index).cloned()).unwrap_or(Value::Null))
    }

    async fn transaction_receipt(&self, params: Params) -> Result<Value, Error> {
        let Some((number, index)) = self.location(params).await? else { return Ok(Value::Null) };
        let receipts = self.store.receipts(number).await.map_err(store_error)?;
        Ok(receipts.and_then(|r| r.get(index).cloned()).unwrap_or(Value::Null))
    }

    /// The stored traces of the block a tag names (`None`: no such block
    /// stored; an error for `method` if it was stored without traces).
    async fn stored_traces(&self, tag: BlockNumberOrTag, method: &str) -> Result<Option<BlockTraces>, Error> {
        let Some(number) = self.resolve(tag).await? else { return Ok(None) };
        if let Some(traces) = self.store.traces(number).await.map_err(store_error)? {
            return Ok(Some(traces));
        }
        match self.block(number).await? {
            Some(_) => Err(server_error(format!(
                "block {number} was stored without traces (its node served none, or chain.traces was disabled): {method} cannot answer it"
            ))),
            None => Ok(None),
        }
    }

    async fn trace_block(&self, params: Params) -> Result<Value, Error> {
        let tag: BlockNumberOrTag = positional(params, 1, 1)?;
        match self.stored_traces(tag, TRACE_BLOCK).await? {
            None => Ok(Value::Null),
            Some(BlockTraces::Parity(traces)) => Ok(traces),
            Some(BlockTraces::CallTracer(_)) => Err(server_error(format!(
                "this block's traces were stored as geth's callTracer answers: ask {DEBUG_TRACE_BLOCK} with tracer {CALL_TRACER}"
            ))),
        }
    }

    /// `debug_traceBlockByNumber(n, {"tracer": "callTracer"})`, with
    /// `tracerConfig.onlyTopCall` the only option (what is stored is the whole tree).
    async fn debug_trace_block(&self, params: Params) -> Result<Value, Error> {
        let (tag, options): (BlockNumberOrTag, Option<Value>) = positional(params, 2, 1)?;
        let options = options.unwrap_or(Value::Null);
        if options.get("tracer").and_then(Value::as_str) != Some(CALL_TRACER) {
            return Err(invalid(format!(
                "only {CALL_TRACER} traces are stored: pass {{\"tracer\": \"{CALL_TRACER}\"}}"
            )));
        }
        let config = options.get("tracerConfig").and_then(Value::as_object).cloned().unwrap_or_default();
        let only_top_call = config.get("onlyTopCall").and_then(Value::as_bool).unwrap_or(false);
        if let Some(other) = config.iter().find(|(name, value)| *name != "onlyTopCall" && **value != Value::Bool(false))
        {
            return Err(invalid(format!("tracerConfig.{} is not served (only onlyTopCall)", other.0)));
        }
        match self.stored_traces(tag, DEBUG_TRACE_BLOCK).await? {
            None => Ok(Value::Null),
            Some(BlockTraces::CallTracer(mut traces)) => {
                if only_top_call {
                    for item in traces.as_array_mut().into_iter().flatten() {
                        if let Some(Value::Object(frame)) = item.get_mut("result") {
                            frame.remove("calls");
                        }
                    }
                }
                Ok(traces)
            }
            Some(BlockTraces::Parity(_)) => Err(server_error(format!(
                "this block's traces were stored as {TRACE_BLOCK} answers: ask {TRACE_BLOCK}"
            ))),
        }
    }

    /// The logs of the stored blocks in the filter's range (at most
    /// [`MAX_LOG_RANGE`] blocks) that match its addresses and topics, as the
    /// receipts hold them. Blocks are read a few at a time; the receipts of
    /// a block whose bloom excludes the filter are not read.
    async fn logs(&self, params: Params) -> Result<Value, Error> {
        let filter: Filter = positional(params, 1, 1)?;
        let (from, to) = match filter.block_option {
            FilterBlockOption::AtBlockHash(hash) => {
                match self.store.block_number_by_hash(&hash).await.map_err(store_error)? {
                    Some(number) => (number, number),
                    None => return Err(server_error("unknown block")),
                }
            }
            FilterBlockOption::Range { from_block, to_block } => {
                let latest = BlockNumberOrTag::Latest;
                let from = self.resolve(from_block.unwrap_or(latest)).await?;
                let to = self.resolve(to_block.unwrap_or(latest)).await?;
                match (from, to, self.newest().await?) {
                    // Past the newest stored block there is nothing: the range ends there, as on a node.
                    (Some(from), Some(to), Some(newest)) => (from, to.min(newest.max(from))),
                    _ => return Ok(Value::Array(Vec::new())),
                }
            }
        };
        if from > to {
            return Err(invalid(format!("fromBlock {from:#x} is after toBlock {to:#x}")));
        }
        if to - from >= MAX_LOG_RANGE {
            return Err(Error {
                code: ErrorCode::ServerError(-32005),
                message: format!("query exceeds max block range {MAX_LOG_RANGE}"),
                data: None,
            });
        }
        let mut found = Vec::new();
        let mut next = from;
        while next <= to {
            let blocks = self.store.blocks(next, to, LOG_SCAN_BLOCKS).await.map_err(store_error)?;
            let Some(&(last, _)) = blocks.last() else { break };
            for (number, block) in blocks {
                let bloom = block.get("logsBloom").and_then(|b| serde_json::from_value(b.clone()).ok());
                if bloom.is_some_and(|bloom| !filter.matches_bloom(bloom)) {
                    continue;
                }
                let receipts = self.store.receipts(number).await.map_err(store_error)?;
                for receipt in receipts.iter().filter_map(Value::as_array).flatten() {
                    for log in receipt.get("logs").and_then(Value::as_array).into_iter().flatten() {
                        let typed: Log = serde_json::from_value(log.clone()).map_err(|e| {
                            store_error(crate::store::StoreError::Corrupt {
                                table: super::layout::tables::RECEIPTS,
                                key: format!("{number:016x}"),
                                slot: Some(number),
                                reason: format!("a stored log does not parse: {e}"),
                            })
                        })?;
                        if filter.matches(&typed.inner) {
                            if found.len() == MAX_LOGS {
                                return Err(Error {
                                    code: ErrorCode::ServerError(-32005),
                                    message: format!("query returned more than {MAX_LOGS} results"),
                                    data: None,
                                });
                            }
                            found.push(log.clone());
                        }
                    }
                }
            }
            match last.checked_add(1) {
                Some(after) => next = after,
                None => break,
            }
        }
        Ok(Value::Array(found))
    }
}
