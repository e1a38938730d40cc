//! Blocks out of one epoch archive, in file order (format note §6: each
//! block's sections precede its Block node). Every section's CID is checked;
//! a section that is bad spoils the block it belongs to (which becomes a gap
//! naming the file offset and slot) and reading goes on; a file that ends or
//! cannot be read mid-section stops the read. Blocks below a start slot are
//! read, checked and passed over (a stream cannot seek; the archive's
//! offset indexes, which could, are not read yet).

use std::collections::HashSet;

use cid::Cid;
use tokio::io::AsyncBufRead;

use super::block::{Assembler, BlockError};
use super::car::{CarError, CarReader};
use super::node::{BlockNode, EpochNode, Node, NodeError, SubsetNode};
use crate::chain::solana::SolanaBlock;

/// What is wrong, where: the file, the offset of the section, and the slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("archive {file}: {}{}: {kind}", offset.map(|o| format!("offset {o}")).unwrap_or_default(), slot.map(|s| format!(", slot {s}")).unwrap_or_default())]
pub struct ArchiveError {
    pub file: String,
    pub offset: Option<u64>,
    pub slot: Option<u64>,
    pub kind: ArchiveErrorKind,
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

impl ArchiveErrorKind {
    /// The reason as a status or Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ArchiveErrorKind::Car(CarError::Truncated { .. }) => "ArchiveTruncated",
            ArchiveErrorKind::Car(CarError::CidMismatch { .. }) => "ArchiveCidMismatch",
            ArchiveErrorKind::Car(_) => "ArchiveUnreadable",
            ArchiveErrorKind::Node(NodeError::UnknownKind(_)) => "ArchiveUnknownNode",
            ArchiveErrorKind::Node(_) => "ArchiveMalformedNode",
            ArchiveErrorKind::Block(BlockError::MissingNode { .. }) => "ArchiveMissingNode",
            ArchiveErrorKind::Block(_) => "ArchiveInvalidBlock",
            ArchiveErrorKind::Chain(_) => "ArchiveBrokenChain",
        }
    }
}

/// One block read: its slot, where its Block node sits, and the block or why it is unusable.
pub struct ReadBlock {
    pub slot: u64,
    pub offset: u64,
    pub block: Result<SolanaBlock, ArchiveError>,
}

/// What the archive says it holds, read from its Subset and Epoch nodes at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Slots the archive covers: every slot in them without a block was skipped.
    pub slots: Option<(u64, u64)>,
    /// Blocks its Subsets link that the file did not hold.
    pub missing_blocks: usize,
}

