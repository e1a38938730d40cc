//! Blocks out of one epoch archive, in file order (format note §6: each
//! block's sections precede its Block node). Every section's CID is checked;
//! a section that is bad spoils the block it belongs to (which becomes a gap
//! naming the file offset and slot) and reading goes on; a file that ends or
//! cannot be read mid-section stops the read. Blocks below a start slot are
//! read, checked and passed over (a stream cannot seek; the archive's
//! offset indexes, which could, are not read yet).

use std::collections::{HashSet, VecDeque};

use cid::Cid;
use tokio::io::AsyncBufRead;

use super::block::{Assembler, BlockError, Previous, Unassembled};
use super::car::{CarError, CarReader};
use super::node::{BlockNode, EpochNode, Node, NodeError, SubsetNode};
use crate::chain::solana::SolanaBlock;

/// What is wrong, where: the file, the offset of the section, and the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveError {
    pub file: String,
    pub offset: Option<u64>,
    pub slot: Option<u64>,
    pub kind: ArchiveErrorKind,
}

impl std::error::Error for ArchiveError {}

/// `archive FILE: offset N, slot S: what` (a CAR error names its own offset).
impl std::fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "archive {}: ", self.file)?;
        match (&self.kind, self.offset) {
            (ArchiveErrorKind::Car(_), _) | (_, None) => {}
            (_, Some(offset)) => write!(f, "offset {offset}, ")?,
        }
        if let Some(slot) = self.slot {
            write!(f, "slot {slot}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveErrorKind {
    #[error(transparent)]
    Car(#[from] CarError),
    #[error("node: {0}")]
    Node(#[from] NodeError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("{0}")]
    Chain(String),
}

/// One block read: its slot, where its Block node sits, and the block (still
/// to assemble, [`Pending::assemble`]) or why it is unusable.
pub struct ReadBlock {
    pub slot: u64,
    pub offset: u64,
    pub block: Result<Pending, ArchiveError>,
}

/// A block whose sections are all read and checked, to assemble.
pub struct Pending {
    pub file: String,
    pub offset: u64,
    pub unassembled: Unassembled,
}

impl Pending {
    pub fn slot(&self) -> u64 {
        self.unassembled.node.slot
    }

    /// The slot whose blockhash this block still needs (its parent, in an earlier archive).
    pub fn unknown_parent(&self) -> Option<u64> {
        match self.unassembled.previous {
            Previous::Unknown(parent) => Some(parent),
            _ => None,
        }
    }

    /// Its blockhash (its last entry's hash), without assembling it.
    pub fn blockhash(&self) -> Option<String> {
        self.unassembled.sections.blockhash(&self.unassembled.node)
    }

    pub fn set_previous_blockhash(&mut self, hash: String) {
        self.unassembled.previous = Previous::Known(hash);
    }

    pub fn assemble(&self) -> Result<SolanaBlock, ArchiveError> {
        self.unassembled.assemble().map_err(|e| ArchiveError {
            file: self.file.clone(),
            offset: Some(self.offset),
            slot: Some(self.slot()),
            kind: e.into(),
        })
    }
}

/// What the archive says it holds, read from its Subset and Epoch nodes at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Slots the archive covers: every slot in them without a block was skipped.
    pub slots: Option<(u64, u64)>,
    /// Blocks its Subsets link that the file did not hold.
    pub missing_blocks: usize,
    /// Subsets its Epoch node links that the file did not hold.
    pub missing_subsets: usize,
    /// A bad section after the last block (a damaged Subset or Epoch node).
    pub damaged_tail: Option<String>,
}

pub struct BlockReader<R> {
    car: CarReader<R>,
    file: String,
    assembler: Assembler,
    /// The previous block's slot, and its blockhash when its last entry was readable.
    previous: Option<(u64, Option<String>)>,
    /// The first bad section since the last block: it spoils the next block.
    spoiled: Option<(u64, ArchiveErrorKind)>,
    /// Blocks read and not yet returned (a missing block found with the next one).
    pending: VecDeque<ReadBlock>,
    seen_blocks: HashSet<Cid>,
    /// Blocks reported whose Block node the file does not hold.
    lost_blocks: usize,
    subsets: Vec<SubsetNode>,
    subset_cids: HashSet<Cid>,
    epoch: Option<EpochNode>,
    epoch_slots: u64,
}

/// Sections held without a Block node beyond this are not an archive.
const MAX_HELD_BYTES: usize = 4 << 30;

impl<R: AsyncBufRead + Unpin> BlockReader<R> {
    pub async fn open(reader: R, file: String, epoch_slots: u64) -> Result<Self, ArchiveError> {
        let car = CarReader::open(reader).await.map_err(|e| ArchiveError {
            file: file.clone(),
            offset: Some(0),
            slot: None,
            kind: e.into(),
        })?;
        Ok(Self {
            car,
            file,
            assembler: Assembler::default(),
            previous: None,
            spoiled: None,
            pending: VecDeque::new(),
            seen_blocks: HashSet::new(),
            lost_blocks: 0,
            subsets: Vec::new(),
            subset_cids: HashSet::new(),
            epoch: None,
            epoch_slots,
        })
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// The last block read: its slot and blockhash (when readable).
    pub fn last_block(&self) -> Option<(u64, Option<String>)> {
        self.previous.clone()
    }

    fn error(&self, offset: u64, slot: Option<u64>, kind: impl Into<ArchiveErrorKind>) -> ArchiveError {
        ArchiveError { file: self.file.clone(), offset: Some(offset), slot, kind: kind.into() }
    }

    /// The next block at or above `from` (blocks below are passed over), or
    /// the archive's coverage at its end.
    pub async fn next(&mut self, from: u64) -> Result<Next, ArchiveError> {
        loop {
            if let Some(read) = self.pending.pop_front() {
                return Ok(Next::Block(read));
            }
            let offset = self.car.position();
            let Some(mut section) = self.car.next(true).await.map_err(|e| self.error(offset, None, e))? else {
                return Ok(Next::End(self.coverage()));
            };
            let mismatch = section.mismatch.take();
            match Node::decode(&section.node) {
                Ok(Node::Block(_)) if mismatch.is_some() => {
                    // A damaged Block node: nothing in it is trusted (not even its slot). The next
                    // block's parent names the slot that is missing, and that block is spoiled.
                    self.spoiled.get_or_insert((offset, mismatch.expect("matched above").into()));
                }
                Ok(Node::Block(_)) if self.seen_blocks.contains(&section.cid) => {
                    // A duplicate section of a block already read (tolerated, format note §1).
                }
                Ok(Node::Block(block)) => {
                    self.seen_blocks.insert(section.cid);
                    self.on_block(offset, &block, from);
                }
                Ok(Node::Subset(subset)) if mismatch.is_none() => {
                    self.subset_cids.insert(section.cid);
                    self.subsets.push(subset);
                }
                Ok(Node::Epoch(epoch)) if mismatch.is_none() => self.epoch = Some(epoch),
                Ok(node) if mismatch.is_none() => {
                    self.assembler.hold(section.cid, node, section.node.len());
                    if self.assembler.held_bytes() > MAX_HELD_BYTES {
                        let reason = format!("over {MAX_HELD_BYTES} bytes of sections without a Block node");
                        return Err(self.error(offset, None, ArchiveErrorKind::Chain(reason)));
                    }
                }
                Ok(_) => {
                    self.spoiled.get_or_insert((offset, mismatch.expect("matched above").into()));
                }
                Err(e) => {
                    let kind = match mismatch {
                        Some(mismatch) => mismatch.into(),
                        None => e.into(),
                    };
                    self.spoiled.get_or_insert((offset, kind));
                }
            }
        }
    }

    /// A Block node: the block (or why it is unusable) joins `pending`, after
    /// the gap of a block the file should hold between it and the previous one.
    fn on_block(&mut self, offset: u64, node: &BlockNode, from: u64) {
        let slot = node.slot;
        let previous = self.previous.replace((slot, self.assembler.blockhash(node)));
        let spoiled = self.spoiled.take();
        let chain = |reason: String| ArchiveErrorKind::Chain(reason);
        let parent = node.meta.parent_slot;
        let parent_lost = previous.as_ref().is_some_and(|(previous, _)| parent > *previous && parent < slot);
        if parent_lost {
            // The file lacks the parent's block: a produced slot, so a gap, never "skipped".
            self.lost_blocks += 1;
            if parent >= from {
                let reason = format!("the block at slot {parent}, the parent of slot {slot}, is not in this archive");
                self.pending.push_back(ReadBlock {
                    slot: parent,
                    offset,
                    block: Err(self.error(offset, Some(parent), chain(reason))),
                });
            }
        }
        if slot < from {
            self.assembler.clear();
            return;
        }
        let previous_blockhash = match (&previous, spoiled) {
            (_, Some((at, kind))) => Err((at, kind)),
            (Some((previous, _)), None) if slot <= *previous => {
                Err((offset, chain(format!("slot {slot} does not come after the previous block, slot {previous}"))))
            }
            (Some((previous, hash)), None) if node.meta.parent_slot == *previous => match hash {
                Some(hash) => Ok(Previous::Known(hash.clone())),
                None => Err((
                    offset,
                    chain(format!("the previous block, slot {previous}, is damaged: its blockhash is unknown")),
                )),
            },
            (Some(_), None) if parent_lost => {
                Err((offset, chain(format!("the parent, slot {parent}, is missing from this archive"))))
            }
            (Some((previous, _)), None) => Err((
                offset,
                chain(format!(
                    "parent slot {} does not follow the previous block, slot {previous}",
                    node.meta.parent_slot
                )),
            )),
            (None, None) if slot == 0 => Ok(Previous::Genesis),
            // The file's first block: its parent is in the previous epoch's archive.
            (None, None) => Ok(Previous::Unknown(node.meta.parent_slot)),
        };
        let block = match previous_blockhash {
            Ok(previous) => Ok(Pending {
                file: self.file.clone(),
                offset,
                unassembled: Unassembled {
                    node: node.clone(),
                    sections: std::mem::take(&mut self.assembler),
                    previous,
                },
            }),
            Err((at, kind)) => Err(self.error(at, Some(slot), kind)),
        };
        self.assembler.clear();
        self.pending.push_back(ReadBlock { slot, offset, block });
    }

    fn coverage(&self) -> Coverage {
        let linked: Vec<&Cid> = self.subsets.iter().flat_map(|s| &s.blocks).collect();
        let unseen = linked.iter().filter(|cid| !self.seen_blocks.contains(cid)).count();
        let slots = match &self.epoch {
            Some(epoch) => Some(super::epoch_bounds(epoch.epoch, self.epoch_slots)),
            None => {
                let first = self.subsets.iter().map(|s| s.first).min();
                let last = self.subsets.iter().map(|s| s.last).max();
                first.zip(last)
            }
        };
        let missing_subsets =
            self.epoch.iter().flat_map(|e| &e.subsets).filter(|c| !self.subset_cids.contains(c)).count();
        // Blocks already reported as gaps (found missing from the chain) are not counted twice.
        Coverage {
            slots,
            missing_blocks: unseen.saturating_sub(self.lost_blocks),
            missing_subsets,
            damaged_tail: self.spoiled.as_ref().map(|(offset, kind)| format!("offset {offset}: {kind}")),
        }
    }
}

pub enum Next {
    Block(ReadBlock),
    End(Coverage),
}
