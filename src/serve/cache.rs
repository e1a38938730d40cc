//! The Redis cache tier: read-through answers keyed by method and normalized
//! params, and their invalidation the moment ingestion writes a block.
//!
//! Answers that can change are registered in index sets: the first page of an
//! address's history under `chronicle:idx:addr:<address>`, anything that
//! reaches the tip under `chronicle:idx:tip`. When a block lands, the writer
//! deletes every answer in the sets of the addresses it touched and in the tip
//! set, and bumps a generation counter. An answer computed before that bump is
//! not stored after it (a compare-and-set on the generation), so no replica
//! serves a stale first page once the block is written: all replicas share the
//! cache, and the writer empties it before its checkpoint moves.
//!
//! Redis is optional at every moment: any cache failure is a miss, answers
//! come from the store, and the connection manager reconnects on its own.
//! A `memory://NAME` URL names the process's own cache instead
//! (`memory_cache.rs`, for `chronicle dev` without Redis), same contract.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonrpc_core::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use solana_pubkey::Pubkey;
use tokio::sync::RwLock;

use super::memory_cache::MemoryCache;
use super::methods::{Answer, Freshness, Method};
use crate::pipeline::config::Secret;

const TIP_SET: &str = "chronicle:idx:tip";
const GENERATION: &str = "chronicle:gen";

fn address_set(address: &Pubkey) -> String {
    format!("chronicle:idx:addr:{address}")
}

/// Stores an answer only if no block was written since it was computed.
const PUT_IF_CURRENT: &str = r#"
local generation = redis.call('GET', KEYS[2]) or '0'
if generation ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[3])
end
return 1
"#;

/// Deletes the answers registered in the given index sets, then the sets.
const DROP_INDEXED: &str = r#"
redis.call('INCR', KEYS[1])
local dropped = 0
for i = 2, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[i])
  for _, key in ipairs(members) do dropped = dropped + redis.call('DEL', key) end
  redis.call('DEL', KEYS[i])
end
return dropped
"#;

#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// `redis://` or `rediss://` (TLS) URL, with credentials.
    pub url: Secret,
    /// TTL of answers that can change.
    pub ttl: Duration,
    /// TTL of answers that cannot.
    pub immutable_ttl: Duration,
    /// How long a cache call may take before it counts as a miss.
    pub timeout: Duration,
    /// Redis `maxmemory` to set (e.g. `2gb`), and the `maxmemory-policy`.
    pub max_memory: Option<String>,
    pub eviction: Option<String>,
    /// The methods cached, each with its own TTL or `None` for the defaults
    /// above; empty: every method, with the defaults.
    pub methods: Vec<(Method, Option<Duration>)>,
    /// Redis connections per replica.
    pub pool_size: usize,
}

impl CacheConfig {
    /// A cache at `url` with serve's defaults (2 s, 24 h, one connection, every method).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url),
            ttl: Duration::from_secs(2),
            immutable_ttl: Duration::from_secs(24 * 3600),
            timeout: Duration::from_millis(250),
            max_memory: None,
            eviction: None,
            methods: Vec::new(),
            pool_size: 1,
        }
    }

    /// Whether `method`'s answers are cached, and the TTL that replaces the defaults.
    pub fn policy(&self, method: Method) -> Option<Option<Duration>> {
        if self.methods.is_empty() {
            return Some(None);
        }
        self.methods.iter().find(|(m, _)| *m == method).map(|(_, ttl)| *ttl)
    }
}

/// Lazily (re)connecting Redis connections shared by the cache and the
/// invalidator: `pool_size` multiplexed connections, used in turn, so one
/// large answer in flight does not hold up the calls behind it.
struct Connection {
    client: redis::Client,
    timeout: Duration,
    managers: Vec<RwLock<Option<ConnectionManager>>>,
    next: std::sync::atomic::AtomicUsize,
    last_failure: std::sync::Mutex<Option<Instant>>,
}

impl Connection {
    fn new(url: &str, timeout: Duration, pool_size: usize) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            timeout,
            managers: (0..pool_size.max(1)).map(|_| RwLock::new(None)).collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
            last_failure: std::sync::Mutex::new(None),
        })
    }

    /// A connection, or `None` while Redis is unreachable (retried at most once a second).
    async fn get(&self) -> Option<ConnectionManager> {
        let slot = &self.managers[self.next.fetch_add(1, Ordering::Relaxed) % self.managers.len()];
        if let Some(manager) = slot.read().await.as_ref() {
            return Some(manager.clone());
        }
        // After a failed attempt, calls are misses for a second instead of each waiting on a connect.
        if self.last_failure.lock().expect("lock").is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return None;
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        match self.client.get_connection_manager_with_config(config).await {
            Ok(manager) => {
                tracing::info!("cache connected");
                *slot.write().await = Some(manager.clone());
                Some(manager)
            }
            Err(e) => {
                *self.last_failure.lock().expect("lock") = Some(Instant::now());
                tracing::warn!(error = %e, "cache unavailable; answering from the store");
                None
            }
        }
    }
}

