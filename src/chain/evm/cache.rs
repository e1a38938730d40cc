//! The cache tier for EVM answers: the same Redis (or `memory://`) cache and
//! generation-checked writes as Solana's (`serve/cache.rs`), keyed by method
//! and params. What differs is how long an answer holds:
//!
//! - about a block at or below the final watermark (`evm-meta`; every stored
//!   block when no follower runs ahead of finality): immutable;
//! - about a newer block, about the tip (`eth_blockNumber`, tags, a log range
//!   reaching past the final blocks) or about what is not stored yet (`null`):
//!   with the tip answers, dropped by the ingest's cache sink whenever a block
//!   is written, taken back by a reorganization, or becomes final;
//! - `eth_chainId`: immutable.

use std::future::Future;
use std::time::Instant;

use jsonrpc_core::{Error, Params, Value};

use super::rpc::quantity;
use super::serve::Methods;
use crate::serve::Metrics;
use crate::serve::cache::{Cache, Lookup};
use crate::serve::methods::{Answer, Freshness};

/// Answers `method` from the cache, or by `call` and then into the cache, counted.
pub(super) async fn through<F, Fut>(
    cache: Option<&Cache>,
    methods: &Methods,
    metrics: &Metrics,
    method: &'static str,
    params: Params,
    call: F,
) -> Result<Value, Error>
where
    F: FnOnce(Params) -> Fut,
    Fut: Future<Output = Result<Value, Error>>,
{
    let started = Instant::now();
    let Some(cache) = cache else {
        let answer = call(params).await;
        metrics.count(method, "off", crate::telemetry::metrics::outcome(answer.is_ok()), started);
        return answer;
    };
    let params_value = crate::serve::params_json(&params);
    let key = Cache::key_named(method, &params_value);
    let generation = match cache.lookup(&key).await {
        Lookup::Hit(value) => {
            metrics.count(method, "hit", "ok", started);
            return Ok(value);
        }
        Lookup::Miss { generation } => generation,
    };
    // What was final before the answer was read: a block final then stays so.
    let final_through = methods.final_through().await;
    let answer = call(params).await;
    let answer = match answer {
        Ok(value) => {
            let freshness = match final_through {
                Ok(final_through) => methods.freshness(method, &params_value, &value, final_through).await,
                Err(_) => Freshness::Uncacheable,
            };
            let answer = Answer { value, freshness };
            cache.put(&key, generation, &answer, None).await;
            Ok(answer.value)
        }
        Err(e) => Err(e),
    };
    metrics.count(method, "miss", crate::telemetry::metrics::outcome(answer.is_ok()), started);
    answer
}

impl Methods {
    /// How long `answer` to `method` with `params` holds, given the newest
    /// block that was final when it was read.
    async fn freshness(&self, method: &str, params: &Value, answer: &Value, final_through: Option<u64>) -> Freshness {
        let tip = Freshness::Mutable { addresses: Vec::new(), tip: true };
        let final_block = |number: Option<u64>| number.is_some_and(|n| final_through.is_some_and(|f| n <= f));
        let first_param = params.get(0);
        let immutable = match method {
            "eth_chainId" => true,
            // A number, not a tag: the same question always has the same answer once final.
            "eth_getBlockByNumber" => quantity(first_param).is_some() && final_block(quantity(answer.get("number"))),
            "eth_getBlockByHash" => final_block(quantity(answer.get("number"))),
            // A number, and the block stored (a `null` may be filled later).
            "trace_block" | "debug_traceBlockByNumber" => !answer.is_null() && final_block(quantity(first_param)),
            "eth_getTransactionByHash" | "eth_getTransactionReceipt" => {
                final_block(quantity(answer.get("blockNumber")))
            }
            // A final range, every block of it stored (a gap repaired later would add logs).
            "eth_getLogs" => {
                let filter = first_param.unwrap_or(&Value::Null);
                match (filter.get("blockHash"), quantity(filter.get("fromBlock")), quantity(filter.get("toBlock"))) {
                    (None, Some(from), Some(to)) if from <= to && final_block(Some(to)) => {
                        self.stored_count(from, to).await == Some(to - from + 1)
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if immutable { Freshness::Immutable } else { tip }
    }
}
