//! The DAG-CBOR nodes of an Old Faithful epoch archive, typed: each node is
//! a CBOR array whose field 0 is its kind (`../shared/design/old-faithful-car-format.md`
//! §3). Decoding goes through `serde_ipld_dagcbor` into `Ipld`; encoding builds
//! the same `Ipld` arrays, so a node we write re-decodes to itself byte for byte.

use cid::Cid;
use ipld_core::ipld::Ipld;

/// The `kind` of each node (field 0).
pub mod kind {
    pub const TRANSACTION: u8 = 0;
    pub const ENTRY: u8 = 1;
    pub const BLOCK: u8 = 2;
    pub const SUBSET: u8 = 3;
    pub const EPOCH: u8 = 4;
    pub const REWARDS: u8 = 5;
    pub const DATA_FRAME: u8 = 6;
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Transaction(TransactionNode),
    Entry(EntryNode),
    Block(BlockNode),
    Subset(SubsetNode),
    Epoch(EpochNode),
    Rewards(RewardsNode),
    DataFrame(DataFrame),
}

/// One part of a payload; frame 0 sits inline in its parent (§4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFrame {
    /// CRC-64/GO-ISO (or FNV-1a in early archives) of the whole payload; `None` for a single frame.
    pub hash: Option<u64>,
    pub index: Option<u64>,
    pub total: Option<u64>,
    pub data: Vec<u8>,
    /// Links to further frames; `None` when the field is absent (a single frame).
    pub next: Option<Vec<Cid>>,
}

