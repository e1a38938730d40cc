//! The Solana JSON-RPC history methods, answered from the block store the
//! way an agave node answers them from Bigtable. Parameters are parsed into
//! agave's own config types and errors are agave's own (`RpcCustomError`,
//! jsonrpc-core's), so clients see the same shapes, codes and messages.

use std::str::FromStr;
use std::sync::Arc;

use jsonrpc_core::{Error, ErrorCode, Params, Value};
use serde::Serialize;
use solana_clock::Slot;
use solana_pubkey::Pubkey;
use solana_rpc_client_api::config::{
    RpcBlockConfig, RpcBlocksConfigWrapper, RpcContextConfig, RpcEncodingConfigWrapper, RpcSignatureStatusConfig,
    RpcSignaturesForAddressConfig, RpcTransactionConfig,
};
use solana_rpc_client_api::custom_error::RpcCustomError;
use solana_rpc_client_api::response::{RpcApiVersion, RpcConfirmedTransactionStatusWithSignature, RpcResponseContext};
use solana_signature::Signature;
use solana_transaction_status::{
    BlockEncodingOptions, EncodeError, TransactionConfirmationStatus, TransactionDetails, TransactionStatus,
    UiTransactionEncoding,
};

use crate::store::{BlockStore, StoreError};

/// agave's limits (`solana-rpc-client-api` request constants).
pub const MAX_GET_CONFIRMED_BLOCKS_RANGE: u64 = 500_000;
pub const MAX_SIGNATURES_FOR_ADDRESS_LIMIT: usize = 1_000;
pub const MAX_SIGNATURE_STATUSES: usize = 256;

/// The history methods and their deprecated `getConfirmed*` aliases.
pub const METHODS: &[(&str, Method)] = &[
    ("getBlock", Method::GetBlock),
    ("getConfirmedBlock", Method::GetBlock),
    ("getTransaction", Method::GetTransaction),
    ("getConfirmedTransaction", Method::GetTransaction),
    ("getSignaturesForAddress", Method::GetSignaturesForAddress),
    ("getConfirmedSignaturesForAddress2", Method::GetSignaturesForAddress),
    ("getBlocks", Method::GetBlocks),
    ("getConfirmedBlocks", Method::GetBlocks),
    ("getBlocksWithLimit", Method::GetBlocksWithLimit),
    ("getConfirmedBlocksWithLimit", Method::GetBlocksWithLimit),
    ("getBlockTime", Method::GetBlockTime),
    ("getFirstAvailableBlock", Method::GetFirstAvailableBlock),
    ("getSignatureStatuses", Method::GetSignatureStatuses),
    ("getTransactionsForAddress", Method::GetTransactionsForAddress),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    GetBlock,
    GetTransaction,
    GetSignaturesForAddress,
    GetBlocks,
    GetBlocksWithLimit,
    GetBlockTime,
    GetFirstAvailableBlock,
    GetSignatureStatuses,
    GetTransactionsForAddress,
}

impl Method {
    /// The canonical name (aliases share one cache namespace and one metric).
    pub fn name(self) -> &'static str {
        METHODS.iter().find(|(_, m)| *m == self).map(|(n, _)| *n).unwrap_or("unknown")
    }
}

/// How long an answer may be cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Never changes (a stored finalized block or transaction).
    Immutable,
    /// Changes when new blocks land; dropped on ingest. `addresses`: the
    /// first page of these addresses' history; `tip`: a range reaching the tip.
    Mutable { addresses: Vec<Pubkey>, tip: bool },
    /// Not cached (e.g. a signature not found yet).
    Uncacheable,
}

/// An answer and how long it may be kept.
pub struct Answer {
    pub value: Value,
    pub freshness: Freshness,
}

pub struct Methods {
    store: Arc<dyn BlockStore>,
}

fn internal(e: StoreError) -> Error {
    tracing::error!(error = %e, "store read failed");
    Error { code: ErrorCode::InternalError, message: "Internal error".into(), data: None }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid_params(message.into())
}

