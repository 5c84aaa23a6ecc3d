//! One call to a tool's upstream: the tool's timeout as an overall deadline, and bounded retries with
//! exponential backoff and jitter for failures that happen before any answer (connection refused or
//! reset, or a 502/503/504 from a proxy in front of it). Timeouts are not retried. An answer streamed as
//! Server-Sent Events is read to its end and collected into one (`event_stream`).

use std::time::{Duration, Instant};

use rand::RngExt;
use reqwest::{Method, StatusCode};

/// Largest upstream answer accepted.
const MAX_ANSWER_BYTES: usize = 10 * 1024 * 1024;
/// Attempts in all (one call and two retries).
const ATTEMPTS: u32 = 3;

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The deadline passed.
    Timeout,
    /// The upstream could not be reached or failed (detail for the log only).
    Unavailable(String),
    /// The upstream refused the input (4xx).
    Rejected(StatusCode),
    /// The upstream asked to slow down (429), for this many seconds when it said.
    Throttled(Option<u64>),
    /// A streamed answer broke after some output: what arrived, collected (it is metered).
    Broken {
        detail: String,
        produced: serde_json::Value,
    },
}

impl CallError {
    /// Whether the failure speaks about the upstream's health (it counts for the circuit breaker): not a
    /// refusal of the input, and not a request to slow down.
    pub fn is_upstream_fault(&self) -> bool {
        !matches!(self, Self::Rejected(_) | Self::Throttled(_))
    }
}

/// Seconds from a `Retry-After` header given as a number (an HTTP date is not followed), at most an hour.
fn retry_after_secs(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|secs| secs.min(3600))
}

/// What to call.
pub struct UpstreamRequest<'a> {
    pub method: Method,
    pub url: &'a reqwest::Url,
    pub headers: &'a [(String, String)],
    pub body: &'a serde_json::Value,
    pub request_id: &'a str,
    pub deadline: Instant,
    /// Where the chunks of a streamed answer go as they arrive (`invokeToolStream`); when it closes (the
    /// client went away) reading stops and what arrived is the answer.
    pub chunks: Option<&'a ChunkSink>,
}

/// The receiving end's sender of a streamed answer's chunks.
pub type ChunkSink = tokio::sync::mpsc::UnboundedSender<super::event_stream::StreamedChunk>;

/// The answer and how many attempts it took.
pub struct CallOutcome {
    pub answer: serde_json::Value,
    pub attempts: u32,
}

fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(50 * 2u64.pow(attempt)).min(Duration::from_secs(1));
    let jitter = rand::rng().random_range(0..=base.as_millis() as u64 / 2);
    base + Duration::from_millis(jitter)
}

pub async fn call(
    client: &reqwest::Client,
    request: &UpstreamRequest<'_>,
) -> Result<CallOutcome, CallError> {
    // The call's span travels along as `traceparent`, so the upstream's own spans join the trace.
    let mut trace_headers = reqwest::header::HeaderMap::new();
    crate::telemetry::traces::propagate(&tracing::Span::current(), &mut trace_headers);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let remaining = request.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(CallError::Timeout);
        }
        let mut builder = client
            .request(request.method.clone(), request.url.clone())
            .timeout(remaining)
            .header("x-request-id", request.request_id);
        for (name, value) in request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder = builder.headers(trace_headers.clone());
        if request.method != Method::GET {
            builder = builder.json(request.body);
        }
        let retryable = match builder.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    return read_json(response, request.chunks)
                        .await
                        .map(|answer| CallOutcome {
                            answer,
                            attempts: attempt,
                        });
                }
                if matches!(
                    status,
                    StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                ) {
                    CallError::Unavailable(format!("HTTP {status}"))
                } else if status == StatusCode::TOO_MANY_REQUESTS {
                    return Err(CallError::Throttled(retry_after_secs(response.headers())));
                } else if status.is_server_error() || status.is_redirection() {
                    // Redirects are not followed: secret headers go to the configured host only.
                    return Err(CallError::Unavailable(format!("HTTP {status}")));
                } else {
                    return Err(CallError::Rejected(status));
                }
            }
            Err(e) if e.is_timeout() => return Err(CallError::Timeout),
            Err(e) if e.is_connect() => CallError::Unavailable(format!("connection failed: {e}")),
            Err(e) => return Err(CallError::Unavailable(e.to_string())),
        };
        if attempt >= ATTEMPTS {
            return Err(retryable);
        }
        let pause = backoff(attempt - 1);
        if Instant::now() + pause >= request.deadline {
            return Err(retryable);
        }
        tracing::info!(attempt, pause_ms = pause.as_millis() as u64, reason = ?retryable, "retrying the upstream");
        tokio::time::sleep(pause).await;
    }
}