impl DataFrame {
    pub fn single(data: Vec<u8>) -> Self {
        Self { hash: None, index: None, total: None, data, next: None }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionNode {
    /// Wire-format `VersionedTransaction`.
    pub data: DataFrame,
    /// zstd of the stored status metadata; empty: none.
    pub metadata: DataFrame,
    pub slot: u64,
    /// Position in the block; absent in archives before mid-2023.
    pub index: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryNode {
    pub num_hashes: u64,
    pub hash: [u8; 32],
    pub transactions: Vec<Cid>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockNode {
    pub slot: u64,
    /// Per entry: (entry index, last data-shred index or −1).
    pub shredding: Vec<(u64, i64)>,
    pub entries: Vec<Cid>,
    pub meta: SlotMeta,
    /// `None`: the dummy link (no rewards).
    pub rewards: Option<Cid>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMeta {
    pub parent_slot: u64,
    /// Unix seconds; 0 = unknown.
    pub blocktime: i64,
    /// `None` and absent are both "unknown"; `absent` keeps which (for re-encoding).
    pub block_height: Option<u64>,
    pub block_height_absent: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubsetNode {
    pub first: u64,
    pub last: u64,
    pub blocks: Vec<Cid>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochNode {
    pub epoch: u64,
    pub subsets: Vec<Cid>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewardsNode {
    pub slot: u64,
    /// zstd of protobuf `Rewards` (bincode in old archives).
    pub data: DataFrame,
}

/// "No object": CIDv1, raw codec, identity multihash of length 0 (`bafkqaaa`).
pub fn dummy_link() -> Cid {
    Cid::new_v1(0x55, cid::multihash::Multihash::wrap(0x00, &[]).expect("an empty identity digest fits"))
}

/// Why a node's bytes are not a node we know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("not DAG-CBOR: {0}")]
    Cbor(String),
    #[error("unknown node kind {0}")]
    UnknownKind(i128),
    #[error("{node}: {reason}")]
    Field { node: &'static str, reason: String },
}

impl Node {
    pub fn decode(bytes: &[u8]) -> Result<Node, NodeError> {
        let ipld: Ipld = serde_ipld_dagcbor::from_slice(bytes).map_err(|e| NodeError::Cbor(e.to_string()))?;
        let Ipld::List(fields) = ipld else {
            return Err(NodeError::Cbor("a node is a CBOR array".into()));
        };
        let kind = match fields.first() {
            Some(Ipld::Integer(kind)) => *kind,
            _ => return Err(NodeError::Cbor("field 0 (kind) is not an integer".into())),
        };
        let f = Fields { name: "node", fields: &fields };
        Ok(match u8::try_from(kind).unwrap_or(u8::MAX) {
            kind::TRANSACTION => {
                let f = f.named("Transaction");
                Node::Transaction(TransactionNode {
                    data: f.frame(1)?,
                    metadata: f.frame(2)?,
                    slot: f.uint(3)?,
                    index: f.opt_uint(4)?,
                })
            }
            kind::ENTRY => {
                let f = f.named("Entry");
                let hash = f.bytes(2)?;
                Node::Entry(EntryNode {
                    num_hashes: f.uint(1)?,
                    hash: hash.try_into().map_err(|_| f.error(2, "the hash is not 32 bytes"))?,
                    transactions: f.links(3)?,
                })
            }
            kind::BLOCK => {
                let f = f.named("Block");
                let shredding = f
                    .list(2)?
                    .iter()
                    .map(|row| match row {
                        Ipld::List(pair) if pair.len() == 2 => {
                            let row = Fields { name: "Block shredding", fields: pair };
                            Ok((row.uint(0)?, row.int(1)?))
                        }
                        _ => Err(f.error(2, "a shredding row is not [entryEndIdx, shredEndIdx]")),
                    })
                    .collect::<Result<_, _>>()?;
                let meta = match f.get(4) {
                    Some(Ipld::List(meta)) => {
                        let m = Fields { name: "SlotMeta", fields: meta };
                        SlotMeta {
                            parent_slot: m.uint(0)?,
                            // Missing or null in early archives: unknown.
                            blocktime: m.opt_int(1)?.unwrap_or(0),
                            block_height: m.opt_uint(2)?,
                            block_height_absent: meta.len() < 3,
                        }
                    }
                    _ => return Err(f.error(4, "meta is not a SlotMeta array")),
                };
                let rewards = f.link(5)?;
                Node::Block(BlockNode {
                    slot: f.uint(1)?,
                    shredding,
                    entries: f.links(3)?,
                    meta,
                    rewards: (rewards != dummy_link()).then_some(rewards),
                })
            }
            kind::SUBSET => {
                let f = f.named("Subset");
                Node::Subset(SubsetNode { first: f.uint(1)?, last: f.uint(2)?, blocks: f.links(3)? })
            }
            kind::EPOCH => {
                let f = f.named("Epoch");
                Node::Epoch(EpochNode { epoch: f.uint(1)?, subsets: f.links(2)? })
            }
            kind::REWARDS => {
                let f = f.named("Rewards");
                Node::Rewards(RewardsNode { slot: f.uint(1)?, data: f.frame(2)? })
            }
            kind::DATA_FRAME => Node::DataFrame(frame_of(&fields)?),
            _ => return Err(NodeError::UnknownKind(kind)),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let list = match self {
            Node::Transaction(tx) => {
                let mut fields =
                    vec![int(kind::TRANSACTION), frame_ipld(&tx.data), frame_ipld(&tx.metadata), int(tx.slot)];
                if let Some(index) = tx.index {
                    fields.push(int(index));
                }
                fields
            }
            Node::Entry(entry) => vec![
                int(kind::ENTRY),
                int(entry.num_hashes),
                Ipld::Bytes(entry.hash.to_vec()),
                links(&entry.transactions),
            ],
            Node::Block(block) => {
                let mut meta = vec![int(block.meta.parent_slot), Ipld::Integer(block.meta.blocktime.into())];
                if !block.meta.block_height_absent {
                    meta.push(block.meta.block_height.map_or(Ipld::Null, int));
                }
                vec![
                    int(kind::BLOCK),
                    int(block.slot),
                    Ipld::List(
                        block
                            .shredding
                            .iter()
                            .map(|(entry, shred)| Ipld::List(vec![int(*entry), Ipld::Integer((*shred).into())]))
                            .collect(),
                    ),
                    links(&block.entries),
                    Ipld::List(meta),
                    Ipld::Link(block.rewards.unwrap_or_else(dummy_link)),
                ]
            }
            Node::Subset(subset) => {
                vec![int(kind::SUBSET), int(subset.first), int(subset.last), links(&subset.blocks)]
            }
            Node::Epoch(epoch) => vec![int(kind::EPOCH), int(epoch.epoch), links(&epoch.subsets)],
            Node::Rewards(rewards) => vec![int(kind::REWARDS), int(rewards.slot), frame_ipld(&rewards.data)],
            Node::DataFrame(frame) => return encode_ipld(&frame_ipld(frame)),
        };
        encode_ipld(&Ipld::List(list))
    }
}

fn encode_ipld(ipld: &Ipld) -> Vec<u8> {
    serde_ipld_dagcbor::to_vec(ipld).expect("integers are in range and maps have string keys")
}

fn int(value: impl Into<i128>) -> Ipld {
    Ipld::Integer(value.into())
}

fn links(cids: &[Cid]) -> Ipld {
    Ipld::List(cids.iter().copied().map(Ipld::Link).collect())
}

fn frame_ipld(frame: &DataFrame) -> Ipld {
    let mut fields = vec![
        int(kind::DATA_FRAME),
        // A u64 hash is stored as an int64: values >= 2^63 are negative (§2).
        frame.hash.map_or(Ipld::Null, |hash| Ipld::Integer((hash as i64).into())),
        frame.index.map_or(Ipld::Null, int),
        frame.total.map_or(Ipld::Null, int),
        Ipld::Bytes(frame.data.clone()),
    ];
    if let Some(next) = &frame.next {
        fields.push(links(next));
    }
    Ipld::List(fields)
}

fn frame_of(fields: &[Ipld]) -> Result<DataFrame, NodeError> {
    let f = Fields { name: "DataFrame", fields };
    match f.get(0) {
        Some(Ipld::Integer(k)) if *k == i128::from(kind::DATA_FRAME) => {}
        _ => return Err(f.error(0, "the kind is not 6")),
    }
    let hash = match f.get(1) {
        None | Some(Ipld::Null) => None,
        Some(Ipld::Integer(value)) => Some(
            u64::try_from(*value)
                .or_else(|_| i64::try_from(*value).map(|signed| signed as u64))
                .map_err(|_| f.error(1, "the hash is not a 64-bit integer"))?,
        ),
        Some(_) => return Err(f.error(1, "the hash is not an integer")),
    };
    Ok(DataFrame {
        hash,
        index: f.opt_uint(2)?,
        total: f.opt_uint(3)?,
        data: f.bytes(4)?.to_vec(),
        next: match f.get(5) {
            None | Some(Ipld::Null) => None,
            Some(_) => Some(f.links(5)?),
        },
    })
}

/// Positional access to a node's fields, with errors that name the node and field.
struct Fields<'a> {
    name: &'static str,
    fields: &'a [Ipld],
}

impl<'a> Fields<'a> {
    fn named(self, name: &'static str) -> Self {
        Self { name, ..self }
    }

    fn error(&self, position: usize, reason: &str) -> NodeError {
        NodeError::Field { node: self.name, reason: format!("field {position}: {reason}") }
    }

    fn get(&self, position: usize) -> Option<&'a Ipld> {
        self.fields.get(position)
    }

    fn int(&self, position: usize) -> Result<i64, NodeError> {
        match self.get(position) {
            Some(Ipld::Integer(value)) => i64::try_from(*value).map_err(|_| self.error(position, "out of range")),
            Some(_) => Err(self.error(position, "not an integer")),
            None => Err(self.error(position, "missing")),
        }
    }

    fn opt_int(&self, position: usize) -> Result<Option<i64>, NodeError> {
        match self.get(position) {
            None | Some(Ipld::Null) => Ok(None),
            Some(_) => self.int(position).map(Some),
        }
    }

    fn uint(&self, position: usize) -> Result<u64, NodeError> {
        match self.get(position) {
            Some(Ipld::Integer(value)) => u64::try_from(*value).map_err(|_| self.error(position, "negative")),
            Some(_) => Err(self.error(position, "not an integer")),
            None => Err(self.error(position, "missing")),
        }
    }

    fn opt_uint(&self, position: usize) -> Result<Option<u64>, NodeError> {
        match self.get(position) {
            None | Some(Ipld::Null) => Ok(None),
            Some(_) => self.uint(position).map(Some),
        }
    }

    fn bytes(&self, position: usize) -> Result<&'a [u8], NodeError> {
        match self.get(position) {
            Some(Ipld::Bytes(bytes)) => Ok(bytes),
            _ => Err(self.error(position, "not a byte string")),
        }
    }

    fn list(&self, position: usize) -> Result<&'a [Ipld], NodeError> {
        match self.get(position) {
            Some(Ipld::List(list)) => Ok(list),
            _ => Err(self.error(position, "not an array")),
        }
    }

    fn link(&self, position: usize) -> Result<Cid, NodeError> {
        match self.get(position) {
            Some(Ipld::Link(cid)) => Ok(*cid),
            _ => Err(self.error(position, "not a link")),
        }
    }

    fn links(&self, position: usize) -> Result<Vec<Cid>, NodeError> {
        self.list(position)?
            .iter()
            .map(|item| match item {
                Ipld::Link(cid) => Ok(*cid),
                _ => Err(self.error(position, "an item is not a link")),
            })
            .collect()
    }

    fn frame(&self, position: usize) -> Result<DataFrame, NodeError> {
        match self.get(position) {
            Some(Ipld::List(frame)) => frame_of(frame).map_err(|e| self.error(position, &e.to_string())),
            _ => Err(self.error(position, "not a DataFrame")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_link_is_bafkqaaa_on_the_wire() {
        let cid = dummy_link();
        assert_eq!(cid.to_string(), "bafkqaaa");
        let encoded = encode_ipld(&Ipld::Link(cid));
        assert_eq!(encoded, [0xd8, 0x2a, 0x45, 0x00, 0x01, 0x55, 0x00, 0x00]);
    }

    /// The format note's spot checks (§13): slot 0's Block begins
    /// `86 02 00 98 40 82 00 20` and its meta is `83 00 00 f6`.
    #[test]
    fn a_block_encodes_as_old_faithful_writes_it() {
        let entry = Cid::new_v1(0x71, cid::multihash::Multihash::wrap(0x12, &[7; 32]).unwrap());
        let block = Node::Block(BlockNode {
            slot: 0,
            shredding: (0..64).map(|i| (i, -1)).collect(),
            entries: vec![entry; 64],
            meta: SlotMeta { parent_slot: 0, blocktime: 0, block_height: None, block_height_absent: false },
            rewards: None,
        });
        let bytes = block.encode();
        assert_eq!(&bytes[..8], [0x86, 0x02, 0x00, 0x98, 0x40, 0x82, 0x00, 0x20]);
        let meta = [0x83, 0x00, 0x00, 0xf6];
        assert!(bytes.windows(4).any(|w| w == meta));
        assert_eq!(Node::decode(&bytes).unwrap(), block);
    }

    /// The epoch-39 test vector of the format note (§4): a frame whose hash,
    /// as u64, is CRC-64/GO-ISO of "hello world", stored as a negative int.
    #[test]
    fn a_frame_hash_above_2_63_is_a_negative_integer() {
        let frame = DataFrame {
            hash: Some(13388989860809387070),
            index: Some(1),
            total: Some(2),
            data: b" world".to_vec(),
            next: Some(vec![]),
        };
        let bytes = Node::DataFrame(frame.clone()).encode();
        let ipld: Ipld = serde_ipld_dagcbor::from_slice(&bytes).unwrap();
        let Ipld::List(fields) = ipld else { panic!() };
        assert_eq!(fields[1], Ipld::Integer(-5057754212900164546));
        assert_eq!(Node::decode(&bytes).unwrap(), Node::DataFrame(frame));
    }

    #[test]
    fn an_unknown_kind_is_named() {
        let bytes = encode_ipld(&Ipld::List(vec![int(9u8), int(1u8)]));
        assert_eq!(Node::decode(&bytes), Err(NodeError::UnknownKind(9)));
        assert!(matches!(Node::decode(&[0xff, 0x00]), Err(NodeError::Cbor(_))));
    }
}
