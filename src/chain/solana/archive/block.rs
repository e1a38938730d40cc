//! One block's DAG ↔ a [`SolanaBlock`] (format note §5–§7): the Block node,
//! its Entries in ledger order, their Transactions (wire bytes + zstd status
//! metadata), and its Rewards. [`Assembler`] resolves a block from the
//! sections read since the previous one, checking what the archive itself
//! proves (every link present, slots and indexes consistent); [`encode`]
//! writes a block as Old Faithful's generator lays it out, children first.

use std::collections::HashMap;

use cid::Cid;
use prost::Message;
use solana_hash::Hash;
use solana_storage_proto::StoredTransactionStatusMeta;
use solana_storage_proto::convert::generated;
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction_status::{
    ConfirmedBlock, EntrySummary, RewardsAndNumPartitions, TransactionStatusMeta, TransactionWithStatusMeta,
    VersionedTransactionWithStatusMeta,
};

use super::car::cid_of;
use super::frames::{self, FrameError};
use super::node::{BlockNode, DataFrame, EntryNode, Node, RewardsNode, SlotMeta, TransactionNode};
use crate::chain::solana::SolanaBlock;

/// Why a block's DAG does not make a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("{what} {cid} is not in the archive before its block")]
    MissingNode { what: String, cid: Cid },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{what}: {source}")]
    Frame { what: String, source: FrameError },
}

fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> BlockError {
    BlockError::Invalid { what: what.into(), reason: reason.to_string() }
}

/// The sections read since the last block, by CID.
#[derive(Default)]
pub struct Assembler {
    frames: HashMap<Cid, DataFrame>,
    nodes: HashMap<Cid, Node>,
    bytes: usize,
}

impl Assembler {
    pub fn hold(&mut self, cid: Cid, node: Node, bytes: usize) {
        self.bytes += bytes;
        match node {
            Node::DataFrame(frame) => {
                self.frames.insert(cid, frame);
            }
            node => {
                self.nodes.insert(cid, node);
            }
        }
    }

    /// The hash of a held Entry node.
    pub fn entry_hash(&self, cid: &Cid) -> Option<[u8; 32]> {
        match self.nodes.get(cid) {
            Some(Node::Entry(entry)) => Some(entry.hash),
            _ => None,
        }
    }

