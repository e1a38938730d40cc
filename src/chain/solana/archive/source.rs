//! Epoch archives as a [`BlockSource`]: the file of each epoch is named by a
//! URL template (`{epoch}`), read as a stream from its start, and its
//! blocks handed to the ingest loop batch by batch. The loop asks for
//! ascending ranges, so one open reader serves a whole epoch; a range behind
//! the reader (a retried gap, a restart) reopens the file and passes over
//! what lies before it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncBufRead;
use tokio::sync::Mutex;

use super::reader::{BlockReader, Coverage, Next, Pending};
use crate::chain::solana::SolanaBlock;
use crate::pipeline::config::ArchiveLocation;
use crate::pipeline::{BlockNumber, BlockSource, Missing};
use crate::store::{BlockStore, LedgerStore};

type Reader = BlockReader<Box<dyn AsyncBufRead + Unpin + Send>>;

pub struct ArchiveSource {
    location: ArchiveLocation,
    /// The store the blocks go to: where the blockhash of an epoch's first
    /// block's parent (in the previous epoch's archive) is looked up.
    store: Option<Arc<LedgerStore>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    open: Option<Open>,
    /// Blocks read (to assemble) and not yet taken, or why each is unusable.
    ready: BTreeMap<BlockNumber, Result<Pending, String>>,
    /// The highest slot taken from (or dropped out of) `ready` since the reader opened:
    /// a range at or below it must be read again.
    removed_max: Option<BlockNumber>,
    /// The last block of the last epoch file read to its end: the parent of the next epoch's first block.
    tail: Option<(BlockNumber, String)>,
}

struct Open {
    epoch: u64,
    reader: Reader,
    /// Every block in `collected_from..read_to` has been put in `ready`.
    collected_from: BlockNumber,
    read_to: BlockNumber,
    /// Set at the end of the file.
    end: Option<Coverage>,
}

impl ArchiveSource {
    pub fn new(location: ArchiveLocation, store: Option<Arc<LedgerStore>>) -> Self {
        Self { location, store, state: Mutex::new(State::default()) }
    }

    fn epoch_of(&self, slot: BlockNumber) -> u64 {
        slot / self.location.epoch_slots.max(1)
    }

    fn epoch_bounds(&self, epoch: u64) -> (BlockNumber, BlockNumber) {
        super::epoch_bounds(epoch, self.location.epoch_slots)
    }

    async fn open(&self, epoch: u64, start: BlockNumber) -> Result<Open, String> {
        let url = self.location.url_of(epoch);
        tracing::info!(url = %crate::pipeline::config::url_host(&url), epoch, start, "reading epoch archive");
        let stream = open_object(&url).await?;
        let reader = BlockReader::open(stream, url, self.location.epoch_slots).await.map_err(|e| e.to_string())?;
        Ok(Open { epoch, reader, collected_from: start, read_to: 0, end: None })
    }

