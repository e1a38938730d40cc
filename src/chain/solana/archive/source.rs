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

use super::reader::{BlockReader, Coverage, Next};
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
    /// Blocks read and not yet taken, or why each is unusable.
    ready: BTreeMap<BlockNumber, Result<SolanaBlock, String>>,
}

struct Open {
    epoch: u64,
    reader: Reader,
    /// Every block below this slot has been read.
    read_to: BlockNumber,
    /// Set at the end of the file.
    end: Option<Coverage>,
}

impl ArchiveSource {
    pub fn new(location: ArchiveLocation, store: Option<Arc<LedgerStore>>) -> Self {
        Self { location, store, state: Mutex::new(State::default()) }
    }

    fn epoch_of(&self, slot: BlockNumber) -> u64 {
        slot / self.location.epoch_slots
    }

    async fn open(&self, epoch: u64) -> Result<Open, String> {
        let url = self.location.url_of(epoch);
        let stream = open_object(&url).await?;
        let reader = BlockReader::open(stream, url, self.location.epoch_slots).await.map_err(|e| e.to_string())?;
        Ok(Open { epoch, reader, read_to: 0, end: None })
    }

    /// Reads epoch `epoch`'s file up to `end` (or its end), filling `ready`
    /// with the blocks of `start..=end`; returns their slots.
    async fn read_range(
        &self,
        state: &mut State,
        epoch: u64,
        start: BlockNumber,
        end: BlockNumber,
    ) -> Result<Vec<BlockNumber>, String> {
        let reopen = match &state.open {
            Some(open) => open.epoch != epoch || open.read_to > start,
            None => true,
        };
        if reopen {
            state.open = Some(self.open(epoch).await?);
        }
        let open = state.open.as_mut().expect("opened above");
        let mut produced: Vec<BlockNumber> = state.ready.range(start..=end).map(|(slot, _)| *slot).collect();
        while open.end.is_none() && open.read_to <= end {
            match open.reader.next(start).await.map_err(|e| e.to_string())? {
                Next::Block(mut read) => {
                    if let Some(parent) = open.reader.unresolved_parent() {
                        if let Some(hash) = self.stored_blockhash(parent).await? {
                            read = open.reader.resolve_parent(hash).expect("a block is unresolved");
                        }
                    }
                    open.read_to = read.slot + 1;
                    let block = read.block.map_err(|e| e.to_string());
                    if (start..=end).contains(&read.slot) {
                        produced.push(read.slot);
                    }
                    state.ready.insert(read.slot, block);
                }
                Next::End(coverage) => {
                    if coverage.missing_blocks > 0 {
                        return Err(format!(
                            "archive {}: its Subsets link {} blocks the file does not hold",
                            open.reader.file(),
                            coverage.missing_blocks
                        ));
                    }
                    open.end = Some(coverage);
                }
            }
        }
        if let Some(coverage) = &open.end {
            let last = end.min((epoch + 1) * self.location.epoch_slots - 1);
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
        produced.sort_unstable();
        produced.dedup();
        Ok(produced)
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
        state.ready = state.ready.split_off(&start);
        let mut produced = Vec::new();
        for epoch in self.epoch_of(start)..=self.epoch_of(end) {
            let first = start.max(epoch * self.location.epoch_slots);
            let last = end.min((epoch + 1) * self.location.epoch_slots - 1);
            produced.extend(self.read_range(&mut state, epoch, first, last).await?);
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
        match state.ready.remove(&number) {
            Some(Ok(block)) => Ok(block),
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