pub struct BlockReader<R> {
    car: CarReader<R>,
    file: String,
    assembler: Assembler,
    /// The previous block's slot and blockhash.
    previous: Option<(u64, String)>,
    /// The first bad section since the last block: it spoils that block.
    spoiled: Option<(u64, ArchiveErrorKind)>,
    /// A block whose parent is not in this file, held (with its sections)
    /// until [`resolve_parent`](Self::resolve_parent) gives the parent's blockhash.
    unresolved: Option<(u64, BlockNode)>,
    seen_blocks: HashSet<Cid>,
    subsets: Vec<SubsetNode>,
    epoch: Option<EpochNode>,
    epoch_slots: u64,
}

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
            unresolved: None,
            seen_blocks: HashSet::new(),
            subsets: Vec::new(),
            epoch: None,
            epoch_slots,
        })
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// The slot of the last block read.
    pub fn last_slot(&self) -> Option<u64> {
        self.previous.as_ref().map(|(slot, _)| *slot)
    }

    fn error(&self, offset: u64, slot: Option<u64>, kind: impl Into<ArchiveErrorKind>) -> ArchiveError {
        ArchiveError { file: self.file.clone(), offset: Some(offset), slot, kind: kind.into() }
    }

    /// The next block at or above `from` (blocks below are passed over), or
    /// the archive's coverage at its end.
    pub async fn next(&mut self, from: u64) -> Result<Next, ArchiveError> {
        if self.unresolved.take().is_some() {
            self.assembler.clear();
        }
        loop {
            let offset = self.car.position();
            let section = match self.car.next(true).await {
                Ok(Some(section)) => section,
                Ok(None) => return Ok(Next::End(self.coverage())),
                Err(e @ CarError::CidMismatch { .. }) => {
                    self.spoiled.get_or_insert((offset, e.into()));
                    continue;
                }
                Err(e) => return Err(self.error(offset, None, e)),
            };
            let node = match Node::decode(&section.node) {
                Ok(node) => node,
                Err(e) => {
                    self.spoiled.get_or_insert((offset, e.into()));
                    continue;
                }
            };
            match node {
                Node::Block(block) => {
                    self.seen_blocks.insert(section.cid);
                    if block.slot >= from {
                        return Ok(Next::Block(self.finish_block(offset, &block)));
                    }
                    self.pass_over(&block);
                }
                Node::Subset(subset) => self.subsets.push(subset),
                Node::Epoch(epoch) => self.epoch = Some(epoch),
                node => self.assembler.hold(section.cid, node),
            }
        }
    }

    /// A block below the start: only its blockhash is kept, for the next block's previous blockhash.
    fn pass_over(&mut self, node: &BlockNode) {
        let hash = node.entries.last().and_then(|cid| self.assembler.entry_hash(cid));
        self.previous = hash.map(|hash| (node.slot, solana_hash::Hash::new_from_array(hash).to_string()));
        self.assembler.clear();
        self.spoiled = None;
    }

    /// The parent slot of the block just read, when its blockhash is needed
    /// from elsewhere (the parent is in the previous epoch's archive).
    pub fn unresolved_parent(&self) -> Option<u64> {
        self.unresolved.as_ref().map(|(_, node)| node.meta.parent_slot)
    }

    /// The block just read, assembled with its parent's blockhash.
    pub fn resolve_parent(&mut self, blockhash: String) -> Option<ReadBlock> {
        let (offset, node) = self.unresolved.take()?;
        let block = self.assembler.assemble(&node, Some(blockhash)).map_err(|e| self.error(offset, Some(node.slot), e));
        self.assembler.clear();
        self.previous = block.as_ref().ok().map(|b| (node.slot, b.confirmed.blockhash.clone()));
        Some(ReadBlock { slot: node.slot, offset, block })
    }

    fn finish_block(&mut self, offset: u64, node: &BlockNode) -> ReadBlock {
        let slot = node.slot;
        let spoiled = self.spoiled.is_some();
        let block = self.block(offset, node);
        if self.previous.is_none() && slot != 0 && !spoiled && block.is_err() {
            // Kept for resolve_parent: the sections stay held until the next read.
            self.unresolved = Some((offset, node.clone()));
            return ReadBlock { slot, offset, block };
        }
        // A spoiled block still links the next one when its last entry is intact.
        let hash = match &block {
            Ok(block) => Some(block.confirmed.blockhash.clone()),
            Err(_) => node
                .entries
                .last()
                .and_then(|cid| self.assembler.entry_hash(cid))
                .map(|hash| solana_hash::Hash::new_from_array(hash).to_string()),
        };
        self.previous = hash.map(|hash| (slot, hash));
        self.assembler.clear();
        self.spoiled = None;
        ReadBlock { slot, offset, block }
    }

    fn block(&mut self, offset: u64, node: &BlockNode) -> Result<SolanaBlock, ArchiveError> {
        let slot = node.slot;
        if let Some((at, kind)) = self.spoiled.take() {
            return Err(self.error(at, Some(slot), kind));
        }
        let previous_blockhash = match &self.previous {
            Some((previous, hash)) => {
                if node.meta.parent_slot != *previous || slot <= *previous {
                    let reason = format!(
                        "parent slot {} does not follow the previous block, slot {previous}",
                        node.meta.parent_slot
                    );
                    return Err(self.error(offset, Some(slot), ArchiveErrorKind::Chain(reason)));
                }
                Some(hash.clone())
            }
            None if slot == 0 => None,
            None => {
                let reason = format!(
                    "the parent, slot {}, is not in this archive: its blockhash is unknown",
                    node.meta.parent_slot
                );
                return Err(self.error(offset, Some(slot), ArchiveErrorKind::Chain(reason)));
            }
        };
        self.assembler.assemble(node, previous_blockhash).map_err(|e| self.error(offset, Some(slot), e))
    }

    fn coverage(&self) -> Coverage {
        let linked: Vec<&Cid> = self.subsets.iter().flat_map(|s| &s.blocks).collect();
        let missing_blocks = linked.iter().filter(|cid| !self.seen_blocks.contains(cid)).count();
        let slots = match &self.epoch {
            Some(epoch) => Some((epoch.epoch * self.epoch_slots, (epoch.epoch + 1) * self.epoch_slots - 1)),
            None => {
                let first = self.subsets.iter().map(|s| s.first).min();
                let last = self.subsets.iter().map(|s| s.last).max();
                first.zip(last)
            }
        };
        Coverage { slots, missing_blocks }
    }
}

pub enum Next {
    Block(ReadBlock),
    End(Coverage),
}
