//! From a `getBlock` response (encodings `json`, `base64`, `base58`) to the
//! block agave stores. `jsonParsed` is refused: parsed instructions have lost
//! their raw bytes and cannot be stored losslessly. Transactions answered with
//! `"meta": null` (mainnet recorded no status metadata in its first epochs)
//! become agave's `MissingMetadata` case, which its Bigtable layout stores.

use std::str::FromStr;

use base64::Engine as _;
use serde_json::Value;
use solana_clock::Slot;
use solana_hash::Hash;
use solana_message::compiled_instruction::CompiledInstruction;
use solana_message::v0::{self, LoadedAddresses, MessageAddressTableLookup};
use solana_message::{Message as LegacyMessage, MessageHeader, VersionedMessage};
use solana_pubkey::Pubkey;
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction_context::transaction::TransactionReturnData;
use solana_transaction_status::option_serializer::OptionSerializer;
use solana_transaction_status::{ConfirmedBlock, TransactionWithStatusMeta};
use solana_transaction_status::{
    EncodedTransaction, InnerInstruction, InnerInstructions, TransactionStatusMeta, TransactionTokenBalance,
    UiConfirmedBlock, UiInstruction, UiLoadedAddresses, UiMessage, UiRawMessage, UiTransactionReturnData,
    UiTransactionStatusMeta, UiTransactionTokenBalance, VersionedTransactionWithStatusMeta,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("slot {slot}: not a getBlock result: {reason}")]
    Shape { slot: Slot, reason: String },
    #[error(
        "slot {slot}: this getBlock response is in the jsonParsed encoding, whose parsed instructions cannot be stored losslessly; fetch it with encoding json, base64 or base58"
    )]
    JsonParsed { slot: Slot },
    #[error("slot {slot}: the response has no transactions (fetched with transactionDetails other than full)")]
    NoTransactions { slot: Slot },
    #[error("slot {slot}: transaction {index}: {reason}")]
    Transaction { slot: Slot, index: usize, reason: String },
}

/// Decodes a `getBlock` result (the `result` object, not the JSON-RPC envelope).
pub fn block_from_rpc(slot: Slot, result: &Value) -> Result<ConfirmedBlock, DecodeError> {
    if is_json_parsed(result) {
        return Err(DecodeError::JsonParsed { slot });
    }
    let block: UiConfirmedBlock =
        serde_json::from_value(result.clone()).map_err(|e| DecodeError::Shape { slot, reason: e.to_string() })?;
    block_from_ui(slot, block)
}

