//! Solana transactions as training documents (`export/`): a block's
//! normalized rows (`rows.rs`) rendered through a built-in template, each
//! with its metadata. Program names come from the shipped registry
//! (`programs.rs`); everything else is what the rows say.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use super::layout::LedgerStore;
use super::programs::{REGISTRY_VERSION, VOTE_PROGRAM, display_name};
use super::rows::{InstructionRow, Rows, TokenTransferRow, TransactionRow};
use crate::export::DocumentSource;
use crate::export::document::{Chat, Document, Forms, Renderable, Rendering, Selection, render};
use crate::store::BlockStore;

/// Documents from the canonical store's blocks.
pub struct StoreDocuments(pub Arc<LedgerStore>);

#[async_trait]
impl DocumentSource for StoreDocuments {
    async fn blocks(&self, start: u64, end: u64) -> Result<Vec<u64>, String> {
        let mut numbers = Vec::new();
        let mut next = start;
        while next <= end {
            let page = self.0.blocks(next, 1000).await.map_err(|e| e.to_string())?;
            let Some(&last) = page.last() else { break };
            numbers.extend(page.into_iter().filter(|n| *n <= end));
            next = last + 1;
        }
        Ok(numbers)
    }

    async fn first_block_from(&self, number: u64) -> Result<Option<(u64, Option<i64>)>, String> {
        let Some(&block) = self.0.blocks(number, 1).await.map_err(|e| e.to_string())?.first() else { return Ok(None) };
        let time = self.0.block_time(block).await.map_err(|e| format!("slot {block}: {e}"))?;
        Ok(Some((block, time.flatten())))
    }

    async fn documents(
        &self,
        number: u64,
        selection: &Selection,
        template: &Rendering,
    ) -> Result<Vec<Document>, String> {
        let block = self
            .0
            .block(number)
            .await
            .map_err(|e| format!("slot {number}: {e}"))?
            .ok_or_else(|| format!("slot {number}: listed but not stored"))?;
        let rows = super::rows::block_rows(number, &block).map_err(|e| format!("slot {number}: {e}"))?;
        documents(&rows, selection, template).map_err(|e| format!("slot {number}: {e}"))
    }

    fn registry_version(&self) -> &'static str {
        REGISTRY_VERSION
    }
}

/// The chat forms' system turn and question (part of the templates' version).
const CHAT: Chat = Chat {
    system: "You explain Solana transactions from their data.",
    question: "What does this Solana transaction do?",
};

/// The selected transactions of one block's rows, as documents, in
/// transaction order.
pub fn documents(rows: &Rows, selection: &Selection, template: &Rendering) -> Result<Vec<Document>, String> {
    let mut transactions: Vec<&TransactionRow> = rows.transactions.iter().collect();
    transactions.sort_by_key(|t| t.index);
    transactions
        .into_iter()
        .filter_map(|tx| {
            let instructions: Vec<&InstructionRow> =
                rows.instructions.iter().filter(|i| i.tx_signature == tx.signature).collect();
            let transfers: Vec<&TokenTransferRow> =
                rows.token_transfers.iter().filter(|t| t.tx_signature == tx.signature).collect();
            let parts = Transaction { tx, instructions, transfers };
            parts
                .selected(selection)
                .then(|| render(&parts, template, &CHAT))
                .transpose()
                .map(Option::flatten)
                .transpose()
        })
        .collect()
}

/// A transaction's rows across the tables.
struct Transaction<'a> {
    tx: &'a TransactionRow,
    instructions: Vec<&'a InstructionRow>,
    transfers: Vec<&'a TokenTransferRow>,
}

