//! The lake's `traces` table in ethereum-etl's schema (BigQuery's
//! `crypto_ethereum.traces`), from either trace format (`traces.rs`), as
//! ethereum-etl maps them: `trace_block`'s traces one row each, rewards
//! included; a `callTracer` tree depth first, a row per frame, `SELFDESTRUCT`
//! as `suicide` and the call kinds as `call` with their `call_type`. Then,
//! for both, as ethereum-etl's export does for `trace_block`: a trace fails
//! (`status` 0) when it or an enclosing call errs, and each gets its
//! `trace_id`. Where ethereum-etl's geth path leaves a row's transaction
//! hash, status and id empty, ours are filled from the block, as BigQuery's are.
//! ethereum-etl's optional genesis-allocation and DAO-fork rows are not made:
//! no node traces them.

use std::collections::HashMap;

use alloy::primitives::U256;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rows::At;
use super::traces::BlockTraces;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRow {
    pub block_number: u64,
    /// None: a block-level trace (a reward).
    pub transaction_hash: Option<String>,
    pub transaction_index: Option<u64>,
    pub from_address: Option<String>,
    pub to_address: Option<String>,
    /// Wei, decimal.
    pub value: Option<String>,
    pub input: Option<String>,
    pub output: Option<String>,
    /// `call`, `create`, `suicide` or `reward`.
    pub trace_type: String,
    /// `call`, `callcode`, `delegatecall` or `staticcall`.
    pub call_type: Option<String>,
    /// `block` or `uncle`.
    pub reward_type: Option<String>,
    pub gas: Option<u64>,
    pub gas_used: Option<u64>,
    pub subtraces: u64,
    /// The path from the transaction's top call, comma-separated (`0,2`); None at the top.
    pub trace_address: Option<String>,
    pub error: Option<String>,
    /// 1, or 0 when this call or one enclosing it failed.
    pub status: u64,
    /// `{type}_{transaction}_{path by _}`, or `{type}_{block}_{n}` for block-level traces.
    pub trace_id: String,
    /// The trace's place among the block's traces.
    pub trace_index: u64,
    /// Microseconds since the epoch (a TIMESTAMP, as BigQuery's).
    pub block_timestamp: i64,
    pub block_hash: String,
}

/// What a block's trace rows need of the block.
pub struct BlockContext<'a> {
    pub number: u64,
    pub hash: &'a str,
    /// Microseconds since the epoch.
    pub timestamp: i64,
    /// The transactions' hashes, in block order.
    pub transactions: &'a [String],
}

/// The block's trace rows.
pub fn trace_rows(block: &BlockContext, traces: &BlockTraces) -> Result<Vec<TraceRow>, String> {
    let mut rows = Vec::new();
    match traces {
        BlockTraces::Parity(list) => {
            for trace in list.as_array().map(Vec::as_slice).unwrap_or_default() {
                rows.push(parity_row(block, trace)?);
            }
        }
        BlockTraces::CallTracer(list) => {
            for (position, item) in list.as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
                let hash = block.transactions.get(position).cloned();
                let frame = item.get("result").unwrap_or(&Value::Null);
                frame_rows(block, position as u64, hash.as_deref(), frame, &mut Vec::new(), &mut rows)?;
            }
        }
    }
    set_statuses(&mut rows);
    set_ids(&mut rows);
    for (index, row) in rows.iter_mut().enumerate() {
        row.trace_index = index as u64;
    }
    Ok(rows)
}

fn empty_row(block: &BlockContext) -> TraceRow {
    TraceRow {
        block_number: block.number,
        block_hash: block.hash.to_string(),
        block_timestamp: block.timestamp,
        ..TraceRow::default()
    }
}

fn joined(path: &[u64]) -> Option<String> {
    (!path.is_empty()).then(|| path.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
}

/// One `trace_block` trace.
fn parity_row(block: &BlockContext, trace: &Value) -> Result<TraceRow, String> {
    let at = At { number: block.number, what: "trace" };
    let null = Value::Null;
    let action = trace.get("action").filter(|a| !a.is_null()).unwrap_or(&null);
    let result = trace.get("result").filter(|r| !r.is_null()).unwrap_or(&null);
    let path: Vec<u64> = match trace.get("traceAddress") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(points)) => points
            .iter()
            .map(|p| p.as_u64().ok_or_else(|| at.error("traceAddress", format!("{p} is not an index"))))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(at.error("traceAddress", format!("expected a list, got {other}"))),
    };
    let trace_type = at.required_text(trace, "type")?;
    let mut row = TraceRow {
        transaction_hash: at.text(trace, "transactionHash")?,
        transaction_index: trace.get("transactionPosition").and_then(Value::as_u64),
        subtraces: trace.get("subtraces").and_then(Value::as_u64).unwrap_or(0),
        trace_address: joined(&path),
        error: at.text(trace, "error")?.filter(|e| !e.is_empty()),
        ..empty_row(block)
    };
    let action_at = At { number: block.number, what: "trace action" };
    match trace_type.as_str() {
        "call" | "create" => {
            row.from_address = action_at.address(action, "from")?;
            row.value = action_at.decimal(action, "value")?;
            row.gas = action_at.quantity(action, "gas")?;
            row.gas_used = action_at.quantity(result, "gasUsed")?;
            if trace_type == "call" {
                row.call_type = action_at.text(action, "callType")?;
                row.to_address = action_at.address(action, "to")?;
                row.input = action_at.text(action, "input")?;
                row.output = action_at.text(result, "output")?;
            } else {
                row.to_address = action_at.text(result, "address")?;
                row.input = action_at.text(action, "init")?;
                row.output = action_at.text(result, "code")?;
            }
        }
        "suicide" | "selfdestruct" => {
            row.from_address = action_at.address(action, "address")?;
            row.to_address = action_at.address(action, "refundAddress")?;
            row.value = action_at.decimal(action, "balance")?;
        }
        "reward" => {
            row.to_address = action_at.address(action, "author")?;
            row.value = action_at.decimal(action, "value")?;
            row.reward_type = action_at.text(action, "rewardType")?;
        }
        _ => {}
    }
    // ethereum-etl's name for a self-destruct, whichever the node prints.
    row.trace_type = if trace_type == "selfdestruct" { "suicide".into() } else { trace_type };
    Ok(row)
}

