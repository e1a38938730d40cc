//! The methods stock clients call around history — on connect, before
//! sending, to page — answered from the store the way an agave node answers
//! them from its banks: `getHealth`, `getVersion`, `getGenesisHash`,
//! `getSlot`, `getBlockHeight`, `minimumLedgerSlot`, `getLatestBlockhash`,
//! `isBlockhashValid`, `getEpochInfo`, `getEpochSchedule`.
//!
//! "The tip" is the newest stored block the call's commitment sees: for a
//! store fed at `confirmed`, `finalized` callers get the newest block at or
//! below the finalized watermark (`commitment.rs`), `confirmed` callers the
//! newest stored; with a finalized feed both are the same block.

use jsonrpc_core::{Error, ErrorCode, Params, Value};
use serde::Serialize;
use solana_clock::Slot;
use solana_epoch_info::EpochInfo;
use solana_rpc_client_api::config::RpcContextConfig;
use solana_rpc_client_api::custom_error::RpcCustomError;
use solana_rpc_client_api::response::{RpcApiVersion, RpcBlockhash, RpcResponseContext, RpcVersionInfo};

use super::commitment::View;
use super::methods::{Answer, Freshness, Methods, args, internal};
use super::recent_blocks::{Header, MAX_PROCESSING_AGE};

/// agave's default `--health-check-slot-distance`.
pub const DEFAULT_HEALTH_MAX_LAG: u64 = 128;

/// An answer that changes with every new block.
fn at_tip(value: Value) -> Answer {
    Answer { value, freshness: Freshness::Mutable { addresses: Vec::new(), tip: true } }
}

fn fixed(value: Value) -> Answer {
    Answer { value, freshness: Freshness::Uncacheable }
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|_| Error::internal_error())
}

/// agave's `{context, value}` envelope.
fn with_context<T: Serialize>(slot: Slot, value: T) -> Result<Value, Error> {
    let context = RpcResponseContext { slot, api_version: Some(RpcApiVersion::default()) };
    to_value(&solana_rpc_client_api::response::Response { context, value })
}

/// The error a node gives while it holds no block at all.
fn no_blocks() -> Error {
    Error {
        code: ErrorCode::ServerError(solana_rpc_client_api::custom_error::JSON_RPC_SERVER_ERROR_NODE_UNHEALTHY),
        message: "Node is unhealthy: the store holds no blocks yet".into(),
        data: None,
    }
}

fn no_height(slot: Slot) -> Error {
    Error {
        code: ErrorCode::ServerError(solana_rpc_client_api::custom_error::JSON_RPC_SERVER_ERROR_BLOCK_NOT_AVAILABLE),
        message: format!("Block height not recorded in the stored block of slot {slot}"),
        data: None,
    }
}

/// agave's error for a `minContextSlot` the answer's context has not reached.
pub(super) fn check_min_context(context_slot: Slot, min_context_slot: Option<Slot>) -> Result<(), Error> {
    match min_context_slot {
        Some(min) if context_slot < min => Err(RpcCustomError::MinContextSlotNotReached { context_slot }.into()),
        _ => Ok(()),
    }
}

impl Methods {
    /// The header of the newest stored block `view` sees; `None` for an empty store.
    pub(super) async fn visible_header(&self, view: &View) -> Result<Option<Header>, Error> {
        let newest = self.recent.newest(MAX_PROCESSING_AGE + 1).await.map_err(internal)?;
        if let Some(header) = newest.into_iter().find(|h| view.visible(h.slot)) {
            return Ok(Some(header));
        }
        // The watermark trails the newest stored blocks by more than the window (a stalled follower).
        let Some(slot) = self.visible_tip(view).await else { return Ok(None) };
        Ok(self.store.block(slot).await.map_err(internal)?.map(|block| Header::of(slot, block)))
    }

    /// The stored tip, refusing a `minContextSlot` it has not reached.
    async fn tip(&self, config: Option<&RpcContextConfig>) -> Result<Header, Error> {
        let view = self.view(config.and_then(|c| c.commitment)).await?;
        let tip = self.visible_header(&view).await?.ok_or_else(no_blocks)?;
        check_min_context(tip.slot, config.and_then(|c| c.min_context_slot))?;
        Ok(tip)
    }

    /// `"ok"` while the stored tip is within `max_lag` slots of the
    /// upstream's finalized slot; agave's NodeUnhealthy error otherwise. With no
    /// upstream to compare against, healthy while the store answers with blocks.
    pub(super) async fn get_health(&self, params: Params) -> Result<Answer, Error> {
        params.expect_no_params()?;
        let tip = match self.recent.tip().await {
            Ok(Some(tip)) => tip.slot,
            Ok(None) => return Err(RpcCustomError::NodeUnhealthy { num_slots_behind: None }.into()),
            Err(e) => {
                tracing::warn!(error = %e, "getHealth: the store did not answer");
                return Err(RpcCustomError::NodeUnhealthy { num_slots_behind: None }.into());
            }
        };
        if let Some(upstream) = &self.upstream {
            match upstream.head_slot().await {
                Ok(head) => {
                    let behind = head.saturating_sub(tip);
                    if behind > self.health_max_lag {
                        return Err(RpcCustomError::NodeUnhealthy { num_slots_behind: Some(behind) }.into());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "getHealth: the upstream head is unknown");
                    return Err(RpcCustomError::NodeUnhealthy { num_slots_behind: None }.into());
                }
            }
        }
        Ok(fixed(Value::from("ok")))
    }

