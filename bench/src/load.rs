//! The load generator: a fixed number of HTTP/1.1 keep-alive connections, each owned by one task, for
//! a fixed time, with every latency recorded in an HDR histogram (microseconds, 3 significant digits).
//!
//! - Closed loop: each connection sends its next request as soon as the previous answer arrived, so
//!   the offered load adapts to the server (it measures the most the server can do at that
//!   concurrency; latency then grows with the number of connections, as Little's law says).
//! - Open loop: requests are sent on a fixed schedule (`rate` per second over all connections) whether
//!   or not earlier answers came back. A request that could not leave on time because its connection
//!   still waited for an answer counts its latency from the scheduled time, so a stalled server
//!   cannot hide its queue (no coordinated omission); one sent on time counts from when it was sent
//!   (Tokio's timer wakes up to a millisecond late, and that delay is the generator's own).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Barrier, OnceCell};
use tokio::time::Instant;

/// How an answer is judged.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// Any 2xx status.
    Success,
    /// Status 200 and a GraphQL body without `errors`.
    GraphqlData,
    /// A GraphQL body with data is accepted; `RATE_LIMITED` is a refusal; anything else an error.
    GraphqlOrShed,
    /// A 200 event stream of `data:` events without `errors`: the latency recorded is the time to its
    /// first event, and its events are counted ([`Outcome::chunks`]).
    EventStream,
}