/// Parses positional params into a tuple of `arity` elements; trailing
/// optional params may be left out, as jsonrpc-derive (agave's RPC) allows.
fn args<T: serde::de::DeserializeOwned>(params: Params, arity: usize) -> Result<T, Error> {
    let mut values = match params {
        Params::Array(values) => values,
        Params::None => Vec::new(),
        Params::Map(_) => return Err(invalid("Invalid params: expected an array of parameters")),
    };
    if values.len() > arity {
        return Err(invalid(format!("Invalid params: expected at most {arity} parameters, got {}", values.len())));
    }
    values.resize(arity, Value::Null);
    Params::Array(values).parse()
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|_| Error::internal_error())
}

fn parse_signature(text: &str) -> Result<Signature, Error> {
    Signature::from_str(text).map_err(|e| invalid(format!("Invalid param: {e:?}")))
}

fn parse_pubkey(text: &str) -> Result<Pubkey, Error> {
    Pubkey::from_str(text).map_err(|e| invalid(format!("Invalid param: {e:?}")))
}

fn encoding_error(e: EncodeError) -> Error {
    match e {
        EncodeError::UnsupportedTransactionVersion(version) => {
            RpcCustomError::UnsupportedTransactionVersion(version).into()
        }
    }
}

/// History is finalized; `processed` is refused as agave refuses it here.
fn check_commitment(commitment: Option<solana_commitment_config::CommitmentConfig>) -> Result<(), Error> {
    match commitment {
        Some(c) if !c.is_at_least_confirmed() => Err(invalid("Method does not support commitment below `confirmed`")),
        _ => Ok(()),
    }
}

impl Methods {
    pub fn new(store: Arc<dyn BlockStore>) -> Self {
        Self { store }
    }

    pub async fn call(&self, method: Method, params: Params) -> Result<Answer, Error> {
        match method {
            Method::GetBlock => self.get_block(params).await,
            Method::GetTransaction => self.get_transaction(params).await,
            Method::GetSignaturesForAddress => self.get_signatures_for_address(params).await,
            Method::GetBlocks => self.get_blocks(params).await,
            Method::GetBlocksWithLimit => self.get_blocks_with_limit(params).await,
            Method::GetBlockTime => self.get_block_time(params).await,
            Method::GetFirstAvailableBlock => self.get_first_available_block(params).await,
            Method::GetSignatureStatuses => self.get_signature_statuses(params).await,
            Method::GetTransactionsForAddress => self.get_transactions_for_address(params).await,
        }
    }

    /// The error a node gives for a slot the store has no block for.
    async fn missing_block(&self, slot: Slot) -> Error {
        let first = self.store.first_available_block().await.ok().flatten();
        let last = self.latest_slot().await;
        match (first, last) {
            (Some(first), _) if slot < first => {
                RpcCustomError::BlockCleanedUp { slot, first_available_block: first }.into()
            }
            (_, Some(last)) if slot > last => RpcCustomError::BlockNotAvailable { slot }.into(),
            (_, None) => RpcCustomError::BlockNotAvailable { slot }.into(),
            _ => RpcCustomError::LongTermStorageSlotSkipped { slot }.into(),
        }
    }

    /// The newest stored slot (the server's "root").
    pub async fn latest_slot(&self) -> Option<Slot> {
        self.store.last_block().await.ok().flatten()
    }

    async fn get_block(&self, params: Params) -> Result<Answer, Error> {
        let (slot, config): (Slot, Option<RpcEncodingConfigWrapper<RpcBlockConfig>>) = args(params, 2)?;
        let config = config.map(|c| c.convert_to_current()).unwrap_or_default();
        check_commitment(config.commitment)?;
        let block = self.store.block(slot).await.map_err(internal)?;
        let Some(block) = block else { return Err(self.missing_block(slot).await) };
        let options = BlockEncodingOptions {
            transaction_details: config.transaction_details.unwrap_or(TransactionDetails::Full),
            show_rewards: config.rewards.unwrap_or(true),
            max_supported_transaction_version: config.max_supported_transaction_version,
        };
        let encoded = block
            .encode_with_options(config.encoding.unwrap_or(UiTransactionEncoding::Json), options)
            .map_err(encoding_error)?;
        Ok(Answer { value: to_value(&encoded)?, freshness: Freshness::Immutable })
    }

