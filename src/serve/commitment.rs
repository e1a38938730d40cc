//! What a call may see, by its commitment. A store fed at `confirmed` holds
//! blocks the cluster has not finalized (and may still skip); the follower
//! records the finalized watermark in the store. `finalized` readers (the
//! default, as on a node) see nothing above it; `confirmed` readers see every
//! stored block, labelled `confirmed` above it. Answers holding a block above
//! the watermark are never cached as immutable: they go with the next block.

use solana_clock::Slot;
use solana_commitment_config::CommitmentConfig;
use solana_transaction_status::TransactionConfirmationStatus;

use super::methods::Freshness;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The store's finalized watermark; `None`: every stored block is final.
    pub finalized: Option<Slot>,
    /// The newest slot this call may see; `None`: all.
    pub limit: Option<Slot>,
}

impl View {
    pub fn new(finalized: Option<Slot>, commitment: Option<CommitmentConfig>) -> Self {
        let confirmed_reader = commitment.is_some_and(|c| c.is_confirmed() && !c.is_finalized());
        Self { finalized, limit: if confirmed_reader { None } else { finalized } }
    }

    pub fn visible(&self, slot: Slot) -> bool {
        self.limit.is_none_or(|limit| slot <= limit)
    }

    pub fn is_final(&self, slot: Slot) -> bool {
        self.finalized.is_none_or(|f| slot <= f)
    }

    pub fn status(&self, slot: Slot) -> TransactionConfirmationStatus {
        if self.is_final(slot) {
            TransactionConfirmationStatus::Finalized
        } else {
            TransactionConfirmationStatus::Confirmed
        }
    }

    /// The freshness of a list (history, block lists): besides holding blocks
    /// that may be dropped, a finalized reader's list over a store with a
    /// watermark grows as the watermark moves, which writes no block: it goes
    /// with the tip answers, whatever its bounds.
    pub fn list_freshness(&self, newest_slot_in_answer: Option<Slot>, freshness: Freshness) -> Freshness {
        if self.limit.is_none() {
            return self.freshness(newest_slot_in_answer, freshness);
        }
        match freshness {
            Freshness::Mutable { addresses, .. } => Freshness::Mutable { addresses, tip: true },
            Freshness::Immutable => Freshness::Mutable { addresses: Vec::new(), tip: true },
            Freshness::Uncacheable => Freshness::Uncacheable,
        }
    }

    /// `freshness`, unless the answer holds a block that may still be dropped.
    pub fn freshness(&self, newest_slot_in_answer: Option<Slot>, freshness: Freshness) -> Freshness {
        match newest_slot_in_answer {
            Some(slot) if !self.is_final(slot) => match freshness {
                Freshness::Mutable { addresses, .. } => Freshness::Mutable { addresses, tip: true },
                _ => Freshness::Mutable { addresses: Vec::new(), tip: true },
            },
            _ => freshness,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalized_readers_stop_at_the_watermark() {
        let finalized = View::new(Some(100), None);
        assert!(finalized.visible(100) && !finalized.visible(101));
        let confirmed = View::new(Some(100), Some(CommitmentConfig::confirmed()));
        assert!(confirmed.visible(101));
        assert_eq!(confirmed.status(101), TransactionConfirmationStatus::Confirmed);
        assert_eq!(
            confirmed.freshness(Some(101), Freshness::Immutable),
            Freshness::Mutable { addresses: vec![], tip: true }
        );
        assert_eq!(View::new(None, None).freshness(Some(101), Freshness::Immutable), Freshness::Immutable);
    }
}