impl Transaction<'_> {
    fn program_ids(&self) -> BTreeSet<&str> {
        self.instructions.iter().map(|i| i.program_id.as_str()).collect()
    }

    fn succeeded(&self) -> bool {
        self.tx.status.as_deref() != Some("Failure")
    }

    fn selected(&self, selection: &Selection) -> bool {
        let programs = self.program_ids();
        let vote = !programs.is_empty() && programs.iter().all(|p| *p == VOTE_PROGRAM);
        (selection.include_votes || !vote)
            && (!selection.success_only || self.succeeded())
            && (selection.programs.is_empty() || selection.programs.iter().any(|p| programs.contains(p.as_str())))
            && (selection.instruction_types.is_empty()
                || self
                    .instructions
                    .iter()
                    .any(|i| i.instruction_type.as_ref().is_some_and(|t| selection.instruction_types.contains(t))))
    }

    fn signers(&self) -> Vec<&str> {
        self.tx.accounts.iter().filter(|a| a.signer).map(|a| a.pubkey.as_str()).collect()
    }
}

impl Renderable for Transaction<'_> {
    type Data<'b>
        = StructuredTransaction<'b>
    where
        Self: 'b;

    fn id(&self) -> &str {
        &self.tx.signature
    }

    fn data(&self) -> StructuredTransaction<'_> {
        let tx = self.tx;
        StructuredTransaction {
            signature: &tx.signature,
            slot: tx.block_slot,
            block_time: tx.block_timestamp.map(|m| m / 1_000_000),
            status: if self.succeeded() { "success" } else { "failure" },
            err: tx.err.as_deref(),
            fee: tx.fee,
            signers: self.signers(),
            instructions: self
                .instructions
                .iter()
                .map(|i| StructuredInstruction {
                    index: i.index,
                    parent_index: i.parent_index,
                    program: display_name(&i.program_id),
                    kind: i.instruction_type.as_deref(),
                    params: i.params.iter().map(|p| (p.key.as_str(), p.value.as_str())).collect(),
                })
                .collect(),
            token_transfers: self
                .transfers
                .iter()
                .map(|t| StructuredTransfer {
                    kind: &t.transfer_type,
                    mint: t.mint.as_deref(),
                    amount: t.value.map(|v| amount_text(v, t.decimals)),
                    source: t.source.as_deref(),
                    destination: t.destination.as_deref(),
                })
                .collect(),
            balance_changes: tx
                .balance_changes
                .iter()
                .filter(|b| b.before != b.after)
                .map(|b| StructuredBalance { account: &b.account, before: b.before, after: b.after })
                .collect(),
        }
    }

    /// A readable paragraph.
    fn summary(&self) -> String {
        let tx = self.tx;
        let mut text = format!("Solana transaction {} in slot {}", tx.signature, tx.block_slot);
        if let Some(time) = tx.block_timestamp.and_then(|m| k8s_openapi::jiff::Timestamp::from_microsecond(m).ok()) {
            text += &format!(", {time}");
        }
        text += ".\n";
        let signers = self.signers();
        if let Some(payer) = signers.first() {
            text += &format!("Signed by {payer}");
            if signers.len() > 1 {
                text += &format!(" and {} more", signers.len() - 1);
            }
            text += ". ";
        }
        if let Some(fee) = tx.fee {
            text += &format!("Fee: {fee} lamports. ");
        }
        match (self.succeeded(), &tx.err) {
            (true, _) => text += "It succeeded.\n",
            (false, Some(err)) => text += &format!("It failed: {err}.\n"),
            (false, None) => text += "It failed.\n",
        }
        let programs: Vec<String> = self.program_ids().into_iter().map(display_name).collect();
        if !programs.is_empty() {
            text += &format!("Programs: {}.\n", programs.join(", "));
        }
        let top: Vec<&&InstructionRow> = self.instructions.iter().filter(|i| i.parent_index.is_none()).collect();
        for (n, instruction) in top.iter().enumerate() {
            let kind = instruction.instruction_type.as_deref().map(|t| format!(" {t}")).unwrap_or_default();
            text += &format!("{}. {}{kind}\n", n + 1, display_name(&instruction.program_id));
        }
        for transfer in &self.transfers {
            text += &format!("Transfer: {}\n", transfer_text(transfer));
        }
        for memo in self.instructions.iter().filter_map(|i| i.parsed.as_deref()) {
            text += &format!("Memo: {memo}\n");
        }
        text.trim_end().to_string()
    }

    /// The program logs, or none for a transaction without any.
    fn logs(&self) -> Option<String> {
        if self.tx.log_messages.is_empty() {
            return None;
        }
        let status = if self.succeeded() { "succeeded" } else { "failed" };
        let mut text =
            format!("Logs of Solana transaction {} (slot {}, {status})", self.tx.signature, self.tx.block_slot);
        let programs: Vec<String> = self.program_ids().into_iter().map(display_name).collect();
        if !programs.is_empty() {
            text += &format!(", programs: {}", programs.join(", "));
        }
        text += ":\n";
        text += &self.tx.log_messages.join("\n");
        Some(text)
    }

    fn document(&self, text: String, template: String, forms: Forms) -> Document {
        let mut programs: Vec<String> = self.program_ids().into_iter().map(display_name).collect();
        programs.sort();
        let mints: BTreeSet<String> = self
            .transfers
            .iter()
            .filter_map(|t| t.mint.clone())
            .chain(self.tx.pre_token_balances.iter().chain(&self.tx.post_token_balances).map(|b| b.mint.clone()))
            .collect();
        Document {
            id: self.tx.signature.clone(),
            text,
            slot: self.tx.block_slot,
            block_time: self.tx.block_timestamp.map(|micros| micros / 1_000_000),
            status: if self.succeeded() { "success" } else { "failure" }.into(),
            fee: self.tx.fee,
            programs,
            mints: mints.into_iter().collect(),
            template,
            messages: forms.messages,
            prompt: forms.prompt,
            completion: forms.completion,
        }
    }
}

