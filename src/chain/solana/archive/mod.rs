//! Old Faithful epoch archives (one CARv1 file of DAG-CBOR nodes per epoch,
//! `../shared/design/old-faithful-car-format.md`), both ways: a block source
//! for bulk history ([`source`]), and a writer of a store's blocks back out
//! as an archive ([`writer`]). Written from the format note and the public
//! specs; no Old Faithful code.
//!
//! - [`car`]: the CAR framing, offsets and CID checks;
//! - [`node`]: the typed nodes, to and from DAG-CBOR;
//! - [`frames`]: payloads split into DataFrames and put back together;
//! - [`block`]: one block's DAG to a [`SolanaBlock`](super::SolanaBlock) and back;
//! - [`reader`]: the blocks of one file, in order, verified;
//! - [`source`]: the ingest loop's [`BlockSource`](crate::pipeline::BlockSource) over an epoch's files;
//! - [`writer`]: a store's range to a file.

pub mod block;
pub mod car;
pub mod frames;
pub mod node;
pub mod reader;
pub mod source;
pub mod writer;

pub use reader::{ArchiveError, ArchiveErrorKind};

/// The first and last slot of `epoch`, `epoch_slots` slots long (saturating: a hostile epoch number cannot overflow).
pub fn epoch_bounds(epoch: u64, epoch_slots: u64) -> (u64, u64) {
    let slots = epoch_slots.max(1);
    (epoch.saturating_mul(slots), epoch.saturating_add(1).saturating_mul(slots).saturating_sub(1))
}
pub use source::ArchiveSource;
pub use writer::{ArchiveRange, ArchiveWritten, write_archive};
