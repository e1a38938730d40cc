//! The canonical block store: the [`BlockStore`] trait, the engines a layout
//! is written on (agave's layout, [`ledger`], is the Solana adapter's), the two engines,
//! Google Bigtable ([`bigtable`]) and an embedded LSM store ([`embedded`]).
//! A store is named by a URL: `bigtable://PROJECT/INSTANCE[?appProfile=ID]`
//! (the emulator through `BIGTABLE_EMULATOR_HOST`) or `embedded:///PATH`.

pub mod bigtable;
pub mod block_rows;
pub mod cells;
pub mod embedded;
pub mod envelope;
pub mod keys;
pub mod metered;
/// Agave's layout, which the Solana adapter owns (`chain/solana/layout.rs`).
pub use crate::chain::solana::layout as ledger;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use solana_clock::{Slot, UnixTimestamp};
use solana_pubkey::Pubkey;
use solana_signature::Signature;
use solana_transaction_status::{
    ConfirmedBlock, ConfirmedTransactionStatusWithSignature, ConfirmedTransactionWithStatusMeta, EntrySummary,
};

use self::bigtable::{BigtableCells, BigtableConfig};
use self::cells::{BackendError, CellStore, Table};
use self::embedded::EmbeddedCells;
pub use self::ledger::{LedgerStore, TransactionInfo};
use crate::chain::ChainAdapter;
use crate::chain::solana::Solana;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("table {table}, row {key}{}: {reason}", slot.map(|s| format!(" (slot {s})")).unwrap_or_default())]
    Corrupt { table: Table, key: String, slot: Option<Slot>, reason: String },
    #[error("slot {slot}: block cannot be stored: {reason}")]
    InvalidBlock { slot: Slot, reason: String },
    #[error("signature {0} not found")]
    SignatureNotFound(Signature),
    #[error("store URL {url:?}: {reason}")]
    Url { url: String, reason: String },
}

/// What one write put into the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub cells: usize,
    /// Bytes of cell values (compressed, as stored).
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteStats {
    pub blocks: usize,
    pub rows: usize,
}

/// Long-term block history: what agave's `LedgerStorage` reads and writes.
#[async_trait]
pub trait BlockStore: Send + Sync {
    /// The store's URL, without credentials.
    fn describe(&self) -> String;

    /// Writes a block with its index rows (and entries, when known). Writing the
    /// same block again writes identical cells. Transactions may lack status
    /// metadata (`MissingMetadata`), as in mainnet's first epochs.
    async fn write_block(
        &self,
        slot: Slot,
        block: &ConfirmedBlock,
        entries: &[EntrySummary],
    ) -> Result<WriteStats, StoreError>;

    async fn block(&self, slot: Slot) -> Result<Option<ConfirmedBlock>, StoreError>;

    /// Up to `limit` stored slots from `start` on, ascending.
    async fn blocks(&self, start: Slot, limit: usize) -> Result<Vec<Slot>, StoreError>;

    async fn first_available_block(&self) -> Result<Option<Slot>, StoreError>;

    /// The newest stored slot.
    async fn last_block(&self) -> Result<Option<Slot>, StoreError>;

    /// `None`: no block at `slot`; `Some(None)`: a block without a time.
    async fn block_time(&self, slot: Slot) -> Result<Option<Option<UnixTimestamp>>, StoreError>;

    async fn entries(&self, slot: Slot) -> Result<Option<Vec<EntrySummary>>, StoreError>;

    async fn transaction(
        &self,
        signature: &Signature,
    ) -> Result<Option<ConfirmedTransactionWithStatusMeta>, StoreError>;

    async fn signature_status(&self, signature: &Signature) -> Result<Option<TransactionInfo>, StoreError>;

    /// Many statuses in one multi-row read, in the order asked.
    async fn signature_statuses(&self, signatures: &[Signature]) -> Result<Vec<Option<TransactionInfo>>, StoreError>;

    /// Newest first, as agave answers `getSignaturesForAddress` from Bigtable.
    async fn signatures_for_address(
        &self,
        address: &Pubkey,
        before: Option<&Signature>,
        until: Option<&Signature>,
        limit: usize,
    ) -> Result<Vec<ConfirmedTransactionStatusWithSignature>, StoreError>;

    /// An address's index entries with `oldest <= slot <= newest`, newest
    /// first (slot, then transaction index), at most `limit`.
    async fn address_history(
        &self,
        address: &Pubkey,
        newest: Slot,
        oldest: Slot,
        limit: usize,
    ) -> Result<Vec<ConfirmedTransactionStatusWithSignature>, StoreError>;

    /// Transactions that touched token accounts `owner` owns without naming
    /// `owner` itself (or, `changed_only`, changed their balances), newest
    /// first, like [`address_history`](Self::address_history). Stores without
    /// such an index answer nothing.
    async fn owner_history(
        &self,
        _owner: &Pubkey,
        _newest: Slot,
        _oldest: Slot,
        _limit: usize,
        _changed_only: bool,
    ) -> Result<Vec<ConfirmedTransactionStatusWithSignature>, StoreError> {
        Ok(Vec::new())
    }

    /// The newest slot the cluster finalized, for a store fed at `confirmed`
    /// (blocks above it may still be dropped); `None`: every stored block is final.
    async fn finalized_slot(&self) -> Result<Option<Slot>, StoreError> {
        Ok(None)
    }

    /// The newest stored block at or below the finalized watermark (the newest
    /// stored block when every block is final).
    async fn newest_final_block(&self) -> Result<Option<Slot>, StoreError> {
        self.last_block().await
    }

