//! A loopback Solana node for tests: HTTP JSON-RPC 2.0 (single and batch) and
//! WebSocket `slotSubscribe`, answering from real recorded blocks with agave's
//! own encoder, so responses have the exact shape a node sends for any
//! `encoding` / `transactionDetails` / `rewards` / `maxSupportedTransactionVersion`.
//! It can inject what real nodes do: error codes -32004/-32007/-32009, HTTP
//! 429, slow answers, and a restart (in-flight connections drop). It counts
//! every request.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use solana_transaction_status::{BlockEncodingOptions, ConfirmedBlock, TransactionDetails, UiTransactionEncoding};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// What the peer does instead of answering a `getBlock` normally.
#[derive(Clone, Debug)]
pub enum Fault {
    /// A JSON-RPC error with this code and agave's message for it.
    Rpc(i64),
    /// HTTP 429 Too Many Requests.
    TooManyRequests,
    /// Answer only after this long (longer than the client's timeout = a timeout).
    Delay(Duration),
}

#[derive(Default)]
struct PeerState {
    blocks: Mutex<BTreeMap<u64, ConfirmedBlock>>,
    tip: AtomicU64,
    /// Faults per slot, used up one per request.
    faults: Mutex<HashMap<u64, VecDeque<Fault>>>,
    /// Faults for every `getBlock` until cleared.
    sticky: Mutex<HashMap<u64, Fault>>,
    /// Added to every answer.
    delay: Mutex<Duration>,
    /// (method, slot) of every request, in arrival order.
    log: Mutex<Vec<(String, Option<u64>)>>,
    slots: Mutex<Option<broadcast::Sender<u64>>>,
    /// Slots confirmed but never finalized: listed only to `confirmed` readers.
    orphans: Mutex<std::collections::HashSet<u64>>,
    /// The newest finalized slot, when it trails the tip (`set_finalized`).
    finalized: Mutex<Option<u64>>,
    /// A header every request must carry (name, value), as paid endpoints require.
    required_header: Mutex<Option<(String, String)>>,
}

pub struct RpcPeer {
    pub addr: SocketAddr,
    state: Arc<PeerState>,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// agave's message for a `getBlock` error code.
fn message(code: i64, slot: u64) -> String {
    match code {
        -32004 => format!("Block not available for slot {slot}"),
        -32007 => format!("Slot {slot} was skipped, or missing due to ledger jump to recent snapshot"),
        -32009 => format!("Slot {slot} was skipped, or missing in long-term storage"),
        _ => "Internal error".into(),
    }
}

fn rpc_error(id: &Value, code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id})
}

