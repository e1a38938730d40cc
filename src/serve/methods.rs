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
    BlockEncodingOptions, EncodeError, TransactionDetails, TransactionStatus, UiTransactionEncoding,
};

use super::commitment::View;
use super::network::Network;
use super::recent_blocks::RecentBlocks;
use super::upstream::Upstream;
use crate::store::{BlockStore, StoreError};
use solana_commitment_config::CommitmentConfig;

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
    ("getInflationReward", Method::GetInflationReward),
    // Around history (`node_methods.rs`).
    ("getHealth", Method::GetHealth),
    ("getVersion", Method::GetVersion),
    ("getGenesisHash", Method::GetGenesisHash),
    ("getSlot", Method::GetSlot),
    ("getBlockHeight", Method::GetBlockHeight),
    ("minimumLedgerSlot", Method::MinimumLedgerSlot),
    ("getLatestBlockhash", Method::GetLatestBlockhash),
    ("isBlockhashValid", Method::IsBlockhashValid),
    ("getEpochInfo", Method::GetEpochInfo),
    ("getEpochSchedule", Method::GetEpochSchedule),
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
    GetInflationReward,
    GetHealth,
    GetVersion,
    GetGenesisHash,
    GetSlot,
    GetBlockHeight,
    MinimumLedgerSlot,
    GetLatestBlockhash,
    IsBlockhashValid,
    GetEpochInfo,
    GetEpochSchedule,
}

impl Method {
    /// The canonical name (aliases share one cache namespace and one metric).
    pub fn name(self) -> &'static str {
        METHODS.iter().find(|(_, m)| *m == self).map(|(n, _)| *n).unwrap_or("unknown")
    }
}

/// agave's `getSignaturesForAddress` config, plus the opt-in extensions
/// Superbank names (`beforeSlot`, `untilSlot`) and Helius' `sortOrder`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignaturesConfig {
    #[serde(flatten)]
    base: RpcSignaturesForAddressConfig,
    before_slot: Option<Slot>,
    until_slot: Option<Slot>,
    sort_order: Option<super::address_history::Order>,
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
    pub(super) store: Arc<dyn BlockStore>,
    pub(super) recent: RecentBlocks,
    pub(super) network: Network,
    /// The node unknown methods and misses go to; the head `getHealth` compares the stored tip with.
    pub(super) upstream: Option<Arc<Upstream>>,
    pub(super) health_max_lag: u64,
}

pub(super) fn internal(e: StoreError) -> Error {
    tracing::error!(error = %e, "store read failed");
    Error { code: ErrorCode::InternalError, message: "Internal error".into(), data: None }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid_params(message.into())
}

