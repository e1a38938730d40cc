//! EVM transactions as training documents (`export/`): a block's lake rows
//! (`rows.rs`: ethereum-etl's transactions, receipts, logs and token
//! transfers) rendered through a built-in template, each with its metadata.
//! Where Solana names programs, an EVM document names the contracts a
//! transaction called or that emitted its logs (addresses: EVM has no
//! registry of names); its "instruction type" is the 4-byte function
//! selector of its input; amounts are in wei and ether.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use super::layout::EvmStore;
use super::rows::{self, LogRow, ReceiptRow, TokenTransferRow, TransactionRow};
use crate::export::DocumentSource;
use crate::export::document::{Chat, Document, Forms, Renderable, Rendering, Selection, render};

/// Documents from the canonical store's blocks.
pub struct EvmDocuments(pub Arc<EvmStore>);

/// No program-name registry: contracts are named by address.
const REGISTRY_VERSION: &str = "evm-addresses";

#[async_trait]
impl DocumentSource for EvmDocuments {
    async fn blocks(&self, start: u64, end: u64) -> Result<Vec<u64>, String> {
        let mut numbers = Vec::new();
        let mut next = start;
        while next <= end {
            let page = self.0.numbers(next, end, 1000).await.map_err(|e| e.to_string())?;
            let Some(&last) = page.last() else { break };
            numbers.extend(page);
            next = last + 1;
        }
        Ok(numbers)
    }

    async fn first_block_from(&self, number: u64) -> Result<Option<(u64, Option<i64>)>, String> {
        let Some(&first) = self.0.numbers(number, u64::MAX, 1).await.map_err(|e| e.to_string())?.first() else {
            return Ok(None);
        };
        let block = self.0.block(first).await.map_err(|e| format!("block {first}: {e}"))?;
        let time = block.and_then(|b| super::rpc::quantity(b.get("timestamp"))).and_then(|t| i64::try_from(t).ok());
        Ok(Some((first, time)))
    }

    async fn documents(
        &self,
        number: u64,
        selection: &Selection,
        template: &Rendering,
    ) -> Result<Vec<Document>, String> {
        let missing = || format!("block {number}: listed but not stored");
        let block = self.0.block(number).await.map_err(|e| format!("block {number}: {e}"))?.ok_or_else(missing)?;
        let receipts =
            self.0.receipts(number).await.map_err(|e| format!("block {number}: {e}"))?.ok_or_else(missing)?;
        let block = super::EvmBlock::from_json(number, block, receipts).map_err(|e| e.to_string())?;
        let rows = rows::rows_of(&block).map_err(|e| format!("block {number}: {e}"))?;
        let mut documents = Vec::new();
        for tx in &rows.transactions {
            let parts = Transaction {
                tx,
                receipt: rows.receipts.iter().find(|r| r.transaction_hash == tx.hash),
                logs: rows.logs.iter().filter(|l| l.transaction_hash == tx.hash).collect(),
                transfers: rows.token_transfers.iter().filter(|t| t.transaction_hash == tx.hash).collect(),
            };
            if parts.selected(selection)
                && let Some(document) = render(&parts, template, &CHAT).map_err(|e| format!("block {number}: {e}"))?
            {
                documents.push(document);
            }
        }
        Ok(documents)
    }

    fn registry_version(&self) -> &'static str {
        REGISTRY_VERSION
    }
}

/// The chat forms' system turn and question (part of the templates' version).
const CHAT: Chat =
    Chat { system: "You explain EVM transactions from their data.", question: "What does this EVM transaction do?" };

/// A transaction's rows across the tables.
struct Transaction<'a> {
    tx: &'a TransactionRow,
    receipt: Option<&'a ReceiptRow>,
    logs: Vec<&'a LogRow>,
    transfers: Vec<&'a TokenTransferRow>,
}

impl Transaction<'_> {
    /// The contracts it called (a recipient given input) and that emitted its logs.
    fn contracts(&self) -> BTreeSet<String> {
        let called = self.tx.to_address.clone().filter(|_| self.tx.input.len() > 2);
        called.into_iter().chain(self.logs.iter().map(|l| l.address.to_ascii_lowercase())).collect()
    }

    /// The 4-byte selector of the function called, `0x` and 8 hex digits.
    fn selector(&self) -> Option<&str> {
        (self.tx.input.len() >= 10).then(|| &self.tx.input[..10])
    }

    /// Before Byzantium a receipt has no status: such a transaction counts as succeeded.
    fn succeeded(&self) -> bool {
        self.receipt.and_then(|r| r.status) != Some(0)
    }

    /// Wei paid: gas used times the effective gas price.
    fn fee_wei(&self) -> Option<u128> {
        let receipt = self.receipt?;
        let price = receipt.effective_gas_price.as_deref().or(self.tx.gas_price.as_deref())?;
        u128::from(receipt.gas_used).checked_mul(price.parse().ok()?)
    }

    fn selected(&self, selection: &Selection) -> bool {
        let contracts = self.contracts();
        (!selection.success_only || self.succeeded())
            && (selection.programs.is_empty()
                || selection.programs.iter().any(|p| contracts.contains(&p.to_ascii_lowercase())))
            && (selection.instruction_types.is_empty()
                || self
                    .selector()
                    .is_some_and(|s| selection.instruction_types.iter().any(|t| t.eq_ignore_ascii_case(s))))
    }
}