impl RpcPeer {
    /// Serves `blocks` (slot → block); the tip is the highest slot.
    pub async fn start(blocks: BTreeMap<u64, ConfirmedBlock>) -> Self {
        let state = Arc::new(PeerState::default());
        state.tip.store(blocks.keys().next_back().copied().unwrap_or(0), Ordering::SeqCst);
        *state.blocks.lock().unwrap() = blocks;
        *state.slots.lock().unwrap() = Some(broadcast::channel(1024).0);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = Self { addr, state, stop: CancellationToken::new(), server: None };
        peer.serve(listener);
        peer
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = Router::new().route("/", post(handle_http).get(handle_ws)).with_state(self.state.clone());
        let stop = self.stop.clone();
        self.server = Some(tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await.unwrap();
        }));
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stops serving (dropping open connections) and serves again on the same port.
    pub async fn restart(&mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
        self.stop = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind(self.addr).await.expect("rebind the peer's port");
        self.serve(listener);
    }

    /// Stops serving: the port refuses connections (a node that went away).
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Makes `finalized` readers see the chain only through `slot` (`getSlot`, `getBlocks`).
    pub fn set_finalized(&self, slot: u64) {
        *self.state.finalized.lock().unwrap() = Some(slot);
    }

    /// Moves the tip the peer reports (`getSlot`) without producing blocks.
    pub fn set_tip(&self, slot: u64) {
        self.state.tip.store(slot, Ordering::SeqCst);
    }

    /// Faults for the next requests of `slot`, in order.
    pub fn inject(&self, slot: u64, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().unwrap().entry(slot).or_default().extend(faults);
    }

    /// A fault on every request of `slot` until [`clear_faults`](Self::clear_faults).
    pub fn always(&self, slot: u64, fault: Fault) {
        self.state.sticky.lock().unwrap().insert(slot, fault);
    }

    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
        self.state.sticky.lock().unwrap().clear();
    }

    /// Delays every answer (to make a run slow enough to interrupt).
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Answers 401 to requests without this header and value.
    pub fn require_header(&self, name: &str, value: &str) {
        *self.state.required_header.lock().unwrap() = Some((name.to_lowercase(), value.to_string()));
    }

    /// Makes `slot` a confirmed block the cluster then skipped: served at
    /// `confirmed`, absent from `finalized` listings.
    pub fn orphan(&self, slot: u64) {
        self.state.orphans.lock().unwrap().insert(slot);
    }

    /// Adds a block and moves the tip, notifying slot subscribers.
    pub fn produce(&self, slot: u64, block: ConfirmedBlock) {
        self.state.blocks.lock().unwrap().insert(slot, block);
        self.state.tip.fetch_max(slot, Ordering::SeqCst);
        if let Some(tx) = self.state.slots.lock().unwrap().as_ref() {
            let _ = tx.send(slot);
        }
    }

    /// How many `method` requests named `slot` arrived.
    pub fn count(&self, method: &str, slot: u64) -> usize {
        self.state.log.lock().unwrap().iter().filter(|(m, s)| m == method && *s == Some(slot)).count()
    }

    /// All requests of `method`, in order.
    pub fn requests(&self, method: &str) -> Vec<Option<u64>> {
        self.state.log.lock().unwrap().iter().filter(|(m, _)| m == method).map(|(_, s)| *s).collect()
    }
}

impl Drop for RpcPeer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle_http(
    State(state): State<Arc<PeerState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let required = state.required_header.lock().unwrap().clone();
    if let Some((name, value)) = required
        && headers.get(&name).and_then(|v| v.to_str().ok()) != Some(value.as_str())
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return axum::Json(rpc_error(&Value::Null, -32700, "Parse error".into())).into_response();
    };
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match request {
        Value::Array(calls) => {
            let mut answers = Vec::new();
            for call in calls {
                match answer(&state, &call).await {
                    Ok(answer) => answers.push(answer),
                    Err(status) => return status.into_response(),
                }
            }
            axum::Json(Value::Array(answers)).into_response()
        }
        call => match answer(&state, &call).await {
            Ok(answer) => axum::Json(answer).into_response(),
            Err(status) => status.into_response(),
        },
    }
}

/// One JSON-RPC call; `Err` is an HTTP-level answer (429).
async fn answer(state: &PeerState, call: &Value) -> Result<Value, StatusCode> {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let method = call.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
    let params = call.get("params").cloned().unwrap_or(json!([]));
    let slot = params.get(0).and_then(Value::as_u64);
    state.log.lock().unwrap().push((method.clone(), slot));
    let tip = state.tip.load(Ordering::SeqCst);
    let result = match method.as_str() {
        "getSlot" | "getBlockHeight" => match (commitment(&params), *state.finalized.lock().unwrap()) {
            (Some("finalized"), Some(finalized)) => json!(tip.min(finalized)),
            _ => json!(tip),
        },
        "getBlocks" => {
            let start = slot.unwrap_or(0);
            let finalized = commitment(&params) == Some("finalized");
            let visible = match *state.finalized.lock().unwrap() {
                Some(f) if finalized => tip.min(f),
                _ => tip,
            };
            let end = params.get(1).and_then(Value::as_u64).unwrap_or(visible).min(visible);
            let orphans = state.orphans.lock().unwrap().clone();
            let blocks = state.blocks.lock().unwrap();
            json!(
                blocks
                    .range(start..=end.max(start))
                    .map(|(s, _)| *s)
                    .filter(|s| *s <= end && !(finalized && orphans.contains(s)))
                    .collect::<Vec<_>>()
            )
        }
        "getBlock" => {
            let slot = slot.unwrap_or(0);
            let fault = state
                .faults
                .lock()
                .unwrap()
                .get_mut(&slot)
                .and_then(VecDeque::pop_front)
                .or_else(|| state.sticky.lock().unwrap().get(&slot).cloned());
            match fault {
                Some(Fault::Rpc(code)) => return Ok(rpc_error(&id, code, message(code, slot))),
                Some(Fault::TooManyRequests) => return Err(StatusCode::TOO_MANY_REQUESTS),
                Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
                None => {}
            }
            let block = state.blocks.lock().unwrap().get(&slot).cloned();
            match block {
                None if slot > tip => return Ok(rpc_error(&id, -32004, message(-32004, slot))),
                None => return Ok(rpc_error(&id, -32007, message(-32007, slot))),
                Some(block) => match encode(block, params.get(1)) {
                    Ok(value) => value,
                    Err(e) => return Ok(rpc_error(&id, -32015, e)),
                },
            }
        }
        "getVersion" => json!({"solana-core": "4.2.2", "feature-set": 0}),
        // A method Chronicle does not serve (account state), for pass-through tests.
        "getBalance" => json!({"context": {"slot": tip, "apiVersion": "4.2.2"}, "value": 1_000_000_000u64}),
        other => return Ok(rpc_error(&id, -32601, format!("Method not found: {other}"))),
    };
    Ok(json!({"jsonrpc": "2.0", "result": result, "id": id}))
}

