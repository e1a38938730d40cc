//! An optional upstream node: calls `serve` does not answer (unknown methods,
//! and history misses when configured) pass through to it unchanged, so an
//! application needs one URL. Its answers are never cached; its errors come
//! back as it sent them; a limit on calls per second protects it; and when it
//! cannot be reached the caller is told so, not given an empty answer.
//! It is also the head `getHealth` measures the store's lag against. The
//! client, the pass-through middleware and the counting are every chain's
//! (Solana's `serve`, `chain/evm/serve.rs`); which misses go is each chain's.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jsonrpc_core::futures_util::future::Either;
use jsonrpc_core::middleware::{Middleware, NoopCallFuture, NoopFuture};
use jsonrpc_core::{Call, Error, ErrorCode, Output, Params, Value};
use solana_clock::Slot;

use super::Metrics;
use crate::pipeline::config::Secret;

#[derive(Clone)]
pub struct UpstreamConfig {
    /// JSON-RPC URL; may carry a provider's key, so it is never printed.
    pub url: String,
    /// Header and token sent with every call (`Authorization` sends `Bearer <token>`).
    pub auth: Option<(String, Secret)>,
    /// Also pass history misses (blocks or transactions the store does not hold).
    pub forward_misses: bool,
    pub requests_per_second: Option<u32>,
    pub timeout: Duration,
}

impl UpstreamConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            auth: None,
            forward_misses: false,
            requests_per_second: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// Scheme, host and port only: what logs and errors may show.
    pub fn host(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(url) => format!(
                "{}://{}:{}",
                url.scheme(),
                url.host_str().unwrap_or("?"),
                url.port_or_known_default().unwrap_or(0)
            ),
            Err(_) => "(unparsable URL)".into(),
        }
    }
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("host", &self.host())
            .field("auth_header", &self.auth.as_ref().map(|(name, _)| name))
            .field("forward_misses", &self.forward_misses)
            .field("requests_per_second", &self.requests_per_second)
            .finish()
    }
}

/// Why a call could not be passed through (the upstream's own errors are
/// answers, returned as they came).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream node rate limit reached ({0} requests/s); retry later")]
    RateLimited(u32),
    #[error("upstream node {host} unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("upstream node {host} sent an answer that is not JSON-RPC: {reason}")]
    BadAnswer { host: String, reason: String },
}

impl UpstreamError {
    /// The bounded metric label of this outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Self::RateLimited(_) => "rate_limited",
            Self::Unreachable { .. } => "unreachable",
            Self::BadAnswer { .. } => "bad_answer",
        }
    }
}

/// Server errors in the range jsonrpc reserves for implementations; agave's
/// own codes stay for agave's meanings.
pub const UPSTREAM_RATE_LIMITED: i64 = -32097;
pub const UPSTREAM_UNAVAILABLE: i64 = -32098;

impl From<UpstreamError> for Error {
    fn from(e: UpstreamError) -> Self {
        let code = match e {
            UpstreamError::RateLimited(_) => UPSTREAM_RATE_LIMITED,
            _ => UPSTREAM_UNAVAILABLE,
        };
        Error { code: ErrorCode::ServerError(code), message: e.to_string(), data: None }
    }
}

/// How long a head slot read for `getHealth` is reused.
const HEAD_REUSE: Duration = Duration::from_secs(1);

pub struct Upstream {
    config: UpstreamConfig,
    client: reqwest::Client,
    limiter: Option<(u32, DefaultDirectRateLimiter)>,
    head: Mutex<Option<(Instant, Slot)>>,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Self {
        let limiter = config
            .requests_per_second
            .and_then(|rps| NonZeroU32::new(rps).map(|n| (rps, RateLimiter::direct(Quota::per_second(n)))));
        let client = reqwest::Client::builder().timeout(config.timeout).build().unwrap_or_default();
        Self { config, client, limiter, head: Mutex::new(None) }
    }

    pub fn forwards_misses(&self) -> bool {
        self.config.forward_misses
    }

