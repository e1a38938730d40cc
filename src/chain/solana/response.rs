//! Recorded `getBlock` responses on disk: plain or gzipped JSON, with or
//! without the JSON-RPC envelope. A response does not carry its own slot, so
//! it comes from the caller or from a file name that starts with it
//! (`<slot>.json`, `<slot>.json.gz`, `<slot>_anything.json`).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use solana_clock::Slot;
use solana_transaction_status::ConfirmedBlock;

use super::decode::{DecodeError, block_from_rpc};

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{path}: not JSON: {reason}")]
    Json { path: PathBuf, reason: String },
    #[error("{path}: the node answered with an error: {error}")]
    RpcError { path: PathBuf, error: String },
    #[error("{path}: the result is null (the slot was skipped or is not available)")]
    NullResult { path: PathBuf },
    #[error("{path}: no slot: the file name does not start with one (e.g. 250000000.json); pass --slot")]
    NoSlot { path: PathBuf },
    #[error("{path}: {cause}")]
    Decode { path: PathBuf, cause: DecodeError },
}

/// The slot a file name starts with: `250000000.json`, `250000000_x.json.gz`.
pub fn slot_from_file_name(path: &Path) -> Option<Slot> {
    let name = path.file_name()?.to_str()?;
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    let rest = &name[digits.len()..];
    (!digits.is_empty() && (rest.is_empty() || rest.starts_with(['.', '_']))).then(|| digits.parse().ok()).flatten()
}

/// Reads and decodes one recorded `getBlock` response.
pub fn read_block_file(path: &Path, slot: Option<Slot>) -> Result<(Slot, ConfirmedBlock), ResponseError> {
    let slot =
        slot.or_else(|| slot_from_file_name(path)).ok_or_else(|| ResponseError::NoSlot { path: path.to_path_buf() })?;
    let io = |cause| ResponseError::Io { path: path.to_path_buf(), cause };
    let raw = std::fs::read(path).map_err(io)?;
    let text = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(io)?;
        out
    } else {
        raw
    };
    let value: Value = serde_json::from_slice(&text)
        .map_err(|e| ResponseError::Json { path: path.to_path_buf(), reason: e.to_string() })?;
    let result = unwrap_envelope(path, value)?;
    let block =
        block_from_rpc(slot, &result).map_err(|cause| ResponseError::Decode { path: path.to_path_buf(), cause })?;
    Ok((slot, block))
}

/// The `result` of a JSON-RPC response, or the object itself if it has no envelope.
fn unwrap_envelope(path: &Path, value: Value) -> Result<Value, ResponseError> {
    let Value::Object(mut map) = value else { return Ok(value) };
    if !map.contains_key("jsonrpc") {
        return Ok(Value::Object(map));
    }
    if let Some(error) = map.remove("error") {
        return Err(ResponseError::RpcError { path: path.to_path_buf(), error: error.to_string() });
    }
    match map.remove("result") {
        None | Some(Value::Null) => Err(ResponseError::NullResult { path: path.to_path_buf() }),
        Some(result) => Ok(result),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_come_from_file_names() {
        assert_eq!(slot_from_file_name(Path::new("/x/250000000.json")), Some(250_000_000));
        assert_eq!(slot_from_file_name(Path::new("250000000.json.gz")), Some(250_000_000));
        assert_eq!(slot_from_file_name(Path::new("42_mainnet.json")), Some(42));
        assert_eq!(slot_from_file_name(Path::new("block_42.json")), None);
        assert_eq!(slot_from_file_name(Path::new("42abc.json")), None);
    }
}
