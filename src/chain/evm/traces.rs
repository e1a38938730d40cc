//! A block's traces, as the node traced it: the internal calls, contract
//! creations, self-destructs (and, from `trace_block`, block rewards) that
//! receipts do not show. Two answers exist in the wild, and we keep
//! whichever the node gave, as sent:
//!
//! - `trace_block` (OpenEthereum's format; Erigon, Nethermind, reth, anvil):
//!   one flat list of traces, each with its `traceAddress`, rewards included;
//!   the format ethereum-etl exports and BigQuery's `crypto_ethereum.traces` holds;
//! - `debug_traceBlockByNumber` with geth's `callTracer` (geth and most
//!   others): one call tree per transaction, in transaction order.
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

/// The method each format comes from, and its store qualifier.
pub const TRACE_BLOCK: &str = "trace_block";
pub const DEBUG_TRACE_BLOCK: &str = "debug_traceBlockByNumber";
/// The tracer Chronicle asks `debug_traceBlockByNumber` for.
pub const CALL_TRACER: &str = "callTracer";

impl BlockTraces {
    /// The cell qualifier the format is stored under (`evm-traces`).
    pub fn qualifier(&self) -> &'static str {
        match self {
            BlockTraces::Parity(_) => TRACE_BLOCK,
            BlockTraces::CallTracer(_) => CALL_TRACER,
        }
    }

    /// The answer as the node sent it.
    pub fn answer(&self) -> &Value {
        match self {
            BlockTraces::Parity(value) | BlockTraces::CallTracer(value) => value,
        }
    }

    /// The stored cell back into its format.
    pub fn from_cell(qualifier: &str, value: Value) -> Option<Self> {
        match qualifier {
            TRACE_BLOCK => Some(BlockTraces::Parity(value)),
            CALL_TRACER => Some(BlockTraces::CallTracer(value)),
            _ => None,
        }
    }

    /// Checks that the answer is block `number`'s traces, for its
    /// transactions `tx_hashes` (in block order, `0x…` lowercase).
    pub fn check(&self, number: u64, tx_hashes: &[String]) -> Result<(), String> {
        let list = self.answer().as_array().ok_or_else(|| format!("{}: not a list", self.method()))?;
        match self {
            BlockTraces::Parity(_) => {
                for (position, trace) in list.iter().enumerate() {
                    let at = |reason: String| format!("{TRACE_BLOCK}: trace {position}: {reason}");
                    if !trace.is_object() {
                        return Err(at("not an object".into()));
                    }
                    if !matches!(
                        trace.get("type").and_then(Value::as_str),
                        Some("call" | "create" | "suicide" | "selfdestruct" | "reward")
                    ) {
                        return Err(at(format!("unknown type {}", trace.get("type").unwrap_or(&Value::Null))));
                    }
                    if let Some(answered) = trace.get("blockNumber").and_then(Value::as_u64)
                        && answered != number
                    {
                        return Err(at(format!("is of block {answered}")));
                    }
                    match trace.get("transactionHash").and_then(Value::as_str) {
                        Some(hash) if !tx_hashes.iter().any(|h| h.eq_ignore_ascii_case(hash)) => {
                            return Err(at(format!("names transaction {hash}, not of this block")));
                        }
                        _ => {}
                    }
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

    fn method(&self) -> &'static str {
        match self {
            BlockTraces::Parity(_) => TRACE_BLOCK,
            BlockTraces::CallTracer(_) => DEBUG_TRACE_BLOCK,
        }
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
