//! CARv1 framing (format note §1): a varint-prefixed DAG-CBOR header
//! `{roots, version: 1}`, then sections `varint(len) ‖ CID ‖ node`. The reader
//! streams (one section in memory at a time), tells each section's file
//! offset, and checks every CID against its bytes; the writer writes the same
//! framing and, for a root only known at the end, rewrites the header's root
//! in place.
//!
//! Not `iroh-car`: it caps a section at 4 MiB (Old Faithful allows 32 MiB
//! since August 2025) and tells no offsets, which our errors name.

use cid::Cid;
use cid::multihash::Multihash;
use ipld_core::ipld::Ipld;
use sha2::{Digest, Sha256};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite, AsyncWriteExt,
};

/// DAG-CBOR codec and sha2-256 multihash: every section's CID.
const DAG_CBOR: u64 = 0x71;
const SHA2_256: u64 = 0x12;
/// Bigger than any section Old Faithful writes (32 MiB): a guard against a corrupt length.
pub const MAX_SECTION: usize = 64 << 20;

/// The CID Old Faithful gives a node: CIDv1, dag-cbor, sha256 of its bytes.
pub fn cid_of(node: &[u8]) -> Cid {
    let digest = Sha256::digest(node);
    Cid::new_v1(DAG_CBOR, Multihash::wrap(SHA2_256, &digest).expect("32 bytes fit"))
}

/// What is wrong with the file at `offset` (of the section's length varint).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarError {
    #[error("offset {offset}: the file ends inside a section ({reason})")]
    Truncated { offset: u64, reason: String },
    #[error("offset {offset}: not a CARv1 header: {reason}")]
    Header { offset: u64, reason: String },
    #[error("offset {offset}: section of {length} bytes is over the {MAX_SECTION}-byte limit")]
    TooLarge { offset: u64, length: u64 },
    #[error("offset {offset}: bad CID: {reason}")]
    BadCid { offset: u64, reason: String },
    #[error("offset {offset}: CID {cid} does not match its node's bytes (sha256 {actual})")]
    CidMismatch { offset: u64, cid: Cid, actual: Cid },
    #[error("reading the archive: {0}")]
    Io(String),
}

/// One section as read. A section whose CID does not match its bytes is
/// still returned (the reader attributes it to its block), with `mismatch` set.
pub struct Section {
    pub offset: u64,
    pub cid: Cid,
    pub node: Vec<u8>,
    pub mismatch: Option<CarError>,
}

pub struct CarReader<R> {
    reader: R,
    /// Offset of the next section.
    position: u64,
    pub roots: Vec<Cid>,
}