impl Renderable for Transaction<'_> {
    type Data<'b>
        = StructuredTransaction<'b>
    where
        Self: 'b;

    fn id(&self) -> &str {
        &self.tx.hash
    }

    fn data(&self) -> StructuredTransaction<'_> {
        let tx = self.tx;
        StructuredTransaction {
            hash: &tx.hash,
            block_number: tx.block_number,
            block_time: tx.block_timestamp / 1_000_000,
            status: if self.succeeded() { "success" } else { "failure" },
            from: &tx.from_address,
            to: tx.to_address.as_deref(),
            contract_created: self.receipt.and_then(|r| r.contract_address.as_deref()),
            value: tx.value.as_deref(),
            gas_used: self.receipt.map(|r| r.gas_used),
            fee: self.fee_wei().map(|wei| wei.to_string()),
            function: self.selector(),
            logs: self
                .logs
                .iter()
                .map(|l| StructuredLog { address: &l.address, topics: &l.topics, data: &l.data })
                .collect(),
            token_transfers: self
                .transfers
                .iter()
                .map(|t| StructuredTransfer {
                    token: &t.token_address,
                    from: &t.from_address,
                    to: &t.to_address,
                    value: &t.value,
                })
                .collect(),
        }
    }

    /// A readable paragraph.
    fn summary(&self) -> String {
        let tx = self.tx;
        let mut text = format!("EVM transaction {} in block {}", tx.hash, tx.block_number);
        if let Ok(time) = k8s_openapi::jiff::Timestamp::from_microsecond(tx.block_timestamp) {
            text += &format!(", {time}");
        }
        text += ".\n";
        match (&tx.to_address, self.receipt.and_then(|r| r.contract_address.as_ref())) {
            (Some(to), _) => text += &format!("From {} to {to}", tx.from_address),
            (None, Some(created)) => text += &format!("From {}, creating contract {created}", tx.from_address),
            (None, None) => text += &format!("From {}, creating a contract", tx.from_address),
        }
        if let Some(value) = tx.value.as_deref().filter(|v| *v != "0") {
            text += &format!(", sending {} ETH", ether(value));
        }
        text += ". ";
        if let Some(fee) = self.fee_wei() {
            text += &format!("Fee: {} ETH ({} gas). ", ether(&fee.to_string()), self.receipt.map_or(0, |r| r.gas_used));
        }
        text += if self.succeeded() { "It succeeded.\n" } else { "It failed (reverted).\n" };
        if let (Some(selector), Some(to)) = (self.selector(), &tx.to_address) {
            text += &format!("Called function {selector} of contract {to}.\n");
        }
        for transfer in &self.transfers {
            text += &format!(
                "Token transfer: {} base units of token {} from {} to {}\n",
                transfer.value, transfer.token_address, transfer.from_address, transfer.to_address
            );
        }
        let emitters: BTreeSet<String> = self.logs.iter().map(|l| l.address.to_ascii_lowercase()).collect();
        if !emitters.is_empty() {
            let names: Vec<String> = emitters.into_iter().collect();
            text += &format!("{} logs, from {}.\n", self.logs.len(), names.join(", "));
        }
        text.trim_end().to_string()
    }

    /// The logs, or none for a transaction without any.
    fn logs(&self) -> Option<String> {
        if self.logs.is_empty() {
            return None;
        }
        let status = if self.succeeded() { "succeeded" } else { "failed" };
        let mut text = format!("Logs of EVM transaction {} (block {}, {status}):", self.tx.hash, self.tx.block_number);
        for log in &self.logs {
            text += &format!("\n{} topics [{}] data {}", log.address, log.topics.join(", "), log.data);
        }
        Some(text)
    }

    fn document(&self, text: String, template: String, forms: Forms) -> Document {
        let tokens: BTreeSet<String> = self.transfers.iter().map(|t| t.token_address.clone()).collect();
        Document {
            id: self.tx.hash.clone(),
            text,
            slot: self.tx.block_number,
            block_time: Some(self.tx.block_timestamp / 1_000_000),
            status: if self.succeeded() { "success" } else { "failure" }.into(),
            fee: self.fee_wei().and_then(|wei| u64::try_from(wei).ok()),
            programs: self.contracts().into_iter().collect(),
            mints: tokens.into_iter().collect(),
            template,
            messages: forms.messages,
            prompt: forms.prompt,
            completion: forms.completion,
        }
    }
}

/// Wei (a decimal string) in ether: `1500000000000000000` is `1.5`.
fn ether(wei: &str) -> String {
    let digits = wei.trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let (whole, fraction) = if digits.len() > 18 { digits.split_at(digits.len() - 18) } else { ("0", digits) };
    let fraction = format!("{fraction:0>18}");
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() { whole.to_string() } else { format!("{whole}.{fraction}") }
}

/// What `transaction-json` writes and an inline template sees.
#[derive(Serialize)]
struct StructuredTransaction<'a> {
    hash: &'a str,
    block_number: u64,
    block_time: i64,
    status: &'a str,
    from: &'a str,
    to: Option<&'a str>,
    contract_created: Option<&'a str>,
    /// Wei, decimal.
    value: Option<&'a str>,
    gas_used: Option<u64>,
    /// Wei, decimal.
    fee: Option<String>,
    /// The 4-byte selector of the function called.
    function: Option<&'a str>,
    logs: Vec<StructuredLog<'a>>,
    token_transfers: Vec<StructuredTransfer<'a>>,
}

#[derive(Serialize)]
struct StructuredLog<'a> {
    address: &'a str,
    topics: &'a [String],
    data: &'a str,
}

#[derive(Serialize)]
struct StructuredTransfer<'a> {
    token: &'a str,
    from: &'a str,
    to: &'a str,
    /// Base units, decimal.
    value: &'a str,
}

#[cfg(test)]
mod tests {
    use super::ether;

    #[test]
    fn wei_is_shown_in_ether() {
        assert_eq!(ether("1500000000000000000"), "1.5");
        assert_eq!(ether("1"), "0.000000000000000001");
        assert_eq!(ether("0"), "0");
        assert_eq!(ether("25000000000000000000"), "25");
    }
}