    /// Passes one call through; `Ok(Err(_))` is the upstream's own error answer.
    pub async fn call(&self, method: &str, params: &Params) -> Result<Result<Value, Error>, UpstreamError> {
        if let Some((rps, limiter)) = &self.limiter
            && limiter.check().is_err()
        {
            return Err(UpstreamError::RateLimited(*rps));
        }
        let host = || self.config.host();
        let params = match params {
            Params::None => Params::Array(Vec::new()),
            other => other.clone(),
        };
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut request = self.client.post(&self.config.url).json(&body);
        if let Some((header, token)) = &self.config.auth {
            let value = if header.eq_ignore_ascii_case("authorization") {
                format!("Bearer {}", token.expose())
            } else {
                token.expose().to_string()
            };
            request = request.header(header, value);
        }
        // `without_url`: the URL may carry a key.
        let unreachable =
            |e: reqwest::Error| UpstreamError::Unreachable { host: host(), reason: e.without_url().to_string() };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        let answer: Value = serde_json::from_str(&text).map_err(|_| UpstreamError::BadAnswer {
            host: host(),
            reason: format!("HTTP {status}, {} bytes of non-JSON", text.len()),
        })?;
        if let Some(error) = answer.get("error") {
            let error: Error = serde_json::from_value(error.clone())
                .map_err(|e| UpstreamError::BadAnswer { host: host(), reason: format!("error object: {e}") })?;
            return Ok(Err(error));
        }
        match answer.get("result") {
            Some(result) => Ok(Ok(result.clone())),
            None => {
                Err(UpstreamError::BadAnswer { host: host(), reason: format!("HTTP {status}, no result or error") })
            }
        }
    }

    /// The cluster's finalized slot as the upstream reports it, reused for a second.
    pub async fn head_slot(&self) -> Result<Slot, UpstreamError> {
        if let Some((at, slot)) = *self.head.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < HEAD_REUSE
        {
            return Ok(slot);
        }
        let params = Params::Array(vec![serde_json::json!({"commitment": "finalized"})]);
        let slot = match self.call("getSlot", &params).await? {
            Ok(value) => value.as_u64().ok_or_else(|| UpstreamError::BadAnswer {
                host: self.config.host(),
                reason: format!("getSlot answered {value}"),
            })?,
            Err(e) => {
                return Err(UpstreamError::BadAnswer {
                    host: self.config.host(),
                    reason: format!("getSlot failed: {}", e.message),
                });
            }
        };
        *self.head.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), slot));
        Ok(slot)
    }
}

/// One call through the upstream, counted by `reason` (`unknown_method` or
/// `miss`): its answer or error as it sent them, or why it could not be asked.
pub async fn forward(
    upstream: &Upstream,
    metrics: &Metrics,
    method: &str,
    params: &Params,
    reason: &str,
) -> Result<Result<Value, Error>, UpstreamError> {
    let answer = upstream.call(method, params).await;
    let outcome = match &answer {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "error",
        Err(e) => {
            tracing::warn!(error = %e, method, "upstream call failed");
            e.label()
        }
    };
    metrics.count_upstream(reason, outcome);
    answer
}

/// Sends calls to methods `serve` does not answer (`served` says which it
/// does) to the upstream, when there is one; without one they get jsonrpc's
/// "Method not found".
pub struct Passthrough {
    pub upstream: Option<Arc<Upstream>>,
    pub metrics: Arc<Metrics>,
    pub served: fn(&str) -> bool,
}

impl Middleware<()> for Passthrough {
    type Future = NoopFuture;
    type CallFuture = NoopCallFuture;

    fn on_call<F, X>(&self, call: Call, meta: (), next: F) -> Either<Self::CallFuture, X>
    where
        F: Fn(Call, ()) -> X + Send + Sync,
        X: std::future::Future<Output = Option<Output>> + Send + 'static,
    {
        match (call, &self.upstream) {
            (Call::MethodCall(call), Some(upstream)) if !(self.served)(&call.method) => {
                let (upstream, metrics) = (upstream.clone(), self.metrics.clone());
                Either::Left(Box::pin(async move {
                    let started = Instant::now();
                    let answer = forward(&upstream, &metrics, &call.method, &call.params, "unknown_method")
                        .await
                        .unwrap_or_else(|e| Err(e.into()));
                    // Client-chosen names would make the label unbounded.
                    metrics.count("other", "off", crate::telemetry::metrics::outcome(answer.is_ok()), started);
                    Some(Output::from(answer, call.id, call.jsonrpc))
                }))
            }
            (call, _) => Either::Right(next(call, meta)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_key_never_prints() {
        let config = UpstreamConfig::new("https://node.example:8443/?api-key=SECRET");
        assert_eq!(config.host(), "https://node.example:8443");
        assert!(!format!("{config:?}").contains("SECRET"));
    }
}