    /// Records the finalized watermark (the `confirmed` follower does, as the cluster finalizes).
    async fn set_finalized_slot(&self, _slot: Slot) -> Result<(), StoreError> {
        Ok(())
    }

    /// Removes the blocks in `start..=end` and their index rows.
    async fn delete_range(&self, start: Slot, end: Slot) -> Result<DeleteStats, StoreError>;

    /// Makes all writes so far durable.
    async fn sync(&self) -> Result<(), StoreError>;
}

/// A parsed store URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    Bigtable { project: String, instance: String, app_profile: String },
    Embedded { path: PathBuf },
}

impl StoreUrl {
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let fail = |reason: &str| StoreError::Url { url: text.to_string(), reason: reason.to_string() };
        let url = url::Url::parse(text).map_err(|e| fail(&e.to_string()))?;
        match url.scheme() {
            "bigtable" => {
                let project = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| fail("expected bigtable://PROJECT/INSTANCE"))?;
                let instance = url.path().trim_matches('/');
                if instance.is_empty() || instance.contains('/') {
                    return Err(fail("expected bigtable://PROJECT/INSTANCE"));
                }
                let mut app_profile = "default".to_string();
                for (key, value) in url.query_pairs() {
                    match key.as_ref() {
                        "appProfile" => app_profile = value.into_owned(),
                        other => return Err(fail(&format!("unknown parameter {other:?} (known: appProfile)"))),
                    }
                }
                Ok(StoreUrl::Bigtable { project: project.to_string(), instance: instance.to_string(), app_profile })
            }
            "embedded" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(fail("expected embedded:///ABSOLUTE/PATH (three slashes)"));
                }
                let path = url.to_file_path().map_err(|_| fail("expected embedded:///ABSOLUTE/PATH"))?;
                Ok(StoreUrl::Embedded { path })
            }
            other => Err(fail(&format!("unknown scheme {other:?} (expected bigtable:// or embedded://)"))),
        }
    }
}

/// How a Bigtable store is reached: an emulator, or Google with a
/// service-account key file or the ambient credentials (workload identity).
/// A worker takes it from its spec; the operator commands from the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BigtableAccess {
    pub emulator_host: Option<String>,
    pub credentials_file: Option<PathBuf>,
}

impl BigtableAccess {
    /// `BIGTABLE_EMULATOR_HOST` and `GOOGLE_APPLICATION_CREDENTIALS`, as agave reads them.
    pub fn from_env() -> Self {
        Self {
            emulator_host: std::env::var("BIGTABLE_EMULATOR_HOST").ok().filter(|h| !h.is_empty()),
            credentials_file: std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
        }
    }
}

/// Opens the store a URL names for writing, creating tables if needed, with
/// Bigtable access from the environment ([`BigtableAccess::from_env`]).
pub async fn open(url: &str) -> Result<Arc<LedgerStore>, StoreError> {
    open_with(url, &BigtableAccess::from_env()).await
}

/// [`open`] with explicit Bigtable access.
pub async fn open_with(url: &str, access: &BigtableAccess) -> Result<Arc<LedgerStore>, StoreError> {
    open_for(&Solana, url, access).await
}

/// Opens the store a URL names for reading: no admin calls, so read-only
/// credentials (`bigtable.data.readonly`) suffice, as for an agave RPC node.
pub async fn open_existing(url: &str) -> Result<Arc<LedgerStore>, StoreError> {
    open_existing_with(url, &BigtableAccess::from_env()).await
}

/// [`open_existing`] with explicit Bigtable access.
pub async fn open_existing_with(url: &str, access: &BigtableAccess) -> Result<Arc<LedgerStore>, StoreError> {
    Ok(Arc::new(Solana.layout(open_cells(url, access).await?)))
}

/// Opens a chain's canonical store for writing: the engine the URL names,
/// with the adapter's tables created if missing, under its layout.
pub async fn open_for<A: ChainAdapter>(
    adapter: &A,
    url: &str,
    access: &BigtableAccess,
) -> Result<Arc<A::Store>, StoreError> {
    let cells = open_cells(url, access).await?;
    cells.ensure_tables(adapter.tables()).await?;
    Ok(Arc::new(adapter.layout(cells)))
}

/// The cell engine a store URL names, the same for every chain.
/// Every call is timed into the store metrics ([`metered::MeteredCells`]).
pub async fn open_cells(url: &str, access: &BigtableAccess) -> Result<Arc<dyn CellStore>, StoreError> {
    let engine: Arc<dyn CellStore> = match StoreUrl::parse(url)? {
        StoreUrl::Embedded { path } => Arc::new(EmbeddedCells::open(&path)?),
        StoreUrl::Bigtable { project, instance, app_profile } => Arc::new(
            BigtableCells::connect(BigtableConfig {
                project,
                instance,
                app_profile,
                emulator_host: access.emulator_host.clone(),
                credentials_file: access.credentials_file.clone(),
                timeout: Duration::from_secs(30),
            })
            .await?,
        ),
    };
    Ok(Arc::new(metered::MeteredCells::new(engine)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse() {
        assert_eq!(
            StoreUrl::parse("bigtable://my-project/solana-ledger?appProfile=writer").unwrap(),
            StoreUrl::Bigtable {
                project: "my-project".into(),
                instance: "solana-ledger".into(),
                app_profile: "writer".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("embedded:///var/lib/chronicle").unwrap(),
            StoreUrl::Embedded { path: "/var/lib/chronicle".into() }
        );
        assert!(StoreUrl::parse("embedded://relative/path").is_err());
        assert!(StoreUrl::parse("bigtable://p").is_err());
        assert!(StoreUrl::parse("s3://bucket").is_err());
    }
}