    async fn get_transaction(&self, params: Params) -> Result<Answer, Error> {
        let (signature, config): (String, Option<RpcEncodingConfigWrapper<RpcTransactionConfig>>) = args(params, 2)?;
        let signature = parse_signature(&signature)?;
        let config = config.map(|c| c.convert_to_current()).unwrap_or_default();
        check_commitment(config.commitment)?;
        let Some(tx) = self.store.transaction(&signature).await.map_err(internal)? else {
            return Ok(Answer { value: Value::Null, freshness: Freshness::Uncacheable });
        };
        let encoded = tx
            .encode(config.encoding.unwrap_or(UiTransactionEncoding::Json), config.max_supported_transaction_version)
            .map_err(encoding_error)?;
        Ok(Answer { value: to_value(&encoded)?, freshness: Freshness::Immutable })
    }

    async fn get_signatures_for_address(&self, params: Params) -> Result<Answer, Error> {
        let (address, config): (String, Option<RpcSignaturesForAddressConfig>) = args(params, 2)?;
        let address = parse_pubkey(&address)?;
        let config = config.unwrap_or_default();
        check_commitment(config.commitment)?;
        let limit = config.limit.unwrap_or(MAX_SIGNATURES_FOR_ADDRESS_LIMIT);
        if limit == 0 || limit > MAX_SIGNATURES_FOR_ADDRESS_LIMIT {
            return Err(invalid(format!("Invalid limit; max {MAX_SIGNATURES_FOR_ADDRESS_LIMIT}")));
        }
        let before = config.before.as_deref().map(parse_signature).transpose()?;
        let until = config.until.as_deref().map(parse_signature).transpose()?;
        let found = match self.store.signatures_for_address(&address, before.as_ref(), until.as_ref(), limit).await {
            Ok(found) => found,
            Err(StoreError::SignatureNotFound(_)) => return Err(RpcCustomError::TransactionHistoryNotAvailable.into()),
            Err(e) => return Err(internal(e)),
        };
        let list: Vec<RpcConfirmedTransactionStatusWithSignature> = found
            .into_iter()
            .map(|s| {
                let mut item = RpcConfirmedTransactionStatusWithSignature::from(s);
                item.confirmation_status = Some(TransactionConfirmationStatus::Finalized);
                item
            })
            .collect();
        // Only the first page (no `before`) changes as blocks land.
        let freshness = if before.is_none() {
            Freshness::Mutable { addresses: vec![address], tip: false }
        } else {
            Freshness::Immutable
        };
        Ok(Answer { value: to_value(&list)?, freshness })
    }

    async fn get_blocks(&self, params: Params) -> Result<Answer, Error> {
        let (start, wrapper, config): (Slot, Option<RpcBlocksConfigWrapper>, Option<RpcContextConfig>) =
            args(params, 3)?;
        let (end, wrapped_config) = wrapper.map(|w| w.unzip()).unwrap_or_default();
        check_commitment(config.or(wrapped_config).and_then(|c| c.commitment))?;
        let latest = self.latest_slot().await.unwrap_or(0);
        // As agave: an open range ends MAX_GET_CONFIRMED_BLOCKS_RANGE after its start.
        let end = end.unwrap_or_else(|| start.saturating_add(MAX_GET_CONFIRMED_BLOCKS_RANGE)).min(latest);
        if end.saturating_sub(start) > MAX_GET_CONFIRMED_BLOCKS_RANGE {
            return Err(invalid(format!("Slot range too large; max {MAX_GET_CONFIRMED_BLOCKS_RANGE}")));
        }
        let slots: Vec<Slot> = if end < start {
            Vec::new()
        } else {
            let limit = usize::try_from(end - start + 1).unwrap_or(usize::MAX);
            self.store.blocks(start, limit).await.map_err(internal)?.into_iter().filter(|s| *s <= end).collect()
        };
        Ok(Answer {
            value: to_value(&slots)?,
            freshness: Freshness::Mutable { addresses: Vec::new(), tip: end >= latest },
        })
    }

    async fn get_blocks_with_limit(&self, params: Params) -> Result<Answer, Error> {
        let (start, limit, config): (Slot, usize, Option<RpcContextConfig>) = args(params, 3)?;
        check_commitment(config.and_then(|c| c.commitment))?;
        if limit as u64 > MAX_GET_CONFIRMED_BLOCKS_RANGE {
            return Err(invalid(format!("Limit too large; max {MAX_GET_CONFIRMED_BLOCKS_RANGE}")));
        }
        let slots = self.store.blocks(start, limit).await.map_err(internal)?;
        let tip = slots.len() < limit;
        Ok(Answer { value: to_value(&slots)?, freshness: Freshness::Mutable { addresses: Vec::new(), tip } })
    }