/// Decodes a `getBlock` result as the RPC client types hold it.
pub fn block_from_ui(slot: Slot, block: UiConfirmedBlock) -> Result<ConfirmedBlock, DecodeError> {
    for (what, hash) in [("blockhash", &block.blockhash), ("previousBlockhash", &block.previous_blockhash)] {
        Hash::from_str(hash).map_err(|e| DecodeError::Shape { slot, reason: format!("{what} {hash:?}: {e}") })?;
    }
    let transactions = block.transactions.ok_or(DecodeError::NoTransactions { slot })?;
    let transactions = transactions
        .into_iter()
        .enumerate()
        .map(|(index, tx)| {
            let fail = |reason: String| DecodeError::Transaction { slot, index, reason };
            let transaction = transaction_from_ui(&tx.transaction).map_err(fail)?;
            match tx.meta {
                Some(meta) => {
                    let meta = meta_from_ui(meta).map_err(fail)?;
                    Ok(TransactionWithStatusMeta::Complete(VersionedTransactionWithStatusMeta { transaction, meta }))
                }
                // Agave keeps no versioned transaction without metadata (none
                // existed before metadata was recorded), so neither do we.
                None => {
                    transaction.into_legacy_transaction().map(TransactionWithStatusMeta::MissingMetadata).ok_or_else(
                        || fail("a versioned (v0) transaction without status metadata cannot be stored".into()),
                    )
                }
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(ConfirmedBlock {
        previous_blockhash: block.previous_blockhash,
        blockhash: block.blockhash,
        parent_slot: block.parent_slot,
        transactions,
        rewards: block.rewards.unwrap_or_default(),
        num_partitions: block.num_reward_partitions,
        block_time: block.block_time,
        block_height: block.block_height,
    })
}

/// `jsonParsed` messages list account keys as objects, not strings.
fn is_json_parsed(result: &Value) -> bool {
    let first_key = result.pointer("/transactions/0/transaction/message/accountKeys/0");
    first_key.is_some_and(Value::is_object)
}

fn transaction_from_ui(encoded: &EncodedTransaction) -> Result<VersionedTransaction, String> {
    let transaction = match encoded {
        EncodedTransaction::Json(ui) => match &ui.message {
            UiMessage::Raw(raw) => VersionedTransaction {
                signatures: ui.signatures.iter().map(|s| parse(s, "signature")).collect::<Result<_, _>>()?,
                message: message_from_ui(raw)?,
            },
            UiMessage::Parsed(_) => return Err("message is jsonParsed".into()),
        },
        EncodedTransaction::Accounts(_) => return Err("transactionDetails accounts carries no transaction".into()),
        binary => binary.decode().ok_or("binary transaction does not decode to a valid transaction")?,
    };
    if transaction.signatures.is_empty() {
        return Err("no signatures".into());
    }
    transaction.sanitize().map_err(|e| format!("invalid transaction: {e}"))?;
    Ok(transaction)
}

fn message_from_ui(raw: &UiRawMessage) -> Result<VersionedMessage, String> {
    let account_keys: Vec<Pubkey> =
        raw.account_keys.iter().map(|k| parse(k, "account key")).collect::<Result<_, _>>()?;
    let recent_blockhash: Hash = parse(&raw.recent_blockhash, "recent blockhash")?;
    let instructions = raw
        .instructions
        .iter()
        .map(|ix| {
            Ok(CompiledInstruction {
                program_id_index: ix.program_id_index,
                accounts: ix.accounts.clone(),
                data: base58(&ix.data)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let header = MessageHeader {
        num_required_signatures: raw.header.num_required_signatures,
        num_readonly_signed_accounts: raw.header.num_readonly_signed_accounts,
        num_readonly_unsigned_accounts: raw.header.num_readonly_unsigned_accounts,
    };
    if raw.transaction_config.is_some() {
        return Err("v1 (transaction config) messages are not supported by this importer yet".into());
    }
    Ok(match &raw.address_table_lookups {
        // RPC prints `addressTableLookups` for versioned messages only.
        Some(lookups) => VersionedMessage::V0(v0::Message {
            header,
            account_keys,
            recent_blockhash,
            instructions,
            address_table_lookups: lookups
                .iter()
                .map(|l| {
                    Ok(MessageAddressTableLookup {
                        account_key: parse(&l.account_key, "lookup table")?,
                        writable_indexes: l.writable_indexes.clone(),
                        readonly_indexes: l.readonly_indexes.clone(),
                    })
                })
                .collect::<Result<_, String>>()?,
        }),
        None => VersionedMessage::Legacy(LegacyMessage { header, account_keys, recent_blockhash, instructions }),
    })
}

fn meta_from_ui(meta: UiTransactionStatusMeta) -> Result<TransactionStatusMeta, String> {
    let inner_instructions = Option::from(meta.inner_instructions)
        .map(|list: Vec<_>| list.into_iter().map(inner_from_ui).collect::<Result<Vec<_>, _>>())
        .transpose()?;
    let token_balances = |balances: OptionSerializer<Vec<UiTransactionTokenBalance>>| {
        Option::from(balances).map(|list: Vec<_>| list.into_iter().map(token_balance_from_ui).collect::<Vec<_>>())
    };
    let loaded_addresses = match Option::<UiLoadedAddresses>::from(meta.loaded_addresses) {
        Some(loaded) => LoadedAddresses {
            writable: loaded.writable.iter().map(|k| parse::<Pubkey>(k, "loaded address")).collect::<Result<_, _>>()?,
            readonly: loaded.readonly.iter().map(|k| parse::<Pubkey>(k, "loaded address")).collect::<Result<_, _>>()?,
        },
        None => LoadedAddresses::default(),
    };
    let return_data = Option::from(meta.return_data)
        .map(|data: UiTransactionReturnData| {
            Ok::<_, String>(TransactionReturnData {
                program_id: parse(&data.program_id, "return data program id")?,
                data: base64::engine::general_purpose::STANDARD
                    .decode(&data.data.0)
                    .map_err(|e| format!("return data: {e}"))?,
            })
        })
        .transpose()?;
    Ok(TransactionStatusMeta {
        // `err` is the field nodes document; `status` is its deprecated twin.
        status: match meta.err {
            Some(err) => Err(err.into()),
            None => meta.status.map_err(Into::into),
        },
        fee: meta.fee,
        pre_balances: meta.pre_balances,
        post_balances: meta.post_balances,
        inner_instructions,
        log_messages: meta.log_messages.into(),
        pre_token_balances: token_balances(meta.pre_token_balances),
        post_token_balances: token_balances(meta.post_token_balances),
        rewards: meta.rewards.into(),
        loaded_addresses,
        return_data,
        compute_units_consumed: meta.compute_units_consumed.into(),
        cost_units: meta.cost_units.into(),
    })
}

fn inner_from_ui(inner: solana_transaction_status::UiInnerInstructions) -> Result<InnerInstructions, String> {
    let instructions = inner
        .instructions
        .into_iter()
        .map(|ix| match ix {
            UiInstruction::Compiled(c) => Ok(InnerInstruction {
                instruction: CompiledInstruction {
                    program_id_index: c.program_id_index,
                    accounts: c.accounts,
                    data: base58(&c.data)?,
                },
                stack_height: c.stack_height,
            }),
            UiInstruction::Parsed(_) => Err("inner instruction is jsonParsed".to_string()),
        })
        .collect::<Result<_, _>>()?;
    Ok(InnerInstructions { index: inner.index, instructions })
}

fn token_balance_from_ui(balance: UiTransactionTokenBalance) -> TransactionTokenBalance {
    TransactionTokenBalance {
        account_index: balance.account_index,
        mint: balance.mint,
        ui_token_amount: balance.ui_token_amount,
        owner: Option::from(balance.owner).unwrap_or_default(),
        program_id: Option::from(balance.program_id).unwrap_or_default(),
    }
}

fn parse<T: FromStr>(text: &str, what: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    T::from_str(text).map_err(|e| format!("{what} {text:?}: {e}"))
}

fn base58(text: &str) -> Result<Vec<u8>, String> {
    bs58::decode(text).into_vec().map_err(|e| format!("instruction data {text:?} is not base58: {e}"))
}
