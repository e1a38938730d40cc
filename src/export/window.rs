//! A time window's slots: an export declared by time (`spec.window`) reads
//! the stored blocks whose time falls in `[start, end)`. Block times rise
//! with the slot, so the window's first and last blocks are found by binary
//! search over the slots, a few dozen store reads whatever the store's size.

use serde::{Deserialize, Serialize};

use super::DocumentSource;
use crate::pipeline::BlockNumber;

/// The range end of an export declared by time alone: every slot a store can hold.
pub const NO_END: BlockNumber = i64::MAX as BlockNumber;

/// `[start, end)` in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    pub start: i64,
    pub end: i64,
}

/// The first stored block at or after `slot` within `..=to`, with its time
/// (a block without one, as in mainnet's first epochs, counts as before any window).
async fn first_from(
    source: &dyn DocumentSource,
    slot: BlockNumber,
    to: BlockNumber,
) -> Result<Option<(BlockNumber, i64)>, String> {
    Ok(source.first_block_from(slot).await?.filter(|(b, _)| *b <= to).map(|(b, t)| (b, t.unwrap_or(i64::MIN))))
}

/// The smallest slot in `from..=to + 1` where `holds` becomes true; `holds`
/// must be false then true as the slot rises.
async fn first_slot_where<F, Fut>(from: BlockNumber, to: BlockNumber, mut holds: F) -> Result<BlockNumber, String>
where
    F: FnMut(BlockNumber) -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let (mut low, mut high) = (from, to.saturating_add(1));
    while low < high {
        let middle = low + (high - low) / 2;
        if holds(middle).await? {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(low)
}

/// The slots `first..=last` holding every stored block of `from..=to` whose
/// time is in the window (`first` and `last` are stored blocks), or `None`.
pub async fn slots_of(
    source: &dyn DocumentSource,
    window: TimeWindow,
    from: BlockNumber,
    to: BlockNumber,
) -> Result<Option<(BlockNumber, BlockNumber)>, String> {
    // The first block at or after a time: where "the next block is that late (or there is none)" starts.
    let at_or_after = |time: i64| async move {
        let slot = first_slot_where(from, to, |s| async move {
            Ok(first_from(source, s, to).await?.is_none_or(|(_, t)| t >= time))
        })
        .await?;
        first_from(source, slot, to).await
    };
    let Some((first, first_time)) = at_or_after(window.start).await? else { return Ok(None) };
    if first_time >= window.end {
        return Ok(None);
    }
    // The last block before the window's end: the last one below the first
    // block at or after the end (or below the range's end).
    let limit = match at_or_after(window.end).await? {
        Some((block, _)) => block,
        None => to.saturating_add(1),
    };
    let past_last = first_slot_where(first, limit - 1, |s| async move {
        Ok(first_from(source, s, to).await?.is_none_or(|(b, _)| b >= limit))
    })
    .await?;
    // `past_last - 1` is a slot whose next stored block is the last one below the limit.
    let last = first_from(source, past_last - 1, to).await?.map_or(first, |(b, _)| b);
    Ok(Some((first, last)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use async_trait::async_trait;

    use super::*;
    use crate::export::document::{Document, Rendering, Selection};

    /// Stored blocks by slot, with their times.
    struct Times(BTreeMap<u64, Option<i64>>);

    #[async_trait]
    impl DocumentSource for Times {
        async fn blocks(&self, start: u64, end: u64) -> Result<Vec<u64>, String> {
            Ok(self.0.range(start..=end).map(|(s, _)| *s).collect())
        }

        async fn first_block_from(&self, slot: u64) -> Result<Option<(u64, Option<i64>)>, String> {
            Ok(self.0.range(slot..).next().map(|(s, t)| (*s, *t)))
        }

        async fn documents(&self, _: u64, _: &Selection, _: &Rendering) -> Result<Vec<Document>, String> {
            Ok(Vec::new())
        }

        fn registry_version(&self) -> &'static str {
            "test"
        }
    }

    #[tokio::test]
    async fn a_window_selects_the_blocks_whose_time_falls_in_it() {
        // Slots with skipped ones between, times rising (two blocks may share a second).
        let store = Times(BTreeMap::from([
            (10, None),
            (12, Some(1_000)),
            (13, Some(1_000)),
            (20, Some(1_010)),
            (25, Some(1_020)),
            (26, Some(1_030)),
        ]));
        let window = |start, end| TimeWindow { start, end };
        assert_eq!(slots_of(&store, window(1_000, 1_020), 0, 100).await, Ok(Some((12, 20))));
        assert_eq!(slots_of(&store, window(1_001, 1_021), 0, 100).await, Ok(Some((20, 25))));
        assert_eq!(slots_of(&store, window(0, 1_000), 0, 100).await, Ok(None), "an untimed block is in no window");
        assert_eq!(slots_of(&store, window(1_030, 2_000), 0, 100).await, Ok(Some((26, 26))));
        assert_eq!(slots_of(&store, window(1_011, 1_019), 0, 100).await, Ok(None), "no block in between");
        assert_eq!(slots_of(&store, window(900, 5_000), 13, 25).await, Ok(Some((13, 25))), "within the range only");
    }
}
