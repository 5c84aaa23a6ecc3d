//! The outermost layer: gives every request an id (the client's `x-request-id` when it is sensible,
//! else a fresh UUIDv7), runs the request inside a span carrying that id so every log line has it,
//! echoes it on the response, logs one line per request and records the HTTP metrics. It also decides
//! who the client is (the peer, or behind a trusted proxy the address it forwarded).

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngExt;
use tracing::Instrument;

use crate::clock::Deadline;
use crate::config::Cidr;

/// The request's id, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The peer address of the connection, available to handlers as an extension.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<std::net::IpAddr>);

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Accepts a client-supplied id only if it is short and printable, so it is safe in logs and headers.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

/// Proxies whose forwarding headers are believed (`HUB_TRUSTED_PROXIES`).
#[derive(Clone, Default)]
pub struct TrustedProxies(pub std::sync::Arc<[Cidr]>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(ip))
    }

    /// The client: the connection's peer, unless the peer is a trusted proxy; then the nearest address
    /// in the forwarding chain that is not a trusted proxy (`X-Forwarded-For`, else `Forwarded`). An
    /// address a client wrote itself in the chain is never reached while a trusted proxy appended its
    /// own view after it.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let chain = forwarded_chain(headers);
        let mut client = peer;
        for hop in chain.iter().rev() {
            client = *hop;
            if !self.trusts(*hop) {
                break;
            }
        }
        Some(client)
    }
}

/// The addresses a request passed through, client first, from `X-Forwarded-For` (all its headers, in
/// order) or else `Forwarded`'s `for=` parameters. A hop that is not an address ends the chain there.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|hop| hop.trim().to_owned())
            .collect()
    };
    let xff = values("x-forwarded-for");
    let hops: Vec<String> = if xff.is_empty() {
        values("forwarded")
            .into_iter()
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.eq_ignore_ascii_case("for")
                        .then(|| value.trim_matches('"').to_owned())
                })
            })
            .collect()
    } else {
        xff
    };
    let mut chain = Vec::with_capacity(hops.len());
    for hop in hops {
        match parse_hop(&hop) {
            Some(ip) => chain.push(ip),
            None => chain.clear(),
        }
    }
    chain
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443` or `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    hop.rsplit_once(':')?.0.parse().ok()
}

/// A fresh request id: a UUIDv7 whose random bits come from the thread's generator, with no system call
/// and no lock that every request takes (as `Uuid::now_v7` has, to order ids within a millisecond,
/// which request ids do not need).
fn new_request_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let random: [u8; 10] = rand::rng().random();
    uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .to_string()
}

pub async fn request_context(
    State(proxies): State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let client = proxies.client(peer, request.headers());
    request.extensions_mut().insert(RequestId(id.clone()));
    request.extensions_mut().insert(ClientAddress(client));

    // The route pattern, not the raw path, keeps the metric labels bounded.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // Lines logged while serving carry the request id. With JSON lines and no trace export, the
    // request's scope gives it to them (`telemetry::request_id`) and no span is made; otherwise the
    // request runs in a span, which for an exported trace also carries what a trace viewer shows,
    // named `METHOD /route` until the GraphQL handler names it after its operation.
    let exporting = crate::telemetry::traces::exporting();
    let span = if exporting {
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            method = %method,
            path = %path,
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            http.response.status_code = tracing::field::Empty,
        );
        crate::telemetry::traces::continue_trace(&span, request.headers());
        Some(span)
    } else if crate::telemetry::log_writer::json_lines().is_none() {
        Some(tracing::info_span!("request", request_id = %id))
    } else {
        None
    };
    let started = Instant::now();
    let mut response = match &span {
        Some(span) => next.run(request).instrument(span.clone()).await,
        None => crate::telemetry::request_id::scope(&id, next.run(request)).await,
    };
    let elapsed = started.elapsed();
    let status = response.status();

    if let Some(span) = span.as_ref().filter(|_| exporting) {
        span.record("http.response.status_code", status.as_u16());
    }
    crate::telemetry::request_line::request_finished(
        span.as_ref(),
        &id,
        &method,
        &path,
        status.as_u16(),
        elapsed.as_secs_f64() * 1000.0,
    );
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());

    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::{acceptable, new_request_id};

    #[test]
    fn a_new_request_id_is_a_uuid_v7_of_now_and_differs_from_the_last() {
        let before = std::time::SystemTime::now();
        let id = new_request_id();
        let uuid = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(id, uuid.hyphenated().to_string(), "lower-case, hyphenated");
        let (seconds, _) = uuid.get_timestamp().expect("v7 has a time").to_unix();
        let now = before
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(seconds.abs_diff(now) <= 1, "{seconds} against {now}");
        assert_ne!(new_request_id(), id);
    }

    #[test]
    fn only_short_printable_request_ids_are_accepted() {
        assert!(acceptable("abc-123_x.y"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable("newline\ninjected"));
        assert!(!acceptable(&"a".repeat(129)));
    }
}

/// How long a request may run (`HUB_REQUEST_TIMEOUT_SECS`).
#[derive(Clone, Copy)]
pub struct RequestDeadline(pub std::time::Duration);

/// Stops a request that runs past its deadline and answers `SERVICE_UNAVAILABLE` (503, `retryAfter`),
/// so a client is never left waiting on a stuck request. The deadline travels with the request
/// ([`Deadline`]): an invocation pushes it back to its tool's own timeout, so a long call ends with its
/// own outcome. A WebSocket is bounded only until its upgrade, an event stream until its first byte.
pub async fn request_deadline(
    State(RequestDeadline(limit)): State<RequestDeadline>,
    mut request: Request,
    next: Next,
) -> Response {
    let deadline = Deadline::new(tokio::time::Instant::now() + limit);
    request.extensions_mut().insert(deadline.clone());
    let run = next.run(request);
    tokio::pin!(run);
    loop {
        let at = deadline.at();
        tokio::select! {
            response = &mut run => return response,
            () = tokio::time::sleep_until(at) => {
                if deadline.at() > at {
                    continue;
                }
                break;
            }
        }
    }
    tracing::warn!(
        limit_secs = limit.as_secs(),
        "a request ran past its deadline and was stopped"
    );
    let mut response = super::error_response(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        format!(
            "The request took longer than {} s and was stopped; try again.",
            limit.as_secs()
        ),
    );
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from_static("1"),
    );
    response
}
