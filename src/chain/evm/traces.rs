//! A block's traces, as the node traced it: the internal calls, contract
//! creations, self-destructs (and, from `trace_block`, block rewards) that
//! receipts do not show. Two answers exist in the wild, and we keep
//! whichever the node gave, as sent:
//!
//! - `trace_block` (OpenEthereum's format; Erigon, Nethermind, reth, anvil):
//!   one flat list of traces, each with its `traceAddress`, rewards included;
//!   the format ethereum-etl exports and BigQuery's `crypto_ethereum.traces` holds;
//! - `debug_traceBlockByNumber` with geth's `callTracer` (geth and most
//!   others): one call tree per transaction, in transaction order (a worker
//!   asks `debug_traceBlockByHash`, which answers the same; the format keeps
//!   the by-number name, the method `serve` answers it under).
//!
//! The check is structural — every trace is an object of a known kind and
//! belongs to this block's transactions — rather than alloy's typed trace
//! structs: those require fields (`from`, `input`) that real geth answers
//! omit on `SELFDESTRUCT` frames (ethereum-etl's block 1,011,973).

use serde_json::Value;

/// The node's trace answer for one block.
#[derive(Clone, Debug, PartialEq)]
pub enum BlockTraces {
    /// `trace_block`'s flat list.
    Parity(Value),
    /// `debug_traceBlockByNumber(n, {"tracer": "callTracer"})`'s list of
    /// `{"txHash"?, "result": frame}`, one per transaction.
    CallTracer(Value),
}

/// The methods the formats come from.
pub const TRACE_BLOCK: &str = "trace_block";
pub const DEBUG_TRACE_BLOCK: &str = "debug_traceBlockByNumber";
/// How a worker asks for `callTracer` traces: by the block's hash (the same answer).
pub const DEBUG_TRACE_BLOCK_BY_HASH: &str = "debug_traceBlockByHash";
/// The tracer Chronicle asks `debug_traceBlockByNumber` for.
pub const CALL_TRACER: &str = "callTracer";

impl BlockTraces {
    /// The answer as the node sent it.
    pub fn answer(&self) -> &Value {
        match self {
            BlockTraces::Parity(value) | BlockTraces::CallTracer(value) => value,
        }
    }

    /// The method that gives this format.
    pub fn method(&self) -> &'static str {
        match self {
            BlockTraces::Parity(_) => TRACE_BLOCK,
            BlockTraces::CallTracer(_) => DEBUG_TRACE_BLOCK,
        }
    }

    /// What `evm-traces` keeps: the answer, and the method that gave it.
    pub fn to_stored(&self) -> Value {
        serde_json::json!({ "method": self.method(), "result": self.answer() })
    }

    /// A stored [`to_stored`](Self::to_stored) value back (`None`: not one).
    pub fn from_stored(mut stored: Value) -> Option<Self> {
        let result = stored.get_mut("result")?.take();
        match stored.get("method")?.as_str()? {
            TRACE_BLOCK => Some(BlockTraces::Parity(result)),
            DEBUG_TRACE_BLOCK => Some(BlockTraces::CallTracer(result)),
            _ => None,
        }
    }

    /// Checks that the answer is the traces of block `number` with hash
    /// `hash` and transactions `tx_hashes` (in block order, `0x…`): each
    /// transaction traced, by its own top call, and nothing else but rewards.
    pub fn check(&self, number: u64, hash: &str, tx_hashes: &[String]) -> Result<(), String> {
        let list = self.answer().as_array().ok_or_else(|| format!("{}: not a list", self.method()))?;
        match self {
            BlockTraces::Parity(_) => {
                let mut top_calls = 0;
                for (position, trace) in list.iter().enumerate() {
                    let at = |reason: String| format!("{TRACE_BLOCK}: trace {position}: {reason}");
                    if !trace.is_object() {
                        return Err(at("not an object".into()));
                    }
                    let kind = trace.get("type").and_then(Value::as_str);
                    if !matches!(kind, Some("call" | "create" | "suicide" | "selfdestruct" | "reward")) {
                        return Err(at(format!("unknown type {}", trace.get("type").unwrap_or(&Value::Null))));
                    }
                    if let Some(answered) = trace.get("blockNumber").and_then(Value::as_u64)
                        && answered != number
                    {
                        return Err(at(format!("is of block {answered}")));
                    }
                    // Another fork's block of the same number shares most transactions: the hash tells.
                    if let Some(answered) = trace.get("blockHash").and_then(Value::as_str)
                        && !answered.eq_ignore_ascii_case(hash)
                    {
                        return Err(at(format!("is of block {answered}, not {hash}")));
                    }
                    match trace.get("transactionHash") {
                        None | Some(Value::Null) if kind == Some("reward") => {}
                        Some(Value::String(tx)) if tx_hashes.iter().any(|h| h.eq_ignore_ascii_case(tx)) => {
                            let top = trace.get("traceAddress").and_then(Value::as_array).is_some_and(Vec::is_empty);
                            top_calls += usize::from(top);
                        }
                        Some(Value::String(tx)) => {
                            return Err(at(format!("names transaction {tx}, not of this block")));
                        }
                        other => return Err(at(format!("transactionHash {}", other.unwrap_or(&Value::Null)))),
                    }
                }
                if top_calls != tx_hashes.len() {
                    return Err(format!(
                        "{TRACE_BLOCK}: {top_calls} top-level traces for {} transactions",
                        tx_hashes.len()
                    ));
                }
            }
            BlockTraces::CallTracer(_) => {
                if list.len() != tx_hashes.len() {
                    return Err(format!(
                        "{DEBUG_TRACE_BLOCK}: {} traces for {} transactions",
                        list.len(),
                        tx_hashes.len()
                    ));
                }
                for (position, (item, hash)) in list.iter().zip(tx_hashes).enumerate() {
                    let at = |reason: String| format!("{DEBUG_TRACE_BLOCK}: transaction {position}: {reason}");
                    if let Some(error) = item.get("error") {
                        return Err(at(format!("the node could not trace it: {error}")));
                    }
                    if item.get("txHash").and_then(Value::as_str).is_some_and(|h| !h.eq_ignore_ascii_case(hash)) {
                        return Err(at(format!("traced {}, the block's is {hash}", item["txHash"])));
                    }
                    check_frame(item.get("result").unwrap_or(&Value::Null)).map_err(at)?;
                }
            }
        }
        Ok(())
    }
}

/// A call frame and its children each name their kind.
fn check_frame(frame: &Value) -> Result<(), String> {
    if !frame.get("type").is_some_and(Value::is_string) {
        return Err(format!("a call frame without a type: {}", truncated(frame)));
    }
    match frame.get("calls") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(calls)) => calls.iter().try_for_each(check_frame),
        Some(other) => Err(format!("calls is not a list: {}", truncated(other))),
    }
}

fn truncated(value: &Value) -> String {
    value.to_string().chars().take(120).collect()
}
