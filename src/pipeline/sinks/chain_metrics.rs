//! Chain metrics (`targets: [metrics]`): one point of per-block aggregates
//! ([`BlockStats`], from the chain's adapter) per block, written with the
//! `influxdb2` client to an InfluxDB v2 write API.
//!
//! Never in ingestion's way: points go into a bounded buffer that a
//! background writer drains in batches; when the server is slow or gone the
//! writer retries its batch with backoff, the buffer fills, and further
//! points are dropped and counted (`chronicle_chain_metrics_points_total
//! {outcome="dropped"}`). `flush` waits (at most [`FLUSH_WAIT`]) for the
//! batch's points only while the server answers and keeps up, so a
//! backfill's last points arrive before it exits; a server that is down, or
//! so slow that one wait ran out, is not waited for again until the writer
//! has caught up, so neither an outage nor a slow server slows ingestion.
//!
//! Measurement `chain_blocks`, tags `chain` and `network`, one integer field
//! per aggregate, at the block's time; the milliseconds below its second are
//! the slot's (`slot % 1000`), so blocks of one second keep their own points
//! (also in servers that store milliseconds) and a block ingested twice
//! overwrites its own. With `confirmed` reads a block's point
//! waits until the block is final (a block the cluster drops has none).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use influxdb2::models::{DataPoint, WriteDataPoint};
use tokio::sync::{mpsc, watch};

use crate::pipeline::config::Secret;
use crate::pipeline::{BlockNumber, BlockSink, Flushed, SinkPolicy, Written};
use crate::telemetry::metrics::{WORKER, WorkerMetrics};

/// Points the buffer holds before it drops, by default.
pub const BUFFER_POINTS: usize = 10_000;
/// Points per write request.
const BATCH_POINTS: usize = 1_000;
/// The longest `flush` waits for a healthy server.
pub const FLUSH_WAIT: Duration = Duration::from_secs(2);
/// One write request's deadline.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The measurement every point goes to.
pub const MEASUREMENT: &str = "chain_blocks";

/// Where the points go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainMetricsConfig {
    /// The server's base URL (`https://influx.example.com`).
    pub url: String,
    pub org: String,
    pub bucket: String,
    pub token: Secret,
    /// Tag values.
    pub chain: String,
    pub network: String,
    /// Hold each point until its block is final (`confirmed` reads).
    pub hold_until_final: bool,
    /// Points buffered before new ones are dropped ([`BUFFER_POINTS`]).
    pub buffer_points: usize,
}

/// One block's aggregates, in the chain's own units (lamports and compute
/// units on Solana; wei and gas on EVM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Unix seconds; a block without a time has no point.
    pub time: Option<i64>,
    pub transactions: u64,
    pub successful: u64,
    pub failed: u64,
    pub votes: u64,
    pub fees: u64,
    /// Fees above the base fee (Solana: `fee - 5000 × signatures`).
    pub priority_fees: u64,
    pub compute_units: u64,
}

/// The aggregates of one block, from the chain's adapter.
pub type StatsOf<B> = fn(&B) -> BlockStats;

pub struct ChainMetricsSink<B> {
    stats: StatsOf<B>,
    config: ChainMetricsConfig,
    buffer: mpsc::Sender<Vec<u8>>,
    /// Points handed to the writer, and those it has finished with.
    sent: AtomicU64,
    done: watch::Receiver<u64>,
    healthy: Arc<AtomicBool>,
    /// A flush's wait ran out; cleared once the writer has caught up.
    lagging: AtomicBool,
    /// Points of blocks not yet final, by number (`hold_until_final`).
    held: Mutex<BTreeMap<BlockNumber, Vec<u8>>>,
}

impl<B> ChainMetricsSink<B> {
    /// Checks the URL and starts the background writer.
    pub fn start(config: ChainMetricsConfig, stats: StatsOf<B>) -> Result<Self, String> {
        url::Url::parse(&config.url).map_err(|e| format!("metrics URL {:?}: {e}", config.url))?;
        let client = influxdb2::Client::new(&config.url, &config.org, config.token.expose());
        let (buffer, points) = mpsc::channel(config.buffer_points.max(1));
        let (report, done) = watch::channel(0);
        let healthy = Arc::new(AtomicBool::new(true));
        let writer =
            Writer { client, org: config.org.clone(), bucket: config.bucket.clone(), healthy: healthy.clone() };
        tokio::spawn(writer.run(points, report));
        Ok(Self {
            stats,
            config,
            buffer,
            sent: AtomicU64::new(0),
            done,
            healthy,
            lagging: AtomicBool::new(false),
            held: Mutex::default(),
        })
    }