fn transfer_text(transfer: &TokenTransferRow) -> String {
    let from = transfer.source.as_deref().unwrap_or("?");
    let to = transfer.destination.as_deref().unwrap_or("?");
    let what = match (transfer.transfer_type.as_str(), transfer.value, transfer.decimals, &transfer.mint) {
        ("transfer", Some(lamports), _, _) => format!("{} SOL", amount_text(lamports, Some(9))),
        (_, Some(raw), Some(decimals), Some(mint)) => format!("{} of token {mint}", amount_text(raw, Some(decimals))),
        (_, Some(raw), _, Some(mint)) => format!("{raw} base units of token {mint}"),
        (_, Some(raw), _, None) => format!("{raw} base units of a token"),
        (_, None, _, _) => "an amount".into(),
    };
    format!("{} of {what} from {from} to {to}", transfer.transfer_type)
}

/// A raw amount in whole units: `1500000` with 6 decimals is `1.5`; without
/// decimals, lamports as SOL (9).
fn amount_text(raw: u64, decimals: Option<u8>) -> String {
    let decimals = u32::from(decimals.unwrap_or(9));
    let scale = 10u128.pow(decimals);
    let (whole, fraction) = (u128::from(raw) / scale, u128::from(raw) % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0width$}", width = decimals as usize);
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[derive(Serialize)]
struct StructuredTransaction<'a> {
    signature: &'a str,
    slot: u64,
    block_time: Option<i64>,
    status: &'a str,
    err: Option<&'a str>,
    fee: Option<u64>,
    signers: Vec<&'a str>,
    instructions: Vec<StructuredInstruction<'a>>,
    token_transfers: Vec<StructuredTransfer<'a>>,
    balance_changes: Vec<StructuredBalance<'a>>,
}

#[derive(Serialize)]
struct StructuredInstruction<'a> {
    index: u32,
    parent_index: Option<u32>,
    program: String,
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    params: std::collections::BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct StructuredTransfer<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    mint: Option<&'a str>,
    amount: Option<String>,
    source: Option<&'a str>,
    destination: Option<&'a str>,
}

#[derive(Serialize)]
struct StructuredBalance<'a> {
    account: &'a str,
    before: u64,
    after: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_shown_in_whole_units() {
        assert_eq!(amount_text(1_500_000, Some(6)), "1.5");
        assert_eq!(amount_text(2_000_000_000, None), "2");
        assert_eq!(amount_text(1, Some(9)), "0.000000001");
        assert_eq!(amount_text(7, Some(0)), "7");
    }
}
