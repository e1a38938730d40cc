//! `getInflationReward`, computed as agave computes it, from stored blocks:
//! an epoch's rewards are credited in the first block of the next epoch
//! (vote rewards, and stake rewards before partitioned rewards), or — since
//! partitioned epoch rewards — in the `numRewardPartitions` blocks after it,
//! each address in the partition agave's own `EpochRewardsHasher` picks
//! (SipHash-1-3 keyed by the boundary block's parent blockhash).

use std::collections::HashMap;

use jsonrpc_core::{Error, Params};
use solana_clock::Slot;
use solana_epoch_rewards_hasher::EpochRewardsHasher;
use solana_pubkey::Pubkey;
use solana_rpc_client_api::config::RpcEpochConfig;
use solana_rpc_client_api::custom_error::RpcCustomError;
use solana_rpc_client_api::response::RpcInflationReward;
use solana_transaction_status::{Reward, RewardType};

use super::methods::{Answer, Freshness, Methods, args, check_commitment, internal, parse_pubkey};
use super::node_methods::check_min_context;

/// The partition (0..partitions) of `address`'s stake reward.
pub fn reward_partition(parent_blockhash: &solana_hash::Hash, partitions: usize, address: &Pubkey) -> usize {
    EpochRewardsHasher::new(partitions, parent_blockhash).hash_address_to_partition(address)
}

/// Rewards of `wanted` addresses in `rewards` whose type `counts`.
fn rewards_of(
    rewards: &[Reward],
    slot: Slot,
    wanted: &[String],
    counts: impl Fn(RewardType) -> bool,
) -> HashMap<String, (Reward, Slot)> {
    rewards
        .iter()
        .filter(|r| r.reward_type.is_some_and(&counts) && wanted.contains(&r.pubkey))
        .map(|r| (r.pubkey.clone(), (r.clone(), slot)))
        .collect()
}

impl Methods {
    pub(super) async fn get_inflation_reward(&self, params: Params) -> Result<Answer, Error> {
        let (addresses, config): (Option<Vec<String>>, Option<RpcEpochConfig>) = args(params, 2)?;
        let addresses = addresses.unwrap_or_default();
        let pubkeys: Vec<Pubkey> = addresses.iter().map(|a| parse_pubkey(a)).collect::<Result<_, _>>()?;
        let config = config.unwrap_or_default();
        check_commitment(config.commitment)?;
        let schedule = self.network.epoch_schedule.clone().ok_or_else(|| self.unknown_schedule())?;
        // What the commitment sees: a finalized reader computes from final blocks only.
        let view = self.view(config.commitment).await?;
        let tip = self.visible_header(&view).await?;
        let tip_slot = tip.as_ref().map_or(0, |t| t.slot);
        check_min_context(tip_slot, config.min_context_slot)?;
        let epoch = config.epoch.unwrap_or_else(|| schedule.get_epoch(tip_slot).saturating_sub(1));
        let first_slot = schedule.get_first_slot_in_epoch(epoch.saturating_add(1));
        let first_available = self.store.first_available_block().await.map_err(internal)?.unwrap_or(0);
        if first_slot < first_available {
            return Err(
                RpcCustomError::BlockCleanedUp { slot: first_slot, first_available_block: first_available }.into()
            );
        }
        let boundary_slot = *self
            .store
            .blocks(first_slot, 1)
            .await
            .map_err(internal)?
            .first()
            .filter(|slot| view.visible(**slot))
            .ok_or(RpcCustomError::BlockNotAvailable { slot: first_slot })?;
        let boundary = self
            .store
            .block(boundary_slot)
            .await
            .map_err(internal)?
            .ok_or(RpcCustomError::BlockNotAvailable { slot: boundary_slot })?;
        // A gap over the boundary makes the next stored block look like the boundary.
        if boundary.parent_slot >= first_slot {
            return Err(RpcCustomError::SlotNotEpochBoundary { slot: boundary_slot }.into());
        }
        let partitioned = boundary.num_partitions;
        let mut found = rewards_of(&boundary.rewards, boundary_slot, &addresses, |kind| {
            kind == RewardType::Voting || (partitioned.is_none() && kind == RewardType::Staking)
        });
        if let Some(partitions) = partitioned {
            let partitions = usize::try_from(partitions).unwrap_or(usize::MAX);
            let parent_blockhash: solana_hash::Hash = boundary.previous_blockhash.parse().map_err(|_| {
                tracing::error!(slot = boundary_slot, "stored block has an unparsable previous blockhash");
                Error::internal_error()
            })?;
            let mut by_partition: HashMap<usize, Vec<String>> = HashMap::new();
            for (text, pubkey) in addresses.iter().zip(&pubkeys) {
                if !found.contains_key(text) {
                    let partition = reward_partition(&parent_blockhash, partitions, pubkey);
                    by_partition.entry(partition).or_default().push(text.clone());
                }
            }
            let mut after = self.store.blocks(boundary_slot + 1, partitions).await.map_err(internal)?;
            after.retain(|slot| view.visible(*slot));
            for (partition, wanted) in by_partition {
                let slot = *after.get(partition).ok_or_else(|| RpcCustomError::EpochRewardsPeriodActive {
                    slot: tip_slot,
                    current_block_height: tip.as_ref().and_then(|t| t.block_height).unwrap_or(0),
                    rewards_complete_block_height: boundary
                        .block_height
                        .map_or(0, |h| h.saturating_add(partitions as u64).saturating_add(1)),
                })?;
                let block = self
                    .store
                    .block(slot)
                    .await
                    .map_err(internal)?
                    .ok_or(RpcCustomError::BlockNotAvailable { slot })?;
                found.extend(rewards_of(&block.rewards, slot, &wanted, |kind| kind == RewardType::Staking));
            }
        }
        let answer: Vec<Option<RpcInflationReward>> = addresses
            .iter()
            .map(|address| {
                found.get(address).map(|(reward, slot)| RpcInflationReward {
                    epoch,
                    effective_slot: *slot,
                    amount: reward.lamports.unsigned_abs(),
                    post_balance: reward.post_balance,
                    commission: reward.commission,
                    commission_bps: reward.commission_bps,
                })
            })
            .collect();
        let value = serde_json::to_value(&answer).map_err(|_| Error::internal_error())?;
        // A named past epoch's rewards are stored once and never change.
        let freshness = if config.epoch.is_some() {
            Freshness::Immutable
        } else {
            Freshness::Mutable { addresses: Vec::new(), tip: true }
        };
        let newest = found.values().map(|(_, slot)| *slot).max();
        let freshness = view.freshness(newest, freshness);
        Ok(Answer { value, freshness })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cover_the_range() {
        let seed = solana_hash::Hash::new_from_array([7; 32]);
        let mut seen = vec![0usize; 4];
        for i in 0..400u16 {
            let mut bytes = [0u8; 32];
            bytes[..2].copy_from_slice(&i.to_le_bytes());
            seen[reward_partition(&seed, 4, &Pubkey::new_from_array(bytes))] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
    }
}
