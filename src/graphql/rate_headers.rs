//! The rate headers of an HTTP answer to a limited caller, so that clients can pace themselves:
//! `X-RateLimit-Limit` (the rate, per minute), `X-RateLimit-Remaining` (what may be spent at once,
//! without waiting) and `X-RateLimit-Reset` (seconds until `Remaining` is back at the whole burst).
//! Which rate an answer reports: an invocation's call rate, else a query's points, else an anonymous
//! address's pace. A refusal also carries `Retry-After` (see `http::graphql`).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};

/// The header fields for a rate of `limit` a minute with `remaining` to spend at once, whole again
/// after `reset`; lower-case names.
pub fn headers(limit: u32, remaining: u64, reset: Duration) -> [(&'static str, String); 3] {
    [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        (
            "x-ratelimit-reset",
            (reset.as_secs_f64().ceil() as u64).to_string(),
        ),
    ]
}

/// Sets the [`headers`] on an answer's `map`.
pub fn insert(map: &mut HeaderMap, limit: u32, remaining: u64, reset: Duration) {
    for (name, value) in headers(limit, remaining, reset) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            map.insert(name, value);
        }
    }
}