/// Reads the answer: JSON, or an event stream collected into one JSON answer (`event_stream`).
async fn read_json(
    mut response: reqwest::Response,
    chunks: Option<&ChunkSink>,
) -> Result<serde_json::Value, CallError> {
    let streamed = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(super::event_stream::is_event_stream);
    let chunks = chunks.filter(|_| streamed);
    let mut splitter = super::event_stream::Splitter::default();
    let mut collector = super::event_stream::Collector::default();
    let mut take = |data: String| {
        if let Some(event) = collector.take(data)
            && let Some(sink) = chunks
        {
            let _ = sink.send(event);
        }
    };
    let mut body = Vec::new();
    let mut received = 0usize;
    loop {
        let next = match chunks {
            Some(sink) => tokio::select! {
                next = response.chunk() => next,
                () = sink.closed() => {
                    // Dropping the answer closes the connection: the upstream stops producing.
                    tracing::info!("the client left a streamed call: what arrived is the answer");
                    break;
                }
            },
            None => response.chunk().await,
        };
        match next {
            Ok(Some(chunk)) => {
                received += chunk.len();
                if received > MAX_ANSWER_BYTES {
                    return Err(CallError::Unavailable(
                        "the answer is larger than 10 MiB".into(),
                    ));
                }
                if streamed {
                    splitter.push(&chunk).into_iter().for_each(&mut take);
                } else {
                    body.extend_from_slice(&chunk);
                }
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(CallError::Timeout),
            Err(e) => {
                let detail = format!("reading the answer failed: {e}");
                // A last event cut off midway is output produced too.
                if let Some(data) = splitter.rest() {
                    collector.take(data);
                }
                if streamed && let Ok(produced) = collector.answer() {
                    return Err(CallError::Broken { detail, produced });
                }
                return Err(CallError::Unavailable(detail));
            }
        }
    }
    if streamed {
        splitter.rest().into_iter().for_each(&mut take);
        return collector.answer().map_err(CallError::Unavailable);
    }
    serde_json::from_slice(&body)
        .map_err(|_| CallError::Unavailable("the answer is not JSON".into()))
}

/// The token count at a dot path (`usage.total_tokens`; numeric segments index arrays).
pub fn tokens_at(answer: &serde_json::Value, path: &str, max: i64) -> Option<i64> {
    let value = path
        .split('.')
        .try_fold(answer, |value, segment| match value {
            serde_json::Value::Array(items) => {
                segment.parse::<usize>().ok().and_then(|i| items.get(i))
            }
            other => other.get(segment),
        })?;
    value
        .as_i64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.round() as i64)
        })
        .filter(|n| (0..=max).contains(n))
}

/// The fallback when the answer has no usable count: about four bytes of JSON per token, both ways,
/// at most `max`.
pub fn estimate_tokens(input: &serde_json::Value, answer: &serde_json::Value, max: i64) -> i64 {
    let bytes = input.to_string().len() + answer.to_string().len();
    i64::try_from(bytes.div_ceil(4))
        .unwrap_or(i64::MAX)
        .clamp(1, max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAX: i64 = 1_000_000;

    #[test]
    fn token_counts_are_found_by_path_and_nonsense_is_ignored() {
        let answer = json!({
            "usage": { "total_tokens": 42, "parts": [3, 4.6] },
            "bad": -1,
            "huge": 1_000_001,
            "enormous": 1e300,
            "text": "42"
        });
        assert_eq!(tokens_at(&answer, "usage.total_tokens", MAX), Some(42));
        assert_eq!(tokens_at(&answer, "usage.parts.1", MAX), Some(5));
        assert_eq!(tokens_at(&answer, "usage.missing", MAX), None);
        assert_eq!(tokens_at(&answer, "bad", MAX), None);
        assert_eq!(tokens_at(&answer, "huge", MAX), None);
        assert_eq!(tokens_at(&answer, "enormous", MAX), None);
        assert_eq!(tokens_at(&answer, "text", MAX), None);
    }

    #[test]
    fn the_fallback_estimate_is_never_zero_nor_past_the_maximum() {
        assert_eq!(estimate_tokens(&json!({}), &json!({}), MAX), 1);
        assert_eq!(
            estimate_tokens(&json!("x".repeat(396)), &json!(null), MAX),
            101
        );
        assert_eq!(
            estimate_tokens(&json!("x".repeat(396)), &json!(null), 10),
            10
        );
    }
}