/// Where answers live: a tier's Redis, or the process's own cache.
enum Backend {
    Redis(Connection),
    Memory(Arc<MemoryCache>),
}

impl Backend {
    fn open(url: &str, timeout: Duration, pool_size: usize) -> Result<Self, redis::RedisError> {
        Ok(match url.strip_prefix("memory://") {
            Some(name) => Backend::Memory(MemoryCache::named(name)),
            None => Backend::Redis(Connection::new(url, timeout, pool_size)?),
        })
    }
}

/// The read-through cache used by `chronicle serve`.
pub struct Cache {
    backend: Backend,
    config: CacheConfig,
    failures: AtomicU64,
}

/// A cached answer, or the generation to store a fresh one under.
pub enum Lookup {
    Hit(Value),
    Miss { generation: Option<String> },
}

impl Cache {
    pub fn new(config: CacheConfig) -> Result<Arc<Self>, redis::RedisError> {
        Ok(Arc::new(Self {
            backend: Backend::open(config.url.expose(), config.timeout, config.pool_size)?,
            config,
            failures: AtomicU64::new(0),
        }))
    }

    /// Applies the memory bound and eviction policy the CacheTier declares.
    /// Managed Redis often forbids CONFIG; then the server's own settings stay.
    pub async fn configure(&self) {
        let settings = [("maxmemory", &self.config.max_memory), ("maxmemory-policy", &self.config.eviction)];
        let Backend::Redis(connection) = &self.backend else { return };
        let Some(mut redis) = connection.get().await else { return };
        for (name, value) in settings.iter().filter_map(|(n, v)| v.as_ref().map(|v| (n, v))) {
            let result: Result<(), _> =
                redis::cmd("CONFIG").arg("SET").arg(name).arg(value).query_async(&mut redis).await;
            match result {
                Ok(()) => tracing::info!(setting = name, value = %value, "cache configured"),
                Err(e) => {
                    tracing::warn!(setting = name, error = %e, "cannot configure the cache; keeping Redis's own setting")
                }
            }
        }
    }

    /// The key of an answer: method and normalized params (JSON with sorted keys).
    pub fn key(method: Method, params: &Value) -> String {
        Self::key_named(method.name(), params)
    }

    /// [`key`](Self::key) of any chain's method, by its name.
    pub fn key_named(method: &str, params: &Value) -> String {
        let digest = Sha256::digest(params.to_string().as_bytes());
        format!("chronicle:rpc:{method}:{}", hex(&digest[..16]))
    }

    fn failed(&self, what: &str, error: &redis::RedisError) {
        // One line per 100 failures: an outage does not flood the log.
        if self.failures.fetch_add(1, Ordering::Relaxed) % 100 == 0 {
            tracing::warn!(error = %error, what, "cache call failed; answering from the store");
        }
    }

    pub async fn lookup(&self, key: &str) -> Lookup {
        let connection = match &self.backend {
            Backend::Redis(connection) => connection,
            Backend::Memory(memory) => {
                return match memory.get(key) {
                    (Some(value), _) => Lookup::Hit(value),
                    (None, generation) => Lookup::Miss { generation: Some(generation.to_string()) },
                };
            }
        };
        let Some(mut redis) = connection.get().await else { return Lookup::Miss { generation: None } };
        let result: Result<(Option<String>, Option<String>), _> =
            redis::pipe().get(key).get(GENERATION).query_async(&mut redis).await;
        match result {
            Ok((Some(cached), _)) => match serde_json::from_str(&cached) {
                Ok(value) => Lookup::Hit(value),
                Err(_) => Lookup::Miss { generation: None },
            },
            Ok((None, generation)) => Lookup::Miss { generation: Some(generation.unwrap_or_else(|| "0".into())) },
            Err(e) => {
                self.failed("lookup", &e);
                Lookup::Miss { generation: None }
            }
        }
    }

    pub fn caches(&self, method: Method) -> bool {
        self.config.policy(method).is_some()
    }

    /// Stores `method`'s answer computed under `generation` (if no block landed since).
    pub async fn store(&self, key: &str, method: Method, generation: Option<String>, answer: &Answer) {
        let Some(ttl_override) = self.config.policy(method) else { return };
        self.put(key, generation, answer, ttl_override).await
    }

