//! `GET /graphql/ws`: GraphQL over WebSocket (`graphql-transport-ws`, and the legacy `graphql-ws`), with
//! a caller that is checked again for as long as the socket stays open.
//!
//! Credentials arrive in the `connection_init` payload. From then on the caller is authenticated again
//! before every `subscribe` and every [`RECHECK_EVERY`], from the same caches HTTP requests use (which
//! every instance drops within milliseconds of a change). When the access token expires the socket
//! closes with `4401`; when the key is revoked, or the account is suspended, deleted, demoted or its
//! password changes, with `4403`. Closing the socket ends every stream on it.
//!
//! Limits: `connection_init` must come within `HUB_WS_INIT_TIMEOUT_SECS` (else `4408`), one socket
//! starts at most `HUB_WS_MAX_OPERATIONS` operations (else `4429`), and a message is at most
//! `HUB_MAX_BODY_BYTES`, like an HTTP body.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::Data;
use async_graphql::futures_util::{SinkExt, StreamExt, sink};
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::HttpState;
use super::middleware::{ClientAddress, RequestId};
use super::ws_protocol::{self, Protocol};
use crate::app::AppState;
use crate::auth::caller;
use crate::auth::identity::Caller;
use crate::graphql::context::RequestContext;
use crate::graphql::cost::CostSlot;
use crate::graphql::loaders::Loaders;

/// How often an open socket's caller is checked again between operations.
pub const RECHECK_EVERY: Duration = Duration::from_millis(250);

/// Close code: the access token expired (log in again, then reconnect).
const CLOSE_EXPIRED: u16 = 4401;
/// Close code: the credential no longer grants what it granted (revoked, suspended, demoted…).
const CLOSE_FORBIDDEN: u16 = 4403;
/// Close code: no `connection_init` in time.
const CLOSE_INIT_TIMEOUT: u16 = 4408;
/// Close code: the socket started more operations than one socket may.
const CLOSE_TOO_MANY_OPERATIONS: u16 = 4429;

/// Counts an open socket in the `websocket_connections_open` gauge for as long as it lives.
struct OpenSocket;

impl OpenSocket {
    fn new() -> Self {
        metrics::gauge!("websocket_connections_open").increment(1.0);
        Self
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        metrics::gauge!("websocket_connections_open").decrement(1.0);
    }
}

/// The credentials a socket was opened with, and who they stood for then.
#[derive(Clone)]
struct Session {
    headers: HeaderMap,
    caller: Caller,
    expires_at: Option<DateTime<Utc>>,
}

type SharedSession = Arc<Mutex<Option<Session>>>;

/// Why the server closes a socket: its session stopped holding, or a message broke the protocol.
#[derive(Debug, Clone, Copy)]
enum Close {
    Session(u16),
    Protocol(u16),
}

/// `GET /graphql/ws`.
pub async fn websocket(
    State(state): State<HttpState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(ClientAddress(client_ip)): Extension<ClientAddress>,
    protocol: GraphQLProtocol,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let user_agent = RequestContext::user_agent_of(&headers);
    let strict = Protocol::strict_for(
        headers
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok()),
    );
    // The session outlives the upgrade request's span; give it one with the same request id.
    let span = tracing::info_span!("websocket", request_id = %request_id);
    // A message may be as large as an HTTP request body, no larger.
    let max_message = state.app.config.max_body_bytes;
    upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            let rules = Protocol::new(strict);
            serve(
                socket, state, protocol, rules, request_id, client_ip, user_agent,
            )
            .instrument(span)
        })
}