/// One request, ready to send.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Prepared {
    pub fn get(path: &str) -> Self {
        Self {
            method: Method::GET,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn post_json(path: &str, body: &serde_json::Value) -> Self {
        Self {
            method: Method::POST,
            path: path.to_owned(),
            headers: vec![("content-type", "application/json".to_owned())],
            body: Bytes::from(body.to_string()),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Closed or open loop (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Closed,
    Open { rate: f64 },
}

/// What to run: connection `i` sends `requests[i % len]`.
pub struct Load {
    pub address: SocketAddr,
    pub requests: Vec<Prepared>,
    pub connections: usize,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    pub expect: Expect,
    /// After a refusal, wait the `retryAfter` seconds it names before the connection's next request
    /// (what a well-behaved client does); otherwise retry at once.
    pub honor_retry_after: bool,
}

/// What a run measured (after the warm-up).
pub struct Outcome {
    pub accepted: Histogram<u64>,
    pub refused: Histogram<u64>,
    pub errors: u64,
    pub server_errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Event-stream events received while measured (`Expect::EventStream`).
    pub chunks: u64,
}

impl Outcome {
    /// Event-stream events per second.
    pub fn chunks_per_second(&self) -> f64 {
        self.chunks as f64 / self.elapsed.as_secs_f64()
    }

    /// Accepted answers per second.
    pub fn accepted_rps(&self) -> f64 {
        self.accepted.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// All answers per second (accepted, refused and failed).
    pub fn rps(&self) -> f64 {
        (self.accepted.len() + self.refused.len() + self.errors) as f64 / self.elapsed.as_secs_f64()
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 120_000_000, 3).context("histogram bounds")
}

struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(address: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("cannot connect to {address}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender })
    }

    async fn send(
        &mut self,
        address: SocketAddr,
        prepared: &Prepared,
    ) -> anyhow::Result<(u16, Bytes)> {
        let response = self.exchange(address, prepared).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Sends `prepared`; the answer's head, its body still to read.
    async fn exchange(
        &mut self,
        address: SocketAddr,
        prepared: &Prepared,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let mut builder = Request::builder()
            .method(prepared.method.clone())
            .uri(prepared.path.as_str())
            .header("host", address.to_string());
        for (name, value) in &prepared.headers {
            builder = builder.header(*name, value.as_str());
        }
        let request = builder.body(Full::new(prepared.body.clone()))?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }

    /// Sends a request answered by an event stream: the status, when its first `data:` event arrived,
    /// how many events it held, and the whole body.
    async fn send_stream(
        &mut self,
        address: SocketAddr,
        prepared: &Prepared,
    ) -> anyhow::Result<(u16, Option<Instant>, u64, Bytes)> {
        let response = self.exchange(address, prepared).await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut received = Vec::new();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                received.extend_from_slice(&data);
                if first.is_none() && events(&received) > 0 {
                    first = Some(Instant::now());
                }
            }
        }
        let count = events(&received);
        Ok((status, first, count, Bytes::from(received)))
    }
}

/// The `data:` events carrying JSON in an event stream.
fn events(body: &[u8]) -> u64 {
    let marker = b"data: {";
    body.windows(marker.len()).filter(|w| *w == marker).count() as u64
}

/// Sends one request on a fresh connection (for setup, not measured).
pub async fn request(address: SocketAddr, prepared: &Prepared) -> anyhow::Result<(u16, Bytes)> {
    Connection::open(address)
        .await?
        .send(address, prepared)
        .await
}

enum Verdict {
    Accepted,
    Refused,
    Error(String),
}

/// The `retryAfter` seconds of a refusal, when it names them.
fn retry_after(body: &[u8]) -> Option<u64> {
    let key = b"\"retryAfter\":";
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: String = body
        .get(at..)?
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|b| char::from(*b))
        .collect();
    digits.parse().ok()
}

fn judge(expect: Expect, status: u16, body: &[u8]) -> Verdict {
    let text = || {
        String::from_utf8_lossy(body)
            .chars()
            .take(300)
            .collect::<String>()
    };
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    match expect {
        Expect::Success if (200..300).contains(&status) => Verdict::Accepted,
        Expect::GraphqlData if status == 200 && !contains(b"\"errors\"") => Verdict::Accepted,
        Expect::GraphqlOrShed if status == 200 && !contains(b"\"errors\"") => Verdict::Accepted,
        Expect::GraphqlOrShed if contains(b"\"RATE_LIMITED\"") => Verdict::Refused,
        Expect::EventStream if status == 200 && events(body) > 0 && !contains(b"\"errors\"") => {
            Verdict::Accepted
        }
        _ => Verdict::Error(format!("HTTP {status}: {}", text())),
    }
}

struct Worker {
    accepted: Histogram<u64>,
    refused: Histogram<u64>,
    errors: u64,
    server_errors: u64,
    first_error: Option<String>,
    chunks: u64,
}

async fn worker(
    index: usize,
    load: Arc<Load>,
    start: Arc<OnceCell<Instant>>,
    barrier: Arc<Barrier>,
) -> anyhow::Result<Worker> {
    let prepared = load
        .requests
        .get(index % load.requests.len().max(1))
        .context("no request to send")?
        .clone();
    // Every connection opens first; the clock starts when all are open.
    let mut connection = Connection::open(load.address).await;
    barrier.wait().await;
    let start = *start.get_or_init(|| async { Instant::now() }).await;
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let mut result = Worker {
        accepted: histogram()?,
        refused: histogram()?,
        errors: 0,
        server_errors: 0,
        first_error: None,
        chunks: 0,
    };
    let interval = match load.mode {
        Mode::Closed => None,
        Mode::Open { rate } => Some(Duration::from_secs_f64(load.connections as f64 / rate)),
    };
    // Spread the connections' schedules evenly over one interval.
    let mut next =
        interval.map(|every| start + every.mul_f64(index as f64 / load.connections.max(1) as f64));
    loop {
        // When the latency clock starts: the scheduled time if the previous answer came too late to
        // send on time (the server's delay counts), else the moment of sending (the timer wakes
        // this task up to a millisecond late, which is the generator's delay, not the server's).
        let (scheduled, clock) = match (next, interval) {
            (Some(at), Some(every)) => {
                let behind = Instant::now() > at;
                tokio::time::sleep_until(at).await;
                next = Some(at + every);
                (at, if behind { at } else { Instant::now() })
            }
            _ => {
                let now = Instant::now();
                (now, now)
            }
        };
        if scheduled >= end {
            break;
        }
        let streamed = matches!(load.expect, Expect::EventStream);
        let (outcome, first_event, events) = match &mut connection {
            Ok(open) if streamed => match open.send_stream(load.address, &prepared).await {
                Ok((status, first, events, body)) => (Ok((status, body)), first, events),
                Err(e) => (Err(e), None, 0),
            },
            Ok(open) => (open.send(load.address, &prepared).await, None, 0),
            Err(e) => (Err(anyhow::anyhow!("{e:#}")), None, 0),
        };
        // An event stream's latency is the time to its first event.
        let answered = first_event.unwrap_or_else(Instant::now);
        let took = u64::try_from(answered.saturating_duration_since(clock).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let measured = scheduled >= measure_from;
        let mut pause = None;
        let verdict = match outcome {
            Ok((status, body)) => {
                if measured && status >= 500 {
                    result.server_errors += 1;
                }
                let verdict = judge(load.expect, status, &body);
                if load.honor_retry_after && matches!(verdict, Verdict::Refused) {
                    pause = retry_after(&body).map(Duration::from_secs);
                }
                verdict
            }
            Err(e) => {
                // A broken connection is an error; open a new one for the next request.
                connection = Connection::open(load.address).await;
                Verdict::Error(format!("{e:#}"))
            }
        };
        if let Some(pause) = pause {
            tokio::time::sleep(pause.min(end.saturating_duration_since(Instant::now()))).await;
        }
        if !measured {
            continue;
        }
        result.chunks += events;
        match verdict {
            Verdict::Accepted => result.accepted.saturating_record(took),
            Verdict::Refused => result.refused.saturating_record(took),
            Verdict::Error(detail) => {
                result.errors += 1;
                result.first_error.get_or_insert(detail);
            }
        }
    }
    Ok(result)
}

/// Runs a load to the end.
pub async fn run(load: Load) -> anyhow::Result<Outcome> {
    let load = Arc::new(load);
    let barrier = Arc::new(Barrier::new(load.connections));
    let start = Arc::new(OnceCell::new());
    let tasks: Vec<_> = (0..load.connections)
        .map(|index| tokio::spawn(worker(index, load.clone(), start.clone(), barrier.clone())))
        .collect();
    let mut outcome = Outcome {
        accepted: histogram()?,
        refused: histogram()?,
        errors: 0,
        server_errors: 0,
        first_error: None,
        elapsed: load.duration,
        chunks: 0,
    };
    for task in tasks {
        let part = task.await??;
        outcome.chunks += part.chunks;
        outcome.accepted.add(&part.accepted)?;
        outcome.refused.add(&part.refused)?;
        outcome.errors += part.errors;
        outcome.server_errors += part.server_errors;
        if outcome.first_error.is_none() {
            outcome.first_error = part.first_error;
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_by_status_and_graphql_errors() {
        let ok = br#"{"data":{"me":{"id":"1"}}}"#;
        let shed = br#"{"data":null,"errors":[{"extensions":{"code":"RATE_LIMITED"}}]}"#;
        let failed = br#"{"data":null,"errors":[{"extensions":{"code":"INTERNAL"}}]}"#;
        assert!(matches!(
            judge(Expect::Success, 204, b""),
            Verdict::Accepted
        ));
        assert!(matches!(
            judge(Expect::Success, 503, b""),
            Verdict::Error(_)
        ));
        assert!(matches!(
            judge(Expect::GraphqlData, 200, ok),
            Verdict::Accepted
        ));
        assert!(matches!(
            judge(Expect::GraphqlData, 200, failed),
            Verdict::Error(_)
        ));
        assert!(matches!(
            judge(Expect::GraphqlData, 200, shed),
            Verdict::Error(_)
        ));
        assert!(matches!(
            judge(Expect::GraphqlOrShed, 200, shed),
            Verdict::Refused
        ));
        assert!(matches!(
            judge(Expect::GraphqlOrShed, 200, failed),
            Verdict::Error(_)
        ));
        assert!(matches!(
            judge(Expect::GraphqlOrShed, 500, b""),
            Verdict::Error(_)
        ));
    }

    async fn responder() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/ok", axum::routing::get(|| async { "ok" }))
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    "late"
                }),
            )
            .route(
                "/fail",
                axum::routing::get(|| async { (axum::http::StatusCode::BAD_GATEWAY, "no") }),
            );
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    }

    fn load(address: SocketAddr, path: &str, connections: usize, mode: Mode) -> Load {
        Load {
            address,
            requests: vec![Prepared::get(path)],
            connections,
            mode,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(500),
            expect: Expect::Success,
            honor_retry_after: false,
        }
    }

    #[test]
    fn retry_after_is_read_from_a_refusal() {
        let shed = br#"{"errors":[{"extensions":{"code":"RATE_LIMITED","retryAfter":3}}]}"#;
        assert_eq!(retry_after(shed), Some(3));
        assert_eq!(retry_after(b"{}"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_loop_records_every_answer_after_the_warm_up() {
        let address = responder().await;
        let outcome = run(load(address, "/ok", 4, Mode::Closed)).await.unwrap();
        assert!(outcome.accepted.len() > 100, "{}", outcome.accepted.len());
        assert_eq!(outcome.errors, 0);
        assert!(outcome.accepted.value_at_quantile(0.5) >= 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_loop_keeps_its_rate_and_failures_count_as_errors() {
        let address = responder().await;
        let ok = run(load(address, "/ok", 10, Mode::Open { rate: 200.0 }))
            .await
            .unwrap();
        // 200 per second for half a second, give or take a request per connection.
        let sent = ok.accepted.len();
        assert!((90..=110).contains(&sent), "{sent}");
        assert!((ok.rps() - 200.0).abs() < 20.0, "{}", ok.rps());

        let failing = run(load(address, "/fail", 2, Mode::Open { rate: 100.0 }))
            .await
            .unwrap();
        assert!(failing.accepted.is_empty());
        assert!(failing.errors >= 45, "{}", failing.errors);
        assert_eq!(failing.server_errors, failing.errors);
        assert!(failing.first_error.unwrap().starts_with("HTTP 502"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_loop_counts_the_queue_behind_a_slow_server() {
        let address = responder().await;
        // One connection asked for a request every 10 ms; each answer takes 40 ms, so requests leave
        // ever later and their latency, counted from when they were due, keeps growing.
        let slow = run(load(address, "/slow", 1, Mode::Open { rate: 100.0 }))
            .await
            .unwrap();
        assert!(slow.accepted.len() >= 5, "{}", slow.accepted.len());
        assert!(
            slow.accepted.max() > 150_000,
            "the worst latency was only {} µs",
            slow.accepted.max()
        );
        // On time, the same connection's latency is the server's own.
        let fast = run(load(address, "/ok", 1, Mode::Open { rate: 100.0 }))
            .await
            .unwrap();
        assert!(fast.accepted.value_at_quantile(0.5) < 5_000);
    }
}