    /// The blockhash of `node` (its last entry's hash), if that entry is held.
    pub fn blockhash(&self, node: &BlockNode) -> Option<String> {
        let last = node.entries.last()?;
        self.entry_hash(last).map(|hash| Hash::new_from_array(hash).to_string())
    }

    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.nodes.clear();
        self.bytes = 0;
    }

    /// The block `node` links, from the held sections. `previous_blockhash`:
    /// the parent's last entry hash (`None`: slot 0, which uses its own).
    pub fn assemble(&self, node: &BlockNode, previous_blockhash: Option<String>) -> Result<SolanaBlock, BlockError> {
        let slot = node.slot;
        let mut transactions = Vec::new();
        let mut entries = Vec::with_capacity(node.entries.len());
        for (position, cid) in node.entries.iter().enumerate() {
            let entry = match self.nodes.get(cid) {
                Some(Node::Entry(entry)) => entry,
                _ => return Err(BlockError::MissingNode { what: format!("entry {position}"), cid: *cid }),
            };
            entries.push(EntrySummary {
                num_hashes: entry.num_hashes,
                hash: Hash::new_from_array(entry.hash),
                num_transactions: entry.transactions.len() as u64,
                starting_transaction_index: transactions.len(),
            });
            for cid in &entry.transactions {
                let index = transactions.len();
                let what = format!("transaction {index}");
                let tx = match self.nodes.get(cid) {
                    Some(Node::Transaction(tx)) => tx,
                    _ => return Err(BlockError::MissingNode { what, cid: *cid }),
                };
                if tx.slot != slot {
                    return Err(invalid(what, format!("says slot {}", tx.slot)));
                }
                if tx.index.is_some_and(|i| i != index as u64) {
                    return Err(invalid(what, format!("says index {}", tx.index.unwrap_or_default())));
                }
                transactions.push(self.transaction(tx, &what)?);
            }
        }
        let last = entries.last().ok_or_else(|| invalid("block", "has no entries"))?;
        let blockhash = last.hash.to_string();
        // The stand-in entry `encode` writes for a block stored without entries
        // (a block of one entry without hashes: no real slot's PoH looks so) is not kept as one.
        if let [entry] = entries.as_slice() {
            if entry.num_hashes == 0 {
                entries.clear();
            }
        }
        let RewardsAndNumPartitions { rewards, num_partitions } = match node.rewards {
            None => RewardsAndNumPartitions { rewards: Vec::new(), num_partitions: None },
            Some(cid) => match self.nodes.get(&cid) {
                Some(Node::Rewards(rewards)) => self.rewards(rewards)?,
                _ => return Err(BlockError::MissingNode { what: "rewards".into(), cid }),
            },
        };
        let confirmed = ConfirmedBlock {
            previous_blockhash: previous_blockhash.unwrap_or_else(|| blockhash.clone()),
            blockhash,
            parent_slot: node.meta.parent_slot,
            transactions,
            rewards,
            num_partitions,
            block_time: (node.meta.blocktime != 0).then_some(node.meta.blocktime),
            block_height: node.meta.block_height,
        };
        Ok(SolanaBlock { confirmed, entries })
    }

    fn payload(&self, frame: &DataFrame, what: &str) -> Result<Vec<u8>, BlockError> {
        frames::reassemble(frame, &self.frames).map_err(|source| BlockError::Frame { what: what.into(), source })
    }

    fn transaction(&self, tx: &TransactionNode, what: &str) -> Result<TransactionWithStatusMeta, BlockError> {
        let data = self.payload(&tx.data, &format!("{what} data"))?;
        let transaction: VersionedTransaction =
            bincode::deserialize(&data).map_err(|e| invalid(what, format!("not a wire-format transaction: {e}")))?;
        let metadata = self.payload(&tx.metadata, &format!("{what} metadata"))?;
        if metadata.is_empty() {
            return transaction
                .into_legacy_transaction()
                .map(TransactionWithStatusMeta::MissingMetadata)
                .ok_or_else(|| invalid(what, "a versioned transaction without status metadata (agave keeps none)"));
        }
        let raw = unzstd(&metadata).map_err(|e| invalid(what, format!("metadata: {e}")))?;
        let meta = decode_meta(&raw).map_err(|reason| invalid(what, reason))?;
        Ok(TransactionWithStatusMeta::Complete(VersionedTransactionWithStatusMeta { transaction, meta }))
    }

    fn rewards(&self, node: &RewardsNode) -> Result<RewardsAndNumPartitions, BlockError> {
        let data = self.payload(&node.data, "rewards")?;
        let raw = unzstd(&data).map_err(|e| invalid("rewards", e))?;
        if let Ok(proto) = generated::Rewards::decode(raw.as_slice()) {
            return Ok(proto.into());
        }
        // Old archives: bincode `StoredExtendedRewards`, or the earliest form, (pubkey, lamports) only.
        if let Ok(stored) = bincode::deserialize::<solana_storage_proto::StoredExtendedRewards>(&raw) {
            return Ok(RewardsAndNumPartitions {
                rewards: stored.into_iter().map(Into::into).collect(),
                num_partitions: None,
            });
        }
        let earliest: Vec<(String, i64)> =
            bincode::deserialize(&raw).map_err(|e| invalid("rewards", format!("neither protobuf nor bincode: {e}")))?;
        let rewards = earliest
            .into_iter()
            .map(|(pubkey, lamports)| solana_transaction_status::Reward {
                pubkey,
                lamports,
                post_balance: 0,
                reward_type: None,
                commission: None,
                commission_bps: None,
            })
            .collect();
        Ok(RewardsAndNumPartitions { rewards, num_partitions: None })
    }
}

/// Decompressed payloads beyond this are refused (a zstd bomb, not a block).
const MAX_DECOMPRESSED: u64 = 512 << 20;