    /// The block's point as line protocol.
    fn line(&self, number: BlockNumber, stats: &BlockStats) -> Option<Vec<u8>> {
        let time = stats.time?;
        let millis = time.checked_mul(1_000)?.checked_add((number % 1_000) as i64)?;
        let nanos = millis.checked_mul(1_000_000)?;
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let point = DataPoint::builder(MEASUREMENT)
            .tag("chain", &self.config.chain)
            .tag("network", &self.config.network)
            .field("slot", int(number))
            .field("transactions", int(stats.transactions))
            .field("successful_transactions", int(stats.successful))
            .field("failed_transactions", int(stats.failed))
            .field("vote_transactions", int(stats.votes))
            .field("non_vote_transactions", int(stats.transactions.saturating_sub(stats.votes)))
            .field("fees", int(stats.fees))
            .field("priority_fees", int(stats.priority_fees))
            .field("compute_units", int(stats.compute_units))
            .timestamp(nanos)
            .build()
            .ok()?;
        let mut line = Vec::with_capacity(256);
        point.write_data_point_to(&mut line).ok()?;
        Some(line)
    }

    /// Hands a point to the writer, or drops and counts it when the buffer is full.
    fn send(&self, line: Vec<u8>) {
        match self.buffer.try_send(line) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                WORKER.chain_points_buffered.inc();
            }
            Err(_) => WorkerMetrics::count(&WORKER.chain_points, "dropped", 1),
        }
    }
}

#[async_trait]
impl<B: Send + Sync + 'static> BlockSink<B> for ChainMetricsSink<B> {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn policy(&self) -> SinkPolicy {
        SinkPolicy::BestEffort
    }

    async fn write(&self, number: BlockNumber, block: &B) -> Result<Written, String> {
        let Some(line) = self.line(number, &(self.stats)(block)) else {
            WorkerMetrics::count(&WORKER.chain_points, "untimed", 1);
            return Ok(Written::default());
        };
        if self.config.hold_until_final {
            let mut held = self.held.lock().expect("held points");
            held.insert(number, line);
            // Bounded like the buffer: the oldest held point goes first.
            if held.len() > self.config.buffer_points.max(1) {
                held.pop_first();
                WorkerMetrics::count(&WORKER.chain_points, "dropped", 1);
            }
        } else {
            self.send(line);
        }
        Ok(Written::default())
    }

    async fn flush(&self) -> Result<Flushed, String> {
        let sent = self.sent.load(Ordering::Relaxed);
        let mut done = self.done.clone();
        if self.lagging.load(Ordering::Relaxed) && *done.borrow() >= sent {
            self.lagging.store(false, Ordering::Relaxed);
            tracing::info!("chain-metrics writer caught up");
        }
        if self.healthy.load(Ordering::Relaxed) && !self.lagging.load(Ordering::Relaxed) {
            let waited = tokio::time::timeout(FLUSH_WAIT, done.wait_for(|d| *d >= sent)).await;
            if waited.is_err() {
                self.lagging.store(true, Ordering::Relaxed);
                tracing::warn!("chain-metrics server is slower than ingestion; points are buffered, not waited for");
            }
        }
        Ok(Flushed::default())
    }

    async fn remove(&self, number: BlockNumber) -> Result<(), String> {
        self.held.lock().expect("held points").remove(&number);
        Ok(())
    }

    async fn finalized(&self, number: BlockNumber) -> Result<(), String> {
        let ready: Vec<Vec<u8>> = {
            let mut held = self.held.lock().expect("held points");
            let later = held.split_off(&(number + 1));
            std::mem::replace(&mut *held, later).into_values().collect()
        };
        ready.into_iter().for_each(|line| self.send(line));
        Ok(())
    }
}

/// Drains the buffer into the server.
struct Writer {
    client: influxdb2::Client,
    org: String,
    bucket: String,
    healthy: Arc<AtomicBool>,
}

