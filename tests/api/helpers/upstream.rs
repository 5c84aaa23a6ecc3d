//! A real HTTP upstream for gateway tests, on a random local port.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Counters {
    calls: Arc<AtomicUsize>,
    failures_left: Arc<AtomicUsize>,
}

impl Counters {
    /// Uses up one of the failures left; `false` when none are.
    fn take_failure(&self) -> bool {
        self.failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}

/// Tokens `/billions` answers: more than an unsigned 32-bit integer holds.
pub const BILLIONS: i64 = 4_500_000_123;

/// Routes: `/sse` (an OpenAI-style event stream saying "Hello", with usage.total_tokens = 5 in a last
/// chunk when the body asks `stream_options.include_usage`), `/sse-slow` (the same, then
/// [`SLOW_STREAM_DOTS`] chunks of " ." every 100 ms), `/sse-broken` ("Hel", "lo", then the connection
/// breaks), `/ok` (usage.total_tokens = 42), `/ten` (10 tokens), `/billions` ([`BILLIONS`] tokens),
/// `/custom` (meta.tokens.count = 7),
/// `/no-usage`, `/flaky` (503 while failures are left, then like `/ok`), `/throttled` (429 likewise), `/fail` (500), `/slow` (2 s),
/// `/bad-request` (400), `/headers` (echoes the request headers).
pub struct Upstream {
    pub base: String,
    counters: Counters,
}

impl Upstream {
    pub async fn start() -> Self {
        let counters = Counters::default();
        let router = Router::new()
            .route("/ok", post(|| async { tokens_answer(42) }))
            .route("/ten", post(|| async { tokens_answer(10) }))
            .route("/billions", post(|| async { tokens_answer(BILLIONS) }))
            .route(
                "/overflow",
                post(|| async {
                    axum::Json(
                        json!({ "usage": { "total_tokens": 9_223_372_036_854_775_807_i64 } }),
                    )
                }),
            )
            .route(
                "/negative",
                post(|| async { axum::Json(json!({ "usage": { "total_tokens": -500 } })) }),
            )
            .route(
                "/custom",
                post(|| async { axum::Json(json!({ "meta": { "tokens": { "count": 7 } } })) }),
            )
            .route(
                "/no-usage",
                post(|| async { axum::Json(json!({ "text": "an answer without a token count" })) }),
            )
            .route(
                "/sse",
                post(|body: String| async move {
                    let body: Value = serde_json::from_str(&body).unwrap_or_default();
                    event_stream(body["stream_options"]["include_usage"] == true)
                }),
            )
            .route(
                "/sse-slow",
                post(|body: String| async move {
                    let body: Value = serde_json::from_str(&body).unwrap_or_default();
                    slow_event_stream(body["stream_options"]["include_usage"] == true)
                }),
            )
            .route("/sse-broken", post(|| async { broken_event_stream() }))
            .route("/flaky", post(flaky))
            .route("/throttled", post(throttled))
            .route(
                "/fail",
                post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    tokens_answer(1)
                }),
            )
            .route(
                "/bad-request",
                post(|| async { (StatusCode::BAD_REQUEST, "no") }),
            )
            .route("/headers", post(echo_headers))
            .route(
                "/redirect",
                post(|| async {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(axum::http::header::LOCATION, "/headers")],
                    )
                }),
            )
            .route("/get", get(|| async { tokens_answer(3) }))
            .layer(axum::middleware::from_fn_with_state(
                counters.clone(),
                count,
            ))
            .with_state(counters.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { base, counters }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Requests received so far, on every route.
    pub fn calls(&self) -> usize {
        self.counters.calls.load(Ordering::SeqCst)
    }

    /// How many of the next `/flaky` requests answer 503.
    pub fn fail_next(&self, failures: usize) {
        self.counters
            .failures_left
            .store(failures, Ordering::SeqCst);
    }
}

fn tokens_answer(tokens: i64) -> axum::Json<Value> {
    axum::Json(json!({
        "choices": [{ "message": { "role": "assistant", "content": "done" } }],
        "usage": { "total_tokens": tokens }
    }))
}

async fn count(
    State(counters): State<Counters>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    counters.calls.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

/// 429 with `Retry-After: 7` while failures are left, then like `/ok`.
async fn throttled(State(counters): State<Counters>) -> Response {
    if counters.take_failure() {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "7")],
            "slow down",
        )
            .into_response()
    } else {
        tokens_answer(42).into_response()
    }
}

async fn flaky(State(counters): State<Counters>) -> Response {
    if counters.take_failure() {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    } else {
        tokens_answer(42).into_response()
    }
}

async fn echo_headers(headers: HeaderMap) -> axum::Json<Value> {
    let map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
        .collect();
    axum::Json(json!({ "headers": map, "usage": { "total_tokens": 1 } }))
}

/// An OpenAI-style `stream: true` answer, with the usage chunk when `usage` is set.
fn event_stream(usage: bool) -> Response {
    let mut body = String::new();
    for chunk in [
        json!({ "id": "c1", "model": "m", "choices": [{ "index": 0, "delta": { "role": "assistant", "content": "" } }] }),
        json!({ "id": "c1", "choices": [{ "index": 0, "delta": { "content": "Hel" } }] }),
        json!({ "id": "c1", "choices": [{ "index": 0, "delta": { "content": "lo" }, "finish_reason": "stop" }] }),
    ] {
        body.push_str(&format!("data: {chunk}\n\n"));
    }
    if usage {
        let last = json!({ "id": "c1", "choices": [], "usage": { "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5 } });
        body.push_str(&format!("data: {last}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], body).into_response()
}

/// The chunks of " ." `/sse-slow` sends after "Hello", one every 100 ms.
pub const SLOW_STREAM_DOTS: usize = 30;

/// `/sse-slow`: "Hel", "lo", then [`SLOW_STREAM_DOTS`] chunks of " .", one every 100 ms, then the usage
/// chunk when asked and `[DONE]`.
fn slow_event_stream(usage: bool) -> Response {
    let mut pieces: Vec<String> = vec!["Hel".into(), "lo".into()];
    pieces.extend(std::iter::repeat_n(" .".to_owned(), SLOW_STREAM_DOTS));
    let total = pieces.len();
    let mut events: Vec<String> = pieces
        .into_iter()
        .map(|piece| {
            let chunk =
                json!({ "id": "c2", "choices": [{ "index": 0, "delta": { "content": piece } }] });
            format!("data: {chunk}\n\n")
        })
        .collect();
    if usage {
        let last = json!({ "id": "c2", "choices": [], "usage": { "total_tokens": total + 3 } });
        events.push(format!("data: {last}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    let body = futures_util::stream::unfold(events.into_iter(), |mut events| async move {
        let event = events.next()?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, std::convert::Infallible>(event), events))
    });
    (
        [("content-type", "text/event-stream")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// `/sse-broken`: two chunks, then the answer breaks off (the connection is cut mid-body).
fn broken_event_stream() -> Response {
    let pieces: Vec<Result<String, std::io::Error>> = ["Hel", "lo"]
        .map(|piece| {
            let chunk =
                json!({ "id": "c3", "choices": [{ "index": 0, "delta": { "content": piece } }] });
            Ok(format!("data: {chunk}\n\n"))
        })
        .into_iter()
        .chain([Err(std::io::Error::other("the upstream broke off"))])
        .collect();
    let body = futures_util::stream::unfold(pieces.into_iter(), |mut pieces| async move {
        let piece = pieces.next()?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some((piece, pieces))
    });
    (
        [("content-type", "text/event-stream")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}
