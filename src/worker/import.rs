//! `chronicle import` and `chronicle get-block`: recorded `getBlock` responses
//! into a block store, and a stored block back out as an RPC node prints it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use solana_transaction_status::{BlockEncodingOptions, TransactionDetails, UiTransactionEncoding};

use crate::chain::solana::response::read_block_file;
use crate::store::{self, BlockStore, LedgerStore};

pub async fn run(store_url: &str, slot: Option<u64>, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        slot.is_none() || files.len() == 1,
        "--slot names the slot of one file; with several files, name each file after its slot"
    );
    let store = store::open(store_url).await?;
    let failed = import_files(&store, slot, files).await?;
    if failed > 0 {
        tracing::error!(failed, total = files.len(), "some files were not imported");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads recorded `getBlock` files into `store` and makes them durable; a
/// bad file is logged and skipped (the others still load). Returns how many
/// were refused.
pub async fn import_files(store: &LedgerStore, slot: Option<u64>, files: &[PathBuf]) -> anyhow::Result<usize> {
    let mut failed = 0usize;
    for file in files {
        // One bad file is reported and skipped; the others still load.
        let outcome = async {
            let (slot, block) = read_block_file(file, slot)?;
            let stats = store.write_block(slot, &block, &[]).await?;
            anyhow::Ok((slot, block.transactions.len(), stats))
        }
        .await;
        match outcome {
            Ok((slot, transactions, stats)) => {
                tracing::info!(file = %file.display(), slot, transactions, cells = stats.cells, bytes = stats.bytes, "imported block")
            }
            Err(err) => {
                failed += 1;
                tracing::error!(file = %file.display(), "{err:#}");
            }
        }
    }
    store.sync().await?;
    Ok(failed)
}

pub async fn get_block(
    store_url: &str,
    slot: u64,
    encoding: UiTransactionEncoding,
    transaction_details: TransactionDetails,
    show_rewards: bool,
    max_supported_transaction_version: Option<u8>,
) -> anyhow::Result<ExitCode> {
    let store = store::open_existing(store_url).await?;
    let Some(block) = store.block(slot).await? else {
        anyhow::bail!("slot {slot}: no block in {}", store.describe());
    };
    let options = BlockEncodingOptions { transaction_details, show_rewards, max_supported_transaction_version };
    let encoded =
        block.encode_with_options(encoding, options).with_context(|| format!("slot {slot}: encoding the block"))?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &encoded)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}