thread_local! {
    /// One zstd context per thread, reused: creating one per payload was the
    /// reader's largest cost (18% of an archive ingest's cycles, `perf`).
    static DECOMPRESSOR: std::cell::RefCell<zstd::zstd_safe::DCtx<'static>> =
        std::cell::RefCell::new(zstd::zstd_safe::DCtx::create());
    static COMPRESSOR: std::cell::RefCell<zstd::bulk::Compressor<'static>> =
        std::cell::RefCell::new(zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("a zstd level in range"));
}

/// A zstd payload (streaming: Old Faithful's frames may lack the content size), bounded.
fn unzstd(data: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    DECOMPRESSOR.with(|context| {
        let mut context = context.borrow_mut();
        context
            .reset(zstd::zstd_safe::ResetDirective::SessionOnly)
            .map_err(|code| format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))?;
        let decoder = zstd::stream::read::Decoder::with_context(data, &mut context);
        let mut raw = Vec::new();
        decoder.take(MAX_DECOMPRESSED + 1).read_to_end(&mut raw).map_err(|e| format!("not zstd: {e}"))?;
        if raw.len() as u64 > MAX_DECOMPRESSED {
            return Err(format!("decompresses to over {MAX_DECOMPRESSED} bytes"));
        }
        Ok(raw)
    })
}

fn compress(data: &[u8]) -> Vec<u8> {
    COMPRESSOR.with(|compressor| compressor.borrow_mut().compress(data).expect("compressing to memory"))
}

/// The previous blockhash of a block being read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Previous {
    /// The previous block's last entry hash.
    Known(String),
    /// Slot 0: its own blockhash.
    Genesis,
    /// The parent (this slot) is not in the file: the source looks it up.
    Unknown(u64),
}

/// A block's node with the sections it links, taken from the reader so that
/// the costly part (frames, zstd, protobuf, transactions) runs off the
/// reader's thread, several blocks at once.
pub struct Unassembled {
    pub node: BlockNode,
    pub sections: Assembler,
    pub previous: Previous,
}

impl Unassembled {
    pub fn assemble(&self) -> Result<SolanaBlock, BlockError> {
        let previous = match &self.previous {
            Previous::Known(hash) => Some(hash.clone()),
            Previous::Genesis => None,
            Previous::Unknown(parent) => {
                return Err(invalid(
                    "block",
                    format!(
                        "the parent, slot {parent}, is not in this archive nor in the store: its blockhash is unknown (ingest the epoch holding it first)"
                    ),
                ));
            }
        };
        self.sections.assemble(&self.node, previous)
    }
}

/// Status metadata as the validator stored it: protobuf, or the legacy
/// bincode form (a first byte of 0 or 1 is no protobuf tag).
fn decode_meta(raw: &[u8]) -> Result<TransactionStatusMeta, String> {
    if !matches!(raw.first(), Some(0 | 1)) {
        if let Ok(proto) = generated::TransactionStatusMeta::decode(raw) {
            // agave's conversion unwraps a return-data program id of any other length.
            if let Some(data) = proto.return_data.as_ref().filter(|_| !proto.return_data_none) {
                if data.program_id.len() != 32 {
                    return Err(format!("return data program id is {} bytes, not 32", data.program_id.len()));
                }
            }
            return TransactionStatusMeta::try_from(proto).map_err(|e| format!("protobuf metadata: {e}"));
        }
    }
    let stored: StoredTransactionStatusMeta =
        bincode::deserialize(raw).map_err(|e| format!("metadata is neither protobuf nor bincode: {e}"))?;
    Ok(stored.into())
}

/// Section limits of the writer (format note §4): 1 MiB, which every reader
/// of Old Faithful archives accepts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_section: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_section: 1 << 20 }
    }
}

/// zstd level of written metadata and rewards.
const ZSTD_LEVEL: i32 = 3;

