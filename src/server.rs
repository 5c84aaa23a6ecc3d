//! The connection loop: accepts TCP connections and serves the router on each (HTTP/1.1 and HTTP/2,
//! WebSocket upgrades), with the limits a public server needs.
//!
//! - A client gets `HUB_HEADER_READ_TIMEOUT_SECS` to send a request's headers; a slow one (slowloris)
//!   is cut off instead of holding its connection.
//! - At most `HUB_MAX_CONNECTIONS` connections are served at once; one more is answered
//!   `503 Service Unavailable` with `Retry-After` and closed, so a flood cannot exhaust the process.
//! - On shutdown no connection is accepted any more; in-flight requests finish within the grace period.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::config::ConnectionLimits;

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests finish for at
/// most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // CONNECT protocol for WebSockets over HTTP/2.
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Streamed answers are written event by event: without this, Nagle's algorithm holds a small
        // event back until the client's delayed ACK (40 ms on Linux).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY could not be set");
        }
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics::counter!("http_connections_refused_total").increment(1);
            tokio::spawn(refuse_busy(stream));
            continue;
        };
        let service = router
            .clone()
            .map_request(move |request: hyper::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(remote));
                request
            });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time; closing them");
        }
    }
}

/// Answers a connection over the limit with a 503 and closes it.
async fn refuse_busy(mut stream: TcpStream) {
    const BODY: &str = "{\"errors\":[{\"message\":\"The server is at its connection limit: try again in a moment.\",\"extensions\":{\"code\":\"RATE_LIMITED\",\"retryAfter\":1}}]}";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
