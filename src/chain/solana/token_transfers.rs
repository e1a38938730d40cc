//! Token transfers from instruction rows, as blockchain-etl extracts them:
//! spl-token `transfer`/`transferChecked`(`WithFee`), `burn`/`burnChecked`,
//! `mintTo`/`mintToChecked`, and system `transfer`, at any depth, in the
//! order of their instructions. The checked variants' amounts are read from
//! `tokenAmount` (where agave's parser puts them) and system transfers carry
//! their lamports: blockchain-etl's exporters each miss some of these.

use serde_json::Value;

use super::rows::{InstructionRow, TokenTransferRow};

/// The transfers among one list of instructions (a transaction's top level,
/// or one inner group): the list is also where a memo just before a
/// transfer is found.
pub fn token_transfers(instructions: &[InstructionRow]) -> Vec<TokenTransferRow> {
    let mut transfers = Vec::new();
    for (position, instruction) in instructions.iter().enumerate() {
        let Some(mut transfer) = transfer(instruction) else { continue };
        let previous = position.checked_sub(1).map(|p| &instructions[p]);
        transfer.memo = previous.filter(|p| p.program.as_deref() == Some("spl-memo")).and_then(|p| p.parsed.clone());
        transfers.push(transfer);
    }
    transfers
}

fn transfer(instruction: &InstructionRow) -> Option<TokenTransferRow> {
    let program = instruction.program.as_deref()?;
    let kind = instruction.instruction_type.as_deref()?;
    let text = |key: &str| instruction.param(key).and_then(|v| v.as_str().map(str::to_string));
    let token_amount = instruction.param("tokenAmount");
    let amount = || match &token_amount {
        Some(amount) => amount.get("amount").and_then(number),
        None => instruction.param("amount").as_ref().and_then(number),
    };
    let decimals = || match &token_amount {
        Some(amount) => amount.get("decimals").and_then(Value::as_u64),
        None => instruction.param("decimals").and_then(|v| v.as_u64()),
    };
    let fee = instruction.param("feeAmount");
    let mut row = TokenTransferRow {
        block_slot: instruction.block_slot,
        block_timestamp: instruction.block_timestamp,
        block_hash: instruction.block_hash.clone(),
        tx_signature: instruction.tx_signature.clone(),
        fee: fee.as_ref().and_then(|f| f.get("amount")).and_then(number),
        fee_decimals: fee.as_ref().and_then(|f| f.get("decimals")).and_then(Value::as_u64).map(|d| d as u8),
        ..TokenTransferRow::default()
    };
    match (program, kind) {
        ("spl-token" | "spl-token-2022", "transfer" | "transferChecked" | "transferCheckedWithFee") => {
            row.transfer_type =
                if kind == "transferCheckedWithFee" { "spl-transfer-with-fee" } else { "spl-transfer" }.into();
            row.source = text("source");
            row.destination = text("destination");
            row.authority = text("authority");
            row.value = amount();
            row.decimals = decimals().map(|d| d as u8);
            row.mint = text("mint");
        }
        ("spl-token" | "spl-token-2022", "burn" | "burnChecked") => {
            row.transfer_type = "burn".into();
            row.value = amount();
            row.decimals = decimals().map(|d| d as u8);
            row.mint = text("mint");
        }
        ("spl-token" | "spl-token-2022", "mintTo" | "mintToChecked") => {
            row.transfer_type = "mintTo".into();
            row.value = amount();
            row.decimals = decimals().map(|d| d as u8);
            row.mint = text("mint");
            row.mint_authority = text("mintAuthority");
        }
        ("system", "transfer") => {
            row.transfer_type = "transfer".into();
            row.source = text("source");
            row.destination = text("destination");
            row.value = instruction.param("lamports").and_then(|v| v.as_u64());
        }
        _ => return None,
    }
    Some(row)
}

/// An amount as agave's parser writes it: a decimal string (token amounts) or a number.
fn number(value: &Value) -> Option<u64> {
    match value {
        Value::String(text) => text.parse().ok(),
        other => other.as_u64(),
    }
}
