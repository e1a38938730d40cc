//! The compression envelope around every cell value: a 4-byte method tag
//! (bincode of agave's `CompressionMethod`, u32 little-endian) then the
//! payload. Agave ≥ 4.0 writes zstd when it is strictly shorter, else no
//! compression; readers accept all four methods.

use std::io::Read;

/// The method tags, in agave's enum order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    None = 0,
    Bzip2 = 1,
    Gzip = 2,
    Zstd = 3,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("cell is {0} bytes, shorter than the 4-byte compression tag")]
    TooShort(usize),
    #[error("unknown compression tag {0} (expected 0-3)")]
    UnknownMethod(u32),
    #[error("{method:?} payload does not decompress: {reason}")]
    Corrupt { method: Method, reason: String },
}

/// Wraps `data` the way agave ≥ 4.0 does (`compress_zstd_or_none`, with
/// zstd's streaming encoder at level 0 as agave uses it, so frames match).
pub fn compress(data: &[u8]) -> Vec<u8> {
    let zstd = zstd_frame(data);
    if zstd.len() < data.len() { envelope(Method::Zstd, &zstd) } else { envelope(Method::None, data) }
}

thread_local! {
    /// One compression context per thread: creating one per cell costs more
    /// than compressing a small cell. (Agave creates a streaming encoder per
    /// cell; its frames omit the content size, ours carry it. Both are plain
    /// zstd frames that either side's decoder reads.)
    static COMPRESSOR: std::cell::RefCell<zstd::bulk::Compressor<'static>> =
        std::cell::RefCell::new(zstd::bulk::Compressor::new(0).expect("zstd level 0 is valid"));
}

fn zstd_frame(data: &[u8]) -> Vec<u8> {
    COMPRESSOR.with(|c| c.borrow_mut().compress(data)).expect("zstd compression of a buffer in memory cannot fail")
}

/// Wraps `payload` (already in `method`'s format) with its tag.
pub fn envelope(method: Method, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&(method as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Unwraps a cell of any of the four methods.
pub fn decompress(cell: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let (tag, payload) = cell.split_first_chunk::<4>().ok_or(EnvelopeError::TooShort(cell.len()))?;
    let method = match u32::from_le_bytes(*tag) {
        0 => return Ok(payload.to_vec()),
        1 => Method::Bzip2,
        2 => Method::Gzip,
        3 => Method::Zstd,
        other => return Err(EnvelopeError::UnknownMethod(other)),
    };
    let mut out = Vec::new();
    let result = match method {
        Method::Bzip2 => bzip2::read::BzDecoder::new(payload).read_to_end(&mut out),
        Method::Gzip => flate2::read::GzDecoder::new(payload).read_to_end(&mut out),
        _ => zstd::stream::read::Decoder::new(payload).and_then(|mut d| d.read_to_end(&mut out)),
    };
    result.map_err(|e| EnvelopeError::Corrupt { method, reason: e.to_string() })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn small_cells_stay_uncompressed() {
        // The spec's worked example: a 14-byte tx cell is stored with tag 0.
        let cell = compress(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0]);
        assert_eq!(&cell[..4], &[0, 0, 0, 0]);
        assert_eq!(cell.len(), 18);
    }

    #[test]
    fn large_cells_are_zstd() {
        let data = vec![7u8; 10_000];
        let cell = compress(&data);
        assert_eq!(&cell[..8], &[3, 0, 0, 0, 0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(decompress(&cell).unwrap(), data);
    }

    #[test]
    fn frames_read_with_agaves_streaming_decoder() {
        let proto = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/solana/18144001.pb")).unwrap();
        let cell = compress(&proto);
        assert_eq!(&cell[..4], &[3, 0, 0, 0]);
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(&cell[4..]).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, proto);
    }

    #[test]
    fn every_method_reads_back() {
        let data = b"solana ledger history".repeat(20);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&data).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        bz.write_all(&data).unwrap();
        for cell in [
            envelope(Method::Gzip, &gz.finish().unwrap()),
            envelope(Method::Bzip2, &bz.finish().unwrap()),
            envelope(Method::None, &data),
        ] {
            assert_eq!(decompress(&cell).unwrap(), data);
        }
    }

    #[test]
    fn bad_cells_are_typed_errors() {
        assert_eq!(decompress(&[1, 0]), Err(EnvelopeError::TooShort(2)));
        assert_eq!(decompress(&[9, 0, 0, 0, 1]), Err(EnvelopeError::UnknownMethod(9)));
        assert!(matches!(decompress(&[3, 0, 0, 0, 1, 2, 3]), Err(EnvelopeError::Corrupt { method: Method::Zstd, .. })));
    }
}