async fn serve(
    socket: WebSocket,
    state: HttpState,
    protocol: GraphQLProtocol,
    rules: Protocol,
    request_id: String,
    client_ip: Option<IpAddr>,
    user_agent: Option<String>,
) {
    let rules = Arc::new(rules);
    let (app, executor) = (state.app.clone(), state.executor.clone());
    let _open = OpenSocket::new();
    let session = SharedSession::default();
    let (mut socket_out, socket_in) = socket.split();
    let (close_tx, mut close_rx) = tokio::sync::mpsc::channel::<Close>(1);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(16);

    let limits = app.config.connections;
    // A `subscribe` reaches the schema only while its caller still holds and the socket has not used
    // up its operations; otherwise the socket closes.
    let incoming = {
        let (app, session, close_tx) = (app.clone(), Arc::clone(&session), close_tx.clone());
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let rules = Arc::clone(&rules);
        socket_in.then(move |message| {
            let (app, session, close_tx) = (app.clone(), Arc::clone(&session), close_tx.clone());
            let started = Arc::clone(&started);
            let rules = Arc::clone(&rules);
            async move {
                let starts_operation = match &message {
                    Ok(Message::Text(text)) => {
                        let initialised = session.lock().is_ok_and(|s| s.is_some());
                        match rules.incoming(text.as_str(), initialised) {
                            Ok(starts) => starts,
                            Err(code) => {
                                let _ = close_tx.try_send(Close::Protocol(code));
                                return Err(axum::Error::new(std::io::Error::other(
                                    "the message breaks the protocol",
                                )));
                            }
                        }
                    }
                    _ => false,
                };
                if starts_operation {
                    let count = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let refusal = if count > limits.ws_max_operations {
                        Some(CLOSE_TOO_MANY_OPERATIONS)
                    } else {
                        recheck(&app, &session).await
                    };
                    if let Some(code) = refusal {
                        let _ = close_tx.try_send(Close::Session(code));
                        return Err(axum::Error::new(std::io::Error::other(
                            "the socket may not start this operation",
                        )));
                    }
                }
                message
            }
        })
    };
    let outgoing = sink::unfold(out_tx, |out_tx, message: Message| async move {
        out_tx
            .send(message)
            .await
            .map(|()| out_tx)
            .map_err(|_| axum::Error::new(std::io::Error::other("the socket is closing")))
    });
    let graphql = {
        let (app, session) = (app.clone(), Arc::clone(&session));
        GraphQLWebSocket::new_with_pair(outgoing, incoming, executor, protocol)
            .on_connection_init(move |payload| async move {
                // Credentials travel in the payload: {"Authorization": "Bearer …"} or {"X-API-Key": "…"}.
                let headers = payload_headers(&payload);
                let caller = caller::authenticate(&app, &headers)
                    .await
                    .map_err(async_graphql::Error::from)?;
                let expires_at = caller::access_token_expiry(&app, &headers);
                if let Ok(mut slot) = session.lock() {
                    *slot = Some(Session {
                        headers,
                        caller: caller.clone(),
                        expires_at,
                    });
                }
                let mut data = Data::default();
                data.insert(Loaders::default());
                data.insert(CostSlot::default());
                data.insert(RequestContext {
                    request_id,
                    caller,
                    client_ip,
                    user_agent,
                });
                Ok(data)
            })
            .serve()
    };
    let watcher = async {
        let init_deadline = tokio::time::Instant::now() + limits.ws_init_timeout;
        loop {
            tokio::time::sleep(RECHECK_EVERY).await;
            let initialised = session.lock().is_ok_and(|s| s.is_some());
            if !initialised && tokio::time::Instant::now() >= init_deadline {
                let _ = close_tx.send(Close::Session(CLOSE_INIT_TIMEOUT)).await;
                return;
            }
            if let Some(code) = recheck(&app, &session).await {
                let _ = close_tx.send(Close::Session(code)).await;
                return;
            }
        }
    };
    let forward = async move {
        loop {
            tokio::select! {
                biased;
                Some(close) = close_rx.recv() => {
                    let (code, reason) = match close {
                        Close::Session(code) => (code, close_reason(code)),
                        Close::Protocol(code) => (code, ws_protocol::reason(code)),
                    };
                    tracing::info!(code, "closing the socket");
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = socket_out.send(Message::Close(Some(frame))).await;
                    break;
                }
                message = out_rx.recv() => match message {
                    Some(Message::Text(text)) => {
                        let Some(text) = rules.outgoing(text.as_str()) else {
                            continue;
                        };
                        if socket_out.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(message) => {
                        if socket_out.send(message).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
    };
    tokio::join!(forward, async {
        tokio::select! {
            () = graphql => {}
            () = watcher => {}
        }
    });
}

/// The close code when the socket's caller no longer holds; `None` while it does (or before
/// `connection_init`).
async fn recheck(app: &AppState, session: &SharedSession) -> Option<u16> {
    let session = session.lock().ok()?.clone()?;
    if session.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Some(CLOSE_EXPIRED);
    }
    match caller::authenticate(app, &session.headers).await {
        Ok(now) if now == session.caller => None,
        Ok(_) | Err(_) => Some(CLOSE_FORBIDDEN),
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        CLOSE_EXPIRED => "The access token expired: log in again and reconnect.",
        CLOSE_INIT_TIMEOUT => "Connection initialisation timeout",
        CLOSE_TOO_MANY_OPERATIONS => "Too many requests on one socket: open another.",
        _ => "These credentials no longer allow this connection.",
    }
}

/// Credentials from a `connection_init` payload, read like request headers (keys case-insensitive).
fn payload_headers(payload: &serde_json::Value) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(object) = payload.as_object() {
        for (key, value) in object {
            let name = key.to_ascii_lowercase();
            if (name == "authorization" || name == "x-api-key")
                && let (Ok(name), Some(Ok(value))) = (
                    header::HeaderName::from_bytes(name.as_bytes()),
                    value.as_str().map(HeaderValue::from_str),
                )
            {
                headers.insert(name, value);
            }
        }
    }
    headers
}