    /// agave's answer for the agave release whose types and encoders serve
    /// here, plus Chronicle's own version (as Old Faithful adds its own).
    pub(super) async fn get_version(&self, params: Params) -> Result<Answer, Error> {
        params.expect_no_params()?;
        let agave = solana_version::Version::this_build();
        let info = RpcVersionInfo { solana_core: agave.to_string(), feature_set: Some(agave.feature_set()) };
        let mut value = to_value(&info)?;
        value["chronicle"] = Value::from(env!("CARGO_PKG_VERSION"));
        Ok(fixed(value))
    }

    pub(super) async fn get_genesis_hash(&self, params: Params) -> Result<Answer, Error> {
        params.expect_no_params()?;
        match self.network.genesis_hash {
            Some(hash) => Ok(fixed(Value::from(hash.to_string()))),
            None => Err(Error::invalid_params(format!(
                "the genesis hash of network {:?} is not known to this server; configure it (serve --genesis-hash)",
                self.network.name
            ))),
        }
    }

    pub(super) async fn get_slot(&self, params: Params) -> Result<Answer, Error> {
        let (config,): (Option<RpcContextConfig>,) = args(params, 1)?;
        let tip = self.tip(config.as_ref()).await?;
        Ok(at_tip(to_value(&tip.slot)?))
    }

    pub(super) async fn get_block_height(&self, params: Params) -> Result<Answer, Error> {
        let (config,): (Option<RpcContextConfig>,) = args(params, 1)?;
        let tip = self.tip(config.as_ref()).await?;
        let height = tip.block_height.ok_or_else(|| no_height(tip.slot))?;
        Ok(at_tip(to_value(&height)?))
    }

    pub(super) async fn minimum_ledger_slot(&self, params: Params) -> Result<Answer, Error> {
        params.expect_no_params()?;
        match self.store.first_available_block().await.map_err(internal)? {
            Some(slot) => Ok(at_tip(to_value(&slot)?)),
            None => Err(no_blocks()),
        }
    }

    pub(super) async fn get_latest_blockhash(&self, params: Params) -> Result<Answer, Error> {
        let (config,): (Option<RpcContextConfig>,) = args(params, 1)?;
        let tip = self.tip(config.as_ref()).await?;
        let height = tip.block_height.ok_or_else(|| no_height(tip.slot))?;
        let value =
            RpcBlockhash { blockhash: tip.blockhash, last_valid_block_height: height + MAX_PROCESSING_AGE as u64 };
        Ok(at_tip(with_context(tip.slot, value)?))
    }

    /// Valid while at most `MAX_PROCESSING_AGE` blocks are newer than the one
    /// that produced it (agave's blockhash-queue age).
    pub(super) async fn is_blockhash_valid(&self, params: Params) -> Result<Answer, Error> {
        let (blockhash, config): (String, Option<RpcContextConfig>) = args(params, 2)?;
        blockhash.parse::<solana_hash::Hash>().map_err(|e| Error::invalid_params(format!("Invalid param: {e:?}")))?;
        let tip = self.tip(config.as_ref()).await?;
        let window = self.recent.newest(MAX_PROCESSING_AGE + 1).await.map_err(internal)?;
        let valid = window.iter().any(|h| h.blockhash == blockhash);
        Ok(at_tip(with_context(tip.slot, valid)?))
    }

    pub(super) async fn get_epoch_schedule(&self, params: Params) -> Result<Answer, Error> {
        params.expect_no_params()?;
        let schedule = self.network.epoch_schedule.as_ref().ok_or_else(|| self.unknown_schedule())?;
        Ok(fixed(to_value(schedule)?))
    }

    pub(super) async fn get_epoch_info(&self, params: Params) -> Result<Answer, Error> {
        let (config,): (Option<RpcContextConfig>,) = args(params, 1)?;
        let schedule = self.network.epoch_schedule.clone().ok_or_else(|| self.unknown_schedule())?;
        let tip = self.tip(config.as_ref()).await?;
        let height = tip.block_height.ok_or_else(|| no_height(tip.slot))?;
        let (epoch, slot_index) = schedule.get_epoch_and_slot_index(tip.slot);
        let info = EpochInfo {
            epoch,
            slot_index,
            slots_in_epoch: schedule.get_slots_in_epoch(epoch),
            absolute_slot: tip.slot,
            block_height: height,
            transaction_count: None,
        };
        // The count since genesis is a bank counter no stored block carries:
        // left out (clients such as web3.js accept it absent, not null).
        let mut value = to_value(&info)?;
        if let Some(fields) = value.as_object_mut() {
            fields.remove("transactionCount");
        }
        Ok(at_tip(value))
    }

    pub(super) fn unknown_schedule(&self) -> Error {
        Error::invalid_params(format!(
            "the epoch schedule of network {:?} is not known to this server (known: mainnet-beta, devnet, testnet)",
            self.network.name
        ))
    }
}