    /// Reads epoch `epoch`'s file up to `end` (to its end when `end` is the
    /// epoch's last slot, so that its Subsets are checked), filling `ready`
    /// with the blocks of `start..=end`; returns their slots.
    async fn read_range(
        &self,
        state: &mut State,
        epoch: u64,
        start: BlockNumber,
        end: BlockNumber,
    ) -> Result<Vec<BlockNumber>, String> {
        let reopen = match &state.open {
            Some(open) => {
                open.epoch != epoch || start < open.collected_from || state.removed_max.is_some_and(|m| m >= start)
            }
            None => true,
        };
        if reopen {
            // Replaced only once the new file opens: a failure leaves the reader it had.
            let opened = self.open(epoch, start).await?;
            state.open = Some(opened);
            state.removed_max = None;
            state.ready.retain(|slot, _| self.epoch_of(*slot) != epoch);
        }
        let open = state.open.as_mut().expect("opened above");
        if start > open.read_to && open.end.is_none() {
            // What lies between is passed over, not collected.
            open.collected_from = open.collected_from.max(start);
        }
        let (epoch_first, epoch_last) = self.epoch_bounds(epoch);
        while open.end.is_none() && (open.read_to <= end || end == epoch_last) {
            let next = match open.reader.next(start).await {
                Ok(next) => next,
                Err(e) => {
                    // A stream that failed mid-section cannot go on: the next read reopens.
                    state.open = None;
                    return Err(e.to_string());
                }
            };
            match next {
                Next::Block(read) if !(epoch_first..=epoch_last).contains(&read.slot) => {
                    let file = open.reader.file().to_string();
                    state.open = None;
                    return Err(format!("archive {file} holds slot {}, which is not in epoch {epoch}", read.slot));
                }
                Next::Block(read) => {
                    let mut block = read.block.map_err(|e| e.to_string());
                    if let Some(parent) = block.as_ref().ok().and_then(Pending::unknown_parent) {
                        let known = match state.ready.get(&parent) {
                            Some(Ok(parent)) => parent.blockhash(),
                            _ => match &state.tail {
                                Some((slot, hash)) if *slot == parent => Some(hash.clone()),
                                _ => self.stored_blockhash(parent).await?,
                            },
                        };
                        if let (Some(hash), Ok(pending)) = (known, block.as_mut()) {
                            pending.set_previous_blockhash(hash);
                        }
                    }
                    open.read_to = read.slot.saturating_add(1);
                    state.ready.insert(read.slot, block);
                }
                Next::End(coverage) => {
                    let file = open.reader.file();
                    if coverage.missing_blocks > 0 {
                        return Err(format!(
                            "archive {file}: its Subsets link {} blocks the file does not hold",
                            coverage.missing_blocks
                        ));
                    }
                    if coverage.missing_subsets > 0 {
                        return Err(format!(
                            "archive {file}: its Epoch node links {} Subsets the file does not hold",
                            coverage.missing_subsets
                        ));
                    }
                    if let Some(damage) = &coverage.damaged_tail {
                        return Err(format!("archive {file}: after its last block, {damage}"));
                    }
                    if let Some((slot, Some(hash))) = open.reader.last_block() {
                        state.tail = Some((slot, hash));
                    }
                    open.end = Some(coverage);
                }
            }
        }
        if let Some(coverage) = &open.end {
            let last = end.min(epoch_last);
            match coverage.slots {
                Some((first, covered)) if first <= start && last <= covered => {}
                slots => {
                    return Err(format!(
                        "archive {} covers {}: slots {start}..={last} are not all in it",
                        open.reader.file(),
                        slots.map_or("no declared slots (no Subset or Epoch node)".into(), |(a, b)| format!(
                            "slots {a}..={b}"
                        )),
                    ));
                }
            }
        }
        Ok(state.ready.range(start..=end).map(|(slot, _)| *slot).collect())
    }

    /// The blockhash of a stored block (an epoch's first block's parent,
    /// in the previous epoch's archive), if the store holds it.
    async fn stored_blockhash(&self, slot: BlockNumber) -> Result<Option<String>, String> {
        let Some(store) = &self.store else { return Ok(None) };
        let block =
            store.block(slot).await.map_err(|e| format!("reading the parent, slot {slot}, from the store: {e}"))?;
        Ok(block.map(|b| b.blockhash))
    }
}