impl<R: AsyncBufRead + Unpin> CarReader<R> {
    pub async fn open(mut reader: R) -> Result<Self, CarError> {
        let header = match read_frame(&mut reader, 0).await? {
            Some((_, bytes)) => bytes,
            None => return Err(CarError::Header { offset: 0, reason: "the file is empty".into() }),
        };
        let position = varint_len(header.len() as u64) + header.len() as u64;
        let roots = parse_header(&header).map_err(|reason| CarError::Header { offset: 0, reason })?;
        Ok(Self { reader, position, roots })
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next section with its CID checked (`verify`: `mismatch`), or `None` at the end.
    pub async fn next(&mut self, verify: bool) -> Result<Option<Section>, CarError> {
        let offset = self.position;
        let Some((prefix, bytes)) = read_frame(&mut self.reader, offset).await? else {
            return Ok(None);
        };
        self.position += prefix + bytes.len() as u64;
        let mut cursor = std::io::Cursor::new(bytes.as_slice());
        let cid = Cid::read_bytes(&mut cursor).map_err(|e| CarError::BadCid { offset, reason: e.to_string() })?;
        let start = cursor.position() as usize;
        let node = bytes[start..].to_vec();
        let mut mismatch = None;
        if verify {
            let actual = cid_of(&node);
            if actual != cid {
                mismatch = Some(CarError::CidMismatch { offset, cid, actual });
            }
        }
        Ok(Some(Section { offset, cid, node, mismatch }))
    }
}

fn parse_header(bytes: &[u8]) -> Result<Vec<Cid>, String> {
    let ipld: Ipld = serde_ipld_dagcbor::from_slice(bytes).map_err(|e| e.to_string())?;
    let Ipld::Map(map) = ipld else { return Err("not a map".into()) };
    if map.get("version") != Some(&Ipld::Integer(1)) {
        return Err(format!("version {:?}, only 1 is read", map.get("version")));
    }
    match map.get("roots") {
        Some(Ipld::List(roots)) => roots
            .iter()
            .map(|root| match root {
                Ipld::Link(cid) => Ok(*cid),
                _ => Err("a root is not a link".to_string()),
            })
            .collect(),
        _ => Err("no roots".into()),
    }
}

/// `varint(len) ‖ bytes`: the prefix's length and the bytes; `None` at a clean end.
async fn read_frame<R: AsyncBufRead + Unpin>(reader: &mut R, offset: u64) -> Result<Option<(u64, Vec<u8>)>, CarError> {
    let mut prefix = [0u8; 10];
    let mut used = 0;
    loop {
        if reader.fill_buf().await.map_err(|e| CarError::Io(e.to_string()))?.is_empty() {
            if used == 0 {
                return Ok(None);
            }
            return Err(CarError::Truncated { offset, reason: "inside a length".into() });
        }
        let byte = reader.read_u8().await.map_err(|e| CarError::Io(e.to_string()))?;
        prefix[used] = byte;
        used += 1;
        if unsigned_varint::decode::is_last(byte) {
            break;
        }
        if used == prefix.len() {
            return Err(CarError::Header { offset, reason: "a length varint over 10 bytes".into() });
        }
    }
    let (length, _) = unsigned_varint::decode::u64(&prefix[..used])
        .map_err(|e| CarError::Header { offset, reason: format!("length: {e}") })?;
    if length as usize > MAX_SECTION {
        return Err(CarError::TooLarge { offset, length });
    }
    let mut bytes = vec![0; length as usize];
    match reader.read_exact(&mut bytes).await {
        Ok(_) => Ok(Some((used as u64, bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(CarError::Truncated { offset, reason: format!("a section of {length} bytes") })
        }
        Err(e) => Err(CarError::Io(e.to_string())),
    }
}

fn varint_len(value: u64) -> u64 {
    let mut buffer = unsigned_varint::encode::u64_buffer();
    unsigned_varint::encode::u64(value, &mut buffer).len() as u64
}

fn header_bytes(root: Cid) -> Vec<u8> {
    let header = Ipld::Map(
        [("roots".to_string(), Ipld::List(vec![Ipld::Link(root)])), ("version".into(), Ipld::Integer(1))].into(),
    );
    serde_ipld_dagcbor::to_vec(&header).expect("a header encodes")
}

/// Writes sections after a header whose root is set at [`finish`](Self::finish).
pub struct CarWriter<W> {
    writer: W,
    written: u64,
}

impl<W: AsyncWrite + AsyncSeek + Unpin> CarWriter<W> {
    /// Starts a CAR with a placeholder root of the final root's length.
    pub async fn create(mut writer: W) -> std::io::Result<Self> {
        let header = header_bytes(cid_of(b""));
        let written = write_frame(&mut writer, &[&header]).await?;
        Ok(Self { writer, written })
    }

    pub async fn write(&mut self, cid: &Cid, node: &[u8]) -> std::io::Result<()> {
        self.written += write_frame(&mut self.writer, &[&cid.to_bytes(), node]).await?;
        Ok(())
    }

    /// Rewrites the header with `root` (the last section written); returns the file's size.
    pub async fn finish(mut self, root: Cid) -> std::io::Result<u64> {
        let header = header_bytes(root);
        // The header is rewritten in place: it must keep the placeholder's length.
        if header.len() != header_bytes(cid_of(b"")).len() {
            return Err(std::io::Error::other(format!("root {root} is not a 36-byte CIDv1")));
        }
        self.writer.flush().await?;
        self.writer.seek(std::io::SeekFrom::Start(0)).await?;
        write_frame(&mut self.writer, &[&header]).await?;
        self.writer.flush().await?;
        Ok(self.written)
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, parts: &[&[u8]]) -> std::io::Result<u64> {
    let length: usize = parts.iter().map(|part| part.len()).sum();
    let mut buffer = unsigned_varint::encode::u64_buffer();
    let prefix = unsigned_varint::encode::u64(length as u64, &mut buffer);
    writer.write_all(prefix).await?;
    for part in parts {
        writer.write_all(part).await?;
    }
    Ok((prefix.len() + length) as u64)
}

/// Reads a whole CAR held in memory (tests, tools).
pub async fn read_all(bytes: &[u8]) -> Result<(Vec<Cid>, Vec<Section>), CarError> {
    let mut reader = CarReader::open(bytes).await?;
    let mut sections = Vec::new();
    while let Some(mut section) = reader.next(true).await? {
        if let Some(mismatch) = section.mismatch.take() {
            return Err(mismatch);
        }
        sections.push(section);
    }
    Ok((reader.roots, sections))
}

impl<R: AsyncRead> CarReader<tokio::io::BufReader<R>> {
    pub fn buffered(reader: R) -> tokio::io::BufReader<R> {
        tokio::io::BufReader::with_capacity(1 << 20, reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn car(sections: &[&[u8]]) -> Vec<u8> {
        let mut file = std::io::Cursor::new(Vec::new());
        let mut writer = CarWriter::create(&mut file).await.unwrap();
        let mut root = cid_of(b"");
        for node in sections {
            root = cid_of(node);
            writer.write(&root, node).await.unwrap();
        }
        writer.finish(root).await.unwrap();
        file.into_inner()
    }

    #[tokio::test]
    async fn sections_read_back_with_their_offsets_and_the_root() {
        let bytes = car(&[b"\x82\x01\x02", b"\x81\x03"]).await;
        // Old Faithful's header is 58 bytes after a one-byte length: the first section starts at 59.
        let (roots, sections) = read_all(&bytes).await.unwrap();
        assert_eq!(sections[0].offset, 59);
        assert_eq!(sections[1].offset, 59 + 1 + 36 + 3);
        assert_eq!(roots, vec![cid_of(b"\x81\x03")]);
        assert_eq!(sections[1].node, b"\x81\x03");
    }

    #[tokio::test]
    async fn a_truncated_file_and_an_altered_node_name_their_offset() {
        let bytes = car(&[b"\x82\x01\x02", b"\x81\x03"]).await;
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(
            read_all(cut).await.err(),
            Some(CarError::Truncated { offset: 99, reason: "a section of 38 bytes".into() })
        );
        let mut altered = bytes.clone();
        *altered.last_mut().unwrap() = 0x04;
        assert!(matches!(read_all(&altered).await, Err(CarError::CidMismatch { offset: 99, .. })));
    }
}