/// A `callTracer` frame and its children, depth first.
fn frame_rows(
    block: &BlockContext,
    transaction_index: u64,
    transaction_hash: Option<&str>,
    frame: &Value,
    path: &mut Vec<u64>,
    rows: &mut Vec<TraceRow>,
) -> Result<(), String> {
    let at = At { number: block.number, what: "call frame" };
    let kind = at.required_text(frame, "type")?.to_ascii_lowercase();
    let (trace_type, call_type) = match kind.as_str() {
        "selfdestruct" => ("suicide".to_string(), None),
        "call" | "callcode" | "delegatecall" | "staticcall" => ("call".to_string(), Some(kind.clone())),
        _ => (kind.clone(), None),
    };
    let calls = frame.get("calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    rows.push(TraceRow {
        transaction_hash: transaction_hash.map(str::to_string),
        transaction_index: Some(transaction_index),
        from_address: at.address(frame, "from")?,
        to_address: at.address(frame, "to")?,
        value: at.decimal(frame, "value")?,
        input: at.text(frame, "input")?,
        output: at.text(frame, "output")?,
        trace_type,
        call_type,
        gas: at.quantity(frame, "gas")?,
        gas_used: at.quantity(frame, "gasUsed")?,
        subtraces: calls.len() as u64,
        trace_address: joined(path),
        error: at.text(frame, "error")?.filter(|e| !e.is_empty()),
        ..empty_row(block)
    });
    for (index, call) in calls.iter().enumerate() {
        path.push(index as u64);
        frame_rows(block, transaction_index, transaction_hash, call, path, rows)?;
        path.pop();
    }
    Ok(())
}

/// A trace fails when it errs or a call enclosing it failed (in one transaction).
fn set_statuses(rows: &mut [TraceRow]) {
    // By (transaction, path): whether that call failed.
    let mut failed: HashMap<(String, String), bool> = HashMap::new();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    // Parents before children: fewer path points first.
    order.sort_by_key(|&i| rows[i].trace_address.as_deref().map_or(0, |p| p.split(',').count()));
    for i in order {
        let row = &rows[i];
        let mut fails = row.error.is_some();
        if let Some(hash) = &row.transaction_hash {
            if let Some(path) = &row.trace_address {
                let parent = path.rsplit_once(',').map_or("", |(parent, _)| parent).to_string();
                fails |= failed.get(&(hash.clone(), parent)).copied().unwrap_or(false);
            }
            failed.insert((hash.clone(), row.trace_address.clone().unwrap_or_default()), fails);
        }
        rows[i].status = u64::from(!fails);
    }
}

/// Transaction traces by their path; block-level ones numbered per type in
/// ethereum-etl's order (reward type, sender, recipient, value).
fn set_ids(rows: &mut [TraceRow]) {
    let mut block_level: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, row) in rows.iter_mut().enumerate() {
        match &row.transaction_hash {
            Some(hash) => {
                let path = row.trace_address.as_deref().unwrap_or("").replace(',', "_");
                row.trace_id = format!("{}_{hash}_{path}", row.trace_type);
            }
            None => block_level.entry(row.trace_type.clone()).or_default().push(i),
        }
    }
    for (trace_type, mut indexes) in block_level {
        let value = |row: &TraceRow| row.value.as_deref().and_then(|v| U256::from_str_radix(v, 10).ok());
        indexes.sort_by(|&a, &b| {
            let (a, b) = (&rows[a], &rows[b]);
            (&a.reward_type, &a.from_address, &a.to_address, value(a)).cmp(&(
                &b.reward_type,
                &b.from_address,
                &b.to_address,
                value(b),
            ))
        });
        for (n, i) in indexes.into_iter().enumerate() {
            rows[i].trace_id = format!("{trace_type}_{}_{n}", rows[i].block_number);
        }
    }
}