/// Parses positional params into a tuple of `arity` elements; trailing
/// optional params may be left out, as jsonrpc-derive (agave's RPC) allows.
pub(super) fn args<T: serde::de::DeserializeOwned>(params: Params, arity: usize) -> Result<T, Error> {
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

pub(super) fn parse_signature(text: &str) -> Result<Signature, Error> {
    Signature::from_str(text).map_err(|e| invalid(format!("Invalid param: {e:?}")))
}

pub(super) fn parse_pubkey(text: &str) -> Result<Pubkey, Error> {
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
pub(super) fn check_commitment(commitment: Option<solana_commitment_config::CommitmentConfig>) -> Result<(), Error> {
    match commitment {
        Some(c) if !c.is_at_least_confirmed() => Err(invalid("Method does not support commitment below `confirmed`")),
        _ => Ok(()),
    }
}

impl Methods {
    pub fn new(
        store: Arc<dyn BlockStore>,
        network: Network,
        upstream: Option<Arc<Upstream>>,
        health_max_lag: u64,
    ) -> Self {
        Self { recent: RecentBlocks::new(store.clone()), store, network, upstream, health_max_lag }
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
            Method::GetInflationReward => self.get_inflation_reward(params).await,
            Method::GetHealth => self.get_health(params).await,
            Method::GetVersion => self.get_version(params).await,
            Method::GetGenesisHash => self.get_genesis_hash(params).await,
            Method::GetSlot => self.get_slot(params).await,
            Method::GetBlockHeight => self.get_block_height(params).await,
            Method::MinimumLedgerSlot => self.minimum_ledger_slot(params).await,
            Method::GetLatestBlockhash => self.get_latest_blockhash(params).await,
            Method::IsBlockhashValid => self.is_blockhash_valid(params).await,
            Method::GetEpochInfo => self.get_epoch_info(params).await,
            Method::GetEpochSchedule => self.get_epoch_schedule(params).await,
        }
    }

    /// What a call with `commitment` may see.
    pub(super) async fn view(&self, commitment: Option<CommitmentConfig>) -> Result<View, Error> {
        Ok(View::new(self.store.finalized_slot().await.map_err(internal)?, commitment))
    }

    /// The newest stored slot `view` sees.
    pub(super) async fn visible_tip(&self, view: &View) -> Option<Slot> {
        match view.limit {
            Some(_) => self.store.newest_final_block().await.ok().flatten(),
            None => self.latest_slot().await,
        }
    }

    /// The error a node gives for a slot the store has no block for (or `view` does not show).
    async fn missing_block(&self, slot: Slot, view: &View) -> Error {
        let first = self.store.first_available_block().await.ok().flatten();
        let last = self.visible_tip(view).await;
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
        let view = self.view(config.commitment).await?;
        let block = if view.visible(slot) { self.store.block(slot).await.map_err(internal)? } else { None };
        let Some(block) = block else { return Err(self.missing_block(slot, &view).await) };
        let options = BlockEncodingOptions {
            transaction_details: config.transaction_details.unwrap_or(TransactionDetails::Full),
            show_rewards: config.rewards.unwrap_or(true),
            max_supported_transaction_version: config.max_supported_transaction_version,
        };
        let encoded = block
            .encode_with_options(config.encoding.unwrap_or(UiTransactionEncoding::Json), options)
            .map_err(encoding_error)?;
        Ok(Answer { value: to_value(&encoded)?, freshness: view.freshness(Some(slot), Freshness::Immutable) })
    }

    async fn get_transaction(&self, params: Params) -> Result<Answer, Error> {
        let (signature, config): (String, Option<RpcEncodingConfigWrapper<RpcTransactionConfig>>) = args(params, 2)?;
        let signature = parse_signature(&signature)?;
        let config = config.map(|c| c.convert_to_current()).unwrap_or_default();
        check_commitment(config.commitment)?;
        let view = self.view(config.commitment).await?;
        let tx = self.store.transaction(&signature).await.map_err(internal)?.filter(|tx| view.visible(tx.slot));
        let Some(tx) = tx else {
            return Ok(Answer { value: Value::Null, freshness: Freshness::Uncacheable });
        };
        let slot = tx.slot;
        let encoded = tx
            .encode(config.encoding.unwrap_or(UiTransactionEncoding::Json), config.max_supported_transaction_version)
            .map_err(encoding_error)?;
        Ok(Answer { value: to_value(&encoded)?, freshness: view.freshness(Some(slot), Freshness::Immutable) })
    }

    async fn get_signatures_for_address(&self, params: Params) -> Result<Answer, Error> {
        use super::address_history::{self, Order, Span, TokenAccounts};
        let (address, config): (String, Option<SignaturesConfig>) = args(params, 2)?;
        let address = parse_pubkey(&address)?;
        let SignaturesConfig { base: config, before_slot, until_slot, sort_order } = config.unwrap_or_default();
        check_commitment(config.commitment)?;
        let view = self.view(config.commitment).await?;
        if config.min_context_slot.is_some() {
            let tip = self.visible_tip(&view).await.unwrap_or(0);
            super::node_methods::check_min_context(tip, config.min_context_slot)?;
        }
        let limit = config.limit.unwrap_or(MAX_SIGNATURES_FOR_ADDRESS_LIMIT);
        if limit == 0 || limit > MAX_SIGNATURES_FOR_ADDRESS_LIMIT {
            return Err(invalid(format!("Invalid limit; max {MAX_SIGNATURES_FOR_ADDRESS_LIMIT}")));
        }
        if config.before.is_some() && before_slot.is_some() {
            return Err(invalid("before and beforeSlot are mutually exclusive"));
        }
        if config.until.is_some() && until_slot.is_some() {
            return Err(invalid("until and untilSlot are mutually exclusive"));
        }
        let before = config.before.as_deref().map(parse_signature).transpose()?;
        let until = config.until.as_deref().map(parse_signature).transpose()?;
        // A finalized reader of a store fed at `confirmed` walks below the watermark.
        let extended =
            before_slot.is_some() || until_slot.is_some() || sort_order == Some(Order::Asc) || view.limit.is_some();
        let found = if extended {
            // Slot bounds are exclusive, as Superbank's; `before`/`until` stay
            // the newer/older bound in either order.
            let mut span =
                Span { after: until_slot.map(|slot| (slot, u32::MAX)), before: before_slot.map(|slot| (slot, 0)) };
            if let Some(before) = &before {
                span.narrow_before(address_history::position_of(self.store.as_ref(), before).await?);
            }
            if let Some(until) = &until {
                span.narrow_after(address_history::position_of(self.store.as_ref(), until).await?);
            }
            if let Some(limit) = view.limit {
                span.narrow_before((limit.saturating_add(1), 0));
            }
            let order = sort_order.unwrap_or(Order::Desc);
            address_history::walk(self.store.as_ref(), &address, TokenAccounts::None, &span, order, limit, |_| true)
                .await?
        } else {
            match self.store.signatures_for_address(&address, before.as_ref(), until.as_ref(), limit).await {
                Ok(found) => found,
                Err(StoreError::SignatureNotFound(_)) => {
                    return Err(RpcCustomError::TransactionHistoryNotAvailable.into());
                }
                Err(e) => return Err(internal(e)),
            }
        };
        let newest = found.iter().map(|e| e.slot).max();
        let list: Vec<RpcConfirmedTransactionStatusWithSignature> =
            found.into_iter().map(|e| address_history::signature_item(e, &view)).collect();
        // A page without a newer bound, or read oldest first, changes as blocks land.
        let can_grow = (before.is_none() && before_slot.is_none()) || sort_order == Some(Order::Asc);
        let freshness =
            if can_grow { Freshness::Mutable { addresses: vec![address], tip: false } } else { Freshness::Immutable };
        Ok(Answer { value: to_value(&list)?, freshness: view.list_freshness(newest, freshness) })
    }

    async fn get_blocks(&self, params: Params) -> Result<Answer, Error> {
        let (start, wrapper, config): (Slot, Option<RpcBlocksConfigWrapper>, Option<RpcContextConfig>) =
            args(params, 3)?;
        let (end, wrapped_config) = wrapper.map(|w| w.unzip()).unwrap_or_default();
        let commitment = config.or(wrapped_config).and_then(|c| c.commitment);
        check_commitment(commitment)?;
        let view = self.view(commitment).await?;
        let latest = self.visible_tip(&view).await.unwrap_or(0);
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
        let freshness = Freshness::Mutable { addresses: Vec::new(), tip: end >= latest };
        Ok(Answer { value: to_value(&slots)?, freshness: view.list_freshness(slots.last().copied(), freshness) })
    }

    async fn get_blocks_with_limit(&self, params: Params) -> Result<Answer, Error> {
        let (start, limit, config): (Slot, usize, Option<RpcContextConfig>) = args(params, 3)?;
        let commitment = config.and_then(|c| c.commitment);
        check_commitment(commitment)?;
        if limit as u64 > MAX_GET_CONFIRMED_BLOCKS_RANGE {
            return Err(invalid(format!("Limit too large; max {MAX_GET_CONFIRMED_BLOCKS_RANGE}")));
        }
        let view = self.view(commitment).await?;
        let mut slots = self.store.blocks(start, limit).await.map_err(internal)?;
        let listed = slots.len();
        slots.retain(|s| view.visible(*s));
        let freshness = Freshness::Mutable { addresses: Vec::new(), tip: listed < limit || slots.len() < listed };
        Ok(Answer { value: to_value(&slots)?, freshness: view.list_freshness(slots.last().copied(), freshness) })
    }

    async fn get_block_time(&self, params: Params) -> Result<Answer, Error> {
        let (slot,): (Slot,) = args(params, 1)?;
        let view = self.view(None).await?;
        let time = if view.visible(slot) { self.store.block_time(slot).await.map_err(internal)? } else { None };
        match time {
            Some(time) => Ok(Answer { value: to_value(&time)?, freshness: Freshness::Immutable }),
            None => Err(self.missing_block(slot, &view).await),
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
        let commitment = match config.commitment.as_deref() {
            Some("processed") => return Err(invalid("Method does not support commitment below `confirmed`")),
            Some("confirmed") => Some(CommitmentConfig::confirmed()),
            _ => None,
        };
        let view = self.view(commitment).await?;
        let (entries, token) = address_history::query(self.store.as_ref(), &address, &config, &view).await?;
        let newest = entries.iter().map(|e| e.slot).max();
        let data = match config.transaction_details.unwrap_or(Details::Signatures) {
            Details::Signatures => to_value(
                &entries.iter().cloned().map(|e| address_history::signature_item(e, &view)).collect::<Vec<_>>(),
            )?,
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
        let value = serde_json::json!({ "data": data, "paginationToken": token });
        Ok(Answer { value, freshness: view.list_freshness(newest, freshness) })
    }

    async fn get_signature_statuses(&self, params: Params) -> Result<Answer, Error> {
        let (signatures, config): (Vec<String>, Option<RpcSignatureStatusConfig>) = args(params, 2)?;
        if signatures.len() > MAX_SIGNATURE_STATUSES {
            return Err(invalid(format!("Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")));
        }
        let signatures: Vec<Signature> = signatures.iter().map(|s| parse_signature(s)).collect::<Result<_, _>>()?;
        // A node answers from long-term storage only when asked to.
        let search = config.is_some_and(|c| c.search_transaction_history);
        let view = self.view(None).await?;
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
                        confirmation_status: Some(view.status(info.slot)),
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
