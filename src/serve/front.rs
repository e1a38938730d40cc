//! The HTTP front of every chain's JSON-RPC API: API keys (constant-time
//! comparison), a per-key rate limit, request and batch size limits, a
//! request timeout, `/health` and `/metrics`. Behind it, a jsonrpc-core
//! handler holds the chain's methods (Solana's in `serve/`, EVM's in
//! `chain/evm/serve.rs`).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jsonrpc_core::MetaIoHandler;
use jsonrpc_core::middleware::Middleware;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use super::{Metrics, ServeConfig};
use crate::pipeline::config::Secret;

struct Front<M: Middleware<()>> {
    rpc: MetaIoHandler<(), M>,
    metrics: Arc<Metrics>,
    config: ServeConfig,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

/// The router of a serve replica whose calls `rpc` answers.
pub fn router<M: Middleware<()>>(rpc: MetaIoHandler<(), M>, metrics: Arc<Metrics>, config: ServeConfig) -> Router {
    let limiter = config.rate_limit.and_then(NonZeroU32::new).map(|rps| {
        let burst = config.rate_burst.and_then(NonZeroU32::new).unwrap_or(rps).max(rps);
        RateLimiter::keyed(Quota::per_second(rps).allow_burst(burst))
    });
    let max_body = config.max_body_bytes;
    let state = Arc::new(Front { rpc, metrics, config, limiter });
    Router::new()
        .route("/", post(handle_rpc::<M>))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(handle_metrics::<M>))
        .layer(DefaultBodyLimit::max(max_body))
        // Defense in depth: a bug that panics answers 500 instead of dropping the connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}

/// Serves `app` on `listen` until `shutdown`, then drains open requests.
pub async fn listen(app: Router, listen: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("listen on {listen}: {e}"))?;
    tracing::info!(address = %listener.local_addr()?, "serving JSON-RPC");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

fn json_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = serde_json::json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": null});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The caller's API key: `x-api-key` header, or `?api-key=` as many providers accept.
fn api_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(value.to_string());
    }
    query?.split('&').find_map(|pair| pair.strip_prefix("api-key=")).map(str::to_string)
}

fn key_is_valid(keys: &[Secret], presented: &str) -> bool {
    // Compare with every key, in constant time each, so timing reveals nothing.
    keys.iter().fold(false, |found, key| found | bool::from(key.expose().as_bytes().ct_eq(presented.as_bytes())))
}

/// One span per HTTP request, with the caller's `x-request-id` (when it is a
/// short token) or one of ours, so its log lines can be told apart.
async fn handle_rpc<M: Middleware<()>>(
    state: State<Arc<Front<M>>>,
    peer: axum::extract::ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use tracing::Instrument;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let given = headers.get("x-request-id").and_then(|v| v.to_str().ok()).filter(|v| {
        !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    });
    let id =
        given.map_or_else(|| format!("r{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)), String::from);
    answer_rpc(state, peer, uri, headers, body).instrument(tracing::info_span!("request", id = %id)).await
}

async fn answer_rpc<M: Middleware<()>>(
    State(state): State<Arc<Front<M>>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let presented = api_key(&headers, uri.query());
    if !state.config.api_keys.is_empty() {
        match &presented {
            Some(key) if key_is_valid(&state.config.api_keys, key) => {}
            _ => return json_error(StatusCode::UNAUTHORIZED, -32000, "Unauthorized: missing or unknown API key"),
        }
    }
    if let Some(limiter) = &state.limiter {
        let who = presented.unwrap_or_else(|| peer.ip().to_string());
        if limiter.check_key(&who).is_err() {
            return json_error(StatusCode::TOO_MANY_REQUESTS, -32005, "Too many requests for a specific RPC call");
        }
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return json_error(StatusCode::OK, -32700, "Parse error");
    };
    if let Some(size) = batch_size(text)
        && size > state.config.max_batch
    {
        return json_error(
            StatusCode::OK,
            -32600,
            &format!("Batch too large: {size} requests; max {}", state.config.max_batch),
        );
    }
    let answer = tokio::time::timeout(state.config.request_timeout, state.rpc.handle_request(text, ())).await;
    match answer {
        Ok(Some(response)) => ([(header::CONTENT_TYPE, "application/json")], response).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(), // notifications only
        Err(_) => json_error(StatusCode::OK, -32000, "Request timed out"),
    }
}

/// The number of calls in a batch, without parsing them.
fn batch_size(text: &str) -> Option<usize> {
    if !text.trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<serde::de::IgnoredAny>>(text).ok().map(|calls| calls.len())
}

async fn handle_metrics<M: Middleware<()>>(State(state): State<Arc<Front<M>>>) -> Response {
    use crate::telemetry::metrics::{CONTENT_TYPE, WORKER};
    // Serve's own series, then the process's worker series (the store's
    // calls) unless a worker metrics port of this process has them.
    let mut text = String::new();
    if prometheus_client::encoding::text::encode_registry(&mut text, &state.metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if !crate::telemetry::metrics::served_separately() {
        WORKER.encode_series(&mut text);
    }
    let _ = prometheus_client::encoding::text::encode_eof(&mut text);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_compared_exactly() {
        let keys = vec![Secret::new("alpha-key"), Secret::new("beta-key")];
        assert!(key_is_valid(&keys, "beta-key"));
        assert!(!key_is_valid(&keys, "beta-ke"));
        assert!(!key_is_valid(&keys, ""));
    }

    #[test]
    fn batches_are_counted_without_parsing_calls() {
        assert_eq!(batch_size(r#"[{"a":1},{"b":[1,2]}]"#), Some(2));
        assert_eq!(batch_size(r#"{"a":1}"#), None);
        assert_eq!(batch_size("[ not json"), None);
    }
}