/// A block's sections in the order Old Faithful writes them (each
/// transaction's extra frames, the transaction, each entry; the rewards; the
/// block last), and the Block's CID. A block stored without entries (from a
/// node's `getBlock`, which has none) is written as one entry holding every
/// transaction, with `numHashes` 0 and the blockhash as its hash: readable,
/// but not a PoH proof.
pub fn encode(slot: u64, block: &SolanaBlock, limits: Limits) -> Result<(Vec<(Cid, Vec<u8>)>, Cid), BlockError> {
    // Room for a node's own fields beside its frame (format note §4).
    let max = limits.max_section.max(4096);
    let (first_tx_frame, other_frame) = ((max - 400) / 2, max - 300);
    let confirmed = &block.confirmed;
    let entries = if block.entries.is_empty() {
        let hash: Hash = confirmed.blockhash.parse().map_err(|e| invalid("blockhash", e))?;
        vec![EntrySummary {
            num_hashes: 0,
            hash,
            num_transactions: confirmed.transactions.len() as u64,
            starting_transaction_index: 0,
        }]
    } else {
        block.entries.clone()
    };
    let mut sections = Vec::new();
    let mut entry_cids = Vec::new();
    for (position, entry) in entries.iter().enumerate() {
        let start = entry.starting_transaction_index;
        let end = start + entry.num_transactions as usize;
        let txs = confirmed.transactions.get(start..end).ok_or_else(|| {
            invalid(
                format!("entry {position}"),
                format!("transactions {start}..{end} of {}", confirmed.transactions.len()),
            )
        })?;
        let mut tx_cids = Vec::new();
        for (offset, tx) in txs.iter().enumerate() {
            let index = start + offset;
            let (data, metadata) = transaction_payloads(tx);
            let data = frames::split(&data, first_tx_frame, other_frame, cid_of);
            let metadata = frames::split(&metadata, first_tx_frame, other_frame, cid_of);
            sections.extend(data.extra);
            sections.extend(metadata.extra);
            let node = Node::Transaction(TransactionNode {
                data: data.first,
                metadata: metadata.first,
                slot,
                index: Some(index as u64),
            });
            tx_cids.push(push(&mut sections, &node));
        }
        let node =
            Node::Entry(EntryNode { num_hashes: entry.num_hashes, hash: entry.hash.to_bytes(), transactions: tx_cids });
        entry_cids.push(push(&mut sections, &node));
    }
    let covered: usize = entries.iter().map(|e| e.num_transactions as usize).sum();
    if covered != confirmed.transactions.len() {
        return Err(invalid(
            "entries",
            format!("hold {covered} transactions, the block {}", confirmed.transactions.len()),
        ));
    }
    let rewards = if confirmed.rewards.is_empty() && confirmed.num_partitions.is_none() {
        None
    } else {
        let proto = generated::Rewards::from(RewardsAndNumPartitions {
            rewards: confirmed.rewards.clone(),
            num_partitions: confirmed.num_partitions,
        });
        let data = compress(&proto.encode_to_vec());
        let data = frames::split(&data, max - 563, other_frame, cid_of);
        sections.extend(data.extra);
        Some(push(&mut sections, &Node::Rewards(RewardsNode { slot, data: data.first })))
    };
    let node = Node::Block(BlockNode {
        slot,
        shredding: (0..entry_cids.len() as u64).map(|entry| (entry, -1)).collect(),
        entries: entry_cids,
        meta: SlotMeta {
            parent_slot: confirmed.parent_slot,
            blocktime: confirmed.block_time.unwrap_or(0),
            block_height: confirmed.block_height,
            block_height_absent: false,
        },
        rewards,
    });
    let cid = push(&mut sections, &node);
    Ok((sections, cid))
}

fn push(sections: &mut Vec<(Cid, Vec<u8>)>, node: &Node) -> Cid {
    let bytes = node.encode();
    let cid = cid_of(&bytes);
    sections.push((cid, bytes));
    cid
}

/// Wire bytes, and zstd of the protobuf status metadata (empty: none).
fn transaction_payloads(tx: &TransactionWithStatusMeta) -> (Vec<u8>, Vec<u8>) {
    match tx {
        TransactionWithStatusMeta::MissingMetadata(legacy) => {
            let versioned = VersionedTransaction::from(legacy.clone());
            (bincode::serialize(&versioned).expect("a transaction serializes"), Vec::new())
        }
        TransactionWithStatusMeta::Complete(complete) => {
            let data = bincode::serialize(&complete.transaction).expect("a transaction serializes");
            let meta = generated::TransactionStatusMeta::from(complete.meta.clone()).encode_to_vec();
            (data, compress(&meta))
        }
    }
}
