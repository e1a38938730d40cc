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
pub use source::ArchiveSource;
pub use writer::{ArchiveRange, ArchiveWritten, write_archive};