    async fn get_block_time(&self, params: Params) -> Result<Answer, Error> {
        let (slot,): (Slot,) = args(params, 1)?;
        match self.store.block_time(slot).await.map_err(internal)? {
            Some(time) => Ok(Answer { value: to_value(&time)?, freshness: Freshness::Immutable }),
            None => Err(self.missing_block(slot).await),
        }
    }

    async fn get_first_available_block(&self, params: Params) -> Result<Answer, Error> {
        params.expect_no_params()?;
        let first = self.store.first_available_block().await.map_err(internal)?.unwrap_or(0);
        Ok(Answer { value: to_value(&first)?, freshness: Freshness::Mutable { addresses: Vec::new(), tip: true } })
    }

    async fn get_transactions_for_address(&self, params: Params) -> Result<Answer, Error> {
        use super::address_history::{self, Details, Order};
        let (address, config): (String, Option<address_history::Config>) = args(params, 2)?;
        let address = parse_pubkey(&address)?;
        let config = config.unwrap_or_default();
        if config.commitment.as_deref() == Some("processed") {
            return Err(invalid("Method does not support commitment below `confirmed`"));
        }
        let (entries, token) = address_history::query(self.store.as_ref(), &address, &config).await?;
        let data = match config.transaction_details.unwrap_or(Details::Signatures) {
            Details::Signatures => {
                to_value(&entries.iter().cloned().map(address_history::signature_item).collect::<Vec<_>>())?
            }
            Details::Full => {
                let encoding = config.encoding.unwrap_or(UiTransactionEncoding::Json);
                let full = address_history::full_transactions(self.store.as_ref(), &entries).await?;
                let encoded = full
                    .into_iter()
                    .map(|tx| tx.encode(encoding, config.max_supported_transaction_version).map_err(encoding_error))
                    .collect::<Result<Vec<_>, _>>()?;
                to_value(&encoded)?
            }
        };
        // Older pages of a newest-first walk cannot change; anything else may as blocks land.
        let older_page = config.pagination_token.is_some() && config.sort_order.unwrap_or(Order::Desc) == Order::Desc;
        let freshness =
            if older_page { Freshness::Immutable } else { Freshness::Mutable { addresses: vec![address], tip: false } };
        Ok(Answer { value: serde_json::json!({ "data": data, "paginationToken": token }), freshness })
    }

    async fn get_signature_statuses(&self, params: Params) -> Result<Answer, Error> {
        let (signatures, config): (Vec<String>, Option<RpcSignatureStatusConfig>) = args(params, 2)?;
        if signatures.len() > MAX_SIGNATURE_STATUSES {
            return Err(invalid(format!("Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")));
        }
        let signatures: Vec<Signature> = signatures.iter().map(|s| parse_signature(s)).collect::<Result<_, _>>()?;
        // A node answers from long-term storage only when asked to.
        let search = config.is_some_and(|c| c.search_transaction_history);
        let statuses: Vec<Option<TransactionStatus>> = if search {
            self.store
                .signature_statuses(&signatures)
                .await
                .map_err(internal)?
                .into_iter()
                .map(|info| {
                    info.map(|info| TransactionStatus {
                        slot: info.slot,
                        confirmations: None,
                        status: info.err.clone().map_or(Ok(()), Err),
                        err: info.err,
                        confirmation_status: Some(TransactionConfirmationStatus::Finalized),
                    })
                })
                .collect()
        } else {
            vec![None; signatures.len()]
        };
        let all_found = statuses.iter().all(Option::is_some);
        let context = RpcResponseContext {
            slot: self.latest_slot().await.unwrap_or(0),
            api_version: Some(RpcApiVersion::default()),
        };
        let value = to_value(&solana_rpc_client_api::response::Response { context, value: statuses })?;
        // The context slot moves with the tip; statuses of found signatures do not.
        let freshness = if all_found && search {
            Freshness::Mutable { addresses: Vec::new(), tip: true }
        } else {
            Freshness::Uncacheable
        };
        Ok(Answer { value, freshness })
    }
}
