//! Payloads larger than a section split into DataFrames (format note §4):
//! frame 0 inline in its parent, the others as their own sections, chained
//! in groups of five, every frame carrying the CRC-64/GO-ISO of the whole
//! payload. [`split`] writes that shape; [`reassemble`] walks any shape.

use std::collections::HashMap;

use cid::Cid;

use super::node::DataFrame;

const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);
/// Links per group of frames.
const GROUP: usize = 5;

pub fn crc64(payload: &[u8]) -> u64 {
    CRC64.checksum(payload)
}

/// FNV-1a 64, the frame hash of early archives.
pub fn fnv1a(payload: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(payload);
    hasher.finish()
}

/// A payload as frames: frame 0 (inline) and the extra frames with their
/// CIDs, in the order they are written (descending index, before the parent).
pub struct Split {
    pub first: DataFrame,
    pub extra: Vec<(Cid, Vec<u8>)>,
}

/// Splits `payload` so that frame 0 holds at most `first_max` bytes and every
/// other frame at most `rest_max`.
pub fn split(payload: &[u8], first_max: usize, rest_max: usize, cid_of: impl Fn(&[u8]) -> Cid) -> Split {
    if payload.len() <= first_max {
        return Split { first: DataFrame::single(payload.to_vec()), extra: Vec::new() };
    }
    let mut chunks = vec![&payload[..first_max]];
    chunks.extend(payload[first_max..].chunks(rest_max.max(1)));
    let total = chunks.len();
    let hash = crc64(payload);
    let frame = |index: usize, next: Vec<Cid>| DataFrame {
        hash: Some(hash),
        index: Some(index as u64),
        total: Some(total as u64),
        data: chunks[index].to_vec(),
        next: Some(next),
    };
    // Frames 1..total in groups of five from the end; frame 0 links the
    // first (possibly short) group, the last frame of each group links the next.
    let rest = total - 1;
    let head = match rest % GROUP {
        0 => GROUP.min(rest),
        short => short,
    };
    let mut groups = vec![1..=head];
    let mut start = head + 1;
    while start < total {
        groups.push(start..=start + GROUP - 1);
        start += GROUP;
    }
    let mut extra = Vec::new();
    let mut next_links: Vec<Cid> = Vec::new();
    for group in groups.iter().rev() {
        let mut cids = Vec::new();
        for index in group.clone().rev() {
            let links = if index == *group.end() { std::mem::take(&mut next_links) } else { Vec::new() };
            let bytes = super::node::Node::DataFrame(frame(index, links)).encode();
            let cid = cid_of(&bytes);
            cids.push(cid);
            extra.push((cid, bytes));
        }
        cids.reverse();
        next_links = cids;
    }
    Split { first: frame(0, next_links), extra }
}

/// Why frames do not make a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame {0} is not in the archive before its parent")]
    Missing(Cid),
    #[error("{found} frames of {total}, indexes not 0..{total}")]
    Incomplete { found: usize, total: u64 },
    #[error("payload hash {expected:#018x} matches neither CRC-64 ({crc:#018x}) nor FNV-1a ({fnv:#018x})")]
    Hash { expected: u64, crc: u64, fnv: u64 },
}

/// The whole payload of `first`, fetching extra frames from `frames` by CID.
pub fn reassemble(first: &DataFrame, frames: &HashMap<Cid, DataFrame>) -> Result<Vec<u8>, FrameError> {
    let Some(next) = first.next.as_ref().filter(|next| !next.is_empty()) else {
        return match first.total {
            Some(total) if total > 1 => Err(FrameError::Incomplete { found: 1, total }),
            _ => Ok(first.data.clone()),
        };
    };
    let mut collected = vec![first];
    let mut pending: Vec<Cid> = next.iter().rev().copied().collect();
    while let Some(cid) = pending.pop() {
        let frame = frames.get(&cid).ok_or(FrameError::Missing(cid))?;
        collected.push(frame);
        if collected.len() > frames.len() + 1 {
            break; // a cycle: reported as incomplete below
        }
        pending.extend(frame.next.iter().flatten().rev().copied());
    }
    collected.sort_by_key(|frame| frame.index.unwrap_or(0));
    let total = first.total.unwrap_or(collected.len() as u64);
    let contiguous = collected.iter().enumerate().all(|(i, frame)| frame.index.unwrap_or(0) == i as u64);
    if collected.len() as u64 != total || !contiguous {
        return Err(FrameError::Incomplete { found: collected.len(), total });
    }
    let payload: Vec<u8> = collected.iter().flat_map(|frame| frame.data.iter().copied()).collect();
    if let Some(expected) = first.hash {
        let (crc, fnv) = (crc64(&payload), fnv1a(&payload));
        if expected != crc && expected != fnv {
            return Err(FrameError::Hash { expected, crc, fnv });
        }
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::solana::archive::car::cid_of;
    use crate::chain::solana::archive::node::Node;

    #[test]
    fn crc64_is_go_iso() {
        assert_eq!(crc64(b"123456789"), 0xb90956c775a41001);
        assert_eq!(crc64(b"hello world"), 13388989860809387070);
    }

    fn frames_of(split: &Split) -> HashMap<Cid, DataFrame> {
        split
            .extra
            .iter()
            .map(|(cid, bytes)| match Node::decode(bytes).unwrap() {
                Node::DataFrame(frame) => (*cid, frame),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// The chaining of the format note's n = 28 example: 0→[1,2], 2→[3..7], …, 22→[23..27].
    #[test]
    fn twenty_eight_frames_chain_as_old_faithful_chains_them() {
        let payload: Vec<u8> = (0..28u8).collect();
        let split = split(&payload, 1, 1, cid_of);
        assert_eq!(split.extra.len(), 27);
        let frames = frames_of(&split);
        let index_of = |cid: &Cid| frames[cid].index.unwrap();
        let links = |frame: &DataFrame| frame.next.as_ref().unwrap().iter().map(index_of).collect::<Vec<_>>();
        assert_eq!(links(&split.first), [1, 2]);
        let by_index: HashMap<u64, &DataFrame> = frames.values().map(|f| (f.index.unwrap(), f)).collect();
        assert_eq!(links(by_index[&2]), [3, 4, 5, 6, 7]);
        assert_eq!(links(by_index[&22]), [23, 24, 25, 26, 27]);
        assert!(links(by_index[&26]).is_empty() && links(by_index[&27]).is_empty());
        // Written before the parent, in descending index.
        let written: Vec<u64> = split.extra.iter().map(|(cid, _)| index_of(cid)).collect();
        assert_eq!(written, (1..28).rev().collect::<Vec<_>>());
        assert_eq!(reassemble(&split.first, &frames).unwrap(), payload);
    }

    #[test]
    fn a_missing_or_altered_frame_is_an_error() {
        let payload = vec![9u8; 100];
        let split = split(&payload, 10, 20, cid_of);
        let mut frames = frames_of(&split);
        let (gone, _) = split.extra.last().unwrap().clone();
        let kept = frames.remove(&gone).unwrap();
        assert_eq!(reassemble(&split.first, &frames), Err(FrameError::Missing(gone)));
        let mut altered = kept;
        altered.data[0] ^= 1;
        frames.insert(gone, altered);
        assert!(matches!(reassemble(&split.first, &frames), Err(FrameError::Hash { .. })));
    }

    #[test]
    fn a_small_payload_is_one_frame() {
        let split = split(b"abc", 10, 10, cid_of);
        assert_eq!(split.first, DataFrame::single(b"abc".to_vec()));
        assert!(split.extra.is_empty());
    }
}
