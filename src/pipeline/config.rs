//! What a source is told, the same for every chain: the worker spec's
//! source with its Secrets resolved, ready for the chain's adapter to open
//! (`ChainAdapter::source`). A new kind of source is one variant here and
//! one file under its chain.

use std::time::Duration;

use crate::crd::chain_source::{Commitment, Traces};

/// The source of one ingest.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// A node's JSON-RPC (and, when given, its WebSocket for wake-ups).
    Rpc(RpcEndpoint),
    /// A BigQuery dataset of the chain's rows (lake only).
    BigQuery(BigQueryDataset),
    /// Another canonical store: replication (`replication/`).
    Store(StoreOrigin),
    /// Epoch archives (Old Faithful CARs for Solana).
    Archive(ArchiveLocation),
}

/// Where a chain's epoch archives are: one file per epoch.
#[derive(Clone, PartialEq, Eq)]
pub struct ArchiveLocation {
    /// `file://`, `http(s)://`, `s3://` or `gs://` URL with `{epoch}` where
    /// the epoch number goes, e.g. `https://files.old-faithful.net/{epoch}/epoch-{epoch}.car`.
    pub url: String,
    pub epoch_slots: u64,
}

impl ArchiveLocation {
    pub fn url_of(&self, epoch: u64) -> String {
        self.url.replace("{epoch}", &epoch.to_string())
    }
}

/// Shows where the archives are, not what a presigned URL carries.
impl std::fmt::Debug for ArchiveLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveLocation")
            .field("url", &url_host(&self.url))
            .field("epoch_slots", &self.epoch_slots)
            .finish()
    }
}

/// The store a replication copies from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOrigin {
    /// `bigtable://…` or `embedded:///…`.
    pub url: String,
    pub access: crate::store::BigtableAccess,
    /// Compare every block's rows with the target before and after writing.
    pub verify: bool,
    /// Rewrite the rows verification finds missing or different (else only report them).
    pub repair: bool,
}

/// A chain's dataset in BigQuery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BigQueryDataset {
    pub access: crate::bigquery::BigQueryAccess,
    /// `project.dataset`, e.g. `bigquery-public-data.crypto_solana_mainnet_us`.
    pub dataset: String,
    /// Our table name → the dataset's, where they differ from the public dataset's.
    pub tables: std::collections::BTreeMap<String, String>,
    /// A node to check the dataset against: the chain's produced blocks, and
    /// each block's transaction count (none: the dataset is taken as it is).
    pub check: Option<RpcEndpoint>,
    /// Take a block the dataset lacks, or has incompletely, from that node.
    pub repair: bool,
    /// A follower stays this many slots behind the dataset's newest block:
    /// a block's rows land in the dataset's tables at different moments.
    pub settle_slots: u64,
}

impl BigQueryDataset {
    /// Whether our table `table` is mapped to nothing: the dataset lacks it
    /// (`--bigquery-table traces=`), and it is not read.
    pub fn maps_to_nothing(&self, table: &str) -> bool {
        self.tables.get(table).is_some_and(|name| name.is_empty())
    }
}

/// How a node is reached and paced. Its URLs may carry a provider's key
/// (`?api-key=…`, a path token), so `Debug` shows their host only.
#[derive(Clone, PartialEq, Eq)]
pub struct RpcEndpoint {
    pub url: String,
    /// WebSocket URL for new-block notifications when following (else the tip is polled).
    pub websocket: Option<String>,
    /// Header and token sent with every request (`Authorization` sends `Bearer <token>`).
    pub auth: Option<(String, Secret)>,
    /// How final a block must be before it is read.
    pub commitment: Commitment,
    /// EVM chains whose nodes have no `finalized` tag: a block is final this
    /// many blocks below the newest.
    pub confirmations: Option<u64>,
    /// EVM chains: whether each block's traces are asked for.
    pub traces: Traces,
    pub timeout: Duration,
    /// Requests per second; `None` leaves pacing to the node's 429s.
    pub requests_per_second: Option<u32>,
    /// Requests allowed at once above the sustained rate (default: the rate).
    pub burst: Option<u32>,
    /// Tries per request before a block is a gap.
    pub attempts: usize,
}