impl Writer {
    async fn run(self, mut points: mpsc::Receiver<Vec<u8>>, done: watch::Sender<u64>) {
        let mut finished = 0u64;
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH_POINTS);
        while points.recv_many(&mut batch, BATCH_POINTS).await > 0 {
            let count = batch.len() as u64;
            let outcome = self.write(batch.concat()).await;
            WORKER.chain_points_buffered.dec_by(count as i64);
            WorkerMetrics::count(&WORKER.chain_points, outcome, count);
            finished += count;
            let _ = done.send(finished);
            batch.clear();
        }
    }

    /// Writes one batch, retrying while the server is unreachable or
    /// overloaded; a batch it refuses as malformed is dropped (`failed`).
    async fn write(&self, body: Vec<u8>) -> &'static str {
        let mut delay = Duration::from_millis(200);
        loop {
            let call = self.client.write_line_protocol(&self.org, &self.bucket, body.clone());
            let error = match tokio::time::timeout(WRITE_TIMEOUT, call).await {
                Ok(Ok(())) => {
                    if !self.healthy.swap(true, Ordering::Relaxed) {
                        tracing::info!("chain-metrics server answers again");
                    }
                    return "written";
                }
                Ok(Err(influxdb2::RequestError::Http { status, text }))
                    if status.is_client_error() && status.as_u16() != 429 =>
                {
                    let response: String = text.chars().take(300).collect();
                    tracing::error!(%status, %response, "the chain-metrics server refused a batch; dropped");
                    return "failed";
                }
                Ok(Err(e)) => describe(&e),
                Err(_) => format!("no answer within {WRITE_TIMEOUT:?}"),
            };
            if self.healthy.swap(false, Ordering::Relaxed) {
                tracing::warn!(%error, "chain-metrics server unavailable; points are buffered, then dropped and counted");
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
}

/// What went wrong, without the request's URL (which `reqwest` errors
/// print, and which may carry credentials).
fn describe(error: &influxdb2::RequestError) -> String {
    match error {
        influxdb2::RequestError::Http { status, .. } => format!("HTTP {status}"),
        influxdb2::RequestError::ReqwestProcessing { source } if source.is_timeout() => "timed out".into(),
        influxdb2::RequestError::ReqwestProcessing { source } if source.is_connect() => "cannot connect".into(),
        influxdb2::RequestError::ReqwestProcessing { .. } => "transport error".into(),
        _ => "unexpected client error".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(_: &u64) -> BlockStats {
        BlockStats { time: Some(1_700_000_000), transactions: 3, votes: 1, fees: 15_000, ..BlockStats::default() }
    }

    fn config(url: &str) -> ChainMetricsConfig {
        ChainMetricsConfig {
            url: url.into(),
            org: "o".into(),
            bucket: "b".into(),
            token: Secret::new("t"),
            chain: "solana".into(),
            network: "devnet".into(),
            hold_until_final: true,
            buffer_points: BUFFER_POINTS,
        }
    }

    #[tokio::test]
    async fn a_point_is_one_line_at_the_block_time_plus_its_slot_milliseconds() {
        let sink = ChainMetricsSink::start(config("http://127.0.0.1:9"), stats).unwrap();
        let line = String::from_utf8(sink.line(42, &stats(&0)).unwrap()).unwrap();
        assert!(line.starts_with("chain_blocks,chain=solana,network=devnet "), "{line}");
        assert!(line.contains("transactions=3i") && line.contains("non_vote_transactions=2i"), "{line}");
        assert!(line.trim_end().ends_with(" 1700000000042000000"), "{line}");
    }

    #[tokio::test]
    async fn held_points_wait_for_finality_and_dropped_blocks_have_none() {
        let sink = ChainMetricsSink::start(config("http://127.0.0.1:9"), stats).unwrap();
        for slot in [10, 11, 12] {
            BlockSink::write(&sink, slot, &slot).await.unwrap();
        }
        BlockSink::<u64>::remove(&sink, 11).await.unwrap();
        BlockSink::<u64>::finalized(&sink, 11).await.unwrap();
        assert_eq!(sink.sent.load(Ordering::Relaxed), 1, "10 sent; 11 dropped by the cluster");
        assert_eq!(sink.held.lock().unwrap().keys().copied().collect::<Vec<_>>(), vec![12]);
    }

    #[test]
    fn an_invalid_url_is_refused_not_a_panic() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _guard = runtime.enter();
        let refused = ChainMetricsSink::start(config("influx.example.com"), stats);
        assert!(refused.is_err());
    }
}
