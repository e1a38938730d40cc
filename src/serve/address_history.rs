//! `getTransactionsForAddress`, as Helius publishes it: an address's
//! transactions (signatures or full transactions) in either order, filtered by
//! slot, block time and status, paged with a `slot:position` token. Answered
//! from the `tx-by-addr` index, with one read per block for full transactions.

use std::collections::BTreeMap;

use jsonrpc_core::Error;
use serde::Deserialize;
use solana_clock::Slot;
use solana_pubkey::Pubkey;
use solana_rpc_client_api::custom_error::RpcCustomError;
use solana_rpc_client_api::response::RpcConfirmedTransactionStatusWithSignature;
use solana_transaction_status::{
    ConfirmedTransactionStatusWithSignature, ConfirmedTransactionWithStatusMeta, UiTransactionEncoding,
};

use super::commitment::View;
use super::methods::{internal, parse_signature};
use crate::store::BlockStore;
use solana_signature::Signature;

pub const MAX_SIGNATURES: usize = 1_000;
pub const MAX_FULL: usize = 100;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    pub transaction_details: Option<Details>,
    pub sort_order: Option<Order>,
    pub commitment: Option<String>,
    pub min_context_slot: Option<Slot>,
    pub limit: Option<usize>,
    pub pagination_token: Option<String>,
    pub encoding: Option<UiTransactionEncoding>,
    pub max_supported_transaction_version: Option<u8>,
    #[serde(default)]
    pub filters: Filters,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Details {
    Signatures,
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Order {
    Asc,
    Desc,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filters {
    #[serde(default)]
    pub slot: Range,
    #[serde(default)]
    pub block_time: Range,
    pub status: Option<Status>,
    #[serde(default)]
    pub signature: SignatureRange,
    #[serde(default)]
    pub token_accounts: TokenAccounts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub gte: Option<i64>,
    pub gt: Option<i64>,
    pub lte: Option<i64>,
    pub lt: Option<i64>,
    pub eq: Option<i64>,
}

impl Range {
    /// Inclusive bounds, `None` if the range is empty.
    fn bounds(&self) -> Option<(i64, i64)> {
        let mut low = self.gte.unwrap_or(i64::MIN).max(self.gt.map_or(i64::MIN, |v| v.saturating_add(1)));
        let mut high = self.lte.unwrap_or(i64::MAX).min(self.lt.map_or(i64::MAX, |v| v.saturating_sub(1)));
        if let Some(eq) = self.eq {
            low = low.max(eq);
            high = high.min(eq);
        }
        (low <= high).then_some((low, high))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Succeeded,
    Failed,
    Any,
}

/// `slot:position` — the last entry a page returned.
fn parse_token(token: &str) -> Result<(Slot, u32), Error> {
    let bad = || Error::invalid_params(format!("Invalid paginationToken {token:?}; expected \"slot:position\""));
    let (slot, position) = token.split_once(':').ok_or_else(bad)?;
    Ok((slot.parse().map_err(|_| bad())?, position.parse().map_err(|_| bad())?))
}

/// Where an entry sits: (slot, index in its block).
pub type Position = (Slot, u32);

/// Exclusive bounds of a walk over an address's history.
#[derive(Clone, Copy, Debug, Default)]
pub struct Span {
    /// Only entries after (older bound).
    pub after: Option<Position>,
    /// Only entries before (newer bound).
    pub before: Option<Position>,
}

impl Span {
    pub fn narrow_after(&mut self, position: Position) {
        self.after = Some(self.after.map_or(position, |a| a.max(position)));
    }

    pub fn narrow_before(&mut self, position: Position) {
        self.before = Some(self.before.map_or(position, |b| b.min(position)));
    }
}

/// The index position of a stored transaction; a signature the store does
/// not hold cannot bound a walk (agave: TransactionHistoryNotAvailable).
pub async fn position_of(store: &dyn BlockStore, signature: &Signature) -> Result<Position, Error> {
    match store.signature_status(signature).await.map_err(internal)? {
        Some(info) => Ok((info.slot, info.index)),
        None => Err(RpcCustomError::TransactionHistoryNotAvailable.into()),
    }
}

/// The entry just before and just after a position.
fn previous(p: Position) -> Position {
    match p.1.checked_sub(1) {
        Some(index) => (p.0, index),
        None => (p.0.saturating_sub(1), u32::MAX),
    }
}

fn next(p: Position) -> Position {
    match p.1.checked_add(1) {
        Some(index) => (p.0, index),
        None => (p.0.saturating_add(1), 0),
    }
}

/// `filters.signature`: bounds by the positions of stored transactions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRange {
    pub gte: Option<String>,
    pub gt: Option<String>,
    pub lte: Option<String>,
    pub lt: Option<String>,
}

impl SignatureRange {
    async fn narrow(&self, store: &dyn BlockStore, span: &mut Span) -> Result<(), Error> {
        let position = async |signature: &str| position_of(store, &parse_signature(signature)?).await;
        if let Some(s) = &self.gt {
            span.narrow_after(position(s).await?);
        }
        if let Some(s) = &self.gte {
            span.narrow_after(previous(position(s).await?));
        }
        if let Some(s) = &self.lt {
            span.narrow_before(position(s).await?);
        }
        if let Some(s) = &self.lte {
            span.narrow_before(next(position(s).await?));
        }
        Ok(())
    }
}

/// Entries of `address` strictly inside `span`, in `order`, that `keep`
/// accepts, at most `limit`. Newest-first walks read the index page by page;
/// oldest-first ones read upward in widening slot windows (the index sorts
/// newest first), never past the stored tip.
pub async fn walk(
    store: &dyn BlockStore,
    address: &Pubkey,
    tokens: TokenAccounts,
    span: &Span,
    order: Order,
    limit: usize,
    keep: impl Fn(&ConfirmedTransactionStatusWithSignature) -> bool,
) -> Result<Vec<ConfirmedTransactionStatusWithSignature>, Error> {
    let inside = |e: &ConfirmedTransactionStatusWithSignature| {
        span.after.is_none_or(|a| (e.slot, e.index) > a) && span.before.is_none_or(|b| (e.slot, e.index) < b)
    };
    let Some(tip) = store.last_block().await.map_err(internal)? else { return Ok(Vec::new()) };
    let read = |upper: Slot, lower: Slot, limit: usize| history_page(store, address, tokens, upper, lower, limit);
    let oldest = span.after.map_or(0, |a| a.0);
    let newest = span.before.map_or(Slot::MAX, |b| b.0).min(tip);
    let mut out = Vec::new();
    match order {
        Order::Desc => {
            let mut upper = newest;
            while out.len() < limit && upper >= oldest {
                let (page, last) = read(upper, oldest, 1_000).await.map_err(internal)?;
                let Some(last) = last else { break };
                out.extend(page.into_iter().filter(|e| inside(e) && keep(e)));
                if last == 0 || last <= oldest {
                    break;
                }
                upper = last - 1;
            }
        }
        Order::Asc => {
            let mut lower = oldest;
            let mut window: u64 = 10_000;
            while out.len() < limit && lower <= newest {
                let upper = lower.saturating_add(window).min(newest);
                let (mut page, _) = read(upper, lower, usize::MAX).await.map_err(internal)?;
                page.reverse();
                if page.is_empty() {
                    window = window.saturating_mul(4);
                }
                out.extend(page.into_iter().filter(|e| inside(e) && keep(e)));
                if upper == newest {
                    break;
                }
                lower = upper + 1;
            }
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// `filters.tokenAccounts`: also the transactions of token accounts the
/// address owns (Helius' values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TokenAccounts {
    #[default]
    None,
    BalanceChanged,
    All,
}

/// Up to `limit` entries newest first with `lower <= slot <= upper`, the
/// address's own and (per `tokens`) its token accounts', and the oldest slot
/// the page covers completely (the next page starts below it); `None` when
/// nothing is left.
async fn history_page(
    store: &dyn BlockStore,
    address: &Pubkey,
    tokens: TokenAccounts,
    upper: Slot,
    lower: Slot,
    limit: usize,
) -> Result<(Vec<ConfirmedTransactionStatusWithSignature>, Option<Slot>), crate::store::StoreError> {
    let own = store.address_history(address, upper, lower, limit).await?;
    let owned = match tokens {
        TokenAccounts::None => Vec::new(),
        _ => store.owner_history(address, upper, lower, limit, tokens == TokenAccounts::BalanceChanged).await?,
    };
    // A full page may end inside a slot: below the higher of the full pages' last slots, nothing is known yet.
    let floor = [&own, &owned].iter().filter(|p| p.len() >= limit).filter_map(|p| p.last().map(|e| e.slot)).max();
    let mut merged: Vec<_> = own.into_iter().chain(owned).collect();
    merged.sort_by(|a, b| (b.slot, b.index).cmp(&(a.slot, a.index)));
    merged.dedup_by(|a, b| a.signature == b.signature);
    let last = match floor {
        Some(floor) if merged.iter().any(|e| e.slot > floor) => {
            merged.retain(|e| e.slot > floor);
            Some(floor + 1)
        }
        _ => merged.last().map(|e| e.slot),
    };
    Ok((merged, last))
}

/// Reads entries in the requested order, applying filters, until `limit`.
pub async fn query(
    store: &dyn BlockStore,
    address: &Pubkey,
    config: &Config,
    view: &View,
) -> Result<(Vec<ConfirmedTransactionStatusWithSignature>, Option<String>), Error> {
    let details = config.transaction_details.unwrap_or(Details::Signatures);
    let max = if details == Details::Full { MAX_FULL } else { MAX_SIGNATURES };
    let limit = config.limit.unwrap_or(max);
    if limit == 0 || limit > max {
        return Err(Error::invalid_params(format!("Invalid limit; max {max} for transactionDetails {details:?}")));
    }
    let Some((slot_low, slot_high)) = config.filters.slot.bounds() else { return Ok((Vec::new(), None)) };
    let Some((time_low, time_high)) = config.filters.block_time.bounds() else { return Ok((Vec::new(), None)) };
    let (oldest, newest) = (slot_low.max(0) as Slot, slot_high.max(0) as Slot);
    let mut span = Span {
        after: oldest.checked_sub(1).map(|slot| (slot, u32::MAX)),
        before: newest.checked_add(1).map(|slot| (slot, 0)),
    };
    let order = config.sort_order.unwrap_or(Order::Desc);
    // The token is the last entry returned: the next page starts past it.
    match (order, config.pagination_token.as_deref().map(parse_token).transpose()?) {
        (Order::Desc, Some(t)) => span.narrow_before(t),
        (Order::Asc, Some(t)) => span.narrow_after(t),
        _ => {}
    }
    config.filters.signature.narrow(store, &mut span).await?;
    if let Some(limit) = view.limit {
        span.narrow_before((limit.saturating_add(1), 0));
    }
    let keep = |e: &ConfirmedTransactionStatusWithSignature| {
        let time_ok = match e.block_time {
            Some(t) => t >= time_low && t <= time_high,
            None => config.filters.block_time.bounds() == Some((i64::MIN, i64::MAX)),
        };
        let status_ok = match config.filters.status.unwrap_or(Status::Any) {
            Status::Any => true,
            Status::Succeeded => e.err.is_none(),
            Status::Failed => e.err.is_some(),
        };
        time_ok && status_ok
    };
    let mut out = walk(store, address, config.filters.token_accounts, &span, order, limit, keep).await?;
    out.truncate(limit);
    let next = (out.len() == limit).then(|| out.last().map(|e| format!("{}:{}", e.slot, e.index))).flatten();
    Ok((out, next))
}

pub fn signature_item(
    entry: ConfirmedTransactionStatusWithSignature,
    view: &View,
) -> RpcConfirmedTransactionStatusWithSignature {
    let status = view.status(entry.slot);
    let mut item = RpcConfirmedTransactionStatusWithSignature::from(entry);
    item.confirmation_status = Some(status);
    item
}

/// The full transactions of `entries`, one block read per slot.
pub async fn full_transactions(
    store: &dyn BlockStore,
    entries: &[ConfirmedTransactionStatusWithSignature],
) -> Result<Vec<ConfirmedTransactionWithStatusMeta>, Error> {
    let mut blocks = BTreeMap::new();
    for slot in entries.iter().map(|e| e.slot) {
        if let std::collections::btree_map::Entry::Vacant(v) = blocks.entry(slot) {
            let block = store.block(slot).await.map_err(|e| {
                tracing::error!(error = %e, slot, "store read failed");
                Error::internal_error()
            })?;
            v.insert(block);
        }
    }
    Ok(entries
        .iter()
        .filter_map(|e| {
            let block = blocks.get(&e.slot)?.as_ref()?;
            let tx = block.transactions.get(e.index as usize)?.clone();
            Some(ConfirmedTransactionWithStatusMeta {
                slot: e.slot,
                tx_with_meta: tx,
                block_time: block.block_time,
                index: e.index,
            })
        })
        .collect())
}