/// The `commitment` a call asks for, in whichever config object carries it.
fn commitment(params: &Value) -> Option<&str> {
    params.as_array()?.iter().find_map(|p| p.get("commitment")?.as_str())
}

/// A block as a node encodes it for the request's config.
fn encode(block: ConfirmedBlock, config: Option<&Value>) -> Result<Value, String> {
    let field = |name: &str| config.and_then(|c| c.get(name)).cloned();
    let encoding: UiTransactionEncoding = field("encoding")
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or(UiTransactionEncoding::Json);
    let transaction_details: TransactionDetails = field("transactionDetails")
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or(TransactionDetails::Full);
    let show_rewards = field("rewards").and_then(|v| v.as_bool()).unwrap_or(true);
    let max_supported_transaction_version =
        field("maxSupportedTransactionVersion").and_then(|v| v.as_u64()).map(|v| v as u8);
    let options = BlockEncodingOptions { transaction_details, show_rewards, max_supported_transaction_version };
    let encoded = block.encode_with_options(encoding, options).map_err(|e| {
        format!("Transaction version ({e}) is not supported by the requesting client. Please try the request again with the following configuration parameter: \"maxSupportedTransactionVersion\": 0")
    })?;
    serde_json::to_value(encoded).map_err(|e| e.to_string())
}

async fn handle_ws(State(state): State<Arc<PeerState>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| subscriptions(state, socket))
}

/// `slotSubscribe`: one notification per produced slot.
async fn subscriptions(state: Arc<PeerState>, mut socket: WebSocket) {
    let mut slots = state.slots.lock().unwrap().as_ref().map(|tx| tx.subscribe());
    let mut subscription: Option<u64> = None;
    loop {
        tokio::select! {
            message = socket.recv() => {
                let Some(Ok(Message::Text(text))) = message else { return };
                let Ok(call) = serde_json::from_str::<Value>(&text) else { continue };
                let id = call.get("id").cloned().unwrap_or(Value::Null);
                let reply = match call.get("method").and_then(Value::as_str) {
                    Some("slotSubscribe") => {
                        subscription = Some(7);
                        json!({"jsonrpc": "2.0", "result": 7, "id": id})
                    }
                    Some("slotUnsubscribe") => json!({"jsonrpc": "2.0", "result": true, "id": id}),
                    _ => rpc_error(&id, -32601, "Method not found".into()),
                };
                if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                    return;
                }
            }
            slot = async { match slots.as_mut() { Some(rx) => rx.recv().await.ok(), None => std::future::pending().await } } => {
                let (Some(slot), Some(id)) = (slot, subscription) else { continue };
                let note = json!({"jsonrpc": "2.0", "method": "slotNotification",
                    "params": {"result": {"parent": slot.saturating_sub(1), "root": slot.saturating_sub(32), "slot": slot}, "subscription": id}});
                if socket.send(Message::Text(note.to_string().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