/// A byte stream of the object at `url`: `file://` read directly; `http(s)://`,
/// `s3://` and `gs://` through `object_store` (credentials from the environment).
pub async fn open_object(url: &str) -> Result<Box<dyn AsyncBufRead + Unpin + Send>, String> {
    use futures::TryStreamExt;
    let parsed = url::Url::parse(url).map_err(|e| format!("archive URL {url:?}: {e}"))?;
    let capacity = 1 << 20;
    if parsed.scheme() == "file" {
        let path = parsed.to_file_path().map_err(|_| format!("archive URL {url:?}: not a local path"))?;
        let file = tokio::fs::File::open(&path).await.map_err(|e| format!("opening {}: {e}", path.display()))?;
        return Ok(Box::new(tokio::io::BufReader::with_capacity(capacity, file)));
    }
    let (store, path): (Arc<dyn object_store::ObjectStore>, object_store::path::Path) = match parsed.scheme() {
        "http" | "https" if parsed.query().is_some() || !parsed.username().is_empty() => {
            return Err(format!(
                "archive URL {}: a query string or user info is not sent by the HTTP reader (use a plain URL, or s3:// / gs://)",
                crate::pipeline::config::url_host(url)
            ));
        }
        "http" | "https" => {
            let base = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or_default())
                + &parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            let http = object_store::http::HttpBuilder::new().with_url(base).build();
            (
                Arc::new(http.map_err(|e| format!("archive URL {url:?}: {e}"))?),
                object_store::path::Path::from(parsed.path()),
            )
        }
        "s3" | "gs" => crate::lake::object_store_at(url).map_err(|e| e.to_string())?,
        other => return Err(format!("archive URL {url:?}: scheme {other}:// is not file, http(s), s3 or gs")),
    };
    let got = object_store::ObjectStoreExt::get(&*store, &path).await.map_err(|e| format!("reading {url}: {e}"))?;
    let stream = got.into_stream().map_err(std::io::Error::other);
    Ok(Box::new(tokio::io::BufReader::with_capacity(capacity, tokio_util::io::StreamReader::new(stream))))
}

#[async_trait]
impl BlockSource<SolanaBlock> for ArchiveSource {
    async fn produced(&self, start: BlockNumber, end: BlockNumber) -> Result<Vec<BlockNumber>, String> {
        let mut state = self.state.lock().await;
        // Blocks the loop did not take (a shorter batch, a stop) are dropped below the range.
        let kept = state.ready.split_off(&start);
        let dropped = std::mem::replace(&mut state.ready, kept);
        if let Some((slot, _)) = dropped.last_key_value() {
            state.removed_max = state.removed_max.max(Some(*slot));
        }
        let mut produced = Vec::new();
        for epoch in self.epoch_of(start)..=self.epoch_of(end) {
            let (first, last) = self.epoch_bounds(epoch);
            produced.extend(self.read_range(&mut state, epoch, start.max(first), end.min(last)).await?);
        }
        Ok(produced)
    }

    async fn block(&self, number: BlockNumber) -> Result<SolanaBlock, Missing> {
        let mut state = self.state.lock().await;
        if !state.ready.contains_key(&number) {
            let epoch = self.epoch_of(number);
            let produced = self.read_range(&mut state, epoch, number, number).await.map_err(Missing::Gap)?;
            if !produced.contains(&number) {
                return Err(Missing::Skipped);
            }
        }
        let taken = state.ready.remove(&number);
        if taken.is_some() {
            state.removed_max = state.removed_max.max(Some(number));
        }
        drop(state);
        match taken {
            // Frames, zstd, protobuf and transactions: on a blocking thread, several blocks at once.
            Some(Ok(pending)) => match tokio::task::spawn_blocking(move || pending.assemble()).await {
                Ok(Ok(block)) => Ok(block),
                Ok(Err(e)) => Err(Missing::Gap(e.to_string())),
                Err(e) => Err(Missing::Gap(format!("assembling slot {number}: {e}"))),
            },
            Some(Err(reason)) => Err(Missing::Gap(reason)),
            None => Err(Missing::Skipped),
        }
    }

    /// A read error is retried briefly (a network blip); a file that is not a
    /// valid archive fails the run, which resumes from its checkpoint once fixed.
    fn patience(&self) -> std::time::Duration {
        std::time::Duration::from_secs(5)
    }

    /// The last slot of the newest epoch the template names is not known
    /// without listing; an archive is history: backfills name their range.
    async fn tip(&self) -> Result<BlockNumber, String> {
        Err("an epoch archive has no tip: archives are read by backfill over a slot range".into())
    }
}