    /// Stores an answer computed under `generation` (if no block landed
    /// since), with the TTL its freshness gives or `ttl_override`.
    pub async fn put(&self, key: &str, generation: Option<String>, answer: &Answer, ttl_override: Option<Duration>) {
        let Some(generation) = generation else { return };
        let (ttl, sets) = match &answer.freshness {
            Freshness::Uncacheable => return,
            Freshness::Immutable => (self.config.immutable_ttl, Vec::new()),
            Freshness::Mutable { addresses, tip } => {
                let mut sets: Vec<String> = addresses.iter().map(address_set).collect();
                if *tip {
                    sets.push(TIP_SET.into());
                }
                (self.config.ttl, sets)
            }
        };
        let ttl = ttl_override.unwrap_or(ttl);
        let connection = match &self.backend {
            Backend::Redis(connection) => connection,
            Backend::Memory(memory) => {
                if let Ok(generation) = generation.parse() {
                    memory.put_if_current(key, generation, answer.value.clone(), ttl, &sets);
                }
                return;
            }
        };
        let Some(mut redis) = connection.get().await else { return };
        let put = redis::Script::new(PUT_IF_CURRENT);
        let mut script = put.prepare_invoke();
        script.key(key).key(GENERATION);
        for set in &sets {
            script.key(set);
        }
        script.arg(&generation).arg(answer.value.to_string()).arg(ttl.as_millis() as u64);
        if let Err(e) = script.invoke_async::<i64>(&mut redis).await {
            self.failed("store", &e);
        }
    }
}

/// Deletes every answer and index set (keys under `chronicle:rpc:` and
/// `chronicle:idx:`), a page of SCAN at a time, and bumps the generation.
const DROP_ALL: &str = r#"
redis.call('INCR', KEYS[1])
local dropped = 0
for _, pattern in ipairs({'chronicle:rpc:*', 'chronicle:idx:*'}) do
  local cursor = '0'
  repeat
    local page = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = page[1]
    for _, key in ipairs(page[2]) do dropped = dropped + redis.call('DEL', key) end
  until cursor == '0'
end
return dropped
"#;

/// What ingestion uses to drop the answers a new block changes.
pub struct Invalidator {
    backend: Backend,
}

impl Invalidator {
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self { backend: Backend::open(url, Duration::from_secs(2), 1)? })
    }

    /// Drops the cached answers that blocks touching `addresses` change.
    /// Returns how many were dropped; an unreachable cache is logged, not fatal
    /// (its answers expire with their TTL).
    pub async fn blocks_written(&self, addresses: &[Pubkey]) -> usize {
        let connection = match &self.backend {
            Backend::Redis(connection) => connection,
            Backend::Memory(memory) => {
                let mut sets: Vec<String> = addresses.iter().map(address_set).collect();
                sets.push(TIP_SET.into());
                crate::telemetry::metrics::WorkerMetrics::count(
                    &crate::telemetry::metrics::WORKER.cache_invalidations,
                    "ok",
                    1,
                );
                return memory.drop_indexed(&sets);
            }
        };
        use crate::telemetry::metrics::{WORKER, WorkerMetrics};
        let Some(mut redis) = connection.get().await else {
            WorkerMetrics::count(&WORKER.cache_invalidations, "error", 1);
            return 0;
        };
        let drop_indexed = redis::Script::new(DROP_INDEXED);
        let mut script = drop_indexed.prepare_invoke();
        script.key(GENERATION).key(TIP_SET);
        for address in addresses {
            script.key(address_set(address));
        }
        match script.invoke_async::<i64>(&mut redis).await {
            Ok(dropped) => {
                WorkerMetrics::count(&WORKER.cache_invalidations, "ok", 1);
                usize::try_from(dropped).unwrap_or(0)
            }
            Err(e) => {
                WorkerMetrics::count(&WORKER.cache_invalidations, "error", 1);
                tracing::warn!(error = %e, "cache invalidation failed; stale answers live until their TTL");
                0
            }
        }
    }
}

impl Invalidator {
    /// Drops every cached answer: blocks were removed (retention), so even
    /// answers cached as immutable may be wrong. Returns how many went.
    pub async fn drop_all(&self) -> Result<usize, String> {
        let connection = match &self.backend {
            Backend::Redis(connection) => connection,
            Backend::Memory(memory) => return Ok(memory.drop_all()),
        };
        let mut redis = connection.get().await.ok_or_else(|| "the cache is unreachable".to_string())?;
        let drop_all = redis::Script::new(DROP_ALL);
        let mut script = drop_all.prepare_invoke();
        script.key(GENERATION);
        let dropped = script.invoke_async::<i64>(&mut redis).await.map_err(|e| e.to_string())?;
        Ok(usize::try_from(dropped).unwrap_or(0))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