/// `scheme://host[:port]` of a URL: where it points, without what it carries.
pub fn url_host(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match parsed.port() {
            Some(port) => format!("{}://{}:{port}", parsed.scheme(), parsed.host_str().unwrap_or("?")),
            None => format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or("?")),
        },
        Err(_) => "<unparsable URL>".into(),
    }
}

impl std::fmt::Debug for RpcEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcEndpoint")
            .field("url", &url_host(&self.url))
            .field("websocket", &self.websocket.as_deref().map(url_host))
            .field("auth", &self.auth)
            .field("commitment", &self.commitment)
            .field("confirmations", &self.confirmations)
            .field("traces", &self.traces)
            .field("timeout", &self.timeout)
            .field("requests_per_second", &self.requests_per_second)
            .field("burst", &self.burst)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl RpcEndpoint {
    /// The header every request carries (`Authorization` sends `Bearer
    /// <token>`), marked sensitive; an error names the header, never the token.
    pub fn auth_header(&self) -> Result<Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>, String> {
        let Some((header, token)) = &self.auth else { return Ok(None) };
        let value = if header.eq_ignore_ascii_case("authorization") {
            format!("Bearer {}", token.expose())
        } else {
            token.expose().to_string()
        };
        let name = reqwest::header::HeaderName::try_from(header.as_str())
            .map_err(|_| format!("auth header {header:?} is not a valid HTTP header name"))?;
        let mut value = reqwest::header::HeaderValue::try_from(value)
            .map_err(|_| format!("the token for header {header:?} is not a valid HTTP header value"))?;
        value.set_sensitive(true);
        Ok(Some((name, value)))
    }

    /// The client-side pace: `requests_per_second`, with `burst` at once
    /// (default: the rate); `None` leaves pacing to the node's 429s.
    pub fn limiter(&self) -> Option<governor::DefaultDirectRateLimiter> {
        use std::num::NonZeroU32;
        self.requests_per_second.and_then(NonZeroU32::new).map(|rps| {
            let burst = self.burst.and_then(NonZeroU32::new).unwrap_or(rps).max(rps);
            governor::RateLimiter::direct(governor::Quota::per_second(rps).allow_burst(burst))
        })
    }

    /// Backoff with jitter between the tries of one request (`attempts` in all).
    pub fn backoff(&self) -> backon::ExponentialBuilder {
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(self.attempts.max(1) - 1)
            .with_jitter()
    }

    /// An endpoint at `url` with the defaults a worker uses.
    pub fn new(url: impl Into<String>, commitment: Commitment) -> Self {
        Self {
            url: url.into(),
            websocket: None,
            auth: None,
            commitment,
            confirmations: None,
            traces: Traces::Auto,
            timeout: Duration::from_secs(30),
            requests_per_second: None,
            burst: None,
            attempts: 4,
        }
    }
}

/// A credential (a token, or a URL that carries one): `Debug` shows `***`
/// and there is no `Display`, so a config holding it can be logged whole and
/// no format string can print it; [`expose`](Self::expose) is the one way to
/// the value, called only where it is sent.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn an_endpoint_is_printed_without_the_key_its_url_carries() {
        let mut endpoint = super::RpcEndpoint::new(
            "https://mainnet.helius-rpc.com/?api-key=hunter2",
            crate::crd::chain_source::Commitment::Finalized,
        );
        endpoint.websocket = Some("wss://node.example.com:8900/hunter2".into());
        let printed = format!("{endpoint:?}");
        assert!(printed.contains("https://mainnet.helius-rpc.com") && printed.contains("wss://node.example.com:8900"));
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn a_secret_cannot_be_printed() {
        let secret = Secret::new("postgres://chronicle:hunter2@db/catalog");
        assert_eq!(format!("{secret:?} {:?}", Some(&secret)), "*** Some(***)");
        assert_eq!(secret.expose(), "postgres://chronicle:hunter2@db/catalog");
        // No `Display`: `format!("{secret}")` does not compile.
    }
}
