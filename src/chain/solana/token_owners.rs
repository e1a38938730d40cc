//! The owner → token-account index: which transactions touched a token
//! account a wallet owns, when the wallet itself is not among the
//! transaction's keys (agave's `tx-by-addr` already lists those). It answers
//! `getTransactionsForAddress` with `filters.tokenAccounts` (`all`,
//! `balanceChanged`), as Helius defines them.
//!
//! Two Chronicle-owned tables beside agave's (agave ignores them), keyed and
//! encoded exactly as `tx-by-addr` (`<owner>/<!slot hex>`, a compressed
//! `TransactionByAddr` protobuf):
//! - `tx-by-owner`: a token balance (pre or post) of the transaction names
//!   the owner;
//! - `tx-by-owner-changed`: of those, the ones where such an account's amount
//!   changed, or the account was closed.
//!
//! Ownership comes from the `owner` field of the status metadata's token
//! balances, which mainnet nodes record since about slot 111,491,819
//! (December 2022); older transactions are not in this index.

use std::collections::BTreeMap;

use solana_pubkey::Pubkey;
use solana_transaction_status::TransactionWithStatusMeta;

/// Owners of token accounts a transaction touched, each with whether one of
/// their balances changed; owners among the transaction's own keys left out.
pub fn owned_token_activity(tx: &TransactionWithStatusMeta) -> Vec<(Pubkey, bool)> {
    let TransactionWithStatusMeta::Complete(complete) = tx else { return Vec::new() };
    let meta = &complete.meta;
    // account index → (amount before, amount after) and the owners named.
    let mut accounts: BTreeMap<u8, (Option<&str>, Option<&str>, Vec<&str>)> = BTreeMap::new();
    for (balances, after) in [(&meta.pre_token_balances, false), (&meta.post_token_balances, true)] {
        for balance in balances.iter().flatten() {
            let entry = accounts.entry(balance.account_index).or_default();
            let amount = Some(balance.ui_token_amount.amount.as_str());
            if after {
                entry.1 = amount
            } else {
                entry.0 = amount
            }
            if !balance.owner.is_empty() {
                entry.2.push(&balance.owner);
            }
        }
    }
    let keys = tx.account_keys();
    let mut owners: BTreeMap<Pubkey, bool> = BTreeMap::new();
    for (before, after, named) in accounts.values() {
        // Closed (no balance after) counts as changed; a new account from zero does not.
        let changed = match (before, after) {
            (Some(_), None) => true,
            (before, after) => before.unwrap_or("0") != after.unwrap_or("0"),
        };
        for owner in named {
            let Ok(owner) = owner.parse::<Pubkey>() else { continue };
            if keys.iter().any(|key| *key == owner) {
                continue;
            }
            *owners.entry(owner).or_default() |= changed;
        }
    }
    owners.into_iter().collect()
}
